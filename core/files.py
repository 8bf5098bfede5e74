"""Writing files so that a crash never leaves a half-written one that looks complete.

    with atomic_write(path) as f:          # binary; atomic_write(path, "w") for text
        f.write(data)
    write_csv(path, header, rows)

The data goes to a temporary file beside the target, is flushed to disk, then renamed over it
with os.replace, which is atomic on POSIX file systems.
"""
from __future__ import annotations

import contextlib
import csv
import os
from pathlib import Path
from typing import Iterable, Iterator, Sequence


@contextlib.contextmanager
def atomic_write(path: str | Path, mode: str = "wb") -> Iterator:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    text = "b" not in mode
    try:
        with open(tmp, mode, **({"encoding": "utf-8", "newline": ""} if text else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    with atomic_write(path, "w") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(rows)
