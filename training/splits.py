"""Train / validation / test splits by subject (never by epoch or night).

A split file is JSON ``{"train": [subjects], "val": [...], "test": [...]}`` (an optional
``"meta"`` entry says how it was made). Subject ids match by :func:`canonical_subject`, so
``"01"`` in a file matches Sleep-EDF ``SC401*`` (subject ``01``) and simulated ``SIM001*``.

``training/splits/sleep-edf-sc.json`` is the committed split of the 8 Sleep-EDF SC subjects of the
shared hypnograms (00..07): 5 train / 1 val / 2 test, drawn by a seeded shuffle (seed 0, never
tuned). It serves the simulated default model and the first 8 subjects of the real Sleep-EDF
recipe; :func:`resolve_split` splits any further subjects by the same rule.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from training._paths import find_named
from training.dataset import canonical_subject

log = get_logger("training.splits")

__all__ = ["PARTS", "SPLIT_DIR", "find_split", "load_split", "resolve_split", "save_split",
           "split_by_subject", "split_nights"]

PARTS: tuple[str, ...] = ("train", "val", "test")
#: Folder of the committed split files.
SPLIT_DIR = Path(__file__).resolve().parent / "splits"


def _counts(n: int, fractions: Sequence[float]) -> tuple[int, int, int]:
    f = np.asarray(fractions, dtype=np.float64)
    if f.shape != (3,) or np.any(f < 0) or f.sum() <= 0:
        raise ValueError(f"fractions must be three non-negative numbers (train, val, test), "
                         f"got {list(fractions)}")
    f = f / f.sum()
    n_val, n_test = (int(round(n * x)) for x in f[1:])
    # a part asked for gets at least one subject while train keeps one
    if f[1] > 0 and n_val == 0 and n >= 2:
        n_val = 1
    if f[2] > 0 and n_test == 0 and n - n_val >= 2:
        n_test = 1
    while n_val + n_test > n - (1 if f[0] > 0 else 0):
        if n_test >= n_val and n_test > 0:
            n_test -= 1
        else:
            n_val -= 1
    return n - n_val - n_test, n_val, n_test


def split_by_subject(
    subjects: Iterable[str], fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0,
) -> dict[str, list[str]]:
    """Split subjects into train / val / test by a seeded shuffle.

    Parameters
    ----------
    subjects : iterable of str
        Subject ids (duplicates are merged).
    fractions : (train, val, test)
        Shares of the subjects (normalised); a part with a positive share gets at least one
        subject when there are enough (train keeps at least one).
    seed : int
        Shuffle seed.

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}``, each sorted.
    """
    subs = sorted({str(s) for s in subjects})
    if not subs:
        raise ValueError("no subjects to split")
    order = np.random.default_rng(seed).permutation(len(subs))
    shuffled = [subs[i] for i in order]
    n_train, n_val, _ = _counts(len(subs), fractions)
    return {
        "train": sorted(shuffled[:n_train]),
        "val": sorted(shuffled[n_train:n_train + n_val]),
        "test": sorted(shuffled[n_train + n_val:]),
    }


def _check(split: dict, where: str) -> dict[str, list[str]]:
    missing = [p for p in PARTS if p not in split]
    if missing:
        raise ValueError(f"{where}: split has no {missing} part(s); it needs "
                         "'train', 'val' and 'test' lists of subjects")
    out = {p: [str(s) for s in split[p]] for p in PARTS}
    seen: dict[str, str] = {}
    for part in PARTS:
        for s in out[part]:
            c = canonical_subject(s)
            if c in seen and seen[c] != part:
                raise ValueError(f"{where}: subject {s!r} is in both {seen[c]!r} and {part!r}; "
                                 "a subject belongs to one part only")
            seen[c] = part
    return out


def save_split(split: dict, path: str | Path, meta: dict | None = None) -> Path:
    """Write a split file (validated: no subject in two parts)."""
    out = _check(split, str(path))
    if meta:
        out = {**out, "meta": meta}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(out, indent=2) + "\n")
    return path


def find_split(name_or_path: str | Path) -> Path:
    """A split file by path, or by the name of a committed one (``"sleep-edf-sc"``).

    Raises
    ------
    FileNotFoundError
        Neither a file nor a committed split.
    """
    return find_named(name_or_path, SPLIT_DIR, ".json", "split")


def load_split(path: str | Path) -> dict[str, list[str]]:
    """Read a split file (or a committed split by name); returns only train/val/test."""
    p = find_split(path)
    try:
        data = json.loads(p.read_text())
    except json.JSONDecodeError as exc:
        raise ValueError(f"{p}: not valid JSON ({exc})") from None
    if not isinstance(data, dict):
        raise ValueError(f"{p}: a split file is a JSON object with train/val/test lists")
    return _check(data, str(p))


def resolve_split(
    subjects: Iterable[str], split: dict | str | Path | None = None,
    fractions: Sequence[float] = (0.7, 0.15, 0.15), seed: int = 0,
) -> dict[str, list[str]]:
    """The split of the given subjects.

    Subjects listed in ``split`` (a dict or a split file) keep their part; the others are split
    with :func:`split_by_subject` (``fractions``, ``seed``) and added. Without ``split`` every
    subject is split that way. Subjects of the file that are not in ``subjects`` are dropped.

    Returns
    -------
    dict
        ``{"train": [...], "val": [...], "test": [...]}`` of the given subjects' ids.
    """
    subs = sorted({str(s) for s in subjects})
    fixed = load_split(split) if isinstance(split, str | Path) else (
        _check(split, "split") if split is not None else None)
    out: dict[str, list[str]] = {p: [] for p in PARTS}
    rest = subs
    if fixed is not None:
        where = {canonical_subject(s): p for p in PARTS for s in fixed[p]}
        rest = [s for s in subs if canonical_subject(s) not in where]
        for s in subs:
            if canonical_subject(s) in where:
                out[where[canonical_subject(s)]].append(s)
        if rest:
            log.warning("%d subject(s) are not in the split file (%s); split them by seed %d "
                        "with fractions %s", len(rest), ", ".join(rest[:8]) +
                        (" ..." if len(rest) > 8 else ""), seed, list(fractions))
    if rest:
        extra = split_by_subject(rest, fractions, seed)
        for p in PARTS:
            out[p] = sorted(out[p] + extra[p])
    return out


def split_nights(cache, split: dict[str, list[str]], *, augmented: bool = True,
                 ) -> dict[str, list[int]]:
    """Night indices of an :class:`~training.dataset.EpochCache` per split part.

    Augmented copies (:mod:`training.augment`) go to the training part only (and not there
    either when ``augmented`` is False); validation and test hold original nights only.
    """
    return {p: cache.nights_of(split[p], augmented=augmented and p == "train") for p in PARTS}
