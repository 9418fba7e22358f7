"""SIGINT and SIGTERM finish the night; a second one aborts at once.

:class:`Shutdown` replaces the default handlers of SIGINT (Ctrl-C) and SIGTERM (what a service
manager sends) while a command runs. The first signal only sets :attr:`Shutdown.event`; the
command sees it, stops taking input, scores what has arrived, makes every label final and
writes the night's files, then exits with the code of :attr:`Shutdown.exit_code`. A second
signal aborts at once (exit ``128 + signal``): :func:`~edge_scorer.engine.sinks.hold_logs` first
waits
for a batch being appended to ``epochs.csv`` to complete, so the log stays valid and
``edge-scorer finalize OUT_DIR`` can write the night's files from it.

Why not ``KeyboardInterrupt``: it can land anywhere (inside a ``Thread.join``, a file write, a
model run), and on Python 3.11 a ``join`` it interrupts can return while the worker is still
writing the files; the process then exits under it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import sys
import threading
from types import FrameType
from typing import Any

from edge_scorer._log import get_logger

log = get_logger("shutdown")

#: The signals that finish the night.
SIGNALS = (signal.SIGINT, signal.SIGTERM)


class Shutdown:
    """Route SIGINT/SIGTERM to an event (first) and an immediate exit (second).

    Use as a context manager around a command; handlers are installed only in the main thread
    (elsewhere, e.g. a command run from a test thread, it is a plain event).

    Parameters
    ----------
    what : str
        What a first signal finishes, for the log line (e.g. ``"the night"``).
    """

    def __init__(self, what: str = "the night") -> None:
        self.what = what
        self.event = threading.Event()
        self.signum: int | None = None
        self._previous: dict[int, Any] = {}

    # ------------------------------------------------------------------ state
    @property
    def requested(self) -> bool:
        """Whether a first signal arrived."""
        return self.event.is_set()

    @property
    def name(self) -> str:
        """``SIGINT``/``SIGTERM`` (empty before a signal)."""
        return signal.Signals(self.signum).name if self.signum is not None else ""

    @property
    def exit_code(self) -> int:
        """``128 + signal number`` after a signal (130 SIGINT, 143 SIGTERM), else 0."""
        return 128 + self.signum if self.signum is not None else 0

    def wait(self, timeout: float | None = None) -> bool:
        """Wait up to ``timeout`` for a signal; True when one arrived."""
        return self.event.wait(timeout)

    def request(self, signum: int = signal.SIGINT) -> None:
        """Act as if ``signum`` arrived (the window's close button, tests)."""
        self._handle(signum, None)

    # ------------------------------------------------------------------ handlers
    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self.signum is None:
            self.signum = signum
            self.event.set()
            log.warning("%s: finishing %s (scoring what has arrived, writing the files); "
                        "press Ctrl-C again to abort at once", signal.Signals(signum).name,
                        self.what)
            return
        abort(signum)

    def install(self) -> Shutdown:
        """Install the handlers (main thread only; a no-op elsewhere)."""
        if threading.current_thread() is not threading.main_thread():
            return self
        for sig in SIGNALS:
            self._previous[sig] = signal.signal(sig, self._handle)
        return self

    def restore(self) -> None:
        """Put the previous handlers back."""
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)
        self._previous.clear()

    def __enter__(self) -> Shutdown:
        return self.install()

    def __exit__(self, *exc: object) -> None:
        self.restore()


def abort(signum: int) -> None:
    """Exit now with ``128 + signum``, after any ``epochs.csv`` batch in progress completes."""
    from edge_scorer.engine.sinks import hold_logs

    log.error("second %s: aborting now. epochs.csv holds every epoch published so far; "
              "`edge-scorer finalize OUT_DIR` writes the night's files from it",
              signal.Signals(signum).name)
    hold_logs(timeout_s=2.0)
    with contextlib.suppress(Exception):
        sys.stdout.flush()
    logging.shutdown()
    os._exit(128 + signum)


__all__ = ["SIGNALS", "Shutdown", "abort"]
