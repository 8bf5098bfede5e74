"""benchmarks/real_variants.py: a variant keeps its set's split and changes what it says it
changes (on a small folder of drawn images; tests never read ../shared)."""
import cv2
import numpy as np
import pytest

from benchmarks.real_suite import in_test_split
from benchmarks.real_variants import CYRILLIC, build
from core.images import write_png

LABELS = [f"{a}{b}{c}{d}" for a in "bcd" for b in "2xy" for c in "mn5" for d in "78p"]  # 81


@pytest.fixture
def source(tmp_path):
    folder = tmp_path / "set"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i, label in enumerate(LABELS):
        image = rng.integers(0, 256, (12, 30, 1), np.uint8)
        write_png(str(folder / f"{label}.png"), np.repeat(image, 3, axis=2) if i % 2
                  else rng.integers(0, 256, (12, 30, 3), np.uint8))
    assert any(in_test_split(f"{label}.png") for label in LABELS)
    return folder


def _stems(folder):
    return sorted(p.stem for p in folder.iterdir())


def test_relabelling_keeps_each_captcha_in_the_split_of_its_original_name(source, tmp_path):
    train, test = build(source, tmp_path / "v", "relabel", CYRILLIC)
    expected_test = sorted(label.translate(CYRILLIC) for label in LABELS
                           if in_test_split(f"{label}.png"))
    assert _stems(tmp_path / "v" / "test") == expected_test
    assert (train, test) == (len(LABELS) - len(expected_test), len(expected_test))
    assert all(not set(stem) & set("bcdmnxy") for stem in _stems(tmp_path / "v" / "train"))
    assert (tmp_path / "v" / "test" / f"{expected_test[0]}.png").read_bytes() == (
        source / f"{LABELS[[l.translate(CYRILLIC) for l in LABELS].index(expected_test[0])]}.png"
    ).read_bytes()


def test_fewer_cuts_only_the_training_split(source, tmp_path):
    tests = sum(in_test_split(f"{label}.png") for label in LABELS)
    assert build(source, tmp_path / "v", "fewer", 5) == (5, tests)
    assert len(list((tmp_path / "v" / "train").iterdir())) == 5


def test_jpeg_and_sizes_rewrite_the_pixels_grey_staying_grey(source, tmp_path):
    build(source, tmp_path / "j", "jpeg", 75)
    files = [*(tmp_path / "j" / "train").iterdir(), *(tmp_path / "j" / "test").iterdir()]
    assert {p.suffix for p in files} == {".jpg"} and len(files) == len(LABELS)
    channels = {cv2.imread(str(p), cv2.IMREAD_UNCHANGED).ndim for p in files}
    assert channels == {2, 3}                       # the grey ones written grey
    build(source, tmp_path / "s", "scale", 2.5)
    scaled = next((tmp_path / "s" / "train").iterdir())
    assert cv2.imread(str(scaled)).shape[:2] == (30, 75)
    build(source, tmp_path / "m", "sizes", (0.5, 1.0, 2.0))
    sizes = {cv2.imread(str(p)).shape[:2] for p in (tmp_path / "m" / "train").iterdir()}
    assert sizes == {(6, 15), (12, 30), (24, 60)}
