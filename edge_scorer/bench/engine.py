"""Streaming-engine benchmark: live latency, whole-night offline speed against YASA, beds.

``python -m edge_scorer.bench engine [--realtime-min 10] [--night-h 8] [--bed-speed 30]
[--beds 1,2,4,8,16] [--bed-s 40] [--json OUT]``

Three measurements, in one run, on this machine:

1. **Latency at real time.** A simulated night is replayed at speed 1 (real LSL on loopback,
   100-ms chunks) into a :class:`~edge_scorer.stream.live.LiveScorer` for ``--realtime-min``
   minutes;
   per epoch, the time from the pull of the chunk that completes it to its provisional label
   (conditioning, rendering, intra ViT, inter window, CSV + LSL publishing). Printed against the
   30-s epoch budget.
2. **Offline night.** :func:`~edge_scorer.engine.offline.score_file` on a ``--night-h`` simulated
   night
   (read EDF -> ... -> hypnogram files) against YASA's ``SleepStaging`` on the same file (MNE
   read + features + LightGBM; EEG Fpz-Cz + EOG, the file's EMG is a 1-Hz envelope YASA cannot
   use), side by side, with the ratio, two ways: one file in a fresh process each (the
   ``score`` command against a YASA script: imports, model loading and YASA's just-in-time
   compiled features included) and per night in a warm process (after one untimed run of each:
   what each further night of a cohort costs); medians of 3 alternating runs.
3. **Beds.** ``B`` replays, each at ``--bed-speed`` x real time, scored by ``B`` live scorers in
   this one process (one thread each, one shared ONNX Runtime session pair) for ``--bed-s``
   seconds. A run keeps real time when every scorer ends with no backlog (all complete epochs
   scored within 2 s of the last sample) and its p99 latency is below the time between two of
   its epochs. ``B x speed`` is the number of real-time beds that load stands for.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
import uuid
import warnings
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger

log = get_logger("bench.engine")


def _night(folder: Path, hours: float, seed: int) -> tuple[Path, Path]:
    from edge_scorer.simulate import simulate_nights

    (psg, hyp), = simulate_nights(folder, 1, layout="sleep-edf", seed=seed, duration_h=hours)
    return psg, hyp


def realtime_latency(model, psg: Path, minutes: float) -> dict:
    """Replay at speed 1 for ``minutes`` and return the provisional-latency summary."""
    from edge_scorer.stream.live import LiveScorer
    from edge_scorer.stream.replay import Replayer

    name = f"bench-rt-{uuid.uuid4().hex[:8]}"
    with Replayer(psg, model.spec, name=name, speed=1.0, wait_for_consumers_s=10):
        live = LiveScorer(model, name=name)
        live.start()
        time.sleep(minutes * 60.0 + 1.0)
        live.stop()
    return live.engine.latency_summary()


def _yasa_night(psg: Path) -> None:
    """YASA ``SleepStaging`` on the file, as a user runs it (MNE read + features + LightGBM)."""
    import mne
    import yasa

    raw = mne.io.read_raw_edf(psg, include=["EEG Fpz-Cz", "EOG horizontal"], preload=True,
                              verbose="error")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yasa.SleepStaging(raw, eeg_name="EEG Fpz-Cz", eog_name="EOG horizontal").predict()


#: YASA on one file in a fresh Python process: the same function (importing this module adds
#: about 0.04 s to YASA's 9 s here).
_YASA_FRESH = ("import sys; from edge_scorer.bench.engine import _yasa_night; "
               "_yasa_night(sys.argv[1])")


def _wall(argv: list[str]) -> float:
    """Wall seconds of a fresh process (it must succeed)."""
    t = time.perf_counter()
    subprocess.run(argv, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return time.perf_counter() - t


def _median(xs: list[float]) -> float:
    return float(np.median(xs)) if xs else float("nan")


def offline_vs_yasa(model, psg: Path, repeats: int = 3, intra: Path | None = None) -> dict:
    """Seconds to score the whole file, edge-scorer and YASA side by side, two ways.

    * **fresh process** (what scoring one file costs a user): ``edge-scorer score FILE`` and
      :func:`_yasa_night`, each in a new Python process (imports, model loading, YASA's
      just-in-time compiled features, writing the outputs included); wall seconds.
    * **warm process** (what each further night of a cohort costs): ``score_file`` and YASA
      in this process after one untimed run of each.

    Each is timed ``repeats`` times in alternation and the medians are reported; the per-stage
    seconds are those of edge-scorer's median warm run."""
    from edge_scorer.engine.offline import score_file

    try:
        import yasa  # noqa: F401
    except ImportError:  # pragma: no cover - depends on the environment
        log.warning("YASA not installed (pip install 'edge-scorer[peer]'): no baseline")
        has_yasa = False
    else:
        has_yasa = True
    ours_cold, yasa_cold = [], []
    with tempfile.TemporaryDirectory(prefix="bench-offline-") as tmp:
        score = [sys.executable, "-m", "edge_scorer", "score", str(psg), "--no-progress"]
        if intra is not None:  # with the shipped inter model, as the in-process model has
            from edge_scorer.inference.scorer import default_model_dir

            score += ["--intra", str(intra), "--inter", str(default_model_dir() / "inter.onnx")]
        for k in range(max(1, repeats)):
            ours_cold.append(_wall([*score, "-o", str(Path(tmp) / f"run{k}")]))
            if has_yasa:
                yasa_cold.append(_wall([sys.executable, "-c", _YASA_FRESH, str(psg)]))
    score_file(psg, model, None, progress=False)  # warm-up (ONNX Runtime arena, first batches)
    if has_yasa:
        _yasa_night(psg)
    ours, theirs = [], []
    for _ in range(max(1, repeats)):
        t = time.perf_counter()
        night = score_file(psg, model, None, progress=False)
        ours.append((time.perf_counter() - t, night))
        if has_yasa:
            t = time.perf_counter()
            _yasa_night(psg)
            theirs.append(time.perf_counter() - t)
    ours.sort(key=lambda r: r[0])
    t_ours, night = ours[len(ours) // 2]
    out = {"n_epochs": night.hypnogram.n_epochs, "repeats": len(ours),
           "edge_scorer_s": t_ours, "edge_scorer_runs_s": sorted(r[0] for r in ours),
           "edge_scorer_fresh_s": _median(ours_cold), "edge_scorer_fresh_runs_s": ours_cold,
           "stages_s": {k: v for k, v in night.timings.items() if k != "total"}}
    if has_yasa:
        out.update(yasa_s=_median(theirs), yasa_runs_s=sorted(theirs),
                   yasa_fresh_s=_median(yasa_cold), yasa_fresh_runs_s=yasa_cold)
        out["ratio_fresh"] = out["edge_scorer_fresh_s"] / out["yasa_fresh_s"]
        out["ratio_warm"] = t_ours / out["yasa_s"]
    return out


def beds(model, psg: Path, n_beds: int, speed: float, seconds: float) -> dict:
    """Run ``n_beds`` replays at ``speed`` into live scorers in this process."""
    from edge_scorer.stream.live import LiveScorer
    from edge_scorer.stream.replay import Replayer

    names = [f"bench-bed-{uuid.uuid4().hex[:8]}" for _ in range(n_beds)]
    reps = [Replayer(psg, model.spec, name=n, speed=speed, wait_for_consumers_s=20)
            for n in names]
    lives = [LiveScorer(model, name=n) for n in names]
    for rep in reps:
        rep.start()
    for live in lives:
        live.start()
    time.sleep(seconds)
    for rep in reps:
        rep.stop()
    t_end = time.perf_counter()
    expected = []
    for rep in reps:  # complete epochs in what was pushed (the slowest row group decides)
        expected.append(int(min(n / g.sfreq for n, g in zip(rep.n_pushed, rep.groups,
                                                              strict=True)) // 30.0))
    deadline = t_end + 2.0
    while time.perf_counter() < deadline and any(
            lv.engine.n_epochs < e - 1 for lv, e in zip(lives, expected, strict=True)):
        time.sleep(0.05)
    backlog = [max(0, e - 1 - lv.engine.n_epochs) for lv, e in zip(lives, expected, strict=True)]
    for live in lives:
        live.stop()
    lat = np.concatenate([np.asarray(lv.engine.latencies) for lv in lives]) * 1000.0
    budget_ms = 30.0 / speed * 1000.0
    p99 = float(np.percentile(lat, 99)) if lat.size else float("nan")
    return {"beds": n_beds, "speed": speed, "bed_equivalents": n_beds * speed,
            "epochs": int(sum(lv.engine.n_epochs for lv in lives)),
            "median_ms": float(np.median(lat)) if lat.size else float("nan"),
            "p99_ms": p99, "budget_ms": budget_ms, "backlog_epochs": int(sum(backlog)),
            "real_time": bool(sum(backlog) == 0 and p99 < budget_ms)}


def _print_offline(off: dict) -> None:
    """Print the offline night: both ways, YASA side by side, and where the time goes."""
    n = off["n_epochs"]
    print(f"\n2. whole night offline ({n} epochs, EDF file -> stages; medians of "
          f"{off['repeats']} alternating runs)")
    print("                                            edge-scorer     YASA   time ratio")
    rows = [("one file, fresh process each (CLI)", "edge_scorer_fresh_s", "yasa_fresh_s",
             "ratio_fresh"),
            ("per night in a warm process (cohort)", "edge_scorer_s", "yasa_s", "ratio_warm")]
    for label, ours, theirs, ratio in rows:
        yasa = f"{off[theirs]:7.2f} s  {off[ratio]:7.2f}" if theirs in off else "   (no YASA)"
        print(f"   {label:40s} {off[ours]:7.2f} s  {yasa}")
    stages = off["stages_s"]
    print("   where the warm night goes: " + ", ".join(
        f"{k} {v:.2f} s ({v / off['edge_scorer_s']:.0%})" for k, v in stages.items()))


def _beds_table(model, psg: Path, args: argparse.Namespace) -> list[dict]:
    """Bed-equivalents (replays faster than real time) in this process, printed."""
    print(f"\n3. beds in one process, each replayed at {args.bed_speed:g}x for "
          f"{args.bed_s:g} s (bed-equivalents, not concurrent streams: see bench beds)")
    print(f"   {'beds':>5} {'= real-time beds':>17} {'median ms':>10} {'p99 ms':>8} "
          f"{'budget ms':>10} {'backlog':>8}  real time")
    rows = []
    for b in [int(x) for x in args.beds.split(",") if x]:
        r = beds(model, psg, b, args.bed_speed, args.bed_s)
        rows.append(r)
        print(f"   {b:5d} {r['bed_equivalents']:17.0f} {r['median_ms']:10.1f} "
              f"{r['p99_ms']:8.1f} {r['budget_ms']:10.0f} {r['backlog_epochs']:8d}  "
              f"{'yes' if r['real_time'] else 'NO'}")
        if not r["real_time"]:
            break
    ok = [r["bed_equivalents"] for r in rows if r["real_time"]]
    if ok:
        print(f"   -> one process keeps at least {max(ok):.0f} real-time beds")
    return rows


def main(argv: Sequence[str] | None = None) -> int:
    """Run the three measurements and print them side by side."""
    parser = argparse.ArgumentParser(prog="python -m edge_scorer.bench engine",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--realtime-min", type=float, default=10.0,
                        help="minutes of real-time replay for the latency (0: skip)")
    parser.add_argument("--night-h", type=float, default=8.0, help="offline night length (h)")
    parser.add_argument("--bed-speed", type=float, default=30.0, help="speed of each bed")
    parser.add_argument("--beds", default="1,2,4,8,16", help="bed counts to try")
    parser.add_argument("--bed-s", type=float, default=40.0, help="seconds per bed run")
    parser.add_argument("--seed", type=int, default=5)
    parser.add_argument("--json", type=Path, help="also write the results here")
    parser.add_argument("--intra", type=Path, metavar="ONNX",
                        help="time another intra model with the shipped inter model (e.g. an "
                             "int8 one from edge-scorer export quantize; default: the shipped "
                             "fp32 one)")
    parser.add_argument("--threads", type=int, default=0,
                        help="ONNX Runtime intra-op threads (default: ONNX Runtime's choice)")
    args = parser.parse_args(argv)

    from edge_scorer.inference.scorer import ScoringModel, default_model_dir

    model = (ScoringModel.load(args.intra, default_model_dir() / "inter.onnx",
                               threads=args.threads or None) if args.intra
             else ScoringModel.load(threads=args.threads or None))
    results: dict = {}
    with tempfile.TemporaryDirectory() as tmp:
        psg, _ = _night(Path(tmp) / "night", args.night_h, args.seed)
        print(f"night: simulated {args.night_h:g} h (seed {args.seed}); model: "
              f"{args.intra or 'shipped'} {model.intra.metadata.get('preset')} + inter, ONNX "
              f"Runtime CPU; load average {os.getloadavg()[0]:.2f}")
        if args.realtime_min > 0:
            lat = realtime_latency(model, psg, args.realtime_min)
            results["realtime"] = lat
            print(f"\n1. latency at real time ({lat.get('n', 0)} epochs, chunk in -> "
                  "provisional label out)")
            if lat:
                print(f"   median {lat['median_ms']:8.1f} ms   p99 {lat['p99_ms']:8.1f} ms   "
                      f"max {lat['max_ms']:8.1f} ms   = {lat['p99_ms'] / 30000:.2e} of the "
                      "30-s epoch")
        results["offline"] = off = offline_vs_yasa(model, psg, intra=args.intra)
        _print_offline(off)
        results["beds"] = _beds_table(model, psg, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0
