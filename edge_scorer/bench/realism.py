"""Realism benchmark of the PSG simulator: a real-data-trained peer, and real signals.

``python -m edge_scorer.bench realism [--nights 4] [--seed 0] [--hypnograms DIR]
[--layout sleep-edf|shhs] [--duration-h H] [--excerpt EDF | --no-features] [--json OUT]``

Two measurements, side by side with real material:

1. **YASA on simulated nights.** Nights driven by the real Sleep-EDF hypnograms (when
   ``../shared/data`` is present; otherwise sampled from the architecture model) are scored by
   YASA's ``SleepStaging`` (LightGBM classifiers trained on ~3000 real NSRR nights, shipped
   inside the package) from EEG, EOG and raw chin EMG. Cohen's kappa, accuracy, per-stage F1
   and recall against the driving (reference) hypnogram, per night and pooled, printed next to
   what YASA's authors and an independent study report on *real* nights
   (:data:`PUBLISHED`). The goal: a kappa between 0.70 and 0.85 and an N1 F1 of at most 0.60,
   i.e. simulated nights about as hard as real ones.
2. **Real wake against simulated wake.** Signal features
   (:mod:`edge_scorer.bench.realism_features`) of the real Sleep-EDF excerpt's epochs (all
   wake) against the 5-95 % range of the simulated nights' wake epochs, one row per feature,
   saying whether every real epoch falls inside.

Nothing here is tuned to YASA, and the real excerpt is a test of the simulator, never training
or tuning data for a model.
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

from edge_scorer._log import get_logger
from edge_scorer.stages import CLASS_NAMES
from edge_scorer.stats import metrics
from edge_scorer.stats.hypnogram import Hypnogram

log = get_logger("bench.realism")

#: (EEG, EOG, raw EMG) channel labels given to YASA for each layout.
YASA_CHANNELS = {
    "sleep-edf": ("EEG Fpz-Cz", "EOG horizontal", "EMG chin"),
    "shhs": ("EEG", "EOG(L)", "EMG"),
}
_YASA_STAGE = {"W": 0, "WAKE": 0, "N1": 1, "N2": 2, "N3": 3, "R": 4, "REM": 4}

#: What YASA reaches on *real* nights against human scorers (F1 / recall as fractions).
#: Vallat & Walker 2021, eLife 10:e70092: testing set 1 (585 NSRR nights: median accuracy
#: 0.8746, median kappa 0.819, N1 F1 0.432, N3 F1 0.835, W/N2/REM F1 >= 0.86) and Table 2
#: (DOD-H, 25 healthy adults, 5-scorer consensus). Independent: NCANDA adolescents, 327 nights
#: (Sleep Health 2023, 9:910, doi:10.1016/j.sleh.2023.07.019), per-stage sensitivity only.
PUBLISHED = (
    {"source": "YASA authors, NSRR testing set (585 nights)", "kappa": 0.819, "accuracy": 0.8746,
     "f1": {"N1": 0.432, "N3": 0.835}, "note": "W, N2, REM F1 >= 0.86"},
    {"source": "YASA authors, DOD-H (25 healthy)", "kappa": 0.801, "accuracy": 0.866,
     "f1": {"W": 0.839, "N1": 0.520, "N2": 0.885, "N3": 0.870, "REM": 0.926}, "note": ""},
    {"source": "NCANDA, 327 nights (recall)", "recall": {
        "W": 0.9304, "N1": 0.4039, "N2": 0.8767, "N3": 0.8446, "REM": 0.8602}, "note": ""},
)
#: Goals for the simulated nights (issue 11): YASA kappa in this range, N1 F1 at most this.
KAPPA_GOAL, N1_F1_GOAL = (0.70, 0.85), 0.60


def default_excerpt() -> Path:
    """The real Sleep-EDF PSG excerpt beside the repo (a test file, never training data)."""
    return default_hypnogram_dir().parent / "psg_excerpt" / "SC4001E0-PSG_first300s.edf"


def default_hypnogram_dir() -> Path:
    """``../shared/data/sleep-edf/hypnograms`` beside the repo (or ``$EDGE_SCORER_SHARED_DATA``)."""
    repo = Path(__file__).resolve().parents[2]
    shared = Path(os.environ.get("EDGE_SCORER_SHARED_DATA", repo.parent / "shared" / "data"))
    return shared / "sleep-edf" / "hypnograms"


def agreement(truth: np.ndarray, pred: np.ndarray) -> dict[str, Any]:
    """Agreement of YASA with the driving hypnogram as a JSON-ready dict
    (:func:`edge_scorer.stats.metrics.agreement`; unscored epochs left out)."""
    a = metrics.agreement(truth, pred)
    conf = a.confusion.astype(float)
    recall = {n: float(conf[i, i] / conf[i].sum()) if conf[i].sum() else float("nan")
              for i, n in enumerate(CLASS_NAMES)}
    return {"n_epochs": a.n, "kappa": a.kappa, "accuracy": a.accuracy, "macro_f1": a.macro_f1,
            "f1": dict(a.f1), "recall": recall, "confusion": a.confusion.tolist()}


def yasa_stage(night: Any, layout: str) -> np.ndarray:
    """Run YASA's pretrained ``SleepStaging`` on a simulated night; stage code per epoch."""
    import mne

    from edge_scorer.simulate.signals import resample

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
    excerpt: str | Path | None = None,
) -> dict[str, Any]:
    """Simulate nights, score them with YASA, and compare their wake with a real excerpt.

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
    excerpt : path-like, optional
        A real PSG file of wake epochs (the Sleep-EDF excerpt) to compare the simulated wake
        epochs with, feature by feature (Sleep-EDF layout only); None skips the comparison.

    Returns
    -------
    dict
        ``nights`` (per-night agreement with its driver, the reference's agreement with the
        stages the signals were drawn from, timings), ``pooled``, ``published`` and, with an
        excerpt, ``features`` (rows of :func:`~edge_scorer.bench.realism_features.compare`).
    """
    from edge_scorer.simulate.night import simulate_night
    from edge_scorer.simulate.signals import ChannelSpec

    if layout not in YASA_CHANNELS:
        raise ValueError(f"unknown layout {layout!r}; use one of {', '.join(YASA_CHANNELS)}")
    extra = [ChannelSpec("EMG chin", "emg", 100.0)] if layout == "sleep-edf" else []
    rows, all_t, all_p, wake_feats = [], [], [], []
    if excerpt is not None and layout != "sleep-edf":
        raise ValueError("the feature comparison with the Sleep-EDF excerpt needs "
                         "layout sleep-edf")
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
                   simulate_s=t1 - t0, yasa_s=t2 - t1,
                   reference_agreement=night.meta.get("reference_agreement"))
        if excerpt is not None:
            wake_feats.append(_wake_features(night))
        rows.append(res)
        all_t.append(truth)
        all_p.append(pred[: len(truth)])
        log.info("night %d (%s): kappa %.3f, accuracy %.3f", i, name, res["kappa"],
                 res["accuracy"])
    pooled = agreement(np.concatenate(all_t), np.concatenate(all_p))
    out = {"layout": layout, "seed": seed, "eeg_eog_emg": list(YASA_CHANNELS[layout]),
           "nights": rows, "pooled": pooled, "published": list(PUBLISHED),
           "goals": {"kappa": list(KAPPA_GOAL), "n1_f1_max": N1_F1_GOAL}}
    if excerpt is not None:
        from edge_scorer.bench.realism_features import compare

        sim = {k: np.concatenate([f[k] for f in wake_feats]) for k in wake_feats[0]}
        out["features"] = compare(_file_features(excerpt), sim)
        out["excerpt"] = str(excerpt)
    return out


def _file_features(psg: str | Path) -> dict[str, np.ndarray]:
    """Features of every epoch of a PSG file, through the one conditioning chain (sleep-edf)."""
    from edge_scorer.bench.realism_features import epoch_features
    from edge_scorer.dsp.conditioning import epochs_from_signal
    from edge_scorer.dsp.render_night import condition_recording
    from edge_scorer.io.psg import read_psg
    from edge_scorer.io.spec import load_spec

    spec = load_spec("sleep-edf")
    conditioned, _ = condition_recording(read_psg(psg, spec), spec)
    return epoch_features(epochs_from_signal(conditioned, spec), spec)


def _wake_features(night: Any) -> dict[str, np.ndarray]:
    """Features of the wake epochs of a simulated night, read back from its EDF file (so the
    file's quantization and the reader are part of the comparison, as for the real file)."""
    import tempfile

    from edge_scorer.simulate.night import write_night

    with tempfile.TemporaryDirectory() as tmp:
        psg, _ = write_night(night, tmp)
        feats = _file_features(psg)
    n = len(next(iter(feats.values())))
    wake = night.hypnogram.stages[:n] == 0
    return {k: v[wake] for k, v in feats.items()}


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
    agree = [r["reference_agreement"] for r in result["nights"]
             if r.get("reference_agreement") is not None]
    if agree:
        lines.append(f"(the reference hypnograms agree with the stages the signals were drawn "
                     f"from in {100 * np.mean(agree):.1f} % of epochs: simulated scorer "
                     "disagreement)")
    lines.append("")
    lines.append("YASA on real nights, as published (F1; NCANDA: recall)")
    for ref in result.get("published", PUBLISHED):
        vals = ref.get("f1") or ref.get("recall") or {}
        k = f"{ref['kappa']:6.3f}" if "kappa" in ref else f"{'':>6}"
        acc = f"{ref['accuracy']:6.3f}" if "accuracy" in ref else f"{'':>6}"
        lines.append(f"{'':>6} {ref['source'][:30]:<30} {k} {acc} " + " ".join(
            f"{vals[n]:7.3f}" if n in vals else f"{'':>7}" for n in CLASS_NAMES)
            + (f"  ({ref['note']})" if ref.get("note") else ""))
    p = result["pooled"]
    lines.append("simulated nights, YASA recall: " + ", ".join(
        f"{n} {p['recall'][n]:.3f}" for n in CLASS_NAMES))
    k_ok = KAPPA_GOAL[0] <= p["kappa"] <= KAPPA_GOAL[1]
    n1_ok = p["f1"]["N1"] <= N1_F1_GOAL
    lines.append(f"goal: kappa in {KAPPA_GOAL[0]:.2f}-{KAPPA_GOAL[1]:.2f} -> "
                 f"{'met' if k_ok else 'NOT met'} ({p['kappa']:.3f}); N1 F1 <= {N1_F1_GOAL:.2f} "
                 f"-> {'met' if n1_ok else 'NOT met'} ({p['f1']['N1']:.3f})")
    lines.append("")
    lines.append("confusion (rows: driving hypnogram, columns: YASA)")
    lines.append("      " + " ".join(f"{n:>6}" for n in CLASS_NAMES))
    for name, counts in zip(CLASS_NAMES, result["pooled"]["confusion"]):
        lines.append(f"{name:>6}" + " ".join(f"{c:6d}" for c in counts))
    if result.get("features"):
        from edge_scorer.bench.realism_features import format_comparison

        lines.append("")
        lines.append(format_comparison(
            result["features"], f"real wake ({Path(result['excerpt']).name}, all epochs W) "
            "against simulated wake epochs"))
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Command-line entry (see the module docstring)."""
    from edge_scorer._log import setup_cli_logging
    from edge_scorer.simulate.architecture import load_hypnograms

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
    parser.add_argument("--excerpt", type=Path, default=None, metavar="EDF",
                        help="real wake PSG to compare simulated wake with (default: the "
                             "shared Sleep-EDF excerpt when present)")
    parser.add_argument("--no-features", action="store_true",
                        help="skip the feature comparison with the real excerpt")
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
    excerpt = None
    if not args.no_features and args.layout == "sleep-edf":
        excerpt = args.excerpt or default_excerpt()
        if not Path(excerpt).is_file():
            if args.excerpt is not None:
                raise SystemExit(f"excerpt not found: {excerpt}")
            log.info("no real excerpt at %s; skipping the feature comparison", excerpt)
            excerpt = None
    result = run_realism(args.nights, args.seed, drivers, layout=args.layout,
                         duration_h=args.duration_h, excerpt=excerpt)
    print(format_table(result))
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
    return 0


__all__ = ["KAPPA_GOAL", "N1_F1_GOAL", "PUBLISHED", "agreement", "default_excerpt",
           "default_hypnogram_dir", "format_table", "main", "run_realism", "yasa_stage"]
