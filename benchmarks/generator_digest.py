"""What the generator draws on this machine: samples/ redrawn and compared to the pixel, and one
digest of many captchas, to compare across machines (docs/determinism.md).

    python benchmarks/generator_digest.py [--count 2000] [--seed 23] [--style classic|seed2016]

Prints one line: the machine, the drawing libraries' versions (numpy, OpenCV, and Pillow and
matplotlib for the seed2016 look), the style (generate.style), how many of the 36 samples differ
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
import matplotlib  # noqa: E402
import numpy as np  # noqa: E402
import PIL  # noqa: E402

from core.config import CAPTCHA_STYLES, load_config  # noqa: E402
from core.generator import file_name, generate_one  # noqa: E402
from core.images import read_image  # noqa: E402
from core.runtime import cpu_name  # noqa: E402


def samples_differing(gen) -> tuple[int, int]:
    """How many of samples/ differ from what is drawn here, and how many there are."""
    folder = ROOT / "samples"
    count = len(list(folder.iterdir()))
    differing = 0
    for index in range(count):
        text, pixels = generate_one(index, 7, gen.labels, gen.image, gen.style)
        path = folder / file_name(text, index, count)
        if not path.exists():
            differing += 1
            continue
        stored, _ = read_image(str(path), gen.height, gen.width)
        differing += int(not np.array_equal(stored, pixels))
    return differing, count


def digest(gen, count: int, seed: int) -> str:
    h = hashlib.sha256()
    for index in range(count):
        text, pixels = generate_one(index, seed, gen.labels, gen.image, gen.style)
        h.update(text.encode() + pixels.tobytes())
    return h.hexdigest()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=23)
    # the looks promised the same pixels on every CPU (not fonts: docs/determinism.md)
    parser.add_argument("--style", choices=[s for s in CAPTCHA_STYLES if s != "fonts"],
                        default=None,
                        help="the look drawn (default: generate.style, what samples/ are drawn in)")
    args = parser.parse_args()
    gen = load_config(overrides={"generate.style": args.style}).generate
    differing, samples = samples_differing(gen)
    print(f"{platform.machine()} ({cpu_name()}), numpy {np.__version__}, "
          f"opencv {cv2.__version__}, pillow {PIL.__version__}, matplotlib "
          f"{matplotlib.__version__}, style {gen.style}: samples/ differing {differing} of "
          f"{samples}, {args.count} captchas of seed {args.seed}: sha256 "
          f"{digest(gen, args.count, args.seed)}")


if __name__ == "__main__":
    main()
