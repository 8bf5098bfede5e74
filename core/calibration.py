"""Does confidence mean what it says? Expected calibration error, and temperature scaling.

    bins = CalibrationBins(15); bins.add(confidences, corrects); bins.ece
    temperature = fit_temperature(logits, targets, codec)     # on the validation split

A prediction's confidence is the probability that the whole captcha is read right. Over
labelled images, the expected calibration error (ECE) is the gap between confidence and
accuracy, averaged over equal-width confidence bins weighted by how many predictions fall in
each (Guo et al., 2017, "On Calibration of Modern Neural Networks"). Temperature scaling
divides the logits by one scalar T, fitted on the validation split so that the confidences
best predict which captchas are read right. It changes no per-position reading, only how sure
the model says it is (a sequence model's length-constrained decoding may pick another
alignment).

Guo et al. fit T to the labels' likelihood, which for one classification is the same thing.
Here a confidence is the probability of the whole reading, and for a sequence model the
labels' likelihood and that probability part ways: on inefficacy_upper's test split (a CTC
model reading 31 % of its captchas) the likelihood's best T, about 1, leaves the confidences at
0.27 on average; the readings' fit, 0.91, at 0.31, the share read right (docs/review.md).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Iterable

import torch
import torch.nn.functional as F

from .engine import evaluate
from .labels import is_labelled


@dataclass
class CalibrationBins:
    """Counts per equal-width confidence bin; fed a batch or a row at a time."""
    bins: int
    count: list[int] = field(default_factory=list)
    confidence: list[float] = field(default_factory=list)   # sums
    correct: list[int] = field(default_factory=list)

    def __post_init__(self):
        self.count = self.count or [0] * self.bins
        self.confidence = self.confidence or [0.0] * self.bins
        self.correct = self.correct or [0] * self.bins

    def add(self, confidences: Iterable[float], corrects: Iterable[bool]) -> None:
        for conf, ok in zip(confidences, corrects):
            k = min(int(conf * self.bins), self.bins - 1)
            self.count[k] += 1
            self.confidence[k] += conf
            self.correct[k] += bool(ok)

    @property
    def total(self) -> int:
        return sum(self.count)

    @property
    def ece(self) -> float:
        """NaN without any labelled prediction."""
        if not self.total:
            return math.nan
        return sum(abs(self.confidence[k] - self.correct[k]) for k in range(self.bins)) / self.total

    def rows(self) -> list[list]:
        """[bin low, bin high, predictions, mean confidence, accuracy] for each non-empty bin."""
        return [[k / self.bins, (k + 1) / self.bins, n, self.confidence[k] / n, self.correct[k] / n]
                for k, n in enumerate(self.count) if n]


def scaled_ece(logits: torch.Tensor, targets: torch.Tensor, codec, temperature: float,
               bins: int) -> float:
    decoded = codec.decode(logits / temperature)
    truth = [codec.label_of(t) for t in targets.tolist()]
    calibration = CalibrationBins(bins)
    calibration.add(decoded.confidence.tolist(), [p == t for p, t in zip(decoded.texts, truth)])
    return calibration.ece


def reading_loss(logits: torch.Tensor, truth: list[str | None], codec,
                 temperature: float) -> float:
    """Binary cross-entropy between each captcha's confidence at `temperature` and whether its
    reading equals its label: what the fitted temperature minimises."""
    decoded = codec.decode(logits / temperature)
    confidence = decoded.confidence.float().clamp(1e-7, 1 - 1e-7)
    right = torch.tensor([p == t for p, t in zip(decoded.texts, truth)], dtype=torch.float32)
    return F.binary_cross_entropy(confidence, right).item()


def fit_temperature(logits: torch.Tensor, targets: torch.Tensor, codec,
                    bounds: tuple[float, float] = (0.05, 20.0)) -> float:
    """The T > 0 that minimises reading_loss on (logits, targets), by golden-section search over
    log T (no learning rate to tune). Confidence falls as T grows, so the loss has one valley
    in practice; the search keeps to `bounds`."""
    logits = logits.float()
    truth = [codec.label_of(t) for t in targets.tolist()]
    lo, hi = math.log(bounds[0]), math.log(bounds[1])

    def loss(log_t: float) -> float:
        return reading_loss(logits, truth, codec, math.exp(log_t))

    ratio = (math.sqrt(5) - 1) / 2
    a, b = lo + (1 - ratio) * (hi - lo), lo + ratio * (hi - lo)
    fa, fb = loss(a), loss(b)
    for _ in range(40):   # the bracket shrinks to 0.618^40 of log(400): T within 1e-7
        if fa <= fb:
            hi, b, fb = b, a, fa
            a = lo + (1 - ratio) * (hi - lo)
            fa = loss(a)
        else:
            lo, a, fa = a, b, fb
            b = lo + ratio * (hi - lo)
            fb = loss(b)
    return math.exp((lo + hi) / 2)


# Fewer misread validation captchas than this and the temperature is left at 1: with none, the
# loss only falls as the temperature does (every prediction right, sharper is better), and a
# handful cannot tell over- from underconfidence.
MIN_MISREAD = 5


def calibrate(model: torch.nn.Module, loader, codec, device: torch.device, bins: int,
              min_misread: int = MIN_MISREAD) -> dict:
    """Fit the temperature on `loader` (the validation split): {"temperature", "fitted",
    "misread", "ece_before", "ece_after", "images"}; not fitted (temperature 1) where fewer than
    `min_misread` captchas are misread."""
    logits, targets = [], []

    def keep(batch: dict, decoded) -> None:
        labelled = is_labelled(batch["target"])  # unreadable files carry no label either
        logits.append(decoded.logits.float().cpu()[labelled])
        targets.append(batch["target"][labelled])

    metrics = evaluate(model, loader, codec, device, on_batch=keep, desc="calibrate")
    all_logits, all_targets = torch.cat(logits), torch.cat(targets)
    misread = metrics.scored - metrics.captchas_correct
    fitted = misread >= min_misread
    temperature = fit_temperature(all_logits, all_targets, codec) if fitted else 1.0
    return {"temperature": temperature, "fitted": fitted, "misread": misread,
            "ece_before": scaled_ece(all_logits, all_targets, codec, 1.0, bins),
            "ece_after": scaled_ece(all_logits, all_targets, codec, temperature, bins),
            "images": len(all_targets)}
