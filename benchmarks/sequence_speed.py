"""The sequence architectures' prediction speed side by side, and where their time goes.

    python benchmarks/sequence_speed.py [--widths 128,160] [--threads 1] [--rounds 5] [--layers]

For each width, every registered CTC architecture (`crnn`, `crnn-fast`) is built for a
36-character alphabet at 48 pixels high, rewritten as the runner predicts with
(core.inference.for_inference), and timed on batches of 32 random uint8 images laid out as the
runner's are (channels-last; the arithmetic does not depend on the pixels), the architectures
alternated round by round; prints the median images per second of the whole model and of its
convolutions alone (their share of the time).
Freed memory is kept for reuse, as the runner keeps it (core.runtime.keep_freed_memory). With
--layers, also each stage's microseconds per image: the input normalisation, each convolution
with the pooling and ReLU after it, the projection, the LSTM and the output layer.
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from core.inference import for_inference  # noqa: E402
from core.models import (ModelSpec, available_models, build_model, codec_kind,  # noqa: E402
                         network_input)
from core.runtime import cpu_name, keep_freed_memory  # noqa: E402

BATCH, REPEATS = 32, 20


def rate(run, x: torch.Tensor) -> float:
    run(x)   # warm-up
    start = time.perf_counter()
    for _ in range(REPEATS):
        run(x)
    return REPEATS * BATCH / (time.perf_counter() - start)


def stage_times(model, x: torch.Tensor) -> tuple[dict[str, float], torch.Tensor]:
    """Seconds each stage of a SequenceNet (for_inference's rewrite) took on `x`, in order, and
    the logits the stages gave (the model's own, tests/test_models.py checks)."""
    times: dict[str, float] = {}

    def timed(name, run, value):
        start = time.perf_counter()
        value = run(value)
        times[name] = times.get(name, 0.0) + time.perf_counter() - start
        return value

    y = timed("input", network_input, x)
    convolution = 0
    for layer in model.features:
        if isinstance(layer, torch.nn.Conv2d):
            convolution += 1
        y = timed(f"convolution {convolution} (+ pool, ReLU)", layer, y)
    y = timed("projection", lambda t: F.relu(model.project(t.permute(0, 3, 1, 2).flatten(2))), y)
    y = timed("LSTM", lambda t: model.sequence(t)[0], y)
    return times, timed("output layer", model.heads[0], y)


def print_layers(models: dict, x: torch.Tensor, rounds: int) -> None:
    samples: dict[str, list[dict[str, float]]] = {a: [] for a in models}
    with torch.inference_mode():
        for _ in range(rounds):
            for a, m in models.items():
                stage_times(m, x)   # warm-up
                samples[a].append(stage_times(m, x)[0])
    for a, runs in samples.items():
        print(f"\n`{a}` at {x.shape[3]}x48, microseconds per image (median):\n\n"
              "| stage | us |\n|---|---:|")
        for stage in runs[0]:
            print(f"| {stage} | {statistics.median(r[stage] for r in runs) * 1e6 / BATCH:,.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--widths", default="128,160")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--layers", action="store_true", help="also time each stage")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    keep_freed_memory()
    archs = [a for a in available_models() if codec_kind(a) == "ctc"]
    print(f"machine: {cpu_name()}, torch {torch.__version__}, {args.threads} thread(s), "
          f"batches of {BATCH}, median of {args.rounds} alternated rounds")
    print("| architecture | input | images/s, whole model | images/s, convolutions only | "
          "convolutions' share |\n|---|---|---:|---:|---:|")
    for width in map(int, args.widths.split(",")):
        # laid out as the runner's batches are (core.data: decoded (B, H, W, 3), shaped
        # (B, 3, H, W)): from NCHW uint8 the model's conversion to float channels-last is a
        # transposing copy that took ~75 us an image, from this ~5
        x = torch.randint(0, 256, (BATCH, 48, width, 3), dtype=torch.uint8).permute(0, 3, 1, 2)
        models = {a: for_inference(build_model(a, ModelSpec(48, width, 1, 37))) for a in archs}
        whole: dict[str, list[float]] = {a: [] for a in archs}
        convs: dict[str, list[float]] = {a: [] for a in archs}
        with torch.inference_mode():
            for _ in range(args.rounds):
                for a, m in models.items():
                    whole[a].append(rate(m, x))
                    convs[a].append(rate(lambda t, m=m: m.features(network_input(t)), x))
        for a in archs:
            w, c = statistics.median(whole[a]), statistics.median(convs[a])
            print(f"| `{a}` | {width}x48 | {w:,.0f} | {c:,.0f} | {w / c:.0%} |")
        if args.layers:
            print_layers(models, x, args.rounds)


if __name__ == "__main__":
    main()
