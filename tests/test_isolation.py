"""conftest's _process_state_restored: a test that runs a job in-process leaves torch's thread
count and the root logger as it found them for the next test. (The two run in file order.)"""
import logging

import torch

from core.logs import setup_logging

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
