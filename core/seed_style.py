"""The seed's real captchas as they look (generate.style: seed2016), drawn with the generator's
own exact toolkit (core.generator): same seeding, same determinism, another look.

    image = render("AB12", np.random.default_rng([seed, index]), height, width)

What the four real captchas in ../shared/seed/images and the 2016 post's measurements of 1,000
show (docs/style.md): large characters (cap height about 0.6 of the image, 28 of 46 px) and
wide ones (about 26 px), in a solid white Times-style serif roman, some smaller and set lower
than the others, packed so that neighbours nearly touch, from about a ninth of the width on;
small dark specks and dashes cut into the white strokes, small white specks in short dotted runs
around them (in two of the four real captchas a P is a lower-case italic p, smaller, its
descender below the line); the backgrounds vivid, abstract, kaleidoscope-like (mirrored shards) and finely
textured, mostly in one family of hues, with thin bright streaks.

The glyphs are TrueType faces that matplotlib ships (STIX General, a Times-style roman; DejaVu
Serif; Computer Modern), rasterised by FreeType through Pillow: fixed-point arithmetic, the
same pixels on every CPU for a given Pillow build. Every label stays readable by construction,
as in the classic style: the background stays _MIN_CONTRAST below the text's white, a zero is
narrower than an O in each of these faces, and no lower case is drawn that would pass for
another character (core.generator._NO_LOWER_CASE).
"""
from __future__ import annotations

import functools
import os

import cv2
import matplotlib
import numpy as np
from PIL import Image, ImageDraw, ImageFont

from .generator import (_NO_LOWER_CASE, _as_mask, _degrade, _draw_text, _hsv_to_rgb, _ink_columns, _integer, _lay_out,
                        _rotate, _settle, _smooth_colours, _to_float, _uniform)

# Times-style romans first, as in the real captchas; the others keep the model from tying
# itself to one face.
_FONT_FILES = ("STIXGeneralBol.ttf", "STIXGeneral.ttf", "DejaVuSerif-Bold.ttf",
               "DejaVuSerif.ttf", "cmr10.ttf")
_FONT_CDF = np.cumsum([0.35, 0.3, 0.15, 0.1, 0.1])
_FONT_CDF /= _FONT_CDF[-1]
# Each face's italic (Computer Modern's is its math italic), for the lower-case forms.
_ITALIC = {"STIXGeneralBol.ttf": "STIXGeneralBolIta.ttf", "STIXGeneral.ttf": "STIXGeneralItalic.ttf",
           "DejaVuSerif-Bold.ttf": "DejaVuSerif-BoldItalic.ttf",
           "DejaVuSerif.ttf": "DejaVuSerif-Italic.ttf", "cmr10.ttf": "cmmi10.ttf"}
_LOWER = 0.15                       # share of letters drawn in lower case, at the capitals' size
_LOWER_ITALIC = 0.5                 # share of those in the face's italic
_CAP_HEIGHT = (0.54, 0.80)          # cap height / image height (the post's box heights:
                                    # quartiles 24 / 28 / 34 px of 46)
_SMALL = 0.3                        # share of glyphs drawn smaller and lower
_SMALL_SCALE = (0.68, 0.85)
_SMALL_DROP = (0.0, 0.1)            # how much lower, / image height
_BASELINE = (0.76, 0.86)            # baseline / image height (real box tops at 10 +- 4 px)
_STRETCH = (1.0, 1.15)              # horizontal: the real glyphs are wide
_MAX_ROTATION_DEG = 8.0
_TEXT_LEFT = (0.095, 0.125)         # about 30 px of 284
_GLYPH_PAD = 1 / 3                  # room around a glyph, / image height, so turning never cuts it
_GAP = (-0.04, 0.05)                # between neighbours, / image height: nearly touching
_SIZE_STEP = 2                      # font sizes drawn: even numbers of pixels
# How a glyph can be drawn: at full size, smaller and lower (_SMALL), in lower case (_LOWER),
# in lower case and the face's italic (_LOWER_ITALIC).
GLYPH_FORMS = ("full", "small", "lower", "lower italic")


@functools.lru_cache(maxsize=None)
def _font_path(name: str) -> str:
    return os.path.join(matplotlib.get_data_path(), "fonts", "ttf", name)


@functools.lru_cache(maxsize=None)
def _cap_ratio(name: str) -> float:
    """Cap height per pixel of font size ('H' at size 100)."""
    _, top, _, bottom = ImageFont.truetype(_font_path(name), 100).getbbox("H", anchor="ls")
    return (bottom - top) / 100


def _font_size(name: str, cap: float) -> int:
    """The font size that gives `name` a cap height of about `cap` pixels, in steps of
    _SIZE_STEP: the cap height is random anyway, and fewer distinct sizes keep the rasterised
    glyphs in _bitmap's cache."""
    return max(4, _SIZE_STEP * round(cap / _cap_ratio(name) / _SIZE_STEP))


@functools.lru_cache(maxsize=256)
def _font(name: str, size: int) -> ImageFont.FreeTypeFont:
    return ImageFont.truetype(_font_path(name), size)


@functools.lru_cache(maxsize=16384)
def _bitmap(name: str, size: int, char: str) -> tuple[np.ndarray, int]:
    """`char` rasterised in the face `name` at `size` pixels, cropped to its ink box, and the
    box's top relative to the baseline (negative: above it). Cached: a night of captchas draws
    a few thousand distinct ones."""
    font = _font(name, size)
    left, top, right, bottom = font.getbbox(char, anchor="ls")
    image = Image.new("L", (max(1, right - left), max(1, bottom - top)))
    ImageDraw.Draw(image).text((-left, -top), char, fill=255, font=font, anchor="ls")
    ink = np.asarray(image)
    ink.flags.writeable = False
    return ink, top


def render(text: str, rng: np.random.Generator, height: int, width: int,
           drawn: list[tuple[str, str]] | None = None) -> np.ndarray:
    """One captcha showing `text` in the seed's real look, RGB uint8 (height, width, 3). With a
    list for `drawn`, how each glyph was drawn is appended to it, (face, form) per character,
    the form one of GLYPH_FORMS (what benchmarks/glyph_errors.py counts misreads by); the
    image is the same either way."""
    image = _background(rng, height, width)
    coverage = _text_mask(text, rng, height, width, drawn)
    image = _draw_text(image, coverage, _as_mask(coverage), rng)
    _specks(image, coverage, rng, height)
    return _degrade(image, rng)


def _glyph(char: str, rng: np.random.Generator, h: int,
           drawn: list[tuple[str, str]] | None = None) -> tuple[np.ndarray, int]:
    name = _FONT_FILES[int(_FONT_CDF.searchsorted(rng.random(), side="right"))]
    cap = _uniform(rng, *_CAP_HEIGHT) * h
    drop = 0.0
    form = "full"
    if char.isalpha() and char not in _NO_LOWER_CASE and rng.random() < _LOWER:
        char = char.lower()         # the x-height, and descenders below the line, make it small
        form = "lower"
        if rng.random() < _LOWER_ITALIC:
            name, form = _ITALIC[name], "lower italic"
    elif rng.random() < _SMALL:
        cap *= _uniform(rng, *_SMALL_SCALE)
        drop = _uniform(rng, *_SMALL_DROP) * h
        form = "small"
    if drawn is not None:
        drawn.append((name, form))
    size = _font_size(name, cap)
    ink, top = _bitmap(name, size, char)
    th, tw = ink.shape
    pad = int(_GLYPH_PAD * h) + 2
    baseline = round(_uniform(rng, *_BASELINE) * h + drop)
    canvas = np.zeros((h + 2 * pad, tw + 2 * pad), np.uint8)
    y = min(max(0, pad + baseline + top), canvas.shape[0] - th)
    canvas[y:y + th, pad:pad + tw] = ink
    centre = (pad + tw / 2, pad + baseline - cap / 2)
    turned = _rotate(canvas, centre,
                     _uniform(rng, -_MAX_ROTATION_DEG, _MAX_ROTATION_DEG),
                     _uniform(rng, *_STRETCH))
    return _ink_columns(turned, h, pad, tw, th)


def _text_mask(text: str, rng: np.random.Generator, h: int, w: int,
               drawn: list[tuple[str, str]] | None = None) -> np.ndarray:
    glyphs = [_glyph(c, rng, h, drawn)[0] for c in text]
    left = int(_uniform(rng, *_TEXT_LEFT) * w)
    gaps = [int(round(_uniform(rng, *_GAP) * h)) for _ in glyphs[:-1]] + [0]
    return _lay_out(glyphs, gaps, left, h, w)


def _colours(rng: np.random.Generator, hues: list[int],
             groups: list[tuple[int, tuple[int, int], tuple[int, int]]]) -> list[np.ndarray]:
    """For each (n, saturation range, value range) of `groups`, n colours around the hues of
    `hues` (each within +-12 of one of them, OpenCV's 0-179 hue), saturation and value drawn
    from their ranges [low, high): RGB levels, float64. All drawn at once."""
    counts = [n for n, _, _ in groups]
    low = np.repeat([(0, s[0], v[0]) for _, s, v in groups], counts, axis=0)
    span = np.repeat([(25, s[1] - s[0], v[1] - v[0]) for _, s, v in groups], counts, axis=0)
    base = np.asarray(hues)[np.floor(rng.random(sum(counts)) * len(hues)).astype(np.intp)]
    hsv = np.floor(rng.random((sum(counts), 3)) * span + low)
    hsv[:, 0] = (hsv[:, 0] + base - 12) % 180
    return np.split(_hsv_to_rgb(hsv), np.cumsum(counts)[:-1])


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Vivid, finely textured, kaleidoscope-like: float32 RGB in [0, 1]."""
    hues = [_integer(rng, 0, 180)]
    if rng.random() < 0.35:     # most real ones keep to one family of hues; some mix two
        hues.append((hues[0] + _integer(rng, 30, 150)) % 180)
    coarse = (_integer(rng, 2, 5), _integer(rng, 4, 11))
    fine = (_integer(rng, 5, 12), _integer(rng, 30, 71))
    shards, streaks = _integer(rng, 10, 29), _integer(rng, 1, 8)
    n_coarse, n_fine = coarse[0] * coarse[1], fine[0] * fine[1]
    cells, shard_colours, streak_colours = _colours(rng, hues, [
        (n_coarse + n_fine, (130, 256), (30, 231)), (shards, (130, 256), (40, 241)),
        (streaks, (0, 90), (150, 231))])         # streaks: thin, bright, pale
    image = _smooth_colours([(cells[:n_coarse].reshape(*coarse, 3), 1.0),
                             (cells[n_coarse:].reshape(*fine, 3), _uniform(rng, 0.4, 1.0))],
                            h, w)
    # Shards, each with its mirror image about a vertical axis: the kaleidoscope. Each: a
    # centre (x, y), a size r and three or four corners within (1.5 r, r) of the centre.
    layer = image.copy()
    axis = _uniform(rng, 0.2, 0.8) * w
    centres = rng.random((shards, 3)) * (w, 1.4 * h, 0.9 * h) + (0, -0.2 * h, 0.3 * h)
    corners = (rng.random((shards, 4, 2)) * 2 - 1) * (1.5, 1.0)
    triangle = (rng.random(shards) < 0.5).tolist()
    pts = (corners * centres[:, None, 2:] + centres[:, None, :2]).astype(np.int32)
    mirrored = pts * np.array([-1, 1], np.int32) + np.array([round(2 * axis), 0], np.int32)
    for k, colour in enumerate(_to_float(shard_colours).tolist()):
        corners_k = 3 if triangle[k] else 4
        cv2.fillPoly(layer, [pts[k, :corners_k], mirrored[k, :corners_k]], colour)
    layer -= image
    layer *= _uniform(rng, 0.4, 0.9)
    image += layer
    ends = (rng.random((streaks, 2, 2)) * (1.4, 2.0) - (0.2, 0.5)) * (w, h)
    for colour, (p1, p2) in zip(_to_float(streak_colours).tolist(), ends.astype(int).tolist()):
        cv2.line(image, p1, p2, colour, 1)
    return _settle(image, rng, _uniform(rng, 0.25, 0.6), _uniform(rng, 0.28, 0.55))


def _specks(image: np.ndarray, coverage: np.ndarray, rng: np.random.Generator, h: int) -> None:
    """Dark specks and dashes on the white strokes, and white specks in short dotted runs
    around the text, set on `image` (float32 RGB) pixel by pixel."""
    ys, xs = np.nonzero(coverage > 128)
    if not len(xs):
        return
    height, width = image.shape[:2]
    n = _integer(rng, 6, 26)
    at = np.floor(rng.random(n) * len(xs)).astype(np.intp)
    lengths = np.floor(rng.random(n) * 5).astype(np.intp) + 1     # 1: a dot, else a dash
    darks = rng.random((n, 3)) * 0.3
    # a dash of L pixels runs right from its start
    step = np.arange(lengths.sum()) - np.repeat(np.cumsum(lengths) - lengths, lengths)
    px = np.minimum(np.repeat(xs[at], lengths) + step, width - 1)
    image[np.repeat(ys[at], lengths), px] = np.repeat(darks, lengths, axis=0)
    left, right = int(xs.min()), int(xs.max())
    runs = _integer(rng, 4, 16)
    starts = (rng.random((runs, 2)) * (right - left + 20, h) + (left - 10, 0)).astype(np.intp)
    dots = (2 + np.floor(rng.random(runs) * 5)).astype(np.intp)     # 2-6 dots, 2 px apart
    whites = 0.85 + 0.15 * rng.random(runs)
    offset = 2 * (np.arange(dots.sum()) - np.repeat(np.cumsum(dots) - dots, dots))
    dx = np.repeat(starts[:, 0], dots) + offset
    dy = np.repeat(starts[:, 1], dots)
    inside = (dx >= 0) & (dx < width) & (dy >= 0) & (dy < height)
    image[dy[inside], dx[inside]] = np.repeat(whites, dots)[inside, None]
