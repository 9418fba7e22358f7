"""SIGINT/SIGTERM finish the night (files written, every label final); a second one aborts at
once with a valid epochs.csv, which `edge-scorer finalize` turns into the night's files.

Real processes (the `edge-scorer` command), real signals, real LSL on loopback.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import pytest

from edge_scorer.cli import main
from edge_scorer.engine.rolling import FINAL
from edge_scorer.engine.sinks import read_epoch_log
from edge_scorer.io.hypnogram_io import read_hypnogram
from edge_scorer.stream.replay import Replayer

SIM_NIGHT = (0.3, 5)
ENV = {**os.environ, "PYTHONUNBUFFERED": "1"}


def _cli(*args: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "edge_scorer", *args], env=ENV,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _wait_epochs(out: Path, n: int, proc: subprocess.Popen, timeout_s: float = 120) -> int:
    """Wait until ``out/epochs.csv`` holds ``n`` epochs (fail if the process ends first)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the command ended early ({proc.returncode}): {proc.stderr.read()}")
        try:
            hyp, _ = read_epoch_log(out / "epochs.csv")
            if hyp.n_epochs >= n:
                return hyp.n_epochs
        except (FileNotFoundError, ValueError, StopIteration):
            pass
        time.sleep(0.05)
    pytest.fail(f"{out}/epochs.csv did not reach {n} epochs in {timeout_s} s")


def _finish(proc: subprocess.Popen, timeout_s: float = 60) -> tuple[int, str, str]:
    try:
        out, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        pytest.fail(f"the command did not end within {timeout_s} s after the signal: {err}")
    return proc.returncode, out, err


def assert_night_whole(out: Path, state: str = "finished") -> dict:
    """The night files agree with epochs.csv: every epoch there, whole files, final labels."""
    logged, info = read_epoch_log(out / "epochs.csv")
    assert info["n_torn"] == 0
    run = json.loads((out / "run.json").read_text())
    assert run["state"] == state
    hyp = read_hypnogram(out / "hypnogram.csv")
    assert hyp.n_epochs == logged.n_epochs > 0
    assert (hyp.stages == logged.stages).all()
    assert read_hypnogram(out / "hypnogram.edf").n_epochs == logged.n_epochs
    assert json.loads((out / "stats.json").read_text())["n_epochs"] == logged.n_epochs
    assert "Sleep statistics" in (out / "stats.txt").read_text()
    assert not list(out.glob(".*.tmp"))  # no temporary file left behind
    if state == "finished":
        assert set(info["status"]) == {FINAL}
    return run


@pytest.fixture
def replay(model, sim_night):
    """A night replayed over loopback LSL at 30x, waiting for its receiver."""
    psg, _ = sim_night
    name = f"test-shutdown-{uuid.uuid4().hex[:8]}"
    rep = Replayer(psg, model.spec, name=name, speed=30.0, wait_for_consumers_s=120)
    rep.start()
    yield name
    rep.stop()


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_stream_finalizes_the_night_on_a_signal(replay, tmp_path, sig):
    """Ctrl-C (and SIGTERM, what a service manager sends) used to write no hypnogram,
    stats.json or run.json although the command logged 'finalizing' and exited 0."""
    out = tmp_path / "out"
    proc = _cli("stream", "--name", replay, "-o", str(out), "--outlet", "none")
    _wait_epochs(out, 4, proc)
    proc.send_signal(sig)
    rc, stdout, err = _finish(proc)
    assert rc == 0, err
    run = assert_night_whole(out)
    # every sample received is in a scored epoch (only the trailing part of one is not)
    assert run["samples"]["epochs_complete"] == run["n_epochs"]
    assert run["samples"]["trailing_s"] < 30.0
    assert f"stopped by {signal.Signals(sig).name}" in stdout


def test_second_signal_aborts_at_once_and_finalize_recovers(replay, tmp_path):
    """SIGINT then SIGTERM delivered together: the second aborts (exit 143) without waiting
    for the night; epochs.csv stays valid and `edge-scorer finalize` writes the files."""
    out = tmp_path / "out"
    proc = _cli("stream", "--name", replay, "-o", str(out), "--outlet", "none")
    _wait_epochs(out, 4, proc)
    proc.send_signal(signal.SIGSTOP)  # both signals pending: handled in order SIGINT, SIGTERM
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    rc, _, err = _finish(proc, 20)
    assert rc == 128 + signal.SIGTERM, err
    assert "aborting now" in err
    logged, info = read_epoch_log(out / "epochs.csv")
    assert info["n_torn"] == 0 and logged.n_epochs >= 4
    assert json.loads((out / "run.json").read_text())["state"] == "running"
    assert main(["finalize", str(out)]) == 0
    run = assert_night_whole(out, state="recovered")
    assert run["n_epochs"] == logged.n_epochs and run["not_final_epochs"] >= 1
    assert main(["finalize", str(out)]) == 2  # the files are whole now: not rewritten
    assert main(["finalize", str(tmp_path / "nothing")]) == 2


def test_double_ctrl_c_exits_at_once_between_log_batches(tmp_path):
    """Two Ctrl-C in a row: exit 130 at once, while another thread keeps appending batches to
    epochs.csv: the file ends with a whole batch."""
    log_path = tmp_path / "epochs.csv"
    code = textwrap.dedent(f"""
        import os, signal, threading, time
        import numpy as np
        from edge_scorer.engine.rolling import EpochUpdate
        from edge_scorer.engine.shutdown import Shutdown
        from edge_scorer.engine.sinks import CsvLog

        log = CsvLog({str(log_path)!r})
        u = EpochUpdate(index=0, onset_s=0.0, stage=2, proba=np.full(5, 0.2), status="final",
                        n_windows=1)

        def writer():
            while True:
                log.write([u] * 200)

        threading.Thread(target=writer, daemon=True).start()
        time.sleep(0.3)
        with Shutdown() as stop:
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
            assert stop.requested
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(10)
        print("not aborted")
    """)
    t0 = time.monotonic()
    proc = subprocess.run([sys.executable, "-c", code], env=ENV, capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 130, proc.stderr
    assert "not aborted" not in proc.stdout and time.monotonic() - t0 < 9
    _, info = read_epoch_log(log_path)
    assert info["n_torn"] == 0 and info["n_rows"] % 200 == 0 and info["n_rows"] > 0


def test_demo_finalizes_the_night_on_sigint(tmp_path):
    out = tmp_path / "demo"
    proc = _cli("demo", "--simulated", "--duration-h", "0.3", "--seed", "2", "--speed", "20",
                "-o", str(out))
    _wait_epochs(out, 3, proc, timeout_s=180)
    proc.send_signal(signal.SIGINT)
    rc, stdout, err = _finish(proc)
    assert rc == 130, err
    assert "interrupted (SIGINT)" in stdout and "exit code 130" in stdout
    run = assert_night_whole(out)
    assert run["n_epochs"] < 36


SCORE_NIGHT_H = 2.0


def test_score_stops_on_sigterm_and_writes_what_it_scored(tmp_path):
    from edge_scorer.simulate import simulate_nights

    (psg, _), = simulate_nights(tmp_path / "night", 1, layout="sleep-edf", seed=3,
                                duration_h=SCORE_NIGHT_H)
    out = tmp_path / "out"
    proc = _cli("score", str(psg), "-o", str(out), "--no-progress")
    _wait_epochs(out, 1, proc)  # the first block of 64 epochs is scored
    proc.send_signal(signal.SIGSTOP)  # deterministic: the signal waits for the next block
    proc.send_signal(signal.SIGTERM)
    proc.send_signal(signal.SIGCONT)
    rc, stdout, err = _finish(proc)
    assert rc == 143, err
    run = assert_night_whole(out)
    assert 64 <= run["n_epochs"] <= 192 < SCORE_NIGHT_H * 120
    assert "interrupted by SIGTERM" in stdout


def test_replay_stops_cleanly_on_sigterm(sim_night):
    psg, _ = sim_night
    proc = _cli("replay", str(psg), "--speed", "5", "--name",
                f"test-shutdown-{uuid.uuid4().hex[:8]}")
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and "publishing" not in (line := proc.stderr.readline()):
        assert line or proc.poll() is None
    proc.send_signal(signal.SIGTERM)
    rc, stdout, err = _finish(proc, 20)
    assert rc == 143, err
    assert "replayed" in stdout and "stopped by SIGTERM" in stdout


def test_window_finalizes_the_night_on_sigterm(sim_night, tmp_path):
    """The bedside window: SIGTERM closes it as its close button does (the run stops, its
    epochs are made final, the night's files written); exit code 143."""
    pytest.importorskip("PySide6")
    pytest.importorskip("pyqtgraph")
    psg, _ = sim_night
    out = tmp_path / "gui"
    proc = _cli("gui", "--edf", str(psg), "--speed", "20", "--start", "--explain", "off",
                "-o", str(out))
    _wait_epochs(out, 3, proc, timeout_s=180)
    proc.send_signal(signal.SIGTERM)
    rc, _, err = _finish(proc, 90)
    assert rc == 143, err
    run = assert_night_whole(out)
    assert run["n_epochs"] < 36
