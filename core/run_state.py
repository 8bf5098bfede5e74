"""A run's state on disk: what it has committed, so that a run killed at any instant can go
on exactly where it was, and what an --only-new run may carry over from the last one.

    RUN/manifest.json    RunState: the run's identity (input, listing, model, configuration)
                         and its committed counts
    RUN/parts/NNNNNN.csv the committed prediction rows, in input order, one file per commit
    RUN/predictions.csv  the parts joined, once every row is committed (join_parts)

A commit writes its part first and the manifest last: rows in a part the manifest does not
count were never committed and are dropped on resume.
"""
from __future__ import annotations

import csv
import dataclasses
import datetime
import hashlib
import json
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from .checkpoint import Checkpoint
from .config import Config, dump_config
from .data import Item
from .files import atomic_write, open_csv, read_cell

MANIFEST = "manifest.json"
PARTS = "parts"
PREDICTIONS = "predictions.csv"


class ResumeError(ValueError):
    """A run cannot be resumed as asked (its input, model or settings changed, or no state)."""


@dataclass
class RunState:
    """manifest.json: what a run has committed, enough to continue it exactly where it was."""
    input: str
    files: int
    listing_sha256: str
    model_sha256: str
    config_sha256: str
    started_at: str
    rows: int = 0                 # predictions committed, in input order
    parts: int = 0                # parts/000000.csv ... holding them
    metrics: dict = field(default_factory=dict)
    confusion: list = field(default_factory=list)   # [expected, predicted, count]
    resized: int = 0
    confidence_sum: float = 0.0
    seconds: float = 0.0          # wall time of earlier attempts
    attempts: int = 0
    only_new: bool = False
    carried_from: str = ""        # run id whose rows unchanged files keep ("": none)
    carried: int = 0
    unlistable: list = field(default_factory=list)  # folders os.walk could not list (no rows)
    complete: bool = False


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def read_state(run_dir: Path) -> RunState | None:
    path = run_dir / MANIFEST
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as f:
        return RunState(**json.load(f))


def write_state(run_dir: Path, state: RunState) -> None:
    # A shallow dict, written compactly: dataclasses.asdict deep-copies every cell of the
    # confusion list, which at one commit per 8 batches cost several percent of a CPU run.
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    with atomic_write(run_dir / MANIFEST, "w") as f:
        json.dump(fields, f, separators=(",", ":"))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def start_or_resume(run_dir: Path, input_dir: Path, items: list[Item], ckpt: Checkpoint,
                    cfg: Config, resume: bool) -> RunState:
    """The state of a new run (written, with the resolved configuration), or with resume=True
    that of the run already in run_dir, refused if its input, model or settings changed."""
    fresh = RunState(input=str(input_dir.resolve()), files=len(items),
                     listing_sha256=_sha256("\0".join(item.path for item in items)),
                     model_sha256=ckpt.sha256, config_sha256=_sha256(dump_config(cfg)),
                     started_at=utc_now().isoformat(timespec="seconds"))
    state = read_state(run_dir) if resume else None
    if state is None:
        if resume and any(run_dir.iterdir()):
            raise ResumeError(f"{run_dir} has no {MANIFEST}: not a run that can be resumed")
        with atomic_write(run_dir / "config.yaml", "w") as f:
            f.write(dump_config(cfg))
        write_state(run_dir, fresh)
        return fresh
    what = _what_differs(state, fresh, listing=True)
    if what:
        raise ResumeError(f"cannot resume {run_dir.name}: its {what} changed since it started "
                          "(start a new run instead)")
    return state


def carry_source(root: Path, fresh: RunState, previous: dict | None) -> tuple[str, str]:
    """(run id to carry unchanged files' rows from, or "" and why not); previous: the summary
    row of the last completed run under root (None: there is none)."""
    if previous is None:
        return "", "there is no completed run yet"
    run_id = previous["run_id"]
    state = read_state(root / run_id)
    if state is None or not (root / run_id / PREDICTIONS).exists():
        return "", f"run {run_id} left no {MANIFEST} and {PREDICTIONS}"
    what = _what_differs(state, fresh, listing=False)
    return ("", f"run {run_id} used another {what}") if what else (run_id, "")


def _what_differs(a: RunState, b: RunState, listing: bool) -> str:
    """The first of the input folder, (with listing) the list of input files, the model and
    the configuration that two runs do not share, in words; "" if they share them all."""
    for what, key in (("input folder", "input"), ("list of input files", "listing_sha256"),
                      ("model", "model_sha256"), ("configuration", "config_sha256")):
        if (listing or key != "listing_sha256") and getattr(a, key) != getattr(b, key):
            return what
    return ""


def carried_rows(run_dir: Path, items: list[Item], columns: list[str]) -> dict[str, dict]:
    """Rows of an earlier run for the files that are still there, unchanged (same path, size and
    modification time), keyed by path; each a dict of `columns`."""
    current = {item.path: (str(item.size), str(item.mtime_ns)) for item in items}
    rows = {}
    with open_csv(run_dir / PREDICTIONS) as f:
        for row in csv.DictReader(f):
            path = read_cell(row.get("path", ""))
            if current.get(path) == (row.get("size"), row.get("mtime_ns")):
                rows[path] = {c: row.get(c, "") for c in columns}
    return rows


def clear_uncommitted_parts(run_dir: Path, state: RunState) -> None:
    """RUN/parts made, or cleared of everything but the parts the last manifest counts."""
    parts = run_dir / PARTS
    parts.mkdir(exist_ok=True)
    for orphan in parts.iterdir():
        if orphan.suffix != ".csv" or not orphan.stem.isdigit() or int(orphan.stem) >= state.parts:
            orphan.unlink()


def commit_part(run_dir: Path, state: RunState, columns: list[str], rows: list[dict]) -> None:
    """`rows` written as the next part (no header), then state, counting them, as the manifest."""
    if rows:
        with atomic_write(run_dir / PARTS / f"{state.parts:06d}.csv", "w") as f:
            csv.DictWriter(f, columns).writerows(rows)
        state.parts += 1
        state.rows += len(rows)
    write_state(run_dir, state)


def join_parts(run_dir: Path, state: RunState, columns: list[str]) -> None:
    """RUN/predictions.csv: the header and every committed part, byte for byte."""
    with atomic_write(run_dir / PREDICTIONS) as out:
        out.write((",".join(columns) + "\r\n").encode("utf-8"))
        for k in range(state.parts):
            with open(run_dir / PARTS / f"{k:06d}.csv", "rb") as part:
                shutil.copyfileobj(part, out)


def mark_complete(run_dir: Path, state: RunState) -> None:
    """Every output written: the manifest says so, and the parts go."""
    state.complete = True
    write_state(run_dir, state)
    shutil.rmtree(run_dir / PARTS)
