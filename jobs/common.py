"""What every job shares: the --config/--device/--workers flags, loading the configuration,
logging, and failing with one clear line and exit code 2."""
from __future__ import annotations

import argparse
import logging
import sys
from typing import Any, NoReturn

import torch

from core.config import DEFAULT_CONFIG_PATH, Config, ConfigError, load_config
from core.runtime import resolve_device, share_cores

EXIT_USAGE = 2


def add_config_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", default=None,
                        help=f"settings file (default: {DEFAULT_CONFIG_PATH.name} beside the code)")


def add_runtime_args(parser: argparse.ArgumentParser) -> None:
    """--device and --workers, overriding runtime.device and runtime.workers."""
    parser.add_argument("--device", default=None,
                        help="auto, cpu, cuda or cuda:N (default: runtime.device, auto)")
    parser.add_argument("--workers", type=int, default=None,
                        help="data-loading processes; -1: all cores with CUDA, half of them on "
                             "CPU (default: runtime.workers)")


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


def job_device(cfg: Config) -> torch.device:
    """The device the settings ask for (exit 2 if it is not there); on CPU, torch's threads get
    the cores the decoding workers leave free."""
    try:
        device = resolve_device(cfg.runtime.device)
    except ValueError as exc:
        fail(str(exc))
    share_cores(device, cfg.runtime.workers)
    return device


def setup_logging(quiet: bool = False) -> None:
    logging.basicConfig(level=logging.WARNING if quiet else logging.INFO, stream=sys.stderr,
                        format="%(asctime)s %(levelname)s %(message)s",
                        datefmt="%Y-%m-%dT%H:%M:%S")
