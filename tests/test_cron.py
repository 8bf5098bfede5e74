"""What cron meets at night: overlapping starts, killed processes, quality alerts, quiet logs.
Real processes throughout: the runner as a command, the lock held by another process."""
import csv
import json
import os
import re
import signal
import subprocess
import sys
import time

import pytest
import torch

from core.run_record import Thresholds, quality_alerts
from core.checkpoint import save_checkpoint
from core.labels import build_codec
from core.models import ModelSpec, build_model
from tests.conftest import ROOT, linked_folder, read_csv, run_batch, run_batch_process

pytestmark = pytest.mark.slow   # jobs run end to end, models trained: pytest -m 'not slow' skips it

HOLD_LOCK = ("import sys, time\n"
             "from core.lock import exclusive_lock\n"
             "with exclusive_lock(sys.argv[1]):\n"
             "    print('held', flush=True)\n"
             "    time.sleep(120)\n")


@pytest.fixture
def holder(tmp_path):
    """Another process holding the lock of tmp_path/runs."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD_LOCK, str(tmp_path / "runs")], cwd=ROOT,
                            stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "held"
    yield proc
    proc.kill()
    proc.wait()


@pytest.fixture
def small_dir(tmp_path, captcha_dir):
    folder = tmp_path / "in"
    folder.mkdir()
    for p in sorted(captcha_dir.iterdir())[:12]:
        os.link(p, folder / p.name)
    return folder


def test_a_held_lock_turns_the_run_away_with_4_naming_the_holder(tmp_path, holder, small_dir,
                                                                   model):
    proc = run_batch("--input", small_dir, "--output", tmp_path / "runs", "--model", model,
                     "--run-id", "second")
    assert proc.returncode == 4, proc.stderr
    assert proc.stderr.count("\n") == 1 and f"pid {holder.pid}" in proc.stderr
    assert not (tmp_path / "runs" / "second").exists()


def test_a_lock_left_by_a_killed_process_does_not_block(tmp_path, holder, small_dir, model):
    holder.send_signal(signal.SIGKILL)
    holder.wait()
    assert (tmp_path / "runs" / ".lock").exists()  # the file stays; the lock died with it
    proc = run_batch("--input", small_dir, "--output", tmp_path / "runs", "--model", model,
                     "--run-id", "after", "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert len(read_csv(tmp_path / "runs" / "after" / "predictions.csv")) == 12


def test_a_run_in_progress_turns_the_next_away_and_finishes(tmp_path, many, model):
    # The first run is paused (SIGSTOP) once it holds the lock, so that the second certainly
    # arrives while it runs; then it is let go. The lock file keeps the pid after a run, so the
    # first run must still be reading when it is caught: thousands of files in small batches.
    folder, _ = many
    root = tmp_path / "runs"
    first = _start(folder, root, model, "first")
    try:
        _wait_until(lambda: f"pid {first.pid}," in _read(root / ".lock"), first)
        first.send_signal(signal.SIGSTOP)
        assert first.poll() is None, "the first run ended before it could be caught"
        second = run_batch("--input", folder, "--output", root, "--model", model,
                           "--workers", "0", "--run-id", "second")
        assert second.returncode == 4, second.stderr
        assert f"pid {first.pid}," in second.stderr
    finally:
        first.send_signal(signal.SIGCONT)
    _, err = first.communicate(timeout=300)
    assert first.returncode == 0, err
    assert [r["run_id"] for r in read_csv(root / "history.csv")] == ["first"]
    assert not (root / "second").exists()


def _read(path):
    try:
        return path.read_text()
    except FileNotFoundError:
        return ""


def _wait_until(condition, proc, timeout=120.0):
    """Poll `condition` every 10 ms until it holds; fail if `proc` ends first or time runs out."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert proc.poll() is None, "the run ended before the test could catch it"
        assert time.monotonic() < deadline, f"still waiting after {timeout:.0f} s"
        time.sleep(0.01)


def _outputs_complete(run_dir):
    return all((run_dir / f).exists() for f in ("predictions.csv", "summary.csv", "confusion.csv",
                                                "config.yaml", "run.log"))


def test_min_accuracy_breach_exits_3_after_writing_everything(tmp_path, small_dir, model):
    root = tmp_path / "runs"
    proc = run_batch("--input", small_dir, "--output", root, "--model", model, "--run-id", "n1",
                     "--min-accuracy", "0.5")  # the untrained model reads nothing right
    assert proc.returncode == 3, proc.stderr
    assert "quality alert: captcha accuracy 0.00% is below the minimum 50.00%" in proc.stderr
    assert _outputs_complete(root / "n1")
    assert [r["run_id"] for r in read_csv(root / "history.csv")] == ["n1"]
    assert (root / "latest").resolve() == (root / "n1").resolve()
    assert "quality alert" in (root / "n1" / "run.log").read_text()


def test_max_drop_compares_with_the_previous_completed_run(tmp_path, small_dir, model):
    root = tmp_path / "runs"
    assert run_batch("--input", small_dir, "--output", root, "--model", model,
                     "--run-id", "n1").returncode == 0
    # Make the first night look good, as if the model had got worse since.
    rows = read_csv(root / "history.csv")
    rows[0]["captcha_accuracy"] = "0.950000"
    with open(root / "history.csv", "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    proc = run_batch("--input", small_dir, "--output", root, "--model", model, "--run-id", "n2",
                     "--max-drop", "5")
    assert proc.returncode == 3, proc.stderr
    assert "fell 95.00 points, from 95.00% in run n1" in proc.stderr
    assert _outputs_complete(root / "n2")
    proc = run_batch("--input", small_dir, "--output", root, "--model", model, "--run-id", "n3",
                     "--max-drop", "5")  # n2 (0 %) is the previous run now: no drop
    assert proc.returncode == 0, proc.stderr


def test_max_error_rate_counts_unreadable_files(tmp_path, small_dir, model):
    (small_dir / "ZZZZ_broken.png").write_bytes(b"")
    root = tmp_path / "runs"
    proc = run_batch("--input", small_dir, "--output", root, "--model", model, "--run-id", "n1",
                     "--max-error-rate", "0.05")  # 1 of 13 is 7.7 %
    assert proc.returncode == 3, proc.stderr
    assert "1 of 13 files unreadable (7.69%)" in proc.stderr
    assert len(read_csv(root / "n1" / "predictions.csv")) == 13
    proc = run_batch("--input", small_dir, "--output", root, "--model", model, "--run-id", "n2",
                     "--max-error-rate", "0.1")
    assert proc.returncode == 0, proc.stderr


def test_thresholds_outside_their_range_are_usage_errors(tmp_path, small_dir, model):
    proc = run_batch("--input", small_dir, "--output", tmp_path, "--model", model,
                     "--min-accuracy", "95")
    assert proc.returncode == 2 and "not a fraction between 0 and 1" in proc.stderr


def test_quality_alerts_unit():
    summary = {"captcha_accuracy": "0.900000", "images": "100", "errors": "2"}
    assert quality_alerts(summary, None, Thresholds()) == []
    assert quality_alerts(summary, None, Thresholds(min_accuracy=0.9)) == []
    assert len(quality_alerts(summary, None, Thresholds(min_accuracy=0.91))) == 1
    previous = {"run_id": "a", "captcha_accuracy": "0.930000"}
    assert quality_alerts(summary, previous, Thresholds(max_drop=3.5)) == []
    assert len(quality_alerts(summary, previous, Thresholds(max_drop=2.5))) == 1
    assert len(quality_alerts(summary, previous, Thresholds(max_error_rate=0.01))) == 1
    nothing_labelled = {"captcha_accuracy": "nan", "images": "5", "errors": "0"}
    assert quality_alerts(nothing_labelled, previous, Thresholds(0.99, 1.0, 0.0)) == []


def test_quiet_prints_one_line_and_run_log_has_utc_lines(tmp_path, small_dir, model):
    # what cron mails is the whole process's output, interpreter start and exit included
    root = tmp_path / "runs"
    proc = run_batch_process("--input", small_dir, "--output", root, "--model", model,
                             "--run-id", "q", "--quiet")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("\n") == 1 and str(root / "q") in proc.stdout
    assert proc.stderr == ""
    log = (root / "q" / "run.log").read_text().splitlines()
    assert all(re.match(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ (INFO|WARNING) ", line) for line in log)
    assert any("12 files under" in line and "sha256" in line for line in log)
    assert any(line.split(" ", 2)[2].startswith("done: 12 images") for line in log)


# --- crash, stop and resume -------------------------------------------------------------------

RESUME_FILES = 2000


@pytest.fixture(scope="module")
def many(tmp_path_factory, captcha_dir, model):
    """A few thousand files (hard links to the generated captchas, plus two bad ones) and an
    uninterrupted run over them to compare with."""
    folder = linked_folder(tmp_path_factory.mktemp("many"), captcha_dir, RESUME_FILES)
    root = tmp_path_factory.mktemp("reference")
    proc = run_batch("--input", folder, "--output", root, "--model", model, "--run-id", "full",
                     *SLOW)
    assert proc.returncode == 0, proc.stderr
    return folder, root / "full"


SLOW = ("--workers", "0", "--batch-size", "4")  # many small commits: easy to stop part way


def _start(folder, root, model, run_id):
    return subprocess.Popen([sys.executable, str(ROOT / "run_batch.py"), "--input", str(folder),
                             "--output", str(root), "--model", str(model), "--run-id", run_id,
                             *SLOW], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True)


def _wait_for_commits(proc, run_dir, rows):
    """Until the run has committed at least `rows` rows (and is not finished)."""
    def committed():
        try:
            state = json.loads((run_dir / "manifest.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            return False
        assert not state["complete"], "the run ended before it could be stopped part way"
        return state["rows"] >= rows

    _wait_until(committed, proc)


def _same_results(run_dir, reference):
    assert read_csv(run_dir / "predictions.csv") == read_csv(reference / "predictions.csv")
    assert read_csv(run_dir / "confusion.csv") == read_csv(reference / "confusion.csv")
    ours, theirs = read_csv(run_dir / "summary.csv")[0], read_csv(reference / "summary.csv")[0]
    for key in ("images", "labelled", "unlabelled", "errors", "resized", "char_accuracy",
                "captcha_accuracy", "position1_accuracy", "mean_confidence"):
        assert ours[key] == theirs[key], key
    assert not (run_dir / "parts").exists()


def test_sigkill_then_resume_gives_the_rows_of_an_uninterrupted_run(tmp_path, many, model):
    folder, reference = many
    root = tmp_path / "runs"
    proc = _start(folder, root, model, "cut")
    _wait_for_commits(proc, root / "cut", RESUME_FILES // 4)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    state = json.loads((root / "cut" / "manifest.json").read_text())
    assert 0 < state["rows"] < RESUME_FILES and not (root / "cut" / "predictions.csv").exists()
    assert not (root / "history.csv").exists()

    proc = run_batch("--input", folder, "--output", root, "--model", model, "--run-id", "cut",
                     "--resume", *SLOW)
    assert proc.returncode == 0, proc.stderr
    _same_results(root / "cut", reference)
    summary = read_csv(root / "cut" / "summary.csv")[0]
    assert summary["attempts"] == "2"
    assert [r["run_id"] for r in read_csv(root / "history.csv")] == ["cut"]
    assert f"resuming after {state['rows']}" in (root / "cut" / "run.log").read_text()


def test_sigterm_stops_at_a_batch_boundary_and_resume_completes(tmp_path, many, model):
    folder, reference = many
    root = tmp_path / "runs"
    proc = _start(folder, root, model, "term")
    _wait_for_commits(proc, root / "term", 100)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "stopped by SIGTERM" in err and "--resume --run-id term" in err
    state = json.loads((root / "term" / "manifest.json").read_text())
    assert not state["complete"] and state["rows"] < RESUME_FILES
    # every committed part is whole: the rows so far are exactly the reference's first rows
    committed = []
    for k in range(state["parts"]):
        with open(root / "term" / "parts" / f"{k:06d}.csv", newline="", encoding="utf-8") as f:
            committed += list(csv.reader(f))
    with open(reference / "predictions.csv", newline="", encoding="utf-8") as f:
        assert committed == list(csv.reader(f))[1:1 + state["rows"]]

    proc = run_batch("--input", folder, "--output", root, "--model", model, "--run-id", "term",
                     "--resume", *SLOW)
    assert proc.returncode == 0, proc.stderr
    _same_results(root / "term", reference)


def test_resume_refuses_a_changed_input_and_skips_a_complete_run(tmp_path, many, model, small_dir):
    folder, reference = many
    root = reference.parent
    proc = run_batch("--input", small_dir, "--output", root, "--model", model, "--run-id", "full",
                     "--resume")
    assert proc.returncode == 0 and "already complete" in proc.stderr
    assert [r["run_id"] for r in read_csv(root / "history.csv")] == ["full"]

    run_dir = tmp_path / "runs" / "x"
    proc = _start(small_dir, tmp_path / "runs", model, "x")
    assert proc.wait(timeout=120) == 0
    manifest = json.loads((run_dir / "manifest.json").read_text())
    manifest.update(complete=False, rows=0, parts=0)  # as if it had died at once
    (run_dir / "manifest.json").write_text(json.dumps(manifest))
    (small_dir / "ZZZZ_new.png").write_bytes(b"")
    proc = run_batch("--input", small_dir, "--output", tmp_path / "runs", "--model", model,
                     "--run-id", "x", "--resume")
    assert proc.returncode == 2 and "list of input files changed" in proc.stderr


# --- only new files ---------------------------------------------------------------------------

def test_only_new_predicts_new_and_changed_files_and_carries_the_rest(tmp_path, small_dir,
                                                                     captcha_dir, model):
    root = tmp_path / "runs"
    assert run_batch("--input", small_dir, "--output", root, "--model", model,
                     "--run-id", "n1").returncode == 0
    extra = sorted(captcha_dir.iterdir())[20:23]
    for p in extra:
        os.link(p, small_dir / p.name)
    touched = sorted(small_dir.iterdir())[0]
    os.utime(touched, ns=(touched.stat().st_atime_ns, touched.stat().st_mtime_ns + 10**9))

    proc = run_batch("--input", small_dir, "--output", root, "--model", model, "--run-id", "n2",
                     "--only-new")
    assert proc.returncode == 0, proc.stderr
    assert "4 new, 11 carried from run n1" in proc.stdout
    summary = read_csv(root / "n2" / "summary.csv")[0]
    assert (summary["new"], summary["carried"], summary["carried_from"]) == ("4", "11", "n1")
    # the result is the same as predicting everything again
    assert run_batch("--input", small_dir, "--output", root, "--model", model,
                     "--run-id", "n3").returncode == 0
    carried, fresh = (read_csv(root / run / "predictions.csv") for run in ("n2", "n3"))
    assert len(carried) == len(fresh) == 15
    for a, b in zip(carried, fresh):  # the batches differ, so floats may differ in the last digit
        floats = ({"confidence", "label_probability"}
                  | {k for k in a if re.fullmatch(r"p\d+", k)})
        assert {k: v for k, v in a.items() if k not in floats} == \
            {k: v for k, v in b.items() if k not in floats}
        assert all(abs(float(a[k]) - float(b[k])) < 1e-5 for k in floats if a[k])
    full = read_csv(root / "n3" / "summary.csv")[0]
    for key in ("images", "labelled", "errors", "char_accuracy", "captcha_accuracy"):
        assert summary[key] == full[key], key
    assert full["carried"] == "0"


def test_only_new_carries_nothing_from_a_run_with_another_model(tmp_path, small_dir, model, cfg):
    root = tmp_path / "runs"
    assert run_batch("--input", small_dir, "--output", root, "--model", model,
                     "--run-id", "n1").returncode == 0
    torch.manual_seed(1)
    other = tmp_path / "other.pt"
    net = build_model("seed-gap", ModelSpec.from_config(cfg.image, build_codec(cfg.labels)))
    save_checkpoint(other, net, "seed-gap", cfg.labels, cfg.image, {})
    proc = run_batch("--input", small_dir, "--output", root, "--model", other, "--run-id", "n2",
                     "--only-new")
    assert proc.returncode == 0, proc.stderr
    assert "predicting every file, since run n1 used another model" in proc.stderr
    summary = read_csv(root / "n2" / "summary.csv")[0]
    assert (summary["new"], summary["carried"]) == ("12", "0")
