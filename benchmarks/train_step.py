"""Training-step throughput of the registered models, NCHW against channels-last input.

    python benchmarks/train_step.py [--steps 10]

One Adam step on random uint8 batches, no data loading; prints a table for docs/performance.md.
The models convert to channels-last themselves, so "nchw" here runs a copy converted back.
"""
from __future__ import annotations

import argparse
import copy
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import load_config  # noqa: E402
from core.labels import build_codec  # noqa: E402
from core.models import ModelSpec, available_models, build_model, codec_kind  # noqa: E402
from core.runtime import keep_freed_memory  # noqa: E402


def nchw_forward(model, images: torch.Tensor) -> torch.Tensor:
    # CaptchaNet.forward without its conversion to channels-last; the features once per batch.
    features = model.features(images.float().sub(127.5).div(64.0))
    return torch.stack([head(features) for head in model.heads], 1)


def images_per_second(model, codec, x, y, steps: int) -> float:
    optimizer = torch.optim.Adam(model.parameters())
    for i in range(steps + 3):  # three warm-up steps
        if i == 3:
            start = time.perf_counter()
        optimizer.zero_grad()
        codec.loss(model(x), y).backward()
        optimizer.step()
    return steps * len(x) / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=10)
    args = parser.parse_args()
    keep_freed_memory()  # as jobs.train does: without it glibc's trimming costs up to 5x here
    gen = load_config().generate   # the generated captchas' settings
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads")
    print("| model | batch | NCHW images/s | channels-last images/s |\n|---|---:|---:|---:|")
    for arch in available_models():
        codec = build_codec(gen.labels, codec_kind(arch))
        spec = ModelSpec.from_config(gen.image, codec)
        label = gen.alphabet[:gen.length]
        for batch in (32, 128):
            x = torch.randint(0, 256, (batch, 3, spec.height, spec.width), dtype=torch.uint8)
            y = torch.as_tensor(codec.encode(label)).repeat(batch, 1)
            torch.manual_seed(0)
            model = build_model(arch, spec)
            nchw = copy.deepcopy(model).to(memory_format=torch.contiguous_format)
            nchw.forward = lambda images, m=nchw: nchw_forward(m, images)
            print(f"| {arch} | {batch} | {images_per_second(nchw, codec, x, y, args.steps):.0f} | "
                  f"{images_per_second(model, codec, x, y, args.steps):.0f} |")


if __name__ == "__main__":
    main()
