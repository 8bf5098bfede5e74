"""Peak memory of the batch runner at 10,000 and 100,000 images: it must stay flat.

    python benchmarks/batch_memory.py [--model models/default.pt]

Generates 10,000 captchas once, then builds the 100,000-image folder from hard links to them
in ten subfolders (same decoding work, no extra disk). Runs `run_batch.py` on each as a child
process and reports its peak RSS (the largest of the runner and its DataLoader workers, from
getrusage) and wall time.
"""
from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import load_config  # noqa: E402
from core.generator import generate_folder  # noqa: E402


def peak_rss_mib_of(cmd: list[str]) -> tuple[float, float]:
    """Run cmd to completion in a fresh grandchild, so RUSAGE_CHILDREN covers it alone."""
    start = time.monotonic()
    probe = [sys.executable, "-c",
             "import resource, subprocess, sys; subprocess.run(sys.argv[1:], check=True, "
             "stdout=subprocess.DEVNULL); "
             "print(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss)", *cmd]
    out = subprocess.run(probe, check=True, capture_output=True, text=True, cwd=ROOT).stdout
    return int(out.split()[-1]) / 1024, time.monotonic() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=str(ROOT / "models" / "default.pt"))
    parser.add_argument("--base", type=int, default=10000)
    args = parser.parse_args()
    cfg = load_config()
    work = Path(tempfile.mkdtemp(prefix="batchmem-"))
    try:
        small = work / "small"
        generate_folder(small, args.base, seed=77, labels=cfg.generate.labels,
                        image=cfg.generate.image)
        large = work / "large"
        for k in range(10):
            (large / f"part{k}").mkdir(parents=True)
            for p in small.iterdir():
                os.link(p, large / f"part{k}" / p.name)
        print("| images | peak RSS (MiB) | wall (s) |\n|---:|---:|---:|")
        for folder, n in ((small, args.base), (large, 10 * args.base)):
            rss, wall = peak_rss_mib_of([sys.executable, "run_batch.py", "--input", str(folder),
                                         "--output", str(work / "runs"), "--model", args.model])
            print(f"| {n:,} | {rss:.0f} | {wall:.0f} |", flush=True)
    finally:
        shutil.rmtree(work)


if __name__ == "__main__":
    main()
