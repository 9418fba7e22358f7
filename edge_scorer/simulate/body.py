"""Cardio-respiratory and other body signals: ECG, airflow/effort, SpO2, temperature.

Heart rate falls from wake to N3 and is variable in REM, with respiratory sinus arrhythmia and
a rise at arousals. Breathing is slowest and most regular in N3 and irregular in REM (where
thoracic effort also drops with intercostal atonia). SpO2 dips a little after irregular
breathing, more in REM. Core temperature declines through the night.
"""

from __future__ import annotations

import numpy as np
from scipy import signal as sps

from edge_scorer.simulate.sources import band_noise, event_times, stream
from edge_scorer.simulate.state import NightState

GRID_HZ = 10.0
#: Heart rate offset (bpm) per stage relative to the subject's wake rate (W, N1, N2, N3, REM).
HR_OFFSET_BPM = (0.0, -3.0, -6.0, -9.0, -2.0)
#: Heart-rate variability (bpm SD of slow fluctuations) per stage.
HR_VAR_BPM = (3.0, 2.0, 1.5, 0.8, 4.0)
#: Breathing rate factor and variability (relative SD) per stage.
RESP_RATE = (1.0, 0.97, 0.95, 0.92, 1.02)
RESP_VAR = (0.12, 0.08, 0.05, 0.025, 0.18)
RESP_AMP_VAR = (0.25, 0.15, 0.1, 0.05, 0.3)
#: SpO2 dip rate per hour per stage.
DESATS_PER_H = (0.0, 3.0, 2.0, 0.5, 5.0)


class Body:
    """Cardio-respiratory state of a night on a 10-Hz grid; channels are read from it."""

    def __init__(self, state: NightState) -> None:
        self.state = state
        tl, p = state.tl, state.profile
        self.n_grid = int(round(tl.duration_s * GRID_HZ))
        self.t = np.arange(self.n_grid) / GRID_HZ
        rng = stream(state.seed, "body")

        def grid(curve: np.ndarray) -> np.ndarray:
            return np.interp(self.t, tl.t_ctrl, curve)

        def slow(cut: float) -> np.ndarray:
            return band_noise(rng, self.n_grid, GRID_HZ, 0.0, cut)

        # Breathing: instantaneous rate with stage-dependent variability, phase by integration.
        f0 = p.resp_per_min / 60.0 * grid(tl.mix(RESP_RATE))
        f = f0 * np.exp(grid(tl.mix(RESP_VAR)) * slow(0.05) + 0.1 * grid(state.arousal))
        self.resp_phase = 2 * np.pi * np.cumsum(f) / GRID_HZ
        self.resp_amp = np.exp(grid(tl.mix(RESP_AMP_VAR)) * slow(0.08)
                               + 0.5 * grid(state.arousal) + 0.8 * grid(state.movement))
        self.rem = grid(state.stage_weight(4))

        # Heart: rate per stage + slow variability + respiratory sinus arrhythmia + arousals.
        hr = (p.hr_bpm + grid(tl.mix(HR_OFFSET_BPM)) + grid(tl.mix(HR_VAR_BPM)) * slow(0.03)
              + 2.5 * np.sin(self.resp_phase) + 8.0 * grid(state.arousal)
              + 10.0 * grid(state.movement))
        beats = np.cumsum(hr / 60.0) / GRID_HZ
        k = np.arange(1, int(beats[-1]) + 1)
        self.beat_times_s = np.interp(k, beats, self.t)
        self.hr_bpm = hr

        # SpO2: baseline + slow wander + occasional dips lagging ~20 s.
        rng_s = stream(state.seed, "spo2")
        rate = tl.mix(DESATS_PER_H) / 3600.0
        t_d = event_times(rng_s, rate, tl.ctrl_hz)
        d_d = rng_s.uniform(15.0, 40.0, len(t_d))
        depth = rng_s.uniform(1.5, 4.0, len(t_d))
        dip = np.zeros(self.n_grid)
        for t0, d, a in zip(t_d + 20.0, d_d, depth):
            i0, i1 = int(t0 * GRID_HZ), int((t0 + d) * GRID_HZ)
            if i0 < self.n_grid:
                seg = np.sin(np.pi * np.linspace(0, 1, i1 - i0)) ** 2 * a
                dip[i0:min(i1, self.n_grid)] += seg[:self.n_grid - i0]
        self._ecg_cache: dict[tuple[float, int], np.ndarray] = {}
        self.spo2 = p.spo2_pct + 0.4 * slow(0.01) - dip - 0.3 * grid(tl.mix((0, 0, 0, 0, 1)))

    def _at(self, x: np.ndarray, sfreq: float, n: int) -> np.ndarray:
        return np.interp(np.arange(n) / sfreq, self.t, x)

    def ecg(self, sfreq: float, n: int) -> np.ndarray:
        """Lead-II-like ECG in uV: P, QRS and T waves at every beat, baseline wander, noise."""
        key = (float(sfreq), int(n))
        if key in self._ecg_cache:
            return self._ecg_cache[key].copy()
        # One PQRST template per beat, placed by convolving a beat impulse train.
        half = int(round(0.45 * sfreq))
        tt = np.arange(-half, half + 1) / sfreq
        waves = ((-0.16, 0.025, 120.0), (-0.03, 0.010, -110.0), (0.0, 0.011, 1000.0),
                 (0.03, 0.012, -220.0), (0.26, 0.05, 260.0))
        template = sum(a * np.exp(-0.5 * ((tt - mu) / sd) ** 2) for mu, sd, a in waves)
        imp = np.zeros(n)
        idx = np.round(self.beat_times_s * sfreq).astype(np.int64)
        np.add.at(imp, idx[idx < n], 1.0)
        y = sps.oaconvolve(imp, template, mode="same")
        rng = stream(self.state.seed, "ecg")
        y *= 1.0 + 0.08 * np.sin(self._at(self.resp_phase, sfreq, n))
        y += 40.0 * np.sin(self._at(self.resp_phase, sfreq, n) + 0.5)
        y += 8.0 * band_noise(rng, n, sfreq, 0.5, 0.45 * sfreq)
        self._ecg_cache[key] = y
        return y.copy()

    def respiration(self, sfreq: float, n: int, site: str) -> np.ndarray:
        """Airflow (oro-nasal thermistor) or thoracic/abdominal effort, about +-1 a.u."""
        ph = self._at(self.resp_phase, sfreq, n)
        amp = self._at(self.resp_amp, sfreq, n)
        rng = stream(self.state.seed, f"resp-{site}")
        noise = 0.04 * band_noise(rng, n, sfreq, 0.0, min(2.0, 0.45 * sfreq))
        if site == "airflow":
            return amp * np.sin(ph + 0.3 * np.sin(ph)) + noise
        rem = self._at(self.rem, sfreq, n)
        if site == "thoracic":
            return 0.9 * amp * (1.0 - 0.4 * rem) * -np.cos(ph) + noise
        return 0.8 * amp * -np.cos(ph - 0.25) + noise

    def spo2_pct(self, sfreq: float, n: int) -> np.ndarray:
        """Oxygen saturation in percent, integer-valued like a pulse oximeter."""
        return np.clip(np.round(self._at(self.spo2, sfreq, n)), 70.0, 100.0)

    def temperature_c(self, sfreq: float, n: int) -> np.ndarray:
        """Rectal temperature (deg C): nocturnal decline, slightly lower in deep sleep."""
        tl, p = self.state.tl, self.state.profile
        hours = np.arange(n) / sfreq / 3600.0
        decline = 0.45 * np.sin(np.pi * np.clip(hours / max(tl.duration_s / 3600.0, 1.0), 0, 1)
                                * 0.85)
        sleepy = tl.at(tl.smooth(1.0 - tl.weights[0], 600.0), sfreq, n)
        rng = stream(self.state.seed, "temp")
        wander = 0.03 * band_noise(rng, n, sfreq, 0.0, min(0.002, 0.45 * sfreq))
        return p.temp_c - decline - 0.08 * sleepy + wander
