"""Read and write hypnograms: Sleep-EDF EDF+, NSRR XML, CSV/TSV and BIDS ``events.tsv``.

Every reader returns a :class:`~edge_scorer.stats.hypnogram.Hypnogram` on a regular epoch grid:
annotations longer than one epoch are split into epochs, gaps between annotations become
``UNSCORED`` epochs, and an onset that is not on the epoch grid is an error (the file was scored
with another epoch length). ``Hypnogram.onset_s`` is the onset of the first annotation in
seconds from the recording start; ``start_time`` is the recording start when the file knows it.

Readers refuse what they cannot trust before allocating anything for it: non-finite onsets or
durations, onsets or durations beyond :data:`MAX_SPAN_S` (7 days), a night spanning more than
that, files over :data:`MAX_FILE_BYTES`, a truncated or corrupt EDF+ file (header checked
against the file size by :func:`~edge_scorer.io.edf_header.read_edf_header`), and XML with
entities or a DTD (parsed with ``defusedxml``). Every reading error is a
:class:`HypnogramError` (a ``ValueError``) naming the file and what is wrong.

Integer stage codes in a table column are read as the canonical/YASA codes (``-2``/``-1``
unscored, ``0`` W, ``1`` N1, ``2`` N2, ``3`` N3, ``4`` REM) unless the column contains ``5``, in
which case it is read as R&K/NSRR numbering (``3`` and ``4`` -> N3, ``5`` REM, ``6``/``9``
unscored). Write labels (``W``/``N1``/...) to avoid the ambiguity; our writers always do.
"""

from __future__ import annotations

import csv
import math
import re
import xml.etree.ElementTree as ET  # writing only; files are parsed with defusedxml
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.io.edf_header import parse_start_time
from edge_scorer.io.hypnogram_writers import (  # the writers are re-exported here
    _FORMATS,
    _TOL_S,
    NSRR_CONCEPTS,
    NSRR_STAGE_TYPE,
    PROBA_COLUMNS,
    RK_LABELS,
    write_hypnogram,
    write_nsrr_xml,
)
from edge_scorer.stages import Stage, parse_stage
from edge_scorer.stats.hypnogram import Hypnogram

log = get_logger("hypnogram_io")

__all__ = ["MAX_FILE_BYTES", "MAX_SPAN_S", "NSRR_CONCEPTS", "PROBA_COLUMNS", "RK_LABELS",
           "HypnogramError", "inbed_crop", "pair_sleep_edf", "read_hypnogram", "write_hypnogram",
           "write_nsrr_xml"]

#: Longest onset, duration or night a hypnogram may span (7 days, in seconds).
MAX_SPAN_S = 7 * 24 * 3600.0
#: Largest hypnogram file read (a week of 1-s epochs as CSV is far below it).
MAX_FILE_BYTES = 64 * 1024 * 1024
#: Epoch lengths accepted (s).
EPOCH_S_RANGE = (1.0, 600.0)


class HypnogramError(ValueError):
    """A hypnogram file cannot be read or holds something untrustworthy (names the file)."""



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
        raise HypnogramError(f"{where}: {exc}") from None


def _events_to_stages(
    events: Sequence[Event], epoch_s: float, source: str
) -> tuple[np.ndarray, float, np.ndarray]:
    """Expand (onset, duration, stage) events onto an epoch grid.

    Returns the stage codes, the grid onset (first event) and each event's first epoch index.
    """
    if not events:
        raise HypnogramError(f"{source}: no sleep-stage annotations found")
    for onset, duration, _, where in events:  # bounds before anything is allocated
        if not (math.isfinite(onset) and abs(onset) <= MAX_SPAN_S):
            raise HypnogramError(f"{where}: onset {onset:g} s is not a finite time within 7 "
                                 "days of the recording start; fix the file")
        if not (math.isfinite(duration) and duration <= MAX_SPAN_S):
            raise HypnogramError(f"{where}: duration {duration:g} s is not a finite time up to "
                                 "7 days; fix the file")
    span = max(o + d for o, d, _, _ in events) - min(o for o, _, _, _ in events)
    if span > MAX_SPAN_S:
        raise HypnogramError(f"{source}: the annotations span {span / 86400:.1f} days; a "
                             "hypnogram covers one night (at most 7 days); fix the onsets")
    order = sorted(range(len(events)), key=lambda i: events[i][0])
    onset0 = events[order[0]][0]
    starts = np.zeros(len(events), dtype=np.int64)
    spans: list[tuple[int, int, Stage, str]] = []
    for pos, i in enumerate(order):
        onset, duration, stage, where = events[i]
        offset = (onset - onset0) / epoch_s
        k = round(offset)
        if abs(offset - k) * epoch_s > _TOL_S:
            raise HypnogramError(f"{where}: onset {onset:g} s is not aligned to the {epoch_s:g}-s "
                             f"epoch grid that starts at {onset0:g} s; pass the epoch length the "
                             "file was scored with (epoch_s=...) or re-epoch the file")
        if not duration > 0:
            raise HypnogramError(f"{where}: duration {duration:g} s; a stage needs a positive one")
        n = math.floor(duration / epoch_s + _TOL_S / epoch_s)
        rest = duration - n * epoch_s
        if rest > _TOL_S and pos != len(order) - 1:
            raise HypnogramError(f"{where}: duration {duration:g} s is not a multiple of the "
                             f"{epoch_s:g}-s epoch; pass the epoch length the file was scored "
                             "with (epoch_s=...)")
        if rest > _TOL_S:  # a recording that ends inside the last epoch
            log.debug("%s: dropping the last partial epoch (%.3g s)", source, rest)
        starts[i] = k
        spans.append((k, k + n, stage, where))
    n_epochs = max(stop for _, stop, _, _ in spans)
    if n_epochs < 1:
        raise HypnogramError(f"{source}: the stages cover no whole {epoch_s:g}-s epoch")
    stages = np.full(n_epochs, Stage.UNSCORED, dtype=np.int8)
    filled_to = 0
    for start, stop, stage, where in spans:
        if start < filled_to:
            raise HypnogramError(f"{where}: overlaps the previous stage annotation")
        stages[start:stop] = stage
        filled_to = max(filled_to, stop)
    return stages, float(onset0), starts


def _edf_start_time(path: Path) -> datetime | None:
    """Recording start from the EDF header (:func:`~edge_scorer.io.edf_header.parse_start_time`,
    the rule PSG files are read with)."""
    try:
        with open(path, "rb") as f:
            return parse_start_time(f.read(256))
    except OSError:
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
    lo, hi = EPOCH_S_RANGE
    if not lo <= epoch_s <= hi:
        raise HypnogramError(f"epoch_s must be within {lo:g} to {hi:g} s, got {epoch_s}")
    size = path.stat().st_size
    if size > MAX_FILE_BYTES:
        raise HypnogramError(f"{path}: {size} bytes is far too large for a hypnogram "
                             f"(at most {MAX_FILE_BYTES}); is it a PSG recording?")
    fmt = (fmt or _sniff(path)).lower().replace("xml", "nsrr")
    if fmt not in _FORMATS:
        raise HypnogramError(f"unknown hypnogram format {fmt!r}; use one of {', '.join(_FORMATS)}")
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

    from edge_scorer.io.edf_header import PsgReadError, read_edf_header

    with open(path, "rb") as f:
        head = f.read(256)
    if len(head) < 256 or head[:8] != b"0       ":
        raise HypnogramError(f"{path}: not an EDF/EDF+ file (bad header)")
    try:  # every header field, and the annotation records against the file size
        header = read_edf_header(path)
    except PsgReadError as exc:
        raise HypnogramError(f"{path}: {exc}") from None
    if not any(header.is_annotation(i) for i in range(len(header.labels))):
        raise HypnogramError(f"{path}: no annotations; sleep stages must be EDF+ annotations "
                             "(an 'EDF Annotations' signal; Sleep-EDF keeps them in a separate "
                             "*-Hypnogram.edf file)")
    if path.suffix != ".edf":
        raise HypnogramError(f"{path}: an EDF file must be named *.edf for MNE to read it; "
                             "rename it")
    try:
        ann = mne.read_annotations(path)
    except Exception as exc:  # MNE raises several types for damaged files
        raise HypnogramError(
            f"{path}: cannot read EDF+ annotations ({type(exc).__name__}: {exc}); expected an "
            "EDF+ hypnogram such as PhysioNet's *-Hypnogram.edf"
        ) from exc
    events = [
        (float(on), float(du), _label(desc, f"{path}, annotation {i} at {on:g} s"),
         f"{path}, annotation {i} ({desc!r})")
        for i, (on, du, desc) in enumerate(zip(ann.onset, ann.duration, ann.description))
    ]
    if not events:
        raise HypnogramError(f"{path}: no annotations; sleep stages must be EDF+ annotations "
                         "(Sleep-EDF keeps them in a separate *-Hypnogram.edf file)")
    stages, onset0, _ = _events_to_stages(events, epoch_s, str(path))
    return Hypnogram(stages, epoch_s, onset0, _edf_start_time(path))


def _read_nsrr(path: Path, epoch_s: float) -> Hypnogram:
    from defusedxml import DefusedXmlException
    from defusedxml import ElementTree as SafeET

    try:
        root = SafeET.parse(path).getroot()
    except (ET.ParseError, LookupError) as exc:  # LookupError: an unknown declared encoding
        raise HypnogramError(f"{path}: not a valid NSRR XML file ({exc})") from exc
    except DefusedXmlException as exc:
        raise HypnogramError(f"{path}: refused: the XML declares entities or a DTD "
                             f"({type(exc).__name__}); NSRR files have none") from exc
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
            raise HypnogramError(f"{where}: missing or invalid <Start>/<Duration>") from None
        events.append((onset, duration, _label(concept, where), where))
    stages, onset0, _ = _events_to_stages(events, epoch_s, str(path))
    return Hypnogram(stages, epoch_s, onset0, meta=meta)


def _int_codes(values: list[str], where: Sequence[str]) -> list[Stage]:
    codes = [int(v) for v in values]
    table = _RK_CODES if 5 in codes else _CANONICAL_CODES
    for code, w in zip(codes, where):
        if code not in table:
            raise HypnogramError(f"{w}: unknown integer stage code {code} (read as "
                             f"{'R&K/NSRR' if 5 in codes else 'canonical -2..4'} codes); "
                             "write stage labels (W/N1/N2/N3/REM) instead")
    return [table[c] for c in codes]


def _read_table(path: Path, epoch_s: float) -> Hypnogram:
    """Read a CSV/TSV hypnogram (a header with a stage column, or one column of labels)."""
    rows = _table_rows(path)
    first = rows[0][1]
    try:  # a first cell that is a stage label means: no header, one column of labels
        _label(first[0], "")
        header = ["stage"]
    except ValueError:
        header, rows = [h.lower() for h in first], rows[1:]
    if header == ["stage"] and len(first) != 1:
        raise HypnogramError(f"{path}: {len(first)} columns but no header; add a header with a "
                         "'stage' column (and optionally onset_s, duration_s)")
    col = {name: j for j, name in enumerate(header)}
    stage_col = next((c for c in _STAGE_COLUMNS if c in col), None)
    if stage_col is None:
        raise HypnogramError(f"{path}: no stage column in header {str(first)[:80]}; expected one "
                         f"of {_STAGE_COLUMNS} (or one column of stage labels without header)")
    where = [f"{path}, line {n}" for n, _ in rows]
    for w, (_, cells) in zip(where, rows):
        if len(cells) != len(header):
            raise HypnogramError(f"{w}: {len(cells)} fields, header has {len(header)}")
    values = [cells[col[stage_col]] for _, cells in rows]
    if values and all(_INT.match(v) for v in values):
        stages = _int_codes(values, where)
    else:
        stages = [_label(v, w + f", column {stage_col!r}") for v, w in zip(values, where)]
    cells_only = [cells for _, cells in rows]
    onsets = _table_column(cells_only, where, col, ("onset_s", "onset"), math.nan)
    if np.isnan(onsets).all():
        onsets = epoch_s * np.arange(len(rows), dtype=float)
    elif np.isnan(onsets).any():
        raise HypnogramError(f"{path}: some onsets are missing; fill every row or none")
    durations = _table_column(cells_only, where, col, ("duration_s", "duration"), epoch_s)
    events = [(float(o), float(d), s, w) for o, d, s, w in zip(onsets, durations, stages, where)]
    codes, onset0, starts = _events_to_stages(events, epoch_s, str(path))
    proba = None
    if all(c.lower() in col for c in PROBA_COLUMNS):
        if np.any(np.abs(durations - epoch_s) > _TOL_S):
            raise HypnogramError(f"{path}: probability columns need one row per {epoch_s:g}-s "
                                 "epoch")
        proba = np.full((len(codes), len(PROBA_COLUMNS)), np.nan, dtype=np.float32)
        for j, c in enumerate(PROBA_COLUMNS):
            proba[starts, j] = _table_column(cells_only, where, col, (c.lower(),), math.nan)
    start_time = None
    if "clock_time" in col and rows:
        start_time = _table_start_time(cells_only, where, col["clock_time"], onsets, onset0)
    return Hypnogram(codes, epoch_s, onset0, start_time, proba)


def _table_rows(path: Path) -> list[tuple[int, list[str]]]:
    """The non-empty, non-comment rows of a CSV/TSV file as (line number, stripped cells).

    The delimiter is a tab or a comma when the first row holds one.
    """
    try:
        text = path.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError:
        raise HypnogramError(f"{path}: not a text hypnogram file (and not EDF+ or XML)") from None
    lines = [(n, ln) for n, ln in enumerate(text.splitlines(), 1)
             if ln.strip() and not ln.lstrip().startswith("#")]
    if not lines:
        raise HypnogramError(f"{path}: empty file, no stages to read")
    delim = "\t" if "\t" in lines[0][1] else ("," if "," in lines[0][1] else None)
    try:
        return [(n, [c.strip() for c in cells]) for (n, _), cells in
                zip(lines, csv.reader([ln for _, ln in lines], delimiter=delim or ","))]
    except csv.Error as exc:
        raise HypnogramError(f"{path}: not a readable CSV/TSV file ({exc})") from None


def _table_column(
    rows: Sequence[Sequence[str]],
    where: Sequence[str],
    col: dict[str, int],
    names: tuple[str, ...],
    default: float,
) -> np.ndarray:
    """The first of the columns ``names`` present, as numbers (empty or ``n/a``: ``default``;
    no such column: ``default`` everywhere)."""
    name = next((c for c in names if c in col), None)
    if name is None:
        return np.full(len(rows), default)
    out = np.empty(len(rows))
    for r, (w, cells) in enumerate(zip(where, rows)):
        v = cells[col[name]]
        try:
            out[r] = default if v.lower() in ("", "n/a") else float(v)
        except ValueError:
            raise HypnogramError(f"{w}: column {name!r} is not a number: {v!r}") from None
    return out


def _table_start_time(
    rows: Sequence[Sequence[str]],
    where: Sequence[str],
    clock_col: int,
    onsets: np.ndarray,
    onset0: float,
) -> datetime:
    """The recording start from the ``clock_time`` of the earliest row."""
    first_row = int(np.argmin(onsets))
    try:
        clock = datetime.fromisoformat(rows[first_row][clock_col])
        return clock - timedelta(seconds=onset0)
    except (ValueError, OverflowError):
        raise HypnogramError(f"{where[first_row]}: clock_time is not an ISO 8601 time "
                             "(e.g. 2024-05-01T23:10:00)") from None


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
