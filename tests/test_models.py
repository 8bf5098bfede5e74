import pytest
import torch

from core.config import ImageConfig, LabelConfig, load_config
from core.labels import build_codec
from core.models import (INPUT_SCALE, INPUT_SHIFT, MaxPool2x2, ModelSpec, RawInputConv,
                         available_models, build_model, codec_kind, count_parameters,
                         for_inference, normalise)


SEED = load_config(None).generate   # the seed's alphabet, length and size


def spec_for(labels=SEED.labels, image=SEED.image):
    return ModelSpec.from_config(image, build_codec(labels))


@pytest.mark.parametrize("arch, params", [("seed", 162_252), ("seed-gap", 116_960)])
def test_parameter_counts_match_the_seed_post(arch, params):
    assert count_parameters(build_model(arch, spec_for())) == params


@pytest.mark.parametrize("arch", ["seed", "seed-gap", "seed-pos", "wide-pos"])
def test_output_shape_follows_alphabet_length_and_size(arch):
    labels = LabelConfig(alphabet="0123456789", length=6, case="none")
    image = ImageConfig(height=64, width=200)
    model = build_model(arch, spec_for(labels, image))
    out = model(torch.zeros(2, 3, 64, 200, dtype=torch.uint8))
    assert out.shape == (2, 6, 10)


@pytest.mark.parametrize("arch", ["seed-gap", "crnn"])
def test_models_take_uint8_and_normalise_inside(arch):
    # uint8 pixels in; inside, the same as the layers given the normalised values: centred on
    # INPUT_SHIFT and divided by INPUT_SCALE, whatever the caller's dtype
    model = build_model(arch, spec_for()).eval()
    x = torch.randint(0, 256, (2, 3, 46, 284), dtype=torch.uint8)
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, model(x.float()))
        model.normalise_input = False
        by_hand = model((x.float() - INPUT_SHIFT) / INPUT_SCALE)
        assert torch.allclose(out, by_hand, atol=1e-5)
        assert not torch.allclose(out, model(x.float()), atol=1e-3)   # it does normalise


@pytest.mark.parametrize("arch, smallest", [("seed-gap", "20x60"), ("wide-pos", "30x30")])
def test_too_small_input_is_refused_clearly(arch, smallest):
    height, width = map(int, smallest.split("x"))
    with pytest.raises(ValueError, match=f"model {arch!r} needs a larger input than "):
        build_model(arch, spec_for(image=ImageConfig(height=height, width=width)))


def test_unknown_architecture_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: crnn, seed, seed-gap, seed-pos, wide-pos"):
        build_model("resnet", spec_for())
    assert {"crnn", "seed", "seed-gap", "seed-pos", "wide-pos"} <= set(available_models())
    with pytest.raises(ValueError, match="unknown model architecture 'resnet'"):
        codec_kind("resnet")


def ctc_spec(height, width, labels=LabelConfig(SEED.alphabet, "4-8", "upper", "_")):
    return ModelSpec.from_config(ImageConfig(height=height, width=width),
                                 build_codec(labels, codec_kind("crnn")))


@pytest.mark.parametrize("height, width", [(32, 128), (24, 72), (30, 70), (46, 284), (80, 200),
                                           (17, 17)])
def test_sequence_model_gives_a_frame_per_eight_columns_at_any_size(height, width):
    model = build_model("crnn", ctc_spec(height, width)).eval()
    with torch.no_grad():
        out = model(torch.randint(0, 256, (2, 3, height, width), dtype=torch.uint8))
    frames = (width + 1) // 2 // 2 // 2   # the stem halves the width, two poolings again
    assert out.shape == (2, frames, 37)   # 36 characters and the blank
    assert codec_kind("crnn") == "ctc" and codec_kind("wide-pos") == "fixed-length"


def test_sequence_model_refuses_an_input_too_small_to_read():
    with pytest.raises(ValueError, match="'crnn' needs an input of at least 16x16"):
        build_model("crnn", ctc_spec(14, 100))
    with pytest.raises(ValueError, match="'crnn' needs an input of at least 16x16"):
        build_model("crnn", ctc_spec(32, 14))


def test_per_position_models_refuse_labels_of_varying_length():
    with pytest.raises(ValueError, match="range .*train a sequence model"):
        build_codec(LabelConfig(SEED.alphabet, "4-8", "upper", "_"))


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


@pytest.mark.parametrize("arch, channels", [("seed-pos", 128), ("wide-pos", 192)])
def test_pos_heads_see_columns_not_one_global_average(arch, channels):
    # Each head reads 2 columns per output position of the last map, not one average.
    model = build_model(arch, spec_for())
    assert model.heads[0].in_features == 2 * 4 * channels


def test_wide_pos_smallest_input_still_builds():
    # 31x31 leaves 16x16 after the stride-2 stem and 1x1 after four poolings: the smallest
    # it accepts (30x30 is refused, above).
    model = build_model("wide-pos", spec_for(image=ImageConfig(height=31, width=31)))
    assert model(torch.zeros(1, 3, 31, 31, dtype=torch.uint8)).shape == (1, 4, 36)


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


@pytest.mark.parametrize("shape", [(2, 8, 46, 284), (3, 16, 23, 71), (1, 4, 5, 5)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_maxpool2x2_equals_torch_maxpool(shape, channels_last):
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(MaxPool2x2()(x), torch.nn.MaxPool2d(2, 2)(x))


@pytest.mark.parametrize("channels_last", [True, False])
def test_maxpool2x2_training_path_equals_inference_path(channels_last):
    x = torch.randn(4, 8, 23, 71)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        inference = MaxPool2x2()(x)
    training = MaxPool2x2()(x.clone().requires_grad_())
    assert training.requires_grad
    assert torch.equal(training.detach(), inference)


def test_maxpool2x2_passes_gradient_to_the_maxima_only():
    x = torch.tensor([[[[1.0, 5.0], [3.0, 2.0]]]], requires_grad=True)
    MaxPool2x2()(x).sum().backward()
    assert x.grad.tolist() == [[[[0.0, 1.0], [0.0, 0.0]]]]


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
