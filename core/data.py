"""Inputs: listing a folder, and the one Dataset that training, testing and the runner share.

    items = scan_folder(root, cfg.labels)        # sorted; every regular file, labelled or not
    dataset = CaptchaDataset(root, items, codec, cfg.image)
    loader = make_loader(dataset, batch_size=256, workers=2, device=device)
    for batch in loader:  # image (B,3,H,W) uint8 RGB, target (B,length), index, error, resized
    loader = make_loader(dataset, 32, -1, device, predict_with=model)
    for batch in loader:  # on CPU: logits (B,steps,classes) in place of image, from the workers
    held = MemoryDataset(dataset, workers=2)     # decoded once (training's many passes)
    loader = make_loader(held, 32, 0, device, shuffle=True)

A file that cannot be decoded does not stop anything: its item comes back with a blank image,
IGNORE targets and the reason in `error`, so each caller decides what to do with it.
"""
from __future__ import annotations

import logging
import os
import signal
import stat
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Subset

from .config import ImageConfig, LabelConfig
from .engine import predict
from .images import ImageError, read_image
from .labels import parse_label
from .runtime import available_memory, resolve_batch_size, resolve_workers

log = logging.getLogger(__name__)
_CPU = torch.device("cpu")


@dataclass(frozen=True, slots=True)
class Item:
    path: str                # relative to the scanned folder, '/'-separated
    label: str | None        # None: unlabelled
    unlabelled_why: str = ""  # LabelError.kind when label is None
    size: int = 0            # bytes, and modification time in ns, when listed: what
    mtime_ns: int = 0        # run_batch --only-new compares to tell a file unchanged


def _walk(root: Path, unlistable: list[str] | None = None,
          warn: bool = True) -> list[tuple[str, int, int]]:
    """(path, size, mtime_ns) of every file under root; `warn`: name what is left out (folders
    that cannot be listed, links to folders) in warnings, once per job: False for a second
    walk of the same folder."""
    found = []
    top = str(root)

    def cannot_list(exc: OSError) -> None:
        # os.walk skips a folder it cannot list; its files cannot have rows, so say which.
        if warn:
            log.warning("cannot list folder %s: %s; its files are not in this run",
                        exc.filename, exc.strerror or exc)
        if unlistable is not None:
            unlistable.append(_relative(exc.filename, top))

    for dirpath, dirnames, filenames in os.walk(top, onerror=cannot_list):
        dirnames.sort()
        folder = _relative(dirpath, top)
        prefix = "" if folder == "." else folder + "/"
        for name in dirnames:   # os.walk lists them but does not go in (no loops, no twice)
            if warn and os.path.islink(os.path.join(dirpath, name)):
                log.warning("%s%s is a link to a folder, not followed: its files are not in "
                            "this run", prefix, name)
        for name in filenames:
            full = os.path.join(dirpath, name)
            try:
                st = os.stat(full)
            except OSError:
                try:    # a link to a file that is gone: it still gets its row, with the reason
                    st = os.lstat(full)
                except OSError:     # the file itself vanished since the folder was listed
                    continue
            if stat.S_ISREG(st.st_mode) or stat.S_ISLNK(st.st_mode):
                found.append((prefix + name, st.st_size, st.st_mtime_ns))
    if unlistable is not None:
        unlistable.sort()
    return sorted(found)


def _relative(path: str, top: str) -> str:
    # Relative folder with '/' separators, by string (pathlib per file is slow on big folders).
    return os.path.relpath(path, top).replace(os.sep, "/")


def list_files(root: str | Path, warn: bool = True) -> list[str]:
    """Every regular file under root, recursively, as sorted '/'-separated relative paths (a
    link to a file counts as one, a broken one too: it gets its row and its reason; links to
    folders are not followed, and named in a warning unless `warn` is False)."""
    return [path for path, _, _ in _walk(Path(root), warn=warn)]


def scan_folder(root: str | Path, labels: LabelConfig,
                unlistable: list[str] | None = None, warn: bool = True) -> list[Item]:
    """Every regular file under root as an Item, sorted by path (links as in list_files).
    Folders that cannot be listed are named in a warning (unless `warn` is False: the job
    walked the folder before) and, when `unlistable` is given, appended to it ('/'-separated,
    relative to root; "." for root itself)."""
    items = []
    for path, size, mtime_ns in _walk(Path(root), unlistable, warn):
        label, why = parse_label(path, labels)
        items.append(Item(path, label, why, size, mtime_ns))
    return items


class CaptchaDataset(Dataset):
    def __init__(self, root: str | Path, items: list[Item], codec, image: ImageConfig,
                 fast_png: bool = True):
        self.root = str(root)
        self.fast_png = fast_png    # runtime.fast_png
        self.items = items
        self.codec = codec
        self.height, self.width = image.height, image.width
        self.crop = image.crop

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, index: int) -> dict:
        """One captcha: image (3, H, W) uint8 RGB, target (length,), index, error, resized."""
        batch = self.__getitems__([index])
        return {"image": batch["image"][0], "target": torch.from_numpy(batch["target"][0]),
                "index": index, "error": batch["error"][0], "resized": bool(batch["resized"][0])}

    def __getitems__(self, indices: list[int]) -> dict:
        """A whole batch, as the DataLoader asks for it: every image decoded straight into one
        array, channels-last ((B, 3, H, W) in shape, (B, H, W, 3) in memory, as decoded, so
        neither the workers nor the model transpose anything), targets, indices and resized
        flags as numpy arrays, errors as strings. Built once per batch rather than per image and
        then stacked (cheaper; docs/performance.md, *Figures behind the code*). The numpy
        fields travel inside the pickled batch; every tensor a worker hands over costs a
        shared-memory file and a socket round trip, so only the images are one (CaptchaLoader
        turns the rest back into tensors in the receiving process)."""
        count, length = len(indices), self.codec.target_length
        # A numpy buffer, wrapped at the end: filling a torch.empty batch through a numpy view
        # instead made each worker's memory grow with every batch moved to shared memory (the
        # wrapped buffer stays flat; docs/performance.md, *Figures behind the code*).
        pixels = np.empty((count, self.height, self.width, 3), dtype=np.uint8)
        targets = np.empty((count, length), dtype=np.int64)
        errors = [""] * count
        resized = np.zeros(count, dtype=bool)
        for k, index in enumerate(indices):
            item = self.items[index]
            try:
                pixels[k], resized[k] = read_image(os.path.join(self.root, item.path),
                                                   self.height, self.width, self.fast_png,
                                                   self.crop)
                targets[k] = self.codec.encode(item.label)
            except ImageError as exc:
                errors[k] = str(exc)
                pixels[k] = 0
                targets[k] = self.codec.encode(None)
        return {"image": torch.from_numpy(pixels).permute(0, 3, 1, 2), "target": targets,
                "index": np.asarray(indices, dtype=np.int64), "error": errors,
                "resized": resized}


class MemoryDataset(Dataset):
    """A CaptchaDataset decoded once and held in memory, with the same batches: training reads
    every image once per epoch, tens of times, and decoding and resizing a PNG costs about as
    much as a tenth to a third of the image's training step on CPU (the wider and larger the
    file, the more), on a core the model could use. The decoding runs once, in `workers`
    loader processes; afterwards a batch is a copy out of one array, cheap enough for the
    main process (make_loader with 0 workers). Memory: images x height x width x 3 bytes
    (`nbytes`)."""

    def __init__(self, dataset: CaptchaDataset, workers: int):
        n = len(dataset)
        self.pixels = np.empty((n, dataset.height, dataset.width, 3), dtype=np.uint8)
        self.targets = np.empty((n, dataset.codec.target_length), dtype=np.int64)
        self.errors = [""] * n
        self.resized = np.zeros(n, dtype=bool)
        # A loader draws its workers' base seed from torch's global generator; the augmentation
        # draws from it too, so the decoding pass must leave it as it was: training then runs
        # exactly as it would decoding every epoch.
        with torch.random.fork_rng(devices=[]):
            for batch in make_loader(dataset, 256, workers, _CPU):
                index = batch["index"].numpy()
                self.pixels[index] = batch["image"].permute(0, 2, 3, 1).numpy()
                self.targets[index] = batch["target"].numpy()
                self.resized[index] = batch["resized"].numpy()
                for i, error in zip(index.tolist(), batch["error"]):
                    self.errors[i] = error

    @staticmethod
    def nbytes(images: int, image: ImageConfig) -> int:
        return images * image.height * image.width * 3

    def __len__(self) -> int:
        return len(self.pixels)

    def __getitems__(self, indices: list[int]) -> dict:
        """CaptchaDataset.__getitems__'s batch, copied out of memory."""
        index = np.asarray(indices, dtype=np.int64)
        return {"image": torch.from_numpy(self.pixels[index]).permute(0, 3, 1, 2),
                "target": self.targets[index], "index": index,
                "error": [self.errors[i] for i in indices], "resized": self.resized[index]}


# runtime.in_memory auto: hold the decoded images when they take at most this share of the memory
# available, leaving the rest to the model, the loader and everything else on the machine.
MEMORY_SHARE = 0.25


def hold_in_memory(setting: bool | str, images: int, image: ImageConfig) -> tuple[bool, str]:
    """Whether training holds its `images` decoded (MemoryDataset), and why, in words.
    setting: runtime.in_memory, True, False or "auto" (when they take at most MEMORY_SHARE of
    the memory available)."""
    need = MemoryDataset.nbytes(images, image)
    size = f"{need / 2**20:,.0f} MB"
    if setting is True or setting is False:
        return setting, f"runtime.in_memory: {str(setting).lower()} ({size})"
    available = available_memory()
    if available is None:
        return False, f"the memory available is unknown ({size} needed)"
    hold = need <= MEMORY_SHARE * available
    return hold, (f"{size}, {'within' if hold else 'over'} a quarter of the "
                  f"{available / 2**30:.1f} GB available")


class PredictingDataset(Dataset):
    """A dataset's batches with the model's logits in place of the images: the DataLoader
    workers decode *and* predict, each with one torch thread, so on CPU every core runs whole
    batches on its own (data parallel) and the main process only keeps the books.

    Splitting the work instead (workers decode, the main process runs the model) leaves a core
    partly idle whenever the two halves differ in cost, as decoding and the model do
    (docs/performance.md). Logits are small (a few hundred bytes per image) and travel
    pickled with the batch, which also spares the main process the shared-memory handover of
    the images. The model is the one prepared in the main process (core.inference.for_inference),
    copied into each worker when it starts; on CUDA prediction stays in the main process."""

    def __init__(self, dataset: Dataset, model: torch.nn.Module):
        self.dataset, self.model = dataset, model

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitems__(self, indices: list[int]) -> dict:
        batch = self.dataset.__getitems__(indices)
        batch["logits"] = predict(self.model, batch.pop("image"), _CPU).numpy()
        return batch


def _as_batch(batch: dict) -> dict:
    """The loader's collate_fn: CaptchaDataset.__getitems__ has built the batch already."""
    return batch


class CaptchaLoader(DataLoader):
    """DataLoader whose batches are all tensors (besides the `error` strings) again: the
    dataset's numpy fields are wrapped, without a copy, in the process that iterates."""

    def __iter__(self):
        for batch in super().__iter__():
            for key in ("target", "index", "resized", "logits"):
                if key in batch:
                    batch[key] = torch.from_numpy(batch[key])
            yield batch


def _init_worker(_worker_id: int) -> None:
    # Each worker decodes one image at a time; library thread pools would only fight each other
    # and the main process for the few cores there are.
    cv2.setNumThreads(1)
    torch.set_num_threads(1)
    # SIGINT from a terminal and SIGTERM from systemd reach the whole process group; the main
    # process decides when to stop (at a batch boundary) and shuts its workers down itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def make_loader(dataset: CaptchaDataset | MemoryDataset | Subset, batch_size: int, workers: int,
                device: torch.device, shuffle: bool = False, seed: int = 0,
                persistent: bool = False,
                predict_with: torch.nn.Module | None = None) -> CaptchaLoader:
    """The DataLoader every job uses. predict_with: the model to predict with; on CPU the
    workers then run it (PredictingDataset) and batches carry `logits` instead of `image`."""
    predicting = predict_with is not None and device.type == "cpu"
    if predicting:
        dataset = PredictingDataset(dataset, predict_with)
    workers = resolve_workers(workers, device, predicting)
    batch_size = resolve_batch_size(batch_size, device)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return CaptchaLoader(dataset, batch_size=batch_size, shuffle=shuffle, num_workers=workers,
                         collate_fn=_as_batch, pin_memory=device.type == "cuda",
                         worker_init_fn=_init_worker, generator=generator,
                         persistent_workers=persistent and workers > 0,
                         prefetch_factor=4 if workers > 0 else None)
