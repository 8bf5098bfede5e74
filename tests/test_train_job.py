"""The training job end to end, as a user runs it."""
import csv
import dataclasses
import os
import subprocess
import sys
import time

import pytest
import torch

from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import ImageConfig, LabelConfig
from core.data import CaptchaDataset, make_loader, scan_folder
from core.generator import generate_folder
from core.fit import EpochResult
from core.labels import build_codec
from core.models import ModelSpec, build_model
from core.training import reads_nothing
from tests.conftest import ROOT, read_csv, run_batch, run_job

pytestmark = pytest.mark.slow   # jobs run end to end, models trained: pytest -m 'not slow' skips it


def run(*args, ok=True):
    proc = run_job(*args)
    if ok:
        assert proc.returncode == 0, proc.stderr
    return proc


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("train")
    run("jobs.generate", "--output", str(tmp / "data"), "--count", "300", "--seed", "4")
    run("jobs.generate", "--output", str(tmp / "test"), "--count", "40", "--seed", "5")
    (tmp / "data" / "no_label_here.png").write_bytes((tmp / "test").iterdir().__next__().read_bytes())
    model = tmp / "model.pt"
    proc = run("jobs.train", "--input", str(tmp / "data"), "--output", str(model),
               "--arch", "seed", "--epochs", "2", "--seed", "1", "--test", str(tmp / "test"),
               "--workers", "0", "--augment-share", "0.5")
    return tmp, model, proc.stdout


def test_training_reports_the_skipped_file_and_the_seed_table(trained):
    _, _, out = trained
    assert "skipped 1 of 301 files" in out and "wrong length" in out
    assert "training seed (162,252 parameters) on 270 images, validating on 30" in out
    assert "epoch\ttrain loss\tval loss\tchars ok (%)\tcaptchas ok (%)" in out
    assert "loss\tchars ok (%)\tcaptchas ok (%)" in out


def test_training_loss_falls_and_history_is_written(trained):
    _, model, _ = trained
    with open(model.with_suffix(".history.csv")) as f:
        rows = list(csv.DictReader(f))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert float(rows[1]["train_loss"]) < float(rows[0]["train_loss"])


def test_checkpoint_loads_without_flags_and_predicts(trained, cfg):
    tmp, model, _ = trained
    ckpt = load_checkpoint(model, labels=cfg.labels, image=cfg.image)
    assert ckpt.arch == "seed" and ckpt.summary["epochs"] == 2
    assert ckpt.summary["test"]["scored"] == 40
    # on by default; the flag overrides the config's share
    assert ckpt.summary["augment"] == dataclasses.asdict(dataclasses.replace(cfg.augment,
                                                                             share=0.5))
    assert model.with_suffix(".config.yaml").exists()
    codec = ckpt.codec
    items = scan_folder(tmp / "test", ckpt.labels)
    batch = next(iter(make_loader(CaptchaDataset(tmp / "test", items, codec, ckpt.image), 8, 0,
                                  torch.device("cpu"))))
    with torch.no_grad():
        texts = codec.decode(ckpt.model(batch["image"])).texts
    assert len(texts) == 8
    assert all(len(t) == cfg.labels.length and set(t) <= set(cfg.labels.alphabet) for t in texts)


def test_missing_input_folder_exits_2_with_one_line(tmp_path):
    proc = run("jobs.train", "--input", str(tmp_path / "nope"), "--output", str(tmp_path / "m.pt"),
               ok=False)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and "does not exist" in proc.stderr


def test_missing_test_folder_is_refused_before_training(trained, tmp_path):
    tmp, _, _ = trained
    proc = run("jobs.train", "--input", str(tmp / "data"), "--output", str(tmp_path / "m.pt"),
               "--test", str(tmp_path / "nope"), ok=False)
    assert proc.returncode == 2 and "test folder" in proc.stderr
    assert "epoch\t" not in proc.stdout and not (tmp_path / "m.pt").exists()


def test_bad_config_exits_2_naming_the_key(tmp_path):
    (tmp_path / "c.yaml").write_text("train:\n  epochz: 1\n")
    proc = run("jobs.train", "--input", str(tmp_path), "--output", str(tmp_path / "m.pt"),
               "--config", str(tmp_path / "c.yaml"), ok=False)
    assert proc.returncode == 2 and "unknown key 'train.epochz'" in proc.stderr


def test_init_fine_tunes_from_the_checkpoint_and_takes_its_architecture(trained, tmp_path, cfg):
    tmp, model, _ = trained
    before = load_checkpoint(model).summary["best"]["val_loss"]
    tuned = tmp_path / "tuned.pt"
    # A learning rate too small to move the weights: the first epoch must then validate like the
    # checkpoint it starts from (same data, same seed, same split), not like a fresh network.
    proc = run("jobs.train", "--input", str(tmp / "data"), "--output", str(tuned), "--init",
               str(model), "--epochs", "1", "--seed", "1", "--lr", "1e-12", "--workers", "0",
               "--no-augment")
    assert f"starting from {model}" in proc.stdout
    with open(tuned.with_suffix(".history.csv")) as f:
        after = float(next(csv.DictReader(f))["val_loss"])
    assert after == pytest.approx(before, rel=1e-3)
    ckpt = load_checkpoint(tuned, labels=cfg.labels, image=cfg.image)
    assert ckpt.arch == "seed"  # from the checkpoint, though the config names another network
    assert ckpt.summary["init"]["sha256"] == load_checkpoint(model).sha256
    assert ckpt.summary["augment"] is None   # --no-augment


def test_a_model_that_reads_nothing_is_warned_about(trained, tmp_path):
    tmp, _, _ = trained
    # a rate too small to learn anything: no validation captcha read whole
    proc = run("jobs.train", "--input", str(tmp / "data"), "--output", str(tmp_path / "m.pt"),
               "--arch", "seed", "--epochs", "1", "--lr", "1e-12", "--workers", "0")
    assert "WARNING the model reads none of the 30 validation captchas" in proc.stderr
    assert (tmp_path / "m.pt").exists()   # still saved: the job did what it was asked
    row = dict(epoch=1, train_loss=1.0, val_loss=1.0, val_chars_correct=100,
               val_chars_total=120, val_char_accuracy=100 / 120, val_captchas_correct=0,
               val_images=30, val_captcha_accuracy=0.0, seconds=1.0)
    assert "83.3 % of their characters" in reads_nothing(EpochResult(**row))
    assert reads_nothing(EpochResult(**{**row, "val_captchas_correct": 1,
                                        "val_captcha_accuracy": 1 / 30})) is None


def test_init_refuses_another_arch_and_a_broken_model(trained, tmp_path):
    tmp, model, _ = trained
    proc = run("jobs.train", "--input", str(tmp / "data"), "--output", str(tmp_path / "m.pt"),
               "--init", str(model), "--arch", "seed-gap", ok=False)
    assert proc.returncode == 2 and "differs from the architecture" in proc.stderr
    (tmp_path / "bad.pt").write_bytes(b"not a model")
    proc = run("jobs.train", "--input", str(tmp / "data"), "--output", str(tmp_path / "m.pt"),
               "--init", str(tmp_path / "bad.pt"), ok=False)
    assert proc.returncode == 2 and "not a readable checkpoint" in proc.stderr
    assert not (tmp_path / "m.pt").exists()


# --- any length, any size, no configuration ----------------------------------------------------

@pytest.fixture(scope="module")
def short_labels(tmp_path_factory):
    """Small captchas (72x24) with labels of 3 to 5 characters, and a few of other sizes."""
    folder = tmp_path_factory.mktemp("short")
    labels = LabelConfig("ABCDEF123", "3-5", "upper", "_")
    generate_folder(folder, 160, seed=8, labels=labels, image=ImageConfig(24, 72), workers=1)
    for k, (height, width) in enumerate([(30, 70), (36, 90)]):
        generate_folder(folder / f"odd{k}", 4, seed=9 + k, labels=labels,
                        image=ImageConfig(height, width), workers=1)
    return folder


def test_zero_config_training_reads_labels_of_any_length_end_to_end(short_labels, tmp_path):
    model = tmp_path / "mine.pt"
    proc = run("jobs.train", "--input", str(short_labels), "--output", str(model),
               "--epochs", "4", "--workers", "0")
    found = [line for line in proc.stdout.splitlines() if line.startswith("found in")]
    text = "\n".join(found)
    assert "separator: '_'" in text and "length: 3-5" in text
    assert "alphabet: 9 characters '123ABCDEF'" in text and "reads them at 144x48" in text
    with open(model.with_suffix(".history.csv")) as f:
        losses = [float(r["train_loss"]) for r in csv.DictReader(f)]
    assert len(losses) == 4 and losses[-1] < losses[0]
    ckpt = load_checkpoint(model)
    assert ckpt.arch == "crnn" and ckpt.codec.kind == "ctc" and ckpt.labels.length == "3-5"
    assert (ckpt.image.height, ckpt.image.width) == (48, 144)   # small images scaled up
    # the checkpoint says what it reads: no config, no flags
    runs = tmp_path / "runs"
    batch = run_batch("--input", short_labels, "--model", model, "--output", runs,
                      "--run-id", "n1", "--quiet")
    assert batch.returncode == 0, batch.stderr
    summary = read_csv(runs / "n1" / "summary.csv")[0]
    assert summary["images"] == "168" and summary["errors"] == "0"
    assert summary["resized"] == "168"   # every one fitted to 144x48, the odd sizes too
    assert summary["labelled"] == "168" and "char_error_rate" in summary
    assert not any(k.startswith("position") for k in summary)   # lengths vary
    rows = read_csv(runs / "n1" / "predictions.csv")
    assert {len(r["label"]) for r in rows} == {3, 4, 5}


@pytest.mark.parametrize("flags, config, why", [
    (["--arch", "seed"], "", "labels.length is a range (3-5)"),
    ([], "image:\n  height: 12\n", "needs an input of at least 16x16"),
    (["--arch", "seed-gap"], "labels:\n  length: 4\n", "needs a larger input than 24x72")])
def test_settings_that_cannot_work_exit_2_saying_what_to_change(short_labels, tmp_path, flags,
                                                                config, why):
    extra = []
    if config:
        (tmp_path / "c.yaml").write_text(config)
        extra = ["--config", str(tmp_path / "c.yaml")]
    proc = run("jobs.train", "--input", str(short_labels), "--output", str(tmp_path / "m.pt"),
               *flags, *extra, ok=False)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and why in proc.stderr
    assert not (tmp_path / "m.pt").exists()


def test_a_new_model_starts_from_a_pretrained_one_of_another_alphabet(short_labels, tmp_path):
    base = tmp_path / "base.pt"
    labels, image = LabelConfig("ABC123XYZ", "2-8", "none", "_"), ImageConfig(48, 200, "none")
    codec = build_codec(labels, "ctc")
    torch.manual_seed(5)
    save_checkpoint(base, build_model("crnn", ModelSpec.from_config(image, codec)), "crnn",
                    labels, image, {})
    model = tmp_path / "m.pt"
    # a rate too small to move the weights: the trained model keeps the base's convolutions
    proc = run("jobs.train", "--input", str(short_labels), "--output", str(model),
               "--pretrained", str(base), "--epochs", "1", "--lr", "1e-12", "--workers", "0",
               "--no-augment")
    assert f"starting from the pretrained {base}" in proc.stdout
    assert "the output rows of 7 of 10 classes" in proc.stdout    # the blank, A B C 1 2 3
    ckpt, given = load_checkpoint(model), load_checkpoint(base)
    assert ckpt.summary["pretrained"]["sha256"] == given.sha256
    assert ckpt.labels.alphabet == "123ABCDEF"     # the folder's, not the base's
    mine, theirs = ckpt.model.state_dict(), given.model.state_dict()
    assert torch.allclose(mine["features.0.weight"], theirs["features.0.weight"], atol=1e-6)
    assert torch.allclose(mine["heads.0.weight"][4], theirs["heads.0.weight"][1], atol=1e-6)  # A
    small = tmp_path / "small.pt"
    save_checkpoint(small, build_model("crnn", ModelSpec.from_config(ImageConfig(32, 96, "none"), codec)),
                    "crnn", labels, ImageConfig(32, 96, "none"), {})
    proc = run("jobs.train", "--input", str(short_labels), "--output", str(tmp_path / "n.pt"),
               "--pretrained", str(small), ok=False)
    assert proc.returncode == 2 and proc.stderr.strip().count("\n") == 0
    assert "reads images 32 pixels high, this model 48" in proc.stderr
    proc = run("jobs.train", "--input", str(short_labels), "--output", str(tmp_path / "n.pt"),
               "--pretrained", str(base), "--init", str(model), ok=False)
    assert proc.returncode == 2 and "give one of the two" in proc.stderr


def test_auto_epochs_pass_fewer_times_over_inputs_larger_than_pass_pixels(short_labels, tmp_path):
    # read at 144x48 (6,912 pixels), three times pass_pixels here: a third of the passes
    (tmp_path / "c.yaml").write_text("train:\n  passes: 3\n  pass_pixels: 2304\n"
                                     "  min_samples: 1\n")
    model = tmp_path / "m.pt"
    proc = run("jobs.train", "--input", str(short_labels), "--output", str(model),
               "--workers", "0", "--config", str(tmp_path / "c.yaml"))
    assert "(train.epochs auto: 1 rather than 3 for 144x48 inputs" in proc.stdout
    assert load_checkpoint(model).summary["planned_epochs"] == 1


def test_a_killed_training_resumes_where_it_stopped(short_labels, tmp_path):
    model, epochs = tmp_path / "m.pt", "8"   # killed as soon as epoch 1 is saved
    state = model.with_suffix(".state.pt")
    (tmp_path / "small.yaml").write_text("image:\n  height: 24\n")   # quick epochs
    args = ["-m", "jobs.train", "--input", str(short_labels), "--output", str(model),
            "--epochs", epochs, "--workers", "0", "--config", str(tmp_path / "small.yaml")]
    proc = subprocess.Popen([sys.executable, *args], cwd=ROOT, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 300
        while not state.exists():
            assert proc.poll() is None, "the training ended before it could be killed"
            assert time.monotonic() < deadline
            time.sleep(0.01)
    finally:
        proc.kill()
        proc.wait()
    done = torch.load(state, weights_only=True)["epoch"]
    assert 1 <= done < 8
    resumed = run(*args[1:], "--resume")
    assert f"resuming after epoch {done} of 8" in resumed.stdout
    with open(model.with_suffix(".history.csv")) as f:
        assert [int(r["epoch"]) for r in csv.DictReader(f)] == list(range(1, 9))
    assert not state.exists()   # finished: nothing left to resume
    assert len(load_checkpoint(model).summary["history"]) == 8


def test_resume_refuses_a_state_written_for_other_images(short_labels, tmp_path):
    model = tmp_path / "m.pt"
    torch.save({"fingerprint": "another folder", "epoch": 1}, model.with_suffix(".state.pt"))
    proc = run("jobs.train", "--input", str(short_labels), "--output", str(model), "--epochs",
               "2", "--workers", "0", "--resume", ok=False)
    assert proc.returncode == 2 and "changed since it was written" in proc.stderr


def test_holding_the_images_in_memory_trains_exactly_as_decoding_them_every_epoch(
        short_labels, tmp_path):
    histories = {}
    for hold in ("true", "false"):
        (tmp_path / f"{hold}.yaml").write_text(
            f"image:\n  height: 24\nruntime:\n  in_memory: {hold}\n")
        model = tmp_path / f"{hold}.pt"
        proc = run("jobs.train", "--input", str(short_labels), "--output", str(model),
                   "--epochs", "2", "--workers", "0", "--config", str(tmp_path / f"{hold}.yaml"))
        said = ("holding the decoded images in memory (runtime.in_memory: true"
                if hold == "true" else "decoding the images every epoch (runtime.in_memory: false")
        assert said in proc.stdout
        with open(model.with_suffix(".history.csv")) as f:
            histories[hold] = [(r["train_loss"], r["val_loss"]) for r in csv.DictReader(f)]
    assert len(histories["true"]) == 2 and histories["true"] == histories["false"]


@pytest.mark.parametrize("hold", ["true", "false"])
def test_files_left_out_of_training_are_named_with_why(short_labels, tmp_path, hold):
    folder = tmp_path / "in"
    folder.mkdir()
    for image in sorted(short_labels.glob("*.png"))[:40]:
        (folder / image.name).write_bytes(image.read_bytes())
    (folder / "ABC_d1.png").write_bytes(b"not a png at all")       # labelled, but damaged
    (folder / "BAD_d2.png").write_bytes(b"")
    (folder / "notes.txt").write_text("hello")                     # no label of the alphabet
    (tmp_path / "elsewhere").mkdir()
    os.symlink(tmp_path / "elsewhere", folder / "linked")          # not followed: said once
    (tmp_path / "c.yaml").write_text(f"image:\n  height: 24\nruntime:\n  in_memory: {hold}\n")
    model = tmp_path / "m.pt"
    proc = run("jobs.train", "--input", str(folder), "--output", str(model), "--epochs", "2",
               "--workers", "0", "--config", str(tmp_path / "c.yaml"))
    assert (proc.stdout + proc.stderr).count("linked is a link to a folder, not followed") == 1
    assert ("left out 2 files that could not be read: ABC_d1.png (unreadable: not an image), "
            "BAD_d2.png (unreadable: empty file)") in proc.stdout
    rows = {r["path"]: r["why"] for r in read_csv(model.with_suffix(".left_out.csv"))}
    assert rows == {"ABC_d1.png": "unreadable: not an image",
                    "BAD_d2.png": "unreadable: empty file",
                    "notes.txt": "no valid label: character outside the alphabet"}
    if hold == "true":   # a later run with nothing left out leaves no stale list behind
        for name in rows:
            (folder / name).unlink()
        proc = run("jobs.train", "--input", str(folder), "--output", str(model), "--epochs",
                   "1", "--workers", "0", "--config", str(tmp_path / "c.yaml"))
        assert "left out" not in proc.stdout
        assert not model.with_suffix(".left_out.csv").exists()
