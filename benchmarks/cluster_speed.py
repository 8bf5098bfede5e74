"""run_batch.py on this machine against run_batch.py --cluster local:N, in one run, on the same
folder, and what the size of a shard costs.

    python benchmarks/cluster_speed.py --input DIR [--workers 2] [--shards 64,256,1024,4096]
                                       [--rounds 2] [--model models/default.pt]

Each round runs the local runner, then the cluster runner once per shard size
(runtime.shard_files, through a config file), alternately. Prints Markdown: the runner's own
images_per_second (listing to the last CSV; the cluster's start is outside it) and the whole
command's wall time (Python's start, the cluster's start and close included).
"""
from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.files import read_rows  # noqa: E402
from core.runtime import available_cores, cpu_name  # noqa: E402


def one_run(args, work: Path, run_id: str, shard: int | None) -> tuple[float, float]:
    command = [sys.executable, str(ROOT / "run_batch.py"), "--input", args.input, "--output",
               str(work / "runs"), "--run-id", run_id, "--model", args.model, "--quiet"]
    if shard is not None:
        config = work / f"shard{shard}.yaml"
        config.write_text(f"runtime:\n  shard_files: {shard}\n")
        command += ["--config", str(config), "--cluster", f"local:{args.workers}"]
    start = time.monotonic()
    subprocess.run(command, check=True, stdout=subprocess.DEVNULL)
    wall = time.monotonic() - start
    rate = float(read_rows(work / "runs" / run_id / "summary.csv")[0]["images_per_second"])
    return rate, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--input", required=True)
    parser.add_argument("--model", default=str(ROOT / "models" / "default.pt"))
    parser.add_argument("--workers", type=int, default=2, help="local:N's N")
    parser.add_argument("--shards", default="64,256,1024,4096")
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    shards = [int(s) for s in args.shards.split(",")]
    images = sum(1 for p in Path(args.input).rglob("*") if p.is_file())
    results: dict[str, list[tuple[float, float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        for r in range(args.rounds):
            for shard in [None] + shards:
                name = "local run" if shard is None else f"--cluster local:{args.workers}, " \
                                                          f"shards of {shard}"
                results.setdefault(name, []).append(
                    one_run(args, work, f"r{r}-{shard or 'local'}", shard))
    print(f"machine: {cpu_name()}, {available_cores()} cores; {images:,} files under "
          f"{args.input}; model {args.model}; {args.rounds} rounds")
    print("| runner | images/s (runner's own) | median | whole command, s (median) |\n"
          "|---|---:|---:|---:|")
    for name, runs in results.items():
        rates = [r for r, _ in runs]
        print(f"| {name} | {', '.join(f'{r:,.0f}' for r in rates)} | "
              f"{statistics.median(rates):,.0f} | {statistics.median(w for _, w in runs):.1f} |")


if __name__ == "__main__":
    main()
