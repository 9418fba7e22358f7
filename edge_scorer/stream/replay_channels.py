"""The channels of a PSG file that no spec row uses, for ``edge-scorer replay --all-channels``.

A replay publishes the spec's rows (:mod:`edge_scorer.stream.replay`); with ``--all-channels`` every
other signal of the file goes out too, as an amplifier would send them (respiration,
temperature, event channels, extra EEG leads), at their native rates and in the file's physical
units (:func:`~edge_scorer.io.edf_reader.read_signals`). The engine ignores them (it
maps only the rows it needs); other LSL clients (LabRecorder, MNE-LSL, a viewer) see the whole
recording.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.io.edf_header import read_edf_header
from edge_scorer.io.edf_reader import read_signals

log = get_logger("replay_channels")

#: XDF channel type by label prefix (others: MISC).
_TYPES = (("EEG", "EEG"), ("EOG", "EOG"), ("EMG", "EMG"), ("ECG", "ECG"), ("EKG", "ECG"),
          ("RESP", "RESP"), ("TEMP", "TEMP"), ("SPO2", "SPO2"), ("SAO2", "SPO2"),
          ("EVENT", "MISC"))


@dataclass
class FileChannel:
    """One channel of the file, as published.

    Attributes
    ----------
    label : str
        The file's label.
    unit : str
        The header's physical dimension (empty when the file has none).
    type : str
        XDF channel type guessed from the label (EEG, EOG, EMG, ECG, RESP, TEMP, SPO2, MISC).
    sfreq : float
        Native rate (Hz).
    data : ndarray of float32
        The samples in ``unit``.
    """

    label: str
    unit: str
    type: str
    sfreq: float
    data: np.ndarray


def channel_type(label: str) -> str:
    """XDF type of a channel from its label (``EEG Fpz-Cz`` -> EEG, ``Resp oro-nasal`` ->
    RESP, unknown -> MISC)."""
    head = label.strip().upper()
    return next((t for prefix, t in _TYPES if head.startswith(prefix)), "MISC")


def other_channels(path: str | Path, used: Sequence[str]) -> list[FileChannel]:
    """Every signal of an EDF/BDF file except the ``used`` labels (annotations left out).

    Raises
    ------
    PsgReadError
        The file cannot be read.
    """
    path = Path(path)
    header = read_edf_header(path)
    skip = {u.strip().casefold() for u in used}
    picks = [i for i in range(len(header.labels)) if not header.is_annotation(i)
             and header.labels[i].strip().casefold() not in skip]
    out = [FileChannel(header.labels[i], header.units[i].strip(),
                       channel_type(header.labels[i]), float(header.sfreqs[i]),
                       np.asarray(x, dtype=np.float32))
           for i, x in zip(picks, read_signals(path, header, picks))]
    if out:
        log.info("%s: %d more channel(s): %s", path.name, len(out),
                 ", ".join(f"{c.label} ({c.sfreq:g} Hz)" for c in out))
    return out


__all__ = ["FileChannel", "channel_type", "other_channels"]
