"""Read PSG files (EDF, EDF+, BDF) through MNE into the rows of a spec, with validation.

Every problem gets a clear message that names it and the fix: a missing or corrupt file, a
truncated file, no channel for a row (lists what the file has), a channel recorded below the
row's minimum rate, a wrong unit guessed from amplitude (volts vs microvolts), flat channels,
and a hypnogram longer or shorter than the signal.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from ._log import get_logger
from .hypnogram import Hypnogram
from .montage import map_channels
from .spec import RenderSpec, RowSpec, load_spec
from .stages import Stage

log = get_logger("psg")

_VOLT_SCALE = {"v": 1.0, "mv": 1e-3, "uv": 1e-6, "µv": 1e-6, "μv": 1e-6, "nv": 1e-9}
#: Typical robust amplitude (median absolute deviation, uV) of biosignal rows; values far
#: outside [_UV_LOW, _UV_HIGH] mean the unit in the file is wrong by a factor 1e6.
_UV_LOW, _UV_HIGH = 0.02, 20_000.0
_BIOSIGNAL_TYPES = {"EEG", "EOG", "EMG", "EMG_ENVELOPE", "ECG"}


class PsgReadError(ValueError):
    """A PSG file cannot be read or does not fit the spec."""


@dataclass(frozen=True)
class EdfHeader:
    """The parts of an EDF/BDF header needed for validation (parsed without MNE)."""

    n_records: int
    record_s: float
    labels: tuple[str, ...]
    units: tuple[str, ...]
    samples_per_record: tuple[int, ...]
    header_bytes: int
    bytes_per_sample: int

    @property
    def sfreqs(self) -> tuple[float, ...]:
        """Native sampling rate of each signal (Hz)."""
        if self.record_s <= 0:
            return tuple(0.0 for _ in self.samples_per_record)
        return tuple(n / self.record_s for n in self.samples_per_record)

    @property
    def expected_bytes(self) -> int:
        """File size the header promises."""
        return self.header_bytes + self.n_records * self.bytes_per_sample * sum(
            self.samples_per_record
        )


def read_edf_header(path: str | Path) -> EdfHeader:
    """Parse the fixed EDF/BDF header fields.

    Raises
    ------
    PsgReadError
        When the file is too short or its header fields are not numbers where EDF requires them.
    """
    path = Path(path)
    raw = path.read_bytes()[: 256 * 513]
    fix = "; check that it is an EDF/BDF file and opens in EDFbrowser, or re-export it"
    if len(raw) < 256:
        raise PsgReadError(f"{path.name}: {len(raw)} bytes is too short for an EDF header{fix}")
    bdf = raw[:1] == b"\xff"
    try:
        header_bytes = int(raw[184:192].decode("ascii").strip())
        n_records = int(raw[236:244].decode("ascii").strip())
        record_s = float(raw[244:252].decode("ascii").strip())
        ns = int(raw[252:256].decode("ascii").strip())
    except (UnicodeDecodeError, ValueError):
        raise PsgReadError(
            f"{path.name}: corrupt EDF header (non-numeric size fields){fix}"
        ) from None
    if ns <= 0 or header_bytes != 256 * (ns + 1) or len(raw) < header_bytes:
        raise PsgReadError(
            f"{path.name}: corrupt EDF header ({ns} signals, header size {header_bytes} bytes, "
            f"file has {len(raw)} bytes){fix}"
        )

    def fields(offset: int, width: int) -> list[str]:
        base = 256 + offset * ns
        return [raw[base + i * width: base + (i + 1) * width].decode("latin-1").strip()
                for i in range(ns)]

    # Per-signal fields, each ns wide: label 16, transducer 80, unit 8, phys min/max 8+8,
    # dig min/max 8+8, prefilter 80, samples per record 8.
    labels = fields(0, 16)
    units_ = fields(96, 8)
    spr_off = 256 + ns * (16 + 80 + 8 * 5 + 80)
    try:
        spr = [int(raw[spr_off + i * 8: spr_off + (i + 1) * 8].decode("ascii").strip())
               for i in range(ns)]
    except ValueError:
        raise PsgReadError(f"{path.name}: corrupt EDF header (samples per record){fix}") from None
    return EdfHeader(n_records, record_s, tuple(labels), tuple(units_), tuple(spr), header_bytes,
                     3 if bdf else 2)


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
        if row.type in _BIOSIGNAL_TYPES and x.size:
            finite = x[np.isfinite(x)]
            amp = float(np.median(np.abs(finite - np.median(finite)))) if finite.size else 0.0
            if 0 < amp < _UV_LOW:
                _warn(messages, (
                    f"channel {label!r}: typical amplitude {amp:.3g} uV is far too small for "
                    f"{row.type}; the file probably stores volts labelled as '{orig_unit}'. "
                    "Multiplied by 1e6; fix the physical dimension in the file to silence this."
                ))
                x = x * 1e6
            elif amp > _UV_HIGH:
                _warn(messages, (
                    f"channel {label!r}: typical amplitude {amp:.3g} uV is far too large for "
                    f"{row.type}; the file probably stores microvolts labelled as "
                    f"'{orig_unit}'. Divided by 1e6; fix the physical dimension in the file."
                ))
                x = x / 1e6
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
    import mne

    path = Path(path)
    spec = load_spec(spec) if isinstance(spec, str) else spec
    if not path.is_file():
        raise FileNotFoundError(f"PSG file not found: {path}")
    if path.suffix.lower() not in (".edf", ".bdf", ".rec"):
        raise PsgReadError(f"{path.name}: expected an .edf or .bdf file (EDF, EDF+ or BDF)")
    header = read_edf_header(path)
    messages: list[str] = []
    size = path.stat().st_size
    if header.n_records > 0 and size < header.expected_bytes:
        record_bytes = header.bytes_per_sample * sum(header.samples_per_record)
        complete = (size - header.header_bytes) // max(record_bytes, 1)
        raise PsgReadError(
            f"{path.name}: truncated file ({size} bytes, the header promises "
            f"{header.expected_bytes}: {complete} of {header.n_records} data records present). "
            "Copy the file again, or repair the header's record count (e.g. EDFbrowser's "
            "header editor) to read the complete records."
        )
    # Pick only the rows' channels so other high-rate channels do not set the rate.
    labels = [lb for lb in header.labels if lb != "EDF Annotations"]
    idx = map_channels(labels, spec, channel_overrides, source=path.name)
    picked = [labels[i] for i in idx]
    native = {lb: fs for lb, fs in zip(header.labels, header.sfreqs)}
    for row, lb in zip(spec.rows, picked):
        if native[lb] < row.min_sfreq:
            raise PsgReadError(
                f"{path.name}: channel {lb!r} for row {row.name!r} is recorded at "
                f"{native[lb]:g} Hz; the {row.type} row needs at least {row.min_sfreq:g} Hz. "
                "Map a channel recorded at a higher rate with --channel, or use another spec."
            )
    reader = mne.io.read_raw_bdf if header.bytes_per_sample == 3 else mne.io.read_raw_edf
    try:
        raw = reader(path, include=sorted(set(picked)), preload=True, verbose="error")
    except Exception as exc:  # MNE raises many types for broken files
        raise PsgReadError(
            f"{path.name}: MNE cannot read the file ({type(exc).__name__}: {exc}); it is "
            "corrupt or not EDF/BDF. Check that it opens in EDFbrowser, or re-export it."
        ) from exc
    orig_units = getattr(raw, "_orig_units", {}) or {}
    rows = []
    for row, lb in zip(spec.rows, picked):
        x = raw.get_data(picks=[raw.ch_names.index(lb)])[0].astype(np.float64)
        if not np.all(np.isfinite(x)):
            raise PsgReadError(f"{path.name}: channel {lb!r} contains NaN or infinite samples")
        x = _to_row_unit(x, row, orig_units.get(lb, header.units[header.labels.index(lb)]),
                         lb, messages)
        if x.size and float(np.ptp(x)) == 0.0:
            _warn(messages, (
                f"channel {lb!r} (row {row.name!r}) is flat (constant {x[0]:.3g} {row.unit}): "
                "electrode off or not recorded; its band will be drawn as a flat line"
            ))
        rows.append(x)
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


def align_hypnogram(
    hyp: Hypnogram | str | Path, duration_s: float, *, epoch_s: float = 30.0,
    warnings: list[str] | None = None,
) -> Hypnogram:
    """Return the hypnogram laid on the signal's epoch grid (epoch 0 starts at sample 0).

    ``hyp`` is a :class:`Hypnogram` or a file :func:`~edge_scorer.hypnogram_io.read_hypnogram`
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
        from .hypnogram_io import read_hypnogram

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
