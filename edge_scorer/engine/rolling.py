"""The rolling inter-epoch window: provisional, revised and final stages as epochs arrive.

:class:`RollingScorer` receives each epoch's intra-model output (CLS feature and logits) in
time order and keeps, per epoch, the sum of the inter model's softmax over every window of
``L`` epochs (stride 1) scored so far that covers it: SleepXViT's test-time rule applied as the
night unfolds (``training.lookahead`` states the same rule and measures it).

When epoch ``e`` arrives:

* ``e >= L - 1``: the one new full window ``[e - L + 1, e]`` is scored and its softmax added to
  the sums of its ``L`` epochs. Epoch ``e`` gets a *provisional* stage from that one window,
  epochs ``e - L + 1 .. e - 1`` are *revised*, and epoch ``e - L + 1`` becomes *final*: every
  window that will ever cover it has now been scored.
* ``e < L - 1`` (the start of a night): no full window exists yet; the ``e + 1`` epochs are
  scored as one window padded at the end with copies of epoch ``e`` (the padding of
  :func:`~edge_scorer.engine.windows.sliding_window_proba`) and each reads its position. These
  padded
  estimates are dropped when the first full window arrives.
* :meth:`RollingScorer.finish` (end of stream) makes every epoch final as it stands. The final
  probabilities then equal offline scoring of the whole night with
  :func:`~edge_scorer.engine.windows.sliding_window_proba` (normalised); only the batch sizes of the
  model calls differ, so they agree to float32 rounding.

Several epochs may be added in one call (offline scoring, a stream catching up): their windows
are scored in one batch and each touched epoch gets one update describing its state after the
call.

Clinical caveat: a provisional stage rests on one window ending at the epoch (no look-ahead);
the final stage is the one to report.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from edge_scorer.engine.windows import softmax
from edge_scorer.stages import CLASS_NAMES, Stage

#: Update status values.
PROVISIONAL, REVISED, FINAL = "provisional", "revised", "final"


@dataclass
class EpochUpdate:
    """The state of one epoch's stage after an update.

    Attributes
    ----------
    index : int
        Epoch number from the start of the stream (0-based).
    onset_s : float
        Epoch start in seconds of signal from the stream's start.
    stage : int
        Canonical stage code (argmax of ``proba``), or ``Stage.UNSCORED`` (-1) when the epoch is
        unscorable (too little signal).
    proba : ndarray of float64, shape (5,)
        Class probabilities (W, N1, N2, N3, REM): the mean softmax of the windows summed.
    status : str
        ``"provisional"`` (first label of a new epoch), ``"revised"`` or ``"final"``.
    n_windows : int
        Windows summed (0 for a padded start-of-night estimate).
    invalid_fraction : float
        Largest fraction, over the rows, of the epoch's conditioned samples that came from
        missing or non-finite input.
    gap_filled : bool
        A short gap inside the epoch was filled by interpolation.
    unscorable : bool
        ``invalid_fraction`` exceeds the engine's limit; ``stage`` is UNSCORED.
    latency_s : float or None
        For the provisional update: seconds from the arrival of the chunk that completed the
        epoch to this update (set by the engine).
    familiarity : float
        Distance of the epoch's intra feature to the training data
        (:mod:`edge_scorer.inference.familiarity`); NaN when the model carries no statistics.
    unfamiliar : bool
        The distance is above the model's threshold: the signal is far from the training data,
        review the epoch (not a diagnosis of artifact). Always False when the flag is off.
    """

    index: int
    onset_s: float
    stage: int
    proba: np.ndarray
    status: str
    n_windows: int
    invalid_fraction: float = 0.0
    gap_filled: bool = False
    unscorable: bool = False
    latency_s: float | None = None
    familiarity: float = float("nan")
    unfamiliar: bool = False

    @property
    def label(self) -> str:
        """Stage label (``W``, ``N1``, ..., ``UNS``)."""
        return Stage(self.stage).label


@dataclass
class _EpochInfo:
    invalid_fraction: float = 0.0
    gap_filled: bool = False
    unscorable: bool = False
    familiarity: float = float("nan")
    unfamiliar: bool = False


@dataclass
class RollingScorer:
    """Sliding-window sums of the inter model's softmax, updated epoch by epoch.

    Parameters
    ----------
    inter_logits : callable or None
        ``(B, L, D)`` feature windows -> ``(B, L, 5)`` logits (e.g.
        :meth:`~edge_scorer.inference.scorer.ScoringModel.inter_logits`); None scores each epoch by
        the
        intra model alone (``L = 1``, every label final at once).
    window : int
        ``L``, the inter model's window length.
    epoch_s : float
        Epoch length in seconds (for ``onset_s``).
    """

    inter_logits: object | None
    window: int = 10
    epoch_s: float = 30.0
    _feats: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _sums: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _counts: list[int] = field(default_factory=list, init=False, repr=False)
    _early: dict[int, np.ndarray] = field(default_factory=dict, init=False, repr=False)
    _info: list[_EpochInfo] = field(default_factory=list, init=False, repr=False)
    _final: list[bool] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.inter_logits is None:
            self.window = 1
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        self.finished = False

    @property
    def n_epochs(self) -> int:
        """Epochs added so far."""
        return len(self._feats)

    # ------------------------------------------------------------------ state
    def proba(self, t: int) -> np.ndarray:
        """Current probabilities of epoch ``t`` (float64, shape (5,))."""
        if self._counts[t] > 0:
            return self._sums[t] / self._counts[t]
        return self._early[t]

    def update(self, t: int, status: str) -> EpochUpdate:
        """An :class:`EpochUpdate` of epoch ``t`` with the given status."""
        p = self.proba(t)
        info = self._info[t]
        stage = int(Stage.UNSCORED) if info.unscorable else int(np.argmax(p))
        return EpochUpdate(t, t * self.epoch_s, stage, p.copy(), status, self._counts[t],
                           info.invalid_fraction, info.gap_filled, info.unscorable,
                           familiarity=info.familiarity, unfamiliar=info.unfamiliar)

    def probabilities(self) -> np.ndarray:
        """Current probabilities of every epoch, ``(n_epochs, 5)``."""
        if not self._feats:
            return np.zeros((0, len(CLASS_NAMES)))
        return np.stack([self.proba(t) for t in range(self.n_epochs)])

    def stages(self) -> np.ndarray:
        """Current stage of every epoch (int8; UNSCORED for unscorable epochs)."""
        out = self.probabilities().argmax(1).astype(np.int8) if self._feats else np.zeros(
            0, np.int8)
        for t, info in enumerate(self._info):
            if info.unscorable:
                out[t] = Stage.UNSCORED
        return out

    def familiarity(self) -> tuple[np.ndarray, np.ndarray]:
        """Distance to the training data (NaN: flag off) and unfamiliar-signal flag of every
        epoch, ``(n_epochs,)`` each."""
        return (np.array([i.familiarity for i in self._info], dtype=np.float64),
                np.array([i.unfamiliar for i in self._info], dtype=bool))

    def is_final(self, t: int) -> bool:
        """Whether epoch ``t``'s stage can no longer change."""
        return self._final[t]

    # ------------------------------------------------------------------ updates
    def add(self, features: np.ndarray, logits: np.ndarray,
            infos: list[dict] | None = None) -> list[EpochUpdate]:
        """Add the next epochs (in time order) and return the updates they cause.

        Parameters
        ----------
        features : ndarray, shape (m, D)
            Intra-model CLS features of the new epochs.
        logits : ndarray, shape (m, 5)
            Intra-model logits (used when there is no inter model).
        infos : list of dict, optional
            Per new epoch: ``invalid_fraction``, ``gap_filled``, ``unscorable``,
            ``familiarity``, ``unfamiliar``.

        Returns
        -------
        list of EpochUpdate
            One per touched epoch, in epoch order: ``provisional`` for new epochs, ``revised``
            for earlier ones whose probabilities changed, ``final`` for those that can no longer
            change.
        """
        if self.finished:
            raise ValueError("this RollingScorer was finished (end of stream); create a new one")
        features = np.asarray(features, dtype=np.float32)
        logits = np.asarray(logits, dtype=np.float64)
        m = len(features)
        if m == 0:
            return []
        if features.ndim != 2 or logits.shape != (m, len(CLASS_NAMES)):
            raise ValueError(f"expected features (m, D) and logits (m, {len(CLASS_NAMES)}), got "
                             f"{features.shape} and {logits.shape}")
        first = self.n_epochs
        for i in range(m):
            self._feats.append(features[i])
            self._sums.append(np.zeros(len(CLASS_NAMES)))
            self._counts.append(0)
            self._final.append(False)
            self._info.append(_EpochInfo(**(infos[i] if infos else {})))
        touched: set[int] = set(range(first, first + m))
        if self.inter_logits is None:
            for t in range(first, first + m):
                self._sums[t] = softmax(logits[t - first])
                self._counts[t] = 1
                self._final[t] = True
            return [self.update(t, FINAL) for t in range(first, first + m)]
        L = self.window
        last = first + m - 1
        # padded start-of-night estimates: only the newest matters (it replaces the others)
        if last < L - 1:
            idx = np.minimum(np.arange(L), last)
            proba = softmax(np.asarray(self.inter_logits(np.stack(self._feats)[idx][None]),
                                       dtype=np.float64))[0]
            for t in range(last + 1):
                self._early[t] = proba[t]
            touched.update(range(last + 1))
        else:
            ends = list(range(max(first, L - 1), last + 1))
            feats = np.stack(self._feats[ends[0] - L + 1:])  # window k is feats[k:k + L]
            index = np.arange(len(ends))[:, None] + np.arange(L)[None, :]
            proba = softmax(np.asarray(self.inter_logits(feats[index]), dtype=np.float64))
            for e, p in zip(ends, proba, strict=True):
                for j in range(L):
                    t = e - L + 1 + j
                    self._sums[t] = self._sums[t] + p[j]
                    self._counts[t] += 1
                    touched.add(t)
            self._early.clear()
            for t in range(max(0, first - L + 1), last - L + 2):
                self._final[t] = True  # the window ending at t + L - 1 was its last
        out = []
        for t in sorted(touched):
            status = FINAL if self._final[t] else (PROVISIONAL if t >= first else REVISED)
            out.append(self.update(t, status))
        return out

    def finish(self) -> list[EpochUpdate]:
        """End of stream: every epoch not yet final becomes final as it stands."""
        self.finished = True
        out = []
        for t in range(self.n_epochs):
            if not self._final[t]:
                self._final[t] = True
                out.append(self.update(t, FINAL))
        return out
