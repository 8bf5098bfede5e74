import hashlib
import os
import subprocess
import sys

import cv2
import numpy as np

from core.config import ImageConfig, LabelConfig
from core import generator
from core.generator import (file_name, generate_folder, generate_one, plant_wrong_labels,
                            random_label, text_layers)
from core.images import read_image
from core.labels import parse_label
from tests.conftest import ROOT


def digests(folder):
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in folder.iterdir()}


def test_same_seed_gives_same_bytes_whatever_the_workers(tmp_path, cfg):
    one, two, again = tmp_path / "one", tmp_path / "two", tmp_path / "again"
    assert generate_folder(one, 24, 5, cfg.labels, cfg.image, workers=1) == 24
    generate_folder(two, 24, 5, cfg.labels, cfg.image, workers=2)
    generate_folder(again, 24, 5, cfg.labels, cfg.image, workers=1)
    assert digests(one) == digests(two) == digests(again)
    assert len(digests(one)) == 24


def test_different_seeds_and_indices_differ(cfg):
    a = generate_one(0, 1, cfg.labels, cfg.image)[1]
    assert not np.array_equal(a, generate_one(0, 2, cfg.labels, cfg.image)[1])
    assert not np.array_equal(a, generate_one(1, 1, cfg.labels, cfg.image)[1])


def test_files_are_named_by_their_label_and_read_back(captcha_dir, cfg):
    files = sorted(captcha_dir.iterdir())
    assert len(files) == 48
    for path in files:
        label, why = parse_label(path.name, cfg.labels)
        assert label is not None, why
        image, resized = read_image(str(path), cfg.image.height, cfg.image.width)
        assert not resized and image.shape == (cfg.image.height, cfg.image.width, 3)


def test_generator_follows_the_config():
    labels, image = LabelConfig(alphabet="0123456789", length=6), ImageConfig(height=32, width=160)
    text, pixels = generate_one(3, 0, labels, image)
    assert len(text) == 6 and set(text) <= set("0123456789")
    assert pixels.shape == (32, 160, 3)


def test_text_is_brighter_than_its_background(cfg):
    # White text: the brightest pixels sit in the text band the post describes (left half).
    _, pixels = generate_one(7, 3, cfg.labels, cfg.image)
    lum = pixels.mean(2)
    cols = (lum > 215).sum(0).nonzero()[0]
    assert cols.size > 0
    assert cols.mean() < 0.75 * cfg.image.width


def test_planted_wrong_labels_differ_by_one_character(tmp_path, cfg):
    generate_folder(tmp_path, 20, seed=5, labels=cfg.labels, image=cfg.image, workers=1)
    before = set(os.listdir(tmp_path))
    planted = plant_wrong_labels(tmp_path, 6, seed=1, labels=cfg.labels)
    after = set(os.listdir(tmp_path))
    assert len(planted) == 6 and planted <= after and len(after) == 20
    for new in planted:
        label, rest = new.split(cfg.labels.separator, 1)
        old = next(n for n in before - after if n.endswith(cfg.labels.separator + rest))
        assert sum(a != b for a, b in zip(label, old.split(cfg.labels.separator)[0])) == 1
        assert set(label) <= set(cfg.labels.alphabet)


def test_background_stays_below_the_text_white(cfg):
    # Every stretch of text must stand out: the background's brightest pixel stays at least the
    # minimum contrast below the darkest white the text is drawn in, bright backgrounds included.
    brightest = []
    for index in range(60):
        rng = np.random.default_rng([11, index])
        text = random_label(rng, cfg.labels)
        background, mask, drawn = text_layers(text, rng, cfg.image.height, cfg.image.width)
        brightest.append(background.max())
        text_pixels = drawn[mask >= 1.0]
        assert text_pixels.size and text_pixels.min() >= generator._TEXT_WHITE - 1e-6
    assert max(brightest) <= generator._TEXT_WHITE - generator._MIN_CONTRAST + 1e-6
    assert max(brightest) > 0.6   # bright backgrounds still occur: they fight the text


def glyph_aspects(char, count, height):
    """Ink width over ink height of `count` random renderings of `char` in a captcha `height`
    pixels high, as the generator draws them (font, size, italics, rotation and thickness vary)."""
    aspects = []
    for seed in range(count):
        mask, _ = generator._glyph(char, np.random.default_rng(seed), height)
        rows = np.flatnonzero(mask.max(1) > 40)
        aspects.append(mask.shape[1] / (rows[-1] - rows[0] + 1))
    return np.array(aspects)


def test_zero_is_drawn_narrower_than_the_letter_o(cfg):
    # Width over height is what tells a zero from an O; the Hershey fonts' own zero is only ~10 %
    # narrower, which rotation and italics blur (without the squeeze the 95th percentile of the
    # zeros' ratio, 0.81, lies above the 5th of the Os', 0.75).
    height = cfg.image.height
    zeros, letters = glyph_aspects("0", 200, height), glyph_aspects("O", 200, height)
    assert np.percentile(zeros, 95) < np.percentile(letters, 5)
    assert np.median(zeros) < 0.8 * np.median(letters)


def test_the_bundled_samples_are_what_the_generator_draws(cfg):
    """samples/ is `jobs.generate --output samples --count 36 --seed 7` (README): drawing its
    captchas again must give their pixels. This pins what the generator draws, so that figures
    measured on freshly generated seeds stay comparable: a change that moves the drawing fails
    here, and then samples/ must be regenerated and the README told. Float rounding that differs
    between CPUs (SIMD widths, BLAS kernels) may move a value by a level or two after the JPEG
    step, never more than a few of them."""
    files = {path.name: path for path in (ROOT / "samples").iterdir()}
    for index in range(8):
        text, pixels = generate_one(index, 7, cfg.labels, cfg.image)
        stored, _ = read_image(str(files[file_name(text, index, 36)]), cfg.image.height,
                               cfg.image.width)
        diff = np.abs(pixels.astype(int) - stored.astype(int))
        assert (diff > 2).mean() < 1e-3, (index, text, int(diff.max()))


def test_smooth_colours_are_opencvs_bicubic_upscaling(cfg):
    rng = np.random.default_rng(0)
    h, w = cfg.image.height, cfg.image.width
    for shapes in (((2, 3), (7, 31)), ((3, 8), (5, 20)), ((4, 4),)):
        layers = [(rng.random((*s, 3), dtype=np.float32), rng.uniform(0.2, 1)) for s in shapes]
        expected = sum(weight * cv2.resize(cells, (w, h), interpolation=cv2.INTER_CUBIC)
                       for cells, weight in layers)
        np.testing.assert_allclose(generator._smooth_colours(layers, h, w), expected, atol=1e-5)


def test_noise_is_standard_normal_and_follows_the_rng():
    shape = (46, 284, 3)
    a = generator._noise(np.random.default_rng(1), shape)
    assert a.shape == shape and a.dtype == np.float32
    assert abs(a.mean()) < 0.03 and abs(a.std() - 1) < 0.03
    np.testing.assert_array_equal(a, generator._noise(np.random.default_rng(1), shape))
    assert not np.array_equal(a, generator._noise(np.random.default_rng(2), shape))
    big = generator._noise(np.random.default_rng(1), (600, 1000, 3))   # more than the bank
    assert big.shape == (600, 1000, 3) and abs(big.std() - 1) < 0.01


def test_glyphs_are_never_cut(cfg, monkeypatch):
    # Rotation, italics, descenders and the baseline jitter must leave the whole glyph on its
    # canvas and in its column: the same ink as when drawn with room to spare all round.
    height = cfg.image.height
    draws = [(cfg.labels.alphabet[seed % len(cfg.labels.alphabet)], seed) for seed in range(400)]
    drawn = [generator._glyph(char, np.random.default_rng(seed), height)[0] for char, seed in draws]
    monkeypatch.setattr(generator, "_GLYPH_PAD", 3.0)
    for (char, seed), mask in zip(draws, drawn):
        roomy, _ = generator._glyph(char, np.random.default_rng(seed), height)
        assert mask.shape[0] == height
        assert abs(int(mask.sum()) - int(roomy.sum())) <= 0.01 * roomy.sum(), (char, seed)


def test_generator_workers_start_without_torch():
    """jobs.generate's worker processes import core.generator only; torch (~2 s per process
    on the reference box) must not come with it."""
    code = "import sys, core.generator; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                         check=True)
    assert out.stdout.strip() == "False"
