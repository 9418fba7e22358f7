"""The EDF/EDF+/BDF header, parsed and checked without MNE, before any sample is read.

:func:`read_edf_header` reads only the header (never the whole file) and refuses what the rest
of the pipeline could not trust, with an error that names the field and the signal:

* the fixed fields: version (EDF ``0`` or BDF ``\\xffBIOSEMI``), header size ``256 * (ns + 1)``,
  number of signals, record duration (finite, > 0 unless every signal is an annotation
  signal), number of data records (``-1`` = unknown: counted from the file size);
* per signal: physical and digital minimum and maximum are numbers, the digital range lies
  within the format (16-bit EDF, 24-bit BDF) with minimum < maximum, the physical range is not
  empty (minimum == maximum would scale every sample to one value), samples per record >= 1;
* the data records against the file size: a file shorter than the header promises is
  truncated (the message counts the whole records present; this covers the annotation
  records of an EDF+ hypnogram too), a longer one has trailing bytes (``extra_bytes``).

Labels and units are decoded as UTF-8 when they are valid UTF-8 (some devices write it,
although EDF asks for ASCII) and as latin-1 otherwise.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import BinaryIO, NamedTuple

#: Most signals a header may declare (a header is 256 bytes per signal).
MAX_SIGNALS = 4096
#: Labels of EDF+/BDF+ annotation signals.
ANNOTATION_LABELS = ("EDF Annotations", "BDF Annotations")
_FIX = "; check that it is an EDF/BDF file and opens in EDFbrowser, or re-export it"


class PsgReadError(ValueError):
    """A PSG file cannot be read or does not fit the spec."""


@dataclass(frozen=True)
class EdfHeader:
    """The fields of an EDF/BDF header needed for validation and reading."""

    n_records: int
    record_s: float
    labels: tuple[str, ...]
    units: tuple[str, ...]
    samples_per_record: tuple[int, ...]
    header_bytes: int
    bytes_per_sample: int
    physical_min: tuple[float, ...] = ()
    physical_max: tuple[float, ...] = ()
    digital_min: tuple[int, ...] = ()
    digital_max: tuple[int, ...] = ()
    file_bytes: int = 0
    n_records_declared: int = 0
    plus: bool = False
    start_time: datetime | None = None

    @property
    def sfreqs(self) -> tuple[float, ...]:
        """Native sampling rate of each signal (Hz; 0 for an annotation-only file)."""
        if self.record_s <= 0:
            return tuple(0.0 for _ in self.samples_per_record)
        return tuple(n / self.record_s for n in self.samples_per_record)

    @property
    def record_bytes(self) -> int:
        """Bytes of one data record (every signal, annotations included)."""
        return self.bytes_per_sample * sum(self.samples_per_record)

    @property
    def expected_bytes(self) -> int:
        """File size the header promises."""
        return self.header_bytes + self.n_records * self.record_bytes

    @property
    def extra_bytes(self) -> int:
        """Bytes after the last data record (0 for a well-formed file)."""
        return max(0, self.file_bytes - self.expected_bytes) if self.file_bytes else 0

    def is_annotation(self, i: int) -> bool:
        """Whether signal ``i`` is an EDF+/BDF+ annotation signal."""
        return self.labels[i] in ANNOTATION_LABELS


def _text(raw: bytes) -> str:
    """A header text field: UTF-8 when valid, latin-1 otherwise (stripped)."""
    raw = raw.split(b"\x00")[0].strip()
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return raw.decode("latin-1")


def _number(raw: bytes, what: str, name: str, *, integer: bool = False) -> float:
    text = raw.decode("latin-1").strip()
    try:
        value = int(text) if integer else float(text)
    except ValueError:
        raise PsgReadError(f"{name}: corrupt EDF header: {what} is {text!r}, not a number"
                           f"{_FIX}") from None
    if not math.isfinite(value):
        raise PsgReadError(f"{name}: corrupt EDF header: {what} is {text!r}{_FIX}")
    return value


def parse_start_time(head: bytes) -> datetime | None:
    """Recording start from the first 184 bytes of a header, as a naive UTC ``datetime``
    (``None`` if unreadable).

    The EDF+ recording field's ``Startdate dd-MMM-yyyy`` (4-digit year) wins over the
    ``dd.mm.yy`` start date (years 85-99 are 1985-1999, 00-84 are 2000-2084); the time is the
    ``hh.mm.ss`` start time (midnight if unreadable), as MNE reads it.
    """
    rec_info = head[88:168].decode("latin-1").rstrip().split(" ")
    date = None
    if len(rec_info) == 5:
        try:
            date = datetime.strptime(rec_info[1], "%d-%b-%Y")
        except ValueError:
            date = None
    if date is None:
        try:
            day, month, year = (int(x) for x in head[168:176].decode("latin-1").split("."))
            date = datetime(year + 2000 if year < 85 else year + 1900, month, day)
        except ValueError:
            return None
    try:
        hour, minute, second = (int(x) for x in head[176:184].decode("latin-1").split("."))
        return date.replace(hour=hour, minute=minute, second=second, tzinfo=UTC).replace(
            tzinfo=None)
    except ValueError:
        return date


def read_edf_header(path: str | Path, *, check_size: bool = True) -> EdfHeader:
    """Parse and check an EDF/EDF+/BDF header (see the module docstring).

    Parameters
    ----------
    path : path-like
        The file.
    check_size : bool
        Refuse a file shorter than its header promises (a truncated file).

    Raises
    ------
    PsgReadError
        A field that is not a number where one is required, an impossible value, or a
        truncated file; the message names the field (and signal) and the fix.
    FileNotFoundError
        The file does not exist.
    """
    path = Path(path)
    name = path.name
    size = os.stat(path).st_size
    with open(path, "rb") as fh:
        fx = _read_fixed(fh, name, size)
        raw = fh.read(fx.header_bytes - 256)
    sig = _read_signal_fields(raw, fx.ns, name)
    _check_signals(name, sig, fx.dig_limit)
    annotation = [lb in ANNOTATION_LABELS for lb in sig.labels]
    if not fx.record_s >= 0 or (fx.record_s == 0 and not all(annotation)):
        raise PsgReadError(f"{name}: corrupt EDF header: data record duration "
                           f"{fx.record_s:g} s; signals need a positive one{_FIX}")
    record_bytes = fx.bytes_per_sample * sum(sig.spr)
    body = size - fx.header_bytes
    if fx.n_declared == -1:  # unknown (a recording that was not closed): count whole records
        n_records = body // record_bytes
    elif fx.n_declared < 0:
        raise PsgReadError(f"{name}: corrupt EDF header: {fx.n_declared} data records{_FIX}")
    else:
        n_records = fx.n_declared
    header = EdfHeader(
        n_records=n_records, record_s=fx.record_s, labels=sig.labels, units=sig.units,
        samples_per_record=tuple(sig.spr), header_bytes=fx.header_bytes,
        bytes_per_sample=fx.bytes_per_sample, physical_min=tuple(sig.pmin),
        physical_max=tuple(sig.pmax), digital_min=tuple(sig.dmin),
        digital_max=tuple(sig.dmax), file_bytes=size,
        n_records_declared=fx.n_declared, plus=fx.plus, start_time=fx.start_time)
    if n_records == 0:
        raise PsgReadError(f"{name}: the file holds no data record (header says "
                           f"{fx.n_declared}, {body} bytes after the header){_FIX}")
    if check_size and size < header.expected_bytes:
        raise PsgReadError(
            f"{name}: truncated file ({size} bytes, the header promises "
            f"{header.expected_bytes}: {body // record_bytes} of {n_records} data records "
            "present). Copy the file again, or repair the header's record count (e.g. "
            "EDFbrowser's header editor) to read the complete records.")
    return header


class _FixedHeader(NamedTuple):
    """The checked fixed (first 256-byte) part of a header."""

    bytes_per_sample: int
    dig_limit: int
    header_bytes: int
    n_declared: int
    record_s: float
    ns: int
    plus: bool
    start_time: datetime | None


class _SignalFields(NamedTuple):
    """The per-signal header fields, parsed (one entry per signal)."""

    labels: tuple[str, ...]
    units: tuple[str, ...]
    pmin: list[float]
    pmax: list[float]
    dmin: list[int]
    dmax: list[int]
    spr: list[int]


def _read_fixed(fh: BinaryIO, name: str, size: int) -> _FixedHeader:
    """Read and check the fixed header: version, header size, records, duration, signals."""
    fixed = fh.read(256)
    if len(fixed) < 256:
        raise PsgReadError(f"{name}: {len(fixed)} bytes is too short for an EDF header{_FIX}")
    if fixed[:8] == b"\xffBIOSEMI":
        bytes_per_sample, dig_limit = 3, 2 ** 23
    elif fixed[:8] == b"0       ":
        bytes_per_sample, dig_limit = 2, 2 ** 15
    else:
        raise PsgReadError(f"{name}: not an EDF or BDF file (version field "
                           f"{fixed[:8]!r}; EDF starts with '0', BDF with 0xFF 'BIOSEMI')")
    header_bytes = int(_number(fixed[184:192], "the header size", name, integer=True))
    n_declared = int(_number(fixed[236:244], "the number of data records", name,
                             integer=True))
    record_s = _number(fixed[244:252], "the data record duration", name)
    ns = int(_number(fixed[252:256], "the number of signals", name, integer=True))
    if not 1 <= ns <= MAX_SIGNALS:
        raise PsgReadError(f"{name}: corrupt EDF header: {ns} signals (expected 1 to "
                           f"{MAX_SIGNALS}){_FIX}")
    if header_bytes != 256 * (ns + 1):
        raise PsgReadError(f"{name}: corrupt EDF header: header size {header_bytes} bytes, "
                           f"but {ns} signals make it {256 * (ns + 1)}{_FIX}")
    if size < header_bytes:
        raise PsgReadError(f"{name}: truncated inside the header ({size} of "
                           f"{header_bytes} bytes){_FIX}")
    plus = fixed[192:197] in (b"EDF+C", b"EDF+D", b"BDF+C", b"BDF+D")
    return _FixedHeader(bytes_per_sample, dig_limit, header_bytes, n_declared, record_s, ns,
                        plus, parse_start_time(fixed))


def _read_signal_fields(raw: bytes, ns: int, name: str) -> _SignalFields:
    """Parse the per-signal fields (each ``ns`` wide) that follow the fixed header."""

    def fields(offset: int, width: int) -> list[bytes]:
        base = offset * ns
        return [raw[base + i * width: base + (i + 1) * width] for i in range(ns)]

    # Per-signal fields, each ns wide: label 16, transducer 80, unit 8, phys min/max 8+8,
    # dig min/max 8+8, prefilter 80, samples per record 8, reserved 32.
    labels = tuple(_text(b) for b in fields(0, 16))
    units = tuple(_text(b) for b in fields(96, 8))
    cols = {what: fields(off, 8) for what, off in
            (("physical minimum", 104), ("physical maximum", 112), ("digital minimum", 120),
             ("digital maximum", 128), ("samples per record", 216))}

    def per_signal(what: str, integer: bool) -> list[float]:
        return [_number(v, f"the {what} of signal {i + 1} ({labels[i]!r})", name,
                        integer=integer) for i, v in enumerate(cols[what])]

    pmin, pmax = per_signal("physical minimum", False), per_signal("physical maximum", False)
    dmin = [int(v) for v in per_signal("digital minimum", True)]
    dmax = [int(v) for v in per_signal("digital maximum", True)]
    spr = [int(v) for v in per_signal("samples per record", True)]
    return _SignalFields(labels, units, pmin, pmax, dmin, dmax, spr)


def _check_signals(name: str, sig: _SignalFields, dig_limit: int) -> None:
    """Refuse a signal without samples, with an impossible digital range or an empty
    physical range (annotation signals may have one)."""
    for i, lb in enumerate(sig.labels):
        what = f"signal {i + 1} ({lb!r})"
        if sig.spr[i] < 1:
            raise PsgReadError(f"{name}: {what} has {sig.spr[i]} samples per data record; a "
                               f"signal needs at least 1{_FIX}")
        if not (-dig_limit <= sig.dmin[i] < sig.dmax[i] <= dig_limit - 1):
            raise PsgReadError(
                f"{name}: {what} has digital minimum {sig.dmin[i]} and maximum {sig.dmax[i]}; "
                f"they must satisfy {-dig_limit} <= minimum < maximum <= {dig_limit - 1}. The "
                "samples cannot be scaled: fix the header (EDFbrowser's header editor) or "
                "re-export")
        if sig.pmin[i] == sig.pmax[i] and lb not in ANNOTATION_LABELS:
            raise PsgReadError(
                f"{name}: {what} has physical minimum = maximum = {sig.pmin[i]:g}; every "
                "sample would scale to that one value. Fix the header (EDFbrowser's header "
                "editor) or re-export")


__all__ = ["ANNOTATION_LABELS", "MAX_SIGNALS", "EdfHeader", "PsgReadError", "parse_start_time",
           "read_edf_header"]
