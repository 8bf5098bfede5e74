"""A night's run under its output root, as cron starts it (the caller holds the root's lock):

    summary, alerts = night(root, run_id, input_dir, ckpt, cfg, device, limits=Thresholds())

A --resume of a run that already finished files it again if a crash cut its filing short, and
does nothing more; otherwise the run's folder is made (refused if it exists and this is not a
resume), SIGTERM and SIGINT become a stop at the next batch (Interrupted, resumable), the pass
runs with its log lines also in RUN/run.log, and the finished run is filed (history, report,
latest) and checked against the quality thresholds.
"""
from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Callable

import torch

from .batch import InputError, Interrupted, run_batch
from .checkpoint import Checkpoint
from .config import Config
from .logs import log_to_file
from .progress import no_progress
from .run_record import Thresholds, last_completed_run, quality_alerts, read_summary, record_run
from .run_state import ResumeError, read_state
from .signals import StopSignals

log = logging.getLogger("run_batch")


def night(root: Path, run_id: str, input_dir: Path, ckpt: Checkpoint, cfg: Config,
          device: torch.device, limits: Thresholds, resume: bool = False, only_new: bool = False,
          progress: Callable = no_progress, cluster=None) -> tuple[dict, list[str]]:
    """The run's summary row and its quality alerts (one line each, also logged). Raises
    InputError (nothing read; a run folder it made is removed), ResumeError (cannot resume or
    start as asked) and Interrupted (stopped by a signal; everything committed)."""
    run_dir = root / run_id
    state = read_state(run_dir) if resume else None
    if state is not None and state.complete:
        summary = read_summary(run_dir)
        record_run(root, summary)   # in case its filing was cut short after the summary
        log.warning("run %s is already complete; nothing to do", run_id)
        return summary, []
    created = not run_dir.exists()
    try:
        run_dir.mkdir(exist_ok=resume)
    except FileExistsError:
        raise ResumeError(f"run {run_dir} already exists; choose another --run-id, or --resume "
                          "it") from None
    previous = last_completed_run(root)
    with log_to_file(run_dir / "run.log"), StopSignals() as stop:
        try:
            summary = run_batch(input_dir, run_dir, ckpt, cfg, device, resume=resume,
                                progress=progress, stop=stop.get, only_new=only_new,
                                cluster=cluster)
        except InputError:
            if created:
                shutil.rmtree(run_dir)  # nothing was read; leave no run behind
            raise
        except Interrupted as exc:
            log.warning("%s; continue with: --resume --run-id %s", exc, run_id)
            raise
        record_run(root, summary)
        log.info("done: %s images, %s errors, captcha accuracy %s, %s images/s",
                 summary["images"], summary["errors"], summary["captcha_accuracy"],
                 summary["images_per_second"])
        alerts = quality_alerts(summary, previous, limits)
        for alert in alerts:
            log.warning("quality alert: %s", alert)
    return summary, alerts
