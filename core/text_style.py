"""Printed text of every kind (generate.style: fonts): what a sequence reader's features are
pretrained on before they meet a user's captchas (docs/pretraining.md).

    image = render("Xk4Pq9", np.random.default_rng([seed, index]), height, width)

Not any one site's look, but the ways captchas differ from one another: every TrueType face
matplotlib ships (sans, serif, monospace, Computer Modern; roman, bold, italic), condensed and
extended, thin, heavy or hollow; large or small in the image, spaced apart or overlapping,
turned and slanted; one colour or a colour per character, on flat, graded or mottled
backgrounds, light or dark; lines, arcs and dots over it; blur, noise and JPEG artefacts. A
model that has read a few hundred thousand of these has features for strokes and shapes in
general, and learns a user's folder from there instead of from random weights.

Deterministic for a seed and an index, whatever the number of workers (one numpy Generator
per image). Unlike the classic and seed2016 styles it does not promise the same pixels on
every CPU (OpenCV's float warps and blurs are used): pretraining data needs variety, not
reproducibility to the bit. Nor is every label readable by construction: in some of these
faces l, I and 1 (or O and 0) are the same shape, as they are in some real captchas.
"""
from __future__ import annotations

import collections
import functools
import logging
from pathlib import Path

import cv2
import numpy as np

from .seed_style import _bitmap, _font_size

# matplotlib's faces: what the style draws in unless generate.fonts adds more
FACES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
         "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
         "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf",
         "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
         "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
         "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmtt10.ttf",
         "cmti10.ttf")
_FONT_SUFFIXES = (".ttf", ".otf")
_SHAPE_SIZE = 40                # font size the faces' glyphs are compared at (face_check)
_PICTURE = 0.47                 # a face whose glyphs resemble the letters less is a picture font
_CAPS_ONLY = 16                 # letters whose two cases are one shape: more, a caps-only face
_CAP_HEIGHT = (0.28, 0.72)      # cap height / image height
_STRETCH = (0.6, 1.6)           # horizontal scale of the face: condensed to extended
_GAP = (-0.12, 0.6)             # between neighbours, / cap height: overlapping to spaced apart
_MIN_CONTRAST = 0.3             # luminance between text and the background's mean, 0-1


def find_faces(folder: str | Path, alphabet: str) -> tuple[tuple[str, ...], dict[str, int]]:
    """matplotlib's faces and every usable TrueType or OpenType face under `folder` (searched
    recursively, in sorted order, one file per name), and how many files were skipped, by
    reason. Usable: Pillow reads it, and it draws every character of `alphabet` as a shape of
    its own (face_check). What generate.fonts adds to the style, so that the faces, and so the
    images, depend only on the folder's files."""
    found, skipped, names = list(FACES), collections.Counter(), set(FACES)
    paths = sorted(p for p in Path(folder).rglob("*") if p.suffix.lower() in _FONT_SUFFIXES)
    for path in paths:
        if path.name in names:
            skipped["the same file name again"] += 1
            continue
        why = face_check(str(path), alphabet)
        if why:
            skipped[why] += 1
            continue
        names.add(path.name)
        found.append(str(path))
    return tuple(found), dict(skipped)


def face_check(face: str, alphabet: str) -> str:
    """Why the face (a font file) cannot draw `alphabet`'s labels, or "" if it can: it cannot
    be read, lacks a character or leaves it blank, draws the two cases of most letters as one
    shape (caps-only and small-caps faces), or draws pictures (dingbats) instead of letters:
    its glyphs, filled, resemble the same characters in matplotlib's faces less than
    _PICTURE on average (correlation of blurred 20x20 shapes; hollow and stencil faces pass,
    stars and ornaments do not)."""
    from fontTools.ttLib import TTFont      # matplotlib's dependency
    logging.getLogger("fontTools").setLevel(logging.ERROR)   # its warnings on odd tables
    try:
        cmap = TTFont(face, fontNumber=0, lazy=True).getBestCmap() or {}
        if any(ord(c) not in cmap for c in alphabet):
            return "lacks characters"
        inks = {c: _bitmap(face, _SHAPE_SIZE, c)[0] for c in alphabet}
    except Exception:  # noqa: BLE001 - FreeType and fontTools raise many kinds on a bad file
        return "unreadable"
    if any(not ink.any() for ink in inks.values()):
        return "draws a character blank"
    shapes = {c: _shape(ink) for c, ink in inks.items()}
    cased = [c for c in alphabet if c.islower() and c.upper() in shapes]
    if len(cased) > _CAPS_ONLY and sum(
            float(shapes[c] @ shapes[c.upper()]) > 0.9 for c in cased) > _CAPS_ONLY:
        return "draws both cases alike"
    known = [c for c in alphabet if c in _reference_shapes()]
    if known and np.mean([_resemblance(c, inks[c]) for c in known]) < _PICTURE:
        return "draws pictures, not letters"
    return ""


def _shape(ink: np.ndarray, filled: bool = False) -> np.ndarray:
    """A glyph's shape for comparing faces: its ink box scaled to 20x20, blurred, as a unit
    vector with mean 0; `filled`: with the holes filled first (a hollow face's outline then
    compares as the letter it outlines)."""
    if filled:
        solid = np.pad((ink > 96).astype(np.uint8), 1)
        outside = solid.copy()
        cv2.floodFill(outside, None, (0, 0), 1)
        ink = ((solid | (1 - outside))[1:-1, 1:-1] * 255).astype(np.uint8)
    v = cv2.resize(ink.astype(np.float32), (20, 20), interpolation=cv2.INTER_AREA)
    v = cv2.GaussianBlur(v, (0, 0), 1.5).ravel()
    v -= v.mean()
    return v / (np.linalg.norm(v) + 1e-6)


def _resemblance(char: str, ink: np.ndarray) -> float:
    """How much `ink` looks like `char` in the most similar of matplotlib's faces, as drawn or
    with holes filled, whichever is closer: -1 to 1."""
    plain, filled = _reference_shapes()[char]
    return max(float((plain @ _shape(ink)).max()), float((filled @ _shape(ink, True)).max()))


@functools.lru_cache(maxsize=1)
def _reference_shapes() -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """The ASCII letters and digits in matplotlib's faces, as _shape sees them."""
    shapes = {}
    for char in "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz":
        inks = [_bitmap(face, _SHAPE_SIZE, char)[0] for face in FACES]
        shapes[char] = (np.stack([_shape(i) for i in inks]),
                        np.stack([_shape(i, True) for i in inks]))
    return shapes


def render(text: str, rng: np.random.Generator, height: int, width: int,
           faces: tuple[str, ...] = ()) -> np.ndarray:
    """One image showing `text`, RGB uint8 (height, width, 3), in one or more of `faces`
    (find_faces'; empty: matplotlib's)."""
    faces = faces or FACES
    image = _background(rng, height, width)
    mask, boxes = _text_mask(text, rng, height, width, faces)
    ground = float(_luminance(image.reshape(-1, 3).mean(0)))
    if rng.random() < 0.35:      # a colour per character
        colours = np.stack([_contrasting(rng, ground) for _ in boxes])
        layer = np.zeros_like(image)
        for (left, right), colour in zip(boxes, colours):
            layer[:, left:right] = colour
    else:
        layer = np.broadcast_to(_contrasting(rng, ground), image.shape)
    image = image * (1 - mask[..., None]) + layer * mask[..., None]
    _clutter(image, rng, ground, boxes)
    return _degrade(image, rng)


def _luminance(rgb: np.ndarray) -> np.ndarray:
    return rgb @ np.array([0.299, 0.587, 0.114], np.float32)


def _contrasting(rng: np.random.Generator, ground: float) -> np.ndarray:
    """A random colour at least _MIN_CONTRAST from the luminance `ground`."""
    for _ in range(20):
        colour = rng.random(3).astype(np.float32)
        if abs(float(_luminance(colour)) - ground) >= _MIN_CONTRAST:
            return colour
    return np.full(3, 0.0 if ground > 0.5 else 1.0, np.float32)


def _background(rng: np.random.Generator, h: int, w: int) -> np.ndarray:
    """Flat, graded or mottled, any colour: float32 RGB in [0, 1]."""
    base = rng.random(3).astype(np.float32)
    if rng.random() < 0.5:       # most captchas are light
        base = 0.75 + 0.25 * base
    image = np.broadcast_to(base, (h, w, 3)).copy()
    if rng.random() < 0.4:       # a gradient to another colour
        other = rng.random(3).astype(np.float32)
        t = np.linspace(0, 1, w, dtype=np.float32)[None, :, None]
        if rng.random() < 0.5:
            t = np.linspace(0, 1, h, dtype=np.float32)[:, None, None]
        image += (other - base) * t * rng.uniform(0.3, 1.0)
    if rng.random() < 0.4:       # mottled: smooth random blobs of colour
        cells = rng.random((int(rng.integers(2, 7)), int(rng.integers(3, 15)), 3))
        blobs = cv2.resize(cells.astype(np.float32), (w, h), interpolation=cv2.INTER_CUBIC)
        image += (blobs - 0.5) * rng.uniform(0.2, 0.8)
    if rng.random() < 0.3:       # fine grain
        image += rng.normal(0, rng.uniform(0.02, 0.12), (h, w, 1)).astype(np.float32)
    return np.clip(image, 0, 1)


def _text_mask(text: str, rng: np.random.Generator, h: int, w: int,
               faces: tuple[str, ...] = FACES) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The text's coverage (float32 (h, w) in [0, 1]) and each character's columns."""
    drawn = [faces[int(rng.integers(len(faces)))]]
    if rng.random() < 0.2:       # a face per character
        drawn = [faces[int(k)] for k in rng.integers(len(faces), size=len(text))]
    cap = rng.uniform(*_CAP_HEIGHT) * h
    stretch = rng.uniform(*_STRETCH)
    turn, slant = rng.uniform(0, 15), rng.uniform(-0.3, 0.3) if rng.random() < 0.3 else 0.0
    glyphs = []
    for k, char in enumerate(text):
        face = drawn[k % len(drawn)]
        ink, top = _bitmap(face, _font_size(face, cap * rng.uniform(0.9, 1.1)), char)
        glyphs.append((_transform(ink, stretch * rng.uniform(0.93, 1.07),
                                  rng.uniform(-turn, turn), slant), top))
    gap = rng.uniform(*_GAP) * cap
    gaps = [gap + rng.uniform(-0.08, 0.08) * cap for _ in glyphs[:-1]] + [0.0]
    span = sum(g.shape[1] for g, _ in glyphs) + sum(gaps)
    fit = min(1.0, 0.96 * w / max(span, 1), 0.96 * h / max(max(g.shape[0] for g, _ in glyphs), 1))
    if fit < 1.0:                # too long or too tall for the image: the whole text smaller
        glyphs = [(cv2.resize(g, (max(1, round(g.shape[1] * fit)), max(1, round(g.shape[0] * fit))),
                              interpolation=cv2.INTER_AREA), round(top * fit)) for g, top in glyphs]
        gaps = [g * fit for g in gaps]
        span *= fit
    above = max(-top for _, top in glyphs)              # highest ink above the baseline
    below = max(g.shape[0] + top for g, top in glyphs)  # lowest below it
    baseline = rng.uniform(above, max(above, h - below)) if h > above + below else (h + above - below) / 2
    x = rng.uniform(0, max(0.0, w - span))
    wave = rng.uniform(0, 0.08) * h
    mask = np.zeros((h, w), np.float32)
    boxes = []
    for (glyph, top), g in zip(glyphs, gaps):
        y = int(round(baseline + top + rng.uniform(-wave, wave)))
        y = min(max(y, 0), max(0, h - glyph.shape[0]))
        left = int(round(x))
        part = glyph[:h - y, :max(0, w - left)].astype(np.float32) / 255
        region = mask[y:y + part.shape[0], left:left + part.shape[1]]
        np.maximum(region, part, out=region)
        boxes.append((left, min(w, left + glyph.shape[1])))
        x += glyph.shape[1] + g
    return _weight(mask, rng, cap), boxes


def _transform(ink: np.ndarray, stretch: float, degrees: float, slant: float) -> np.ndarray:
    """`ink` scaled across by `stretch`, slanted and turned, cropped to its new ink box."""
    h, w = ink.shape
    pad = h // 2 + 2
    canvas = cv2.copyMakeBorder(ink, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=0)
    centre = (canvas.shape[1] / 2, canvas.shape[0] / 2)
    turn = cv2.getRotationMatrix2D(centre, degrees, 1.0)
    affine = np.array([[stretch, slant, 0], [0, 1, 0]], np.float64)
    affine[:, 2] = np.array(centre) - affine[:, :2] @ np.array(centre)
    matrix = turn @ np.vstack([affine, [0, 0, 1]])
    out_w = int(canvas.shape[1] * max(1.0, stretch)) + 2
    turned = cv2.warpAffine(canvas, matrix, (out_w, canvas.shape[0]), flags=cv2.INTER_LINEAR)
    ys, xs = np.nonzero(turned)
    if not len(xs):
        return ink
    return turned[ys.min():ys.max() + 1, xs.min():xs.max() + 1]


def _weight(mask: np.ndarray, rng: np.random.Generator, cap: float) -> np.ndarray:
    """Heavier, thinner or hollow strokes, now and then."""
    draw = rng.random()
    kernel = np.ones((3, 3), np.uint8)
    if draw < 0.15:
        return cv2.dilate(mask, kernel, iterations=1 + int(cap > 24))
    if draw < 0.25 and cap > 20:
        return cv2.erode(mask, kernel)
    if draw < 0.37 and cap > 16:   # hollow: the outline only
        return np.clip(mask - cv2.erode(mask, kernel, iterations=1 + int(cap > 30)), 0, 1)
    return mask


def _clutter(image: np.ndarray, rng: np.random.Generator, ground: float,
             boxes: list[tuple[int, int]]) -> None:
    """Lines, arcs and dots over the image, in place."""
    h, w = image.shape[:2]
    for _ in range(int(rng.integers(0, 7)) if rng.random() < 0.7 else 0):
        colour = (_contrasting(rng, ground) if rng.random() < 0.6 else rng.random(3)).tolist()
        p1 = (int(rng.integers(-w // 4, w)), int(rng.integers(0, h)))
        p2 = (int(p1[0] + rng.integers(w // 8, w)), int(rng.integers(0, h)))
        thickness = 1 + int(rng.random() < 0.3)
        if rng.random() < 0.3:
            axes = (int(rng.integers(w // 8, w // 2 + 1)), int(rng.integers(h // 4, h + 1)))
            cv2.ellipse(image, p1, axes, float(rng.uniform(0, 180)), 0,
                        float(rng.uniform(60, 300)), colour, thickness, cv2.LINE_AA)
        else:
            cv2.line(image, p1, p2, colour, thickness, cv2.LINE_AA)
    if rng.random() < 0.3:
        n = int(rng.integers(20, 400))
        ys, xs = rng.integers(0, h, n), rng.integers(0, w, n)
        image[ys, xs] = rng.random((n, 3)).astype(np.float32)


def _degrade(image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    if rng.random() < 0.3:
        image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.4, 1.2))
    if rng.random() < 0.3:
        image = image + rng.normal(0, rng.uniform(0.01, 0.06), image.shape).astype(np.float32)
    out = np.clip(image * 255 + 0.5, 0, 255).astype(np.uint8)
    if rng.random() < 0.25:      # JPEG artefacts, as in captchas saved as JPEG
        quality = int(rng.integers(25, 90))
        _, data = cv2.imencode(".jpg", out[..., ::-1], [cv2.IMWRITE_JPEG_QUALITY, quality])
        out = np.ascontiguousarray(cv2.imdecode(data, cv2.IMREAD_COLOR)[..., ::-1])
    return out
