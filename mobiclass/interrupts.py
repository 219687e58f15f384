"""Where Ctrl-C may land: inside the work a loop repeats, not in the bookkeeping between (a library's database
writes), which an exception there can leave half-done."""
from __future__ import annotations

import contextlib
import signal
import threading


class CtrlC:
    """Ctrl-C as a KeyboardInterrupt only inside `trial()`; elsewhere (`requested` is then set) the loop stops at its
    next check. In `mobiclass tune`, a KeyboardInterrupt landing in Optuna's own SQLite writes between trials crashed
    it (UnboundLocalError inside Optuna) or hung it, 2 times in 20 here. Only the main thread can install the
    handler (`caught()`); elsewhere Ctrl-C keeps its usual effect."""

    def __init__(self):
        self.in_trial = self.requested = False

    def _handle(self, signum, frame) -> None:
        self.requested = True
        if self.in_trial:
            raise KeyboardInterrupt

    @contextlib.contextmanager
    def caught(self):
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        previous = signal.signal(signal.SIGINT, self._handle)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    @contextlib.contextmanager
    def trial(self):
        if self.requested:
            raise KeyboardInterrupt
        self.in_trial = True
        try:
            yield
        finally:
            self.in_trial = False
