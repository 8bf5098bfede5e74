"""core.inference: the prediction-only rewrites give the trained model's outputs (up to float
rounding), scaled by the calibration temperature, at any input size."""
import pytest
import torch

from core.inference import RawInputConv, for_inference
from core.models import build_model, normalise
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


@pytest.mark.parametrize("arch", ["seed", "seed-gap", "seed-pos", "wide-pos"])
def test_for_inference_folds_input_normalisation_without_changing_outputs(arch):
    # Raw 0-255 pixels straight into the first convolution; its padded borders get the fixed
    # correction. Extreme images (all black, all white) make a wrong border obvious.
    torch.manual_seed(1)
    model = build_model(arch, spec_for()).eval()
    folded = for_inference(model)
    assert not folded.normalise_input and model.normalise_input
    assert any(isinstance(m, RawInputConv) for m in folded.modules())
    assert not any(isinstance(m, RawInputConv) for m in model.modules())
    x = torch.cat([torch.randint(0, 256, (2, 3, 46, 284), dtype=torch.uint8),
                   torch.zeros(1, 3, 46, 284, dtype=torch.uint8),
                   torch.full((1, 3, 46, 284), 255, dtype=torch.uint8)])
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("arch", ["seed-gap", "wide-pos"])
def test_raw_input_conv_corrects_borders_for_another_input_size(arch):
    # The correction is computed for the model's input size; another size gets its own.
    torch.manual_seed(2)
    model = build_model(arch, spec_for()).eval()
    folded = for_inference(model)
    x = torch.randint(0, 256, (2, 3, 51, 301), dtype=torch.uint8)
    with torch.no_grad():
        torch.testing.assert_close(folded(x), model(x), rtol=1e-4, atol=1e-4)


def test_raw_input_conv_correction_is_zero_away_from_the_padding():
    conv = torch.nn.Conv2d(3, 8, 3, stride=2, padding=1)
    correction = RawInputConv(conv, (46, 284)).correction
    assert correction.shape == (1, 8, 23, 142)
    # Stride 2 over an even size: only the first row and column of outputs see padding.
    assert torch.count_nonzero(correction[:, :, 1:, 1:]) == 0
    assert torch.count_nonzero(correction[:, :, 0, :]) > 0
    assert torch.count_nonzero(correction[:, :, :, 0]) > 0


@pytest.mark.parametrize("kernel,stride,padding,dilation,size", [
    (3, 1, 1, 1, (9, 13)), (3, 2, 1, 1, (10, 15)), (5, 2, 2, 1, (11, 8)), (3, 1, 2, 2, (7, 9)),
    (5, 1, 3, 1, (3, 4)),   # windows wider than the input: every output sees padding
    (3, 1, 0, 1, (6, 6)),   # no padding: nothing to correct
])
def test_raw_input_conv_equals_conv_of_normalised_input(kernel, stride, padding, dilation, size):
    torch.manual_seed(3)
    conv = torch.nn.Conv2d(3, 5, kernel, stride=stride, padding=padding, dilation=dilation)
    raw = RawInputConv(conv, size)
    x = torch.randint(0, 256, (2, 3, *size)).float()
    with torch.no_grad():
        torch.testing.assert_close(raw(x.clone()), conv(normalise(x.clone())), rtol=1e-4,
                                   atol=1e-4)
    if padding == 0:
        assert raw.regions == []

