import dataclasses
import itertools
import math

import numpy as np
import pytest
import torch

from core.config import LabelConfig, load_config
from core.labels import (IGNORE, LabelError, best_path_of_length, best_paths_of_length,
                         build_codec, is_labelled, parse_label)


@pytest.fixture
def labels():
    return load_config(None).generate.labels   # the seed's: A-Z0-9, 4 characters


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


def test_parse_label_without_case_folding_keeps_lower_case_invalid(labels):
    cfg = dataclasses.replace(labels, case="none")
    assert parse_label("abcd.png", cfg) == (None, "character outside the alphabet")
    assert parse_label("ABCD.png", cfg) == ("ABCD", "")


def test_parse_label_with_another_alphabet_and_length():
    cfg = LabelConfig(alphabet="0123456789", length=6, case="none", separator="-")
    assert parse_label("123456-x.png", cfg) == ("123456", "")
    assert parse_label("12345A.png", cfg) == (None, "character outside the alphabet")


# --- the sequence codec (CTC) ------------------------------------------------------------------

@pytest.fixture
def ctc():
    return build_codec(LabelConfig(alphabet="ABC", length="1-4", case="none"), "ctc")


def frames(classes, sure=12.0, width=4):
    """Logits (1, frames, width) that pick `classes`, one per frame (0: the blank)."""
    logits = torch.full((1, len(classes), width), -sure)
    logits[0, torch.arange(len(classes)), torch.as_tensor(classes)] = sure
    return logits


@pytest.mark.parametrize("classes, text", [
    ([1, 1, 0, 1, 2, 2, 0], "AAB"),     # a doubled letter needs a blank between its runs
    ([0, 3, 3, 3, 0, 0], "C"),          # repeats merge
    ([2, 1, 2, 1], "BABA")])
def test_ctc_decoding_merges_repeats_and_drops_blanks(ctc, classes, text):
    decoded = ctc.decode(frames(classes))
    assert decoded.texts == [text]
    assert 0.99 < float(decoded.confidence[0]) <= 1.0
    probs = decoded.position_probs[0]
    assert probs.shape == (4,) and int((~probs.isnan()).sum()) == len(text)


def collapse(path):
    return [k for i, k in enumerate(path) if k and (i == 0 or path[i - 1] != k)]


@pytest.mark.parametrize("lengths", [[2], [3, 4], [1], [5]])
def test_best_path_of_length_is_the_most_probable_path_that_reads_such_a_length(lengths):
    # Every path of 6 frames over the blank and two letters, by brute force.
    rng = np.random.default_rng(len(lengths) * 10 + lengths[0])
    for _ in range(5):
        log_probs = np.log(rng.dirichlet(np.ones(3), size=6))
        best = max((sum(log_probs[t, k] for t, k in enumerate(path)), path)
                   for path in itertools.product(range(3), repeat=6)
                   if len(collapse(path)) in lengths)
        path = best_path_of_length(log_probs, lengths)
        assert len(collapse(path)) in lengths
        assert math.isclose(sum(log_probs[t, k] for t, k in enumerate(path)), best[0],
                            rel_tol=1e-9)
    # 3 frames cannot read "ABAB" or more
    assert best_path_of_length(np.log(np.full((3, 3), 1 / 3)), [4, 5]) is None


def test_best_paths_of_length_gives_each_row_its_own_best_path():
    rng = np.random.default_rng(7)
    log_probs = np.log(rng.dirichlet(np.ones(5), size=(6, 9)))
    log_probs[2] = np.log(np.full((9, 5), 0.2))
    assert best_paths_of_length(log_probs, [3, 4]) == [
        best_path_of_length(row, [3, 4]) for row in log_probs]
    assert best_paths_of_length(log_probs[:, :2], [3, 4]) == [None] * 6   # 2 frames read 2 at most


def probable(rows):
    """Logits (1, frames, 4) whose softmax is each row of probabilities (blank, A, B, C)."""
    return torch.tensor(rows).log().unsqueeze(0)


def test_ctc_decoding_reads_a_length_the_labels_can_have():
    # Greedy reads "AB" (the middle frame's A merges with its neighbours): with labels of 3
    # characters, the doubled letter is read, the blank taking the frame it nearly won.
    merged = probable([[.01, .97, .01, .01], [.40, .58, .01, .01], [.01, .97, .01, .01],
                       [.01, .01, .97, .01]])
    fixed = build_codec(LabelConfig(alphabet="ABC", length=3, case="none"), "ctc")
    either = build_codec(LabelConfig(alphabet="ABC", length="2-3", case="none"), "ctc")
    assert fixed.decode(merged).texts == ["AAB"] and either.decode(merged).texts == ["AB"]
    # Greedy reads "AAB" (a faint frame of A between two blanks): with 2 characters, "AB".
    doubled = probable([[.01, .97, .01, .01], [.97, .01, .01, .01], [.40, .58, .01, .01],
                        [.01, .01, .97, .01]])
    two = build_codec(LabelConfig(alphabet="ABC", length=2, case="none"), "ctc")
    decoded = two.decode(doubled)
    assert decoded.texts == ["AB"] and either.decode(doubled).texts == ["AAB"]
    assert int((~decoded.position_probs[0].isnan()).sum()) == 2


def test_ctc_all_blank_frames_read_the_likeliest_shortest_label_with_no_confidence(ctc):
    decoded = ctc.decode(frames([0, 0, 0, 0]))
    assert len(decoded.texts[0]) == 1   # labels are 1-4 characters
    assert float(decoded.confidence[0]) < 1e-6


def test_ctc_round_trip_of_labels_of_every_length(ctc):
    for text in ("A", "AB", "CBA", "AACB"):
        targets = ctc.encode(text)
        assert targets.shape == (4,) and ctc.label_of(targets.tolist()) == text
    assert ctc.encode(None).tolist() == [IGNORE] * 4 and ctc.label_of([IGNORE] * 4) is None
    with pytest.raises(LabelError, match="wrong length"):
        ctc.encode("ABCAB")
    with pytest.raises(LabelError, match="outside the alphabet"):
        ctc.encode("AD")


def test_ctc_confidence_is_the_probability_of_the_text_over_all_alignments(ctc):
    # Three frames, random logits: the probability of reading "A" is the sum over every frame
    # path that collapses to "A" (A--, -A-, --A, AA-, -AA, AAA), which the codec must give.
    torch.manual_seed(0)
    logits = torch.randn(1, 3, 4)
    probs = logits.softmax(-1)[0]
    paths = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0), (0, 1, 1), (1, 1, 1)]
    by_hand = sum(float(probs[0, a] * probs[1, b] * probs[2, c]) for a, b, c in paths)
    label = torch.as_tensor(ctc.encode("A")).unsqueeze(0)
    decoded = ctc.decode(logits, label)
    assert math.isclose(float(decoded.label_probability[0]), by_hand, rel_tol=1e-5)
    assert math.isclose(ctc.loss(logits, label).item(), -math.log(by_hand), rel_tol=1e-5)
    if decoded.texts == ["A"]:
        assert math.isclose(float(decoded.confidence[0]), by_hand, rel_tol=1e-5)


def test_ctc_label_probability_flags_a_wrong_name_and_skips_unlabelled(ctc):
    logits = torch.cat([frames([1, 0, 2, 0]), frames([1, 0, 2, 0])])
    targets = torch.as_tensor(np.stack([ctc.encode("CC"), ctc.encode(None)]))
    decoded = ctc.decode(logits, targets)
    assert decoded.texts == ["AB", "AB"]
    assert float(decoded.label_probability[0]) < 1e-6 and math.isnan(decoded.label_probability[1])


def test_ctc_loss_ignores_unlabelled_rows_and_averages_over_the_labelled(ctc):
    torch.manual_seed(1)
    logits = torch.randn(3, 6, 4)
    targets = torch.as_tensor(np.stack([ctc.encode("AB"), ctc.encode(None), ctc.encode("CAB")]))
    both = ctc.loss(logits, targets)
    alone = [ctc.loss(logits[i:i + 1], targets[i:i + 1]) for i in (0, 2)]
    assert torch.allclose(both, (alone[0] + alone[1]) / 2)
    assert ctc.loss(logits[1:2], targets[1:2]).item() == 0.0
    assert is_labelled(targets).tolist() == [True, False, True]


def test_ctc_label_loss_is_each_labels_own_loss_read_or_not(ctc):
    # The label's loss is reused from the reading where the two are the same text; it must
    # still be each label's own where they differ in a character, a character more or fewer.
    torch.manual_seed(2)
    logits = torch.randn(6, 8, 4)
    logits[:3] = torch.cat([frames([1, 0, 2, 0, 3, 0, 0, 0], width=4)] * 3)   # read "ABC"
    labels = ["ABC", "AB", "ABCA", None, "CAB", "A"]
    targets = torch.as_tensor(np.stack([ctc.encode(t) for t in labels]))
    decoded = ctc.decode(logits, targets)
    assert decoded.texts[:3] == ["ABC"] * 3
    for row, label in enumerate(labels):
        if label is None:
            assert math.isnan(float(decoded.label_loss[row]))
            continue
        alone = ctc.loss(logits[row:row + 1], targets[row:row + 1])
        assert math.isclose(float(decoded.label_loss[row]), alone.item(), rel_tol=1e-5)
    labelled = is_labelled(targets)
    assert math.isclose(float(decoded.label_loss[labelled].mean()),
                        ctc.loss(logits, targets).item(), rel_tol=1e-5)
    # with no targets, the same readings and confidences
    again = ctc.decode(logits)
    assert again.texts == decoded.texts and torch.equal(again.confidence, decoded.confidence)
    assert again.label_loss is None and again.label_probability is None


def test_fixed_length_label_loss_averages_to_the_codec_loss(labels):
    codec = build_codec(labels)
    torch.manual_seed(3)
    logits = torch.randn(3, labels.length, len(labels.alphabet))
    targets = torch.as_tensor(np.stack([codec.encode("ABCD"), codec.encode(None),
                                        codec.encode("Z9Z9")]))
    decoded = codec.decode(logits, targets)
    assert math.isnan(float(decoded.label_loss[1]))
    assert math.isclose(float(decoded.label_loss[[0, 2]].mean()), codec.loss(logits, targets).item(),
                        rel_tol=1e-5)
    probs = logits.softmax(-1)
    by_hand = float(probs[0, torch.arange(labels.length), targets[0]].prod())
    assert math.isclose(float(decoded.label_probability[0]), by_hand, rel_tol=1e-4)


def test_file_names_with_labels_of_any_length_in_the_range():
    labels = LabelConfig(alphabet="ABCDEFGH0123", length="4-6", case="upper", separator="-")
    assert parse_label("ABCD-0.png", labels) == ("ABCD", "")
    assert parse_label("abcdef0-12.png", labels) == (None, "wrong length")
    assert parse_label("ABC0E1-7.png", labels) == ("ABC0E1", "")
    assert parse_label("AB.png", labels) == (None, "wrong length")
