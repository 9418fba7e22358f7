"""Replay a PSG file as real Lab Streaming Layer (LSL) streams, paced in real time.

:class:`Replayer` reads a file with :func:`~edge_scorer.io.psg.read_psg` and publishes the spec's
rows on the local network as a live amplifier would, so the streaming engine (or any LSL
client: LabRecorder, MNE-LSL, ...) can be tried on a recorded night.

Design choices
--------------
* **Native rates, one outlet per rate.** The rows are published at the rates they were
  recorded at (:meth:`~edge_scorer.io.psg.PsgRecording.native_rows`): one ``StreamOutlet`` per
  native-rate group (Sleep-EDF: a 100-Hz stream with EEG Fpz-Cz, EEG Pz-Oz and EOG horizontal,
  and a 1-Hz stream with the EMG submental envelope). This makes the live engine condition
  exactly the samples the offline path (:func:`~edge_scorer.dsp.render_night.condition_recording`)
  conditions, so live and offline scores of a replayed file can be compared sample for sample.
  The highest-rate group is named ``NAME``, the others ``NAME-<rate>Hz``.
* **Channels are the spec rows.** Each channel's ``label`` is the spec row name (so the engine
  maps it without ``--channel``); the file's own label is kept in ``source_label``. With
  ``all_channels`` (``replay --all-channels``) every other signal of the file follows the rows
  of its rate group (a group of its own for a rate no row has), labelled as in the file, in the
  file's units (:mod:`edge_scorer.stream.replay_channels`). The ``desc``
  follows the XDF conventions (``channels/channel/{label,type,unit}``, units spelled out, e.g.
  ``microvolts``) plus an ``edge_scorer`` element (spec, spec hash, group ``i of n``, source
  file, start time, speed).
* **Pacing and time stamps.** A monotonic clock (``time.perf_counter``) paces the pushes: the
  sample at signal time ``t`` is due at wall time ``t / speed`` after the start, and every push
  sends all samples due by then. The loop wakes every ``chunk_ms / speed`` ms of wall time, but
  never more often than every :data:`MIN_PERIOD_S`, so at high speeds (e.g. 200x) a chunk holds
  more than ``chunk_ms`` of signal. Each sample is stamped ``t0 + t / speed`` with ``t0`` a
  :func:`pylsl.local_clock` reading taken when the outlets are created: time stamps advance at
  the replay's pace on the LSL clock, so a receiver's ``time_correction`` works as with a real
  device. That reading is advertised in the ``desc`` (``edge_scorer/t0_lsl``, the LSL time of
  signal time 0): a receiver that joins late lays its epochs on the recording's grid
  (:mod:`edge_scorer.stream.inlet`), so epoch ``k`` is the file's epoch ``k`` whenever it joins.
  The stream's ``nominal_srate`` stays the native rate (the rate the signal must be
  processed at); at a speed other than 1 the stamps are ``speed`` times denser than
  ``nominal_srate`` says.
* **Buffers sized by speed.** liblsl sizes an outlet's buffer in seconds at the *nominal* rate
  (pylsl's default 360 s). At ``speed`` 60 that is 6 s of wall time: a receiver that stalls
  longer (or the replay catching up after a pause) would lose samples. Outlets therefore keep
  :data:`BUFFER_WALL_S` of wall time, i.e. ``BUFFER_WALL_S * speed`` seconds of signal, capped
  at the file's length plus a minute (the whole night is never more than the file). A
  replay that cannot keep its pace (a paused or overloaded process) logs a warning and then
  pushes what is due in one go.
* **Source ids.** Each :class:`Replayer` gets a source id of its own
  (``edge-scorer:<file stem>:<spec>:<8 hex digits>`` by default, ``/<rate>Hz`` per group), so two
  replays of one file can be told apart with ``--source-id``; pass ``source_id`` to keep one
  across restarts (receivers reconnect to a restarted replay with the same id).
* **Loop.** With ``loop=True`` the file restarts at its end with signal time continuing (stamps
  keep increasing, one file length later per pass).
* **Hypnogram.** An optional hypnogram (any file :func:`~edge_scorer.io.hypnogram_io.read_hypnogram`
  reads, aligned with :func:`~edge_scorer.io.psg.align_hypnogram`) becomes a ``Markers`` stream
  ``NAME-hypnogram`` with one string marker per epoch (``"W"``, ``"N1"``, ..., ``"UNS"``) pushed at
  the epoch's start time.
* **Lifetime.** Outlets are created in :meth:`Replayer.start` (the streams are resolvable when it
  returns) and deleted in :meth:`Replayer.stop`. At the end of the file (without loop) the thread
  ends by itself but the outlets stay until ``stop()``, so receivers can drain the last chunk.
"""

from __future__ import annotations

import math
import threading
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.io.psg import PsgRecording, align_hypnogram, read_psg
from edge_scorer.io.spec import RenderSpec, load_spec
from edge_scorer.stages import Stage
from edge_scorer.stats.hypnogram import Hypnogram
from edge_scorer.stream.replay_channels import FileChannel, other_channels

log = get_logger("replay")

#: Shortest wall-clock period between two pushes (s); higher speeds send longer chunks.
MIN_PERIOD_S = 0.01
#: Wall-clock seconds of samples each outlet keeps for a receiver that stalls.
BUFFER_WALL_S = 360.0
#: A replay this far behind its pace (wall seconds) logs a warning.
BEHIND_WARN_S = 1.0
#: XDF unit names of the spec units.
XDF_UNITS = {"uv": "microvolts", "µv": "microvolts", "mv": "millivolts", "v": "volts",
             "%": "percent", "a.u.": "arbitrary units", "bpm": "beats per minute"}
#: XDF channel type of each spec row type (others are kept as they are).
XDF_TYPES = {"EMG_ENVELOPE": "EMG"}


@dataclass
class RateGroup:
    """The rows published by one outlet: all spec rows recorded at one rate.

    Attributes
    ----------
    sfreq : float
        Native rate of the rows (Hz).
    rows : list of int
        Spec row indices, in spec order.
    data : ndarray of float32, shape (n_samples, n_rows + n_extra)
        The samples as pushed (sample-major, as LSL expects): the rows, then the extra
        channels.
    stream_name, source_id : str
        LSL stream name and source id.
    extra : list of FileChannel
        Other channels of the file at this rate (``all_channels``).
    """

    sfreq: float
    rows: list[int]
    data: np.ndarray
    stream_name: str
    source_id: str
    extra: list[FileChannel] = field(default_factory=list)


def rate_groups(rec: PsgRecording, name: str, source_id: str,
                extra: list[FileChannel] | None = None) -> list[RateGroup]:
    """Group a recording's rows by native rate, highest rate first (then groups of extra
    channels at rates no row has).

    Parameters
    ----------
    rec : PsgRecording
        From :func:`~edge_scorer.io.psg.read_psg`.
    name : str
        Base stream name (used as is for the highest-rate group).
    source_id : str
        Base source id; ``/<rate>Hz`` is appended per group.
    extra : list of FileChannel, optional
        Other channels of the file, each added to the group of its rate.
    """
    rows, rates = rec.native_rows()
    extra = list(extra or [])
    groups = []
    row_rates = sorted(set(rates), reverse=True)
    all_rates = row_rates + sorted({c.sfreq for c in extra} - set(row_rates), reverse=True)
    for i, fs in enumerate(all_rates):
        idx = [k for k, r in enumerate(rates) if r == fs]
        more = [c for c in extra if c.sfreq == fs]
        cols = [rows[k] for k in idx] + [c.data for c in more]
        n = min(len(c) for c in cols)
        data = np.ascontiguousarray(np.stack([c[:n] for c in cols], axis=1), dtype=np.float32)
        stream_name = name if i == 0 else f"{name}-{fs:g}Hz"
        groups.append(RateGroup(float(fs), idx, data, stream_name, f"{source_id}/{fs:g}Hz",
                                more))
    return groups


def _samples_before(t_s: float, sfreq: float) -> int:
    """Number of samples (at ``sfreq``, first at t=0) whose time is before ``t_s``."""
    return max(0, math.ceil(t_s * sfreq - 1e-9))


class Replayer:
    """Publish a PSG file as paced LSL streams from a background thread.

    Parameters
    ----------
    psg_path : path-like
        PSG file (EDF, EDF+, BDF).
    spec : RenderSpec or str
        Spec whose rows are published.
    name : str
        Base stream name.
    speed : float
        Replay speed (1 = real time, 100 = a 300-s excerpt in 3 s).
    chunk_ms : float
        Signal length sent per push at speed 1 (see the module notes for high speeds).
    loop : bool
        Restart at the end of the file instead of finishing.
    hypnogram : path-like or Hypnogram, optional
        Published as the ``NAME-hypnogram`` marker stream.
    channel_overrides : mapping, optional
        ``{row name: file channel label}`` as for :func:`~edge_scorer.io.psg.read_psg`.
    source_id : str, optional
        Base source id (default ``edge-scorer:<file stem>:<spec name>:<8 hex digits>``, unique
        per Replayer; pass one to keep it across restarts).
    wait_for_consumers_s : float
        Before the first push, wait up to this long until every signal outlet has a receiver
        (0: start at once; the hypnogram marker stream is not waited for). The clock runs from
        the outlets' creation (the advertised ``t0_lsl``): what became due while waiting is
        pushed at once when the receivers are there, so they get every sample from the first.
    all_channels : bool
        Also publish every other signal of the file (see the module notes).

    Raises
    ------
    ValueError
        For a non-positive speed or chunk length, and the errors of ``read_psg`` and
        ``read_hypnogram`` (unreadable file, missing channel, misaligned hypnogram).
    """

    def __init__(
        self,
        psg_path: str | Path,
        spec: RenderSpec | str = "sleep-edf",
        *,
        name: str = "edge-scorer-replay",
        speed: float = 1.0,
        chunk_ms: float = 100.0,
        loop: bool = False,
        hypnogram: str | Path | Hypnogram | None = None,
        channel_overrides: Mapping[str, str] | None = None,
        source_id: str | None = None,
        wait_for_consumers_s: float = 0.0,
        all_channels: bool = False,
    ) -> None:
        if not (math.isfinite(speed) and speed > 0):
            raise ValueError(f"speed must be a positive number (1 = real time), got {speed}")
        if not (math.isfinite(chunk_ms) and chunk_ms > 0):
            raise ValueError(f"chunk_ms must be a positive number of milliseconds, got {chunk_ms}")
        if not name:
            raise ValueError("the stream name is empty; pass a name such as 'edge-scorer-replay'")
        self.spec = load_spec(spec) if isinstance(spec, str) else spec
        self.path = Path(psg_path)
        self.name = name
        self.speed = float(speed)
        self.chunk_s = float(chunk_ms) / 1000.0
        self.loop = bool(loop)
        self.wait_for_consumers_s = float(wait_for_consumers_s)
        self.recording = read_psg(self.path, self.spec, channel_overrides)
        self.duration_s = self.recording.duration_s
        self.source_id = source_id or (f"edge-scorer:{self.path.stem}:{self.spec.name}:"
                                       f"{uuid.uuid4().hex[:8]}")
        self.extra = (other_channels(self.path, self.recording.source_labels) if all_channels
                      else [])
        self.groups = rate_groups(self.recording, name, self.source_id, self.extra)
        self.markers: list[str] | None = None
        if hypnogram is not None:
            self.markers = self._markers(hypnogram)
        self._outlets: list[Any] = []
        self._marker_outlet: Any = None
        self._wall0 = self._lsl0 = 0.0
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()
        self.n_pushed = [0] * len(self.groups)
        self.n_markers_pushed = 0
        self.error: BaseException | None = None

    # ------------------------------------------------------------------ setup
    def _markers(self, hypnogram: str | Path | Hypnogram) -> list[str]:
        aligned = align_hypnogram(hypnogram, self.duration_s, epoch_s=self.spec.epoch_s,
                                  warnings=self.recording.warnings)
        return [Stage(int(s)).label for s in aligned.stages]

    @property
    def stream_names(self) -> list[str]:
        """Names of the published streams (signal groups, then the hypnogram markers)."""
        names = [g.stream_name for g in self.groups]
        return names + ([f"{self.name}-hypnogram"] if self.markers is not None else [])

    def _info(self, i: int, group: RateGroup) -> Any:
        import pylsl

        info = pylsl.StreamInfo(group.stream_name, "EEG", group.data.shape[1], group.sfreq,
                                pylsl.cf_float32, group.source_id)
        chans = info.desc().append_child("channels")
        for k in group.rows:
            row = self.spec.rows[k]
            ch = chans.append_child("channel")
            ch.append_child_value("label", row.name)
            ch.append_child_value("type", XDF_TYPES.get(row.type, row.type))
            ch.append_child_value("unit", XDF_UNITS.get(row.unit.casefold(), row.unit))
            ch.append_child_value("source_label", self.recording.source_labels[k])
            ch.append_child_value("row_type", row.type)
        for c in group.extra:
            ch = chans.append_child("channel")
            ch.append_child_value("label", c.label)
            ch.append_child_value("type", c.type)
            ch.append_child_value("unit", XDF_UNITS.get(c.unit.casefold(), c.unit))
            ch.append_child_value("source_label", c.label)
        self._describe(info, f"{i + 1} of {len(self.groups)}")
        return info

    def _describe(self, info: Any, group: str) -> None:
        rec = self.recording
        es = info.desc().append_child("edge_scorer")
        es.append_child_value("spec", self.spec.name)
        es.append_child_value("spec_hash", self.spec.hash)
        es.append_child_value("group", group)
        es.append_child_value("source_file", self.path.name)
        es.append_child_value("start_time", rec.start_time.isoformat() if rec.start_time else "")
        es.append_child_value("speed", f"{self.speed:g}")
        es.append_child_value("duration_s", f"{self.duration_s:g}")
        es.append_child_value("t0_lsl", f"{self._lsl0:.6f}")

    @property
    def buffer_s(self) -> int:
        """Seconds of signal (at the nominal rate) each outlet keeps for a stalled receiver:
        :data:`BUFFER_WALL_S` of wall time at this speed, at most the file plus a minute."""
        return max(1, math.ceil(min(BUFFER_WALL_S * self.speed, self.duration_s + 60.0)))

    def _open_outlets(self) -> None:
        import pylsl

        for i, g in enumerate(self.groups):
            self._outlets.append(pylsl.StreamOutlet(self._info(i, g),
                                                    max_buffered=self.buffer_s))
            log.info("publishing %s: %d channel(s) at %g Hz (%s), source_id %s", g.stream_name,
                     g.data.shape[1], g.sfreq,
                     ", ".join([self.spec.rows[k].name for k in g.rows]
                               + [c.label for c in g.extra]), g.source_id)
        if self.markers is not None:
            info = pylsl.StreamInfo(f"{self.name}-hypnogram", "Markers", 1,
                                    pylsl.IRREGULAR_RATE, pylsl.cf_string,
                                    f"{self.source_id}/hypnogram")
            info.desc().append_child("channels").append_child("channel").append_child_value(
                "label", "stage")
            self._describe(info, "hypnogram")
            self._marker_outlet = pylsl.StreamOutlet(info, max_buffered=self.buffer_s)
            log.info("publishing %s: %d epoch markers", info.name(), len(self.markers))

    # ------------------------------------------------------------------ control
    def start(self) -> Replayer:
        """Create the outlets and start pushing from a background thread."""
        import pylsl

        if self._thread is not None:
            raise RuntimeError("this Replayer was already started; create a new one")
        # the replay's clock: signal time 0 is now (advertised in every stream's desc)
        self._wall0, self._lsl0 = time.perf_counter(), pylsl.local_clock()
        self._open_outlets()
        self._thread = threading.Thread(target=self._run, name=f"replay-{self.name}",
                                        daemon=True)
        self._thread.start()
        return self

    def halt(self, timeout: float = 5.0) -> None:
        """Stop pushing and join the thread; the outlets stay (idempotent).

        To end many replays in one process at the same signal time, halt them all before
        stopping any: deleting an outlet takes liblsl a while, and replays still pushing
        meanwhile would push late.
        """
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout)
            if self._thread.is_alive():
                log.warning("replay thread did not stop within %g s", timeout)

    def stop(self, timeout: float = 5.0) -> None:
        """Stop pushing, join the thread and delete the outlets (idempotent)."""
        self.halt(timeout)
        self._outlets.clear()
        self._marker_outlet = None

    def has_receivers(self) -> bool:
        """Whether any outlet (signal or marker) still has a connected receiver."""
        outlets = [*self._outlets, *([self._marker_outlet] if self._marker_outlet else [])]
        return any(o.have_consumers() for o in outlets)

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the replay to finish; return True when it has (False on timeout)."""
        if self._thread is None:
            return True
        self._thread.join(timeout)
        return not self._thread.is_alive()

    @property
    def is_running(self) -> bool:
        """Whether the pushing thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def __enter__(self) -> Replayer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # ------------------------------------------------------------------ thread
    def _wait_consumers(self) -> None:
        deadline = time.perf_counter() + self.wait_for_consumers_s
        while not self._stop.is_set() and time.perf_counter() < deadline:
            if all(o.have_consumers() for o in self._outlets):
                return
            time.sleep(0.005)
        if not self._stop.is_set():
            log.warning("not every signal stream has a receiver after %g s; starting anyway",
                        self.wait_for_consumers_s)

    def _run(self) -> None:
        try:
            self._replay()
        except BaseException as exc:  # reported via .error; a thread cannot raise
            self.error = exc
            log.error("replay stopped by %s: %s", type(exc).__name__, exc)

    def _replay(self) -> None:
        if self.wait_for_consumers_s > 0:
            self._wait_consumers()
        period_s = max(self.chunk_s / self.speed, MIN_PERIOD_S)
        wall0, lsl0 = self._wall0, self._lsl0
        sent = [0] * len(self.groups)  # samples sent in the current pass
        sent_markers = 0
        offset_s = 0.0  # signal time at the start of the current pass
        epoch_s = self.spec.epoch_s
        n_wake = math.ceil((time.perf_counter() - wall0) / period_s)  # after any wait
        while not self._stop.is_set():
            # Signal time due now, rounded down to whole chunks (chunk_ms of signal per push
            # at speed 1; several chunks per push when the wall period is clamped).
            due = (time.perf_counter() - wall0) * self.speed - offset_s
            due = math.floor(due / self.chunk_s + 1e-9) * self.chunk_s
            done = due >= self.duration_s
            due = min(due, self.duration_s)
            for i, (g, outlet) in enumerate(zip(self.groups, self._outlets)):
                end = min(len(g.data), _samples_before(due, g.sfreq) if not done else len(g.data))
                if end > sent[i]:
                    t = offset_s + np.arange(sent[i], end) / g.sfreq
                    outlet.push_chunk(g.data[sent[i]:end], (lsl0 + t / self.speed).tolist())
                    self.n_pushed[i] += end - sent[i]
                    sent[i] = end
            if self.markers is not None:
                end = min(len(self.markers), _samples_before(due, 1.0 / epoch_s)
                          if not done else len(self.markers))
                for k in range(sent_markers, end):
                    ts = lsl0 + (offset_s + k * epoch_s) / self.speed
                    self._marker_outlet.push_sample([self.markers[k]], ts)
                self.n_markers_pushed += max(0, end - sent_markers)
                sent_markers = max(sent_markers, end)
            if done:
                if not self.loop:
                    log.info("replay of %s finished (%.1f s of signal)", self.path.name,
                             offset_s + self.duration_s)
                    return
                offset_s += self.duration_s
                sent = [0] * len(self.groups)
                sent_markers = 0
                log.info("replay of %s: looping (pass %d)", self.path.name,
                         round(offset_s / self.duration_s) + 1)
                continue
            n_wake += 1
            delay = wall0 + n_wake * period_s - time.perf_counter()
            if delay < 0:  # fell behind (slow machine, paused): resynchronise the wake grid
                if -delay > BEHIND_WARN_S:
                    log.warning("replay of %s fell %.1f s (wall) behind its pace (paused or "
                                "overloaded); pushing the %.0f s of signal due at once",
                                self.path.name, -delay, -delay * self.speed)
                n_wake = math.ceil((time.perf_counter() - wall0) / period_s)
                delay = 0.0
            self._stop.wait(delay)
