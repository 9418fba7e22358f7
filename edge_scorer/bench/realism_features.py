"""Signal features of epochs, to compare simulated nights with real PSG side by side.

The realism benchmark (:mod:`edge_scorer.bench.realism`) uses these to answer one question per
feature: do the *real* wake epochs of the Sleep-EDF excerpt fall inside the distribution of the
*simulated* wake epochs? Features are computed on the conditioned rows (the one filter chain,
at the spec's rate), i.e. on what the renderer draws and the model sees:

* EEG rows: log10 band power (uV^2) in delta 0.5-4, theta 4-8, alpha 8-12, sigma 12-16 and
  beta 16-30 Hz (Welch, 4-s Hann segments), and line length (mean absolute first difference per
  second, uV/s, a standard amplitude-times-frequency measure: Esteller et al. 2001);
* EOG row: deflections per minute (local extrema of the EOG beyond 50 uV, at least 0.3 s
  apart: blinks, saccades and slow eye movements as a scorer counts them), their median
  amplitude, the 95th percentile of |EOG| and line length;
* EMG envelope row: median level (uV) and its coefficient of variation within the epoch.

The numbers of the real excerpt are a test of the simulator, never training or tuning data for
a model.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from scipy import signal as sps

from edge_scorer.io.spec import RenderSpec

#: EEG frequency bands (Hz), the conventional clinical ones (AASM manual v2.6 terminology).
BANDS = {"delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 12.0),
         "sigma": (12.0, 16.0), "beta": (16.0, 30.0)}
#: An eye-movement deflection: a local extremum beyond this many uV on the EOG.
EOG_DEFLECTION_UV = 50.0
#: Two deflections closer than this (s) are one movement.
EOG_MIN_GAP_S = 0.3


def _eeg_features(x: np.ndarray, sfreq: float, name: str) -> dict[str, np.ndarray]:
    """Band powers and line length of EEG epochs ``x`` (n_epochs, n_samples)."""
    nper = int(4 * sfreq)
    f, pxx = sps.welch(x, fs=sfreq, nperseg=min(nper, x.shape[-1]), axis=-1)
    df = f[1] - f[0]
    out = {}
    for band, (lo, hi) in BANDS.items():
        sel = (f >= lo) & (f < hi)
        out[f"{name} log10 {band} power"] = np.log10(pxx[:, sel].sum(axis=1) * df + 1e-6)
    out[f"{name} line length uV/s"] = np.abs(np.diff(x, axis=1)).mean(axis=1) * sfreq
    return out


def eog_deflections(x: np.ndarray, sfreq: float) -> tuple[int, float]:
    """Number and median absolute amplitude (uV) of eye-movement deflections in one epoch."""
    gap = max(1, int(EOG_MIN_GAP_S * sfreq))
    peaks, props = sps.find_peaks(np.abs(x), height=EOG_DEFLECTION_UV, distance=gap)
    if len(peaks) == 0:
        return 0, 0.0
    return len(peaks), float(np.median(props["peak_heights"]))


def epoch_features(epochs: np.ndarray, spec: RenderSpec) -> dict[str, np.ndarray]:
    """Features of conditioned epochs ``(n_epochs, n_rows, epoch_samples)`` of ``spec``.

    Returns
    -------
    dict of str to ndarray
        One value per epoch for each feature; names carry the row and the unit.
    """
    epochs = np.asarray(epochs, dtype=np.float64)
    if epochs.ndim != 3 or epochs.shape[1] != spec.n_rows:
        raise ValueError(f"epochs must be (n_epochs, {spec.n_rows}, n_samples) for spec "
                         f"{spec.name!r}, got {epochs.shape}")
    epochs = np.nan_to_num(epochs)
    sf = spec.sfreq
    minutes = epochs.shape[-1] / sf / 60.0
    out: dict[str, np.ndarray] = {}
    for r, row in enumerate(spec.rows):
        x = epochs[:, r]
        kind = row.type.upper()
        if kind == "EEG":
            out.update(_eeg_features(x, sf, row.name))
        elif kind == "EOG":
            defl = np.array([eog_deflections(e, sf) for e in x])
            out[f"{row.name} deflections /min"] = defl[:, 0] / minutes
            out[f"{row.name} deflection amplitude uV"] = defl[:, 1]
            out[f"{row.name} |x| p95 uV"] = np.percentile(np.abs(x), 95, axis=1)
            out[f"{row.name} line length uV/s"] = np.abs(np.diff(x, axis=1)).mean(axis=1) * sf
        elif kind in ("EMG_ENVELOPE", "EMG"):
            level = np.median(np.abs(x), axis=1)
            out[f"{row.name} level uV"] = level
            out[f"{row.name} variation (CV)"] = np.abs(x).std(axis=1) / np.maximum(level, 1e-3)
    return out


def compare(real: dict[str, np.ndarray], simulated: dict[str, np.ndarray],
            lo_q: float = 5.0, hi_q: float = 95.0) -> list[dict]:
    """Per feature: the simulated ``[lo_q, hi_q]`` percentile range and where real epochs fall.

    Returns
    -------
    list of dict
        ``feature``, ``sim_p5``, ``sim_median``, ``sim_p95``, ``real_median``, ``real_min``,
        ``real_max``, ``real_inside`` (fraction of real epochs inside the range) and ``inside``
        (True when every real epoch is inside).
    """
    rows = []
    for name, sim in simulated.items():
        if name not in real:
            continue
        r = np.asarray(real[name], dtype=float)
        lo, med, hi = np.percentile(sim, [lo_q, 50.0, hi_q])
        ins = (r >= lo) & (r <= hi)
        rows.append({"feature": name, "sim_p5": float(lo), "sim_median": float(med),
                     "sim_p95": float(hi), "real_median": float(np.median(r)),
                     "real_min": float(r.min()), "real_max": float(r.max()),
                     "real_inside": float(ins.mean()), "inside": bool(ins.all())})
    return rows


def format_comparison(rows: Sequence[dict], title: str) -> str:
    """A plain-text table of :func:`compare` rows."""
    lines = [title,
             f"{'feature':<40} {'sim p5':>8} {'sim med':>8} {'sim p95':>8} "
             f"{'real med':>9} {'real min':>9} {'real max':>9} {'inside':>7}"]
    for r in rows:
        lines.append(f"{r['feature']:<40} {r['sim_p5']:8.2f} {r['sim_median']:8.2f} "
                     f"{r['sim_p95']:8.2f} {r['real_median']:9.2f} {r['real_min']:9.2f} "
                     f"{r['real_max']:9.2f} {100 * r['real_inside']:6.0f}%")
    n_in = sum(r["inside"] for r in rows)
    lines.append(f"{n_in} of {len(rows)} features have every real epoch inside the simulated "
                 "5-95 % range")
    return "\n".join(lines)


__all__ = ["BANDS", "compare", "epoch_features", "eog_deflections", "format_comparison"]
