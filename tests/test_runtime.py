"""Process settings for where work runs: the C allocator's handling of freed memory, and the
garbage collector's of loaded objects."""
import gc

import pytest

import core.batch
import core.night
import jobs.batch
from benchmarks.page_faults import run
from core.runtime import freeze_loaded_objects
from tests.conftest import read_csv


@pytest.mark.slow
def test_kept_memory_stops_page_faults_per_batch():
    # Minor page faults per inference batch of seed-pos at the CPU batch size, in fresh
    # processes. Whether glibc's defaults fault depends on the heap's history (seen: 6,909,
    # 1,409 or 0 per batch), so each arm runs three times and the worst case counts.
    kept = [run("keep") for _ in range(3)]
    if not all(flag == "True" for flag, *_ in kept):
        pytest.skip("the C library is not glibc: keep_freed_memory changes nothing here")
    default = max(run("default")[2] for _ in range(3))
    if default < 1000:
        pytest.skip(f"this C library did not fault per batch by default ({default:.0f} faults)")
    # A batch's activations are tens of megabytes: thousands of 4 KiB pages faulted in per batch
    # when freed memory goes back to the system, almost none when it is kept.
    assert max(faults for _, _, faults in kept) < 500, (kept, default)


def test_freeze_loaded_objects_takes_them_out_of_collections():
    marker = [object()]  # a container: tracked by the collector, in some generation
    assert any(o is marker for o in gc.get_objects())
    try:
        assert freeze_loaded_objects() >= 1
        assert not any(o is marker for o in gc.get_objects())  # permanent: never scanned
    finally:
        gc.unfreeze()


def test_runner_freezes_what_it_loaded_before_its_pass(monkeypatch, tmp_path, captcha_dir, model):
    # Everything loaded (torch, the model) must be frozen by the time the pass starts making
    # rows, or each full collection walks it again.
    seen = []

    def spy(input_dir, run_dir, ckpt, *args, **kwargs):
        seen.append(any(o is ckpt.model for o in gc.get_objects()))
        return core.batch.run_batch(input_dir, run_dir, ckpt, *args, **kwargs)

    monkeypatch.setattr(core.night, "run_batch", spy)
    try:
        jobs.batch.main(["--input", str(captcha_dir), "--output", str(tmp_path / "runs"),
                         "--model", str(model), "--quiet"])
    finally:
        gc.unfreeze()
    assert seen == [False]
    assert len(read_csv(next((tmp_path / "runs").glob("2*/predictions.csv")))) == 48
