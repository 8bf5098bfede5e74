"""What the generator draws on this machine: samples/ redrawn and compared to the pixel, and one
digest of many captchas, to compare across machines (docs/determinism.md).

    python benchmarks/generator_digest.py [--count 2000] [--seed 23]

Prints one line: the machine, numpy's and OpenCV's versions, how many of the 36 samples differ
from what is drawn here, and the SHA-256 of the labels and pixels of --count captchas of --seed.
Two machines that draw the same captchas print the same digest.
"""
from __future__ import annotations

import argparse
import hashlib
import platform
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from core.config import load_config  # noqa: E402
from core.generator import file_name, generate_one  # noqa: E402
from core.images import read_image  # noqa: E402
from core.runtime import cpu_name  # noqa: E402


def samples_differing(cfg) -> tuple[int, int]:
    """How many of samples/ differ from what is drawn here, and how many there are."""
    folder = ROOT / "samples"
    count = len(list(folder.iterdir()))
    differing = 0
    for index in range(count):
        text, pixels = generate_one(index, 7, cfg.labels, cfg.image)
        path = folder / file_name(text, index, count)
        if not path.exists():
            differing += 1
            continue
        stored, _ = read_image(str(path), cfg.image.height, cfg.image.width)
        differing += int(not np.array_equal(stored, pixels))
    return differing, count


def digest(cfg, count: int, seed: int) -> str:
    h = hashlib.sha256()
    for index in range(count):
        text, pixels = generate_one(index, seed, cfg.labels, cfg.image)
        h.update(text.encode() + pixels.tobytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=23)
    args = parser.parse_args()
    cfg = load_config()
    differing, samples = samples_differing(cfg)
    print(f"{platform.machine()} ({cpu_name()}), numpy {np.__version__}, "
          f"opencv {cv2.__version__}: samples/ differing {differing} of {samples}, "
          f"{args.count} captchas of seed {args.seed}: sha256 {digest(cfg, args.count, args.seed)}")


if __name__ == "__main__":
    main()
