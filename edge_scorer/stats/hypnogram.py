"""The one :class:`Hypnogram` type: per-epoch stages, optional probabilities, timing.

Clinical caveat: a hypnogram produced by edge-scorer is an automatic score. It is a decision
aid for a trained scorer, not a diagnosis; it must be reviewed before clinical use.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edge_scorer.stages import N_CLASSES, Stage, parse_stage, stages_to_labels

if TYPE_CHECKING:
    from edge_scorer.stats.sleepstats import SleepStatistics


@dataclass
class Hypnogram:
    """A scored night.

    Parameters
    ----------
    stages : ndarray of int8, shape (n_epochs,)
        Canonical stage codes (see :mod:`edge_scorer.stages`); ``-1`` is unscored/artifact.
    epoch_s : float
        Epoch length in seconds (30 for AASM and R&K scoring).
    onset_s : float
        Start of the first epoch in seconds from the start of the recording it belongs to.
    start_time : datetime or None
        Wall-clock time of the recording start (not of the first epoch), when known.
    probabilities : ndarray of float32, shape (n_epochs, 5), optional
        Per-epoch class probabilities (W, N1, N2, N3, REM), e.g. from a model.
    """

    stages: np.ndarray
    epoch_s: float = 30.0
    onset_s: float = 0.0
    start_time: datetime | None = None
    probabilities: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        stages = np.asarray(self.stages)
        if stages.ndim != 1:
            raise ValueError(f"stages must be 1-D (one code per epoch), got shape {stages.shape}")
        if stages.dtype.kind not in "iu":
            stages = np.array([parse_stage(s) for s in stages], dtype=np.int8)
        bad = ~np.isin(stages, [s.value for s in Stage])
        if bad.any():
            raise ValueError(
                f"invalid stage codes {sorted(set(stages[bad].tolist()))} at epochs "
                f"{np.flatnonzero(bad)[:5].tolist()}...; valid codes are -1 (unscored), 0..4"
            )
        self.stages = stages.astype(np.int8)
        if not self.epoch_s > 0:
            raise ValueError(f"epoch_s must be positive, got {self.epoch_s}")
        if self.probabilities is not None:
            proba = np.asarray(self.probabilities, dtype=np.float32)
            if proba.shape != (len(self.stages), N_CLASSES):
                raise ValueError(
                    f"probabilities must have shape ({len(self.stages)}, {N_CLASSES}), "
                    f"got {proba.shape}"
                )
            self.probabilities = proba

    # -- basic properties -------------------------------------------------------------------
    @property
    def n_epochs(self) -> int:
        """Number of epochs."""
        return len(self.stages)

    @property
    def duration_s(self) -> float:
        """Total duration covered by the epochs, in seconds."""
        return self.n_epochs * self.epoch_s

    @property
    def labels(self) -> list[str]:
        """Short labels of the epochs (``"W"``, ``"N1"``, ..., ``"UNS"``)."""
        return stages_to_labels(self.stages)

    def epoch_onsets_s(self) -> np.ndarray:
        """Onset of every epoch in seconds from the recording start."""
        return self.onset_s + self.epoch_s * np.arange(self.n_epochs)

    def __len__(self) -> int:
        return self.n_epochs

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Hypnogram):
            return NotImplemented
        return (
            np.array_equal(self.stages, other.stages)
            and self.epoch_s == other.epoch_s
            and self.onset_s == other.onset_s
        )

    def crop(self, start: int, stop: int | None = None) -> Hypnogram:
        """Return epochs ``start:stop`` as a new hypnogram (onset shifted accordingly)."""
        stop = self.n_epochs if stop is None else stop
        proba = None if self.probabilities is None else self.probabilities[start:stop]
        return Hypnogram(
            self.stages[start:stop].copy(), self.epoch_s, self.onset_s + start * self.epoch_s,
            self.start_time, proba, dict(self.meta),
        )

    # -- statistics and files ---------------------------------------------------------------
    def sleep_statistics(self) -> SleepStatistics:
        """Clinical sleep statistics (TIB, SPT, TST, SE, SOL, WASO, REM latency, ...).

        See :func:`edge_scorer.stats.sleepstats.sleep_statistics` for definitions.
        """
        from edge_scorer.stats.sleepstats import sleep_statistics

        return sleep_statistics(self)

    @classmethod
    def read(cls, path: str | Path, **kwargs: Any) -> Hypnogram:
        """Read any supported hypnogram file.

        See :func:`edge_scorer.io.hypnogram_io.read_hypnogram`.
        """
        from edge_scorer.io.hypnogram_io import read_hypnogram

        return read_hypnogram(path, **kwargs)

    def write(self, path: str | Path, **kwargs: Any) -> Path:
        """Write to CSV/TSV, EDF+ or BIDS events.tsv, chosen from the file name.

        See :func:`edge_scorer.io.hypnogram_io.write_hypnogram`.
        """
        from edge_scorer.io.hypnogram_io import write_hypnogram

        return write_hypnogram(self, path, **kwargs)
