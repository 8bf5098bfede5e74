"""Settings, loaded once in layers: the defaults below, then a YAML file, then the command line.

    cfg = load_config("config.yaml", overrides={"train.epochs": 5})
    cfg.labels.alphabet, cfg.image.height, cfg.train.epochs

The result is frozen and passed down as arguments. An unknown key or a value of the wrong type
is refused with a ConfigError that names the key and where it came from.

What a model reads (alphabet, label lengths, how labels are written in file names, input size)
is "auto" by default: the training job finds it in the folder it trains on (core.discover) and
stores it in the checkpoint, and every job that loads a checkpoint takes it from there
(with_model_settings). A value written in the config pins it instead. The seed's alphabet,
captcha length and image size are written down once, here, as the generator's own settings
(GenerateConfig); everything else derives its sizes from a Config.
"""
from __future__ import annotations

import dataclasses
import math
import re
import string
import unicodedata
from dataclasses import dataclass, field, fields, is_dataclass
from pathlib import Path
from typing import Any, Mapping

import yaml

DEFAULT_CONFIG_PATH = Path(__file__).resolve().parent.parent / "config.yaml"
CASE_FOLDS = ("upper", "lower", "none")
LR_SCHEDULES = ("constant", "cosine", "warmup-cosine")
OPTIMIZERS = ("adam", "adamw")
CROPS = ("content", "packed", "none")                # image.crop, besides auto
CAPTCHA_STYLES = ("classic", "seed2016", "fonts")   # generate.style (core.generator, core.seed_style, core.text_style)
AUTO = "auto"
CPU_PRECISIONS = ("float32", "bfloat16")   # runtime.cpu_precision besides auto (core.runtime)
# Settings that may be "auto" besides a value of their type: what it means is decided where the
# setting is used (the number of epochs from the number of images, the alphabet from the file
# names, ...).
_AUTO_TYPES: dict[str, type] = {"train.epochs": int, "labels.alphabet": str, "labels.case": str,
                                "labels.separator": str, "image.height": int, "image.width": int,
                                "image.crop": str, "runtime.in_memory": bool}
SEED_ALPHABET = string.ascii_uppercase + string.digits


def case_fold(text: str, case: str) -> str:
    """`text` folded to `case` ("upper", "lower" or "none") one character at a time, a character
    whose other case is more than one character left as it is. A label is a row of glyphs, not
    a word: `ß` upper-cased is `SS` and Turkish `İ` lower-cased is `i` and a combining dot,
    which would change a label's length and put characters in it that its image does not show;
    and str.lower() writes a Greek `Σ` that ends a word as `ς`, elsewhere `σ`, which would make
    one glyph two classes by where it stands."""
    if case == "none":
        return text
    if text.isascii():     # (no special cases there: the whole string at once, faster)
        return text.upper() if case == "upper" else text.lower()
    return "".join(f if len(f := getattr(c, case)()) == 1 else c for c in text)


class ConfigError(ValueError):
    """A setting that cannot be used; the message names the key and its source."""


@dataclass(frozen=True)
class LabelConfig:
    alphabet: str = AUTO
    length: int | str = AUTO   # a number of characters, a range "MIN-MAX" (e.g. "4-8") or auto
    case: str = AUTO
    separator: str = AUTO

    @property
    def resolved(self) -> bool:
        return AUTO not in (self.alphabet, self.length, self.case, self.separator)

    @property
    def min_length(self) -> int:
        return length_bounds(self.length)[0]

    @property
    def max_length(self) -> int:
        return length_bounds(self.length)[1]

    @property
    def fixed_length(self) -> bool:
        return self.min_length == self.max_length


def length_bounds(length: int | str) -> tuple[int, int]:
    """(shortest, longest) label a `labels.length` setting allows: 4 -> (4, 4), "4-8" -> (4, 8)."""
    if isinstance(length, int):
        return length, length
    if length == AUTO:
        raise ValueError("labels.length is auto: find it in a folder first (core.discover)")
    low, _, high = str(length).partition("-")
    return int(low), int(high or low)


@dataclass(frozen=True)
class ImageConfig:
    height: int | str = AUTO
    width: int | str = AUTO
    crop: str = AUTO    # "content": each image cut to its text first (core.images.content_box);
                        # "packed": also its wide gaps closed (crop_to_content); "none"

    @property
    def resolved(self) -> bool:
        return AUTO not in (self.height, self.width, self.crop)


@dataclass(frozen=True)
class ModelConfig:
    arch: str = "crnn"
    pretrained: str = AUTO   # a new model's starting weights: auto (the bundled base when it fits), none, or a checkpoint


@dataclass(frozen=True)
class TrainConfig:
    epochs: int | str = AUTO     # auto: `passes` passes, within min_samples..max_samples images
    passes: int = 15
    pass_pixels: int = 12_288    # auto: inputs larger than this (height x width) get fewer passes
    min_samples: int = 150_000
    max_samples: int = 1_500_000
    batch_size: int = 32
    lr: float = 0.003
    lr_schedule: str = "warmup-cosine"
    optimizer: str = "adamw"
    weight_decay: float = 0.01
    clip: float = 5.0            # largest gradient norm; 0: no clipping
    precision: str = "float32"   # the forward pass on a CPU: float32, or bfloat16 (autocast)
    settled: int = 5             # stop once every validation captcha is read this many epochs
    val_fraction: float = 0.1
    seed: int = 0

    def epochs_for(self, images: int, pixels: int = 0) -> int:
        """The number of epochs for `images` training images of `pixels` pixels each (0:
        unknown): `epochs` where it is a number; for auto, `passes` passes over them, scaled by
        pass_pixels / pixels where the input is larger (a training step's time grows with the
        input's area, so an image costs about as much as at pass_pixels; docs/performance.md),
        but at least min_samples and at most max_samples images seen (a thousand images need
        many more passes than a hundred thousand)."""
        if self.epochs != AUTO:
            return int(self.epochs)
        passes = self.passes
        if self.pass_pixels and pixels > self.pass_pixels:
            passes = self.passes * self.pass_pixels / pixels
        seen = min(max(passes * images, self.min_samples), self.max_samples)
        return max(1, math.ceil(seen / max(1, images)))


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
    shear: float = 0.15
    blur: float = 0.2
    noise: float = 0.03
    warp: float = 0.0
    share: float = 1.0


@dataclass(frozen=True)
class RuntimeConfig:
    device: str = "auto"
    batch_size: int = -1
    workers: int = -1
    commit_batches: int = 32
    shard_files: int = 1024       # run_batch --cluster: files per task (one commit each)
    in_memory: bool | str = AUTO  # training holds the decoded images: true, false, auto (if they fit)
    fast_png: bool = True         # PNG image data inflated by core.images' checked fast path
    cpu_precision: str = AUTO     # what run_batch predicts in on a CPU: auto, float32, bfloat16


@dataclass(frozen=True)
class GenerateConfig:
    """The synthetic captchas' own settings: the seed post's alphabet, length and size."""
    workers: int = -1
    alphabet: str = SEED_ALPHABET
    length: int | str = 4      # a number or a range "MIN-MAX" (each label's length drawn in it)
    height: int = 46
    width: int = 284
    style: str = "seed2016"   # the seed's real captchas as they look; the bundled model's
    fonts: str = ""            # style fonts: a folder of more TrueType/OpenType faces to draw in

    @property
    def labels(self) -> LabelConfig:
        """How the generated files are named: LABEL_index.png, upper case unless the alphabet
        has lower-case letters."""
        upper = all(c == case_fold(c, "upper") for c in self.alphabet)
        return LabelConfig(self.alphabet, self.length, "upper" if upper else "none", "_")

    @property
    def image(self) -> ImageConfig:
        return ImageConfig(self.height, self.width, "none")


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
    sources: dict[str, str] = {}   # dotted key -> where its value came from
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
        cfg = _merge(cfg, data, prefix="", source=str(path), sources=sources)
    if overrides:
        nested: dict[str, Any] = {}
        for key, value in overrides.items():
            if value is None:
                continue
            section, _, name = key.partition(".")
            nested.setdefault(section, {})[name] = value
        cfg = _merge(cfg, nested, prefix="", source="command line", sources=sources)
    _check_values(cfg, sources)
    return cfg


def config_to_dict(cfg: Config) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


def dump_config(cfg: Config) -> str:
    """The resolved configuration as YAML, loadable again with load_config."""
    return yaml.safe_dump(config_to_dict(cfg), sort_keys=False, allow_unicode=True)


def _merge(obj: Any, data: Mapping[str, Any], prefix: str, source: str,
           sources: dict[str, str]) -> Any:
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
            changes[key] = _merge(current, value, f"{dotted}.", source, sources)
        else:
            changes[key] = _coerce(value, type(current), dotted, source)
            sources[dotted] = source
    return dataclasses.replace(obj, **changes)


_LENGTH_RANGE = re.compile(r"\s*(\d+)\s*(?:-\s*(\d+)\s*)?")


def _coerce(value: Any, expected: type, key: str, source: str) -> Any:
    if key in ("labels.length", "generate.length"):
        return _coerce_length(value, key, source)
    if key in _AUTO_TYPES:
        if value == AUTO:
            return AUTO
        expected = _AUTO_TYPES[key]
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


def _coerce_length(value: Any, key: str, source: str) -> int | str:
    """A label length: a whole number, a range written "MIN-MAX" ("4-8"; "4-4" is 4), or auto."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if value == AUTO:
        return AUTO
    match = _LENGTH_RANGE.fullmatch(value) if isinstance(value, str) else None
    if match is None:
        raise ConfigError(f"{source}: '{key}' must be a number, a range like \"4-8\" or auto, "
                          f"got {_describe(value)}")
    low, high = int(match[1]), int(match[2] or match[1])
    if high < low:
        raise ConfigError(f"{source}: '{key}' range {value!r} ends before it starts")
    return low if low == high else f"{low}-{high}"


def _describe(value: Any) -> str:
    return f"{type(value).__name__} {value!r}"


def _check_labels(labels: LabelConfig, bad, prefix: str = "labels.") -> None:
    """A label setting's values, those that are not auto."""
    alphabet = labels.alphabet
    if alphabet != AUTO:
        if not alphabet:
            raise bad(f"{prefix}alphabet", "must not be empty")
        if len(set(alphabet)) != len(alphabet):
            raise bad(f"{prefix}alphabet", f"repeats characters: {alphabet!r}")
        composed = unicodedata.normalize("NFC", alphabet)
        if composed != alphabet:
            # labels are compared in NFC (core.labels.label_form): a decomposed letter here
            # would match no label
            raise bad(f"{prefix}alphabet", "has letters written decomposed (a letter and a "
                                           "combining mark); write them composed (Unicode NFC): "
                                           f"{composed!r}")
    if labels.case not in CASE_FOLDS + (AUTO,):
        raise bad(f"{prefix}case", f"must be one of {', '.join(CASE_FOLDS)} or auto, got "
                                   f"{labels.case!r}")
    if labels.case not in ("none", AUTO) and alphabet != AUTO:
        folded = {case_fold(c, labels.case) for c in alphabet}
        if folded != set(alphabet):
            raise bad(f"{prefix}case", f"is {labels.case!r}, but the alphabet has characters "
                                       "that case folding would never produce; use 'none'")
    if AUTO not in (labels.separator, alphabet) and set(labels.separator) & set(alphabet):
        raise bad(f"{prefix}separator", "must not contain alphabet characters")
    if labels.length != AUTO and labels.min_length < 1:
        raise bad(f"{prefix}length", f"must be at least 1, got {labels.min_length}")


def _check_values(cfg: Config, sources: Mapping[str, str]) -> None:
    def bad(key: str, why: str) -> ConfigError:
        # the source of the value (e.g. a coverage list's), or of a key the check is about
        source = sources.get(key.partition("[")[0], "the defaults")
        return ConfigError(f"{source}: '{key}' {why}")

    _check_labels(cfg.labels, bad)
    if cfg.generate.length == AUTO:
        raise bad("generate.length", "must be a number or a range like \"4-8\" (the "
                                     "generator draws labels, it finds nothing)")
    _check_labels(cfg.generate.labels, bad, "generate.")
    sizes = [("train.epochs", 1 if cfg.train.epochs == AUTO else cfg.train.epochs),
             ("train.passes", cfg.train.passes),
             ("train.min_samples", cfg.train.min_samples),
             ("train.max_samples", cfg.train.max_samples),
             ("train.batch_size", cfg.train.batch_size),
             ("runtime.commit_batches", cfg.runtime.commit_batches),
             ("runtime.shard_files", cfg.runtime.shard_files),
             ("review.calibration_bins", cfg.review.calibration_bins),
             ("generate.height", cfg.generate.height), ("generate.width", cfg.generate.width)]
    sizes += [(f"image.{k}", getattr(cfg.image, k)) for k in ("height", "width")
              if getattr(cfg.image, k) != AUTO]
    for key, value in sizes:
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
    if cfg.image.crop not in (AUTO, *CROPS):
        raise bad("image.crop", f"must be auto, {', '.join(CROPS[:-1])} or {CROPS[-1]}, "
                                f"got {cfg.image.crop!r}")
    if cfg.generate.style not in CAPTCHA_STYLES:
        raise bad("generate.style", f"must be one of {', '.join(CAPTCHA_STYLES)}, "
                                    f"got {cfg.generate.style!r}")
    if cfg.generate.fonts and cfg.generate.style != "fonts":
        raise bad("generate.fonts", f"is drawn only in style fonts, not {cfg.generate.style!r}")
    if cfg.train.optimizer not in OPTIMIZERS:
        raise bad("train.optimizer", f"must be one of {', '.join(OPTIMIZERS)}, "
                                     f"got {cfg.train.optimizer!r}")
    for key, value in (("train.weight_decay", cfg.train.weight_decay),
                       ("train.clip", cfg.train.clip), ("train.settled", cfg.train.settled),
                       ("train.pass_pixels", cfg.train.pass_pixels)):
        if value < 0:
            raise bad(key, f"must be 0 or more, got {value}")
    if cfg.train.max_samples < cfg.train.min_samples:
        raise bad("train.max_samples", f"must be at least train.min_samples "
                                       f"({cfg.train.min_samples}), got {cfg.train.max_samples}")
    if cfg.train.precision not in CPU_PRECISIONS:
        raise bad("train.precision", f"must be {' or '.join(CPU_PRECISIONS)}, "
                                     f"got {cfg.train.precision!r}")
    if cfg.runtime.cpu_precision not in (AUTO, *CPU_PRECISIONS):
        raise bad("runtime.cpu_precision", f"must be auto, {' or '.join(CPU_PRECISIONS)}, "
                                           f"got {cfg.runtime.cpu_precision!r}")
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
    for name in ("shift_x", "shift_y", "scale", "brightness", "contrast", "colour", "shear",
                 "blur", "noise", "warp"):
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
