"""Many beds in one process: one engine per bed, one model session, epochs batched across beds.

:class:`BedSet` scores several LSL PSG streams at once: each bed is a
:class:`~edge_scorer.stream.live.LiveScorer` (its own inlet, engine state, output folder
``OUT/<bed>``, stage outlet ``<bed>-stages`` and statistics) whose model is one shared
:class:`BatchingModel`: the intra-model images of epochs that become ready together in
different beds are scored in one inference call (the first bed to arrive runs the call for
every bed waiting; the others join the next one). A bed that refuses (stream not found, a
missing channel, a bad description) or drops out (no samples for ``idle_timeout_s``: its night
is finalized) is reported in :meth:`BedSet.summary` and never stops the others; with
``discover`` a bed that appears later (any PSG stream of the type) is picked up.

Beds come from ``--name`` options, a beds file (:func:`read_beds_file`: TOML ``[[bed]]``
tables or CSV rows with ``name``, ``source_id``, ``channels``) or discovery
(:func:`discover_beds`).
"""

from __future__ import annotations

import csv
import re
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger

log = get_logger("beds")

_COMPANION = re.compile(r".+-[0-9.]+Hz")
#: A bed's pull + staging longer than this is logged (the other beds wait for it).
SLOW_STEP_S = 0.5
#: A bed whose pull + staging has not returned after this many seconds is blocked (inside
#: liblsl, e.g. on a stream lost while it recovers): it is ended and a new polling thread
#: takes the other beds over (:class:`BedPoller`).
STUCK_S = 10.0
#: Beds connected at once (each waits about 1-2 s on LSL resolution and clock offsets).
CONNECT_THREADS = 64


@dataclass(frozen=True)
class BedConfig:
    """One bed: the stream to resolve, its channel overrides, its folder/outlet label."""

    name: str | None = None
    source_id: str | None = None
    channels: tuple[tuple[str, str], ...] = ()
    label: str = ""

    def __post_init__(self) -> None:
        if not (self.name or self.source_id):
            raise ValueError("a bed needs a stream name or a source id")
        label = self.label or self.name or self.source_id or ""
        object.__setattr__(self, "label", re.sub(r"[^A-Za-z0-9._-]+", "_", label))


def _channels(text: str, where: str) -> tuple[tuple[str, str], ...]:
    from edge_scorer.io.montage import parse_channel_overrides

    items = [s.strip() for s in text.replace(";", ",").split(",") if s.strip()]
    try:
        return tuple(sorted(parse_channel_overrides(items).items()))
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def read_beds_file(path: str | Path) -> list[BedConfig]:
    """Beds of a TOML file (``[[bed]]`` with ``name``, ``source_id``, ``label``, ``channels``
    = ``{ROW = "LABEL"}``) or a CSV file (header ``name,source_id,label,channels``; channels
    ``ROW=LABEL;ROW=LABEL``).

    Raises
    ------
    FileNotFoundError, ValueError
        A missing file, an unknown suffix, a bed without name or source id, unknown keys,
        or two beds with one label.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"beds file not found: {path}")
    beds: list[BedConfig] = []
    if path.suffix.lower() == ".toml":
        import tomllib

        data = tomllib.loads(path.read_text(encoding="utf-8"))
        extra = set(data) - {"bed"}
        if extra or not isinstance(data.get("bed"), list):
            raise ValueError(f"{path}: expected [[bed]] tables only (found {sorted(data)})")
        for k, entry in enumerate(data["bed"], 1):
            unknown = set(entry) - {"name", "source_id", "label", "channels"}
            if unknown:
                raise ValueError(f"{path}: bed {k} has unknown keys {sorted(unknown)}; use "
                                 "name, source_id, label, channels")
            ch = entry.get("channels", {})
            if not isinstance(ch, dict):
                raise ValueError(f"{path}: bed {k}: channels must be a table ROW = \"LABEL\"")
            try:
                beds.append(BedConfig(entry.get("name"), entry.get("source_id"),
                                      tuple(sorted((str(a), str(b)) for a, b in ch.items())),
                                      entry.get("label", "")))
            except ValueError as exc:
                raise ValueError(f"{path}: bed {k}: {exc}") from None
    elif path.suffix.lower() == ".csv":
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            unknown = set(reader.fieldnames or []) - {"name", "source_id", "label", "channels"}
            if unknown:
                raise ValueError(f"{path}: unknown columns {sorted(unknown)}; use name, "
                                 "source_id, label, channels")
            for n, row in enumerate(reader, 2):
                try:
                    beds.append(BedConfig(row.get("name") or None, row.get("source_id") or None,
                                          _channels(row.get("channels") or "", f"{path}:{n}"),
                                          row.get("label") or ""))
                except ValueError as exc:
                    raise ValueError(f"{path}:{n}: {exc}") from None
    else:
        raise ValueError(f"{path}: a beds file is .toml or .csv")
    labels = [b.label for b in beds]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise ValueError(f"{path}: several beds are labelled {dupes}; give each its own label")
    return beds


def discover_beds(stype: str = "EEG", timeout_s: float = 1.0) -> list[BedConfig]:
    """A bed for every stream of type ``stype`` on the network (companion ``NAME-<rate>Hz``
    streams belong to their bed; two streams with one name are told apart by source id)."""
    from edge_scorer.stream.inlet import find_streams

    infos = [i for i in find_streams(timeout_s=timeout_s) if i.type().lower() == stype.lower()]
    names = [i.name() for i in infos]
    beds = []
    for info in infos:
        if _COMPANION.fullmatch(info.name()) and info.name().rsplit("-", 1)[0] in names:
            continue
        if names.count(info.name()) > 1:
            beds.append(BedConfig(source_id=info.source_id(),
                                  label=f"{info.name()}_{info.source_id()}"))
        else:
            beds.append(BedConfig(name=info.name()))
    return beds


class BatchingModel:
    """A :class:`~edge_scorer.inference.scorer.ScoringModel` shared by many engines in many threads,
    whose intra calls are batched across them (everything else is the model's own).

    Parameters
    ----------
    model : ScoringModel
        The one model (one session pair).
    max_batch : int
        Largest images per inference call.
    """

    def __init__(self, model: Any, max_batch: int = 256) -> None:
        if max_batch < 1:
            raise ValueError(f"max_batch must be >= 1, got {max_batch}")
        self._model = model
        self.max_batch = int(max_batch)
        self._cond = threading.Condition()
        self._queue: list[dict] = []
        self._running = False
        #: Inference calls made and epochs they scored (their ratio: the mean batch).
        self.n_calls = 0
        self.n_epochs = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._model, name)

    def epoch_outputs(self, images: np.ndarray, batch_size: int = 64, *, raw: bool = False
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Intra logits and features of ``images``, scored together with the images other
        beds are waiting on (same results as the model's own method, row for row)."""
        req = {"images": np.asarray(images), "raw": raw, "done": False, "out": None,
               "error": None}
        with self._cond:
            self._queue.append(req)
            while not req["done"]:
                if self._running:
                    self._cond.wait()
                    continue
                self._running = True
                batch = self._take()
                self._cond.release()
                try:
                    self._run(batch)
                finally:
                    self._cond.acquire()
                    self._running = False
                    self._cond.notify_all()
        if req["error"] is not None:
            raise req["error"]
        return req["out"]

    def _take(self) -> list[dict]:
        """Pop the waiting requests (same ``raw``, up to ``max_batch`` images; at least one)."""
        raw = self._queue[0]["raw"]
        batch, rest, n = [], [], 0
        for r in self._queue:
            if r["raw"] == raw and (not batch or n + len(r["images"]) <= self.max_batch):
                batch.append(r)
                n += len(r["images"])
            else:
                rest.append(r)
        self._queue = rest
        return batch

    def _run(self, batch: list[dict]) -> None:
        try:
            images = np.concatenate([r["images"] for r in batch])
            logits, feats = self._model.epoch_outputs(images, batch_size=max(1, len(images)),
                                                      raw=batch[0]["raw"])
            self.n_calls += 1
            self.n_epochs += len(images)
            k = 0
            for r in batch:
                n = len(r["images"])
                r["out"] = (logits[k:k + n], feats[k:k + n])
                k += n
        except Exception as exc:  # each waiting bed gets the error
            for r in batch:
                r["error"] = exc
        for r in batch:
            r["done"] = True


@dataclass
class Bed:
    """A bed's state in a :class:`BedSet` (``status``: starting, scoring, ended, lost,
    refused, failed). ``lost``: its pull blocked inside liblsl for :data:`STUCK_S`, which is
    what a stream that went away looks like while liblsl tries to recover it (seen on a
    dropped-out bed under load); its night is finalized as an ended bed's is."""

    config: BedConfig
    status: str = "starting"
    error: str = ""
    live: Any = None
    out_dir: Path | None = None
    started: float = field(default_factory=time.perf_counter)
    #: Being finalized (no longer polled).
    ending: bool = False
    #: Why the watchdog ended it (its stream stopped answering); empty otherwise.
    lost: str = ""


class BedPoller:
    """One thread that polls every bed's inlets and drives their engines.

    Each round pulls what arrived for every bed and conditions and renders it
    (:meth:`~edge_scorer.stream.live.LiveScorer.step`), scores the epochs every bed completed
    in one intra-model call (up to ``max_batch`` images a call), and hands each bed its
    outputs (:meth:`~edge_scorer.engine.engine.Engine.complete`: the inter window, the bed's
    CSV and outlet). A bed that fails or goes idle is finalized on a small pool of finishing
    threads; the others go on. One thread instead of one per bed: with 100 beds, 100 threads
    polling every 20 ms contend for the GIL and the cores the model needs.

    Parameters
    ----------
    bedset : BedSet
        Whose scoring beds are polled.
    poll_s : float
        Pause after a round in which no bed had samples.
    """

    def __init__(self, bedset: BedSet, poll_s: float = 0.02) -> None:
        self.bedset = bedset
        self.poll_s = float(poll_s)
        self._stop = threading.Event()
        self._finishing = ThreadPoolExecutor(4, thread_name_prefix="edge-scorer-bed-end")
        self._futures: list = []
        self._abandoned: list[threading.Thread] = []
        #: Generation of the polling thread; a blocked thread is replaced by the next one.
        self._gen = 0
        self._busy: tuple[int, Bed, float] | None = None  # (generation, bed, since)
        self._thread = self._new_thread()
        self._watchdog = threading.Thread(target=self._watch, name="edge-scorer-beds-watchdog",
                                          daemon=True)

    def _new_thread(self) -> threading.Thread:
        return threading.Thread(target=self._loop, args=(self._gen,), daemon=True,
                                name="edge-scorer-beds" + (f"-{self._gen}" if self._gen else ""))

    def start(self) -> None:
        """Start the polling thread and its watchdog."""
        self._thread.start()
        self._watchdog.start()

    def stop(self) -> None:
        """Stop polling (the current round is completed first; a blocked thread is replaced
        by the watchdog, and its successor stops at once)."""
        self._stop.set()
        while True:
            thread = self._thread
            thread.join(timeout=0.5)
            if not thread.is_alive() and thread is self._thread:
                return

    def wait_finishing(self) -> None:
        """Wait until every bed handed to the finishing threads is finalized."""
        for fut in list(self._futures):
            fut.result()
        self._finishing.shutdown(wait=True)
        for thread in self._abandoned:
            thread.join(timeout=60.0)

    def _watch(self) -> None:
        """Replace a polling thread blocked in one bed for :data:`STUCK_S`: that bed ends with
        what it scored (its files written, its inlets left open), the others go on."""
        while not (self._stop.is_set() and not self._thread.is_alive()):
            time.sleep(0.5)
            busy = self._busy
            if busy is None or busy[0] != self._gen or time.perf_counter() - busy[2] < STUCK_S:
                continue
            _, bed, since = busy
            self._gen += 1
            self._busy = None
            log.error("bed %s: its stream stopped answering (a pull blocked for %.0f s inside "
                      "liblsl, as on a lost stream it is recovering): ending it with the epochs "
                      "scored so far; the other beds go on", bed.config.label,
                      time.perf_counter() - since)
            bed.ending = True
            bed.lost = (f"stream lost: a pull blocked inside liblsl for more than {STUCK_S:g} s "
                        "(the night is finalized with the epochs scored before)")
            ender = threading.Thread(target=bed.live.abandon, daemon=True,
                                     name=f"edge-scorer-bed-abandon-{bed.config.label}")
            ender.start()
            self._abandoned.append(ender)
            for other in self.bedset.polled():  # they were not polled while it was blocked
                other.live.restart_idle_clock()
            self._thread = self._new_thread()
            self._thread.start()

    def _loop(self, gen: int) -> None:
        while not self._stop.is_set() and gen == self._gen:
            try:
                active = self._round(gen)
            except Exception as exc:  # never leave the beds unpolled silently
                log.exception("bed polling round failed: %s", exc)
                active = False
            if not active:
                self._stop.wait(self.poll_s)

    def _step(self, gen: int, bed: Bed) -> tuple[bool, Any]:
        """One bed's pull + staging, watched; (False, None) when this thread was replaced
        while it ran (its results are dropped)."""
        self._busy = (gen, bed, time.perf_counter())
        try:
            got = bed.live.step()
        finally:
            if self._busy is not None and self._busy[0] == gen:
                self._busy = None
        return gen == self._gen, got

    def _round(self, gen: int) -> bool:
        """Pull, stage, score and complete every bed once; True when any bed had samples."""
        staged: list[tuple[Bed, Any]] = []
        active = False
        for bed in self.bedset.polled():
            if gen != self._gen:
                return False
            live = bed.live
            t0 = time.perf_counter()
            try:
                current, got = self._step(gen, bed)
            except Exception as exc:
                if gen != self._gen:
                    return False
                self.end(bed, exc)
                continue
            if not current:
                return False
            took = time.perf_counter() - t0
            if took > SLOW_STEP_S:  # every bed waits for this one
                log.warning("bed %s: pulling and staging took %.2f s (every bed waited)",
                            bed.config.label, took)
            if got is None:
                if live.idle_expired():
                    log.info("bed %s: no samples for %g s: ending", bed.config.label,
                             live.idle_timeout_s)
                    self.end(bed)
                continue
            active = True
            staged += [(bed, p) for p in got]
        if staged:
            self._score(staged)
        return active

    def _score(self, staged: list[tuple[Bed, Any]]) -> None:
        """One intra call per ``max_batch`` images of all beds; each bed completes its own."""
        model = self.bedset.model
        groups: list[list[tuple[Bed, Any]]] = [[]]
        n = 0
        for item in staged:
            k = len(item[1].images)
            if groups[-1] and n + k > model.max_batch:
                groups.append([])
                n = 0
            groups[-1].append(item)
            n += k
        for group in groups:
            t0 = time.perf_counter()
            try:
                logits, feats = model.epoch_outputs(np.concatenate([p.images for _, p in group]))
            except Exception as exc:  # every bed of the call gets the error
                for bed, _ in group:
                    self.end(bed, exc)
                continue
            share = (time.perf_counter() - t0) / len(logits)
            k = 0
            for bed, pending in group:
                m = len(pending.images)
                if not bed.ending:
                    bed.live.engine.timings["intra"] += share * m
                    try:
                        bed.live.engine.complete(pending, logits[k:k + m], feats[k:k + m])
                    except Exception as exc:
                        self.end(bed, exc)
                k += m

    def end(self, bed: Bed, error: BaseException | None = None) -> None:
        """Stop polling ``bed`` and finalize it on a finishing thread (its night's files)."""
        if bed.ending:
            return
        bed.ending = True
        if error is not None:
            bed.live.fail(error)
        self._futures.append(self._finishing.submit(bed.live.finish, False))


class BedSet:
    """Score several beds in this process (see the module docstring).

    Parameters
    ----------
    model : ScoringModel
        Loaded once; wrapped in a :class:`BatchingModel`.
    beds : sequence of BedConfig
        The beds to start with.
    out_dir : path-like, optional
        Each bed writes ``out_dir/<label>``.
    outlets : bool
        Publish each bed's stages on ``<label>-stages``.
    channel_overrides : dict, optional
        For every bed (a bed's own overrides win).
    discover : str, optional
        Stream type: every ``discover_s`` look for new streams of it and add them as beds.
    live_kwargs : dict, optional
        More :class:`~edge_scorer.stream.live.LiveScorer` options (``idle_timeout_s``,
        ``source_kwargs``, ``engine_kwargs``, ``formats``, ``sinks``).
    max_batch : int
        Largest intra batch across beds.
    overwrite : bool
        Replace an earlier run's files in a bed's folder (else that bed is refused).
    """

    def __init__(self, model: Any, beds: Sequence[BedConfig], out_dir: str | Path | None = None,
                 *, outlets: bool = True, channel_overrides: dict | None = None,
                 discover: str | None = None, discover_s: float = 5.0,
                 live_kwargs: dict | None = None, max_batch: int = 256,
                 overwrite: bool = False) -> None:
        self.overwrite = overwrite
        self.model = BatchingModel(model, max_batch)
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.outlets = outlets
        self.channel_overrides = dict(channel_overrides or {})
        self.discover = discover
        self.discover_s = float(discover_s)
        self.live_kwargs = dict(live_kwargs or {})
        self.beds: dict[str, Bed] = {}
        self._pending = list(beds)
        self._last_discovery = 0.0
        self._lock = threading.Lock()
        self.poller = BedPoller(self, poll_s=float(self.live_kwargs.pop("poll_s", 0.02)))

    def polled(self) -> list[Bed]:
        """The beds the poller drives now (scoring, not being finalized)."""
        with self._lock:
            return [b for b in self.beds.values() if b.status == "scoring" and not b.ending]

    def _start_one(self, cfg: BedConfig) -> Bed:
        from edge_scorer.io.outputs import prepare_output_dir
        from edge_scorer.stream.live import LiveScorer

        bed = self.beds[cfg.label]
        out = self.out_dir / cfg.label if self.out_dir is not None else None
        try:
            if out is not None:
                prepare_output_dir(out, overwrite=self.overwrite)
            live = LiveScorer(self.model, name=cfg.name, source_id=cfg.source_id, out_dir=out,
                              outlet_name=f"{cfg.label}-stages" if self.outlets else None,
                              channel_overrides={**self.channel_overrides, **dict(cfg.channels)},
                              **self.live_kwargs)
            live.start(thread=False)
        except Exception as exc:  # refused: reported, the others go on
            bed.status, bed.error = "refused", f"{type(exc).__name__}: {exc}"
            log.error("bed %s refused: %s", cfg.label, bed.error)
            return bed
        bed.live, bed.out_dir, bed.status = live, out, "scoring"
        log.info("bed %s: scoring %s", cfg.label, " + ".join(live.source.stream_names))
        return bed

    def _start(self, configs: Sequence[BedConfig]) -> None:
        new = []
        with self._lock:
            for cfg in configs:
                if cfg.label in self.beds:
                    if not self.discover:
                        raise ValueError(f"two beds are labelled {cfg.label!r}")
                    continue
                self.beds[cfg.label] = Bed(cfg)
                new.append(cfg)
        if new:  # connecting mostly waits (resolution, clock offsets): many at once
            with ThreadPoolExecutor(min(CONNECT_THREADS, len(new))) as pool:
                list(pool.map(self._start_one, new))

    def start(self) -> BedSet:
        """Connect and start every bed (in parallel); refusals are recorded, not raised."""
        beds, self._pending = self._pending, []
        self._start(beds)
        if self.discover:
            self._start(discover_beds(self.discover))
            self._last_discovery = time.perf_counter()
        self.poller.start()
        return self

    def poll(self) -> bool:
        """Note beds that ended; discover new ones. True while any bed is scoring (or with
        discovery on)."""
        for bed in list(self.beds.values()):
            if bed.status == "scoring" and not bed.live.is_running:
                err = bed.live.error
                if err is not None:
                    bed.status, bed.error = "failed", f"{type(err).__name__}: {err}"
                    log.warning("bed %s failed: %s", bed.config.label, bed.error)
                elif bed.lost:
                    bed.status, bed.error = "lost", bed.lost
                    log.warning("bed %s lost; its night is finalized", bed.config.label)
                else:
                    bed.status = "ended"
                    log.warning("bed %s ended (no samples: dropped out or finished); its "
                                "night is finalized", bed.config.label)
        if self.discover and time.perf_counter() - self._last_discovery > self.discover_s:
            self._last_discovery = time.perf_counter()
            self._start(discover_beds(self.discover))
        return bool(self.discover) or any(b.status == "scoring" for b in self.beds.values())

    def stop(self) -> None:
        """Stop polling; every bed still scoring scores what has arrived and finalizes its
        night (in parallel; their last epochs are batched across beds)."""
        self.poller.stop()
        running = self.polled()
        for bed in running:
            bed.ending = True
        if running:
            with ThreadPoolExecutor(min(16, len(running))) as pool:
                list(pool.map(lambda b: b.live.stop(timeout=None, raise_error=False), running))
        self.poller.wait_finishing()
        self.poll()

    def summary(self) -> list[dict]:
        """Per bed: label, status, error, epochs, latency (median/p99 ms), output folder."""
        rows = []
        for bed in self.beds.values():
            eng = bed.live.engine if bed.live is not None else None
            lat = eng.latency_summary() if eng is not None else {}
            rows.append({"bed": bed.config.label, "status": bed.status, "error": bed.error,
                         "epochs": eng.n_epochs if eng is not None else 0,
                         "median_ms": lat.get("median_ms"), "p99_ms": lat.get("p99_ms"),
                         "out": str(bed.out_dir) if bed.out_dir else ""})
        return rows


__all__ = ["BatchingModel", "Bed", "BedConfig", "BedPoller", "BedSet", "discover_beds",
           "read_beds_file"]
