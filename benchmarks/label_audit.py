"""How well suspect_labels.csv finds wrong file names: the issue's acceptance measurement.

    python benchmarks/label_audit.py [--model models/default.pt] [--count 2000] [--wrong 40]
        [--top 60] [--seed 77] [--work /tmp/label-audit]

Generates COUNT captchas, renames WRONG of them with one character changed (as a person's typo
or an older solver would), runs the nightly runner on the folder and counts how many renamed
files are among the TOP most suspicious rows. Also prints the run's ECE and accuracy at
coverage, for docs/review.md.
"""
from __future__ import annotations

import argparse
import csv
import shutil
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import load_config  # noqa: E402
from core.generator import generate_folder, plant_wrong_labels  # noqa: E402


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=str(ROOT / "models" / "default.pt"))
    p.add_argument("--count", type=int, default=2000)
    p.add_argument("--wrong", type=int, default=40)
    p.add_argument("--top", type=int, default=60)
    p.add_argument("--seed", type=int, default=77)
    p.add_argument("--work", default="/tmp/label-audit")
    args = p.parse_args()
    cfg = load_config()
    work = Path(args.work)
    shutil.rmtree(work, ignore_errors=True)
    folder = work / "in"
    generate_folder(folder, args.count, seed=args.seed, labels=cfg.generate.labels,
                    image=cfg.generate.image, style=cfg.generate.style)
    planted = plant_wrong_labels(folder, args.wrong, args.seed, cfg.generate.labels)
    subprocess.run([sys.executable, str(ROOT / "run_batch.py"), "--input", str(folder),
                    "--output", str(work / "runs"), "--run-id", "audit", "--model", args.model,
                    "--quiet"], check=True)
    run = work / "runs" / "audit"
    with open(run / "suspect_labels.csv", newline="", encoding="utf-8") as f:
        suspects = [row["path"] for row in csv.DictReader(f)]
    with open(run / "summary.csv", newline="", encoding="utf-8") as f:
        summary = next(csv.DictReader(f))
    found = len(planted & set(suspects[:args.top]))
    print(f"{found} of {args.wrong} renamed files among the top {args.top} of {len(suspects)} "
          f"suspects ({args.count} images; captcha accuracy against the names "
          f"{float(summary['captcha_accuracy']):.2%}, ECE {float(summary['ece']):.2%})")
    with open(run / "coverage.csv", newline="", encoding="utf-8") as f:
        print("| confidence at least | share of labelled | captchas read |\n|---:|---:|---:|")
        for row in csv.DictReader(f):
            print(f"| {row['threshold']} | {float(row['coverage']):.2%} | "
                  f"{float(row['accuracy']):.2%} |")


if __name__ == "__main__":
    main()
