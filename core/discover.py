"""What a folder of named captchas says about itself: the alphabet, the label lengths, how the
labels are written in the file names, and the images' size.

    labels, image, notes = discover_folder("data/mine", cfg.labels, cfg.image, sequence=True)
    labels, notes = discover_labels(file_names, cfg.labels)     # "auto" settings filled in
    image, notes = discover_image(folder, paths, cfg.image, sequence=True)

Only settings left "auto" are found; a pinned one is kept as it is. Each function also returns
one line per finding, for the training job to print.

- Separator: a character after which the names carry a suffix (`ABCD_0001.png`,
  `7W4M6G8A-0.png`): the candidate that most names carry followed by digits only, or that more
  than half of the names carry at all; none if no candidate qualifies (`74eyg.png`).
- Case: a folder whose labels are all one case is folded to it (a name in the other case still
  reads). Where both cases occur, the rarer one is taken for noise (labels typed with caps lock
  on) and folded into the other when it is at most a quarter of the cased letters; above that,
  case is taken to matter and labels are read as written.
- Lengths: from the shortest label to the longest, leaving out lengths that under RARE_LENGTH
  of the names have (a stray `notes.png` is not a two-character captcha; it is reported).
- Alphabet: every character of those labels, in code point order (any script), the labels
  taken in Unicode NFC (core.labels.label_form: a name written decomposed, as macOS writes
  `é`, reads as the composed letter). Characters in fewer than RARE_CHARACTER labels are
  named (a mistyped name shows up there), not left out.
- Size: from up to 256 images spread over the folder. A sequence model reads them scaled to a
  height of SEQUENCE_HEIGHT at their median aspect ratio (core.images.fit_size), small images
  scaled up: thin strokes need the pixels (72x24 captchas read at 72x24, a frame then 4 pixels
  of it, lost one of their doubled letters in 9 of 289 test images, every error of that run);
  but at most SEQUENCE_CHAR_WIDTH pixels wide per character of the longest label, wider images
  squeezed to that: CTC leaves its all-blank start the later the more frames there are per
  character (our generator's 284x46 captchas read at 296x48 never left it; at 160x48 they do;
  a tighter cap cost inefficacy_upper accuracy: docs/accuracy.md, 2026-12-02). A
  per-position model reads them at their median size.
- Crop: where the text covers at most CONTENT_SHARE of the median image (small text in a wide
  empty frame), every image is cut to its text before it is fitted, and the wide gaps between
  its characters closed (AUTO_CROP, core.images.crop_to_content), and the size above is found
  from the cut images: the model's rows go to the characters, not to the frame
  (inefficacy_upper's text is a third of its 80-pixel height), and each character gets the
  same share of the width however far apart it was drawn (docs/accuracy.md).
"""
from __future__ import annotations

import collections
import os
import re
import statistics
from pathlib import Path

from .config import AUTO, ImageConfig, LabelConfig, length_bounds
from .data import list_files
from .images import ImageError, crop_to_content, decode_rgb, read_bytes
from .labels import label_form

IMAGE_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"})
SEPARATORS = ("_", "-", ".", " ", "+", "~", "#", "=", ",")
NOISY_CASE = 0.25       # the rarer case, as a share of cased letters, at most this: folded away
RARE_LENGTH = 0.01      # a label length fewer names than this share have: taken for a stray name
RARE_CHARACTER = 3      # a character in fewer labels than this is named when the alphabet is
                        # printed: most often a typo in a name (kept: it may be real)
SEQUENCE_HEIGHT = 48    # a sequence model's input height: tall enough for thin strokes
SEQUENCE_CHAR_WIDTH = 40  # a sequence model's widest input per character of the longest label:
                          # 5 of crnn's 8-pixel frames
SAMPLE = 256
AUTO_CROP = "packed"    # what image.crop auto cuts with, where it cuts
CONTENT_SHARE = 0.5     # image.crop auto: images cut to their text when it covers at most this
                        # share of the median image (the rest an empty frame)


class DiscoveryError(ValueError):
    """The folder does not say enough to train on; the message says what to set."""


def discover_folder(folder: str | Path, labels: LabelConfig, image: ImageConfig,
                    sequence: bool) -> tuple[LabelConfig, ImageConfig, list[str]]:
    """The label and image settings with what they leave auto found in `folder` (recursively),
    and a line per finding; DiscoveryError where the folder does not say enough."""
    paths = list_files(folder)
    labels, notes = discover_labels(image_names(paths), labels)
    image, more = discover_image(folder, paths, image, sequence, labels.max_length)
    return labels, image, notes + more


def image_names(paths: list[str]) -> list[str]:
    """The base names of the paths whose extension is an image's."""
    return [os.path.basename(p) for p in paths if os.path.splitext(p)[1].lower() in IMAGE_SUFFIXES]


def discover_labels(names: list[str], pinned: LabelConfig) -> tuple[LabelConfig, list[str]]:
    """`pinned` with its auto settings found from the file `names`."""
    stems = [os.path.splitext(n)[0] for n in names]
    if not stems:
        raise DiscoveryError("no image files to learn the labels from")
    notes = []
    separator = pinned.separator
    if separator == AUTO:
        separator = _separator(stems)
        notes.append(f"separator: {separator!r} (the label is what comes before it)" if separator
                     else "separator: none (the whole file name is the label)")
    raw = [label_form(s.split(separator, 1)[0] if separator else s, "none") for s in stems]
    raw = [r for r in raw if r]
    case = pinned.case
    if case == AUTO:
        case, why = _case(raw)
        notes.append(f"case: {case} ({why})")
    folded = [label_form(r, case) for r in raw]
    length = pinned.length
    if length == AUTO:
        counts = collections.Counter(len(f) for f in folded)
        common = sorted(n for n, k in counts.items() if k >= RARE_LENGTH * len(folded))
        low, high = common[0], common[-1]
        length = low if low == high else f"{low}-{high}"
        stray = sorted(n for n in counts if not low <= n <= high)
        notes.append(f"length: {length} (" + ", ".join(
            f"{n} characters: {counts[n]}" for n in range(low, high + 1) if counts[n]) + ")"
            + (", left out as too rare: " + ", ".join(f"{n} characters: {counts[n]}"
                                                      for n in stray) if stray else ""))
    low, high = length_bounds(length)
    alphabet = pinned.alphabet
    if alphabet == AUTO:
        uses = collections.Counter("".join(f for f in folded if low <= len(f) <= high))
        alphabet = "".join(sorted(uses))
        if not alphabet:
            raise DiscoveryError("the file names hold no label characters")
        rare = [c for c in alphabet if uses[c] < RARE_CHARACTER]
        notes.append(f"alphabet: {len(alphabet)} characters {alphabet!r}" + (
            f"; in fewer than {RARE_CHARACTER} labels (a typo in a name, or too rare to learn): "
            + ", ".join(f"{c!r} {uses[c]}" for c in rare) if rare else ""))
    return LabelConfig(alphabet, length, case, separator), notes


def _separator(stems: list[str]) -> str:
    best, best_count = "", 0
    for candidate in SEPARATORS:
        carrying = [s for s in stems if candidate in s[1:]]
        if not carrying:
            continue
        numbered = sum(bool(re.fullmatch(r".+?" + re.escape(candidate) + r"\d+", s))
                       for s in carrying)
        qualifies = numbered >= 0.9 * len(carrying) or len(carrying) > 0.5 * len(stems)
        if qualifies and len(carrying) > best_count:
            best, best_count = candidate, len(carrying)
    return best


def _case(labels: list[str]) -> tuple[str, str]:
    upper = sum(c.isupper() for label in labels for c in label)
    lower = sum(c.islower() for label in labels for c in label)
    if not upper and not lower:
        return "none", "no cased letters"
    if not lower:
        return "upper", "every letter is a capital"
    if not upper:
        return "lower", "no capitals"
    rare = min(upper, lower) / (upper + lower)
    major = "upper" if upper > lower else "lower"
    if rare <= NOISY_CASE:
        return major, (f"{rare:.1%} of the letters are {'lower' if major == 'upper' else 'upper'}"
                       f" case: compared case-insensitively")
    return "none", f"both cases common ({rare:.0%} the rarer): case is part of the label"


def discover_image(folder: str | Path, paths: list[str], pinned: ImageConfig,
                   sequence: bool, max_length: int) -> tuple[ImageConfig, list[str]]:
    """`pinned` with its auto settings found from the images at `paths` (relative to
    `folder`), for labels of at most `max_length` characters."""
    if pinned.resolved:
        return pinned, []
    samples = _sample_sizes(folder, paths, ("content", AUTO_CROP) if pinned.crop == AUTO
                            else (pinned.crop,))
    if not samples:
        raise DiscoveryError(f"no readable image in {folder} to learn the image size from; "
                             "set image.height and image.width")
    whole = [sizes["none"] for sizes in samples]
    crop, cropping = pinned.crop, ""
    if crop == AUTO:
        share = statistics.median(h * w / (wh * ww) for (wh, ww), (h, w) in zip(
            whole, (sizes["content"] for sizes in samples)))
        crop = AUTO_CROP if share <= CONTENT_SHARE else "none"
        if crop != "none":
            cropping = (f"; their text covers {share:.0%} of them (median): each is cut to its "
                        f"text first (image.crop {crop})")
    sizes = [s[crop] for s in samples]
    whole_height = statistics.median(h for h, _ in whole)
    whole_width = statistics.median(w for _, w in whole)
    height = statistics.median(h for h, _ in sizes)
    width = statistics.median(w for _, w in sizes)
    aspect = statistics.median(w / h for h, w in sizes)
    capped = ""
    if sequence:
        model_height = pinned.height if pinned.height != AUTO else SEQUENCE_HEIGHT
        model_width = pinned.width
        if model_width == AUTO:
            natural = max(8, round(model_height * aspect / 4) * 4)
            model_width = min(natural, SEQUENCE_CHAR_WIDTH * max_length)
            if model_width < natural:
                capped = (f" (squeezed from {natural} wide: at most {SEQUENCE_CHAR_WIDTH} "
                          f"pixels per character of the longest label)")
    else:
        model_height = pinned.height if pinned.height != AUTO else round(height)
        model_width = pinned.width if pinned.width != AUTO else round(width)
    image = ImageConfig(int(model_height), int(model_width), crop)
    spread = sorted(set(whole))
    seen = (f"{spread[0][1]}x{spread[0][0]}" if len(spread) == 1 else
            f"{len(spread)} sizes, median {whole_width:g}x{whole_height:g}")
    return image, [f"images: {seen} (width x height, {len(samples)} read){cropping}; the model "
                   f"reads them at {image.width}x{image.height}{capped}"]


def _sample_sizes(folder: str | Path, paths: list[str],
                  crops: tuple[str, ...]) -> list[dict[str, tuple[int, int]]]:
    """The (height, width) of up to SAMPLE images spread evenly over `paths`, by image.crop:
    of the whole image ("none") and of it as each of `crops` cuts it
    (core.images.crop_to_content; the whole image where it finds no text)."""
    images = [p for p in paths if os.path.splitext(p)[1].lower() in IMAGE_SUFFIXES] or paths
    step = max(1, len(images) // SAMPLE)
    sizes = []
    for path in images[::step][:SAMPLE]:
        try:
            image = decode_rgb(read_bytes(str(Path(folder, path))))
        except ImageError:
            continue
        sizes.append({"none": image.shape[:2], **{
            crop: crop_to_content(image, close_gaps=crop == "packed").shape[:2]
            for crop in crops if crop != "none"}})
    return sizes
