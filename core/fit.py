"""The training procedure: seeded split, the codec's loss, evaluation after every epoch, the
best epoch kept, and everything needed to go on after a kill saved at the end of each epoch.

    train_items, val_items = split_items(labelled_items, val_fraction=0.1, seed=0)
    result = fit(model, train_loader, val_loader, codec, device, epochs=30, lr=1e-3,
                 on_epoch=print_row)
    model.load_state_dict(result.best_state)
    result = fit(..., schedule="warmup-cosine", optimizer="adamw", weight_decay=0.01,
                 clip=5.0, save_state=write_aside)     # the job's default recipe
    result = fit(..., resume_from=read_back())          # continues where a killed run stopped

The seed's procedure is Adam at a constant rate; "cosine" decays the rate once per epoch;
"warmup-cosine" raises it linearly over the first 5 % of the steps, then lets it fall along a
cosine to zero, once per step (the one-cycle shape of Smith & Topin, 2019), which needs no
tuning from a thousand images to a hundred thousand.
"""
from __future__ import annotations

import copy
import dataclasses
import hashlib
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Callable, Sequence, TypeVar

import torch

from .config import LR_SCHEDULES, OPTIMIZERS, Config, RuntimeConfig, dump_config
from .engine import Metrics, evaluate, train_one_epoch
from .files import atomic_write
from .progress import no_progress

T = TypeVar("T")

EPOCH_COLUMNS = ("epoch", "train_loss", "val_loss", "val_chars_correct", "val_chars_total",
                 "val_char_accuracy", "val_captchas_correct", "val_images",
                 "val_captcha_accuracy", "seconds")


@dataclass
class EpochResult:
    epoch: int
    train_loss: float
    val_loss: float
    val_chars_correct: int
    val_chars_total: int
    val_char_accuracy: float
    val_captchas_correct: int
    val_images: int
    val_captcha_accuracy: float
    seconds: float

    def row(self) -> list:
        return [getattr(self, c) for c in EPOCH_COLUMNS]


@dataclass
class FitResult:
    history: list[EpochResult] = field(default_factory=list)
    best_epoch: int = 0
    best_state: dict | None = None

    @property
    def best(self) -> EpochResult:
        return self.history[self.best_epoch - 1]

    def summary(self) -> dict:
        return {"epochs": len(self.history), "best_epoch": self.best_epoch,
                "best": asdict(self.best), "history": [asdict(h) for h in self.history]}


def split_items(items: Sequence[T], val_fraction: float, seed: int) -> tuple[list[T], list[T]]:
    """A seeded random split: int(n * (1 - val_fraction)) for training, the rest for validation
    (the seed's random_split sizes)."""
    if len(items) < 2:
        raise ValueError(f"need at least 2 labelled images to split, got {len(items)}")
    order = torch.randperm(len(items), generator=torch.Generator().manual_seed(seed)).tolist()
    n_train = min(len(items) - 1, max(1, int(len(items) * (1 - val_fraction))))
    return [items[i] for i in order[:n_train]], [items[i] for i in order[n_train:]]


def _better(new: Metrics, old: EpochResult | None) -> bool:
    # Whole captchas read is what users get; validation loss breaks ties.
    if old is None:
        return True
    if new.captcha_accuracy != old.val_captcha_accuracy:
        return new.captcha_accuracy > old.val_captcha_accuracy
    return new.loss < old.val_loss


WARMUP = 0.05   # share of the steps over which "warmup-cosine" raises the rate


def _optimizer(model: torch.nn.Module, name: str, lr: float, weight_decay: float):
    if name == "adam":
        return torch.optim.Adam(model.parameters(), lr=lr, weight_decay=weight_decay)
    if name == "adamw":   # decoupled weight decay (Loshchilov & Hutter, 2019)
        return torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=weight_decay)
    raise ValueError(f"unknown optimizer {name!r}; available: {', '.join(OPTIMIZERS)}")


def _scheduler(optimizer: torch.optim.Optimizer, name: str, epochs: int, steps_per_epoch: int):
    """The learning-rate schedule and whether it steps once per batch (else once per epoch);
    None keeps the rate constant (the seed's)."""
    if name == "constant":
        return None, False
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs), False
    if name == "warmup-cosine":
        total = max(1, epochs * steps_per_epoch)
        warmup = max(1, round(WARMUP * total))

        def factor(step: int) -> float:
            if step < warmup:
                return (step + 1) / warmup
            return 0.5 * (1 + math.cos(math.pi * min(1.0, (step - warmup) / max(1, total - warmup))))

        return torch.optim.lr_scheduler.LambdaLR(optimizer, factor), True
    raise ValueError(f"unknown learning-rate schedule {name!r}; "
                     f"available: {', '.join(LR_SCHEDULES)}")


@dataclass
class TrainingState:
    """Where a training stands after an epoch: enough to go on from there as if it had never
    stopped (the weights, optimiser and schedule, the best epoch so far, and the random
    generators that shuffle the batches and draw the augmentation)."""
    epoch: int
    model: dict
    optimizer: dict
    scheduler: dict | None
    best_epoch: int
    best_state: dict | None
    history: list[dict]
    torch_rng: torch.Tensor
    loader_rng: torch.Tensor | None

    def as_dict(self) -> dict:
        return asdict(self)


class ResumeError(ValueError):
    """A saved training state that cannot be continued; the message says why."""


def training_fingerprint(cfg: Config, train_items: Sequence, val_items: Sequence,
                         start_sha256: str = "") -> str:
    """What a resumed training must find unchanged: the settings (but where it runs), the split
    and its labels, the model it started from."""
    parts = [dump_config(dataclasses.replace(cfg, runtime=RuntimeConfig())),
             "\n".join(f"{i.path}\t{i.label}" for i in train_items),
             "\n".join(i.path for i in val_items), start_sha256]
    return hashlib.sha256("\n--\n".join(parts).encode("utf-8")).hexdigest()


def save_training_state(path: Path, state: TrainingState, fingerprint: str) -> None:
    with atomic_write(path) as f:
        torch.save({"fingerprint": fingerprint, **state.as_dict()}, f)


def load_training_state(path: Path, fingerprint: str) -> TrainingState | None:
    """The state saved at `path`, None if there is none; ResumeError if it is unreadable or was
    written for other settings, images or starting model."""
    if not path.exists():
        return None
    try:
        saved = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # a damaged or foreign file; torch raises many types
        raise ResumeError(f"{path} is not a readable training state ({type(exc).__name__})")
    if saved.pop("fingerprint", None) != fingerprint:
        raise ResumeError(f"cannot resume from {path}: the settings, the labelled images or "
                          "the starting model changed since it was written; train without "
                          "--resume to start over")
    return TrainingState(**saved)


def fit(model: torch.nn.Module, train_loader, val_loader, codec, device: torch.device,
        epochs: int, lr: float, lr_schedule: str = "constant",
        on_epoch: Callable[[EpochResult, bool], None] | None = None,
        progress: Callable = no_progress,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
        optimizer: str = "adam", weight_decay: float = 0.0, clip: float | None = None,
        settled: int = 0,
        save_state: Callable[[TrainingState], None] | None = None,
        resume_from: TrainingState | None = None, precision: str = "float32") -> FitResult:
    """Train for `epochs`, validating after each; `save_state` gets the state after every epoch
    (after on_epoch), and `resume_from` such a state continues the run after its epoch. With
    `settled`, training stops early once every validation captcha has been read in that many
    epochs in a row (is_settled)."""
    opt = _optimizer(model, optimizer, lr, weight_decay)
    scheduler, per_step = _scheduler(opt, lr_schedule, epochs, len(train_loader))
    result = FitResult()
    best: EpochResult | None = None
    generator = getattr(train_loader, "generator", None)
    first = 1
    if resume_from is not None:
        model.load_state_dict(resume_from.model)
        opt.load_state_dict(resume_from.optimizer)
        if scheduler is not None and resume_from.scheduler is not None:
            scheduler.load_state_dict(resume_from.scheduler)
        result.history = [EpochResult(**h) for h in resume_from.history]
        result.best_epoch, result.best_state = resume_from.best_epoch, resume_from.best_state
        best = result.history[result.best_epoch - 1] if result.best_epoch else None
        torch.set_rng_state(resume_from.torch_rng)
        if generator is not None and resume_from.loader_rng is not None:
            generator.set_state(resume_from.loader_rng)
        first = resume_from.epoch + 1
    for epoch in range(first, epochs + 1):
        start = time.monotonic()
        train_loss = train_one_epoch(model, train_loader, codec, opt, device, progress,
                                     desc=f"epoch {epoch}/{epochs}", augment=augment, clip=clip,
                                     scheduler=scheduler if per_step else None,
                                     precision=precision)
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training loss is {train_loss} at epoch {epoch}")
        if scheduler is not None and not per_step:
            scheduler.step()
        metrics = evaluate(model, val_loader, codec, device, progress=progress,
                           desc=f"validate {epoch}/{epochs}")
        row = EpochResult(epoch, train_loss, metrics.loss, metrics.chars_correct,
                          metrics.chars_total, metrics.char_accuracy, metrics.captchas_correct,
                          metrics.scored, metrics.captcha_accuracy, time.monotonic() - start)
        improved = _better(metrics, best)
        if improved:
            best = row
            result.best_epoch = epoch
            result.best_state = copy.deepcopy(model.state_dict())
        result.history.append(row)
        if on_epoch is not None:
            on_epoch(row, improved)  # the model holds this epoch's weights during the call
        if save_state is not None:
            save_state(TrainingState(
                epoch, copy.deepcopy(model.state_dict()), copy.deepcopy(opt.state_dict()),
                scheduler.state_dict() if scheduler is not None else None, result.best_epoch,
                result.best_state, [asdict(h) for h in result.history], torch.get_rng_state(),
                generator.get_state() if generator is not None else None))
        if is_settled(result.history, settled):
            break
    return result


def is_settled(history: Sequence[EpochResult], epochs: int) -> bool:
    """Whether the last `epochs` epochs (at least 1) each read every validation captcha: the
    validation split has nothing left to tell, and the best of them (by loss) is kept."""
    return 0 < epochs <= len(history) and all(
        h.val_images > 0 and h.val_captchas_correct == h.val_images for h in history[-epochs:])
