"""The night's reading on a Dask cluster: the listing cut into shards, one task per shard, the
rows back in input order.

    with connect("local:2") as client:          # or "tcp://scheduler:8786"
        batches = ShardBatches(client, ckpt, input_dir, items, todo, cfg)
        evaluate(model, batches, codec, device, on_batch=rows.on_batch)   # as with a loader

A task reads its shard's files where the driver listed them (a shared file system: every
worker sees the input and the model at the same paths), with the model loaded once per worker
process (kept by its sha256), and returns the shard's logits, targets and errors: one batch of
the runner's, which the driver scores, writes and commits exactly as a local run's (core.batch).
Dask reruns the task of a worker that dies on another one. Dask is imported only here, and
only when a run asks for a cluster (requirements-cluster.txt).
"""
from __future__ import annotations

import collections
import contextlib
import logging
import os
from pathlib import Path
from typing import Iterator

import cv2
import numpy as np
import torch

from .checkpoint import Checkpoint, CheckpointError, load_model
from .config import Config
from .data import CaptchaDataset, Item
from .engine import predict
from .inference import prepare
from .runtime import keep_freed_memory, read_on, resolve_batch_size, resolve_device

REQUIREMENTS = "requirements-cluster.txt"


class ClusterError(ValueError):
    """The cluster cannot be used (no Dask, no scheduler at the address); one line says why."""


def _distributed():
    try:
        import distributed
    except ImportError:
        raise ClusterError(f"--cluster needs Dask: pip install -r {REQUIREMENTS}") from None
    return distributed


@contextlib.contextmanager
def connect(address: str, timeout: float = 5.0) -> Iterator:
    """A Dask client: `local:N` starts a LocalCluster of N worker processes of one thread on
    this machine (closed on exit); anything else is a scheduler's address."""
    distributed = _distributed()
    # Dask's own INFO lines (workers starting, connections) would fill run.log and cron's mail
    for name in ("distributed", "dask"):
        logging.getLogger(name).setLevel(logging.WARNING)
    with contextlib.ExitStack() as stack:
        if address.startswith("local:"):
            try:
                workers = int(address.split(":", 1)[1])
                if workers < 1:
                    raise ValueError
            except ValueError:
                raise ClusterError(f"--cluster {address}: local:N needs a number of worker "
                                   "processes, at least 1 (e.g. local:2)") from None
            cluster = stack.enter_context(distributed.LocalCluster(
                n_workers=workers, threads_per_worker=1, processes=True,
                dashboard_address=":0", silence_logs=logging.WARNING))
            target = cluster
        else:
            target = address
        try:
            client = stack.enter_context(distributed.Client(target, timeout=timeout))
        except (OSError, TimeoutError, ValueError) as exc:
            raise ClusterError(f"cannot reach the Dask scheduler at {address} "
                               f"({type(exc).__name__}: {str(exc).splitlines()[0][:120]})"
                               ) from None
        yield client


# what makes the driver stop at a shard boundary rather than crash: the scheduler gone, or a
# shard that killed every worker it was given to (distributed.KilledWorker)
def _lost_errors() -> tuple[type[BaseException], ...]:
    distributed = _distributed()
    from distributed.comm.core import CommClosedError
    from distributed.client import FutureCancelledError
    return (OSError, TimeoutError, CommClosedError, FutureCancelledError,
            distributed.KilledWorker)


class ShardBatches:
    """The todo files of a run as batches with logits, in input order, read by the cluster's
    workers: shards of `cfg.runtime.shard_files` files, at most two per worker in flight.
    After the loop, `lost` says why it ended early ("" when it did not) and `read_on` where
    the workers read (e.g. "dask: cpu, cuda:0")."""

    def __init__(self, client, ckpt: Checkpoint, input_dir: Path, items: list[Item],
                 todo: list[int], cfg: Config):
        self.client, self.todo = client, todo
        self.shard_files = cfg.runtime.shard_files
        self.batch_size = cfg.runtime.batch_size     # -1: as suits each worker's device
        self.job = dict(model=str(Path(ckpt.path).resolve()), sha256=ckpt.sha256,
                        root=str(Path(input_dir).resolve()), codec=ckpt.codec, image=ckpt.image,
                        fast_png=cfg.runtime.fast_png, batch_size=self.batch_size,
                        device=cfg.runtime.device, cpu_precision=cfg.runtime.cpu_precision)
        self.items = items
        self.lost = ""
        self.devices: set[str] = set()      # where the workers read this attempt's shards

    def __len__(self) -> int:
        return -(-len(self.todo) // self.shard_files)

    @property
    def read_on(self) -> str:
        return "dask: " + (", ".join(sorted(self.devices)) or "nothing read")

    def __iter__(self) -> Iterator[dict]:
        shards = (self.todo[i:i + self.shard_files]
                  for i in range(0, len(self.todo), self.shard_files))
        window = 2 * max(1, len(self.client.scheduler_info().get("workers", {})))
        pending: collections.deque = collections.deque()
        lost = _lost_errors()

        def submit() -> None:
            for shard in shards:
                future = self.client.submit(read_shard, self.job,
                                            [self.items[i] for i in shard], pure=False)
                pending.append((shard, future))
                return

        try:
            for _ in range(window):
                submit()
            while pending:
                shard, future = pending.popleft()
                try:
                    batch = future.result()
                except lost as exc:
                    self.lost = (f"the loss of the cluster ({type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0][:160] if str(exc) else ''})")
                    return
                except CheckpointError as exc:    # a worker without the driver's model
                    raise ClusterError(f"on the cluster: {exc}") from None
                submit()
                self.devices.add(batch["device"])
                yield _as_tensors(batch, shard)
        finally:
            for _, future in pending:
                future.cancel()


def _as_tensors(batch: dict, shard: list[int]) -> dict:
    """A shard's result as one of the runner's batches: its own positions turned back into
    the run's input positions."""
    return {"logits": torch.from_numpy(batch["logits"]),
            "target": torch.from_numpy(batch["target"]),
            "index": torch.from_numpy(np.asarray(shard, dtype=np.int64)[batch["index"]]),
            "error": batch["error"], "resized": torch.from_numpy(batch["resized"])}


# a worker's models, prepared, and their precision: by (sha256, device, runtime.cpu_precision)
_MODELS: dict[tuple[str, str, str], tuple[torch.nn.Module, str]] = {}


def _worker_model(path: str, sha256: str, device: torch.device,
                  cpu_precision: str) -> tuple[torch.nn.Module, str]:
    key = (sha256, str(device), cpu_precision)
    model = _MODELS.get(key)
    if model is None:   # a worker process's first shard: set it up as a loader worker is
        torch.set_num_threads(1)        # one thread per worker process (threads_per_worker=1)
        cv2.setNumThreads(1)
        keep_freed_memory()
        ckpt = load_model(path, device=device)
        if ckpt.sha256 != sha256:
            raise CheckpointError(f"{path} on worker {_worker_name()} is not the driver's model "
                                  f"(sha256 {ckpt.sha256[:12]}, not {sha256[:12]})")
        model = _MODELS[key] = prepare(ckpt, device, cpu_precision)
    return model


def _worker_name() -> str:
    try:
        from distributed import get_worker
        return get_worker().address
    except (ImportError, ValueError):
        return f"pid {os.getpid()}"


def read_shard(job: dict, items: list[Item]) -> dict:
    """On a worker: the shard's files decoded and predicted in batches of the runner's size.
    A file the worker cannot read gets its error row, naming the worker."""
    device = resolve_device(job["device"])    # runtime.device, as this worker has it
    model, precision = _worker_model(job["model"], job["sha256"], device, job["cpu_precision"])
    dataset = CaptchaDataset(job["root"], items, job["codec"], job["image"], job["fast_png"])
    size = resolve_batch_size(job["batch_size"], device)
    parts = []
    for start in range(0, len(items), size):
        batch = dataset.__getitems__(list(range(start, min(start + size, len(items)))))
        batch["logits"] = predict(model, batch.pop("image"), device).float().cpu().numpy()
        parts.append(batch)
    errors = [e for part in parts for e in part["error"]]
    name = None
    for k, error in enumerate(errors):
        if error.startswith("unreadable"):
            name = name or _worker_name()
            errors[k] = f"{error} (on worker {name})"
    return {"logits": np.concatenate([p["logits"] for p in parts]),
            "target": np.concatenate([p["target"] for p in parts]),
            "index": np.concatenate([p["index"] for p in parts]),
            "error": errors, "resized": np.concatenate([p["resized"] for p in parts]),
            "device": read_on(device, precision)}
