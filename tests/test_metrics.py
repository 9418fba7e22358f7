"""Agreement metrics: hand-computed confusion matrices and scikit-learn on random data."""

from __future__ import annotations

import json
import math
import warnings

import numpy as np
import pytest

from edge_scorer.stats.metrics import (
    Agreement,
    accuracy,
    agreement,
    cohen_kappa,
    confusion_matrix,
    f1_per_class,
    macro_f1,
)

# W=0 N1=1 N2=2 N3=3 REM=4, -1 unscored
TRUE = [0, 0, 0, 1, 2, 2, 2, 2, 3, 4, -1, 2]
PRED = [0, 0, 1, 1, 2, 2, 3, 2, 3, 4, 2, -1]


def test_hand_computed_five_classes():
    # epochs 10 (reference unscored) and 11 (prediction unscored) are excluded -> n = 10
    # pairs: (W,W) (W,W) (W,N1) (N1,N1) (N2,N2) (N2,N2) (N2,N3) (N2,N2) (N3,N3) (REM,REM)
    expected = np.array([
        [2, 1, 0, 0, 0],   # W:   2 right, 1 called N1
        [0, 1, 0, 0, 0],   # N1
        [0, 0, 3, 1, 0],   # N2:  3 right, 1 called N3
        [0, 0, 0, 1, 0],   # N3
        [0, 0, 0, 0, 1],   # REM
    ])
    np.testing.assert_array_equal(confusion_matrix(TRUE, PRED), expected)
    # accuracy = trace / n = (2 + 1 + 3 + 1 + 1) / 10
    assert accuracy(TRUE, PRED) == pytest.approx(0.8)
    # rows (reference) = [3, 1, 4, 1, 1], columns (predicted) = [2, 2, 3, 2, 1]
    # p_e = (3*2 + 1*2 + 4*3 + 1*2 + 1*1) / 10**2 = 23 / 100
    # kappa = (0.80 - 0.23) / (1 - 0.23) = 57 / 77
    assert cohen_kappa(TRUE, PRED) == pytest.approx(57 / 77)
    # F1 = 2TP / (row + column): W 4/5, N1 2/3, N2 6/7, N3 2/3, REM 2/2
    f1 = [4 / 5, 2 / 3, 6 / 7, 2 / 3, 1.0]
    np.testing.assert_allclose(f1_per_class(TRUE, PRED), f1)
    assert macro_f1(TRUE, PRED) == pytest.approx(sum(f1) / 5)

    ag = agreement(TRUE, PRED)
    assert (ag.n, ag.n_excluded) == (10, 2)
    assert ag.accuracy == pytest.approx(0.8) and ag.kappa == pytest.approx(57 / 77)
    assert ag.f1["N2"] == pytest.approx(6 / 7) and ag.f1["REM"] == 1.0
    np.testing.assert_array_equal(ag.confusion, expected)


def test_absent_classes_are_left_out_of_macro_f1():
    # pairs: (W,W) (W,N2) (N2,N2) (N2,N2); N1, N3, REM appear in neither
    t, p = [0, 0, 2, 2], [0, 2, 2, 2]
    # rows W 2, N2 2; columns W 1, N2 3 -> p_e = (2*1 + 2*3) / 16 = 1/2; p_o = 3/4
    # kappa = (3/4 - 1/2) / (1/2) = 1/2
    assert cohen_kappa(t, p) == pytest.approx(0.5)
    f1 = f1_per_class(t, p)
    # W: 2*1 / (2 + 1) = 2/3; N2: 2*2 / (2 + 3) = 4/5; absent classes undefined
    np.testing.assert_allclose(f1[[0, 2]], [2 / 3, 4 / 5])
    assert np.isnan(f1[[1, 3, 4]]).all()
    assert macro_f1(t, p) == pytest.approx((2 / 3 + 4 / 5) / 2)


def test_class_never_predicted_counts_as_zero_f1():
    # N1 epochs all called W: F1(N1) = 0 (2*0 / (2 + 0)); W: 2*2 / (4 + 2) = 2/3
    t, p = [1, 1, 0, 0], [0, 0, 0, 0]
    np.testing.assert_allclose(f1_per_class(t, p)[:2], [2 / 3, 0.0])
    assert macro_f1(t, p) == pytest.approx(1 / 3)
    # p_o = 1/2; rows W 2, N1 2; columns W 4 -> p_e = 2*4/16 = 1/2 -> kappa 0
    assert cohen_kappa(t, p) == pytest.approx(0.0)


def test_degenerate_cases_are_nan_not_errors():
    # one class in both: perfect accuracy, kappa undefined (p_e = 1), as in scikit-learn
    assert accuracy([2, 2, 2], [2, 2, 2]) == 1.0
    assert math.isnan(cohen_kappa([2, 2, 2], [2, 2, 2]))
    ag = agreement([-1, -1, 3], [0, 1, -1])
    assert (ag.n, ag.n_excluded) == (0, 3)
    assert math.isnan(ag.accuracy) and math.isnan(ag.kappa) and math.isnan(ag.macro_f1)
    d = ag.as_dict()
    assert d["accuracy"] is None and d["kappa"] is None
    json.dumps(d)  # NaN-free, JSON-ready
    assert "0 epochs scored" in str(ag)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scikit_learn_on_random_data(seed):
    sk = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(seed)
    n = 500
    t = rng.choice(5, n, p=[0.2, 0.1, 0.4, 0.15, 0.15])
    # a noisy predictor: right 60 % of the time, otherwise a random stage
    p = np.where(rng.random(n) < 0.6, t, rng.integers(0, 5, n))
    t[rng.random(n) < 0.05] = -1
    p[rng.random(n) < 0.05] = -1
    if seed == 2:  # make REM absent from both
        t[t == 4] = 3
        p[p == 4] = 3
    keep = (t >= 0) & (p >= 0)
    tk, pk = t[keep], p[keep]
    ag = agreement(t, p)
    assert ag.n == keep.sum() and ag.n_excluded == n - keep.sum()
    np.testing.assert_array_equal(ag.confusion, sk.confusion_matrix(tk, pk, labels=range(5)))
    assert ag.accuracy == pytest.approx(sk.accuracy_score(tk, pk), abs=1e-12)
    assert ag.kappa == pytest.approx(sk.cohen_kappa_score(tk, pk), abs=1e-12)
    present = np.union1d(tk, pk)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ref_f1 = sk.f1_score(tk, pk, labels=present, average=None)
        ref_macro = sk.f1_score(tk, pk, average="macro")
    np.testing.assert_allclose(f1_per_class(t, p)[present], ref_f1, atol=1e-12)
    assert ag.macro_f1 == pytest.approx(ref_macro, abs=1e-12)


def test_pooled_from_summed_confusions_and_readable_text():
    a, b = agreement(TRUE[:6], PRED[:6]), agreement(TRUE[6:], PRED[6:])
    pooled = Agreement.from_confusion(a.confusion + b.confusion, a.n_excluded + b.n_excluded)
    whole = agreement(TRUE, PRED)
    assert pooled.as_dict() == whole.as_dict()
    text = str(whole)
    assert "accuracy 0.800" in text and "kappa 0.740" in text
    assert "rows: reference" in text and "REM" in text


@pytest.mark.parametrize("t,p,match", [
    ([0, 1], [0], "one code per epoch"),
    ([0, 5], [0, 1], "outside -1..4"),
    ([0, -2], [0, 1], "outside -1..4"),
    ([0.5, 1.0], [0, 1], "integer stage codes"),
    ([[0, 1]], [[0, 1]], "1-D"),
])
def test_invalid_input_is_refused_with_the_fix(t, p, match):
    with pytest.raises(ValueError, match=match):
        agreement(t, p)
