"""Generator throughput: one process against all cores, on the same images, in one run.

    python benchmarks/generate_speed.py [--count 10000]

Prints a table for docs/performance.md. The target is at least 500 images/s on the 2-core
reference machine with all cores.
"""
from __future__ import annotations

import argparse
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from core.config import load_config  # noqa: E402
from core.generator import generate_folder  # noqa: E402
from core.runtime import available_cores  # noqa: E402


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000)
    args = parser.parse_args()
    cfg = load_config()
    print(f"machine: {platform.processor() or platform.machine()}, {available_cores()} cores, "
          f"python {platform.python_version()}")
    print("| workers | images | seconds | images/s |\n|---:|---:|---:|---:|")
    for workers in (1, available_cores()):
        out = Path(tempfile.mkdtemp(prefix="genbench-"))
        try:
            start = time.monotonic()
            n = generate_folder(out, args.count, seed=9, labels=cfg.labels, image=cfg.image,
                                workers=workers)
            seconds = time.monotonic() - start
        finally:
            shutil.rmtree(out)
        print(f"| {workers} | {n} | {seconds:.1f} | {n / seconds:.0f} |")


if __name__ == "__main__":
    main()
