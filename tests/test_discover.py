"""Zero configuration: what the training job finds in a folder of named captchas."""
import unicodedata

import numpy as np
import pytest

from core.config import AUTO, ImageConfig, LabelConfig
from core.discover import DiscoveryError, discover_image, discover_labels, image_names
from core.images import write_png
from core.labels import parse_label

AUTO_LABELS = LabelConfig()


@pytest.mark.parametrize("names, separator", [
    (["ABCD_000001.png", "WXYZ_000002.png", "K9Q2_000003.png"], "_"),
    (["7W4M6G8A-0.png", "002K-0.png", "00BB5-1.png"], "-"),
    (["74eyg.png", "226md.png", "2356g.png"], ""),
    # most names bare, the repeats numbered: the separator is still found
    (["PSHgVf.png", "abc123.png", "abc123_0002.png", "qwe9rt.png", "qwe9rt_0002.png"], "_")])
def test_separator_is_the_character_before_a_suffix(names, separator):
    labels, notes = discover_labels(names, AUTO_LABELS)
    assert labels.separator == separator
    assert any(line.startswith("separator:") for line in notes)


def test_alphabet_and_lengths_come_from_the_labels():
    names = ["7W4M-0.png", "002KX-0.png", "ABCDEFGH-3.png", "Z9Z9Z9-1.png"]
    labels, _ = discover_labels(names, AUTO_LABELS)
    assert labels.alphabet == "02479ABCDEFGHKMWXZ"
    assert labels.length == "4-8" and (labels.min_length, labels.max_length) == (4, 8)
    fixed, _ = discover_labels(["ABCD.png", "EFGH.png"], AUTO_LABELS)
    assert fixed.length == 4 and fixed.fixed_length


@pytest.mark.parametrize("labels_written, case", [
    (["abcd", "efgh", "ij12"], "lower"),                        # one case: folded to it
    (["ABCD", "EFGH", "IJ12"], "upper"),
    (["abcd", "efgh", "ijkl", "mnop", "QRst"], "lower"),       # a few capitals: noise
    (["aBcD", "EfGh", "iJkL", "MnOp"], "none"),                 # both cases common: they matter
    (["1234", "5678"], "none")])
def test_case_is_folded_when_one_case_is_rare(labels_written, case):
    labels, notes = discover_labels([f"{t}.png" for t in labels_written], AUTO_LABELS)
    assert labels.case == case
    folded = {c for t in labels_written
              for c in (t.lower() if case == "lower" else t.upper() if case == "upper" else t)}
    assert set(labels.alphabet) == folded


def test_pinned_settings_are_kept_and_not_reported():
    pinned = LabelConfig(alphabet="ABCDEFGH", length=4, case="upper", separator="_")
    labels, notes = discover_labels(["abcd_1.png"], pinned)
    assert labels == pinned and notes == []


def test_unicode_labels_work():
    names = ["ЖУК9-0.png", "ЁЖИК-1.png", "ЁЖИК-2.png", "ЖУК9-3.png", "жук9-4.png"]
    labels, _ = discover_labels(names, AUTO_LABELS)
    assert labels.case == "upper" and labels.alphabet == "9ЁЖИКУ" and labels.length == 4


def test_a_label_written_decomposed_reads_as_the_same_letters():
    # macOS writes `й` in a file name as `и` and a combining breve, other systems as one
    # character: both spellings are one label, and no bare mark enters the alphabet
    words = ["ЙОГА", "ЁЖИК", "КЕЙФ", "ЖУК9"]
    names = [f"{unicodedata.normalize(form, w)}-{k}.png"
             for k, w in enumerate(words) for form in ("NFD", "NFC")]
    labels, _ = discover_labels(names, AUTO_LABELS)
    assert labels.length == 4 and labels.case == "upper"
    assert labels.alphabet == "".join(sorted(set("".join(words))))
    assert all(unicodedata.combining(c) == 0 for c in labels.alphabet)
    assert {parse_label(n, labels) for n in names} == {(w, "") for w in words}


def test_case_folding_keeps_a_letter_whose_other_case_is_two_letters():
    # str.upper() makes `ß` "SS" and str.lower() Turkish `İ` "i" and a combining dot: a label
    # a character longer than its image, and a bare mark in the alphabet
    names = ["STRAßE-0.png", "STRASSE-1.png", "straße-2.png", "GROßE-3.png", "GROSS-4.png",
             "BREITE-5.png", "WEIßE-6.png", "HEIßT-7.png", "KLEINE-8.png"]
    labels, _ = discover_labels(names, AUTO_LABELS)
    assert labels.case == "upper" and labels.length == "5-7"
    assert "ß" in labels.alphabet and "S" in labels.alphabet
    assert parse_label("straße-2.png", labels) == ("STRAßE", "")
    turkish, _ = discover_labels(["istanbul-0.png", "İzmir-1.png", "ankara-2.png",
                                  "bursa-3.png", "konya-4.png", "adana-5.png"], AUTO_LABELS)
    assert turkish.case == "lower" and turkish.length == "5-8"
    assert all(unicodedata.combining(c) == 0 for c in turkish.alphabet)
    assert parse_label("İzmir-1.png", turkish) == ("İzmir", "")
    # a label is glyphs, not a word: a Greek Σ at its end folds as it does anywhere else
    greek = LabelConfig("ασδ", 4, "lower", "-")
    assert parse_label("ΑΣΔΣ-0.png", greek) == ("ασδσ", "")


def test_only_image_files_count():
    assert image_names(["a/ABCD.png", "README.txt", "b/EFGH.JPG", "labels.csv"]) == [
        "ABCD.png", "EFGH.JPG"]
    with pytest.raises(DiscoveryError, match="no image files"):
        discover_labels([], AUTO_LABELS)


def write_images(folder, sizes):
    paths = []
    for k, (h, w) in enumerate(sizes):
        name = f"ABCD_{k}.png"
        write_png(str(folder / name), np.full((h, w, 3), 200, np.uint8))
        paths.append(name)
    return paths


def test_image_size_for_a_sequence_model_keeps_the_aspect_at_its_height(tmp_path):
    paths = write_images(tmp_path, [(50, 200)] * 5 + [(50, 180)] * 2)
    image, notes = discover_image(tmp_path, paths, ImageConfig(), sequence=True, max_length=8)
    assert (image.height, image.width) == (48, 192)   # 200/50 at 48 high
    (tmp_path / "small").mkdir()
    small = write_images(tmp_path / "small", [(24, 72)] * 3)
    image, _ = discover_image(tmp_path / "small", small, ImageConfig(), sequence=True, max_length=8)
    assert (image.height, image.width) == (48, 144)    # small images are scaled up
    assert "read" in notes[0]


def test_a_sequence_model_reads_at_most_40_pixels_per_character(tmp_path):
    # CTC leaves its all-blank start later the more frames per character: wide images with
    # short labels are squeezed (284x46 with 4 characters: 160x48, not 296x48)
    paths = write_images(tmp_path, [(46, 284)] * 3)
    image, notes = discover_image(tmp_path, paths, ImageConfig(), sequence=True, max_length=4)
    assert (image.height, image.width) == (48, 160)
    assert "squeezed from 296 wide" in notes[0]
    image, notes = discover_image(tmp_path, paths, ImageConfig(), sequence=True, max_length=10)
    assert (image.height, image.width) == (48, 296) and "squeezed" not in notes[0]
    pinned, _ = discover_image(tmp_path, paths, ImageConfig(width=280), sequence=True,
                               max_length=4)
    assert (pinned.height, pinned.width) == (48, 280)   # a pinned width is kept


def test_image_size_for_a_per_position_model_is_the_median(tmp_path):
    paths = write_images(tmp_path, [(46, 284)] * 3 + [(40, 200)])
    image, _ = discover_image(tmp_path, paths, ImageConfig(), sequence=False, max_length=4)
    assert (image.height, image.width) == (46, 284)
    pinned, notes = discover_image(tmp_path, paths, ImageConfig(height=30, width=AUTO), False, 4)
    assert pinned.height == 30 and pinned.width == 284


def test_characters_in_few_labels_are_named_and_kept():
    words = ["ABCD", "EFGH", "ABEF"] * 20 + ["ABC?", "AB?D"]    # '?': a mistyped name
    names = [f"{w}_{k}.png" for k, w in enumerate(words)]
    labels, notes = discover_labels(names + ["ABCЖ_99.png"], AUTO_LABELS)
    assert labels.alphabet == "?ABCDEFGHЖ"
    line = next(n for n in notes if n.startswith("alphabet:"))
    assert line.endswith("in fewer than 3 labels (a typo in a name, or too rare to learn): "
                         "'?' 2, 'Ж' 1")
    _, plain = discover_labels([f"{w}_{k}.png" for k, w in enumerate(["ABCD", "EFGH"] * 3)],
                               AUTO_LABELS)
    assert "alphabet: 8 characters 'ABCDEFGH'" in plain


def test_a_stray_name_does_not_widen_the_lengths_or_the_alphabet():
    names = [f"{a}{b}{c}{d}_{k}.png" for k, (a, b, c, d) in enumerate(["ABCD", "EFGH", "IJKL"] * 40)]
    labels, notes = discover_labels(names + ["notes_here.png"], AUTO_LABELS)
    assert labels.length == 4 and labels.alphabet == "ABCDEFGHIJKL"
    assert "left out as too rare: 5 characters: 1" in " ".join(notes)
