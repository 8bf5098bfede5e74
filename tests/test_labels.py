import math

import numpy as np
import pytest
import torch

from core.config import LabelConfig
from core.labels import IGNORE, LabelError, build_codec, parse_label


@pytest.fixture
def labels():
    return LabelConfig()


def test_codec_round_trip(labels):
    codec = build_codec(labels)
    for text in ("ABCD", "Z9Z9", "0000"):
        assert codec.label_of(codec.encode(text).tolist()) == text


def test_decode_reads_the_argmax_and_multiplies_confidences(labels):
    codec = build_codec(labels)
    targets = torch.as_tensor(codec.encode("AB12"))
    logits = torch.full((1, labels.length, len(labels.alphabet)), -10.0)
    logits[0, torch.arange(labels.length), targets] = 10.0
    decoded = codec.decode(logits)
    assert decoded.texts == ["AB12"]
    top = decoded.position_probs[0]
    assert torch.allclose(decoded.confidence[0], top.prod())
    assert 0.99 < float(decoded.confidence[0]) <= 1.0


def test_codec_rejects_bad_labels(labels):
    codec = build_codec(labels)
    with pytest.raises(LabelError, match="outside the alphabet"):
        codec.encode("AB#D")
    with pytest.raises(LabelError, match="wrong length"):
        codec.encode("ABCDE")


def test_unlabelled_encodes_to_ignore(labels):
    assert build_codec(labels).encode(None).tolist() == [IGNORE] * labels.length


def test_loss_ignores_unlabelled_rows(labels):
    codec = build_codec(labels)
    logits = torch.randn(2, labels.length, len(labels.alphabet))
    targets = torch.as_tensor(np.stack([codec.encode("ABCD"), codec.encode(None)]))
    alone = codec.loss(logits[:1], targets[:1])
    assert torch.allclose(codec.loss(logits, targets), alone)


def test_uniform_logits_give_length_times_log_classes(labels):
    codec = build_codec(labels)
    loss = codec.loss(torch.zeros(3, labels.length, len(labels.alphabet)),
                      torch.as_tensor(np.stack([codec.encode("ABCD")] * 3)))
    assert math.isclose(loss.item(), labels.length * math.log(len(labels.alphabet)), rel_tol=1e-5)


@pytest.mark.parametrize("name, expected", [
    ("ABCD.png", "ABCD"),
    ("ABCD_000123.png", "ABCD"),
    ("abcd.png", "ABCD"),
    ("sub/dir/aB3d_7.jpg", "AB3D"),
    ("ABCD", "ABCD"),
])
def test_parse_label_reads_valid_names(labels, name, expected):
    assert parse_label(name, labels) == (expected, "")


@pytest.mark.parametrize("name, why", [
    ("ABC.png", "wrong length"),
    ("ABCDE_1.png", "wrong length"),
    ("AB-D.png", "character outside the alphabet"),
    ("_0001.png", "no label"),
    (".png", "character outside the alphabet"),
    ("ABÇD.png", "character outside the alphabet"),
])
def test_parse_label_leaves_bad_names_unlabelled(labels, name, why):
    assert parse_label(name, labels) == (None, why)


def test_parse_label_without_case_folding_keeps_lower_case_invalid():
    cfg = LabelConfig(case="none")
    assert parse_label("abcd.png", cfg) == (None, "character outside the alphabet")
    assert parse_label("ABCD.png", cfg) == ("ABCD", "")


def test_parse_label_with_another_alphabet_and_length():
    cfg = LabelConfig(alphabet="0123456789", length=6, case="none", separator="-")
    assert parse_label("123456-x.png", cfg) == ("123456", "")
    assert parse_label("12345A.png", cfg) == (None, "character outside the alphabet")
