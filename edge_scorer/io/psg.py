"""Read PSG files (EDF, EDF+, BDF) through MNE into the rows of a spec, with validation.

Every problem gets a clear message that names it and the fix: a missing or corrupt file, a
corrupt header field or a truncated file (:mod:`edge_scorer.io.edf_header`), no channel for a row
(lists what the file has), a channel recorded below the row's minimum rate, a wrong unit
guessed from amplitude (factors of 1e3 and 1e6: microvolts labelled mV or V, millivolts or
volts labelled uV), flat channels, and a hypnogram longer or shorter than the signal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.io.edf_header import EdfHeader, PsgReadError, read_edf_header
from edge_scorer.io.montage import map_channels
from edge_scorer.io.spec import RenderSpec, RowSpec, load_spec
from edge_scorer.stages import Stage
from edge_scorer.stats.hypnogram import Hypnogram

if TYPE_CHECKING:
    import mne

log = get_logger("psg")

_VOLT_SCALE = {"v": 1.0, "mv": 1e-3, "uv": 1e-6, "µv": 1e-6, "μv": 1e-6, "nv": 1e-9}
#: Plausible typical amplitude (uV) per row type: the median absolute deviation, or for the
#: EMG envelope (a level, not an oscillation) the median absolute value. A row outside its
#: range by a factor of 1e3 or 1e6 has the wrong unit in the file (microvolts labelled mV or V,
#: millivolts or volts labelled uV): it is rescaled, with a warning naming the factor.
PLAUSIBLE_UV = {"EEG": (0.3, 1000.0), "EOG": (0.3, 2000.0), "EMG": (0.05, 1000.0),
                "EMG_ENVELOPE": (0.05, 1000.0), "ECG": (2.0, 10_000.0)}
_UNIT_FACTORS = (1e-6, 1e-3, 1e3, 1e6)
_FACTOR_CAUSE = {1e-6: "microvolts labelled as volts", 1e-3: "microvolts labelled as mV",
                 1e3: "millivolts labelled as uV", 1e6: "volts labelled as uV"}


@dataclass
class PsgRecording:
    """The spec rows of one PSG recording, in the rows' physical units.

    Attributes
    ----------
    data : ndarray, shape (n_rows, n_samples)
        Signals in spec row order and row units (e.g. uV), at ``sfreq``.
    sfreq : float
        Sampling rate of ``data`` (MNE brings lower-rate channels up to the file's highest rate).
    row_names, source_labels : tuple of str
        Spec rows, and the file channel used for each.
    native_sfreqs : tuple of float
        Rate at which each source channel was recorded.
    start_time : datetime or None
        Recording start from the header.
    path : Path or None
        Source file.
    warnings : list of str
        Problems found and handled (unit corrected, flat channel, ...).
    """

    data: np.ndarray
    sfreq: float
    row_names: tuple[str, ...]
    source_labels: tuple[str, ...]
    native_sfreqs: tuple[float, ...] = ()
    start_time: datetime | None = None
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds."""
        return self.data.shape[1] / self.sfreq

    @property
    def n_samples(self) -> int:
        return self.data.shape[1]

    def native_rows(self) -> tuple[list[np.ndarray], list[float]]:
        """Each row at the rate it was recorded (as a live device would stream it).

        MNE brings lower-rate channels up to the file's highest rate with FFT interpolation;
        where the rate ratio is an integer this takes the samples back at the original
        instants, so a 1-Hz EMG envelope is conditioned exactly as a 1-Hz live stream is.
        Rows with a non-integer ratio stay at ``sfreq``.

        Returns
        -------
        rows : list of ndarray
            One array per row.
        sfreqs : list of float
            The rate of each returned row.
        """
        rows, rates = [], []
        for x, native in zip(self.data, self.native_sfreqs or [self.sfreq] * len(self.data)):
            ratio = self.sfreq / native if native > 0 else 0.0
            if ratio > 1 and abs(ratio - round(ratio)) < 1e-9:
                rows.append(x[:: int(round(ratio))])
                rates.append(float(native))
            else:
                rows.append(x)
                rates.append(self.sfreq)
        return rows, rates


def _warn(messages: list[str], text: str) -> None:
    log.warning("%s", text)
    messages.append(text)


#: At most this many evenly spaced samples estimate a row's typical amplitude (a whole night
#: at 100 Hz is 2.9 M samples; the median of 200 k spread over the night is as telling and
#: about 15x cheaper).
AMPLITUDE_SAMPLES = 200_000


def typical_amplitude(x: np.ndarray, row_type: str) -> float:
    """The amplitude :data:`PLAUSIBLE_UV` bounds: MAD, or median |x| for an EMG envelope
    (over at most :data:`AMPLITUDE_SAMPLES` evenly spaced samples)."""
    if x.size > AMPLITUDE_SAMPLES:
        x = x[:: -(-x.size // AMPLITUDE_SAMPLES)]
    finite = x[np.isfinite(x)]
    if not finite.size:
        return 0.0
    if row_type == "EMG_ENVELOPE":
        return float(np.median(np.abs(finite)))
    return float(np.median(np.abs(finite - np.median(finite))))


def unit_factor(amp: float, row_type: str) -> float | None:
    """The factor (1e-6, 1e-3, 1e3 or 1e6) that brings an implausible amplitude into the row
    type's range (the one nearest the middle of the range); 1.0 when it is plausible; None
    when no factor does (or the row type has no range, or the row is flat)."""
    if row_type not in PLAUSIBLE_UV or not amp > 0:
        return 1.0 if row_type not in PLAUSIBLE_UV or amp == 0 else None
    lo, hi = PLAUSIBLE_UV[row_type]
    if lo <= amp <= hi:
        return 1.0
    centre = math.log10(math.sqrt(lo * hi))
    fits = [f for f in _UNIT_FACTORS if lo <= amp * f <= hi]
    if not fits:
        return None
    return min(fits, key=lambda f: abs(math.log10(amp * f) - centre))


def _to_row_unit(x: np.ndarray, row: RowSpec, orig_unit: str, label: str,
                 messages: list[str]) -> np.ndarray:
    """Convert MNE's data (SI volts for voltage channels) to the row unit, checking amplitude."""
    unit = orig_unit.strip().casefold().replace("micro", "u")
    is_volt = unit in _VOLT_SCALE
    if row.unit.casefold() == "uv":
        if is_volt:
            x = x * 1e6  # MNE scaled to volts
        elif unit not in ("", "n/a"):
            raise PsgReadError(
                f"channel {label!r} for row {row.name!r} has unit {orig_unit!r}, "
                "not a voltage; map a voltage channel to this row with --channel"
            )
        else:
            _warn(messages, f"channel {label!r} has no unit in the file; assuming uV")
        if row.type in PLAUSIBLE_UV and x.size:
            amp = typical_amplitude(x, row.type)
            factor = unit_factor(amp, row.type)
            lo, hi = PLAUSIBLE_UV[row.type]
            if factor is None:
                _warn(messages, (
                    f"channel {label!r}: typical amplitude {amp:.3g} uV is implausible for "
                    f"{row.type} (expected {lo:g} to {hi:g} uV) and no unit factor explains "
                    f"it; check the recording and its unit '{orig_unit}'"))
            elif factor != 1.0:
                _warn(messages, (
                    f"channel {label!r}: typical amplitude {amp:.3g} uV is implausible for "
                    f"{row.type} (expected {lo:g} to {hi:g} uV); the file probably stores "
                    f"{_FACTOR_CAUSE[factor]} (unit '{orig_unit}'). Multiplied by {factor:g}; "
                    "fix the physical dimension in the file to silence this."))
                x = x * factor
    elif is_volt:
        # A non-uV row fed by a voltage channel: give back the file's own numbers.
        x = x / _VOLT_SCALE[unit]
    return x


def read_psg(
    path: str | Path,
    spec: RenderSpec | str = "sleep-edf",
    channel_overrides: Mapping[str, str] | None = None,
) -> PsgRecording:
    """Read the spec rows of an EDF/EDF+/BDF file.

    Parameters
    ----------
    path : path-like
        The PSG file.
    spec : RenderSpec or str
        Spec (or shipped spec name) whose rows are read.
    channel_overrides : mapping, optional
        ``{row name: file channel label}`` (the ``--channel ROW=LABEL`` option).

    Returns
    -------
    PsgRecording

    Raises
    ------
    FileNotFoundError
        The file does not exist.
    PsgReadError
        Corrupt or truncated file, no channel for a row (the message lists the file's
        channels), a channel recorded below the row's minimum rate, a non-voltage channel
        for a voltage row, NaNs, or every row flat.
    """
    path = Path(path)
    spec = load_spec(spec) if isinstance(spec, str) else spec
    if not path.is_file():
        raise FileNotFoundError(f"PSG file not found: {path}")
    if path.suffix.lower() not in (".edf", ".bdf", ".rec"):
        raise PsgReadError(f"{path.name}: expected an .edf or .bdf file (EDF, EDF+ or BDF)")
    header = read_edf_header(path)  # checks every field and the size (truncated files)
    messages: list[str] = []
    if header.extra_bytes:
        _warn(messages, f"{path.name}: {header.extra_bytes} bytes after the last of the "
                        f"{header.n_records} data records the header declares; ignored")
    picked, mne_name, units, native = _pick_channels(path, spec, header, channel_overrides)
    raw = _read_mne(path, header, sorted({mne_name[lb] for lb in picked}))
    orig_units = getattr(raw, "_orig_units", {}) or {}
    rows = []
    for row, lb in zip(spec.rows, picked):
        x = raw.get_data(picks=[raw.ch_names.index(mne_name[lb])])[0].astype(np.float64)
        rows.append(_row_samples(path, x, row, lb, units[lb] or orig_units.get(mne_name[lb], ""),
                                 messages))
    data = np.vstack(rows) if rows else np.zeros((0, 0))
    if all(np.ptp(r) == 0 for r in rows):
        raise PsgReadError(
            f"{path.name}: no usable channel: every row of spec {spec.name!r} is flat "
            f"({', '.join(picked)}). Check the recording or map other channels with --channel."
        )
    meas = raw.info.get("meas_date")
    start = meas.astimezone(UTC).replace(tzinfo=None) if meas else None
    return PsgRecording(
        data=data, sfreq=float(raw.info["sfreq"]), row_names=spec.row_names,
        source_labels=tuple(picked), native_sfreqs=tuple(native[lb] for lb in picked),
        start_time=start, path=path, warnings=messages,
    )


def _pick_channels(
    path: Path,
    spec: RenderSpec,
    header: EdfHeader,
    channel_overrides: Mapping[str, str] | None,
) -> tuple[list[str], dict[str, str], dict[str, str], dict[str, float]]:
    """The file channel of each spec row, checked against the row's minimum rate.

    Returns
    -------
    picked : list of str
        The file label of each row.
    mne_name, units, native : dict
        By file label: MNE's (latin-1) name, the header unit, the native rate.
    """
    # Pick only the rows' channels so other high-rate channels do not set the rate.
    signals = [i for i in range(len(header.labels)) if not header.is_annotation(i)]
    labels = [header.labels[i] for i in signals]
    idx = map_channels(labels, spec, channel_overrides, source=path.name)
    picked = [labels[i] for i in idx]
    # MNE decodes labels as latin-1: pick by position, whatever the labels' encoding
    mne_name = {header.labels[i]: header.mne_labels[i] for i in signals}
    units = {header.labels[i]: header.units[i] for i in signals}
    native = {lb: fs for lb, fs in zip(header.labels, header.sfreqs)}
    for row, lb in zip(spec.rows, picked):
        if native[lb] < row.min_sfreq:
            raise PsgReadError(
                f"{path.name}: channel {lb!r} for row {row.name!r} is recorded at "
                f"{native[lb]:g} Hz; the {row.type} row needs at least {row.min_sfreq:g} Hz. "
                "Map a channel recorded at a higher rate with --channel, or use another spec."
            )
    return picked, mne_name, units, native


def _read_mne(path: Path, header: EdfHeader, include: list[str]) -> mne.io.BaseRaw:
    """Read the ``include`` channels through MNE; any MNE failure is a :class:`PsgReadError`."""
    import mne

    reader = mne.io.read_raw_bdf if header.bytes_per_sample == 3 else mne.io.read_raw_edf
    try:
        return reader(path, include=include, preload=True, verbose="error")
    except Exception as exc:  # MNE raises many types for broken files
        raise PsgReadError(
            f"{path.name}: MNE cannot read the file ({type(exc).__name__}: {exc}); it is "
            "corrupt or not EDF/BDF. Check that it opens in EDFbrowser, or re-export it."
        ) from exc


def _row_samples(
    path: Path, x: np.ndarray, row: RowSpec, label: str, unit: str, messages: list[str]
) -> np.ndarray:
    """One row's samples: refuse NaN/inf, convert to the row unit, warn about a flat channel."""
    if not np.all(np.isfinite(x)):
        raise PsgReadError(f"{path.name}: channel {label!r} contains NaN or infinite samples")
    x = _to_row_unit(x, row, unit, label, messages)
    if x.size and float(np.ptp(x)) == 0.0:
        _warn(messages, (
            f"channel {label!r} (row {row.name!r}) is flat (constant {x[0]:.3g} {row.unit}): "
            "electrode off or not recorded; its band will be drawn as a flat line"
        ))
    return x


def align_hypnogram(
    hyp: Hypnogram | str | Path, duration_s: float, *, epoch_s: float = 30.0,
    warnings: list[str] | None = None,
) -> Hypnogram:
    """Return the hypnogram laid on the signal's epoch grid (epoch 0 starts at sample 0).

    ``hyp`` is a :class:`Hypnogram` or a file :func:`~edge_scorer.io.hypnogram_io.read_hypnogram`
    reads (read with ``epoch_s``).

    Epochs of the hypnogram before the recording start or after its end are dropped (warned);
    signal epochs the hypnogram does not cover become UNSCORED (warned). Hypnograms whose
    onsets are off the 30-s grid of the signal are refused.

    Raises
    ------
    ValueError
        When the epoch lengths differ or the onset is not a whole number of epochs.
    """
    if not isinstance(hyp, Hypnogram):
        from edge_scorer.io.hypnogram_io import read_hypnogram

        hyp = read_hypnogram(hyp, epoch_s=epoch_s)
    messages = warnings if warnings is not None else []
    if hyp.epoch_s != epoch_s:
        raise ValueError(
            f"hypnogram epochs are {hyp.epoch_s:g} s but the signal is scored in {epoch_s:g}-s "
            "epochs; convert the hypnogram first"
        )
    n_sig = int(math.floor(duration_s / epoch_s + 1e-9))
    shift = hyp.onset_s / epoch_s
    if abs(shift - round(shift)) > 1e-6:
        raise ValueError(
            f"hypnogram starts {hyp.onset_s:g} s after the recording start, which is not a "
            f"multiple of {epoch_s:g} s; its epochs do not line up with the signal's"
        )
    shift = int(round(shift))
    out = np.full(n_sig, Stage.UNSCORED, dtype=np.int8)
    src = np.arange(hyp.n_epochs) + shift
    keep = (src >= 0) & (src < n_sig)
    out[src[keep]] = hyp.stages[keep]
    dropped = int((~keep).sum())
    if dropped:
        extra = hyp.stages[~keep]
        scored = int((extra != Stage.UNSCORED).sum())
        _warn(messages, (
            f"hypnogram covers {dropped} epoch(s) outside the {duration_s / 3600:.2f}-h "
            f"signal ({scored} of them scored); they were dropped"
        ))
    uncovered = n_sig - int(keep.sum())
    if uncovered:
        _warn(messages, (
            f"hypnogram covers only {int(keep.sum())} of the signal's {n_sig} epochs; the other "
            f"{uncovered} are marked unscored"
        ))
    proba = None
    if hyp.probabilities is not None:
        proba = np.zeros((n_sig, hyp.probabilities.shape[1]), dtype=np.float32)
        proba[src[keep]] = hyp.probabilities[keep]
    return Hypnogram(out, epoch_s, 0.0, hyp.start_time, proba, dict(hyp.meta))


__all__ = ["PLAUSIBLE_UV", "EdfHeader", "PsgReadError", "PsgRecording", "align_hypnogram",
           "read_edf_header", "read_psg", "typical_amplitude", "unit_factor"]
