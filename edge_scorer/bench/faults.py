"""The fault harness: real replays and ``edge-scorer stream`` runs over loopback LSL, with faults.

``python -m edge_scorer.bench faults [--only NAME ...] [--speed X] [--json FILE]`` runs each
scenario of :data:`SCENARIOS` in a fresh folder: a simulated night is replayed (the ``replay``
command, or a :class:`~edge_scorer.stream.replay.Replayer` when the signal itself is faulty) and
scored by the ``stream`` command in its own process, while a recorder subscribes to the stage
outlet. A fault is injected (kill -9, SIGSTOP/SIGCONT of either process, a replay restart
under the same source id, NaN rows, a wrong channel count, a full disk, signals) and after each
run the harness checks:

* **published in CSV**: every (epoch, status) the stream published on LSL is in
  ``epochs.csv`` (read back without torn lines);
* **night files whole**: ``hypnogram.csv``/``.edf``, ``stats.json``, ``run.json`` read back and
  agree with ``epochs.csv`` (after ``edge-scorer finalize`` when the run could not finish), and
  no temporary file is left;
* what the scenario expects (exit code, gaps, unscorable epochs, the error named).

Each scenario returns a :class:`FaultResult`; the table printed is the fault matrix of
docs/RELIABILITY.md. The disk-full scenario uses a 64-KiB tmpfs when this process may mount one
(root), else a file-size limit (``RLIMIT_FSIZE``: writes fail with EFBIG as they would with
ENOSPC).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

#: Length (h) and seed of the simulated night every scenario replays.
NIGHT = (0.3, 11)
DEFAULT_SPEED = 30.0


@dataclass
class FaultResult:
    """One scenario's outcome: every check by name (True = passed) and what was measured."""

    name: str
    fault: str
    checks: dict[str, bool] = field(default_factory=dict)
    measured: dict = field(default_factory=dict)
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return bool(self.checks) and all(self.checks.values())


# ---------------------------------------------------------------- processes and recorder
def _cli(args: Sequence[str], limit_bytes: int | None = None) -> subprocess.Popen:
    """``edge-scorer ARGS`` in its own process (stderr captured; optional file-size limit)."""
    def limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return subprocess.Popen([sys.executable, "-m", "edge_scorer", *args],
                            env={**os.environ, "PYTHONUNBUFFERED": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=limit if limit_bytes else None)


def _finish(proc: subprocess.Popen, timeout_s: float = 120.0) -> tuple[int, str]:
    try:
        _, err = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate()
        return -999, err
    return proc.returncode, err


class StageRecorder:
    """Subscribe to a stage outlet and keep every (epoch, status code) it publishes."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.published: set[tuple[int, int]] = set()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        import pylsl
        from pylsl.util import LostError

        found: list = []
        while not found and not self._stop.is_set():
            found = pylsl.resolve_byprop("name", self.name, 1, 0.5)
        if not found:
            return
        inlet = pylsl.StreamInlet(found[0], recover=False)
        inlet.open_stream(10)
        while True:
            try:
                data, _ = inlet.pull_chunk(timeout=0.2)
            except LostError:
                return
            self.published.update((int(s[0]), int(s[7])) for s in data)
            if self._stop.is_set() and not data:
                return

    def stop(self) -> set[tuple[int, int]]:
        self._stop.set()
        self._thread.join(10)
        return self.published


def _wait_epochs(out: Path, n: int, timeout_s: float = 120.0) -> int:
    from edge_scorer.engine.sinks import read_epoch_log

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            got = read_epoch_log(out / "epochs.csv")[0].n_epochs
            if got >= n:
                return got
        except (OSError, ValueError, StopIteration):
            pass
        time.sleep(0.05)
    return -1


# ---------------------------------------------------------------- checks
def check_published_in_csv(out: Path, published: set[tuple[int, int]]) -> tuple[bool, dict]:
    """Every published (epoch, status) is a row of epochs.csv; no torn line."""
    import csv

    from edge_scorer.engine.sinks import LOG_COLUMNS, STATUS_CODES, read_epoch_log

    if not (out / "epochs.csv").exists():
        return not published, {"published": len(published), "logged": 0}
    _, info = read_epoch_log(out / "epochs.csv")
    with open(out / "epochs.csv", newline="") as fh:
        rows = list(csv.reader(fh))[1:]
    logged = {(int(r[0]), STATUS_CODES[r[2]]) for r in rows
              if len(r) == len(LOG_COLUMNS) and r[-1]}
    missing = published - logged
    return not missing and info["n_torn"] == 0, {
        "published": len(published), "logged_rows": len(logged), "missing": len(missing),
        "torn_lines": info["n_torn"]}


def check_night_files(out: Path, finalize: bool = True) -> tuple[bool, dict]:
    """The night files read back and agree with epochs.csv (finalized first when needed)."""
    from edge_scorer.engine.sinks import read_epoch_log
    from edge_scorer.io.hypnogram_io import read_hypnogram

    if not (out / "epochs.csv").exists():
        return False, {"state": "no epochs.csv"}
    logged, _ = read_epoch_log(out / "epochs.csv")
    run = json.loads((out / "run.json").read_text()) if (out / "run.json").exists() else {}
    state = run.get("state")
    if state not in ("finished", "failed") and finalize:
        rc, err = _finish(_cli(["finalize", str(out)]))
        run = json.loads((out / "run.json").read_text())
        state = f"{state} -> finalize ({rc}) -> {run.get('state')}"
    info: dict = {"state": state, "logged_epochs": logged.n_epochs}
    try:
        hyp = read_hypnogram(out / "hypnogram.csv")
        edf = read_hypnogram(out / "hypnogram.edf")
        stats = json.loads((out / "stats.json").read_text())
    except (OSError, ValueError) as exc:
        info["error"] = f"{type(exc).__name__}: {exc}"
        return False, info
    info.update(hypnogram_epochs=hyp.n_epochs, edf_epochs=edf.n_epochs)
    ok = (hyp.n_epochs == edf.n_epochs == stats["n_epochs"] == run.get("n_epochs")
          and hyp.n_epochs >= logged.n_epochs and not list(out.glob(".*.tmp")))
    return ok, info


# ---------------------------------------------------------------- one run
@dataclass
class Run:
    """A replay + stream run in ``folder`` (see :func:`_run`)."""

    folder: Path
    name: str
    out: Path
    stream: subprocess.Popen
    replay: subprocess.Popen | None
    recorder: StageRecorder
    rc: int = 0
    err: str = ""


def _night(folder: Path, hours: float = NIGHT[0], seed: int = NIGHT[1]) -> Path:
    from edge_scorer.simulate import simulate_nights

    (psg, _), = simulate_nights(folder / "night", 1, layout="sleep-edf", seed=seed,
                                duration_h=hours)
    return psg


def _start(folder: Path, speed: float, *, psg: Path | None = None, replay: bool = True,
           source_id: str | None = None, stream_args: Sequence[str] = (),
           out: Path | None = None, limit_bytes: int | None = None) -> Run:
    psg = psg or _night(folder)
    name = f"faults-{uuid.uuid4().hex[:8]}"
    out = out or folder / "out"
    rep = None
    if replay:
        rep = _cli(["replay", str(psg), "--speed", f"{speed:g}", "--name", name, "--wait", "60",
                    "--source-id", source_id or name])
    recorder = StageRecorder(f"{name}-stages")
    stream = _cli(["stream", "--name", name, "-o", str(out), "--outlet", f"{name}-stages",
                   "--until-idle", "4", *stream_args], limit_bytes=limit_bytes)
    return Run(folder, name, out, stream, rep, recorder)


def _end(run: Run, timeout_s: float = 180.0) -> Run:
    run.rc, run.err = _finish(run.stream, timeout_s)
    if run.replay is not None:
        if run.replay.poll() is None:
            run.replay.send_signal(signal.SIGTERM)
        _finish(run.replay, 30)
    run.recorder.stop()
    return run


def _common(result: FaultResult, run: Run, finalize: bool = True) -> None:
    ok, info = check_published_in_csv(run.out, run.recorder.published)
    result.checks["published in epochs.csv"] = ok
    result.measured.update(info)
    ok, info = check_night_files(run.out, finalize)
    result.checks["night files whole"] = ok
    result.measured.update(info)
    result.measured["exit code"] = run.rc


def _run_json(run: Run) -> dict:
    path = run.out / "run.json"
    return json.loads(path.read_text()) if path.exists() else {}


# ---------------------------------------------------------------- scenarios
def signal_stream(folder: Path, speed: float, sig: int = signal.SIGINT) -> FaultResult:
    res = FaultResult(f"{signal.Signals(sig).name.lower()}_stream",
                      f"{signal.Signals(sig).name} to stream mid-night")
    run = _start(folder, speed)
    _wait_epochs(run.out, 8)
    run.stream.send_signal(sig)
    _common(res, _end(run), finalize=False)
    rj = _run_json(run)
    res.checks["exit 0, finished, all final"] = (run.rc == 0 and rj.get("state") == "finished")
    res.measured["epochs"] = rj.get("n_epochs")
    return res


def kill9_stream(folder: Path, speed: float) -> FaultResult:
    res = FaultResult("kill9_stream", "kill -9 of stream mid-night, then finalize")
    run = _start(folder, speed)
    _wait_epochs(run.out, 10)
    run.stream.send_signal(signal.SIGKILL)
    _common(res, _end(run))
    res.checks["killed (-9)"] = run.rc == -signal.SIGKILL
    return res


def double_signal(folder: Path, speed: float) -> FaultResult:
    res = FaultResult("double_signal", "SIGINT then SIGTERM at once (abort), then finalize")
    run = _start(folder, speed)
    _wait_epochs(run.out, 8)
    for sig in (signal.SIGSTOP, signal.SIGINT, signal.SIGTERM, signal.SIGCONT):
        run.stream.send_signal(sig)
    _common(res, _end(run))
    res.checks["aborted at once (143)"] = run.rc == 143
    return res


def stop_stream(folder: Path, speed: float) -> FaultResult:
    """SIGSTOP the consumer for 10 s while a 2-h night replays at 20x the given speed."""
    fast = speed * 20
    res = FaultResult("stop_stream", f"SIGSTOP/SIGCONT of stream for 10 s at {fast:g}x "
                      f"({10 * fast:g} s of signal)")
    run = _start(folder, fast, psg=_night(folder, 2.0, 6))
    _wait_epochs(run.out, 1)
    run.stream.send_signal(signal.SIGSTOP)
    time.sleep(10)
    run.stream.send_signal(signal.SIGCONT)
    _common(res, _end(run, 300), finalize=False)
    rj = _run_json(run)
    res.measured.update(gaps=rj.get("inlet", {}).get("gaps"), epochs=rj.get("n_epochs"),
                        max_lag_s=rj.get("inlet", {}).get("max_lag_s"))
    res.checks["no sample lost (0 gaps, 240 epochs)"] = (rj.get("inlet", {}).get("gaps") == 0
                                                         and rj.get("n_epochs") == 240)
    return res


def stop_replay(folder: Path, speed: float) -> FaultResult:
    res = FaultResult("stop_replay", "SIGSTOP/SIGCONT of the replay for 5 s")
    run = _start(folder, speed, stream_args=["--until-idle", "10"])
    _wait_epochs(run.out, 5)
    run.replay.send_signal(signal.SIGSTOP)
    time.sleep(5)
    run.replay.send_signal(signal.SIGCONT)
    _common(res, _end(run), finalize=False)
    rj = _run_json(run)
    res.measured.update(gaps=rj.get("inlet", {}).get("gaps"), epochs=rj.get("n_epochs"),
                        unscorable=rj.get("n_unscorable"))
    res.checks["no gap, every epoch scored"] = (rj.get("inlet", {}).get("gaps") == 0
                                                and rj.get("n_unscorable") == 0
                                                and rj.get("n_epochs") == 36)
    return res


def restart_replay(folder: Path, speed: float) -> FaultResult:
    res = FaultResult("restart_replay", "kill -9 of the replay, restarted 3 s later with the "
                      "same --source-id")
    psg = _night(folder)
    sid = f"faults-restart-{uuid.uuid4().hex[:6]}"
    run = _start(folder, speed, psg=psg, source_id=sid, stream_args=["--until-idle", "15"])
    _wait_epochs(run.out, 6)
    run.replay.send_signal(signal.SIGKILL)
    run.replay.wait(10)
    time.sleep(3)
    run.replay = _cli(["replay", str(psg), "--speed", f"{speed:g}", "--name", run.name,
                       "--source-id", sid])
    _common(res, _end(run, 240), finalize=False)
    rj = _run_json(run)
    res.measured.update(gaps=rj.get("inlet", {}).get("gaps"), epochs=rj.get("n_epochs"),
                        unscorable=rj.get("n_unscorable"))
    res.checks["reconnected: the outage is a gap, later epochs scored"] = (
        rj.get("inlet", {}).get("gaps", 0) >= 1 and 0 < rj.get("n_unscorable", 0)
        < rj.get("n_epochs", 0) and run.rc == 0)
    return res


def nan_rows(folder: Path, speed: float) -> FaultResult:
    from edge_scorer.stream.replay import Replayer

    res = FaultResult("nan_rows", "an EEG row of NaN for epochs 4-6 (lead off)")
    psg = _night(folder)
    run = _start(folder, speed, psg=psg, replay=False)
    rep = Replayer(psg, name=run.name, speed=speed, wait_for_consumers_s=60)
    rep.groups[0].data[int(120 * 100):int(210 * 100), 0] = np.nan  # EEG Fpz-Cz, 120-210 s
    with rep:
        rep.wait(300)
        _end(run)
    _common(res, run, finalize=False)
    from edge_scorer.engine.sinks import read_epoch_log

    hyp, _ = read_epoch_log(run.out / "epochs.csv")
    bad = [int(i) for i in np.flatnonzero(hyp.stages < 0)]
    res.measured.update(unscorable_epochs=bad)
    res.checks["epochs 4-6 unscorable, the rest scored"] = bad == [4, 5, 6] and run.rc == 0
    return res


def wrong_channels(folder: Path, speed: float) -> FaultResult:
    import pylsl

    res = FaultResult("wrong_channels", "a stream with 2 channels where 4 rows are needed")
    name = f"faults-{uuid.uuid4().hex[:8]}"
    info = pylsl.StreamInfo(name, "EEG", 2, 100.0, pylsl.cf_float32, name)
    chans = info.desc().append_child("channels")
    for lb in ("EEG Fpz-Cz", "EOG horizontal"):
        chans.append_child("channel").append_child_value("label", lb)
    outlet = pylsl.StreamOutlet(info)
    out = folder / "out"
    proc = _cli(["stream", "--name", name, "-o", str(out), "--until-idle", "2"])
    stop = threading.Event()

    def push() -> None:
        while not stop.is_set():
            outlet.push_chunk(np.zeros((10, 2), dtype=np.float32))
            time.sleep(0.1)

    pusher = threading.Thread(target=push, daemon=True)
    pusher.start()
    rc, err = _finish(proc, 120)
    stop.set()
    pusher.join(5)
    res.measured.update({"exit code": rc, "message": err.strip().splitlines()[-1][:160]})
    res.checks["refused (exit 2), rows and channels named"] = (
        rc == 2 and "EEG Pz-Oz" in err and "EOG horizontal" in err)
    res.checks["nothing written"] = not (out / "epochs.csv").exists()
    return res


def disk_full(folder: Path, speed: float) -> FaultResult:
    res = FaultResult("disk_full", "the output disk fills up mid-night")
    out = folder / "full"
    out.mkdir()
    mounted = _mount_tmpfs(out, "24k")
    run = _start(folder, speed, out=out, limit_bytes=None if mounted else 24_000)
    try:
        _end(run)
        res.measured["disk"] = "24-KiB tmpfs (ENOSPC)" if mounted else "RLIMIT_FSIZE 24 kB"
        ok, info = check_published_in_csv(out, run.recorder.published)
        res.checks["published in epochs.csv"] = ok
        res.measured.update(info)
        res.measured["exit code"] = run.rc
        rj = _run_json(run)
        res.checks["error names epochs.csv, exit 1"] = (run.rc == 1 and "epochs.csv" in run.err
                                                       and "could not write" in run.err)
        res.checks["no torn or temporary file"] = (not list(out.glob(".*.tmp"))
                                                   and _whole_or_absent(out))
        res.measured["run.json state"] = rj.get("state")
    finally:
        if mounted:
            subprocess.run(["umount", str(out)], check=False)
    return res


def _whole_or_absent(out: Path) -> bool:
    from edge_scorer.io.hypnogram_io import read_hypnogram

    for name in ("hypnogram.csv", "hypnogram.edf"):
        if (out / name).exists():
            try:
                read_hypnogram(out / name)
            except ValueError:
                return False
    for name in ("stats.json", "run.json"):
        if (out / name).exists():
            try:
                json.loads((out / name).read_text())
            except ValueError:
                return False
    return True


def _mount_tmpfs(folder: Path, size: str) -> bool:
    if os.geteuid() != 0:
        return False
    proc = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                          capture_output=True)
    return proc.returncode == 0


SCENARIOS: dict[str, Callable[[Path, float], FaultResult]] = {
    "sigint_stream": lambda f, s: signal_stream(f, s, signal.SIGINT),
    "sigterm_stream": lambda f, s: signal_stream(f, s, signal.SIGTERM),
    "double_signal": double_signal,
    "kill9_stream": kill9_stream,
    "stop_stream": stop_stream,
    "stop_replay": stop_replay,
    "restart_replay": restart_replay,
    "nan_rows": nan_rows,
    "wrong_channels": wrong_channels,
    "disk_full": disk_full,
}


def run_scenario(name: str, speed: float = DEFAULT_SPEED, folder: Path | None = None
                 ) -> FaultResult:
    """Run one scenario of :data:`SCENARIOS` (in ``folder`` or a temporary one)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"faults-{name}-") as tmp:
        where = Path(folder or tmp)
        where.mkdir(parents=True, exist_ok=True)
        result = SCENARIOS[name](where, speed)
    result.seconds = time.perf_counter() - t0
    return result


def main(argv: Sequence[str] | None = None) -> int:
    """Run the scenarios, print the fault matrix (exit 1 when a check failed)."""
    parser = argparse.ArgumentParser(prog="python -m edge_scorer.bench faults",
                                     description=__doc__.split("\n\n")[0])
    parser.add_argument("--only", nargs="+", choices=list(SCENARIOS), help="scenarios to run")
    parser.add_argument("--speed", type=float, default=DEFAULT_SPEED,
                        help=f"replay speed (default {DEFAULT_SPEED:g})")
    parser.add_argument("--json", type=Path, help="write the results as JSON")
    args = parser.parse_args(argv)
    results = []
    for name in args.only or list(SCENARIOS):
        r = run_scenario(name, args.speed)
        results.append(r)
        print(f"{'PASS' if r.ok else 'FAIL'}  {r.name:15s} {r.fault} ({r.seconds:.0f} s)")
        for check, ok in r.checks.items():
            print(f"        {'ok  ' if ok else 'FAIL'} {check}")
        print(f"        measured: {json.dumps(r.measured, default=str)}", flush=True)
    if args.json:
        args.json.write_text(json.dumps([{**asdict(r), "ok": r.ok} for r in results],
                                        indent=2, default=str) + "\n")
    print(f"\n{sum(r.ok for r in results)} of {len(results)} scenarios passed every check")
    return 0 if all(r.ok for r in results) else 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
