"""How a model reads the seed2016 look's captchas when every glyph is drawn lighter or heavier
than its face draws it: the same captchas (labels, faces, sizes, backgrounds) at each stroke
weight, in quarter pixels on each side of every stroke, read through the runner's own dataset,
decoder and `evaluate`.

    python benchmarks/stroke_weight.py --model models/default.pt [--model other.pt]
                                       [--weights=-3,-2,-1,0,1,2,3] [--count 1000] [--seed 777000]

Weight 0 is the face as it is. A model that reads weight 0 well and -2 (half a pixel thinner
each side) badly has learned its faces' weights, not only the characters: real sites draw in
every weight. Each glyph is drawn four times as large, its strokes grown or worn away there as
far as the glyph keeps its pieces and its holes (a lighter stroke must not break, a heavier one
must not fill a counter), and brought back to size. Nothing is trained or chosen here; it is a
measurement.
"""
from __future__ import annotations

import argparse
import functools
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch
from PIL import Image, ImageDraw

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core import seed_style  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.config import load_config  # noqa: E402
from core.data import CaptchaDataset, make_loader, scan_folder  # noqa: E402
from core.engine import evaluate  # noqa: E402
from core.generator import generate_folder  # noqa: E402
from core.inference import for_inference  # noqa: E402


SUPERSAMPLE = 4
PLAIN = seed_style._bitmap          # the face as it draws itself (draw_at_weight swaps it)


def reweigh(ink: np.ndarray, weight: int) -> np.ndarray:
    """`ink` (grey levels) with its strokes `weight` pixels heavier (dilated) or lighter
    (eroded) on each side, by a round brush; as much of that as keeps the glyph's pieces and
    holes, so that the label stays readable."""
    def shape(a: np.ndarray) -> tuple[int, int]:
        solid = (a > 127).astype(np.uint8)
        return (cv2.connectedComponents(solid, connectivity=8)[0],
                cv2.connectedComponents(1 - solid, connectivity=4)[0])
    want = shape(ink)
    for w in range(abs(weight), 0, -1):
        brush = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * w + 1, 2 * w + 1))
        out = cv2.dilate(ink, brush) if weight > 0 else cv2.erode(ink, brush)
        if shape(out) == want:
            return out
    return ink


@functools.lru_cache(maxsize=None)
def weighted_bitmap(name: str, size: int, char: str, weight: int) -> tuple[np.ndarray, int]:
    """core.seed_style._bitmap's glyph (its ink box, and the box's top relative to the
    baseline), `weight` quarter pixels heavier or lighter: drawn SUPERSAMPLE times as large,
    reweighed there, and brought back to size by averaging each block of pixels, the baseline
    on a pixel boundary."""
    if not weight:
        return PLAIN(name, size, char)
    s = SUPERSAMPLE
    font = seed_style._font(name, size * s)
    left, top, right, bottom = font.getbbox(char, anchor="ls")
    pad = s * (1 + -(-abs(weight) // s))          # room for the strokes to grow, whole pixels
    x0, y0 = left // s * s - pad, top // s * s - pad
    x1, y1 = -(-right // s) * s + pad, -(-bottom // s) * s + pad
    image = Image.new("L", (x1 - x0, y1 - y0))
    ImageDraw.Draw(image).text((-x0, -y0), char, fill=255, font=font, anchor="ls")
    big = reweigh(np.asarray(image), weight)
    blocks = big.reshape(big.shape[0] // s, s, big.shape[1] // s, s).sum(axis=(1, 3), dtype=np.int32)
    small = ((blocks + s * s // 2) // (s * s)).astype(np.uint8)
    rows, cols = np.flatnonzero(small.max(1)), np.flatnonzero(small.max(0))
    if not len(rows):                              # nothing left: the face's own
        return PLAIN(name, size, char)
    ink = np.ascontiguousarray(small[rows[0]:rows[-1] + 1, cols[0]:cols[-1] + 1])
    return ink, y0 // s + int(rows[0])


def draw_at_weight(folder: Path, weight: int, count: int, seed: int, config) -> None:
    """`count` captchas of `seed` in the seed2016 look, every glyph at `weight`: the very
    captchas jobs.generate draws, but for the weight. One process, as the generator's glyph
    drawing is swapped in place for the call."""
    seed_style._bitmap = lambda name, size, char: weighted_bitmap(name, size, char, weight)
    try:
        generate_folder(folder, count, seed, config.generate.labels, config.generate.image,
                        workers=1, style="seed2016")
    finally:
        seed_style._bitmap = PLAIN


def read(folder: Path, ckpt, model: torch.nn.Module) -> tuple[float, float]:
    """Captchas and characters of `folder` that the loaded checkpoint reads right, as shares;
    `model` is its network as for_inference prepares it."""
    device = torch.device("cpu")
    items = scan_folder(folder, ckpt.labels)
    loader = make_loader(CaptchaDataset(folder, items, ckpt.codec, ckpt.image), 64, 0, device)
    metrics = evaluate(model, loader, ckpt.codec, device)
    return metrics.captcha_accuracy, metrics.char_accuracy


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", action="append", required=True, help="checkpoint (repeatable)")
    p.add_argument("--weights", default="-3,-2,-1,0,1,2,3",
                   help="stroke weights to draw, quarter pixels each side, comma-separated")
    p.add_argument("--count", type=int, default=1000, help="captchas per weight")
    p.add_argument("--seed", type=int, default=777000, help="the captchas' seed")
    p.add_argument("--config", default=None, help="settings file (default: config.yaml)")
    args = p.parse_args()
    try:
        weights = [int(w) for w in args.weights.split(",")]
    except ValueError:
        sys.exit(f"stroke_weight: --weights must be whole numbers separated by commas, not {args.weights!r}")
    config = load_config(args.config)
    readers = []        # each checkpoint loaded and folded for inference once, for every weight
    for path in args.model:
        ckpt = load_checkpoint(path)
        readers.append((ckpt, for_inference(ckpt.model, ckpt.temperature)))
    rows = {}
    with tempfile.TemporaryDirectory() as tmp:
        for weight in weights:
            folder = Path(tmp) / f"w{weight}"
            draw_at_weight(folder, weight, args.count, args.seed, config)
            rows[weight] = [read(folder, ckpt, model) for ckpt, model in readers]
    print(f"{args.count} captchas of seed {args.seed} at each stroke weight (quarter pixels each "
          "side); captchas read whole (characters)\n")
    print("| weight | " + " | ".join(Path(m).name for m in args.model) + " |")
    print("|---:|" + "---:|" * len(args.model))
    for weight, scores in rows.items():
        print(f"| {weight:+d} | " + " | ".join(f"{100 * c:.2f} % ({100 * ch:.2f} %)" for c, ch in scores) + " |")


if __name__ == "__main__":
    main()
