"""generate.style: fonts, printed text of every kind for pretraining (core.text_style):
deterministic for a seed whatever the workers, labels of a range of lengths and both cases,
every character inside the image and standing out from its background."""
import hashlib

import numpy as np
import pytest

from core import text_style
from core.config import ConfigError, load_config
from core.data import scan_folder
from core.generator import generate_folder

MIXED = {"generate.alphabet": "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz",
         "generate.length": "3-8", "generate.height": 48, "generate.width": 200,
         "generate.style": "fonts"}


@pytest.fixture(scope="module")
def gen():
    return load_config(None, MIXED).generate


def test_same_seed_gives_same_bytes_whatever_the_workers(tmp_path, gen):
    def digests(folder):
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}
    one, two = tmp_path / "one", tmp_path / "two"
    generate_folder(one, 12, 3, gen.labels, gen.image, workers=1, style=gen.style)
    generate_folder(two, 12, 3, gen.labels, gen.image, workers=2, style=gen.style)
    assert digests(one) == digests(two) and len(digests(one)) == 12
    generate_folder(tmp_path / "other", 12, 4, gen.labels, gen.image, workers=1, style=gen.style)
    assert set(digests(one).values()).isdisjoint(digests(tmp_path / "other").values())


def test_labels_of_a_range_of_lengths_in_both_cases_are_named_and_read_back(tmp_path, gen):
    assert gen.labels.case == "none"     # lower case in the alphabet: the names keep it
    generate_folder(tmp_path, 60, 1, gen.labels, gen.image, workers=1, style=gen.style)
    labels = [i.label for i in scan_folder(tmp_path, gen.labels)]
    assert len(labels) == 60 and {len(t) for t in labels} <= set(range(3, 9))
    assert len({len(t) for t in labels}) >= 4
    text = "".join(labels)
    assert any(c.islower() for c in text) and any(c.isupper() for c in text)
    assert load_config(None).generate.labels.case == "upper"   # the seed's alphabet: upper


def test_generate_length_takes_a_range_but_not_auto():
    assert load_config(None, {"generate.length": "4-8"}).generate.labels.max_length == 8
    with pytest.raises(ConfigError, match="'generate.length' must be a number or a range"):
        load_config(None, {"generate.length": "auto"})


def test_every_character_is_inside_the_image_and_leaves_ink(gen):
    for seed in range(150):
        rng = np.random.default_rng(seed)
        text = "".join(rng.choice(list(gen.alphabet), int(rng.integers(3, 9))))
        mask, boxes = text_style._text_mask(text, rng, gen.height, gen.width)
        assert mask.shape == (gen.height, gen.width) and len(boxes) == len(text)
        for left, right in boxes:
            assert 0 <= left < right <= gen.width, (seed, text)
            assert mask[:, left:right].sum() > 0, (seed, text)


def test_the_text_colour_stands_out_from_the_background():
    rng = np.random.default_rng(0)
    for ground in np.linspace(0, 1, 21):
        colour = text_style._contrasting(rng, float(ground))
        assert abs(float(text_style._luminance(colour)) - ground) >= text_style._MIN_CONTRAST
