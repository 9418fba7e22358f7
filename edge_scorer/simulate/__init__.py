"""Simulated polysomnography: realistic signals, sleep architecture and whole nights.

There are no real full-night PSG signals on the development machines, so models are trained,
demos run and stress tests work on simulated nights. Their realism is measured by a peer
trained on thousands of real nights (``python -m edge_scorer.bench realism``, YASA).

* :mod:`.signals`: :func:`simulate_signals` for any montage/rate (:class:`ChannelSpec`).
* :mod:`.architecture`: the fitted semi-Markov sleep-architecture model.
* :mod:`.night`: :func:`simulate_night`, :func:`write_night`, :func:`simulate_nights` in the
  Sleep-EDF and SHHS file layouts.
* :mod:`.profile`: per-subject and per-night variation (:class:`SubjectProfile`).
* :mod:`.label_noise`: scorer disagreement between a night's hypnogram and its signals.

What is simulated, from which sources, and what is still missing: ``docs/SIMULATOR.md``.
"""

from __future__ import annotations

from edge_scorer.simulate.architecture import (
    ArchitectureParams,
    fit_architecture,
    load_hypnograms,
    load_params,
    sample_hypnogram,
)
from edge_scorer.simulate.label_noise import scorer_disagreement
from edge_scorer.simulate.night import (
    LAYOUTS,
    LayoutChannel,
    SimulatedChannel,
    SimulatedNight,
    simulate_night,
    simulate_nights,
    write_night,
)
from edge_scorer.simulate.profile import SubjectProfile, draw_profile, night_variation
from edge_scorer.simulate.signals import ChannelSpec, emg_envelope, simulate_signals

__all__ = [
    "LAYOUTS",
    "ArchitectureParams",
    "ChannelSpec",
    "LayoutChannel",
    "SimulatedChannel",
    "SimulatedNight",
    "SubjectProfile",
    "draw_profile",
    "emg_envelope",
    "fit_architecture",
    "load_hypnograms",
    "load_params",
    "night_variation",
    "sample_hypnogram",
    "scorer_disagreement",
    "simulate_night",
    "simulate_nights",
    "simulate_signals",
    "write_night",
]
