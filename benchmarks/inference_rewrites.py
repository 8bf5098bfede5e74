"""What each prediction-only rewrite of core.inference (and the models' StridedMaxPool) saves:
the model's time per captcha with each one added in turn, alternated round by round, medians.

    python benchmarks/inference_rewrites.py [--model models/default.pt] [--threads 1]

Variants: the trained model in eval mode (channels-last, as the runner feeds it); with batch
normalisation folded (= core.inference.for_inference, the temperature aside); and
for_inference with PyTorch's MaxPool2d in place of StridedMaxPool. Also prints the largest
difference of each variant's logits from the first's. Random uint8 images of the model's size:
the arithmetic does not depend on the pixels.
"""
from __future__ import annotations

import argparse
import copy
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.checkpoint import load_checkpoint  # noqa: E402
from core.inference import for_inference  # noqa: E402
from core.models import torch_pooling  # noqa: E402
from core.runtime import keep_freed_memory  # noqa: E402


def _eval_copy(model: torch.nn.Module) -> torch.nn.Module:
    return copy.deepcopy(model).eval().to(memory_format=torch.channels_last)


def variants(model: torch.nn.Module) -> dict[str, torch.nn.Module]:
    plain = _eval_copy(model)
    full = for_inference(model)
    torch_pool = torch_pooling(for_inference(model))
    return {"eval mode": plain, "+ batchnorm folded (for_inference)": full,
            "for_inference, torch MaxPool2d": torch_pool}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="models/default.pt")
    p.add_argument("--images", type=int, default=1024)
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--rounds", type=int, default=6)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()   # as every job does: without it page faults dominate (core.runtime)
    ckpt = load_checkpoint(args.model)
    h, w = ckpt.image.height, ckpt.image.width
    # laid out as the runner's batches are: decoded (N, H, W, 3), shaped (N, 3, H, W)
    images = torch.randint(0, 256, (args.images, h, w, 3), dtype=torch.uint8,
                           generator=torch.Generator().manual_seed(0)).permute(0, 3, 1, 2)
    batches = images.split(args.batch)
    models = variants(ckpt.model)
    with torch.inference_mode():
        reference = models["eval mode"](batches[0])
        for name, model in models.items():
            diff = (model(batches[0]) - reference).abs().max().item()
            print(f"{name}: logits within {diff:.1e} of eval mode's")
        times: dict[str, list[float]] = {name: [] for name in models}
        for _ in range(args.rounds):
            for name, model in models.items():
                start = time.perf_counter()
                for batch in batches:
                    model(batch)
                times[name].append((time.perf_counter() - start) / args.images * 1e6)
    base = statistics.median(times["eval mode"])
    print(f"\n{ckpt.arch} ({args.model}), {h}x{w}, batch {args.batch}, {args.images} images, "
          f"{args.rounds} alternated rounds, {args.threads} thread(s), torch {torch.__version__}")
    print("| variant | us per captcha (median) | min-max | vs eval mode |")
    print("|---|---:|---:|---:|")
    for name, ts in times.items():
        med = statistics.median(ts)
        print(f"| {name} | {med:.0f} | {min(ts):.0f}-{max(ts):.0f} | {med / base:.3f} |")


if __name__ == "__main__":
    main()
