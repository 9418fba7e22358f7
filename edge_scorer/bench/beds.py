"""Concurrent beds at real time: one helper process of N LSL outlets, one ``stream`` process.

``python -m edge_scorer.bench beds [--beds 25,50,100] [--seconds 95] [--nights 8]
[--aligned] [--connect-s S] [--keep DIR] [--json OUT]``

For each N: a helper process (this module with ``--helper``) plays N real-time replays
(:class:`~edge_scorer.stream.replay.Replayer` at speed 1, 100-ms chunks, real LSL on loopback) of
``--nights`` different simulated nights, and one ``edge-scorer stream --beds FILE`` process
scores all N (one model session, cross-bed batching). The replays' signal starts
``--connect-s`` after their outlets appear (the stream process connects every bed first) and,
unless ``--aligned``, bed ``i`` starts ``i / N x 30`` s after bed 0, as beds started at
different times would (``--aligned``: every bed's epochs end in the same second, the worst
case). After ``--seconds`` of signal every replay stops pushing at once, then the outlets are
deleted (liblsl takes about 0.1 s per outlet: 27 s for 150 beds; replays still pushing
meanwhile pushed late, which the scorer saw as a stall); the stream process finalizes every bed
and exits. Reported per N, from the beds'
``epochs.csv``/``run.json``/``beds.json``: p50 / p99 provisional latency over every epoch of
every bed (from the pull of the chunk that completes an epoch to its label), the largest inlet
lag of any bed (from the start: connecting N beds is part of it), the drain (seconds the
process took after its beds' idle time to score what was still queued and write every bed's
files: its backlog at the end), epochs scored against epochs sent, the stream process's CPU
(cores, from ``/proc``) and peak memory, and the mean inference batch. N keeps real time
when every bed scored every complete epoch it was sent, the drain is under 5 s and p99 is
under 100 ms; the largest such N is printed.
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np

CLK = os.sysconf("SC_CLK_TCK")
#: ``--until-idle`` of the stream process: a bed ends this long after its replay stopped
#: (beds whose signal starts up to 30 s late need more than 30 s).
IDLE_S = 4.0
IDLE_STAGGERED_S = 34.0
#: Seconds the stream process may take, after its beds' idle time, to score what was still
#: queued and write every bed's files: more means it had fallen behind.
DRAIN_OK_S = 5.0


def _delayed_replayer(delay_s: float, *args, **kwargs):
    """A :class:`~edge_scorer.stream.replay.Replayer` whose signal starts ``delay_s`` after
    :meth:`start` (its outlets exist at once): beds that started at different times."""
    import threading

    import pylsl

    from edge_scorer.stream.replay import Replayer

    class Delayed(Replayer):
        def start(self) -> Replayer:  # Replayer.start with the replay clock moved on
            self._wall0 = time.perf_counter() + delay_s
            self._lsl0 = pylsl.local_clock() + delay_s
            self._open_outlets()
            self._thread = threading.Thread(target=self._run, daemon=True)
            self._thread.start()
            return self

    return Delayed(*args, **kwargs)


def _helper(args: argparse.Namespace) -> int:
    """Play N replays at speed 1 for ``--seconds`` after their receivers connect."""
    from edge_scorer.io.spec import load_spec

    spec = load_spec("sleep-edf")
    psgs = [Path(p) for p in args.psg]
    n = len(args.names)
    reps = [_delayed_replayer((args.connect_s or 0.0) + (30.0 * i / n if args.stagger else 0.0),
                              psgs[i % len(psgs)], spec,
                              name=name, speed=1.0, wait_for_consumers_s=120)
            for i, name in enumerate(args.names)]
    for r in reps:
        r.start()
    print("ready", flush=True)
    deadline = time.perf_counter() + 180
    while any(sum(r.n_pushed) == 0 for r in reps) and time.perf_counter() < deadline:
        time.sleep(0.1)
    time.sleep(args.seconds)  # after the last bed's first samples
    # every replay stops pushing first, then the outlets go: stopping them one by one let the
    # replays not yet stopped push late while liblsl deleted the others' outlets (at 150 beds
    # their samples reached the scorer up to 13 s late, read as a stall of the scorer)
    t_stop, stopped_at = time.perf_counter(), time.time()
    for r in reps:
        r.halt()
    sent = [int(min(n / g.sfreq for n, g in zip(r.n_pushed, r.groups, strict=True)) // 30.0)
            for r in reps]
    t_halted = time.perf_counter()
    for r in reps:
        r.stop()
    print(json.dumps({"sent_epochs": sent, "stopped_at": stopped_at,
                      "halt_s": t_halted - t_stop, "delete_s": time.perf_counter() - t_halted}),
          flush=True)
    return 0


def _proc_cpu_mem(pid: int) -> tuple[float, float]:
    """(CPU seconds, peak resident MB) of a live process, from /proc."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        cpu = (int(stat[11]) + int(stat[12])) / CLK
        hwm = next(int(line.split()[1]) for line in
                   Path(f"/proc/{pid}/status").read_text().splitlines()
                   if line.startswith("VmHWM"))
        return cpu, hwm / 1024.0
    except (OSError, StopIteration, IndexError, ValueError):
        return float("nan"), float("nan")


def _read_beds(out: Path, names: Sequence[str]) -> tuple[list[float], list[float], list[int]]:
    """Every provisional latency (ms), each bed's largest inlet lag and epochs scored."""
    lat, lags, scored = [], [], []
    for name in names:
        with open(out / name / "epochs.csv", newline="") as fh:
            rows = list(csv.DictReader(fh))
        lat += [float(r["latency_ms"]) for r in rows if r.get("latency_ms")]
        info = json.loads((out / name / "run.json").read_text())
        lags.append(float(info.get("inlet", {}).get("max_lag_s", float("nan"))))
        scored.append(int(info.get("samples", {}).get("epochs_complete", 0)))
    return lat, lags, scored


def run_n(n: int, psgs: Sequence[Path], seconds: float, folder: Path,
          aligned: bool = False, connect_s: float | None = None) -> dict:
    """One measurement with ``n`` beds (see the module docstring)."""
    connect_s = connect_s if connect_s is not None else max(10.0, 0.4 * n)
    tag = uuid.uuid4().hex[:6]
    names = [f"bench-{tag}-{i:03d}" for i in range(n)]
    beds = folder / f"beds-{n}.csv"
    beds.write_text("name\n" + "\n".join(names) + "\n")
    out = folder / f"out-{n}"
    nice = ["nice", "-n", "19"] if os.environ.get("EDGE_SCORER_BENCH_NICE") else []
    idle = connect_s + (IDLE_S if aligned else IDLE_STAGGERED_S)
    helper = subprocess.Popen(
        [*nice, sys.executable, "-m", "edge_scorer.bench.beds", "--helper", "--seconds",
         str(seconds), "--connect-s", str(connect_s),
         *([] if aligned else ["--stagger"]), "--psg",
         *map(str, psgs), "--names", *names],
        stdout=subprocess.PIPE, text=True)
    if helper.stdout is None:
        raise RuntimeError("the replay helper has no stdout pipe")
    helper.stdout.readline()  # "ready": the outlets exist
    t0 = time.perf_counter()
    log_fh = open(folder / f"stream-{n}.log", "w")  # noqa: SIM115 - closed after the run
    stream = subprocess.Popen(
        [*nice, sys.executable, "-m", "edge_scorer", "stream", "--beds", str(beds), "-o",
         str(out), "--until-idle", str(idle), "--outlet", "none"],
        stdout=subprocess.DEVNULL, stderr=log_fh)
    cpu, mem, helper_cpu, load0 = 0.0, 0.0, 0.0, os.getloadavg()[0]
    while stream.poll() is None:
        c, m = _proc_cpu_mem(stream.pid)
        if c == c:
            cpu, mem = c, max(mem, m)
        h, _ = _proc_cpu_mem(helper.pid)
        helper_cpu = h if h == h else helper_cpu
        time.sleep(0.2)
    wall, ended = time.perf_counter() - t0, time.time()
    log_fh.close()
    sent_info = json.loads(helper.stdout.readline() or "{}")
    sent = sent_info.get("sent_epochs", [])
    helper.wait(60)
    lat, lags, scored = _read_beds(out, names)
    summary = json.loads((out / "beds.json").read_text())
    lat_a = np.asarray(lat)
    missing = int(sum(max(0, s - 1 - k) for s, k in zip(sent, scored, strict=False)))
    p99 = float(np.percentile(lat_a, 99)) if lat_a.size else float("nan")
    res = {"beds": n, "epochs": int(sum(scored)), "epochs_sent": int(sum(sent)),
           "p50_ms": float(np.median(lat_a)) if lat_a.size else float("nan"), "p99_ms": p99,
           "max_lag_s": float(np.nanmax(lags)) if lags else float("nan"),
           "drain_s": ended - sent_info.get("stopped_at", ended) - idle,
           "missing_epochs": missing, "cpu_cores": cpu / wall, "peak_mb": mem,
           "helper_cores": helper_cpu / wall, "load_start": load0,
           "load_end": os.getloadavg()[0],
           "mean_batch": summary["epochs_scored"] / max(1, summary["inference_calls"]),
           "refused": sum(b["status"] != "ended" for b in summary["beds"]),
           "helper_halt_s": sent_info.get("halt_s"), "helper_delete_s": sent_info.get("delete_s")}
    res["real_time"] = bool(res["missing_epochs"] == 0 and res["refused"] == 0
                            and res["drain_s"] < DRAIN_OK_S and p99 < 100.0)
    return res


def main(argv: Sequence[str] | None = None) -> int:
    """Measure each bed count and print the table."""
    parser = argparse.ArgumentParser(prog="python -m edge_scorer.bench beds",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--beds", default="25,50,100", help="bed counts to try, in order")
    parser.add_argument("--seconds", type=float, default=95.0,
                        help="seconds of real-time signal per run (3 epochs at 95)")
    parser.add_argument("--nights", type=int, default=8, help="different simulated nights")
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="keep the nights and every bed's outputs in DIR")
    parser.add_argument("--helper", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--psg", nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--names", nargs="*", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--connect-s", type=float, default=None,
                        help="the replays' signal starts this long after their outlets appear, "
                             "so that the stream process has connected every bed first (LSL "
                             "gives a scorer that joins running devices no backlog either); "
                             "default max(10, 0.4 x N) s")
    parser.add_argument("--aligned", action="store_true",
                        help="start every bed's signal in the same second (the worst case: "
                             "all epochs end together); default: bed i starts i/N x 30 s later "
                             "(beds started at different times, as in a ward)")
    parser.add_argument("--stagger", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.helper:
        return _helper(args)
    from edge_scorer.simulate import simulate_nights

    counts = [int(x) for x in args.beds.split(",") if x]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        if args.keep is not None:  # the beds' output folders stay there
            args.keep.mkdir(parents=True, exist_ok=True)
            tmp = str(args.keep)
        nights = simulate_nights(Path(tmp) / "nights", args.nights, layout="sleep-edf",
                                 seed=11, duration_h=max(0.1, args.seconds / 3600 + 0.05))
        psgs = [p for p, _ in nights]
        print(f"{len(psgs)} simulated nights; each run: N real-time replays (speed 1) in one "
              f"helper process, one stream process scoring all N, {args.seconds:g} s of signal "
              f"per bed, {'all starting together' if args.aligned else 'starts spread over 30 s'}"
              f"; {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.2f} at the start")
        print(f"{'beds':>5} {'p50 ms':>7} {'p99 ms':>7} {'max lag s':>9} {'drain s':>7} "
              f"{'epochs':>7} {'missing':>7} {'CPU cores':>9} {'peak MB':>8} {'batch':>6} "
              f"{'replays cores':>13} {'load':>11}  real time")
        for n in counts:
            r = run_n(n, psgs, args.seconds, Path(tmp), args.aligned, args.connect_s)
            results.append(r)
            print(f"{n:5d} {r['p50_ms']:7.1f} {r['p99_ms']:7.1f} {r['max_lag_s']:9.2f} "
                  f"{r['drain_s']:7.1f} {r['epochs']:7d} {r['missing_epochs']:7d} "
                  f"{r['cpu_cores']:9.2f} "
                  f"{r['peak_mb']:8.0f} {r['mean_batch']:6.1f} {r['helper_cores']:13.2f} "
                  f"{r['load_start']:5.1f}->{r['load_end']:<5.1f}  "
                  f"{'yes' if r['real_time'] else 'NO'}", flush=True)
    ok = [r["beds"] for r in results if r["real_time"]]
    print(f"-> largest N at real time (p99 < 100 ms, drain < {DRAIN_OK_S:g} s, nothing "
          "missing): "
          f"{max(ok) if ok else 'none'}; load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
