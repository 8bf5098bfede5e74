"""How far generated captchas look from real ones, by the seed's 2016 post's own measurement.

    python benchmarks/style_gap.py --folder "real=../shared/seed/images/captcha*.png" \\
        --folder generator=data/style-gen [--limit 1000]

The first folder is the reference. A folder may end in a file-name pattern (`DIR/captcha*.png`)
to measure only the files it matches. For each folder (its image files, at most --limit of them,
spread evenly; read at the generator's configured size, which is the seed's): the character
boxes of core.style.character_boxes (columns 30-180, grey, Otsu, connected components, the
post's outlier bounds), summarised beside the post's table over 1,000 real captchas, and the
background statistics of core.style.background_stats; each with the two-sample
Kolmogorov-Smirnov distance to the reference's samples. Prints Markdown for docs/style.md.
"""
from __future__ import annotations

import argparse
import fnmatch
import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import load_config  # noqa: E402
from core.data import list_files  # noqa: E402
from core.discover import IMAGE_SUFFIXES  # noqa: E402
from core.images import ImageError, read_image  # noqa: E402
from core.style import (BACKGROUND_MEASURES, BOX_MEASURES, POST_TABLE,  # noqa: E402
                        background_stats, character_boxes, ks_distance, summary)


def measure_folder(folder: Path, limit: int, height: int, width: int):
    """(boxes, background rows, images measured, boxes per image) of up to `limit` images of
    `folder`, or of the folder above it whose names match its last part where that is a
    pattern."""
    pattern = "*"
    if any(c in folder.name for c in "*?["):
        folder, pattern = folder.parent, folder.name
    paths = [p for p in list_files(folder)
             if Path(p).suffix.lower() in IMAGE_SUFFIXES and fnmatch.fnmatch(Path(p).name, pattern)]
    if limit and len(paths) > limit:
        paths = [paths[i] for i in np.linspace(0, len(paths) - 1, limit).round().astype(int)]
    boxes, backgrounds, counts = [], [], []
    for path in paths:
        try:
            image, _ = read_image(str(folder / path), height, width)
        except ImageError as exc:
            print(f"skipped {path}: {exc}", file=sys.stderr)
            continue
        found = character_boxes(image)
        boxes.append(found)
        counts.append(len(found))
        backgrounds.append([background_stats(image)[m] for m in BACKGROUND_MEASURES])
    if not boxes:
        raise SystemExit(f"style_gap: no readable image in {folder}")
    return (np.concatenate(boxes), np.array(backgrounds), len(boxes), np.array(counts))


def _f(value: float) -> str:
    return "—" if value != value else f"{value:,.1f}" if abs(value) >= 10 else f"{value:.2f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--folder", action="append", required=True, metavar="NAME=DIR",
                        help="a folder of captchas; the first is the reference")
    parser.add_argument("--limit", type=int, default=1000, help="images per folder (0: all)")
    args = parser.parse_args()
    size = load_config().generate.image
    measured = {}
    for spec in args.folder:
        name, _, folder = spec.rpartition("=")
        measured[name or folder] = measure_folder(Path(folder), args.limit, size.height, size.width)
    names = list(measured)
    reference = names[0]
    print("| folder | images | boxes kept | boxes per image (mean) |\n|---|---:|---:|---:|")
    for name, (boxes, _, images, counts) in measured.items():
        print(f"| {name} | {images:,} | {len(boxes):,} | {counts.mean():.2f} |")
    print(f"\nCharacter boxes (pixels of the 150-column crop): mean / std. dev. / quartiles, and "
          f"the Kolmogorov-Smirnov distance to `{reference}`'s boxes.\n")
    header = "| measure | 2016 post (1,000 real): mean / sd / min-max |"
    header += "".join(f" {n}: mean / sd | {n}: q1 / median / q3 |" for n in names)
    header += "".join(f" KS {n} |" for n in names[1:])
    print(header + "\n|---|---:|" + "---:|---:|" * len(names) + "---:|" * (len(names) - 1))
    for i, measure in enumerate(BOX_MEASURES):
        mean, sd, low, high = POST_TABLE[measure]
        row = f"| {measure} | {_f(mean)} / {_f(sd)} / {_f(low)}-{_f(high)} |"
        for name in names:
            s = summary(measured[name][0][:, i])
            row += (f" {_f(s['mean'])} / {_f(s['std'])} |"
                    f" {_f(s['q1'])} / {_f(s['median'])} / {_f(s['q3'])} |")
        for name in names[1:]:
            row += f" {ks_distance(measured[reference][0][:, i], measured[name][0][:, i]):.2f} |"
        print(row)
    print(f"\nBackground (pixels not white text), per image: mean / std. dev., and the "
          f"Kolmogorov-Smirnov distance to `{reference}`'s images.\n")
    print("| measure |" + "".join(f" {n} |" for n in names) + "".join(f" KS {n} |" for n in names[1:]))
    print("|---|" + "---:|" * (2 * len(names) - 1))
    for i, measure in enumerate(BACKGROUND_MEASURES):
        row = f"| {measure} |"
        for name in names:
            s = summary(measured[name][1][:, i])
            row += f" {_f(s['mean'])} / {_f(s['std'])} |"
        for name in names[1:]:
            row += f" {ks_distance(measured[reference][1][:, i], measured[name][1][:, i]):.2f} |"
        print(row)


if __name__ == "__main__":
    main()
