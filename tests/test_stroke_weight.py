"""benchmarks/stroke_weight.py: strokes grown and worn away without changing a glyph's shape,
weighted glyphs where the face puts them, the same captchas drawn at each weight with the
generator left as it was, and each folder read through the runner's path."""
import hashlib
from pathlib import Path

import cv2
import numpy as np
import pytest

from benchmarks import stroke_weight as sw
from core import seed_style
from core.checkpoint import load_checkpoint
from core.config import load_config
from core.data import list_files
from core.generator import generate_folder
from core.images import decode_rgb, read_bytes
from core.inference import for_inference

BUNDLED = Path(__file__).resolve().parent.parent / "models" / "default.pt"


def _shape(ink):
    """Pieces of ink and pieces of background (1 + holes) of a grey-level glyph."""
    solid = (ink > 127).astype(np.uint8)
    return (cv2.connectedComponents(solid, connectivity=8)[0] - 1,
            cv2.connectedComponents(1 - solid, connectivity=4)[0] - 1)


def test_reweigh_makes_strokes_heavier_or_lighter_but_keeps_the_glyph_s_shape():
    bar = np.zeros((40, 40), np.uint8)
    bar[10:30, 14:26] = 255                              # a 12-pixel stroke
    widths = {w: int((sw.reweigh(bar, w)[20] > 127).sum()) for w in (-3, -1, 0, 1, 3)}
    assert widths == {-3: 6, -1: 10, 0: 12, 1: 14, 3: 18}
    ring = np.zeros((40, 40), np.uint8)                 # an O whose counter is 4 px across
    cv2.circle(ring, (20, 20), 8, 255, 12)
    assert _shape(ring) == (1, 2)
    heavier = sw.reweigh(ring, 6)
    assert _shape(heavier) == (1, 2) and heavier.sum() > ring.sum()   # grown, counter still open
    hairline = np.zeros((40, 40), np.uint8)             # two stems joined by a 4-px hairline
    hairline[5:35, 5:13] = hairline[5:35, 27:35] = 255
    hairline[18:22, 13:27] = 255
    assert _shape(hairline) == (1, 1)
    assert _shape(cv2.erode(hairline, np.ones((5, 5), np.uint8))) == (2, 1)   # 2 px each side break it
    lighter = sw.reweigh(hairline, -3)                  # so only 1 px each side is taken
    assert np.array_equal(lighter, sw.reweigh(hairline, -1))
    assert _shape(lighter) == (1, 1) and lighter.sum() < hairline.sum()


@pytest.mark.parametrize("face", seed_style._FONT_FILES)
def test_weighted_glyphs_sit_where_the_face_draws_them(face):
    # Drawn heavier or lighter, a glyph keeps its place on the baseline (its ink's top and
    # bottom within a pixel of the face's own), narrows or widens with the weight, and its ink
    # grows with it.
    def box(ink, top):
        rows, cols = np.flatnonzero(ink.max(1) > 40), np.flatnonzero(ink.max(0) > 40)
        return top + rows[0], top + rows[-1], cols[-1] - cols[0] + 1, int(ink.astype(np.int64).sum())
    for char in "5WI":
        light, plain, heavy = (box(*sw.weighted_bitmap(face, 40, char, w)) for w in (-2, 0, 2))
        for drawn in (light, heavy):
            assert abs(drawn[0] - plain[0]) <= 1 and abs(drawn[1] - plain[1]) <= 1, (char, drawn, plain)
        assert light[2] <= plain[2] <= heavy[2] and light[3] < plain[3] < heavy[3], (char, light, plain, heavy)


def _digests(folder):
    return {n: hashlib.sha256((folder / n).read_bytes()).hexdigest() for n in list_files(folder)}


def _white(folder):
    """The share of near-white pixels (the glyphs) in each captcha, by file name."""
    return {name: float((decode_rgb(read_bytes(str(folder / name))).min(2) > 200).mean())
            for name in list_files(folder)}


def test_the_same_captchas_are_drawn_lighter_and_heavier(tmp_path):
    config = load_config()
    for weight in (-2, 0, 2):
        sw.draw_at_weight(tmp_path / f"w{weight}", weight, 6, 11, config)
    assert seed_style._bitmap is sw.PLAIN                # the generator as it was
    light, plain, heavy = (_white(tmp_path / f"w{w}") for w in (-2, 0, 2))
    assert list(light) == list(plain) == list(heavy) and len(plain) == 6   # the same labels
    # the glyphs' white grows with the weight, captcha by captcha
    assert all(light[n] < plain[n] < heavy[n] for n in plain)
    # weight 0 is what jobs.generate draws, byte for byte
    generated = tmp_path / "generated"
    generate_folder(generated, 6, 11, config.generate.labels, config.generate.image, workers=1,
                    style="seed2016")
    assert _digests(generated) == _digests(tmp_path / "w0")
    assert _digests(tmp_path / "w2") != _digests(tmp_path / "w0")


def test_a_folder_is_scored_as_the_runner_scores_it(tmp_path):
    sw.draw_at_weight(tmp_path, 2, 8, 3, load_config())
    ckpt = load_checkpoint(BUNDLED)
    captchas, chars = sw.read(tmp_path, ckpt, for_inference(ckpt.model, ckpt.temperature))
    # the bundled model reads heavier glyphs of its own look; whole captchas are shares of 8,
    # characters of 32, and never more right than their characters
    assert 0.5 <= captchas <= chars <= 1.0
    assert captchas * 8 == round(captchas * 8) and chars * 32 == round(chars * 32)
