"""Starting a new model from a pretrained one (core.pretrained): what is copied, and when."""
import dataclasses

import pytest
import torch

from core import pretrained
from core.batch import run_batch
from core.checkpoint import load_checkpoint, save_checkpoint, with_model_settings
from core.config import ImageConfig, LabelConfig, load_config
from core.generator import generate_folder
from core.labels import build_codec
from core.models import ModelSpec, build_model
from core.pretrained import PretrainedError, class_names, pretrained_for, transfer
from core.runtime import resolve_device
from tests.conftest import ROOT


def _crnn(alphabet: str, height: int = 48, width: int = 96, seed: int = 0):
    labels = LabelConfig(alphabet, "3-5", "none", "_")
    codec = build_codec(labels, "ctc")
    torch.manual_seed(seed)
    return build_model("crnn", ModelSpec.from_config(ImageConfig(height, width, "none"), codec)), labels, codec


def _saved(tmp_path, alphabet: str, height: int = 48, name: str = "base.pt"):
    model, labels, _ = _crnn(alphabet, height, seed=1)
    path = tmp_path / name
    save_checkpoint(path, model, "crnn", labels, ImageConfig(height, 96, "none"), {})
    return path


def test_class_names_put_the_blank_first_for_ctc_only():
    assert class_names(build_codec(LabelConfig("AB", 2, "none", "_"), "ctc")) == [None, "A", "B"]
    assert class_names(build_codec(LabelConfig("AB", 2, "none", "_"), "fixed-length")) == ["A", "B"]


def test_transfer_copies_the_features_and_the_output_rows_of_shared_classes(tmp_path):
    base = load_checkpoint(_saved(tmp_path, "ABCD"))
    model, _, codec = _crnn("CAX", width=160, seed=2)     # another alphabet, another width
    before = {k: v.clone() for k, v in model.state_dict().items()}
    copied = transfer(base, model, codec)
    mine, theirs = model.state_dict(), base.model.state_dict()
    assert copied == len(mine)
    for name, tensor in mine.items():
        if not name.startswith("heads."):
            assert torch.equal(tensor, theirs[name]), name
    for part in ("weight", "bias"):
        got, given, fresh = (mine[f"heads.0.{part}"], theirs[f"heads.0.{part}"],
                             before[f"heads.0.{part}"])
        assert torch.equal(got[0], given[0])      # the blank
        assert torch.equal(got[1], given[3])      # C
        assert torch.equal(got[2], given[1])      # A
        assert torch.equal(got[3], fresh[3])      # X: the base never read it
        assert not torch.equal(got[1], fresh[1])


def test_transfer_skips_tensors_of_another_shape(tmp_path):
    base = load_checkpoint(_saved(tmp_path, "ABCD"))
    model, _, codec = _crnn("AB", height=64)      # 64 high: the sequence layer's input differs
    before = model.state_dict()["project.weight"].clone()
    copied = transfer(base, model, codec)
    assert copied < len(model.state_dict())
    assert torch.equal(model.state_dict()["project.weight"], before)
    assert torch.equal(model.state_dict()["features.0.weight"],
                       base.model.state_dict()["features.0.weight"])


def _cfg(setting: str, height: int = 48, arch: str = "crnn"):
    cfg = load_config(None)
    return dataclasses.replace(cfg, image=ImageConfig(height, 96, "none"),
                               model=dataclasses.replace(cfg.model, arch=arch, pretrained=setting))


def test_auto_takes_the_bundled_base_of_the_architecture_where_it_fits_and_says_why_not(
        tmp_path, monkeypatch):
    said = []
    monkeypatch.setattr(pretrained, "BUNDLED_BASES", tmp_path)
    assert pretrained_for(_cfg("auto"), said.append) is None
    _saved(tmp_path, "AB", name="crnn-base.pt")
    assert pretrained_for(_cfg("auto"), said.append).arch == "crnn"
    assert pretrained_for(_cfg("auto", height=64), said.append) is None
    assert pretrained_for(_cfg("auto", arch="wide-pos"), said.append) is None
    assert pretrained_for(_cfg("auto", arch="crnn-fast"), said.append) is None
    assert said == ["starting from random weights: no pretrained base for crnn (crnn-base.pt)",
                    "not starting from the pretrained crnn-base.pt: it reads images 48 pixels "
                    "high, this model 64 (image.height)",
                    "starting from random weights: no pretrained base for wide-pos "
                    "(wide-pos-base.pt)",
                    "starting from random weights: no pretrained base for crnn-fast "
                    "(crnn-fast-base.pt)"]
    (tmp_path / "crnn-fast-base.pt").write_bytes((tmp_path / "crnn-base.pt").read_bytes())
    assert pretrained_for(_cfg("auto", arch="crnn-fast"), said.append) is None
    assert said[-1] == ("not starting from the pretrained crnn-fast-base.pt: it is a crnn, this "
                        "model a crnn-fast")
    assert pretrained_for(_cfg("none"), said.append) is None
    (tmp_path / "crnn-base.pt").write_bytes(b"a base from an older architecture")
    assert pretrained_for(_cfg("auto"), said.append) is None     # a retraining still runs
    assert said[-1].startswith("not starting from the pretrained crnn-base.pt: ")


def test_a_named_base_that_cannot_start_the_model_is_an_error(tmp_path):
    path = _saved(tmp_path, "AB", height=32)
    with pytest.raises(PretrainedError, match="cannot start this model: it reads images 32 "
                                              "pixels high, this model 48"):
        pretrained_for(_cfg(str(path)), print)
    (tmp_path / "broken.pt").write_bytes(b"not a checkpoint")
    with pytest.raises(PretrainedError, match="^model.pretrained: "):
        pretrained_for(_cfg(str(tmp_path / "broken.pt")), print)
    assert pretrained_for(_cfg(str(path), height=32), print).image.height == 32


@pytest.mark.slow
@pytest.mark.parametrize("arch", ["crnn", "crnn-fast"])
def test_the_bundled_bases_read_printed_text_they_never_saw(tmp_path, arch):
    # a floor only a trained base passes (random weights read no character); what each reads
    # is in docs/pretraining.md (validation characters: crnn 89.6 %, crnn-fast 83.2 %)
    base = load_checkpoint(pretrained.bundled_base(arch))
    assert base.arch == arch and base.image.height == 48 and len(base.labels.alphabet) == 62
    shipped = load_config(None)
    gen = load_config(ROOT / "models" / "crnn-base.generate.yaml").generate
    generate_folder(tmp_path / "text", 64, 777_001, gen.labels, gen.image, workers=1,
                    style=gen.style)
    summary = run_batch(tmp_path / "text", tmp_path / "run", base,
                        with_model_settings(shipped, base), resolve_device("cpu"))
    assert summary["images"] == 64 and summary["errors"] == 0
    assert float(summary["char_accuracy"]) >= 0.6
