"""Where the engine's stages go: an append-only CSV, an LSL outlet, the night's files.

Every sink has ``write(updates, engine)`` (called with each batch of
:class:`~edge_scorer.engine.rolling.EpochUpdate`, in order) and ``close(engine)`` (end of the run).

* :class:`CsvLog` appends one row per update and flushes and fsyncs after every batch, so a
  crash loses at most the epoch being scored; :func:`read_epoch_log` rebuilds the night from it
  (the last row of each epoch wins; a torn last line is ignored).
* :class:`LslStageOutlet` publishes each update as one sample of a numeric LSL stream
  (``STAGE_CHANNELS``), keyed by epoch and stamped with the epoch's start on the source's clock
  when known; a final-only variant sends one label per epoch with increasing stamps; a
  subscriber that joins late gets the epochs so far first.
* :class:`NightFiles` writes the hypnogram (by default CSV with probabilities and the
  unfamiliar-signal columns, and EDF+ annotations; also BIDS ``events.tsv`` and NSRR XML:
  :data:`HYPNOGRAM_FILES`) and the sleep statistics (JSON and text, with the fraction of
  epochs flagged unfamiliar) when the run closes.

Every per-epoch output carries the unfamiliar-signal flag
(:mod:`edge_scorer.inference.familiarity`):
``familiarity`` (distance of the epoch's feature to the training data; empty/NaN when the model
carries no statistics) and ``unfamiliar`` (0/1; always 0 then). A flag asks for review of the
epoch; it is not a diagnosis of artifact.
* :class:`Callback` calls a function with each batch (printers, GUIs, tests).
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import math
import os
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.engine.rolling import FINAL, PROVISIONAL, REVISED, EpochUpdate
from edge_scorer.io.outputs import OutputError, atomic_write
from edge_scorer.stages import CLASS_NAMES, Stage
from edge_scorer.stats.hypnogram import Hypnogram

log = get_logger("sinks")

#: Columns of the epoch log before the unfamiliar-signal flag (still read).
LEGACY_LOG_COLUMNS = ("epoch", "onset_s", "status", "stage", *(f"p_{c}" for c in CLASS_NAMES),
                      "n_windows", "invalid_fraction", "gap_filled", "unscorable", "latency_ms",
                      "wall_time")
#: Columns of the append-only epoch log (``wall_time`` stays last: a torn line lacks it).
LOG_COLUMNS = (*LEGACY_LOG_COLUMNS[:-1], "familiarity", "unfamiliar", "wall_time")
#: Channels of the stage outlet (one sample per update; ``familiarity`` is NaN when the model
#: carries no statistics).
STAGE_CHANNELS = ("epoch", "stage", *(f"p_{c}" for c in CLASS_NAMES), "status", "n_windows",
                  "invalid_fraction", "gap_filled", "unscorable", "familiarity", "unfamiliar")
#: Numeric code of each status in the stage outlet.
STATUS_CODES = {PROVISIONAL: 0, REVISED: 1, FINAL: 2}
#: Seconds a stage outlet with subscribers stays up after the last push (they receive it).
OUTLET_LINGER_S = 0.5
#: The night's hypnogram file of each format (``--format``).
HYPNOGRAM_FILES = {"csv": "hypnogram.csv", "edf": "hypnogram.edf",
                   "bids": "hypnogram_events.tsv", "nsrr": "hypnogram.xml"}
#: Formats written when none are chosen.
DEFAULT_FORMATS = ("csv", "edf")


def parse_formats(formats: str | Sequence[str] | None) -> tuple[str, ...]:
    """Hypnogram formats from ``"csv,bids"`` or ``["csv", "nsrr"]`` (case ignored, duplicates
    dropped, order kept); None or empty gives :data:`DEFAULT_FORMATS`.

    Raises
    ------
    ValueError
        A format that is not one of :data:`HYPNOGRAM_FILES`.
    """
    if formats is None:
        return DEFAULT_FORMATS
    items = formats.split(",") if isinstance(formats, str) else list(formats)
    out: list[str] = []
    for item in items:
        for f in str(item).split(","):
            f = f.strip().lower()
            if not f:
                continue
            if f not in HYPNOGRAM_FILES:
                raise ValueError(f"unknown hypnogram format {f!r}; choose from "
                                 f"{', '.join(HYPNOGRAM_FILES)} (several: csv,edf,bids,nsrr)")
            if f not in out:
                out.append(f)
    return tuple(out) or DEFAULT_FORMATS


class CsvLog:
    """Append-only CSV of every update, made durable per batch.

    Each batch is written with one ``os.write`` on an ``O_APPEND`` descriptor and fsynced, so
    a signal handler (which runs between, never inside, system calls) or a second Ctrl-C that
    exits the process (:func:`hold_logs`) never leaves half a batch. A failed write (full disk)
    truncates the file back to its last whole batch and raises
    :class:`~edge_scorer.io.outputs.OutputError` naming the file.

    Parameters
    ----------
    path : path-like
        The log file; appended to when it exists with the same header (a restarted run),
        created otherwise.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        new = not self.path.exists() or self.path.stat().st_size == 0
        if not new:
            with open(self.path, newline="") as fh:
                header = fh.readline().strip().split(",")
            if tuple(header) == LEGACY_LOG_COLUMNS:
                raise ValueError(f"{self.path} is an epoch log of an older edge-scorer (no "
                                 "unfamiliar-signal columns); choose another output folder")
            if tuple(header) != LOG_COLUMNS:
                raise ValueError(f"{self.path} exists and is not an edge-scorer epoch log; "
                                 "choose another output folder")
        self._lock = threading.RLock()
        try:
            self._fd: int | None = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT,
                                           0o644)
        except OSError as exc:
            raise OutputError(f"could not write {self.path}: {exc.strerror}") from exc
        if new:
            self._append(_csv_text([LOG_COLUMNS]))
        elif not _ends_with_newline(self.path):  # a torn last line of a killed run
            self._append("\n")
        _OPEN_LOGS.add(self)

    def _append(self, text: str) -> None:
        data = text.encode("utf-8")
        with self._lock:
            if self._fd is None:
                raise ValueError(f"{self.path} is closed")
            size = os.fstat(self._fd).st_size
            try:
                view = memoryview(data)
                while view:  # one write unless the disk fills up mid-batch
                    view = view[os.write(self._fd, view):]
                os.fsync(self._fd)
            except OSError as exc:
                with contextlib.suppress(OSError):
                    os.ftruncate(self._fd, size)  # back to the last whole batch
                raise OutputError(f"could not write {self.path}: {exc.strerror} (the log keeps "
                                  "every batch before this one)") from exc

    def write(self, updates: list[EpochUpdate], engine: Any = None) -> None:
        """Append the updates and make them durable."""
        wall = time.time()
        self._append(_csv_text([
            [u.index, f"{u.onset_s:g}", u.status, Stage(u.stage).label,
             *(f"{p:.6f}" for p in u.proba), u.n_windows, f"{u.invalid_fraction:.4f}",
             int(u.gap_filled), int(u.unscorable),
             "" if u.latency_s is None else f"{u.latency_s * 1000:.2f}",
             _distance_text(u.familiarity), int(u.unfamiliar), f"{wall:.3f}"]
            for u in updates]))

    def close(self, engine: Any = None) -> None:
        """Close the file (idempotent)."""
        with self._lock:
            if self._fd is not None:
                os.close(self._fd)
                self._fd = None
        _OPEN_LOGS.discard(self)


#: Every open :class:`CsvLog` (for :func:`hold_logs`).
_OPEN_LOGS: weakref.WeakSet[CsvLog] = weakref.WeakSet()


def hold_logs(timeout_s: float = 2.0) -> None:
    """Wait until no :class:`CsvLog` is in the middle of a batch and keep it so.

    Called before the process exits at once (a second Ctrl-C): the locks are never released,
    so no batch starts afterwards and ``epochs.csv`` ends with a whole batch.
    """
    deadline = time.monotonic() + timeout_s
    for csv_log in list(_OPEN_LOGS):
        csv_log._lock.acquire(timeout=max(0.0, deadline - time.monotonic()))


def _csv_text(rows: Any) -> str:
    buf = io.StringIO()
    csv.writer(buf, lineterminator="\n").writerows(rows)
    return buf.getvalue()


def _ends_with_newline(path: Path) -> bool:
    with open(path, "rb") as fh:
        fh.seek(-1, os.SEEK_END)
        return fh.read(1) == b"\n"


def _distance_text(d: float) -> str:
    """A familiarity distance for a CSV cell (empty when not available)."""
    return "" if not math.isfinite(d) else f"{d:.4f}"


def read_epoch_log(path: str | Path, epoch_s: float = 30.0) -> tuple[Hypnogram, dict]:
    """Rebuild a night from an epoch log (after a crash, or to review a run).

    Logs of older versions (without the unfamiliar-signal columns) are read too.

    Returns
    -------
    hypnogram : Hypnogram
        The last state of every epoch (stages, probabilities; unscorable epochs UNSCORED).
    info : dict
        ``status`` (the last status per epoch), ``familiarity`` (float array, NaN where not
        available) and ``unfamiliar`` (bool array) per epoch, ``n_rows`` read, ``n_torn``
        (ignored lines).
    """
    from edge_scorer.stages import parse_stage

    last: dict[int, list[str]] = {}
    n_rows = n_torn = 0
    with open(path, newline="") as fh:
        reader = csv.reader(fh)
        header = next(reader, None)
        if header is None or tuple(header) not in (LOG_COLUMNS, LEGACY_LOG_COLUMNS):
            raise ValueError(f"{path} is not an edge-scorer epoch log (header {header})")
        col = {c: k for k, c in enumerate(header)}
        for row in reader:
            if len(row) != len(header) or not row[-1]:
                n_torn += 1
                continue
            n_rows += 1
            last[int(row[0])] = row
    n = max(last) + 1 if last else 0
    stages = np.full(n, int(Stage.UNSCORED), dtype=np.int8)
    proba = np.full((n, len(CLASS_NAMES)), np.nan, dtype=np.float32)
    status = ["missing"] * n
    distance = np.full(n, np.nan)
    unfamiliar = np.zeros(n, dtype=bool)
    for i, row in last.items():
        stages[i] = parse_stage(row[3])
        proba[i] = [float(v) for v in row[4:4 + len(CLASS_NAMES)]]
        status[i] = row[2]
        if "familiarity" in col:
            distance[i] = float(row[col["familiarity"]] or "nan")
            unfamiliar[i] = row[col["unfamiliar"]] == "1"
    hyp = Hypnogram(stages, epoch_s, probabilities=np.nan_to_num(proba) if n else None)
    return hyp, {"status": status, "familiarity": distance, "unfamiliar": unfamiliar,
                 "n_rows": n_rows, "n_torn": n_torn}


class LslStageOutlet:
    """Publish stages on a numeric LSL stream (irregular rate, float32), keyed by epoch.

    Every sample carries its epoch's index (channel ``epoch``) and is stamped with the epoch's
    start on the source's LSL clock (``stamp``), so consumers key by epoch: an epoch gets a
    provisional sample, revised ones and a final one, all with its start as time stamp, so the
    stamps of the full outlet are not monotonic (a revision of epoch 3 follows the provisional
    label of epoch 12); the latest sample of an epoch wins. With ``final_only`` (the
    ``NAME-final`` outlet) an epoch is sent once, when its stage is final, in epoch order: the
    stamps increase, one label per epoch, for consumers that want exactly that.

    **Late subscribers catch up.** LSL hands a new inlet only what is pushed after it connects.
    The outlet keeps the latest sample of every epoch and, when it gains a subscriber after
    having none (polled every ``catch_up_s``, and before every push), sends that history first,
    in epoch order; then the updates follow.

    Parameters
    ----------
    name : str
        Stream name (e.g. ``NAME-stages``; ``NAME-stages-final`` for the final-only outlet).
    source_id : str
        Stable source id.
    stamp : callable, optional
        ``epoch index -> LSL time`` of the epoch start (e.g.
        :meth:`~edge_scorer.stream.inlet.LslSource.epoch_stamp`); default: the publish time.
    familiarity_threshold : float, optional
        The model's unfamiliar-signal threshold, written into the stream description (absent:
        the model carries no statistics, the ``familiarity`` channel is NaN).
    final_only : bool
        One sample per epoch, when final (see above).
    catch_up_s : float
        How often a new subscriber is looked for (0: only before pushes).
    """

    def __init__(self, name: str, source_id: str,
                 stamp: Callable[[int], float | None] | None = None,
                 familiarity_threshold: float | None = None, *, final_only: bool = False,
                 catch_up_s: float = 0.2) -> None:
        import pylsl

        info = pylsl.StreamInfo(name, "SleepStages", len(STAGE_CHANNELS), pylsl.IRREGULAR_RATE,
                                pylsl.cf_float32, source_id)
        chans = info.desc().append_child("channels")
        for c in STAGE_CHANNELS:
            ch = chans.append_child("channel")
            ch.append_child_value("label", c)
            ch.append_child_value("unit", "probability" if c.startswith("p_") else
                                  "distance" if c == "familiarity" else "code")
        es = info.desc().append_child("edge_scorer")
        es.append_child_value("stage_codes", "W=0 N1=1 N2=2 N3=3 REM=4 UNSCORED=-1")
        es.append_child_value("status_codes", "provisional=0 revised=1 final=2")
        es.append_child_value("unfamiliar_codes", "0=familiar or flag off, 1=far from the "
                              "training data (review; not a diagnosis)")
        es.append_child_value("keyed_by", "epoch (channel 'epoch'); stamp = the epoch's start")
        es.append_child_value("updates", "final only: one sample per epoch, increasing stamps"
                              if final_only else "provisional, revised and final samples per "
                              "epoch (stamps not monotonic); the latest sample of an epoch wins")
        es.append_child_value("history", "sent to a subscriber that connects when there is "
                              "none, in epoch order")
        if familiarity_threshold is not None:
            es.append_child_value("familiarity_threshold", f"{familiarity_threshold:.6g}")
        self.name = name
        self.final_only = bool(final_only)
        self.outlet = pylsl.StreamOutlet(info)
        self.stamp = stamp
        self.n_pushed = 0
        self.n_caught_up = 0
        self._history: dict[int, tuple[list[float], float]] = {}
        self._had_consumers = False
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._poller: threading.Thread | None = None
        if catch_up_s > 0:
            self._poller = threading.Thread(target=self._poll, args=(float(catch_up_s),),
                                            name=f"edge-scorer-outlet-{name}", daemon=True)
            self._poller.start()

    def _catch_up(self) -> None:
        """(Lock held.) A first subscriber after none: send the history, in epoch order."""
        has = self.outlet.have_consumers()
        if has and not self._had_consumers and self._history:
            for i in sorted(self._history):
                sample, ts = self._history[i]
                self.outlet.push_sample(sample, ts)
            self.n_caught_up += 1
            log.info("%s: a subscriber joined; sent the %d epoch(s) so far", self.name,
                     len(self._history))
        self._had_consumers = has

    def _poll(self, period_s: float) -> None:
        while not self._closed.wait(period_s):
            with self._lock:
                if self.outlet is None:
                    return
                self._catch_up()

    def write(self, updates: list[EpochUpdate], engine: Any = None) -> None:
        import pylsl

        with self._lock:
            if self.outlet is None:
                return
            self._catch_up()
            for u in updates:
                if self.final_only and u.status != FINAL:
                    continue
                ts = self.stamp(u.index) if self.stamp is not None else None
                ts = ts if ts is not None else pylsl.local_clock()
                sample = [u.index, u.stage, *u.proba.tolist(), STATUS_CODES[u.status],
                          u.n_windows, u.invalid_fraction, float(u.gap_filled),
                          float(u.unscorable), float(u.familiarity), float(u.unfamiliar)]
                self._history[u.index] = (sample, ts)
                self.outlet.push_sample(sample, ts)
                self.n_pushed += 1

    def close(self, engine: Any = None) -> None:
        """Stop; an outlet with subscribers stays up :data:`OUTLET_LINGER_S` first, so that
        the last (final) samples reach them."""
        self._closed.set()
        with self._lock:
            outlet, self.outlet = self.outlet, None
        if self._poller is not None and self._poller is not threading.current_thread():
            self._poller.join(1.0)
        if outlet is not None and outlet.have_consumers():
            time.sleep(OUTLET_LINGER_S)
        del outlet


class NightFiles:
    """The night's hypnogram files and sleep statistics, written atomically.

    Files in ``out_dir``: the hypnogram in the formats ``run_info["formats"]`` names (default
    :data:`DEFAULT_FORMATS`; :data:`HYPNOGRAM_FILES`): ``hypnogram.csv`` (stages +
    probabilities + ``familiarity`` and ``unfamiliar`` per epoch), ``hypnogram.edf`` (EDF+
    annotations, opens in EDFbrowser), ``hypnogram_events.tsv`` (BIDS), ``hypnogram.xml``
    (NSRR);
    ``stats.json`` and ``stats.txt`` (with ``unfamiliar_epochs``/``unfamiliar_fraction``, the
    latter null when the model carries no familiarity statistics), ``run.json`` (model, spec,
    source, epochs, samples received, latency, ``familiarity`` summary, temperatures).

    ``run.json`` is written with ``"state": "running"`` when the first epoch is scored (what
    ``edge-scorer finalize`` needs to rebuild the night after a crash) and rewritten last, with
    ``"state": "finished"``, when the run closes. Every file goes through
    :func:`~edge_scorer.io.outputs.atomic_write`: a crash or a full disk never leaves half a file.
    """

    def __init__(self, out_dir: str | Path, run_info: dict | None = None) -> None:
        self.out = Path(out_dir)
        self.run_info = dict(run_info or {})
        self.written: list[Path] = []
        self._started = False

    def _info(self, engine: Any, state: str) -> dict:
        model = engine.model
        fam = model.familiarity
        return {**self.run_info, "state": state, "spec": engine.spec.name,
                "spec_hash": engine.spec.hash, "epoch_s": engine.spec.epoch_s,
                "start_time": engine.start_time.isoformat() if engine.start_time else None,
                "familiarity_statistics": {
                    "available": fam is not None,
                    "threshold": fam.threshold if fam is not None else None,
                    "quantile": fam.quantile if fam is not None else None},
                "temperature": {"intra": model.intra_temperature,
                                "inter": model.inter_temperature}}

    def write(self, updates: list[EpochUpdate], engine: Any = None) -> None:
        """At the first epoch: ``run.json`` with ``"state": "running"`` (the CSV log has the
        epochs)."""
        if self._started or engine is None:
            return
        self._started = True
        atomic_write(self.out / "run.json",
                     json.dumps(self._info(engine, "running"), indent=2, default=str) + "\n")

    def close(self, engine: Any) -> None:
        hyp = engine.hypnogram()
        distance, flags = engine.rolling.familiarity()
        info = {**self._info(engine, "finished"), "n_epochs": hyp.n_epochs,
                "samples": engine.samples_summary(), "latency": engine.latency_summary(),
                "n_unscorable": int(np.sum(hyp.stages == Stage.UNSCORED)),
                "familiarity": engine.familiarity_summary()}
        if engine.sink_error is not None:
            info.update(state="failed", errors=[f"{type(engine.sink_error).__name__}: "
                                                f"{engine.sink_error}"])
        self.written += write_night_files(self.out, hyp, distance, flags, info)


def write_night_files(out: Path, hyp: Hypnogram, distance: np.ndarray, flags: np.ndarray,
                      info: dict) -> list[Path]:
    """Write the hypnogram (``info["formats"]``, default ``hypnogram.csv``/``.edf``),
    ``stats.json``/``.txt`` and ``run.json`` (last).

    ``info`` is the content of ``run.json``; its ``familiarity`` entry (the summary of
    :meth:`~edge_scorer.engine.engine.Engine.familiarity_summary`) goes into the statistics. Every
    file is tried; the first failure is raised at the end (each one is logged with its file).

    Raises
    ------
    OutputError
        A file could not be written (it is left as it was).
    """
    from edge_scorer.inference.familiarity import summary_line
    from edge_scorer.stats.sleepstats import sleep_statistics

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    fam = info.get("familiarity") or {}
    written: list[Path] = []
    errors: list[OutputError] = []

    def attempt(fn: Callable[[], Path]) -> None:
        try:
            written.append(fn())
        except OutputError as exc:
            log.error("%s", exc)
            errors.append(exc)

    if hyp.n_epochs == 0:
        log.warning("no complete epoch was scored; no hypnogram written to %s", out)
    else:
        formats = parse_formats(info.get("formats"))
        if "csv" in formats:
            attempt(lambda: hyp.write(out / HYPNOGRAM_FILES["csv"], extra_columns={
                "familiarity": [_distance_text(d) for d in distance],
                "unfamiliar": [str(int(f)) for f in flags]}))
        for fmt in (f for f in formats if f != "csv"):
            attempt(lambda fmt=fmt: hyp.write(out / HYPNOGRAM_FILES[fmt], fmt=fmt))
        stats = sleep_statistics(hyp)
        clean = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                 for k, v in stats.as_dict().items()}
        clean.update(unfamiliar_epochs=fam.get("n_unfamiliar", 0),
                     unfamiliar_fraction=fam.get("fraction"),
                     familiarity_threshold=fam.get("threshold"))
        attempt(lambda: atomic_write(out / "stats.json", json.dumps(clean, indent=2) + "\n"))
        attempt(lambda: atomic_write(out / "stats.txt", f"{stats}\n{summary_line(fam)}\n"))
    if errors:  # run.json "finished" only over a whole set of night files
        info = {**info, "state": "failed",
                "errors": [*info.get("errors", []), *(str(e) for e in errors)]}
    attempt(lambda: atomic_write(out / "run.json",
                                 json.dumps(info, indent=2, default=str) + "\n"))
    if written:
        log.info("wrote %s", ", ".join(p.name for p in written))
    if errors:
        raise errors[0]
    return written


class Callback:
    """Call ``fn(updates, engine)`` with each batch (and ``on_close(engine)`` at the end)."""

    def __init__(self, fn: Callable[[list[EpochUpdate], Any], None],
                 on_close: Callable[[Any], None] | None = None) -> None:
        self.fn, self.on_close = fn, on_close

    def write(self, updates: list[EpochUpdate], engine: Any = None) -> None:
        self.fn(updates, engine)

    def close(self, engine: Any = None) -> None:
        if self.on_close is not None:
            self.on_close(engine)


def output_sinks(out_dir: str | Path, run_info: dict | None = None,
                 formats: str | Sequence[str] | None = None) -> list:
    """The file sinks of a scoring run: ``epochs.csv`` (:class:`CsvLog`) and the night's
    files at the end (:class:`NightFiles`, the hypnogram in ``formats``, see
    :func:`parse_formats`). Used by ``score``, ``stream`` and the demo."""
    out = Path(out_dir)
    info = {**(run_info or {}), "formats": list(parse_formats(formats))}
    return [CsvLog(out / "epochs.csv"), NightFiles(out, info)]
