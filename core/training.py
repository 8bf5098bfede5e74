"""The training procedure (the seed's by default, plus batch augmentation unless it is turned
off): seeded split, Adam, summed cross-entropy, evaluation after every epoch, the best epoch kept.

    train_items, val_items = split_items(labelled_items, val_fraction=0.1, seed=0)
    result = fit(model, train_loader, val_loader, codec, device, epochs=30, lr=1e-3,
                 on_epoch=print_row)
    model.load_state_dict(result.best_state)
"""
from __future__ import annotations

import copy
import math
import time
from dataclasses import asdict, dataclass, field
from typing import Callable, Sequence, TypeVar

import torch

from .engine import Metrics, evaluate, train_one_epoch
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


def _scheduler(optimizer: torch.optim.Optimizer, name: str, epochs: int):
    """Per-epoch learning-rate schedule: None keeps the rate constant (the seed's)."""
    if name == "constant":
        return None
    if name == "cosine":
        return torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=epochs)
    raise ValueError(f"unknown learning-rate schedule {name!r}; available: constant, cosine")


def fit(model: torch.nn.Module, train_loader, val_loader, codec, device: torch.device,
        epochs: int, lr: float, lr_schedule: str = "constant",
        on_epoch: Callable[[EpochResult, bool], None] | None = None,
        progress: Callable = no_progress,
        augment: Callable[[torch.Tensor], torch.Tensor] | None = None) -> FitResult:
    optimizer = torch.optim.Adam(model.parameters(), lr=lr)
    scheduler = _scheduler(optimizer, lr_schedule, epochs)
    result = FitResult()
    best: EpochResult | None = None
    for epoch in range(1, epochs + 1):
        start = time.monotonic()
        train_loss = train_one_epoch(model, train_loader, codec, optimizer, device, progress,
                                     desc=f"epoch {epoch}/{epochs}", augment=augment)
        if not math.isfinite(train_loss):
            raise FloatingPointError(f"training loss is {train_loss} at epoch {epoch}")
        if scheduler is not None:
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
    return result
