"""generate.style: seed2016, the seed's real captchas as they look (core.seed_style): as
deterministic as the classic style, every glyph whole, every label readable by construction,
and the look core.style measures on the real ones. (Its independence from the CPU's SIMD code
is tested with the classic style's, in test_generator.py.)"""
import hashlib

import numpy as np
import pytest

from core import generator, seed_style
from core.config import ConfigError, ImageConfig, LabelConfig, load_config
from core.generator import generate_folder, generate_one, random_label
from core.style import POST_TABLE, character_boxes
from tests.test_generator import glyph_aspects

STYLE = "seed2016"


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


@pytest.fixture
def gen():
    return load_config().generate


def test_same_seed_gives_same_bytes_whatever_the_workers(tmp_path, gen):
    one, two = tmp_path / "one", tmp_path / "two"
    assert generate_folder(one, 16, 5, gen.labels, gen.image, workers=1, style=STYLE) == 16
    generate_folder(two, 16, 5, gen.labels, gen.image, workers=2, style=STYLE)
    assert digests(one) == digests(two) and len(digests(one)) == 16
    classic = tmp_path / "classic"
    generate_folder(classic, 16, 5, gen.labels, gen.image, workers=1)
    # the same labels (drawn first from the same rng), other pixels
    assert sorted(digests(classic)) == sorted(digests(one))
    assert set(digests(classic).values()).isdisjoint(digests(one).values())


def test_unknown_style_is_refused(tmp_path, gen):
    with pytest.raises(ValueError, match="unknown captcha style 'fancy'.*classic, seed2016"):
        generate_folder(tmp_path, 1, 0, gen.labels, gen.image, workers=1, style="fancy")


def test_config_names_a_bad_style():
    assert load_config(None, {"generate.style": "seed2016"}).generate.style == "seed2016"
    with pytest.raises(ConfigError, match="'generate.style' must be one of classic, seed2016"):
        load_config(None, {"generate.style": "fancy"})


@pytest.mark.parametrize("lower", [None, 1.0])
def test_glyphs_are_never_cut(gen, monkeypatch, lower):
    # Rotation, stretch, the smaller glyphs set lower, lower case with its descenders and the
    # baseline's range must leave every glyph whole: the same ink as when drawn with room to
    # spare all round. (lower=1.0: every letter that may be drawn in lower case is.)
    h = gen.height
    if lower is not None:
        monkeypatch.setattr(seed_style, "_LOWER", lower)
    draws = [(gen.alphabet[seed % len(gen.alphabet)], seed) for seed in range(300)]
    drawn = [seed_style._glyph(c, np.random.default_rng(seed), h)[0] for c, seed in draws]
    monkeypatch.setattr(seed_style, "_GLYPH_PAD", 3.0)
    for (char, seed), mask in zip(draws, drawn):
        roomy, _ = seed_style._glyph(char, np.random.default_rng(seed), h)
        assert mask.shape[0] == h and mask.sum() > 0
        assert abs(int(mask.sum()) - int(roomy.sum())) <= 0.01 * roomy.sum(), (char, seed)


def test_lower_case_forms_are_drawn_except_those_that_pass_for_another_character(gen, monkeypatch):
    def ink(char, seed, lower):
        monkeypatch.setattr(seed_style, "_LOWER", lower)
        return seed_style._glyph(char, np.random.default_rng(seed), gen.height)[0]
    for char in "APG":      # a lower-case p hangs below the line: taller ink box, other pixels
        assert any(not np.array_equal(ink(char, s, 1.0), ink(char, s, 0.0)) for s in range(5))
    for char in sorted(generator._NO_LOWER_CASE):
        assert all(np.array_equal(ink(char, s, 1.0), ink(char, s, 0.0)) for s in range(20))


def test_zero_is_narrower_than_the_letter_o(gen):
    zeros, letters = (glyph_aspects(c, 150, gen.height, seed_style._glyph) for c in "0O")
    assert np.percentile(zeros, 95) < np.percentile(letters, 5)


def test_background_stays_below_the_text_white(gen):
    ceiling = generator._TEXT_WHITE - generator._MIN_CONTRAST
    brightest = [seed_style._background(np.random.default_rng([3, i]), gen.height, gen.width).max()
                 for i in range(60)]
    assert max(brightest) <= ceiling + 1e-6
    assert max(brightest) > 0.5


def test_text_starts_a_ninth_in_and_is_packed(gen):
    rng = np.random.default_rng(4)
    text = random_label(rng, gen.labels)
    coverage = seed_style._text_mask(text, rng, gen.height, gen.width)
    assert coverage.max() == 255
    cols = np.flatnonzero(coverage.max(0) > 128)
    # the text starts about a ninth of the width in, packed: about its own height per glyph
    assert 0.08 * gen.width <= cols[0] <= 0.15 * gen.width
    assert cols[-1] - cols[0] < len(text) * 0.9 * gen.height


def test_dark_specks_cut_the_strokes_and_white_specks_sit_around(gen):
    h, w = gen.height, gen.width
    coverage = np.zeros((h, w), np.uint8)
    coverage[10:36, 40:120] = 255                      # the text's block
    image = np.full((h, w, 3), 0.5, np.float32)        # mid-grey everywhere
    image[coverage > 0] = 1.0                          # white text
    seed_style._specks(image, coverage, np.random.default_rng(9), h)
    inside, outside = image[coverage > 0], image[coverage == 0]
    assert (inside.max(1) <= 0.3).sum() >= 6           # dark specks, on the strokes only
    assert (outside.max(1) <= 0.3).sum() == 0
    assert (outside.min(1) >= 0.85).sum() >= 8         # white specks, around the text


def test_boxes_are_the_post_s_size(gen):
    # The 2016 post's measurement of its real captchas, on 60 of ours: mean box width and
    # height within one of the post's standard deviations of the post's means.
    boxes = np.concatenate([character_boxes(generate_one(i, 77, gen.labels, gen.image, STYLE)[1])
                            for i in range(60)])
    for k, measure in ((2, "width"), (3, "height")):
        mean, sd, _, _ = POST_TABLE[measure]
        assert abs(boxes[:, k].mean() - mean) < sd, measure


def test_style_follows_the_config_size():
    labels, image = LabelConfig(alphabet="0123456789", length=6), ImageConfig(height=32, width=160)
    text, pixels = generate_one(3, 0, labels, image, STYLE)
    assert len(text) == 6 and pixels.shape == (32, 160, 3)


def test_render_tells_how_each_glyph_was_drawn_and_draws_the_same(gen, monkeypatch):
    # What benchmarks/glyph_errors.py counts misreads by: one (face, form) per character, and
    # the image drawn while noting them is the one jobs.generate writes.
    text, image = generate_one(11, 3, gen.labels, gen.image, STYLE)
    label, rng = generator.label_and_rng(11, 3, gen.labels)
    assert label == text
    drawn = []
    assert np.array_equal(seed_style.render(text, rng, gen.height, gen.width, drawn), image)
    assert len(drawn) == len(text)
    faces = {face for face, _ in drawn}
    assert faces <= set(seed_style._FONT_FILES) | set(seed_style._ITALIC.values())
    forms = []
    for lower, small in ((1.0, 0.0), (0.0, 1.0), (0.0, 0.0)):
        monkeypatch.setattr(seed_style, "_LOWER", lower)
        monkeypatch.setattr(seed_style, "_SMALL", small)
        drawn = []
        seed_style.render("AB12", np.random.default_rng(5), gen.height, gen.width, drawn)
        forms.append([form for _, form in drawn])
        for face, form in drawn:
            assert (face in seed_style._ITALIC.values()) == (form == "lower italic")
    # letters may be drawn in lower case, digits never are
    assert {*forms[0][:2]} <= {"lower", "lower italic"} and forms[0][2:] == ["full"] * 2
    assert forms[1] == ["small"] * 4 and forms[2] == ["full"] * 4
    assert {f for fs in forms for f in fs} <= set(seed_style.GLYPH_FORMS)
