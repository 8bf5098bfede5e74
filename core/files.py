"""Writing files so that a crash never leaves a half-written one that looks complete.

    with atomic_write(path) as f:          # binary; atomic_write(path, "w") for text
        f.write(data)
    with atomic_csv(path, header) as writer:   # rows streamed in; visible only when complete
        writer.writerow(row)
    write_csv(path, header, rows)
    append_csv_row(path, header, row)          # e.g. a history that grows run by run
    writer.writerow([cell(name), ...])         # text from outside (file names): formula-safe
    with open_csv(path) as f: csv.DictReader(f)  # reading any of them back (streamed)
    rows = read_rows(path, limit=10)           # or the first rows at once ([] if no file)
    name = read_cell(row["path"])              # and back
    x = read_number(row["captcha_accuracy"])   # NaN for an empty or non-numeric cell

The data goes to a temporary file beside the target, is flushed to disk, then renamed over it
with os.replace, which is atomic on POSIX file systems.
"""
from __future__ import annotations

import contextlib
import csv
import itertools
import math
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
        # surrogateescape: a file name that is not valid UTF-8 is written back as its own bytes
        text_args = {"encoding": "utf-8", "errors": "surrogateescape", "newline": ""}
        with open(tmp, mode, **(text_args if text else {})) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise


@contextlib.contextmanager
def atomic_csv(path: str | Path, header: Sequence[str] | None) -> Iterator:
    """A csv.writer on a file that appears complete or not at all; header None: rows only."""
    with atomic_write(path, "w") as f:
        writer = csv.writer(f)
        if header is not None:
            writer.writerow(header)
        yield writer


def write_csv(path: str | Path, header: Sequence[str], rows: Iterable[Sequence]) -> None:
    with atomic_csv(path, header) as writer:
        writer.writerows(rows)


def append_csv_row(path: str | Path, header: Sequence[str], row: Sequence) -> None:
    """Add one row to a CSV that may not exist yet, rewriting it atomically. When the columns
    changed (a new version, other settings), the file keeps every column it had and gains the
    new ones; cells a row never had stay empty."""
    path = Path(path)
    old: list[dict] = []
    columns = list(header)
    if path.exists():
        with open_csv(path) as f:
            reader = csv.DictReader(f)
            old = list(reader)
            known = list(reader.fieldnames or [])
        columns = known + [c for c in header if c not in known]
    new = dict(zip(header, row))
    write_csv(path, columns, [["" if r.get(c) is None else r[c] for c in columns]
                              for r in old + [new]])


def read_rows(path: str | Path, limit: int | None = None) -> list[dict]:
    """The rows of a CSV written here as dicts (at most `limit`); [] if the file is not there."""
    path = Path(path)
    if not path.exists():
        return []
    with open_csv(path) as f:
        return list(itertools.islice(csv.DictReader(f), limit))


def read_number(text) -> float:
    """A numeric cell, NaN if empty or not a number (e.g. an accuracy with nothing scored)."""
    try:
        return float(text)
    except (TypeError, ValueError):
        return math.nan


def open_csv(path: str | Path):
    """Open a CSV written here for reading (UTF-8; names that are not UTF-8 come back as the
    same surrogate-escaped str that os.listdir gives)."""
    return open(path, newline="", encoding="utf-8", errors="surrogateescape")


# Cells a spreadsheet would run as a formula (OWASP, "CSV Injection").
_FORMULA_START = ("=", "+", "-", "@", "\t", "\r")


def cell(text: str) -> str:
    """Text from outside (a file name) made safe to open in a spreadsheet: if it starts like a
    formula it gets a leading single quote, as OWASP recommends. Text that already starts with
    a quote gets one too, so read_cell can always undo it exactly."""
    if text and (text[0] in _FORMULA_START or text[0] == "'"):
        return "'" + text
    return text


def read_cell(text: str) -> str:
    """The original text of a cell written with cell()."""
    return text[1:] if text.startswith("'") else text
