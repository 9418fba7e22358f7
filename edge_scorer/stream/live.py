"""Live scoring: an :class:`~edge_scorer.stream.inlet.LslSource` feeding an
:class:`~edge_scorer.engine.engine.Engine` from a background thread, until stopped.

:class:`LiveScorer` connects the source, builds the engine for the rates the streams carry,
and polls the inlets every ``poll_s``; each poll pulls everything that arrived (non-blocking)
and pushes it through the engine, whose sinks publish the stages. ``stop()`` (or the end of the
``with`` block, or ``idle_timeout_s`` without samples) finishes the night: what has already
arrived in the inlets is pulled and scored (up to ``drain_s``), the last complete epochs are
scored and made final, and the sinks write the night's files. An error in the thread (e.g. a
stream that changes shape) stops scoring but still finalizes what was scored; it is re-raised
by :meth:`LiveScorer.stop` / :meth:`LiveScorer.join`.

The end of the thread's work is an :class:`threading.Event` set after the files are written,
not ``Thread.join``: on Python 3.11 a ``join`` interrupted by Ctrl-C can report the thread
ended while it is still finalizing (and the process then exits under it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

from edge_scorer._log import get_logger
from edge_scorer.engine.engine import Engine, PendingEpochs
from edge_scorer.inference.scorer import ScoringModel
from edge_scorer.stream.inlet import LslSource

log = get_logger("live")


class LiveScorer:
    """Score a live LSL stream in a background thread.

    Parameters
    ----------
    model : ScoringModel
        Models and spec.
    name, stype, source_id : str, optional
        The stream to resolve (see :class:`~edge_scorer.stream.inlet.LslSource`).
    out_dir : path-like, optional
        Where ``epochs.csv`` (per epoch) and the hypnogram/statistics files (at the end) go.
    outlet_name : str, optional
        Publish the stages on an LSL stream of this name (``SleepStages`` type, every update,
        keyed by epoch) and the final stages on ``<outlet_name>-final`` (one per epoch,
        increasing stamps); see :class:`~edge_scorer.engine.sinks.LslStageOutlet`.
    sinks : sequence, optional
        More sinks (e.g. :class:`~edge_scorer.engine.sinks.Callback`).
    channel_overrides : mapping, optional
        ``{row name: stream channel label}``.
    idle_timeout_s : float, optional
        Finish after this long without a sample (None: run until :meth:`stop`).
    poll_s : float
        Pause between polls when nothing arrived.
    source_kwargs : dict, optional
        More :class:`~edge_scorer.stream.inlet.LslSource` options (``speed``, ``fill_gap_s``, ...).
    engine_kwargs : dict, optional
        More :class:`~edge_scorer.engine.engine.Engine` options (``max_invalid_fraction``, ...).
    drain_s : float
        At a stop, keep pulling what has already arrived for at most this long.
    formats : str or sequence of str, optional
        Hypnogram files written at the end (``csv``, ``edf``, ``bids``, ``nsrr``; default CSV
        and EDF+).
    """

    def __init__(self, model: ScoringModel, *, name: str | None = None,
                 stype: str | None = None, source_id: str | None = None,
                 out_dir: str | Path | None = None, outlet_name: str | None = None,
                 sinks: Sequence = (), channel_overrides: Mapping[str, str] | None = None,
                 idle_timeout_s: float | None = None, poll_s: float = 0.02,
                 source_kwargs: dict | None = None, engine_kwargs: dict | None = None,
                 drain_s: float = 5.0, formats: str | Sequence[str] | None = None) -> None:
        if idle_timeout_s is not None and not idle_timeout_s > 0:
            raise ValueError(f"idle_timeout_s must be positive (or None), got {idle_timeout_s}")
        if not poll_s > 0:
            raise ValueError(f"poll_s must be positive, got {poll_s}")
        self.model = model
        self.source = LslSource(model.spec, name=name, stype=stype, source_id=source_id,
                                channel_overrides=channel_overrides, **(source_kwargs or {}))
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.outlet_name = outlet_name
        self.extra_sinks = list(sinks)
        self.idle_timeout_s = idle_timeout_s
        self.poll_s = float(poll_s)
        self.engine_kwargs = dict(engine_kwargs or {})
        self.drain_s = float(drain_s)
        self.formats = formats
        self.engine: Engine | None = None
        self.error: BaseException | None = None
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None
        self._started = False
        self._last_data = 0.0

    # ------------------------------------------------------------------ set-up
    def _build_engine(self) -> Engine:
        from edge_scorer import __version__
        from edge_scorer.engine.sinks import LslStageOutlet, output_sinks

        src = self.source
        sinks: list = []
        run_info = {"edge_scorer_version": __version__, "source": "lsl",
                    "streams": src.stream_names, "channels": src.labels,
                    "epoch_grid": src.grid,
                    "speed": src.speed, "model": str(getattr(self.model.intra, "path", ""))}
        if self.out_dir is not None:
            sinks += output_sinks(self.out_dir, run_info, self.formats)
        if self.outlet_name:
            fam = self.model.familiarity
            for suffix, final in (("", False), ("-final", True)):  # keyed by epoch / finals
                sinks.append(LslStageOutlet(
                    self.outlet_name + suffix,
                    f"edge-scorer:{src.stream_names[0]}:stages{suffix}", stamp=src.epoch_stamp,
                    familiarity_threshold=fam.threshold if fam else None, final_only=final))
        return Engine(self.model, src.row_sfreq, sinks=sinks + self.extra_sinks,
                      **self.engine_kwargs)

    def start(self, thread: bool = True) -> LiveScorer:
        """Connect to the streams and start scoring in a background thread.

        With ``thread=False`` no thread is started: the caller drives the scorer with
        :meth:`step` (one thread polling many scorers, as
        :class:`~edge_scorer.stream.beds.BedSet` does) and ends it with :meth:`finish`.
        """
        if self._started:
            raise RuntimeError("this LiveScorer was already started; create a new one")
        self.source.connect()
        try:
            self.engine = self._build_engine()
        except BaseException:
            self.source.disconnect()
            raise
        self._started = True
        self._last_data = time.perf_counter()
        if thread:
            self._thread = threading.Thread(target=self._run, name="edge-scorer-live",
                                            daemon=True)
            self._thread.start()
        return self

    def __enter__(self) -> LiveScorer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop(raise_error=exc[0] is None)

    # ------------------------------------------------------------------ loop
    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                chunk = self.source.pull()
                if chunk is None:
                    if self.idle_expired():
                        log.info("no samples for %g s: ending the stream",
                                 self.idle_timeout_s)
                        break
                    self._stop.wait(self.poll_s)
                    continue
                self._last_data = chunk.t_in
                self._push(chunk)
            if self._stop.is_set():
                self._drain()
        except BaseException as exc:  # reported by stop()/join(); a thread cannot raise
            self.fail(exc)
        finally:
            self._finalize()

    def idle_expired(self) -> bool:
        """Whether no sample has arrived for ``idle_timeout_s`` (never without one)."""
        return (self.idle_timeout_s is not None
                and time.perf_counter() - self._last_data > self.idle_timeout_s)

    def restart_idle_clock(self) -> None:
        """Count the idle time from now: the time a shared poller spent blocked elsewhere is
        not this stream's silence."""
        self._last_data = time.perf_counter()

    def step(self) -> list[PendingEpochs] | None:
        """One poll of a scorer started with ``start(thread=False)``: pull what arrived and
        condition and render it (:meth:`~edge_scorer.engine.engine.Engine.stage`).

        Returns
        -------
        list of PendingEpochs or None
            None when nothing arrived; else the epochs completed (often none), for the
            caller to score and hand to ``engine.complete`` in order.
        """
        chunk = self.source.pull()
        if chunk is None or self._done.is_set():  # abandoned while the pull was blocked
            return None
        self._last_data = chunk.t_in
        engine = self.engine
        if engine.start_time is None:
            engine.start_time = self._wall_start()
        return engine.stage(chunk.rows, chunk.filled, chunk.t_in)

    def fail(self, exc: BaseException) -> None:
        """Record the error that stops scoring (the first one wins; re-raised by
        :meth:`stop` / :meth:`join`)."""
        self.error = self.error or exc
        log.error("live scoring stopped by %s: %s (the epochs scored so far are kept)",
                  type(exc).__name__, exc)

    def finish(self, drain: bool = True) -> None:
        """End a scorer started with ``start(thread=False)``: score what has already arrived
        (``drain``), finish the engine and write the night's files, disconnect."""
        try:
            if drain and self.error is None:
                self._drain()
        except BaseException as exc:
            self.fail(exc)
        finally:
            self._finalize()

    def abandon(self) -> None:
        """Finish the night's files (final labels, hypnogram, statistics) without draining or
        closing the inlets: for a bed whose pull is blocked inside liblsl (closing them would
        block too). The inlets are released when the process ends."""
        self._finalize(disconnect=False)

    def _finalize(self, disconnect: bool = True) -> None:
        """Close the engine (final labels, files) and the inlets (``disconnect``); then signal
        the end."""
        engine = self.engine
        try:
            self._note_inlet_stats()
            engine.close()
        except BaseException as exc:  # keep the first error
            self.error = self.error or exc
            log.error("finalizing the outputs failed: %s", exc)
        try:
            if disconnect:
                self.source.disconnect()
        finally:
            self._done.set()

    def _note_inlet_stats(self) -> None:
        """Put what the inlets saw into ``run.json``."""
        from edge_scorer.engine.sinks import NightFiles

        src = self.source
        stats = {"samples_pulled": src.n_pulled, "gaps": src.n_gaps,
                 "max_lag_s": round(src.max_lag_s, 3),
                 "falling_behind_warnings": src.n_behind_warnings}
        for sink in self.engine.sinks:
            if isinstance(sink, NightFiles):
                sink.run_info["inlet"] = stats
                if src.amplitude is not None:
                    sink.run_info["amplitude"] = src.amplitude.summary()

    def _push(self, chunk) -> None:
        engine = self.engine
        if engine.start_time is None:
            engine.start_time = self._wall_start()
        engine.push(chunk.rows, chunk.filled, chunk.t_in)

    def _drain(self) -> None:
        """At a stop: pull and score what has already arrived (at most ``drain_s``)."""
        deadline = time.perf_counter() + self.drain_s
        n = 0
        while time.perf_counter() < deadline:
            chunk = self.source.pull()
            if chunk is None:
                break
            self._push(chunk)
            n += 1
        else:
            log.warning("stopping: samples were still arriving after %g s of draining; the "
                        "rest is not scored", self.drain_s)
        log.debug("drained %d chunk(s) at the stop", n)

    def _wall_start(self):
        """Wall-clock time of epoch 0: the recording's start when the epochs are on its grid
        (a replay advertising it), else from the clock at real time (None at another speed)."""
        from datetime import datetime, timedelta

        import pylsl

        text = self.source.desc_value("edge_scorer/start_time")
        if text and self.source.grid == "recording start":
            try:
                return datetime.fromisoformat(text)
            except ValueError:
                pass
        if self.source.speed != 1.0 or self.source.t0 is None:
            return None
        return datetime.now() - timedelta(seconds=pylsl.local_clock() - self.source.t0)

    def follow(self, replayer, drain_timeout_s: float = 10.0,
               stop: threading.Event | None = None, poll_s: float = 0.05) -> None:
        """Wait until ``replayer`` (a :class:`~edge_scorer.stream.replay.Replayer` feeding this
        scorer) has finished and every sample it pushed has been pulled, then return.

        Returns early when scoring stops, when ``stop`` is set, or ``drain_timeout_s`` after the
        end of the replay (samples lost in transit). Call :meth:`stop` afterwards to finalize.
        """
        def halted() -> bool:
            return not self.is_running or (stop is not None and stop.is_set())

        while not replayer.wait(poll_s):
            if halted():
                return
        deadline = time.perf_counter() + drain_timeout_s
        while (not halted() and self.source.n_pulled < sum(replayer.n_pushed)
               and time.perf_counter() < deadline):
            time.sleep(poll_s)

    @property
    def is_running(self) -> bool:
        """Started and not yet finished (files written, inlets closed)."""
        return self._started and not self._done.is_set()

    def join(self, timeout: float | None = None, raise_error: bool = True) -> bool:
        """Wait for the loop to end and the night to be finalized; True when it has."""
        if not self._started:
            return True
        done = self._done.wait(timeout)
        if done and raise_error and self.error is not None:
            err, self.error = self.error, None
            raise err
        return done

    def stop(self, timeout: float | None = 30.0, raise_error: bool = True) -> bool:
        """Stop polling, score what has arrived, finish the engine (final labels, files) and
        disconnect; wait up to ``timeout`` (None: until done). True when finished."""
        self._stop.set()
        if self._started and self._thread is None and not self._done.is_set():
            self.finish()  # driven by the caller (start(thread=False)): finish it here
        if self._started and not self.join(timeout, raise_error=raise_error):
            log.warning("the live scoring thread did not end within %g s", timeout)
            return False
        return True
