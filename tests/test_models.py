import pytest
import torch

from core.config import ImageConfig, LabelConfig
from core.labels import build_codec
from core.models import ModelSpec, available_models, build_model, count_parameters


def spec_for(labels=LabelConfig(), image=ImageConfig()):
    return ModelSpec.from_config(image, build_codec(labels))


@pytest.mark.parametrize("arch, params", [("seed", 162_252), ("seed-gap", 116_960)])
def test_parameter_counts_match_the_seed_post(arch, params):
    assert count_parameters(build_model(arch, spec_for())) == params


@pytest.mark.parametrize("arch", ["seed", "seed-gap"])
def test_output_shape_follows_alphabet_length_and_size(arch):
    labels = LabelConfig(alphabet="0123456789", length=6, case="none")
    image = ImageConfig(height=64, width=200)
    model = build_model(arch, spec_for(labels, image))
    out = model(torch.zeros(2, 3, 64, 200, dtype=torch.uint8))
    assert out.shape == (2, 6, 10)


def test_models_take_uint8_and_normalise_inside():
    model = build_model("seed-gap", spec_for()).eval()
    x = torch.randint(0, 256, (2, 3, 46, 284), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.isfinite(model(x)).all()


def test_too_small_input_is_refused_clearly():
    with pytest.raises(ValueError, match="needs a larger input than 20x60"):
        build_model("seed-gap", spec_for(image=ImageConfig(height=20, width=60)))


def test_unknown_architecture_lists_the_available_ones():
    with pytest.raises(ValueError, match="available: seed, seed-gap"):
        build_model("resnet", spec_for())
    assert {"seed", "seed-gap"} <= set(available_models())
