"""Soak test: many beds scored for a long time in one process; memory and latency drift.

``python -m edge_scorer.bench soak --beds N --minutes M [--speed X] [--sample-s S]
[--json FILE]``

``N`` simulated nights are replayed in a loop over loopback LSL (each at ``--speed`` x real
time) and scored by ``N`` :class:`~edge_scorer.stream.live.LiveScorer` in this process, each writing
its ``epochs.csv`` (fsync per batch) into a temporary folder, for ``M`` minutes. Every
``--sample-s`` seconds it records the process's resident memory, threads and open files, the
epochs scored and the provisional latencies of the epochs scored since the last sample.

Reported: memory at the end of the first minute and at the end, its slope (MiB per hour,
least squares after the first minute) and per thousand epochs; median and p99 latency of the
first and the last third of the run and their ratio; backlog (epochs complete in what was
pushed but not scored) and gaps at the end. A leak shows as a slope that does not flatten;
the engine keeps a few hundred bytes per scored epoch (stages, probabilities, flags), which is
the expected growth.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import tempfile
import time
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _rss_mib() -> float:
    """Resident memory of this process now (MiB; from /proc, else the peak)."""
    try:
        with open("/proc/self/statm") as fh:
            pages = int(fh.read().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except (OSError, ValueError):
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _open_files() -> int:
    try:
        return len(os.listdir("/proc/self/fd"))
    except OSError:
        return -1


def soak(n_beds: int, minutes: float, speed: float, sample_s: float, seed: int = 3) -> dict:
    """Run the soak (see the module docstring) and return samples and the summary."""
    import threading

    from edge_scorer.inference.scorer import ScoringModel
    from edge_scorer.simulate import simulate_nights
    from edge_scorer.stream.live import LiveScorer
    from edge_scorer.stream.replay import Replayer

    model = ScoringModel.load()
    with tempfile.TemporaryDirectory(prefix="edge-scorer-soak-") as tmp:
        (psg, _), = simulate_nights(Path(tmp) / "night", 1, layout="sleep-edf", seed=seed,
                                    duration_h=1.0)
        names = [f"soak-{uuid.uuid4().hex[:8]}" for _ in range(n_beds)]
        reps = [Replayer(psg, model.spec, name=n, speed=speed, loop=True,
                         wait_for_consumers_s=30) for n in names]
        lives = [LiveScorer(model, name=n, out_dir=Path(tmp) / n) for n in names]
        for rep in reps:
            rep.start()
        for live in lives:
            live.start()
        t0 = time.perf_counter()
        samples: list[dict] = []
        seen = [0] * n_beds
        while time.perf_counter() - t0 < minutes * 60.0:
            time.sleep(sample_s)
            lat = []
            for k, lv in enumerate(lives):
                new = lv.engine.latencies[seen[k]:]
                seen[k] += len(new)
                lat += new
            lat_ms = np.asarray(lat) * 1000.0
            samples.append({
                "t_s": round(time.perf_counter() - t0, 1), "rss_mib": round(_rss_mib(), 1),
                "threads": threading.active_count(), "open_files": _open_files(),
                "epochs": int(sum(lv.engine.n_epochs for lv in lives)),
                "median_ms": float(np.median(lat_ms)) if lat_ms.size else None,
                "p99_ms": float(np.percentile(lat_ms, 99)) if lat_ms.size else None,
                "lat_ms": lat_ms.tolist()})
        pushed = [int(min(n / g.sfreq for n, g in zip(rep.n_pushed, rep.groups, strict=True))
                      // model.spec.epoch_s) for rep in reps]
        for rep in reps:
            rep.stop()
        time.sleep(2.0)
        backlog = int(sum(max(0, p - 1 - lv.engine.n_epochs) for p, lv in
                          zip(pushed, lives, strict=True)))
        gaps = int(sum(lv.source.n_gaps for lv in lives))
        lag = max(lv.source.max_lag_s for lv in lives)
        for live in lives:
            live.stop(raise_error=False)
        errors = [repr(lv.error) for lv in lives if lv.error is not None]
    return {"beds": n_beds, "minutes": minutes, "speed": speed,
            "summary": summarize(samples), "backlog_epochs": backlog, "gaps": gaps,
            "max_lag_s": round(lag, 3), "errors": errors,
            "samples": [{k: v for k, v in s.items() if k != "lat_ms"} for s in samples],
            "_lat": [s["lat_ms"] for s in samples]}


def summarize(samples: list[dict]) -> dict:
    """Memory slope after the first minute, and latency of the first vs last third."""
    if not samples:
        return {}
    t = np.array([s["t_s"] for s in samples])
    rss = np.array([s["rss_mib"] for s in samples])
    epochs = np.array([s["epochs"] for s in samples])
    after = t >= min(60.0, t[-1] / 2)
    slope_h = slope_k = float("nan")
    if after.sum() >= 2:
        slope_h = float(np.polyfit(t[after] / 3600.0, rss[after], 1)[0])
        if np.ptp(epochs[after]) > 0:
            slope_k = float(np.polyfit(epochs[after] / 1000.0, rss[after], 1)[0])
    n = len(samples)
    third = max(1, n // 3)

    def lat(part: list[dict]) -> tuple[float, float]:
        vals = np.concatenate([np.asarray(s["lat_ms"]) for s in part] or [np.zeros(0)])
        if not vals.size:
            return float("nan"), float("nan")
        return float(np.median(vals)), float(np.percentile(vals, 99))

    (m1, p1), (m3, p3) = lat(samples[:third]), lat(samples[-third:])
    return {"rss_first_min_mib": float(rss[after][0]) if after.any() else float(rss[0]),
            "rss_end_mib": float(rss[-1]), "rss_slope_mib_per_h": slope_h,
            "rss_slope_mib_per_1000_epochs": slope_k, "epochs": int(epochs[-1]),
            "median_ms_first": m1, "median_ms_last": m3, "p99_ms_first": p1,
            "p99_ms_last": p3, "median_drift": m3 / m1 if m1 else float("nan"),
            "threads_first": samples[0]["threads"], "threads_end": samples[-1]["threads"],
            "open_files_first": samples[0]["open_files"],
            "open_files_end": samples[-1]["open_files"]}


def main(argv: Sequence[str] | None = None) -> int:
    """Run the soak and print the drift report."""
    parser = argparse.ArgumentParser(prog="python -m edge_scorer.bench soak",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--beds", type=int, default=4, help="beds in this process (default 4)")
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the run")
    parser.add_argument("--speed", type=float, default=30.0,
                        help="replay speed of each bed (default 30)")
    parser.add_argument("--sample-s", type=float, default=10.0, help="seconds between samples")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.beds < 1 or not (args.minutes > 0 and args.speed > 0 and args.sample_s > 0):
        parser.error("--beds must be >= 1 and --minutes, --speed, --sample-s positive")
    r = soak(args.beds, args.minutes, args.speed, args.sample_s)
    s = r["summary"]
    print(f"soak: {args.beds} bed(s) at {args.speed:g}x for {args.minutes:g} min "
          f"({args.beds * args.speed:g} real-time beds), {s.get('epochs', 0)} epochs scored")
    print(f"{'t (s)':>7} {'RSS MiB':>8} {'threads':>8} {'files':>6} {'epochs':>7} "
          f"{'median ms':>10} {'p99 ms':>8}")
    for x in r["samples"]:
        med = "-" if x["median_ms"] is None else f"{x['median_ms']:.1f}"
        p99 = "-" if x["p99_ms"] is None else f"{x['p99_ms']:.1f}"
        print(f"{x['t_s']:7.0f} {x['rss_mib']:8.1f} {x['threads']:8d} {x['open_files']:6d} "
              f"{x['epochs']:7d} {med:>10} {p99:>8}")
    print(f"memory: {s['rss_first_min_mib']:.1f} MiB after the first minute -> "
          f"{s['rss_end_mib']:.1f} MiB at the end; slope {s['rss_slope_mib_per_h']:+.1f} MiB/h "
          f"({s['rss_slope_mib_per_1000_epochs']:+.2f} MiB per 1000 epochs)")
    print(f"latency: median {s['median_ms_first']:.1f} -> {s['median_ms_last']:.1f} ms "
          f"(x{s['median_drift']:.2f}), p99 {s['p99_ms_first']:.1f} -> {s['p99_ms_last']:.1f} "
          "ms (first vs last third)")
    print(f"threads {s['threads_first']} -> {s['threads_end']}, open files "
          f"{s['open_files_first']} -> {s['open_files_end']}; backlog at the end "
          f"{r['backlog_epochs']} epochs, gaps {r['gaps']}, worst lag {r['max_lag_s']} s"
          + (f"; errors {r['errors']}" if r["errors"] else ""))
    if args.json:
        out = {k: v for k, v in r.items() if k != "_lat"}
        args.json.write_text(json.dumps(out, indent=2) + "\n")
    return 0 if not r["errors"] else 1
