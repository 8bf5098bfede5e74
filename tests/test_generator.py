import hashlib
import os
import platform
import signal
import subprocess
import sys
import time

import cv2
import numpy as np
import pytest

from core.config import CAPTCHA_STYLES, ImageConfig, LabelConfig
from core import generator
from core.generator import (file_name, generate_folder, generate_one, plant_wrong_labels,
                            random_label, text_layers)
from core.images import read_image
from core.labels import parse_label
from tests.conftest import ROOT, imported_by


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


def glyph_aspects(char, count, height, glyph=generator._glyph):
    """Ink width over ink height of `count` random renderings of `char` in a captcha `height`
    pixels high, as `glyph` (a style's glyph drawing) draws them (font, size, italics,
    rotation and thickness vary)."""
    aspects = []
    for seed in range(count):
        mask, _ = glyph(char, np.random.default_rng(seed), height)
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
    """samples/ is `jobs.generate --output samples --count 36 --seed 7` (README): drawing them
    again must give their names and their pixels exactly, on any CPU (core/generator.py says
    why it can promise that). A change that moves the drawing fails here; then samples/ must be
    regenerated and the README told."""
    stored = {path.name: path for path in (ROOT / "samples").iterdir()}
    assert len(stored) == 36
    for index in range(36):
        text, pixels = generate_one(index, 7, cfg.labels, cfg.image, cfg.generate.style)
        name = file_name(text, index, 36)
        assert name in stored, (index, name)
        image, _ = read_image(str(stored[name]), cfg.image.height, cfg.image.width)
        differ = np.count_nonzero(image != pixels)
        assert differ == 0, f"{name}: {differ} values differ, up to " \
            f"{int(np.abs(image.astype(int) - pixels).max())} levels"


# Environment variables that turn off each library's CPU-specific code (where the CPU has it):
# OpenCV's dispatched SIMD (down to its baseline), Intel IPP inside OpenCV (x86), OpenBLAS's
# kernel choice and numpy's dispatched SIMD.
_OPENCV_SIMD = ("SSE4_1,SSE4_2,POPCNT,SSSE3,AVX,FP16,AVX2,FMA3,AVX_512F,AVX512_COMMON,"
                "AVX512_SKX,AVX512_ICL,NEON_DOTPROD,NEON_FP16,NEON_BF16")
_DRAW = ("import hashlib, sys\n"
         "from core.config import load_config\n"
         "from core.generator import generate_one\n"
         "cfg = load_config()\n"
         "digest = hashlib.sha256()\n"
         "for index in range(int(sys.argv[1])):\n"
         "    text, pixels = generate_one(index, 23, cfg.generate.labels, cfg.generate.image,\n"
         "                                sys.argv[2])\n"
         "    digest.update(text.encode() + pixels.tobytes())\n"
         "print(digest.hexdigest())\n")


def _numpy_simd() -> str:
    from numpy._core._multiarray_umath import __cpu_dispatch__, __cpu_features__
    return " ".join(f for f in __cpu_dispatch__ if __cpu_features__.get(f))


@pytest.mark.slow
@pytest.mark.parametrize("style", [s for s in CAPTCHA_STYLES if s != "fonts"])  # fonts: no promise
def test_drawing_does_not_depend_on_the_cpus_simd_code(style):
    # A machine with other CPU features runs other code in OpenCV, IPP, OpenBLAS and numpy. Each
    # lets its CPU-specific code be turned off: the captchas must not change when it is. (The
    # generator as it was before it avoided OpenCV's float paths failed this with OpenCV's AVX2
    # or IPP turned off.)
    count = "40"
    reference = subprocess.run([sys.executable, "-c", _DRAW, count, style], cwd=ROOT,
                               capture_output=True, text=True, check=True).stdout
    core_type = "Prescott" if platform.machine() in ("x86_64", "AMD64") else "ARMV8"
    variants = {"OPENCV_CPU_DISABLE": _OPENCV_SIMD, "OPENCV_IPP": "disabled",
                "OPENBLAS_CORETYPE": core_type, "NPY_DISABLE_CPU_FEATURES": _numpy_simd()}
    for name, value in variants.items():
        env = {**os.environ, name: value}
        out = subprocess.run([sys.executable, "-c", _DRAW, count, style], cwd=ROOT, env=env,
                             capture_output=True, text=True, check=True)
        assert out.stdout == reference, (name, value, out.stderr[-500:])


def test_colour_planes_are_alike_over_many_captchas(cfg):
    # No colour plane is favoured or lost: over many captchas each plane's mean is within a few
    # per cent of the others' (a bug that clipped green and blue to zero made every one red).
    planes = np.array([generate_one(i, 5, cfg.labels, cfg.image)[1].mean((0, 1))
                       for i in range(60)]).mean(0)
    assert planes.max() < 1.1 * planes.min(), planes
    assert 80 < planes.mean() < 160, planes


def test_random_colours_are_opencvs_hsv_conversion():
    rng = np.random.default_rng(3)
    levels = generator._random_colours(rng, 2000)
    rng = np.random.default_rng(3)   # the same draws, converted by OpenCV
    hsv = np.floor(rng.random((2000, 3)) * generator._HSV_SPAN + generator._HSV_LOW)
    expected = cv2.cvtColor(hsv.astype(np.uint8)[None], cv2.COLOR_HSV2RGB)[0].astype(int)
    assert np.abs(levels - expected).max() <= 1   # OpenCV rounds a few levels the other way
    assert (levels == np.rint(levels)).all() and levels.min() >= 0 and levels.max() <= 255


def test_cubic_weights_are_opencvs_bicubic_upscaling():
    for source, size in ((2, 46), (3, 46), (8, 284), (31, 284)):
        eye = np.eye(source, dtype=np.float32)
        expected = cv2.resize(eye, (source, size), interpolation=cv2.INTER_CUBIC)
        weights = generator._cubic_weights(source, size)
        assert (weights == np.rint(weights)).all()
        np.testing.assert_allclose(weights / generator._CUBIC_ONE, expected, atol=0.6 / 4096)


def test_smooth_colours_are_opencvs_bicubic_upscaling(cfg):
    rng = np.random.default_rng(0)
    h, w = cfg.image.height, cfg.image.width
    for shapes in (((2, 3), (7, 31)), ((3, 8), (5, 20)), ((4, 4),)):
        layers = [(rng.integers(0, 256, (*s, 3)).astype(np.float64), rng.uniform(0.2, 1))
                  for s in shapes]
        expected = sum(weight * cv2.resize(cells.astype(np.float32), (w, h),
                                           interpolation=cv2.INTER_CUBIC)
                       for cells, weight in layers)
        got = generator._smooth_colours(layers, h, w, brightest=0.8)
        assert got.dtype == np.float32 and abs(float(got.max()) - 0.8) < 1e-6
        np.testing.assert_allclose(got, 0.8 * expected / expected.max(), atol=3e-3)


def test_smooth_colours_do_not_depend_on_the_order_of_the_sums(cfg, monkeypatch):
    # Every product and partial sum is an integer held exactly in float64, so adding up in
    # another order (here one term at a time, backwards, as no BLAS kernel would) gives the
    # same image to the bit.
    def backwards(a, b):
        out = np.zeros((a.shape[0], b.shape[1]))
        for k in reversed(range(a.shape[1])):
            out += np.multiply.outer(a[:, k], b[k])
        return out

    rng = np.random.default_rng(1)
    layers = [(rng.integers(0, 256, (3, 8, 3)).astype(np.float64), 1.0),
              (rng.integers(0, 256, (7, 31, 3)).astype(np.float64), 0.37)]
    h, w = cfg.image.height, cfg.image.width
    blas = generator._smooth_colours(layers, h, w)

    class Backwards(np.ndarray):
        def __matmul__(self, other):
            return backwards(np.asarray(self), np.asarray(other))

    real = generator._cubic_weights
    monkeypatch.setattr(generator, "_cubic_weights", lambda *a: real(*a).view(Backwards))
    monkeypatch.setattr(generator.np, "hstack", lambda parts: np.concatenate(
        [np.asarray(p) for p in parts], axis=1).view(Backwards))
    assert np.array_equal(generator._smooth_colours(layers, h, w), blas)


def test_rotation_is_opencvs_warp_affine():
    # The fixed-point rotation turns the same way about the same centre as cv2.warpAffine with
    # cv2.getRotationMatrix2D: the two differ only by the rounding of source positions (at most
    # a 32nd of a pixel), never by a glyph's worth of ink.
    rng = np.random.default_rng(2)
    for trial in range(60):
        canvas = np.zeros((80, 70), np.uint8)
        cv2.putText(canvas, "A0Kg"[trial % 4], (18, 52), cv2.FONT_HERSHEY_TRIPLEX,
                    float(rng.uniform(0.6, 1.2)), 255, int(rng.integers(1, 4)), cv2.LINE_AA)
        centre = (float(rng.uniform(25, 45)), float(rng.uniform(30, 50)))
        degrees = float(rng.uniform(-12, 12))
        squeeze = 0.78 if trial % 3 == 0 else 1.0
        matrix = cv2.getRotationMatrix2D(centre, degrees, 1.0)
        matrix[:, 0] *= squeeze
        matrix[:, 2] += matrix[:, 0] * centre[0] * (1 / squeeze - 1)
        expected = cv2.warpAffine(canvas, matrix, (70, 80), flags=cv2.INTER_LINEAR)
        turned = generator._rotate(canvas, centre, degrees, squeeze)
        diff = np.abs(turned.astype(int) - expected)
        assert diff.max() <= 24 and diff.mean() < 0.5, (trial, diff.max(), diff.mean())


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


def test_a_killed_generate_job_leaves_no_worker_writing(tmp_path):
    # Killed mid-run (a cron timeout, the OOM killer), the job's worker processes used to go
    # on writing the ranges already queued to them, thousands of captchas, also into the
    # folder of the run that replaced it. Now they stop once their job is gone.
    out = tmp_path / "out"
    job = subprocess.Popen([sys.executable, "-m", "jobs.generate", "--output", str(out),
                            "--count", "40000", "--workers", "2"], cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while (not out.is_dir() or len(os.listdir(out)) < 40) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert job.poll() is None, "the job ended before it could be killed"
    finally:
        job.send_signal(signal.SIGKILL)
        job.wait()
    time.sleep(1.5)                      # a worker finishes the captcha it was drawing
    written = len(os.listdir(out))
    time.sleep(1.5)
    assert len(os.listdir(out)) == written < 40000


def test_a_range_drawn_in_the_jobs_own_process_is_written(tmp_path):
    # Where joblib cannot start processes it runs the ranges in the job's own process, whose
    # parent is the shell: that is no sign of a killed job (ending there would end the job,
    # quietly, so it runs in a process of its own here).
    code = ("import os; from core import generator; from core.config import load_config; "
            "g = load_config().generate; "
            f"n = generator._write_range({str(tmp_path)!r}, 0, 3, 3, 5, g.labels, g.image, "
            "'classic', (), os.getpid()); print('wrote', n)")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert proc.stdout.strip() == "wrote 3", proc.stderr
    assert len(os.listdir(tmp_path)) == 3


def test_generator_workers_start_without_torch():
    """jobs.generate's worker processes import core.generator only; torch (~2 s per process
    on the reference box) must not come with it."""
    assert imported_by("import core.generator", "torch") == []


def test_the_generate_job_does_not_import_torch(tmp_path):
    # Drawing captchas needs no network: the job starts in under a second instead of the
    # three torch's import takes (cron generates test sets; the tests start it many times).
    code = ("from jobs.generate import main; "
            f"main(['--output', {str(tmp_path / 'out')!r}, '--count', '2', '--workers', '1'])")
    assert imported_by(code, "torch") == []
    assert len(list((tmp_path / "out").iterdir())) == 2
