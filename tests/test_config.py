import dataclasses

import pytest
import torch
import yaml

from core.config import DEFAULT_CONFIG_PATH, Config, ConfigError, dump_config, load_config
from core.runtime import AUTO_BATCH_SIZE, resolve_batch_size


def write(tmp_path, text):
    path = tmp_path / "c.yaml"
    path.write_text(text)
    return path


def test_config_file_matches_defaults_and_names_every_setting():
    # config.yaml documents every setting; its values are the defaults in core/config.py.
    assert load_config(DEFAULT_CONFIG_PATH) == Config()
    data = yaml.safe_load(DEFAULT_CONFIG_PATH.read_text())
    for section in dataclasses.fields(Config):
        keys = {f.name for f in dataclasses.fields(getattr(Config(), section.name))}
        assert set(data[section.name]) == keys


def test_unknown_key_is_refused_naming_key_and_file(tmp_path):
    path = write(tmp_path, "train:\n  epoch: 3\n")
    with pytest.raises(ConfigError, match=r"c\.yaml.*unknown key 'train\.epoch'"):
        load_config(path)


def test_unknown_section_is_refused(tmp_path):
    with pytest.raises(ConfigError, match="unknown key 'trian'"):
        load_config(write(tmp_path, "trian: {}\n"))


def test_wrong_type_is_refused_naming_key(tmp_path):
    with pytest.raises(ConfigError, match=r"c\.yaml.*'train\.epochs' must be int, got str"):
        load_config(write(tmp_path, "train:\n  epochs: ten\n"))


def test_bool_is_not_accepted_as_a_number(tmp_path):
    with pytest.raises(ConfigError, match="'train.epochs' must be int, got bool"):
        load_config(write(tmp_path, "train:\n  epochs: true\n"))
    with pytest.raises(ConfigError, match="'labels.length' must be a number, a range"):
        load_config(write(tmp_path, "labels:\n  length: true\n"))


@pytest.mark.parametrize("written, length, bounds", [
    ("4", 4, (4, 4)), ("'4-8'", "4-8", (4, 8)), ("' 5 - 6 '", "5-6", (5, 6)), ("'6-6'", 6, (6, 6))])
def test_label_length_is_a_number_or_a_range(tmp_path, written, length, bounds):
    labels = load_config(write(tmp_path, f"labels:\n  length: {written}\n")).labels
    assert labels.length == length and (labels.min_length, labels.max_length) == bounds
    assert labels.fixed_length == (bounds[0] == bounds[1])


@pytest.mark.parametrize("written, why", [("'8-4'", "ends before it starts"),
                                          ("'0-3'", "at least 1"), ("four", "a number, a range")])
def test_bad_label_lengths_are_refused(tmp_path, written, why):
    with pytest.raises(ConfigError, match=why):
        load_config(write(tmp_path, f"labels:\n  length: {written}\n"))


def test_int_is_accepted_for_a_float(tmp_path):
    assert load_config(write(tmp_path, "train:\n  lr: 1\n")).train.lr == 1.0


def test_command_line_overrides_file(tmp_path):
    path = write(tmp_path, "train:\n  epochs: 3\n  seed: 5\n")
    cfg = load_config(path, {"train.epochs": 7, "train.seed": None})
    assert (cfg.train.epochs, cfg.train.seed) == (7, 5)


def test_override_with_wrong_type_names_the_command_line():
    with pytest.raises(ConfigError, match="command line.*'image.height'"):
        load_config(None, {"image.height": "tall"})


def test_bad_values_are_refused():
    with pytest.raises(ConfigError, match="labels.alphabet"):
        load_config(None, {"labels.alphabet": "AAB"})
    with pytest.raises(ConfigError, match="labels.alphabet.*decomposed.*'АЙ'"):   # И + breve
        load_config(None, {"labels.alphabet": "АИ\u0306"})
    with pytest.raises(ConfigError, match="labels.case"):   # upper folding can never give 'a'
        load_config(None, {"labels.alphabet": "abc", "labels.case": "upper"})
    # but it keeps `ß` (its upper case is two letters): an alphabet with it may fold to upper
    german = load_config(None, {"labels.alphabet": "ABSß", "labels.case": "upper"})
    assert german.labels.case == "upper"
    with pytest.raises(ConfigError, match="generate.length"):
        load_config(None, {"generate.length": 0})
    with pytest.raises(ConfigError, match="runtime.device"):
        load_config(None, {"runtime.device": "gpu"})
    with pytest.raises(ConfigError, match="runtime.cpu_precision"):
        load_config(None, {"runtime.cpu_precision": "float16"})
    with pytest.raises(ConfigError, match="train.precision"):
        load_config(None, {"train.precision": "auto"})
    for size in (0, -2):
        with pytest.raises(ConfigError, match="runtime.batch_size"):
            load_config(None, {"runtime.batch_size": size})


def test_a_bad_value_names_the_file_or_flag_it_came_from(tmp_path):
    path = write(tmp_path, "train:\n  lr: -0.1\n")
    with pytest.raises(ConfigError, match=r"^.*c\.yaml: 'train\.lr' must be positive"):
        load_config(path)
    with pytest.raises(ConfigError, match=r"^command line: 'train\.lr' must be positive"):
        load_config(path, {"train.lr": -1.0})
    # a check across two keys names where the value it refuses came from
    path = write(tmp_path, "train:\n  min_samples: 10\n")
    with pytest.raises(ConfigError, match=r"^command line: 'train\.max_samples' must be at least"):
        load_config(path, {"train.max_samples": 5})
    with pytest.raises(ConfigError, match=r"^the defaults: 'train\.max_samples' must be at least"):
        load_config(None, {"train.min_samples": 10**9})


@pytest.mark.parametrize("key,value", [("augment.shift_x", -0.1), ("augment.scale", 1.0),
                                       ("augment.colour", 2.5), ("augment.rotate_degrees", 90.0),
                                       ("augment.share", 1.5), ("augment.share", -0.2)])
def test_augmentation_limits_are_checked(key, value):
    with pytest.raises(ConfigError, match=rf"'{key}' must be"):
        load_config(None, {key: value})
    assert load_config(None, {"augment.enabled": False}).augment.enabled is False


def test_what_a_model_reads_is_auto_unless_pinned(tmp_path):
    cfg = load_config(None)
    assert not cfg.labels.resolved and not cfg.image.resolved and cfg.train.epochs == "auto"
    pinned = load_config(write(tmp_path, "labels:\n  alphabet: 0123456789\n  length: 5\n"
                                         "image:\n  height: 32\n"))
    assert (pinned.labels.alphabet, pinned.labels.length, pinned.labels.case) == (
        "0123456789", 5, "auto")
    assert (pinned.image.height, pinned.image.width) == (32, "auto")
    # the generator keeps the seed's settings as its own
    assert (cfg.generate.labels.alphabet, cfg.generate.labels.length) == (
        "ABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789", 4)
    assert (cfg.generate.image.height, cfg.generate.image.width) == (46, 284)


@pytest.mark.parametrize("images, epochs", [(100, 1500), (1000, 150), (12_300, 15),
                                            (200_000, 8), (10_000_000, 1)])
def test_auto_epochs_scale_with_the_number_of_images(images, epochs):
    train = load_config(None).train
    assert train.epochs_for(images) == epochs
    assert load_config(None, {"train.epochs": 7}).train.epochs_for(images) == 7


def test_auto_epochs_follow_the_passes_setting():
    assert load_config(None, {"train.passes": 30}).train.epochs_for(12_300) == 30
    with pytest.raises(ConfigError, match="train.passes"):
        load_config(None, {"train.passes": 0})


@pytest.mark.parametrize("height, width, epochs", [(48, 180, 15), (48, 256, 15), (46, 284, 15),
                                                   (48, 320, 12), (64, 384, 8)])
def test_auto_epochs_pass_fewer_times_over_larger_inputs(height, width, epochs):
    # 15 passes up to pass_pixels (256x48): beyond it, about the same time per image
    train = load_config(None).train
    assert train.epochs_for(60_000, height * width) == epochs
    assert load_config(None, {"train.pass_pixels": 0}).train.epochs_for(
        60_000, height * width) == 15
    assert load_config(None, {"train.epochs": 7}).train.epochs_for(60_000, height * width) == 7
    # the floor of images seen still holds for a small folder
    assert train.epochs_for(1_000, height * width) == 150
    with pytest.raises(ConfigError, match="train.pass_pixels"):
        load_config(None, {"train.pass_pixels": -1})


def test_batch_size_minus_one_picks_per_device_and_a_number_wins():
    cpu, cuda = torch.device("cpu"), torch.device("cuda")
    assert resolve_batch_size(-1, cpu) == AUTO_BATCH_SIZE["cpu"]
    assert resolve_batch_size(-1, cuda) == AUTO_BATCH_SIZE["cuda"]
    assert resolve_batch_size(7, cuda) == 7


def test_dumped_config_loads_back_equal(tmp_path):
    cfg = load_config(None, {"labels.alphabet": "0123456789", "labels.length": 6})
    assert load_config(write(tmp_path, dump_config(cfg))) == cfg


def test_cpu_workers_leave_cores_for_the_model(monkeypatch):
    import core.runtime as runtime
    monkeypatch.setattr(runtime, "available_cores", lambda: 8)
    cpu = torch.device("cpu")
    assert runtime.resolve_workers(-1, cpu) == 4          # training: the model runs in main
    assert runtime.resolve_workers(-1, cpu, predicting=True) == 8   # workers run it themselves
    assert runtime.resolve_workers(-1, torch.device("cuda")) == 8
    assert runtime.resolve_workers(3, cpu) == 3
    before = torch.get_num_threads()
    try:
        assert runtime.share_cores(cpu, 6) == 2 and torch.get_num_threads() == 2
        assert runtime.share_cores(cpu, 8) == 1
        assert runtime.share_cores(cpu, -1) == 1   # a worker per core; main keeps the books
        assert runtime.share_cores(cpu, 0) == 8    # no workers: main predicts on every core
    finally:
        torch.set_num_threads(before)


def test_review_settings_are_checked(tmp_path):
    cfg = load_config(write(tmp_path, "review:\n  coverage: [0.5, 1]\n  threshold: 0.75\n"))
    assert cfg.review.coverage == (0.5, 1.0) and cfg.review.threshold == 0.75
    for text, match in (("review:\n  coverage: [0.5, x]\n", r"'review\.coverage' must be a list"),
                        ("review:\n  coverage: 0.5\n", r"'review\.coverage' must be a list"),
                        ("review:\n  coverage: [0.5, 1.5]\n", r"'review\.coverage\[1\]'"),
                        ("review:\n  threshold: 2\n", r"'review\.threshold' must be a prob"),
                        ("review:\n  gallery: -1\n", r"'review\.gallery' must be 0 or more")):
        with pytest.raises(ConfigError, match=match):
            load_config(write(tmp_path, text))
