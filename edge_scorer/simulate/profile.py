"""Per-subject physiology of a simulated night (:class:`SubjectProfile`), drawn from a seed.

Every simulated subject differs, as real subjects and recordings do: age (and with it alpha
frequency, slow-wave amplitude and spindle density), EEG and EMG amplitude, how much alpha the
subject shows with eyes closed, how restless the eyes are in wake, heart and breathing rate,
and the recording itself (mains frequency, electrode impedance and noise, ECG pick-up, loose
leads, the gain of the EMG envelope). Sources of the ranges (see ``docs/SIMULATOR.md``):

* alpha frequency falls about 0.05 Hz per year of adult age from about 10.5 Hz at 20
  (Chiang et al. 2011, Clin Neurophysiol 122:751);
* slow-wave amplitude and N3 time fall with age, by about half from 20 to 60 (Carrier et al.
  2011, Eur J Neurosci 33:758; Ohayon et al. 2004, Sleep 27:1255);
* spindle density 2-7 per minute of N2, falling with age, frequency 11-16 Hz (Purcell et al.
  2017, Nat Commun 8:15930; Martin et al. 2013, Neurobiol Aging 34:468);
* blink rate at rest 17 per minute (SD 9), lower with the eyes on a task (Bentivoglio et al.
  1997, Mov Disord 12:1028); saccades in free viewing 2-4 per second (Otero-Millan et al. 2008,
  J Vis 8(14):21);
* chin-EMG atonia in REM (AASM Manual v2.6, 2020);
* electrode impedance up to 5-10 kOhm and the noise it brings (AASM Manual v2.6, technical
  specifications).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace

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
        Age; alpha frequency, slow-wave amplitude and spindle density are drawn from it.
    saccade_hz : float
        Saccade rate in eyes-open wake (lights on, looking around), per second.
    blink_per_min : float
        Blink rate in eyes-open wake, per minute.
    eye_leak : float
        How much vertical eye movement and blinks reach the frontal EEG (electrode position).
    sem_gain : float
        Amplitude factor of slow rolling eye movements at sleep onset.
    beta_gain : float
        Beta / muscle activity factor on the EEG (tense vs relaxed subject).
    emg_env_gain : float
        Gain of a recorder's rectified chin-EMG envelope channel relative to the raw EMG RMS
        (Sleep-EDF SC stores the envelope; its calibration differs between recorders).
    ecg_eeg_gain : float
        Factor on the ECG pick-up in EEG/EOG/EMG (electrode position, body habitus).
    flat_per_h : float
        Loose-lead episodes (a channel flat for seconds) per hour.
    drift_uv : float
        Sweat / electrode drift amplitude (uV) below 0.15 Hz.
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
    saccade_hz: float = 1.5
    blink_per_min: float = 17.0
    eye_leak: float = 1.0
    sem_gain: float = 1.0
    beta_gain: float = 1.0
    emg_env_gain: float = 0.45
    ecg_eeg_gain: float = 1.0
    flat_per_h: float = 0.3
    drift_uv: float = 8.0

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
    # Age first: Sleep-EDF SC subjects are 25-101 years old; most simulated ones 20-80.
    age = float(u(20.0, 80.0))
    young = (50.0 - age) / 30.0  # +1 at 20, 0 at 50, -1 at 80
    return SubjectProfile(
        alpha_hz=float(np.clip(10.5 - 0.05 * (age - 20.0) + rng.normal(0.0, 0.6), 8.0, 12.0)),
        spindle_hz=float(u(12.0, 14.2)),
        eeg_gain=float(np.clip(logn(0.0, 0.2), 0.6, 1.6)),
        alpha_gain=float(np.clip(logn(0.0, 0.45), 0.3, 2.2)),
        delta_gain=float(np.clip(logn(0.12 * young, 0.18), 0.55, 1.5)),
        spindle_per_min=float(np.clip(4.5 + 1.2 * young + rng.normal(0.0, 1.0), 2.0, 7.5)),
        kcomplex_per_min=float(u(0.6, 2.5)),
        eyes_closed_p=float(u(0.15, 0.8)),
        emg_uv=float(np.clip(logn(np.log(10.0), 0.45), 3.0, 35.0)),
        emg_rem_ratio=float(u(0.08, 0.3)),
        eog_gain=float(np.clip(logn(0.0, 0.3), 0.5, 2.0)),
        noise_uv=float(u(0.6, 3.5)),
        line_hz=float(rng.choice([50.0, 60.0])),
        line_uv=float(u(0.3, 6.0)),
        pops_per_h=float(u(0.0, 4.0)),
        movement_gain=float(np.clip(logn(0.0, 0.45), 0.3, 3.0)),
        arousal_gain=float(np.clip(logn(0.0, 0.35), 0.4, 2.5)),
        blend_s=float(u(4.0, 14.0)),
        hr_bpm=float(u(55.0, 80.0)),
        resp_per_min=float(u(12.0, 18.0)),
        spo2_pct=float(u(94.5, 97.8)),
        temp_c=float(u(36.8, 37.4)),
        age_years=age,
        saccade_hz=float(np.clip(logn(np.log(2.0), 0.5), 0.3, 4.5)),
        blink_per_min=float(np.clip(rng.normal(17.0, 9.0), 3.0, 45.0)),
        eye_leak=float(np.clip(logn(0.0, 0.35), 0.4, 2.5)),
        sem_gain=float(np.clip(logn(0.0, 0.4), 0.3, 2.5)),
        beta_gain=float(np.clip(logn(-0.2, 0.4), 0.3, 2.5)),
        emg_env_gain=float(np.clip(logn(np.log(0.45), 0.45), 0.12, 1.6)),
        ecg_eeg_gain=float(np.clip(logn(0.0, 0.8), 0.2, 8.0)),
        flat_per_h=float(u(0.0, 0.8)),
        drift_uv=float(np.clip(logn(np.log(10.0), 0.6), 2.0, 60.0)),
    )


def night_variation(profile: SubjectProfile, rng: np.random.Generator) -> SubjectProfile:
    """The same subject on another night: the physiology stays, the recording changes.

    Electrodes are placed anew each night, so impedance, noise, mains pick-up, pops, drift,
    loose leads, ECG pick-up and the EMG-envelope gain are drawn again, and the EEG/EOG
    amplitudes move by about 10 % (electrode position).
    """
    u = rng.uniform
    logn = rng.lognormal
    return replace(
        profile,
        eeg_gain=float(np.clip(profile.eeg_gain * logn(0.0, 0.1), 0.5, 1.8)),
        eog_gain=float(np.clip(profile.eog_gain * logn(0.0, 0.15), 0.4, 2.2)),
        eye_leak=float(np.clip(profile.eye_leak * logn(0.0, 0.2), 0.3, 3.0)),
        noise_uv=float(u(0.6, 3.5)),
        line_uv=float(u(0.3, 6.0)),
        pops_per_h=float(u(0.0, 4.0)),
        drift_uv=float(np.clip(logn(np.log(10.0), 0.6), 2.0, 60.0)),
        flat_per_h=float(u(0.0, 0.8)),
        ecg_eeg_gain=float(np.clip(profile.ecg_eeg_gain * logn(0.0, 0.3), 0.2, 8.0)),
        emg_env_gain=float(np.clip(profile.emg_env_gain * logn(0.0, 0.25), 0.1, 1.8)),
    )
