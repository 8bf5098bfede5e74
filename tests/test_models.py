from unittest import mock

import pytest
import torch

from core.config import ImageConfig, LabelConfig, load_config
from core.labels import build_codec
from core.models import (INPUT_SCALE, INPUT_SHIFT, ModelSpec, StridedMaxPool, available_models,
                         build_model, codec_kind, count_parameters)


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


@pytest.mark.parametrize("arch", ["seed-gap", "crnn", "crnn-fast"])
def test_models_take_uint8_and_normalise_inside(arch):
    # uint8 pixels in; inside, the same as the layers given the normalised values: centred on
    # INPUT_SHIFT and divided by INPUT_SCALE, whatever the caller's dtype
    model = build_model(arch, spec_for()).eval()
    x = torch.randint(0, 256, (2, 3, 46, 284), dtype=torch.uint8)
    with torch.no_grad():
        out = model(x)
        assert torch.equal(out, model(x.float()))
        with mock.patch("core.models.network_input",                # the layers alone
                        lambda t: t.to(torch.float32, memory_format=torch.channels_last)):
            by_hand = model((x.float() - INPUT_SHIFT) / INPUT_SCALE)
            assert not torch.allclose(out, model(x.float()), atol=1e-3)   # it does normalise
        assert torch.allclose(out, by_hand, atol=1e-5)


@pytest.mark.parametrize("arch, smallest", [("seed-gap", "20x60"), ("wide-pos", "30x30")])
def test_too_small_input_is_refused_clearly(arch, smallest):
    height, width = map(int, smallest.split("x"))
    with pytest.raises(ValueError, match=f"model {arch!r} needs a larger input than "):
        build_model(arch, spec_for(image=ImageConfig(height=height, width=width)))


def test_unknown_architecture_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: crnn, crnn-fast, seed, seed-gap, seed-pos, "
                                         "wide-pos"):
        build_model("resnet", spec_for())
    assert {"crnn", "crnn-fast", "seed", "seed-gap", "seed-pos", "wide-pos"} <= set(
        available_models())
    with pytest.raises(ValueError, match="unknown model architecture 'resnet'"):
        codec_kind("resnet")


def ctc_spec(height, width, labels=LabelConfig(SEED.alphabet, "4-8", "upper", "_")):
    return ModelSpec.from_config(ImageConfig(height=height, width=width),
                                 build_codec(labels, codec_kind("crnn")))


@pytest.mark.parametrize("arch", ["crnn", "crnn-fast"])
@pytest.mark.parametrize("height, width", [(32, 128), (24, 72), (30, 70), (46, 284), (80, 200),
                                           (17, 17)])
def test_sequence_model_gives_a_frame_per_eight_columns_at_any_size(arch, height, width):
    model = build_model(arch, ctc_spec(height, width)).eval()
    with torch.no_grad():
        out = model(torch.randint(0, 256, (2, 3, height, width), dtype=torch.uint8))
    frames = (width + 1) // 2 // 2 // 2   # the stem halves the width, two poolings again
    assert out.shape == (2, frames, 37)   # 36 characters and the blank
    assert codec_kind(arch) == "ctc" and codec_kind("wide-pos") == "fixed-length"


def test_the_fast_sequence_model_has_crnns_layers_on_fewer_pixels():
    # the same tensors (so the same parameter count), but a pool right after the stem: the two
    # convolutions after it see a quarter of crnn's pixels, the last one half
    slow, fast = (build_model(arch, ctc_spec(48, 128)) for arch in ("crnn", "crnn-fast"))
    assert {k: v.shape for k, v in slow.state_dict().items() if "features" not in k} == \
        {k: v.shape for k, v in fast.state_dict().items() if "features" not in k}
    assert count_parameters(slow) == count_parameters(fast)
    sizes = {}
    for name, model in (("crnn", slow), ("crnn-fast", fast)):
        x, seen = torch.zeros(1, 3, 48, 128), []
        for layer in model.features:
            if isinstance(layer, torch.nn.Conv2d):
                seen.append(x.shape[-2] * x.shape[-1])
            x = layer(x)
        sizes[name] = seen
    assert sizes["crnn-fast"][0] == sizes["crnn"][0]              # the stem
    assert [a * k for a, k in zip(sizes["crnn-fast"][1:], (4, 4, 2))] == sizes["crnn"][1:]


@pytest.mark.parametrize("arch", ["crnn", "crnn-fast"])
def test_sequence_model_refuses_an_input_too_small_to_read(arch):
    with pytest.raises(ValueError, match=f"{arch!r} needs an input of at least 16x16"):
        build_model(arch, ctc_spec(14, 100))
    with pytest.raises(ValueError, match=f"{arch!r} needs an input of at least 16x16"):
        build_model(arch, ctc_spec(32, 14))


def test_per_position_models_refuse_labels_of_varying_length():
    with pytest.raises(ValueError, match="range .*train a sequence model"):
        build_codec(LabelConfig(SEED.alphabet, "4-8", "upper", "_"))


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


@pytest.mark.parametrize("kernel", [(2, 2), (2, 1)])
@pytest.mark.parametrize("shape", [(2, 8, 46, 284), (3, 16, 23, 71), (1, 4, 5, 5)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_strided_maxpool_equals_torch_maxpool(shape, channels_last, kernel):
    x = torch.randn(shape)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    assert torch.equal(StridedMaxPool(kernel)(x), torch.nn.MaxPool2d(kernel, kernel)(x))


@pytest.mark.parametrize("kernel", [(2, 2), (2, 1)])
@pytest.mark.parametrize("channels_last", [True, False])
def test_strided_maxpool_training_path_equals_inference_path(channels_last, kernel):
    x = torch.randn(4, 8, 23, 71)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.no_grad():
        inference = StridedMaxPool(kernel)(x)
    training = StridedMaxPool(kernel)(x.clone().requires_grad_())
    assert training.requires_grad
    assert torch.equal(training.detach(), inference)


def test_strided_maxpool_passes_gradient_to_the_maxima_only():
    x = torch.tensor([[[[1.0, 5.0], [3.0, 2.0]]]], requires_grad=True)
    StridedMaxPool()(x).sum().backward()
    assert x.grad.tolist() == [[[[0.0, 1.0], [0.0, 0.0]]]]


def test_every_network_pools_with_strided_maxima():
    """Prediction pools with StridedMaxPool everywhere (PyTorch's kernel is 3-6 times slower on
    channels-last CPU tensors); the ONNX export swaps it back (core.onnx_model)."""
    for arch in available_models():
        model = build_model(arch, ModelSpec(48, 160, 4, 37))
        pools = [type(m) for m in model.modules() if "MaxPool" in type(m).__name__]
        assert pools and set(pools) == {StridedMaxPool}, arch


@pytest.mark.parametrize("arch", ["crnn", "crnn-fast"])
def test_the_speed_benchmarks_stages_compute_what_the_model_does(arch):
    """benchmarks/sequence_speed.py --layers times a SequenceNet stage by stage; its stages must
    stay the model's forward pass, or it times another network."""
    from benchmarks.sequence_speed import stage_times
    from core.inference import for_inference
    torch.manual_seed(0)
    model = for_inference(build_model(arch, ModelSpec(48, 96, 3, 11)))
    x = torch.randint(0, 256, (2, 3, 48, 96), dtype=torch.uint8)
    with torch.inference_mode():
        times, logits = stage_times(model, x)
        expected = model(x)
    assert list(times)[0] == "input" and list(times)[-3:] == ["projection", "LSTM", "output layer"]
    assert sum(name.startswith("convolution") for name in times) == 4
    torch.testing.assert_close(logits, expected)
