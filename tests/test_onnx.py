"""ONNX export and ONNX Runtime reading: every architecture, the metadata, the runner with a
.onnx model, and the refusals."""
import dataclasses
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import torch

onnx = pytest.importorskip("onnx", reason="ONNX tests need pip install -r requirements-onnx.txt")
pytest.importorskip("onnxruntime", reason="ONNX tests need pip install -r requirements-onnx.txt")

from core.checkpoint import CheckpointError, load_checkpoint, load_model, save_checkpoint
from core.config import ImageConfig, LabelConfig
from core.images import read_image
from core.labels import build_codec
from core.models import ModelSpec, available_models, build_model, codec_kind
from core.onnx_model import (FORMAT_VERSION, METADATA_KEYS, PREFIX, export_onnx, load_onnx,
                             onnx_providers, paired_logits)
from tests.conftest import ROOT, linked_folder, read_csv, run_batch, run_job

BUNDLED = ROOT / "models" / "default.pt"


def _checkpoint(tmp_path, arch, labels, image, temperature=1.0, summary=None):
    """A random network of `arch` with batch-norm statistics that are not the identity (so
    that folding them is tested too), saved and loaded back."""
    torch.manual_seed(1)
    net = build_model(arch, ModelSpec.from_config(image, build_codec(labels, codec_kind(arch))))
    for module in net.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.3, 0.3)
            module.running_var.uniform_(0.5, 2.0)
    path = tmp_path / f"{arch}.pt"
    save_checkpoint(path, net, arch, labels, image, summary or {}, temperature)
    return load_checkpoint(path)


def _images(folder, image, count):
    paths = sorted(folder.iterdir())[:count]
    pixels = [read_image(str(p), image.height, image.width)[0] for p in paths]
    return torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()


def _same_classes_where_clear(expected, got, tolerance):
    """Every position's (frame's or head's) best class agrees wherever PyTorch's leads the next
    by more than the engines may differ (a near tie may go either way)."""
    top2 = expected.topk(2, -1).values
    clear = (top2[..., 0] - top2[..., 1]) > 10 * tolerance
    assert clear.float().mean() > 0.5           # the comparison is not vacuous
    assert torch.equal(expected.argmax(-1)[clear], got.argmax(-1)[clear])


@pytest.mark.parametrize("arch", available_models())
def test_every_architecture_reads_in_onnx_runtime_as_in_pytorch(tmp_path, captcha_dir, cfg,
                                                                arch):
    ckpt = _checkpoint(tmp_path, arch, cfg.labels, cfg.image, temperature=1.3)
    export_onnx(ckpt, tmp_path / "m.onnx")
    onnx_ckpt = load_onnx(tmp_path / "m.onnx")
    images = _images(captcha_dir, cfg.image, 12)
    for batch in (images[:1], images[1:4], images):    # any batch size
        expected, got = paired_logits(ckpt, onnx_ckpt, batch)
        assert got.shape == expected.shape
        tolerance = 1e-4 * max(1.0, expected.abs().max().item())
        assert (expected - got).abs().max().item() < tolerance
        _same_classes_where_clear(expected, got, tolerance)
    if ckpt.codec.kind == "ctc":    # sequence models read any width: so does their export
        wider = torch.cat([images, images[..., :64]], dim=3)
        expected, got = paired_logits(ckpt, onnx_ckpt, wider)
        assert got.shape == expected.shape and got.shape[1] > ckpt.model(images[:1]).shape[1]
        assert (expected - got).abs().max().item() < 1e-4 * max(1.0, expected.abs().max().item())


def test_the_bundled_model_reads_the_same_captchas_through_onnx(tmp_path, captcha_dir):
    ckpt = load_checkpoint(BUNDLED)
    export_onnx(ckpt, tmp_path / "d.onnx")
    images = _images(captcha_dir, ckpt.image, 48)
    expected, got = paired_logits(ckpt, load_onnx(tmp_path / "d.onnx"), images)
    assert (expected - got).abs().max().item() < 1e-3
    assert ckpt.codec.decode(expected).texts == ckpt.codec.decode(got).texts


def test_metadata_describes_the_model_and_round_trips(tmp_path):
    labels = LabelConfig("АБВГДЕЖ0123", "4-8", "none", "-")         # Cyrillic, a length range
    image = ImageConfig(32, 120, "content")
    summary = {"best_epoch": 7, "val_captcha_accuracy": 0.93, "note": "ünïcode"}
    ckpt = _checkpoint(tmp_path, "crnn", labels, image, temperature=1.7, summary=summary)
    written = export_onnx(ckpt, tmp_path / "m.onnx")
    proto = onnx.load(str(tmp_path / "m.onnx"))
    onnx.checker.check_model(proto, full_check=True)
    props = {p.key: p.value for p in proto.metadata_props}
    assert set(props) == {PREFIX + k for k in METADATA_KEYS}
    assert props[PREFIX + "format_version"] == str(FORMAT_VERSION)
    assert props[PREFIX + "colour_order"] == "RGB" and props[PREFIX + "blank"] == "0"
    assert props[PREFIX + "source_sha256"] == ckpt.sha256
    assert {k: props[PREFIX + k] for k in written} == written
    back = load_model(tmp_path / "m.onnx")
    assert (back.arch, back.labels, back.image, back.summary) == ("crnn", labels, image, summary)
    assert back.temperature == 1.7 and back.codec.kind == "ctc" and back.engine == "ONNX Runtime"
    assert back.codec.alphabet == labels.alphabet                      # the class order
    with pytest.raises(CheckpointError, match="does not fit the config.*image width 120"):
        load_onnx(tmp_path / "m.onnx", image=ImageConfig(32, 100, "content"))


def test_a_pytorch_checkpoint_still_loads_as_one(tmp_path):
    ckpt = load_model(BUNDLED)
    assert ckpt.engine == "PyTorch" and ckpt.arch == load_checkpoint(BUNDLED).arch


@pytest.mark.slow
def test_the_runner_writes_the_same_rows_from_the_onnx_file(tmp_path, captcha_dir):
    data = tmp_path / "in"
    data.mkdir()
    for p in sorted(captcha_dir.iterdir())[:30]:
        shutil.copy(p, data / p.name)
    (data / "ZERO_1.png").write_bytes(b"")
    (data / "notes.png").write_text("not a picture\n")
    proc = run_job("jobs.export", "--model", BUNDLED, "--output", tmp_path / "d.onnx")
    assert proc.returncode == 0, proc.stderr
    assert "8 of 8 readings the same" in proc.stdout
    rows = {}
    exact = tmp_path / "float32.yaml"       # ONNX Runtime computes in float32; so must PyTorch
    exact.write_text("runtime:\n  cpu_precision: float32\n")
    for name, model in (("pt", BUNDLED), ("onnx", tmp_path / "d.onnx")):
        proc = run_batch("--input", data, "--output", tmp_path / name, "--run-id", "r",
                         "--model", model, "--workers", "2", "--batch-size", "8",
                         "--config", exact)
        assert proc.returncode == 0, proc.stderr
        rows[name] = read_csv(tmp_path / name / "r" / "predictions.csv")
    assert len(rows["pt"]) == 32 and [r["path"] for r in rows["pt"]] == [r["path"] for r in
                                                                         rows["onnx"]]
    for a, b in zip(rows["pt"], rows["onnx"]):
        assert a.keys() == b.keys()
        for key in a:
            try:
                assert abs(float(a[key]) - float(b[key])) <= 1e-4, (a["path"], key)
            except ValueError:       # not a number: text, status, error
                assert a[key] == b[key], (a["path"], key)
    assert sum(r["status"] != "ok" for r in rows["onnx"]) == 2
    summary = read_csv(tmp_path / "onnx" / "r" / "summary.csv")[0]
    assert summary["model"].endswith("d.onnx")
    assert "ONNX Runtime" in (tmp_path / "onnx" / "r" / "run.log").read_text()


@pytest.mark.parametrize("damage", ["garbage", "truncated", "not ours"])
def test_a_damaged_or_foreign_onnx_file_is_refused_in_one_line(tmp_path, cfg, damage):
    good = tmp_path / "good.onnx"
    export_onnx(_checkpoint(tmp_path, "crnn-fast", cfg.labels, cfg.image), good)
    bad = tmp_path / "bad.onnx"
    if damage == "garbage":
        bad.write_bytes(b"\x00\x01not an onnx file at all" * 10)
    elif damage == "truncated":
        bad.write_bytes(good.read_bytes()[:5000])
    else:
        proto = onnx.load(str(good))
        del proto.metadata_props[:]
        onnx.save(proto, str(bad))
    with pytest.raises(CheckpointError, match="not a readable ONNX model|not a captcha reader"):
        load_onnx(bad)
    proc = run_batch("--input", tmp_path, "--output", tmp_path / "runs", "--model", bad)
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and str(bad) in lines[0], proc.stderr


def test_without_onnxruntime_an_onnx_model_exits_2_naming_what_to_install(tmp_path, cfg):
    model = tmp_path / "m.onnx"
    export_onnx(_checkpoint(tmp_path, "crnn-fast", cfg.labels, cfg.image), model)
    hide = ("import sys; sys.modules['onnxruntime'] = None; from jobs.batch import main; "
            f"main(['--input', {str(tmp_path)!r}, '--output', {str(tmp_path / 'runs')!r}, "
            f"'--model', {str(model)!r}])")
    proc = subprocess.run([sys.executable, "-c", hide], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "error: ONNX models need the onnxruntime package: pip install -r requirements-onnx.txt"]


def test_cuda_needs_onnx_runtimes_cuda_build(monkeypatch):
    import core.onnx_model as onnx_model

    monkeypatch.setattr(onnx_model, "cuda_provider_available", lambda: False)
    with pytest.raises(CheckpointError, match="onnxruntime-gpu"):
        onnx_providers(torch.device("cuda"))
    monkeypatch.setattr(onnx_model, "cuda_provider_available", lambda: True)
    assert onnx_providers(torch.device("cuda:1"))[0] == ("CUDAExecutionProvider",
                                                        {"device_id": 1})
    assert onnx_providers(torch.device("cpu")) == ("CPUExecutionProvider",)


def test_export_refuses_an_output_that_is_not_onnx(tmp_path):
    proc = run_job("jobs.export", "--model", BUNDLED, "--output", tmp_path / "m.pt")
    assert proc.returncode == 2 and "must end in .onnx" in proc.stderr
    assert not (tmp_path / "m.pt").exists()


def _readme_example() -> str:
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    section = text[text.index("## ONNX"):]
    return section[section.index("```python\n") + 10:section.index("\n```", section.index(
        "```python"))]


@pytest.mark.parametrize("arch", ["wide-pos", "crnn"])
def test_the_readmes_ten_lines_read_as_the_runner_does(tmp_path, captcha_dir, cfg, arch):
    if arch == "wide-pos":
        ckpt = load_checkpoint(BUNDLED)
    else:     # random, reading texts of any length its frames allow: the runner's decoding
        # is then the README's greedy one (no reading falls outside the labels' lengths)
        labels = dataclasses.replace(cfg.labels, length=f"1-{cfg.image.width // 8}")
        ckpt = _checkpoint(tmp_path, arch, labels, cfg.image)
        with torch.no_grad():   # the blank made the best class of about half the frames
            frames = ckpt.model.eval()(_images(captcha_dir, cfg.image, 4))
            lead = frames[..., 1:].max(-1).values - frames[..., 0]
            ckpt.model.heads[0].bias[0] += lead.median()
            best = ckpt.model(_images(captcha_dir, cfg.image, 4)).argmax(-1)
        assert (best == 0).any() and ((best[:, 1:] == best[:, :-1]) & (best[:, 1:] > 0)).any()
    example = _readme_example()
    assert len(example.splitlines()) <= 10
    (tmp_path / "read.py").write_text(example)
    export_onnx(ckpt, tmp_path / "m.onnx")
    paths = sorted(captcha_dir.iterdir())[:4]
    expected = ckpt.codec.decode(paired_logits(ckpt, load_onnx(tmp_path / "m.onnx"),
                                       _images(captcha_dir, cfg.image, 4))[0]).texts
    for path, text in zip(paths, expected):
        proc = subprocess.run([sys.executable, str(tmp_path / "read.py"), str(tmp_path / "m.onnx"),
                               str(path)], capture_output=True, text=True, timeout=120)
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout.strip() == text
    if arch == "wide-pos":     # the trained model reads them as labelled
        assert expected == [p.name.split("_")[0] for p in paths]
    else:                      # not vacuous: blanks and repeats were there to drop and merge
        assert min(map(len, expected)) > 1


@pytest.mark.slow
def test_an_onnx_run_killed_then_resumed_has_the_rows_of_an_uninterrupted_one(tmp_path,
                                                                             captcha_dir, model):
    from tests.test_cron import SLOW, _same_results, _start, _wait_for_commits

    exported = tmp_path / "m.onnx"
    export_onnx(load_checkpoint(model), exported)
    folder, root = linked_folder(tmp_path / "in", captcha_dir, 1500), tmp_path / "runs"
    proc = run_batch("--input", folder, "--output", tmp_path / "reference", "--model", exported,
                     "--run-id", "full", *SLOW)
    assert proc.returncode == 0, proc.stderr
    proc = _start(folder, root, exported, "cut")
    _wait_for_commits(proc, root / "cut", 300)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc = run_batch("--input", folder, "--output", root, "--model", exported, "--run-id", "cut",
                     "--resume", *SLOW)
    assert proc.returncode == 0, proc.stderr
    _same_results(root / "cut", tmp_path / "reference" / "full")
    assert read_csv(root / "cut" / "summary.csv")[0]["attempts"] == "2"
