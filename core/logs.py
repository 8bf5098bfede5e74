"""The log line every job writes (UTC timestamps), to stderr and to a run's own log file."""
from __future__ import annotations

import contextlib
import logging
import sys
import time
from pathlib import Path
from typing import Iterator


class _UTCFormatter(logging.Formatter):
    converter = time.gmtime


FORMATTER = _UTCFormatter("%(asctime)sZ %(levelname)s %(message)s", datefmt="%Y-%m-%dT%H:%M:%S")


def setup_logging(quiet: bool = False) -> None:
    """Log lines with UTC timestamps on stderr; warnings only when quiet (cron)."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(FORMATTER)
    handler.setLevel(logging.WARNING if quiet else logging.INFO)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)


@contextlib.contextmanager
def log_to_file(path: Path) -> Iterator[None]:
    """Also write every log line (INFO and up, quiet or not) to `path` while inside."""
    handler = logging.FileHandler(path, encoding="utf-8")
    handler.setFormatter(FORMATTER)
    handler.setLevel(logging.INFO)
    logging.getLogger().addHandler(handler)
    try:
        yield
    finally:
        logging.getLogger().removeHandler(handler)
        handler.close()
