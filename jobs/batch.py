"""Nightly batch runner: predict every image of a folder, score it against the labels in the
file names, and write CSV predictions and accuracy reports.

    python run_batch.py --input DIR [--output ROOT] [--run-id ID [--resume]] [--model PATH]
                        [--quiet] [--min-accuracy X] [--max-drop P] [--max-error-rate R]

Writes ROOT/RUN_ID/{predictions,summary,confusion}.csv, config.yaml, run.log and manifest.json,
appends the summary to ROOT/history.csv and points ROOT/latest at the run. Holds ROOT/.lock
while it runs. Exit codes: 0 done; 2 bad usage, config, input folder or model (one line on
stderr says which); 3 a quality alert (all files written first); 4 another run holds ROOT;
143/130 stopped by SIGTERM/SIGINT at a batch boundary, resumable with --resume.
"""
from __future__ import annotations

import argparse
import contextlib
import math
import sys
from pathlib import Path

import torch

from core.batch import InputError, Interrupted, new_run_id
from core.checkpoint import CheckpointError, load_model, with_model_settings
from core.files import read_number
from core.lock import Locked, exclusive_lock
from core.logs import setup_logging
from core.night import night
from core.onnx_model import is_onnx_path
from core.progress import no_progress, progress
from core.run_record import Thresholds
from core.run_state import ResumeError
from core.runtime import freeze_loaded_objects
from jobs.common import (EXIT_ALERT, EXIT_LOCKED, add_config_arg, add_runtime_args, fail,
                         fraction, job_config, job_device, percentage_points)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "default.pt"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0].replace("\n", " "))
    p.add_argument("--input", required=True, help="folder of captcha images (walked recursively)")
    p.add_argument("--output", default="runs", help="root folder of all runs (default: runs)")
    p.add_argument("--run-id", default=None,
                   help="name of this run's folder (default: UTC timestamp, e.g. 20261124T020000Z)")
    p.add_argument("--model", default=str(DEFAULT_MODEL),
                   help="checkpoint to use, or an ONNX file exported from one (python -m "
                        "jobs.export), read with ONNX Runtime (default: the bundled "
                        "models/default.pt)")
    p.add_argument("-b", "--batch-size", type=int, default=None,
                   help="images per batch (default: runtime.batch_size)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run --run-id from its last commit (after a crash, kill or "
                        "SIGTERM); starts it if it does not exist")
    p.add_argument("--only-new", action="store_true",
                   help="predict only files that are new or changed since the last completed run "
                        "(path, size, modification time); carry the other rows over")
    p.add_argument("--cluster", default=None, metavar="ADDRESS",
                   help="read on a Dask cluster: a scheduler's address (tcp://host:8786), or "
                        "local:N for N worker processes on this machine; the input and the "
                        "model must be at the same paths on every worker (docs/cluster.md)")
    p.add_argument("--quiet", action="store_true",
                   help="for cron: only warnings and the one-line summary (run.log has it all)")
    p.add_argument("--min-accuracy", type=fraction, default=None, metavar="X",
                   help="exit 3 if captcha accuracy is below X (a fraction, e.g. 0.95)")
    p.add_argument("--max-drop", type=percentage_points, default=None, metavar="P",
                   help="exit 3 if captcha accuracy fell more than P percentage points below "
                        "the previous completed run in ROOT/history.csv")
    p.add_argument("--max-error-rate", type=fraction, default=None, metavar="R",
                   help="exit 3 if more than this share of the files is unreadable (e.g. 0.01)")
    add_config_arg(p)
    add_runtime_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging(quiet=args.quiet)
    cfg = job_config(args, {"runtime.batch_size": args.batch_size,
                            "runtime.device": args.device, "runtime.workers": args.workers})
    input_dir, root = Path(args.input), Path(args.output)
    # on a cluster the workers predict, on the device runtime.device names there (core.cluster);
    # this process only scores and writes, on the CPU
    device = (job_device(cfg, onnx=is_onnx_path(args.model)) if args.cluster is None
              else torch.device("cpu"))
    try:
        ckpt = load_model(args.model, labels=cfg.labels, image=cfg.image, device=device)
    except (ValueError, CheckpointError) as exc:
        fail(str(exc))
    cfg = with_model_settings(cfg, ckpt)   # the checkpoint says what it reads
    freeze_loaded_objects()
    limits = Thresholds(args.min_accuracy, args.max_drop, args.max_error_rate)
    if args.resume and not args.run_id:
        fail("--resume needs the --run-id of the run to continue")
    try:
        with exclusive_lock(root), _cluster(args.cluster) as cluster:
            run_id = args.run_id or new_run_id(root)
            summary, alerts = night(root, run_id, input_dir, ckpt, cfg, device, limits,
                                    resume=args.resume, only_new=args.only_new,
                                    progress=no_progress if args.quiet else progress,
                                    cluster=cluster)
    except Locked as exc:
        print(f"locked: {exc}", file=sys.stderr)
        sys.exit(EXIT_LOCKED)
    except (InputError, ResumeError) as exc:
        fail(str(exc))
    except Interrupted as exc:
        sys.exit(128 + exc.signum)
    _report(summary, root / summary["run_id"], args.quiet)
    if alerts:
        sys.exit(EXIT_ALERT)


@contextlib.contextmanager
def _cluster(address: str | None):
    """The Dask client --cluster asks for (None without it: Dask is not imported)."""
    if address is None:
        yield None
        return
    from core.cluster import ClusterError, connect
    try:
        with connect(address) as client:
            yield client
    except ClusterError as exc:
        fail(str(exc))


def _report(s: dict, run_dir: Path, quiet: bool) -> None:
    scored = not math.isnan(read_number(s["captcha_accuracy"]))
    accuracy = (f"captcha accuracy {float(s['captcha_accuracy']):.2%}, "
                f"character accuracy {float(s['char_accuracy']):.2%}" if scored
                else "not scored (no labelled image decoded)")
    if quiet:
        print(f"{s['images']} images, {s['errors']} errors, {accuracy}, "
              f"{s['images_per_second']} images/s: {run_dir}")
    else:
        carried = (f"; {s['new']} new, {s['carried']} carried from run {s['carried_from']}"
                   if s.get("carried_from") else "")
        print(f"{s['images']} images ({s['labelled']} labelled, {s['unlabelled']} unlabelled, "
              f"{s['errors']} errors, {s['resized']} resized{carried}) in "
              f"{float(s['wall_seconds']):.1f} s, {s['images_per_second']} images/s on "
              f"{s['device']}")
        print(f"{accuracy}, mean confidence {float(s['mean_confidence']):.3f}")
        print(f"results: {run_dir}")
    unlistable = int(s.get("unlistable_folders") or 0)
    if unlistable:
        print(f"{unlistable} folder(s) under the input could not be listed, so their files are "
              f"not in this run: {run_dir / 'run.log'} names them")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
