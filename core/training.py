"""A training run on a folder of labelled captchas, from the folder to a calibrated,
self-describing checkpoint (what `python -m jobs.train` does):

    plan = TrainingPlan(input="data/train", output=Path("models/mine.pt"), test="data/test")
    train_folder(plan, cfg, device, say=print)     # TrainingError: cannot start as asked

What the folder leaves open (alphabet, lengths, separator, case, size) is found in it unless
the config pins it or --init's checkpoint says it; a seeded split; the model built or the
checkpoint fine-tuned; the images held decoded in memory when they fit; core.fit's loop with
the best epoch saved as soon as it is reached, the history in OUTPUT.history.csv and a state
to resume from in OUTPUT.state.pt; calibration on the validation split; --test at the end.
Every line a person should see goes to `say`, in the seed post's table format.
"""
from __future__ import annotations

import collections
import dataclasses
import datetime
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch

from .augment import build_augment
from .calibration import MIN_MISREAD, calibrate
from .checkpoint import Checkpoint, CheckpointError, load_checkpoint, save_checkpoint, with_model_settings
from .config import AUTO, Config, dump_config
from .data import CaptchaDataset, Item, MemoryDataset, hold_in_memory, make_loader, scan_folder
from .discover import DiscoveryError, discover_folder
from .engine import Metrics, evaluate
from .files import atomic_write, write_csv
from .fit import (EPOCH_COLUMNS, EpochResult, ResumeError, fit, load_training_state,
                  save_training_state, split_items, training_fingerprint)
from .labels import build_codec
from .models import ModelSpec, build_model, codec_kind, count_parameters
from .pretrained import NONE, PretrainedError, class_names, pretrained_for, transfer
from .progress import progress
from .review import CorrectionsError, apply_corrections, read_corrections
from .runtime import resolve_workers

log = logging.getLogger("train")


class TrainingError(ValueError):
    """The training cannot start as asked; the message says what is wrong."""


@dataclass(frozen=True)
class TrainingPlan:
    input: str                      # folder of labelled images (recursive)
    output: Path                    # checkpoint to write
    test: str | None = None         # folder to test the best epoch on at the end
    init: str | None = None         # checkpoint to fine-tune (its architecture and settings)
    arch: str | None = None         # the architecture asked for by name (--arch), if any
    corrections: str | None = None  # reviewed CSV whose corrected labels are trained on
    resume: bool = False            # continue from OUTPUT.state.pt


def _epoch_line(e: EpochResult) -> str:
    return (f"{e.epoch}\t{e.train_loss:.3f}\t{e.val_loss:.3f}\t"
            f"{e.val_chars_correct} ({100 * e.val_char_accuracy:.2f} %)\t"
            f"{e.val_captchas_correct} ({100 * e.val_captcha_accuracy:.2f} %)")


def _test_line(m: Metrics) -> str:
    return (f"{m.loss:.3f}\t{m.chars_correct} ({100 * m.char_accuracy:.2f} %)\t"
            f"{m.captchas_correct} ({100 * m.captcha_accuracy:.2f} %)")


def reads_nothing(best: EpochResult) -> str | None:
    """A warning when the best epoch read no validation captcha whole, else None."""
    if best.val_captchas_correct:
        return None
    return (f"the model reads none of the {best.val_images} validation captchas "
            f"({100 * best.val_char_accuracy:.1f} % of their characters): train longer "
            f"(--epochs), on more images, or check the labels")


def _duration(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 90 else f"{seconds:.0f} s"


def _initial_checkpoint(plan: TrainingPlan, cfg: Config) -> Checkpoint | None:
    if plan.init is None:
        return None
    try:
        init = load_checkpoint(plan.init, labels=cfg.labels, image=cfg.image)
    except CheckpointError as exc:
        raise TrainingError(str(exc)) from None
    if plan.arch is not None and plan.arch != init.arch:
        raise TrainingError(f"--arch {plan.arch} differs from the architecture of --init "
                            f"{plan.init} ({init.arch}); leave --arch out to fine-tune it")
    return init


def _pretrained(cfg: Config, model: torch.nn.Module, codec,
                say: Callable[[str], None]) -> Checkpoint | None:
    """The base model.pretrained names, its weights copied into `model`; None if none."""
    try:
        base = pretrained_for(cfg, say)
    except PretrainedError as exc:
        raise TrainingError(str(exc)) from None
    if base is not None:
        copied = transfer(base, model, codec)
        shared = len(set(class_names(codec)) & set(class_names(base.codec)))
        say(f"starting from the pretrained {base.path} (sha256 {base.sha256[:12]}): "
            f"{copied} of {len(model.state_dict())} tensors, the output rows of {shared} of "
            f"{len(class_names(codec))} classes")
    return base


def _folder_settings(cfg: Config, folder: str, say: Callable[[str], None]) -> Config:
    """`cfg` with what it leaves auto (alphabet, lengths, separator, case, input size) found in
    `folder`, each finding said."""
    try:
        labels, image, notes = discover_folder(folder, cfg.labels, cfg.image,
                                               sequence=codec_kind(cfg.model.arch) == "ctc")
    except (DiscoveryError, ValueError) as exc:
        raise TrainingError(f"{folder}: {exc}") from None
    for line in notes:
        say(f"found in {folder}: {line}")
    return dataclasses.replace(cfg, labels=labels, image=image)


def _labelled_items(folder: str, cfg: Config, corrections: dict[str, str],
                    say: Callable[[str], None], warn: bool) -> tuple[list[Item], dict[str, str]]:
    """The folder's labelled items, and every file left out, with why. `warn`: name links to
    folders and folders that cannot be listed (False where discovery has named them)."""
    items = scan_folder(folder, cfg.labels, warn=warn)
    if corrections:
        try:
            items = apply_corrections(items, corrections, "--corrections")
        except CorrectionsError as exc:
            raise TrainingError(str(exc)) from None
    labelled = [i for i in items if i.label is not None]
    skipped = collections.Counter(i.unlabelled_why for i in items if i.label is None)
    if skipped:
        reasons = ", ".join(f"{n} {why}" for why, n in skipped.most_common())
        say(f"skipped {sum(skipped.values())} of {len(items)} files in {folder} that carry no "
            f"valid label: {reasons} (listed in the model's .left_out.csv)")
    if len(labelled) < 2:
        raise TrainingError(f"{folder} has {len(labelled)} labelled images; training needs at "
                            "least 2")
    return labelled, {i.path: f"no valid label: {i.unlabelled_why}"
                      for i in items if i.label is None}


class _LeftOut:
    """Every file of the training folder that is not learnt from, with why, in `path` (the
    model's .left_out.csv; none when every file was): those without a valid label, known
    before training, and those that cannot be read, known once the loaders it watches have
    handed out every file (after the first epoch), when the run says which they were."""

    def __init__(self, path: Path, unlabelled: dict[str, str], say: Callable[[str], None]):
        self.path, self.unlabelled, self.say = path, unlabelled, say
        self.unreadable: dict[str, str] = {}
        self.reported = False
        path.unlink(missing_ok=True)   # an earlier run's list is stale
        if unlabelled:
            self._write()

    def watch(self, loader, items: list[Item]) -> _Watched:
        return _Watched(loader, items, self.unreadable)

    def _write(self) -> None:
        write_csv(self.path, ["path", "why"], sorted({**self.unlabelled,
                                                      **self.unreadable}.items()))

    def after_epoch(self) -> None:
        if not self.unreadable or self.reported:
            return
        self.reported = True
        self._write()
        first = ", ".join(f"{path} ({why})" for path, why in sorted(self.unreadable.items())[:3])
        self.say(f"left out {len(self.unreadable)} files that could not be read: {first}"
                 + (", ..." if len(self.unreadable) > 3 else "")
                 + f"; every file left out is in {self.path}")


class _Watched:
    """A loader whose batches' decoding errors go into `found` (path -> why), otherwise the
    loader itself: a damaged file's target is ignored, leaving it out of training, and the
    run says which files those were."""

    def __init__(self, loader, items: list[Item], found: dict[str, str]):
        self.loader, self.items, self.found = loader, items, found

    def __iter__(self):
        for batch in self.loader:
            for index, error in zip(torch.as_tensor(batch["index"]).tolist(), batch["error"]):
                if error:
                    self.found.setdefault(self.items[index].path, f"unreadable: {error}")
            yield batch

    def __len__(self) -> int:
        return len(self.loader)

    def __getattr__(self, name: str):
        return getattr(self.loader, name)


class _Record:
    """The run's record as it goes: the checkpoint's summary, saved with the model whenever
    it improves, and the history, one row per epoch with the time left."""

    def __init__(self, model: torch.nn.Module, cfg: Config, output: Path, epochs: int,
                 rows: list[list], summary: dict, say: Callable[[str], None]):
        self.model, self.cfg, self.output, self.epochs = model, cfg, output, epochs
        self.rows, self.summary, self.say = rows, summary, say

    def save(self) -> None:
        self.summary["saved_at"] = datetime.datetime.now(datetime.timezone.utc).isoformat()
        save_checkpoint(self.output, self.model, self.cfg.model.arch, self.cfg.labels,
                        self.cfg.image, self.summary,
                        temperature=self.summary.get("calibration", {}).get("temperature", 1.0))

    def on_epoch(self, e: EpochResult, improved: bool) -> None:
        done = len(self.rows) + 1
        per_epoch = sum(r[-1] for r in self.rows + [e.row()]) / done
        left = (f"\tabout {_duration(per_epoch * (self.epochs - e.epoch))} left"
                if e.epoch < self.epochs else "")
        self.say(_epoch_line(e) + left)
        self.rows.append(e.row())
        write_csv(self.output.with_suffix(".history.csv"), EPOCH_COLUMNS, self.rows)
        if improved:  # a crash later still leaves the best model so far
            self.summary.update(epochs=e.epoch, best_epoch=e.epoch, best=dataclasses.asdict(e))
            self.save()


def train_folder(plan: TrainingPlan, cfg: Config, device: torch.device,
                 say: Callable[[str], None] = lambda line: None) -> dict:
    """Train as `plan` says; returns the checkpoint's summary. TrainingError when it cannot
    start as asked (a missing folder, labels or a size the architecture cannot read, too few
    labelled images, bad corrections, a state that cannot be resumed)."""
    if plan.test and not Path(plan.test).is_dir():  # found out now, not after hours of training
        raise TrainingError(f"test folder {plan.test} does not exist or is not a folder")
    if not Path(plan.input).is_dir():
        raise TrainingError(f"input folder {plan.input} does not exist or is not a folder")
    if plan.init is not None and cfg.model.pretrained not in (AUTO, NONE):
        raise TrainingError(f"--init continues a trained model, model.pretrained "
                            f"({cfg.model.pretrained}) starts a new one: give one of the two")
    init = _initial_checkpoint(plan, cfg)
    if init is not None:   # it reads what it was trained to read
        cfg = with_model_settings(dataclasses.replace(
            cfg, model=dataclasses.replace(cfg.model, arch=init.arch)), init)
    else:
        cfg = _folder_settings(cfg, plan.input, say)
    torch.manual_seed(cfg.train.seed)   # the weights a fresh model starts from
    try:
        codec = build_codec(cfg.labels, codec_kind(cfg.model.arch))
        model = init.model if init is not None else build_model(
            cfg.model.arch, ModelSpec.from_config(cfg.image, codec))
    except ValueError as exc:   # labels or an image size that this architecture cannot read
        raise TrainingError(str(exc)) from None
    base = None if init is not None else _pretrained(cfg, model, codec, say)
    corrections = {}
    if plan.corrections:
        try:
            corrections = read_corrections(plan.corrections, cfg.labels)
        except CorrectionsError as exc:
            raise TrainingError(str(exc)) from None
    items, unlabelled = _labelled_items(plan.input, cfg, corrections, say,
                                        warn=init is not None)   # else discovery walked it
    try:
        train_items, val_items = split_items([i for i in items if i.path not in corrections],
                                             cfg.train.val_fraction, cfg.train.seed)
    except ValueError as exc:
        raise TrainingError(f"{plan.input}: {exc} (corrected files are never held out for "
                            "validation)") from None
    if corrections:  # what a person fixed is taught, not held out
        train_items += [i for i in items if i.path in corrections]
        say(f"{len(corrections)} corrected labels from {plan.corrections}, all in the "
            "training split")
    if init is not None:
        say(f"starting from {init.path} (sha256 {init.sha256[:12]})")
    model = model.to(device)
    say(f"training {cfg.model.arch} ({count_parameters(model):,} parameters) on "
        f"{len(train_items)} images, validating on {len(val_items)}, device {device}")
    hold, why = hold_in_memory(cfg.runtime.in_memory, len(items), cfg.image)
    say(("holding the decoded images in memory" if hold else "decoding the images every "
         "epoch") + f" ({why})")

    def loader(items: list[Item], folder: str, shuffle: bool, batch_size: int, held: bool = False):
        dataset = CaptchaDataset(folder, items, codec, cfg.image, cfg.runtime.fast_png)
        workers = cfg.runtime.workers
        if held:  # decoded once, on every core; then batches are copies in this process
            dataset, workers = MemoryDataset(dataset, resolve_workers(workers)), 0
        return make_loader(dataset, batch_size, workers, device, shuffle=shuffle,
                           seed=cfg.train.seed, persistent=True)

    pixels = cfg.image.height * cfg.image.width
    epochs = cfg.train.epochs_for(len(train_items), pixels)
    state_path = plan.output.with_suffix(".state.pt")
    origin = init if init is not None else base
    fingerprint = training_fingerprint(cfg, train_items, val_items,
                                       origin.sha256 if origin is not None else "")
    resume_from = None
    if plan.resume:
        try:
            resume_from = load_training_state(state_path, fingerprint)
        except ResumeError as exc:
            raise TrainingError(str(exc)) from None
        if resume_from is None:
            say(f"nothing to resume at {state_path}: starting from the beginning")
    rows: list[list] = []
    if resume_from is not None:
        rows = [EpochResult(**h).row() for h in resume_from.history]
        say(f"resuming after epoch {resume_from.epoch} of {epochs} from {state_path}")
    summary = {"input": str(plan.input), "train_images": len(train_items),
               "val_images": len(val_items), "seed": cfg.train.seed,
               "batch_size": cfg.train.batch_size, "lr": cfg.train.lr,
               "lr_schedule": cfg.train.lr_schedule, "optimizer": cfg.train.optimizer,
               "weight_decay": cfg.train.weight_decay, "clip": cfg.train.clip,
               "planned_epochs": epochs, "device": str(device),
               "augment": dataclasses.asdict(cfg.augment) if cfg.augment.enabled else None}
    if init is not None:
        summary["init"] = {"model": init.path, "sha256": init.sha256}
    if base is not None:
        summary["pretrained"] = {"model": base.path, "sha256": base.sha256}
    if corrections:
        summary["corrections"] = {"file": str(plan.corrections), "labels": len(corrections)}
    record = _Record(model, cfg, plan.output, epochs, rows, summary, say)
    left_out = _LeftOut(plan.output.with_suffix(".left_out.csv"), unlabelled, say)

    def on_epoch(e: EpochResult, improved: bool) -> None:
        record.on_epoch(e, improved)
        left_out.after_epoch()

    full = cfg.train.epochs_for(len(train_items))     # as for an input of pass_pixels
    say(f"{epochs} epochs of {len(train_items)} images" + (
        "" if cfg.train.epochs != "auto" else " (train.epochs auto)" if epochs == full
        else f" (train.epochs auto: {epochs} rather than {full} for {cfg.image.width}x"
             f"{cfg.image.height} inputs, larger than train.pass_pixels)"))
    say("epoch\ttrain loss\tval loss\tchars ok (%)\tcaptchas ok (%)")
    start = time.monotonic()
    val_loader = left_out.watch(loader(val_items, plan.input, False, cfg.runtime.batch_size,
                                       hold), val_items)
    train_loader = left_out.watch(loader(train_items, plan.input, True, cfg.train.batch_size,
                                         hold), train_items)
    result = fit(model, train_loader, val_loader, codec, device, epochs, cfg.train.lr,
                 cfg.train.lr_schedule,
                 on_epoch=on_epoch, progress=progress, augment=build_augment(cfg.augment),
                 optimizer=cfg.train.optimizer, weight_decay=cfg.train.weight_decay,
                 clip=cfg.train.clip or None, settled=cfg.train.settled,
                 resume_from=resume_from, precision=cfg.train.precision,
                 save_state=lambda state: save_training_state(state_path, state, fingerprint))
    model.load_state_dict(result.best_state)
    summary.update(train_seconds=time.monotonic() - start, **result.summary())
    cal = calibrate(model, val_loader, codec, device, cfg.review.calibration_bins)
    summary["calibration"] = cal
    if cal["fitted"]:
        say(f"calibration on the validation split: temperature {cal['temperature']:.3f}, "
            f"expected calibration error {cal['ece_before']:.2%} -> {cal['ece_after']:.2%}")
    else:
        say(f"calibration: temperature left at 1, since the validation split has "
            f"{cal['misread']} misread captchas (too few to fit it; at least {MIN_MISREAD})")
    record.save()
    with atomic_write(plan.output.with_suffix(".config.yaml"), "w") as f:
        f.write(dump_config(cfg))
    if len(result.history) < epochs:
        say(f"stopped after epoch {len(result.history)} of {epochs}: every validation captcha "
            f"read in the last {cfg.train.settled} epochs (train.settled)")
    say(f"best epoch {result.best_epoch}: {100 * result.best.val_captcha_accuracy:.2f} % of "
        f"validation captchas; saved {plan.output}")
    if (warning := reads_nothing(result.best)) is not None:  # where a cron job's mail shows it
        log.warning(warning)
    if plan.test:
        test_items = scan_folder(plan.test, cfg.labels)
        metrics = evaluate(model, loader(test_items, plan.test, False, cfg.runtime.batch_size),
                           codec, device, progress=progress, desc="test")
        summary["test"] = {"input": str(plan.test), **metrics.as_dict()}
        record.save()
        say("loss\tchars ok (%)\tcaptchas ok (%)")
        say(_test_line(metrics))
    state_path.unlink(missing_ok=True)   # finished: nothing left to resume
    return summary
