"""Pretrained features: a new model starts from a model that has already learnt to read printed
text (model.pretrained), not from random weights.

    base = pretrained_for(cfg, say)           # a Checkpoint, or None (none fits, or none asked)
    copied = transfer(base, model, codec)     # its weights, where they fit, into `model`

Every tensor whose name and shape agree is copied (the convolutions, their batch norms, the
sequence layer); the output layer row by row, for each class both models read (the CTC blank
and every character the two alphabets share), so that a user's alphabet, any subset or
superset of the base model's, starts from what the base learnt of those characters and from
nothing for the others. The bundled base models (models/ARCH-base.pt: crnn-base.pt and
crnn-fast-base.pt, docs/pretraining.md) read a few hundred thousand printed texts of every kind
(generate.style: fonts).
"""
from __future__ import annotations

from pathlib import Path
from typing import Callable

import torch

from .checkpoint import Checkpoint, CheckpointError, load_checkpoint
from .config import AUTO, Config

BUNDLED_BASES = Path(__file__).resolve().parent.parent / "models"   # ARCH-base.pt
NONE = "none"


class PretrainedError(ValueError):
    """A model.pretrained that was asked for by name and cannot be used; says why."""


def pretrained_for(cfg: Config, say: Callable[[str], None]) -> Checkpoint | None:
    """The base model `cfg` asks for (model.pretrained: auto, none or a path) if it fits the
    model `cfg` trains: the same architecture and input height and colour channels. auto is
    the bundled one of that architecture when it loads and fits, else nothing (said); a path
    that does not load or fit is a PretrainedError."""
    setting = cfg.model.pretrained
    if setting == NONE:
        return None
    path = bundled_base(cfg.model.arch) if setting == AUTO else Path(setting)
    if setting == AUTO and not path.exists():
        say(f"starting from random weights: no pretrained base for {cfg.model.arch} "
            f"({path.name})")
        return None
    try:
        base = load_checkpoint(path)
    except CheckpointError as exc:
        if setting == AUTO:   # e.g. a base left from before the architecture changed
            say(f"not starting from the pretrained {path.name}: {exc}")
            return None
        raise PretrainedError(f"model.pretrained: {exc}") from None
    why = _misfit(base, cfg)
    if why is None:
        return base
    if setting == AUTO:
        say(f"not starting from the pretrained {path.name}: {why}")
        return None
    raise PretrainedError(f"model.pretrained {path} cannot start this model: {why}")


def bundled_base(arch: str) -> Path:
    return BUNDLED_BASES / f"{arch}-base.pt"


def _misfit(base: Checkpoint, cfg: Config) -> str | None:
    if base.arch != cfg.model.arch:
        return f"it is a {base.arch}, this model a {cfg.model.arch}"
    if base.image.height != cfg.image.height:
        return (f"it reads images {base.image.height} pixels high, this model "
                f"{cfg.image.height} (image.height)")
    return None


def class_names(codec) -> list[str | None]:
    """What each output class of `codec` reads: a character, or None for the CTC blank."""
    names: list[str | None] = list(codec.alphabet)
    return [None] + names if codec.kind == "ctc" else names


def transfer(base: Checkpoint, model: torch.nn.Module, codec) -> int:
    """Copy `base`'s weights into `model` (built for `codec`) where they fit, the output layers
    by class (module docstring); returns how many of `model`'s tensors came from `base`."""
    source, target = base.model.state_dict(), model.state_dict()
    theirs = {name: k for k, name in enumerate(class_names(base.codec))}
    rows = [(k, theirs[name]) for k, name in enumerate(class_names(codec)) if name in theirs]
    mine, from_base = torch.tensor([r[0] for r in rows]), torch.tensor([r[1] for r in rows])
    copied = 0
    for name, tensor in target.items():
        if name not in source:
            continue
        given = source[name]
        if name.startswith("heads.") and given.shape[1:] == tensor.shape[1:] and len(rows):
            tensor[mine] = given[from_base].to(tensor.dtype)   # a row per class (and its bias)
        elif given.shape == tensor.shape:
            tensor.copy_(given)
        else:
            continue
        copied += 1
    model.load_state_dict(target)
    return copied
