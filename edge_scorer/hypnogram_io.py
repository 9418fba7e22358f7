"""Read and write hypnograms: Sleep-EDF EDF+, NSRR XML, CSV/TSV and BIDS ``events.tsv``.

Every reader returns a :class:`~edge_scorer.hypnogram.Hypnogram` on a regular epoch grid:
annotations longer than one epoch are split into epochs, gaps between annotations become
``UNSCORED`` epochs, and an onset that is not on the epoch grid is an error (the file was scored
with another epoch length). ``Hypnogram.onset_s`` is the onset of the first annotation in
seconds from the recording start; ``start_time`` is the recording start when the file knows it.

Integer stage codes in a table column are read as the canonical/YASA codes (``-2``/``-1``
unscored, ``0`` W, ``1`` N1, ``2`` N2, ``3`` N3, ``4`` REM) unless the column contains ``5``, in
which case it is read as R&K/NSRR numbering (``3`` and ``4`` -> N3, ``5`` REM, ``6``/``9``
unscored). Write labels (``W``/``N1``/...) to avoid the ambiguity; our writers always do.
"""

from __future__ import annotations

import csv
import math
import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from ._log import get_logger
from .hypnogram import Hypnogram
from .stages import CLASS_NAMES, Stage, parse_stage

log = get_logger("hypnogram_io")

__all__ = ["inbed_crop", "pair_sleep_edf", "read_hypnogram", "write_hypnogram", "write_nsrr_xml"]

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
_CANONICAL_CODES = {-2: Stage.UNSCORED, -1: Stage.UNSCORED, 0: Stage.W, 1: Stage.N1,
                    2: Stage.N2, 3: Stage.N3, 4: Stage.REM}
_RK_CODES = {-1: Stage.UNSCORED, 0: Stage.W, 1: Stage.N1, 2: Stage.N2, 3: Stage.N3,
             4: Stage.N3, 5: Stage.REM, 6: Stage.UNSCORED, 9: Stage.UNSCORED}
_STAGE_COLUMNS = ("stage", "sleep_stage", "label", "trial_type", "value")
_INT = re.compile(r"^[+-]?\d+$")
_MONTHS = ("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC")

Event = tuple[float, float, Stage, str]  # onset_s, duration_s, stage, "where" for messages


# ---------------------------------------------------------------------------- helpers
def _label(label: str, where: str) -> Stage:
    try:
        return parse_stage(label)
    except ValueError as exc:
        raise ValueError(f"{where}: {exc}") from None


def _events_to_stages(
    events: Sequence[Event], epoch_s: float, source: str
) -> tuple[np.ndarray, float, np.ndarray]:
    """Expand (onset, duration, stage) events onto an epoch grid.

    Returns the stage codes, the grid onset (first event) and each event's first epoch index.
    """
    if not events:
        raise ValueError(f"{source}: no sleep-stage annotations found")
    order = sorted(range(len(events)), key=lambda i: events[i][0])
    onset0 = events[order[0]][0]
    starts = np.zeros(len(events), dtype=np.int64)
    spans: list[tuple[int, int, Stage, str]] = []
    for pos, i in enumerate(order):
        onset, duration, stage, where = events[i]
        offset = (onset - onset0) / epoch_s
        k = round(offset)
        if abs(offset - k) * epoch_s > _TOL_S:
            raise ValueError(f"{where}: onset {onset:g} s is not aligned to the {epoch_s:g}-s "
                             f"epoch grid that starts at {onset0:g} s; pass the epoch length the "
                             "file was scored with (epoch_s=...) or re-epoch the file")
        if not duration > 0:
            raise ValueError(f"{where}: duration {duration:g} s; a stage needs a positive one")
        n = math.floor(duration / epoch_s + _TOL_S / epoch_s)
        rest = duration - n * epoch_s
        if rest > _TOL_S and pos != len(order) - 1:
            raise ValueError(f"{where}: duration {duration:g} s is not a multiple of the "
                             f"{epoch_s:g}-s epoch; pass the epoch length the file was scored "
                             "with (epoch_s=...)")
        if rest > _TOL_S:  # a recording that ends inside the last epoch
            log.debug("%s: dropping the last partial epoch (%.3g s)", source, rest)
        starts[i] = k
        spans.append((k, k + n, stage, where))
    n_epochs = max(stop for _, stop, _, _ in spans)
    stages = np.full(n_epochs, Stage.UNSCORED, dtype=np.int8)
    filled_to = 0
    for start, stop, stage, where in spans:
        if start < filled_to:
            raise ValueError(f"{where}: overlaps the previous stage annotation")
        stages[start:stop] = stage
        filled_to = max(filled_to, stop)
    return stages, float(onset0), starts


def _edf_start_time(path: Path) -> datetime | None:
    """Recording start from the EDF header (EDF+ 'Startdate' gives the 4-digit year)."""
    try:
        with open(path, "rb") as f:
            head = f.read(256)
        day, month, yy = (int(v) for v in head[168:176].decode("ascii").split("."))
        hour, minute, second = (int(v) for v in head[176:184].decode("ascii").split("."))
        year = 1900 + yy if yy >= 85 else 2000 + yy
        rec = head[88:168].decode("ascii", "replace").split()
        if len(rec) >= 2 and rec[0] == "Startdate" and rec[1] != "X":
            year = int(rec[1].split("-")[2])
        return datetime(year, month, day, hour, minute, second)
    except (OSError, ValueError, IndexError):
        return None


def _sniff(path: Path) -> str:
    suffix = path.suffix.lower()
    if suffix == ".edf":
        return "edf"
    if suffix == ".xml":
        return "nsrr"
    with open(path, "rb") as f:
        head = f.read(256)
    if len(head) == 256 and head[:8] == b"0       ":
        return "edf"
    if head.lstrip().startswith((b"<?xml", b"<PSGAnnotation")):
        return "nsrr"
    if path.name.lower().endswith("events.tsv"):
        return "bids"
    return "tsv" if suffix == ".tsv" else "csv"


# ---------------------------------------------------------------------------- readers
def read_hypnogram(path: str | Path, *, epoch_s: float = 30.0, fmt: str | None = None) -> Hypnogram:
    """Read a hypnogram file, detecting its format.

    Parameters
    ----------
    path : path-like
        Sleep-EDF EDF+ annotation file (``*-Hypnogram.edf``), NSRR XML (SHHS/MESA ``*.xml``),
        CSV/TSV (a ``stage`` column with optional ``onset_s``/``duration_s``/``p_W``...``p_REM``
        columns, or one column of labels/integer codes without header), or BIDS ``events.tsv``
        (``onset``, ``duration`` and ``trial_type``/``value``/``stage``).
    epoch_s : float
        Epoch length in seconds of the grid the annotations are expanded onto.
    fmt : {"edf", "nsrr", "csv", "tsv", "bids"}, optional
        Force a format instead of detecting it from the name and content.

    Returns
    -------
    Hypnogram
        ``meta["source"]`` is the path and ``meta["format"]`` the format read.

    Raises
    ------
    ValueError
        Unknown stage label (naming the file, line or annotation, and the label), onsets off
        the epoch grid, overlapping annotations or an unreadable file.
    FileNotFoundError
        If ``path`` does not exist.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"hypnogram file not found: {path}")
    if not epoch_s > 0:
        raise ValueError(f"epoch_s must be positive, got {epoch_s}")
    fmt = (fmt or _sniff(path)).lower().replace("xml", "nsrr")
    if fmt not in _FORMATS:
        raise ValueError(f"unknown hypnogram format {fmt!r}; use one of {', '.join(_FORMATS)}")
    if fmt == "edf":
        hyp = _read_edf(path, epoch_s)
    elif fmt == "nsrr":
        hyp = _read_nsrr(path, epoch_s)
    else:
        hyp = _read_table(path, epoch_s)
    hyp.meta.update(source=str(path), format=fmt)
    return hyp


def _read_edf(path: Path, epoch_s: float) -> Hypnogram:
    import mne

    with open(path, "rb") as f:
        head = f.read(256)
    if len(head) < 256 or head[:8] != b"0       ":
        raise ValueError(f"{path}: not an EDF/EDF+ file (bad header)")
    if path.suffix != ".edf":
        raise ValueError(f"{path}: an EDF file must be named *.edf for MNE to read it; rename it")
    try:
        ann = mne.read_annotations(path)
    except Exception as exc:  # MNE raises several types for damaged files
        raise ValueError(
            f"{path}: cannot read EDF+ annotations ({type(exc).__name__}: {exc}); expected an "
            "EDF+ hypnogram such as PhysioNet's *-Hypnogram.edf"
        ) from exc
    events = [
        (float(on), float(du), _label(desc, f"{path}, annotation {i} at {on:g} s"),
         f"{path}, annotation {i} ({desc!r})")
        for i, (on, du, desc) in enumerate(zip(ann.onset, ann.duration, ann.description))
    ]
    if not events:
        raise ValueError(f"{path}: no annotations; sleep stages must be EDF+ annotations "
                         "(Sleep-EDF keeps them in a separate *-Hypnogram.edf file)")
    stages, onset0, _ = _events_to_stages(events, epoch_s, str(path))
    return Hypnogram(stages, epoch_s, onset0, _edf_start_time(path))


def _read_nsrr(path: Path, epoch_s: float) -> Hypnogram:
    try:
        root = ET.parse(path).getroot()
    except ET.ParseError as exc:
        raise ValueError(f"{path}: not a valid NSRR XML file ({exc})") from exc
    events: list[Event] = []
    meta: dict[str, str] = {}
    for i, ev in enumerate(root.iter("ScoredEvent")):
        etype = (ev.findtext("EventType") or "").strip()
        concept = (ev.findtext("EventConcept") or "").strip()
        if concept == "Recording Start Time" and ev.findtext("ClockTime"):
            clock = (ev.findtext("ClockTime") or "").split()[-1]
            meta["clock_time"] = clock.replace(".", ":")
        if etype != NSRR_STAGE_TYPE:
            continue
        where = f"{path}, ScoredEvent {i} ({concept!r})"
        try:
            onset, duration = float(ev.findtext("Start")), float(ev.findtext("Duration"))
        except (TypeError, ValueError):
            raise ValueError(f"{where}: missing or invalid <Start>/<Duration>") from None
        events.append((onset, duration, _label(concept, where), where))
    stages, onset0, _ = _events_to_stages(events, epoch_s, str(path))
    return Hypnogram(stages, epoch_s, onset0, meta=meta)


def _int_codes(values: list[str], where: Sequence[str]) -> list[Stage]:
    codes = [int(v) for v in values]
    table = _RK_CODES if 5 in codes else _CANONICAL_CODES
    for code, w in zip(codes, where):
        if code not in table:
            raise ValueError(f"{w}: unknown integer stage code {code} (read as "
                             f"{'R&K/NSRR' if 5 in codes else 'canonical -2..4'} codes); "
                             "write stage labels (W/N1/N2/N3/REM) instead")
    return [table[c] for c in codes]


def _read_table(path: Path, epoch_s: float) -> Hypnogram:
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise ValueError(f"{path}: not a text hypnogram file (and not EDF+ or XML)") from None
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1)
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise ValueError(f"{path}: empty file, no stages to read")
    delim = "\t" if "\t" in lines[0][1] else ("," if "," in lines[0][1] else None)
    rows = [(n, [c.strip() for c in cells]) for (n, _), cells in
            zip(lines, csv.reader([ln for _, ln in lines], delimiter=delim or ","))]
    first = rows[0][1]
    try:  # a first cell that is a stage label means: no header, one column of labels
        _label(first[0], "")
        header = ["stage"]
    except ValueError:
        header, rows = [h.lower() for h in first], rows[1:]
    if header == ["stage"] and len(first) != 1:
        raise ValueError(f"{path}: {len(first)} columns but no header; add a header with a "
                         "'stage' column (and optionally onset_s, duration_s)")
    col = {name: j for j, name in enumerate(header)}
    stage_col = next((c for c in _STAGE_COLUMNS if c in col), None)
    if stage_col is None:
        raise ValueError(f"{path}: no stage column in header {str(first)[:80]}; expected one "
                         f"of {_STAGE_COLUMNS} (or one column of stage labels without header)")
    where = [f"{path}, line {n}" for n, _ in rows]
    for w, (_, cells) in zip(where, rows):
        if len(cells) != len(header):
            raise ValueError(f"{w}: {len(cells)} fields, header has {len(header)}")
    values = [cells[col[stage_col]] for _, cells in rows]
    if values and all(_INT.match(v) for v in values):
        stages = _int_codes(values, where)
    else:
        stages = [_label(v, w + f", column {stage_col!r}") for v, w in zip(values, where)]

    def column(names: tuple[str, ...], default: float) -> np.ndarray:
        name = next((c for c in names if c in col), None)
        if name is None:
            return np.full(len(rows), default)
        out = np.empty(len(rows))
        for r, (w, (_, cells)) in enumerate(zip(where, rows)):
            v = cells[col[name]]
            try:
                out[r] = default if v.lower() in ("", "n/a") else float(v)
            except ValueError:
                raise ValueError(f"{w}: column {name!r} is not a number: {v!r}") from None
        return out

    onsets = column(("onset_s", "onset"), math.nan)
    if np.isnan(onsets).all():
        onsets = epoch_s * np.arange(len(rows), dtype=float)
    elif np.isnan(onsets).any():
        raise ValueError(f"{path}: some onsets are missing; fill every row or none")
    durations = column(("duration_s", "duration"), epoch_s)
    events = [(float(o), float(d), s, w) for o, d, s, w in zip(onsets, durations, stages, where)]
    codes, onset0, starts = _events_to_stages(events, epoch_s, str(path))
    proba = None
    if all(c.lower() in col for c in PROBA_COLUMNS):
        if np.any(np.abs(durations - epoch_s) > _TOL_S):
            raise ValueError(f"{path}: probability columns need one row per {epoch_s:g}-s epoch")
        proba = np.full((len(codes), len(PROBA_COLUMNS)), np.nan, dtype=np.float32)
        for j, c in enumerate(PROBA_COLUMNS):
            proba[starts, j] = column((c.lower(),), math.nan)
    start_time = None
    if "clock_time" in col and rows:
        first_row = int(np.argmin(onsets))
        try:
            clock = datetime.fromisoformat(rows[first_row][1][col["clock_time"]])
        except ValueError:
            raise ValueError(f"{where[first_row]}: clock_time is not ISO 8601") from None
        start_time = clock - timedelta(seconds=onset0)
    return Hypnogram(codes, epoch_s, onset0, start_time, proba)


# ---------------------------------------------------------------------------- writers
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

    Every format is written through :func:`~edge_scorer.outputs.atomic_write` (a temporary
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
    from .outputs import atomic_write

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
    from .edf_writer import write_edf

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
    from . import __version__

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
    from .outputs import atomic_write

    return atomic_write(path, ET.tostring(root, encoding="UTF-8", xml_declaration=True))


# ---------------------------------------------------------------------------- Sleep-EDF helpers
_PAIR = re.compile(r"^(?P<name>[^-]+)-(?P<kind>PSG|Hypnogram)\.edf$", re.IGNORECASE)


def pair_sleep_edf(folder: str | Path) -> list[tuple[Path, Path]]:
    """Pair Sleep-EDF PSG files with their hypnograms.

    ``SC4001E0-PSG.edf`` pairs with ``SC4001EC-Hypnogram.edf``: the name before ``-`` without its
    last character must match. PSG files without a hypnogram (and the reverse) are skipped with
    a warning.

    Returns
    -------
    list of (psg_path, hypnogram_path)
        Sorted by PSG name.

    Raises
    ------
    ValueError
        If two hypnograms match the same PSG.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"Sleep-EDF folder not found: {folder}")
    psgs: dict[str, Path] = {}
    hyps: dict[str, Path] = {}
    for p in sorted(folder.iterdir()):
        m = _PAIR.match(p.name)
        if not m:
            continue
        key = m["name"][:-1].upper()
        target = psgs if m["kind"].upper() == "PSG" else hyps
        if key in target:
            raise ValueError(f"{folder}: both {target[key].name} and {p.name} match {key}*; "
                             "keep one file per night")
        target[key] = p
    for key in sorted(set(psgs) ^ set(hyps)):
        log.warning("%s: %s has no partner file, skipped", folder, (psgs | hyps)[key].name)
    return [(psgs[k], hyps[k]) for k in sorted(set(psgs) & set(hyps))]


def inbed_crop(hyp: Hypnogram, margin_s: float = 1800.0) -> Hypnogram:
    """Crop to the standard Sleep-EDF in-bed window.

    Keeps from ``margin_s`` before the first sleep epoch (N1/N2/N3/REM) to ``margin_s`` after the
    last one, clipped to the hypnogram and to its last scored (not ``UNSCORED``) epoch, which
    drops the ``"Sleep stage ?"`` tail of the PhysioNet files.

    Raises
    ------
    ValueError
        If the hypnogram has no sleep epoch (no in-bed window can be defined).
    """
    sleep = np.flatnonzero(hyp.stages > Stage.W)
    if sleep.size == 0:
        raise ValueError("cannot crop to the in-bed window: the hypnogram has no sleep epoch")
    margin = int(round(margin_s / hyp.epoch_s))
    scored = np.flatnonzero(hyp.stages != Stage.UNSCORED)
    start = max(0, int(sleep[0]) - margin)
    stop = min(hyp.n_epochs, int(sleep[-1]) + 1 + margin, int(scored[-1]) + 1)
    return hyp.crop(start, stop)
