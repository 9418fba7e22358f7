"""One epoch grid whenever you join, and stage outlets consumers can rely on.

A simulated night is replayed as real LSL streams; three live scorers join it at random
moments after it started. Each lays its epochs on the recording's grid (the replay advertises
the LSL time of its signal time 0): the epochs it missed are unscorable, and once its windows
hold only received epochs, its stages and probabilities equal offline scoring of the file at
the same epoch index and clock time. The first scorer publishes its stages: a subscriber that
joins the final-only outlet late gets every epoch once, in order, with increasing stamps on the
epoch grid; a late subscriber of the full outlet catches up with the epochs so far.
"""

from __future__ import annotations

import shutil
import threading
import time
import uuid

import numpy as np
import pytest

from edge_scorer.engine.review import epoch_log_updates
from edge_scorer.engine.sinks import STAGE_CHANNELS
from edge_scorer.io.hypnogram_io import read_hypnogram

SIM_NIGHT = (0.4, 21)  # 48 epochs
SPEED = 120.0          # 12 s of replay
WINDOW = 10


def _pull(inlet, into: list) -> None:
    data, ts = inlet.pull_chunk(timeout=0.0)
    into += [(list(d), t) for d, t in zip(data, ts)]


def test_late_joins_keep_the_grid_and_outlets_catch_up(sim_night, model, tmp_path):
    import pylsl

    from edge_scorer.engine.offline import score_file
    from edge_scorer.stream.live import LiveScorer
    from edge_scorer.stream.replay import Replayer

    psg, _ = sim_night
    offline = score_file(psg, model, tmp_path / "offline", progress=False).hypnogram
    off_csv = read_hypnogram(tmp_path / "offline" / "hypnogram.csv")
    assert off_csv.start_time is not None
    name = f"grid-{uuid.uuid4().hex[:8]}"
    rng = np.random.default_rng(14)
    joins = np.sort(rng.uniform(0.5, 2.5, 3))              # wall seconds after the start
    scorers = [LiveScorer(model, name=name, out_dir=tmp_path / f"live{k}",
                          outlet_name=f"{name}-stages" if k == 0 else None)
               for k in range(len(joins))]
    rep = Replayer(psg, model.spec, name=name, speed=SPEED).start()
    t_start = time.perf_counter()
    finals, full = [], []
    final_inlet = full_inlet = None

    def join_at(live, at: float) -> None:
        time.sleep(max(0.0, t_start + at - time.perf_counter()))
        live.start()

    threads = [threading.Thread(target=join_at, args=(live, at))
               for live, at in zip(scorers, joins)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(30.0)
        # subscribers joining the outlets of the first scorer late
        deadline = time.monotonic() + 60
        while scorers[0].engine.n_epochs < 20 and time.monotonic() < deadline:
            time.sleep(0.05)
        for outlet, store in ((f"{name}-stages-final", "final"), (f"{name}-stages", "full")):
            inlet = pylsl.StreamInlet(pylsl.resolve_byprop("name", outlet, 1, 5.0)[0],
                                      max_buflen=360)
            inlet.open_stream(timeout=5.0)
            if store == "final":
                final_inlet = inlet
            else:
                full_inlet = inlet
        assert rep.wait(60.0)
        end = time.monotonic() + 2.0               # what is in flight reaches the scorers
        while time.monotonic() < end:
            _pull(final_inlet, finals)
            _pull(full_inlet, full)
            time.sleep(0.05)
        for live in scorers:
            live.stop(timeout=None)
        time.sleep(0.5)
        _pull(final_inlet, finals)
        _pull(full_inlet, full)
    finally:
        for live in scorers:
            live.stop(timeout=None, raise_error=False)
        rep.stop()

    for k, join in enumerate(joins):
        folder = tmp_path / f"live{k}"
        live = read_hypnogram(folder / "hypnogram.csv")
        assert live.n_epochs == offline.n_epochs == 48, k
        assert live.start_time == off_csv.start_time                 # epoch 0: recording start
        last = {u.index: u for u in epoch_log_updates(folder / "epochs.csv")}
        j = min(i for i, u in last.items() if u.invalid_fraction == 0.0)   # first whole epoch
        assert j >= join * SPEED / 30.0 - 1, (k, j)                  # joined that late
        assert all(last[i].unscorable for i in range(j - 1))          # not received at all
        same = np.arange(j + WINDOW - 1, offline.n_epochs)
        assert same.size >= 12
        np.testing.assert_array_equal(live.stages[same], offline.stages[same], err_msg=str(k))
        np.testing.assert_allclose(live.probabilities[same], offline.probabilities[same],
                                   atol=1e-4, err_msg=str(k))
        np.testing.assert_array_equal(live.epoch_onsets_s()[same], off_csv.epoch_onsets_s()[same])
        run = (folder / "run.json").read_text()
        assert '"epoch_grid": "recording start"' in run

    # the final-only outlet: every epoch once, in order, increasing stamps on the epoch grid
    live0 = read_hypnogram(tmp_path / "live0" / "hypnogram.csv")
    col = {c: i for i, c in enumerate(STAGE_CHANNELS)}
    epochs = [int(s[col["epoch"]]) for s, _ in finals]
    assert epochs == list(range(48))
    stamps = np.array([t for _, t in finals])
    assert np.all(np.diff(stamps) > 0)
    np.testing.assert_allclose(np.diff(stamps), 30.0 / SPEED, atol=0.05)
    assert all(s[col["status"]] == 2 for s, _ in finals)
    np.testing.assert_array_equal([int(s[col["stage"]]) for s, _ in finals], live0.stages)
    # the full outlet: the late subscriber got the epochs before it joined (history, in
    # order, first), then the updates; the latest sample of each epoch is the final stage
    first_epochs = [int(s[col["epoch"]]) for s, _ in full[:20]]
    assert first_epochs == list(range(20))
    latest = {}
    for s, t in full:
        latest[int(s[col["epoch"]])] = (s, t)
    assert sorted(latest) == list(range(48))
    np.testing.assert_array_equal([int(latest[i][0][col["stage"]]) for i in range(48)],
                                  live0.stages)
    assert all(latest[i][0][col["status"]] == 2 for i in range(48))
    # a provisional and its final sample of one epoch share the epoch's stamp
    t_final = {int(s[col["epoch"]]): t for s, t in finals}
    for s, t in full:
        assert t == pytest.approx(t_final[int(s[col["epoch"]])], abs=1e-6)
    shutil.rmtree(tmp_path / "offline", ignore_errors=True)
