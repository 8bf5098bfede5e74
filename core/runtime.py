"""Where work runs: the torch device and the number of worker processes.

    device = resolve_device(cfg.runtime.device)      # "auto" -> cuda when present, else cpu
    workers = resolve_workers(cfg.runtime.workers, device)  # -1 -> what suits the device
    share_cores(device, cfg.runtime.workers)          # CPU prediction: threads on cores left
    batch = resolve_batch_size(cfg.runtime.batch_size, device)  # -1 -> what suits the device
    precision = resolve_precision(cfg.runtime.cpu_precision, device)  # what prediction computes in
    keep_freed_memory()                               # glibc: no page faults per batch
    freeze_loaded_objects()                           # the collector skips what is loaded
"""
from __future__ import annotations

import ctypes
import gc
import os
import platform
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch

# torch is imported where a device is resolved, not here: the generator's worker processes need
# only resolve_workers, and importing torch would cost each of them ~2 s of a short job's wall
# time (core.generator imports nothing from torch).


def resolve_device(name: str) -> torch.device:
    import torch

    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device {name!r} asked for, but CUDA is not available on this machine")
    return device


def amx_bfloat16() -> bool:
    """Whether this CPU has AMX tiles (Intel Xeon since Sapphire Rapids), which compute
    bfloat16 convolutions and matrix products in hardware: there the runner reads 1.3-1.6
    times as many images per second under bfloat16 autocast (docs/performance.md).
    Elsewhere bfloat16 is converted in software or by AVX-512 BF16 (not measured): no faster."""
    import torch

    probe = getattr(torch.cpu, "_is_amx_tile_supported", None)   # torch's own dispatch test
    if probe is not None:
        return bool(probe())
    # a private function: where a torch lacks it, the kernel's CPU flags say the same
    return {"amx_tile", "amx_bf16"} <= set(_cpuinfo("flags").split())


def resolve_precision(cpu_precision: str, device: torch.device) -> str:
    """What prediction computes in on `device`: on CUDA float16 (core.engine's autocast); on a
    CPU runtime.cpu_precision, whose auto is bfloat16 where the CPU has AMX, else float32."""
    if device.type == "cuda":
        return "float16"
    if cpu_precision == "auto":
        return "bfloat16" if amx_bfloat16() else "float32"
    return cpu_precision


def read_on(device: torch.device, precision: str) -> str:
    """Where and how a run read, for its summary and log: "cpu", "cpu (bfloat16)", "cuda:0
    (float16)"."""
    return str(device) if precision == "float32" else f"{device} ({precision})"


def available_cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


def cpu_name() -> str:
    """The processor's model name where the system says it (benchmarks print it: speeds and
    training times depend on it), else the machine type."""
    return (_cpuinfo("model name", "cpu model") or platform.processor()
            or platform.machine())


CPUINFO = "/proc/cpuinfo"


def _cpuinfo(*fields: str) -> str:
    """The first processor's value of the first of `fields` that Linux's /proc/cpuinfo gives;
    "" where there is none (another system)."""
    try:
        with open(CPUINFO, encoding="utf-8") as f:
            for line in f:
                name, _, value = line.partition(":")
                if name.strip().lower() in fields:
                    return value.strip()
    except OSError:
        pass
    return ""


def resolve_workers(workers: int, device: torch.device | None = None,
                    predicting: bool = False) -> int:
    """-1: every core gets a worker, except where a CPU model runs in the main process
    (training): then half of them (at least one) decode and the other half run the model (see
    share_cores). When the workers predict as well as decode (`predicting`: the batch runner on
    CPU, core.data.PredictingDataset), every core."""
    if workers >= 0:
        return workers
    cores = available_cores()
    if device is not None and device.type == "cpu" and not predicting:
        return max(1, cores // 2)
    return cores


def share_cores(device: torch.device, workers: int) -> int:
    """Prediction on CPU: give the main process's torch the cores the workers leave free;
    returns its thread count.

    The workers predict as well as decode (each with one thread, core.data.PredictingDataset),
    so by default (one per core) the main process keeps one thread for its bookkeeping; with
    --workers 0 it predicts itself, on every core. Without this, torch's threads and the
    workers fight over the same cores (docs/performance.md)."""
    import torch

    if device.type != "cpu":
        return torch.get_num_threads()
    threads = max(1, available_cores() - resolve_workers(workers, device, predicting=True))
    torch.set_num_threads(threads)
    return threads


def available_memory() -> int | None:
    """Bytes of memory the system can hand out without swapping (Linux's MemAvailable; where
    /proc/meminfo is missing, the free physical pages), or None where neither is known."""
    try:
        with open("/proc/meminfo", encoding="ascii") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    try:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (AttributeError, ValueError, OSError):
        return None


# Inference batch sizes for runtime.batch_size -1. On CPU, small batches keep a batch's
# activations inside the caches (a large batch's first-layer activations alone outgrow them;
# docs/performance.md). GPUs need large batches to be kept busy.
AUTO_BATCH_SIZE = {"cpu": 32, "cuda": 256}


def resolve_batch_size(batch_size: int, device: torch.device) -> int:
    if batch_size > 0:
        return batch_size
    return AUTO_BATCH_SIZE.get(device.type, AUTO_BATCH_SIZE["cpu"])


# glibc's mallopt parameters (malloc.h).
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
# Blocks up to this size come from the heap and are reused (glibc's largest mmap threshold on
# 64-bit); freed heap memory is returned to the system only beyond the trim threshold.
MMAP_THRESHOLD = 32 << 20
TRIM_THRESHOLD = 512 << 20


def keep_freed_memory() -> bool:
    """Make glibc's malloc keep and reuse freed memory instead of handing it back to the system.

    A CPU forward pass allocates and frees megabytes of activations per layer and batch. By
    default glibc serves such blocks with fresh mmap()s (or trims them off the heap when freed),
    so every batch page-faults its activations in again (benchmarks/page_faults.py measures
    it; docs/performance.md). PyTorch's CPU
    tuning guide gives the same advice through jemalloc or tcmalloc; this needs neither. Returns
    False where the C library is not glibc (nothing changes there). Memory held stays bounded by the peak of one batch's work."""
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # not glibc (macOS, Windows, musl without mallopt)
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return bool(mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD)
                and mallopt(_M_TRIM_THRESHOLD, TRIM_THRESHOLD))


def freeze_loaded_objects() -> int:
    """Move every object alive now (torch's modules, the loaded model, the configuration) out of
    the garbage collector's reach for the rest of the process; returns how many there are.

    A job loads hundreds of thousands of long-lived objects before its first batch, and each
    full collection walks all of them: with torch imported, one takes about 60 ms. The batch
    runner's rows and the listing's items trigger such collections; on 5,000 captchas (2-core
    box) two of them took 117-128 ms of a 2.5 s pass, one collection of the unfrozen rest 11 ms
    (docs/performance.md). CPython's gc.freeze is meant for this, and for processes that fork
    afterwards (DataLoader workers): the children's collections no longer touch, and so copy,
    the parent's pages. Objects frozen here that die later are simply never collected as
    cycles; reference counting still frees them."""
    gc.freeze()
    return gc.get_freeze_count()
