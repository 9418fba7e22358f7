"""Signal-level training augmentations aimed at what differs between recordings.

The shipped model is trained on simulated nights and has to survive real ones: other
amplifiers, electrodes, montages, labs. These augmentations change the *native-rate signal
rows* of a recording before the one conditioning chain and the one renderer
(:func:`edge_scorer.dsp.render_night.condition_recording` with a ``transform``), so an augmented
night's images are drawn exactly like any other night's.

Per row type (``RowSpec.type``):

* ``EEG``/``EOG``: gain, polarity flip, electrode artifacts (pops, sweat drifts, movement
  bursts), additive white/pink noise, mains hum, ECG pick-up, an extra amplifier high-pass /
  low-pass, loose-lead flat stretches.
* ``EMG`` (raw): gain, movement bursts, noise, hum, ECG pick-up, flat stretches.
* ``EMG_ENVELOPE``: gain, an additive offset (noise-floor change), the rise of movement
  bursts, flat stretches; kept non-negative.
* every other type (ECG, RESP, SPO2): only the time shift (the ranges below are EEG ranges).

Every row is moved by the same random time shift relative to the labels (the epoch count is
kept). :func:`plan_augmentation` draws the parameters of one augmented copy (JSON-able
:class:`AugmentPlan`), :func:`apply_augmentation` applies them (noise realisations from the
plan's own seed), :func:`augment_rows` does both. Same seed, same output.
"""

from __future__ import annotations

import dataclasses
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

from edge_scorer._log import get_logger

log = get_logger("training.augment")

__all__ = ["AugmentConfig", "AugmentPlan", "RowPlan", "apply_augmentation", "augment_rows",
           "copy_seed", "plan_augmentation"]

# ---------------------------------------------------------------------------- the numbers
#: Per-row gain, log-uniform: electrode impedance and amplifier calibration differ by tens of
#: percent between labs; 0.6-1.6 also covers uV-vs-scaled exports off by their calibration.
GAIN_RANGE = (0.6, 1.6)
#: Polarity flip of an EEG/EOG row: reversed derivations (Cz-Fpz for Fpz-Cz, E2 vs E1 reference)
#: are common in real montages.
FLIP_PROB = 0.25
#: Share of copies with an extra first-order amplifier high-pass: AASM 2.6 recommends a 0.3 Hz
#: EEG high-pass; 0.05-0.7 Hz corners are seen across labs and devices.
HIGHPASS_PROB = 0.5
HIGHPASS_HZ = (0.05, 0.7)
#: Share of copies with an extra amplifier low-pass (2nd-order Butterworth, the usual hardware
#: order); corners 25-45 Hz bracket AASM's 35 Hz EEG low-pass.
LOWPASS_PROB = 0.5
LOWPASS_HZ = (25.0, 45.0)
LOWPASS_ORDER = 2
#: White and pink amplifier/electrode noise, uV RMS at the row's native rate: 0.5-4 uV spans
#: modern amplifier input noise (<1 uV) to older gear and high-impedance electrodes.
WHITE_RMS_UV = (0.5, 4.0)
PINK_RMS_UV = (0.5, 4.0)
#: Mains hum: 50 Hz (Europe, Asia) or 60 Hz (Americas), 0-6 uV peak after common-mode
#: rejection. Added only to rows recorded fast enough to carry it (rate > 2 x mains): a
#: recorder's anti-alias filter removes it from slower rows (e.g. Sleep-EDF's 100-Hz EEG).
HUM_HZ = (50.0, 60.0)
HUM_UV = (0.0, 6.0)
#: ECG pick-up: QRS-like spikes at a resting sleep heart rate of 50-90 bpm, 2-15 uV on EEG
#: (mastoid/neck references pick up more), with 3 % beat-to-beat variability.
ECG_BPM = (50.0, 90.0)
ECG_UV = (2.0, 15.0)
ECG_HRV = 0.03
ECG_QRS_SIGMA_S = 0.012  # width of the Ricker wavelet standing in for the QRS (~60 ms wide)
#: EMG envelope noise-floor change (uV, additive): envelope floors of real Sleep-EDF nights
#: differ by a few uV with electrode contact and amplifier noise.
EMG_OFFSET_UV = (-1.0, 3.0)
#: Electrode pops: a step of 50-300 uV decaying over 0.2-2 s (the amplifier's DC recovery),
#: 0-6 per hour per row (rates seen on poorly prepared leads; a rate is drawn per copy).
POP_RATE_H = (0.0, 6.0)
POP_UV = (50.0, 300.0)
POP_TAU_S = (0.2, 2.0)
#: Movement bursts: 1-10 s of band-limited high-amplitude noise on every row at once (body
#: movements, arousals with movement), 0-10 per hour; 30-150 uV RMS on EEG/EOG, 10-40 uV on
#: raw EMG, and the EMG envelope rises by 5-25 uV.
MOVE_RATE_H = (0.0, 10.0)
MOVE_S = (1.0, 10.0)
MOVE_BAND_HZ = (0.5, 30.0)
MOVE_UV = (30.0, 150.0)
MOVE_EMG_UV = (10.0, 40.0)
MOVE_ENV_UV = (5.0, 25.0)
MOVE_TAPER = 0.2  # Tukey taper share at the ends of a burst (no artificial step)
#: Sweat drifts: slow waves below 0.2 Hz (here 0.02-0.15 Hz under a Hann window) of 10-60 uV,
#: 30-300 s long, 0-3 per hour per row (warm rooms, long nights).
SWEAT_RATE_H = (0.0, 3.0)
SWEAT_HZ = (0.02, 0.15)
SWEAT_UV = (10.0, 60.0)
SWEAT_S = (30.0, 300.0)
#: Loose-lead flat stretches: a row held at one value for 2-20 s, 0-2 per hour per row.
FLAT_RATE_H = (0.0, 2.0)
FLAT_S = (2.0, 20.0)
#: Time shift of the signal relative to the labels: hypnogram and signal clocks of real
#: recordings disagree by seconds (export offsets, epoch-boundary rounding). Each row moves by
#: the nearest whole sample of its own rate (a 1-Hz EMG envelope by whole seconds).
SHIFT_S = (-3.0, 3.0)

_BRAIN = ("EEG", "EOG")
_ELECTRODE = ("EEG", "EOG", "EMG")  # noise, hum, ECG pick-up
_FLATTENED = ("EEG", "EOG", "EMG", "EMG_ENVELOPE")
Range = tuple[float, float]


@dataclass(frozen=True)
class AugmentConfig:
    """What the augmentation may draw. Every range is ``(low, high)``; ``low == high`` fixes a
    value, ``(0, 0)`` amplitudes / rates and ``0`` probabilities switch a part off
    (:meth:`off` switches everything off; an all-off copy equals its original exactly).

    Attributes
    ----------
    copies : int
        Augmented copies per training night (0: none).
    seed : int
        Base seed; a copy's seed also depends on its night name and copy number
        (:func:`copy_seed`).
    """

    copies: int = 0
    seed: int = 0
    gain: Range = GAIN_RANGE
    flip_prob: float = FLIP_PROB
    highpass_prob: float = HIGHPASS_PROB
    highpass_hz: Range = HIGHPASS_HZ
    lowpass_prob: float = LOWPASS_PROB
    lowpass_hz: Range = LOWPASS_HZ
    white_uv: Range = WHITE_RMS_UV
    pink_uv: Range = PINK_RMS_UV
    hum_hz: tuple[float, ...] = HUM_HZ
    hum_uv: Range = HUM_UV
    ecg_bpm: Range = ECG_BPM
    ecg_uv: Range = ECG_UV
    emg_offset_uv: Range = EMG_OFFSET_UV
    pop_rate_h: Range = POP_RATE_H
    pop_uv: Range = POP_UV
    pop_tau_s: Range = POP_TAU_S
    move_rate_h: Range = MOVE_RATE_H
    move_s: Range = MOVE_S
    move_uv: Range = MOVE_UV
    move_emg_uv: Range = MOVE_EMG_UV
    move_env_uv: Range = MOVE_ENV_UV
    sweat_rate_h: Range = SWEAT_RATE_H
    sweat_hz: Range = SWEAT_HZ
    sweat_uv: Range = SWEAT_UV
    sweat_s: Range = SWEAT_S
    flat_rate_h: Range = FLAT_RATE_H
    flat_s: Range = FLAT_S
    shift_s: Range = SHIFT_S

    def __post_init__(self) -> None:
        if int(self.copies) != self.copies or self.copies < 0:
            raise ValueError(f"augment copies must be a non-negative integer, got {self.copies}")
        for f in dataclasses.fields(self):
            v = getattr(self, f.name)
            if f.name.endswith("_prob") and not 0.0 <= v <= 1.0:
                raise ValueError(f"augment {f.name} must lie in [0, 1], got {v}")
            if f.type == "Range":
                if len(v) != 2 or not v[0] <= v[1]:
                    raise ValueError(f"augment {f.name} must be (low, high) with low <= high, "
                                     f"got {v}")
                if f.name != "shift_s" and f.name != "emg_offset_uv" and v[0] < 0:
                    raise ValueError(f"augment {f.name} must not be negative, got {v}")
        if self.gain[0] <= 0:
            raise ValueError(f"augment gain must be positive, got {self.gain}")
        if not self.hum_hz or any(h <= 0 for h in self.hum_hz):
            raise ValueError(f"augment hum_hz must list positive frequencies, got {self.hum_hz}")

    @classmethod
    def off(cls, **changes) -> AugmentConfig:
        """Everything switched off (then ``changes`` applied): the identity augmentation."""
        zero = (0.0, 0.0)
        base = dict(gain=(1.0, 1.0), flip_prob=0.0, highpass_prob=0.0, lowpass_prob=0.0,
                    white_uv=zero, pink_uv=zero, hum_uv=zero, ecg_uv=zero,
                    emg_offset_uv=zero, pop_rate_h=zero, move_rate_h=zero, sweat_rate_h=zero,
                    flat_rate_h=zero, shift_s=zero)
        return cls(**{**base, **changes})

    def to_dict(self) -> dict:
        """JSON-ready settings (lists, not tuples: equal to what ``cache.json`` reads back)."""
        return {k: list(v) if isinstance(v, tuple) else v
                for k, v in dataclasses.asdict(self).items()}


@dataclass
class RowPlan:
    """Drawn parameters of one row (amplitudes in the row's unit, times in seconds)."""

    type: str
    gain: float = 1.0
    flip: bool = False
    highpass_hz: float | None = None
    lowpass_hz: float | None = None
    white_uv: float = 0.0
    pink_uv: float = 0.0
    hum_uv: float = 0.0
    ecg_uv: float = 0.0  # signed: the pick-up's polarity
    offset_uv: float = 0.0
    pops: list[tuple[float, float, float]] = field(default_factory=list)  # onset, uV, tau
    sweats: list[tuple[float, float, float, float, float]] = field(
        default_factory=list)  # onset, duration, uV, Hz, phase
    flats: list[tuple[float, float]] = field(default_factory=list)  # onset, duration
    move_uv: list[float] = field(default_factory=list)  # per burst of AugmentPlan.moves


@dataclass
class AugmentPlan:
    """The drawn parameters of one augmented copy; :meth:`summary` for ``cache.json``."""

    shift_s: float
    hum_hz: float
    ecg_bpm: float
    moves: list[tuple[float, float]]  # onset, duration (all rows at once)
    rows: list[RowPlan]
    noise_seed: int

    def summary(self) -> dict:
        """Scalars and event counts (not every event: those follow from the seed)."""
        return {
            "shift_s": round(self.shift_s, 3), "hum_hz": self.hum_hz,
            "ecg_bpm": round(self.ecg_bpm, 1), "moves": len(self.moves),
            "rows": [{"gain": round(r.gain, 3), "flip": r.flip,
                      "highpass_hz": None if r.highpass_hz is None else round(r.highpass_hz, 3),
                      "lowpass_hz": None if r.lowpass_hz is None else round(r.lowpass_hz, 1),
                      "white_uv": round(r.white_uv, 2), "pink_uv": round(r.pink_uv, 2),
                      "hum_uv": round(r.hum_uv, 2), "ecg_uv": round(r.ecg_uv, 2),
                      "offset_uv": round(r.offset_uv, 2), "pops": len(r.pops),
                      "sweats": len(r.sweats), "flats": len(r.flats)} for r in self.rows],
        }


def copy_seed(seed: int, night: str, copy: int) -> int:
    """Seed of augmented copy ``copy`` of a night: stable across runs and night lists."""
    ss = np.random.SeedSequence([int(seed) & 0xFFFFFFFF, zlib.crc32(night.encode()), int(copy)])
    return int(ss.generate_state(1, dtype=np.uint64)[0] >> 1)


# ---------------------------------------------------------------------------- drawing
def _u(rng: np.random.Generator, r: Sequence[float]) -> float:
    return float(r[0]) if r[0] == r[1] else float(rng.uniform(r[0], r[1]))


def _events(rng: np.random.Generator, rate_h: Range, duration_s: float) -> np.ndarray:
    """Onsets (s) of a Poisson process whose hourly rate is drawn from ``rate_h``."""
    rate = _u(rng, rate_h)
    n = int(rng.poisson(rate * duration_s / 3600.0)) if rate > 0 else 0
    return np.sort(rng.uniform(0.0, duration_s, n))


def plan_augmentation(
    cfg: AugmentConfig, types: Sequence[str], duration_s: float, seed: int,
) -> AugmentPlan:
    """Draw the parameters of one augmented copy.

    Parameters
    ----------
    cfg : AugmentConfig
    types : sequence of str
        Row types in spec order (``RowSpec.type``).
    duration_s : float
        Length of the recording.
    seed : int
        Seed of this copy (:func:`copy_seed`).

    Returns
    -------
    AugmentPlan
    """
    if duration_s <= 0:
        raise ValueError(f"duration_s must be positive, got {duration_s}")
    rng = np.random.default_rng(seed)
    lg = np.log(cfg.gain)
    moves = [(float(t), _u(rng, cfg.move_s)) for t in _events(rng, cfg.move_rate_h, duration_s)]
    plan = AugmentPlan(shift_s=_u(rng, cfg.shift_s), hum_hz=float(rng.choice(cfg.hum_hz)),
                       ecg_bpm=_u(rng, cfg.ecg_bpm), moves=moves, rows=[],
                       noise_seed=int(rng.integers(2**62)))
    for t in (str(t).upper() for t in types):
        r = RowPlan(type=t)
        plan.rows.append(r)
        if t not in _FLATTENED:
            continue
        r.gain = float(np.exp(_u(rng, lg)))
        r.flats = [(float(o), _u(rng, cfg.flat_s)) for o in _events(rng, cfg.flat_rate_h,
                                                                     duration_s)]
        if t == "EMG_ENVELOPE":
            r.offset_uv = _u(rng, cfg.emg_offset_uv)
            r.move_uv = [_u(rng, cfg.move_env_uv) for _ in moves]
            continue
        r.white_uv, r.pink_uv = _u(rng, cfg.white_uv), _u(rng, cfg.pink_uv)
        r.hum_uv = _u(rng, cfg.hum_uv)
        r.ecg_uv = _u(rng, cfg.ecg_uv) * float(rng.choice((-1.0, 1.0)))
        if t == "EMG":
            r.move_uv = [_u(rng, cfg.move_emg_uv) for _ in moves]
            continue
        r.flip = bool(rng.random() < cfg.flip_prob)
        if rng.random() < cfg.highpass_prob:
            r.highpass_hz = _u(rng, cfg.highpass_hz)
        if rng.random() < cfg.lowpass_prob:
            r.lowpass_hz = _u(rng, cfg.lowpass_hz)
        r.move_uv = [_u(rng, cfg.move_uv) for _ in moves]
        r.pops = [(float(o), _u(rng, cfg.pop_uv) * float(rng.choice((-1.0, 1.0))),
                   _u(rng, cfg.pop_tau_s)) for o in _events(rng, cfg.pop_rate_h, duration_s)]
        r.sweats = [(float(o), _u(rng, cfg.sweat_s), _u(rng, cfg.sweat_uv),
                     _u(rng, cfg.sweat_hz), float(rng.uniform(0, 2 * np.pi)))
                    for o in _events(rng, cfg.sweat_rate_h, duration_s)]
    return plan


# ---------------------------------------------------------------------------- applying
def _shift(x: np.ndarray, n: int) -> np.ndarray:
    """Move ``x`` by ``n`` samples (later when positive), mirrored padding, same length."""
    if n == 0 or len(x) < 2:
        return x
    n = int(np.clip(n, -(len(x) - 1), len(x) - 1))
    if n > 0:
        return np.pad(x[:-n], (n, 0), mode="reflect" if n < len(x) - n else "edge")
    return np.pad(x[-n:], (0, -n), mode="reflect" if -n < len(x) + n else "edge")


def _pink(rng: np.random.Generator, n: int) -> np.ndarray:
    """Unit-RMS 1/f noise of ``n`` samples (white noise shaped in the frequency domain)."""
    from scipy import fft

    m = fft.next_fast_len(n, real=True)
    spec = fft.rfft(rng.standard_normal(m))
    k = np.arange(len(spec), dtype=np.float64)
    k[0] = np.inf  # no DC
    spec /= np.sqrt(k)
    y = fft.irfft(spec, m)[:n]
    return y / max(float(np.sqrt(np.mean(y * y))), 1e-12)


def _span(t0: float, dur: float, rate: float, n: int) -> tuple[int, int]:
    i0 = int(round(t0 * rate))
    return min(max(i0, 0), n), min(max(i0 + max(int(round(dur * rate)), 1), 0), n)


def _beats(rng: np.random.Generator, bpm: float, duration_s: float) -> np.ndarray:
    period = 60.0 / bpm
    n = int(duration_s / period * (1 + 5 * ECG_HRV)) + 2
    ibi = period * (1.0 + ECG_HRV * rng.standard_normal(n)).clip(0.5, 1.5)
    t = rng.uniform(0, period) + np.concatenate(([0.0], np.cumsum(ibi[:-1])))
    return t[t < duration_s]


def _ecg(beats: np.ndarray, rate: float, n: int) -> np.ndarray:
    """Unit-peak QRS-like spikes (Ricker wavelets) at the beat times."""
    sigma = max(ECG_QRS_SIGMA_S * rate, 0.5)
    half = int(np.ceil(4 * sigma))
    u = np.arange(-half, half + 1) / sigma
    kernel = (1 - u * u) * np.exp(-u * u / 2)
    train = np.zeros(n)
    idx = np.round(beats * rate).astype(np.int64)
    train[idx[idx < n]] = 1.0
    return np.convolve(train, kernel, mode="same")


def apply_augmentation(
    rows: Sequence[np.ndarray], rates: Sequence[float], plan: AugmentPlan,
) -> list[np.ndarray]:
    """Apply a plan to the native-rate rows of one recording (new arrays; inputs untouched).

    Parameters
    ----------
    rows : sequence of 1-D ndarray
        The rows in spec order, each at its own rate (``PsgRecording.native_rows``).
    rates : sequence of float
        Each row's rate in Hz.
    plan : AugmentPlan
        From :func:`plan_augmentation` for these row types.

    Returns
    -------
    list of ndarray (float64)
        Same lengths as ``rows``; non-finite input samples stay non-finite (moved by the shift).
    """
    from scipy import signal as sps  # here: importing training stays light

    if not len(rows) == len(rates) == len(plan.rows):
        raise ValueError(f"{len(rows)} rows, {len(rates)} rates and a plan for "
                         f"{len(plan.rows)} rows: they must agree")
    rng = np.random.default_rng(plan.noise_seed)
    duration = max(len(x) / float(f) for x, f in zip(rows, rates, strict=True))
    beats = _beats(rng, plan.ecg_bpm, duration)
    hum_phase = float(rng.uniform(0, 2 * np.pi))
    out = []
    for x, rate, rp in zip(rows, rates, plan.rows, strict=True):
        rate = float(rate)
        x = np.asarray(x, dtype=np.float64)
        x = _shift(x, int(round(plan.shift_s * rate)))
        if rp.type not in _FLATTENED:
            out.append(np.array(x, dtype=np.float64))  # a copy, never the caller's array
            continue
        bad = ~np.isfinite(x)
        x = np.where(bad, 0.0, x) if bad.any() else x.copy()
        n = len(x)
        # the row's own noise generator: rows do not shift each other's realisations
        r_rng = np.random.default_rng([plan.noise_seed, len(out)])
        if rp.gain != 1.0:
            x *= -rp.gain if rp.flip else rp.gain
        elif rp.flip:
            np.negative(x, out=x)
        for (t0, dur), amp in zip(plan.moves, rp.move_uv, strict=True):
            a, b = _span(t0, dur, rate, n)
            if b <= a or amp <= 0:
                continue
            win = sps.windows.tukey(b - a, MOVE_TAPER)
            if rp.type == "EMG_ENVELOPE":
                x[a:b] += amp * win
                continue
            burst = r_rng.standard_normal(b - a)
            hi = min(MOVE_BAND_HZ[1], 0.45 * rate)
            if rp.type in _BRAIN and hi > MOVE_BAND_HZ[0]:
                burst = sps.sosfilt(sps.butter(2, (MOVE_BAND_HZ[0], hi), "bandpass", fs=rate,
                                               output="sos"), burst)
            x[a:b] += amp * win * burst / max(float(np.sqrt(np.mean(burst ** 2))), 1e-12)
        if rp.type == "EMG_ENVELOPE" and rp.offset_uv:
            x += rp.offset_uv
            np.maximum(x, 0.0, out=x)  # an RMS envelope is never negative
        for t0, amp, tau in rp.pops:
            a, b = _span(t0, 5 * tau, rate, n)
            x[a:b] += amp * np.exp(-np.arange(b - a) / (tau * rate))
        for t0, dur, amp, f, ph in rp.sweats:
            a, b = _span(t0, dur, rate, n)
            if b - a > 1:
                x[a:b] += amp * sps.windows.hann(b - a) * np.sin(
                    2 * np.pi * f * np.arange(b - a) / rate + ph)
        if rp.white_uv > 0:
            x += rp.white_uv * r_rng.standard_normal(n)
        if rp.pink_uv > 0:
            x += rp.pink_uv * _pink(r_rng, n)
        if rp.hum_uv > 0 and rate > 2 * plan.hum_hz:
            t = np.arange(n) / rate
            x += rp.hum_uv * np.sin(2 * np.pi * plan.hum_hz * t + hum_phase)
        if rp.ecg_uv != 0:
            x += rp.ecg_uv * _ecg(beats, rate, n)
        if rp.highpass_hz is not None and rp.highpass_hz < 0.45 * rate:
            sos = sps.butter(1, rp.highpass_hz, "highpass", fs=rate, output="sos")
            x = sps.sosfilt(sos, x, zi=sps.sosfilt_zi(sos) * x[0])[0]
        if rp.lowpass_hz is not None and rp.lowpass_hz < 0.95 * rate / 2:
            sos = sps.butter(LOWPASS_ORDER, rp.lowpass_hz, "lowpass", fs=rate, output="sos")
            x = sps.sosfilt(sos, x, zi=sps.sosfilt_zi(sos) * x[0])[0]
        for t0, dur in rp.flats:
            a, b = _span(t0, dur, rate, n)
            x[a:b] = x[a]
        if bad.any():
            x[bad] = np.nan
        out.append(x)
    return out


def augment_rows(
    rows: Sequence[np.ndarray], rates: Sequence[float], types: Sequence[str],
    cfg: AugmentConfig, seed: int,
) -> list[np.ndarray]:
    """Draw a plan (:func:`plan_augmentation`) and apply it (:func:`apply_augmentation`).

    Parameters
    ----------
    rows : sequence of 1-D ndarray
        Native-rate rows in spec order.
    rates : sequence of float
        Their rates in Hz.
    types : sequence of str
        Their types (``RowSpec.type``).
    cfg : AugmentConfig
    seed : int
        Same seed, same output.

    Returns
    -------
    list of ndarray
    """
    duration = max(len(x) / float(f) for x, f in zip(rows, rates, strict=True))
    return apply_augmentation(rows, rates, plan_augmentation(cfg, types, duration, seed))
