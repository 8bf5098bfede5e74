"""The nightly batch pass: every file of a folder predicted, scored against the label in its
name, and written out; the run's state on disk is core.run_state, its record core.run_record.

    summary = run_batch(input_dir, root / run_id, ckpt, cfg, device, progress=progress)
    record_run(root, summary)

Outputs, each written aside and renamed into place when complete:
- predictions.csv: one row per input file, in input order (prediction_columns);
- summary.csv: one row (core.run_record.summary_columns);
- confusion.csv: expected,predicted,count for each misread character, most frequent first
  (from the alignment of label and prediction: an empty cell is a character missed or added);
- the review files (core.review) and config.yaml, the resolved configuration.
Rows are streamed as batches arrive; nothing grows with the number of images but the file list.
"""
from __future__ import annotations

import collections
import dataclasses
import logging
import math
import signal
import time
from pathlib import Path
from typing import Callable

import torch
from torch.utils.data import Subset

from .checkpoint import Checkpoint
from .config import Config
from .data import CaptchaDataset, Item, PredictingDataset, make_loader, scan_folder
from .engine import Metrics, align, evaluate
from .files import cell, read_cell, write_csv
from .labels import Decoded
from .inference import prepare
from .progress import no_progress
from .review import review_run
from .run_record import last_completed_run, summary_columns, write_summary
from .runtime import read_on
from .run_state import (ResumeError, RunState, carried_rows, carry_source, clear_uncommitted_parts,
                        commit_part, join_parts, mark_complete, start_or_resume, utc_now)

log = logging.getLogger(__name__)
_COLUMNS = ["path", "label", "prediction", "correct", "confidence", "label_probability", "status",
            "error", "resized", "size", "mtime_ns"]


class InputError(ValueError):
    """The input folder cannot be processed at all (missing, not a folder, empty)."""


class Interrupted(Exception):
    """A stop signal arrived; everything up to the last batch is committed and resumable."""

    def __init__(self, signum: int, rows: int, files: int, why: str = ""):
        super().__init__(f"stopped by {why or signal.Signals(signum).name} after {rows} of "
                         f"{files} files")
        self.signum = signum


def position_columns(length: int) -> list[str]:
    return [f"p{i + 1}" for i in range(length)]


def prediction_columns(length: int) -> list[str]:
    return _COLUMNS + position_columns(length)


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


def run_batch(input_dir: Path, run_dir: Path, ckpt: Checkpoint, cfg: Config,
              device: torch.device, progress: Callable = no_progress, resume: bool = False,
              stop: Callable[[], int] = lambda: 0, only_new: bool = False,
              cluster=None) -> dict:
    """Predict every file under input_dir into run_dir; returns the summary row as a dict.

    Rows are committed every cfg.runtime.commit_batches batches (a part file, then the
    manifest), so a run killed at any instant keeps what it committed; with resume=True a run
    goes on from its last commit and ends with the same files as an uninterrupted one. `stop()`
    is polled after each batch: a signal number there commits and raises Interrupted.
    only_new: files unchanged since the last completed run of run_dir's root (same path, size
    and modification time; same input, model and configuration) keep that run's rows.
    cluster: a Dask client (core.cluster) whose workers read the files, a shard at a time,
    each shard committed whole; if the cluster goes away the run stops as for SIGTERM."""
    clock = time.monotonic()
    items, unlistable = list_inputs(input_dir, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)  # the job makes it, unique, under the lock
    state = start_or_resume(run_dir, input_dir, items, ckpt, cfg, resume)
    if state.complete:
        raise ResumeError(f"run {run_dir.name} is already complete")
    if state.attempts == 0 and only_new:
        state.only_new = True
        state.carried_from, why = carry_source(run_dir.parent, state,
                                               last_completed_run(run_dir.parent))
        if why:
            log.warning("--only-new: predicting every file, since %s", why)
    state.attempts += 1
    state.unlistable = unlistable
    clear_uncommitted_parts(run_dir, state)
    columns = prediction_columns(ckpt.labels.max_length)
    carry = (carried_rows(run_dir.parent / state.carried_from, items, columns)
             if state.carried_from else {})
    todo_indices = [i for i in range(state.rows, len(items)) if items[i].path not in carry]
    dataset = CaptchaDataset(input_dir, items, ckpt.codec, ckpt.image, cfg.runtime.fast_png)
    model, precision = prepare(ckpt, device, cfg.runtime.cpu_precision)
    if cluster is None:
        loader = make_loader(Subset(dataset, todo_indices), cfg.runtime.batch_size,
                             cfg.runtime.workers, device, predict_with=model)
        workers_do = ("decoding and predicting" if isinstance(loader.dataset, PredictingDataset)
                      else "decoding") if loader.num_workers else "the main process decodes"
        where = (f"batch {loader.batch_size}, {loader.num_workers} workers ({workers_do}), "
                 f"{torch.get_num_threads()} torch threads")
        batch_size, commit_batches = loader.batch_size, cfg.runtime.commit_batches
    else:
        from .cluster import ShardBatches
        loader = ShardBatches(cluster, ckpt, input_dir, items, todo_indices, cfg)
        where = (f"Dask cluster {cluster.scheduler.address}, "
                 f"{len(cluster.scheduler_info().get('workers', {}))} workers, shards of "
                 f"{loader.shard_files} files, runtime.device {cfg.runtime.device} and "
                 f"batch_size {loader.batch_size} on the workers")
        batch_size, commit_batches = loader.shard_files, 1    # each shard committed whole
    log.info("run %s: %d files under %s%s%s; model %s (%s, %s, sha256 %s); device %s, %s",
             run_dir.name, len(items), input_dir,
             f", resuming after {state.rows}" if state.rows else "",
             f", {len(carry)} unchanged since run {state.carried_from}" if state.carried_from
             else "", ckpt.path, ckpt.arch, ckpt.engine, ckpt.sha256, read_on(device, precision),
             where)
    rows = _Rows(run_dir, state, items, carry, ckpt.labels.max_length, commit_batches,
                 batch_size, stop, clock)
    evaluate(model, loader, ckpt.codec, device, on_batch=rows.on_batch, progress=progress,
             desc="predict", metrics=rows.metrics)
    if getattr(loader, "lost", ""):
        rows.commit()
        raise Interrupted(signal.SIGTERM, state.rows, len(items), why=loader.lost)
    rows.carry_until(len(items))
    rows.commit()
    # on a cluster the workers read, on their devices; this process only scores
    where_read = read_on(device, precision) if cluster is None else loader.read_on
    return _finish(run_dir, input_dir, items, ckpt, cfg, where_read, state, rows.metrics)


class _Rows:
    """The pass's rows in input order, as dicts of prediction_columns: predicted ones as their
    batches arrive, rows carried over for unchanged files in between; tallied (metrics,
    confusion, resized, confidence) and committed to the run's state every `commit_batches`
    batches or as many rows."""

    def __init__(self, run_dir: Path, state: RunState, items: list[Item], carry: dict[str, dict],
                 length: int, commit_batches: int, batch_size: int, stop: Callable[[], int],
                 clock: float):
        self.run_dir, self.state, self.items, self.carry = run_dir, state, items, carry
        self.columns, self.positions = prediction_columns(length), position_columns(length)
        self.commit_batches, self.chunk = commit_batches, commit_batches * batch_size
        self.stop = stop
        self.metrics = Metrics(**state.metrics) if state.metrics else Metrics()
        self.confusion = collections.Counter({(e, p): n for e, p, n in state.confusion})
        self.pending: list[dict] = []
        self.batches, self.last_commit, self.next_row = 0, clock, state.rows

    def commit(self) -> None:
        state = self.state
        state.metrics = dataclasses.asdict(self.metrics)
        state.confusion = [[e, p, n] for (e, p), n in self.confusion.items()]
        now = time.monotonic()
        state.seconds += now - self.last_commit
        self.last_commit = now
        commit_part(self.run_dir, state, self.columns, self.pending)
        self.pending.clear()
        self.batches = 0

    def _add_read(self, item: Item, predicted: str, confidence: float, resized: bool,
                  row: dict) -> None:
        if item.label is not None and item.label != predicted:
            self.confusion.update((e, p) for e, p in align(item.label, predicted) if e != p)
        self.state.resized += resized
        self.state.confidence_sum += confidence
        self.pending.append(row)

    def carry_until(self, index: int) -> None:
        """Rows carried over for the unchanged files before input position `index`."""
        for i in range(self.next_row, index):
            item = self.items[i]
            row = self.carry[item.path]
            self.metrics.images += 1
            if row["status"] == "ok":
                predicted = read_cell(row["prediction"])
                self.metrics.add([item.label], [predicted])
                self._add_read(item, predicted, float(row["confidence"]), row["resized"] == "1",
                               row)
            else:
                self.metrics.errors += 1
                self.pending.append(row)
            self.state.carried += 1
            if len(self.pending) >= self.chunk:
                self.commit()
        self.next_row = max(self.next_row, index)

    def on_batch(self, batch: dict, decoded: Decoded) -> None:
        confidence = decoded.confidence.tolist()
        label_probability = decoded.label_probability.tolist()
        probs = decoded.position_probs.tolist()
        for j, (index, error, resized) in enumerate(zip(batch["index"].tolist(), batch["error"],
                                                        batch["resized"].tolist())):
            self.carry_until(index)
            self.next_row = index + 1
            item = self.items[index]
            row = {"path": cell(item.path), "label": cell(item.label or ""),
                   "size": item.size, "mtime_ns": item.mtime_ns}
            if error:
                row.update(status="error", error=error)     # the other cells stay empty
                self.pending.append(row)
                continue
            predicted = decoded.texts[j]
            row.update(prediction=cell(predicted),
                       correct="" if item.label is None else int(predicted == item.label),
                       confidence=_fmt(confidence[j]),
                       label_probability=_probability(label_probability[j]), status="ok",
                       resized=int(resized))
            row.update(zip(self.positions, ["" if math.isnan(p) else _fmt(p) for p in probs[j]]))
            self._add_read(item, predicted, confidence[j], resized, row)
        self.batches += 1
        signum = self.stop()
        if self.batches >= self.commit_batches or signum:
            self.commit()
        if signum:
            raise Interrupted(signum, self.state.rows, len(self.items))


def _finish(run_dir: Path, input_dir: Path, items: list[Item], ckpt: Checkpoint, cfg: Config,
            read_on: str, state: RunState, metrics: Metrics) -> dict:
    """All rows committed: predictions.csv from the parts, confusion and summary from the
    manifest's counts, the review files from predictions.csv. Safe to repeat if a crash
    interrupts it. Its own time counts in wall_seconds: writing the outputs is part of the pass."""
    started = time.monotonic()
    length = ckpt.labels.max_length
    positions = length if ckpt.labels.fixed_length else 0
    join_parts(run_dir, state, prediction_columns(length))
    write_csv(run_dir / "confusion.csv", ["expected", "predicted", "count"],
              [[cell(e), cell(p), n] for e, p, n in
               sorted(state.confusion, key=lambda r: (-r[2], r[0], r[1]))])
    review = review_run(run_dir, cfg.review).summary()
    labelled = sum(item.label is not None for item in items)
    decoded_ok = metrics.images - metrics.errors
    wall = state.seconds = state.seconds + (time.monotonic() - started)
    position = (metrics.position_accuracy + [float("nan")] * positions)[:positions]
    summary = write_summary(run_dir, summary_columns(positions, cfg.review.coverage), {
        "run_id": run_dir.name, "started_at": state.started_at,
        "finished_at": utc_now().isoformat(timespec="seconds"), "input": cell(str(input_dir)),
        "model": cell(ckpt.path), "model_sha256": ckpt.sha256, "arch": ckpt.arch, "device": read_on,
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
    })
    mark_complete(run_dir, state)
    return summary
