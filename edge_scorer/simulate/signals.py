"""Physiologically plausible PSG signals for a given hypnogram: any montage, any rate.

:func:`simulate_signals` turns a :class:`~edge_scorer.stats.hypnogram.Hypnogram` and a list of
:class:`ChannelSpec` into sample arrays. It is seeded and deterministic (same seed, same
hypnogram and same channels give identical samples) and vectorized with numpy (an 8-h
Sleep-EDF night takes a few seconds).

What the signals contain, per stage (amplitudes vary per subject, see :class:`SubjectProfile`):

* W: eyes-closed alpha (8-12 Hz, strongest on Pz-Oz), beta, high chin-EMG tone, blinks (Fpz-Cz
  and EOG) and saccades with eyes open.
* N1: theta, alpha dropping out, slow rolling eye movements, vertex sharp waves, lower EMG.
* N2: spindles (11-16 Hz, 0.5-2 s, waxing-waning), K-complexes, more delta.
* N3: high-amplitude 0.5-2 Hz delta (>75 uV peak-to-peak on Fpz-Cz) for 20-100 % of the epoch.
* REM: low-voltage mixed frequency, sawtooth waves, conjugate rapid eye movements, atonia with
  twitches.
* Everywhere: 1/f background, stage blending across epoch boundaries, arousals, body
  movements, electrode pops and drift, mains interference (filtered out by the anti-alias
  filter where the channel rate cannot carry it), ECG pick-up.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

import numpy as np
from scipy import signal as sps

from edge_scorer._log import get_logger
from edge_scorer.simulate.body import Body
from edge_scorer.simulate.neuro import (
    SITES,
    channel_artifacts,
    eeg_sources,
    loose_lead_mask,
    raw_emg,
    site_gain,
)
from edge_scorer.simulate.profile import SubjectProfile, draw_profile
from edge_scorer.simulate.sources import band_noise, highpass, stream
from edge_scorer.simulate.state import NightState
from edge_scorer.stats.hypnogram import Hypnogram

log = get_logger("simulate")

#: Channel kinds the simulator can produce, and the sites each accepts (first = default).
KINDS: dict[str, tuple[str, ...]] = {
    "eeg": ("central", "frontal", "occipital"),
    "eog": ("horizontal", "left", "right"),
    "emg": ("",),
    "emg_envelope": ("",),
    "ecg": ("",),
    "resp": ("airflow", "thoracic", "abdominal"),
    "spo2": ("",),
    "temp": ("",),
    "marker": ("",),
}
#: Default amplifier high-pass (AC coupling) per kind, Hz.
DEFAULT_HIGHPASS_HZ = {"eeg": 0.3, "eog": 0.3, "emg": 5.0, "ecg": 0.05}


@dataclass(frozen=True)
class ChannelSpec:
    """One channel to simulate.

    Parameters
    ----------
    label : str
        Channel label as written to the file (e.g. ``"EEG Fpz-Cz"``).
    kind : str
        One of ``eeg``, ``eog``, ``emg`` (raw chin EMG), ``emg_envelope`` (Sleep-EDF style
        rectified and low-passed chin EMG), ``ecg``, ``resp``, ``spo2``, ``temp``, ``marker``.
    sfreq : float
        Sampling rate in Hz.
    unit : str
        Physical unit written to the file (``uV`` for biopotentials).
    site : str
        EEG derivation (``frontal`` Fpz-Cz, ``central`` C4-A1/C3-A2, ``occipital`` Pz-Oz), EOG
        derivation (``horizontal`` ROC-LOC, ``left`` E1-M2, ``right`` E2-M1) or respiration
        sensor (``airflow``, ``thoracic``, ``abdominal``); empty for the default of the kind.
    highpass_hz : float, optional
        Amplifier high-pass corner (default per kind; 0 disables it).
    scale : float
        Factor applied to the simulated values (e.g. thermistor a.u. for respiration).
    offset : float
        Value added after scaling (e.g. the idle level of an event-marker channel).
    """

    label: str
    kind: str
    sfreq: float
    unit: str = "uV"
    site: str = ""
    highpass_hz: float | None = None
    scale: float = 1.0
    offset: float = 0.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"channel {self.label!r}: unknown kind {self.kind!r}; use one of "
                             f"{', '.join(KINDS)}")
        if self.site and self.site not in KINDS[self.kind]:
            valid = ", ".join(s for s in KINDS[self.kind] if s) or "no site"
            raise ValueError(f"channel {self.label!r}: site {self.site!r} is not valid for "
                             f"{self.kind}; use {valid}")
        if not self.sfreq > 0:
            raise ValueError(f"channel {self.label!r}: sfreq must be positive, got {self.sfreq}")
        if self.kind in ("eeg", "eog") and self.sfreq < 32:
            raise ValueError(f"channel {self.label!r}: {self.kind} needs sfreq >= 32 Hz")

    @property
    def resolved_site(self) -> str:
        """The site, or the default site of the kind."""
        return self.site or KINDS[self.kind][0]


def n_samples(duration_s: float, sfreq: float) -> int:
    """Number of samples of a channel covering ``duration_s``."""
    return int(round(duration_s * sfreq))


def resample(x: np.ndarray, sfreq_from: float, sfreq_to: float, n_to: int) -> np.ndarray:
    """Anti-aliased polyphase resampling to exactly ``n_to`` samples."""
    if sfreq_from != sfreq_to:
        ratio = Fraction(sfreq_to / sfreq_from).limit_denominator(1000)
        x = sps.resample_poly(x, ratio.numerator, ratio.denominator)
    if len(x) >= n_to:
        return x[:n_to]
    return np.pad(x, (0, n_to - len(x)), mode="edge")


def simulate_signals(
    hypnogram: Hypnogram,
    channels: Sequence[ChannelSpec],
    *,
    seed: int = 0,
    profile: SubjectProfile | None = None,
) -> dict[str, np.ndarray]:
    """Simulate every channel of a montage for a hypnogram.

    Parameters
    ----------
    hypnogram : Hypnogram
        Stage per epoch; the signals cover ``hypnogram.duration_s`` (from its first epoch).
        Unscored epochs ("Movement time", "?") are simulated as wake with body movement.
    channels : sequence of ChannelSpec
        The montage; labels must be unique.
    seed : int
        Root seed. Each part (subject, events, each channel's noise) draws from its own named
        stream, so adding a channel does not change the others.
    profile : SubjectProfile, optional
        The subject; drawn from ``seed`` when omitted.

    Returns
    -------
    dict of str to ndarray
        Samples (float64, physical units) per channel label, ``round(duration_s * sfreq)`` each.
    """
    labels = [c.label for c in channels]
    if len(set(labels)) != len(labels):
        raise ValueError(f"channel labels must be unique, got {labels}")
    if hypnogram.n_epochs == 0:
        raise ValueError("cannot simulate an empty hypnogram (0 epochs)")
    profile = profile or draw_profile(stream(seed, "subject"))
    state = NightState(hypnogram.stages, hypnogram.epoch_s, profile, seed)
    body = Body(state)
    duration_s = state.tl.duration_s
    out: dict[str, np.ndarray] = {}

    brain = [c for c in channels if c.kind in ("eeg", "eog")]
    if brain:
        out.update(_brain_channels(state, body, brain, duration_s))
    emg = [c for c in channels if c.kind in ("emg", "emg_envelope")]
    if emg:
        out.update(_emg_channels(state, body, emg, duration_s))
    for c in channels:
        if c.label in out:
            continue
        n = n_samples(duration_s, c.sfreq)
        if c.kind == "ecg":
            x = highpass(body.ecg(c.sfreq, n), c.sfreq, _hp(c))
        elif c.kind == "resp":
            x = body.respiration(c.sfreq, n, c.resolved_site)
        elif c.kind == "spo2":
            x = body.spo2_pct(c.sfreq, n)
        elif c.kind == "temp":
            x = body.temperature_c(c.sfreq, n)
        else:  # marker: no button presses during a simulated night
            x = np.zeros(n)
        out[c.label] = x
    for c in channels:
        out[c.label] = out[c.label] * c.scale + c.offset
    log.debug("simulated %d channels, %.1f h, subject %s", len(channels), duration_s / 3600,
              profile)
    return {label: out[label] for label in labels}


def _hp(c: ChannelSpec) -> float:
    return DEFAULT_HIGHPASS_HZ.get(c.kind, 0.0) if c.highpass_hz is None else c.highpass_hz


def _brain_channels(
    state: NightState, body: Body, channels: list[ChannelSpec], duration_s: float
) -> dict[str, np.ndarray]:
    """EEG/EOG: shared sources at one rate, per-derivation gains, electrode effects, filters."""
    sfreq = max(100.0, max(c.sfreq for c in channels))
    n = n_samples(duration_s, sfreq)
    acc = {c.label: np.zeros(n) for c in channels}
    site_idx = {c.label: SITES.index(c.resolved_site) for c in channels}
    p = state.profile
    for name, x in eeg_sources(state, sfreq, n):
        for c in channels:
            g = site_gain(name, site_idx[c.label], p)
            if g:
                acc[c.label] += g * x
    ecg = body.ecg(sfreq, n)
    out = {}
    for c in channels:
        x = acc.pop(c.label)
        x += site_gain("ecg", site_idx[c.label], p) * ecg
        x += channel_artifacts(state, c.label, sfreq, n)
        x = highpass(x, sfreq, _hp(c))
        _hold_flat(x, loose_lead_mask(state, c.label, sfreq, n))
        out[c.label] = resample(x, sfreq, c.sfreq, n_samples(duration_s, c.sfreq))
    return out


def _hold_flat(x: np.ndarray, mask: np.ndarray) -> None:
    """A loose lead: hold the value at the start of each masked run (in place), plus the small
    amplifier noise a disconnected input still shows."""
    if not mask.any():
        return
    edges = np.flatnonzero(np.diff(np.r_[0, mask.astype(np.int8), 0]))
    for a, b in zip(edges[::2], edges[1::2]):
        x[a:b] = x[max(a - 1, 0)]


def _emg_channels(
    state: NightState, body: Body, channels: list[ChannelSpec], duration_s: float
) -> dict[str, np.ndarray]:
    """Raw chin EMG at each requested rate and the Sleep-EDF style envelope derived from it."""
    raw_rates = [c.sfreq for c in channels if c.kind == "emg"]
    sfreq = max([100.0, *raw_rates])
    n = n_samples(duration_s, sfreq)
    raw, tone = raw_emg(state, sfreq, n, body.ecg(sfreq, n), with_tone=True)
    out = {}
    for c in channels:
        m = n_samples(duration_s, c.sfreq)
        if c.kind == "emg":
            out[c.label] = resample(highpass(raw, sfreq, _hp(c)), sfreq, c.sfreq, m)
        else:
            rng = stream(state.seed, f"envelope-{c.label}")
            env = emg_envelope(tone, sfreq, c.sfreq, m, rng)
            out[c.label] = state.profile.emg_env_gain * env
    return out


#: Mean of the rectified signal over its RMS for Gaussian muscle noise (sqrt(2/pi)).
_RECTIFIED_MEAN = float(np.sqrt(2.0 / np.pi))
#: Relative fluctuation of a 0.7-Hz envelope of broadband (16-several kHz) EMG, about
#: sqrt(0.7 / 5000); the real Sleep-EDF envelope varies by 1-2 % within a quiet epoch.
_ENVELOPE_CV = 0.01
#: Amplifier noise floor of the envelope (uV).
_ENVELOPE_FLOOR_UV = 0.3


def emg_envelope(tone: np.ndarray, sfreq: float, sfreq_out: float, n_out: int,
                 rng: np.random.Generator) -> np.ndarray:
    """Sleep-EDF style EMG envelope (high-pass 16 Hz, rectification, low-pass 0.7 Hz) of a
    muscle tone curve (RMS, uV, at ``sfreq``), sampled at ``sfreq_out`` (1 Hz in Sleep-EDF).

    This is what the Sleep-EDF SC files store as "EMG submental" (their header prefilter
    field reads ``HP:16Hz Rectification LP:0.7Hz``). The raw EMG there was recorded with a
    far wider band than a 100-Hz simulation can hold, so the envelope is computed from the
    tone directly (the mean of the rectified signal) with the small fluctuation such a wide
    band leaves, rather than by rectifying a 100-Hz simulated EMG (which fluctuates ~10 %).
    """
    lp = sps.butter(2, min(0.7, 0.45 * sfreq), "lowpass", fs=sfreq, output="sos")
    env = sps.sosfiltfilt(lp, _RECTIFIED_MEAN * tone) + _ENVELOPE_FLOOR_UV
    t_out = np.arange(n_out) / sfreq_out
    env = np.interp(t_out, np.arange(len(env)) / sfreq, env)
    wobble = band_noise(rng, n_out, sfreq_out, 0.0, min(0.2, 0.45 * sfreq_out))
    return np.maximum(env * (1.0 + _ENVELOPE_CV * wobble), 0.0)
