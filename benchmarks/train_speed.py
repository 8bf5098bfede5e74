"""Training job throughput with the images decoded every epoch against held in memory.

    python benchmarks/train_speed.py --input DIR [--epochs 3] [--rounds 2] [--work /tmp/train-speed]

Runs `python -m jobs.train --input DIR --epochs E` with `runtime.in_memory: false` and `true`,
alternated ROUNDS times (the box's speed drifts; the ratio is within a round), and prints, from
each run's MODEL.history.csv, the training images per second of its epochs after the first (the
first also starts the loader's workers) with validation included, and the whole job's wall time
(decoding the images into memory, before the first epoch, included), as a Markdown table.
Everything else is the job's defaults.
"""
from __future__ import annotations

import argparse
import csv
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def epoch_seconds(history: Path) -> list[float]:
    with open(history, newline="", encoding="utf-8") as f:
        return [float(r["seconds"]) for r in csv.DictReader(f)]


def train(folder: str, work: Path, hold: bool, epochs: int) -> tuple[list[float], int, float]:
    name = "held" if hold else "decoded"
    config = work / f"{name}.yaml"
    config.write_text(f"runtime:\n  in_memory: {str(hold).lower()}\n", encoding="utf-8")
    model = work / f"{name}.pt"
    start = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "jobs.train", "--input", folder, "--output",
                           str(model), "--epochs", str(epochs), "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, check=True)
    wall = time.monotonic() - start
    images = next(int(line.split(" on ")[1].split()[0]) for line in proc.stdout.splitlines()
                  if line.startswith("training "))
    return epoch_seconds(model.with_suffix(".history.csv")), images, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="a labelled folder")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--work", default="/tmp/train-speed")
    args = parser.parse_args()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    print("| round | decoded every epoch: images/s, job | held in memory: images/s, job | ratio |")
    print("|---:|---:|---:|---:|")
    for k in range(1, args.rounds + 1):
        rates, walls = {}, {}
        for hold in (False, True):
            seconds, images, walls[hold] = train(args.input, work, hold, args.epochs)
            rates[hold] = images / statistics.median(seconds[1:] or seconds)
        print(f"| {k} | {rates[False]:.0f}, {walls[False]:.0f} s | {rates[True]:.0f}, "
              f"{walls[True]:.0f} s | {rates[True] / rates[False]:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
