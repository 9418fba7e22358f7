"""Find a file by path, or a shipped one by name (configs, split files)."""

from __future__ import annotations

from pathlib import Path


def find_named(name_or_path: str | Path, folder: Path, suffix: str, kind: str) -> Path:
    """Return ``name_or_path`` if it is a file, else ``folder/<name>[suffix]``.

    Raises
    ------
    FileNotFoundError
        Neither exists; the message lists the shipped names.
    """
    p = Path(name_or_path)
    if p.is_file():
        return p
    for cand in (folder / p.name, folder / f"{p.name}{suffix}"):
        if not p.is_absolute() and cand.is_file():
            return cand
    shipped = sorted(f.stem for f in folder.glob(f"*{suffix}"))
    raise FileNotFoundError(f"{kind} file not found: {p}; give a {suffix[1:].upper()} file or "
                            f"one of the shipped {kind}s {shipped}")
