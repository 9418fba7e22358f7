"""EEG, EOG and chin-EMG generators (brain, eye and muscle sources with scalp-site gains).

Brain and eye activity is generated once per night as *source* signals (background 1/f
activity, slow waves, theta, alpha, beta, spindles, K-complexes, vertex waves, sawtooth waves,
horizontal and vertical eye position, muscle and movement artifacts). Every EEG/EOG channel is a
weighted sum of the same sources (weights depend on the derivation: alpha is strongest on
Pz-Oz, blinks on Fpz-Cz, eye movements with opposite polarity on EOG(L) and EOG(R)) plus its
own electrode noise, drift, pops and mains interference, filtered like a PSG amplifier.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

from edge_scorer.simulate.sources import (
    band_noise,
    blink,
    event_times,
    k_complex,
    place,
    sawtooth_burst,
    spindle,
    step_train,
    stream,
    vertex_wave,
)
from edge_scorer.simulate.state import NightState, W

#: EEG/EOG derivations ("sites") and the gain of every source on them.
SITES = ("frontal", "central", "occipital", "horizontal", "left", "right")
GAINS: dict[str, tuple[float, ...]] = {
    #              frontal central occipital  eog-h   eog-l  eog-r
    "bg":          (1.0,    1.0,    0.55,      0.25,   0.55,  0.55),
    "slow":        (1.0,    0.85,   0.45,      0.3,    0.75,  0.75),
    "delta2":      (0.95,   0.9,    0.5,       0.2,    0.5,   0.5),
    "theta":       (0.9,    1.0,    0.6,       0.15,   0.45,  0.45),
    "alpha":       (0.35,   0.6,    1.0,       0.05,   0.2,   0.2),
    "beta":        (0.9,    0.8,    0.6,       0.2,    0.4,   0.4),
    "muscle":      (1.0,    0.55,   0.4,       0.7,    0.8,   0.8),
    "spindle":     (0.6,    1.0,    0.6,       0.08,   0.35,  0.35),
    "kcomplex":    (1.0,    0.9,    0.35,      0.3,    0.65,  0.65),
    "vertex":      (-0.7,   1.0,    0.5,       0.1,    0.4,   0.4),
    "sawtooth":    (0.9,    1.0,    0.4,       0.1,    0.4,   0.4),
    "eye_h":       (0.12,   0.03,   0.01,      1.0,    0.55, -0.55),
    "eye_v":       (0.8,    0.08,   0.02,      0.12,   0.45,  0.45),
    "movement":    (1.0,    0.8,    0.6,       1.0,    0.9,   0.9),
    "ecg":         (0.002,  0.006,  0.002,     0.003,  0.008, 0.008),
}

def site_gain(name: str, site: int, profile) -> float:
    """Gain of source ``name`` on derivation ``SITES[site]`` for one subject.

    The subject modifies the table: how much vertical eye movement reaches the frontal EEG
    (``eye_leak``) and how much ECG every derivation picks up (``ecg_eeg_gain``).
    """
    g = GAINS[name][site]
    if name == "eye_v" and SITES[site] == "frontal":
        g *= profile.eye_leak
    elif name == "ecg":
        g *= profile.ecg_eeg_gain
    return g


# Amplitude (uV RMS on the central derivation) of each continuous rhythm per stage
# (W, N1, N2, N3, REM), before subject gains. Slow waves in N3 add SWA_ON_UV while "on"
# (AASM v2.6: N3 slow waves are 0.5-2 Hz and >= 75 uV peak to peak over the frontal regions;
# 30 uV RMS of 0.4-2 Hz activity reaches that). N1 theta overlaps with drowsy wake and light
# N2 on purpose: N1 is the least separable stage (see state.N1_SEM_P).
RHYTHM_UV = {
    "bg": (5.5, 6.5, 7.5, 8.5, 5.5),
    "slow": (3.5, 6.0, 10.0, 20.0, 5.0),
    "delta2": (3.5, 6.0, 7.0, 12.0, 5.5),
    "theta": (2.5, 6.5, 6.0, 5.0, 6.5),
    "alpha": (0.0, 1.5, 1.0, 0.8, 2.0),
    "beta": (2.2, 1.6, 1.2, 0.8, 1.7),
}
SWA_ON_UV = 30.0
#: Posterior alpha with the eyes closed and open (uV RMS before the subject's alpha gain);
#: alpha attenuates on eye opening (Berger effect) and in drowsiness.
ALPHA_EYES_CLOSED_UV, ALPHA_EYES_OPEN_UV = 8.5, 1.5
#: Alpha amplitude of a brief alpha return in N1 (uV RMS).
ALPHA_RETURN_UV = 7.0
#: Horizontal EOG per degree of eye rotation is about 10-20 uV (Malmivuo & Plonsey 1995,
#: Bioelectromagnetism ch. 28); saccades of 5-15 degrees give steps of 50-300 uV.
SACCADE_TARGET_UV = 110.0
#: Slow rolling eye movements (uV RMS of 0.15-0.5 Hz eye position) per stage, when present.
SEM_UV = (0.0, 35.0, 5.0, 0.0, 6.0)
#: Chin-EMG tone per stage relative to relaxed wake (REM uses the subject's atonia ratio).
EMG_TONE = (1.0, 0.6, 0.42, 0.38, None)


def _rhythm_env(state: NightState, name: str) -> np.ndarray:
    p = state.profile
    env = state.tl.mix(RHYTHM_UV[name]) * state.jitter(name) * p.eeg_gain
    if name == "slow":
        env = (env + SWA_ON_UV * state.swa_on) * p.delta_gain
    elif name == "alpha":
        closed, opened = state.wake_eyes()
        env = env + (ALPHA_EYES_CLOSED_UV * closed + ALPHA_EYES_OPEN_UV * opened) * p.eeg_gain
        env = env + 7.0 * state.arousal * p.eeg_gain
        env = env + ALPHA_RETURN_UV * state.alpha_return * p.eeg_gain
        env *= p.alpha_gain * np.exp(0.35 * state.tl.lowpass_noise(stream(state.seed, "am"), 0.3))
    elif name == "beta":
        env = (env + 4.0 * state.arousal * p.eeg_gain) * p.beta_gain
    elif name == "theta":
        env = env + 3.0 * state.arousal * p.eeg_gain
    return env


def muscle_tone(state: NightState) -> np.ndarray:
    """Chin-EMG RMS (uV) on the control grid: stage tone, arousal and movement bursts."""
    p = state.profile
    table = [t if t is not None else p.emg_rem_ratio for t in EMG_TONE]
    _, opened = state.wake_eyes()
    tone = (state.tl.mix(table) + 0.3 * opened) * state.jitter("emg")
    return p.emg_uv * (tone + 1.2 * state.arousal + 6.0 * state.movement)


def eeg_sources(state: NightState, sfreq: float, n: int) -> Iterator[tuple[str, np.ndarray]]:
    """Yield ``(source name, samples in uV)`` for every brain/eye/artifact source at ``sfreq``."""
    tl, p, seed = state.tl, state.profile, state.seed
    at = tl.at
    bands = {"bg": (0.2, 45.0, 1.0), "slow": (0.4, 2.0, 0.5), "delta2": (2.0, 4.0, 0.0),
             "theta": (4.0, 7.5, 0.0), "beta": (12.5, 30.0, 2.0)}
    for name, (lo, hi, expo) in bands.items():
        x = band_noise(stream(seed, f"src-{name}"), n, sfreq, lo, hi, exponent=expo)
        yield name, x * at(_rhythm_env(state, name), sfreq, n)
    alpha = band_noise(stream(seed, "src-alpha"), n, sfreq, p.alpha_hz - 1.2, p.alpha_hz + 1.2,
                       edge=0.1)
    yield "alpha", alpha * at(_rhythm_env(state, "alpha"), sfreq, n)
    muscle = band_noise(stream(seed, "src-muscle"), n, sfreq, 20.0, 0.45 * sfreq)
    yield "muscle", muscle * at(0.2 * p.beta_gain * muscle_tone(state), sfreq, n)
    yield "spindle", _spindles(state, sfreq, n)
    yield "kcomplex", _kcomplexes(state, sfreq, n)
    yield "vertex", _vertex_waves(state, sfreq, n)
    yield "sawtooth", _sawtooth(state, sfreq, n)
    eye_h, eye_v = _eye_movements(state, sfreq, n)
    yield "eye_h", eye_h
    yield "eye_v", eye_v
    mv = band_noise(stream(seed, "src-movement"), n, sfreq, 0.3, 8.0, exponent=1.5)
    yield "movement", 110.0 * mv * at(state.movement, sfreq, n)


def _spindles(state: NightState, sfreq: float, n: int) -> np.ndarray:
    tl, p = state.tl, state.profile
    rng = stream(state.seed, "spindles")
    rate = tl.mix((0.0, 0.3, p.spindle_per_min, 0.35 * p.spindle_per_min, 0.0)) / 60.0
    rate *= 1.0 - 0.8 * state.arousal
    times = event_times(rng, rate, tl.ctrl_hz)
    k = len(times)
    dur = np.clip(rng.lognormal(np.log(0.9), 0.35, k), 0.5, 2.0)
    amp = rng.lognormal(np.log(22.0 * p.eeg_gain), 0.3, k)
    freq = p.spindle_hz + rng.normal(0.0, 0.4, k)
    chirp = rng.normal(0.0, 0.4, k)
    skew = rng.uniform(0.7, 1.4, k)
    out = np.zeros(n)
    place(out, sfreq, times,
          lambda i: spindle(sfreq, dur[i], freq[i], amp[i], chirp[i], skew[i]))
    return out


def _kcomplexes(state: NightState, sfreq: float, n: int) -> np.ndarray:
    tl, p = state.tl, state.profile
    rng = stream(state.seed, "kcomplexes")
    rate = tl.mix((0.0, 0.1, p.kcomplex_per_min, 0.4 * p.kcomplex_per_min, 0.0)) / 60.0
    times = event_times(rng, rate, tl.ctrl_hz)
    k = len(times)
    dur = rng.uniform(0.5, 1.0, k)
    amp = rng.lognormal(np.log(95.0 * p.eeg_gain * p.delta_gain), 0.25, k)
    out = np.zeros(n)
    place(out, sfreq, times + 0.3 * dur, lambda i: k_complex(sfreq, dur[i], amp[i]))
    # About a third of K-complexes are followed by a spindle.
    follow = rng.random(k) < 0.35
    fdur = rng.uniform(0.6, 1.5, k)
    place(out, sfreq, times[follow] + dur[follow] + 0.6,
          lambda i: spindle(sfreq, fdur[follow][i], p.spindle_hz, 18.0 * p.eeg_gain, 0.0, 1.0))
    return out


def _vertex_waves(state: NightState, sfreq: float, n: int) -> np.ndarray:
    tl, p = state.tl, state.profile
    rng = stream(state.seed, "vertex")
    rate = tl.mix((0.0, 4.0, 0.6, 0.0, 0.0)) / 60.0
    times = event_times(rng, rate, tl.ctrl_hz)
    amp = rng.lognormal(np.log(55.0 * p.eeg_gain), 0.25, len(times))
    width = rng.uniform(0.12, 0.25, len(times))
    out = np.zeros(n)
    place(out, sfreq, times, lambda i: vertex_wave(sfreq, amp[i], width[i]))
    return out


def _sawtooth(state: NightState, sfreq: float, n: int) -> np.ndarray:
    tl, p = state.tl, state.profile
    rng = stream(state.seed, "sawtooth")
    rate = tl.mix((0.0, 0.0, 0.0, 0.0, 2.0)) / 60.0 * tl.epochwise(state.rem_density)
    times = event_times(rng, rate, tl.ctrl_hz)
    k = len(times)
    waves = rng.integers(3, 10, k)
    freq = rng.uniform(2.0, 5.0, k)
    amp = rng.lognormal(np.log(22.0 * p.eeg_gain), 0.3, k)
    out = np.zeros(n)
    place(out, sfreq, times, lambda i: sawtooth_burst(sfreq, int(waves[i]), freq[i], amp[i]))
    return out


def _eye_movements(state: NightState, sfreq: float, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Horizontal and vertical eye position (uV at the EOG) for the whole night."""
    tl, p = state.tl, state.profile
    rng = stream(state.seed, "eyes")
    gain = p.eog_gain * tl.at(state.jitter("eye"), sfreq, n)
    closed, opened = state.wake_eyes()
    # Saccades: frequent with eyes open (the subject's rate, busier or stiller epochs), rare
    # with eyes closed, almost none asleep.
    busy = tl.epochwise(state.wake_activity)
    sac_rate = (p.saccade_hz * busy * opened + 0.05 * closed + tl.mix((0, 0.02, 0.002, 0, 0))
                ) * (1.0 + 2.0 * state.arousal)
    t_sac = event_times(rng, sac_rate, tl.ctrl_hz)
    # Rapid eye movements: bursts of 1-8 conjugate movements, density varying over REM.
    burst_rate = tl.mix((0, 0, 0, 0, 2.5)) / 60.0 * tl.epochwise(state.rem_density)
    t_burst = event_times(rng, burst_rate, tl.ctrl_hz)
    n_in = 1 + rng.poisson(2.5, len(t_burst))
    gaps = rng.uniform(0.25, 0.9, int(n_in.sum()))
    first = np.repeat(t_burst, n_in)
    offset = np.cumsum(gaps) - np.repeat(np.cumsum(gaps)[np.cumsum(n_in) - n_in], n_in)
    t_rem = first + offset
    times = np.r_[t_sac, t_rem]
    cls = np.r_[np.zeros(len(t_sac), int), np.ones(len(t_rem), int)]
    order = np.argsort(times, kind="stable")
    times, cls = times[order], cls[order]
    targets = np.where(cls == 0, rng.normal(0, SACCADE_TARGET_UV, len(times)),
                       rng.normal(0, 120.0, len(times)))
    steps = np.diff(np.r_[0.0, targets])
    h = np.zeros(n)
    for c, rise in ((0, 0.035), (1, 0.09)):
        sel = cls == c
        if sel.any():
            h += step_train(n, sfreq, times[sel], steps[sel], rise)
    # Slow rolling eye movements (0.2-0.5 Hz): drowsy wake and N1, fading in N2.
    sem_level = tl.epochwise(state.sem_level)
    sem_env = p.sem_gain * sem_level * (
        tl.mix(SEM_UV) + 30.0 * tl.epochwise(state.drowsy.astype(float)) * state.stage_weight(W))
    # Real SEMs are irregular excursions (0.1-0.6 Hz, > 0.5 s per deflection, AASM), not a
    # steady sinusoid: pink-tilted band noise over a wide slow band.
    h += (band_noise(stream(state.seed, "sem"), n, sfreq, 0.08, 0.6, exponent=1.0)
          * tl.at(sem_env, sfreq, n))
    # Vertical: blinks (wake, eyes open) and the vertical part of saccades and rapid eye
    # movements (most are oblique).
    blink_rate = (p.blink_per_min / 60.0) * opened + 0.02 * closed + tl.mix((0, 0.01, 0, 0, 0))
    t_bl = event_times(rng, blink_rate, tl.ctrl_hz)
    amp = rng.lognormal(np.log(180.0), 0.3, len(t_bl))
    dur = rng.uniform(0.22, 0.4, len(t_bl))
    v = np.zeros(n)
    place(v, sfreq, t_bl, lambda i: blink(sfreq, amp[i], dur[i]))
    for c, rise, share in ((0, 0.035, 0.5), (1, 0.09, 0.35)):
        sel = cls == c
        if sel.any():
            oblique = share * steps[sel] * rng.normal(0, 1, sel.sum())
            v += step_train(n, sfreq, times[sel], oblique, rise)
    return h * gain, v * gain


def channel_artifacts(
    state: NightState, label: str, sfreq: float, n: int, *, line: bool = True,
) -> np.ndarray:
    """Electrode-level additions for one channel: noise, drift, pops, movement, mains (uV)."""
    tl, p = state.tl, state.profile
    rng = stream(state.seed, f"chan-{label}")
    x = p.noise_uv * band_noise(rng, n, sfreq, 0.1, 0.49 * sfreq, exponent=0.5)
    x += p.drift_uv * band_noise(rng, n, sfreq, 0.0, 0.15, exponent=1.0)  # sweat/electrode drift
    x += 60.0 * band_noise(rng, n, sfreq, 0.5, 10.0, exponent=1.0) * tl.at(state.movement, sfreq, n)
    t_pop = event_times(rng, np.full(tl.n_ctrl, p.pops_per_h / 3600.0), tl.ctrl_hz)
    if len(t_pop):
        tau = rng.uniform(0.3, 1.5, len(t_pop))
        amp = rng.choice([-1.0, 1.0], len(t_pop)) * rng.uniform(60.0, 250.0, len(t_pop))
        place(x, sfreq, t_pop, lambda i: _pop(sfreq, amp[i], tau[i]))
    if line and p.line_hz < 0.45 * sfreq:
        t = np.arange(n) / sfreq
        phase = rng.uniform(0, 2 * np.pi)
        x += p.line_uv * rng.uniform(0.5, 1.5) * np.sin(2 * np.pi * p.line_hz * t + phase)
    return x


def _pop(sfreq: float, amp: float, tau: float) -> np.ndarray:
    """Electrode pop: an abrupt jump that decays exponentially (centred sample = jump)."""
    k = int(round(5 * tau * sfreq))
    return np.r_[np.zeros(k), amp * np.exp(-np.arange(k) / (tau * sfreq))]


def raw_emg(state: NightState, sfreq: float, n: int, ecg_uv: np.ndarray | None,
            *, with_tone: bool = False) -> np.ndarray | tuple[np.ndarray, np.ndarray]:
    """Raw chin EMG (uV): tone-modulated muscle noise, REM twitches, ECG pick-up, mains.

    With ``with_tone`` also return the muscle tone (RMS, uV, twitches included) it is drawn
    from, which a recorder's envelope channel follows.
    """
    tl, p = state.tl, state.profile
    rng = stream(state.seed, "emg")
    tone = tl.at(muscle_tone(state), sfreq, n)
    # Phasic REM twitches: brief bursts on top of atonia.
    rate = tl.mix((0, 0, 0.5, 0, 10.0)) / 60.0 * tl.epochwise(state.rem_density)
    t_tw = event_times(rng, rate, tl.ctrl_hz)
    amp = p.emg_uv * rng.uniform(0.5, 1.6, len(t_tw))
    dur = rng.uniform(0.06, 0.35, len(t_tw))
    place(tone, sfreq, t_tw, lambda i: amp[i] * np.hanning(max(3, int(dur[i] * sfreq))))
    x = band_noise(rng, n, sfreq, 10.0, min(250.0, 0.48 * sfreq)) * tone
    x += 0.4 * band_noise(rng, n, sfreq, 0.5, 0.48 * sfreq)
    if ecg_uv is not None:
        x += 0.012 * p.ecg_eeg_gain * ecg_uv
    if p.line_hz < 0.45 * sfreq:
        t = np.arange(n) / sfreq
        x += 0.5 * p.line_uv * np.sin(2 * np.pi * p.line_hz * t + rng.uniform(0, 6.3))
    return (x, tone) if with_tone else x


def loose_lead_mask(state: NightState, label: str, sfreq: float, n: int) -> np.ndarray:
    """Samples where a loose lead holds the channel flat (2-20 s episodes at the subject's
    ``flat_per_h`` rate); boolean, ``n`` long."""
    tl, p = state.tl, state.profile
    rng = stream(state.seed, f"flat-{label}")
    t0 = event_times(rng, np.full(tl.n_ctrl, p.flat_per_h / 3600.0), tl.ctrl_hz)
    mask = np.zeros(n, dtype=bool)
    for a, d in zip(t0, rng.uniform(2.0, 20.0, len(t0))):
        mask[int(a * sfreq):int((a + d) * sfreq)] = True
    return mask


__all__ = ["GAINS", "SITES", "channel_artifacts", "eeg_sources", "loose_lead_mask",
           "muscle_tone", "raw_emg", "site_gain"]
