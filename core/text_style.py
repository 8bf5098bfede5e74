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

import cv2
import numpy as np

from .seed_style import _bitmap, _font_size

_FACES = ("DejaVuSans.ttf", "DejaVuSans-Bold.ttf", "DejaVuSans-Oblique.ttf",
          "DejaVuSans-BoldOblique.ttf", "DejaVuSansMono.ttf", "DejaVuSansMono-Bold.ttf",
          "DejaVuSansMono-Oblique.ttf", "DejaVuSansMono-BoldOblique.ttf", "DejaVuSerif.ttf",
          "DejaVuSerif-Bold.ttf", "DejaVuSerif-Italic.ttf", "DejaVuSerif-BoldItalic.ttf",
          "STIXGeneral.ttf", "STIXGeneralBol.ttf", "STIXGeneralItalic.ttf",
          "STIXGeneralBolIta.ttf", "cmr10.ttf", "cmb10.ttf", "cmss10.ttf", "cmtt10.ttf",
          "cmti10.ttf")
_CAP_HEIGHT = (0.28, 0.72)      # cap height / image height
_STRETCH = (0.6, 1.6)           # horizontal scale of the face: condensed to extended
_GAP = (-0.12, 0.6)             # between neighbours, / cap height: overlapping to spaced apart
_MIN_CONTRAST = 0.3             # luminance between text and the background's mean, 0-1


def render(text: str, rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """One image showing `text`, RGB uint8 (height, width, 3)."""
    image = _background(rng, height, width)
    mask, boxes = _text_mask(text, rng, height, width)
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


def _text_mask(text: str, rng: np.random.Generator, h: int,
               w: int) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """The text's coverage (float32 (h, w) in [0, 1]) and each character's columns."""
    faces = [_FACES[int(rng.integers(len(_FACES)))]]
    if rng.random() < 0.2:       # a face per character
        faces = [_FACES[int(k)] for k in rng.integers(len(_FACES), size=len(text))]
    cap = rng.uniform(*_CAP_HEIGHT) * h
    stretch = rng.uniform(*_STRETCH)
    turn, slant = rng.uniform(0, 15), rng.uniform(-0.3, 0.3) if rng.random() < 0.3 else 0.0
    glyphs = []
    for k, char in enumerate(text):
        face = faces[k % len(faces)]
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
