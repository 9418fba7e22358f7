"""One LSL inlet's samples on the signal's time grid: ring buffer, gaps, de-jitter.

:class:`InletStream` wraps one ``pylsl.StreamInlet`` for
:class:`~edge_scorer.stream.inlet.LslSource`:
it pulls everything available with ``pull_chunk(timeout=0, dest_obj=...)`` into a preallocated
:class:`RingBuffer` and places the samples on the stream's sample grid from their time stamps
(see :mod:`edge_scorer.stream.inlet` for the rules: de-jitter, lost samples inserted, short gaps
interpolated and flagged, long ones NaN, samples before the common start dropped).
"""

from __future__ import annotations

import time
from typing import Any

import numpy as np

from edge_scorer._log import get_logger

log = get_logger("inlet")

#: Seconds between clock-offset refreshes of an inlet (liblsl re-estimates every few seconds).
OFFSET_REFRESH_S = 1.0
#: Longest wait for a clock-offset estimate while pulling (liblsl's cached one comes at once).
OFFSET_TIMEOUT_S = 0.05

_DTYPES = {"float32": np.float32, "double64": np.float64, "int32": np.int32,
           "int16": np.int16, "int8": np.int8, "int64": np.int64}



class RingBuffer:
    """A preallocated ``(capacity, n_channels)`` ring filled in place by ``pull_chunk``."""

    def __init__(self, capacity: int, n_channels: int, dtype: Any = np.float32) -> None:
        if capacity < 1:
            raise ValueError(f"ring capacity must be >= 1 sample, got {capacity}")
        self.data = np.zeros((capacity, n_channels), dtype=dtype)
        self.pos = 0  # next write position
        self.n_written = 0

    @property
    def capacity(self) -> int:
        return self.data.shape[0]

    def free_view(self, max_samples: int) -> np.ndarray:
        """The contiguous free region at the write position (wrapping when full)."""
        if self.pos == self.capacity:
            self.pos = 0
        return self.data[self.pos:self.pos + min(max_samples, self.capacity - self.pos)]

    def advance(self, n: int) -> np.ndarray:
        """Commit ``n`` samples written into :meth:`free_view`; return them (a view)."""
        view = self.data[self.pos:self.pos + n]
        self.pos += n
        self.n_written += n
        return view

    def latest(self, n: int) -> np.ndarray:
        """The last ``n`` samples written, oldest first (fewer when fewer exist)."""
        n = min(n, self.capacity, self.n_written)
        start = self.pos - n
        if start >= 0:
            return self.data[start:self.pos].copy()
        return np.concatenate((self.data[start:], self.data[:self.pos]))


class InletStream:
    """One inlet, its ring buffer and its time bookkeeping (see the module docstring)."""

    def __init__(self, inlet: Any, info: Any, rows: list[tuple[int, int]], buffer_s: float,
                 speed: float, fill_gap_s: float, gap_tolerance_s: float,
                 chunk_max: int) -> None:
        self.inlet = inlet
        self.info = info
        self.rows = rows  # (spec row, channel index)
        self.sfreq = float(info.nominal_srate())
        self.speed = speed
        self.period = 1.0 / (self.sfreq * speed)
        self.fill_gap_s = fill_gap_s
        self.tol = max(0.5, gap_tolerance_s * self.sfreq)  # samples
        self.chunk_max = chunk_max
        self.ring = RingBuffer(max(int(buffer_s * self.sfreq), chunk_max), info.channel_count(),
                               channel_dtype(info))
        self.t_next: float | None = None
        #: Remote -> local clock offset added to every stamp (see :meth:`update_offset`).
        self.offset = 0.0
        self._offset_at = -np.inf
        self.last = np.zeros(len(rows))
        self.n_out = 0
        self.n_pulled = 0
        self.n_gaps = 0
        self.n_missing = 0

    def close(self) -> None:
        try:
            self.inlet.close_stream()
        except Exception:  # pragma: no cover - liblsl may already have dropped it
            pass

    def pull(self) -> tuple[np.ndarray, np.ndarray]:
        """Everything available: samples ``(n, n_rows_used)`` float64 and stamps."""
        if not self.inlet.samples_available():  # 0.3 us; an empty pull_chunk takes 4 us
            return np.zeros((0, len(self.rows))), np.zeros(0)
        parts, stamps = [], []
        while True:
            dest = self.ring.free_view(self.chunk_max)
            _, ts = self.inlet.pull_chunk(timeout=0.0, max_samples=len(dest), dest_obj=dest)
            n = len(ts)
            if n == 0:
                break
            got = self.ring.advance(n)
            self.n_pulled += n
            parts.append(got[:, [c for _, c in self.rows]].astype(np.float64))
            stamps.append(np.asarray(ts, dtype=np.float64))
            if n < len(dest):
                break
        if not parts:
            return np.zeros((0, len(self.rows))), np.zeros(0)
        self.update_offset()
        return np.concatenate(parts), np.concatenate(stamps) + self.offset

    def set_offset(self, offset: float) -> float:
        """Set the clock offset (the first estimate, taken when the stream opens)."""
        self.offset, self._offset_at = float(offset), time.monotonic()
        return self.offset

    def update_offset(self, timeout_s: float = OFFSET_TIMEOUT_S) -> float:
        """Refresh the clock offset from liblsl's estimate (at most every
        :data:`OFFSET_REFRESH_S`); keep the last one when none comes within ``timeout_s``.

        This replaces liblsl's ``proc_clocksync`` post-processing, which asks for a new
        estimate with no time limit from inside ``pull_chunk``: a stream lost while liblsl
        recovers it then blocks the pull, and with one poller for many beds every bed.
        ``time_correction`` answers at once with liblsl's latest estimate (its own thread
        refreshes it); the timeout only bounds the first one, taken when the stream opens.
        """
        now = time.monotonic()
        if self.inlet is None or now - self._offset_at < OFFSET_REFRESH_S:
            return self.offset
        self._offset_at = now
        try:
            offset = float(self.inlet.time_correction(timeout=timeout_s))
        except Exception as exc:  # pylsl's TimeoutError / LostError: keep the last offset
            log.debug("%s: no new clock offset (%s); keeping %.6f s", self.info.name(), exc,
                      self.offset)
            return self.offset
        if self.t_next is not None:  # the expected stamp moves with the clock mapping, so a
            self.t_next += offset - self.offset  # new estimate is never read as a gap
        self.offset = offset
        return self.offset

    def place(self, x: np.ndarray, ts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Insert missing samples (see the module notes); return samples and filled mask."""
        n = len(ts)
        if n == 0:
            return x, np.zeros(0, dtype=bool)
        if self.t_next is None:
            raise RuntimeError("stream time origin not set")  # set by LslSource
        d = (ts - self.t_next) / self.period - np.arange(n)  # displacement in samples
        if d[0] < -self.tol:
            k = int(round(-d[0]))
            if self.n_out == 0 and k > 0:  # samples before the common start: drop them
                x, ts, d = x[k:], ts[k:], d[k:] + k
                if len(ts) == 0:
                    return np.zeros((0, x.shape[1])), np.zeros(0, dtype=bool)
            else:
                log.warning("%s: time stamps went back by %.3g s; re-anchoring the stream "
                            "clock", self.info.name(), -d[0] * self.period)
                self.t_next = float(ts[0])
                d = (ts - self.t_next) / self.period - np.arange(len(ts))
        jumps = np.diff(d, prepend=0.0)
        gap_at = np.flatnonzero(jumps > self.tol)
        if len(gap_at) == 0:
            out, filled = x, np.zeros(len(x), dtype=bool)
        else:
            pieces, masks, prev = [], [], 0
            for i in gap_at:
                g = int(round(jumps[i]))
                pieces.append(x[prev:i])
                masks.append(np.zeros(i - prev, dtype=bool))
                before = x[i - 1] if i > 0 else self.last
                if g / self.sfreq <= self.fill_gap_s and self.n_out + prev > 0:
                    w = (np.arange(1, g + 1) / (g + 1))[:, None]
                    pieces.append(before[None, :] * (1 - w) + x[i][None, :] * w)
                    masks.append(np.ones(g, dtype=bool))
                else:
                    pieces.append(np.full((g, x.shape[1]), np.nan))
                    masks.append(np.zeros(g, dtype=bool))
                self.n_gaps += 1
                self.n_missing += g
                log.warning("%s: %d sample(s) (%.3g s) missing before sample %d; %s",
                            self.info.name(), g, g / self.sfreq, self.n_out + prev + i,
                            "filled" if masks[-1].any() else "inserted as a gap")
                prev = i
            pieces.append(x[prev:])
            masks.append(np.zeros(len(x) - prev, dtype=bool))
            out, filled = np.concatenate(pieces), np.concatenate(masks)
        # de-jitter: advance the expectation, pulled a little towards the observed stamps
        predicted = self.t_next + len(out) * self.period
        observed = float(ts[-1]) + self.period
        self.t_next = predicted + 0.1 * (observed - predicted)
        finite = np.isfinite(out[-1])
        self.last = np.where(finite, out[-1], self.last)
        self.n_out += len(out)
        return out, filled


def channel_dtype(info: Any) -> Any:
    import pylsl

    names = {pylsl.cf_float32: "float32", pylsl.cf_double64: "double64",
             pylsl.cf_int32: "int32", pylsl.cf_int16: "int16", pylsl.cf_int8: "int8"}
    if hasattr(pylsl, "cf_int64"):
        names[pylsl.cf_int64] = "int64"
    name = names.get(info.channel_format())
    if name is None:
        raise ValueError(f"stream {info.name()!r} carries strings or an unknown channel format; "
                         "a PSG stream must be numeric (float32, double64 or int)")
    return _DTYPES[name]
