import ast
import contextlib
import csv
import dataclasses
import gc
import importlib
import logging
import os
import signal
import subprocess
import sys
import tempfile
import traceback
import warnings
from pathlib import Path
from typing import Iterator

import pytest
import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from core.checkpoint import save_checkpoint  # noqa: E402
from core.config import Config, load_config  # noqa: E402
from core.generator import generate_folder  # noqa: E402
from core.labels import build_codec  # noqa: E402
from core.models import ModelSpec, build_model  # noqa: E402
import jobs.batch  # noqa: E402


def run_batch(*args) -> subprocess.CompletedProcess:
    """run_batch.py as cron runs it, its exit status and all it printed, in this process
    (run_main). Tests of what only a process of its own shows (signals, locks, their release by
    the kernel) start one (run_batch_process)."""
    return run_main(jobs.batch.main, "run_batch.py", args)


def run_job(module: str, *args) -> subprocess.CompletedProcess:
    """`python -m module args` (jobs.train, jobs.export, ...), in this process (run_main)."""
    return run_main(importlib.import_module(module).main, module, args)


def run_batch_process(*args, timeout=300) -> subprocess.CompletedProcess:
    """run_batch.py as cron runs it, in a child process."""
    return subprocess.run([sys.executable, str(ROOT / "run_batch.py"), *map(str, args)], cwd=ROOT,
                          capture_output=True, text=True, timeout=timeout)


def run_main(main, program: str, args) -> subprocess.CompletedProcess:
    """A job's `main(argv)` as its script runs it, in this process: from the repository root,
    with `program args` as sys.argv, its exit status as the process's would be (SystemExit's
    code; 1 and the traceback for an exception) and what it wrote to standard output and error
    taken at the file descriptors, so C libraries' lines and Python's warnings (shown as a fresh
    process shows them) count too. A child process would spend ~3 s of each call importing
    torch. What the job leaves in this process is put back (_as_a_process)."""
    argv = [str(a) for a in args]
    output: list[str] = []
    with _output_taken(output), _as_a_process(program, argv):
        try:
            main(argv)
            code = 0
        except SystemExit as exc:
            code = 0 if exc.code is None else exc.code
            if not isinstance(code, int):       # sys.exit("message"): printed, status 1
                print(code, file=sys.stderr)
                code = 1
        except Exception:
            traceback.print_exc()
            code = 1
    return subprocess.CompletedProcess([program, *argv], code, *output)


@contextlib.contextmanager
def _output_taken(output: list[str]) -> Iterator[None]:
    """Everything written to file descriptors 1 and 2 inside, through sys.stdout and
    sys.stderr or not, appended to `output` as two strings on the way out."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = sys.stdout, sys.stderr, os.dup(1), os.dup(2)
    with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
        try:
            os.dup2(out.fileno(), 1)
            os.dup2(err.fileno(), 2)
            sys.stdout = open(1, "w", buffering=1, encoding="utf-8", closefd=False)
            sys.stderr = open(2, "w", buffering=1, encoding="utf-8", closefd=False)
            yield
        finally:
            for stream in (sys.stdout, sys.stderr):
                if stream not in saved:
                    stream.close()          # flushed; the descriptor stays (closefd=False)
            sys.stdout, sys.stderr = saved[:2]
            for fd, copy in zip((1, 2), saved[2:]):
                os.dup2(copy, fd)
                os.close(copy)
        for f in (out, err):
            f.seek(0)
            output.append(f.read().decode("utf-8", "replace"))


@contextlib.contextmanager
def _as_a_process(program: str, argv: list[str]) -> Iterator[None]:
    """Inside: the repository root as working directory, `program argv` as sys.argv, a fresh
    interpreter's warning filters (shown on stderr). On the way out, what a job changes in its
    process is put back: those three, the root logger, the signal handlers, the garbage
    collector's frozen objects, torch's thread count (here too, not only in the autouse
    fixture below: a module-scoped fixture that runs a job is set up before that fixture
    notes the count, and would leave its one thread to every later test)."""
    root = logging.getLogger()
    threads = torch.get_num_threads()
    saved = os.getcwd(), sys.argv, root.handlers[:], root.level, {
        sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)}
    with warnings.catch_warnings():
        warnings.resetwarnings()
        for category in (DeprecationWarning, PendingDeprecationWarning, ImportWarning,
                         ResourceWarning):
            warnings.simplefilter("ignore", category)
        warnings.showwarning = _print_warning
        try:
            os.chdir(ROOT)
            sys.argv = [program, *argv]
            yield
        finally:
            cwd, sys.argv, root.handlers[:], level, handlers = saved
            root.setLevel(level)
            os.chdir(cwd)
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            gc.unfreeze()
            torch.set_num_threads(threads)


def _print_warning(message, category, filename, lineno, file=None, line=None):
    sys.stderr.write(warnings.formatwarning(message, category, filename, lineno, line))


def imported_by(code: str, *packages: str) -> list[str]:
    """The modules of `packages` that `code` leaves loaded, run in a fresh Python process from
    the repository root (what a job or a worker process starts with)."""
    code += f"; import sys; print(sorted(m for m in sys.modules if m.split('.')[0] in {packages!r}))"
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return ast.literal_eval(proc.stdout.strip().splitlines()[-1])


def linked_folder(folder: Path, source: Path, files: int) -> Path:
    """`files` files in `folder`: hard links to `source`'s, named NNNNN_NAME (in order, so their
    input order is known), two of them bad (an empty file and a text file), at a third and two
    thirds of the way."""
    folder.mkdir(exist_ok=True)
    sources = sorted(source.iterdir())
    for i in range(files - 2):
        os.link(sources[i % len(sources)], folder / f"{i:05d}_{sources[i % len(sources)].name}")
    (folder / f"{files // 3:05d}_empty.png").write_bytes(b"")
    (folder / f"{2 * files // 3:05d}_text.png").write_text("no image")
    return folder


def refuse_to_list(monkeypatch, name: str) -> None:
    """Make every folder called `name` unlistable, as a folder without read permission is
    (tests run as root here, for whom chmod takes nothing away)."""
    real_scandir = os.scandir

    def scandir(path="."):
        if not isinstance(path, int) and os.path.basename(os.fspath(path)) == name:
            raise PermissionError(13, "Permission denied", os.fspath(path))
        return real_scandir(path)

    monkeypatch.setattr(os, "scandir", scandir)


def cpu_read_on() -> str:
    """What a run's summary says it read on, on this machine's CPU with the shipped settings
    (runtime.cpu_precision auto): bfloat16 autocast where the CPU has AMX, else float32."""
    from core.runtime import amx_bfloat16
    return "cpu (bfloat16)" if amx_bfloat16() else "cpu"


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as f:
        return list(csv.DictReader(f))


def _ours(handlers: list[logging.Handler]) -> list[logging.Handler]:
    """The handlers that are not pytest's own log capturing."""
    return [h for h in handlers if not type(h).__module__.startswith("_pytest")]


@pytest.fixture(autouse=True)
def _process_state_restored():
    """What a test changes in this process's shared state is put back after it: torch's thread
    count and the root logger's level and handlers (a job run in-process sets all three; the
    next test would otherwise run on one thread, or log twice). pytest's capturing handlers,
    which it adds and removes around each phase itself, are left to it."""
    threads = torch.get_num_threads()
    root = logging.getLogger()
    handlers, level = _ours(root.handlers), root.level
    yield
    torch.set_num_threads(threads)
    root.setLevel(level)
    for handler in _ours(root.handlers):
        if handler not in handlers:
            root.removeHandler(handler)
    for handler in handlers:
        if handler not in root.handlers:
            root.addHandler(handler)


@pytest.fixture(scope="session")
def cfg() -> Config:
    """The shipped settings, with what a model reads pinned to what the generator draws (the
    seed's alphabet, length and size): the tests' captchas are generated."""
    shipped = load_config()
    return dataclasses.replace(shipped, labels=shipped.generate.labels,
                               image=shipped.generate.image)


@pytest.fixture(scope="session")
def captcha_dir(tmp_path_factory, cfg) -> Path:
    """A small folder of generated captchas, shared by the tests that only read it."""
    folder = tmp_path_factory.mktemp("captchas")
    generate_folder(folder, 48, seed=11, labels=cfg.labels, image=cfg.image, workers=1)
    return folder


@pytest.fixture(scope="session")
def model(tmp_path_factory, cfg):
    """An untrained model: the bookkeeping is what is under test, not the accuracy."""
    torch.manual_seed(0)
    net = build_model("seed-gap", ModelSpec.from_config(cfg.image, build_codec(cfg.labels)))
    path = tmp_path_factory.mktemp("model") / "m.pt"
    save_checkpoint(path, net, "seed-gap", cfg.labels, cfg.image, {})
    return path
