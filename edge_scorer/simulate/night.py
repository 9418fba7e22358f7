"""Simulated full nights in real file layouts (Sleep-EDF SC, SHHS/NSRR).

:func:`simulate_night` produces the signals of one night for a hypnogram (given, e.g. a real
Sleep-EDF one, or sampled from the architecture model); :func:`write_night` writes it exactly
like the public datasets lay their files out, so every reader of the project is exercised on
simulated nights as it would be on real ones:

* ``sleep-edf``: ``SIM{subj:03d}{night}E0-PSG.edf`` (EDF, 30-s records; ``EEG Fpz-Cz``,
  ``EEG Pz-Oz``, ``EOG horizontal`` at 100 Hz in uV; ``Resp oro-nasal``, ``EMG submental``
  (rectified, 0.7-Hz low-passed envelope in uV), ``Temp rectal``, ``Event marker`` at 1 Hz) and
  ``SIM{subj:03d}{night}EC-Hypnogram.edf`` (EDF+ annotations, "Sleep stage W/1/2/3/R/?").
  Only the in-bed window is simulated (for sampled nights: 30 min of wake before sleep onset and
  after the last sleep epoch, as in the standard Sleep-EDF crop), not the ~20 h of
  surrounding wake of the real 24-h files.
* ``shhs``: ``shhs1-SIM{n:04d}.edf`` (EEG(sec) C3-A2 and EEG C4-A1 at 125 Hz, EOG(L)/EOG(R) at
  50 Hz, EMG and ECG at 125 Hz, AIRFLOW/THOR RES/ABDO RES at 10 Hz, SaO2 at 1 Hz) and the NSRR
  XML ``shhs1-SIM{n:04d}-nsrr.xml``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.io.edf_writer import EdfSignal, write_edf
from edge_scorer.simulate.architecture import ArchitectureParams, load_hypnograms, sample_hypnogram
from edge_scorer.simulate.label_noise import scorer_disagreement
from edge_scorer.simulate.profile import SubjectProfile, draw_profile, night_variation
from edge_scorer.simulate.signals import ChannelSpec, simulate_signals
from edge_scorer.simulate.sources import stream
from edge_scorer.stats.hypnogram import Hypnogram

log = get_logger("simulate.night")

_EEG_PRE = "HP:0.5Hz LP:100Hz [enhanced cassette BW]"
#: Default scale of the scorer disagreement between a simulated night's hypnogram and its
#: signals (:mod:`edge_scorer.simulate.label_noise`).
LABEL_NOISE = 0.8


@dataclass(frozen=True)
class LayoutChannel:
    """A channel of a file layout: what to simulate and how the file header describes it."""

    spec: ChannelSpec
    transducer: str = ""
    prefilter: str = ""
    phys_range: tuple[float, float] | None = None


#: The channels of each supported file layout, in file order.
LAYOUTS: dict[str, tuple[LayoutChannel, ...]] = {
    "sleep-edf": (
        LayoutChannel(ChannelSpec("EEG Fpz-Cz", "eeg", 100.0, "uV", "frontal", 0.5),
                      "Ag-AgCl electrodes", _EEG_PRE, (-192.0, 192.0)),
        LayoutChannel(ChannelSpec("EEG Pz-Oz", "eeg", 100.0, "uV", "occipital", 0.5),
                      "Ag-AgCl electrodes", _EEG_PRE, (-197.0, 196.0)),
        LayoutChannel(ChannelSpec("EOG horizontal", "eog", 100.0, "uV", "horizontal", 0.5),
                      "Ag-AgCl electrodes", _EEG_PRE, (-1009.0, 1009.0)),
        LayoutChannel(ChannelSpec("Resp oro-nasal", "resp", 1.0, "", "airflow", scale=600.0),
                      "Oral-nasal thermistors", "HP:0.03Hz LP:0.9Hz", (-2048.0, 2047.0)),
        LayoutChannel(ChannelSpec("EMG submental", "emg_envelope", 1.0, "uV"),
                      "Ag-AgCl electrodes", "HP:16Hz Rectification LP:0.7Hz", None),
        LayoutChannel(ChannelSpec("Temp rectal", "temp", 1.0, "DegC"),
                      "Rectal thermistor", "", (34.0, 40.0)),
        LayoutChannel(ChannelSpec("Event marker", "marker", 1.0, ""),
                      "Marker button", "Hold during 2 seconds", (-2047.0, 2048.0)),
    ),
    "shhs": (
        LayoutChannel(ChannelSpec("EEG(sec)", "eeg", 125.0, "uV", "central", 0.15),
                      "", "HP:0.15Hz LP:35Hz", (-250.0, 250.0)),
        LayoutChannel(ChannelSpec("EEG", "eeg", 125.0, "uV", "central", 0.15),
                      "", "HP:0.15Hz LP:35Hz", (-250.0, 250.0)),
        LayoutChannel(ChannelSpec("EOG(L)", "eog", 50.0, "uV", "left", 0.15),
                      "", "HP:0.15Hz", (-1000.0, 1000.0)),
        LayoutChannel(ChannelSpec("EOG(R)", "eog", 50.0, "uV", "right", 0.15),
                      "", "HP:0.15Hz", (-1000.0, 1000.0)),
        LayoutChannel(ChannelSpec("EMG", "emg", 125.0, "uV"), "", "HP:5Hz", (-200.0, 200.0)),
        LayoutChannel(ChannelSpec("ECG", "ecg", 125.0, "uV"), "", "HP:0.05Hz", (-2500.0, 2500.0)),
        LayoutChannel(ChannelSpec("AIRFLOW", "resp", 10.0, "a.u.", "airflow"), "", "",
                      (-4.0, 4.0)),
        LayoutChannel(ChannelSpec("THOR RES", "resp", 10.0, "a.u.", "thoracic"), "", "",
                      (-4.0, 4.0)),
        LayoutChannel(ChannelSpec("ABDO RES", "resp", 10.0, "a.u.", "abdominal"), "", "",
                      (-4.0, 4.0)),
        LayoutChannel(ChannelSpec("SaO2", "spo2", 1.0, "%"), "", "", (0.0, 100.0)),
    ),
}


@dataclass
class SimulatedChannel:
    """One simulated signal: label, rate, unit, samples (physical units) and header fields."""

    label: str
    sfreq: float
    unit: str
    data: np.ndarray
    kind: str = ""
    transducer: str = ""
    prefilter: str = ""
    phys_range: tuple[float, float] | None = None


@dataclass
class SimulatedNight:
    """A simulated night: its channels, the hypnogram that drove it, and how it was made."""

    channels: list[SimulatedChannel]
    hypnogram: Hypnogram
    layout: str
    seed: int
    profile: SubjectProfile
    start_time: datetime
    subject: int = 0
    night: int = 1
    meta: dict[str, object] = field(default_factory=dict)

    @property
    def labels(self) -> list[str]:
        """Channel labels in file order."""
        return [c.label for c in self.channels]

    @property
    def duration_s(self) -> float:
        """Duration in seconds (= the hypnogram's)."""
        return self.hypnogram.duration_s

    def channel(self, label: str) -> SimulatedChannel:
        """The channel called ``label``."""
        for c in self.channels:
            if c.label == label:
                return c
        raise KeyError(f"no channel {label!r}; channels are {self.labels}")


def simulate_night(
    hypnogram: Hypnogram | None = None,
    *,
    layout: str = "sleep-edf",
    seed: int = 0,
    duration_h: float | None = None,
    params: ArchitectureParams | None = None,
    profile: SubjectProfile | None = None,
    extra_channels: Sequence[ChannelSpec] = (),
    subject: int = 0,
    night: int = 1,
    label_noise: float = LABEL_NOISE,
) -> SimulatedNight:
    """Simulate one night.

    Parameters
    ----------
    hypnogram : Hypnogram, optional
        The night to simulate (e.g. a real expert hypnogram, in-bed cropped). The signals start
        at its first epoch. Default: sampled from the architecture model with ``seed``.
    layout : {"sleep-edf", "shhs"}
        Channel set, labels, rates and units (see :data:`LAYOUTS`).
    seed : int
        Seed of everything random (subject, hypnogram, signals): same seed, same night.
    duration_h : float, optional
        Length of the night: a sampled hypnogram is drawn to this length, a given one is
        cropped to its first ``duration_h`` hours.
    params : ArchitectureParams, optional
        Architecture model for sampled hypnograms (default: the committed Sleep-EDF fit).
    profile : SubjectProfile, optional
        The subject (default: drawn from ``seed``).
    extra_channels : sequence of ChannelSpec
        Additional channels (e.g. a raw 100-Hz chin EMG beside the Sleep-EDF envelope).
    subject, night : int
        Used in file names.
    label_noise : float
        Scale of the scorer disagreement between the written hypnogram and the stages the
        signals are drawn from (:mod:`~edge_scorer.simulate.label_noise`; 0 makes the signals
        follow the hypnogram exactly). The hypnogram written and returned is always the
        reference (e.g. the real expert one); the signal stages are in ``meta``.
    """
    if layout not in LAYOUTS:
        raise ValueError(f"unknown layout {layout!r}; use one of {', '.join(LAYOUTS)}")
    if hypnogram is None:
        hypnogram = sample_hypnogram(stream(seed, "hypnogram"), params, duration_h=duration_h)
    elif duration_h is not None:
        n = int(round(duration_h * 3600.0 / hypnogram.epoch_s))
        if n < 1:
            raise ValueError(f"duration_h={duration_h} is shorter than one epoch")
        hypnogram = hypnogram.crop(0, n)
    rng = stream(seed, "clock")
    if hypnogram.start_time is not None:
        start = hypnogram.start_time + timedelta(seconds=hypnogram.onset_s)
    else:
        start = datetime(2000, 1, 1, 22, 0) + timedelta(minutes=int(rng.integers(0, 120)))
    hyp = Hypnogram(hypnogram.stages.copy(), epoch_s=hypnogram.epoch_s, onset_s=0.0,
                    start_time=start.replace(microsecond=0),
                    meta={"source": hypnogram.meta.get("source", "simulated")})
    profile = profile or draw_profile(stream(seed, "subject"))
    chans = [lc.spec for lc in LAYOUTS[layout]] + list(extra_channels)
    signal_stages = scorer_disagreement(hyp.stages, stream(seed, "scorer"), label_noise)
    driven = Hypnogram(signal_stages, epoch_s=hyp.epoch_s, onset_s=0.0,
                       start_time=hyp.start_time)
    data = simulate_signals(driven, chans, seed=seed, profile=profile)
    header = {lc.spec.label: lc for lc in LAYOUTS[layout]}
    out = []
    for c in chans:
        lc = header.get(c.label, LayoutChannel(c))
        out.append(SimulatedChannel(c.label, c.sfreq, c.unit, data[c.label], c.kind,
                                    lc.transducer, lc.prefilter, lc.phys_range))
    return SimulatedNight(out, hyp, layout, int(seed), profile, hyp.start_time, subject, night,
                          {"driving_hypnogram": hyp.meta["source"],
                           "signal_stages": signal_stages, "label_noise": float(label_noise),
                           "reference_agreement": float(np.mean(signal_stages == hyp.stages))})


def night_name(night: SimulatedNight) -> str:
    """Default file-name stem of a night in its layout."""
    if night.layout == "shhs":
        return f"shhs1-SIM{night.subject:04d}"
    return f"SIM{night.subject:03d}{night.night}"


def write_night(
    night: SimulatedNight, out_dir: str | Path, name: str | None = None
) -> tuple[Path, Path]:
    """Write a simulated night as its layout's PSG file and hypnogram file.

    Parameters
    ----------
    night : SimulatedNight
        From :func:`simulate_night`.
    out_dir : path-like
        Output folder (created).
    name : str, optional
        File stem: ``SIM0011`` gives ``SIM0011E0-PSG.edf`` + ``SIM0011EC-Hypnogram.edf``
        (sleep-edf); ``shhs1-SIM0001`` gives ``shhs1-SIM0001.edf`` + ``shhs1-SIM0001-nsrr.xml``.

    Returns
    -------
    (psg_path, hypnogram_path)
    """
    from edge_scorer.io.hypnogram_io import write_hypnogram, write_nsrr_xml

    out_dir = Path(out_dir)
    name = name or night_name(night)
    if night.layout == "shhs":
        psg, hyp_path = out_dir / f"{name}.edf", out_dir / f"{name}-nsrr.xml"
    else:
        psg, hyp_path = out_dir / f"{name}E0-PSG.edf", out_dir / f"{name}EC-Hypnogram.edf"
    signals = [EdfSignal(c.label, c.data, c.sfreq, c.unit, c.transducer, c.prefilter,
                         c.phys_range) for c in night.channels]
    st = night.start_time
    months = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")
    recording = f"Startdate {st.day:02d}-{months[st.month - 1]}-{st.year} X edge-scorer-sim X"
    write_edf(psg, signals, start_time=st, record_s=30.0, plus=False,
              patient=f"X X X SIM{night.subject:03d}_seed{night.seed}", recording=recording)
    if night.layout == "shhs":
        write_nsrr_xml(night.hypnogram, hyp_path)
    else:
        write_hypnogram(night.hypnogram, hyp_path)
    log.info("wrote %s and %s (%.1f h, %d channels, seed %d, hypnogram: %s)", psg.name,
             hyp_path.name, night.duration_s / 3600, len(night.channels), night.seed,
             Path(str(night.meta.get("driving_hypnogram", "simulated"))).name)
    return psg, hyp_path


def simulate_nights(
    out_dir: str | Path,
    n_nights: int,
    layout: str = "sleep-edf",
    seed: int = 0,
    hypnograms_from: str | Path | Sequence[Hypnogram] | None = None,
    *,
    duration_h: float | None = None,
    label_noise: float = LABEL_NOISE,
) -> list[tuple[Path, Path]]:
    """Simulate and write ``n_nights`` nights (night ``i`` uses seed ``seed + i``).

    Nights driven by real Sleep-EDF hypnograms share their subject's physiology; the recording
    (electrodes, impedance, noise, amplifier gains) differs from night to night
    (:func:`~edge_scorer.simulate.profile.night_variation`).

    Parameters
    ----------
    hypnograms_from : folder or list of Hypnogram, optional
        Drive the nights by real hypnograms (a folder is read with
        :func:`~edge_scorer.simulate.architecture.load_hypnograms`, i.e. in-bed cropped), used in
        turn; default: sample each hypnogram from the architecture model.
    label_noise : float
        Scorer-disagreement scale (see :func:`simulate_night`).

    Returns
    -------
    list of (psg_path, hypnogram_path)
    """
    if n_nights < 1:
        raise ValueError(f"n_nights must be at least 1, got {n_nights}")
    drivers: list[Hypnogram] | None = None
    if hypnograms_from is not None:
        drivers = (load_hypnograms(hypnograms_from)
                   if isinstance(hypnograms_from, (str, Path)) else list(hypnograms_from))
        if not drivers:
            raise ValueError("hypnograms_from holds no hypnogram")
    written = []
    for i in range(n_nights):
        hyp = drivers[i % len(drivers)] if drivers else None
        subject, night_no, profile = i + 1, 1, None
        ids = _sleep_edf_ids(hyp) if hyp is not None and i < len(drivers) else None
        if ids is not None:
            # Named after the real night that drives it (SC4012 -> SIM0012), with one simulated
            # physiology per subject, so subject-wise splits of the real data apply unchanged.
            subject, night_no = ids
            profile = night_variation(draw_profile(stream(seed, f"subject-{subject}")),
                                      stream(seed + i, "night"))
        night = simulate_night(hyp, layout=layout, seed=seed + i, duration_h=duration_h,
                               subject=subject, night=night_no, profile=profile,
                               label_noise=label_noise)
        written.append(write_night(night, out_dir))
    return written


def _sleep_edf_ids(hyp: Hypnogram) -> tuple[int, int] | None:
    """(subject, night) of a hypnogram read from a Sleep-EDF SC file, else None."""
    import re

    m = re.match(r"SC4(\d\d)(\d)", Path(str(hyp.meta.get("source", ""))).name)
    return (int(m.group(1)), int(m.group(2))) if m else None
