"""Latent physiology of one simulated night, shared by every channel.

:class:`NightState` holds what a real night has underneath its signals: the stage timeline
with smooth transitions, per-epoch latent states (eyes open/closed in wake, drowsiness, slow-wave
density in N3, phasic REM density, amplitude fluctuations), spontaneous arousals and body
movements. All channels read the same state, so an arousal shows alpha on the EEG, a burst on
the chin EMG and a heart-rate rise at the same moment.
"""

from __future__ import annotations

import numpy as np
from scipy.special import ndtr, ndtri

from edge_scorer.simulate.profile import SubjectProfile
from edge_scorer.simulate.sources import StageTimeline, box_envelope, event_times, stream
from edge_scorer.stages import Stage

W, N1, N2, N3, REM = (int(s) for s in (Stage.W, Stage.N1, Stage.N2, Stage.N3, Stage.REM))

#: Spontaneous arousal rate per hour of each stage (W, N1, N2, N3, REM). Healthy adults have an
#: arousal index of about 10-20 per hour of sleep, rising with age (Bonnet & Arand 2007, J Clin
#: Sleep Med 3:133), most in N1/N2 and REM, few in N3.
AROUSALS_PER_H = (0.0, 16.0, 10.0, 3.0, 10.0)
#: Body-movement rate per hour of each stage (wake in bed is restless; N3 almost still).
MOVEMENTS_PER_H = (10.0, 5.0, 1.5, 0.3, 1.0)
#: N1: fraction of epochs with slow rolling eye movements, and the rate (per minute) of brief
#: alpha returns (3-10 s). AASM v2.6: N1 is scored when alpha is replaced by low-amplitude mixed
#: frequency for > 50 % of the epoch; SEMs, vertex waves and alpha fragments are common but
#: not required, which is why N1 is the least reliable stage (63 % inter-scorer agreement,
#: Rosenberg & Van Hout 2013, J Clin Sleep Med 9:81).
N1_SEM_P, N1_ALPHA_RETURNS_PER_MIN = 0.6, 0.7
#: Exponent that makes P(slow-wave fraction > 50 % | N3) = 41 % (uniform u -> 0.2 + 0.8 u**k).
N3_SWA_POWER = 1.86


class NightState:
    """Shared latent state of a simulated night.

    Parameters
    ----------
    stages : ndarray of int
        Stage code per epoch (``UNSCORED`` epochs are simulated as wake with body movement).
    epoch_s : float
        Epoch length in seconds.
    profile : SubjectProfile
        The subject.
    seed : int
        Root seed; every random part draws from its own named stream of this seed.
    """

    def __init__(
        self, stages: np.ndarray, epoch_s: float, profile: SubjectProfile, seed: int
    ) -> None:
        self.profile = profile
        self.seed = int(seed)
        self.tl = tl = StageTimeline(stages, epoch_s, blend_s=profile.blend_s)
        # Every per-epoch draw comes from one stream, in this order (same seed, same night).
        rng = stream(seed, "epochs")
        self._draw_eyes(rng)
        swa = self._draw_slow_wave_fraction(rng)
        # Phasic REM density (eye-movement bursts) varies between REM epochs.
        self.rem_density = np.clip(rng.lognormal(0.0, 0.5, tl.n_epochs), 0.15, 3.0)
        self._jitter = self._draw_jitter(rng)
        self._draw_slow_wave_on(swa, epoch_s)
        self._draw_arousals()
        self._draw_movements(epoch_s)
        self._draw_alpha_returns()

    # ------------------------------------------------------------------ construction steps
    def _draw_eyes(self, rng: np.random.Generator) -> None:
        """Wake eyes open/closed, drowsy wake, eye activity and slow eye movements per epoch."""
        tl, profile = self.tl, self.profile
        st = tl.real_stages
        n_ep = tl.n_epochs
        # Wake: eyes closed (alpha, few saccades) vs open; a persistent two-state chain.
        closed = np.zeros(n_ep, dtype=bool)
        state = rng.random() < profile.eyes_closed_p
        stay = 0.85
        for i in range(n_ep):
            p_closed = profile.eyes_closed_p
            if rng.random() > stay:
                state = rng.random() < p_closed
            closed[i] = state
        # Drowsy wake: the few wake epochs next to sleep (eyes closed, slow eye movements).
        sleep = st != W
        near = np.zeros(n_ep, dtype=bool)
        for k in range(1, 4):
            near[:-k] |= sleep[k:]
            near[k:] |= sleep[:-k]
        self.drowsy = (st == W) & near
        self.eyes_closed = closed | (self.drowsy & (rng.random(n_ep) < 0.8))
        self.eyes_closed &= ~tl.unscored
        # How busy the eyes are in an eyes-open wake epoch (reading, looking around, still).
        self.wake_activity = np.clip(rng.lognormal(0.0, 0.6, n_ep), 0.15, 4.0)
        # Slow rolling eye movements come and go at sleep onset: present in some N1 and
        # drowsy-wake epochs only, with varying amplitude.
        sem_on = rng.random(n_ep) < N1_SEM_P
        self.sem_level = np.where(sem_on, np.clip(rng.lognormal(0.0, 0.5, n_ep), 0.2, 3.0), 0.0)

    def _draw_slow_wave_fraction(self, rng: np.random.Generator) -> np.ndarray:
        """Per-epoch slow-wave fraction (N3 and N2), stored as ``swa_fraction`` and returned."""
        st = self.tl.real_stages
        n_ep = self.tl.n_epochs
        # Slow-wave density: N3 holds >= 20 % of high-amplitude delta (AASM), N2 < 20 %.
        # In the real Sleep-EDF SC hypnograms, R&K stage 4 (> 50 % slow waves) is 41 % of the
        # N3 (S3 + S4) epochs (897 of 2165); the N3 fraction is drawn to match that.
        ar = np.zeros(n_ep)
        e = rng.standard_normal(n_ep)
        for i in range(1, n_ep):
            ar[i] = 0.85 * ar[i - 1] + e[i]
        u = ndtr(ar / np.sqrt(1.0 / (1.0 - 0.85**2)))  # uniform 0..1, correlated across epochs
        swa = np.where(st == N3, 0.2 + 0.8 * u**N3_SWA_POWER, 0.0)
        swa = np.where(st == N2, 0.15 * u, swa)
        self.swa_fraction = swa
        return swa

    def _draw_jitter(self, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """Per-epoch amplitude fluctuations of each EEG/EMG component (lognormal, ~20 %)."""
        tl = self.tl
        return {
            name: tl.epochwise(rng.lognormal(0.0, sd, tl.n_epochs))
            for name, sd in (("bg", 0.12), ("slow", 0.15), ("delta2", 0.18), ("theta", 0.2),
                             ("alpha", 0.3), ("beta", 0.2), ("emg", 0.25), ("eye", 0.3))
        }

    def _draw_slow_wave_on(self, swa: np.ndarray, epoch_s: float) -> None:
        """Within-epoch slow-wave on/off: a slow modulator thresholded to the epoch's fraction."""
        tl = self.tl
        mod = tl.lowpass_noise(stream(self.seed, "swa-mod"), 0.06)
        frac = np.clip(tl.epochwise(swa, width_s=epoch_s / 3), 1e-3, 0.999)
        self.swa_on = 1.0 / (1.0 + np.exp(-(mod - ndtri(1.0 - frac)) / 0.2))

    def _draw_arousals(self) -> None:
        """Spontaneous arousals (control-grid envelope 0..1 with per-event intensity)."""
        tl = self.tl
        rng_a = stream(self.seed, "arousals")
        rate = tl.mix(AROUSALS_PER_H) * self.profile.arousal_gain / 3600.0
        t_ar = event_times(rng_a, rate, tl.ctrl_hz)
        d_ar = np.clip(rng_a.lognormal(np.log(6.0), 0.4, len(t_ar)), 3.0, 15.0)
        self.arousal_times_s, self.arousal_durations_s = t_ar, d_ar
        self.arousal = box_envelope(tl, t_ar, d_ar, ramp_s=1.0)

    def _draw_movements(self, epoch_s: float) -> None:
        """Body movements, and movement for most of each unscored ("movement time") epoch."""
        tl = self.tl
        rng_m = stream(self.seed, "movements")
        rate = tl.mix(MOVEMENTS_PER_H) * self.profile.movement_gain / 3600.0
        t_mv = event_times(rng_m, rate, tl.ctrl_hz)
        d_mv = np.clip(rng_m.lognormal(np.log(4.0), 0.5, len(t_mv)), 1.5, 15.0)
        # "Movement time" / unscored epochs: movement for most of the epoch.
        unsc = np.flatnonzero(tl.unscored)
        t_un = unsc * epoch_s + rng_m.uniform(0, 5, len(unsc))
        d_un = rng_m.uniform(15, 25, len(unsc))
        self.movement_times_s = np.r_[t_mv, t_un]
        self.movement_durations_s = np.r_[d_mv, d_un]
        self.movement = box_envelope(tl, self.movement_times_s, self.movement_durations_s, 0.5)

    def _draw_alpha_returns(self) -> None:
        """Brief alpha returns in N1 (and a few at light N2 boundaries)."""
        tl = self.tl
        rng_r = stream(self.seed, "alpha-returns")
        rate = tl.mix((0.0, N1_ALPHA_RETURNS_PER_MIN, 0.1, 0.0, 0.2)) / 60.0
        t_r = event_times(rng_r, rate, tl.ctrl_hz)
        d_r = rng_r.uniform(3.0, 10.0, len(t_r))
        self.alpha_return = box_envelope(tl, t_r, d_r, ramp_s=1.0)

    # ------------------------------------------------------------------ helpers
    @property
    def n_epochs(self) -> int:
        """Number of epochs."""
        return self.tl.n_epochs

    def jitter(self, name: str) -> np.ndarray:
        """Per-epoch amplitude fluctuation of component ``name`` on the control grid."""
        return self._jitter[name]

    def stage_weight(self, stage: int) -> np.ndarray:
        """Mixing weight of one stage on the control grid."""
        return self.tl.weights[stage]

    def wake_eyes(self) -> tuple[np.ndarray, np.ndarray]:
        """Control-grid weights of eyes-closed wake and eyes-open wake."""
        closed = self.tl.epochwise(self.eyes_closed.astype(float))
        w = self.stage_weight(W)
        return w * closed, w * (1.0 - closed)
