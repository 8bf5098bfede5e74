"""How a model copes with captchas unlike its training images: the same labelled folder read as
it is and after changes none of the training augmentation makes (larger shifts, shrinking,
grey, heavy JPEG, a blurred rescale, dark text on light).

    python benchmarks/style_shift.py --input data/bundle-test --model models/default.pt \\
        --model data/other.pt [--limit 2000]

Prints one markdown table: captchas read whole per variant and model. The variants are written
once to a temporary folder and read through the runner's own dataset, decoder and `evaluate`.
"""
from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import cv2
import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.checkpoint import load_checkpoint  # noqa: E402
from core.config import load_config  # noqa: E402
from core.data import CaptchaDataset, list_files, make_loader, scan_folder  # noqa: E402
from core.engine import evaluate  # noqa: E402
from core.images import read_image, write_png  # noqa: E402
from core.inference import for_inference  # noqa: E402


def _warp(image: np.ndarray, dx: float, scale: float) -> np.ndarray:
    h, w = image.shape[:2]
    m = cv2.getRotationMatrix2D((w / 2, h / 2), 0.0, scale)
    m[0, 2] += dx
    return cv2.warpAffine(image, m, (w, h), borderMode=cv2.BORDER_REPLICATE)


def _jpeg(image: np.ndarray, quality: int) -> np.ndarray:
    _, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, quality])
    return cv2.imdecode(buf, cv2.IMREAD_UNCHANGED)


VARIANTS = {
    "as generated": lambda im: im,
    "shifted 10 px right": lambda im: _warp(im, 10, 1.0),
    "shifted 10 px left": lambda im: _warp(im, -10, 1.0),
    "shifted 20 px right": lambda im: _warp(im, 20, 1.0),
    "shifted 20 px left": lambda im: _warp(im, -20, 1.0),
    "shrunk to 92 %": lambda im: _warp(im, 0, 0.92),
    "enlarged to 108 %": lambda im: _warp(im, 0, 1.08),
    "shrunk to 85 %": lambda im: _warp(im, 0, 0.85),
    "enlarged to 115 %": lambda im: _warp(im, 0, 1.15),
    "grey": lambda im: cv2.cvtColor(cv2.cvtColor(im, cv2.COLOR_RGB2GRAY), cv2.COLOR_GRAY2RGB),
    "JPEG quality 25": lambda im: _jpeg(im, 25),
    "rescaled from 60 %": lambda im: cv2.resize(cv2.resize(im, None, fx=0.6, fy=0.6,
                                                           interpolation=cv2.INTER_AREA),
                                                im.shape[1::-1], interpolation=cv2.INTER_LINEAR),
    "inverted (dark text)": lambda im: 255 - im,
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--input", required=True, help="labelled captchas")
    p.add_argument("--model", action="append", required=True, help="checkpoint (repeatable)")
    p.add_argument("--limit", type=int, default=2000, help="first N files of the folder")
    args = p.parse_args()
    cfg = load_config()
    torch.set_num_threads(2)
    # Each model folded for inference once, not once per variant.
    readers = []
    for path in args.model:
        ckpt = load_checkpoint(path)
        readers.append((for_inference(ckpt.model, ckpt.temperature), ckpt.codec, ckpt.image,
                        ckpt.labels))
    names = list_files(args.input)[:args.limit]
    device = torch.device("cpu")
    print("| variant | " + " | ".join(Path(m).name for m in args.model) + " |")
    print("|---|" + "---:|" * len(readers))
    with tempfile.TemporaryDirectory() as tmp:
        for k, (variant, change) in enumerate(VARIANTS.items()):
            folder = Path(tmp) / f"v{k}"
            folder.mkdir()
            for name in names:
                image, _ = read_image(str(Path(args.input) / name), cfg.generate.height,
                                      cfg.generate.width)
                write_png(str(folder / Path(name).name), np.ascontiguousarray(change(image)))
            cells = []
            for model, codec, image_cfg, labels in readers:
                items = scan_folder(folder, labels)
                loader = make_loader(CaptchaDataset(folder, items, codec, image_cfg), 64, 0, device)
                metrics = evaluate(model, loader, codec, device)
                cells.append(f"{100 * metrics.captcha_accuracy:.2f} %")
            print(f"| {variant} | " + " | ".join(cells) + " |", flush=True)

if __name__ == "__main__":
    main()
