import pytest
import torch

from core.checkpoint import CheckpointError, load_checkpoint, save_checkpoint, with_model_settings
from core.config import AUTO, ImageConfig, LabelConfig, load_config
from core.labels import build_codec
from core.models import ModelSpec, build_model, codec_kind

SEED = load_config(None).generate   # the seed's alphabet, length and size


def saved(tmp_path, labels=SEED.labels, image=SEED.image, arch="seed-gap"):
    torch.manual_seed(0)
    model = build_model(arch, ModelSpec.from_config(image, build_codec(labels, codec_kind(arch))))
    path = tmp_path / "m.pt"
    save_checkpoint(path, model, arch, labels, image, {"best_epoch": 3, "note": "x"})
    return path, model


def test_checkpoint_round_trip_needs_no_flags(tmp_path):
    labels, image = LabelConfig("0123456789", 5, "none", "_"), ImageConfig(48, 128, "none")
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
    (LabelConfig(), ImageConfig(height=64), "image height 46"),
])
def test_checkpoint_that_disagrees_with_the_config_is_refused(tmp_path, labels, image, what):
    path, _ = saved(tmp_path)
    with pytest.raises(CheckpointError, match=f"does not fit the config.*{what}"):
        load_checkpoint(path, labels=labels, image=image)


def test_a_config_left_auto_takes_what_the_model_reads(tmp_path):
    labels = LabelConfig(alphabet="0123456789ab", length="4-7", case="lower", separator="-")
    path, _ = saved(tmp_path, labels, ImageConfig(32, 100, "none"), arch="crnn")
    ckpt = load_checkpoint(path, labels=LabelConfig(), image=ImageConfig())   # all auto
    assert ckpt.codec.kind == "ctc" and ckpt.labels == labels
    cfg = with_model_settings(load_config(None), ckpt)
    assert cfg.labels == labels and (cfg.image.height, cfg.image.width) == (32, 100)
    # a nightly folder named otherwise can pin its own separator and case
    named = load_config(None, {"labels.separator": "_", "labels.case": "none"})
    assert with_model_settings(named, ckpt).labels == LabelConfig("0123456789ab", "4-7", "none",
                                                                  "_")
    assert AUTO == load_config(None).labels.alphabet


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
    with pytest.raises(CheckpointError, match="not a readable checkpoint") as refused:
        load_checkpoint(path)
    # one short line, and not torch's advice to load the file with weights_only=False
    assert len(str(refused.value)) < 200 and "weights_only" not in str(refused.value)
