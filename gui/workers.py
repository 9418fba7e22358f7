"""Work off the GUI thread, results back on it: the window never blocks.

Two helpers, both plain threads with queues (no Qt): the window calls their ``poll()`` from a
``QTimer``, and that is where the callbacks run, on the GUI thread.

* :class:`BackgroundCalls` runs one-off blocking calls (listing LSL streams, loading a model,
  connecting to a stream, finishing a run) each in its own daemon thread.
* :class:`LatestOnlyWorker` runs one function over a stream of requests in one thread, keeping
  only the newest pending request: when requests come faster than the function finishes (an
  explanation per new epoch), the stale ones are dropped instead of queueing up. It runs apart
  from the scoring thread, so a slow explanation never delays scoring.
"""

from __future__ import annotations

import queue
import threading
import traceback
from collections.abc import Callable
from typing import Any

from edge_scorer._log import get_logger

log = get_logger("gui.workers")

Callback = Callable[[Any], None]


class BackgroundCalls:
    """Run blocking calls in daemon threads; deliver results in :meth:`poll`."""

    def __init__(self) -> None:
        self._done: queue.Queue = queue.Queue()
        self._busy: set[str] = set()
        self._lock = threading.Lock()

    def submit(self, name: str, fn: Callable[[], Any], on_done: Callback | None = None,
               on_error: Callback | None = None) -> bool:
        """Start ``fn()`` in a thread unless a call of the same ``name`` is still running.

        Returns
        -------
        bool
            Whether the call was started.
        """
        with self._lock:
            if name in self._busy:
                return False
            self._busy.add(name)

        def run() -> None:
            try:
                result = fn()
            except BaseException as exc:  # delivered to on_error on the GUI thread
                log.debug("background call %s failed:\n%s", name, traceback.format_exc())
                self._done.put((name, on_error, exc, True))
            else:
                self._done.put((name, on_done, result, False))

        threading.Thread(target=run, name=f"edge-scorer-gui-{name}", daemon=True).start()
        return True

    def busy(self, name: str) -> bool:
        """Whether a call of this name is running or its result not yet delivered."""
        with self._lock:
            return name in self._busy

    def poll(self) -> int:
        """Deliver finished calls to their callbacks (call on the GUI thread); return how many."""
        n = 0
        while True:
            try:
                name, cb, value, failed = self._done.get_nowait()
            except queue.Empty:
                return n
            with self._lock:
                self._busy.discard(name)
            n += 1
            if cb is not None:
                cb(value)
            elif failed:
                log.error("%s failed: %s", name, value)


class LatestOnlyWorker:
    """One thread applying ``fn`` to the newest pending request (see the module docstring).

    Parameters
    ----------
    fn : callable
        ``fn(request) -> result``; exceptions are delivered as results of type
        :class:`WorkerError`.
    name : str
        Thread name.
    """

    def __init__(self, fn: Callable[[Any], Any], name: str = "worker") -> None:
        self.fn = fn
        self._cond = threading.Condition()
        self._pending: Any = None
        self._has_pending = False
        self._closed = False
        self._busy = False
        self._results: queue.Queue = queue.Queue()
        self.n_done = 0
        self.n_dropped = 0
        self._thread = threading.Thread(target=self._run, name=f"edge-scorer-gui-{name}",
                                        daemon=True)
        self._thread.start()

    def submit(self, request: Any) -> None:
        """Queue ``request``, replacing a pending one that has not started."""
        with self._cond:
            if self._closed:
                raise RuntimeError("this worker was closed; create a new one")
            if self._has_pending:
                self.n_dropped += 1
            self._pending, self._has_pending = request, True
            self._cond.notify()

    @property
    def idle(self) -> bool:
        """Nothing running and nothing pending."""
        with self._cond:
            return not (self._busy or self._has_pending)

    def _run(self) -> None:
        while True:
            with self._cond:
                while not self._has_pending and not self._closed:
                    self._cond.wait()
                if self._closed:
                    return
                request, self._pending, self._has_pending = self._pending, None, False
                self._busy = True
            try:
                result = self.fn(request)
            except Exception as exc:  # delivered to the GUI thread, which shows it
                log.debug("worker request failed:\n%s", traceback.format_exc())
                result = WorkerError(request, exc)
            self._results.put((request, result))
            with self._cond:
                self._busy = False
                self.n_done += 1

    def poll(self) -> list[tuple[Any, Any]]:
        """Finished ``(request, result)`` pairs since the last call (GUI thread)."""
        out = []
        while True:
            try:
                out.append(self._results.get_nowait())
            except queue.Empty:
                return out

    def close(self, timeout: float = 5.0) -> None:
        """Drop what is pending and end the thread (after the running request)."""
        with self._cond:
            self._closed = True
            self._pending, self._has_pending = None, False
            self._cond.notify()
        self._thread.join(timeout)


class WorkerError:
    """A request that raised: ``request`` and the exception ``error``."""

    def __init__(self, request: Any, error: BaseException) -> None:
        self.request, self.error = request, error

    def __str__(self) -> str:
        return f"{type(self.error).__name__}: {self.error}"


__all__ = ["BackgroundCalls", "LatestOnlyWorker", "WorkerError"]
