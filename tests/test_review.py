"""What a person reads after a run: the label audit, the review queue, accuracy at coverage,
calibration."""
import copy
import math
import os

import numpy as np
import pytest
import torch

from core.calibration import (CalibrationBins, calibrate, fit_temperature, reading_loss,
                              scaled_ece)
from core.checkpoint import load_checkpoint, save_checkpoint
from core.config import LabelConfig
from core.data import CaptchaDataset, make_loader, scan_folder
from core.generator import generate_folder, plant_wrong_labels
from core.labels import build_codec
from core.inference import for_inference
from tests.conftest import ROOT, read_csv, run_batch

pytestmark = pytest.mark.slow   # jobs run end to end, models trained: pytest -m 'not slow' skips it

BUNDLED = ROOT / "models" / "default.pt"


@pytest.fixture(scope="module")
def audited(tmp_path_factory, cfg):
    """500 captchas, 10 of them renamed with one wrong character, read by the bundled model."""
    tmp = tmp_path_factory.mktemp("audit")
    folder = tmp / "in"
    generate_folder(folder, 500, seed=91, labels=cfg.labels, image=cfg.image, workers=1,
                    style=cfg.generate.style)
    planted = plant_wrong_labels(folder, 10, seed=3, labels=cfg.labels)
    (folder / "unlabelled.png").write_bytes((folder / sorted(os.listdir(folder))[0]).read_bytes())
    proc = run_batch("--input", folder, "--output", tmp / "runs", "--run-id", "r", "--quiet")
    assert proc.returncode == 0, proc.stderr
    return tmp / "runs" / "r", planted


def test_mislabelled_files_rank_first_among_suspects(audited):
    # The acceptance (36 of 40 planted in the top 60 of 2,000) scaled down to 500 files:
    # at least 9 of the 10 renamed files among the 15 most suspicious.
    run, planted = audited
    suspects = read_csv(run / "suspect_labels.csv")
    top = [r["path"] for r in suspects[:15]]
    assert len(set(top) & planted) >= 9
    assert [int(r["rank"]) for r in suspects] == list(range(1, len(suspects) + 1))
    assert all(r["label"] != r["prediction"] and r["corrected"] == "" for r in suspects)
    probs = [float(r["label_probability"]) for r in suspects]
    assert probs == sorted(probs)


def test_review_queue_holds_every_unsure_prediction_and_coverage_adds_up(audited, cfg):
    run, _ = audited
    rows = read_csv(run / "predictions.csv")
    unsure = [r["path"] for r in rows if r["status"] == "ok"
              and float(r["confidence"]) < cfg.review.threshold]
    review = read_csv(run / "review.csv")
    assert [r["path"] for r in review] == unsure   # labelled or not, in input order
    assert any(r["label"] == "" for r in rows if r["path"] == "unlabelled.png")
    summary = read_csv(run / "summary.csv")[0]
    assert int(summary["review"]) == len(review)
    labelled = [r for r in rows if r["correct"] != ""]
    for t in cfg.review.coverage:
        above = [r for r in labelled if float(r["confidence"]) >= t]
        assert float(summary[f"coverage_at_{t:g}"]) == pytest.approx(len(above) / len(labelled),
                                                                       abs=1e-6)
        if above:
            assert float(summary[f"accuracy_at_{t:g}"]) == pytest.approx(
                sum(r["correct"] == "1" for r in above) / len(above), abs=1e-6)
    bins = CalibrationBins(cfg.review.calibration_bins)
    bins.add([float(r["confidence"]) for r in labelled], [r["correct"] == "1" for r in labelled])
    assert float(summary["ece"]) == pytest.approx(bins.ece, abs=1e-5)


def test_ece_of_known_bins():
    bins = CalibrationBins(10)
    bins.add([0.95] * 10, [True] * 5 + [False] * 5)   # says 95 %, is right half the time
    bins.add([0.55] * 10, [True] * 5 + [False] * 5)   # says 55 %, is right half the time
    assert bins.ece == pytest.approx((10 * 0.45 + 10 * 0.05) / 20)
    assert math.isnan(CalibrationBins(10).ece)


def test_fit_temperature_undoes_a_known_overconfidence():
    # Labels drawn from softmax(z); a model reporting 3z is over-confident by exactly 3.
    torch.manual_seed(0)
    codec = build_codec(LabelConfig(alphabet="ABCDE", length=2))
    z = torch.randn(4000, 2, 5) * 2
    targets = torch.distributions.Categorical(logits=z).sample()
    assert fit_temperature(3 * z, targets, codec) == pytest.approx(3.0, rel=0.1)
    assert scaled_ece(3 * z, targets, codec, 3.0, 15) < scaled_ece(3 * z, targets, codec, 1.0, 15)


def test_calibration_repairs_a_deliberately_overconfident_model(tmp_path, cfg):
    # The same model with its logits x8 makes the same predictions, far too sure of them: the
    # fitted temperature must take that factor back out, whatever the model's own calibration
    # (a fixed ECE bar would depend on how accurate the bundled model is).
    generate_folder(tmp_path, 500, seed=92, labels=cfg.labels, image=cfg.image, workers=1,
                    style=cfg.generate.style)
    codec = build_codec(cfg.labels)
    loader = make_loader(CaptchaDataset(tmp_path, scan_folder(tmp_path, cfg.labels), codec,
                                        cfg.image), 64, 0, torch.device("cpu"))
    bundled = load_checkpoint(BUNDLED, labels=cfg.labels, image=cfg.image).model
    fits = {}
    for factor in (1, 8):
        model = copy.deepcopy(bundled)
        with torch.no_grad():
            for head in model.heads:
                head.weight *= factor
                head.bias *= factor
        fits[factor] = calibrate(model, loader, codec, torch.device("cpu"), 15, min_misread=1)
    plain, hot = fits[1], fits[8]
    assert hot["fitted"] and hot["misread"] == plain["misread"] >= 1
    assert hot["images"] == 500
    assert hot["temperature"] == pytest.approx(8 * plain["temperature"], rel=0.05)
    assert hot["ece_after"] < hot["ece_before"]
    assert hot["ece_after"] == pytest.approx(plain["ece_after"], abs=0.002)


def test_too_few_misread_validation_captchas_leave_the_temperature_at_one(captcha_dir, cfg):
    # With every validation captcha read right, the loss falls ever lower as the temperature
    # does: a fit would make the model sure of everything. Too few errors: no fit.
    codec = build_codec(cfg.labels)
    loader = make_loader(CaptchaDataset(captcha_dir, scan_folder(captcha_dir, cfg.labels), codec,
                                        cfg.image), 16, 0, torch.device("cpu"))
    bundled = load_checkpoint(BUNDLED, labels=cfg.labels, image=cfg.image).model
    cal = calibrate(bundled, loader, codec, torch.device("cpu"), 15, min_misread=49)
    assert not cal["fitted"] and cal["temperature"] == 1.0 and cal["misread"] <= 48
    assert cal["ece_after"] == cal["ece_before"]


def test_temperature_is_stored_and_folded_into_prediction(tmp_path, cfg):
    ckpt = load_checkpoint(BUNDLED, labels=cfg.labels, image=cfg.image)
    save_checkpoint(tmp_path / "t.pt", ckpt.model, ckpt.arch, cfg.labels, cfg.image, {},
                    temperature=2.5)
    hot = load_checkpoint(tmp_path / "t.pt")
    assert hot.temperature == 2.5
    x = torch.randint(0, 256, (3, 3, cfg.image.height, cfg.image.width), dtype=torch.uint8)
    with torch.no_grad():
        plain, scaled = for_inference(hot.model)(x), for_inference(hot.model, hot.temperature)(x)
    torch.testing.assert_close(scaled, plain / 2.5, rtol=1e-4, atol=1e-4)


def test_the_fitted_temperature_is_where_confidence_best_predicts_a_right_reading():
    # A sequence model's label likelihood and its readings' confidence part ways: the fit is
    # judged on the second. Readings drawn from softmax(z) frame by frame (CTC); a model
    # reporting 2z is sure of them by exactly a factor 2.
    torch.manual_seed(3)
    codec = build_codec(LabelConfig(alphabet="ABC", length="1-6"), "ctc")
    z = torch.randn(3000, 6, 4) * 1.5
    paths = torch.distributions.Categorical(logits=z).sample().tolist()
    labels = ["".join("ABC"[k - 1] for i, k in enumerate(p) if k and (i == 0 or k != p[i - 1]))
              for p in paths]
    keep = [i for i, text in enumerate(labels) if text]
    targets = torch.as_tensor(np.stack([codec.encode(labels[i]) for i in keep]))
    logits = 2 * z[keep]
    t = fit_temperature(logits, targets, codec)
    assert t == pytest.approx(2.0, rel=0.15)
    truth = [labels[i] for i in keep]
    best = reading_loss(logits, truth, codec, t)
    assert best < reading_loss(logits, truth, codec, t * 1.1)
    assert best < reading_loss(logits, truth, codec, t / 1.1)
    assert scaled_ece(logits, targets, codec, t, 15) < scaled_ece(logits, targets, codec, 1.0, 15)


def test_the_fit_follows_the_readings_not_the_labels_likelihood():
    # Every captcha read "A" with confidence 0.6, and 60 % are A: calibrated as it stands.
    # The other 40 % are labelled C, which the model gives 1 %: their likelihood alone would
    # call for a much softer model, but softening it would make "A" less sure than it is right.
    codec = build_codec(LabelConfig(alphabet="ABC", length=1))
    logits = torch.log(torch.tensor([0.6, 0.39, 0.01])).repeat(1000, 1, 1)
    targets = torch.tensor([[0]] * 600 + [[2]] * 400)
    assert codec.loss(logits / 2, targets) < codec.loss(logits, targets)   # likelihood: T > 1
    assert fit_temperature(logits, targets, codec) == pytest.approx(1.0, abs=0.02)


def test_lookalike_errors_count_only_misreads_within_a_group():
    from benchmarks.lookalike_errors import lookalike_report
    pairs = [("AB0C", "ABOC"),    # wrong only by O/0: counted
             ("AB0C", "ABOX"),    # also a C/X: not
             ("A1C", "AIC"),      # 1/I
             ("A1C", "A1"),       # a character lost: not
             ("XYZW", "XYZW"), ("XYWW", "XYZW")]   # right; wrong, no look-alike in the label
    r = lookalike_report(pairs, ["O0", "1I"])
    assert (r["captchas"], r["wrong"], r["wrong_only_alike"]) == (6, 5, 2)
    assert (r["plain"], r["plain_accuracy"], r["with_alike"], r["with_alike_accuracy"]) == (
        2, 0.5, 4, 0.0)
