"""Labels: reading them from file names, and turning them into model targets and back.

    codec = build_codec(cfg.labels)
    label, why = parse_label("abcd_000123.png", cfg.labels)   # ("ABCD", "")
    targets = codec.encode("ABCD")                             # int64 array, codec.target_length
    decoded = codec.decode(logits)                             # texts, confidences, probabilities
    loss = codec.loss(logits, targets)

Callers (training, `evaluate`, the batch runner) use only this interface, so a variable-length
codec (CTC: `output_steps` time steps, a blank class, padded targets) can be added beside
FixedLengthCodec without changing them. The model is told its output shape by the codec
(`output_steps` x `output_classes`).

Reserved index: IGNORE (-1) pads targets; a position holding it takes no part in the loss, which
is how unlabelled images ride along in a batch.
"""
from __future__ import annotations

import functools
import os
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import LabelConfig

IGNORE = -1


class LabelError(ValueError):
    """A text that cannot be a label under the configured alphabet and length.

    `kind` is a short fixed phrase ("wrong length", ...) for counting; the message has details.
    """

    def __init__(self, kind: str, detail: str):
        super().__init__(f"{kind}: {detail}")
        self.kind = kind


def parse_label(filename: str, cfg: LabelConfig) -> tuple[str | None, str]:
    """The label a file name carries and "", or None and the LabelError.kind saying why not.

    `ABCD.png`, `ABCD_000123.png` and, with upper-case folding, `abcd.png` all give "ABCD".
    Only the base name counts; the label is what precedes the first separator.
    """
    stem = os.path.splitext(os.path.basename(filename))[0]
    if cfg.separator:
        stem = stem.split(cfg.separator, 1)[0]
    text = fold_case(stem, cfg.case)
    try:
        check_label(text, cfg)
    except LabelError as exc:
        return None, exc.kind
    return text, ""


def fold_case(text: str, case: str) -> str:
    return text.upper() if case == "upper" else text.lower() if case == "lower" else text


@functools.lru_cache(maxsize=8)
def _characters(alphabet: str) -> frozenset[str]:
    return frozenset(alphabet)


def check_label(text: str, cfg: LabelConfig) -> None:
    if not text:
        raise LabelError("no label", "the name is empty before the separator")
    outside = sorted(set(text) - _characters(cfg.alphabet))
    if outside:
        raise LabelError("character outside the alphabet",
                         f"{text!r} has {''.join(outside)!r}")
    if len(text) != cfg.length:
        raise LabelError("wrong length", f"{text!r} has {len(text)} characters, expected {cfg.length}")


@dataclass
class Decoded:
    """A batch of predictions: texts, the probability that each whole text is right (product of
    the per-position top probabilities), those per-position probabilities, and, when the
    targets were given, the probability the model gives the label itself (NaN if unlabelled):
    near 0 when the model is sure the file name is wrong."""
    texts: list[str]
    confidence: torch.Tensor        # (B,)
    position_probs: torch.Tensor    # (B, positions)
    label_probability: torch.Tensor | None = None   # (B,)
    logits: torch.Tensor | None = None               # (B, steps, classes), as the model gave them


class FixedLengthCodec:
    """Exactly `length` characters, one classifier per position (the seed's heads).

    Class i at every position is alphabet[i]; there is no blank.
    """

    def __init__(self, cfg: LabelConfig):
        self.cfg = cfg
        self.alphabet = cfg.alphabet
        self.index = {c: i for i, c in enumerate(cfg.alphabet)}

    @property
    def output_steps(self) -> int:
        return self.cfg.length

    @property
    def output_classes(self) -> int:
        return len(self.alphabet)

    @property
    def target_length(self) -> int:
        return self.cfg.length

    def encode(self, text: str | None) -> np.ndarray:
        """Targets for one label, as int64 (the dataset writes them into a batch's numpy array:
        a tensor per label cost the decoding worker ~6 us per captcha, this ~1.4); None
        (unlabelled) gives IGNORE everywhere."""
        if text is None:
            return np.full(self.target_length, IGNORE, dtype=np.int64)
        check_label(text, self.cfg)
        return np.array([self.index[c] for c in text], dtype=np.int64)

    def label_of(self, targets: list[int]) -> str | None:
        """The label that `encode` turned into `targets`; None for an unlabelled image."""
        if IGNORE in targets:
            return None
        return "".join(self.alphabet[i] for i in targets)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """Cross-entropy summed over positions, each averaged over the labelled images (the seed's
        loss). logits: (B, steps, classes); targets: (B, length)."""
        per_position = F.cross_entropy(logits.transpose(1, 2).float(), targets,
                                       ignore_index=IGNORE, reduction="none")
        labelled = (targets != IGNORE).sum(0).clamp(min=1)
        return (per_position.sum(0) / labelled).sum()

    def decode(self, logits: torch.Tensor, targets: torch.Tensor | None = None) -> Decoded:
        probs = logits.float().softmax(-1)
        top, idx = probs.max(-1)
        alphabet = self.alphabet
        texts = ["".join(alphabet[i] for i in row) for row in idx.tolist()]
        label_probability = None
        if targets is not None:
            targets = targets.to(probs.device)
            of_label = probs.gather(-1, targets.clamp(min=0).unsqueeze(-1)).squeeze(-1).prod(-1)
            label_probability = torch.where((targets != IGNORE).all(1), of_label,
                                            torch.full_like(of_label, float("nan")))
        return Decoded(texts, top.prod(-1), top, label_probability, logits)


def build_codec(cfg: LabelConfig) -> FixedLengthCodec:
    return FixedLengthCodec(cfg)
