"""Training and evaluation loops, shared by every job.

    loss = train_one_epoch(model, loader, codec, optimizer, device)
    metrics = evaluate(model, loader, codec, device)           # the one evaluate
    metrics = evaluate(model, loader, codec, device, on_batch=write_rows)
    metrics = evaluate(model, make_loader(..., predict_with=model), codec, device)  # CPU: workers predict

`evaluate` scores the labelled, decodable images of a loader; unlabelled images are predicted
but not scored, unreadable ones neither. `on_batch(batch, decoded)` sees every batch with its
predictions, which is how the batch runner writes its rows from the same pass.

Scoring holds for labels of any length: a captcha is right when the whole text is; characters
are counted by edit distance (a missing or extra character is one error, as a wrong one is),
which gives the character error rate; accuracy per position is only meaningful where every
label has the same length.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Iterable

import torch

from .labels import IGNORE, Decoded, is_labelled
from .progress import no_progress


@dataclass
class Metrics:
    images: int = 0            # every image seen
    errors: int = 0            # images that could not be decoded
    scored: int = 0            # labelled and decoded: the denominator of the accuracies
    loss_sum: float = 0.0      # summed over positions, per scored image
    chars_total: int = 0
    chars_correct: int = 0     # per label, its length less its edit distance (at least 0)
    char_errors: int = 0       # edit distances summed: substitutions, insertions, deletions
    captchas_correct: int = 0
    position_correct: list[int] = field(default_factory=list)

    @property
    def loss(self) -> float:
        return self.loss_sum / self.scored if self.scored else float("nan")

    @property
    def char_accuracy(self) -> float:
        return self.chars_correct / self.chars_total if self.chars_total else float("nan")

    @property
    def char_error_rate(self) -> float:
        return self.char_errors / self.chars_total if self.chars_total else float("nan")

    @property
    def captcha_accuracy(self) -> float:
        return self.captchas_correct / self.scored if self.scored else float("nan")

    @property
    def position_accuracy(self) -> list[float]:
        return [c / self.scored if self.scored else float("nan") for c in self.position_correct]

    def add(self, labels: Iterable[str | None], predictions: Iterable[str]) -> None:
        """Score predictions against labels; None labels are not scored."""
        for label, predicted in zip(labels, predictions):
            if label is None:
                continue
            errors = 0 if label == predicted else edit_distance(label, predicted)
            hits = [a == b for a, b in zip(label, predicted)]
            hits += [False] * (len(label) - len(hits))
            if len(self.position_correct) < len(hits):
                self.position_correct += [0] * (len(hits) - len(self.position_correct))
            for i, hit in enumerate(hits):
                self.position_correct[i] += hit
            self.scored += 1
            self.chars_total += len(label)
            self.chars_correct += max(0, len(label) - errors)
            self.char_errors += errors
            self.captchas_correct += label == predicted

    def as_dict(self) -> dict:
        return {"images": self.images, "errors": self.errors, "scored": self.scored,
                "loss": self.loss, "chars_correct": self.chars_correct,
                "chars_total": self.chars_total, "char_accuracy": self.char_accuracy,
                "char_error_rate": self.char_error_rate,
                "captchas_correct": self.captchas_correct,
                "captcha_accuracy": self.captcha_accuracy,
                "position_accuracy": self.position_accuracy}


def align(expected: str, predicted: str) -> list[tuple[str, str]]:
    """The two texts aligned with the fewest edits (Levenshtein): (expected, predicted) pairs,
    "" standing for a character missing on that side; equal pairs are the characters read
    right."""
    n, m = len(expected), len(predicted)
    cost = [[i + j if i * j == 0 else 0 for j in range(m + 1)] for i in range(n + 1)]
    for i in range(1, n + 1):
        for j in range(1, m + 1):
            cost[i][j] = min(cost[i - 1][j - 1] + (expected[i - 1] != predicted[j - 1]),
                             cost[i - 1][j] + 1, cost[i][j - 1] + 1)
    pairs, i, j = [], n, m
    while i or j:   # back from the end, preferring a substitution, then a deletion
        if i and j and cost[i][j] == cost[i - 1][j - 1] + (expected[i - 1] != predicted[j - 1]):
            pairs.append((expected[i - 1], predicted[j - 1]))
            i, j = i - 1, j - 1
        elif i and cost[i][j] == cost[i - 1][j] + 1:
            pairs.append((expected[i - 1], ""))
            i -= 1
        else:
            pairs.append(("", predicted[j - 1]))
            j -= 1
    return pairs[::-1]


def edit_distance(expected: str, predicted: str) -> int:
    return sum(a != b for a, b in align(expected, predicted))


def _autocast(device: torch.device):
    # float16 on CUDA. On a CPU the prepared model itself decides (runtime.cpu_precision:
    # core.inference.BFloat16Autocast where the CPU has AMX); training stays float32 there.
    return torch.autocast(device_type=device.type, dtype=torch.float16,
                          enabled=device.type == "cuda")


def cpu_autocast(precision: str):
    """CPU autocast to bfloat16 where `precision` (train.precision, or what runtime.cpu_precision
    resolved to) is "bfloat16"; otherwise a context that changes nothing."""
    return torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bfloat16")


def train_one_epoch(model: torch.nn.Module, loader: Iterable[dict], codec,
                    optimizer: torch.optim.Optimizer, device: torch.device,
                    progress: Callable = no_progress, desc: str = "train",
                    augment: Callable[[torch.Tensor], torch.Tensor] | None = None,
                    clip: float | None = None, scheduler=None,
                    precision: str = "float32") -> float:
    """One pass over `loader`; returns the mean batch loss (summed over positions). `augment`
    changes each batch of images before the model sees it (core.augment); `clip` caps the
    gradients' norm (a recurrent layer's can spike); `scheduler` steps after every batch;
    precision "bfloat16" runs the forward pass under CPU autocast to it (train.precision), the
    loss, gradients and weights staying float32."""
    if device.type != "cpu":
        precision = "float32"       # CUDA training has no autocast (train.precision: the CPU's)
    model.train()
    total, batches = 0.0, 0
    for batch in progress(loader, desc=desc):
        targets = batch["target"].to(device, non_blocking=True)
        if not (targets != IGNORE).any():
            continue
        images = batch["image"].to(device, non_blocking=True)
        if augment is not None:
            images = augment(images)
        optimizer.zero_grad(set_to_none=True)
        with cpu_autocast(precision):
            logits = model(images)
        loss = codec.loss(logits.float(), targets)
        loss.backward()
        if clip is not None:
            torch.nn.utils.clip_grad_norm_(model.parameters(), clip)
        optimizer.step()
        if scheduler is not None:
            scheduler.step()
        total += loss.item()
        batches += 1
    return total / batches if batches else float("nan")


@torch.inference_mode()
def predict(model: torch.nn.Module, images: torch.Tensor, device: torch.device) -> torch.Tensor:
    """The model's logits for a batch of uint8 images, on `device` (mixed precision on CUDA):
    how every prediction runs, in the main process (evaluate) or in a loader's workers
    (core.data.PredictingDataset)."""
    with _autocast(device):
        return model(images.to(device, non_blocking=True))


@torch.inference_mode()
def evaluate(model: torch.nn.Module, loader: Iterable[dict], codec, device: torch.device,
             on_batch: Callable[[dict, Decoded], None] | None = None,
             progress: Callable = no_progress, desc: str = "evaluate",
             metrics: Metrics | None = None) -> Metrics:
    """Predict every batch and score it against the labels its targets encode. Pass `metrics`
    to go on counting into it (a resumed run); it is up to date whenever on_batch is called."""
    model.eval()
    metrics = Metrics() if metrics is None else metrics
    for batch in progress(loader, desc=desc):
        if "logits" in batch:  # predicted by the loader's workers (make_loader's predict_with)
            logits = batch["logits"]
        else:
            logits = predict(model, batch["image"], device)
        decoded = codec.decode(logits, batch["target"])
        ok = [not e for e in batch["error"]]
        scored = is_labelled(batch["target"])
        if scored.any():   # the codec's loss, from the labels' own losses decode gave
            metrics.loss_sum += float(decoded.label_loss[scored].sum())
        batch_labels = [codec.label_of(t) for t in batch["target"].tolist()]
        metrics.add([lab if good else None for lab, good in zip(batch_labels, ok)],
                    decoded.texts)
        metrics.images += len(ok)
        metrics.errors += ok.count(False)
        if on_batch is not None:
            on_batch(batch, decoded)
    return metrics
