"""Live scoring over real loopback LSL: replayed nights, gaps, outages, bad streams, a kill."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
import uuid

import numpy as np
import pylsl
import pytest
from pylsl.util import LostError

from edge_scorer.engine.offline import score_file
from edge_scorer.engine.rolling import FINAL
from edge_scorer.engine.sinks import LOG_COLUMNS, STAGE_CHANNELS, read_epoch_log
from edge_scorer.io.montage import ChannelMapError
from edge_scorer.io.psg import read_psg
from edge_scorer.stages import Stage
from edge_scorer.stream.inlet import AmbiguousStream, LslSource, StreamNotFound, resolve_stream
from edge_scorer.stream.live import LiveScorer
from edge_scorer.stream.replay import Replayer

SPEED = 300.0


def _name() -> str:
    return f"test-live-{uuid.uuid4().hex[:10]}"


SIM_NIGHT = (0.3, 21)  # (hours, seed) of the module's simulated night


def _score_live(model, psg, out_dir, speed=SPEED, **kw):
    name = _name()
    with Replayer(psg, model.spec, name=name, speed=speed, wait_for_consumers_s=5) as rep:
        live = LiveScorer(model, name=name, out_dir=out_dir, idle_timeout_s=1.5, **kw)
        live.start()
        rep.wait(60)
        live.join(60)
    return live


def test_live_replay_equals_offline_scoring(model, sim_night, tmp_path):
    psg, _ = sim_night
    live = _score_live(model, psg, tmp_path / "live")
    offline = score_file(psg, model, tmp_path / "offline", progress=False)
    got, ref = live.engine.hypnogram(), offline.hypnogram
    assert got.n_epochs == ref.n_epochs == 36
    np.testing.assert_array_equal(got.stages, ref.stages)
    np.testing.assert_allclose(got.probabilities, ref.probabilities, atol=1e-5)
    assert live.source.n_gaps == 0
    assert live.engine.start_time == offline.recording.start_time is not None  # from the desc
    logged, info = read_epoch_log(tmp_path / "live" / "epochs.csv")
    np.testing.assert_array_equal(logged.stages, ref.stages)
    assert set(info["status"]) == {FINAL}
    assert (tmp_path / "live" / "hypnogram.edf").is_file()
    lat = live.engine.latency_summary()
    assert lat["n"] == 36 and lat["median_ms"] > 0


def test_live_replay_of_the_real_excerpt(model, psg_excerpt, tmp_path):
    live = _score_live(model, psg_excerpt, tmp_path / "live", speed=100.0)
    offline = score_file(psg_excerpt, model, None, progress=False)
    assert live.engine.n_epochs == offline.hypnogram.n_epochs == 10
    np.testing.assert_array_equal(live.engine.hypnogram().stages, offline.hypnogram.stages)
    np.testing.assert_allclose(live.engine.hypnogram().probabilities,
                               offline.hypnogram.probabilities, atol=1e-5)


# ---------------------------------------------------------------- hand-made streams
class _Streams:
    """Publish a recording's rows as LSL outlets (like the replay), with injected faults."""

    def __init__(self, rec, spec, name, *, drop_s=(), nan_s=(), labels=None, rows=None,
                 speed=SPEED):
        self.name, self.speed = name, speed
        data, rates = rec.native_rows()
        rows = list(range(spec.n_rows)) if rows is None else rows
        self.groups = []
        for fs in sorted({rates[r] for r in rows}, reverse=True):
            idx = [r for r in rows if rates[r] == fs]
            x = np.stack([data[r] for r in idx], axis=1).astype(np.float32)
            t = np.arange(len(x)) / fs
            keep = np.ones(len(x), dtype=bool)
            for a, b in drop_s:
                keep &= ~((t >= a) & (t < b))
            for a, b in nan_s:
                x[(t >= a) & (t < b)] = np.nan
            sname = name if not self.groups else f"{name}-{fs:g}Hz"
            info = pylsl.StreamInfo(sname, "EEG", len(idx), fs, pylsl.cf_float32,
                                    f"{name}/{fs:g}Hz")
            chans = info.desc().append_child("channels")
            for r in idx:
                label = spec.rows[r].name if labels is None else labels.get(r)
                ch = chans.append_child("channel")
                if label:
                    ch.append_child_value("label", label)
            info.desc().append_child("edge_scorer").append_child_value("speed", f"{speed:g}")
            self.groups.append((pylsl.StreamOutlet(info), x[keep], t[keep]))
        self.duration_s = max(len(d) / fs for d, fs in zip(data, rates, strict=True))

    def run(self, stop_at_s: float | None = None) -> None:
        """Push everything (paced at ``speed``); blocks until done."""
        deadline = time.monotonic() + 10
        while not all(o.have_consumers() for o, _, _ in self.groups):
            if time.monotonic() > deadline:
                raise AssertionError("no receiver connected")
            time.sleep(0.01)
        t0, lsl0 = time.monotonic(), pylsl.local_clock()
        sent = [0] * len(self.groups)
        end = self.duration_s if stop_at_s is None else stop_at_s
        while True:
            due = min((time.monotonic() - t0) * self.speed, end)
            for g, (outlet, x, t) in enumerate(self.groups):
                k = int(np.searchsorted(t, due, side="left"))
                if k > sent[g]:
                    outlet.push_chunk(x[sent[g]:k], (lsl0 + t[sent[g]:k] / self.speed).tolist())
                    sent[g] = k
            if due >= end:
                return
            time.sleep(0.01)

    def close(self) -> None:
        self.groups = []


def _live_with(streams, model, tmp_path, **kw):
    live = LiveScorer(model, name=streams.name, out_dir=tmp_path, idle_timeout_s=1.5, **kw)
    live.start()
    streams.run()
    live.join(60)
    streams.close()
    return live


def test_gaps_are_filled_or_marked_and_never_shift_epochs(model, sim_night, tmp_path):
    psg, _ = sim_night
    rec = read_psg(psg, model.spec)
    streams = _Streams(rec, model.spec, _name(), drop_s=[(100.0, 100.5), (300.0, 340.0)],
                       nan_s=[(500.0, 505.0)])
    live = _live_with(streams, model, tmp_path)
    hyp = live.engine.hypnogram()
    offline = score_file(psg, model, None, progress=False).hypnogram
    assert hyp.n_epochs == offline.n_epochs == 36  # no epoch lost, none shifted
    info = live.engine.rolling._info
    assert info[3].gap_filled and info[3].invalid_fraction == 0  # 0.5 s: interpolated
    assert hyp.stages[10] == Stage.UNSCORED and info[10].unscorable  # 300-330 s missing
    assert 0.15 < info[11].invalid_fraction < 0.5 and not info[11].unscorable
    assert 0.1 < info[16].invalid_fraction <= 0.21  # NaNs sent by the device (500-505 s)
    assert live.source.n_gaps >= 2
    # epochs far from the faults score as offline: the grid did not move
    far = [e for e in range(36) if e not in range(2, 19)]
    np.testing.assert_array_equal(hyp.stages[far], offline.stages[far])


def test_stream_that_stops_and_comes_back(model, sim_night, tmp_path):
    psg, _ = sim_night
    name = _name()
    rep = Replayer(psg, model.spec, name=name, speed=SPEED, wait_for_consumers_s=5,
                   source_id="test-outage")
    rep.start()
    live = LiveScorer(model, name=name, out_dir=tmp_path, idle_timeout_s=None)
    live.start()
    time.sleep(1.5)
    rep.stop()
    n_before = live.engine.n_epochs
    time.sleep(1.0)
    rep2 = Replayer(psg, model.spec, name=name, speed=SPEED, source_id="test-outage")
    rep2.start()
    rep2.wait(30)
    time.sleep(1.0)
    live.stop()
    rep2.stop()
    hyp = live.engine.hypnogram()
    assert n_before >= 5
    assert live.source.n_gaps >= 1
    unscorable = np.flatnonzero(hyp.stages == Stage.UNSCORED)
    assert len(unscorable) >= 3  # the outage (>= 1 s wall = 300 s of signal)
    assert unscorable.min() >= n_before - 1
    after = hyp.stages[unscorable.max() + 1:]
    assert len(after) >= 10 and (after >= 0).all()  # scoring resumed after the gap
    # the epoch grid follows the time stamps: the outage is inside the night, not cut out
    assert hyp.n_epochs >= n_before + len(unscorable) + 10


def test_missing_channel_lists_what_the_stream_has(model, sim_night, tmp_path):
    rec = read_psg(sim_night[0], model.spec)
    streams = _Streams(rec, model.spec, _name(), rows=[0, 1, 3])  # no EOG channel
    live = LiveScorer(model, name=streams.name, out_dir=tmp_path)
    with pytest.raises(ChannelMapError, match="EOG horizontal") as exc:
        live.start()
    assert "EEG Fpz-Cz" in str(exc.value) and "--channel" in str(exc.value)
    streams.close()


def test_unlabelled_channels_map_with_overrides(model, sim_night, tmp_path):
    rec = read_psg(sim_night[0], model.spec)
    labels = {0: None, 1: None, 2: None, 3: "EMG submental"}  # a device without labels
    streams = _Streams(rec, model.spec, _name(), labels=labels)
    with pytest.raises(ChannelMapError, match="'ch1', 'ch2', 'ch3'"):
        LslSource(model.spec, name=streams.name).connect()
    overrides = {"EEG Fpz-Cz": "ch2", "EEG Pz-Oz": "ch1", "EOG horizontal": "ch3"}
    src = LslSource(model.spec, name=streams.name, channel_overrides=overrides).connect()
    try:
        assert src.labels == {"EEG Fpz-Cz": "ch2", "EEG Pz-Oz": "ch1", "EOG horizontal": "ch3",
                              "EMG submental": "EMG submental"}
        assert src.groups[0].rows == [(0, 1), (1, 0), (2, 2)]
    finally:
        src.disconnect()
        streams.close()


def test_wrong_rate_is_refused(model, tmp_path):
    name = _name()
    info = pylsl.StreamInfo(name, "EEG", 4, 10.0, pylsl.cf_float32, name)
    chans = info.desc().append_child("channels")
    for row in model.spec.rows:
        chans.append_child("channel").append_child_value("label", row.name)
    outlet = pylsl.StreamOutlet(info)
    with pytest.raises(ValueError, match="below the minimum"):
        LiveScorer(model, name=name, out_dir=tmp_path).start()
    del outlet


def test_ambiguous_and_missing_streams_are_refused(model, sim_night):
    psg, _ = sim_night
    name = _name()
    with Replayer(psg, model.spec, name=name, source_id="a"), \
            Replayer(psg, model.spec, name=name, source_id="b"):
        with pytest.raises(AmbiguousStream, match="source id") as exc:
            resolve_stream(name=name, timeout_s=3)
        assert "'a/100Hz'" in str(exc.value) and "'b/100Hz'" in str(exc.value)
        info = resolve_stream(name=name, source_id="b/100Hz", timeout_s=3)
        assert info.source_id() == "b/100Hz"
    with pytest.raises(StreamNotFound, match="no LSL stream"):
        resolve_stream(name=_name(), timeout_s=0.5)


@pytest.mark.slow
def test_kill_mid_night_keeps_every_published_epoch(model, sim_night, tmp_path):
    """SIGKILL the `stream` command: every stage it published is in its CSV log."""
    psg, _ = sim_night
    name = _name()
    out = tmp_path / "out"
    rep = Replayer(psg, model.spec, name=name, speed=60.0, wait_for_consumers_s=30)
    rep.start()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "edge_scorer", "stream", "--name", name,
                             "-o", str(out), "--outlet", f"{name}-stages"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env)
    received: list[tuple[int, int]] = []
    try:
        info = resolve_stream(name=f"{name}-stages", timeout_s=30)
        assert info.channel_count() == len(STAGE_CHANNELS)
        inlet = pylsl.StreamInlet(info, recover=False)
        inlet.open_stream(10)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            data, _ = inlet.pull_chunk(timeout=0.2)
            received += [(int(s[0]), int(s[7])) for s in data]
            if len({e for e, _ in received}) >= 12:
                break
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        try:  # what was in flight
            data, _ = inlet.pull_chunk(timeout=0.5)
            received += [(int(s[0]), int(s[7])) for s in data]
        except LostError:
            pass
    finally:
        if proc.poll() is None:
            proc.kill()
        rep.stop()
    assert len({e for e, _ in received}) >= 12
    _, info = read_epoch_log(out / "epochs.csv")
    import csv

    with open(out / "epochs.csv", newline="") as fh:
        rows = [r for r in csv.reader(fh)][1:]
    logged = {(int(r[0]), {"provisional": 0, "revised": 1, "final": 2}[r[2]])
              for r in rows if len(r) == len(LOG_COLUMNS) and r[-1]}
    missing = set(received) - logged
    assert not missing, f"published but not in the CSV: {sorted(missing)[:5]}"
    assert not (out / "hypnogram.csv").exists()  # killed: no clean finish, the log is it


def test_stream_and_score_cli(model, sim_night, tmp_path, capsys):
    from edge_scorer.cli import main

    psg, hyp = sim_night
    assert main(["score", str(psg), "-o", str(tmp_path / "s"), "--hypnogram", str(hyp),
                 "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "scored 36 epochs" in out and "Cohen's kappa" in out
    assert main(["score", str(psg), "-o", str(tmp_path / "s")]) == 2  # will not overwrite
    name = _name()
    with Replayer(psg, model.spec, name=name, speed=SPEED, wait_for_consumers_s=10):
        code = {}

        def run():
            code["rc"] = main(["stream", "--name", name, "-o", str(tmp_path / "live"),
                               "--until-idle", "1.5", "--outlet", "none"])

        th = threading.Thread(target=run)
        th.start()
        th.join(60)
    assert code["rc"] == 0
    assert "scored 36 epochs" in capsys.readouterr().out
    assert main(["stream", "--name", _name(), "-o", str(tmp_path / "x")]) == 2  # not found


def test_start_at_is_the_nearest_clock_time():
    from datetime import datetime

    from edge_scorer.cli import CliError
    from edge_scorer.cli.stream import start_time_lsl

    now = datetime(2026, 11, 22, 23, 0, 0)
    t, at = start_time_lsl("22:30", now)
    assert at == datetime(2026, 11, 22, 22, 30) and abs(t - pylsl.local_clock() + 1800) < 1
    assert start_time_lsl("01:15:30", now)[1] == datetime(2026, 11, 23, 1, 15, 30)
    with pytest.raises(CliError, match="HH:MM"):
        start_time_lsl("25:99", now)
