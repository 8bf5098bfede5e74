"""core.style: the 2016 post's character-box measurement and the background statistics, on
synthetic images whose boxes and colours are known; and benchmarks/style_gap.py end to end."""
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from core.images import write_png
from core.style import (BOX_MEASURES, POST_CROP, background_stats, character_boxes,
                        ks_distance, summary)

ROOT = Path(__file__).resolve().parent.parent
H, W = 46, 284


def _dark(seed=0):
    rng = np.random.default_rng(seed)
    image = np.empty((H, W, 3), np.uint8)
    image[:] = (20, 40, 90)
    return np.clip(image + rng.integers(0, 20, image.shape), 0, 255).astype(np.uint8)


def _as_rows(boxes):
    return sorted(tuple(int(v) for v in row) for row in boxes)


def test_boxes_are_the_white_components_of_the_crop_in_crop_coordinates():
    image = _dark()
    x0 = POST_CROP[0]
    cv2.rectangle(image, (x0 + 5, 8), (x0 + 5 + 19, 8 + 27), (255, 255, 255), -1)   # 20x28
    cv2.rectangle(image, (x0 + 40, 12), (x0 + 40 + 24, 12 + 29), (250, 250, 250), -1)  # 25x30
    # a ring: its box is 30x30 but only the frame is white
    image[5:35, x0 + 80:x0 + 110] = 255
    image[8:32, x0 + 83:x0 + 107] = (20, 40, 90)
    image[2:4, x0 + 120:x0 + 123] = 255            # a speck: dropped by the post's bounds
    cv2.rectangle(image, (2, 5), (20, 35), (255, 255, 255), -1)      # left of the crop: unseen
    ring_white = 30 * 30 - 24 * 24
    assert _as_rows(character_boxes(image)) == [
        (5, 8, 20, 28, 560, 560), (40, 12, 25, 30, 750, 750), (80, 5, 30, 30, 900, ring_white)]
    everything = _as_rows(character_boxes(image, bounds=None))
    assert (120, 2, 3, 2, 6, 6) in everything and len(everything) == 4


def test_bounds_drop_boxes_outside_each_range():
    image = _dark(1)
    x0 = POST_CROP[0]
    cv2.rectangle(image, (x0 + 5, 5), (x0 + 5 + 59, 5 + 29), (255, 255, 255), -1)    # 60 wide
    cv2.rectangle(image, (x0 + 90, 5), (x0 + 90 + 19, 5 + 29), (255, 255, 255), -1)  # 20 wide
    kept = character_boxes(image, bounds={"width": (8, 45)})
    assert kept[:, BOX_MEASURES.index("width")].tolist() == [20.0]


def test_background_excludes_the_text_and_measures_colour_and_texture():
    flat = np.empty((H, W, 3), np.uint8)
    flat[:] = (200, 40, 40)
    with_text = flat.copy()
    cv2.rectangle(with_text, (POST_CROP[0] + 10, 10), (POST_CROP[0] + 40, 36), (255, 255, 255), -1)
    plain, texted = background_stats(flat), background_stats(with_text)
    # the white box is not background: brightness and saturation stay the red's
    assert texted["brightness"] == pytest.approx(plain["brightness"]) == pytest.approx(200)
    assert texted["saturation"] == pytest.approx(plain["saturation"])
    assert plain["edges"] == 0 and plain["hue_spread"] == pytest.approx(0, abs=1e-9)
    grey = np.full((H, W, 3), 128, np.uint8)
    assert background_stats(grey)["colourfulness"] == 0
    assert background_stats(grey)["saturation"] == 0
    # one flat colour: no spread, only the mean term, 0.3 * |(R - G, (R + G) / 2 - B)|
    assert plain["colourfulness"] == pytest.approx(0.3 * np.hypot(160, 80))
    # red and cyan halves, hues half a turn apart (Otsu takes the cyan in the crop for text,
    # so the two are not equally weighted): far from one dominant hue
    halves = flat.copy()
    halves[:, W // 2:] = (40, 200, 200)
    assert background_stats(halves)["hue_spread"] > 0.5
    # darker lines right of the crop: texture
    striped = flat.copy()
    striped[::4, POST_CROP[1] + 10:] = (100, 20, 20)
    assert background_stats(striped)["edges"] > 10


def test_summary_and_ks_distance():
    s = summary([1, 2, 3, 4, 5])
    assert (s["mean"], s["min"], s["q1"], s["median"], s["q3"], s["max"]) == (3, 1, 2, 3, 4, 5)
    assert s["std"] == pytest.approx(np.std([1, 2, 3, 4, 5], ddof=1))
    assert np.isnan(summary([])["mean"])
    assert ks_distance([1, 2, 3], [1, 2, 3]) == 0
    assert ks_distance([1, 2, 3], [10, 11]) == 1
    assert ks_distance([1, 2, 3], [2, 3, 4]) == pytest.approx(1 / 3)
    assert np.isnan(ks_distance([], [1]))


@pytest.mark.slow
def test_style_gap_measures_only_the_files_a_pattern_names(tmp_path):
    real, other = tmp_path / "real", tmp_path / "other"
    real.mkdir()
    other.mkdir()
    for i in range(3):
        image = _dark(i)
        for k in range(4):      # four 20x28 white boxes, 30 px apart
            x = POST_CROP[0] + 5 + 30 * k
            cv2.rectangle(image, (x, 8), (x + 19, 35), (255, 255, 255), -1)
        write_png(str(real / f"captcha{i}_ABCD.png"), image)
        two = _dark(10 + i)
        for x in (POST_CROP[0] + 10, POST_CROP[0] + 60):   # two 25x30 boxes
            cv2.rectangle(two, (x, 6), (x + 24, 35), (255, 255, 255), -1)
        write_png(str(other / f"ABCD_{i}.png"), two)
    write_png(str(real / "figure.png"), _dark(99))      # not a captcha: left out by the pattern
    out = subprocess.run(
        [sys.executable, str(ROOT / "benchmarks" / "style_gap.py"),
         "--folder", f"real={real}/captcha*.png", "--folder", f"other={other}"],
        capture_output=True, text=True, check=True).stdout
    assert "| real | 3 | 12 | 4.00 |" in out
    assert "| other | 3 | 6 | 2.00 |" in out
    width_row = next(line for line in out.splitlines() if line.startswith("| width |"))
    # real: 20 wide, other: 25 wide, every box: the distributions do not overlap (KS 1)
    assert "| 20.0 / 0.00 |" in width_row and "| 25.0 / 0.00 |" in width_row
    assert width_row.endswith("| 1.00 |")
