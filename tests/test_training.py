import math
from types import SimpleNamespace

import pytest
import torch
from torch import nn

from core.data import CaptchaDataset, make_loader, scan_folder
from core.engine import Metrics, align, edit_distance, evaluate, train_one_epoch
from core.labels import build_codec
from core.models import ModelSpec, build_model
from core.augment import build_augment
from core import fit as fit_module
from core.fit import EpochResult, fit, is_settled, split_items

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
    assert m.char_errors == 2 and math.isclose(m.char_error_rate, 2 / 12)


def test_characters_are_scored_by_edit_distance_for_labels_of_any_length():
    # A character missed or added is one error, not a shift of every one after it.
    m = Metrics()
    m.add(["7W4M6G8A", "ABCDE", "XYZ", "ABCD"], ["7W4MG8A", "ABCDEF", "XYZ", ""])
    assert (m.scored, m.captchas_correct, m.chars_total) == (4, 1, 20)
    assert m.char_errors == 1 + 1 + 0 + 4 and m.chars_correct == 7 + 4 + 3 + 0
    assert math.isclose(m.char_error_rate, 6 / 20)


@pytest.mark.parametrize("expected, predicted, pairs", [
    ("ABCD", "ABXD", [("A", "A"), ("B", "B"), ("C", "X"), ("D", "D")]),
    ("ABCD", "ABD", [("A", "A"), ("B", "B"), ("C", ""), ("D", "D")]),
    ("ABC", "ABCE", [("A", "A"), ("B", "B"), ("C", "C"), ("", "E")]),
    ("AB", "", [("A", ""), ("B", "")])])
def test_alignment_pairs_each_character_with_what_was_read(expected, predicted, pairs):
    assert align(expected, predicted) == pairs
    assert edit_distance(expected, predicted) == sum(a != b for a, b in pairs)


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


@pytest.mark.slow
@pytest.mark.parametrize("precision", ["float32", "bfloat16"])
def test_train_one_epoch_learns(captcha_dir, cfg, precision):
    codec = build_codec(cfg.labels)
    items = scan_folder(captcha_dir, cfg.labels)[:32]
    loader = make_loader(CaptchaDataset(captcha_dir, items, codec, cfg.image), 32, 0, CPU)

    def start():
        torch.manual_seed(0)
        model = build_model("seed", ModelSpec.from_config(cfg.image, codec))
        return model, torch.optim.Adam(model.parameters(), lr=1e-3)

    model, optimizer = start()
    first = train_one_epoch(model, loader, codec, optimizer, CPU, precision=precision)
    for _ in range(60):
        last = train_one_epoch(model, loader, codec, optimizer, CPU, precision=precision)
    assert last < 0.5 * first
    # train.precision bfloat16: the forward pass under autocast (another first loss than
    # float32's), the weights still float32
    assert all(p.dtype == torch.float32 for p in model.parameters())
    if precision == "bfloat16":
        model, optimizer = start()
        assert first != train_one_epoch(model, loader, codec, optimizer, CPU)


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


def _epoch(epoch, correct, images=10):
    share = correct / images if images else 0.0
    return EpochResult(epoch, 1.0, 1.0, correct, images, share, correct, images, share, 1.0)


def test_settled_means_every_validation_captcha_read_in_the_last_epochs():
    history = [_epoch(1, 9), _epoch(2, 10), _epoch(3, 10)]
    assert is_settled(history, 2) and not is_settled(history, 3)
    assert not is_settled(history, 0)                       # 0: never stop early
    assert not is_settled(history, 4)                       # fewer epochs than asked
    assert not is_settled([_epoch(1, 0, images=0)], 1)      # nothing to validate on


def test_fit_stops_once_settled_and_keeps_the_best_of_it(captcha_dir, cfg, monkeypatch):
    codec = build_codec(cfg.labels)
    items = scan_folder(captcha_dir, cfg.labels)
    train, val = split_items(items, 0.25, seed=0)
    loader = lambda its: make_loader(CaptchaDataset(captcha_dir, its, codec, cfg.image), 16, 0, CPU)
    model = build_model("seed", ModelSpec.from_config(cfg.image, codec))
    losses = iter([3.0, 2.0, 1.0, 1.5, 1.2, 1.1, 0.5, 0.4])
    read = iter([5, 8, 10, 10, 10, 10, 10, 10])   # every validation captcha from epoch 3 on

    def perfect_from_epoch_3(*args, **kwargs):
        n = next(read)
        return SimpleNamespace(loss=next(losses), chars_correct=4 * n, chars_total=40,
                               char_accuracy=n / 10, captchas_correct=n, scored=10,
                               captcha_accuracy=n / 10)

    monkeypatch.setattr(fit_module, "evaluate", perfect_from_epoch_3)
    result = fit(model, loader(train), loader(val), codec, CPU, epochs=8, lr=1e-3, settled=3)
    assert [r.epoch for r in result.history] == [1, 2, 3, 4, 5]     # 3, 4, 5 all read
    assert result.best_epoch == 3                                   # the lowest loss of them


def test_a_resumed_fit_ends_with_the_weights_of_an_uninterrupted_one(captcha_dir, cfg):
    # The state saved after epoch 1 (weights, optimiser, per-step schedule, the shuffling's and
    # the augmentation's random generators) lets a fresh process go on exactly as the first
    # would have: the same weights after epoch 3, to the bit.
    codec = build_codec(cfg.labels)
    items = scan_folder(captcha_dir, cfg.labels)
    train, val = split_items(items, 0.25, seed=0)
    loader = lambda its, shuffle: make_loader(CaptchaDataset(captcha_dir, its, codec, cfg.image),
                                              8, 0, CPU, shuffle=shuffle, seed=3)
    augment = build_augment(cfg.augment)

    def run(epochs_done_before=None, stop_after=None):
        torch.manual_seed(0)
        model = build_model("seed", ModelSpec.from_config(cfg.image, codec))
        states = []

        def save_state(state):
            states.append(state)
            if stop_after is not None and state.epoch == stop_after:
                raise KeyboardInterrupt   # killed right after the state was written

        try:
            fit(model, loader(train, True), loader(val, False), codec, CPU, epochs=3, lr=3e-3,
                lr_schedule="warmup-cosine", optimizer="adamw", weight_decay=0.01, clip=5.0,
                augment=augment, save_state=save_state, resume_from=epochs_done_before)
        except KeyboardInterrupt:
            pass
        return model, states

    whole, _ = run()
    _, states = run(stop_after=1)
    resumed, after = run(epochs_done_before=states[-1])
    assert [s.epoch for s in after] == [2, 3]
    assert all(torch.equal(v, resumed.state_dict()[k]) for k, v in whole.state_dict().items())
    schedule = [g["lr"] for g in after[-1].optimizer["param_groups"]]
    assert schedule[0] < 1e-5   # the cosine came down to the end, as if never stopped
