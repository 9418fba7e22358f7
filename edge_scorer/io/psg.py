"""Read PSG files (EDF, EDF+, BDF) into the rows of a spec, with validation.

Only the signals the spec's rows need are read, each at the rate it was recorded
(:mod:`edge_scorer.io.edf_reader`, no MNE).

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
from datetime import datetime
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.io.edf_header import EdfHeader, PsgReadError, read_edf_header
from edge_scorer.io.edf_reader import read_signals
from edge_scorer.io.montage import map_channels
from edge_scorer.io.spec import RenderSpec, RowSpec, load_spec
from edge_scorer.stages import Stage
from edge_scorer.stats.hypnogram import Hypnogram

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
    """The spec rows of one PSG recording, in the rows' physical units, at their own rates.

    Attributes
    ----------
    rows : tuple of ndarray
        Signals in spec row order and row units (e.g. uV), each at the rate it was recorded
        (``native_sfreqs``), all covering the same ``duration_s``.
    row_names, source_labels : tuple of str
        Spec rows, and the file channel used for each.
    native_sfreqs : tuple of float
        Rate of each row (Hz).
    start_time : datetime or None
        Recording start from the header.
    path : Path or None
        Source file.
    warnings : list of str
        Problems found and handled (unit corrected, flat channel, ...).
    """

    rows: tuple[np.ndarray, ...]
    row_names: tuple[str, ...]
    source_labels: tuple[str, ...]
    native_sfreqs: tuple[float, ...]
    start_time: datetime | None = None
    path: Path | None = None
    warnings: list[str] = field(default_factory=list)

    @property
    def sfreq(self) -> float:
        """The highest row rate (Hz): the rate of :attr:`data`."""
        return max(self.native_sfreqs)

    @property
    def duration_s(self) -> float:
        """Length of the recording in seconds."""
        return self.rows[0].size / self.native_sfreqs[0]

    @property
    def n_samples(self) -> int:
        """Samples per row at :attr:`sfreq`."""
        return int(round(self.duration_s * self.sfreq))

    @property
    def data(self) -> np.ndarray:
        """Every row at :attr:`sfreq` (n_rows, n_samples), for inspection and plots.

        A slower row is brought up by holding each sample for its period (integer rate
        ratios) or by linear interpolation; the pipeline itself never uses this: it
        conditions :meth:`native_rows`, as a live stream arrives.
        """
        n = self.n_samples
        out = np.empty((len(self.rows), n))
        for k, (x, fs) in enumerate(zip(self.rows, self.native_sfreqs)):
            ratio = self.sfreq / fs
            if abs(ratio - round(ratio)) < 1e-9:
                out[k] = np.repeat(x, int(round(ratio)))[:n]
            else:
                out[k] = np.interp(np.arange(n) / self.sfreq, np.arange(x.size) / fs, x)
        return out

    def native_rows(self) -> tuple[list[np.ndarray], list[float]]:
        """Each row at the rate it was recorded (as a live device would stream it).

        Returns
        -------
        rows : list of ndarray
            One array per row.
        sfreqs : list of float
            The rate of each returned row.
        """
        return list(self.rows), [float(fs) for fs in self.native_sfreqs]


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
    """Convert samples in the file's unit to the row unit, checking the amplitude."""
    unit = orig_unit.strip().casefold().replace("micro", "u")
    is_volt = unit in _VOLT_SCALE
    if row.unit.casefold() == "uv":
        if is_volt:
            if _VOLT_SCALE[unit] != 1e-6:
                x = x * (_VOLT_SCALE[unit] / 1e-6)
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
    index = _pick_channels(path, spec, header, channel_overrides)
    picked = [header.labels[i] for i in index]
    rows = [_row_samples(path, x, row, header.labels[i], header.units[i], messages)
            for row, i, x in zip(spec.rows, index, read_signals(path, header, index))]
    if all(np.ptp(r) == 0 for r in rows):
        raise PsgReadError(
            f"{path.name}: no usable channel: every row of spec {spec.name!r} is flat "
            f"({', '.join(picked)}). Check the recording or map other channels with --channel."
        )
    return PsgRecording(
        rows=tuple(rows), row_names=spec.row_names, source_labels=tuple(picked),
        native_sfreqs=tuple(float(header.sfreqs[i]) for i in index),
        start_time=header.start_time, path=path, warnings=messages,
    )


def _pick_channels(
    path: Path,
    spec: RenderSpec,
    header: EdfHeader,
    channel_overrides: Mapping[str, str] | None,
) -> list[int]:
    """The file signal of each spec row (its position in the header), checked against the
    row's minimum rate."""
    signals = [i for i in range(len(header.labels)) if not header.is_annotation(i)]
    labels = [header.labels[i] for i in signals]
    index = [signals[k] for k in map_channels(labels, spec, channel_overrides,
                                               source=path.name)]
    for row, i in zip(spec.rows, index):
        if header.sfreqs[i] < row.min_sfreq:
            raise PsgReadError(
                f"{path.name}: channel {header.labels[i]!r} for row {row.name!r} is recorded "
                f"at {header.sfreqs[i]:g} Hz; the {row.type} row needs at least "
                f"{row.min_sfreq:g} Hz. Map a channel recorded at a higher rate with "
                "--channel, or use another spec."
            )
    return index


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
