"""Checkpoints: one self-describing file per trained model.

    save_checkpoint("models/default.pt", model, arch="seed-gap", labels=cfg.labels,
                    image=cfg.image, summary={...})
    ckpt = load_checkpoint("models/default.pt", labels=cfg.labels, image=cfg.image)
    ckpt.model, ckpt.arch, ckpt.codec, ckpt.labels, ckpt.image, ckpt.summary, ckpt.sha256,
    ckpt.temperature

The file holds the weights plus everything needed to rebuild the model (architecture name,
alphabet, length, image size, codec kind, format version) and the training summary, so loading
needs no flags. It is read with torch.load(weights_only=True): only tensors and plain data,
never pickled code. Passing `labels`/`image` makes the load refuse a model that reads another
alphabet, length, image size or crop than the caller expects.
"""
from __future__ import annotations

import dataclasses
import hashlib
import io
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .config import AUTO, Config, ImageConfig, LabelConfig
from .files import atomic_write
from .labels import build_codec
from .models import ModelSpec, build_model, codec_kind

# 2: label lengths may be a range ("4-8") and the codec may be "ctc"; version 1 files (one
# length, fixed-length codec) load as they are.
# 3: image.crop (content or none); 4: image.crop may be packed. A file is written with the
# lowest version that describes it: a program from before packed reads the others as before,
# and refuses (rather than reads whole) the images of a model trained packed.
FORMAT_VERSION = 4


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why."""


@dataclass
class Checkpoint:
    model: nn.Module
    arch: str
    codec: Any          # core.labels.FixedLengthCodec or CTCCodec, for these labels
    labels: LabelConfig
    image: ImageConfig
    summary: dict[str, Any]
    path: str
    sha256: str
    temperature: float = 1.0   # calibration: predict with logits / temperature (1: none fitted)
    engine: str = "PyTorch"    # what runs the model: PyTorch, or ONNX Runtime (core.onnx_model)


def save_checkpoint(path: str | Path, model: nn.Module, arch: str, labels: LabelConfig,
                    image: ImageConfig, summary: dict[str, Any], temperature: float = 1.0) -> None:
    if not (labels.resolved and image.resolved):   # a model reads something definite
        raise ValueError(f"cannot save a model whose labels or image settings are still auto: "
                         f"{labels}, {image}")
    payload = {
        "format_version": FORMAT_VERSION if image.crop == "packed" else 3,
        "arch": arch,
        "codec": codec_kind(arch),
        "labels": dataclasses.asdict(labels),
        "image": dataclasses.asdict(image),
        "summary": summary,
        "temperature": float(temperature),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
    }
    with atomic_write(path) as f:
        torch.save(payload, f)


def load_checkpoint(path: str | Path, labels: LabelConfig | None = None,
                    image: ImageConfig | None = None,
                    device: torch.device | str = "cpu") -> Checkpoint:
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise CheckpointError(f"cannot read model {path}: {exc.strerror or exc}") from None
    try:
        payload = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    except Exception as exc:  # torch raises many types for a damaged or foreign file
        # torch's first sentence only: its weights_only message goes on to suggest loading
        # the file as code, which a nightly job must never do
        first = (str(exc).splitlines() or [""])[0].split(". ")[0][:120]
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: "
                              f"{first})") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path} is not a captcha checkpoint (no format_version)")
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {payload['format_version']}; this "
                              f"program reads up to {FORMAT_VERSION}")
    try:
        kind = codec_kind(payload["arch"])
        ckpt_labels = LabelConfig(**payload["labels"])
        # checkpoints from before image.crop read whole images
        ckpt_image = ImageConfig(**{"crop": "none", **payload["image"]})
        codec = build_codec(ckpt_labels, kind)
    except (KeyError, TypeError, ValueError) as exc:
        raise CheckpointError(f"{path} has a damaged description ({exc})") from None
    if payload.get("codec") != kind:
        raise CheckpointError(f"{path} uses codec {payload.get('codec')!r}, but architecture "
                              f"{payload['arch']!r} reads with {kind!r}")
    check_expected(path, ckpt_labels, ckpt_image, labels, image)
    try:
        model = build_model(payload["arch"], ModelSpec.from_config(ckpt_image, codec))
        model.load_state_dict(payload["state_dict"])
    except (ValueError, RuntimeError, KeyError) as exc:
        raise CheckpointError(f"{path}: weights do not fit architecture "
                              f"{payload.get('arch')!r} ({str(exc).splitlines()[0]})") from None
    temperature = payload.get("temperature", 1.0)
    if not isinstance(temperature, float) or not temperature > 0:
        raise CheckpointError(f"{path} has a damaged description (temperature {temperature!r})")
    model.to(device).eval()
    return Checkpoint(model, payload["arch"], codec, ckpt_labels, ckpt_image,
                      payload.get("summary", {}), str(path), hashlib.sha256(data).hexdigest(),
                      temperature)


def check_expected(path: Path, got_labels: LabelConfig, got_image: ImageConfig,
                    want_labels: LabelConfig | None, want_image: ImageConfig | None) -> None:
    """What the config pins (anything but auto) must be what the model reads."""
    problems = []
    if want_labels is not None:
        if want_labels.alphabet != AUTO and set(want_labels.alphabet) != set(got_labels.alphabet):
            # the characters must be the same; their order is the model's own class order
            problems.append(f"alphabet {got_labels.alphabet!r} (config: {want_labels.alphabet!r})")
        if want_labels.length not in (AUTO, got_labels.length):
            problems.append(f"length {got_labels.length} (config: {want_labels.length})")
    if want_image is not None:
        for side in ("height", "width", "crop"):
            if getattr(want_image, side) not in (AUTO, getattr(got_image, side)):
                problems.append(f"image {side} {getattr(got_image, side)} (config: "
                                f"{getattr(want_image, side)})")
    if problems:
        raise CheckpointError(f"model {path} does not fit the config: it reads "
                              + "; ".join(problems))


def load_model(path: str | Path, labels: LabelConfig | None = None,
               image: ImageConfig | None = None,
               device: torch.device | str = "cpu") -> Checkpoint:
    """A model to predict with: a checkpoint, or an ONNX file exported from one (by its
    `.onnx` suffix; core.onnx_model), loaded and checked as load_checkpoint does."""
    from .onnx_model import is_onnx_path, load_onnx   # onnxruntime only where it is used

    loader = load_onnx if is_onnx_path(path) else load_checkpoint
    return loader(path, labels=labels, image=image, device=device)


def with_model_settings(cfg: Config, ckpt: Checkpoint) -> Config:
    """`cfg` with what the model reads filled in from its checkpoint: alphabet, lengths and
    input size always (load_checkpoint has refused a model that disagrees with the config on
    them), and the case folding and separator of the file names where the config leaves them
    auto (a folder named otherwise than the one trained on can pin its own)."""
    labels = ckpt.labels
    if cfg.labels.case != AUTO:
        labels = dataclasses.replace(labels, case=cfg.labels.case)
    if cfg.labels.separator != AUTO:
        labels = dataclasses.replace(labels, separator=cfg.labels.separator)
    return dataclasses.replace(cfg, labels=labels, image=ckpt.image)
