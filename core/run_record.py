"""A finished run's record: its summary row, the history of completed runs, ROOT/latest,
report.html and the quality alerts that make a night fail.

    ROOT/RUN/summary.csv  one row (summary_columns)
    ROOT/history.csv      one summary row per completed run, oldest first
    ROOT/latest           a symlink to the last completed run

record_run() files a completed run (history, report, latest) and may be repeated: a run whose
filing a crash cut short is filed again by the next --resume, once.
"""
from __future__ import annotations

import csv
import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .files import append_csv_row, open_csv, read_number, read_rows, write_csv
from .report import write_report
from .review import coverage_columns

HISTORY = "history.csv"
LATEST = "latest"
SUMMARY = "summary.csv"
log = logging.getLogger(__name__)


def summary_columns(positions: int, coverage: tuple[float, ...]) -> list[str]:
    """positions: how many accuracy-per-position columns (0 where labels vary in length)."""
    return (["run_id", "started_at", "finished_at", "input", "model", "model_sha256", "arch",
             "device", "images", "labelled", "unlabelled", "errors", "resized",
             "unlistable_folders", "char_accuracy", "char_error_rate",
             "captcha_accuracy"] + [f"position{i + 1}_accuracy" for i in range(positions)]
            + ["mean_confidence", "ece", "temperature", "review", "suspects"]
            + coverage_columns(coverage)
            + ["images_per_second", "wall_seconds", "attempts", "new", "carried", "carried_from"])


def write_summary(run_dir: Path, columns: list[str], values: dict) -> dict:
    """RUN/summary.csv from `values` (every column, maybe more); returns the row as written."""
    summary = {c: values[c] for c in columns}
    write_csv(run_dir / SUMMARY, columns, [list(summary.values())])
    return summary


def read_summary(run_dir: Path) -> dict:
    return read_rows(run_dir / SUMMARY, limit=1)[0]


def last_completed_run(root: Path) -> dict | None:
    """The last summary row in ROOT/history.csv, or None before the first completed run."""
    rows = read_rows(root / HISTORY)
    return rows[-1] if rows else None


def append_history(root: Path, summary: dict) -> bool:
    """Add the run's summary row to ROOT/history.csv; False if it is there already (a run whose
    filing was interrupted after this step and then resumed)."""
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


def record_run(root: Path, summary: dict) -> bool:
    """File a completed run: its summary in the history, its report.html, ROOT/latest. False
    (and nothing done) if the history has it already. A report that fails is logged, not
    raised: the CSVs are complete, and a night's results must not be lost to a chart."""
    if not append_history(root, summary):
        return False
    run_dir = root / summary["run_id"]
    try:
        write_report(run_dir, root / HISTORY)
    except Exception as exc:  # noqa: BLE001
        log.error("report.html not written: %s: %s", type(exc).__name__, exc)
    point_latest(root, summary["run_id"])
    return True


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
