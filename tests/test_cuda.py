"""The CUDA paths, where a GPU is present (skipped elsewhere, CI included): the runner with
pinned memory and mixed precision, a training epoch with augmentation on the GPU, and a
sequence model (CTC) trained and read there."""
import subprocess
import sys

import numpy as np
import pytest
import torch

from core.checkpoint import load_checkpoint
from core.config import ImageConfig, LabelConfig
from core.generator import generate_folder
from core.labels import build_codec
from tests.conftest import ROOT, read_csv, run_batch

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason="no CUDA device here")

BUNDLED = ROOT / "models" / "default.pt"


def test_runner_on_cuda_reads_as_the_cpu_does(captcha_dir, tmp_path):
    runs = {}
    exact = tmp_path / "float32.yaml"       # the CPU's reading in float32, not bfloat16 (AMX)
    exact.write_text("runtime:\n  cpu_precision: float32\n")
    for device in ("cpu", "cuda"):
        proc = run_batch("--input", captcha_dir, "--output", tmp_path / device, "--run-id", "r",
                         "--device", device, "--quiet", "--config", exact)
        assert proc.returncode == 0, proc.stderr
        runs[device] = read_csv(tmp_path / device / "r" / "predictions.csv")
        summary = read_csv(tmp_path / device / "r" / "summary.csv")[0]
        assert summary["device"].startswith(device) and int(summary["images"]) == 48
    cpu, cuda = runs["cpu"], runs["cuda"]
    assert [r["path"] for r in cpu] == [r["path"] for r in cuda]
    # float16 autocast may move a confidence a little, and at most flip a near tie
    same = sum(a["prediction"] == b["prediction"] for a, b in zip(cpu, cuda))
    assert same >= len(cpu) - 1
    for a, b in zip(cpu, cuda):
        if a["prediction"] == b["prediction"]:
            assert abs(float(a["confidence"]) - float(b["confidence"])) < 0.02


def test_training_on_cuda_with_augmentation_gives_a_checkpoint_the_cpu_loads(captcha_dir,
                                                                             tmp_path):
    out = tmp_path / "m.pt"
    proc = subprocess.run([sys.executable, "-m", "jobs.train", "--input", str(captcha_dir),
                           "--output", str(out), "--init", str(BUNDLED), "--epochs", "1",
                           "--batch-size", "16", "--device", "cuda", "--augment"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    ckpt = load_checkpoint(out, device=torch.device("cpu"))
    assert ckpt.arch == load_checkpoint(BUNDLED).arch
    assert all(not p.is_cuda for p in ckpt.model.parameters())


def test_an_onnx_model_on_cuda_reads_as_on_the_cpu(captcha_dir, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("this onnxruntime has no CUDA execution provider (onnxruntime-gpu)")
    exported = tmp_path / "d.onnx"
    proc = subprocess.run([sys.executable, "-m", "jobs.export", "--model", str(BUNDLED),
                           "--output", str(exported)], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr
    rows = {}
    for device in ("cpu", "cuda"):
        proc = run_batch("--input", captcha_dir, "--output", tmp_path / device, "--run-id", "r",
                         "--device", device, "--model", exported, "--quiet")
        assert proc.returncode == 0, proc.stderr
        rows[device] = read_csv(tmp_path / device / "r" / "predictions.csv")
    # ONNX Runtime's CUDA convolutions may use TF32: a confidence may move a little, and at
    # most a near tie flip
    cpu, cuda = rows["cpu"], rows["cuda"]
    assert sum(a["prediction"] == b["prediction"] for a, b in zip(cpu, cuda)) >= len(cpu) - 1
    for a, b in zip(cpu, cuda):
        if a["prediction"] == b["prediction"]:
            assert abs(float(a["confidence"]) - float(b["confidence"])) < 0.02


def test_ctc_decoding_of_cuda_logits_reads_as_the_cpu_does():
    # Rows read at a length no label has go through best_paths_of_length, numpy on the CPU.
    codec = build_codec(LabelConfig(alphabet="ABC", length="3-4", case="none"), "ctc")
    torch.manual_seed(0)
    logits = torch.randn(16, 10, 4)
    logits[0] = -8.0
    logits[0, :, 0] = 8.0                              # all blank: a length no label has
    targets = torch.as_tensor(np.stack([codec.encode("ABC")] * 8 + [codec.encode(None)] * 8))
    cpu, cuda = codec.decode(logits, targets), codec.decode(logits.cuda(), targets.cuda())
    assert cuda.texts == cpu.texts and len(cpu.texts[0]) == 3
    assert torch.allclose(cuda.confidence, cpu.confidence)
    assert torch.allclose(cuda.label_loss, cpu.label_loss, equal_nan=True)


def test_a_sequence_model_trains_and_reads_on_cuda(tmp_path):
    folder = tmp_path / "short"
    generate_folder(folder, 160, seed=8, labels=LabelConfig("ABCDEF123", "3-5", "upper", "_"),
                    image=ImageConfig(24, 72), workers=1)
    model = tmp_path / "crnn.pt"
    proc = subprocess.run([sys.executable, "-m", "jobs.train", "--input", str(folder),
                           "--output", str(model), "--epochs", "3", "--device", "cuda"],
                          cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert load_checkpoint(model).codec.kind == "ctc"
    rows = {}
    for device in ("cpu", "cuda"):
        proc = run_batch("--input", folder, "--model", model, "--output", tmp_path / device,
                         "--run-id", "r", "--device", device, "--quiet")
        assert proc.returncode == 0, proc.stderr
        rows[device] = read_csv(tmp_path / device / "r" / "predictions.csv")
    cpu, cuda = rows["cpu"], rows["cuda"]
    assert len(cuda) == 160 and all(r["status"] == "ok" for r in cuda)
    assert [r["path"] for r in cpu] == [r["path"] for r in cuda]
    # a model of three epochs is unsure of much: float16 may flip more of its near ties than a
    # trained one's
    assert sum(a["prediction"] == b["prediction"] for a, b in zip(cpu, cuda)) >= 0.9 * len(cpu)
