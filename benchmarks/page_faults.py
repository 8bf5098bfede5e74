"""What keeping freed memory (core.runtime.keep_freed_memory) changes, in fresh processes.

    python benchmarks/page_faults.py [--arch seed-pos] [--processes 3]

For each mode (glibc's defaults, then kept), starts --processes fresh Python processes; each
runs inference at the CPU batch size on one thread and a training step (forward, backward,
Adam) on all threads, and reports time and minor page faults per batch. Fresh processes,
because whether the defaults fault depends on the heap's history. Prints Markdown.
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

_SCRIPT = textwrap.dedent("""
    import resource, sys, time
    import torch
    sys.path.insert(0, {root!r})
    from core.config import load_config
    from core.labels import build_codec
    from core.inference import for_inference
    from core.models import ModelSpec, build_model, codec_kind
    from core.runtime import AUTO_BATCH_SIZE, keep_freed_memory
    mode, arch, steps, train = sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4] == "1"
    kept = keep_freed_memory() if mode == "keep" else None
    gen = load_config().generate   # the generated captchas' settings
    codec = build_codec(gen.labels, codec_kind(arch))
    net = build_model(arch, ModelSpec.from_config(gen.image, codec))
    images = torch.zeros((AUTO_BATCH_SIZE["cpu"], 3, gen.height, gen.width), dtype=torch.uint8)

    def measure(step):
        for _ in range(3):
            step()
        faults, start = resource.getrusage(resource.RUSAGE_SELF).ru_minflt, time.perf_counter()
        for _ in range(steps):
            step()
        return ((time.perf_counter() - start) / steps,
                (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - faults) / steps)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    model = for_inference(net)
    with torch.inference_mode():
        infer = measure(lambda: model(images))
    result = [kept, infer[0], infer[1]]
    if train:
        torch.set_num_threads(threads)
        optimizer = torch.optim.Adam(net.parameters())
        targets = torch.as_tensor(codec.encode(gen.alphabet[:gen.length])).repeat(len(images), 1)

        def step():
            optimizer.zero_grad()
            codec.loss(net(images), targets).backward()
            optimizer.step()
        result += list(measure(step))
    print(*result)
""")


def run(mode: str, arch: str = "seed-pos", steps: int = 5, train: bool = False) -> list:
    """One fresh process: [kept flag ('True'/'None'), inference s/batch, faults/batch,
    (training s/step, faults/step)]."""
    out = subprocess.run([sys.executable, "-c", _SCRIPT.format(root=str(ROOT)), mode, arch,
                          str(steps), "1" if train else "0"],
                         check=True, capture_output=True, text=True).stdout.split()
    return [out[0]] + [float(x) for x in out[1:]]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="seed-pos")
    parser.add_argument("--processes", type=int, default=3)
    parser.add_argument("--steps", type=int, default=20)
    args = parser.parse_args()
    sys.path.insert(0, str(ROOT))
    from core.runtime import AUTO_BATCH_SIZE
    batch = AUTO_BATCH_SIZE["cpu"]
    print(f"{args.arch}, batch {batch}; inference on 1 thread, training on all\n"
          "| memory | process | inference us/image | faults/batch | training batches/s "
          "| faults/step |\n|---|---:|---:|---:|---:|---:|")
    for mode in ("default", "keep"):
        for k in range(args.processes):
            _, infer, infer_faults, train, train_faults = run(mode, args.arch, args.steps, True)
            print(f"| {'glibc defaults' if mode == 'default' else 'kept'} | {k + 1} | "
                  f"{infer / batch * 1e6:.0f} | {infer_faults:.0f} | {1 / train:.2f} | "
                  f"{train_faults:.0f} |", flush=True)


if __name__ == "__main__":
    main()
