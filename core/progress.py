"""Progress display for long loops: a bar on a terminal, a log line every few seconds otherwise
(cron, CI, a pipe), so logs stay readable.

    for batch in progress(loader, desc="epoch 3"):
        ...
"""
from __future__ import annotations

import logging
import sys
import time
from typing import Iterable, Iterator, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


def progress(iterable: Iterable[T], desc: str = "", total: int | None = None,
             every_seconds: float = 5.0, stream=None) -> Iterator[T]:
    stream = stream or sys.stderr
    if total is None:
        try:
            total = len(iterable)  # type: ignore[arg-type]
        except TypeError:
            total = None
    if stream.isatty():
        from tqdm import tqdm
        yield from tqdm(iterable, desc=desc, total=total, leave=False, file=stream,
                        dynamic_ncols=True)
        return
    start = last = time.monotonic()
    for done, value in enumerate(iterable, 1):
        yield value
        now = time.monotonic()
        if now - last >= every_seconds:
            last = now
            of = f"/{total}" if total else ""
            log.info("%s: %d%s (%.1f/s)", desc, done, of, done / (now - start))


def no_progress(iterable: Iterable[T], desc: str = "", total: int | None = None) -> Iterable[T]:
    return iterable
