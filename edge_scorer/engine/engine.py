"""The scoring engine: native-rate samples in, staged epochs out, the same for files and streams.

:class:`Engine` is fed rows of native-rate samples in spec order (from an
:class:`~edge_scorer.stream.inlet.LslSource` live, or from a file by
:mod:`edge_scorer.engine.offline`) and
runs, in order:

1. :class:`~edge_scorer.dsp.conditioning.Conditioner` (the one filter chain, chunk-invariant);
2. :class:`~edge_scorer.dsp.conditioning.Epocher` (30-s epochs aligned to the first sample);
3. :func:`~edge_scorer.dsp.render.render_epochs` (the one renderer);
4. the intra model (:meth:`~edge_scorer.inference.scorer.ScoringModel.epoch_outputs`, batched over
   the
   epochs a call completes), and each epoch's distance to the training data from its feature
   (:meth:`~edge_scorer.inference.scorer.ScoringModel.familiarity_of`: the unfamiliar-signal flag,
   off
   for a model without the statistics);
5. :class:`~edge_scorer.engine.rolling.RollingScorer` (inter model over the last 10 epochs,
   provisional / revised / final stages);
6. every sink (:mod:`edge_scorer.engine.sinks`: append-only CSV, LSL outlet, printers), in order.

Epoch quality: the fraction of an epoch's conditioned samples that came from missing or
non-finite input (NaN after conditioning) is measured per row, and the largest over the rows is
reported per epoch (``invalid_fraction``); above ``max_invalid_fraction`` the epoch is
*unscorable* (stage UNSCORED; its probabilities are still computed so that the window of its
neighbours stays intact). One dead row (an EEG lead of NaN) therefore makes the epoch
unscorable even when the other rows are fine: the model never saw such an image, and its
confident stage would not be trustworthy. The first epoch a row goes missing is logged. An
epoch holding samples filled by the inlet's gap interpolation is flagged ``gap_filled``. An
epoch whose intra feature is far from the model's training data is flagged ``unfamiliar``
(review it; not a diagnosis).

Errors never lose what is scored: sinks write each update as it is made, and
:meth:`Engine.finish` can always be called to finalize the epochs scored so far.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.dsp.conditioning import Conditioner, Epocher
from edge_scorer.dsp.render import render_epochs
from edge_scorer.engine.rolling import EpochUpdate, RollingScorer
from edge_scorer.inference.scorer import ScoringModel
from edge_scorer.stats.hypnogram import Hypnogram

log = get_logger("engine")

#: The stages :attr:`Engine.timings` measures, in order.
STAGES = ("condition", "render", "intra", "rolling", "sinks")


@dataclass
class PendingEpochs:
    """Epochs conditioned and rendered by :meth:`Engine.stage`, waiting for the intra model.

    Attributes
    ----------
    indices : list of int
        Epoch indices, in order.
    last_rows : ndarray
        The newest epoch's conditioned rows (for displays).
    images : ndarray of uint8
        One image per epoch: what the intra model scores.
    invalid : ndarray
        Per epoch, the largest fraction of invalid samples over the rows.
    t_in : float
        ``time.perf_counter()`` when the samples arrived (the latency's start).
    """

    indices: list[int]
    last_rows: np.ndarray
    images: np.ndarray
    invalid: np.ndarray
    t_in: float


class Engine:
    """Stateful scoring of one recording (see the module docstring).

    Parameters
    ----------
    model : ScoringModel
        Intra + inter models (checked against ``model.spec``).
    in_sfreq : float or sequence of float
        Native input rate(s) of the spec rows.
    sinks : sequence
        Objects with ``write(updates, engine)`` and ``close(engine)`` (see
        :mod:`edge_scorer.engine.sinks`).
    max_invalid_fraction : float
        Epochs with a larger fraction of invalid samples are unscorable.
    batch_size : int
        Largest intra-model batch.
    start_time : datetime, optional
        Wall-clock start of epoch 0 (written into hypnogram files).
    """

    def __init__(self, model: ScoringModel, in_sfreq: float | Sequence[float], *,
                 sinks: Sequence = (), max_invalid_fraction: float = 0.5,
                 batch_size: int = 64, start_time: datetime | None = None) -> None:
        if not 0.0 <= max_invalid_fraction <= 1.0:
            raise ValueError(f"max_invalid_fraction must be in [0, 1], got "
                             f"{max_invalid_fraction}")
        self.model = model
        self.spec = model.spec
        self.conditioner = Conditioner(self.spec, in_sfreq)
        self.in_sfreq = self.conditioner.in_sfreq
        self.epocher = Epocher(self.spec)
        inter = model.inter_logits if model.inter is not None else None
        self.rolling = RollingScorer(inter, model.window, self.spec.epoch_s)
        self.sinks = list(sinks)
        self.max_invalid_fraction = float(max_invalid_fraction)
        self.batch_size = int(batch_size)
        self.start_time = start_time
        self._native = np.zeros(self.spec.n_rows, dtype=np.int64)
        self._filled_epochs: set[int] = set()
        self._dead_rows: set[str] = set()
        #: The first error a sink raised (e.g. a full disk); the run's files say it failed.
        self.sink_error: Exception | None = None
        #: Provisional-label latency of every epoch (s), in order.
        self.latencies: list[float] = []
        #: Seconds spent in each stage so far (``condition``, ``render``, ``intra``,
        #: ``rolling`` (inter model + stage rule), ``sinks``): where a night's time goes.
        self.timings: dict[str, float] = dict.fromkeys(STAGES, 0.0)
        self.last_epoch: tuple[int, np.ndarray, np.ndarray] | None = None
        model.warmup()  # the first epoch's latency should not include session start-up
        self.finished = False
        self.closed = False

    @property
    def n_epochs(self) -> int:
        """Epochs scored so far."""
        return self.rolling.n_epochs

    # ------------------------------------------------------------------ feeding
    def push(self, rows: Sequence[np.ndarray], filled: Sequence[np.ndarray] | None = None,
             t_in: float | None = None) -> list[EpochUpdate]:
        """Feed the next native-rate samples of every row; score the epochs they complete.

        Parameters
        ----------
        rows : sequence of 1-D arrays
            Next samples of each spec row (NaN marks missing samples).
        filled : sequence of bool arrays, optional
            Per row, samples the inlet interpolated over a short gap.
        t_in : float, optional
            ``time.perf_counter()`` when the samples arrived (default: now); the provisional
            latency of each completed epoch is measured from it.

        Returns
        -------
        list of EpochUpdate
            Everything published by this call (already written to the sinks).
        """
        return self._infer(self.stage(rows, filled, t_in))

    def _mark_filled(self, rows: list[np.ndarray], filled: Sequence[np.ndarray]) -> None:
        for r, mask in enumerate(filled):
            mask = np.asarray(mask, dtype=bool)
            if mask.size and mask.any():
                k = self._native[r] + np.flatnonzero(mask)
                per_epoch = self.in_sfreq[r] * self.spec.epoch_s
                self._filled_epochs.update(int(e) for e in np.unique(k // per_epoch))

    def stage(self, rows: Sequence[np.ndarray], filled: Sequence[np.ndarray] | None = None,
              t_in: float | None = None) -> list[PendingEpochs]:
        """The first half of :meth:`push`: condition and render what ``rows`` complete.

        Score the returned batches with the intra model (any way: one call for many engines'
        batches, as :class:`~edge_scorer.stream.beds.BedSet` does) and hand each to
        :meth:`complete` in order; ``push`` is ``stage`` + the model + ``complete``.
        """
        if self.finished:
            raise ValueError("the engine has finished (end of stream); create a new Engine")
        t_in = time.perf_counter() if t_in is None else t_in
        rows = [np.asarray(r, dtype=np.float64) for r in rows]
        if filled is not None:
            self._mark_filled(rows, filled)
        self._native += np.array([len(r) for r in rows], dtype=np.int64)
        t0 = time.perf_counter()
        epochs = self.epocher.push(self.conditioner.process(rows))
        self.timings["condition"] += time.perf_counter() - t0
        return self._render(epochs, t_in)

    def _render(self, epochs: list[tuple[int, np.ndarray]], t_in: float
                ) -> list[PendingEpochs]:
        """Render ``epochs`` in batches of at most ``batch_size``."""
        out = []
        for start in range(0, len(epochs), self.batch_size):
            part = epochs[start:start + self.batch_size]
            t0 = time.perf_counter()
            arr = np.stack([e for _, e in part])
            images = render_epochs(arr, self.spec)
            self.timings["render"] += time.perf_counter() - t0
            per_row = np.isnan(arr).mean(axis=2)  # (epochs, rows)
            self._warn_dead_rows(part, per_row)
            out.append(PendingEpochs([i for i, _ in part], part[-1][1], images,
                                     per_row.max(axis=1), t_in))
        return out

    def _infer(self, staged: list[PendingEpochs]) -> list[EpochUpdate]:
        """Score staged batches with the intra model, in order, and complete them."""
        updates: list[EpochUpdate] = []
        for pending in staged:
            t0 = time.perf_counter()
            logits, feats = self.model.epoch_outputs(pending.images, batch_size=self.batch_size)
            self.timings["intra"] += time.perf_counter() - t0
            updates += self.complete(pending, logits, feats)
        return updates

    def complete(self, pending: PendingEpochs, logits: np.ndarray, feats: np.ndarray
                 ) -> list[EpochUpdate]:
        """The second half of :meth:`push`: a staged batch's intra outputs (calibrated logits
        and features, row for row) through the flag, the inter window and the sinks."""
        t1 = time.perf_counter()
        dist, flag = self.model.familiarity_of(feats)
        t2 = time.perf_counter()
        infos = [{"invalid_fraction": float(f), "gap_filled": i in self._filled_epochs,
                  "unscorable": bool(f > self.max_invalid_fraction),
                  "familiarity": float(d), "unfamiliar": bool(u)}
                 for i, f, d, u in zip(pending.indices, pending.invalid, dist, flag,
                                       strict=True)]
        new = self.rolling.add(feats, logits, infos)
        now = time.perf_counter()
        self.timings["intra"] += t2 - t1
        self.timings["rolling"] += now - t2
        for u in new:
            if u.index >= pending.indices[0]:  # first label of a new epoch
                u.latency_s = now - pending.t_in
                self.latencies.append(u.latency_s)
        #: (index, conditioned rows, image) of the newest epoch, for displays.
        self.last_epoch = (pending.indices[-1], pending.last_rows, pending.images[-1])
        self._publish(new)
        self.timings["sinks"] += time.perf_counter() - now
        return new

    def _warn_dead_rows(self, part: list[tuple[int, np.ndarray]], per_row: np.ndarray) -> None:
        """Log the first epoch in which a row is more missing than ``max_invalid_fraction``."""
        for (index, _), fractions in zip(part, per_row, strict=True):
            new = [self.spec.row_names[r] for r in np.flatnonzero(
                fractions > self.max_invalid_fraction) if self.spec.row_names[r]
                not in self._dead_rows]
            if new:
                self._dead_rows.update(new)
                log.warning("%s %s no signal for most of epoch %d: such epochs are unscorable "
                            "(stage UNSCORED) while a row is missing", ", ".join(new),
                            "has" if len(new) == 1 else "have", index)

    def _publish(self, updates: list[EpochUpdate]) -> None:
        if not updates:
            return
        for sink in self.sinks:  # in order: a failing sink (the CSV log) stops the later ones
            try:
                sink.write(updates, self)
            except Exception as exc:
                self.sink_error = self.sink_error or exc
                raise

    # ------------------------------------------------------------------ the end
    def finish(self) -> list[EpochUpdate]:
        """End of input: flush the chain, score the last complete epoch(s), finalize all.

        The trailing partial epoch is dropped, as offline. Idempotent; call :meth:`close`
        afterwards (or use the engine as a context manager) to close the sinks.
        """
        if self.finished:
            return []
        updates: list[EpochUpdate] = []
        try:
            tail = self.conditioner.flush()
            updates = self._infer(self._render(self.epocher.push(tail), time.perf_counter()))
        finally:
            self.finished = True
            t0 = time.perf_counter()
            final = self.rolling.finish()
            t1 = time.perf_counter()
            self._publish(final)
            self.timings["rolling"] += t1 - t0
            self.timings["sinks"] += time.perf_counter() - t1
        return updates + final

    def close(self) -> None:
        """Finish (when not yet) and close every sink (hypnogram files are written then).

        Every sink is closed even when finishing or another sink fails; the first error is
        raised afterwards (the others are logged).
        """
        if self.closed:
            return
        errors: list[Exception] = []
        try:
            self.finish()
        except Exception as exc:
            errors.append(exc)
        finally:
            self.closed = True
            for sink in self.sinks:
                try:
                    sink.close(self)
                except Exception as exc:
                    log.error("closing %s failed: %s", type(sink).__name__, exc)
                    errors.append(exc)
        if errors:  # the first sink error of the run (e.g. epochs.csv on a full disk) wins
            raise self.sink_error if self.sink_error is not None else errors[0]

    def __enter__(self) -> Engine:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ------------------------------------------------------------------ results
    def hypnogram(self) -> Hypnogram:
        """The night so far: current stages and probabilities (final after :meth:`finish`).

        Call it from the thread that feeds the engine (or after it has stopped); other
        threads (a GUI) should build their view from the updates a sink receives.
        """
        return Hypnogram(self.rolling.stages(), self.spec.epoch_s, start_time=self.start_time,
                         probabilities=self.rolling.probabilities().astype(np.float32),
                         meta={"scorer": "edge-scorer",
                               "model": str(getattr(self.model.intra, "path", "")),
                               "spec": self.spec.name, "spec_hash": self.spec.hash})

    def familiarity_summary(self) -> dict:
        """The unfamiliar-signal flag over the epochs so far.

        Returns
        -------
        dict
            ``available`` (the model carries the statistics), ``n_epochs``, ``n_unfamiliar``,
            ``fraction`` (None when not available or no epoch), ``threshold`` and ``quantile``
            (None when not available).
        """
        fam = self.model.familiarity
        _, flags = self.rolling.familiarity()
        n, k = int(flags.size), int(flags.sum())
        return {"available": fam is not None, "n_epochs": n, "n_unfamiliar": k,
                "fraction": (k / n) if fam is not None and n else None,
                "threshold": fam.threshold if fam is not None else None,
                "quantile": fam.quantile if fam is not None else None}

    def samples_summary(self) -> dict:
        """Samples received per row, the signal they span, and the trailing part of an epoch
        that no complete epoch holds (dropped at the end, as offline).

        Returns
        -------
        dict
            ``received`` (``{row: samples}``), ``signal_s`` (the shortest row's length in
            seconds), ``epochs_complete`` and ``trailing_s`` (signal after the last complete
            epoch).
        """
        seconds = [float(n) / fs for n, fs in zip(self._native, self.in_sfreq, strict=True)]
        signal_s = min(seconds) if seconds else 0.0
        done = self.rolling.n_epochs
        return {"received": dict(zip(self.spec.row_names, self._native.tolist(), strict=True)),
                "signal_s": signal_s, "epochs_complete": done,
                "trailing_s": max(0.0, signal_s - done * self.spec.epoch_s)}

    def latency_summary(self) -> dict[str, float]:
        """Median, p99 and max provisional latency in milliseconds (empty before any epoch)."""
        if not self.latencies:
            return {}
        lat = np.asarray(self.latencies) * 1000.0
        return {"n": int(lat.size), "median_ms": float(np.median(lat)),
                "p99_ms": float(np.percentile(lat, 99)), "max_ms": float(lat.max())}
