"""Offline scoring: a PSG file fed through the live engine's code, as fast as it goes.

:func:`score_file` reads the file with :func:`~edge_scorer.io.psg.read_psg`, and pushes its rows
at their native rates into an :class:`~edge_scorer.engine.engine.Engine` in blocks of
``block_epochs`` epochs (no pacing; the intra model and the inter windows run in batches),
with a progress bar. The outputs are those of live scoring: ``epochs.csv``, the hypnogram
files and the sleep statistics. Because it is the engine's code fed by a file instead of an
inlet, offline and live results of the same recording agree (tests check it).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.engine.engine import Engine
from edge_scorer.inference.scorer import ScoringModel
from edge_scorer.io.psg import PsgRecording, read_psg
from edge_scorer.stats.hypnogram import Hypnogram

log = get_logger("offline")


@dataclass
class FileSource:
    """A recording's rows at native rates, handed out in blocks of whole epochs.

    Parameters
    ----------
    recording : PsgRecording
        From :func:`~edge_scorer.io.psg.read_psg`.
    block_epochs : int
        Epochs of signal per block.
    """

    recording: PsgRecording
    block_epochs: int = 64
    rows: list[np.ndarray] = field(init=False)
    sfreqs: list[float] = field(init=False)

    def __post_init__(self) -> None:
        if self.block_epochs < 1:
            raise ValueError(f"block_epochs must be >= 1, got {self.block_epochs}")
        self.rows, self.sfreqs = self.recording.native_rows()

    def blocks(self, epoch_s: float):
        """Yield lists of per-row arrays, ``block_epochs * epoch_s`` seconds each."""
        n_total = self.recording.duration_s
        step_s = self.block_epochs * epoch_s
        t = 0.0
        while t < n_total:
            end = min(t + step_s, n_total)
            yield [r[int(round(t * fs)):int(round(end * fs))]
                   for r, fs in zip(self.rows, self.sfreqs, strict=True)]
            t = end


@dataclass
class ScoredNight:
    """What :func:`score_file` returns (``familiarity``: ``Engine.familiarity_summary()``;
    ``unfamiliar``: the flag of every epoch; ``interrupted``: stopped before the end of the
    file, which holds ``n_epochs_file`` epochs)."""

    hypnogram: Hypnogram
    recording: PsgRecording
    out_dir: Path | None
    latency: dict
    warnings: list[str]
    familiarity: dict = field(default_factory=dict)
    unfamiliar: np.ndarray | None = None
    interrupted: bool = False
    n_epochs_file: int = 0
    #: Seconds per stage: ``read`` (EDF -> rows), the engine's
    #: (:attr:`~edge_scorer.engine.engine.Engine.timings`; ``sinks`` includes closing them:
    #: hypnogram
    #: files, statistics) and ``total``.
    timings: dict = field(default_factory=dict)


def score_file(psg: str | Path, model: ScoringModel, out_dir: str | Path | None = None, *,
               channel_overrides: Mapping[str, str] | None = None, sinks: Sequence = (),
               block_epochs: int = 64, progress: bool = True,
               engine_kwargs: dict | None = None,
               stop: threading.Event | None = None,
               formats: str | Sequence[str] | None = None) -> ScoredNight:
    """Score a whole PSG file with the engine; write the run's files to ``out_dir``.

    ``stop`` (e.g. :attr:`~edge_scorer.engine.shutdown.Shutdown.event`): when set, scoring stops
    after the current block and the epochs scored so far are finalized and written.
    ``formats``: the hypnogram files written (``csv``, ``edf``, ``bids``, ``nsrr``; default
    CSV and EDF+, :func:`~edge_scorer.engine.sinks.parse_formats`).

    Raises
    ------
    PsgReadError, ChannelMapError, FileNotFoundError
        From :func:`~edge_scorer.io.psg.read_psg`.
    ValueError
        When the recording is shorter than one epoch.
    """
    from edge_scorer import __version__
    from edge_scorer.engine.sinks import output_sinks

    spec = model.spec
    t_start = time.perf_counter()
    rec = read_psg(psg, spec, channel_overrides)
    t_read = time.perf_counter() - t_start
    if rec.duration_s < spec.epoch_s:
        raise ValueError(f"{psg}: the recording ({rec.duration_s:.1f} s) is shorter than one "
                         f"{spec.epoch_s:g}-s epoch; nothing to score")
    source = FileSource(rec, block_epochs)
    run_info = {"edge_scorer_version": __version__, "source": str(Path(psg).resolve()),
                "channels": dict(zip(spec.row_names, rec.source_labels, strict=True)),
                "model": str(getattr(model.intra, "path", ""))}
    all_sinks = (output_sinks(out_dir, run_info, formats) if out_dir is not None else []) \
        + list(sinks)
    engine = Engine(model, source.sfreqs, sinks=all_sinks, start_time=rec.start_time,
                    **(engine_kwargs or {}))
    n_epochs = int(rec.duration_s // spec.epoch_s)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=n_epochs, unit="epoch", desc=Path(psg).name, leave=False)
    interrupted = False
    with engine:
        for block in source.blocks(spec.epoch_s):
            if stop is not None and stop.is_set():
                interrupted = True
                log.warning("stopped after %d of %d epochs: finalizing those", engine.n_epochs,
                            n_epochs)
                break
            before = engine.n_epochs
            engine.push(block)
            if bar is not None:
                bar.update(engine.n_epochs - before)
        engine.finish()
        if bar is not None:
            bar.update(engine.n_epochs - bar.n)
            bar.close()
        t_close = time.perf_counter()
    timings = {"read": t_read, **engine.timings}
    timings["sinks"] += time.perf_counter() - t_close  # hypnogram files, statistics
    timings["total"] = time.perf_counter() - t_start
    return ScoredNight(engine.hypnogram(), rec, Path(out_dir) if out_dir else None,
                       engine.latency_summary(), list(rec.warnings),
                       engine.familiarity_summary(), engine.rolling.familiarity()[1],
                       interrupted, n_epochs, timings)
