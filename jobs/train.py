"""Train a captcha model on a folder of labelled images (the label is the file name).

    python -m jobs.train --input data/train --output models/mine.pt --arch seed-gap \\
        --epochs 30 --seed 0 --test data/test

Prints one line per epoch in the seed post's table format (also written to MODEL.history.csv),
keeps the epoch with the best validation captcha accuracy, and with --test ends with the post's
test line. The checkpoint describes itself: architecture, alphabet, length, image size, summary.
"""
from __future__ import annotations

import argparse
import collections
import dataclasses
import datetime
import logging
import time
from pathlib import Path

import torch

from core.augment import build_augment
from core.calibration import MIN_MISREAD, calibrate
from core.checkpoint import (Checkpoint, CheckpointError, load_checkpoint, save_checkpoint,
                             with_model_settings)
from core.config import LR_SCHEDULES, OPTIMIZERS, Config, dump_config
from core.data import CaptchaDataset, Item, MemoryDataset, hold_in_memory, make_loader, scan_folder
from core.discover import DiscoveryError, discover_folder
from core.engine import Metrics, evaluate
from core.files import atomic_write, write_csv
from core.labels import build_codec
from core.models import ModelSpec, available_models, build_model, codec_kind, count_parameters
from core.progress import progress
from core.runtime import resolve_workers
from core.review import CorrectionsError, apply_corrections, read_corrections
from core.training import (EPOCH_COLUMNS, EpochResult, ResumeError, fit, load_training_state,
                           save_training_state, split_items, training_fingerprint)
from jobs.common import (add_config_arg, add_runtime_args, fail, job_config, job_device,
                         setup_logging)

log = logging.getLogger("train")


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


def seed_row(e: EpochResult) -> str:
    return (f"{e.epoch}\t{e.train_loss:.3f}\t{e.val_loss:.3f}\t"
            f"{e.val_chars_correct} ({100 * e.val_char_accuracy:.2f} %)\t"
            f"{e.val_captchas_correct} ({100 * e.val_captcha_accuracy:.2f} %)")


def test_row(m: Metrics) -> str:
    return (f"{m.loss:.3f}\t{m.chars_correct} ({100 * m.char_accuracy:.2f} %)\t"
            f"{m.captchas_correct} ({100 * m.captcha_accuracy:.2f} %)")


def labelled_items(folder: str, cfg: Config, corrections: dict[str, str]) -> list[Item]:
    items = scan_folder(folder, cfg.labels)
    if corrections:
        try:
            items = apply_corrections(items, corrections, "--corrections")
        except CorrectionsError as exc:
            fail(str(exc))
    labelled = [i for i in items if i.label is not None]
    skipped = collections.Counter(i.unlabelled_why for i in items if i.label is None)
    if skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.most_common())
        print(f"skipped {sum(skipped.values())} of {len(items)} files in {folder} that carry no "
              f"valid label: {reasons}")
    if len(labelled) < 2:
        fail(f"{folder} has {len(labelled)} labelled images; training needs at least 2")
    return labelled


def folder_settings(cfg: Config, folder: str) -> Config:
    """`cfg` with what it leaves auto (alphabet, lengths, separator, case, input size) found in
    `folder`, each finding printed; exit 2 where the folder does not say enough."""
    try:
        labels, image, notes = discover_folder(folder, cfg.labels, cfg.image,
                                               sequence=codec_kind(cfg.model.arch) == "ctc")
    except (DiscoveryError, ValueError) as exc:
        fail(f"{folder}: {exc}")
    for line in notes:
        print(f"found in {folder}: {line}")
    return dataclasses.replace(cfg, labels=labels, image=image)


def initial_checkpoint(args: argparse.Namespace, cfg: Config) -> Checkpoint | None:
    """The checkpoint --init names, refused (exit 2) if it does not fit the config or the
    --arch asked for."""
    if args.init is None:
        return None
    try:
        init = load_checkpoint(args.init, labels=cfg.labels, image=cfg.image)
    except CheckpointError as exc:
        fail(str(exc))
    if args.arch is not None and args.arch != init.arch:
        fail(f"--arch {args.arch} differs from the architecture of --init {args.init} "
             f"({init.arch}); leave --arch out to fine-tune it")
    return init


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    setup_logging()
    cfg = job_config(args, {"model.arch": args.arch, "train.epochs": args.epochs,
                            "train.seed": args.seed, "train.batch_size": args.batch_size,
                            "train.lr": args.lr, "train.lr_schedule": args.lr_schedule,
                            "train.optimizer": args.optimizer,
                            "train.weight_decay": args.weight_decay, "train.clip": args.clip,
                            "augment.enabled": args.augment, "augment.share": args.augment_share,
                            "runtime.device": args.device,
                            "runtime.workers": args.workers})
    device = job_device(cfg, share=False)
    if args.test and not Path(args.test).is_dir():  # found out now, not after hours of training
        fail(f"test folder {args.test} does not exist or is not a folder")
    if not Path(args.input).is_dir():
        fail(f"input folder {args.input} does not exist or is not a folder")
    init = initial_checkpoint(args, cfg)
    if init is not None:   # it reads what it was trained to read
        cfg = with_model_settings(dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, arch=init.arch)), init)
    else:
        cfg = folder_settings(cfg, args.input)
    torch.manual_seed(cfg.train.seed)   # the weights a fresh model starts from
    try:
        codec = build_codec(cfg.labels, codec_kind(cfg.model.arch))
        model = init.model if init is not None else build_model(
            cfg.model.arch, ModelSpec.from_config(cfg.image, codec))
    except ValueError as exc:   # labels or an image size that this architecture cannot read
        fail(str(exc))
    corrections = {}
    if args.corrections:
        try:
            corrections = read_corrections(args.corrections, cfg.labels)
        except CorrectionsError as exc:
            fail(str(exc))
    items = labelled_items(args.input, cfg, corrections)
    try:
        train_items, val_items = split_items([i for i in items if i.path not in corrections],
                                             cfg.train.val_fraction, cfg.train.seed)
    except ValueError as exc:
        fail(f"{args.input}: {exc} (corrected files are never held out for validation)")
    if corrections:  # what a person fixed is taught, not held out
        train_items += [i for i in items if i.path in corrections]
        print(f"{len(corrections)} corrected labels from {args.corrections}, all in the "
              "training split")
    if init is not None:
        print(f"starting from {init.path} (sha256 {init.sha256[:12]})")
    model = model.to(device)
    print(f"training {cfg.model.arch} ({count_parameters(model):,} parameters) on "
          f"{len(train_items)} images, validating on {len(val_items)}, device {device}")

    hold, why = hold_in_memory(cfg.runtime.in_memory, len(items), cfg.image)
    print(("holding the decoded images in memory" if hold else "decoding the images every "
           "epoch") + f" ({why})")

    def loader(items: list[Item], folder: str, shuffle: bool, batch_size: int,
               held: bool = False):
        dataset, workers = CaptchaDataset(folder, items, codec, cfg.image), cfg.runtime.workers
        if held:  # decoded once, on every core; then batches are copies in this process
            dataset, workers = MemoryDataset(dataset, resolve_workers(workers)), 0
        return make_loader(dataset, batch_size, workers, device, shuffle=shuffle,
                           seed=cfg.train.seed, persistent=True)

    output = Path(args.output)
    history_csv = output.with_suffix(".history.csv")
    epochs = cfg.train.epochs_for(len(train_items))
    state_path = output.with_suffix(".state.pt")
    fingerprint = training_fingerprint(cfg, train_items, val_items,
                                       init.sha256 if init is not None else "")
    resume_from = None
    if args.resume:
        try:
            resume_from = load_training_state(state_path, fingerprint)
        except ResumeError as exc:
            fail(str(exc))
        if resume_from is None:
            print(f"nothing to resume at {state_path}: starting from the beginning")
    rows: list[list] = []
    if resume_from is not None:
        rows = [EpochResult(**h).row() for h in resume_from.history]
        print(f"resuming after epoch {resume_from.epoch} of {epochs} from {state_path}")
    summary = {"input": str(args.input), "train_images": len(train_items),
               "val_images": len(val_items), "seed": cfg.train.seed,
               "batch_size": cfg.train.batch_size, "lr": cfg.train.lr,
               "lr_schedule": cfg.train.lr_schedule, "optimizer": cfg.train.optimizer,
               "weight_decay": cfg.train.weight_decay, "clip": cfg.train.clip,
               "planned_epochs": epochs, "device": str(device),
               "augment": dataclasses.asdict(cfg.augment) if cfg.augment.enabled else None}
    if init is not None:
        summary["init"] = {"model": init.path, "sha256": init.sha256}
    if corrections:
        summary["corrections"] = {"file": str(args.corrections), "labels": len(corrections)}

    def save() -> None:
        summary["saved_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        save_checkpoint(output, model, cfg.model.arch, cfg.labels, cfg.image, summary,
                        temperature=summary.get("calibration", {}).get("temperature", 1.0))

    def on_epoch(e: EpochResult, improved: bool) -> None:
        done = len(rows) + 1
        per_epoch = sum(r[-1] for r in rows + [e.row()]) / done
        left = f"\tabout {_duration(per_epoch * (epochs - e.epoch))} left" if e.epoch < epochs else ""
        print(seed_row(e) + left, flush=True)
        rows.append(e.row())
        write_csv(history_csv, EPOCH_COLUMNS, rows)
        if improved:  # a crash later still leaves the best model so far
            summary.update(epochs=e.epoch, best_epoch=e.epoch, best=dataclasses.asdict(e))
            save()

    print(f"{epochs} epochs of {len(train_items)} images"
          + (" (train.epochs auto)" if cfg.train.epochs == "auto" else ""))
    print("epoch\ttrain loss\tval loss\tchars ok (%)\tcaptchas ok (%)")
    start = time.monotonic()
    val_loader = loader(val_items, args.input, False, cfg.runtime.batch_size, hold)
    result = fit(model, loader(train_items, args.input, True, cfg.train.batch_size, hold),
                 val_loader,
                 codec, device, epochs, cfg.train.lr, cfg.train.lr_schedule,
                 on_epoch=on_epoch, progress=progress, augment=build_augment(cfg.augment),
                 optimizer=cfg.train.optimizer, weight_decay=cfg.train.weight_decay,
                 clip=cfg.train.clip or None, resume_from=resume_from,
                 save_state=lambda state: save_training_state(state_path, state, fingerprint))
    model.load_state_dict(result.best_state)
    summary.update(train_seconds=time.monotonic() - start, **result.summary())
    cal = calibrate(model, val_loader, codec, device, cfg.review.calibration_bins)
    summary["calibration"] = cal
    if cal["fitted"]:
        print(f"calibration on the validation split: temperature {cal['temperature']:.3f}, "
              f"expected calibration error {cal['ece_before']:.2%} -> {cal['ece_after']:.2%}")
    else:
        print(f"calibration: temperature left at 1, since the validation split has "
              f"{cal['misread']} misread captchas (too few to fit it; at least "
              f"{MIN_MISREAD})")
    save()
    with atomic_write(output.with_suffix(".config.yaml"), "w") as f:
        f.write(dump_config(cfg))
    print(f"best epoch {result.best_epoch}: {100 * result.best.val_captcha_accuracy:.2f} % of "
          f"validation captchas; saved {output}")
    if (warning := reads_nothing(result.best)) is not None:  # where a cron job's mail shows it
        log.warning(warning)
    if args.test:
        test_items = scan_folder(args.test, cfg.labels)
        metrics = evaluate(model, loader(test_items, args.test, False, cfg.runtime.batch_size),
                           codec, device, progress=progress, desc="test")
        summary["test"] = {"input": str(args.test), **metrics.as_dict()}
        save()
        print("loss\tchars ok (%)\tcaptchas ok (%)")
        print(test_row(metrics))
    state_path.unlink(missing_ok=True)   # finished: nothing left to resume


def reads_nothing(best: EpochResult) -> str | None:
    """A warning when the best epoch read no validation captcha whole, else None."""
    if best.val_captchas_correct:
        return None
    return (f"the model reads none of the {best.val_images} validation captchas "
            f"({100 * best.val_char_accuracy:.1f} % of their characters): train longer "
            f"(--epochs), on more images, or check the labels")


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


if __name__ == "__main__":
    main()
