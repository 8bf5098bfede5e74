"""The nightly batch pass: every file of a folder predicted, scored against the label in its
name, and reported.

    summary = run_batch(input_dir, root / run_id, ckpt, cfg, device, progress=progress)
    append_history(root, summary); point_latest(root, run_id)

Outputs, each written aside and renamed into place when complete:
- predictions.csv: one row per input file, in input order (see PREDICTION_COLUMNS);
- summary.csv: one row (SUMMARY_COLUMNS);
- confusion.csv: expected,predicted,count for each misread character, most frequent first
  (from the alignment of label and prediction: an empty cell is a character missed or added);
- config.yaml: the resolved configuration.
Rows are streamed as batches arrive; nothing grows with the number of images but the file list.
"""
from __future__ import annotations

import collections
import csv
import dataclasses
import datetime
import hashlib
import json
import logging
import math
import os
import shutil
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Subset

from .checkpoint import Checkpoint
from .config import Config, dump_config
from .data import CaptchaDataset, Item, PredictingDataset, make_loader, scan_folder
from .engine import Metrics, align, evaluate
from .files import (append_csv_row, atomic_csv, atomic_write, cell, open_csv, read_cell,
                    read_number, read_rows, write_csv)
from .labels import Decoded
from .models import for_inference
from .progress import no_progress
from .review import coverage_columns, review_run

HISTORY = "history.csv"
MANIFEST = "manifest.json"
PARTS = "parts"
log = logging.getLogger(__name__)
LATEST = "latest"


class InputError(ValueError):
    """The input folder cannot be processed at all (missing, not a folder, empty)."""


def prediction_columns(length: int) -> list[str]:
    return (["path", "label", "prediction", "correct", "confidence", "label_probability",
             "status", "error", "resized", "size", "mtime_ns"]
            + [f"p{i + 1}" for i in range(length)])


def summary_columns(positions: int, coverage: tuple[float, ...]) -> list[str]:
    """positions: how many accuracy-per-position columns (0 where labels vary in length)."""
    return (["run_id", "started_at", "finished_at", "input", "model", "model_sha256", "arch",
             "device", "images", "labelled", "unlabelled", "errors", "resized",
             "unlistable_folders", "char_accuracy", "char_error_rate",
             "captcha_accuracy"] + [f"position{i + 1}_accuracy" for i in range(positions)]
            + ["mean_confidence", "ece", "temperature", "review", "suspects"]
            + coverage_columns(coverage)
            + ["images_per_second", "wall_seconds", "attempts", "new", "carried", "carried_from"])


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_run_id(root: Path) -> str:
    """A sortable UTC timestamp, made unique within root."""
    base = utc_now().strftime("%Y%m%dT%H%M%SZ")
    run_id, n = base, 1
    while (root / run_id).exists():
        run_id, n = f"{base}-{n}", n + 1
    return run_id


def list_inputs(input_dir: Path, cfg: Config) -> tuple[list[Item], list[str]]:
    """The input files, and the folders under input_dir that could not be listed."""
    if not input_dir.is_dir():
        raise InputError(f"input folder {input_dir} does not exist or is not a folder")
    unlistable: list[str] = []
    items = scan_folder(input_dir, cfg.labels, unlistable)
    if not items:
        raise InputError(f"input folder {input_dir} "
                         + ("cannot be listed" if "." in unlistable else "holds no files"))
    return items, unlistable


def _fmt(x: float) -> str:
    return f"{x:.6f}"


def _probability(x: float) -> str:
    """Six significant digits, so that the tiny probabilities of wrong labels still rank;
    empty for NaN (an unlabelled image)."""
    return "" if math.isnan(x) else f"{x:.6g}"


class Interrupted(Exception):
    """A stop signal arrived; everything up to the last batch is committed and resumable."""

    def __init__(self, signum: int, rows: int, files: int):
        super().__init__(f"stopped by {signal.Signals(signum).name} after {rows} of {files} files")
        self.signum = signum


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


def read_state(run_dir: Path) -> RunState | None:
    path = run_dir / MANIFEST
    if not path.exists():
        return None
    with open(path, encoding="utf-8") as f:
        return RunState(**json.load(f))


def _write_state(run_dir: Path, state: RunState) -> None:
    # A shallow dict, written compactly: dataclasses.asdict deep-copies every cell of the
    # confusion list, which at one commit per 8 batches cost several percent of a CPU run.
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    with atomic_write(run_dir / MANIFEST, "w") as f:
        json.dump(fields, f, separators=(",", ":"))


def _sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogateescape")).hexdigest()


def _start_or_resume(run_dir: Path, input_dir: Path, items: list[Item], ckpt: Checkpoint,
                     cfg: Config, resume: bool) -> RunState:
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
        _write_state(run_dir, fresh)
        return fresh
    for what, key in (("input folder", "input"), ("list of input files", "listing_sha256"),
                      ("model", "model_sha256"), ("configuration", "config_sha256")):
        if getattr(state, key) != getattr(fresh, key):
            raise ResumeError(f"cannot resume {run_dir.name}: its {what} changed since it started "
                              "(start a new run instead)")
    return state


def _carry_source(root: Path, fresh: RunState) -> tuple[str, str]:
    """(run id to carry unchanged files' rows from, or "" and why not)."""
    previous = last_completed_run(root)
    if previous is None:
        return "", "there is no completed run yet"
    run_id = previous["run_id"]
    state = read_state(root / run_id)
    if state is None or not (root / run_id / "predictions.csv").exists():
        return "", f"run {run_id} left no manifest.json and predictions.csv"
    for what, key in (("input folder", "input"), ("model", "model_sha256"),
                      ("configuration", "config_sha256")):
        if getattr(state, key) != getattr(fresh, key):
            return "", f"run {run_id} used another {what}"
    return run_id, ""


def _carried_rows(run_dir: Path, items: list[Item], columns: list[str]) -> dict[str, list]:
    """Rows of an earlier run for the files that are still there, unchanged (same path, size and
    modification time), keyed by path."""
    current = {item.path: (str(item.size), str(item.mtime_ns)) for item in items}
    rows = {}
    with open_csv(run_dir / "predictions.csv") as f:
        for row in csv.DictReader(f):
            path = read_cell(row.get("path", ""))
            if current.get(path) == (row.get("size"), row.get("mtime_ns")):
                rows[path] = [row.get(c, "") for c in columns]
    return rows


def run_batch(input_dir: Path, run_dir: Path, ckpt: Checkpoint, cfg: Config,
              device: torch.device, progress: Callable = no_progress, resume: bool = False,
              stop: Callable[[], int] = lambda: 0, only_new: bool = False) -> dict:
    """Predict every file under input_dir into run_dir; returns the summary row as a dict.

    Rows are committed every cfg.runtime.commit_batches batches (a part file, then the
    manifest), so a run killed at any instant keeps what it committed; with resume=True a run
    goes on from its last commit and ends with the same files as an uninterrupted one. `stop()`
    is polled after each batch: a signal number there commits and raises Interrupted.
    only_new: files unchanged since the last completed run of run_dir's root (same path, size
    and modification time; same input, model and configuration) keep that run's rows."""
    clock = time.monotonic()
    items, unlistable = list_inputs(input_dir, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)  # the job makes it, unique, under the lock
    state = _start_or_resume(run_dir, input_dir, items, ckpt, cfg, resume)
    if state.complete:
        raise ResumeError(f"run {run_dir.name} is already complete")
    if state.attempts == 0 and only_new:
        state.only_new = True
        state.carried_from, why = _carry_source(run_dir.parent, state)
        if why:
            log.warning("--only-new: predicting every file, since %s", why)
    state.attempts += 1
    state.unlistable = unlistable
    parts = run_dir / PARTS
    parts.mkdir(exist_ok=True)
    for orphan in parts.iterdir():  # written after the last manifest: not committed
        if not orphan.name.endswith(".csv") or int(orphan.stem) >= state.parts:
            orphan.unlink()
    codec = ckpt.codec
    length = ckpt.labels.max_length
    columns = prediction_columns(length)
    carry = (_carried_rows(run_dir.parent / state.carried_from, items, columns)
             if state.carried_from else {})
    todo_indices = [i for i in range(state.rows, len(items)) if items[i].path not in carry]
    dataset = CaptchaDataset(input_dir, items, codec, ckpt.image)
    model = for_inference(ckpt.model, ckpt.temperature)
    loader = make_loader(Subset(dataset, todo_indices), cfg.runtime.batch_size,
                         cfg.runtime.workers, device, predict_with=model)
    workers_do = ("decoding and predicting" if isinstance(loader.dataset, PredictingDataset)
                  else "decoding") if loader.num_workers else "the main process decodes"
    log.info("run %s: %d files under %s%s%s; model %s (%s, sha256 %s); device %s, batch %d, "
             "%d workers (%s), %d torch threads", run_dir.name, len(items), input_dir,
             f", resuming after {state.rows}" if state.rows else "",
             f", {len(carry)} unchanged since run {state.carried_from}" if state.carried_from
             else "", ckpt.path, ckpt.arch, ckpt.sha256, device, loader.batch_size,
             loader.num_workers, workers_do, torch.get_num_threads())
    metrics = Metrics(**state.metrics) if state.metrics else Metrics()
    confusion = collections.Counter({(e, p): n for e, p, n in state.confusion})
    pending: list[list] = []
    chunk = cfg.runtime.commit_batches * loader.batch_size
    batches, last_commit, next_row = 0, clock, state.rows

    def commit() -> None:
        nonlocal batches, last_commit
        if pending:
            with atomic_csv(parts / f"{state.parts:06d}.csv", None) as writer:
                writer.writerows(pending)
            state.parts += 1
            state.rows += len(pending)
        state.metrics = dataclasses.asdict(metrics)
        state.confusion = [[e, p, n] for (e, p), n in confusion.items()]
        now = time.monotonic()
        state.seconds += now - last_commit
        last_commit = now
        _write_state(run_dir, state)
        pending.clear()
        batches = 0

    def add_row(item: Item, predicted: str, confidence: float, resized: bool, row: list) -> None:
        if item.label is not None and item.label != predicted:
            confusion.update((e, p) for e, p in align(item.label, predicted) if e != p)
        state.resized += resized
        state.confidence_sum += confidence
        pending.append(row)

    def carry_until(index: int) -> None:
        """Rows carried over for the unchanged files before input position `index`."""
        nonlocal next_row
        for i in range(next_row, index):
            row = carry[items[i].path]
            record = dict(zip(columns, row))
            metrics.images += 1
            if record["status"] == "ok":
                predicted = read_cell(record["prediction"])
                metrics.add([items[i].label], [predicted])
                add_row(items[i], predicted, float(record["confidence"]),
                        record["resized"] == "1", row)
            else:
                metrics.errors += 1
                pending.append(row)
            state.carried += 1
            if len(pending) >= chunk:
                commit()
        next_row = max(next_row, index)

    def on_batch(batch: dict, decoded: Decoded) -> None:
        nonlocal batches, next_row
        confidence = decoded.confidence.tolist()
        label_probability = decoded.label_probability.tolist()
        probs = decoded.position_probs.tolist()
        for j, (index, error, resized) in enumerate(zip(batch["index"].tolist(), batch["error"],
                                                        batch["resized"].tolist())):
            carry_until(index)
            next_row = index + 1
            item = items[index]
            stats = [item.size, item.mtime_ns]
            if error:
                pending.append([cell(item.path), cell(item.label or ""), "", "", "", "", "error",
                                error, ""] + stats + [""] * length)
                continue
            predicted = decoded.texts[j]
            correct = "" if item.label is None else int(predicted == item.label)
            add_row(item, predicted, confidence[j], resized,
                    [cell(item.path), cell(item.label or ""), cell(predicted), correct,
                     _fmt(confidence[j]), _probability(label_probability[j]), "ok", "",
                     int(resized)] + stats
                    + ["" if math.isnan(p) else _fmt(p) for p in probs[j]])
        batches += 1
        signum = stop()
        if batches >= cfg.runtime.commit_batches or signum:
            commit()
        if signum:
            raise Interrupted(signum, state.rows, len(items))

    evaluate(model, loader, codec, device, on_batch=on_batch, progress=progress, desc="predict",
             metrics=metrics)
    carry_until(len(items))
    commit()
    return _finish(run_dir, input_dir, items, ckpt, cfg, device, state, metrics)


def _finish(run_dir: Path, input_dir: Path, items: list[Item], ckpt: Checkpoint, cfg: Config,
            device: torch.device, state: RunState, metrics: Metrics) -> dict:
    """All rows committed: predictions.csv from the parts, confusion and summary from the
    manifest's counts, the review files from predictions.csv. Safe to repeat if a crash
    interrupts it. Its own time counts in wall_seconds: writing the outputs is part of the pass."""
    started = time.monotonic()
    length = ckpt.labels.max_length
    positions = length if ckpt.labels.fixed_length else 0
    parts = run_dir / PARTS
    with atomic_write(run_dir / "predictions.csv") as out:  # bytes: the parts as written
        out.write((",".join(prediction_columns(length)) + "\r\n").encode("utf-8"))
        for k in range(state.parts):
            with open(parts / f"{k:06d}.csv", "rb") as part:
                shutil.copyfileobj(part, out)
    write_csv(run_dir / "confusion.csv", ["expected", "predicted", "count"],
              [[cell(e), cell(p), n] for e, p, n in
               sorted(state.confusion, key=lambda r: (-r[2], r[0], r[1]))])
    review = review_run(run_dir, cfg.review).summary()
    labelled = sum(item.label is not None for item in items)
    decoded_ok = metrics.images - metrics.errors
    wall = state.seconds = state.seconds + (time.monotonic() - started)
    position = (metrics.position_accuracy + [float("nan")] * positions)[:positions]
    summary = {
        "run_id": run_dir.name, "started_at": state.started_at,
        "finished_at": utc_now().isoformat(timespec="seconds"), "input": cell(str(input_dir)),
        "model": cell(ckpt.path), "model_sha256": ckpt.sha256, "arch": ckpt.arch, "device": str(device),
        "images": metrics.images, "labelled": labelled, "unlabelled": len(items) - labelled,
        "errors": metrics.errors, "resized": state.resized,
        "unlistable_folders": len(state.unlistable),
        "char_accuracy": _fmt(metrics.char_accuracy),
        "char_error_rate": _fmt(metrics.char_error_rate),
        "captcha_accuracy": _fmt(metrics.captcha_accuracy),
        **{f"position{i + 1}_accuracy": _fmt(a) for i, a in enumerate(position)},
        "mean_confidence": _fmt(state.confidence_sum / decoded_ok if decoded_ok else float("nan")),
        "temperature": f"{ckpt.temperature:.4f}",
        **{k: v if isinstance(v, int) else _fmt(v) for k, v in review.items()},
        "images_per_second": f"{metrics.images / wall:.1f}" if wall else "",
        "wall_seconds": f"{wall:.2f}", "attempts": state.attempts,
        "new": len(items) - state.carried, "carried": state.carried,
        "carried_from": state.carried_from,
    }
    columns = summary_columns(positions, cfg.review.coverage)
    summary = {c: summary[c] for c in columns}
    write_csv(run_dir / "summary.csv", columns, [list(summary.values())])
    state.complete = True
    _write_state(run_dir, state)
    shutil.rmtree(parts)
    return summary


def last_completed_run(root: Path) -> dict | None:
    """The last summary row in ROOT/history.csv, or None before the first completed run."""
    rows = read_rows(root / HISTORY)
    return rows[-1] if rows else None


@dataclass(frozen=True)
class Thresholds:
    """Quality alerts; None leaves a check off."""
    min_accuracy: float | None = None    # captcha accuracy, fraction 0-1
    max_drop: float | None = None        # percentage points below the previous completed run
    max_error_rate: float | None = None  # unreadable files / all files, fraction 0-1


def quality_alerts(summary: dict, previous: dict | None, limits: Thresholds) -> list[str]:
    """What is wrong with a finished run, one line each; empty when all is well. A run without
    scored images (nothing labelled) cannot breach an accuracy threshold."""
    alerts = []
    accuracy = read_number(summary["captcha_accuracy"])
    if limits.min_accuracy is not None and accuracy < limits.min_accuracy:
        alerts.append(f"captcha accuracy {accuracy:.2%} is below the minimum "
                      f"{limits.min_accuracy:.2%}")
    if limits.max_drop is not None and previous is not None:
        before = read_number(previous.get("captcha_accuracy"))
        drop = (before - accuracy) * 100
        if drop > limits.max_drop:
            alerts.append(f"captcha accuracy fell {drop:.2f} points, from {before:.2%} in run "
                          f"{previous.get('run_id')} to {accuracy:.2%} (allowed: "
                          f"{limits.max_drop:g})")
    images = int(summary["images"])
    rate = int(summary["errors"]) / images if images else 0.0
    if limits.max_error_rate is not None and rate > limits.max_error_rate:
        alerts.append(f"{summary['errors']} of {images} files unreadable ({rate:.2%}), above the "
                      f"maximum {limits.max_error_rate:.2%}")
    return alerts


def append_history(root: Path, summary: dict) -> bool:
    """Add the run's summary row to ROOT/history.csv; False if it is there already (a run whose
    finish was interrupted after this step and then resumed)."""
    path = root / HISTORY
    if path.exists():
        with open_csv(path) as f:
            if any(row.get("run_id") == summary["run_id"] for row in csv.DictReader(f)):
                return False
    append_csv_row(path, list(summary), list(summary.values()))
    return True


def point_latest(root: Path, run_id: str) -> None:
    """ROOT/latest -> RUN_ID, replaced atomically."""
    tmp = root / f".{LATEST}.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(run_id, tmp)
    os.replace(tmp, root / LATEST)
