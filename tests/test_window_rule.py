"""The one window rule (``edge_scorer.inference.windows``): the live rolling scorer, the offline
rule, the cached-logit path of calibration and the look-ahead report all give its numbers.

The rolling scorer's labels are compared with :func:`lookahead_proba` on the whole night: after
epoch ``e`` has arrived, epoch ``t`` must show exactly the look-ahead ``e - t`` output. The
window logits are random (drawn from each window's content), so that any window scored at the
wrong place, or read at the wrong look-ahead, changes the numbers.
"""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_scorer.engine.rolling import FINAL, PROVISIONAL, REVISED, RollingScorer
from edge_scorer.inference.windows import (
    lookahead_proba,
    offline_ends,
    sliding_proba_from_logits,
    sliding_window_proba,
    softmax,
    window_index,
    window_logits,
    window_softmax,
    window_sums,
)


def _random_logits(windows: np.ndarray) -> np.ndarray:
    """Random logits ``(B, L, 5)`` drawn from each window's content (epoch numbers): the same
    window always gets the same logits, a different window (or padding) different ones."""
    w = np.asarray(windows)[..., 0].astype(np.int64)
    return np.stack([np.random.default_rng([*row.tolist(), 7]).normal(0, 2, (len(row), 5))
                     for row in w])


def _night(n: int) -> np.ndarray:
    """Features whose first component is the epoch number (``_random_logits`` reads it)."""
    return np.stack([np.arange(n), np.ones(n)], 1).astype(np.float32)


def test_window_index():
    np.testing.assert_array_equal(window_index([0, 2, 3, 7], 4),
                                  [[0, 0, 0, 0], [0, 1, 2, 2], [0, 1, 2, 3], [4, 5, 6, 7]])
    np.testing.assert_array_equal(offline_ends(3, 10), [2])
    np.testing.assert_array_equal(offline_ends(12, 10), [9, 10, 11])


def _chunks(n: int, rng: np.random.Generator | None) -> list[tuple[int, int]]:
    if rng is None:
        return [(e, e + 1) for e in range(n)]
    out, a = [], 0
    while a < n:
        b = min(n, a + int(rng.integers(1, 5)))
        out.append((a, b))
        a = b
    return out


@pytest.mark.parametrize("L", [4, 10])
@pytest.mark.parametrize("n", [1, 3, 9, 10, 11, 31])
@pytest.mark.parametrize("batched", [False, True])
def test_rolling_labels_are_the_lookahead_rule(n, L, batched):
    feats = _night(n)
    ws = window_softmax(_random_logits, feats, L=L)
    curve = [lookahead_proba(ws, n, k) for k in range(L)]
    _, counts = zip(*(window_sums(ws, n, k) for k in range(L)), strict=True)
    rs = RollingScorer(_random_logits, L)
    first_label: dict[int, int] = {}
    for a, b in _chunks(n, np.random.default_rng(n) if batched else None):
        ups = rs.add(feats[a:b], np.zeros((b - a, 5)))
        assert [u.index for u in ups] == sorted({u.index for u in ups})
        assert set(range(a, b)) <= {u.index for u in ups}
        for u in ups:
            k = b - 1 - u.index  # later epochs arrived
            want = curve[min(k, L - 1)][u.index]
            np.testing.assert_array_equal(u.proba, want)
            assert u.stage == int(np.argmax(want))
            assert u.n_windows == counts[min(k, L - 1)][u.index]
            assert u.status == (FINAL if k >= L - 1 else PROVISIONAL if u.index >= a
                                else REVISED)
            first_label.setdefault(u.index, u.stage)
    if not batched:  # provisional labels: look-ahead 0
        assert [first_label[t] for t in range(n)] == list(np.argmax(curve[0], 1))
    # every epoch shows the look-ahead-k label once k later epochs exist; at the end, k = L - 1
    rs.finish()
    np.testing.assert_array_equal(rs.probabilities(), curve[-1])
    np.testing.assert_array_equal(curve[-1], sliding_window_proba(_random_logits, feats, L=L))
    assert all(rs.is_final(t) for t in range(n))


def test_rolling_scorer_state_mid_night_is_the_rule():
    n, L = 17, 10
    feats = _night(n)
    rs = RollingScorer(_random_logits, L)
    rs.add(feats[:12], np.zeros((12, 5)))
    ws = window_softmax(_random_logits, feats[:12], L=L)
    # epoch t has look-ahead 11 - t: the rule on the 12 epochs that exist
    want = np.stack([lookahead_proba(ws, 12, 11 - t)[t] for t in range(12)])
    np.testing.assert_array_equal(rs.probabilities(), want)
    assert [rs.is_final(t) for t in range(12)] == [t <= 2 for t in range(12)]


def test_without_inter_model_every_epoch_is_final_at_once():
    logits = np.random.default_rng(0).normal(size=(6, 5))
    rs = RollingScorer(None, 10)
    ups = rs.add(np.zeros((6, 3)), logits)
    assert [u.status for u in ups] == [FINAL] * 6 and all(u.n_windows == 1 for u in ups)
    np.testing.assert_array_equal(rs.probabilities(), softmax(logits))
    assert rs.finish() == []


@pytest.mark.parametrize("n", [1, 5, 10, 23])
def test_cached_window_logits_give_the_offline_rule(n):
    feats = _night(n)
    cached = window_logits(_random_logits, feats, L=10, batch_size=4)
    assert cached.shape == (len(offline_ends(n, 10)), 10, 5)
    for t in (1.0, 0.7, 2.5):
        ref = sliding_window_proba(lambda w, t=t: _random_logits(w) / t, feats, L=10)
        np.testing.assert_allclose(sliding_proba_from_logits(cached, n, t), ref, atol=1e-12)
    with pytest.raises(ValueError, match="window_logits"):
        sliding_proba_from_logits(cached, n + 10)


def test_offline_rule_scores_only_the_windows_it_reads():
    seen = []

    def fn(windows):
        seen.append(np.asarray(windows)[:, -1, 0].tolist())
        return _random_logits(windows)

    sliding_window_proba(fn, _night(14), L=10, batch_size=256)
    assert seen == [[9, 10, 11, 12, 13]]
    seen.clear()
    ws = window_softmax(fn, _night(14), L=10, min_lookahead=9)
    assert seen == [[9, 10, 11, 12, 13]] and np.isnan(ws[:9]).all()
    seen.clear()
    sliding_window_proba(fn, _night(4), L=10)
    assert seen == [[3]]


def test_errors():
    ws = window_softmax(_random_logits, _night(5), L=3)
    with pytest.raises(ValueError, match="k must be >= 0"):
        window_sums(ws, 5, np.array([0, 1, -1, 0, 0]))
    with pytest.raises(ValueError, match="epochs must lie"):
        window_sums(ws, 5, 0, epochs=np.array([5]))
    with pytest.raises(ValueError, match="min_lookahead"):
        window_softmax(_random_logits, _night(5), L=3, min_lookahead=-1)
    rs = RollingScorer(_random_logits, 3)
    with pytest.raises(ValueError, match="infos"):
        rs.add(_night(2), np.zeros((2, 5)), infos=[{}])


# ---------------------------------------------------------------------------- the report command
def test_lookahead_report_is_what_the_engine_shows(model, tmp_path, capsys):
    """``python -m training.lookahead`` on a simulated night: at every k, the stages of the
    report are those a RollingScorer fed the night epoch by epoch shows after k later epochs."""
    pytest.importorskip("torch")
    from edge_scorer.simulate import simulate_night, write_night
    from edge_scorer.stats.hypnogram import Hypnogram
    from training.dataset import open_cache
    from training.lookahead import lookahead_report, main
    from training.splits import save_split

    stages = np.array([0] * 6 + [1] * 3 + [2] * 10 + [3] * 6 + [4] * 6 + [2] * 4 + [0] * 4,
                      np.int8)
    for subject in (1, 2):
        write_night(simulate_night(Hypnogram(stages), seed=subject, subject=subject),
                    tmp_path / "nights")
    split = save_split({"train": ["002"], "val": [], "test": ["001"]}, tmp_path / "split.json")
    models = model.intra.path.parent
    assert main([str(models), "--data", str(tmp_path / "nights"), "--cache",
                 str(tmp_path / "cache"), "--split", str(split), "-o", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "| k | 0 | 1 |" in out and "| kappa |" in out
    cache = open_cache(tmp_path / "cache")
    assert [n["subject"] for n in cache.nights] == ["001"]  # only the part's nights rendered

    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert report["lookahead"]["intra+inter"]["k"] == list(range(10))
    assert (tmp_path / "out" / "predictions.csv").is_file()
    night = lookahead_report(models, tmp_path / "cache", split).nights[0]
    _, feats = model.epoch_outputs(np.asarray(cache.images[:]))
    rs = RollingScorer(model.inter_logits, model.window)
    n = len(feats)
    shown = np.full((model.window, n), -9)
    for e in range(n):
        for u in rs.add(feats[e:e + 1], np.zeros((1, 5))):
            shown[e - u.index, u.index] = u.stage
    for t in range(n - model.window + 1, n):  # the night ends: look-ahead stops there
        shown[n - t:, t] = shown[n - 1 - t, t]
    np.testing.assert_array_equal(shown, night.lookahead["intra+inter"])
