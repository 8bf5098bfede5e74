"""What cutting images to their text (image.crop content, packed) costs the decoder, side by side.

    python benchmarks/crop_cost.py --input DIR [--height 48] [--width 256] [--limit 1000]
                                   [--rounds 3]

Decodes the same files, one process, one OpenCV thread (as a run_batch worker does), alternately
whole, cut to their text and cut with its wide gaps closed (core.images.decode_image with crop
none, content and packed), fitted to HEIGHTxWIDTH; prints images per second of each and their
ratios per round, and how many of the files had a text box at all. The files are read into
memory first: only decoding is timed.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.images import content_box, decode_image, decode_rgb  # noqa: E402
from core.runtime import cpu_name  # noqa: E402


def rate(blobs: list[bytes], height: int, width: int, crop: str) -> float:
    start = time.perf_counter()
    for data in blobs:
        decode_image(data, height, width, crop=crop)
    return len(blobs) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--height", type=int, default=48)
    parser.add_argument("--width", type=int, default=256)
    parser.add_argument("--limit", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    names = sorted(n for n in os.listdir(args.input)
                   if os.path.isfile(os.path.join(args.input, n)))[:args.limit]
    blobs = [Path(args.input, n).read_bytes() for n in names]
    boxed = sum(content_box(decode_rgb(data)) is not None for data in blobs)
    print(f"machine: {cpu_name()}, {os.cpu_count()} cores; {len(blobs)} files of "
          f"{args.input}, {boxed} with a text box; fitted to {args.width}x{args.height}")
    print("| round | whole, images/s | content, images/s | packed, images/s | time: content, "
          "packed |\n|---:|---:|---:|---:|---:|")
    for k in range(1, args.rounds + 1):
        whole, content, packed = (rate(blobs, args.height, args.width, crop)
                                  for crop in ("none", "content", "packed"))
        print(f"| {k} | {whole:,.0f} | {content:,.0f} | {packed:,.0f} | "
              f"{whole / content:.2f}x, {whole / packed:.2f}x |")


if __name__ == "__main__":
    main()
