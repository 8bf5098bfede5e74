"""The sequence architectures' prediction speed side by side, and where their time goes.

    python benchmarks/sequence_speed.py [--widths 128,160] [--threads 1] [--rounds 5]

For each width, every registered CTC architecture (`crnn`, `crnn-fast`) is built for a
36-character alphabet at 48 pixels high, rewritten as the runner predicts with
(core.inference.for_inference), and timed on batches of 32 random uint8 images (the arithmetic
does not depend on the pixels), the architectures alternated round by round; prints the median
images per second of the whole model and of its convolutions alone (their share of the time).
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.inference import for_inference  # noqa: E402
from core.models import (ModelSpec, available_models, build_model, codec_kind,  # noqa: E402
                         normalise)
from core.runtime import cpu_name  # noqa: E402

BATCH, REPEATS = 32, 20


def rate(run, x: torch.Tensor) -> float:
    run(x)   # warm-up
    start = time.perf_counter()
    for _ in range(REPEATS):
        run(x)
    return REPEATS * BATCH / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="128,160")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    archs = [a for a in available_models() if codec_kind(a) == "ctc"]
    print(f"machine: {cpu_name()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"batches of {BATCH}, median of {args.rounds} alternated rounds")
    print("| architecture | input | images/s, whole model | images/s, convolutions only | "
          "convolutions' share |\n|---|---|---:|---:|---:|")
    for width in map(int, args.widths.split(",")):
        x = torch.randint(0, 256, (BATCH, 3, 48, width), dtype=torch.uint8)
        models = {a: for_inference(build_model(a, ModelSpec(48, width, 1, 37))) for a in archs}
        whole: dict[str, list[float]] = {a: [] for a in archs}
        convs: dict[str, list[float]] = {a: [] for a in archs}
        with torch.inference_mode():
            for _ in range(args.rounds):
                for a, m in models.items():
                    whole[a].append(rate(m, x))
                    convs[a].append(rate(lambda t, m=m: m.features(normalise(
                        t.to(torch.float32, memory_format=torch.channels_last))), x))
        for a in archs:
            w, c = statistics.median(whole[a]), statistics.median(convs[a])
            print(f"| `{a}` | {width}x48 | {w:,.0f} | {c:,.0f} | {w / c:.0%} |")


if __name__ == "__main__":
    main()
