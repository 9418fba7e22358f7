"""One scoring run of the window: a live LSL stream (or a replayed file) and the engine.

:class:`Session` wraps :class:`~edge_scorer.stream.live.LiveScorer` (and, for a file, a
:class:`~edge_scorer.stream.replay.Replayer` publishing it as LSL streams on this machine). The
engine
calls the session's :class:`~edge_scorer.engine.sinks.Callback` sink from its scoring thread; the
sink
copies the new epoch's rendered image and per-channel quality (``Engine.last_epoch``; the engine
scores one epoch per batch here, so every new epoch passes through it) and puts a
:class:`~gui.store.ScoredEpochs` on a queue. The GUI thread takes them with :meth:`drain` on a
timer. :meth:`start` and :meth:`stop` block (resolving streams, reading a file, finishing the
night's files): the window runs them in background threads. No Qt here.

For a file, a supervisor thread waits for the end of the replay, lets the inlet drain what is in
flight and then stops the scorer, which makes every epoch final and writes the night's files.
"""

from __future__ import annotations

import queue
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.engine.sinks import Callback
from edge_scorer.inference.scorer import ScoringModel
from edge_scorer.stream.live import LiveScorer

from .store import ScoredEpochs, channel_quality

log = get_logger("gui.session")

#: Session states, in the order they are reached.
STATES = ("created", "starting", "running", "stopping", "finished", "failed")


@dataclass(frozen=True)
class StreamSource:
    """A live LSL stream: ``name`` and, to pick one of several, ``source_id``."""

    name: str
    source_id: str | None = None

    def describe(self) -> str:
        """The source in words."""
        return f"LSL stream {self.name!r}" + (f" ({self.source_id})" if self.source_id else "")


@dataclass(frozen=True)
class FileSource:
    """A PSG file replayed as LSL streams at ``speed`` (1 = real time), with its hypnogram."""

    psg: Path
    hypnogram: Path | None = None
    speed: float = 1.0

    def __post_init__(self) -> None:
        if not (np.isfinite(self.speed) and self.speed > 0):
            raise ValueError(f"replay speed must be a positive number (1 = real time), got "
                             f"{self.speed}")

    def describe(self) -> str:
        """The source in words."""
        return f"{Path(self.psg).name} replayed at {self.speed:g}x"


class Session:
    """Score one source in background threads (see the module docstring).

    Parameters
    ----------
    model : ScoringModel
        Models, spec and backend.
    source : StreamSource or FileSource
        What to score.
    out_dir : path-like, optional
        ``epochs.csv`` (per epoch) and the night's files (at the end) go here.
    channel_overrides : dict, optional
        ``{row name: channel label}`` for the stream (or file).
    drain_timeout_s : float
        After a replay ends, how long to wait for the inlet to receive what was pushed.
    """

    def __init__(self, model: ScoringModel, source: StreamSource | FileSource, *,
                 out_dir: str | Path | None = None,
                 channel_overrides: dict[str, str] | None = None,
                 drain_timeout_s: float = 10.0) -> None:
        if not isinstance(source, (StreamSource, FileSource)):
            raise TypeError(f"source must be a StreamSource or FileSource, got {source!r}")
        self.model = model
        self.spec = model.spec
        self.source = source
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.overrides = dict(channel_overrides or {})
        self.drain_timeout_s = float(drain_timeout_s)
        self.state = "created"
        self.error: BaseException | None = None
        self.replayer = None
        self.live: LiveScorer | None = None
        self._queue: queue.Queue[ScoredEpochs] = queue.Queue()
        self._seen: set[int] = set()
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._finish_lock = threading.Lock()
        self.t_start: float | None = None

    # ------------------------------------------------------------------ scoring thread
    def _on_updates(self, updates, engine) -> None:
        """Callback sink (scoring thread): hand the batch and the new epoch's image over."""
        batch = ScoredEpochs(list(updates))
        last = engine.last_epoch
        if last is not None and last[0] not in self._seen:
            index, rows, image = last
            self._seen.add(index)
            batch.images[index] = np.array(image, copy=True)
            batch.quality[index] = channel_quality(rows, self.spec)
            batch.rows[index] = np.asarray(rows, dtype=np.float32).copy()
        self._queue.put(batch)

    # ------------------------------------------------------------------ control (blocking)
    def start(self) -> Session:
        """Open the source and start scoring (blocks while connecting; run it off the GUI)."""
        if self.state != "created":
            raise RuntimeError(f"this session is {self.state}; create a new Session to start "
                               "again")
        self.state = "starting"
        self.t_start = time.perf_counter()
        try:
            name, source_id = self._open_source()
            self.live = LiveScorer(
                self.model, name=name, source_id=source_id, out_dir=self.out_dir,
                sinks=[Callback(self._on_updates)], channel_overrides=self.overrides or None,
                engine_kwargs={"batch_size": 1})
            self.live.start()
        except BaseException as exc:
            self.state, self.error = "failed", exc
            if self.replayer is not None:
                self.replayer.stop()
            raise
        with self._finish_lock:
            stopped = self._stop.is_set()
            if not stopped:
                self.state = "running"
        if stopped:  # stop() was called while connecting: it found nothing to stop yet
            self.live.stop(raise_error=False)
            if self.replayer is not None:
                self.replayer.stop()
            self.state = "finished"
            return self
        if self.replayer is not None:
            self._watcher = threading.Thread(target=self._watch_replay, daemon=True,
                                             name="edge-scorer-gui-replay-watch")
            self._watcher.start()
        return self

    def _open_source(self) -> tuple[str, str | None]:
        if isinstance(self.source, StreamSource):
            return self.source.name, self.source.source_id
        from edge_scorer.stream.replay import Replayer

        name = f"edge-scorer-gui-{uuid.uuid4().hex[:8]}"
        self.replayer = Replayer(self.source.psg, self.spec, name=name, speed=self.source.speed,
                                 hypnogram=self.source.hypnogram,
                                 channel_overrides=self.overrides or None,
                                 wait_for_consumers_s=10.0)
        self.replayer.start()
        return name, None

    def _watch_replay(self) -> None:
        """File sources: at the end of the replay, drain the inlet and finish the night."""
        self.live.follow(self.replayer, self.drain_timeout_s, stop=self._stop, poll_s=0.02)
        if not self._stop.is_set():
            self._finish()

    def _finish(self) -> None:
        with self._finish_lock:
            if self.state in ("finished", "failed"):
                return
            self.state = "stopping"
            self._finish_locked()

    def _finish_locked(self) -> None:
        try:
            if self.live is not None:
                self.live.stop(timeout=None, raise_error=True)
            if self.replayer is not None and self.replayer.error is not None:
                raise self.replayer.error
        except BaseException as exc:
            self.error = exc
            log.error("scoring ended with %s: %s", type(exc).__name__, exc)
        finally:
            if self.replayer is not None:
                self.replayer.stop()
            self.state = "failed" if self.error is not None else "finished"

    def stop(self) -> None:
        """Stop scoring now: the epochs scored so far become final, the files are written
        (blocks; idempotent)."""
        if self.state in ("created", "finished", "failed"):
            return
        self._stop.set()
        self._finish()

    # ------------------------------------------------------------------ GUI thread
    @property
    def is_active(self) -> bool:
        """Starting, running or stopping."""
        return self.state in ("starting", "running", "stopping")

    @property
    def scoring(self) -> bool:
        """The scoring thread is alive."""
        return self.live is not None and self.live.is_running

    def drain(self, max_batches: int = 10_000) -> list[ScoredEpochs]:
        """Batches handed over since the last call (oldest first)."""
        out = []
        for _ in range(max_batches):
            try:
                out.append(self._queue.get_nowait())
            except queue.Empty:
                break
        return out

    def latest_signals(self, seconds: float) -> dict[str, tuple[float, np.ndarray]]:
        """``{row name: (native rate, last samples)}`` from the inlet's ring buffers (empty
        when not connected)."""
        live = self.live
        if live is None or not live.source.groups:
            return {}
        src = live.source
        rates = dict(zip(self.spec.row_names, src.row_sfreq))
        try:
            latest = src.latest(seconds)
        except (ValueError, IndexError):  # the scoring thread disconnected meanwhile
            return {}
        return {row: (rates[row], x) for row, x in latest.items()}

    def latency_summary(self) -> dict[str, float]:
        """Median / p99 / max provisional latency (ms) so far."""
        engine = self.live.engine if self.live is not None else None
        return engine.latency_summary() if engine is not None else {}

    def describe(self) -> str:
        """The source in words, with the stream name for a replay."""
        text = self.source.describe()
        if self.replayer is not None:
            text += f" as LSL stream {self.replayer.name!r}"
        return text


__all__ = ["FileSource", "STATES", "Session", "StreamSource"]
