"""Checkpoints: one self-describing file per trained model.

    save_checkpoint("models/default.pt", model, arch="seed-gap", labels=cfg.labels,
                    image=cfg.image, summary={...})
    ckpt = load_checkpoint("models/default.pt", labels=cfg.labels, image=cfg.image)
    ckpt.model, ckpt.arch, ckpt.labels, ckpt.image, ckpt.summary, ckpt.sha256, ckpt.temperature

The file holds the weights plus everything needed to rebuild the model (architecture name,
alphabet, length, image size, codec kind, format version) and the training summary, so loading
needs no flags. It is read with torch.load(weights_only=True): only tensors and plain data,
never pickled code. Passing `labels`/`image` makes the load refuse a model that reads another
alphabet, length or image size than the caller expects.
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

from .config import ImageConfig, LabelConfig
from .files import atomic_write
from .labels import build_codec
from .models import ModelSpec, build_model

FORMAT_VERSION = 1
CODEC = "fixed-length"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used; the message says why."""


@dataclass
class Checkpoint:
    model: nn.Module
    arch: str
    labels: LabelConfig
    image: ImageConfig
    summary: dict[str, Any]
    path: str
    sha256: str
    temperature: float = 1.0   # calibration: predict with logits / temperature (1: none fitted)


def save_checkpoint(path: str | Path, model: nn.Module, arch: str, labels: LabelConfig,
                    image: ImageConfig, summary: dict[str, Any], temperature: float = 1.0) -> None:
    payload = {
        "format_version": FORMAT_VERSION,
        "arch": arch,
        "codec": CODEC,
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
        raise CheckpointError(f"{path} is not a readable checkpoint ({type(exc).__name__}: "
                              f"{str(exc).splitlines()[0] if str(exc) else ''})") from None
    if not isinstance(payload, dict) or "format_version" not in payload:
        raise CheckpointError(f"{path} is not a captcha checkpoint (no format_version)")
    if payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(f"{path} has format version {payload['format_version']}; this "
                              f"program reads up to {FORMAT_VERSION}")
    if payload.get("codec") != CODEC:
        raise CheckpointError(f"{path} uses codec {payload.get('codec')!r}, not {CODEC!r}")
    try:
        ckpt_labels = LabelConfig(**payload["labels"])
        ckpt_image = ImageConfig(**payload["image"])
    except (KeyError, TypeError) as exc:
        raise CheckpointError(f"{path} has a damaged description ({exc})") from None
    _check_expected(path, ckpt_labels, ckpt_image, labels, image)
    codec = build_codec(ckpt_labels)
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
    return Checkpoint(model, payload["arch"], ckpt_labels, ckpt_image, payload.get("summary", {}),
                      str(path), hashlib.sha256(data).hexdigest(), temperature)


def _check_expected(path: Path, got_labels: LabelConfig, got_image: ImageConfig,
                    want_labels: LabelConfig | None, want_image: ImageConfig | None) -> None:
    problems = []
    if want_labels is not None:
        if got_labels.alphabet != want_labels.alphabet:
            problems.append(f"alphabet {got_labels.alphabet!r} (config: {want_labels.alphabet!r})")
        if got_labels.length != want_labels.length:
            problems.append(f"length {got_labels.length} (config: {want_labels.length})")
    if want_image is not None and (got_image.height, got_image.width) != (
            want_image.height, want_image.width):
        problems.append(f"image size {got_image.height}x{got_image.width} "
                        f"(config: {want_image.height}x{want_image.width})")
    if problems:
        raise CheckpointError(f"model {path} does not fit the config: it reads "
                              + "; ".join(problems))
