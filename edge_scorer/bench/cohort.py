"""Nights per hour on a cohort: one process, the local pool, local Ray, and YASA, side by side.

``python -m edge_scorer.bench cohort [--nights 6] [--night-h 1] [--workers 2] [--json OUT]``

Simulates ``--nights`` different nights and scores them all with
:func:`~edge_scorer.engine.cohort.run_cohort` in this process, on a local process pool of
``--workers`` processes and (when Ray is installed) on a new local Ray instance with
``--workers`` CPUs, then with YASA's ``SleepStaging`` one file after another (MNE read +
features + LightGBM, EEG Fpz-Cz + EOG). Each row: seconds for the cohort (start-up included:
model loading, worker processes, Ray), nights per hour, and the ratio to YASA.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
import warnings
from collections.abc import Sequence
from pathlib import Path


def _yasa(psgs: Sequence[Path]) -> float | None:
    try:
        import mne
        import yasa
    except ImportError:  # pragma: no cover - depends on the environment
        return None
    t = time.perf_counter()
    for psg in psgs:
        raw = mne.io.read_raw_edf(psg, include=["EEG Fpz-Cz", "EOG horizontal"], preload=True,
                                  verbose="error")
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yasa.SleepStaging(raw, eeg_name="EEG Fpz-Cz", eog_name="EOG horizontal").predict()
    return time.perf_counter() - t


def main(argv: Sequence[str] | None = None) -> int:
    """Score the cohort each way and print the table."""
    parser = argparse.ArgumentParser(prog="python -m edge_scorer.bench cohort",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=6, help="simulated nights")
    parser.add_argument("--night-h", type=float, default=1.0, help="hours per night")
    parser.add_argument("--workers", type=int, default=2, help="pool / Ray workers")
    parser.add_argument("--json", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    from edge_scorer.engine.cohort import ModelChoice, plan_jobs, run_cohort
    from edge_scorer.simulate import simulate_nights

    results: dict[str, float] = {}
    with tempfile.TemporaryDirectory() as tmp:
        nights = simulate_nights(Path(tmp) / "nights", args.nights, layout="sleep-edf", seed=3,
                                 duration_h=args.night_h)
        psgs = [p for p, _ in nights]
        print(f"{len(psgs)} simulated {args.night_h:g}-h nights; {os.cpu_count()} CPUs, load "
              f"average {os.getloadavg()[0]:.2f} at the start")
        ways: list[tuple[str, dict]] = [("edge-scorer, one process", {"workers": 1}),
                                        (f"edge-scorer, pool of {args.workers}",
                                         {"workers": args.workers})]
        try:
            import ray  # noqa: F401

            ways.append((f"edge-scorer, local Ray ({args.workers} CPUs)",
                         {"workers": args.workers, "use_ray": True}))
        except ImportError:
            print("Ray not installed (pip install 'edge-scorer[ray]'): no Ray row")
        for k, (label, kw) in enumerate(ways):
            jobs = plan_jobs([(p, None) for p in psgs], Path(tmp) / f"out{k}")
            t = time.perf_counter()
            rows = run_cohort(jobs, ModelChoice(), **kw)
            results[label] = time.perf_counter() - t
            bad = [r for r in rows if r["status"] != "ok"]
            if bad:
                raise RuntimeError(f"{label}: {bad[0]['night']} failed: {bad[0].get('error')}")
        y = _yasa(psgs)
        if y is not None:
            results["YASA SleepStaging, one process"] = y
    base = results.get("YASA SleepStaging, one process")
    print(f"{'':42s} {'seconds':>8s} {'nights/h':>9s} {'x YASA':>7s}")
    for label, sec in results.items():
        ratio = f"{base / sec:7.2f}" if base else "      -"
        print(f"{label:42s} {sec:8.1f} {args.nights / sec * 3600:9.0f} {ratio}")
    print(f"load average at the end {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return 0
