"""Nightly batch runner: predict every image of a folder, score it against the labels in the
file names, and write CSV predictions and accuracy reports.

    python run_batch.py --input DIR [--output ROOT] [--run-id ID] [--model PATH]

Writes ROOT/RUN_ID/{predictions,summary,confusion}.csv and config.yaml, appends the summary to
ROOT/history.csv and points ROOT/latest at the run. Exit codes: 0 done; 2 bad usage, config,
input folder or model (one line on stderr says which).
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from core.batch import InputError, append_history, new_run_id, point_latest, run_batch
from core.checkpoint import CheckpointError, load_checkpoint
from core.progress import progress
from jobs.common import (add_config_arg, add_runtime_args, fail, job_config, job_device,
                         setup_logging)

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_MODEL = ROOT / "models" / "default.pt"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="folder of captcha images (walked recursively)")
    p.add_argument("--output", default="runs", help="root folder of all runs (default: runs)")
    p.add_argument("--run-id", default=None,
                   help="name of this run's folder (default: UTC timestamp, e.g. 20261124T020000Z)")
    p.add_argument("--model", default=str(DEFAULT_MODEL),
                   help="checkpoint to use (default: the bundled models/default.pt)")
    p.add_argument("-b", "--batch-size", type=int, default=None,
                   help="images per batch (default: runtime.batch_size)")
    add_config_arg(p)
    add_runtime_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    cfg = job_config(args, {"runtime.batch_size": args.batch_size,
                            "runtime.device": args.device, "runtime.workers": args.workers})
    input_dir, root = Path(args.input), Path(args.output)
    device = job_device(cfg)
    try:
        ckpt = load_checkpoint(args.model, labels=cfg.labels, image=cfg.image, device=device)
    except (ValueError, CheckpointError) as exc:
        fail(str(exc))
    run_id = args.run_id or new_run_id(root)
    if (root / run_id).exists():
        fail(f"run {root / run_id} already exists; choose another --run-id")
    try:
        summary = run_batch(input_dir, root / run_id, ckpt, cfg, device, progress=progress)
    except InputError as exc:
        fail(str(exc))
    append_history(root, summary)
    point_latest(root, run_id)
    s = summary
    print(f"{s['images']} images ({s['labelled']} labelled, {s['unlabelled']} unlabelled, "
          f"{s['errors']} errors, {s['resized']} resized) in {float(s['wall_seconds']):.1f} s, "
          f"{s['images_per_second']} images/s on {s['device']}")
    print(f"captcha accuracy {float(s['captcha_accuracy']):.2%}, "
          f"character accuracy {float(s['char_accuracy']):.2%}, "
          f"mean confidence {float(s['mean_confidence']):.3f}")
    print(f"results: {root / run_id}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
