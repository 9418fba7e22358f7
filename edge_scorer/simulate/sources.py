"""Low-level, vectorized building blocks of the PSG simulator.

* :class:`StageTimeline`: per-stage mixing weights that blend smoothly across epoch
  boundaries, on a coarse control grid, interpolated to any sampling rate.
* Band-limited and coloured (1/f) Gaussian noise shaped in the frequency domain.
* Point-process event times (inhomogeneous Poisson) and waveform placement.
* Transient waveforms: spindles, K-complexes, vertex sharp waves, sawtooth bursts, blinks.
"""

from __future__ import annotations

import zlib
from collections.abc import Callable, Sequence

import numpy as np
from scipy import fft as sp_fft
from scipy import signal as sps

from edge_scorer.stages import Stage

#: Number of real stages (W, N1, N2, N3, REM), the rows of every per-stage table.
N_STAGES = 5


def stream(root_seed: int, name: str) -> np.random.Generator:
    """An independent, reproducible random stream for one named part of the simulation.

    Separate streams keep parts independent of each other: adding a channel to a montage does
    not change the samples of the other channels.
    """
    return np.random.default_rng([int(root_seed) & 0xFFFFFFFF, zlib.crc32(name.encode())])


class StageTimeline:
    """Stage-mixing weights of a night on a control grid.

    Parameters
    ----------
    stages : ndarray of int, shape (n_epochs,)
        Stage codes; ``UNSCORED`` (movement time / ``?``) is simulated as wake.
    epoch_s : float
        Epoch length in seconds.
    blend_s : float
        Width of the Hann window that mixes neighbouring stages across a boundary.
    ctrl_hz : float
        Rate of the control grid (envelopes and event rates live there).
    """

    def __init__(
        self, stages: np.ndarray, epoch_s: float, blend_s: float = 6.0, ctrl_hz: float = 4.0
    ) -> None:
        stages = np.asarray(stages, dtype=np.int64)
        if stages.ndim != 1 or stages.size == 0:
            raise ValueError("stages must be a non-empty 1-D array of stage codes")
        self.stages = stages
        self.unscored = stages == Stage.UNSCORED
        self.real_stages = np.where(self.unscored, Stage.W, stages)
        self.epoch_s = float(epoch_s)
        self.ctrl_hz = float(ctrl_hz)
        self.duration_s = len(stages) * self.epoch_s
        self.n_ctrl = int(round(self.duration_s * self.ctrl_hz))
        self.blend_s = float(blend_s)
        self.t_ctrl = np.arange(self.n_ctrl) / self.ctrl_hz
        self._epoch_of_ctrl = np.minimum(
            (self.t_ctrl / self.epoch_s).astype(np.int64), len(stages) - 1
        )
        onehot = np.zeros((N_STAGES, len(stages)))
        onehot[self.real_stages, np.arange(len(stages))] = 1.0
        self.weights = self.epochwise(onehot)

    @property
    def n_epochs(self) -> int:
        """Number of epochs."""
        return len(self.stages)

    def smooth(self, curve: np.ndarray, width_s: float | None = None) -> np.ndarray:
        """Smooth a control-grid curve (last axis) with a normalized Hann window."""
        width = max(3, int(round((width_s or self.blend_s) * self.ctrl_hz)) | 1)
        win = np.hanning(width + 2)[1:-1]
        win /= win.sum()
        pad = width // 2
        padded = np.pad(curve, [(0, 0)] * (curve.ndim - 1) + [(pad, pad)], mode="edge")
        return sps.oaconvolve(padded, win.reshape((1,) * (curve.ndim - 1) + (-1,)), mode="valid",
                              axes=-1)

    def epochwise(self, values: np.ndarray, width_s: float | None = None) -> np.ndarray:
        """Per-epoch values (last axis) -> smooth control-grid curve."""
        return self.smooth(np.asarray(values, dtype=np.float64)[..., self._epoch_of_ctrl],
                           width_s)

    def mix(self, table: Sequence[float]) -> np.ndarray:
        """Stage-weighted value ``sum_s w_s(t) * table[s]`` on the control grid."""
        return np.asarray(table, dtype=np.float64) @ self.weights

    def at(self, curve: np.ndarray, sfreq: float, n: int) -> np.ndarray:
        """Interpolate a control-grid curve to ``n`` samples at ``sfreq``."""
        t = np.arange(n) / sfreq
        return np.interp(t, self.t_ctrl, curve)

    def lowpass_noise(self, rng: np.random.Generator, cutoff_hz: float) -> np.ndarray:
        """Unit-variance Gaussian noise on the control grid, band-limited below ``cutoff_hz``."""
        return band_noise(rng, self.n_ctrl, self.ctrl_hz, 0.0, cutoff_hz)


def band_noise(
    rng: np.random.Generator,
    n: int,
    sfreq: float,
    lo_hz: float,
    hi_hz: float,
    exponent: float = 0.0,
    edge: float = 0.25,
) -> np.ndarray:
    """Unit-RMS Gaussian noise with power in ``[lo_hz, hi_hz]`` and a ``1/f**exponent`` tilt.

    The band edges are raised-cosine tapers ``edge`` (a fraction of the edge frequency) wide, so
    the noise has no ringing. ``exponent=1`` gives pink and ``2`` brown (red) noise.
    """
    if n <= 0:
        return np.zeros(0)
    nfft = sp_fft.next_fast_len(int(n), real=True)
    n_bins = nfft // 2 + 1
    df = sfreq / nfft
    hi_hz = min(hi_hz, 0.499 * sfreq)
    w_lo = max(lo_hz * edge, df) if lo_hz > 0 else 0.0
    w_hi = max(hi_hz * edge, df)
    k0 = max(1, int(np.floor((lo_hz - w_lo / 2) / df))) if lo_hz > 0 else 0
    k1 = min(n_bins, int(np.ceil((hi_hz + w_hi / 2) / df)) + 1)
    freqs = np.arange(k0, k1) * df
    gain = np.clip(((hi_hz + w_hi / 2) - freqs) / w_hi, 0.0, 1.0)
    if lo_hz > 0:
        gain *= np.clip((freqs - (lo_hz - w_lo / 2)) / w_lo, 0.0, 1.0)
    gain = np.sin(0.5 * np.pi * gain) ** 2
    if exponent:
        gain *= np.maximum(freqs, max(lo_hz, df)) ** (-exponent / 2.0)
    spec = np.zeros(n_bins, dtype=np.complex128)
    spec[k0:k1] = (rng.standard_normal(k1 - k0) + 1j * rng.standard_normal(k1 - k0)) * gain
    x = sp_fft.irfft(spec, nfft, workers=-1)[:n]
    rms = np.sqrt(np.dot(x, x) / n)
    return x / rms if rms > 0 else x


def highpass(x: np.ndarray, sfreq: float, cutoff_hz: float, order: int = 1) -> np.ndarray:
    """Causal Butterworth high-pass, as the AC coupling of a PSG amplifier."""
    if cutoff_hz <= 0:
        return x
    sos = sps.butter(order, cutoff_hz, "highpass", fs=sfreq, output="sos")
    return sps.sosfilt(sos, x)


def lowpass(x: np.ndarray, sfreq: float, cutoff_hz: float, order: int = 2) -> np.ndarray:
    """Zero-phase Butterworth low-pass."""
    sos = sps.butter(order, min(cutoff_hz, 0.45 * sfreq), "lowpass", fs=sfreq, output="sos")
    return sps.sosfiltfilt(sos, x)


def event_times(rng: np.random.Generator, rate_per_s: np.ndarray, ctrl_hz: float) -> np.ndarray:
    """Times (s) of an inhomogeneous Poisson process whose rate is given on the control grid."""
    counts = rng.poisson(np.maximum(rate_per_s, 0.0) / ctrl_hz)
    idx = np.repeat(np.arange(len(counts)), counts)
    return np.sort((idx + rng.uniform(0.0, 1.0, len(idx))) / ctrl_hz)


def place(
    out: np.ndarray, sfreq: float, centers_s: np.ndarray,
    make: Callable[[int], np.ndarray],
) -> None:
    """Add one waveform per event, centred on ``centers_s``, into ``out`` (in place).

    ``make(i)`` returns the samples of event ``i`` (its centre is the middle sample).
    """
    n = len(out)
    for i, c in enumerate(np.asarray(centers_s)):
        w = make(i)
        start = int(round(c * sfreq)) - len(w) // 2
        a, b = max(0, start), min(n, start + len(w))
        if b > a:
            out[a:b] += w[a - start:b - start]


def box_envelope(
    tl: StageTimeline, starts_s: np.ndarray, durations_s: np.ndarray, ramp_s: float = 1.0
) -> np.ndarray:
    """0..1 envelope on the control grid that is 1 during each event, with smooth ramps."""
    env = np.zeros(tl.n_ctrl)
    a = np.clip((np.asarray(starts_s) * tl.ctrl_hz).astype(np.int64), 0, tl.n_ctrl)
    b = np.clip(((np.asarray(starts_s) + durations_s) * tl.ctrl_hz).astype(np.int64), 0, tl.n_ctrl)
    diff = np.zeros(tl.n_ctrl + 1)
    np.add.at(diff, a, 1.0)
    np.add.at(diff, b, -1.0)
    env = np.minimum(np.cumsum(diff)[:-1], 1.0)
    return np.clip(tl.smooth(env, ramp_s), 0.0, 1.0)


def step_train(
    n: int, sfreq: float, times_s: np.ndarray, steps: np.ndarray, rise_s: float
) -> np.ndarray:
    """Sum of smooth steps (position changes) of height ``steps`` at ``times_s``.

    Models eye position: each saccade / rapid eye movement moves the gaze to a new position
    with a rise time of ``rise_s``; the amplifier's high-pass turns steps into the familiar
    sharp deflections that decay back to baseline.
    """
    imp = np.zeros(n)
    idx = np.clip(np.round(np.asarray(times_s) * sfreq).astype(np.int64), 0, n - 1)
    np.add.at(imp, idx, steps)
    k = max(3, int(round(2 * rise_s * sfreq)) | 1)
    kernel = np.hanning(k + 2)[1:-1]
    kernel /= kernel.sum()
    return np.cumsum(sps.oaconvolve(imp, kernel, mode="same"))


# ----------------------------------------------------------------------------- waveforms
def spindle(sfreq: float, duration_s: float, freq_hz: float, amp_uv: float,
            chirp_hz: float, skew: float) -> np.ndarray:
    """A sleep spindle: waxing-waning (skewed Hann) envelope on an 11-16 Hz oscillation."""
    n = max(4, int(round(duration_s * sfreq)))
    x = np.linspace(0.0, 1.0, n)
    warped = x ** skew  # skew != 1 moves the envelope peak off-centre (waxing != waning)
    env = np.sin(np.pi * warped) ** 2
    t = np.arange(n) / sfreq
    phase = 2 * np.pi * (freq_hz * t + 0.5 * chirp_hz * t**2 / max(duration_s, 1e-3))
    return amp_uv * env * np.sin(phase)


def k_complex(sfreq: float, duration_s: float, amp_uv: float) -> np.ndarray:
    """A K-complex: a sharp negative wave followed by a slower positive wave (~0.5-1 s)."""
    n = max(8, int(round(duration_s * sfreq * 1.6)))
    t = np.linspace(-0.3, 1.3, n) * duration_s
    d = duration_s
    neg = -np.exp(-0.5 * ((t - 0.18 * d) / (0.09 * d)) ** 2)
    pos = 0.75 * np.exp(-0.5 * ((t - 0.55 * d) / (0.17 * d)) ** 2)
    pre = 0.15 * np.exp(-0.5 * ((t - 0.02 * d) / (0.05 * d)) ** 2)
    return amp_uv * (neg + pos + pre)


def vertex_wave(sfreq: float, amp_uv: float, width_s: float) -> np.ndarray:
    """A vertex sharp wave: a sharp negative transient (~0.1-0.3 s) with a small rebound."""
    n = max(6, int(round(4 * width_s * sfreq)))
    t = np.linspace(-2.0, 2.0, n) * width_s
    return amp_uv * (-np.exp(-0.5 * (t / (0.25 * width_s)) ** 2)
                     + 0.3 * np.exp(-0.5 * ((t - 0.7 * width_s) / (0.35 * width_s)) ** 2))


def sawtooth_burst(sfreq: float, n_waves: int, freq_hz: float, amp_uv: float) -> np.ndarray:
    """A train of REM sawtooth waves (2-6 Hz, asymmetric triangles) with a smooth envelope."""
    duration_s = n_waves / freq_hz
    n = max(4, int(round(duration_s * sfreq)))
    t = np.arange(n) / sfreq
    env = np.sin(np.pi * np.linspace(0.0, 1.0, n)) ** 0.5
    return amp_uv * env * sps.sawtooth(2 * np.pi * freq_hz * t, width=0.25)


def blink(sfreq: float, amp_uv: float, duration_s: float) -> np.ndarray:
    """An eye blink on the vertical EOG: a smooth asymmetric bump (~0.2-0.4 s)."""
    n = max(4, int(round(duration_s * sfreq)))
    x = np.linspace(0.0, 1.0, n)
    return amp_uv * np.sin(np.pi * x**0.7) ** 2
