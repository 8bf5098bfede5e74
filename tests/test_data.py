import os
from multiprocessing.reduction import ForkingPickler
from pathlib import Path

import pytest
import torch

from torch.utils.data import Subset

import core.data
from core.data import (CaptchaDataset, MemoryDataset, hold_in_memory, list_files, make_loader,
                       scan_folder)
from core.labels import IGNORE, build_codec
from core.inference import for_inference
from core.models import ModelSpec, build_model
from core.runtime import available_memory, keep_freed_memory
from tests.conftest import refuse_to_list


def test_list_files_is_recursive_sorted_and_files_only(tmp_path):
    for rel in ("b.png", "a/z.png", "a/b/c.png", "A.png"):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_bytes(b"x")
    (tmp_path / "empty_dir").mkdir()
    os.symlink(tmp_path / "a", tmp_path / "link_to_dir")
    assert list_files(tmp_path) == ["A.png", "a/b/c.png", "a/z.png", "b.png"]


def test_links_to_files_are_listed_broken_ones_too_and_links_to_folders_are_named(tmp_path,
                                                                                   cfg, caplog):
    # Every file the user sees in the folder ends up in the output; a link whose target is
    # gone is an error row that says so, not a silent gap.
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "ABCD_1.png").write_bytes(b"x")
    os.symlink(tmp_path / "a" / "ABCD_1.png", tmp_path / "EFGH_2.png")
    os.symlink(tmp_path / "gone.png", tmp_path / "IJKL_3.png")
    os.symlink(tmp_path / "a", tmp_path / "linked")
    with caplog.at_level("WARNING"):
        items = scan_folder(tmp_path, cfg.labels)
    assert [i.path for i in items] == ["EFGH_2.png", "IJKL_3.png", "a/ABCD_1.png"]
    assert items[1].label == "IJKL"
    assert "linked is a link to a folder, not followed" in caplog.text
    dataset = CaptchaDataset(tmp_path, items, build_codec(cfg.labels), cfg.image)
    assert dataset[1]["error"] == "a link to a file that is not there"
    assert dataset[1]["target"].tolist() == [IGNORE] * cfg.labels.length


def test_dataset_yields_uint8_rgb_and_targets(captcha_dir, cfg):
    items = scan_folder(captcha_dir, cfg.labels)
    codec = build_codec(cfg.labels)
    sample = CaptchaDataset(captcha_dir, items, codec, cfg.image)[0]
    assert sample["image"].shape == (3, cfg.image.height, cfg.image.width)
    assert sample["image"].dtype.is_floating_point is False
    assert codec.label_of(sample["target"].tolist()) == items[0].label
    assert sample["error"] == ""


def test_unreadable_file_becomes_an_error_item_not_an_exception(tmp_path, cfg):
    (tmp_path / "ABCD_1.png").write_bytes(b"")
    (tmp_path / "notes.png").write_text("hello")
    items = scan_folder(tmp_path, cfg.labels)
    dataset = CaptchaDataset(tmp_path, items, build_codec(cfg.labels), cfg.image)
    assert [dataset[i]["error"] for i in range(2)] == ["empty file", "not an image"]
    assert dataset[0]["target"].tolist() == [IGNORE] * cfg.labels.length
    assert items[1].label is None and items[1].unlabelled_why == "wrong length"


@pytest.mark.parametrize("workers", [0, 1])
def test_loader_batches_are_channels_last_and_equal_the_samples(captcha_dir, cfg, workers):
    # With a worker the small fields cross the process boundary as numpy arrays (__getitems__);
    # the loader must hand them over as tensors all the same.
    items = scan_folder(captcha_dir, cfg.labels)
    dataset = CaptchaDataset(captcha_dir, items, build_codec(cfg.labels), cfg.image)
    batch = next(iter(make_loader(dataset, batch_size=5, workers=workers,
                                  device=torch.device("cpu"))))
    assert all(isinstance(batch[k], torch.Tensor) for k in ("image", "target", "index", "resized"))
    assert batch["image"].shape == (5, 3, cfg.image.height, cfg.image.width)
    assert batch["image"].is_contiguous(memory_format=torch.channels_last)
    for i in range(5):
        assert torch.equal(batch["image"][i], dataset[i]["image"])
        assert torch.equal(batch["target"][i], dataset[i]["target"])
    assert batch["index"].tolist() == list(range(5))


@pytest.mark.parametrize("workers", [0, 2])
def test_predicting_workers_give_the_logits_the_main_process_would(captcha_dir, cfg, tmp_path,
                                                                   workers):
    # On CPU the batch runner has its workers decode and predict (make_loader's predict_with);
    # each batch must carry, in order, what the model gives on that batch's images, and the
    # same targets, indices and errors as a plain batch, an unreadable file included.
    for p in sorted(captcha_dir.iterdir())[:9]:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "ABCD_bad.png").write_bytes(b"")
    items = scan_folder(tmp_path, cfg.labels)
    codec = build_codec(cfg.labels)
    dataset = Subset(CaptchaDataset(tmp_path, items, codec, cfg.image), [9, 0, 1, 2, 3, 4, 5])
    model = for_inference(build_model("wide-pos", ModelSpec.from_config(cfg.image, codec)))
    cpu = torch.device("cpu")
    plain = list(make_loader(dataset, 3, 0, cpu))
    predicted = list(make_loader(dataset, 3, workers, cpu, predict_with=model))
    assert [len(b["index"]) for b in predicted] == [3, 3, 1]
    for p, b in zip(predicted, plain):
        assert "image" not in p and isinstance(p["logits"], torch.Tensor)
        with torch.inference_mode():
            assert torch.allclose(p["logits"], model(b["image"]), atol=1e-5)
        for key in ("target", "index", "resized"):
            assert torch.equal(p[key], b[key])
        assert p["error"] == b["error"]
    assert predicted[0]["error"][0] == "empty file"


def test_a_batch_with_unreadable_files_equals_its_items_one_by_one(captcha_dir, cfg, tmp_path):
    # __getitems__ builds the whole batch at once; a bad file in the middle must not shift or
    # spoil its neighbours.
    good = sorted(captcha_dir.iterdir())[:3]
    for p in good:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / good[0].name.replace(".png", "_x.png")).write_bytes(b"")
    (tmp_path / "unlabelled.png").write_bytes(good[1].read_bytes())
    items = scan_folder(tmp_path, cfg.labels)
    dataset = CaptchaDataset(tmp_path, items, build_codec(cfg.labels), cfg.image)
    order = [4, 1, 0, 3, 2]
    batch = dataset.__getitems__(order)
    assert batch["index"].tolist() == order
    for k, i in enumerate(order):
        one = dataset[i]
        assert torch.equal(batch["image"][k], one["image"])
        assert batch["target"][k].tolist() == one["target"].tolist()
        assert batch["error"][k] == one["error"]
        assert bool(batch["resized"][k]) == one["resized"]
    bad = [k for k, i in enumerate(order) if batch["error"][k]]
    assert [items[order[k]].path for k in bad] == [good[0].name.replace(".png", "_x.png")]
    assert batch["image"][bad[0]].max() == 0
    assert batch["target"][bad[0]].tolist() == [IGNORE] * cfg.labels.length


def test_a_folder_that_cannot_be_listed_is_named_in_a_warning(tmp_path, cfg, monkeypatch, caplog):
    # Its files cannot have rows; the run must at least say which folder was left out.
    (tmp_path / "locked").mkdir()
    (tmp_path / "locked" / "ABCD_1.png").write_bytes(b"x")
    (tmp_path / "EFGH_2.png").write_bytes(b"x")
    refuse_to_list(monkeypatch, "locked")
    unlistable = []
    with caplog.at_level("WARNING"):
        items = scan_folder(tmp_path, cfg.labels, unlistable)
    assert [item.path for item in items] == ["EFGH_2.png"]
    assert unlistable == ["locked"]
    assert "cannot list folder" in caplog.text and "locked" in caplog.text
    assert "Permission denied" in caplog.text


@pytest.mark.slow
def test_handing_batches_over_does_not_grow_the_workers_memory(captcha_dir, cfg):
    # What a DataLoader worker does with each batch: build it, then pickle it for the main
    # process (which moves its images to shared memory). Filling a torch.empty batch through a
    # numpy view made this grow by ~1 MB per batch (160 MB over 5,000 captchas); it must stay
    # flat. Resident memory is read from /proc, so Linux only.
    status = Path("/proc/self/status")
    if not status.exists():
        pytest.skip("needs /proc")
    keep_freed_memory()  # as the jobs run: freed memory is kept, so any growth is real use

    def rss_mib():
        return int(status.read_text().split("VmRSS:")[1].split()[0]) / 1024

    items = scan_folder(captcha_dir, cfg.labels)
    dataset = CaptchaDataset(captcha_dir, items, build_codec(cfg.labels), cfg.image)
    indices = list(range(len(items)))[:32]

    def hand_over(batches):
        in_flight = []
        for _ in range(batches):
            in_flight.append(ForkingPickler.dumps(dataset.__getitems__(indices)))
            del in_flight[:-4]  # the loader's prefetch keeps a few batches alive

    hand_over(20)
    before = rss_mib()
    hand_over(150)
    assert rss_mib() - before < 40, "memory grew while handing batches over"


@pytest.mark.parametrize("workers", [0, 2])
def test_images_held_in_memory_give_the_batches_decoding_gives(captcha_dir, cfg, tmp_path,
                                                                workers):
    good = sorted(captcha_dir.iterdir())[:5]
    for p in good:
        (tmp_path / p.name).write_bytes(p.read_bytes())
    (tmp_path / "broken_x.png").write_bytes(b"not a png")
    (tmp_path / "unlabelled.png").write_bytes(good[1].read_bytes())
    items = scan_folder(tmp_path, cfg.labels)
    dataset = CaptchaDataset(tmp_path, items, build_codec(cfg.labels), cfg.image)
    held = MemoryDataset(dataset, workers)
    assert len(held) == len(dataset) == 7
    order = [6, 2, 0, 5, 1, 4, 3]
    a, b = dataset.__getitems__(order), held.__getitems__(order)
    assert torch.equal(a["image"], b["image"]) and a["image"].stride() == b["image"].stride()
    for key in ("target", "index", "resized"):
        assert a[key].tolist() == b[key].tolist(), key
    assert a["error"] == b["error"] and sum(1 for e in b["error"] if e) == 1
    # through the loader the job uses, shuffled: the same batches as from the files
    batches = [make_loader(d, 3, 0, torch.device("cpu"), shuffle=True, seed=5)
               for d in (dataset, held)]
    for x, y in zip(*batches):
        assert torch.equal(x["image"], y["image"]) and torch.equal(x["index"], y["index"])
        assert torch.equal(x["target"], y["target"]) and x["error"] == y["error"]


def test_holding_in_memory_is_decided_by_the_setting_or_the_memory_available(cfg, monkeypatch):
    need = MemoryDataset.nbytes(1000, cfg.image)
    assert need == 1000 * cfg.image.height * cfg.image.width * 3
    assert hold_in_memory(True, 1000, cfg.image)[0] is True
    assert hold_in_memory(False, 1000, cfg.image)[0] is False
    monkeypatch.setattr(core.data, "available_memory", lambda: 4 * need)
    assert hold_in_memory("auto", 1000, cfg.image)[0] is True
    monkeypatch.setattr(core.data, "available_memory", lambda: 4 * need - 1)
    hold, why = hold_in_memory("auto", 1000, cfg.image)
    assert not hold and "over a quarter" in why
    monkeypatch.setattr(core.data, "available_memory", lambda: None)
    assert hold_in_memory("auto", 1000, cfg.image)[0] is False


def test_available_memory_is_a_plausible_number_of_bytes():
    available = available_memory()
    if available is None:
        pytest.skip("this system tells neither MemAvailable nor its free pages")
    assert 2**20 < available < 2**50
