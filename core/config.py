"""Settings, loaded once in layers: the defaults below, then a YAML file, then the command line.

    cfg = load_config("config.yaml", overrides={"train.epochs": 5})
    cfg.labels.alphabet, cfg.image.height, cfg.train.epochs

The result is frozen and passed down as arguments. An unknown key or a value of the wrong type
is refused with a ConfigError that names the key and where it came from. The defaults here are
the only place the seed's alphabet, captcha length and image size are written down; everything
else derives its sizes from a Config.
"""
from __future__ import annotations

import dataclasses
import re
import string
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"
CASE_FOLDS = ("upper", "lower", "none")
LR_SCHEDULES = ("constant", "cosine")


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the key and its source."""


@dataclass(frozen=True)
class LabelConfig:
    alphabet: str = string.ascii_uppercase + string.digits
    length: int = 4
    case: str = "upper"
    separator: str = "_"


@dataclass(frozen=True)
class ImageConfig:
    height: int = 46
    width: int = 284


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "wide-pos"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 30
    batch_size: int = 32
    lr: float = 0.001
    lr_schedule: str = "constant"
    val_fraction: float = 0.1
    seed: int = 0


@dataclass(frozen=True)
class AugmentConfig:
    enabled: bool = True
    shift_x: float = 0.03
    shift_y: float = 0.08
    rotate_degrees: float = 4.0
    scale: float = 0.07
    brightness: float = 0.12
    contrast: float = 0.2
    colour: float = 0.08
    share: float = 1.0


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"
    batch_size: int = -1
    workers: int = -1
    commit_batches: int = 32


@dataclass(frozen=True)
class GenerateConfig:
    workers: int = -1


@dataclass(frozen=True)
class ReviewConfig:
    threshold: float = 0.9
    coverage: tuple[float, ...] = (0.5, 0.8, 0.9, 0.95, 0.99)
    calibration_bins: int = 15
    max_suspects: int = 1000
    gallery: int = 48


@dataclass(frozen=True)
class Config:
    labels: LabelConfig = field(default_factory=LabelConfig)
    image: ImageConfig = field(default_factory=ImageConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    generate: GenerateConfig = field(default_factory=GenerateConfig)
    review: ReviewConfig = field(default_factory=ReviewConfig)


def load_config(path: str | Path | None = DEFAULT_CONFIG_PATH,
                overrides: Mapping[str, Any] | None = None) -> Config:
    """Defaults, then the YAML file at `path` (None: defaults only), then `overrides`.

    `overrides` maps dotted keys ("train.epochs") to values; None values are ignored, so a job
    can pass every optional flag straight through.
    """
    cfg = Config()
    if path is not None:
        path = Path(path)
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read config file ({exc.strerror or exc})") from None
        try:
            data = yaml.safe_load(text)
        except yaml.YAMLError as exc:
            raise ConfigError(f"{path}: not valid YAML ({exc})") from None
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: the top level must be a mapping of sections")
        cfg = _merge(cfg, data, prefix="", source=str(path))
    if overrides:
        nested: dict[str, Any] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            section, _, name = key.partition(".")
            nested.setdefault(section, {})[name] = value
        cfg = _merge(cfg, nested, prefix="", source="command line")
    _check_values(cfg)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Config) -> str:
    """The resolved configuration as YAML, loadable again with load_config."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)


def _merge(obj: Any, data: Mapping[str, Any], prefix: str, source: str) -> Any:
    known = {f.name: f for f in fields(obj)}
    changes = {}
    for key, value in data.items():
        dotted = f"{prefix}{key}"
        if key not in known:
            raise ConfigError(f"{source}: unknown key '{dotted}' (known: {', '.join(known)})")
        current = getattr(obj, key)
        if is_dataclass(current):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{dotted}' must be a mapping, got {_describe(value)}")
            changes[key] = _merge(current, value, f"{dotted}.", source)
        else:
            changes[key] = _coerce(value, type(current), dotted, source)
    return dataclasses.replace(obj, **changes)


def _coerce(value: Any, expected: type, key: str, source: str) -> Any:
    # bool is an int in Python; a YAML `true` where a number belongs is a mistake, not a 1.
    if expected is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if expected is tuple:  # a YAML list of numbers, e.g. review.coverage
        if not isinstance(value, list) or not value or not all(
                isinstance(v, (int, float)) and not isinstance(v, bool) for v in value):
            raise ConfigError(f"{source}: '{key}' must be a list of numbers, got {_describe(value)}")
        return tuple(float(v) for v in value)
    if isinstance(value, expected) and not (expected is not bool and isinstance(value, bool)):
        return value
    raise ConfigError(f"{source}: '{key}' must be {expected.__name__}, got {_describe(value)}")


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _check_values(cfg: Config) -> None:
    def bad(key: str, why: str) -> ConfigError:
        return ConfigError(f"'{key}' {why}")

    alphabet = cfg.labels.alphabet
    if not alphabet:
        raise bad("labels.alphabet", "must not be empty")
    if len(set(alphabet)) != len(alphabet):
        raise bad("labels.alphabet", f"repeats characters: {alphabet!r}")
    if cfg.labels.case not in CASE_FOLDS:
        raise bad("labels.case", f"must be one of {', '.join(CASE_FOLDS)}, got {cfg.labels.case!r}")
    if cfg.labels.case != "none":
        folded = {getattr(c, cfg.labels.case)() for c in alphabet}
        if folded != set(alphabet):
            raise bad("labels.case", f"is {cfg.labels.case!r}, but the alphabet has characters that "
                                     "case folding would never produce; use 'none'")
    if cfg.labels.separator and set(cfg.labels.separator) & set(alphabet):
        raise bad("labels.separator", "must not contain alphabet characters")
    for key, value in (("labels.length", cfg.labels.length), ("image.height", cfg.image.height),
                       ("image.width", cfg.image.width), ("train.epochs", cfg.train.epochs),
                       ("train.batch_size", cfg.train.batch_size),
                       ("runtime.commit_batches", cfg.runtime.commit_batches),
                       ("review.calibration_bins", cfg.review.calibration_bins)):
        if value < 1:
            raise bad(key, f"must be at least 1, got {value}")
    if cfg.runtime.batch_size == 0 or cfg.runtime.batch_size < -1:
        raise bad("runtime.batch_size", f"must be -1 (per device) or at least 1, "
                                        f"got {cfg.runtime.batch_size}")
    if not 0.0 < cfg.train.val_fraction < 1.0:
        raise bad("train.val_fraction", f"must be between 0 and 1, got {cfg.train.val_fraction}")
    if cfg.train.lr_schedule not in LR_SCHEDULES:
        raise bad("train.lr_schedule", f"must be one of {', '.join(LR_SCHEDULES)}, "
                                       f"got {cfg.train.lr_schedule!r}")
    if cfg.train.lr <= 0:
        raise bad("train.lr", f"must be positive, got {cfg.train.lr}")
    if not re.fullmatch(r"auto|cpu|cuda(:\d+)?", cfg.runtime.device):
        raise bad("runtime.device", f"must be auto, cpu, cuda or cuda:N, got {cfg.runtime.device!r}")
    for key, value in (("review.threshold", cfg.review.threshold),
                       *((f"review.coverage[{i}]", v) for i, v in enumerate(cfg.review.coverage))):
        if not 0.0 <= value <= 1.0:
            raise bad(key, f"must be a probability between 0 and 1, got {value}")
    for key, value in (("review.max_suspects", cfg.review.max_suspects),
                       ("review.gallery", cfg.review.gallery)):
        if value < 0:
            raise bad(key, f"must be 0 or more, got {value}")
    for name in ("shift_x", "shift_y", "scale", "brightness", "contrast", "colour"):
        value = getattr(cfg.augment, name)
        if not 0.0 <= value < 1.0:
            raise bad(f"augment.{name}", f"must be a fraction from 0 up to (not including) 1, "
                                         f"got {value}")
    if not 0.0 <= cfg.augment.share <= 1.0:
        raise bad("augment.share", f"must be a fraction between 0 and 1, got {cfg.augment.share}")
    if not 0.0 <= cfg.augment.rotate_degrees <= 45.0:
        raise bad("augment.rotate_degrees", f"must be between 0 and 45, "
                                            f"got {cfg.augment.rotate_degrees}")
    for key, value in (("runtime.workers", cfg.runtime.workers),
                       ("generate.workers", cfg.generate.workers)):
        if value < -1:
            raise bad(key, f"must be -1 (one per core), 0 (in process) or more, got {value}")
