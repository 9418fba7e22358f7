"""Scorer disagreement: the reference hypnogram disagrees with the signals as a human's does.

A real expert hypnogram is one scorer's reading of the signals; another expert would score
about one epoch in six differently, mostly N1 and the N2/N3 boundary, mostly next to stage
changes. A simulated night whose signals follow its hypnogram exactly is easier than any real
night: a model can score it perfectly, and a model trained on it learns that every boundary
is sharp. So the simulator draws the *signal* stage of each epoch from the reference stage
through a disagreement model shaped like published inter-scorer studies, and the written
hypnogram (the reference a model is scored against) stays the real one.

Sources (numbers in the tables below):

* Rosenberg & Van Hout 2013, J Clin Sleep Med 9(1):81-87 (AASM inter-scorer reliability
  program, > 2,500 scorers against the majority score): agreement 82.6 % overall, N1 63.0 %,
  N3 67.4 %, R 90.5 % (Penzel et al. 2013, J Clin Sleep Med 9(1):89), W and N2 "approaching"
  R; the hard epochs are the last W before sleep onset, the first N2 after N1, the first R
  after N2, and N2 versus N3 in general.
* Danker-Hopfe et al. 2009, J Sleep Res 18:74-84 (SIESTA, AASM rules): 82.0 % agreement,
  kappa 0.76 between scorers of different centres.
* The most frequent disagreements, as shares of all disagreeing epochs: N2-N3 22 %, W-N1 20 %,
  N1-N2 19 % (American vs Chinese sleep centres, 2014 AASM rules, 40 PSGs); YASA's own errors
  on real nights follow the same pattern: true N1 scored N2 27.5 %, true N3 scored N2 16.1 %
  (Vallat & Walker 2021, eLife 10:e70092).
"""

from __future__ import annotations

import numpy as np

from edge_scorer.stages import Stage

W, N1, N2, N3, REM = (int(s) for s in (Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.REM))

#: Probability that one scorer's stage differs from the majority, per reference stage
#: (1 - the per-stage agreement of Rosenberg & Van Hout 2013; W and N2 set to 12 %, between
#: R's 9.5 % and the 17.4 % overall, as the paper says they approach R).
DISAGREE_P = {W: 0.12, N1: 0.37, N2: 0.12, N3: 0.326, REM: 0.095}
#: Where a disagreeing epoch goes (the stages scorers confuse), per reference stage.
CONFUSED_WITH = {
    W: {N1: 0.75, N2: 0.15, REM: 0.10},
    N1: {W: 0.40, N2: 0.45, REM: 0.15},
    N2: {N1: 0.40, N3: 0.50, REM: 0.10},
    N3: {N2: 1.00},
    REM: {N1: 0.45, N2: 0.40, W: 0.15},
}
#: Epochs next to a stage change are disagreed on this many times more often than epochs deep
#: inside a bout (decaying over BOUNDARY_DECAY_EPOCHS); Rosenberg & Van Hout's hard epochs.
BOUNDARY_BOOST, BOUNDARY_DECAY_EPOCHS = 3.0, 1.5
#: Disagreements come in runs (a stretch of slow waves judged below or above 20 %): mean run
#: length in epochs.
MEAN_RUN_EPOCHS = 2.0


def _distance_to_change(stages: np.ndarray) -> np.ndarray:
    """Epochs from each epoch to the nearest stage change (0 at a changed epoch)."""
    n = len(stages)
    change = np.flatnonzero(np.diff(stages) != 0)
    if change.size == 0:
        return np.full(n, n, dtype=float)
    # a change between i and i+1 makes both i and i+1 boundary epochs
    marks = np.unique(np.r_[change, change + 1])
    idx = np.arange(n)
    pos = np.searchsorted(marks, idx)
    left = np.abs(idx - marks[np.clip(pos - 1, 0, len(marks) - 1)])
    right = np.abs(marks[np.clip(pos, 0, len(marks) - 1)] - idx)
    return np.minimum(left, right).astype(float)


def _remaining_in_bout(stages: np.ndarray) -> np.ndarray:
    """Epochs from each epoch to the end of its bout, itself included (>= 1)."""
    n = len(stages)
    ends = np.r_[np.flatnonzero(np.diff(stages) != 0), n - 1]
    return ends[np.searchsorted(ends, np.arange(n))] - np.arange(n) + 1


def disagreement_probability(stages: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Per-epoch probability that another scorer would stage the epoch differently.

    The per-stage rates of :data:`DISAGREE_P` (times ``scale``) are redistributed within each
    stage so that epochs near stage changes carry more of them; the mean rate per stage is
    kept.
    """
    stages = np.asarray(stages, dtype=np.int64)
    d = _distance_to_change(stages)
    weight = 1.0 + (BOUNDARY_BOOST - 1.0) * np.exp(-d / BOUNDARY_DECAY_EPOCHS)
    p = np.zeros(len(stages))
    for s, rate in DISAGREE_P.items():
        sel = stages == s
        if sel.any():
            p[sel] = rate * scale * weight[sel] / weight[sel].mean()
    return np.clip(p, 0.0, 0.95)


def scorer_disagreement(
    stages: np.ndarray, rng: np.random.Generator, scale: float = 1.0
) -> np.ndarray:
    """Signal stages for a reference hypnogram: the reference with human-like disagreement.

    Parameters
    ----------
    stages : ndarray of int
        Reference stage per epoch (UNSCORED epochs are kept as they are).
    rng : numpy.random.Generator
        Source of randomness.
    scale : float
        Factor on the published disagreement rates (0: the signals follow the reference
        exactly; 1: one AASM-program scorer against the majority).

    Returns
    -------
    ndarray of int8
        The stage each epoch's signals are drawn from.
    """
    if scale < 0:
        raise ValueError(f"label-noise scale must be >= 0, got {scale}")
    ref = np.asarray(stages, dtype=np.int64)
    out = ref.copy()
    if scale == 0 or len(ref) == 0:
        return out.astype(np.int8)
    p = disagreement_probability(ref, scale)
    # Runs: a run lasts a geometric number of epochs (mean MEAN_RUN_EPOCHS) but never past the
    # end of its reference bout; it starts with probability p / E[its length], so that the
    # expected disagreeing fraction stays about p.
    q = 1.0 / MEAN_RUN_EPOCHS
    expected_len = (1.0 - (1.0 - q) ** _remaining_in_bout(ref)) / q
    starts = np.flatnonzero(rng.random(len(ref)) < p / expected_len)
    lengths = rng.geometric(1.0 / MEAN_RUN_EPOCHS, len(starts))
    for i, k in zip(starts, lengths):
        s = int(ref[i])
        if s not in CONFUSED_WITH:
            continue
        targets = CONFUSED_WITH[s]
        prob = np.array(list(targets.values()), dtype=float)
        # at a boundary, the neighbouring stage is the likely confusion
        for nb in (ref[i - 1] if i > 0 else -9, ref[i + 1] if i + 1 < len(ref) else -9):
            if nb in targets:
                prob[list(targets).index(int(nb))] *= 3.0
        to = int(rng.choice(list(targets), p=prob / prob.sum()))
        j = i
        while j < len(ref) and j < i + k and ref[j] == s:
            out[j] = to
            j += 1
    return out.astype(np.int8)


__all__ = ["CONFUSED_WITH", "DISAGREE_P", "disagreement_probability", "scorer_disagreement"]
