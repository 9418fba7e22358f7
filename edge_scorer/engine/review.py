"""The technician's review of a scored night: stage edits, an audit log, a sign-off.

An automatic hypnogram is a decision aid that a trained scorer reviews. :class:`NightReview`
holds a night's automatic stages (which may still change while a live night is scored) and
the technician's stage of every epoch they set; an epoch they did not touch keeps its
automatic stage. Every change is one :class:`AuditEntry` (epoch, automatic stage and its
status at the time, previous and edited stage, time, scorer, optional note), kept in order and
saved with the night after every change.

Files, in ``NIGHT_DIR/review/`` (:data:`REVIEW_DIR`), each written atomically
(:func:`~edge_scorer.io.outputs.atomic_write`):

* ``audit.csv``: one row per change, columns :data:`AUDIT_COLUMNS`; reopening the night
  replays it, so the reviewed hypnogram survives closing the window or a crash;
* ``review.json``: state (``in progress`` / ``signed off``), scorer, counts, the automatic
  stages' hash (a night scored again after the review began is reported);
* at sign-off (:meth:`NightReview.sign_off`): the reviewed hypnogram in every format
  (``reviewed_hypnogram.csv``, ``.edf`` (EDF+), ``reviewed_events.tsv`` (BIDS),
  ``reviewed_hypnogram.xml`` (NSRR)) and the agreement between the automatic and the reviewed
  stages (``agreement.json``, ``agreement.txt``: Cohen's kappa, accuracy, per-stage F1, the
  confusion matrix, stage minutes of both).

No Qt here: the window (:mod:`gui.review`) drives it with keys and clicks.
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.engine.rolling import FINAL, PROVISIONAL, REVISED, EpochUpdate
from edge_scorer.engine.sinks import LEGACY_LOG_COLUMNS, LOG_COLUMNS
from edge_scorer.io.outputs import atomic_write
from edge_scorer.stages import CLASS_NAMES, Stage, parse_stage
from edge_scorer.stats.hypnogram import Hypnogram
from edge_scorer.stats.metrics import Agreement, agreement

log = get_logger("review")

#: Folder of the review files inside the night's folder.
REVIEW_DIR = "review"
#: Columns of ``audit.csv``.
AUDIT_COLUMNS = ("epoch", "onset_s", "clock_time", "action", "automatic", "automatic_status",
                 "previous", "edited", "time", "scorer", "note")
#: Actions of the audit log: a stage set by the technician, or a note alone.
ACTIONS = ("stage", "note")
#: Files written at sign-off (in :data:`REVIEW_DIR`), by format.
SIGNED_FILES = {"csv": "reviewed_hypnogram.csv", "edf": "reviewed_hypnogram.edf",
                "bids": "reviewed_events.tsv", "nsrr": "reviewed_hypnogram.xml"}
#: Review states written to ``review.json``.
IN_PROGRESS, SIGNED_OFF = "in progress", "signed off"


class ReviewError(ValueError):
    """A review that cannot be opened, changed or signed off (the message says why and how)."""


@dataclass(frozen=True)
class AuditEntry:
    """One change of the technician's hypnogram.

    Attributes
    ----------
    epoch : int
        Epoch index in the night.
    automatic : int
        The model's stage of the epoch when the change was made.
    automatic_status : str
        Its status then: ``provisional``, ``revised`` or ``final`` (a live night).
    previous, edited : int
        The technician's stage before and after (equal for a note without a change).
    time : str
        When, ISO 8601 with the UTC offset.
    scorer : str
        Who (may be empty until sign-off).
    note : str
        Optional free text.
    action : str
        ``stage`` (the technician set the stage, possibly confirming the automatic one) or
        ``note`` (a note alone).
    """

    epoch: int
    automatic: int
    automatic_status: str
    previous: int
    edited: int
    time: str
    scorer: str = ""
    note: str = ""
    action: str = "stage"


def _now() -> str:
    return datetime.now().astimezone().isoformat(timespec="seconds")


def _stage(value: int | str) -> int:
    return int(parse_stage(value))


def stages_hash(stages: np.ndarray) -> str:
    """A short hash of stage codes (to tell whether a night was scored again)."""
    return hashlib.sha256(np.asarray(stages, dtype=np.int8).tobytes()).hexdigest()[:16]


def epoch_log_updates(path: str | Path) -> Iterator[EpochUpdate]:
    """Every update of an epoch log (``epochs.csv``), in the order it was written.

    Torn lines (a run killed mid-write) are skipped. Logs written before the unfamiliar-signal
    columns existed are read too.

    Raises
    ------
    ReviewError
        The file is not an edge-scorer epoch log.
    """
    path = Path(path)
    with open(path, newline="", encoding="utf-8") as fh:
        reader = csv.reader(fh)
        header = tuple(next(reader, ()))
        if header not in (LOG_COLUMNS, LEGACY_LOG_COLUMNS):
            raise ReviewError(f"{path} is not an edge-scorer epoch log (header {list(header)})")
        col = {c: k for k, c in enumerate(header)}
        for row in reader:
            if len(row) != len(header) or not row[-1]:
                continue
            status = row[col["status"]]
            if status not in (PROVISIONAL, REVISED, FINAL):
                raise ReviewError(f"{path}: epoch {row[0]} has an unknown status {status!r}")
            fam = row[col["familiarity"]] if "familiarity" in col else ""
            latency = row[col["latency_ms"]]
            yield EpochUpdate(
                int(row[col["epoch"]]), float(row[col["onset_s"]]), _stage(row[col["stage"]]),
                np.array([float(row[col[f"p_{c}"]]) for c in CLASS_NAMES]), status,
                int(row[col["n_windows"]]), float(row[col["invalid_fraction"]]),
                row[col["gap_filled"]] == "1", row[col["unscorable"]] == "1",
                float(latency) / 1000.0 if latency else None, float(fam or "nan"),
                "unfamiliar" in col and row[col["unfamiliar"]] == "1")


class NightReview:
    """The technician's hypnogram of one night (see the module docstring).

    Parameters
    ----------
    automatic : Hypnogram
        The model's stages (timing: ``epoch_s``, ``onset_s``, ``start_time``).
    folder : path-like, optional
        The night's folder; the review files go to ``folder/review``. None: nothing is saved
        (sign-off then needs a folder).
    scorer : str
        Who reviews (written with every change; required at sign-off).
    final : ndarray of bool, optional
        Per epoch, whether the automatic stage is final (default: all final).
    source : str
        What was scored, for the files (the PSG file or the stream).
    """

    def __init__(self, automatic: Hypnogram, folder: str | Path | None = None, *,
                 scorer: str = "", final: np.ndarray | None = None, source: str = "") -> None:
        self.epoch_s = float(automatic.epoch_s)
        self.onset_s = float(automatic.onset_s)
        self.start_time = automatic.start_time
        self.automatic = np.asarray(automatic.stages, dtype=np.int8).copy()
        self.status = self._status(final, self.automatic.size)
        self.folder = Path(folder) if folder is not None else None
        self.scorer = scorer
        self.source = source
        self.edits: dict[int, int] = {}
        self.audit: list[AuditEntry] = []
        self.signed: dict | None = None
        self.warnings: list[str] = []
        self._automatic_hash = stages_hash(self.automatic)

    @staticmethod
    def _status(final: np.ndarray | None, n: int) -> list[str]:
        if final is None:
            return [FINAL] * n
        final = np.asarray(final, dtype=bool)
        if final.shape != (n,):
            raise ReviewError(f"final must have one flag per epoch ({n}), got {final.shape}")
        return [FINAL if f else PROVISIONAL for f in final]

    # ------------------------------------------------------------------ the night
    @property
    def n_epochs(self) -> int:
        """Epochs in the night (so far, for a live night)."""
        return int(self.automatic.size)

    @property
    def review_dir(self) -> Path | None:
        """Where the review files go (None: not saved)."""
        return self.folder / REVIEW_DIR if self.folder is not None else None

    @property
    def is_final(self) -> bool:
        """Every automatic stage is final (the night is scored)."""
        return all(s == FINAL for s in self.status)

    def update_automatic(self, stages: np.ndarray, final: np.ndarray | None = None, *,
                         start_time: datetime | None = None) -> None:
        """New automatic stages of a live night (the night only grows)."""
        stages = np.asarray(stages, dtype=np.int8)
        if stages.ndim != 1 or stages.size < self.n_epochs:
            raise ReviewError(f"the night cannot shrink from {self.n_epochs} to "
                              f"{stages.size} epochs")
        self.automatic = stages.copy()
        self.status = self._status(final, stages.size)
        self._automatic_hash = stages_hash(stages)
        if start_time is not None:
            self.start_time = start_time

    def stage(self, epoch: int) -> int:
        """The technician's stage of ``epoch`` (the automatic one when not edited)."""
        self._check_epoch(epoch)
        return self.edits.get(epoch, int(self.automatic[epoch]))

    def is_edited(self, epoch: int) -> bool:
        """The technician set this epoch's stage."""
        return epoch in self.edits

    def reviewed_stages(self) -> np.ndarray:
        """The technician's stage of every epoch."""
        out = self.automatic.copy()
        for i, s in self.edits.items():
            out[i] = s
        return out

    def edited_mask(self) -> np.ndarray:
        """Epochs the technician set."""
        mask = np.zeros(self.n_epochs, dtype=bool)
        mask[list(self.edits)] = True
        return mask

    def differs_mask(self) -> np.ndarray:
        """Epochs whose reviewed stage differs from the automatic one."""
        return self.reviewed_stages() != self.automatic

    def reviewed_hypnogram(self) -> Hypnogram:
        """The reviewed night (timing of the automatic one)."""
        return Hypnogram(self.reviewed_stages(), self.epoch_s, self.onset_s, self.start_time,
                         meta={"scorer": self.scorer or "unknown", "reviewed": True})

    def agreement(self) -> Agreement:
        """Agreement of the automatic stages (predicted) with the reviewed ones (reference);
        epochs unscored in either are left out."""
        return agreement(self.reviewed_stages(), self.automatic)

    def _check_epoch(self, epoch: int) -> None:
        if not 0 <= int(epoch) < self.n_epochs:
            raise ReviewError(f"epoch {epoch} is outside the night (0..{self.n_epochs - 1})")

    # ------------------------------------------------------------------ changes
    def set_stage(self, epoch: int, stage: int | str, note: str = "") -> AuditEntry:
        """Set the technician's stage of ``epoch`` (a code, or a label such as ``N2``/``U``),
        log it and save the review."""
        epoch = int(epoch)
        self._check_epoch(epoch)
        code = int(Stage.UNSCORED) if str(stage).upper() == "U" else _stage(stage)
        return self._record(epoch, code, note)

    def add_note(self, epoch: int, note: str) -> AuditEntry:
        """A note on ``epoch`` without changing its stage (logged and saved)."""
        self._check_epoch(int(epoch))
        if not note.strip():
            raise ReviewError("the note is empty; type the note first")
        return self._record(int(epoch), self.stage(int(epoch)), note, change=False)

    def _record(self, epoch: int, code: int, note: str, change: bool = True) -> AuditEntry:
        entry = AuditEntry(epoch, int(self.automatic[epoch]), self.status[epoch],
                           self.stage(epoch), code, _now(), self.scorer, note.strip(),
                           "stage" if change else "note")
        self.audit.append(entry)
        if change:
            self.edits[epoch] = code
        if self.signed is not None:
            log.info("the review changed after its sign-off; sign off again")
            self.signed = {**self.signed, "superseded": True}
        self.save()
        return entry

    # ------------------------------------------------------------------ files
    def _clock(self, epoch: int) -> str:
        if self.start_time is None:
            return ""
        t = self.start_time + timedelta(seconds=self.onset_s + epoch * self.epoch_s)
        return t.isoformat()

    def audit_text(self) -> str:
        """``audit.csv`` as text."""
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(AUDIT_COLUMNS)
        for e in self.audit:
            w.writerow([e.epoch, f"{self.onset_s + e.epoch * self.epoch_s:g}",
                        self._clock(e.epoch), e.action, Stage(e.automatic).label,
                        e.automatic_status,
                        Stage(e.previous).label, Stage(e.edited).label, e.time, e.scorer,
                        e.note])
        return buf.getvalue()

    def summary(self) -> dict:
        """The content of ``review.json``."""
        signed = self.signed if self.signed and not self.signed.get("superseded") else None
        return {"state": SIGNED_OFF if signed else IN_PROGRESS, "night": str(self.folder or ""),
                "source": self.source, "scorer": self.scorer, "n_epochs": self.n_epochs,
                "epoch_s": self.epoch_s,
                "start_time": self.start_time.isoformat() if self.start_time else None,
                "n_changes": len(self.audit), "n_edited_epochs": len(self.edits),
                "n_differ": int(self.differs_mask().sum()),
                "automatic_hash": self._automatic_hash,
                "automatic_final": self.is_final,
                "started": self.audit[0].time if self.audit else None,
                "updated": self.audit[-1].time if self.audit else None,
                "signed_off": signed, "previous_sign_off": self.signed if not signed else None}

    def save(self) -> list[Path]:
        """Write ``audit.csv`` and ``review.json`` (nothing without a folder)."""
        out = self.review_dir
        if out is None:
            return []
        return [atomic_write(out / "audit.csv", self.audit_text()),
                atomic_write(out / "review.json",
                             json.dumps(self.summary(), indent=2, default=str) + "\n")]

    def sign_off(self, scorer: str | None = None) -> list[Path]:
        """Write the reviewed hypnogram in every format and the agreement report.

        Raises
        ------
        ReviewError
            No scorer name, no folder, or the automatic night is still being scored.
        """
        if scorer is not None:
            self.scorer = scorer.strip()
        if not self.scorer:
            raise ReviewError("a sign-off needs the scorer's name or initials; type them in "
                              "the 'scorer' field")
        if self.review_dir is None:
            raise ReviewError("this night has no folder to write the reviewed hypnogram to; "
                              "start the run with an output folder (-o)")
        if not self.is_final:
            raise ReviewError("the night is still being scored (some automatic stages are not "
                              "final); stop the run, then sign off")
        if self.n_epochs == 0:
            raise ReviewError("the night has no epoch to sign off")
        out = self.review_dir
        hyp = self.reviewed_hypnogram()
        written = [hyp.write(out / SIGNED_FILES["csv"], extra_columns={
            "automatic": [Stage(int(s)).label for s in self.automatic],
            "edited": [str(int(e)) for e in self.edited_mask()]})]
        written += [hyp.write(out / SIGNED_FILES[f], fmt=f) for f in ("edf", "bids", "nsrr")]
        report = self.agreement_report()
        written.append(atomic_write(out / "agreement.json",
                                    json.dumps(report, indent=2, default=str) + "\n"))
        written.append(atomic_write(out / "agreement.txt", agreement_text(report)))
        self.signed = {"by": self.scorer, "at": _now(), "n_changes": len(self.audit),
                       "files": [p.name for p in written]}
        written += self.save()
        log.info("signed off by %s: %s", self.scorer, ", ".join(p.name for p in written))
        return written

    def agreement_report(self) -> dict:
        """Automatic vs reviewed: agreement, stage minutes, the changed epochs (JSON-ready)."""
        reviewed = self.reviewed_stages()
        agree = self.agreement()
        minutes = {Stage(c).label: {
            "automatic": float(np.sum(self.automatic == c) * self.epoch_s / 60.0),
            "reviewed": float(np.sum(reviewed == c) * self.epoch_s / 60.0)}
            for c in [*range(len(CLASS_NAMES)), int(Stage.UNSCORED)]}
        changed = np.flatnonzero(reviewed != self.automatic)
        return {"night": str(self.folder or ""), "source": self.source, "scorer": self.scorer,
                "signed_at": _now(), "n_epochs": self.n_epochs, "epoch_s": self.epoch_s,
                "n_changes": len(self.audit), "n_edited_epochs": len(self.edits),
                "n_changed_epochs": int(changed.size),
                "changed_fraction": float(changed.size / max(self.n_epochs, 1)),
                "agreement": agree.as_dict(), "agreement_text": str(agree),
                "stage_minutes": minutes, "changed_epochs": [
                    {"epoch": int(i), "automatic": Stage(int(self.automatic[i])).label,
                     "reviewed": Stage(int(reviewed[i])).label} for i in changed]}

    # ------------------------------------------------------------------ reopening
    @classmethod
    def open(cls, folder: str | Path, *, scorer: str = "") -> NightReview:
        """The review of a scored night's folder: its automatic stages (``hypnogram.csv``, or
        ``epochs.csv`` of a run that did not finish) and the changes in ``review/audit.csv``.

        Raises
        ------
        ReviewError
            The folder holds no scored night, or its audit log does not fit it.
        """
        from edge_scorer.engine.sinks import read_epoch_log
        from edge_scorer.io.hypnogram_io import read_hypnogram

        folder = Path(folder)
        info = _run_info(folder)
        epoch_s = float(info.get("epoch_s") or 30.0)
        if (folder / "hypnogram.csv").is_file():
            automatic = read_hypnogram(folder / "hypnogram.csv", epoch_s=epoch_s)
        elif (folder / "epochs.csv").is_file():
            automatic, _ = read_epoch_log(folder / "epochs.csv", epoch_s)
            if info.get("start_time"):
                automatic.start_time = datetime.fromisoformat(info["start_time"])
        else:
            raise ReviewError(f"{folder} holds no scored night (no hypnogram.csv or epochs.csv);"
                              " give the output folder of edge-scorer score, stream, demo or "
                              "the window")
        review = cls(automatic, folder, scorer=scorer, source=str(info.get("source", "")))
        review._load_audit()
        return review

    def _load_audit(self) -> None:
        out = self.review_dir
        if out is None or not (out / "audit.csv").is_file():
            return
        path = out / "audit.csv"
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.reader(fh))
        if not rows or tuple(rows[0]) != AUDIT_COLUMNS:
            raise ReviewError(f"{path} is not an edge-scorer audit log (header "
                              f"{rows[0] if rows else []}); move it away to start a new review")
        for k, row in enumerate(rows[1:], start=2):
            if len(row) != len(AUDIT_COLUMNS):
                raise ReviewError(f"{path} line {k}: {len(row)} fields, expected "
                                  f"{len(AUDIT_COLUMNS)}")
            r = dict(zip(AUDIT_COLUMNS, row))
            try:
                epoch = int(r["epoch"])
                entry = AuditEntry(epoch, _stage(r["automatic"]), r["automatic_status"],
                                   _stage(r["previous"]), _stage(r["edited"]), r["time"],
                                   r["scorer"], r["note"], r["action"])
                if entry.action not in ACTIONS:
                    raise ValueError(f"unknown action {entry.action!r} (one of {ACTIONS})")
            except ValueError as exc:
                raise ReviewError(f"{path} line {k}: {exc}") from exc
            if not 0 <= epoch < self.n_epochs:
                raise ReviewError(f"{path} line {k}: epoch {epoch} is outside this night "
                                  f"(0..{self.n_epochs - 1}); the audit log belongs to "
                                  "another night")
            self.audit.append(entry)
            if entry.action == "stage":
                self.edits[epoch] = entry.edited
            if entry.scorer and not self.scorer:
                self.scorer = entry.scorer
        stale = sorted({e.epoch for e in self.audit
                        if e.automatic_status == FINAL and e.automatic != self.automatic[e.epoch]})
        if stale:
            text = (f"{len(stale)} edited epoch(s) have another automatic stage now than when "
                    f"they were reviewed (e.g. epoch {stale[0]}): the night was scored again")
            log.warning("%s", text)
            self.warnings.append(text)
        summary = out / "review.json"
        if summary.is_file():
            try:
                self.signed = json.loads(summary.read_text(encoding="utf-8")).get("signed_off")
                if self.signed and not self.scorer:
                    self.scorer = str(self.signed.get("by", ""))
            except (OSError, ValueError) as exc:
                self.warnings.append(f"{summary} is unreadable ({exc}); it is written again")
        log.info("review of %s: %d change(s) from %s", self.folder, len(self.audit), path)


def _run_info(folder: Path) -> dict:
    try:
        return json.loads((folder / "run.json").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s); using defaults", folder / "run.json", exc)
        return {}


def agreement_text(report: dict) -> str:
    """The agreement report as text (``agreement.txt``)."""
    lines = [f"edge-scorer review of {report['night'] or report['source']}",
             f"signed off by {report['scorer']} at {report['signed_at']}",
             f"{report['n_epochs']} epochs of {report['epoch_s']:g} s; "
             f"{report['n_changes']} change(s) on {report['n_edited_epochs']} epoch(s); "
             f"{report['n_changed_epochs']} epoch(s) "
             f"({100 * report['changed_fraction']:.1f} %) differ from the automatic stages",
             "", "agreement of the automatic stages (columns) with the reviewed ones (rows):",
             report["agreement_text"], "", "stage minutes   automatic   reviewed"]
    for stage, m in report["stage_minutes"].items():
        lines.append(f"{stage:<15} {m['automatic']:>9.1f}   {m['reviewed']:>8.1f}")
    kappa = report["agreement"]["kappa"]
    if kappa is None or (isinstance(kappa, float) and math.isnan(kappa)):
        lines.append("(kappa is not defined: too few scored epochs or one stage only)")
    return "\n".join(lines) + "\n"


__all__ = ["ACTIONS", "AUDIT_COLUMNS", "AuditEntry", "IN_PROGRESS", "NightReview", "REVIEW_DIR",
           "ReviewError", "SIGNED_FILES", "SIGNED_OFF", "agreement_text", "epoch_log_updates",
           "stages_hash"]
