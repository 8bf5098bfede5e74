"""Stop signals turned into a request to stop at the next safe point.

    with StopSignals() as stop:
        run_batch(..., stop=stop.get)      # polls stop.get() after each batch
"""
from __future__ import annotations

import signal


class StopSignals:
    """While inside: SIGTERM and SIGINT are noted, not fatal; get() returns the last one noted
    (0: none), for the caller to stop at its next boundary with everything committed. The
    previous handlers come back on leaving."""

    def __init__(self):
        self.signum = 0
        self._saved = {}

    def get(self) -> int:
        return self.signum

    def _note(self, signum, _frame) -> None:
        self.signum = signum

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            self._saved[sig] = signal.signal(sig, self._note)
        return self

    def __exit__(self, *exc) -> None:
        for sig, handler in self._saved.items():
            signal.signal(sig, handler)
