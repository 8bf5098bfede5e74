import math

import pytest
import torch
from torch import nn

from core.data import CaptchaDataset, make_loader, scan_folder
from core.engine import Metrics, evaluate, train_one_epoch
from core.labels import build_codec
from core.models import ModelSpec, build_model
from core.training import fit, split_items

CPU = torch.device("cpu")


def test_split_is_seeded_and_has_the_seed_sizes():
    items = list(range(100))
    train, val = split_items(items, 0.1, seed=3)
    assert (len(train), len(val)) == (90, 10)
    assert sorted(train + val) == items
    assert split_items(items, 0.1, seed=3) == (train, val)
    assert split_items(items, 0.1, seed=4) != (train, val)


def test_split_refuses_too_few_items():
    with pytest.raises(ValueError, match="at least 2"):
        split_items([1], 0.1, 0)


def test_metrics_score_by_position_and_skip_unlabelled():
    m = Metrics()
    m.add(["ABCD", "ABCD", None, "WXYZ"], ["ABCD", "ABCE", "QQQQ", "WXY"])
    assert (m.scored, m.captchas_correct, m.chars_correct, m.chars_total) == (3, 1, 10, 12)
    assert m.position_correct == [3, 3, 3, 1]
    assert math.isclose(m.char_accuracy, 10 / 12) and math.isclose(m.captcha_accuracy, 1 / 3)


class FixedAnswers(nn.Module):
    """Answers each image with the labels of a lookup table, by the image's first pixel."""

    def __init__(self, codec, answers):
        super().__init__()
        self.logits = torch.stack([nn.functional.one_hot(torch.as_tensor(codec.encode(a)),
                                                         codec.output_classes).float() * 20
                                   for a in answers])

    def forward(self, images):
        return self.logits[images[:, 0, 0, 0].long()]


def test_evaluate_scores_labelled_readable_images_only(tmp_path, cfg):
    import cv2
    import numpy as np
    codec = build_codec(cfg.labels)
    # Four images whose first pixel says which answer the fake model gives.
    for k, name in enumerate(["ABCD_0.png", "WXYZ_1.png", "unlabelled.png", "QQQQ_3.png"]):
        img = np.zeros((cfg.image.height, cfg.image.width, 3), np.uint8)
        img[0, 0] = k
        cv2.imwrite(str(tmp_path / name), img)
    (tmp_path / "ZZZZ_4.png").write_bytes(b"broken")
    items = scan_folder(tmp_path, cfg.labels)
    loader = make_loader(CaptchaDataset(tmp_path, items, codec, cfg.image), 2, 0, CPU)
    model = FixedAnswers(codec, ["ABCD", "WXYA", "AAAA", "QQQQ"])
    seen = []
    m = evaluate(model, loader, codec, CPU, on_batch=lambda b, d: seen.extend(d.texts))
    assert (m.images, m.errors, m.scored) == (5, 1, 3)
    assert (m.captchas_correct, m.chars_correct) == (2, 11)
    assert len(seen) == 5
    # One position of WXYZ is wrong by a logit margin of 20; the rest are right.
    assert math.isclose(m.loss, 20 / 3, rel_tol=1e-3)


def test_train_one_epoch_learns(captcha_dir, cfg):
    codec = build_codec(cfg.labels)
    items = scan_folder(captcha_dir, cfg.labels)[:32]
    loader = make_loader(CaptchaDataset(captcha_dir, items, codec, cfg.image), 32, 0, CPU)
    torch.manual_seed(0)
    model = build_model("seed", ModelSpec.from_config(cfg.image, codec))
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-3)
    first = train_one_epoch(model, loader, codec, optimizer, CPU)
    for _ in range(60):
        last = train_one_epoch(model, loader, codec, optimizer, CPU)
    assert last < 0.5 * first


def test_fit_reports_improvements_and_keeps_the_best_epochs_weights(captcha_dir, cfg):
    codec = build_codec(cfg.labels)
    items = scan_folder(captcha_dir, cfg.labels)
    train, val = split_items(items, 0.25, seed=0)
    loader = lambda its: make_loader(CaptchaDataset(captcha_dir, its, codec, cfg.image), 16, 0, CPU)
    torch.manual_seed(0)
    model = build_model("seed", ModelSpec.from_config(cfg.image, codec))
    improved_at, saved = [], {}

    def on_epoch(row, improved):
        if improved:
            improved_at.append(row.epoch)
            saved[row.epoch] = {k: v.clone() for k, v in model.state_dict().items()}

    result = fit(model, loader(train), loader(val), codec, CPU, epochs=3, lr=1e-3,
                 on_epoch=on_epoch)
    assert improved_at[0] == 1 and result.best_epoch == improved_at[-1]
    assert [r.epoch for r in result.history] == [1, 2, 3]
    best = saved[result.best_epoch]
    assert all(torch.equal(best[k], v) for k, v in result.best_state.items())
