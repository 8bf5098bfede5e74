"""Synthetic captchas in the seed post's style: the classic look, drawn here before any of the
seed's real captchas were available, and (generate.style: seed2016, core.seed_style, drawn with
this module's toolkit) the look of the real ones, measured in docs/style.md. (generate.style:
fonts, printed text of every kind for pretraining, is core.text_style's, not held to this
module's promises below.)

    image = render_captcha("AB12", np.random.default_rng([seed, index]), height, width)
    written = generate_folder("data/train", count=8000, seed=1, labels=cfg.labels,
                              image=cfg.image, workers=-1)
    wrong_names = plant_wrong_labels("data/audit", count=40, seed=1, labels=cfg.labels)

The look, as the post and its 2016 predecessor show it: white serif characters whose size and
case shape vary from character to character (some lower-case or small-caps glyphs; the label
stays upper case), slightly rotated, on a jittered baseline; dark specks and short strokes over
and around them; text starting about a ninth of the width from the left and spanning about half
of it; a busy, colourful background of photographic-looking blobs, gradients, shards and streaks.

Everything is drawn by OpenCV (its Hershey vector fonts need no font files) from one numpy
Generator per image, seeded by (seed, index): the pixels depend on the seed and the index only,
never on the number of workers, the order in which they run, or the CPU. For the CPU, every
step is exact by construction: integer arithmetic (OpenCV's fixed-point 8-bit blur, its
fixed-point bilinear remap, drawing, JPEG; matrix products whose every factor is an integer,
held exactly in float64 whatever order a BLAS kernel adds them in), or one correctly rounded
float operation at a time (numpy's and OpenCV's element-wise arithmetic). OpenCV's float blur,
colour conversion, warpAffine and addWeighted are avoided: their SIMD and IPP code differs from
one CPU to the next (fused multiply-adds on some, other vector widths) and rounds differently,
so that captchas drawn on one machine came out other on an AVX-512 one. tests/test_generator.py
pins samples/ to the pixel and draws again with OpenCV's, IPP's, OpenBLAS's and numpy's
CPU-specific code turned off. What can still change the pixels is another version of numpy
(its Generator's streams are not promised stable across releases) or of OpenCV (pinned in
requirements.txt).

Variety is deliberate (several fonts, weights, sizes, slants, backgrounds, blur, JPEG artefacts):
a model trained here must not learn one font or one background. Every label stays readable by
construction, as a real captcha's must be for the people it is shown to: the background never
comes within _MIN_CONTRAST of the text's white, a zero is drawn narrower than an O, and
lower-case shapes that would pass for another character are not used.
"""
from __future__ import annotations

import functools
import math
import os
from pathlib import Path

import cv2
import numpy as np

from .config import CAPTCHA_STYLES, ImageConfig, LabelConfig
from .images import write_png
from .runtime import keep_freed_memory, resolve_workers

# Serif faces dominate, as in the post; the others keep the model from tying itself to one.
_FONTS = (cv2.FONT_HERSHEY_TRIPLEX, cv2.FONT_HERSHEY_COMPLEX, cv2.FONT_HERSHEY_COMPLEX_SMALL,
          cv2.FONT_HERSHEY_DUPLEX, cv2.FONT_HERSHEY_SIMPLEX)
_FONT_WEIGHTS = np.array([0.4, 0.3, 0.15, 0.1, 0.05])
# Their cumulative distribution, for drawing a font with one rng.random(): the same draw as
# rng.choice(_FONTS, p=_FONT_WEIGHTS / _FONT_WEIGHTS.sum()) makes, at a tenth of its cost.
_FONT_CDF = (_FONT_WEIGHTS / _FONT_WEIGHTS.sum()).cumsum()
_FONT_CDF /= _FONT_CDF[-1]

# Layout, as fractions of the image: where the text starts and how wide it runs.
_TEXT_LEFT = (0.085, 0.13)
_TEXT_SPAN = (0.47, 0.6)
_GLYPH_HEIGHT = (0.36, 0.52)        # cap height / image height
_BASELINE = (0.70, 0.80)            # baseline / image height
_BASELINE_JITTER = 0.07
_MAX_ROTATION_DEG = 12.0             # "slightly rotated"
# Room drawn around each glyph (fraction of the image height), so that rotation never cuts it:
# its ink (a cap height of at most half the image, descenders, italics) turned by a few degrees
# stays this close to its box; more only costs time in the rotation.
_GLYPH_PAD = 1 / 3
# Lower-case shapes that would pass for another character of the alphabet (l for I or 1, o for
# 0): drawn as small caps instead, so that no label is unreadable by construction.
_NO_LOWER_CASE = frozenset("LO")
# Glyphs drawn narrower than the Hershey fonts draw them. Their zero is only about 10 % narrower
# than their O (ink width over height 0.69-0.72 against 0.77-0.86), which rotation, italics and
# per-character sizes blur completely (the bundled model confused the two more than any other
# pair); in common text faces a zero is markedly narrower than an O. Squeezed to 0.78 of its
# width, a zero is 0.54-0.56 wide per unit of height: still a zero, no longer an O.
_WIDTH_FACTOR = {"0": 0.78}
# The text is drawn in near-white (each channel at least _TEXT_WHITE); background highlights stay
# at least _MIN_CONTRAST below that, so that no stretch of text drowns in the background (the
# bundled model read 67-87 % of the captchas whose faintest text stood less than 0.15 above its
# background, 96.5-98.9 % of the others: docs/review.md).
_TEXT_WHITE = 0.9
_MIN_CONTRAST = 0.15
# Units of the exact arithmetic (module docstring): interpolation weights in 1/4096 (OpenCV's
# own 8-bit bicubic uses 1/2048), layer weights in 1/256.
_CUBIC_ONE = 1 << 12
_LAYER_ONE = 1 << 8


def random_label(rng: np.random.Generator, labels: LabelConfig) -> str:
    """A label of labels.length characters (of a length drawn uniformly where it is a range)."""
    alphabet, length = labels.alphabet, labels.min_length
    if not labels.fixed_length:
        length = _integer(rng, labels.min_length, labels.max_length + 1)
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), length))


def render_captcha(text: str, rng: np.random.Generator, height: int, width: int,
                   style: str = "classic", faces: tuple[str, ...] = ()) -> np.ndarray:
    """One captcha showing `text`, as an RGB uint8 array of (height, width, 3), in `style`;
    `faces`: the font files the fonts style draws in (text_style.find_faces; empty: its own)."""
    if style == "seed2016":
        from .seed_style import render   # it draws with this module's toolkit
        return render(text, rng, height, width)
    if style == "fonts":
        from .text_style import render as render_text
        return render_text(text, rng, height, width, faces)
    _check_style(style)
    _, _, image = text_layers(text, rng, height, width)
    _scatter_clutter(image, rng, height, width)
    return _degrade(image, rng)


def _check_style(style: str) -> None:
    if style not in CAPTCHA_STYLES:
        raise ValueError(f"unknown captcha style {style!r}; available: "
                         f"{', '.join(CAPTCHA_STYLES)}")


def text_layers(text: str, rng: np.random.Generator, height: int,
                width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """render_captcha's first steps: the background, the text's coverage mask and the text drawn
    on the background (float32, RGB in [0, 1]), before clutter and degradation. What
    benchmarks/contrast_errors.py measures the text's legibility on."""
    background = _background(rng, height, width)
    coverage = _text_mask(text, rng, height, width)
    mask = _as_mask(coverage)
    return background, mask, _draw_text(background, coverage, mask, rng)


def _as_mask(coverage: np.ndarray) -> np.ndarray:
    """Coverage 0-255 (uint8) as float32 weights in [0, 1]."""
    mask = coverage.astype(np.float32)
    mask *= 1 / 255
    return mask


def generate_one(index: int, seed: int, labels: LabelConfig, image: ImageConfig,
                 style: str = "classic", faces: tuple[str, ...] = ()) -> tuple[str, np.ndarray]:
    text, rng = label_and_rng(index, seed, labels)
    return text, render_captcha(text, rng, image.height, image.width, style, faces)


def label_and_rng(index: int, seed: int, labels: LabelConfig) -> tuple[str, np.random.Generator]:
    """Captcha `index` of `seed`'s label, and the generator that then draws its pixels: how
    generate_one starts, for whoever draws a captcha of a folder again step by step."""
    rng = np.random.default_rng([seed, index])
    return random_label(rng, labels), rng


def file_name(text: str, index: int, count: int) -> str:
    return f"{text}_{index:0{max(6, len(str(count - 1)))}d}.png"


def generate_folder(output: str | Path, count: int, seed: int, labels: LabelConfig,
                    image: ImageConfig, workers: int = -1, style: str = "classic",
                    faces: tuple[str, ...] = ()) -> int:
    """Write `count` captchas named LABEL_index.png into `output`; returns how many."""
    _check_style(style)
    from joblib import Parallel, delayed

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    workers = max(1, resolve_workers(workers))
    chunks = _chunks(count, workers * 4)
    if workers == 1:
        done = [_write_range(str(output), lo, hi, count, seed, labels, image, style, faces)
                for lo, hi in chunks]
    else:
        parent = os.getpid()
        done = Parallel(n_jobs=workers)(
            delayed(_write_range)(str(output), lo, hi, count, seed, labels, image, style, faces,
                                  parent)
            for lo, hi in chunks)
    return sum(done)


def plant_wrong_labels(folder: str | Path, count: int, seed: int,
                       labels: LabelConfig) -> set[str]:
    """Rename `count` generated files of `folder` with one label character changed, as a typo or
    an older solver would; returns their new names. How the label audit
    (suspect_labels.csv) is measured and tested."""
    import random

    folder = Path(folder)
    rng = random.Random(seed)
    planted = set()
    for name in rng.sample(sorted(os.listdir(folder)), count):
        label, rest = name.split(labels.separator, 1)
        i = rng.randrange(len(label))
        wrong = rng.choice([c for c in labels.alphabet if c != label[i]])
        new = label[:i] + wrong + label[i + 1:] + labels.separator + rest
        os.rename(folder / name, folder / new)
        planted.add(new)
    return planted


def preview_grid(images: list[np.ndarray], texts: list[str], columns: int = 3) -> np.ndarray:
    """The images tiled with their labels underneath, for documentation."""
    h, w = images[0].shape[:2]
    caption = max(14, h // 3)
    cell_h, pad = h + caption, 6
    rows = math.ceil(len(images) / columns)
    grid = np.full((rows * (cell_h + pad) + pad, columns * (w + pad) + pad, 3), 255, np.uint8)
    for k, (img, text) in enumerate(zip(images, texts)):
        y, x = pad + (k // columns) * (cell_h + pad), pad + (k % columns) * (w + pad)
        grid[y:y + h, x:x + w] = img
        cv2.putText(grid, text, (x + 2, y + h + caption - 4), cv2.FONT_HERSHEY_SIMPLEX,
                    caption / 30, (0, 0, 0), 1, cv2.LINE_AA)
    return grid


def _chunks(count: int, parts: int) -> list[tuple[int, int]]:
    size = max(1, math.ceil(count / max(1, parts)))
    return [(lo, min(count, lo + size)) for lo in range(0, count, size)]


def _write_range(output: str, lo: int, hi: int, count: int, seed: int, labels: LabelConfig,
                 image: ImageConfig, style: str, faces: tuple[str, ...],
                 parent: int | None = None) -> int:
    """Captchas lo to hi - 1 written into `output`; how many. A worker process is given its
    job's process id as `parent`, and ends itself once that process is gone: a job killed
    mid-run (a cron timeout, the OOM killer) cannot stop its workers, which would otherwise go
    on writing the ranges queued to them, thousands of captchas, also into the folder of the
    run that replaces it, and then idle for minutes. There is nobody left to report to. Run in
    the job's own process (joblib falls back to that where it cannot start processes), it
    never checks."""
    cv2.setNumThreads(1)
    keep_freed_memory()   # a captcha's float temporaries would page-fault in afresh each time
    worker = parent is not None and os.getpid() != parent
    for index in range(lo, hi):
        if worker and os.getppid() != parent:
            os._exit(0)
        text, pixels = generate_one(index, seed, labels, image, style, faces)
        write_png(os.path.join(output, file_name(text, index, count)), pixels)
    return hi - lo


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One draw from [low, high): rng.uniform's distribution at a third of its cost per scalar."""
    return low + (high - low) * rng.random()


def _integer(rng: np.random.Generator, low: int, high: int) -> int:
    """One integer from [low, high), uniformly: rng.integers' distribution at a tenth of its
    cost per scalar (a captcha draws about seventeen)."""
    return low + int((high - low) * rng.random())


# HSV to RGB: which of v * (1 - s * (0, f, 1, 1 - f)) each RGB channel takes in each of the six
# hue sectors, f being the hue's place within its sector.
_HSV_SECTORS = np.array([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]])
_HSV_LOW, _HSV_SPAN = np.array([0, 110, 60]), np.array([180, 145, 180])


def _random_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """n saturated colours in many hues (HSV drawn, OpenCV's 8-bit convention), as (n, 3) RGB
    levels 0-255: integer-valued float64."""
    return _hsv_to_rgb(np.floor(rng.random((n, 3)) * _HSV_SPAN + _HSV_LOW))  # s 110-254, v 60-239


def _hsv_to_rgb(hsv: np.ndarray) -> np.ndarray:
    """(n, 3) integer HSV levels (OpenCV's 8-bit convention: hue 0-179) as (n, 3) RGB levels
    0-255, integer-valued float64. Converted here rather than by cv2.cvtColor, whose SIMD paths
    round some levels differently from one CPU to the next."""
    n = len(hsv)
    hue = hsv[:, 0] / 30
    sector = np.floor(hue)
    f = (hue - sector)[:, None] * (0, 1, 0, -1) + (0, 0, 1, 1)
    choices = hsv[:, 2:] * (1 - hsv[:, 1:2] / 255 * f)
    return np.rint(choices[np.arange(n)[:, None], _HSV_SECTORS[sector.astype(np.intp)]])


@functools.lru_cache(maxsize=64)
def _cubic_weights(source: int, size: int) -> np.ndarray:
    """The (size, source) matrix of OpenCV's bicubic upscaling from `source` samples to `size`
    (a = -0.75, pixel centres aligned, edge samples repeated), in integers of 1/_CUBIC_ONE:
    W @ cells is cv2.resize(cells, INTER_CUBIC) along that axis, times _CUBIC_ONE."""
    x = (np.arange(size) + 0.5) * (source / size) - 0.5
    left = np.floor(x)
    t = x - left
    a = -0.75
    taps = [((a * (t + 1) - 5 * a) * (t + 1) + 8 * a) * (t + 1) - 4 * a,
            ((a + 2) * t - (a + 3)) * t * t + 1,
            ((a + 2) * (1 - t) - (a + 3)) * (1 - t) * (1 - t) + 1]
    taps.append(1 - taps[0] - taps[1] - taps[2])
    weights = np.zeros((size, source))
    rows = np.arange(size)
    for k, tap in enumerate(taps):
        np.add.at(weights, (rows, np.clip(left + (k - 1), 0, source - 1).astype(np.intp)), tap)
    return np.rint(weights * _CUBIC_ONE)


def _smooth_colours(layers: list[tuple[np.ndarray, float]], h: int, w: int,
                    brightest: float = 1.0) -> np.ndarray:
    """The sum of weight * (cells bicubically upscaled to (h, w)) over the (cells, weight) pairs,
    cells being (rows, cols, 3) colour levels 0-255, scaled so that its largest value is
    `brightest`: float32. Two small matrix products whose every factor is an integer (levels,
    weights in 1/_CUBIC_ONE, layer weights in 1/_LAYER_ONE): each sum stays an integer far
    below 2**53, so float64 holds it exactly, in whatever order the CPU's BLAS kernel adds it
    up."""
    rows = []
    for cells, _ in layers:   # each row of cells upscaled along x: (rows, w, 3)
        r, c, _ = cells.shape
        across = _cubic_weights(c, w) @ cells.transpose(1, 0, 2).reshape(c, r * 3)
        rows.append(across.reshape(w, r, 3).transpose(1, 0, 2))
    down = np.hstack([np.rint(weight * _LAYER_ONE) * _cubic_weights(cells.shape[0], h)
                      for cells, weight in layers])
    total = down @ np.concatenate(rows).reshape(-1, w * 3)
    image = total.astype(np.float32).reshape(h, w, 3)
    image *= brightest / max(1.0, float(total.max()))
    return image


@functools.lru_cache(maxsize=8)
def _linspaces(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.linspace(0, 1, h), np.linspace(0, 1, w)


def _add_gradient(image: np.ndarray, a: np.ndarray, b: np.ndarray, angle: float) -> None:
    """Add to `image` (h, w, 3) a linear gradient from colour a to colour b across it, in the
    direction `angle`: a ramp in [0, 1] that is a term per row plus a term per column, so the
    whole gradient is two additions of the image's size."""
    h, w, _ = image.shape
    dy, dx = math.sin(angle), math.cos(angle)
    low, span = min(0.0, dy) + min(0.0, dx), abs(dy) + abs(dx) + 1e-6
    ys, xs = _linspaces(h, w)
    step = (b - a).astype(np.float64)
    per_row = np.multiply.outer(ys * (dy / span) - low / span, step) + a   # (h, 3)
    per_column = np.multiply.outer(xs * (dx / span), step)                 # (w, 3)
    flat = image.reshape(h, w * 3)
    flat += np.tile(per_row.astype(np.float32), (1, w))
    flat += per_column.astype(np.float32).reshape(1, w * 3)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Busy colourful texture, float32 RGB in [0, 1]."""
    coarse = (_integer(rng, 2, 4), _integer(rng, 3, 9))
    fine = (_integer(rng, 3, 8), _integer(rng, 10, 32))
    fine_weight = _uniform(rng, 0.2, 0.8)
    shards, streaks = _integer(rng, 2, 9), _integer(rng, 0, 6)
    n_coarse, n_fine = coarse[0] * coarse[1], fine[0] * fine[1]
    levels = _random_colours(rng, n_coarse + n_fine + 2 + shards + streaks)
    colours = _to_float(levels[n_coarse + n_fine:])
    # A gradient across the whole image, from colour a to colour b, mixed into...
    a, b = colours[0], colours[1]
    angle = _uniform(rng, 0, 2 * math.pi)
    mix = _uniform(rng, 0.15, 0.6)
    # ...photographic-looking blobs: smooth colour noise at two scales.
    image = _smooth_colours([(levels[:n_coarse].reshape(*coarse, 3), 1.0),
                             (levels[n_coarse:n_coarse + n_fine].reshape(*fine, 3),
                              fine_weight)], h, w, brightest=1 - mix)
    _add_gradient(image, a * mix, b * mix, angle)
    # Shards: translucent polygons.
    layer = image.copy()
    for colour in colours[2:2 + shards].tolist():
        k = _integer(rng, 3, 6)
        cx, cy = _uniform(rng, -0.1 * w, 1.1 * w), _uniform(rng, -0.2 * h, 1.2 * h)
        r = _uniform(rng, 0.2, 1.0) * h
        pts = np.empty((k, 2), np.int32)
        pts[:, 0] = cx + rng.uniform(-2.5 * r, 2.5 * r, k)
        pts[:, 1] = cy + rng.uniform(-r, r, k)
        cv2.fillPoly(layer, [pts], colour)
    layer -= image   # image + alpha * (layer - image), in place
    layer *= _uniform(rng, 0.3, 0.8)
    image += layer
    # Streaks: long lines, softened by the blur below.
    for colour in colours[2 + shards:].tolist():
        p1 = (int(_uniform(rng, -0.2, 1.2) * w), int(_uniform(rng, -0.5, 1.5) * h))
        p2 = (int(_uniform(rng, -0.2, 1.2) * w), int(_uniform(rng, -0.5, 1.5) * h))
        cv2.line(image, p1, p2, colour, _integer(rng, 1, max(2, h // 8)))
    sigma = _uniform(rng, 0.3, 1.5)
    # Most backgrounds sit well below the white text; some are bright enough to fight it...
    ceiling = _TEXT_WHITE - _MIN_CONTRAST
    if rng.random() < 0.12:
        level = _uniform(rng, 0.75, 0.95) * ceiling
    else:
        level = _uniform(rng, 0.25, 0.6)
    return _settle(image, rng, sigma, level)


def _settle(image: np.ndarray, rng: np.random.Generator, sigma: float,
            level: float) -> np.ndarray:
    """A drawn background (float32 RGB) brought to the mean `level`, blurred by `sigma` and
    its highlights held below the text's white by a margin of at least _MIN_CONTRAST."""
    ceiling = _TEXT_WHITE - _MIN_CONTRAST
    np.maximum(image, 0, out=image)   # the bicubic blobs overshoot a little below zero
    mean = sum(cv2.sumElems(_to_levels(image))) / (image.size * 255)
    # Scaled to its mean level as 8-bit levels, then blurred (the blur keeps the mean).
    blurred = cv2.GaussianBlur(_to_levels(image, level / (mean + 1e-6)), (0, 0), sigma)
    # ...but its highlights stay below the text's white, or the label would be unreadable.
    highest = int(_uniform(rng, 0.8, 1.0) * ceiling * 255)
    return _to_float(np.minimum(blurred, highest, out=blurred))


def _glyph(char: str, rng: np.random.Generator, h: int) -> tuple[np.ndarray, int]:
    """One character as an (h, width) uint8 coverage mask, rotated, on its own jittered
    baseline, cropped to its columns; returns the mask and its ink height."""
    font = _FONTS[int(_FONT_CDF.searchsorted(rng.random(), side="right"))]
    if rng.random() < 0.25:
        font |= cv2.FONT_ITALIC
    glyph_h = _uniform(rng, *_GLYPH_HEIGHT) * h
    if char.isalpha():
        shape = rng.random()
        if shape < 0.25 and char not in _NO_LOWER_CASE:
            char = char.lower()
        elif shape < 0.4:
            glyph_h *= _uniform(rng, 0.7, 0.85)     # small caps
    thickness = max(1, int(round(h * _uniform(rng, 0.02, 0.052))))
    scale = cv2.getFontScaleFromHeight(font & ~cv2.FONT_ITALIC, int(round(glyph_h)), thickness)
    (tw, th), _ = cv2.getTextSize(char, font, scale, thickness)
    pad = int(_GLYPH_PAD * h) + thickness
    canvas = np.zeros((h + 2 * pad, tw + 2 * pad), np.uint8)
    baseline = (_uniform(rng, *_BASELINE) + _uniform(rng, -_BASELINE_JITTER, _BASELINE_JITTER)) * h
    cv2.putText(canvas, char, (pad, int(round(pad + baseline))), font, scale, 255, thickness,
                cv2.LINE_AA)
    centre = (pad + tw / 2, pad + baseline - th / 2)
    canvas = _rotate(canvas, centre, _uniform(rng, -_MAX_ROTATION_DEG, _MAX_ROTATION_DEG),
                     _WIDTH_FACTOR.get(char, 1.0))
    return _ink_columns(canvas, h, pad, tw, th)


def _ink_columns(canvas: np.ndarray, h: int, pad: int, tw: int,
                 th: int) -> tuple[np.ndarray, int]:
    """A glyph drawn and turned on a canvas padded by `pad` all round, as the (h, width) mask
    of its ink's columns, the whole glyph inside the h rows; and its ink height `th`."""
    # The ink's bounding box: the pixels above 40.
    x, y, ink_w, ink_h = cv2.boundingRect(cv2.threshold(canvas, 40, 255, cv2.THRESH_BINARY)[1])
    if ink_w == 0:
        return np.zeros((h, max(1, tw)), np.uint8), th
    # Keep the whole glyph inside the image: a cut-off glyph can make its label unreadable.
    top = max(0, min(max(pad, y + ink_h + 1 - h), y - 1, canvas.shape[0] - h))
    return canvas[top:top + h, x:x + ink_w], th


@functools.lru_cache(maxsize=256)
def _steps(n: int) -> np.ndarray:
    return np.arange(n, dtype=np.float64)


def _rotate(canvas: np.ndarray, centre: tuple[float, float], degrees: float,
            squeeze: float = 1.0) -> np.ndarray:
    """`canvas` narrowed to `squeeze` of its width about `centre`, then turned anticlockwise by
    `degrees` about it (cv2.getRotationMatrix2D's sense), bilinearly, on the same canvas.

    What cv2.warpAffine(INTER_LINEAR) does, in fixed point: each output pixel's source position
    is a sum of two exactly rounded float32 terms, cv2.convertMaps rounds it to 1/32 px, and
    cv2.remap blends with integer weights. cv2.warpAffine computes positions with fused
    multiply-adds on some CPUs and not on others, and a pixel one level brighter moves the
    glyph's ink box. Only the window the turned ink can reach is computed; the rest is zero."""
    cx, cy = centre
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    out = np.zeros(canvas.shape, np.uint8)
    x, y, ink_w, ink_h = cv2.boundingRect(canvas)   # the non-zero pixels
    if ink_w == 0:
        return out
    # Where the ink's box, one pixel wider all round (bilinear reach), lands: the forward map
    # output = rotation(degrees) @ diag(squeeze, 1) @ (source - centre) + centre.
    corners = [(u - cx, v - cy) for u in (x - 1, x + ink_w) for v in (y - 1, y + ink_h)]
    xs = [cos * squeeze * u + sin * v + cx for u, v in corners]
    ys = [-sin * squeeze * u + cos * v + cy for u, v in corners]
    h, w = canvas.shape
    x0, x1 = max(0, math.floor(min(xs)) - 1), min(w, math.ceil(max(xs)) + 2)
    y0, y1 = max(0, math.floor(min(ys)) - 1), min(h, math.ceil(max(ys)) + 2)
    if x1 <= x0 or y1 <= y0:   # turned off the canvas
        return out
    # Its source positions: diag(1 / squeeze, 1) @ rotation(-degrees) @ (output - centre)
    # + centre, as a term per row plus a term per column, for x and for y.
    rows = np.multiply.outer((-sin / squeeze, cos), _steps(h)[y0:y1] - cy) + ((cx,), (cy,))
    columns = np.multiply.outer((cos / squeeze, sin), _steps(w)[x0:x1] - cx)
    source = rows.astype(np.float32)[:, :, None] + columns.astype(np.float32)[:, None, :]
    positions, fractions = cv2.convertMaps(source[0], source[1], cv2.CV_16SC2)
    out[y0:y1, x0:x1] = cv2.remap(canvas, positions, fractions, cv2.INTER_LINEAR,
                                  borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return out


def _text_mask(text: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Coverage of the whole text, uint8 (h, w) in 0-255.

    The post's layout (text from near the left edge over about half the width) is reached by
    letter spacing, never by stretching: a glyph's width-to-height ratio is what tells 0 from O,
    so it must survive.
    """
    glyphs = [_glyph(c, rng, h) for c in text]
    widths = [g.shape[1] for g, _ in glyphs]
    left = int(_uniform(rng, *_TEXT_LEFT) * w)
    target = _uniform(rng, *_TEXT_SPAN) * w
    # Spacing that brings the text to the target span, within sensible limits per gap.
    gap = (target - sum(widths)) / max(1, len(glyphs) - 1)
    gaps = [int(round(min(max(gap + _uniform(rng, -0.1, 0.1) * th, -0.08 * th), 0.6 * th)))
            for _, th in glyphs[:-1]] + [0]
    return _lay_out([g for g, _ in glyphs], gaps, left, h, w)


def _lay_out(glyphs: list[np.ndarray], gaps: list[int], left: int, h: int,
             w: int) -> np.ndarray:
    """Glyph masks (h rows each) side by side from column `left`, each followed by its gap in
    pixels (negative: overlapping, ink merged by its maximum), as the (h, w) coverage; shrunk
    evenly, aspect kept, where they would run past the right edge."""
    widths = [g.shape[1] for g in glyphs]
    strip = np.zeros((h, max(1, sum(widths) + sum(max(0, g) for g in gaps))), np.uint8)
    x = 0
    for g, gap_px in zip(glyphs, gaps):
        np.maximum(strip[:, x:x + g.shape[1]], g, out=strip[:, x:x + g.shape[1]])
        x = max(0, x + g.shape[1] + gap_px)
    strip = strip[:, :max(1, x)]
    room = w - left - 1
    if strip.shape[1] > room:  # too wide for the image: shrink evenly, keeping the aspect
        scale = room / strip.shape[1]
        small = cv2.resize(strip, (room, max(1, int(h * scale))),
                           interpolation=cv2.INTER_LINEAR_EXACT)   # bit-exact on every CPU
        strip = np.zeros((h, room), np.uint8)
        top = (h - small.shape[0]) // 2
        strip[top:top + small.shape[0]] = small
    coverage = np.zeros((h, w), np.uint8)
    coverage[:, left:left + strip.shape[1]] = strip
    return coverage


def _draw_text(image: np.ndarray, coverage: np.ndarray, mask: np.ndarray,
               rng: np.random.Generator) -> np.ndarray:
    """The text (coverage in 0-255, and as mask in [0, 1]) drawn in near-white on `image`."""
    if rng.random() < 0.3:
        # A dark rim or drop shadow under some texts, as anti-aliased captcha text often has.
        shadow = cv2.GaussianBlur(coverage, (0, 0), _uniform(rng, 0.6, 1.5))   # bit-exact
        shift = (_integer(rng, -1, 2), _integer(rng, -1, 2))
        shade = np.roll(shadow, shift, axis=(0, 1)).astype(np.float32)
        shade *= _uniform(rng, 0.3, 0.8) / 255
        image = cv2.multiply(image, _three(1 - shade))
    colour = rng.uniform(_TEXT_WHITE, 1.0, 3).tolist()
    # image + mask * (colour - image), in whole-image operations.
    return image - _three(mask) * cv2.subtract(image, (*colour, 0.0))


def _three(plane: np.ndarray) -> np.ndarray:
    """An (h, w) plane as the (h, w, 3) image with it in every colour plane: what a blend of
    whole images takes for weights (numpy is slow at broadcasting over a last axis of 3)."""
    return cv2.merge((plane, plane, plane))


def _to_levels(image: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """A float image >= 0 times `scale`, as 8-bit levels: rounded, 1 and above to 255.

    The blurs work on these: OpenCV blurs 8-bit images in fixed point, bit-exact on every CPU,
    while its float blur adds up differently with each SIMD width."""
    return cv2.convertScaleAbs(image, alpha=255 * scale)


def _to_float(levels: np.ndarray) -> np.ndarray:
    image = levels.astype(np.float32)
    image *= 1 / 255
    return image


def _scatter_clutter(image: np.ndarray, rng: np.random.Generator, h: int, w: int) -> None:
    """Dark specks and short strokes, mostly over the text band. (OpenCV draws on float images
    without anti-aliasing; the degradation's blur softens some.)"""
    def points(n: int, spread: float) -> list[list[int]]:
        near = rng.random(n) < 0.7
        x = np.where(near, rng.normal(0.37 * w, spread * w, n), rng.uniform(0, w, n))
        return np.stack([np.clip(x, 0, w - 1), rng.uniform(0, h, n)], 1).astype(int).tolist()

    n = _integer(rng, 10, 70)
    for (x, y), radius, dark in zip(points(n, 0.2), (rng.random(n) < 0.5).tolist(),
                                    rng.uniform(0, 0.35, (n, 3)).tolist()):
        cv2.circle(image, (x, y), int(radius), dark, -1)
    n = _integer(rng, 1, 9)
    lengths, angles = rng.uniform(0.08, 0.4, n) * h, rng.uniform(0, math.pi, n)
    for (x, y), length, angle, wide, dark in zip(
            points(n, 0.15), lengths.tolist(), angles.tolist(), (rng.random(n) < 0.5).tolist(),
            rng.uniform(0, 0.35, (n, 3)).tolist()):
        end = (int(x + length * math.cos(angle)), int(y + length * math.sin(angle)))
        cv2.line(image, (x, y), end, dark, 1 + wide)


def _degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The drawn captcha (float32 in [0, 1]) blurred, noisy, JPEG-compressed or not, as uint8."""
    out = _to_levels(image)
    if rng.random() < 0.4:
        out = cv2.GaussianBlur(out, (0, 0), _uniform(rng, 0.3, 0.8))
    if rng.random() < 0.6:   # levels + sigma * noise, rounded and clipped to uint8
        sigma = _uniform(rng, 1, 8)
        noisy = _noise(rng, out.shape) * sigma
        noisy += out
        np.maximum(noisy, 0, out=noisy)
        out = cv2.convertScaleAbs(noisy)
    if rng.random() < 0.3:
        quality = _integer(rng, 40, 95)
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise of `shape`: a window at a random offset into a fixed bank
    of normal draws. Drawing them afresh (numpy's standard_normal) cost more than any other
    step of a captcha; a window costs nothing, and its place in a bank of a million values is
    as random as the captcha's other choices."""
    size = math.prod(shape)
    bank = _noise_bank(max(_NOISE_BANK, 4 * size))
    start = _integer(rng, 0, bank.size - size + 1)
    return bank[start:start + size].reshape(shape)


_NOISE_BANK = 1 << 20


@functools.lru_cache(maxsize=2)
def _noise_bank(size: int) -> np.ndarray:
    return np.random.default_rng(_NOISE_BANK).standard_normal(size, dtype=np.float32)
