"""conftest's _process_state_restored: a test that runs a job in-process leaves torch's thread
count and the root logger as it found them for the next test (the first two run in file
order); and conftest.run_main, which runs a job in-process as its script would."""
import logging
import os
import signal
import sys
import warnings

import torch

from core.logs import setup_logging
from tests.conftest import run_main

THREADS = torch.get_num_threads()     # at collection, before any test ran


def _job_handlers():
    return [h for h in logging.getLogger().handlers
            if not type(h).__module__.startswith("_pytest")]


def test_a_job_run_in_process_changes_threads_and_logging():
    before = _job_handlers()
    torch.set_num_threads(1)
    setup_logging(quiet=True)
    assert torch.get_num_threads() == 1 and _job_handlers() != before


def test_the_next_test_finds_them_as_they_were():
    assert torch.get_num_threads() == THREADS
    assert not any(isinstance(h, logging.StreamHandler) and h.level == logging.WARNING
                   for h in _job_handlers())


def _noisy_job(argv):
    """A job that writes every way a real one can, then exits as asked."""
    print("to stdout", *argv)
    os.write(2, b"from C, on descriptor 2\n")
    warnings.warn("a UserWarning")
    logging.getLogger().addHandler(logging.StreamHandler(sys.stderr))
    signal.signal(signal.SIGTERM, lambda *_: None)
    os.chdir("/")
    if argv[0] == "crash":
        raise RuntimeError("broken")
    sys.exit(int(argv[0]))


def test_run_main_gives_what_a_process_would_and_leaves_nothing_behind():
    # conftest.run_main stands in for a child process in most job tests: its exit status and
    # output must be a process's, or a test of "one line on stderr" would pass on nothing.
    handlers, cwd = logging.getLogger().handlers[:], os.getcwd()
    term = signal.getsignal(signal.SIGTERM)
    proc = run_main(_noisy_job, "noisy.py", [3, "x"])
    assert proc.returncode == 3 and proc.args == ["noisy.py", "3", "x"]
    assert proc.stdout == "to stdout 3 x\n"
    assert proc.stderr.startswith("from C, on descriptor 2\n")
    assert "UserWarning: a UserWarning" in proc.stderr
    crashed = run_main(_noisy_job, "noisy.py", ["crash"])
    assert crashed.returncode == 1 and "RuntimeError: broken" in crashed.stderr
    assert logging.getLogger().handlers == handlers and os.getcwd() == cwd
    assert signal.getsignal(signal.SIGTERM) is term
