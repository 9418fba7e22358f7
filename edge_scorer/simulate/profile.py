"""Per-subject physiology of a simulated night (:class:`SubjectProfile`), drawn from a seed.

Every simulated subject differs a little, as real subjects do: alpha and spindle frequency,
EEG and EMG amplitude, how much alpha the subject shows with eyes closed, spindle density,
heart and breathing rate, mains frequency of the recording site, noise and artifact rates.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import numpy as np


@dataclass(frozen=True)
class SubjectProfile:
    """Physiological constants of one simulated subject (units in the names).

    Parameters
    ----------
    alpha_hz : float
        Posterior dominant (alpha) rhythm frequency, 8.5-11.5 Hz.
    spindle_hz : float
        Centre frequency of sleep spindles, 11.8-14.5 Hz.
    eeg_gain : float
        Overall EEG amplitude factor (skull thickness, age), about 0.75-1.35.
    alpha_gain : float
        Eyes-closed alpha amplitude factor (some people show little alpha), 0.45-1.6.
    delta_gain : float
        Slow-wave amplitude factor (age), 0.75-1.3.
    spindle_per_min : float
        Spindle density in N2, 2.5-7 per minute.
    kcomplex_per_min : float
        K-complex density in N2, 0.8-2.5 per minute.
    eyes_closed_p : float
        Probability that a wake epoch is spent with eyes closed (alpha on, few saccades).
    emg_uv : float
        Raw chin-EMG RMS in relaxed wake, uV.
    emg_rem_ratio : float
        Chin-EMG tone in REM relative to wake (atonia), 0.12-0.3.
    eog_gain : float
        Eye-movement amplitude factor (electrode placement), 0.7-1.4.
    noise_uv : float
        Amplifier/electrode noise RMS on every EEG/EOG channel, uV.
    line_hz : float
        Mains frequency of the recording site, 50 or 60 Hz.
    line_uv : float
        Line-noise amplitude on EEG/EOG/EMG before the anti-alias filter, uV.
    pops_per_h : float
        Electrode-pop rate per channel and hour.
    movement_gain : float
        Factor on the body-movement rate (restless vs calm sleeper).
    arousal_gain : float
        Factor on the spontaneous arousal rate.
    blend_s : float
        Width of the stage-mixing window across epoch boundaries, seconds.
    hr_bpm : float
        Heart rate in relaxed wake, beats per minute.
    resp_per_min : float
        Breathing rate in relaxed wake, breaths per minute.
    spo2_pct : float
        Baseline oxygen saturation, percent.
    temp_c : float
        Core (rectal) temperature at lights-off, deg C.
    age_years : float
        Age, used only as metadata.
    """

    alpha_hz: float = 10.0
    spindle_hz: float = 13.0
    eeg_gain: float = 1.0
    alpha_gain: float = 1.0
    delta_gain: float = 1.0
    spindle_per_min: float = 4.5
    kcomplex_per_min: float = 1.5
    eyes_closed_p: float = 0.7
    emg_uv: float = 10.0
    emg_rem_ratio: float = 0.2
    eog_gain: float = 1.0
    noise_uv: float = 1.5
    line_hz: float = 50.0
    line_uv: float = 2.0
    pops_per_h: float = 1.0
    movement_gain: float = 1.0
    arousal_gain: float = 1.0
    blend_s: float = 6.0
    hr_bpm: float = 66.0
    resp_per_min: float = 15.0
    spo2_pct: float = 96.5
    temp_c: float = 37.1
    age_years: float = 40.0

    def as_dict(self) -> dict[str, float]:
        """The profile as a plain dict (for logs and file headers)."""
        return asdict(self)


def draw_profile(rng: np.random.Generator) -> SubjectProfile:
    """Draw a plausible adult subject.

    Parameters
    ----------
    rng : numpy.random.Generator
        Source of randomness; the same generator state gives the same profile.

    Returns
    -------
    SubjectProfile
    """
    u = rng.uniform
    logn = rng.lognormal
    return SubjectProfile(
        alpha_hz=float(u(8.6, 11.2)),
        spindle_hz=float(u(12.0, 14.2)),
        eeg_gain=float(np.clip(logn(0.0, 0.15), 0.75, 1.35)),
        alpha_gain=float(np.clip(logn(0.0, 0.3), 0.45, 1.6)),
        delta_gain=float(np.clip(logn(0.0, 0.13), 0.75, 1.3)),
        spindle_per_min=float(u(3.0, 7.0)),
        kcomplex_per_min=float(u(0.8, 2.5)),
        eyes_closed_p=float(u(0.45, 0.9)),
        emg_uv=float(np.clip(logn(np.log(10.0), 0.35), 4.0, 25.0)),
        emg_rem_ratio=float(u(0.12, 0.3)),
        eog_gain=float(np.clip(logn(0.0, 0.18), 0.7, 1.4)),
        noise_uv=float(u(0.8, 2.5)),
        line_hz=float(rng.choice([50.0, 60.0])),
        line_uv=float(u(0.3, 4.0)),
        pops_per_h=float(u(0.0, 2.0)),
        movement_gain=float(np.clip(logn(0.0, 0.35), 0.4, 2.5)),
        arousal_gain=float(np.clip(logn(0.0, 0.3), 0.5, 2.0)),
        blend_s=float(u(4.0, 10.0)),
        hr_bpm=float(u(58.0, 76.0)),
        resp_per_min=float(u(12.5, 17.0)),
        spo2_pct=float(u(94.5, 97.8)),
        temp_c=float(u(36.8, 37.4)),
        age_years=float(u(22.0, 70.0)),
    )
