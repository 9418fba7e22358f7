"""Many nights: one output folder per night, a cohort table, a process pool or Ray tasks.

:func:`expand_inputs` turns what ``edge-scorer score`` was given (files, folders, glob
patterns, list files of ``PSG[,HYPNOGRAM]`` lines) into ``(psg, hypnogram)`` pairs;
:func:`plan_jobs` gives each night its own folder under the output folder. :func:`run_cohort`
scores them with :func:`score_night` (exactly what the single-file command does:
:func:`~edge_scorer.engine.offline.score_file` into the night's folder) in this process, in a local
process pool, or as Ray tasks on a Ray cluster (``pip install 'edge-scorer[ray]'``). Each
night returns one row of the cohort table (its statistics, agreement with the hypnogram when
one is given, the unfamiliar-signal fraction, the error of a failed night); a failure never
stops the others. A night whose folder holds a ``run.json`` with ``"state": "finished"`` is
skipped on a re-run (its row is read back). :func:`write_cohort_table` writes
``cohort.csv`` and ``cohort.json`` atomically.
"""

from __future__ import annotations

import csv
import glob
import io
import json
import os
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

from edge_scorer._log import get_logger
from edge_scorer.io.outputs import atomic_write

log = get_logger("cohort")

#: File suffixes read as PSG recordings, and as list files of recordings.
PSG_SUFFIXES = (".edf", ".bdf", ".rec")
LIST_SUFFIXES = (".txt", ".csv", ".list", ".lst")
#: Where each night's cohort row is kept (under the output folder), for re-runs.
ROWS_DIR = ".cohort"
#: The leading columns of the cohort table (statistics follow).
COLUMNS = ("night", "status", "psg", "hypnogram", "out", "n_epochs", "seconds",
           "unfamiliar_fraction", "accuracy", "kappa", "macro_f1", "n_warnings", "error")


@dataclass(frozen=True)
class NightJob:
    """One night to score: the PSG file, its output folder, an optional reference."""

    psg: str
    out: str
    name: str
    hypnogram: str | None = None


@dataclass(frozen=True)
class ModelChoice:
    """A picklable description of the model and options, loaded once per worker process."""

    intra: str | None = None
    inter: str | None = None
    backend: str = "onnxruntime"
    channels: tuple[tuple[str, str], ...] = ()
    formats: tuple[str, ...] | None = None
    threads: int = 0


def is_cohort(items: Sequence[str | Path]) -> bool:
    """Whether ``score``'s inputs name many nights (several, a folder, a glob, a list file)."""
    if len(items) != 1:
        return True
    p = str(items[0])
    return (Path(p).is_dir() or glob.has_magic(p)
            or Path(p).suffix.lower() in LIST_SUFFIXES)


def _annotations_only(path: Path) -> bool:
    """An EDF+ file with no signal (a hypnogram beside its PSG): not a night to score."""
    from edge_scorer.io.edf_header import read_edf_header

    try:
        header = read_edf_header(path)
    except Exception:  # unreadable: scored, so that its error is a row of the table
        return False
    return all(header.is_annotation(i) for i in range(len(header.labels)))


def _read_list(path: Path) -> list[tuple[Path, Path | None]]:
    pairs: list[tuple[Path, Path | None]] = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = [s.strip() for s in next(csv.reader([line]))]
        if len(parts) > 2 or not parts[0]:
            raise ValueError(f"{path}:{n}: expected 'PSG' or 'PSG,HYPNOGRAM', got {line!r}")
        psg = Path(parts[0]) if Path(parts[0]).is_absolute() else path.parent / parts[0]
        hyp = None
        if len(parts) == 2 and parts[1]:
            hyp = Path(parts[1]) if Path(parts[1]).is_absolute() else path.parent / parts[1]
        pairs.append((psg, hyp))
    return pairs


def expand_inputs(items: Iterable[str | Path]) -> list[tuple[Path, Path | None]]:
    """``(psg, hypnogram or None)`` for every night the inputs name, in order, without repeats.

    A folder gives its ``.edf``/``.bdf`` files (sorted, not recursive), a pattern with ``*``,
    ``?`` or ``[`` its matches (EDF+ files holding only annotations, hypnograms, left out), a
    ``.txt``/``.csv``/``.list`` file its ``PSG[,HYPNOGRAM]`` lines (relative paths from the
    list's folder; ``#`` comments), a PSG file itself.

    Raises
    ------
    FileNotFoundError
        An input that names no file, or inputs that give no PSG file at all.
    ValueError
        A malformed list-file line.
    """
    pairs: list[tuple[Path, Path | None]] = []
    for item in items:
        p = Path(item)
        if p.is_dir():
            found = sorted(f for f in p.iterdir()
                           if f.suffix.lower() in PSG_SUFFIXES and not _annotations_only(f))
            if not found:
                log.warning("%s holds no .edf/.bdf file", p)
            pairs += [(f, None) for f in found]
        elif glob.has_magic(str(item)):
            matches = sorted(Path(m) for m in glob.glob(str(item)))
            if not matches:
                raise FileNotFoundError(f"no file matches {item!s}")
            pairs += [(m, None) for m in matches
                      if m.suffix.lower() in PSG_SUFFIXES and not _annotations_only(m)]
        elif p.suffix.lower() in LIST_SUFFIXES:
            if not p.is_file():
                raise FileNotFoundError(f"list file not found: {p}")
            pairs += _read_list(p)
        else:
            pairs.append((p, None))  # a missing file becomes that night's failure
    seen: set[Path] = set()
    unique = []
    for psg, hyp in pairs:
        key = psg.resolve()
        if key not in seen:
            seen.add(key)
            unique.append((psg, hyp))
    if not unique:
        raise FileNotFoundError(f"no PSG file (.edf/.bdf) in {', '.join(map(str, items))}")
    return unique


def plan_jobs(pairs: Sequence[tuple[Path, Path | None]], out: str | Path) -> list[NightJob]:
    """One :class:`NightJob` per night, its folder ``OUT/<file stem>`` (``<parent>_<stem>``
    when two files share a stem, then a number)."""
    stems: dict[str, int] = {}
    for psg, _ in pairs:
        stems[psg.stem] = stems.get(psg.stem, 0) + 1
    jobs, used = [], set()
    for psg, hyp in pairs:
        name = psg.stem if stems[psg.stem] == 1 else f"{psg.parent.name}_{psg.stem}"
        base, k = name, 2
        while name in used:
            name, k = f"{base}_{k}", k + 1
        used.add(name)
        jobs.append(NightJob(str(psg), str(Path(out) / name), name,
                             str(hyp) if hyp is not None else None))
    return jobs


def is_finished(folder: str | Path) -> bool:
    """Whether ``folder`` holds a run whose ``run.json`` says ``"state": "finished"``."""
    try:
        info = json.loads((Path(folder) / "run.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False
    return isinstance(info, dict) and info.get("state") == "finished"


_MODELS: dict[ModelChoice, object] = {}


def _model(choice: ModelChoice):
    """The worker process's model for ``choice`` (loaded once)."""
    if choice not in _MODELS:
        if choice.threads:
            os.environ["EDGE_SCORER_ORT_THREADS"] = str(choice.threads)
        from edge_scorer.inference.scorer import ScoringModel

        _MODELS[choice] = ScoringModel.load(choice.intra, choice.inter, backend=choice.backend)
    return _MODELS[choice]


def _row_path(job: NightJob) -> Path:
    return Path(job.out).parent / ROWS_DIR / f"{job.name}.json"


def score_night(job: NightJob, choice: ModelChoice) -> dict:
    """Score one night into its folder and return its cohort row; never raises.

    The folder is what ``edge-scorer score PSG -o FOLDER --overwrite`` writes (the files of an
    unfinished earlier attempt are replaced). A failed night's row has ``status`` ``failed``
    and the error (type and message).
    """
    from edge_scorer.engine.offline import score_file
    from edge_scorer.io.outputs import prepare_output_dir
    from edge_scorer.io.psg import align_hypnogram
    from edge_scorer.stats.metrics import agreement

    row: dict = {"night": job.name, "status": "ok", "psg": job.psg,
                 "hypnogram": job.hypnogram or "", "out": job.out}
    t0 = time.perf_counter()
    try:
        model = _model(choice)
        prepare_output_dir(job.out, overwrite=True)
        night = score_file(job.psg, model, job.out, channel_overrides=dict(choice.channels),
                           progress=False, formats=choice.formats)
        hyp = night.hypnogram
        row.update(n_epochs=hyp.n_epochs, n_warnings=len(night.warnings),
                   unfamiliar_fraction=night.familiarity.get("fraction"))
        if job.hypnogram:
            ref = align_hypnogram(job.hypnogram, hyp.n_epochs * model.spec.epoch_s,
                                  epoch_s=model.spec.epoch_s)
            agr = agreement(ref.stages, hyp.stages)
            row.update(accuracy=agr.accuracy, kappa=agr.kappa, macro_f1=agr.macro_f1)
        stats = json.loads((Path(job.out) / "stats.json").read_text(encoding="utf-8"))
        row.update({k: v for k, v in stats.items() if k not in row})
        if not is_finished(job.out):
            raise RuntimeError(f"{job.out}/run.json does not say finished")
    except Exception as exc:  # one bad night is reported, never stops the cohort
        row.update(status="failed", error=f"{type(exc).__name__}: {exc}")
        log.error("%s failed: %s", job.psg, row["error"])
    row["seconds"] = round(time.perf_counter() - t0, 3)
    if row["status"] == "ok":
        _row_path(job).parent.mkdir(parents=True, exist_ok=True)
        atomic_write(_row_path(job), json.dumps(row, indent=2, default=str) + "\n")
    return row


def _skipped(job: NightJob) -> dict | None:
    """The stored row of a night already finished (None: score it)."""
    if not is_finished(job.out):
        return None
    try:
        row = json.loads(_row_path(job).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return {**row, "status": "skipped"}


def run_cohort(jobs: Sequence[NightJob], choice: ModelChoice, *, workers: int = 1,
               ray_address: str | None = None, use_ray: bool = False,
               on_row: Callable[[dict], None] | None = None) -> list[dict]:
    """Score every job not yet finished; return the rows in job order.

    Parameters
    ----------
    jobs : sequence of NightJob
        From :func:`plan_jobs`.
    choice : ModelChoice
        The model each worker loads.
    workers : int
        Processes of the local pool (1: in this process); with Ray, the CPUs of a local Ray
        instance started here (ignored when ``ray_address`` names a cluster).
    use_ray, ray_address : bool, str
        Run the nights as Ray tasks: on the cluster at ``ray_address`` (``auto``: the one
        ``RAY_ADDRESS`` or a local ``ray start`` names), or on a new local instance.
    on_row : callable, optional
        Called with each row as it comes (progress).

    Raises
    ------
    ImportError
        Ray asked for and not installed (the message names the extra).
    """
    if workers < 1:
        raise ValueError(f"workers must be >= 1, got {workers}")
    rows: dict[int, dict] = {}
    todo = []
    for i, job in enumerate(jobs):
        done = _skipped(job)
        if done is not None:
            rows[i] = done
            if on_row:
                on_row(done)
        else:
            todo.append(i)

    def take(i: int, row: dict) -> None:
        rows[i] = row
        if on_row:
            on_row(row)

    if not todo:
        pass
    elif use_ray or ray_address:
        from edge_scorer.engine.cohort_ray import run_ray

        for i, row in run_ray([jobs[i] for i in todo], choice, ray_address, workers):
            take(todo[i], row)
    elif workers == 1 or len(todo) == 1:
        for i in todo:
            take(i, score_night(jobs[i], choice))
    else:
        import multiprocessing
        from concurrent.futures import ProcessPoolExecutor, as_completed

        threaded = ModelChoice(**{**asdict(choice), "threads": choice.threads or 1})
        # spawned, not forked: a parent holding ONNX Runtime or LSL threads must not be copied
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=min(workers, len(todo)), mp_context=ctx) as pool:
            futures = {pool.submit(score_night, jobs[i], threaded): i for i in todo}
            for fut in as_completed(futures):
                i = futures[fut]
                try:
                    row = fut.result()
                except Exception as exc:  # a worker that died (killed, out of memory)
                    row = {"night": jobs[i].name, "status": "failed", "psg": jobs[i].psg,
                           "out": jobs[i].out, "error": f"{type(exc).__name__}: {exc}"}
                take(i, row)
    return [rows[i] for i in range(len(jobs))]


def write_cohort_table(out: str | Path, rows: Sequence[dict]) -> Path:
    """Write ``cohort.csv`` (one row per night, statistics after :data:`COLUMNS`) and
    ``cohort.json`` into ``out``; returns the CSV's path."""
    out = Path(out)
    extra: list[str] = []
    for row in rows:
        extra += [k for k in row if k not in COLUMNS and k not in extra]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=[*COLUMNS, *extra], lineterminator="\n")
    writer.writeheader()
    for row in rows:
        writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
    path = atomic_write(out / "cohort.csv", buf.getvalue())
    atomic_write(out / "cohort.json", json.dumps(list(rows), indent=2, default=str) + "\n")
    return path


__all__ = ["COLUMNS", "ModelChoice", "NightJob", "expand_inputs", "is_cohort", "is_finished",
           "plan_jobs", "run_cohort", "score_night", "write_cohort_table"]
