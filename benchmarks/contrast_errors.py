"""Misreads against text contrast, on generated captchas: how much of a model's error comes from
text the background drowns out.

    python run_batch.py --input data/bundle-test --model models/default.pt --output /tmp/bt
    python benchmarks/contrast_errors.py --run /tmp/bt/latest --seed 2000

Re-renders each captcha of the run from its generator seed and index (the file name's number),
keeping the background under the text, and scores each captcha by its faintest stretch of text:
the luminance of the text minus that of the background under it, averaged over 12-pixel-wide
slices of the text, the lowest slice kept. Prints, per contrast band, how many captchas and how
many misreads (predictions.csv of the run). The classic look only (its text layers); since
seed2016 became the default look, give a --config with `generate.style: classic`.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core import generator  # noqa: E402
from core.config import load_config  # noqa: E402
from core.files import read_cell, read_rows  # noqa: E402

BANDS = (-1.0, 0.05, 0.1, 0.15, 0.2, 0.3, 0.5, 1.01)
LUMA = np.array([0.299, 0.587, 0.114], np.float32)


def faintest_text(index: int, seed: int, cfg) -> tuple[str, float]:
    """(label, contrast of the faintest 12-px slice of text) of generated captcha `index`, drawn
    as generator.generate_one draws it."""
    text, rng = generator.label_and_rng(index, seed, cfg.generate.labels)
    background, mask, drawn = generator.text_layers(text, rng, cfg.generate.height,
                                                    cfg.generate.width)
    bg = background @ LUMA   # before any drop shadow: the colours the text was set against
    fg = drawn @ LUMA
    cols = np.flatnonzero(mask.max(0) > 0.5)
    worst = 1.0
    for x0 in range(cols[0], cols[-1] + 1, 12):
        inside = mask[:, x0:x0 + 12] > 0.5
        if inside.sum() >= 8:
            worst = min(worst, float((fg[:, x0:x0 + 12][inside] - bg[:, x0:x0 + 12][inside]).mean()))
    return text, worst


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--run", required=True, help="a run directory of run_batch.py on generated captchas")
    p.add_argument("--seed", type=int, required=True, help="the seed they were generated with")
    p.add_argument("--config", default=None)
    args = p.parse_args()
    cfg = load_config(args.config) if args.config else load_config()
    if cfg.generate.style != "classic":
        sys.exit(f"contrast_errors measures the classic look; the config draws "
                 f"{cfg.generate.style} (give a --config with generate.style: classic)")
    counts = np.zeros((len(BANDS) - 1, 2), int)
    rows = read_rows(Path(args.run) / "predictions.csv")
    if not rows:
        sys.exit(f"{args.run}: no predictions.csv (give a run directory of run_batch.py)")
    for row in rows:
        if row["correct"] == "":
            continue
        path, label = read_cell(row["path"]), read_cell(row["label"])
        index = int(Path(path).stem.rsplit(cfg.generate.labels.separator, 1)[1])
        text, contrast = faintest_text(index, args.seed, cfg)
        if text != label:
            sys.exit(f"{path}: seed {args.seed} gives {text!r}, not this file's label")
        band = np.searchsorted(BANDS, contrast, side="right") - 1
        counts[band] += (1, row["correct"] == "0")
    print("| faintest text contrast | captchas | misread | read |")
    print("|---|---:|---:|---:|")
    for (lo, hi), (n, wrong) in zip(zip(BANDS, BANDS[1:]), counts):
        if n:
            print(f"| {lo:.2f} to {hi:.2f} | {n} | {wrong} | {100 * (1 - wrong / n):.2f} % |")


if __name__ == "__main__":
    main()
