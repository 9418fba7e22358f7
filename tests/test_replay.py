"""EDF replay as real loopback LSL streams (no mocks): what goes out equals what was read."""

from __future__ import annotations

import time
import uuid
import xml.etree.ElementTree as ET
from pathlib import Path

import numpy as np
import pytest

pylsl = pytest.importorskip("pylsl")

from pylsl.util import LostError  # noqa: E402

from edge_scorer.io.psg import align_hypnogram, read_psg  # noqa: E402
from edge_scorer.stages import Stage  # noqa: E402
from edge_scorer.stream.replay import Replayer  # noqa: E402

HYPNOGRAM = "hypnograms/SC4001EC-Hypnogram.edf"


def _uid() -> str:
    return f"test-replay-{uuid.uuid4().hex[:12]}"


def _resolve(name: str, timeout: float = 5.0):
    found = pylsl.resolve_byprop("name", name, minimum=1, timeout=timeout)
    if not found:
        raise AssertionError(f"stream {name!r} not found on the loopback network")
    return found[0]


def _inlet(name: str):
    # recover=False: a pull after the outlet is gone raises LostError instead of waiting for
    # the stream to come back.
    inlet = pylsl.StreamInlet(_resolve(name), max_buflen=360, recover=False)
    inlet.open_stream(timeout=5.0)
    return inlet


def _pull_all(inlets: dict, counts: dict, timeout_s: float) -> dict:
    """Pull every inlet until it has ``counts[name]`` samples or the timeout passes."""
    got = {n: ([], []) for n in inlets}
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        for n, inlet in inlets.items():
            data, ts = inlet.pull_chunk(timeout=0.0, max_samples=100_000)
            got[n][0].extend(data)
            got[n][1].extend(ts)
        if all(len(got[n][0]) >= counts[n] for n in inlets):
            break
        time.sleep(0.02)
    return got


def _desc(info) -> ET.Element:
    return ET.fromstring(info.as_xml())


def test_replay_excerpt_equals_native_rows(psg_excerpt: Path, shared_data: Path) -> None:
    name = _uid()
    rec = read_psg(psg_excerpt)
    rows, rates = rec.native_rows()
    hyp_path = shared_data / HYPNOGRAM
    rep = Replayer(psg_excerpt, name=name, speed=100.0, hypnogram=hyp_path,
                   wait_for_consumers_s=10.0)
    assert [g.stream_name for g in rep.groups] == [name, f"{name}-1Hz"]
    with rep:
        # the marker stream is not waited for: subscribe to it before the signal streams
        inlets = {n: _inlet(n) for n in reversed(rep.stream_names)}
        infos = {n: inlet.info(timeout=5.0) for n, inlet in inlets.items()}
        counts = {g.stream_name: len(g.data) for g in rep.groups}
        counts[f"{name}-hypnogram"] = len(rep.markers)
        t0 = time.monotonic()
        got = _pull_all(inlets, counts, timeout_s=20.0)
        elapsed = time.monotonic() - t0
        assert rep.wait(5.0)
    assert not rep.is_running and rep.error is None
    # 300 s at 100x is ~3 s of wall time: paced, not dumped at once.
    assert 2.0 < elapsed < 10.0

    for g in rep.groups:
        data, ts = got[g.stream_name]
        expected = np.stack([rows[k] for k in g.rows], axis=1).astype(np.float32)
        assert np.array(data, dtype=np.float32).shape == expected.shape
        np.testing.assert_array_equal(np.array(data, dtype=np.float32), expected)
        assert all(rates[k] == g.sfreq for k in g.rows)
        # Stamps advance at the replay's pace: one sample every 1/(sfreq*speed) s.
        np.testing.assert_allclose(np.diff(ts), 1.0 / (g.sfreq * 100.0), atol=1e-6)
        info = infos[g.stream_name]
        assert info.type() == "EEG" and info.channel_format() == pylsl.cf_float32
        assert info.nominal_srate() == g.sfreq
        assert info.source_id() == f"{rep.source_id}/{g.sfreq:g}Hz"
        assert rep.source_id.startswith(f"edge-scorer:{psg_excerpt.stem}:sleep-edf:")
        root = _desc(info)
        chans = root.findall("./desc/channels/channel")
        assert [c.findtext("label") for c in chans] == [rep.spec.rows[k].name for k in g.rows]
        assert all(c.findtext("unit") == "microvolts" for c in chans)
        es = root.find("./desc/edge_scorer")
        assert es.findtext("spec") == "sleep-edf" and es.findtext("spec_hash") == rep.spec.hash
        assert es.findtext("source_file") == psg_excerpt.name
        assert es.findtext("start_time") == rec.start_time.isoformat()
    types = {c.findtext("label"): c.findtext("type")
             for g in rep.groups
             for c in _desc(infos[g.stream_name]).findall("./desc/channels/channel")}
    assert types == {"EEG Fpz-Cz": "EEG", "EEG Pz-Oz": "EEG", "EOG horizontal": "EOG",
                     "EMG submental": "EMG"}
    groups = [_desc(infos[g.stream_name]).findtext("./desc/edge_scorer/group")
              for g in rep.groups]
    assert groups == ["1 of 2", "2 of 2"]

    markers, mts = got[f"{name}-hypnogram"]
    from edge_scorer.io.hypnogram_io import read_hypnogram

    expected = align_hypnogram(read_hypnogram(hyp_path), rec.duration_s).stages
    assert [m[0] for m in markers] == [Stage(int(s)).label for s in expected]
    assert len(markers) == 10 and markers[0] == ["W"]
    np.testing.assert_allclose(np.diff(mts), 30.0 / 100.0, atol=1e-6)
    # The first marker is stamped like the first sample (both at signal time 0).
    assert mts[0] == pytest.approx(got[name][1][0], abs=1e-6)


def test_halt_stops_pushing_and_keeps_the_outlets(psg_excerpt: Path) -> None:
    """``halt`` ends the pushing at once but leaves the streams up (a receiver drains what was
    pushed); ``stop`` then deletes them. ``bench beds`` halts every replay before stopping
    any: deleting 300 outlets one by one took 27 s, and the replays still pushing meanwhile
    pushed late."""
    name = _uid()
    rep = Replayer(psg_excerpt, name=name, speed=2.0, loop=True)
    rep.start()
    inlet = _inlet(name)
    time.sleep(0.5)
    rep.halt()
    pushed = list(rep.n_pushed)
    time.sleep(0.3)
    assert not rep.is_running and rep.n_pushed == pushed and pushed[0] > 0
    assert rep.has_receivers()  # the outlets are still there
    got = 0
    for _ in range(20):
        data, _ = inlet.pull_chunk(timeout=0.1, max_samples=100_000)
        got += len(data)
    assert got == pushed[0]  # every pushed sample arrives
    rep.stop()
    assert not rep.has_receivers()
    with pytest.raises(LostError):
        for _ in range(50):
            inlet.pull_chunk(timeout=0.1)


def test_stop_midway_ends_quickly(psg_excerpt: Path) -> None:
    name = _uid()
    rep = Replayer(psg_excerpt, name=name, speed=2.0, loop=True)
    rep.start()
    inlet = _inlet(name)
    time.sleep(0.5)
    assert rep.is_running
    data, _ = inlet.pull_chunk(timeout=1.0, max_samples=100_000)
    t0 = time.perf_counter()
    rep.stop()
    assert time.perf_counter() - t0 < 1.0
    assert not rep.is_running and rep.error is None
    assert 0 < len(data) <= rep.n_pushed[0] < 30_000  # stopped long before the end
    with pytest.raises(LostError):
        for _ in range(50):
            inlet.pull_chunk(timeout=0.1)
    # Outlets are gone: the stream can no longer be resolved.
    time.sleep(0.5)
    assert not pylsl.resolve_byprop("name", name, minimum=1, timeout=1.0)


def test_loop_restarts_with_increasing_stamps(psg_excerpt: Path) -> None:
    name = _uid()
    with Replayer(psg_excerpt, name=name, speed=300.0, loop=True,
                  wait_for_consumers_s=10.0) as rep:
        inlets = {f"{name}-1Hz": _inlet(f"{name}-1Hz"), name: _inlet(name)}
        got = _pull_all(inlets, {f"{name}-1Hz": 450, name: 1}, timeout_s=10.0)
        assert rep.is_running  # looping never ends by itself
    emg, ts = got[f"{name}-1Hz"]
    assert len(emg) >= 450
    first = np.array(emg[:300], dtype=np.float32)
    np.testing.assert_array_equal(np.array(emg[300:450], dtype=np.float32), first[:150])
    assert np.all(np.diff(ts) > 0)
    np.testing.assert_allclose(ts[300] - ts[0], 300.0 / 300.0, atol=1e-6)


def test_simulated_night_replays(tmp_path: Path) -> None:
    from edge_scorer.simulate.night import simulate_night, write_night

    psg, hyp = write_night(simulate_night(seed=3, duration_h=0.1), tmp_path)
    name = _uid()
    rec = read_psg(psg)
    rows, _ = rec.native_rows()
    with Replayer(psg, name=name, speed=400.0, hypnogram=hyp, chunk_ms=50,
                  source_id="sim-night", wait_for_consumers_s=10.0) as rep:
        # the marker stream is not waited for: subscribe to it before the signal streams
        inlets = {n: _inlet(n) for n in reversed(rep.stream_names)}
        counts = {g.stream_name: len(g.data) for g in rep.groups}
        counts[f"{name}-hypnogram"] = len(rep.markers)
        got = _pull_all(inlets, counts, timeout_s=15.0)
        assert rep.wait(5.0)
        assert inlets[name].info().source_id() == f"sim-night/{rep.groups[0].sfreq:g}Hz"
    for g in rep.groups:
        expected = np.stack([rows[k] for k in g.rows], axis=1).astype(np.float32)
        np.testing.assert_array_equal(np.array(got[g.stream_name][0], dtype=np.float32),
                                      expected)
    assert len(got[f"{name}-hypnogram"][0]) == len(rep.markers) == 12


@pytest.mark.parametrize("kwargs", [{"speed": 0.0}, {"chunk_ms": -1.0}, {"name": ""}])
def test_bad_arguments_are_refused(psg_excerpt: Path, kwargs: dict) -> None:
    with pytest.raises(ValueError, match="must be|empty"):
        Replayer(psg_excerpt, **kwargs)


def test_cli_replay(psg_excerpt: Path, shared_data: Path, capsys) -> None:
    from edge_scorer.cli import main

    rc = main(["replay", str(psg_excerpt), "--speed", "1000", "--name", _uid(),
               "--hypnogram", str(shared_data / HYPNOGRAM)])
    assert rc == 0
    out = capsys.readouterr().out
    assert "samples pushed" in out and "30000" in out and "10 hypnogram markers" in out


# ---------------------------------------------------------------- reliability (issue 13)
def test_a_paused_fast_replay_loses_nothing(tmp_path: Path) -> None:
    """SIGSTOP a replay at 120x for 4 s: on SIGCONT it pushes the 480 s of signal due at once,
    then keeps its pace; the receiver gets every sample, without a hole, up to the last."""
    import signal
    import subprocess
    import sys

    from edge_scorer.simulate import simulate_nights

    (psg, _), = simulate_nights(tmp_path, 1, layout="sleep-edf", seed=2, duration_h=0.3)
    last = read_psg(psg, "sleep-edf").native_rows()[0][0][-1]
    name = _uid()
    proc = subprocess.Popen([sys.executable, "-m", "edge_scorer", "replay", str(psg), "--speed",
                             "120", "--name", name, "--wait", "30"], stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        inlets = {n: _inlet_big(n) for n in (name, f"{name}-1Hz")}  # the replay waits for both
        time.sleep(1.0)
        proc.send_signal(signal.SIGSTOP)
        time.sleep(4.0)
        proc.send_signal(signal.SIGCONT)
        got = _pull_all(inlets, {name: 108_000, f"{name}-1Hz": 1080}, 30.0)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(20)
    data, ts = np.asarray(got[name][0]), np.asarray(got[name][1])
    assert len(ts) == 108_000
    np.testing.assert_allclose(np.diff(ts), 1.0 / (100 * 120), atol=1e-6)  # no hole
    assert data[-1, 0] == pytest.approx(last, abs=0.01)  # up to the last sample


def test_a_stalled_receiver_loses_nothing_at_speed(tmp_path: Path) -> None:
    """SIGSTOP the `stream` command for 10 s while a night replays at 600x (6000 s of signal):
    the replay's outlet buffer was pylsl's 360 s of nominal-rate signal (0.6 s of wall time at
    600x), so minutes of samples were dropped; it holds 360 s of wall time now (at most the
    file), and the stream scores every epoch without a gap."""
    import json
    import signal
    import subprocess
    import sys

    from edge_scorer.simulate import simulate_nights

    (psg, _), = simulate_nights(tmp_path / "night", 1, layout="sleep-edf", seed=6,
                                duration_h=2.0)
    name, out = _uid(), tmp_path / "out"
    with Replayer(psg, name=name, speed=600, wait_for_consumers_s=60):
        proc = subprocess.Popen([sys.executable, "-m", "edge_scorer", "stream", "--name", name,
                                 "-o", str(out), "--outlet", "none", "--until-idle", "4"],
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not (out / "epochs.csv").exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            proc.send_signal(signal.SIGSTOP)
            time.sleep(10.0)
            proc.send_signal(signal.SIGCONT)
            _, err = proc.communicate(timeout=240)
        finally:
            if proc.poll() is None:
                proc.kill()
    assert proc.returncode == 0, err
    run = json.loads((out / "run.json").read_text())
    assert run["inlet"]["gaps"] == 0 and run["n_epochs"] == 240 and run["n_unscorable"] == 0
    assert "falling behind" in err  # the consumer said so while it caught up


def _inlet_big(name: str):
    # recover=True: liblsl raises LostError on a pull once the outlet is gone even with samples
    # still queued; a recovering inlet hands them out
    inlet = pylsl.StreamInlet(_resolve(name, 30.0), max_buflen=3600, recover=True)
    inlet.open_stream(timeout=10.0)
    return inlet


def test_two_replays_of_one_file_get_distinct_source_ids(psg_excerpt: Path) -> None:
    """Both replays had one source id, so the --source-id the ambiguity error suggests could
    not pick one."""
    from edge_scorer.io.spec import load_spec
    from edge_scorer.stream.inlet import AmbiguousStream, LslSource

    name = _uid()
    spec = load_spec("sleep-edf")
    with Replayer(psg_excerpt, name=name, speed=10) as a, Replayer(psg_excerpt, name=name,
                                                                   speed=10) as b:
        assert a.source_id != b.source_id
        with pytest.raises(AmbiguousStream, match="--source-id") as err:
            LslSource(spec, name=name, timeout_s=3).connect()
        assert a.groups[0].source_id in str(err.value) and b.groups[0].source_id in str(err.value)
        src = LslSource(spec, source_id=b.groups[0].source_id, timeout_s=5).connect()
        try:
            assert src.stream_names == [name, f"{name}-1Hz"]  # companion of the same replay
            assert [g.info.source_id() for g in src.groups] == [g.source_id for g in b.groups]
        finally:
            src.disconnect()


def test_falling_behind_is_warned(psg_excerpt: Path, caplog) -> None:
    from edge_scorer.io.spec import load_spec
    from edge_scorer.stream.inlet import LslSource

    name = _uid()
    with Replayer(psg_excerpt, name=name, speed=20, wait_for_consumers_s=10) as rep:
        src = LslSource(load_spec("sleep-edf"), name=name, timeout_s=5).connect()
        try:
            assert src.buffer_wall_s == pytest.approx(min(360.0, (rep.duration_s + 60) / 20))
            src.behind_warn_s = 0.5  # a consumer that stops pulling for 1.5 s
            src.pull()
            time.sleep(1.5)
            with caplog.at_level("WARNING", logger="edge_scorer.inlet"):
                src.pull()
            assert "falling behind" in caplog.text and src.max_lag_s > 1.0
            assert src.n_behind_warnings == 1
        finally:
            src.disconnect()


_PAUSED_RECEIVER = """
import sys, time
import numpy as np
import pylsl
name = sys.argv[1]
info, slow = (pylsl.resolve_byprop("name", n, 1, 30)[0] for n in (name, name + "-1Hz"))
inlet, other = (pylsl.StreamInlet(i, max_buflen=36000, recover=True) for i in (info, slow))
inlet.open_stream(10)
other.open_stream(10)  # the replay waits for a receiver on each of its streams
buf = np.empty((200_000, info.channel_count()), np.float32)
print("open", flush=True)
n, last = 0, time.monotonic()
while n < int(sys.argv[2]) and (n == 0 or time.monotonic() - last < 5):  # 5 s idle: done
    _, ts = inlet.pull_chunk(timeout=0.2, max_samples=len(buf), dest_obj=buf)
    n += len(ts)
    last = time.monotonic() if ts else last
print(n, flush=True)
"""


def test_a_finished_replay_waits_for_a_paused_receiver(tmp_path: Path) -> None:
    """The receiver is paused (SIGSTOP) while the replay pushes the whole night, and resumed
    3 s after the replay finished: the replay keeps its streams up until the receiver has
    drained them (``--linger``), so it gets every sample. With a fixed 1-s linger the samples
    still queued in the deleted outlet were lost (the CI fault run scored 154 of 240 epochs)."""
    import signal
    import subprocess
    import sys

    from edge_scorer.simulate import simulate_nights

    (psg, _), = simulate_nights(tmp_path, 1, layout="sleep-edf", seed=3, duration_h=4.0)
    n = 4 * 3600 * 100
    name = _uid()
    receiver = subprocess.Popen([sys.executable, "-c", _PAUSED_RECEIVER, name, str(n)],
                                stdout=subprocess.PIPE, text=True)
    replay = subprocess.Popen([sys.executable, "-m", "edge_scorer", "replay", str(psg),
                               "--speed", "3000", "--name", name, "--wait", "30"],
                              stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout.readline().strip() == "open"
        receiver.send_signal(signal.SIGSTOP)
        deadline = time.monotonic() + 60
        while "finished" not in (line := replay.stderr.readline()):
            assert line and time.monotonic() < deadline, "the replay never finished pushing"
        time.sleep(3.0)
        receiver.send_signal(signal.SIGCONT)
        try:
            got = int(receiver.communicate(timeout=60)[0].strip())
        except subprocess.TimeoutExpired:
            got = -1   # its pulls hung on a lost stream (the samples queued in it gone)
        assert replay.wait(30) == 0   # it leaves once the receiver has gone
    finally:
        for proc in (receiver, replay):
            if proc.poll() is None:
                proc.send_signal(signal.SIGCONT)
                proc.kill()
    assert got == n
