"""What every job shares: the --config/--device/--workers flags, loading the configuration,
and failing with one clear line and exit code 2."""
from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any, NoReturn

from core.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from core.runtime import keep_freed_memory, resolve_device, share_cores

if TYPE_CHECKING:   # torch takes ~3 s to import: jobs.generate, which never needs it, is spared
    import torch

EXIT_USAGE = 2    # bad usage, configuration, input folder or model
EXIT_ALERT = 3    # the run finished and wrote everything, but a quality threshold was breached
EXIT_LOCKED = 4   # another run holds the output root


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help=f"settings file (default: {DEFAULT_CONFIG_PATH.name} beside the code)")


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """--device and --workers, overriding runtime.device and runtime.workers."""
    parser.add_argument("--device", default=None,
                        help="auto, cpu, cuda or cuda:N (default: runtime.device, auto)")
    parser.add_argument("--workers", type=int, default=None,
                        help="DataLoader processes (on CPU, run_batch's also predict); -1: one "
                             "per core, half of them for CPU training (default: "
                             "runtime.workers)")


def fraction(text: str) -> float:
    """An argument type: a number from 0 to 1."""
    value = float(text)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text} is not a fraction between 0 and 1 (e.g. 0.95)")
    return value


def percentage_points(text: str) -> float:
    """An argument type: a number of percentage points, 0 to 100."""
    value = float(text)
    if not 0.0 <= value <= 100.0:
        raise argparse.ArgumentTypeError(f"{text} is not a number of percentage points (0-100)")
    return value


def fail(message: str) -> NoReturn:
    print(f"error: {message}", file=sys.stderr)
    sys.exit(EXIT_USAGE)


def job_config(args: argparse.Namespace, overrides: dict[str, Any]) -> Config:
    """Defaults, then the config file, then `overrides` (dotted keys from the flags; None
    values are ignored); a bad setting ends the job with exit code 2."""
    path = args.config if args.config is not None else (
        DEFAULT_CONFIG_PATH if DEFAULT_CONFIG_PATH.exists() else None)
    try:
        return load_config(path, overrides)
    except ConfigError as exc:
        fail(str(exc))


def job_device(cfg: Config, share: bool = True, onnx: bool = False) -> torch.device:
    """The device the settings ask for (exit 2 if it is not there). On CPU with share=True
    (prediction, where the workers decode and predict) the main process's torch gets the cores
    the workers leave free; training, where the backward pass dominates, keeps them all
    (seed-pos training on the 2-core box: 4.7 batches/s with 1 thread, 7.3 with 2). Either
    way freed memory is kept for the next batch (core.runtime.keep_freed_memory)."""
    keep_freed_memory()
    try:
        device = resolve_device(cfg.runtime.device)
    except ValueError as exc:
        fail(str(exc))
    if share:
        share_cores(device, cfg.runtime.workers)
    return device
