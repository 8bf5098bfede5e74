"""The nightly batch pass: every file of a folder predicted, scored against the label in its
name, and reported.

    summary = run_batch(input_dir, root / run_id, ckpt, cfg, device, progress=progress)
    append_history(root, summary); point_latest(root, run_id)

Outputs, each written aside and renamed into place when complete:
- predictions.csv: one row per input file, in input order (see PREDICTION_COLUMNS);
- summary.csv: one row (SUMMARY_COLUMNS);
- confusion.csv: expected,predicted,count for each misread character, most frequent first;
- config.yaml: the resolved configuration.
Rows are streamed as batches arrive; nothing grows with the number of images but the file list.
"""
from __future__ import annotations

import collections
import csv
import datetime
import logging
import math
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .checkpoint import Checkpoint
from .config import Config, dump_config
from .data import CaptchaDataset, Item, make_loader, scan_folder
from .engine import evaluate
from .files import append_csv_row, atomic_csv, atomic_write, write_csv
from .labels import Decoded, build_codec
from .models import for_inference
from .progress import no_progress

HISTORY = "history.csv"
log = logging.getLogger(__name__)
LATEST = "latest"


class InputError(ValueError):
    """The input folder cannot be processed at all (missing, not a folder, empty)."""


def prediction_columns(length: int) -> list[str]:
    return (["path", "label", "prediction", "correct", "confidence", "status", "error", "resized"]
            + [f"p{i + 1}" for i in range(length)])


def summary_columns(length: int) -> list[str]:
    return (["run_id", "started_at", "finished_at", "input", "model", "model_sha256", "arch",
             "device", "images", "labelled", "unlabelled", "errors", "resized", "char_accuracy",
             "captcha_accuracy"] + [f"position{i + 1}_accuracy" for i in range(length)]
            + ["mean_confidence", "images_per_second", "wall_seconds"])


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.timezone.utc)


def new_run_id(root: Path) -> str:
    """A sortable UTC timestamp, made unique within root."""
    base = utc_now().strftime("%Y%m%dT%H%M%SZ")
    run_id, n = base, 1
    while (root / run_id).exists():
        run_id, n = f"{base}-{n}", n + 1
    return run_id


def list_inputs(input_dir: Path, cfg: Config) -> list[Item]:
    if not input_dir.is_dir():
        raise InputError(f"input folder {input_dir} does not exist or is not a folder")
    items = scan_folder(input_dir, cfg.labels)
    if not items:
        raise InputError(f"input folder {input_dir} holds no files")
    return items


def _fmt(x: float) -> str:
    return f"{x:.6f}"


def run_batch(input_dir: Path, run_dir: Path, ckpt: Checkpoint, cfg: Config,
              device: torch.device, progress: Callable = no_progress) -> dict:
    """Predict every file under input_dir into run_dir; returns the summary row as a dict."""
    started, clock = utc_now(), time.monotonic()
    items = list_inputs(input_dir, cfg)
    run_dir.mkdir(parents=True, exist_ok=True)  # the job makes it, unique, under the lock
    with atomic_write(run_dir / "config.yaml", "w") as f:
        f.write(dump_config(cfg))
    codec = build_codec(ckpt.labels)
    length = ckpt.labels.length
    loader = make_loader(CaptchaDataset(input_dir, items, codec, ckpt.image),
                         cfg.runtime.batch_size, cfg.runtime.workers, device)
    log.info("run %s: %d files under %s; model %s (%s, sha256 %s); device %s, batch %d, "
             "%d workers, %d torch threads", run_dir.name, len(items), input_dir, ckpt.path,
             ckpt.arch, ckpt.sha256, device, loader.batch_size, loader.num_workers,
             torch.get_num_threads())
    confusion: collections.Counter = collections.Counter()
    totals = {"resized": 0, "confidence": 0.0}

    with atomic_csv(run_dir / "predictions.csv", prediction_columns(length)) as writer:
        def on_batch(batch: dict, decoded: Decoded) -> None:
            confidence = decoded.confidence.tolist()
            probs = decoded.position_probs.tolist()
            for j, (index, error, resized) in enumerate(zip(batch["index"].tolist(),
                                                            batch["error"],
                                                            batch["resized"].tolist())):
                item = items[index]
                if error:
                    writer.writerow([item.path, item.label or "", "", "", "", "error", error, ""]
                                    + [""] * length)
                    continue
                predicted = decoded.texts[j]
                correct = ""
                if item.label is not None:
                    correct = int(predicted == item.label)
                    confusion.update((e, p) for e, p in zip(item.label, predicted) if e != p)
                totals["resized"] += resized
                totals["confidence"] += confidence[j]
                writer.writerow([item.path, item.label or "", predicted, correct,
                                 _fmt(confidence[j]), "ok", "", int(resized)]
                                + [_fmt(p) for p in probs[j]])

        metrics = evaluate(for_inference(ckpt.model), loader, codec, device, on_batch=on_batch,
                           progress=progress, desc="predict")

    write_csv(run_dir / "confusion.csv", ["expected", "predicted", "count"],
              [[e, p, n] for (e, p), n in sorted(confusion.items(), key=lambda kv: (-kv[1], kv[0]))])
    labelled = sum(item.label is not None for item in items)
    decoded_ok = metrics.images - metrics.errors
    wall = time.monotonic() - clock
    position = metrics.position_accuracy + [float("nan")] * (length - len(metrics.position_accuracy))
    summary = {
        "run_id": run_dir.name, "started_at": started.isoformat(timespec="seconds"),
        "finished_at": utc_now().isoformat(timespec="seconds"), "input": str(input_dir),
        "model": ckpt.path, "model_sha256": ckpt.sha256, "arch": ckpt.arch, "device": str(device),
        "images": metrics.images, "labelled": labelled, "unlabelled": len(items) - labelled,
        "errors": metrics.errors, "resized": totals["resized"],
        "char_accuracy": _fmt(metrics.char_accuracy),
        "captcha_accuracy": _fmt(metrics.captcha_accuracy),
        **{f"position{i + 1}_accuracy": _fmt(a) for i, a in enumerate(position)},
        "mean_confidence": _fmt(totals["confidence"] / decoded_ok if decoded_ok else float("nan")),
        "images_per_second": f"{metrics.images / wall:.1f}", "wall_seconds": f"{wall:.2f}",
    }
    write_csv(run_dir / "summary.csv", summary_columns(length),
              [[summary[c] for c in summary_columns(length)]])
    return summary


def last_completed_run(root: Path) -> dict | None:
    """The last summary row in ROOT/history.csv, or None before the first completed run."""
    path = root / HISTORY
    if not path.exists():
        return None
    with open(path, newline="", encoding="utf-8") as f:
        rows = list(csv.DictReader(f))
    return rows[-1] if rows else None


@dataclass(frozen=True)
class Thresholds:
    """Quality alerts; None leaves a check off."""
    min_accuracy: float | None = None    # captcha accuracy, fraction 0-1
    max_drop: float | None = None        # percentage points below the previous completed run
    max_error_rate: float | None = None  # unreadable files / all files, fraction 0-1


def _number(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def quality_alerts(summary: dict, previous: dict | None, limits: Thresholds) -> list[str]:
    """What is wrong with a finished run, one line each; empty when all is well. A run without
    scored images (nothing labelled) cannot breach an accuracy threshold."""
    alerts = []
    accuracy = _number(summary["captcha_accuracy"])
    if limits.min_accuracy is not None and accuracy < limits.min_accuracy:
        alerts.append(f"captcha accuracy {accuracy:.2%} is below the minimum "
                      f"{limits.min_accuracy:.2%}")
    if limits.max_drop is not None and previous is not None:
        before = _number(previous.get("captcha_accuracy"))
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


def append_history(root: Path, summary: dict) -> None:
    append_csv_row(root / HISTORY, list(summary), list(summary.values()))


def point_latest(root: Path, run_id: str) -> None:
    """ROOT/latest -> RUN_ID, replaced atomically."""
    tmp = root / f".{LATEST}.{os.getpid()}.tmp"
    if tmp.is_symlink() or tmp.exists():
        tmp.unlink()
    os.symlink(run_id, tmp)
    os.replace(tmp, root / LATEST)
