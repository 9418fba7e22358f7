"""The one signal-conditioning chain: input rows -> model-rate, filtered rows -> 30-s epochs.

Training (whole files, offline) and live scoring (chunks from LSL) run exactly the same code:
:func:`condition` is a fresh :class:`Conditioner` fed the whole array in one call, and every
step of the chain is causal and carries its state sample by sample, so feeding a signal in
chunks of any size gives the same bytes as feeding it at once.

Chain, per row (see :class:`Conditioner`):

1. non-finite samples are replaced by the last finite value of the row (0 before the first);
2. input rate above the model rate: causal Butterworth anti-alias low-pass at the input rate
   (order :data:`ANTIALIAS_ORDER`, corner :data:`ANTIALIAS_FRACTION` x the model Nyquist);
3. resampling to ``spec.sfreq`` by linear interpolation on an exact rational grid: output
   sample ``k`` sits at input position ``k * in_sfreq / sfreq``, computed with integers, so it
   never drifts; it is emitted once its right neighbour has arrived (equal rates pass through;
   at the end of a recording :meth:`Conditioner.flush` holds the last sample for one period);
4. the row's filters at the model rate, one second-order-section cascade: Butterworth
   high-pass (order :data:`HIGHPASS_ORDER`), low-pass (order :data:`LOWPASS_ORDER`) and an IIR
   notch (quality :data:`NOTCH_Q`) when the notch frequency lies below the model Nyquist.

Every filter starts in its steady state for the row's first sample (no start transient).

NaN policy: a non-finite input sample never reaches a filter (step 1), so a gap cannot poison
the filter state; each output sample interpolated from a non-finite input sample is set to NaN
on output (``mark_invalid=True``, the default), so the gap travels with the data: the renderer
draws nothing there and the engine can mark the epoch. :attr:`Conditioner.n_invalid` counts the
marked output samples per row.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.dsp import iir
from edge_scorer.io.spec import CHAIN_SETTINGS, RenderSpec, RowSpec

log = get_logger("conditioning")

# The chain's settings live in spec.CHAIN_SETTINGS so that the render hash covers them.
#: Anti-alias low-pass corner as a fraction of the model Nyquist frequency (0.4 x model rate).
ANTIALIAS_FRACTION = CHAIN_SETTINGS["antialias_fraction"]
#: Butterworth order of the anti-alias low-pass.
ANTIALIAS_ORDER = CHAIN_SETTINGS["antialias_order"]
#: Butterworth order of a row's high-pass.
HIGHPASS_ORDER = CHAIN_SETTINGS["highpass_order"]
#: Butterworth order of a row's low-pass.
LOWPASS_ORDER = CHAIN_SETTINGS["lowpass_order"]
#: Quality factor of a row's notch (``scipy.signal.iirnotch``).
NOTCH_Q = CHAIN_SETTINGS["notch_q"]
#: Largest denominator used to turn a sampling rate into an exact fraction.
_MAX_DENOMINATOR = 1_000_000

_skipped_notches: set[tuple[str, str, float, float]] = set()


def _fraction(rate: float) -> Fraction:
    return Fraction(float(rate)).limit_denominator(_MAX_DENOMINATOR)


def row_sos(row: RowSpec, sfreq: float, spec_name: str = "") -> np.ndarray | None:
    """Second-order sections of a row's filters at the model rate (``None`` when it has none).

    Parameters
    ----------
    row : RowSpec
        The row (its ``highpass``, ``lowpass`` and ``notch`` corners in Hz).
    sfreq : float
        Model rate in Hz.
    spec_name : str
        Spec name, only used in the log message of a skipped notch.

    Returns
    -------
    ndarray of shape (n_sections, 6) or None
    """
    nyq = sfreq / 2.0
    parts = []
    if row.highpass is not None:
        parts.append(iir.butter_sos(HIGHPASS_ORDER, row.highpass, "highpass", sfreq))
    if row.lowpass is not None:
        parts.append(iir.butter_sos(LOWPASS_ORDER, row.lowpass, "lowpass", sfreq))
    if row.notch is not None:
        if 0 < row.notch < nyq:
            parts.append(iir.notch_sos(row.notch, NOTCH_Q, sfreq))
        else:
            key = (spec_name, row.name, float(row.notch), float(sfreq))
            if key not in _skipped_notches:
                _skipped_notches.add(key)
                log.info("row %r: %g-Hz notch skipped, it is not below the model Nyquist "
                         "frequency %g Hz (model rate %g Hz)", row.name, row.notch, nyq, sfreq)
    return np.vstack(parts).astype(np.float64) if parts else None


def antialias_sos(in_sfreq: float, sfreq: float) -> np.ndarray:
    """Anti-alias low-pass (second-order sections) applied at ``in_sfreq`` before downsampling."""
    corner = ANTIALIAS_FRACTION * sfreq / 2.0
    return iir.butter_sos(ANTIALIAS_ORDER, corner, "lowpass", in_sfreq)


class _Sos:
    """A causal SOS cascade whose state is carried across calls (steady state at start)."""

    def __init__(self, sos: np.ndarray) -> None:
        self.sos = sos
        self._zi_unit = iir.sosfilt_zi(sos)
        self.zi: np.ndarray | None = None

    def reset(self) -> None:
        self.zi = None

    def __call__(self, x: np.ndarray) -> np.ndarray:
        if x.size == 0:
            return x
        if self.zi is None:
            self.zi = self._zi_unit * x[0]
        y, self.zi = iir.sosfilt(self.sos, x, self.zi)
        return y


class _LinearResampler:
    """Linear interpolation onto an exact rational output grid, chunk-invariant.

    Output sample ``k`` sits at input position ``k * p / q`` (``p / q = in_sfreq / sfreq`` in
    lowest terms); ``i = k * p // q`` and the weight ``(k * p % q) / q`` are integer-exact, so
    neither the positions nor the arithmetic depend on how the input was chunked.
    """

    def __init__(self, in_sfreq: float, out_sfreq: float) -> None:
        ratio = _fraction(in_sfreq) / _fraction(out_sfreq)
        self.p, self.q = ratio.numerator, ratio.denominator
        self.reset()

    def reset(self) -> None:
        self.n_in = 0          # input samples consumed so far
        self.k_next = 0        # next output sample index
        self.last = 0.0        # last input sample (left neighbour of the next output)
        self.last_bad = False  # whether it was non-finite

    def __call__(self, x: np.ndarray, bad: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n_new = self.n_in + x.size
        if x.size == 0:
            return x, bad
        # outputs with right neighbour i + 1 <= n_new - 1, i.e. k * p / q < n_new - 1
        k_end = -((-(n_new - 1) * self.q) // self.p)
        if self.n_in == 0:
            base, buf, buf_bad = 0, x, bad
        else:
            base = self.n_in - 1
            buf = np.concatenate(([self.last], x))
            buf_bad = np.concatenate(([self.last_bad], bad))
        self.n_in, self.last, self.last_bad = n_new, float(x[-1]), bool(bad[-1])
        if k_end <= self.k_next:
            return x[:0], bad[:0]
        kp = np.arange(self.k_next, k_end, dtype=np.int64) * self.p
        self.k_next = k_end
        i = kp // self.q
        frac = (kp - i * self.q).astype(np.float64) / float(self.q)
        i -= base
        left, right = buf[i], buf[i + 1]
        return left + frac * (right - left), buf_bad[i] | buf_bad[i + 1]

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        """End of input: emit the outputs before the end of the last input sample's period.

        The last input sample is held for its sampling period (its right neighbour is taken
        equal to it), so ``n_in`` inputs give ``ceil(n_in * q / p)`` outputs in all.
        """
        k_end = -((-self.n_in * self.q) // self.p)
        if self.n_in == 0 or k_end <= self.k_next:
            return np.empty(0), np.empty(0, dtype=bool)
        m = k_end - self.k_next
        self.k_next = k_end
        return np.full(m, self.last), np.full(m, self.last_bad)


class _RowChain:
    """Fill -> anti-alias -> resample -> row filters, for one row."""

    def __init__(self, row: RowSpec, in_sfreq: float, spec: RenderSpec) -> None:
        self.in_sfreq = float(in_sfreq)
        self.last_finite = 0.0
        self.antialias = (_Sos(antialias_sos(in_sfreq, spec.sfreq))
                          if in_sfreq > spec.sfreq else None)
        self.resampler = (None if _fraction(in_sfreq) == _fraction(spec.sfreq)
                          else _LinearResampler(in_sfreq, spec.sfreq))
        sos = row_sos(row, spec.sfreq, spec.name)
        self.filters = _Sos(sos) if sos is not None else None

    def reset(self) -> None:
        self.last_finite = 0.0
        for part in (self.antialias, self.resampler, self.filters):
            if part is not None:
                part.reset()

    def __call__(self, x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        bad = ~np.isfinite(x)
        if bad.any():
            # hold the last finite value (vectorized forward fill with the carried value)
            ext = np.concatenate(([self.last_finite], x))
            idx = np.where(np.concatenate(([False], bad)), 0, np.arange(ext.size))
            np.maximum.accumulate(idx, out=idx)
            x = ext[idx[1:]]
        if x.size:
            self.last_finite = float(x[-1])
        if self.antialias is not None:
            x = self.antialias(x)
        if self.resampler is not None:
            x, bad = self.resampler(x, bad)
        if self.filters is not None:
            x = self.filters(x)
        return x, bad

    def flush(self) -> tuple[np.ndarray, np.ndarray]:
        if self.resampler is None:
            return np.empty(0), np.empty(0, dtype=bool)
        x, bad = self.resampler.flush()
        if self.filters is not None:
            x = self.filters(x)
        return x, bad


class Conditioner:
    """Stateful conditioning of input rows to the model rate, chunk by chunk.

    Parameters
    ----------
    spec : RenderSpec
        The render spec (rows, filters, model rate ``spec.sfreq``).
    in_sfreq : float or sequence of float
        Input sampling rate in Hz, one for all rows or one per row (spec order).
    mark_invalid : bool
        Set output samples interpolated from non-finite input samples to NaN (see the module
        docstring); when False they keep the held value.

    Raises
    ------
    ValueError
        If a rate is not positive or a row's input rate is below its ``min_sfreq``.

    Notes
    -----
    Rows may have different input rates; :meth:`process` then returns only the output samples
    every row has produced so far and keeps the rest for the next call, so all rows stay aligned
    on the model-rate grid (sample ``k`` at ``k / spec.sfreq`` s after each row's first sample).
    """

    def __init__(self, spec: RenderSpec, in_sfreq: float | Sequence[float],
                 mark_invalid: bool = True) -> None:
        rates = ([float(in_sfreq)] * spec.n_rows if np.ndim(in_sfreq) == 0
                 else [float(r) for r in in_sfreq])  # type: ignore[union-attr]
        if len(rates) != spec.n_rows:
            raise ValueError(f"got {len(rates)} input rates for the {spec.n_rows} rows of spec "
                             f"{spec.name!r}: give one rate, or one per row {spec.row_names}")
        for row, rate in zip(spec.rows, rates, strict=True):
            if not np.isfinite(rate) or rate <= 0:
                raise ValueError(f"row {row.name!r}: input rate {rate} Hz is not a positive "
                                 "number; pass the sampling rate of the input in Hz")
            if rate < row.min_sfreq:
                raise ValueError(
                    f"row {row.name!r}: input rate {rate:g} Hz is below the minimum "
                    f"{row.min_sfreq:g} Hz of spec {spec.name!r}; feed a {row.type} channel "
                    f"recorded at >= {row.min_sfreq:g} Hz or map another channel to this row"
                )
        self.spec = spec
        self.in_sfreq = tuple(rates)
        self.mark_invalid = bool(mark_invalid)
        self._chains = [_RowChain(row, rate, spec) for row, rate in zip(spec.rows, rates,
                                                                      strict=True)]
        self.reset()

    def reset(self) -> None:
        """Forget all state: the next sample is treated as the first of a new recording."""
        for chain in self._chains:
            chain.reset()
        self._pending = [np.empty(0) for _ in self._chains]
        self._pending_bad = [np.empty(0, dtype=bool) for _ in self._chains]
        #: Output samples marked invalid (NaN) so far, per row.
        self.n_invalid = np.zeros(self.spec.n_rows, dtype=np.int64)
        #: Output samples returned so far (per row, all rows alike).
        self.n_out = 0
        self._flushed = False

    def _rows(self, chunk: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
        n = self.spec.n_rows
        if isinstance(chunk, np.ndarray) and chunk.ndim == 2:
            if chunk.shape[0] != n:
                raise ValueError(f"chunk has {chunk.shape[0]} rows, spec {self.spec.name!r} "
                                 f"has {n} {self.spec.row_names}: pass (n_rows, n_samples)")
            rows = [np.asarray(r, dtype=np.float64) for r in chunk]
        else:
            rows = [np.asarray(r, dtype=np.float64) for r in chunk]
            if len(rows) != n or any(r.ndim != 1 for r in rows):
                raise ValueError(f"chunk must be an (n_rows={n}, n_samples) array or a sequence "
                                 f"of {n} 1-D arrays in spec order {self.spec.row_names}")
        if len(set(self.in_sfreq)) > 1 and isinstance(chunk, np.ndarray) and chunk.ndim == 2:
            raise ValueError("rows have different input rates: pass a sequence of 1-D arrays "
                             "(one per row, each with its own length), not a 2-D array")
        return rows

    def process(self, chunk: np.ndarray | Sequence[np.ndarray]) -> np.ndarray:
        """Condition the next chunk of input.

        Parameters
        ----------
        chunk : ndarray of shape (n_rows, n_samples), or sequence of 1-D arrays
            Next input samples of each row, in spec order and row units. Rows with different
            input rates are passed as a sequence of 1-D arrays of their own lengths.

        Returns
        -------
        ndarray of shape (n_rows, m), float64
            Newly completed output samples at ``spec.sfreq`` (``m`` may be 0).
        """
        if self._flushed:
            raise ValueError("this Conditioner was flushed (end of input); call reset() "
                             "before feeding a new recording")
        rows = self._rows(chunk)
        return self._emit([chain(x) for chain, x in zip(self._chains, rows, strict=True)])

    def flush(self) -> np.ndarray:
        """End of input: emit the samples still held back by upsampled rows.

        A row read at a rate below the model rate holds its last input sample for one input
        period (instead of waiting for a right neighbour that will not come), so a recording of
        ``duration_s`` yields ``duration_s * spec.sfreq`` samples on every row. Every sample
        returned before the flush is unchanged: ``process(a) + process(b) + flush()`` equals
        ``process(a + b) + flush()`` byte for byte. Call :meth:`reset` to start again.

        Returns
        -------
        ndarray of shape (n_rows, m), float64
        """
        out = self._emit([chain.flush() for chain in self._chains])
        self._flushed = True
        return out

    def _emit(self, produced: list[tuple[np.ndarray, np.ndarray]]) -> np.ndarray:
        """Queue each row's new outputs; return the samples every row has (rows aligned)."""
        outs, bads = [], []
        for i, (y, bad) in enumerate(produced):
            if self._pending[i].size:
                y = np.concatenate((self._pending[i], y))
                bad = np.concatenate((self._pending_bad[i], bad))
            outs.append(y)
            bads.append(bad)
        m = min(y.size for y in outs)
        out = np.empty((len(outs), m))
        for i, (y, bad) in enumerate(zip(outs, bads, strict=True)):
            out[i] = y[:m]
            # copies: a pass-through row's leftover may be a view of the caller's buffer
            self._pending[i], self._pending_bad[i] = y[m:].copy(), bad[m:].copy()
            if self.mark_invalid and bad[:m].any():
                out[i, bad[:m]] = np.nan
            self.n_invalid[i] += int(np.count_nonzero(bad[:m]))
        self.n_out += m
        return out


def condition(data: np.ndarray | Sequence[np.ndarray], in_sfreq: float | Sequence[float],
              spec: RenderSpec, mark_invalid: bool = True, flush: bool = False) -> np.ndarray:
    """Condition a whole recording: a fresh :class:`Conditioner` fed everything in one call.

    Parameters
    ----------
    data : ndarray of shape (n_rows, n_samples), or sequence of 1-D arrays
        Rows in spec order and row units (one 1-D array per row when the rates differ).
    in_sfreq : float or sequence of float
        Input rate(s) in Hz.
    spec : RenderSpec
        The render spec.
    mark_invalid : bool
        See :class:`Conditioner`.
    flush : bool
        Also emit the samples held back at the end by upsampled rows
        (:meth:`Conditioner.flush`); a live stream matches it by calling ``flush()`` at its end.

    Returns
    -------
    ndarray of shape (n_rows, n_out), float64
        The conditioned rows at ``spec.sfreq``.
    """
    cond = Conditioner(spec, in_sfreq, mark_invalid=mark_invalid)
    out = cond.process(data)
    return np.concatenate((out, cond.flush()), axis=1) if flush else out


class Epocher:
    """Cut conditioned samples into consecutive epochs aligned to the first sample.

    Parameters
    ----------
    spec : RenderSpec
        The render spec (``spec.epoch_samples`` samples per epoch).
    """

    def __init__(self, spec: RenderSpec) -> None:
        self.spec = spec
        self.reset()

    def reset(self) -> None:
        """Drop buffered samples and restart epoch numbering at 0."""
        self._buf = np.empty((self.spec.n_rows, 0))
        #: Index of the next epoch to complete.
        self.next_index = 0

    @property
    def pending_samples(self) -> int:
        """Samples buffered towards the next epoch."""
        return self._buf.shape[1]

    def push(self, samples: np.ndarray) -> list[tuple[int, np.ndarray]]:
        """Add conditioned samples; return every epoch they complete.

        Parameters
        ----------
        samples : ndarray of shape (n_rows, m)
            Output of :meth:`Conditioner.process`.

        Returns
        -------
        list of (int, ndarray of shape (n_rows, spec.epoch_samples))
            ``(epoch_index, epoch)`` for each completed epoch, in order.
        """
        samples = np.asarray(samples, dtype=np.float64)
        if samples.ndim != 2 or samples.shape[0] != self.spec.n_rows:
            raise ValueError(f"samples must have shape (n_rows={self.spec.n_rows}, m), "
                             f"got {samples.shape}")
        buf = np.concatenate((self._buf, samples), axis=1) if self._buf.size else samples
        n = buf.shape[1] // self.spec.epoch_samples
        done = epochs_from_signal(buf, self.spec)
        out = [(self.next_index + j, done[j]) for j in range(n)]
        self.next_index += n
        self._buf = buf[:, n * self.spec.epoch_samples:].copy()
        return out

    def epochs_from_signal(self, conditioned: np.ndarray) -> np.ndarray:
        """Cut a whole conditioned recording into epochs (see :func:`epochs_from_signal`)."""
        return epochs_from_signal(conditioned, self.spec)


def epochs_from_signal(conditioned: np.ndarray, spec: RenderSpec) -> np.ndarray:
    """Cut a conditioned recording into complete epochs (the trailing partial one is dropped).

    Parameters
    ----------
    conditioned : ndarray of shape (n_rows, n_samples)
        Output of :func:`condition`.
    spec : RenderSpec
        The render spec.

    Returns
    -------
    ndarray of shape (n_epochs, n_rows, spec.epoch_samples), float64, C-contiguous
    """
    conditioned = np.asarray(conditioned, dtype=np.float64)
    n_rows, n_samples = conditioned.shape
    e = spec.epoch_samples
    n = n_samples // e
    return np.ascontiguousarray(conditioned[:, : n * e].reshape(n_rows, n, e).transpose(1, 0, 2))
