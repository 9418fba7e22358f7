"""Write hypnograms: CSV/TSV (with probabilities and extra columns), BIDS ``events.tsv``,
Sleep-EDF-style EDF+ annotations and NSRR XML, each atomically
(:func:`~edge_scorer.io.outputs.atomic_write`). Re-exported by :mod:`edge_scorer.io.hypnogram_io`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path

import numpy as np

from edge_scorer.stages import CLASS_NAMES, Stage
from edge_scorer.stats.hypnogram import Hypnogram

__all__ = ["NSRR_CONCEPTS", "NSRR_STAGE_TYPE", "PROBA_COLUMNS", "RK_LABELS", "write_hypnogram",
           "write_nsrr_xml"]

#: Sleep-EDF (PhysioNet, R&K style) annotation text written for each stage.
RK_LABELS: dict[Stage, str] = {
    Stage.W: "Sleep stage W", Stage.N1: "Sleep stage 1", Stage.N2: "Sleep stage 2",
    Stage.N3: "Sleep stage 3", Stage.REM: "Sleep stage R", Stage.UNSCORED: "Sleep stage ?",
}
#: NSRR (SHHS/MESA) ``EventConcept`` written for each stage.
NSRR_CONCEPTS: dict[Stage, str] = {
    Stage.W: "Wake|0", Stage.N1: "Stage 1 sleep|1", Stage.N2: "Stage 2 sleep|2",
    Stage.N3: "Stage 3 sleep|3", Stage.REM: "REM sleep|5", Stage.UNSCORED: "Unscored|9",
}
NSRR_STAGE_TYPE = "Stages|Stages"
PROBA_COLUMNS: tuple[str, ...] = tuple(f"p_{c}" for c in CLASS_NAMES)
_FORMATS = ("edf", "nsrr", "csv", "tsv", "bids")
_SUFFIXES = {".csv": "csv", ".tsv": "tsv", ".edf": "edf", ".xml": "nsrr"}
_TOL_S = 1e-3  # timing tolerance (s) for grid alignment

def _fmt(x: float) -> str:
    x = float(x)
    return str(int(x)) if x.is_integer() else f"{x:.6f}".rstrip("0")


def _runs(stages: np.ndarray) -> list[tuple[int, int, Stage]]:
    """(first epoch, n epochs, stage) of each run of equal consecutive stages."""
    if len(stages) == 0:
        return []
    edges = np.r_[0, np.flatnonzero(np.diff(stages)) + 1, len(stages)]
    return [(int(a), int(b - a), Stage(int(stages[a]))) for a, b in zip(edges[:-1], edges[1:])]


def write_hypnogram(hyp: Hypnogram, path: str | Path, *, fmt: str | None = None,
                    extra_columns: Mapping[str, Sequence[str]] | None = None) -> Path:
    """Write a hypnogram atomically; the format follows the file name unless ``fmt`` is given.

    Every format is written through :func:`~edge_scorer.io.outputs.atomic_write` (a temporary
    file renamed over ``path``): a failure never leaves half a file.

    * ``*events.tsv`` (``fmt="bids"``): BIDS events, one row per epoch with ``onset``,
      ``duration``, ``trial_type`` (stage label) and ``value`` (canonical code).
    * ``*.csv`` / ``*.tsv``: ``epoch, onset_s, duration_s, stage`` plus ``p_W``...``p_REM`` when
      the hypnogram has probabilities and ``clock_time`` (ISO 8601) when it has a start time.
    * ``*.edf``: an annotation-only EDF+ file like PhysioNet's ``*-Hypnogram.edf``, with runs of
      equal stages merged and Sleep-EDF labels (``"Sleep stage W"``, ``"Sleep stage 1"``...,
      ``"Sleep stage R"``, ``"Sleep stage ?"``; N3 is written as ``"Sleep stage 3"``).
    * ``*.xml`` (``fmt="nsrr"``): NSRR XML, see :func:`write_nsrr_xml`.

    ``extra_columns`` (CSV/TSV only): more columns, ``{name: one text value per epoch}``.

    Returns
    -------
    Path
        The written file.

    Raises
    ------
    OutputError
        The file could not be written (named; a previous file there is unchanged).
    """
    from edge_scorer.io.outputs import atomic_write

    path = Path(path)
    name = path.name.lower()
    if fmt is None:
        fmt = "bids" if name.endswith("events.tsv") else _SUFFIXES.get(path.suffix.lower(), "")
    fmt = fmt.lower().replace("xml", "nsrr")
    if fmt not in _FORMATS:
        raise ValueError(
            f"cannot choose a hypnogram format for {path.name!r}; name it *.csv, *.tsv, "
            "*events.tsv, *.edf or *.xml, or pass fmt=..."
        )
    extra = dict(extra_columns or {})
    if extra and fmt not in ("csv", "tsv"):
        raise ValueError(f"extra columns are written to CSV/TSV only, not {fmt}")
    for name, values in extra.items():
        if len(values) != hyp.n_epochs:
            raise ValueError(f"extra column {name!r} has {len(values)} values for "
                             f"{hyp.n_epochs} epochs")
    if fmt == "edf":
        return _write_edf(hyp, path)
    if fmt == "nsrr":
        return write_nsrr_xml(hyp, path)
    onsets = hyp.epoch_onsets_s()
    if fmt == "bids":
        rows = [["onset", "duration", "trial_type", "value"]]
        rows += [[_fmt(o), _fmt(hyp.epoch_s), Stage(int(s)).label, str(int(s))]
                 for o, s in zip(onsets, hyp.stages)]
        delim = "\t"
    else:
        rows = [["epoch", "onset_s", "duration_s", "stage"]]
        if hyp.probabilities is not None:
            rows[0] += list(PROBA_COLUMNS)
        if hyp.start_time is not None:
            rows[0].append("clock_time")
        rows[0] += list(extra)
        for i, (o, s) in enumerate(zip(onsets, hyp.stages)):
            row = [str(i), _fmt(o), _fmt(hyp.epoch_s), Stage(int(s)).label]
            if hyp.probabilities is not None:
                row += [f"{p:.6g}" for p in hyp.probabilities[i]]
            if hyp.start_time is not None:
                row.append((hyp.start_time + timedelta(seconds=float(o))).isoformat())
            rows.append(row + [str(v[i]) for v in extra.values()])
        delim = "\t" if fmt == "tsv" else ","
    return atomic_write(path, "\n".join(delim.join(r) for r in rows) + "\n")


def _write_edf(hyp: Hypnogram, path: Path) -> Path:
    from edge_scorer.io.edf_writer import write_edf

    annotations = []
    for first, n, stage in _runs(hyp.stages):
        onset, duration = hyp.onset_s + first * hyp.epoch_s, n * hyp.epoch_s
        for value in (onset, duration):  # the EDF writer keeps 6 significant digits
            if abs(float(f"{value:.6g}") - value) > _TOL_S:
                raise ValueError(
                    f"{path}: time {value} s cannot be stored exactly in an EDF+ annotation "
                    "(6 significant digits); crop or shift the hypnogram, or write CSV instead"
                )
        annotations.append((onset, duration, RK_LABELS[stage]))
    return write_edf(path, [], start_time=hyp.start_time, annotations=annotations)


def write_nsrr_xml(hyp: Hypnogram, path: str | Path) -> Path:
    """Write the NSRR (SHHS/MESA) XML layout.

    ``PSGAnnotation/ScoredEvents/ScoredEvent`` elements: one "Recording Start Time" event (with
    ``ClockTime`` when ``hyp.start_time`` is known) and one event per run of equal stages with
    ``EventType`` ``"Stages|Stages"``, ``EventConcept`` (``"Wake|0"``, ``"Stage 1 sleep|1"``,
    ``"Stage 2 sleep|2"``, ``"Stage 3 sleep|3"`` for N3, ``"REM sleep|5"``, ``"Unscored|9"``),
    ``Start`` and ``Duration`` in seconds.

    Returns
    -------
    Path
        The written file.
    """
    from edge_scorer import __version__

    path = Path(path)
    root = ET.Element("PSGAnnotation")
    ET.SubElement(root, "SoftwareVersion").text = f"edge-scorer {__version__}"
    ET.SubElement(root, "EpochLength").text = _fmt(hyp.epoch_s)
    events = ET.SubElement(root, "ScoredEvents")

    def add(etype: str, concept: str, start: float, duration: float) -> ET.Element:
        ev = ET.SubElement(events, "ScoredEvent")
        ET.SubElement(ev, "EventType").text = etype
        ET.SubElement(ev, "EventConcept").text = concept
        for tag, value in (("Start", start), ("Duration", duration)):
            text = _fmt(value)
            ET.SubElement(ev, tag).text = text if "." in text else text + ".0"
        return ev

    rec = add("", "Recording Start Time", 0.0, hyp.onset_s + hyp.duration_s)
    if hyp.start_time is not None:
        ET.SubElement(rec, "ClockTime").text = hyp.start_time.strftime("00.00.00 %H.%M.%S")
    for first, n, stage in _runs(hyp.stages):
        add(NSRR_STAGE_TYPE, NSRR_CONCEPTS[stage], hyp.onset_s + first * hyp.epoch_s,
            n * hyp.epoch_s)
    ET.indent(root)
    from edge_scorer.io.outputs import atomic_write

    return atomic_write(path, ET.tostring(root, encoding="UTF-8", xml_declaration=True))
