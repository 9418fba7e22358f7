"""The rolling inter-epoch window: provisional, revised and final stages as epochs arrive.

:class:`RollingScorer` receives each epoch's intra-model output (CLS feature and logits) in
time order, scores the windows of ``L`` epochs that the new epochs complete
(:func:`~edge_scorer.inference.windows.score_windows`), keeps their softmax by window end, and
reads every touched epoch's probabilities with the one window rule,
:func:`~edge_scorer.inference.windows.window_sums`, at the look-ahead it has: epoch ``t`` after
``a`` epochs have arrived is exactly ``lookahead_proba(window_softmax(...), a, a - 1 - t)``
(the numbers of ``training.lookahead`` and the model card are this rule too).

When epoch ``e`` arrives:

* ``e >= L - 1``: the one new full window ``[e - L + 1, e]`` is scored. Epoch ``e`` gets a
  *provisional* stage from that one window, epochs ``e - L + 1 .. e - 1`` are *revised*, and
  epoch ``e - L + 1`` becomes *final*: every window that will ever cover it has been scored.
* ``e < L - 1`` (the start of a night): no full window exists yet; the ``e + 1`` epochs are
  scored as one prefix window padded at the end with copies of epoch ``e``
  (:func:`~edge_scorer.inference.windows.window_index`) and each reads its position. These
  estimates are dropped when the first full window arrives.
* :meth:`RollingScorer.finish` (end of stream) makes every epoch final as it stands. The final
  probabilities then equal offline scoring of the whole night with
  :func:`~edge_scorer.inference.windows.sliding_window_proba` (normalised); only the batch sizes of
  the model calls differ, so they agree to float32 rounding.

Several epochs may be added in one call (offline scoring, a stream catching up): their windows
are scored in one batch and each touched epoch gets one update describing its state after the
call. Without an inter model every epoch is its own window (``L = 1``: the intra softmax, final
at once).

Clinical caveat: a provisional stage rests on one window ending at the epoch (no look-ahead);
the final stage is the one to report.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from edge_scorer.inference.windows import score_windows, softmax, window_index, window_sums
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
    """The window rule applied epoch by epoch: window softmax kept by window end, every touched
    epoch read with :func:`~edge_scorer.inference.windows.window_sums` at its current look-ahead.

    Parameters
    ----------
    inter_logits : callable or None
        ``(B, L, D)`` feature windows -> ``(B, L, 5)`` logits (e.g.
        :meth:`~edge_scorer.inference.scorer.ScoringModel.inter_logits`); None scores each epoch
        by the intra model alone (``L = 1``, every label final at once).
    window : int
        ``L``, the inter model's window length.
    epoch_s : float
        Epoch length in seconds (for ``onset_s``).
    """

    inter_logits: Callable[[np.ndarray], np.ndarray] | None
    window: int = 10
    epoch_s: float = 30.0
    _feats: list[np.ndarray] = field(default_factory=list, init=False, repr=False)
    _ws: np.ndarray = field(default_factory=lambda: np.zeros((0, 1, len(CLASS_NAMES))),
                            init=False, repr=False)
    _info: list[_EpochInfo] = field(default_factory=list, init=False, repr=False)

    def __post_init__(self) -> None:
        if self.inter_logits is None:
            self.window = 1
        if self.window < 1:
            raise ValueError(f"window must be >= 1, got {self.window}")
        self._ws = np.full((64, self.window, len(CLASS_NAMES)), np.nan)
        self.finished = False

    @property
    def n_epochs(self) -> int:
        """Epochs added so far."""
        return len(self._feats)

    # ------------------------------------------------------------------ state
    def _read(self, epochs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Probabilities and full windows summed of ``epochs`` now: the window rule at the
        look-ahead each has (``n_epochs - 1 - t``)."""
        a = self.n_epochs
        sums, counts = window_sums(self._ws[:a], a, a - 1 - epochs, epochs)
        return sums / np.maximum(counts, 1)[:, None], counts

    def proba(self, t: int) -> np.ndarray:
        """Current probabilities of epoch ``t`` (float64, shape (5,))."""
        return self._read(np.array([t]))[0][0]

    def _updates(self, epochs: list[int], statuses: list[str]) -> list[EpochUpdate]:
        if not epochs:
            return []
        proba, counts = self._read(np.asarray(epochs, dtype=np.int64))
        out = []
        for t, status, p, c in zip(epochs, statuses, proba, counts, strict=True):
            info = self._info[t]
            stage = int(Stage.UNSCORED) if info.unscorable else int(np.argmax(p))
            out.append(EpochUpdate(t, t * self.epoch_s, stage, p, status, int(c),
                                   info.invalid_fraction, info.gap_filled, info.unscorable,
                                   familiarity=info.familiarity, unfamiliar=info.unfamiliar))
        return out

    def update(self, t: int, status: str) -> EpochUpdate:
        """An :class:`EpochUpdate` of epoch ``t`` with the given status."""
        return self._updates([t], [status])[0]

    def probabilities(self) -> np.ndarray:
        """Current probabilities of every epoch, ``(n_epochs, 5)``."""
        if not self._feats:
            return np.zeros((0, len(CLASS_NAMES)))
        return self._read(np.arange(self.n_epochs))[0]

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
        """Whether epoch ``t``'s stage can no longer change (every window covering it has been
        scored, or the stream ended)."""
        return self.finished or t <= self.n_epochs - self.window

    # ------------------------------------------------------------------ updates
    def _score_new(self, first: int, logits: np.ndarray) -> np.ndarray:
        """Score the windows that epochs ``first..n_epochs-1`` complete, store their softmax
        by window end and return those ends."""
        L, last = self.window, self.n_epochs - 1
        if len(self._ws) <= last:
            grown = np.full((max(2 * len(self._ws), last + 1),) + self._ws.shape[1:], np.nan)
            grown[:len(self._ws)] = self._ws
            self._ws = grown
        if self.inter_logits is None:  # every epoch its own window of one
            ends = np.arange(first, last + 1)
            self._ws[ends] = softmax(logits)[:, None, :]
            return ends
        # before the first full window only the newest prefix window matters (it replaces
        # the others); afterwards every new full window
        ends = np.arange(max(first, L - 1), last + 1) if last >= L - 1 else np.array([last])
        lo = max(0, int(ends[0]) - L + 1)
        feats = np.stack(self._feats[lo:])
        self._ws[ends] = score_windows(self.inter_logits, feats, ends - lo, L, len(ends))
        return ends

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
        if infos is not None and len(infos) != m:
            raise ValueError(f"expected {m} infos (one per new epoch), got {len(infos)}")
        first = self.n_epochs
        for i in range(m):
            self._feats.append(features[i])
            self._info.append(_EpochInfo(**(infos[i] if infos else {})))
        ends = self._score_new(first, logits)
        touched = np.union1d(window_index(ends, self.window).ravel(), np.arange(first, first + m))
        statuses = [FINAL if self.is_final(int(t)) else (PROVISIONAL if t >= first else REVISED)
                    for t in touched]
        return self._updates([int(t) for t in touched], statuses)

    def finish(self) -> list[EpochUpdate]:
        """End of stream: every epoch not yet final becomes final as it stands."""
        pending = [t for t in range(self.n_epochs) if not self.is_final(t)]
        self.finished = True
        return self._updates(pending, [FINAL] * len(pending))
