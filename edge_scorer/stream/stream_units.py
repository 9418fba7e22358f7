"""Units of live streams: read them from the stream description, convert, check amplitudes.

A stream's description says in what unit each channel is sent, in one of the forms the LSL
ecosystem uses: XDF ``unit`` strings (``V``, ``mV``, ``uV``, ``µV``, ``μV``, ``microvolts``,
``millivolts``, ``volts``, ``nV``) or the integer codes MNE-LSL writes (``"0"``, ``"-3"``,
``"-6"``: the power of ten of the SI unit, so ``"0"`` is volts and ``"-6"`` microvolts for a
voltage channel; ``none``: no unit). :func:`row_scales` turns them into the factor that brings
each row to the spec's unit (microvolts for EEG, EOG and EMG); ``--units`` overrides them
(``--units uV`` for every voltage row, or ``--units 'EEG Fpz-Cz=mV'`` for one row). A voltage
row without a unit is taken to be in the spec's unit, as before.

:class:`AmplitudeGuard` then checks the converted samples as the file path does
(:data:`~edge_scorer.io.psg.PLAUSIBLE_UV`, :func:`~edge_scorer.io.psg.unit_factor`): on the first
:data:`CHECK_S` seconds of each row, a typical amplitude off by a factor of 1e3 or 1e6 (volts
read as microvolts: everything looks flat; or the reverse) refuses the stream with
:class:`StreamUnitError`, naming the row, the amplitude, the probable cause and the fix,
unless ``--units`` set that row's unit (then it is a warning). Afterwards every epoch of every
row whose amplitude is outside the plausible range is flagged (:attr:`AmplitudeGuard.flags`,
written to ``run.json``) and warned about.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.io.psg import _FACTOR_CAUSE, PLAUSIBLE_UV, typical_amplitude, unit_factor
from edge_scorer.io.spec import RenderSpec

log = get_logger("stream_units")

#: Seconds of each row checked before scoring goes on (a refusal comes before epoch 0 ends).
CHECK_S = 10.0
#: Volts per unit of the voltage units streams use.
VOLT_UNITS: dict[str, float] = {
    "v": 1.0, "volt": 1.0, "volts": 1.0, "mv": 1e-3, "millivolt": 1e-3, "millivolts": 1e-3,
    "uv": 1e-6, "µv": 1e-6, "μv": 1e-6, "microvolt": 1e-6, "microvolts": 1e-6,
    "nv": 1e-9, "nanovolt": 1e-9, "nanovolts": 1e-9}
#: Unit strings that say nothing.
NO_UNIT = ("", "none", "n/a", "na", "unknown", "a.u.", "au")


class StreamUnitError(ValueError):
    """A stream whose amplitudes are off by a unit factor (the message names the fix)."""


def volts_per_unit(text: str | None) -> float | None:
    """Volts per unit of a stream's unit string (None: no unit, or not a voltage).

    Accepts the XDF spellings and MNE-LSL's integer codes (power of ten of the SI unit).

    Raises
    ------
    ValueError
        A code that is not a power of ten a signal could be sent in (|code| > 12).
    """
    if text is None:
        return None
    t = text.strip().casefold().replace(" ", "")
    if t in NO_UNIT:
        return None
    if t in VOLT_UNITS:
        return VOLT_UNITS[t]
    try:
        code = int(t)
    except ValueError:
        return None
    if abs(code) > 12:
        raise ValueError(f"unit code {text!r} is not a power of ten a signal is sent in")
    return 10.0 ** code


def channel_units(info: Any) -> list[str]:
    """The ``desc/channels/channel/unit`` strings of a full stream info (empty strings where
    there is none)."""
    from defusedxml import ElementTree as SafeET

    try:
        root = SafeET.fromstring(info.as_xml())
    except Exception as exc:  # defusedxml refuses entities/DTDs; expat refuses bad XML
        raise ValueError(f"stream {info.name()!r} has a description that is not safe, valid "
                         f"XML ({type(exc).__name__}: {exc}); fix the sender") from exc
    units = [(ch.findtext("unit") or "").strip()
             for ch in root.findall("./desc/channels/channel")]
    n = info.channel_count()
    return units if len(units) == n else [""] * n


def parse_unit_overrides(items: Sequence[str] | None, spec: RenderSpec) -> dict[str, str]:
    """``--units UNIT`` (every voltage row) / ``--units ROW=UNIT`` into ``{row: unit}``.

    Raises
    ------
    ValueError
        An unknown row, or a unit that is not a voltage.
    """
    out: dict[str, str] = {}
    for item in items or []:
        row, sep, unit = item.rpartition("=") if "=" in item else ("", "", item)
        row, unit = row.strip(), unit.strip()
        if volts_per_unit(unit) is None:
            raise ValueError(f"--units {item!r}: {unit!r} is not a voltage unit; use V, mV, uV "
                             "(or microvolts), optionally as ROW=UNIT")
        rows = [r.name for r in spec.rows if r.unit.casefold() == "uv"] if not sep else [row]
        for r in rows:
            if r not in spec.row_names:
                raise ValueError(f"--units {item!r}: spec {spec.name!r} has no row {r!r}; its "
                                 f"rows are {', '.join(spec.row_names)}")
            out[r] = unit
    return out


def row_scales(spec: RenderSpec, stream_units: Sequence[str],
               overrides: Mapping[str, str] | None = None) -> tuple[np.ndarray, list[str]]:
    """Factor bringing each row's stream samples to the row's unit, and the unit used.

    Parameters
    ----------
    spec : RenderSpec
    stream_units : sequence of str
        Per spec row, the unit its channel's description gives (empty: none).
    overrides : mapping, optional
        ``{row: unit}`` from ``--units`` (win over the description).
    """
    overrides = dict(overrides or {})
    scales, used = np.ones(spec.n_rows), []
    for r, (row, text) in enumerate(zip(spec.rows, stream_units, strict=True)):
        text = overrides.get(row.name, text)
        used.append(text)
        if row.unit.casefold() != "uv":
            continue  # only voltage rows are converted (SpO2 %, airflow a.u., ...)
        v = volts_per_unit(text)
        if v is not None:
            scales[r] = v / 1e-6
    return scales, used


class AmplitudeGuard:
    """Check live amplitudes in row units (see the module docstring).

    Parameters
    ----------
    spec : RenderSpec
    sfreqs : sequence of float
        Native rate of each row.
    units : sequence of str
        The unit each row is read in (for the messages).
    forced : iterable of str
        Rows whose unit ``--units`` set: a mismatch is a warning, not a refusal.
    """

    def __init__(self, spec: RenderSpec, sfreqs: Sequence[float], units: Sequence[str],
                 forced: Sequence[str] = ()) -> None:
        self.spec = spec
        self.rows = [r for r, row in enumerate(spec.rows) if row.type in PLAUSIBLE_UV
                     and row.unit.casefold() == "uv"]
        self.sfreqs = [float(f) for f in sfreqs]
        self.units = list(units)
        self.forced = set(forced)
        self._first: dict[int, list[np.ndarray]] = {r: [] for r in self.rows}
        self._pending: dict[int, np.ndarray] = {r: np.zeros(0) for r in self.rows}
        self._epoch: dict[int, int] = dict.fromkeys(self.rows, 0)
        self._checked: set[int] = set()
        #: ``{epoch: [row names]}`` of epochs whose amplitude is implausible.
        self.flags: dict[int, list[str]] = {}
        #: Typical amplitude of the first :data:`CHECK_S` seconds per row (uV).
        self.first: dict[str, float] = {}

    def add(self, rows: Sequence[np.ndarray]) -> None:
        """Samples of every row (row units, native rates, aligned since the first sample).

        Raises
        ------
        StreamUnitError
            A row off by 1e3 or 1e6 whose unit ``--units`` did not set.
        """
        for r in self.rows:
            x = np.asarray(rows[r], dtype=np.float64)
            if not x.size:
                continue
            fs = self.sfreqs[r]
            if r not in self._checked:
                self._first[r].append(x)
                first = np.concatenate(self._first[r])
                if first.size >= CHECK_S * fs:
                    self._checked.add(r)
                    self._first[r] = []
                    self._check_first(r, first)
            per_epoch = max(1, int(round(self.spec.epoch_s * fs)))
            pending = np.concatenate((self._pending[r], x))
            while pending.size >= per_epoch:
                self._check_epoch(r, pending[:per_epoch])
                pending = pending[per_epoch:]
            self._pending[r] = pending

    def _check_first(self, r: int, x: np.ndarray) -> None:
        row = self.spec.rows[r]
        amp = typical_amplitude(x, row.type)
        self.first[row.name] = amp
        factor = unit_factor(amp, row.type)
        if factor is None or factor == 1.0 or not math.isfinite(amp):
            return
        lo, hi = PLAUSIBLE_UV[row.type]
        unit = self.units[r] or "none given (taken as uV)"
        text = (f"row {row.name!r}: typical amplitude {amp:.3g} uV in the first {CHECK_S:g} s "
                f"is implausible for {row.type} ({lo:g} to {hi:g} uV); the stream probably "
                f"sends {_FACTOR_CAUSE[factor]} (its unit: {unit})")
        if row.name in self.forced:
            log.warning("%s; kept because --units set this row's unit", text)
            return
        sent = {1e6: "V", 1e3: "mV", 1e-3: "uV", 1e-6: "uV"}[factor]
        raise StreamUnitError(
            f"{text}. Refusing to score it: the stages would be wrong. Fix the unit in the "
            f"sender's description, or say what it sends with --units '{row.name}={sent}' (or "
            f"--units {sent} for every voltage row)")

    def _check_epoch(self, r: int, seg: np.ndarray) -> None:
        k = self._epoch[r]
        self._epoch[r] = k + 1
        row = self.spec.rows[r]
        amp = typical_amplitude(seg, row.type)
        lo, hi = PLAUSIBLE_UV[row.type]
        if amp == 0.0 or lo <= amp <= hi:
            return  # flat rows are the quality flags' business
        names = self.flags.setdefault(k, [])
        names.append(row.name)
        n = sum(len(v) for v in self.flags.values())
        if n == 1 or n % 100 == 0:
            log.warning("epoch %d: %s amplitude %.3g uV is implausible (%g to %g uV); such "
                        "epochs are flagged in run.json (%d so far)", k, row.name, amp, lo, hi,
                        n)

    def summary(self) -> dict:
        """For ``run.json``: units used, first amplitudes, flagged epochs."""
        return {"units": dict(zip(self.spec.row_names, self.units)),
                "forced_by_units_option": sorted(self.forced),
                "first_amplitude_uv": {k: round(v, 4) for k, v in self.first.items()},
                "implausible_epochs": {str(k): v for k, v in sorted(self.flags.items())}}


__all__ = ["AmplitudeGuard", "CHECK_S", "NO_UNIT", "StreamUnitError", "VOLT_UNITS",
           "channel_units", "parse_unit_overrides", "row_scales", "volts_per_unit"]
