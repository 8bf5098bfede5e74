import pytest
import torch

from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint
from core.config import ImageConfig, LabelConfig
from core.labels import build_codec
from core.models import ModelSpec, build_model


def saved(tmp_path, labels=LabelConfig(), image=ImageConfig(), arch="seed-gap"):
    torch.manual_seed(0)
    model = build_model(arch, ModelSpec.from_config(image, build_codec(labels)))
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, arch, labels, image, {"best_epoch": 3, "note": "x"})
    return path, model


def test_checkpoint_round_trip_needs_no_flags(tmp_path):
    labels, image = LabelConfig(alphabet="0123456789", length=5), ImageConfig(48, 128)
    path, model = saved(tmp_path, labels, image, arch="seed")
    ckpt = load_checkpoint(path)
    assert (ckpt.arch, ckpt.labels, ckpt.image) == ("seed", labels, image)
    assert ckpt.summary == {"best_epoch": 3, "note": "x"}
    assert len(ckpt.sha256) == 64
    x = torch.randint(0, 256, (2, 3, 48, 128), dtype=torch.uint8)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), model.eval()(x))


@pytest.mark.parametrize("labels, image, what", [
    (LabelConfig(alphabet="ABC"), ImageConfig(), "alphabet"),
    (LabelConfig(length=5), ImageConfig(), "length 4"),
    (LabelConfig(), ImageConfig(height=64), "image size 46x284"),
])
def test_checkpoint_that_disagrees_with_the_config_is_refused(tmp_path, labels, image, what):
    path, _ = saved(tmp_path)
    with pytest.raises(CheckpointError, match=f"does not fit the config.*{what}"):
        load_checkpoint(path, labels=labels, image=image)


def test_garbage_file_is_refused(tmp_path):
    path = tmp_path / "bad.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
    with pytest.raises(CheckpointError, match="cannot read model"):
        load_checkpoint(tmp_path / "missing.pt")


class Payload:  # an arbitrary class: unpickling it would mean running code from the file
    pass


def test_checkpoint_is_never_unpickled_as_code(tmp_path):
    path = tmp_path / "evil.pt"
    torch.save({"format_version": 1, "codec": "fixed-length", "summary": Payload()}, path)
    with pytest.raises(CheckpointError, match="not a readable checkpoint"):
        load_checkpoint(path)
