"""The window's Qt-free parts: signal-quality flags, the night store fed by the real rolling
scorer, the workers that keep the GUI thread free, and the explanation window."""

from __future__ import annotations

import threading
import time

import numpy as np
import pytest

from edge_scorer.engine.rolling import FINAL, PROVISIONAL, RollingScorer
from edge_scorer.inference.scorer import ScoringModel
from edge_scorer.io.spec import load_spec
from edge_scorer.stages import Stage
from gui.explainer import contiguous_window
from gui.store import NightStore, ScoredEpochs, channel_quality
from gui.workers import BackgroundCalls, LatestOnlyWorker, WorkerError

SPEC = load_spec("sleep-edf")


def test_channel_quality_flags():
    rng = np.random.default_rng(0)
    n = SPEC.epoch_samples
    rows = rng.normal(0.0, 10.0, (SPEC.n_rows, n))
    rows[1, : n // 2] = np.nan                       # half the epoch missing
    rows[2] = 3.0                                    # flat line (electrode off)
    rows[3] = 80.0 + rng.normal(0, 1, n)             # envelope far above its 0..20 band
    q = channel_quality(rows, SPEC)
    assert [c.row for c in q] == list(SPEC.row_names)
    assert [c.flag for c in q] == ["ok", "missing", "flat", "clipped"]
    assert q[1].missing_fraction == pytest.approx(0.5)
    assert q[3].clipped_fraction == 1.0 and q[0].clipped_fraction < 0.01
    assert [c.code for c in q] == [0, 3, 2, 1]
    with pytest.raises(ValueError, match="rows must have shape"):
        channel_quality(rows[:2], SPEC)


def test_store_follows_the_rolling_scorer():
    """Updates from the real rolling scorer (shipped inter model): statuses, the final prefix,
    revisions counted against the first provisional stage, then everything final."""
    model = ScoringModel.load()
    rolling = RollingScorer(model.inter_logits, model.window, SPEC.epoch_s)
    rng = np.random.default_rng(3)
    dim = int(model.intra.metadata["feature_dim"])
    store = NightStore(SPEC)
    history: dict[int, list[int]] = {}
    n = 16
    for t in range(n):
        feats = rng.normal(0, 1, (1, dim)).astype(np.float32) * (1 + t % 5)
        updates = rolling.add(feats, np.zeros((1, 5)))
        assert updates[-1].status == PROVISIONAL and updates[-1].index == t
        for u in updates:
            history.setdefault(u.index, []).append(u.stage)
        touched = store.apply(ScoredEpochs(updates, images={t: np.zeros((224, 224), np.uint8)}))
        assert t in touched
    assert store.n_epochs == n and len(store.images) == n
    assert store.n_final_prefix() == n - model.window + 1
    assert store.status[-1] == PROVISIONAL
    for i, stages in history.items():
        assert store.first_stage[i] == stages[0] and store.stages[i] == stages[-1]
        assert store.n_changes[i] == int(np.sum(np.diff(stages) != 0))
    np.testing.assert_array_equal(store.changed_mask(),
                                  [history[i][0] != history[i][-1] for i in range(n)])
    store.apply(ScoredEpochs(rolling.finish()))
    assert store.n_final_prefix() == n and set(store.status) == {FINAL}
    hyp = store.hypnogram()
    np.testing.assert_array_equal(hyp.stages, rolling.stages())
    np.testing.assert_allclose(hyp.probabilities, rolling.probabilities(), atol=1e-6)
    assert "epoch 3 (0:01:30)" in store.describe(3)
    with pytest.raises(ValueError, match="outside the night"):
        store.describe(n)


def test_store_quality_codes_and_unscorable():
    store = NightStore(SPEC)
    from edge_scorer.engine.rolling import EpochUpdate

    u = EpochUpdate(2, 60.0, int(Stage.UNSCORED), np.full(5, 0.2), FINAL, 1,
                    invalid_fraction=0.9, unscorable=True)
    rows = np.full((SPEC.n_rows, SPEC.epoch_samples), np.nan)
    store.apply(ScoredEpochs([u], quality={2: channel_quality(rows, SPEC)}))
    assert store.n_epochs == 3 and store.status[:2] == ["missing", "missing"]
    codes = store.quality_codes()
    assert codes.shape == (SPEC.n_rows, 3)
    assert (codes[:, :2] == -1).all() and (codes[:, 2] == 3).all()
    assert "UNSCORABLE" in store.describe(2)


def test_latest_only_worker_drops_stale_requests():
    gate, started = threading.Event(), threading.Event()
    seen: list[int] = []

    def slow(x: int) -> int:
        started.set()
        gate.wait(5.0)
        seen.append(x)
        if x < 0:
            raise ValueError("negative")
        return x * 10

    worker = LatestOnlyWorker(slow, name="test")
    try:
        worker.submit(1)
        assert started.wait(5.0)
        for x in (2, 3, 4):  # 1 is running: 2 and 3 are replaced by 4
            worker.submit(x)
        gate.set()
        deadline = time.perf_counter() + 5
        while not worker.idle and time.perf_counter() < deadline:
            time.sleep(0.01)
        assert seen == [1, 4] and worker.n_dropped == 2
        assert worker.poll() == [(1, 10), (4, 40)]
        worker.submit(-1)
        deadline = time.perf_counter() + 5
        while not worker.idle and time.perf_counter() < deadline:
            time.sleep(0.01)
        (req, res), = worker.poll()
        assert req == -1 and isinstance(res, WorkerError) and "negative" in str(res)
    finally:
        worker.close()
    with pytest.raises(RuntimeError, match="closed"):
        worker.submit(5)


def test_background_calls_deliver_on_poll():
    calls = BackgroundCalls()
    got: dict[str, object] = {}
    gate = threading.Event()
    assert calls.submit("a", lambda: (gate.wait(5), 42)[1], lambda v: got.update(a=v))
    assert not calls.submit("a", lambda: 0)  # one at a time per name
    assert calls.submit("b", lambda: 1 / 0, on_error=lambda e: got.update(b=e))
    gate.set()
    deadline = time.perf_counter() + 5
    while len(got) < 2 and time.perf_counter() < deadline:
        calls.poll()
        time.sleep(0.01)
    assert got["a"] == 42 and isinstance(got["b"], ZeroDivisionError)
    assert not calls.busy("a")


def test_contiguous_window():
    have = {i: None for i in range(0, 30) if i != 12}
    assert contiguous_window(20, have, 10, 30) == (13, 30)
    assert contiguous_window(5, have, 10, 30) == (0, 12)
    assert contiguous_window(25, have, 10, 26) == (16, 26)
    with pytest.raises(ValueError, match="no stored image"):
        contiguous_window(12, have, 10, 30)
