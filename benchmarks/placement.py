"""How steady a model's readings are under sub-pixel moves: each captcha of a labelled folder read
as it is and moved by every step of a grid (default -1 to 1 px in half pixels, across and down:
25 placements), through the runner's own dataset, decoder and `evaluate`.

    python benchmarks/placement.py --input FOLDER --model models/default.pt [--model other.pt]
                                   [--reach 1.0] [--step 0.5] [--limit 2000]

A reading that flips when the image moves by half a pixel says more about where the model's
decision boundaries lie than about the captcha: on a handful of images (the seed's four real
ones), one plain reading cannot rank two models, the share of placements read right can. Prints
per model: captchas read whole as they are, averaged over the placements, and read at every
placement; and for a folder of at most --list images, each captcha's placements read right and
its readings. Nothing is trained or chosen here; it is a measurement.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from collections import Counter
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.checkpoint import load_checkpoint  # noqa: E402
from core.data import CaptchaDataset, list_files, make_loader, scan_folder  # noqa: E402
from core.engine import evaluate  # noqa: E402
from core.images import ImageError, decode_rgb, read_bytes, write_png  # noqa: E402
from core.inference import for_inference  # noqa: E402


def placements(reach: float, step: float) -> list[tuple[float, float]]:
    """Every (dx, dy) of the grid -reach..reach in `step`s, (0, 0) first."""
    n = int(round(reach / step))
    offsets = [k * step for k in range(-n, n + 1)]
    grid = [(dx, dy) for dy in offsets for dx in offsets if (dx, dy) != (0.0, 0.0)]
    return [(0.0, 0.0)] + grid


def moved(image: np.ndarray, dx: float, dy: float) -> np.ndarray:
    """`image` moved right by dx and down by dy pixels, bilinearly, its edges repeated."""
    if dx == 0 and dy == 0:
        return image
    m = np.float32([[1, 0, dx], [0, 1, dy]])
    return cv2.warpAffine(image, m, image.shape[1::-1], flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_REPLICATE)


def decodable(folder: Path, names: list[str]) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """The images of `names` that decode, and why each of the others does not."""
    images, failed = {}, {}
    for name in names:
        try:
            images[name] = decode_rgb(read_bytes(str(folder / name)))
        except ImageError as exc:
            failed[name] = str(exc)
    return images, failed


def read_moved(originals: dict[str, np.ndarray], models: list[str],
               grid: list[tuple[float, float]], tmp: Path) -> dict[str, dict[str, list[str]]]:
    """For each model, each image's readings (by its relative path in `originals`) at each
    placement of `grid`, in its order."""
    readers = []
    for path in models:
        ckpt = load_checkpoint(path)
        readers.append((path, for_inference(ckpt.model, ckpt.temperature), ckpt))
    names = list(originals)
    readings: dict[str, dict[str, list[str]]] = {m: {n: [] for n in names} for m in models}
    device = torch.device("cpu")
    for k, (dx, dy) in enumerate(grid):
        place = tmp / f"p{k}"
        for name in names:
            (place / name).parent.mkdir(parents=True, exist_ok=True)
            write_png(str(place / name), np.ascontiguousarray(moved(originals[name], dx, dy)))
        for path, model, ckpt in readers:
            items = scan_folder(place, ckpt.labels)

            def note(batch: dict, decoded, items=items, path=path) -> None:
                for index, text in zip(batch["index"].tolist(), decoded.texts):
                    readings[path][items[index].path].append(text)

            loader = make_loader(CaptchaDataset(place, items, ckpt.codec, ckpt.image), 64, 0, device)
            evaluate(model, loader, ckpt.codec, device, on_batch=note)
    return readings


def labels_of(folder: Path, names: list[str], model: str) -> dict[str, str | None]:
    ckpt = load_checkpoint(model)
    wanted = set(names)
    return {item.path: item.label for item in scan_folder(folder, ckpt.labels)
            if item.path in wanted}


def summary(readings: dict[str, list[str]], labels: dict[str, str | None]) -> dict[str, float]:
    """Captchas read whole as they are, averaged over placements, and at every placement."""
    scored = [n for n, lab in labels.items() if lab is not None]
    hits = {n: [t == labels[n] for t in readings[n]] for n in scored}
    total = max(1, len(scored))
    return {"as they are": sum(h[0] for h in hits.values()) / total,
            "averaged over placements": sum(float(np.mean(h)) for h in hits.values()) / total,
            "at every placement": sum(all(h) for h in hits.values()) / total}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="labelled captchas")
    p.add_argument("--model", action="append", required=True, help="checkpoint (repeatable)")
    p.add_argument("--reach", type=float, default=1.0, help="largest move, pixels")
    p.add_argument("--step", type=float, default=0.5, help="grid step, pixels")
    p.add_argument("--limit", type=int, default=2000, help="first N files of the folder")
    p.add_argument("--list", type=int, default=12, help="list each captcha for folders this small")
    args = p.parse_args()
    folder = Path(args.input)
    originals, failed = decodable(folder, list_files(folder)[:args.limit])
    for name, why in failed.items():
        print(f"left out {name}: {why}")
    if not originals:
        sys.exit(f"placement: no image in {folder} could be read")
    names = list(originals)
    grid = placements(args.reach, args.step)
    with tempfile.TemporaryDirectory() as tmp:
        readings = read_moved(originals, args.model, grid, Path(tmp))
    # each model's labels as its own settings read the file names (its alphabet, case)
    labels = {model: labels_of(folder, names, model) for model in args.model}
    print(f"{len(names)} captchas of {folder}, {len(grid)} placements "
          f"(-{args.reach:g} to {args.reach:g} px in steps of {args.step:g}, across and down)\n")
    print("| model | read as they are | averaged over placements | read at every placement |")
    print("|---|---:|---:|---:|")
    for model in args.model:
        s = summary(readings[model], labels[model])
        print(f"| {Path(model).name} | " + " | ".join(f"{100 * v:.2f} %" for v in s.values()) + " |")
    if len(names) <= args.list:
        for model in args.model:
            print(f"\n{Path(model).name}:\n")
            print("| captcha | label | as it is | placements read right | readings |")
            print("|---|---|---|---:|---|")
            for name in names:
                texts = readings[model][name]
                label = labels[model][name]
                right = sum(t == label for t in texts)
                common = ", ".join(f"{t} x{c}" for t, c in Counter(texts).most_common(4))
                print(f"| {name} | {label} | {texts[0]} | {right} of {len(texts)} | {common} |")


if __name__ == "__main__":
    main()
