"""The engine without a network: rolling-window rule, offline scoring, epoch flags, CSV log."""

from __future__ import annotations

import numpy as np
import pytest

from edge_scorer.dsp.render_night import render_night
from edge_scorer.engine.engine import Engine
from edge_scorer.engine.offline import score_file
from edge_scorer.engine.rolling import FINAL, PROVISIONAL, REVISED, RollingScorer
from edge_scorer.engine.sinks import LOG_COLUMNS, CsvLog, output_sinks, read_epoch_log
from edge_scorer.inference.windows import sliding_window_proba
from edge_scorer.io.psg import read_psg
from edge_scorer.stages import Stage

SIM_NIGHT = (0.4, 11)  # (hours, seed) of the module's simulated night


@pytest.mark.parametrize("n", [1, 4, 9, 10, 11, 25])
def test_rolling_updates_follow_the_window_rule(model, n):
    rng = np.random.default_rng(n)
    feats = rng.normal(size=(n, 128)).astype(np.float32)
    logits = rng.normal(size=(n, 5))
    rs = RollingScorer(model.inter_logits, 10)
    seen: dict[int, list[str]] = {}
    for e in range(n):
        ups = rs.add(feats[e:e + 1], logits[e:e + 1])
        statuses = {u.index: u.status for u in ups}
        assert statuses[e] == PROVISIONAL
        # the window ending at e touches the 9 epochs before it (all epochs early in the night)
        assert set(statuses) == set(range(max(0, e - 9), e + 1))
        if e >= 9:
            assert statuses[e - 9] == FINAL and all(statuses[t] == REVISED
                                                     for t in range(e - 8, e))
        for u in ups:
            seen.setdefault(u.index, []).append(u.status)
    final = rs.finish()
    for u in final:
        seen[u.index].append(u.status)
    # every epoch: one provisional label first, exactly one final label last
    for t in range(n):
        assert seen[t][0] == PROVISIONAL and seen[t][-1] == FINAL and seen[t].count(FINAL) == 1
    np.testing.assert_array_equal(rs.probabilities(),
                                  sliding_window_proba(model.inter_logits, feats, 10))
    with pytest.raises(ValueError, match="finished"):
        rs.add(feats[:1], logits[:1])


def test_offline_engine_equals_whole_night_scoring(model, sim_night, tmp_path):
    psg, hyp = sim_night
    scored = score_file(psg, model, tmp_path / "out", progress=False, block_epochs=7)
    rendered = render_night(psg, model.spec, hyp)
    ref = model.score_night(rendered.images)
    assert scored.hypnogram.n_epochs == rendered.n_epochs == 48
    np.testing.assert_array_equal(scored.hypnogram.stages, ref.stages)
    np.testing.assert_allclose(scored.hypnogram.probabilities, ref.probabilities, atol=1e-5)
    files = {p.name for p in (tmp_path / "out").iterdir()}
    assert {"epochs.csv", "hypnogram.csv", "hypnogram.edf", "stats.json", "stats.txt",
            "run.json"} <= files
    logged, info = read_epoch_log(tmp_path / "out" / "epochs.csv")
    np.testing.assert_array_equal(logged.stages, ref.stages)
    assert set(info["status"]) == {FINAL} and info["n_torn"] == 0


def test_nan_input_marks_epochs_and_long_gaps_are_unscorable(model, sim_night):
    psg, _ = sim_night
    rec = read_psg(psg, model.spec)
    rows, rates = rec.native_rows()
    rows = [r.copy() for r in rows]
    rows[0][int(95 * 100):int(100 * 100)] = np.nan  # 5 s of one EEG row in epoch 3
    for r, fs in zip(rows, rates, strict=True):  # epoch 6 (180-210 s) entirely missing
        r[int(180 * fs):int(210 * fs)] = np.nan
    engine = Engine(model, rates)
    with engine:
        engine.push([r[:int(400 * fs)] for r, fs in zip(rows, rates, strict=True)])
    assert engine.finished and engine.closed
    hyp = engine.hypnogram()
    assert hyp.n_epochs == 13
    assert hyp.stages[6] == Stage.UNSCORED
    assert (np.delete(hyp.stages, 6) >= 0).all()
    info = engine.rolling._info
    # 5 s of 30 missing in one row: the largest row fraction is reported
    assert 0.15 < info[3].invalid_fraction < 0.18 and not info[3].unscorable
    assert info[6].invalid_fraction > 0.9 and info[6].unscorable
    # the 1-Hz EMG row interpolates towards its first missing sample: 1 s of epoch 5
    assert info[4].invalid_fraction == 0.0 and 0 < info[5].invalid_fraction < 0.04


def test_one_dead_eeg_row_makes_the_epoch_unscorable(model, sim_night, caplog):
    """An EEG row of NaN (a lead off) was scored from the other rows at p 0.94 and flagged
    only in the CSV; the model never saw such an image: the epoch is unscorable now."""
    psg, _ = sim_night
    rows, rates = read_psg(psg, model.spec).native_rows()
    rows = [r.copy() for r in rows]
    rows[0][int(60 * 100):int(150 * 100)] = np.nan  # EEG Fpz-Cz dead in epochs 2-4
    with caplog.at_level("WARNING", logger="edge_scorer.engine"), \
            Engine(model, rates) as engine:
        engine.push([r[:int(300 * fs)] for r, fs in zip(rows, rates, strict=True)])
    hyp = engine.hypnogram()
    assert list(np.flatnonzero(hyp.stages == Stage.UNSCORED)) == [2, 3, 4]
    assert all(engine.rolling._info[i].invalid_fraction == 1.0 for i in (2, 3, 4))
    assert "EEG Fpz-Cz has no signal" in caplog.text


def test_gap_filled_samples_flag_their_epoch(model, sim_night):
    psg, _ = sim_night
    rows, rates = read_psg(psg, model.spec).native_rows()
    filled = [np.zeros(int(200 * fs), dtype=bool) for fs in rates]
    filled[1][int(65 * 100):int(65.5 * 100)] = True  # epoch 2
    with Engine(model, rates) as engine:
        ups = engine.push([r[:int(200 * fs)] for r, fs in zip(rows, rates, strict=True)], filled)
    flagged = {u.index for u in ups if u.gap_filled}
    assert flagged == {2}


def test_csv_log_survives_a_torn_line_and_is_appended(tmp_path, model, sim_night):
    psg, _ = sim_night
    rows, rates = read_psg(psg, model.spec).native_rows()
    sinks = output_sinks(tmp_path)
    engine = Engine(model, rates, sinks=sinks)
    engine.push([r[:int(335 * fs)] for r, fs in zip(rows, rates, strict=True)])
    # a crash now: the log holds every update so far, flushed
    log_path = tmp_path / "epochs.csv"
    hyp, info = read_epoch_log(log_path)
    assert hyp.n_epochs == 11
    assert info["status"][0] == FINAL and info["status"][10] == PROVISIONAL
    with open(log_path, "a") as fh:
        fh.write("11,330,provisional,N2,0.1")  # torn last line (killed mid-write)
    hyp2, info2 = read_epoch_log(log_path)
    assert info2["n_torn"] == 1 and hyp2.n_epochs == 11
    with pytest.raises(ValueError, match="not an edge-scorer epoch log"):
        (tmp_path / "other.csv").write_text("a,b\n1,2\n")
        read_epoch_log(tmp_path / "other.csv")
    with pytest.raises(ValueError, match="not an edge-scorer epoch log"):
        CsvLog(tmp_path / "other.csv")
    assert LOG_COLUMNS[0] == "epoch"


def test_engine_refuses_input_after_finish(model):
    engine = Engine(model, [100.0, 100.0, 100.0, 1.0])
    engine.finish()
    with pytest.raises(ValueError, match="finished"):
        engine.push([np.zeros(10)] * 3 + [np.zeros(1)])
