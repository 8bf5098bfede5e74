"""Batch-runner throughput against the seed post's own pipeline, side by side in one run.

    python benchmarks/batch_speed.py --input DIR [--model models/default.pt] [--limit 5000]
                                     [--rounds 3] [--onnx MODEL.onnx] [--config FILE]
                                     [--against CHECKOUT]

Measured on the same images, alternately, --rounds times each (a shared machine's speed drifts
over minutes; alternating puts both pipelines under the same drift, the median ratio sums up):
- seed: the post's pipeline as published: glob, per-item cv2.imread, division by 255 into
  float64, its ToTensor (transpose, .float()), DataLoader batch 32 without workers, its Model2;
- runner: `run_batch.py` itself, started as cron starts it, and its own images_per_second (the
  whole pass: listing, decoding, inference, writing the CSVs);
- with --onnx (the same model exported by `python -m jobs.export`): `run_batch.py --model
  MODEL.onnx` as well, ONNX Runtime in place of PyTorch, with the same workers and decoding;
- with --against (another checkout of the project, e.g. a `git worktree` of the commit before
  a change): that checkout's `run_batch.py` as well, on the same model, each round, the two
  runners' order alternating from round to round;
- bounds, once at the end: decode only (our dataset through the runner's DataLoader, no model)
  and model only (the model on batches already in memory), with the runner's settings (on CPU
  its workers decode and predict, one torch thread each: the model's bound is one thread's
  rate times the workers).
Prints Markdown for docs/performance.md.
"""
from __future__ import annotations

import argparse
import glob
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import cv2
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.checkpoint import load_checkpoint, load_model, with_model_settings  # noqa: E402
from core.config import load_config  # noqa: E402
from core.data import CaptchaDataset, make_loader, scan_folder  # noqa: E402
from core.files import read_rows  # noqa: E402
from core.inference import for_inference, prepare  # noqa: E402
from core.runtime import (available_cores, cpu_name, keep_freed_memory,  # noqa: E402
                          resolve_batch_size, resolve_device, resolve_workers, share_cores)


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


def runner_pass(data: Path, runs: Path, run_id: str, args: argparse.Namespace,
                model: str, root: Path = ROOT) -> float:
    """One `run_batch.py` run as users start it (a process of its own, so the runner's process
    settings never touch the seed pipeline's); its own images_per_second: the whole pass from
    listing to the last CSV, without Python's start-up and the model's loading."""
    command = [sys.executable, str(root / "run_batch.py"), "--input", str(data),
               "--output", str(runs), "--run-id", run_id, "--model", str(Path(model).resolve()),
               "--device", args.device, "--quiet"]
    if args.config:
        command += ["--config", str(Path(args.config).resolve())]
    if args.workers is not None:
        command += ["--workers", str(args.workers)]
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL, cwd=root)
    return float(read_rows(runs / run_id / "summary.csv")[0]["images_per_second"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True, help="folder of PNG captchas (flat)")
    parser.add_argument("--model", default="models/default.pt")
    parser.add_argument("--limit", type=int, default=5000)
    parser.add_argument("--rounds", type=int, default=3,
                        help="seed pipeline and runner alternately, this many times each")
    parser.add_argument("--onnx", default=None, metavar="MODEL.onnx",
                        help="--model exported to ONNX: also run the runner with it")
    parser.add_argument("--device", default="auto")
    parser.add_argument("--config", default=None,
                        help="the runner's settings (e.g. runtime.cpu_precision: float32)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader workers for the runner (default: runtime.workers)")
    parser.add_argument("--against", type=Path, default=None, metavar="CHECKOUT",
                        help="another checkout of the project: run its run_batch.py too")
    args = parser.parse_args()
    cfg = load_config(args.config, {"runtime.device": args.device, "runtime.workers": args.workers})
    device = resolve_device(cfg.runtime.device)
    ckpt = load_checkpoint(args.model, device=device)
    cfg = with_model_settings(cfg, ckpt)
    codec = ckpt.codec
    # The post's Model2 reads what it was built for, the generator's captchas (the seed's
    # alphabet and length), whatever the model under test reads (a sequence model has no
    # positions of its own).
    seed_classes, seed_steps = len(cfg.generate.alphabet), cfg.generate.length
    requested = cfg.runtime.workers
    on_cpu = device.type == "cpu"
    workers = resolve_workers(requested, device, predicting=on_cpu)

    # Work on a copy holding exactly `limit` images, so every pipeline reads the same files;
    # flushed to disk first, so that no pass pays for writing the copy back.
    work = Path(tempfile.mkdtemp(prefix="batchbench-"))
    try:
        src = sorted(Path(args.input).glob("*.png"))[:args.limit]
        data = work / "in"
        data.mkdir()
        for p in src:
            shutil.copy(p, data / p.name)
        os.sync()
        n = len(src)
        print(f"machine: {cpu_name()}, {available_cores()} cores, device {device}, "
              f"torch {torch.__version__}, {n} images; seed pipeline: "
              f"{torch.get_num_threads()} torch threads; runner: "
              f"{workers} workers, batch "
              f"{resolve_batch_size(cfg.runtime.batch_size, device)}, model {args.model}")
        onnx = ("| run_batch, ONNX Runtime | vs seed | ONNX Runtime vs PyTorch |", "---:|" * 3)
        other = ("| run_batch of --against | vs seed | this one vs --against |", "---:|" * 3)
        print("| round | seed pipeline (post's code) | run_batch, whole pass | vs seed "
              f"{onnx[0] if args.onnx else '|'}{other[0][1:] if args.against else ''}\n"
              f"|---:|---:|---:|---:|{onnx[1] if args.onnx else ''}"
              f"{other[1] if args.against else ''}")
        ratios, onnx_ratios, engine_ratios, against_ratios = [], [], [], []
        for r in range(args.rounds):
            seed = seed_pipeline(data, seed_classes, seed_steps)
            checkouts = {"runs": ROOT, **({"against": args.against.resolve()}
                                          if args.against else {})}
            order = list(checkouts)[::-1 if r % 2 else 1]    # which goes first alternates
            rate = {name: runner_pass(data, work / name, f"round{r}", args, args.model,
                                      checkouts[name]) for name in order}
            runner, before = rate["runs"], rate.get("against")
            ratios.append(runner / seed)
            line = f"| {r + 1} | {seed:.0f} | {runner:.0f} | {runner / seed:.2f}x |"
            if args.onnx:
                ort = runner_pass(data, work / "runs", f"onnx{r}", args, args.onnx)
                onnx_ratios.append(ort / seed)
                engine_ratios.append(ort / runner)
                line += f" {ort:.0f} | {ort / seed:.2f}x | {ort / runner:.2f}x |"
            if args.against:
                against_ratios.append(runner / before)
                line += f" {before:.0f} | {before / seed:.2f}x | {runner / before:.3f} |"
            print(line, flush=True)
        print(f"median ratio: {statistics.median(ratios):.2f}x" + (
            f"; ONNX Runtime {statistics.median(onnx_ratios):.2f}x the seed's, "
            f"{statistics.median(engine_ratios):.2f}x PyTorch's" if args.onnx else "") + (
            f"; this runner against {args.against}'s: median {statistics.median(against_ratios):.3f}"
            if args.against else ""))

        # The bounds, in this process, with the runner's settings: as many workers as it
        # starts; on CPU each of them decodes and predicts with one torch thread, so the model's
        # bound is one thread's rate times the workers.
        keep_freed_memory()
        threads = 1 if on_cpu and workers else share_cores(device, requested)
        torch.set_num_threads(threads)
        items = scan_folder(data, cfg.labels)
        loader = make_loader(CaptchaDataset(data, items, codec, ckpt.image),
                             cfg.runtime.batch_size, workers, device)
        start = time.monotonic()
        batches = [b["image"] for b in loader]
        decode = n / (time.monotonic() - start)

        model, precision = prepare(ckpt, device, cfg.runtime.cpu_precision)
        models = {f"PyTorch ({precision})": model}
        if args.onnx:
            models["ONNX Runtime"] = for_inference(load_model(args.onnx, device=device).model)
        model_only = {name: model_rate(model, batches, device) for name, model in models.items()}
    finally:
        shutil.rmtree(work)
    in_parallel = workers if on_cpu and workers else 1
    print(f"bounds: decode only {decode:.0f} images/s ({workers} workers); model only, "
          f"{in_parallel} process(es) of {threads} thread(s): " + ", ".join(
              f"{name} {rate * in_parallel:.0f} images/s ({in_parallel} x {rate:.0f})"
              for name, rate in model_only.items()))


def model_rate(model: torch.nn.Module, batches: list[torch.Tensor], device: torch.device) -> float:
    """Images per second of `model` alone on batches already in memory."""
    start = time.monotonic()
    with torch.inference_mode():
        for images in batches:
            model(images.to(device, non_blocking=True))
        if device.type == "cuda":
            torch.cuda.synchronize()
    return sum(len(b) for b in batches) / (time.monotonic() - start)


if __name__ == "__main__":
    main()
