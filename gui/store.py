"""What the window knows about the night: per-epoch stages, their history, images, quality.

:class:`NightStore` lives on the GUI thread. It is fed the batches the scoring thread handed
over (:class:`ScoredEpochs`, through :class:`~gui.session.Session`) and keeps, per epoch, the
current stage and probabilities, the status (provisional, revised, final), the first
(provisional) stage and how often the stage changed, the engine's quality flags, the
unfamiliar-signal flag and its distance (:mod:`edge_scorer.inference.familiarity`), the rendered
image
(for the epoch panel and the explanations), the conditioned epoch (for the occlusion
analyses) and per-channel signal-quality flags (:func:`channel_quality`). No Qt here.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_scorer.engine.rolling import FINAL, PROVISIONAL, REVISED, EpochUpdate
from edge_scorer.io.spec import RenderSpec
from edge_scorer.stages import N_CLASSES, Stage
from edge_scorer.stats.hypnogram import Hypnogram

#: A row is flagged ``missing`` above this fraction of missing (non-finite) samples.
MISSING_FRACTION = 0.1
#: A row is flagged ``clipped`` when more than this fraction of its samples is outside its band.
CLIPPED_FRACTION = 0.5
#: A row is ``flat`` when its standard deviation is below this fraction of its band's range.
FLAT_FRACTION = 0.002
#: Quality flags, best first (index = severity code used by the quality strip).
FLAGS = ("ok", "clipped", "flat", "missing")


@dataclass(frozen=True)
class ChannelQuality:
    """Signal quality of one spec row in one epoch (conditioned signal, row units).

    Attributes
    ----------
    row : str
        Spec row name.
    missing_fraction : float
        Fraction of samples that came from missing or non-finite input.
    clipped_fraction : float
        Fraction of the finite samples outside the row's amplitude range (drawn clipped).
    flat : bool
        The finite samples hardly move (electrode off, amplifier saturated at a rail).
    """

    row: str
    missing_fraction: float
    clipped_fraction: float
    flat: bool

    @property
    def flag(self) -> str:
        """The worst problem: ``missing``, ``flat``, ``clipped`` or ``ok``."""
        if self.missing_fraction > MISSING_FRACTION:
            return "missing"
        if self.flat:
            return "flat"
        if self.clipped_fraction > CLIPPED_FRACTION:
            return "clipped"
        return "ok"

    @property
    def code(self) -> int:
        """Index of :attr:`flag` in :data:`FLAGS` (0 = ok)."""
        return FLAGS.index(self.flag)


def channel_quality(rows: np.ndarray, spec: RenderSpec) -> list[ChannelQuality]:
    """Per-row quality of one conditioned epoch.

    Parameters
    ----------
    rows : ndarray, shape (spec.n_rows, n_samples)
        The epoch at the model rate, in row units (NaN where the input was missing), as the
        engine conditions it (``Engine.last_epoch[1]``).
    spec : RenderSpec
        Gives each row's amplitude range.

    Returns
    -------
    list of ChannelQuality
        One per spec row, in spec order.
    """
    rows = np.asarray(rows, dtype=np.float64)
    if rows.ndim != 2 or rows.shape[0] != spec.n_rows:
        raise ValueError(f"rows must have shape ({spec.n_rows}, n_samples) for spec "
                         f"{spec.name!r}, got {rows.shape}")
    out = []
    for r, row in enumerate(spec.rows):
        x = rows[r]
        finite = np.isfinite(x)
        n = max(1, x.size)
        lo, hi = row.range
        good = x[finite]
        clipped = float(np.mean((good < lo) | (good > hi))) if good.size else 0.0
        flat = bool(good.size > 1 and np.std(good) < FLAT_FRACTION * (hi - lo))
        out.append(ChannelQuality(row.name, 1.0 - finite.sum() / n, clipped, flat))
    return out


@dataclass
class ScoredEpochs:
    """One batch handed from the scoring thread to the GUI thread.

    Attributes
    ----------
    updates : list of EpochUpdate
        As the engine published them (in order).
    images : dict
        ``{epoch index: rendered uint8 image}`` of the new epochs of the batch.
    quality : dict
        ``{epoch index: list of ChannelQuality}`` of the new epochs.
    rows : dict
        ``{epoch index: conditioned epoch (n_rows, epoch samples), float32}`` of the new
        epochs (for the occlusion analyses).
    """

    updates: list[EpochUpdate]
    images: dict[int, np.ndarray] = field(default_factory=dict)
    quality: dict[int, list[ChannelQuality]] = field(default_factory=dict)
    rows: dict[int, np.ndarray] = field(default_factory=dict)


class NightStore:
    """Per-epoch state of the night as the window shows it (GUI thread only).

    Parameters
    ----------
    spec : RenderSpec
        The model's spec (epoch length, row names, image shape).
    familiarity_threshold : float, optional
        The model's unfamiliar-signal threshold (None: the model carries no statistics, the
        flag is off).
    """

    def __init__(self, spec: RenderSpec, familiarity_threshold: float | None = None) -> None:
        self.spec = spec
        self.familiarity_threshold = familiarity_threshold
        self.epoch_s = float(spec.epoch_s)
        self.stages: list[int] = []
        self.proba: list[np.ndarray] = []
        self.status: list[str] = []
        self.first_stage: list[int] = []
        self.n_changes: list[int] = []
        self.n_windows: list[int] = []
        self.invalid_fraction: list[float] = []
        self.gap_filled: list[bool] = []
        self.unscorable: list[bool] = []
        self.familiarity: list[float] = []
        self.unfamiliar: list[bool] = []
        self.latency_s: list[float | None] = []
        self.images: dict[int, np.ndarray] = {}
        self.quality: dict[int, list[ChannelQuality]] = {}
        #: Conditioned epochs (for the occlusion analyses).
        self.rows: dict[int, np.ndarray] = {}
        self.n_updates = 0
        #: Bumped on every change (panels redraw when it moved).
        self.version = 0

    @property
    def n_epochs(self) -> int:
        """Epochs seen so far."""
        return len(self.stages)

    def _grow(self, n: int) -> None:
        while len(self.stages) < n:
            self.stages.append(int(Stage.UNSCORED))
            self.proba.append(np.zeros(N_CLASSES))
            self.status.append("missing")
            self.first_stage.append(int(Stage.UNSCORED))
            self.n_changes.append(0)
            self.n_windows.append(0)
            self.invalid_fraction.append(0.0)
            self.gap_filled.append(False)
            self.unscorable.append(False)
            self.familiarity.append(float("nan"))
            self.unfamiliar.append(False)
            self.latency_s.append(None)

    def apply(self, batch: ScoredEpochs) -> set[int]:
        """Apply one batch; return the epoch indices it touched."""
        touched: set[int] = set()
        for u in batch.updates:
            if u.status not in (PROVISIONAL, REVISED, FINAL):
                raise ValueError(f"epoch {u.index}: unknown update status {u.status!r}")
            self._grow(u.index + 1)
            i = u.index
            if self.status[i] == "missing":
                self.first_stage[i] = int(u.stage)
            elif int(u.stage) != self.stages[i]:
                self.n_changes[i] += 1
            self.stages[i] = int(u.stage)
            self.proba[i] = np.asarray(u.proba, dtype=np.float64)
            self.status[i] = u.status
            self.n_windows[i] = int(u.n_windows)
            self.invalid_fraction[i] = float(u.invalid_fraction)
            self.gap_filled[i] = bool(u.gap_filled)
            self.unscorable[i] = bool(u.unscorable)
            self.familiarity[i] = float(u.familiarity)
            self.unfamiliar[i] = bool(u.unfamiliar)
            if u.latency_s is not None:
                self.latency_s[i] = float(u.latency_s)
            touched.add(i)
            self.n_updates += 1
        for i, image in batch.images.items():
            self._grow(i + 1)
            self.images[i] = image
            touched.add(i)
        for i, q in batch.quality.items():
            self._grow(i + 1)
            self.quality[i] = q
            touched.add(i)
        for i, r in batch.rows.items():
            self._grow(i + 1)
            self.rows[i] = r
        if touched:
            self.version += 1
        return touched

    # ------------------------------------------------------------------ arrays for panels
    def stage_array(self) -> np.ndarray:
        """Current stages (int8)."""
        return np.asarray(self.stages, dtype=np.int8)

    def proba_array(self) -> np.ndarray:
        """Current probabilities ``(n_epochs, 5)``."""
        if not self.proba:
            return np.zeros((0, N_CLASSES))
        return np.stack(self.proba)

    def final_mask(self) -> np.ndarray:
        """Epochs whose stage can no longer change."""
        return np.array([s == FINAL for s in self.status], dtype=bool)

    def n_final_prefix(self) -> int:
        """Length of the run of final epochs from the start (the rest is still provisional)."""
        mask = self.final_mask()
        return int(mask.size if mask.all() else np.argmin(mask))

    def changed_mask(self) -> np.ndarray:
        """Epochs whose current stage differs from their first (provisional) stage."""
        return self.stage_array() != np.asarray(self.first_stage, dtype=np.int8)

    def unfamiliar_mask(self) -> np.ndarray:
        """Epochs flagged by the unfamiliar-signal flag (far from the training data)."""
        return np.asarray(self.unfamiliar, dtype=bool)

    def familiarity_text(self, i: int) -> str:
        """The flag of epoch ``i`` in words, with its distance and the threshold."""
        d = self.familiarity[i]
        if self.familiarity_threshold is None or not np.isfinite(d):
            return "unfamiliar-signal flag: off (the model carries no familiarity statistics)"
        word = ("UNFAMILIAR signal: far from the training data, review this epoch (not a "
                "diagnosis of artifact)" if self.unfamiliar[i] else "familiar signal")
        rel = ">" if self.unfamiliar[i] else "<="
        return f"{word}; distance {d:.2f} {rel} threshold {self.familiarity_threshold:.2f}"

    def familiarity_summary(self) -> str:
        """Flagged epochs of the night so far, e.g. ``unfamiliar signal: 3 of 40 epochs
        (8 %)``."""
        if self.familiarity_threshold is None:
            return "unfamiliar signal: flag off (no statistics in the model)"
        k, n = int(self.unfamiliar_mask().sum()), self.n_epochs
        return f"unfamiliar signal: {k} of {n} epochs ({100.0 * k / max(n, 1):.0f} %)"

    def quality_codes(self) -> np.ndarray:
        """``(n_rows, n_epochs)`` severity codes (index into :data:`FLAGS`; -1: not known)."""
        out = np.full((self.spec.n_rows, self.n_epochs), -1, dtype=np.int8)
        for i, q in self.quality.items():
            out[:, i] = [c.code for c in q]
        return out

    def hypnogram(self) -> Hypnogram:
        """The night as shown: current stages and probabilities."""
        return Hypnogram(self.stage_array(), self.epoch_s,
                         probabilities=self.proba_array().astype(np.float32),
                         meta={"scorer": "edge-scorer", "spec": self.spec.name,
                               "spec_hash": self.spec.hash})

    def describe(self, i: int) -> str:
        """One line about epoch ``i``: time, stage, probability, status, revisions."""
        if not 0 <= i < self.n_epochs:
            raise ValueError(f"epoch {i} is outside the night (0..{self.n_epochs - 1})")
        t = i * self.epoch_s
        stage = Stage(self.stages[i]).label
        p = float(self.proba[i].max())
        text = (f"epoch {i} ({int(t // 3600):d}:{int(t % 3600 // 60):02d}:{int(t % 60):02d}) "
                f"{stage} p={p:.2f}, {self.status[i]} ({self.n_windows[i]} windows)")
        if self.first_stage[i] != self.stages[i]:
            text += f", first {Stage(self.first_stage[i]).label}"
        if self.n_changes[i]:
            text += f", changed {self.n_changes[i]}x"
        if self.unscorable[i]:
            text += ", UNSCORABLE"
        elif self.gap_filled[i]:
            text += ", gap filled"
        if self.unfamiliar[i]:
            text += ", UNFAMILIAR signal"
        if self.latency_s[i] is not None:
            text += f", latency {self.latency_s[i] * 1000:.0f} ms"
        return text


__all__ = ["CLIPPED_FRACTION", "FLAGS", "FLAT_FRACTION", "MISSING_FRACTION", "ChannelQuality",
           "NightStore", "ScoredEpochs", "channel_quality"]
