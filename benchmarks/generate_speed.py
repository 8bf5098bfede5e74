"""Generator throughput: one process against all cores, on the same images, in one run; and,
with --baseline REV, the cost of one captcha against the generator of another git revision.

    python benchmarks/generate_speed.py [--count 10000]
    python benchmarks/generate_speed.py --baseline 9f5414b [--blocks 10 --block 200]

Prints markdown tables for docs/performance.md. The target is at least 500 images/s on the
2-core reference machine with all cores. The baseline comparison runs in one process: the
revision's core/ is unpacked beside this one and both draw and write the same captchas, in
alternating blocks (so that the box's drift hits both alike), to a memory-backed folder where
there is one (file creation on a slow disk would blur the comparison); it prints the median
per captcha of rendering and of writing the PNG.
"""
from __future__ import annotations

import argparse
import importlib
import importlib.util
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.config import CAPTCHA_STYLES, load_config  # noqa: E402
from core.generator import generate_folder  # noqa: E402
from core.runtime import available_cores  # noqa: E402


def throughput(count: int, cfg) -> None:
    print("| workers | images | seconds | images/s |\n|---:|---:|---:|---:|")
    for workers in (1, available_cores()):
        out = Path(tempfile.mkdtemp(prefix="genbench-"))
        try:
            start = time.monotonic()
            n = generate_folder(out, count, seed=9, labels=cfg.generate.labels,
                                image=cfg.generate.image, workers=workers,
                                style=cfg.generate.style)
            seconds = time.monotonic() - start
        finally:
            shutil.rmtree(out)
        print(f"| {workers} | {n} | {seconds:.1f} | {n / seconds:.0f} |")


def package_at(rev: str, where: Path):
    """core/ as it was at git revision `rev`, imported as the package `core_<rev>`."""
    archive = subprocess.run(["git", "-C", str(ROOT), "archive", rev, "core"],
                             capture_output=True, check=True).stdout
    subprocess.run(["tar", "-x", "-C", str(where)], input=archive, check=True)
    name = f"core_{rev}"
    spec = importlib.util.spec_from_file_location(
        name, where / "core" / "__init__.py", submodule_search_locations=[str(where / "core")])
    package = importlib.util.module_from_spec(spec)
    sys.modules[name] = package
    spec.loader.exec_module(package)
    return (importlib.import_module(f"{name}.generator"),
            importlib.import_module(f"{name}.images"))


def against(rev: str, blocks: int, block: int, cfg) -> None:
    import cv2

    from core import generator, images

    cv2.setNumThreads(1)   # as in jobs.generate's workers
    scratch = Path(tempfile.mkdtemp(prefix="genbase-"))
    shm = Path("/dev/shm")
    out = Path(tempfile.mkdtemp(prefix="genwrite-", dir=shm if shm.is_dir() else None))
    try:
        versions = {rev: package_at(rev, scratch), "current": (generator, images)}
        times = {name: ([], []) for name in versions}
        for b in range(blocks):
            indices = range(b * block, (b + 1) * block)
            for name, (gen, img) in versions.items():
                start = time.perf_counter()
                drawn = [gen.generate_one(i, 9, cfg.generate.labels, cfg.generate.image)
                         for i in indices]
                middle = time.perf_counter()
                for i, (text, pixels) in zip(indices, drawn):
                    img.write_png(str(out / f"{name}-{text}_{i}.png"), pixels)
                end = time.perf_counter()
                times[name][0].append((middle - start) / block * 1e3)
                times[name][1].append((end - middle) / block * 1e3)
    finally:
        shutil.rmtree(scratch)
        shutil.rmtree(out)
    print(f"\nOne process, {blocks} alternating blocks of {block} captchas, median ms per "
          f"captcha (PNGs written to {out.parent}):\n")
    print(f"| | {rev} | current | ratio |\n|---|---:|---:|---:|")
    for k, what in enumerate(("render", "write PNG")):
        base, now = (statistics.median(times[n][k]) for n in (rev, "current"))
        print(f"| {what} | {base:.2f} | {now:.2f} | {base / now:.2f}x |")
    base, now = (statistics.median([r + w for r, w in zip(*times[n])]) for n in (rev, "current"))
    print(f"| both | {base:.2f} | {now:.2f} | {base / now:.2f}x |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=10000)
    parser.add_argument("--style", choices=CAPTCHA_STYLES, default=None,
                        help="the captchas' look (default: generate.style)")
    parser.add_argument("--baseline", metavar="REV", default=None,
                        help="compare one captcha's cost with the generator at this revision")
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--block", type=int, default=200)
    args = parser.parse_args()
    cfg = load_config(overrides={"generate.style": args.style})
    print(f"machine: {platform.processor() or platform.machine()}, {available_cores()} cores, "
          f"python {platform.python_version()}")
    if args.baseline:
        against(args.baseline, args.blocks, args.block, cfg)
    else:
        throughput(args.count, cfg)


if __name__ == "__main__":
    main()
