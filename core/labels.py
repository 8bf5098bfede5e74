"""Labels: reading them from file names, and turning them into model targets and back.

    codec = build_codec(cfg.labels)
    label, why = parse_label("abcd_000123.png", cfg.labels)   # ("ABCD", "")
    targets = codec.encode("ABCD")                             # int64 array, codec.target_length
    decoded = codec.decode(logits)                             # texts, confidences, probabilities
    loss = codec.loss(logits, targets)

Two codecs share this interface, and callers (training, `evaluate`, the batch runner) use only
it: FixedLengthCodec, one classifier per character position (the seed's heads), and CTCCodec,
labels of any length within `labels.length` read as a sequence of frames with a blank class.
A model's architecture says which it needs (core.models.codec_kind); the model is told its
output shape by the codec (`output_steps` x `output_classes`; a sequence model decides its own
number of frames).

Reserved index: IGNORE (-1) pads targets; a position holding it takes no part in the loss, which
is how unlabelled images (all IGNORE) ride along in a batch and how shorter labels are padded.
"""
from __future__ import annotations

import functools
import os
import unicodedata
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from .config import LabelConfig, case_fold

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
    text = label_form(stem, cfg.case)
    try:
        check_label(text, cfg)
    except LabelError as exc:
        return None, exc.kind
    return text, ""


def label_form(text: str, case: str) -> str:
    """A label as written (a file name's stem, a corrected cell) in the form labels are compared
    and trained in: Unicode NFC, then folded to `case` ("upper", "lower" or "none"). NFC because
    the same name can arrive in two spellings: macOS and some archivers write an accented or
    breved letter decomposed (`й` as `и` and a combining breve), most other systems composed;
    read as written, the decomposed one would be a character longer and put the bare mark in
    the alphabet. The fold keeps a character whose other case is two (core.config.case_fold)."""
    return case_fold(unicodedata.normalize("NFC", text), case)


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
    if not cfg.min_length <= len(text) <= cfg.max_length:
        raise LabelError("wrong length", f"{text!r} has {len(text)} characters, expected "
                                         f"{cfg.length}")


def is_labelled(targets: torch.Tensor) -> torch.Tensor:
    """Which rows of a batch's targets carry a label (an unlabelled or unreadable image's are
    all IGNORE; a label has at least one character)."""
    return targets[:, 0] != IGNORE


@dataclass
class Decoded:
    """A batch of predictions, on the CPU: texts, the probability that each whole text is right,
    the probability of each character read (NaN past a text's end), and, when the targets were
    given, -log of the probability the model gives the label itself (NaN if unlabelled): the
    label's loss, whose mean over a batch is the codec's loss, and whose probability is near 0
    when the model is sure the file name is wrong."""
    texts: list[str]
    confidence: torch.Tensor        # (B,)
    position_probs: torch.Tensor    # (B, labels' longest length)
    label_loss: torch.Tensor | None = None   # (B,)
    logits: torch.Tensor | None = None       # (B, steps, classes), as the model gave them

    @property
    def label_probability(self) -> torch.Tensor | None:
        return None if self.label_loss is None else torch.exp(-self.label_loss)


class FixedLengthCodec:
    """Exactly `length` characters, one classifier per position (the seed's heads).

    Class i at every position is alphabet[i]; there is no blank. A whole text's confidence is
    the product of its positions' top probabilities.
    """
    kind = "fixed-length"

    def __init__(self, cfg: LabelConfig):
        if not cfg.fixed_length:
            raise ValueError(f"labels.length is a range ({cfg.length}), but this model reads a "
                             "fixed number of characters: give one length, or train a sequence "
                             "model (--arch crnn)")
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
        """Targets for one label, as int64 numpy (the dataset writes them into a batch's numpy
        array; a tensor per label costs the decoding worker several times more); None
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
        given, logits = logits, logits.float().cpu()
        probs = logits.softmax(-1)
        top, idx = probs.max(-1)
        alphabet = self.alphabet
        texts = ["".join(alphabet[i] for i in row) for row in idx.tolist()]
        label_loss = None
        if targets is not None:
            targets = targets.cpu()
            per_position = F.cross_entropy(logits.transpose(1, 2), targets.clamp(min=0),
                                           reduction="none")
            label_loss = torch.where(is_labelled(targets), per_position.sum(-1),
                                     torch.tensor(float("nan")))
        return Decoded(texts, top.prod(-1), top, label_loss, given)


class CTCCodec:
    """Labels of labels.min_length to labels.max_length characters, read from a sequence of
    frames with connectionist temporal classification (Graves et al., 2006): class 0 is the
    blank, class i + 1 is alphabet[i]; a text is the frames' classes with repeats merged and
    blanks dropped, so a doubled character needs a blank between its two runs.

    Decoding is greedy (the most probable class of each frame), within the labels' lengths: where
    the greedy text is shorter or longer than any label can be (a doubled letter read once, a
    letter read twice), the most probable alignment that reads an allowed length is taken
    instead (best_path_of_length). A text's confidence is the
    probability the model gives that text, summed over every alignment of it to the frames (the
    CTC forward pass), so it means what it says and temperature scaling calibrates it as it
    does the fixed-length codec's; a character's probability is the highest its class reaches
    over the frames it was read from.
    """
    kind = "ctc"
    blank = 0

    def __init__(self, cfg: LabelConfig):
        self.cfg = cfg
        self.alphabet = cfg.alphabet
        self.index = {c: i + 1 for i, c in enumerate(cfg.alphabet)}

    @property
    def output_steps(self) -> int:
        return 0   # the model's frames, however many its input width gives

    @property
    def output_classes(self) -> int:
        return len(self.alphabet) + 1

    @property
    def target_length(self) -> int:
        return self.cfg.max_length

    def encode(self, text: str | None) -> np.ndarray:
        """Class indices padded with IGNORE to the longest label; None gives IGNORE only."""
        targets = np.full(self.target_length, IGNORE, dtype=np.int64)
        if text is not None:
            check_label(text, self.cfg)
            targets[:len(text)] = [self.index[c] for c in text]
        return targets

    def label_of(self, targets: list[int]) -> str | None:
        if not targets or targets[0] == IGNORE:
            return None
        return "".join(self.alphabet[i - 1] for i in targets if i != IGNORE)

    def _nll(self, logits: torch.Tensor, targets: torch.Tensor,
             reduction: str = "none") -> torch.Tensor:
        """-log p(targets) per row (targets padded with IGNORE, every row labelled)."""
        log_probs = logits.float().log_softmax(-1).transpose(0, 1)   # (frames, B, classes)
        lengths = (targets != IGNORE).sum(1)
        frames = torch.full((targets.shape[0],), log_probs.shape[0], dtype=torch.long)
        return F.ctc_loss(log_probs, targets[targets != IGNORE], frames, lengths.cpu(),
                          blank=self.blank, reduction=reduction, zero_infinity=True)

    def loss(self, logits: torch.Tensor, targets: torch.Tensor) -> torch.Tensor:
        """-log p(label) summed over the labelled images and averaged over them: what the
        fixed-length codec's summed cross-entropy is for its positions. logits: (B, frames,
        classes); targets: (B, longest length)."""
        labelled = is_labelled(targets)
        if not labelled.any():
            return logits.float().sum() * 0.0
        return self._nll(logits[labelled], targets[labelled], "sum") / labelled.sum()

    def decode(self, logits: torch.Tensor, targets: torch.Tensor | None = None) -> Decoded:
        given, logits = logits, logits.float().cpu()    # row by row: on the CPU, whatever device
        probs = logits.softmax(-1)
        top, best = probs.max(-1)                                     # (B, frames)
        read = [self._collapse(path, along)
                for path, along in zip(best.tolist(), top.tolist())]
        shortest, longest = self.cfg.min_length, self.cfg.max_length
        wrong = [row for row, (chars, _) in enumerate(read)
                 if not shortest <= len(chars) <= longest]
        if wrong:   # all such rows of the batch in one pass
            allowed = range(shortest, longest + 1)
            found = best_paths_of_length(probs[wrong].clamp(min=1e-30).log().numpy(), allowed,
                                         self.blank)
            for row, path in zip(wrong, found):
                if path is not None:
                    along = probs[row].gather(-1, torch.tensor(path).unsqueeze(-1)).squeeze(-1)
                    read[row] = self._collapse(path, along.tolist())
        texts = ["".join(chars) for chars, _ in read]
        position_probs = np.full((len(texts), longest), np.nan, dtype=np.float32)
        for row, (_, peaks) in enumerate(read):
            peaks = peaks[:longest]
            position_probs[row, :len(peaks)] = peaks
        # Each reading's probability over all its alignments (the CTC forward pass; an empty
        # reading's is that of all blanks: no target for ctc_loss)...
        width = max([longest, 1] + [len(t) for t in texts])
        encoded = np.full((len(texts), width), IGNORE, dtype=np.int64)
        for row, text in enumerate(texts):
            encoded[row, :len(text)] = [self.index[c] for c in text]
        encoded = torch.from_numpy(encoded)
        reading_loss = self._nll(logits, encoded)
        label_loss = None
        if targets is not None:
            # ... and the label's: the same number wherever the label was read, so the forward
            # pass runs again only for the labels read otherwise.
            targets = targets.cpu()
            label_loss = torch.full((len(texts),), float("nan"))
            labelled = is_labelled(targets)
            same = labelled & (encoded[:, :targets.shape[1]] == targets).all(1) & (
                encoded[:, targets.shape[1]:] == IGNORE).all(1)
            label_loss[same] = reading_loss[same]
            other = labelled & ~same
            if other.any():
                label_loss[other] = self._nll(logits[other], targets[other])
        return Decoded(texts, torch.exp(-reading_loss), torch.from_numpy(position_probs),
                       label_loss, given)

    def _collapse(self, path: list[int], along: list[float]) -> tuple[list[str], list[float]]:
        """The characters a path of frame classes reads (repeats merged, blanks dropped), and
        each one's highest probability (`along`: each frame's, of its class on the path) over
        the frames it was read from."""
        chars, peaks, previous = [], [], self.blank
        for k, p in zip(path, along):
            if k != self.blank and k != previous:
                chars.append(self.alphabet[k - 1])
                peaks.append(p)
            elif k != self.blank:
                peaks[-1] = max(peaks[-1], p)
            previous = k
        return chars, peaks


def best_path_of_length(log_probs: np.ndarray, lengths) -> list[int] | None:
    """best_paths_of_length for one row of frames (frames x classes)."""
    return best_paths_of_length(log_probs[None], lengths)[0]


def best_paths_of_length(log_probs: np.ndarray, lengths, blank: int = 0) -> list[list[int] | None]:
    """For each row of log_probs (rows x frames x classes), the most probable path of frame
    classes among those that read a text of one of `lengths` characters under CTC's rule
    (repeats merged, blanks dropped), or None where no path can. Viterbi over (characters read
    so far, the last frame's class), all rows at once: a frame either repeats the last frame's
    class (nothing new is read), is the blank, or reads one more character of a class other
    than the last frame's."""
    rows, frames, classes = log_probs.shape
    longest = max(lengths)
    score = np.full((rows, longest + 1, classes), -np.inf)
    score[:, 0, blank] = log_probs[:, 0, blank]
    score[:, 1, :] = log_probs[:, 0]
    score[:, 1, blank] = -np.inf
    # back[t, row, n, c]: the state at frame t - 1 on the best path to (n, c) at frame t, as
    # characters read * classes + class
    back = np.empty((frames, rows, longest + 1, classes), dtype=np.int64)
    row_at, count_at = np.ogrid[:rows, :longest + 1]
    states = count_at[..., None] * classes + np.arange(classes)   # (1, counts, classes): stay
    for t in range(1, frames):
        first = score.argmax(-1)                              # each count's best class
        top = score[row_at, count_at, first]
        masked = score.copy()
        masked[row_at, count_at, first] = -np.inf
        second = masked.argmax(-1)                            # and the next best
        # one more character: from one fewer, and the best class there other than this one
        is_first = (first[:, :-1, None] == np.arange(classes))
        grow = np.where(is_first, masked[row_at, count_at, second][:, :-1, None],
                        top[:, :-1, None])
        source = np.where(is_first, second[:, :-1, None], first[:, :-1, None])
        # or the same class again: nothing new read
        take = grow > score[:, 1:]
        new = score.copy()
        new[:, 1:] = np.where(take, grow, score[:, 1:])
        back[t] = states
        back[t, :, 1:] = np.where(take, states[:, :-1, :1] + source, states[:, 1:])
        # the blank: from any class, as many characters read
        new[..., blank] = top
        back[t, ..., blank] = count_at * classes + first
        score = new + log_probs[:, t, None, :]
    paths: list[list[int] | None] = []
    allowed = [n for n in lengths if n <= longest]
    for row in range(rows):
        value, n, c = max((score[row, n].max(), n, int(score[row, n].argmax())) for n in allowed)
        if not np.isfinite(value):
            paths.append(None)
            continue
        path, state = [c], n * classes + c
        for t in range(frames - 1, 0, -1):
            state = int(back[t, row, state // classes, state % classes])
            path.append(state % classes)
        paths.append(path[::-1])
    return paths


CODECS = {FixedLengthCodec.kind: FixedLengthCodec, CTCCodec.kind: CTCCodec}


def build_codec(cfg: LabelConfig, kind: str = FixedLengthCodec.kind):
    """The codec of `kind` (a model architecture's, core.models.codec_kind) for these labels;
    ValueError, saying what to change, where the two cannot work together."""
    try:
        codec = CODECS[kind]
    except KeyError:
        raise ValueError(f"unknown codec {kind!r}; available: {', '.join(CODECS)}") from None
    return codec(cfg)
