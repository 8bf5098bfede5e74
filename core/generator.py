"""Synthetic captchas in the style of the seed post's (its real images are not available).

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
Generator per image, seeded by (seed, index): the bytes written depend on the seed and the index
only, never on the number of workers or on the order in which they run. (Across CPUs, float
rounding in vectorised code may move a rare value by a level; tests/test_generator.py allows
for that when it checks samples/.)

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

from .config import ImageConfig, LabelConfig
from .images import write_png
from .runtime import resolve_workers

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


def random_label(rng: np.random.Generator, labels: LabelConfig) -> str:
    alphabet = labels.alphabet
    return "".join(alphabet[i] for i in rng.integers(0, len(alphabet), labels.length))


def render_captcha(text: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One captcha showing `text`, as an RGB uint8 array of (height, width, 3)."""
    _, _, image = text_layers(text, rng, height, width)
    _scatter_clutter(image, rng, height, width)
    return _degrade(image, rng)


def text_layers(text: str, rng: np.random.Generator, height: int,
                width: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """render_captcha's first steps: the background, the text's coverage mask and the text drawn
    on the background (float32, RGB in [0, 1]), before clutter and degradation. What
    benchmarks/contrast_errors.py measures the text's legibility on."""
    background = _background(rng, height, width)
    mask = _text_mask(text, rng, height, width)
    return background, mask, _draw_text(background, mask, rng)


def generate_one(index: int, seed: int, labels: LabelConfig,
                 image: ImageConfig) -> tuple[str, np.ndarray]:
    rng = np.random.default_rng([seed, index])
    text = random_label(rng, labels)
    return text, render_captcha(text, rng, image.height, image.width)


def file_name(text: str, index: int, count: int) -> str:
    return f"{text}_{index:0{max(6, len(str(count - 1)))}d}.png"


def generate_folder(output: str | Path, count: int, seed: int, labels: LabelConfig,
                    image: ImageConfig, workers: int = -1) -> int:
    """Write `count` captchas named LABEL_index.png into `output`; returns how many."""
    from joblib import Parallel, delayed

    output = Path(output)
    output.mkdir(parents=True, exist_ok=True)
    workers = max(1, resolve_workers(workers))
    chunks = _chunks(count, workers * 4)
    if workers == 1:
        done = [_write_range(str(output), lo, hi, count, seed, labels, image) for lo, hi in chunks]
    else:
        done = Parallel(n_jobs=workers)(
            delayed(_write_range)(str(output), lo, hi, count, seed, labels, image)
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
                 image: ImageConfig) -> int:
    cv2.setNumThreads(1)
    for index in range(lo, hi):
        text, pixels = generate_one(index, seed, labels, image)
        write_png(os.path.join(output, file_name(text, index, count)), pixels)
    return hi - lo


def _uniform(rng: np.random.Generator, low: float, high: float) -> float:
    """One draw from [low, high): rng.uniform's distribution at a third of its cost per scalar."""
    return low + (high - low) * rng.random()


def _integer(rng: np.random.Generator, low: int, high: int) -> int:
    """One integer from [low, high), uniformly: rng.integers' distribution at a tenth of its
    cost per scalar (~15 us a call; a captcha draws about seventeen)."""
    return low + int((high - low) * rng.random())


def _random_colours(rng: np.random.Generator, n: int) -> np.ndarray:
    """n saturated colours in many hues (HSV drawn, RGB returned) as float32 in [0, 1]."""
    hsv = rng.uniform((0, 110, 60), (180, 255, 240), (1, n, 3)).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)[0].astype(np.float32) / 255


@functools.lru_cache(maxsize=64)
def _cubic_weights(source: int, size: int) -> np.ndarray:
    """The (size, source) matrix of OpenCV's bicubic upscaling from `source` samples to `size`:
    the image of the identity under cv2.resize, so that W @ cells is cv2.resize(cells) along
    that axis (to float rounding)."""
    eye = np.eye(source, dtype=np.float32)
    return cv2.resize(eye, (source, size), interpolation=cv2.INTER_CUBIC).astype(np.float64)


def _smooth_colours(layers: list[tuple[np.ndarray, float]], h: int, w: int) -> np.ndarray:
    """The sum of weight * (cells bicubically upscaled to (h, w)) over the (cells, weight) pairs,
    cells being (rows, cols, 3): the same image as the sum of cv2.resize(cells, (w, h),
    INTER_CUBIC), as two small matrix products (OpenCV's bicubic upscaling of a grid of more
    than three rows takes ~0.25 ms here, five times its cost from three). In float64, so that
    the float32 result does not depend on which BLAS kernel the CPU gets."""
    rows = []
    for cells, _ in layers:   # each row of cells upscaled along x: (rows, w, 3)
        r, c, _ = cells.shape
        across = _cubic_weights(c, w) @ cells.transpose(1, 0, 2).reshape(c, r * 3)
        rows.append(across.reshape(w, r, 3).transpose(1, 0, 2))
    down = np.hstack([weight * _cubic_weights(cells.shape[0], h) for cells, weight in layers])
    stacked = np.concatenate(rows).reshape(-1, w * 3)
    return (down @ stacked).astype(np.float32).reshape(h, w, 3)


@functools.lru_cache(maxsize=8)
def _linspaces(h: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    return np.linspace(0, 1, h, dtype=np.float32), np.linspace(0, 1, w, dtype=np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Busy colourful texture, float32 RGB in [0, 1]."""
    coarse = (_integer(rng, 2, 4), _integer(rng, 3, 9))
    fine = (_integer(rng, 3, 8), _integer(rng, 10, 32))
    fine_weight = _uniform(rng, 0.2, 0.8)
    shards, streaks = _integer(rng, 2, 9), _integer(rng, 0, 6)
    n_coarse, n_fine = coarse[0] * coarse[1], fine[0] * fine[1]
    colours = _random_colours(rng, n_coarse + n_fine + 2 + shards + streaks)
    # Photographic-looking blobs: smooth colour noise at two scales.
    image = _smooth_colours([(colours[:n_coarse].reshape(*coarse, 3), 1.0),
                             (colours[n_coarse:n_coarse + n_fine].reshape(*fine, 3),
                              fine_weight)], h, w)
    image *= 1 / (image.max() + 1e-6)
    colours = colours[n_coarse + n_fine:]
    # A gradient across the whole image, from colour a to colour b: each plane a linear ramp.
    a, b = colours[0], colours[1]
    angle = _uniform(rng, 0, 2 * math.pi)
    dy, dx = math.sin(angle), math.cos(angle)
    low, span = min(0.0, dy) + min(0.0, dx), abs(dy) + abs(dx) + 1e-6
    ys, xs = _linspaces(h, w)
    ramp = np.add.outer(ys * (dy / span), xs * (dx / span))   # in [0, 1]
    ramp -= low / span
    gradient = cv2.merge([ramp * float(b[c] - a[c]) + float(a[c]) for c in range(3)])
    mix = _uniform(rng, 0.15, 0.6)
    image = cv2.addWeighted(image, 1 - mix, gradient, mix, 0)
    # Shards: translucent polygons.
    layer = image.copy()
    for colour in colours[2:2 + shards].tolist():
        k = _integer(rng, 3, 6)
        cx, cy = _uniform(rng, -0.1 * w, 1.1 * w), _uniform(rng, -0.2 * h, 1.2 * h)
        r = _uniform(rng, 0.2, 1.0) * h
        pts = np.empty((k, 2), np.int32)
        pts[:, 0] = cx + rng.uniform(-2.5 * r, 2.5 * r, k)
        pts[:, 1] = cy + rng.uniform(-r, r, k)
        cv2.fillPoly(layer, [pts], colour, cv2.LINE_AA)
    alpha = _uniform(rng, 0.3, 0.8)
    image = cv2.addWeighted(image, 1 - alpha, layer, alpha, 0)
    # Streaks: long soft lines.
    for colour in colours[2 + shards:].tolist():
        p1 = (int(_uniform(rng, -0.2, 1.2) * w), int(_uniform(rng, -0.5, 1.5) * h))
        p2 = (int(_uniform(rng, -0.2, 1.2) * w), int(_uniform(rng, -0.5, 1.5) * h))
        cv2.line(image, p1, p2, colour, _integer(rng, 1, max(2, h // 8)), cv2.LINE_AA)
    image = cv2.GaussianBlur(image, (0, 0), _uniform(rng, 0.3, 1.5))
    # Most backgrounds sit well below the white text; some are bright enough to fight it...
    ceiling = _TEXT_WHITE - _MIN_CONTRAST
    if rng.random() < 0.12:
        level = _uniform(rng, 0.75, 0.95) * ceiling
    else:
        level = _uniform(rng, 0.25, 0.6)
    image *= level / (sum(cv2.mean(image)[:3]) / 3 + 1e-6)
    # ...but its highlights stay below the text's white, or the label would be unreadable.
    return np.clip(image, 0, _uniform(rng, 0.8, 1.0) * ceiling, out=image)


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
    rot = cv2.getRotationMatrix2D(centre, _uniform(rng, -_MAX_ROTATION_DEG, _MAX_ROTATION_DEG),
                                  1.0)
    if char in _WIDTH_FACTOR:   # narrowed about the centre, before the rotation
        squeeze = _WIDTH_FACTOR[char]
        rot[:, 0] *= squeeze
        rot[:, 2] += rot[:, 0] * centre[0] * (1 / squeeze - 1)
    canvas = cv2.warpAffine(canvas, rot, (canvas.shape[1], canvas.shape[0]),
                            flags=cv2.INTER_LINEAR)
    # The ink's bounding box: the pixels above 40.
    x, y, ink_w, ink_h = cv2.boundingRect(cv2.threshold(canvas, 40, 255, cv2.THRESH_BINARY)[1])
    if ink_w == 0:
        return np.zeros((h, max(1, tw)), np.uint8), th
    # Keep the whole glyph inside the image: a cut-off glyph can make its label unreadable.
    top = max(0, min(max(pad, y + ink_h + 1 - h), y - 1, canvas.shape[0] - h))
    return canvas[top:top + h, x:x + ink_w], th


def _text_mask(text: str, rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Coverage of the whole text, float32 (h, w) in [0, 1].

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
    strip = np.zeros((h, max(1, sum(widths) + sum(max(0, g) for g in gaps))), np.uint8)
    x = 0
    for (g, _), gap_px in zip(glyphs, gaps):
        np.maximum(strip[:, x:x + g.shape[1]], g, out=strip[:, x:x + g.shape[1]])
        x = max(0, x + g.shape[1] + gap_px)
    strip = strip[:, :max(1, x)]
    room = w - left - 1
    if strip.shape[1] > room:  # too wide for the image: shrink evenly, keeping the aspect
        scale = room / strip.shape[1]
        small = cv2.resize(strip, (room, max(1, int(h * scale))), interpolation=cv2.INTER_AREA)
        strip = np.zeros((h, room), np.uint8)
        top = (h - small.shape[0]) // 2
        strip[top:top + small.shape[0]] = small
    mask = np.zeros((h, w), np.float32)
    mask[:, left:left + strip.shape[1]] = strip
    mask *= 1 / 255
    return mask


def _draw_text(image: np.ndarray, mask: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.3:
        # A dark rim or drop shadow under some texts, as anti-aliased captcha text often has.
        shadow = cv2.GaussianBlur(mask, (0, 0), _uniform(rng, 0.6, 1.5))
        shift = (_integer(rng, -1, 2), _integer(rng, -1, 2))
        shade = 1 - _uniform(rng, 0.3, 0.8) * np.roll(shadow, shift, axis=(0, 1))
        image = cv2.multiply(image, _three(shade))
    colour = rng.uniform(_TEXT_WHITE, 1.0, 3).tolist()
    # image + mask * (colour - image), in whole-image operations.
    return image - _three(mask) * cv2.subtract(image, (*colour, 0.0))


def _three(plane: np.ndarray) -> np.ndarray:
    """An (h, w) plane as the (h, w, 3) image with it in every colour plane: what a blend of
    whole images takes for weights (numpy is slow at broadcasting over a last axis of 3)."""
    return cv2.merge((plane, plane, plane))


def _scatter_clutter(image: np.ndarray, rng: np.random.Generator, h: int, w: int) -> None:
    """Dark specks and short strokes, mostly over the text band."""
    def points(n: int, spread: float) -> list[list[int]]:
        near = rng.random(n) < 0.7
        x = np.where(near, rng.normal(0.37 * w, spread * w, n), rng.uniform(0, w, n))
        return np.stack([np.clip(x, 0, w - 1), rng.uniform(0, h, n)], 1).astype(int).tolist()

    n = _integer(rng, 10, 70)
    for (x, y), radius, dark in zip(points(n, 0.2), (rng.random(n) < 0.5).tolist(),
                                    rng.uniform(0, 0.35, (n, 3)).tolist()):
        cv2.circle(image, (x, y), int(radius), dark, -1, cv2.LINE_AA)
    n = _integer(rng, 1, 9)
    lengths, angles = rng.uniform(0.08, 0.4, n) * h, rng.uniform(0, math.pi, n)
    for (x, y), length, angle, wide, dark in zip(
            points(n, 0.15), lengths.tolist(), angles.tolist(), (rng.random(n) < 0.5).tolist(),
            rng.uniform(0, 0.35, (n, 3)).tolist()):
        end = (int(x + length * math.cos(angle)), int(y + length * math.sin(angle)))
        cv2.line(image, (x, y), end, dark, 1 + wide, cv2.LINE_AA)


def _degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The drawn captcha (float32 in [0, 1]) blurred, noisy, JPEG-compressed or not, as uint8."""
    if rng.random() < 0.4:
        image = cv2.GaussianBlur(image, (0, 0), _uniform(rng, 0.3, 0.8))
    if rng.random() < 0.6:   # 255 * image + sigma * noise, rounded and clipped to uint8
        sigma = _uniform(rng, 1, 8)
        out = cv2.addWeighted(image, 255, _noise(rng, image.shape), sigma, 0, dtype=cv2.CV_8U)
    else:
        out = cv2.convertScaleAbs(image, alpha=255)   # image >= 0: rounded, clipped to 255
    if rng.random() < 0.3:
        quality = _integer(rng, 40, 95)
        ok, buf = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = cv2.imdecode(buf, cv2.IMREAD_COLOR)
    return out


def _noise(rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
    """Standard normal float32 noise of `shape`: a window at a random offset into a fixed bank
    of normal draws. Drawing them afresh (numpy's standard_normal) took ~0.6 ms per captcha
    here, more than any other step; a window costs nothing, and its place in a bank of a
    million values is as random as the captcha's other choices."""
    size = math.prod(shape)
    bank = _noise_bank(max(_NOISE_BANK, 4 * size))
    start = _integer(rng, 0, bank.size - size + 1)
    return bank[start:start + size].reshape(shape)


_NOISE_BANK = 1 << 20


@functools.lru_cache(maxsize=2)
def _noise_bank(size: int) -> np.ndarray:
    return np.random.default_rng(_NOISE_BANK).standard_normal(size, dtype=np.float32)
