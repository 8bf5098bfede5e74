"""Process settings for where work runs: the C allocator's handling of freed memory."""
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

# Minor page faults per batch of seed-pos inference at batch 32 (a CPU run's main loop), in a
# fresh process so that no earlier allocation shapes the heap.
_FAULTS = textwrap.dedent("""
    import resource, sys
    import torch
    sys.path.insert(0, {root!r})
    from core.config import load_config
    from core.labels import build_codec
    from core.models import ModelSpec, build_model, for_inference
    from core.runtime import keep_freed_memory
    kept = keep_freed_memory() if sys.argv[1] == "keep" else None
    torch.set_num_threads(1)
    cfg = load_config()
    model = for_inference(build_model("seed-pos", ModelSpec.from_config(cfg.image,
                                                                        build_codec(cfg.labels))))
    images = torch.zeros((32, 3, cfg.image.height, cfg.image.width), dtype=torch.uint8)
    with torch.inference_mode():
        for _ in range(3):
            model(images)
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        for _ in range(5):
            model(images)
    print(kept, (resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 5)
""")


def _faults_per_batch(mode: str) -> tuple[str, float]:
    out = subprocess.run([sys.executable, "-c", _FAULTS.format(root=str(ROOT)), mode],
                         check=True, capture_output=True, text=True).stdout.split()
    return out[0], float(out[1])


def test_kept_memory_stops_page_faults_per_batch():
    _, default = _faults_per_batch("default")
    if default < 1000:
        pytest.skip(f"this C library does not fault per batch by default ({default:.0f} faults)")
    kept, faults = _faults_per_batch("keep")
    assert kept == "True"
    # A batch's activations are tens of megabytes: thousands of 4 KiB pages faulted in per batch
    # when freed memory goes back to the system, almost none when it is kept.
    assert faults < default / 20, (faults, default)
