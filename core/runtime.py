"""Where work runs: the torch device and the number of worker processes.

    device = resolve_device(cfg.runtime.device)      # "auto" -> cuda when present, else cpu
    workers = resolve_workers(cfg.runtime.workers)   # -1 -> one per available core
"""
from __future__ import annotations

import os

import torch


def resolve_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return device


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def resolve_workers(workers: int) -> int:
    return available_cores() if workers < 0 else workers
