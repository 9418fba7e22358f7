"""Output files that are never torn or clobbered: one atomic-write helper and a folder guard.

* :func:`atomic_open` / :func:`atomic_write`: every output file is written to a temporary file
  beside it (``.NAME.<pid>.tmp``), flushed and fsynced, then renamed over the target with
  ``os.replace`` (atomic on POSIX and Windows) and the folder fsynced. A reader sees the old
  file or the new one, never half of one; a failure (full disk, no permission) removes the
  temporary file, leaves the old file as it was and raises :class:`OutputError` naming the file.
* :func:`prepare_output_dir`: a run refuses a folder that already holds any of our files
  (:data:`OUR_FILES`) unless ``overwrite``; with ``overwrite`` it removes exactly those files
  (never anything else), so no stale output of an earlier run stays beside the new one.

The append-only ``epochs.csv`` is the one exception to "temporary file + rename": it is
appended to and fsynced per batch (:class:`~edge_scorer.engine.sinks.CsvLog`).
"""

from __future__ import annotations

import contextlib
import os
import shutil
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import IO, Any

from edge_scorer._log import get_logger

log = get_logger("outputs")

#: Files a scoring run (``score``, ``stream``, the demo, the window) writes, and the folder of
#: the technician's review of it (:mod:`edge_scorer.engine.review`).
SCORING_FILES = ("epochs.csv", "hypnogram.csv", "hypnogram.edf", "hypnogram_events.tsv",
                 "hypnogram.xml", "stats.json", "stats.txt", "run.json", "review")
#: Files and folders ``render`` writes.
RENDER_FILES = ("epochs.npy", "contact_sheet.png", "render.json", "labels.csv", "png")
#: Every name a run of ours writes into an output folder.
OUR_FILES = SCORING_FILES + RENDER_FILES


class OutputError(OSError):
    """An output file could not be written (the message names it and the cause)."""


class OutputExists(FileExistsError):
    """The output folder holds files of an earlier run (the message lists them and the fix)."""


def _tmp_path(path: Path) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}.tmp")


def _fsync_dir(folder: Path) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform (Windows); the rename is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _cause(exc: BaseException) -> str:
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return f"{type(exc).__name__}: {exc}"


@contextlib.contextmanager
def atomic_open(path: str | Path, mode: str = "w", **kwargs: Any) -> Iterator[IO[Any]]:
    """Open a temporary file for writing that replaces ``path`` when the block succeeds.

    Parameters
    ----------
    path : path-like
        The file to write (its folder is created).
    mode : {"w", "wb"}
        Text or binary.
    **kwargs
        More :func:`open` arguments (``encoding``, ``newline``).

    Raises
    ------
    OutputError
        The file could not be written (``path`` is left as it was, the temporary removed).
    """
    if mode not in ("w", "wb"):
        raise ValueError(f"atomic_open writes whole files; mode must be 'w' or 'wb', got {mode}")
    path = Path(path)
    tmp = _tmp_path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        if mode == "w":
            kwargs.setdefault("encoding", "utf-8")
        fh = open(tmp, mode, **kwargs)  # noqa: SIM115 - closed below
    except OSError as exc:
        raise OutputError(f"could not write {path}: {_cause(exc)}") from exc
    try:
        with fh:
            yield fh
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException as exc:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(exc, OSError) and not isinstance(exc, OutputError):
            raise OutputError(f"could not write {path}: {_cause(exc)} (the previous file, if "
                              "any, is unchanged)") from exc
        raise
    _fsync_dir(path.parent)


def atomic_write(path: str | Path, data: bytes | str, encoding: str = "utf-8") -> Path:
    """Write ``data`` to ``path`` atomically (see :func:`atomic_open`); return the path."""
    if isinstance(data, str):
        with atomic_open(path, "w", encoding=encoding, newline="") as fh:
            fh.write(data)
    else:
        with atomic_open(path, "wb") as fh:
            fh.write(data)
    return Path(path)


def ours_in(folder: str | Path, names: Iterable[str] = OUR_FILES) -> list[str]:
    """The names of ``names`` present in ``folder`` (in order)."""
    folder = Path(folder)
    return [n for n in names if (folder / n).exists()]


def check_output_dir(folder: str | Path, overwrite: bool = False,
                     names: Iterable[str] = OUR_FILES) -> list[str]:
    """The names of ours in ``folder``; refused unless ``overwrite`` (nothing is changed).

    Raises
    ------
    OutputExists
        The folder holds some of ``names`` and ``overwrite`` is False.
    NotADirectoryError
        ``folder`` is a file.
    """
    folder = Path(folder)
    if folder.exists() and not folder.is_dir():
        raise NotADirectoryError(f"output folder {folder} is a file; choose a folder with -o")
    found = ours_in(folder, names)
    if found and not overwrite:
        raise OutputExists(
            f"{folder} already holds {', '.join(found)} (an earlier run's outputs, or files of "
            "yours); choose another folder with -o, or pass --overwrite to replace them")
    return found


def prepare_output_dir(folder: str | Path, overwrite: bool = False,
                       names: Iterable[str] = OUR_FILES) -> Path:
    """Create ``folder``, refusing one that holds files of ours unless ``overwrite``.

    With ``overwrite``, exactly those files are removed first (other files are never touched),
    so nothing of an earlier run stays beside the new outputs.

    Raises
    ------
    OutputExists
        The folder holds some of ``names`` and ``overwrite`` is False.
    NotADirectoryError
        ``folder`` is a file.
    """
    folder = Path(folder)
    for name in check_output_dir(folder, overwrite, names):
        target = folder / name
        if target.is_dir() and not target.is_symlink():
            shutil.rmtree(target)
        else:
            target.unlink()
        log.info("--overwrite: removed %s", target)
    folder.mkdir(parents=True, exist_ok=True)
    return folder


__all__ = ["OUR_FILES", "RENDER_FILES", "SCORING_FILES", "OutputError", "OutputExists",
           "atomic_open", "atomic_write", "check_output_dir", "ours_in", "prepare_output_dir"]
