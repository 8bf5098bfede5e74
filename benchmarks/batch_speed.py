"""Batch-runner throughput against the seed post's own pipeline, side by side in one run.

    python benchmarks/batch_speed.py --input DIR [--model models/default.pt] [--limit 5000]

Measured on the same images:
- seed: the post's pipeline as published: glob, per-item cv2.imread, division by 255 into
  float64, its ToTensor (transpose, .float()), DataLoader batch 32 without workers, its Model2;
- runner: `run_batch` itself, the whole pass (listing, decoding, inference, writing the CSVs);
- bounds: decode only (our dataset through the runner's DataLoader, no model) and model only
  (the model on batches already in memory).
Prints a Markdown table for docs/performance.md, with the ratio runner / seed.
"""
from __future__ import annotations

import argparse
import glob
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.batch import run_batch  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.config import load_config  # noqa: E402
from core.data import CaptchaDataset, make_loader, scan_folder  # noqa: E402
from core.labels import build_codec  # noqa: E402
from core.models import for_inference  # noqa: E402
from core.runtime import (available_cores, resolve_batch_size, resolve_device,  # noqa: E402
                          resolve_workers, share_cores)


class SeedModel2(torch.nn.Module):
    """The post's Model2, verbatim but for the class count taken from its alphabet."""

    def __init__(self, classes: int, steps: int):
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.pool = torch.nn.MaxPool2d(2, 2)
        self.conv2 = torch.nn.Conv2d(8, 16, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(16, 32, 3, padding=1)
        self.conv4 = torch.nn.Conv2d(32, 64, 3, padding=1)
        self.conv5 = torch.nn.Conv2d(64, 128, 3, padding=1)
        self.gap = torch.nn.AdaptiveAvgPool2d(1)
        self.heads = torch.nn.ModuleList(torch.nn.Linear(128, classes) for _ in range(steps))

    def forward(self, x):
        for conv in (self.conv1, self.conv2, self.conv3, self.conv4, self.conv5):
            x = self.pool(torch.nn.functional.relu(conv(x)))
        x = self.gap(x).view(-1, 128)
        return [head(x) for head in self.heads]


class SeedDataset(torch.utils.data.Dataset):
    """The post's CaptchaDataset + ToTensor, as published."""

    def __init__(self, files):
        self.files = files

    def __len__(self):
        return len(self.files)

    def __getitem__(self, idx):
        image = cv2.imread(self.files[idx]) / 255.0
        return {"image": torch.from_numpy(image.transpose((2, 0, 1))).to(torch.float)}


def seed_pipeline(folder: Path, classes: int, steps: int) -> float:
    start = time.monotonic()
    files = glob.glob(os.path.join(folder, "*.png"))
    model = SeedModel2(classes, steps).eval()
    loader = torch.utils.data.DataLoader(SeedDataset(files), batch_size=32, shuffle=False)
    n = 0
    with torch.no_grad():
        for batch in loader:
            outputs = model(batch["image"])
            predicted = torch.stack([o.max(1)[1] for o in outputs], 1)
            n += len(predicted)
    return n / (time.monotonic() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="folder of PNG captchas (flat)")
    parser.add_argument("--model", default="models/default.pt")
    parser.add_argument("--limit", type=int, default=5000)
    parser.add_argument("--device", default="auto")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers for the runner (default: runtime.workers)")
    args = parser.parse_args()
    cfg = load_config(overrides={"runtime.device": args.device, "runtime.workers": args.workers})
    device = resolve_device(cfg.runtime.device)
    ckpt = load_checkpoint(args.model, labels=cfg.labels, image=cfg.image, device=device)
    codec = build_codec(ckpt.labels)

    # Work on a copy holding exactly `limit` images, so every pipeline reads the same files.
    work = Path(tempfile.mkdtemp(prefix="batchbench-"))
    try:
        src = sorted(Path(args.input).glob("*.png"))[:args.limit]
        data = work / "in"
        data.mkdir()
        for p in src:
            shutil.copy(p, data / p.name)
        n = len(src)
        seed_threads = torch.get_num_threads()
        seed = seed_pipeline(data, codec.output_classes, codec.output_steps)

        threads = share_cores(device, cfg.runtime.workers)  # as jobs/batch.py does
        print(f"machine: {platform.machine()}, {available_cores()} cores, device {device}, "
              f"torch {torch.__version__}, {n} images; seed pipeline: {seed_threads} torch "
              f"threads; runner: {resolve_workers(cfg.runtime.workers, device)} workers, "
              f"{threads} torch threads, batch {resolve_batch_size(cfg.runtime.batch_size, device)}")

        start = time.monotonic()
        run_batch(data, work / "runs" / "bench", ckpt, cfg, device)
        runner = n / (time.monotonic() - start)

        items = scan_folder(data, cfg.labels)
        loader = make_loader(CaptchaDataset(data, items, codec, ckpt.image),
                             cfg.runtime.batch_size, cfg.runtime.workers, device)
        start = time.monotonic()
        batches = [b["image"] for b in loader]
        decode = n / (time.monotonic() - start)

        model = for_inference(ckpt.model)
        start = time.monotonic()
        with torch.inference_mode():
            for images in batches:
                model(images.to(device, non_blocking=True))
            if device.type == "cuda":
                torch.cuda.synchronize()
        model_only = n / (time.monotonic() - start)
    finally:
        shutil.rmtree(work)

    print("| pipeline | images/s | vs seed |\n|---|---:|---:|")
    for name, rate in (("seed pipeline (post's code)", seed), ("run_batch, whole pass", runner),
                       ("bound: decode only", decode), ("bound: model only", model_only)):
        print(f"| {name} | {rate:.0f} | {rate / seed:.2f}x |")


if __name__ == "__main__":
    main()
