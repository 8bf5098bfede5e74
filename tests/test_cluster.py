"""run_batch.py --cluster: the night on a Dask cluster gives a local run's rows, through worker
and driver deaths and a cluster that goes away."""
import os
import shutil
import signal
import subprocess
import sys

import pytest

distributed = pytest.importorskip("distributed",
                                  reason="cluster tests need pip install -r requirements-cluster.txt")

from tests.conftest import ROOT, cpu_read_on, imported_by, linked_folder, read_csv, run_batch  # noqa: E402
from tests.test_cron import _same_results, _wait_for_commits  # noqa: E402

pytestmark = pytest.mark.slow
FILES = 400
SHARDS = ("--batch-size", "8")


@pytest.fixture(scope="module")
def config(tmp_path_factory):
    """Small shards, so that a run has many (and many commits to stop between)."""
    path = tmp_path_factory.mktemp("config") / "config.yaml"
    path.write_text("runtime:\n  shard_files: 8\n")
    return path


@pytest.fixture(scope="module")
def folder(tmp_path_factory, captcha_dir, model, config):
    """FILES files (hard links to the generated captchas, and bad ones) and a local run over
    them to compare with."""
    d = linked_folder(tmp_path_factory.mktemp("many"), captcha_dir, FILES)
    root = tmp_path_factory.mktemp("reference")
    proc = run_batch("--input", d, "--output", root, "--model", model, "--run-id", "local",
                     "--config", config, *SHARDS)
    assert proc.returncode == 0, proc.stderr
    return d, root / "local"


@pytest.fixture(scope="module")
def cluster():
    """A scheduler and 2 worker processes, outside the runs, as a site's cluster is."""
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  dashboard_address=":0", silence_logs=40) as c:
        with distributed.Client(c) as client:
            yield c, client


def _start(folder, root, model, config, address, run_id):
    return subprocess.Popen([sys.executable, str(ROOT / "run_batch.py"), "--input", str(folder),
                             "--output", str(root), "--model", str(model), "--run-id", run_id,
                             "--config", str(config), "--cluster", address, *SHARDS],
                            cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_a_local_cluster_gives_the_rows_of_a_local_run(tmp_path, folder, model, config):
    data, reference = folder
    proc = run_batch("--input", data, "--output", tmp_path, "--model", model, "--run-id", "c",
                     "--config", config, "--cluster", "local:2", *SHARDS)
    assert proc.returncode == 0, proc.stderr
    _same_results(tmp_path / "c", reference)
    # the device is where the workers read, not this process's
    assert read_csv(tmp_path / "c" / "summary.csv")[0]["device"] == "dask: " + cpu_read_on()
    assert read_csv(reference / "summary.csv")[0]["device"] == cpu_read_on()
    log = (tmp_path / "c" / "run.log").read_text()
    assert "Dask cluster" in log and "shards of 8 files" in log
    assert "Nanny" not in log           # Dask's own INFO lines stay out of run.log


def test_a_worker_killed_mid_run_loses_nothing(tmp_path, folder, model, config, cluster):
    data, reference = folder
    c, client = cluster
    proc = _start(data, tmp_path, model, config, c.scheduler_address, "k")
    _wait_for_commits(proc, tmp_path / "k", 80)
    pids = client.run(os.getpid)
    os.kill(next(iter(pids.values())), signal.SIGKILL)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err
    _same_results(tmp_path / "k", reference)


def test_a_killed_driver_resumes_to_the_rows_of_a_local_run(tmp_path, folder, model, config,
                                                             cluster):
    data, reference = folder
    address = cluster[0].scheduler_address
    proc = _start(data, tmp_path, model, config, address, "d")
    _wait_for_commits(proc, tmp_path / "d", 80)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = run_batch("--input", data, "--output", tmp_path, "--model", model, "--run-id", "d",
                     "--config", config, "--cluster", address, "--resume", *SHARDS)
    assert proc.returncode == 0, proc.stderr
    _same_results(tmp_path / "d", reference)
    assert read_csv(tmp_path / "d" / "summary.csv")[0]["attempts"] == "2"


def test_only_new_on_a_cluster_carries_rows_as_a_local_run_does(tmp_path, folder, model, config,
                                                                cluster):
    d = tmp_path / "in"      # links to the shared folder's files, which stay as they are
    d.mkdir()
    for p in folder[0].iterdir():
        os.link(p, d / p.name)
    proc = run_batch("--input", d, "--output", tmp_path / "local", "--model", model,
                     "--run-id", "first", "--config", config, *SHARDS)
    assert proc.returncode == 0, proc.stderr
    shutil.copytree(tmp_path / "local", tmp_path / "dask", symlinks=True)   # the same last night
    shutil.copy(next(d.glob("00002_*")), d / "00001_new.png")   # then a new file, a changed one
    changed = next(d.glob("00005_*"))
    content = changed.read_bytes()
    changed.unlink()
    changed.write_bytes(content)
    for where, extra in (("local", ()), ("dask", ("--cluster", cluster[0].scheduler_address))):
        proc = run_batch("--input", d, "--output", tmp_path / where, "--model", model,
                         "--run-id", "second", "--config", config, "--only-new", *extra, *SHARDS)
        assert proc.returncode == 0, proc.stderr
    local = read_csv(tmp_path / "local" / "second" / "predictions.csv")
    dask = read_csv(tmp_path / "dask" / "second" / "predictions.csv")
    assert local == dask and len(local) == FILES + 1
    summary = read_csv(tmp_path / "dask" / "second" / "summary.csv")[0]
    assert summary["new"] == "2" and int(summary["carried"]) == FILES - 1


def test_a_cluster_that_goes_away_stops_the_run_as_sigterm_does(tmp_path, folder, model, config):
    data, reference = folder
    c = distributed.LocalCluster(n_workers=1, threads_per_worker=1, processes=True,
                                 dashboard_address=":0", silence_logs=40)
    proc = _start(data, tmp_path, model, config, c.scheduler_address, "gone")
    try:
        _wait_for_commits(proc, tmp_path / "gone", 80)
    finally:
        c.close()
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "stopped by the loss of the cluster" in err and "--resume --run-id gone" in err
    proc = run_batch("--input", data, "--output", tmp_path, "--model", model, "--run-id", "gone",
                     "--config", config, "--resume", *SHARDS)      # resumed without a cluster
    assert proc.returncode == 0, proc.stderr
    _same_results(tmp_path / "gone", reference)


def test_a_scheduler_that_is_not_there_exits_2_with_one_line(tmp_path, model):
    proc = run_batch("--input", ROOT / "samples", "--output", tmp_path, "--model", model,
                     "--cluster", "tcp://127.0.0.1:9")
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in lines[0]
    assert not (tmp_path / "history.csv").exists()


def test_a_file_a_worker_cannot_read_gets_an_error_row_naming_the_worker(tmp_path, captcha_dir,
                                                                         model):
    from core.checkpoint import load_checkpoint
    from core.cluster import read_shard
    from core.data import scan_folder

    ckpt = load_checkpoint(model)
    items = scan_folder(captcha_dir, ckpt.labels)[:3]
    shutil.copytree(captcha_dir, tmp_path / "in")
    (tmp_path / "in" / items[1].path).unlink()      # as if this worker's mount lacked it
    job = dict(model=str(model), sha256=ckpt.sha256, root=str(tmp_path / "in"),
               codec=ckpt.codec, image=ckpt.image, fast_png=True, batch_size=2, device="cpu",
               cpu_precision="auto")
    batch = read_shard(job, items)
    assert batch["logits"].shape[0] == 3 and list(batch["index"]) == [0, 1, 2]
    assert batch["device"] == cpu_read_on()
    assert batch["error"][0] == batch["error"][2] == ""
    assert batch["error"][1].startswith("unreadable") and "(on worker pid " in batch["error"][1]


def test_a_worker_refuses_a_model_that_is_not_the_drivers(tmp_path, captcha_dir, model):
    from core.checkpoint import CheckpointError, load_checkpoint
    from core.cluster import read_shard
    from core.data import scan_folder

    ckpt = load_checkpoint(model)
    job = dict(model=str(model), sha256="0" * 64, root=str(captcha_dir), codec=ckpt.codec,
               image=ckpt.image, fast_png=True, batch_size=2, device="cpu", cpu_precision="auto")
    with pytest.raises(CheckpointError, match="is not the driver's model"):
        read_shard(job, scan_folder(captcha_dir, ckpt.labels)[:2])


def test_a_worker_without_the_drivers_model_stops_the_run_with_one_line(captcha_dir, model,
                                                                        cfg):
    from core.checkpoint import CheckpointError, load_checkpoint
    from core.cluster import ClusterError, ShardBatches
    from core.data import scan_folder

    class Refused:      # what a future gives back when read_shard refused the model
        def result(self):
            raise CheckpointError("m.pt on worker tcp://w:1 is not the driver's model")

        def cancel(self):
            pass

    class Client:
        def scheduler_info(self):
            return {"workers": {"tcp://w:1": {}}}

        def submit(self, *args, **kwargs):
            return Refused()

    ckpt = load_checkpoint(model)
    items = scan_folder(captcha_dir, ckpt.labels)
    batches = ShardBatches(Client(), ckpt, captcha_dir, items, list(range(len(items))), cfg)
    with pytest.raises(ClusterError, match="on the cluster: .*not the driver's model"):
        list(batches)


def test_without_cluster_dask_is_not_imported(tmp_path):
    code = ("from jobs.batch import main; "
            f"main(['--input', 'samples', '--output', {str(tmp_path)!r}, '--quiet'])")
    assert imported_by(code, "dask", "distributed") == []
