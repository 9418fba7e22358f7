"""Rebuild a night's files from its ``epochs.csv`` after a crash (``edge-scorer finalize``).

A run killed before its end (power loss, ``kill -9``, a second Ctrl-C, a full disk) leaves the
append-only ``epochs.csv`` (every update it published, fsynced per batch) and, from its first
epoch on, ``run.json`` with ``"state": "running"`` (model, spec, start time, familiarity
statistics). :func:`finalize_night` reads both and writes what a clean end writes:
``hypnogram.csv``/``.edf``, ``stats.json``/``.txt`` and ``run.json`` (``"state":
"recovered"``). Each epoch gets its last published label; epochs that were still provisional
or revised when the run stopped keep that label (they are counted in ``run.json``
``not_final_epochs``: the later epochs that would have revised them never came).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.engine.rolling import FINAL
from edge_scorer.engine.sinks import read_epoch_log, write_night_files
from edge_scorer.io.outputs import OutputExists
from edge_scorer.stats.hypnogram import Hypnogram

log = get_logger("recover")


@dataclass
class RecoveredNight:
    """What :func:`finalize_night` wrote: the hypnogram, the files, and what was not final."""

    hypnogram: Hypnogram
    written: list[Path]
    not_final: int
    missing: list[int]
    n_torn: int
    run_info: dict


def _read_run(path: Path) -> dict:
    if not path.is_file():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        log.warning("%s is unreadable (%s); finalizing from epochs.csv alone", path, exc)
        return {}
    return data if isinstance(data, dict) else {}


def finalize_night(out_dir: str | Path, overwrite: bool = False) -> RecoveredNight:
    """Write the night's files of ``out_dir`` from its ``epochs.csv`` (and ``run.json``).

    Parameters
    ----------
    out_dir : path-like
        The output folder of a ``stream``/``score``/demo run.
    overwrite : bool
        Write the files again although ``run.json`` says they are whole (``finished`` or
        ``recovered``).

    Raises
    ------
    FileNotFoundError
        No ``epochs.csv`` in the folder.
    OutputExists
        The files are already whole and ``overwrite`` is False.
    ValueError
        ``epochs.csv`` is not an edge-scorer epoch log, or holds no epoch.
    OutputError
        A file could not be written.
    """
    out = Path(out_dir)
    log_path = out / "epochs.csv"
    if not log_path.is_file():
        raise FileNotFoundError(f"{out} holds no epochs.csv: nothing to finalize (give the "
                                "output folder of a stream, score or demo run)")
    run = _read_run(out / "run.json")
    if run.get("state") in ("finished", "recovered") and not overwrite:
        raise OutputExists(f"{out}: the night's files are already whole (run.json state "
                           f"{run['state']!r}); pass --overwrite to write them again from "
                           "epochs.csv")
    epoch_s = float(run.get("epoch_s") or 30.0)
    logged, info = read_epoch_log(log_path, epoch_s)
    if logged.n_epochs == 0:
        raise ValueError(f"{log_path} holds no scored epoch: nothing to finalize")
    start = None
    if run.get("start_time"):
        try:
            start = datetime.fromisoformat(run["start_time"])
        except (TypeError, ValueError):
            log.warning("run.json start_time %r is not ISO 8601; the hypnogram gets no clock "
                        "times", run["start_time"])
    hyp = Hypnogram(logged.stages, epoch_s, start_time=start, probabilities=logged.probabilities,
                    meta={"scorer": "edge-scorer", "model": str(run.get("model", "")),
                          "spec": str(run.get("spec", "")), "recovered_from": str(log_path)})
    status = info["status"]
    missing = [i for i, s in enumerate(status) if s == "missing"]
    not_final = sum(1 for s in status if s not in (FINAL, "missing"))
    stats = run.get("familiarity_statistics") or {}
    flags = np.asarray(info["unfamiliar"], dtype=bool)
    available = bool(stats.get("available", bool(np.isfinite(info["familiarity"]).any())))
    n = int(flags.size)
    fam = {"available": available, "n_epochs": n, "n_unfamiliar": int(flags.sum()),
           "fraction": float(flags.sum()) / n if available and n else None,
           "threshold": stats.get("threshold"), "quantile": stats.get("quantile")}
    run_info = {**run, "state": "recovered", "recovered_from": "epochs.csv",
                "n_epochs": hyp.n_epochs, "not_final_epochs": not_final,
                "missing_epochs": missing, "torn_lines_ignored": info["n_torn"],
                "n_unscorable": int(np.sum(hyp.stages < 0)), "familiarity": fam}
    written = write_night_files(out, hyp, info["familiarity"], flags, run_info)
    if not_final:
        log.warning("%d epoch(s) were not final when the run stopped: they keep their last "
                    "published (provisional or revised) label", not_final)
    if missing:
        log.warning("%d epoch(s) never published (e.g. %s): UNSCORED in the hypnogram",
                    len(missing), missing[:5])
    return RecoveredNight(hyp, written, not_final, missing, info["n_torn"], run_info)


__all__ = ["RecoveredNight", "finalize_night"]
