"""The nightly runner end to end, as cron runs it: `python run_batch.py --input DIR ...`."""
import dataclasses
import shutil
import struct
import time
import zlib

import cv2
import numpy as np
import pytest
import torch

import core.batch
import core.run_state
from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import LabelConfig
from core.images import MAX_PIXELS
from core.labels import build_codec
from core.models import ModelSpec, build_model
from tests.conftest import ROOT, cpu_read_on, read_csv, refuse_to_list, run_batch


PLANTED = {  # relative path -> (status, error, labelled, resized)
    "ZERO_1.png": ("error", "empty file", True, None),
    "TRNC_2.png": ("error", "truncated or corrupt PNG", True, None),
    "notes.png": ("error", "not an image", False, None),
    # 30,000 x 30,000 pixels claimed in a few bytes: refused, not allocated (2.7 GB)
    "HUGE_7.png": ("error", f"image too large (its header says more than {MAX_PIXELS:,} pixels)",
                   True, None),
    "GRAY_3.png": ("ok", "", True, False),
    "BIGG_4.png": ("ok", "", True, True),
    "JPEG_5.jpg": ("ok", "", True, False),
    "unlabelled picture.png": ("ok", "", False, False),
    'AB,C"D.png': ("ok", "", False, False),
    "nested/deeper/NEST_6.png": ("ok", "", True, False),
}


@pytest.fixture(scope="module")
def input_dir(tmp_path_factory, captcha_dir):
    d = tmp_path_factory.mktemp("nightly")
    good = sorted(captcha_dir.iterdir())[:20]
    for p in good:
        shutil.copy(p, d / p.name)
    sample = cv2.imread(str(good[0]))
    (d / "ZERO_1.png").write_bytes(b"")
    (d / "TRNC_2.png").write_bytes(good[1].read_bytes()[:600])
    (d / "notes.png").write_text("not a picture, just text\n")
    huge = bytearray(good[5].read_bytes())
    huge[16:24] = struct.pack(">II", 30000, 30000)
    huge[29:33] = struct.pack(">I", zlib.crc32(bytes(huge[12:29])))     # IHDR's CRC made right
    (d / "HUGE_7.png").write_bytes(bytes(huge))
    cv2.imwrite(str(d / "GRAY_3.png"), cv2.cvtColor(sample, cv2.COLOR_BGR2GRAY))
    cv2.imwrite(str(d / "BIGG_4.png"), cv2.resize(sample, None, fx=2, fy=2))
    cv2.imwrite(str(d / "JPEG_5.jpg"), sample)
    shutil.copy(good[2], d / "unlabelled picture.png")
    shutil.copy(good[3], d / 'AB,C"D.png')
    (d / "nested" / "deeper").mkdir(parents=True)
    shutil.copy(good[4], d / "nested/deeper/NEST_6.png")
    return d, [p.name for p in good]


@pytest.fixture(scope="module")
def first_run(tmp_path_factory, input_dir, model):
    root = tmp_path_factory.mktemp("runs")
    proc = run_batch("--input", input_dir[0], "--output", root, "--model", model,
                     "--run-id", "night1", "--workers", "2", "--batch-size", "8")
    assert proc.returncode == 0, proc.stderr
    return root, proc


def test_every_file_has_exactly_one_row_in_input_order(first_run, input_dir):
    root, _ = first_run
    rows = read_csv(root / "night1" / "predictions.csv")
    expected = sorted(input_dir[1] + list(PLANTED))
    assert [r["path"] for r in rows] == expected


def test_planted_files_get_the_right_status_and_reason(first_run):
    root, _ = first_run
    rows = {r["path"]: r for r in read_csv(root / "night1" / "predictions.csv")}
    for path, (status, error, labelled, resized) in PLANTED.items():
        row = rows[path]
        assert (row["status"], row["error"]) == (status, error), path
        assert bool(row["label"]) == labelled, path
        if status == "ok":
            assert len(row["prediction"]) == 4 and 0 < float(row["confidence"]) <= 1
            assert row["resized"] == str(int(resized)), path
            assert row["correct"] in (("0", "1") if labelled else ("",)), path
        else:
            assert row["prediction"] == row["correct"] == row["confidence"] == ""


def test_summary_counts_match_the_inputs(first_run, input_dir):
    root, proc = first_run
    (s,) = read_csv(root / "night1" / "summary.csv")
    n = len(input_dir[1]) + len(PLANTED)
    assert int(s["images"]) == n
    errors = sum(status == "error" for status, *_ in PLANTED.values())
    unlabelled = sum(not labelled for _, _, labelled, _ in PLANTED.values())
    assert int(s["errors"]) == errors == 4 and int(s["resized"]) == 1
    assert int(s["unlabelled"]) == unlabelled == 3 and int(s["labelled"]) == n - 3
    # --device auto: CUDA where there is one (the GPU machine ran this suite too), else the CPU
    assert len(s["model_sha256"]) == 64
    assert s["device"] == ("cuda (float16)" if torch.cuda.is_available() else cpu_read_on())
    assert f"{n} images" in proc.stdout and "night1" in proc.stdout


def test_accuracies_recomputed_from_predictions_equal_the_summary(first_run):
    root, _ = first_run
    rows = [r for r in read_csv(root / "night1" / "predictions.csv") if r["correct"] != ""]
    (s,) = read_csv(root / "night1" / "summary.csv")
    chars = sum(a == b for r in rows for a, b in zip(r["label"], r["prediction"]))
    assert float(s["captcha_accuracy"]) == pytest.approx(
        sum(r["correct"] == "1" for r in rows) / len(rows), abs=1e-6)
    assert float(s["char_accuracy"]) == pytest.approx(chars / (4 * len(rows)), abs=1e-6)
    for i in range(4):
        hits = sum(r["label"][i] == r["prediction"][i] for r in rows)
        assert float(s[f"position{i + 1}_accuracy"]) == pytest.approx(hits / len(rows), abs=1e-6)
    ok = [r for r in read_csv(root / "night1" / "predictions.csv") if r["status"] == "ok"]
    assert float(s["mean_confidence"]) == pytest.approx(
        np.mean([float(r["confidence"]) for r in ok]), abs=1e-5)


def test_confusion_counts_every_misread_character(first_run):
    root, _ = first_run
    rows = [r for r in read_csv(root / "night1" / "predictions.csv") if r["correct"] != ""]
    wrong = sum(a != b for r in rows for a, b in zip(r["label"], r["prediction"]))
    confusion = read_csv(root / "night1" / "confusion.csv")
    assert sum(int(c["count"]) for c in confusion) == wrong
    counts = [int(c["count"]) for c in confusion]
    assert counts == sorted(counts, reverse=True)


@pytest.mark.slow
def test_history_gains_a_row_per_run_and_latest_follows(first_run, input_dir, model):
    root, _ = first_run
    assert [r["run_id"] for r in read_csv(root / "history.csv")] == ["night1"]
    proc = run_batch("--input", input_dir[0], "--output", root, "--model", model,
                     "--run-id", "night2", "--workers", "0")
    assert proc.returncode == 0, proc.stderr
    assert [r["run_id"] for r in read_csv(root / "history.csv")] == ["night1", "night2"]
    assert (root / "latest").resolve() == (root / "night2").resolve()
    assert (root / "night2" / "config.yaml").exists()


@pytest.mark.slow
@pytest.mark.parametrize("case", ["missing", "empty", "mismatched", "unreadable", "rerun"])
def test_unusable_inputs_exit_2_with_one_line(tmp_path, first_run, input_dir, model, cfg, case):
    root, _ = first_run
    folder, model_path, run_id, config = input_dir[0], model, "fresh", []
    if case == "missing":
        folder = tmp_path / "nope"
    elif case == "empty":
        folder = tmp_path / "empty"
        folder.mkdir()
    elif case == "mismatched":
        labels = LabelConfig(alphabet="0123456789", length=4, case="upper", separator="_")
        net = build_model("seed-gap", ModelSpec.from_config(cfg.image, build_codec(labels)))
        model_path = tmp_path / "digits.pt"
        save_checkpoint(model_path, net, "seed-gap", labels, cfg.image, {})
        # a config that pins what the night's models must read turns this one away
        config = ["--config", tmp_path / "pinned.yaml"]
        (tmp_path / "pinned.yaml").write_text(f"labels:\n  alphabet: {cfg.labels.alphabet}\n")
    elif case == "unreadable":
        model_path = tmp_path / "broken.pt"
        model_path.write_bytes(b"\x00" * 10)
    elif case == "rerun":
        run_id = "night1"
    proc = run_batch("--input", folder, "--output", root, "--model", model_path, "--run-id", run_id,
                     *config)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and proc.stderr.startswith("error: ")
    assert not (root / "fresh").exists()


def test_wall_time_counts_writing_the_outputs(monkeypatch, tmp_path, captcha_dir, model, cfg):
    # images_per_second covers the whole pass, finishing included: a slow last step (here the
    # review files, made to take 0.5 s more) must show in wall_seconds.
    real_review = core.batch.review_run

    def slow_review(*args, **kwargs):
        time.sleep(0.5)
        return real_review(*args, **kwargs)

    monkeypatch.setattr(core.batch, "review_run", slow_review)
    no_workers = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, workers=0))
    summary = core.batch.run_batch(captcha_dir, tmp_path / "run", load_checkpoint(model),
                                   no_workers, torch.device("cpu"))
    wall = float(summary["wall_seconds"])
    assert wall >= 0.5
    assert float(summary["images_per_second"]) == pytest.approx(48 / wall, rel=0.01)
    assert core.run_state.read_state(tmp_path / "run").seconds == pytest.approx(wall, abs=0.01)


def test_folders_that_cannot_be_listed_are_counted_and_named(monkeypatch, tmp_path, captcha_dir,
                                                              model, cfg):
    # Their files cannot have rows, but the run must not look complete without saying so.
    data = tmp_path / "in"
    shutil.copytree(captcha_dir, data / "readable")
    shutil.copytree(captcha_dir, data / "locked")
    refuse_to_list(monkeypatch, "locked")
    no_workers = dataclasses.replace(cfg, runtime=dataclasses.replace(cfg.runtime, workers=0))
    summary = core.batch.run_batch(data, tmp_path / "run", load_checkpoint(model), no_workers,
                                   torch.device("cpu"))
    assert summary["images"] == 48 and summary["unlistable_folders"] == 1
    assert core.run_state.read_state(tmp_path / "run").unlistable == ["locked"]
    rows = read_csv(tmp_path / "run" / "predictions.csv")
    assert len(rows) == 48 and all(r["path"].startswith("readable/") for r in rows)
    assert read_csv(tmp_path / "run" / "summary.csv")[0]["unlistable_folders"] == "1"


def test_an_input_folder_that_cannot_be_listed_is_named_as_such(monkeypatch, tmp_path, cfg):
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "ABCD_1.png").write_bytes(b"x")
    refuse_to_list(monkeypatch, "in")
    with pytest.raises(core.batch.InputError, match="cannot be listed"):
        core.batch.list_inputs(tmp_path / "in", cfg)


@pytest.mark.parametrize("quiet", [True, False])
def test_stdout_says_when_folders_could_not_be_listed(capsys, tmp_path, quiet):
    from jobs.batch import _report
    summary = {"images": "10", "labelled": "10", "unlabelled": "0", "errors": "0",
               "resized": "0", "captcha_accuracy": "0.9", "char_accuracy": "0.97",
               "mean_confidence": "0.9", "images_per_second": "100.0", "wall_seconds": "0.1",
               "device": "cpu", "unlistable_folders": "0"}
    _report(summary, tmp_path, quiet)
    assert "could not be listed" not in capsys.readouterr().out
    _report({**summary, "unlistable_folders": "2"}, tmp_path, quiet)
    assert "2 folder(s) under the input could not be listed" in capsys.readouterr().out


def test_resume_clears_every_file_in_parts_the_manifest_does_not_count(tmp_path):
    state = core.run_state.RunState("in", 3, "", "", "", "", rows=2, parts=2)
    parts = tmp_path / core.run_state.PARTS
    parts.mkdir()
    names = ["000000.csv", "000001.csv", "000002.csv", "notes.csv", ".000002.csv.9.tmp", "x"]
    for name in names:
        (parts / name).write_text("")
    core.run_state.clear_uncommitted_parts(tmp_path, state)
    assert sorted(p.name for p in parts.iterdir()) == ["000000.csv", "000001.csv"]


def test_bfloat16_reads_the_samples_as_float32_does_but_near_ties(tmp_path):
    """runtime.cpu_precision bfloat16 (what auto picks on a CPU with AMX) in the runner's
    workers: the same files and readings as float32, except where float32's own reading was a
    near tie; the summary says how it read."""
    rows = {}
    for precision in ("float32", "bfloat16"):
        config = tmp_path / f"{precision}.yaml"
        config.write_text(f"runtime:\n  cpu_precision: {precision}\n")
        proc = run_batch("--input", ROOT / "samples", "--output", tmp_path / precision,
                         "--run-id", "r", "--device", "cpu", "--config", config)
        assert proc.returncode == 0, proc.stderr
        rows[precision] = read_csv(tmp_path / precision / "r" / "predictions.csv")
        summary = read_csv(tmp_path / precision / "r" / "summary.csv")[0]
        assert summary["device"] == {"float32": "cpu", "bfloat16": "cpu (bfloat16)"}[precision]
    exact, fast = rows["float32"], rows["bfloat16"]
    assert [r["path"] for r in exact] == [r["path"] for r in fast] and len(exact) == 36
    for a, b in zip(exact, fast):
        if float(a["confidence"]) > 0.6:
            assert a["prediction"] == b["prediction"], a["path"]
        assert abs(float(a["confidence"]) - float(b["confidence"])) < 0.1, a["path"]
    assert any(a["confidence"] != b["confidence"] for a, b in zip(exact, fast))
