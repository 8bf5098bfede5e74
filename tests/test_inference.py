"""core.inference: the prediction-only rewrites give the trained model's outputs (up to float
rounding), scaled by the calibration temperature."""
import pytest
import torch

from core.inference import for_inference
from core.models import build_model
from tests.test_models import ctc_spec, spec_for


def test_sequence_model_for_inference_gives_the_same_frames_scaled_by_the_temperature():
    torch.manual_seed(0)
    model = build_model("crnn", ctc_spec(32, 96))
    for module in model.modules():   # trained-looking batch statistics
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    model.eval()
    x = torch.randint(0, 256, (3, 3, 32, 96), dtype=torch.uint8)
    fast = for_inference(model, temperature=1.7)
    with torch.no_grad():
        torch.testing.assert_close(fast(x), model(x) / 1.7, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ["seed-pos", "wide-pos"])
def test_for_inference_folds_batchnorm_without_changing_outputs(arch):
    torch.manual_seed(0)
    model = build_model(arch, spec_for())
    for module in model.modules():  # trained-looking statistics, not the identity defaults
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
            module.weight.data.uniform_(0.5, 1.5)
            module.bias.data.uniform_(-0.5, 0.5)
    model.eval()
    folded = for_inference(model)
    x = torch.randint(0, 256, (3, 3, 46, 284), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.modules())
    assert any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())  # original kept


def test_precision_follows_the_setting_and_the_cpu(monkeypatch):
    import core.runtime as runtime
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    for amx in (True, False):
        monkeypatch.setattr(runtime, "amx_bfloat16", lambda amx=amx: amx)
        assert runtime.resolve_precision("auto", cpu) == ("bfloat16" if amx else "float32")
        assert runtime.resolve_precision("float32", cpu) == "float32"
        assert runtime.resolve_precision("bfloat16", cpu) == "bfloat16"
        assert runtime.resolve_precision("float32", cuda) == "float16"   # core.engine's autocast
    assert runtime.read_on(cpu, "float32") == "cpu"
    assert runtime.read_on(cpu, "bfloat16") == "cpu (bfloat16)"


def test_amx_is_read_from_the_cpu_flags_where_torch_has_no_probe(monkeypatch, tmp_path):
    import core.runtime as runtime
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported", raising=False)
    cpuinfo = tmp_path / "cpuinfo"
    monkeypatch.setattr(runtime, "CPUINFO", str(cpuinfo))
    head = "processor\t: 0\nmodel name\t: Some CPU @ 2.0GHz\n"
    cpuinfo.write_text(head + "flags\t\t: fpu avx512f amx_bf16 avx512_bf16 amx_tile amx_int8\n")
    assert runtime.amx_bfloat16() is True
    assert runtime.cpu_name() == "Some CPU @ 2.0GHz"
    cpuinfo.write_text(head + "flags\t\t: fpu avx512f avx512_bf16\n")    # BF16, no tiles
    assert runtime.amx_bfloat16() is False
    cpuinfo.unlink()                                                     # not Linux
    assert runtime.amx_bfloat16() is False


@pytest.mark.parametrize("arch", ["crnn", "wide-pos"])
def test_bfloat16_autocast_gives_float32_logits_near_the_exact_ones(arch):
    torch.manual_seed(0)
    model = build_model(arch, ctc_spec(32, 96) if arch == "crnn" else spec_for()).eval()
    h, w = model.input_size
    x = torch.randint(0, 256, (4, 3, h, w), dtype=torch.uint8)
    exact, fast = for_inference(model, 1.3), for_inference(model, 1.3, "bfloat16")
    with torch.no_grad():
        a, b = exact(x), fast(x)
    assert b.dtype == torch.float32 and b.shape == a.shape
    # bfloat16 keeps 8 bits of mantissa: within a few per cent of the logits' spread, not exact
    error = (a - b).abs().max().item()
    assert 0 < error < 0.05 * a.abs().max().item()
