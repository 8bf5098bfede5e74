"""How a model's confidences fit its readings over a range of temperatures, on a labelled folder.

    python benchmarks/calibration_fit.py --model MODEL.pt --input DIR

For each temperature T of a grid (and the one core.calibration.fit_temperature finds on the
folder), prints the expected calibration error (15 bins), the readings' binary cross-entropy
(what the fit minimises), the labels' likelihood loss (what temperature scaling minimises in
Guo et al. 2017), the mean confidence and the share read right, as a Markdown table.
"""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.calibration import fit_temperature, reading_loss, scaled_ece  # noqa: E402
from core.checkpoint import load_checkpoint  # noqa: E402
from core.data import CaptchaDataset, make_loader, scan_folder  # noqa: E402
from core.engine import evaluate  # noqa: E402
from core.labels import is_labelled  # noqa: E402

GRID = (0.5, 0.7, 0.85, 1.0, 1.2, 1.5, 2.0)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True)
    parser.add_argument("--input", required=True, help="a labelled folder the model never saw")
    args = parser.parse_args()
    ckpt = load_checkpoint(args.model)
    codec, cpu = ckpt.codec, torch.device("cpu")
    dataset = CaptchaDataset(args.input, scan_folder(args.input, ckpt.labels), codec, ckpt.image)
    logits, targets = [], []

    def keep(batch: dict, decoded) -> None:
        labelled = is_labelled(batch["target"])
        logits.append(decoded.logits.float()[labelled])
        targets.append(batch["target"][labelled])

    evaluate(ckpt.model.eval(), make_loader(dataset, 64, -1, cpu), codec, cpu, on_batch=keep)
    z, y = torch.cat(logits), torch.cat(targets)
    truth = [codec.label_of(t) for t in y.tolist()]
    fitted = fit_temperature(z, y, codec)
    print(f"{len(truth)} labelled images; fitted temperature {fitted:.3f}\n")
    print("| T | ECE | readings' BCE | labels' loss | mean confidence | read right |")
    print("|---:|---:|---:|---:|---:|---:|")
    for t in sorted(GRID + (fitted,)):
        decoded = codec.decode(z / t)
        right = sum(p == s for p, s in zip(decoded.texts, truth)) / len(truth)
        print(f"| {t:.3f}{' (fitted)' if t == fitted else ''} | "
              f"{100 * scaled_ece(z, y, codec, t, 15):.2f} % | "
              f"{reading_loss(z, truth, codec, t):.4f} | {codec.loss(z / t, y).item():.3f} | "
              f"{decoded.confidence.mean().item():.3f} | {100 * right:.2f} % |")


if __name__ == "__main__":
    main()
