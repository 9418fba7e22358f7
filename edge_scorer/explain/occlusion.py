"""STQS's model-agnostic analyses: occlude part of an epoch's signals and watch the decision.

Pathak et al. (STQS, Artif. Intell. Med. 2021) explain a sleep stager by occlusion; these run on
any backend because they only need a function from rendered images to class probabilities
(:func:`onnx_proba_fn` for the engine's ONNX model, :func:`torch_proba_fn` for PyTorch):

- **time-domain occlusion**: a window of ``window_s`` seconds slides across the epoch in steps
  of ``step_s``; inside it the rows (all of them, then each row alone) are masked;
- **frequency-band occlusion**: one band (delta 0.5-4, theta 4-8, alpha 8-12, sigma 12-16,
  beta 16-30 Hz) is removed from a modality's rows (and from each row alone) with a Butterworth
  band-stop in second-order sections, designed the way the conditioning chain designs its
  filters (:func:`edge_scorer.dsp.conditioning.row_sos`), run forward and backward so that nothing
  else moves in time; the neighbouring epochs, when given, pad the filter so the epoch's edges
  carry no transient;
- **modality importance**: all rows of one modality (EEG, EOG, EMG, ...) are masked.

Masked samples are set to 0 in the row's units (``fill="zero"``: STQS's choice; the trace is
drawn as a flat line at zero) or to NaN (``fill="gap"``: nothing is drawn, as for a signal
gap). Note that a zeroed EMG envelope reads as atonia, a REM sign, so the EMG row's drops mean
"what if the chin were atonic" under ``zero``; ``gap`` reads as "no chin signal".

Every variant is conditioned-signal -> :func:`edge_scorer.dsp.render.render_epochs` -> model, so the
masks are drawn exactly as the model's input pipeline would draw them. The reported *drop* is
the baseline probability of the explained class minus the probability after occlusion
(positive: the occluded part supported the class).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from edge_scorer.dsp.render import render_epochs
from edge_scorer.inference.windows import softmax
from edge_scorer.io.spec import RenderSpec, RowSpec
from edge_scorer.stages import CLASS_NAMES, N_CLASSES

#: Frequency bands removed by band occlusion (Hz), as used in sleep EEG analysis.
BANDS: dict[str, tuple[float, float]] = {
    "delta": (0.5, 4.0), "theta": (4.0, 8.0), "alpha": (8.0, 12.0), "sigma": (12.0, 16.0),
    "beta": (16.0, 30.0),
}
#: Butterworth order of each band-stop edge (the conditioning low-pass order).
BANDSTOP_ORDER = 4
#: Row types that carry waveforms (band occlusion applies to them; envelopes and slow
#: channels such as SpO2 are left out).
WAVEFORM_TYPES = frozenset({"EEG", "EOG", "EMG", "ECG"})
#: Mask values.
FILLS = ("zero", "gap")

ProbaFn = Callable[[np.ndarray], np.ndarray]


def onnx_proba_fn(model, batch_size: int = 64) -> ProbaFn:
    """Intra-model class probabilities through a :class:`~edge_scorer.inference.scorer.ScoringModel`
    (any of its backends)."""
    def fn(images: np.ndarray) -> np.ndarray:
        if len(images) == 0:
            return np.zeros((0, N_CLASSES))
        logits, _ = model.epoch_outputs(images, batch_size=batch_size)
        return softmax(np.asarray(logits, dtype=np.float64))
    return fn


def torch_proba_fn(intra, batch_size: int = 64) -> ProbaFn:
    """Intra-model class probabilities through a PyTorch ViT."""
    import torch

    def fn(images: np.ndarray) -> np.ndarray:
        out = []
        with torch.no_grad():
            for i in range(0, len(images), batch_size):
                out.append(intra(torch.from_numpy(np.ascontiguousarray(
                    images[i:i + batch_size]))).numpy())
        return softmax(np.concatenate(out).astype(np.float64))
    return fn


def modality_of(row: RowSpec) -> str:
    """Modality of a row: its type up to the first underscore (``EMG_ENVELOPE`` -> ``EMG``)."""
    return row.type.split("_")[0].upper()


def modalities(spec: RenderSpec) -> dict[str, list[int]]:
    """Row indices per modality, in spec order."""
    out: dict[str, list[int]] = {}
    for i, row in enumerate(spec.rows):
        out.setdefault(modality_of(row), []).append(i)
    return out


def band_rows(spec: RenderSpec) -> list[int]:
    """Rows whose type carries a waveform (band occlusion applies to them)."""
    return [i for i, r in enumerate(spec.rows) if r.type.upper() in WAVEFORM_TYPES]


def bandstop_sos(band: tuple[float, float], sfreq: float) -> np.ndarray | None:
    """Butterworth band-stop SOS for ``band`` at ``sfreq`` (None when the band lies above the
    Nyquist frequency); the upper edge is kept below Nyquist."""
    lo, hi = float(band[0]), float(band[1])
    nyq = sfreq / 2.0
    if not 0 < lo < hi:
        raise ValueError(f"band {band} must be (low, high) with 0 < low < high Hz")
    if lo >= nyq * 0.95:
        return None
    hi = min(hi, nyq * 0.95)
    from scipy import signal  # lazy: importing scipy.signal costs ~0.6 s

    return signal.butter(BANDSTOP_ORDER, [lo, hi], "bandstop", fs=sfreq, output="sos")


def remove_band(x: np.ndarray, band: tuple[float, float], sfreq: float,
                pad: tuple[np.ndarray | None, np.ndarray | None] = (None, None)) -> np.ndarray:
    """Remove a frequency band from signals ``(..., n)`` with a zero-phase band-stop.

    Parameters
    ----------
    x : ndarray (..., n)
    band : (low, high) in Hz
    sfreq : float
    pad : (before, after)
        Real signal before and after ``x`` (same leading shape), used as filter context;
        where absent, ``sosfiltfilt``'s odd extension pads.
    """
    from scipy import signal  # lazy: importing scipy.signal costs ~0.6 s

    sos = bandstop_sos(band, sfreq)
    if sos is None:
        return np.array(x, dtype=np.float64)
    before, after = pad
    parts = [p for p in (before, x, after) if p is not None]
    full = np.nan_to_num(np.concatenate(parts, axis=-1).astype(np.float64))
    y = signal.sosfiltfilt(sos, full, axis=-1)
    start = 0 if before is None else before.shape[-1]
    return y[..., start:start + x.shape[-1]]


@dataclass
class OcclusionResult:
    """Probabilities of an epoch under every occlusion (see module docstring).

    Attributes
    ----------
    target : int
        Explained class (drops are of its probability).
    baseline : ndarray (C,)
        Probabilities of the unoccluded epoch.
    fill : str
    window_s, step_s : float
    time_starts_s : ndarray (T,)
        Start of each occluded window.
    time_groups : list of str
        ``"all rows"`` then each row name (rows of ``time_proba``).
    time_proba : ndarray (G, T, C)
    band_names : list of str
    band_groups : list of str
        Modalities with waveform rows, then each waveform row.
    band_proba : ndarray (Gb, Nb, C)
    modality_names : list of str
    modality_proba : ndarray (M, C)
    elapsed_s : float
    """

    target: int
    baseline: np.ndarray
    fill: str
    window_s: float
    step_s: float
    time_starts_s: np.ndarray
    time_groups: list[str]
    time_proba: np.ndarray
    band_names: list[str]
    band_groups: list[str]
    band_proba: np.ndarray
    modality_names: list[str]
    modality_proba: np.ndarray
    elapsed_s: float = 0.0

    def _drop(self, proba: np.ndarray) -> np.ndarray:
        return self.baseline[self.target] - proba[..., self.target]

    @property
    def time_drop(self) -> np.ndarray:
        """``(G, T)`` drop of the target probability per group and window."""
        return self._drop(self.time_proba)

    @property
    def band_drop(self) -> np.ndarray:
        """``(Gb, Nb)`` drop per group and band."""
        return self._drop(self.band_proba)

    @property
    def modality_drop(self) -> np.ndarray:
        """``(M,)`` drop per modality."""
        return self._drop(self.modality_proba)

    def to_dict(self) -> dict:
        """JSON-ready numbers."""
        return {
            "target": CLASS_NAMES[self.target], "fill": self.fill,
            "baseline": dict(zip(CLASS_NAMES, self.baseline.tolist())),
            "window_s": self.window_s, "step_s": self.step_s,
            "time_starts_s": self.time_starts_s.tolist(),
            "time_drop": {g: d.tolist() for g, d in zip(self.time_groups, self.time_drop)},
            "band_drop": {g: dict(zip(self.band_names, d.tolist()))
                          for g, d in zip(self.band_groups, self.band_drop)},
            "modality_drop": dict(zip(self.modality_names, self.modality_drop.tolist())),
            "modality_argmax": {m: CLASS_NAMES[int(p.argmax())]
                                for m, p in zip(self.modality_names, self.modality_proba)},
            "elapsed_s": self.elapsed_s,
        }


def occlusion_analysis(
    epoch: np.ndarray, spec: RenderSpec, proba_fn: ProbaFn, *, target: int | None = None,
    before: np.ndarray | None = None, after: np.ndarray | None = None,
    window_s: float = 2.0, step_s: float = 1.0, bands: dict[str, tuple[float, float]] = BANDS,
    per_row: bool = True, fill: str = "zero",
) -> OcclusionResult:
    """Time, band and modality occlusion of one conditioned epoch.

    Parameters
    ----------
    epoch : ndarray (n_rows, spec.epoch_samples)
        The conditioned epoch (row units, model rate), as the renderer takes it.
    spec : RenderSpec
    proba_fn : callable
        Rendered uint8 images ``(B, H, W)`` -> probabilities ``(B, C)``.
    target : int, optional
        Class whose probability drop is reported; default: the baseline argmax.
    before, after : ndarray (n_rows, k), optional
        Conditioned signal just before / after the epoch (filter context for band occlusion).
    window_s, step_s : float
        Time-occlusion window and step (s).
    bands : dict
        Bands to remove (name -> (low, high) Hz).
    per_row : bool
        Also occlude each row alone (time and band), not only all rows / whole modalities.
    fill : {"zero", "gap"}
        Mask value (see module docstring).

    Returns
    -------
    OcclusionResult
    """
    t0 = time.perf_counter()
    epoch = np.asarray(epoch, dtype=np.float64)
    _check_args(epoch, spec, fill, window_s, step_s)
    value = 0.0 if fill == "zero" else np.nan
    starts = np.arange(0.0, spec.epoch_s - window_s + 1e-9, step_s)
    groups = [("all rows", list(range(spec.n_rows)))]
    if per_row:
        groups += [(r.name, [i]) for i, r in enumerate(spec.rows)]
    mods = modalities(spec)
    bgroups, band_variants = _band_variants(epoch, spec, mods, bands, per_row, before, after)
    variants = [epoch, *_time_variants(epoch, spec, groups, starts, window_s, value),
                *band_variants, *_modality_variants(epoch, mods, value)]
    proba = np.asarray(proba_fn(render_epochs(np.stack(variants), spec)), dtype=np.float64)
    base, rest = proba[0], proba[1:]
    tgt = int(base.argmax()) if target is None else int(target)
    if not 0 <= tgt < proba.shape[1]:
        raise ValueError(f"target class must be in 0..{proba.shape[1] - 1}, got {target}")
    n_t, n_b = len(groups) * len(starts), len(bgroups) * len(bands)
    return OcclusionResult(
        target=tgt, baseline=base, fill=fill, window_s=float(window_s), step_s=float(step_s),
        time_starts_s=starts, time_groups=[g for g, _ in groups],
        time_proba=rest[:n_t].reshape(len(groups), len(starts), -1),
        band_names=list(bands), band_groups=[g for g, _ in bgroups],
        band_proba=rest[n_t:n_t + n_b].reshape(len(bgroups), len(bands), -1),
        modality_names=list(mods), modality_proba=rest[n_t + n_b:],
        elapsed_s=time.perf_counter() - t0)


def _check_args(
    epoch: np.ndarray, spec: RenderSpec, fill: str, window_s: float, step_s: float
) -> None:
    """Refuse an epoch of the wrong shape, an unknown fill or an impossible window."""
    want = (spec.n_rows, spec.epoch_samples)
    if epoch.shape != want:
        raise ValueError(f"epoch must have shape {want} (n_rows, epoch_samples) for spec "
                         f"{spec.name!r}, got {epoch.shape}")
    if fill not in FILLS:
        raise ValueError(f"fill must be one of {FILLS}, got {fill!r}")
    if not (0 < window_s <= spec.epoch_s and 0 < step_s):
        raise ValueError(f"need 0 < window_s <= {spec.epoch_s} and step_s > 0, got "
                         f"window_s={window_s}, step_s={step_s}")


def _time_variants(
    epoch: np.ndarray,
    spec: RenderSpec,
    groups: list[tuple[str, list[int]]],
    starts: np.ndarray,
    window_s: float,
    value: float,
) -> list[np.ndarray]:
    """Time occlusion: each group's rows masked with ``value`` in each window, group-major."""
    sf = spec.sfreq
    n_win = int(round(window_s * sf))
    variants = []
    for _, rows in groups:
        for s in starts:
            v = epoch.copy()
            i0 = int(round(s * sf))
            v[rows, i0:i0 + n_win] = value
            variants.append(v)
    return variants


def _band_variants(
    epoch: np.ndarray,
    spec: RenderSpec,
    mods: dict[str, list[int]],
    bands: dict[str, tuple[float, float]],
    per_row: bool,
    before: np.ndarray | None,
    after: np.ndarray | None,
) -> tuple[list[tuple[str, list[int]]], list[np.ndarray]]:
    """Band occlusion: the groups (modalities with waveform rows, then waveform rows of
    modalities with several) and, group-major, the epoch with each band removed."""
    wave = band_rows(spec)
    bgroups = [(m, [i for i in rows if i in wave]) for m, rows in mods.items()]
    bgroups = [(m, rows) for m, rows in bgroups if rows]
    if per_row:
        bgroups += [(spec.rows[i].name, [i]) for i in wave
                    if len(mods[modality_of(spec.rows[i])]) > 1]
    filtered = {}
    for name, band in bands.items():
        filtered[name] = remove_band(epoch[wave], band, spec.sfreq, (
            None if before is None else np.asarray(before, dtype=np.float64)[wave],
            None if after is None else np.asarray(after, dtype=np.float64)[wave]))
    nan_rows = np.isnan(epoch)
    variants = []
    for _, rows in bgroups:
        for name in bands:
            v = epoch.copy()
            for i in rows:
                v[i] = filtered[name][wave.index(i)]
            v[nan_rows] = np.nan  # gaps stay gaps
            variants.append(v)
    return bgroups, variants


def _modality_variants(
    epoch: np.ndarray, mods: dict[str, list[int]], value: float
) -> list[np.ndarray]:
    """Modality occlusion: each modality's rows masked with ``value``."""
    variants = []
    for rows in mods.values():
        v = epoch.copy()
        v[rows] = value
        variants.append(v)
    return variants


__all__ = ["BANDS", "BANDSTOP_ORDER", "FILLS", "OcclusionResult", "ProbaFn", "WAVEFORM_TYPES",
           "band_rows", "bandstop_sos", "modalities", "modality_of", "occlusion_analysis",
           "onnx_proba_fn", "remove_band", "torch_proba_fn"]
