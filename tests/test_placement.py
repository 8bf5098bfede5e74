"""benchmarks/placement.py: the grid of moves, the moves themselves, each captcha read at every
placement through the runner's path, and the summary's arithmetic (on drawn captchas; tests
never read ../shared)."""
from pathlib import Path

import numpy as np
import torch

from benchmarks import placement as pl
from core.checkpoint import load_checkpoint
from core.data import CaptchaDataset, list_files, make_loader, scan_folder
from core.engine import evaluate
from core.images import write_png
from core.inference import for_inference

BUNDLED = Path(__file__).resolve().parent.parent / "models" / "default.pt"


def test_the_grid_starts_where_the_image_is_and_holds_every_move_once():
    grid = pl.placements(1.0, 0.5)
    assert grid[0] == (0.0, 0.0) and len(grid) == 25 == len(set(grid))
    assert {dx for dx, _ in grid} == {-1.0, -0.5, 0.0, 0.5, 1.0} == {dy for _, dy in grid}
    assert pl.placements(2.0, 1.0)[1:] == [(dx, dy) for dy in (-2.0, -1.0, 0.0, 1.0, 2.0)
                                          for dx in (-2.0, -1.0, 0.0, 1.0, 2.0)
                                          if (dx, dy) != (0.0, 0.0)]


def test_a_move_by_whole_pixels_is_a_shift_with_the_edge_repeated():
    image = np.random.default_rng(0).integers(0, 256, (12, 20, 3), np.uint8)
    right = pl.moved(image, 1.0, 0.0)
    np.testing.assert_array_equal(right[:, 1:], image[:, :-1])
    np.testing.assert_array_equal(right[:, 0], image[:, 0])
    up = pl.moved(image, 0.0, -2.0)
    np.testing.assert_array_equal(up[:-2], image[2:])
    half = pl.moved(image, 0.5, 0.0).astype(int)        # halfway: the mean of two neighbours
    mean = (image[:, :-1].astype(int) + image[:, 1:]) / 2
    assert np.abs(half[:, 1:] - mean).max() <= 1
    assert pl.moved(image, 0.0, 0.0) is image


def test_each_captcha_is_read_at_every_placement_as_the_runner_reads_it(captcha_dir, tmp_path):
    names = list_files(captcha_dir)[:4]
    grid = pl.placements(1.0, 1.0)
    originals, failed = pl.decodable(captcha_dir, names)
    assert list(originals) == names and failed == {}
    readings = pl.read_moved(originals, [str(BUNDLED)], grid, tmp_path / "p")[str(BUNDLED)]
    assert set(readings) == set(names) and all(len(r) == len(grid) for r in readings.values())
    # The first placement is the image as it is: what evaluate reads from the folder itself.
    ckpt = load_checkpoint(BUNDLED)
    items = [i for i in scan_folder(captcha_dir, ckpt.labels) if i.path in names]
    got = {}
    loader = make_loader(CaptchaDataset(captcha_dir, items, ckpt.codec, ckpt.image), 8, 0,
                         torch.device("cpu"))
    evaluate(for_inference(ckpt.model, ckpt.temperature), loader, ckpt.codec, torch.device("cpu"),
             on_batch=lambda b, d: got.update(
                 {items[i].path: t for i, t in zip(b["index"].tolist(), d.texts)}))
    assert {n: r[0] for n, r in readings.items()} == got
    labels = pl.labels_of(captcha_dir, names, str(BUNDLED))
    assert labels == {i.path: i.label for i in items}


def test_the_summary_counts_captchas_not_readings():
    labels = {"a": "AB", "b": "CD", "c": None}          # an unlabelled file is not scored
    readings = {"a": ["AB", "AB", "AB", "AB"],          # right everywhere
                "b": ["CB", "CD", "CD", "CB"],          # wrong as it is, right at half
                "c": ["XX", "XX", "XX", "XX"]}
    assert pl.summary(readings, labels) == {"as they are": 0.5, "averaged over placements": 0.75,
                                            "at every placement": 0.5}


def test_a_file_that_does_not_decode_is_left_out_with_why(tmp_path):
    write_png(str(tmp_path / "AB12.png"), np.zeros((10, 30, 3), np.uint8))
    (tmp_path / "CD34.png").write_bytes(b"not an image")
    (tmp_path / "EF56.png").write_bytes(b"")
    images, failed = pl.decodable(tmp_path, ["AB12.png", "CD34.png", "EF56.png"])
    assert list(images) == ["AB12.png"] and images["AB12.png"].shape == (10, 30, 3)
    assert failed == {"CD34.png": "not an image", "EF56.png": "empty file"}
