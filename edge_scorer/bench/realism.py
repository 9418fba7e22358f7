"""Realism benchmark of the PSG simulator, scored by YASA's pretrained sleep stager.

``python -m edge_scorer.bench realism [--nights 4] [--seed 0] [--hypnograms DIR]
[--layout sleep-edf|shhs] [--duration-h H] [--json OUT]``

Simulates nights driven by the real Sleep-EDF hypnograms (when ``../shared/data`` is present;
otherwise sampled from the architecture model), runs YASA's ``SleepStaging`` (LightGBM
classifiers trained on ~3000 real NSRR nights, shipped inside the package) on each night's EEG,
EOG and raw chin EMG, and reports Cohen's kappa, accuracy, per-stage F1 and the confusion matrix
against the driving hypnogram, per night and pooled. Nothing here is tuned to YASA: it is an
honest measure of how much of the simulated physiology a real-data-trained peer recognizes.
"""

from __future__ import annotations

import argparse
import json
import os
import time
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from .. import metrics
from .._log import get_logger
from ..hypnogram import Hypnogram
from ..stages import CLASS_NAMES

log = get_logger("bench.realism")

#: (EEG, EOG, raw EMG) channel labels given to YASA for each layout.
YASA_CHANNELS = {
    "sleep-edf": ("EEG Fpz-Cz", "EOG horizontal", "EMG chin"),
    "shhs": ("EEG", "EOG(L)", "EMG"),
}
_YASA_STAGE = {"W": 0, "WAKE": 0, "N1": 1, "N2": 2, "N3": 3, "R": 4, "REM": 4}


def default_hypnogram_dir() -> Path:
    """``../shared/data/sleep-edf/hypnograms`` beside the repo (or ``$EDGE_SCORER_SHARED_DATA``)."""
    repo = Path(__file__).resolve().parents[2]
    shared = Path(os.environ.get("EDGE_SCORER_SHARED_DATA", repo.parent / "shared" / "data"))
    return shared / "sleep-edf" / "hypnograms"


def agreement(truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Agreement of YASA with the driving hypnogram as a JSON-ready dict
    (:func:`edge_scorer.metrics.agreement`; unscored epochs left out)."""
    a = metrics.agreement(truth, pred)
    return {"n_epochs": a.n, "kappa": a.kappa, "accuracy": a.accuracy, "macro_f1": a.macro_f1,
            "f1": dict(a.f1), "confusion": a.confusion.tolist()}


def yasa_stage(night: Any, layout: str) -> np.ndarray:
    """Run YASA's pretrained ``SleepStaging`` on a simulated night; stage code per epoch."""
    import mne

    from ..simulate.signals import resample

    try:
        import yasa
    except ImportError as exc:  # pragma: no cover - depends on the environment
        raise RuntimeError("the realism benchmark needs YASA: pip install 'edge-scorer[peer]'"
                           ) from exc
    eeg, eog, emg = YASA_CHANNELS[layout]
    sfreq = max(night.channel(c).sfreq for c in (eeg, eog, emg))
    n = int(round(night.duration_s * sfreq))
    data = np.array([resample(night.channel(c).data, night.channel(c).sfreq, sfreq, n)
                     for c in (eeg, eog, emg)]) * 1e-6
    info = mne.create_info([eeg, eog, emg], sfreq, ["eeg", "eog", "emg"])
    raw = mne.io.RawArray(data, info, verbose=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # sklearn version warnings when unpickling YASA's models
        hyp = yasa.SleepStaging(raw, eeg_name=eeg, eog_name=eog, emg_name=emg).predict()
    return np.array([_YASA_STAGE[str(v).upper()] for v in hyp.hypno.values], dtype=np.int64)


def run_realism(
    n_nights: int = 4,
    seed: int = 0,
    hypnograms: Sequence[Hypnogram] | None = None,
    *,
    layout: str = "sleep-edf",
    duration_h: float | None = None,
) -> dict[str, Any]:
    """Simulate nights and score them with YASA.

    Parameters
    ----------
    n_nights : int
        Number of nights; night ``i`` uses seed ``seed + i``.
    hypnograms : sequence of Hypnogram, optional
        Driving hypnograms (used in turn); default: sampled from the architecture model.
    layout : {"sleep-edf", "shhs"}
        File layout; Sleep-EDF nights get an extra raw 100-Hz chin EMG for YASA.
    duration_h : float, optional
        Night length (crops given hypnograms, sets sampled ones).

    Returns
    -------
    dict
        ``nights`` (per-night agreement with its driver and timings) and ``pooled``.
    """
    from ..simulate.night import simulate_night
    from ..simulate.signals import ChannelSpec

    if layout not in YASA_CHANNELS:
        raise ValueError(f"unknown layout {layout!r}; use one of {', '.join(YASA_CHANNELS)}")
    extra = [ChannelSpec("EMG chin", "emg", 100.0)] if layout == "sleep-edf" else []
    rows, all_t, all_p = [], [], []
    for i in range(n_nights):
        driver = hypnograms[i % len(hypnograms)] if hypnograms else None
        t0 = time.perf_counter()
        night = simulate_night(driver, layout=layout, seed=seed + i, duration_h=duration_h,
                               extra_channels=extra)
        t1 = time.perf_counter()
        pred = yasa_stage(night, layout)
        t2 = time.perf_counter()
        truth = night.hypnogram.stages.astype(np.int64)[: len(pred)]
        res = agreement(truth, pred[: len(truth)])
        name = Path(str(night.meta.get("driving_hypnogram", "simulated"))).name
        res.update(night=i, seed=seed + i, driver=name, hours=night.duration_s / 3600,
                   simulate_s=t1 - t0, yasa_s=t2 - t1)
        rows.append(res)
        all_t.append(truth)
        all_p.append(pred[: len(truth)])
        log.info("night %d (%s): kappa %.3f, accuracy %.3f", i, name, res["kappa"],
                 res["accuracy"])
    pooled = agreement(np.concatenate(all_t), np.concatenate(all_p))
    return {"layout": layout, "seed": seed, "eeg_eog_emg": list(YASA_CHANNELS[layout]),
            "nights": rows, "pooled": pooled}


def format_table(result: dict[str, Any]) -> str:
    """Plain-text report: one row per night, the pooled row and the pooled confusion matrix."""
    head = f"{'night':>6} {'driver':<24} {'hours':>5} {'kappa':>6} {'acc':>6} " + " ".join(
        f"{'F1 ' + n:>7}" for n in CLASS_NAMES)
    lines = [f"YASA realism, layout {result['layout']} (EEG/EOG/EMG: "
             f"{', '.join(result['eeg_eog_emg'])})", head]

    def row(label: str, driver: str, hours: str, r: dict[str, Any]) -> str:
        return (f"{label:>6} {driver:<24} {hours:>5} {r['kappa']:6.3f} {r['accuracy']:6.3f} "
                + " ".join(f"{r['f1'][n]:7.3f}" for n in CLASS_NAMES))

    for r in result["nights"]:
        lines.append(row(str(r["night"]), r["driver"][:24], f"{r['hours']:.1f}", r))
    lines.append(row("pooled", "", "", result["pooled"]))
    lines.append("confusion (rows: driving hypnogram, columns: YASA)")
    lines.append("      " + " ".join(f"{n:>6}" for n in CLASS_NAMES))
    for name, counts in zip(CLASS_NAMES, result["pooled"]["confusion"]):
        lines.append(f"{name:>6}" + " ".join(f"{c:6d}" for c in counts))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry (see the module docstring)."""
    from .._log import setup_cli_logging
    from ..simulate.architecture import load_hypnograms

    parser = argparse.ArgumentParser(prog="python -m edge_scorer.bench realism",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--nights", type=int, default=4)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--hypnograms", type=Path, default=None, metavar="DIR",
                        help="real hypnograms driving the nights (default: the shared Sleep-EDF "
                             "folder when present, else sampled nights)")
    parser.add_argument("--sampled", action="store_true",
                        help="sample hypnograms from the architecture model even if real "
                             "ones are available")
    parser.add_argument("--layout", choices=tuple(YASA_CHANNELS), default="sleep-edf")
    parser.add_argument("--duration-h", type=float, default=None)
    parser.add_argument("--json", type=Path, default=None, metavar="OUT",
                        help="also write the full result as JSON")
    args = parser.parse_args(argv)
    setup_cli_logging()
    drivers = None
    folder = args.hypnograms or default_hypnogram_dir()
    if not args.sampled:
        if folder.is_dir():
            drivers = load_hypnograms(folder)
            log.info("driving nights by %d real hypnograms from %s", len(drivers), folder)
        elif args.hypnograms is not None:
            raise SystemExit(f"hypnogram folder not found: {folder}")
        else:
            log.info("no real hypnograms at %s; sampling nights from the model", folder)
    result = run_realism(args.nights, args.seed, drivers, layout=args.layout,
                         duration_h=args.duration_h)
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


__all__ = ["agreement", "default_hypnogram_dir", "format_table", "main", "run_realism",
           "yasa_stage"]
