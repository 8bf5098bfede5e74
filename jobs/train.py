"""Train a captcha model on a folder of labelled images (the label is the file name).

    python -m jobs.train --input data/train --output models/mine.pt --arch seed-gap \\
        --epochs 30 --seed 0 --test data/test

Prints one line per epoch in the seed post's table format (also written to MODEL.history.csv),
keeps the epoch with the best validation captcha accuracy, and with --test ends with the post's
test line. The checkpoint describes itself: architecture, alphabet, length, image size, summary.
The run itself is core.training.train_folder.
"""
from __future__ import annotations

import argparse
import functools
from pathlib import Path

from core.config import LR_SCHEDULES, OPTIMIZERS
from core.logs import setup_logging
from core.models import available_models
from core.training import TrainingError, TrainingPlan, train_folder
from jobs.common import add_config_arg, add_runtime_args, fail, job_config, job_device


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="folder of labelled images (recursive)")
    p.add_argument("--output", required=True, help="checkpoint to write, e.g. models/mine.pt")
    p.add_argument("--arch", default=None, choices=available_models(),
                   help="network (default: model.arch)")
    p.add_argument("--epochs", type=int, default=None,
                   help="passes over the training split (default: train.epochs, auto: from the "
                        "number of images)")
    p.add_argument("--seed", type=int, default=None, help="split/init/shuffle seed (default: train.seed)")
    p.add_argument("--batch-size", type=int, default=None, help="default: train.batch_size")
    p.add_argument("--lr", type=float, default=None, help="Adam learning rate (default: train.lr)")
    p.add_argument("--lr-schedule", default=None, choices=LR_SCHEDULES,
                   help="learning-rate schedule (default: train.lr_schedule, warmup-cosine)")
    p.add_argument("--optimizer", default=None, choices=OPTIMIZERS,
                   help="default: train.optimizer, adamw (the seed: adam)")
    p.add_argument("--weight-decay", type=float, default=None, metavar="W",
                   help="default: train.weight_decay, 0.01 (the seed: 0)")
    p.add_argument("--clip", type=float, default=None, metavar="NORM",
                   help="largest gradient norm, 0 for none (default: train.clip, 5)")
    p.add_argument("--augment", default=None, action=argparse.BooleanOptionalAction,
                   help="randomly shift, turn, scale and recolour each training batch "
                        "(default: augment.enabled; the seed did not)")
    p.add_argument("--augment-share", type=float, default=None, metavar="S",
                   help="fraction of each batch's images augmented, the rest fed as they are "
                        "(default: augment.share, 1)")
    p.add_argument("--test", default=None, help="folder to test the best epoch on at the end")
    p.add_argument("--init", default=None, metavar="MODEL.pt",
                   help="start from this checkpoint's weights (fine-tuning); its architecture "
                        "is used, and it must read the config's alphabet, length and size")
    p.add_argument("--pretrained", default=None, metavar="MODEL.pt|none",
                   help="start a new model's features from this checkpoint's (any alphabet; "
                        "the same architecture and input height), or none for random weights "
                        "(default: model.pretrained, auto: the bundled models/ARCH-base.pt "
                        "where there is one and it fits)")
    p.add_argument("--corrections", default=None, metavar="FILE",
                   help="CSV with path and corrected columns (a run's review.csv or "
                        "suspect_labels.csv after review): those files are trained on with the "
                        "corrected labels, always in the training split")
    p.add_argument("--resume", action="store_true",
                   help="continue the training that was writing --output where it stopped (its "
                        "state is kept in OUTPUT.state.pt after every epoch until it finishes)")
    add_config_arg(p)
    add_runtime_args(p)
    return p.parse_args(argv)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    cfg = job_config(args, {"model.arch": args.arch, "model.pretrained": args.pretrained,
                            "train.epochs": args.epochs,
                            "train.seed": args.seed, "train.batch_size": args.batch_size,
                            "train.lr": args.lr, "train.lr_schedule": args.lr_schedule,
                            "train.optimizer": args.optimizer,
                            "train.weight_decay": args.weight_decay, "train.clip": args.clip,
                            "augment.enabled": args.augment, "augment.share": args.augment_share,
                            "runtime.device": args.device,
                            "runtime.workers": args.workers})
    device = job_device(cfg, share=False)
    plan = TrainingPlan(input=args.input, output=Path(args.output), test=args.test,
                        init=args.init, arch=args.arch, corrections=args.corrections,
                        resume=args.resume)
    try:
        train_folder(plan, cfg, device, say=functools.partial(print, flush=True))
    except TrainingError as exc:
        fail(str(exc))


if __name__ == "__main__":
    main()
