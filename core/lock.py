"""One run at a time per output root: an exclusive OS-level lock that dies with its process.

    with exclusive_lock(root):          # raises Locked naming the holder if another run has it
        ...

The lock is `fcntl.flock` on ROOT/.lock. The kernel releases it when the process ends, however
it ends (exit, crash, SIGKILL, power loss), so a lock left behind never blocks the next run; the
file itself stays and only says who held it last. While held, it names the holder (pid, start
time in UTC, command) for the run that is turned away.
"""
from __future__ import annotations

import contextlib
import datetime
import fcntl
import os
import sys
from pathlib import Path
from typing import Iterator

LOCK_FILE = ".lock"


class Locked(RuntimeError):
    """Another process holds the lock; the message names it."""


@contextlib.contextmanager
def exclusive_lock(root: str | Path) -> Iterator[None]:
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    path = root / LOCK_FILE
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 4096, 0).decode("utf-8", "replace").strip()
            raise Locked(f"{root} is in use by another run ({holder or 'holder not yet named'})"
                         ) from None
        started = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()}, started {started}, {' '.join(sys.argv)}\n"
                  .encode("utf-8", "replace"), 0)
        yield
    finally:
        os.close(fd)  # releases the lock
