"""Live PSG input: resolve LSL streams, map their channels to spec rows, pull without blocking.

:class:`LslSource` opens one ``StreamInlet`` per stream that carries a spec row (a device may
publish everything in one stream; ``edge-scorer replay`` publishes one stream per native rate,
``NAME`` and ``NAME-<rate>Hz``), and turns what arrives into rows of native-rate samples in
spec order, ready for :class:`~edge_scorer.dsp.conditioning.Conditioner`.

* **Resolving.** Streams are found by name, type and/or source id. More than one match is
  refused with the list of candidates (pick one with ``source_id``). Companion streams
  ``NAME-<rate>Hz`` whose source id shares the primary's prefix (up to its last ``/``) are
  opened too, so a replayed Sleep-EDF night (a 100-Hz and a 1-Hz stream) is one source.
* **Channels.** Labels come from the stream's ``desc/channels/channel/label`` (XDF
  conventions); a stream without labels gets ``ch1..chN``. They are mapped to spec rows with
  :func:`~edge_scorer.io.montage.map_channels`, the same rules and ``--channel ROW=LABEL``
  overrides as for files; a missing row is an error listing what the streams have.
* **Units.** Each channel's ``desc/channels/channel/unit`` (XDF strings such as ``uV``,
  ``microvolts``, ``V``, or MNE-LSL's power-of-ten codes such as ``0`` and ``-6``) converts the
  voltage rows to microvolts (``units`` / ``--units`` override it); the first seconds of each
  row are checked for a plausible amplitude, and a stream off by 1e3 or 1e6 is refused
  (:mod:`edge_scorer.stream.stream_units`).
* **Pulling.** Each inlet pulls with ``pull_chunk(timeout=0, dest_obj=...)`` straight into a
  preallocated ring buffer (``ring_s`` seconds per stream; the GUI reads the latest signal
  from it). Time stamps are clock-corrected with liblsl's offset estimate
  (:meth:`~edge_scorer.stream.inlet_stream.InletStream.update_offset`; not liblsl's
  ``proc_clocksync``, whose unbounded wait inside ``pull_chunk`` blocks on a lost stream); a
  new estimate moves the expected next stamp with it, so it is never read as a gap.
  liblsl keeps ``buffer_s`` seconds of *wall* time per inlet for a consumer that is busy or
  paused (its buffer is sized in seconds at the nominal rate, so it is scaled by ``speed``;
  capped at the replay's length plus a minute, or :data:`MAX_BUFFER_SIGNAL_S` of signal).
  When the samples a pull finds waited longer than :attr:`LslSource.behind_warn_s` (the
  engine falls behind), a warning says so before samples are lost; :attr:`LslSource.max_lag_s`
  keeps the worst lag.
* **Time and gaps.** Sample ``n`` of a stream is expected at ``t0 + n * period`` with ``period =
  1 / (nominal_srate * speed)`` (``speed`` from the replay's ``desc``, 1 for a device). The
  expectation is de-jittered by exponential smoothing towards the observed stamps, so device
  jitter and clock drift do not accumulate. A jump of the stamps by more than
  ``gap_tolerance_s`` of signal means samples were lost: the missing samples are inserted, so
  later epochs never shift. A gap up to ``fill_gap_s`` is filled by linear interpolation and
  flagged; a longer one is inserted as NaN (the conditioning chain holds the last value and
  marks the output invalid; the engine marks the epoch, and calls it unscorable when too little
  signal is left). A stream that stops and comes back (same source id: liblsl recovers the
  inlet) resumes after a gap of the outage's length.
* **One epoch grid, whenever you join.** ``t0`` (epoch 0) is the recording's start when the
  stream advertises it (``desc/edge_scorer/t0_lsl``, the LSL time of signal time 0, as
  ``edge-scorer replay`` does), else ``start_time`` (an LSL clock time, ``--start-at``), else
  the first stamp of the highest-rate stream. Joining an advertised recording late, the part
  already missed is a gap (those epochs are unscorable) and epoch ``k`` is the recording's
  epoch ``k``: indices, onsets, clock times and outlet stamps are the offline ones.
  :attr:`LslSource.grid` says which origin was used. Other streams align to ``t0`` by their
  stamps: earlier samples are dropped, a later start is a gap.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.io.montage import ChannelMapError, map_channels
from edge_scorer.io.spec import RenderSpec
from edge_scorer.stream.inlet_stream import InletStream, RingBuffer
from edge_scorer.stream.stream_units import AmplitudeGuard, channel_units, row_scales

log = get_logger("inlet")

#: Most seconds of signal an inlet buffers when the stream's length is unknown (4 h).
MAX_BUFFER_SIGNAL_S = 4 * 3600.0
#: Seconds between two "falling behind" warnings.
BEHIND_REPEAT_S = 30.0


class StreamNotFound(LookupError):
    """No LSL stream matches the request."""


class AmbiguousStream(LookupError):
    """Several LSL streams match the request."""


def describe(info: Any) -> str:
    """One line about a stream: name, type, channels, rate, source id, host."""
    return (f"{info.name()!r} (type {info.type()}, {info.channel_count()} ch @ "
            f"{info.nominal_srate():g} Hz, source_id {info.source_id()!r}, "
            f"host {info.hostname()})")


def _predicate(name: str | None, stype: str | None, source_id: str | None) -> str:
    def q(v: str) -> str:
        if "'" in v:
            raise ValueError(f"stream property {v!r} contains a quote; LSL queries cannot match it")
        return f"'{v}'"

    parts = [f"{k}={q(v)}" for k, v in (("name", name), ("source_id", source_id)) if v]
    if stype:  # types are matched ignoring case: 'EEG' finds a stream typed 'eeg'
        parts.insert(1 if name else 0, f"translate(type,'{_LOWER}','{_LOWER.upper()}')="
                                       f"{q(stype.upper())}")
    return " and ".join(parts)


#: Letters folded to upper case when stream types are compared (XPath 1.0 has no upper-case()).
_LOWER = "abcdefghijklmnopqrstuvwxyz"


def find_streams(name: str | None = None, stype: str | None = None,
                 source_id: str | None = None, timeout_s: float = 2.0,
                 settle_s: float = 0.3) -> list[Any]:
    """Every stream on the network matching all given properties.

    Waits up to ``timeout_s`` for a first match, then ``settle_s`` more for others (so an
    ambiguity is seen). With no property, lists all streams after ``timeout_s``.
    """
    import pylsl

    pred = _predicate(name, stype, source_id)
    if not pred:
        return list(pylsl.resolve_streams(wait_time=timeout_s))
    found = pylsl.resolve_bypred(pred, 1, timeout_s)
    if found:  # then every match that answers within settle_s (minimum 0: wait it out)
        uids = {f.uid() for f in found}
        found += [f for f in pylsl.resolve_bypred(pred, 0, settle_s) if f.uid() not in uids]
    return found


def resolve_stream(name: str | None = None, stype: str | None = None,
                   source_id: str | None = None, timeout_s: float = 5.0) -> Any:
    """The one stream matching the request.

    Raises
    ------
    StreamNotFound
        Nothing matches within ``timeout_s`` (the message lists the streams that are there).
    AmbiguousStream
        Several streams match (the message lists them and how to pick one).
    """
    if not (name or stype or source_id):
        raise ValueError("give a stream name, type or source id to resolve")
    want = ", ".join(f"{k} {v!r}" for k, v in (("name", name), ("type", stype),
                                                ("source_id", source_id)) if v)
    found = find_streams(name, stype, source_id, timeout_s)
    if not found:
        present = find_streams(timeout_s=0.5)
        listing = "\n  ".join(describe(s) for s in present) or "(none)"
        raise StreamNotFound(
            f"no LSL stream with {want} found within {timeout_s:g} s. Streams on the network:\n"
            f"  {listing}\nstart the amplifier or `edge-scorer replay FILE --name NAME`, or "
            "check the name")
    if len(found) > 1:
        listing = "\n  ".join(describe(s) for s in found)
        raise AmbiguousStream(
            f"{len(found)} LSL streams match {want}:\n  {listing}\npick one with its source "
            "id (--source-id)")
    return found[0]


def _companions(primary: Any, timeout_s: float) -> list[Any]:
    """Streams ``NAME-<rate>Hz`` of the same source (see the module notes)."""
    pattern = re.compile(re.escape(primary.name()) + r"-[0-9.]+Hz")
    prefix = primary.source_id().rsplit("/", 1)[0] if "/" in primary.source_id() else None
    import pylsl

    pred = f"starts-with(name,'{primary.name()}-') and type='{primary.type()}'"
    out: list[Any] = []
    for info in pylsl.resolve_bypred(pred, 0, min(timeout_s, 0.5)):
        if info.uid() == primary.uid() or not pattern.fullmatch(info.name()):
            continue
        if prefix is not None and info.source_id().rsplit("/", 1)[0] != prefix:
            continue
        out.append(info)
    names = [c.name() for c in out]
    dupes = sorted({n for n in names if names.count(n) > 1})
    if dupes:
        raise AmbiguousStream(
            f"several companion streams named {dupes} belong to {primary.name()!r}; stop the "
            "duplicate replay/device or give each a distinct name")
    return out


def _stream_xml(info: Any) -> Any:
    """The stream description parsed with ``defusedxml`` (it comes from the network)."""
    from defusedxml import ElementTree as SafeET

    try:
        return SafeET.fromstring(info.as_xml())
    except Exception as exc:  # defusedxml refuses entities/DTDs; expat refuses bad XML
        raise ValueError(f"stream {info.name()!r} has a description that is not safe, valid "
                         f"XML ({type(exc).__name__}: {exc}); fix the sender") from exc


def channel_labels(info: Any) -> list[str]:
    """Channel labels from a stream's ``desc`` (``ch1..chN`` when it has none)."""
    root = _stream_xml(info)
    labels = [(ch.findtext("label") or "").strip()
              for ch in root.findall("./desc/channels/channel")]
    n = info.channel_count()
    if len(labels) != n or not all(labels):
        return [f"ch{i + 1}" for i in range(n)]
    return labels


def _desc_value(info: Any, path: str) -> str | None:
    root = _stream_xml(info)
    value = root.findtext(f"./desc/{path}")
    return value.strip() if value else None


@dataclass
class Chunk:
    """New samples of every spec row (native rates), with what the inlet did to them.

    Attributes
    ----------
    rows : list of ndarray of float64
        One per spec row; rows of one stream have equal lengths, streams may differ.
    filled : list of ndarray of bool
        Per row: samples inserted by gap filling (interpolated).
    t_in : float
        ``time.perf_counter()`` when the chunk was pulled.
    """

    rows: list[np.ndarray]
    filled: list[np.ndarray]
    t_in: float


def _channel_layout(infos: list[Any]) -> tuple[list[str], list[str], list[tuple[int, int]]]:
    """Every channel's label and unit over the streams, and where it is (stream, channel)."""
    labels: list[str] = []
    units: list[str] = []
    where: list[tuple[int, int]] = []
    for g, info in enumerate(infos):
        units += channel_units(info)
        for c, lb in enumerate(channel_labels(info)):
            labels.append(lb)
            where.append((g, c))
    return labels, units, where


class LslSource:
    """PSG rows from live LSL streams (see the module docstring).

    Parameters
    ----------
    spec : RenderSpec
        Rows needed (and their order).
    name, stype, source_id : str, optional
        What to resolve (at least one).
    channel_overrides : mapping, optional
        ``{row name: stream channel label}``.
    speed : float, optional
        Stamps per second of signal (default: the replay's ``desc`` speed, else 1).
    start_time : float, optional
        LSL clock time of epoch 0 (default: the first sample).
    fill_gap_s : float
        Longest gap filled by interpolation (longer ones become NaN).
    gap_tolerance_s : float
        Stamp jump (in seconds of signal) taken as lost samples.
    buffer_s : float
        Wall-clock seconds of samples liblsl keeps per inlet while the engine is busy or
        paused (scaled by the speed; see the module notes for the cap).
    ring_s : float
        Seconds of signal kept per stream in the ring buffer (for displays).
    timeout_s : float
        How long to wait for the streams when connecting.
    units : mapping, optional
        ``{row name: unit}`` the rows are sent in, whatever the description says (``--units``;
        :mod:`edge_scorer.stream.stream_units`).
    """

    def __init__(self, spec: RenderSpec, *, name: str | None = None, stype: str | None = None,
                 source_id: str | None = None,
                 channel_overrides: Mapping[str, str] | None = None,
                 speed: float | None = None, start_time: float | None = None,
                 fill_gap_s: float = 1.0, gap_tolerance_s: float = 0.1,
                 buffer_s: float = 360.0, ring_s: float = 60.0,
                 timeout_s: float = 5.0, units: Mapping[str, str] | None = None) -> None:
        if not (name or stype or source_id):
            raise ValueError("give the stream's name, type or source id (e.g. --name NAME)")
        if speed is not None and not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number, got {speed}")
        for what, value in (("fill_gap_s", fill_gap_s), ("gap_tolerance_s", gap_tolerance_s)):
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{what} must be zero or a positive number of seconds, got "
                                 f"{value}")
        for what, value in (("buffer_s", buffer_s), ("ring_s", ring_s),
                            ("timeout_s", timeout_s)):
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{what} must be a positive number of seconds, got {value}")
        self.spec = spec
        self.query = (name, stype, source_id)
        self.overrides = dict(channel_overrides or {})
        self.speed_override = speed
        self.start_time = start_time
        self.fill_gap_s = float(fill_gap_s)
        self.gap_tolerance_s = float(gap_tolerance_s)
        self.buffer_s = float(buffer_s)
        self.ring_s = float(ring_s)
        self.timeout_s = float(timeout_s)
        self.unit_overrides = dict(units or {})
        #: Origin of the epoch grid: ``recording start`` (advertised by the stream),
        #: ``start_time`` (given) or ``first sample``.
        self.grid = "first sample"
        #: Factor bringing each row's samples to the row's unit (from the stream's units).
        self.row_scale = np.ones(spec.n_rows)
        self.amplitude: AmplitudeGuard | None = None
        self.groups: list[InletStream] = []
        self.t0: float | None = None
        self.speed = 1.0
        self._closed_pulled = self._closed_gaps = 0
        #: Lag (wall s) of the newest sample pulled that triggers a warning (set at connect).
        self.behind_warn_s = 5.0
        self.buffer_wall_s = self.buffer_s
        self._buflen = 1  # liblsl's buffer (s at the nominal rate), set at connect
        #: The largest lag seen (wall s between a sample's stamp and its pull).
        self.max_lag_s = 0.0
        self.n_behind_warnings = 0
        self._behind_since: float | None = None
        self._last_warning = -math.inf

    # ------------------------------------------------------------------ connect
    def connect(self) -> LslSource:
        """Resolve the streams, map the channels, open the inlets."""
        if self.groups:
            return self
        import pylsl

        primary = resolve_stream(*self.query, timeout_s=self.timeout_s)
        found = [primary] + _companions(primary, self.timeout_s)
        # full stream infos (with desc) come from an inlet; resolve results carry no desc
        infos = []
        for info in found:
            probe = pylsl.StreamInlet(info, max_buflen=1, recover=False)
            try:
                infos.append(probe.info(self.timeout_s))
            finally:
                probe.close_stream()
        self._open(found, infos)
        return self

    def _open(self, found: list[Any], infos: list[Any]) -> None:
        """Map the channels, read speed and grid from the description, open the inlets."""
        labels, units, where = _channel_layout(infos)
        source = " + ".join(repr(i.name()) for i in infos)
        picks = map_channels(labels, self.spec, self.overrides, source=f"LSL stream {source}")
        used: dict[int, list[tuple[int, int]]] = {}
        for row, k in enumerate(picks):
            g, c = where[k]
            used.setdefault(g, []).append((row, c))
        t0_remote = self._read_desc(infos[0])
        groups = self._inlets(found, infos, used)
        self._open_inlets(groups, t0_remote)
        self.groups = groups
        self.row_sfreq = [0.0] * self.spec.n_rows
        for grp in groups:
            for row, _ in grp.rows:
                self.row_sfreq[row] = grp.sfreq
        self.labels = {row.name: labels[k] for row, k in zip(self.spec.rows, picks, strict=True)}
        self.row_scale, used_units = row_scales(self.spec, [units[k] for k in picks],
                                                self.unit_overrides)
        self.amplitude = AmplitudeGuard(self.spec, self.row_sfreq, used_units,
                                        forced=list(self.unit_overrides))
        log.info("connected to %s at speed %g: %s", source, self.speed,
                 ", ".join(f"{r} <- {lb}" + (f" [{u}, x{f:g}]" if u or f != 1 else "")
                           for (r, lb), u, f in zip(self.labels.items(), used_units,
                                                    self.row_scale)))

    def _read_desc(self, info: Any) -> float | None:
        """Speed, epoch grid and buffer sizes from the primary stream's description; the
        advertised recording start on the sender's clock (None when not used)."""
        speed = self.speed_override
        if speed is None:
            text = _desc_value(info, "edge_scorer/speed")
            speed = float(text) if text else 1.0
        self.speed = speed
        advertised = _desc_value(info, "edge_scorer/t0_lsl")
        t0_remote = None
        if self.start_time is not None:
            self.grid = "start_time"
        elif advertised:
            try:
                t0_remote = float(advertised)
                self.grid = "recording start"
            except ValueError:
                log.warning("stream %s advertises t0_lsl %r, not a number; epochs start at "
                            "the first sample", info.name(), advertised)
        duration = _desc_value(info, "edge_scorer/duration_s")
        cap_s = float(duration) + 60.0 if duration else MAX_BUFFER_SIGNAL_S
        self._buflen = max(1, math.ceil(min(self.buffer_s * speed, cap_s)))
        self.buffer_wall_s = self._buflen / speed
        self.behind_warn_s = min(5.0, 0.5 * self.buffer_wall_s)
        return t0_remote

    def _inlets(self, found: list[Any], infos: list[Any],
                used: dict[int, list[tuple[int, int]]]) -> list[InletStream]:
        """One inlet per stream that carries a spec row, highest rate first."""
        import pylsl

        groups = []
        for g, info in enumerate(infos):
            if g not in used:
                continue
            if info.nominal_srate() <= 0:
                raise ValueError(f"stream {describe(info)} has an irregular rate; PSG rows need "
                                 "a regularly sampled stream (nominal_srate > 0)")
            # liblsl sizes its buffer in seconds at the nominal rate: scale by the speed so it
            # holds buffer_s of wall time
            # no proc_clocksync: InletStream adds the clock offset itself (see update_offset)
            inlet = pylsl.StreamInlet(found[g], max_buflen=self._buflen, recover=True)
            chunk_max = max(1, min(int(info.nominal_srate() * self.speed * 2), 1 << 20))
            groups.append(InletStream(inlet, info, used[g], self.ring_s, self.speed,
                                      self.fill_gap_s, self.gap_tolerance_s, chunk_max))
        groups.sort(key=lambda grp: -grp.sfreq)
        return groups

    def _open_inlets(self, groups: list[InletStream], t0_remote: float | None) -> None:
        """Open each inlet and take its first clock offset (closing all on an error)."""
        try:
            for grp in groups:
                grp.inlet.open_stream(timeout=self.timeout_s)
                # the first clock-offset estimate takes ~1 s: get it now, not on the first pull
                offset = grp.set_offset(grp.inlet.time_correction(timeout=self.timeout_s))
                if grp is groups[0] and self.grid == "recording start":
                    # the sender's t0 on this machine's clock, as the corrected stamps are
                    self.start_time = t0_remote + offset
        except BaseException:
            for grp in groups:
                grp.close()
            raise

    def disconnect(self) -> None:
        """Close the inlets (idempotent)."""
        for grp in self.groups:
            grp.close()
        self._closed_pulled += sum(g.n_pulled for g in self.groups)
        self._closed_gaps += sum(g.n_gaps for g in self.groups)
        self.groups = []

    def __enter__(self) -> LslSource:
        return self.connect()

    def __exit__(self, *exc: object) -> None:
        self.disconnect()

    def desc_value(self, path: str) -> str | None:
        """A value from the primary stream's ``desc`` (e.g. ``edge_scorer/start_time``)."""
        return _desc_value(self.groups[0].info, path) if self.groups else None

    @property
    def stream_names(self) -> list[str]:
        return [g.info.name() for g in self.groups]

    @property
    def n_pulled(self) -> int:
        """Samples received so far, all streams (inserted gap samples not counted)."""
        return self._closed_pulled + sum(g.n_pulled for g in self.groups)

    @property
    def n_gaps(self) -> int:
        """Gaps (lost-sample runs) seen so far, all streams."""
        return self._closed_gaps + sum(g.n_gaps for g in self.groups)

    def epoch_stamp(self, index: int) -> float | None:
        """LSL time of the start of epoch ``index`` (None before the first sample)."""
        if self.t0 is None:
            return None
        return self.t0 + index * self.spec.epoch_s / self.speed

    # ------------------------------------------------------------------ pull
    def pull(self) -> Chunk | None:
        """Everything that arrived since the last call (None when nothing did)."""
        if not self.groups:
            raise RuntimeError("LslSource is not connected; call connect() first")
        t_in = time.perf_counter()
        rows: list[np.ndarray] = [np.zeros(0)] * self.spec.n_rows
        filled: list[np.ndarray] = [np.zeros(0, dtype=bool)] * self.spec.n_rows
        got = False
        for grp in self.groups:
            if self.t0 is None and grp is not self.groups[0] and self.start_time is None:
                continue  # the time origin comes from the highest-rate stream's first sample
            x, ts = grp.pull()
            if len(ts) == 0:
                continue
            if grp is self.groups[0]:
                self._check_lag(float(ts[0]))
            if self.t0 is None:
                self.t0 = float(ts[0]) if self.start_time is None else float(self.start_time)
            if grp.t_next is None:
                grp.t_next = self.t0
            x, mask = grp.place(x, ts)
            for j, (row, _) in enumerate(grp.rows):
                rows[row] = x[:, j] * self.row_scale[row] if self.row_scale[row] != 1 \
                    else x[:, j]
                filled[row] = mask
            got = got or len(x) > 0
        if got and self.amplitude is not None:
            self.amplitude.add(rows)  # refuses a stream off by 1e3 / 1e6 (StreamUnitError)
        return Chunk(rows, filled, t_in) if got else None

    def _check_lag(self, oldest_stamp: float) -> None:
        """Warn when the oldest sample of a pull waited long: the consumer is falling behind
        (a pull takes everything queued, so this is the backlog it found)."""
        import pylsl

        lag = pylsl.local_clock() - oldest_stamp
        self.max_lag_s = max(self.max_lag_s, lag)
        now = time.monotonic()
        if lag > self.behind_warn_s:
            if self._behind_since is None:
                self._behind_since = now
            if now - self._last_warning >= BEHIND_REPEAT_S:
                self._last_warning = now
                self.n_behind_warnings += 1
                log.warning("falling behind: samples from %s waited %.1f s to be pulled (the "
                            "inlet buffers %.0f s); samples will be lost if this grows - a "
                            "slower backend, too many beds, or a paused process",
                            self.groups[0].info.name(), lag, self.buffer_wall_s)
        elif self._behind_since is not None and lag < 0.5 * self.behind_warn_s:
            log.info("caught up (lag %.2f s after %.0f s behind)", lag,
                     now - self._behind_since)
            self._behind_since = None

    def latest(self, seconds: float) -> dict[str, np.ndarray]:
        """The last ``seconds`` of raw signal per mapped row (for display)."""
        out = {}
        for grp in self.groups:
            block = grp.ring.latest(int(seconds * grp.sfreq))
            for row, c in grp.rows:
                out[self.spec.rows[row].name] = block[:, c].astype(np.float64) \
                    * self.row_scale[row]
        return out


__all__ = ["AmbiguousStream", "ChannelMapError", "Chunk", "LslSource", "RingBuffer",
           "StreamNotFound", "channel_labels", "describe", "find_streams", "resolve_stream"]
