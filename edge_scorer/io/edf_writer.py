"""A small EDF/EDF+ writer (16-bit), so simulated nights and hypnograms use real file formats.

Reading goes through MNE (:mod:`edge_scorer.io.psg`); writing is done here because the
Sleep-EDF layout needs exact control: signals at different native rates in one file, and
annotation-only EDF+ hypnogram files like PhysioNet's ``*-Hypnogram.edf``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
#: Per-signal header fields after the label, in header order.
_SIGNAL_FIELDS = ("tr", "unit", "pmin", "pmax", "dmin", "dmax", "pre", "spr")


@dataclass
class EdfSignal:
    """One signal to write.

    Parameters
    ----------
    label : str
        Channel label (at most 16 characters), e.g. ``"EEG Fpz-Cz"``.
    data : ndarray, shape (n_samples,)
        Samples in physical units (``unit``).
    sfreq : float
        Sampling rate in Hz; ``sfreq * record_s`` must be an integer.
    unit : str
        Physical dimension, e.g. ``"uV"``.
    transducer, prefilter : str
        Free-text header fields.
    phys_range : (float, float), optional
        Physical min/max; defaults to the data range (with a small margin).
    """

    label: str
    data: np.ndarray
    sfreq: float
    unit: str = "uV"
    transducer: str = ""
    prefilter: str = ""
    phys_range: tuple[float, float] | None = None


def _field(value: object, width: int) -> bytes:
    text = str(value)
    if len(text) > width:
        raise ValueError(f"EDF header field {text!r} is longer than {width} characters")
    return text.encode("ascii", "replace").ljust(width, b" ")


def _num(value: float, width: int = 8) -> str:
    """Format a number into at most ``width`` characters (EDF header rule)."""
    if float(value).is_integer() and len(str(int(value))) <= width:
        return str(int(value))
    for decimals in range(width, -1, -1):
        text = f"{value:.{decimals}f}"
        if "." in text:
            text = text.rstrip("0").rstrip(".")
        if len(text) <= width:
            return text
    raise ValueError(f"cannot fit {value!r} into an {width}-character EDF header field")


def _outward(value: float, up: bool, width: int = 8) -> float:
    """Round ``value`` away from the data (down for a minimum, up for a maximum) to the most
    precise decimal that fits an EDF header field."""
    for decimals in range(width, -1, -1):
        q = 10.0**-decimals
        v = (math.ceil if up else math.floor)(value / q) * q
        text = f"{v:.{decimals}f}"
        if len(text) <= width:
            return float(text)
    raise ValueError(f"cannot fit {value!r} into an {width}-character EDF header field")


def _tal(onset: float, duration: float | None, texts: Sequence[str]) -> bytes:
    head = f"{onset:+.10g}".encode()
    if duration is not None:
        head += b"\x15" + f"{duration:.10g}".encode()
    return head + b"\x14" + b"".join(t.encode("utf-8") + b"\x14" for t in texts) + b"\x00"


def write_edf(
    path: str | Path,
    signals: Sequence[EdfSignal],
    *,
    start_time: datetime | None = None,
    annotations: Sequence[tuple[float, float, str]] = (),
    record_s: float = 30.0,
    patient: str = "X X X X",
    recording: str | None = None,
    plus: bool = True,
) -> Path:
    """Write an EDF (``plus=False``) or EDF+C file with optional annotations.

    Parameters
    ----------
    path : path-like
        Output file.
    signals : sequence of EdfSignal
        Ordinary signals; may be empty for an annotation-only EDF+ file (a hypnogram).
    start_time : datetime, optional
        Recording start (default 1 Jan 2000, 00:00:00).
    annotations : sequence of (onset_s, duration_s, text)
        EDF+ annotations (requires ``plus=True``).
    record_s : float
        Data-record duration in seconds. With no ordinary signals, one record of duration 0
        is written, as in PhysioNet's Sleep-EDF hypnogram files.

    Returns
    -------
    Path
        The written file.
    """
    path = Path(path)
    start_time = start_time or datetime(2000, 1, 1)
    if annotations and not plus:
        raise ValueError("annotations need EDF+ (plus=True)")
    spr, n_records, duration = _record_layout(signals, record_s)
    ann_records, ann_spr = (
        _annotation_records(n_records, duration, annotations) if plus else ([], 0)
    )
    labels = [s.label for s in signals] + (["EDF Annotations"] if plus else [])
    digital: list[np.ndarray] = []
    hdr_sig: dict[str, list[str]] = {k: [] for k in _SIGNAL_FIELDS}
    for s, k in zip(signals, spr):
        block, fields = _digitise(s, k, n_records)
        digital.append(block)
        for key, val in zip(_SIGNAL_FIELDS, fields):
            hdr_sig[key].append(val)
    if plus:
        for key, val in zip(_SIGNAL_FIELDS, ("", "", "-1", "1", "-32768", "32767", "",
                                              str(ann_spr))):
            hdr_sig[key].append(val)
    if recording is None:
        recording = (
            f"Startdate {start_time.day:02d}-{_MONTHS[start_time.month - 1]}-{start_time.year}"
            " X X X" if plus else "edge-scorer"
        )
    header = _header(patient, recording, start_time, plus, n_records, duration, labels,
                     hdr_sig)
    from edge_scorer.io.outputs import atomic_open

    with atomic_open(path, "wb") as f:
        f.write(header)
        for r in range(n_records):
            for d in digital:
                f.write(d[r].tobytes())
            if plus:
                f.write(ann_records[r].ljust(2 * ann_spr, b"\x00"))
    return path


def _record_layout(
    signals: Sequence[EdfSignal], record_s: float
) -> tuple[list[int], int, float]:
    """Samples per record of each signal, the number of records and the record duration.

    With no ordinary signals: one record of duration 0 (an annotation-only file).
    """
    if not signals:
        return [], 1, 0.0
    spr = []
    for s in signals:
        n = s.sfreq * record_s
        if abs(n - round(n)) > 1e-9:
            raise ValueError(f"{s.label}: sfreq*record_s = {n} is not an integer")
        spr.append(int(round(n)))
    n_records = max(math.ceil(len(s.data) / k) for s, k in zip(signals, spr))
    return spr, n_records, record_s


def _annotation_records(
    n_records: int, duration: float, annotations: Sequence[tuple[float, float, str]]
) -> tuple[list[bytes], int]:
    """The annotation channel's bytes per record and its samples per record.

    The first TAL of each record keeps time; all annotations go into record 0 (plenty of room
    is reserved there), later records only carry their time-keeping TAL.
    """
    ann_records: list[bytes] = []
    for r in range(n_records):
        tal = _tal(r * duration, None, [""])
        if r == 0:
            tal += b"".join(_tal(on, du, [txt]) for on, du, txt in annotations)
        ann_records.append(tal)
    ann_bytes = max(len(b) for b in ann_records)
    return ann_records, (ann_bytes + 1) // 2 + 1


def _digitise(s: EdfSignal, k: int, n_records: int) -> tuple[np.ndarray, tuple[str, ...]]:
    """One signal as 16-bit records, shape (n_records, k), and its header fields.

    The fields are in :data:`_SIGNAL_FIELDS` order.
    """
    data = np.asarray(s.data, dtype=np.float64)
    if not np.all(np.isfinite(data)):
        raise ValueError(f"{s.label}: EDF cannot store NaN/inf samples")
    if s.phys_range is not None:
        pmin, pmax = map(float, s.phys_range)
    else:
        lo, hi = (float(data.min()), float(data.max())) if data.size else (-1.0, 1.0)
        margin = max(1e-6, 0.01 * (hi - lo))
        pmin, pmax = _outward(lo - margin, up=False), _outward(hi + margin, up=True)
    # digitise with exactly the values the header will carry
    pmin, pmax = float(_num(pmin)), float(_num(pmax))
    if pmax <= pmin:
        pmax = pmin + 1.0
    scale = (pmax - pmin) / 65535.0
    dig = np.round((np.clip(data, pmin, pmax) - pmin) / scale - 32768.0)
    dig = np.clip(dig, -32768, 32767).astype("<i2")
    padded = np.zeros(n_records * k, dtype="<i2")
    padded[: len(dig)] = dig
    fields = (s.transducer, s.unit, _num(pmin), _num(pmax), "-32768", "32767", s.prefilter,
              str(k))
    return padded.reshape(n_records, k), fields


def _header(
    patient: str,
    recording: str,
    start_time: datetime,
    plus: bool,
    n_records: int,
    duration: float,
    labels: Sequence[str],
    hdr_sig: dict[str, list[str]],
) -> bytes:
    """The EDF header: the fixed 256 bytes, then 256 bytes per signal."""
    ns = len(labels)
    header = b"".join([
        _field("0", 8), _field(patient, 80), _field(recording, 80),
        _field(start_time.strftime("%d.%m.%y"), 8), _field(start_time.strftime("%H.%M.%S"), 8),
        _field(256 * (ns + 1), 8), _field("EDF+C" if plus else "", 44),
        _field(n_records, 8), _field(_num(duration), 8), _field(ns, 4),
        b"".join(_field(lb, 16) for lb in labels),
        b"".join(_field(v, 80) for v in hdr_sig["tr"]),
        b"".join(_field(v, 8) for v in hdr_sig["unit"]),
        b"".join(_field(v, 8) for v in hdr_sig["pmin"]),
        b"".join(_field(v, 8) for v in hdr_sig["pmax"]),
        b"".join(_field(v, 8) for v in hdr_sig["dmin"]),
        b"".join(_field(v, 8) for v in hdr_sig["dmax"]),
        b"".join(_field(v, 80) for v in hdr_sig["pre"]),
        b"".join(_field(v, 8) for v in hdr_sig["spr"]),
        b" " * (32 * ns),
    ])
    if len(header) != 256 * (ns + 1):
        raise RuntimeError("internal error: EDF header has the wrong size")
    return header
