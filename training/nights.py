"""Night sources: find PSG + hypnogram pairs in Sleep-EDF and NSRR folders or lists.

Subject ids come from the file names (``SC4ssN``, ``ST7ssN``, simulated ``SIMsssN``, NSRR
``shhs1-200001``), so splits are by subject, never by night or epoch.
"""

from __future__ import annotations

import csv
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from edge_scorer._log import get_logger

log = get_logger("training.nights")

__all__ = ["NightSource", "canonical_subject", "load_nights", "nights_from_folder",
           "subject_from_name"]

_SUBJECT_PATTERNS = (
    re.compile(r"^SC4(\d\d)\d", re.IGNORECASE),   # Sleep-EDF cassette SC4ssN
    re.compile(r"^ST7(\d\d)\d", re.IGNORECASE),   # Sleep-EDF telemetry ST7ssN
    re.compile(r"^SIM(\d{3})\d", re.IGNORECASE),  # simulated Sleep-EDF layout SIMsssN
)


# ---------------------------------------------------------------------------- night sources
@dataclass(frozen=True)
class NightSource:
    """One night to put in a cache: a unique ``name`` (``SC4001E0``, ``shhs1-200001``), its
    ``subject`` (splits never put one subject in two parts), the ``psg`` EDF/BDF file and the
    ``hypnogram`` file (any format ``read_hypnogram`` reads; None: unlabelled, all -1, no trim).
    """

    name: str
    subject: str
    psg: Path
    hypnogram: Path | None = None

    def fingerprint(self) -> dict:
        """What identifies the night's data: names, absolute paths, sizes, modification times."""
        out: dict = {"name": self.name, "subject": self.subject}
        for key in ("psg", "hypnogram"):
            p = getattr(self, key)
            if p is None:
                out[key] = None
                continue
            p = Path(p).resolve()
            st = p.stat() if p.exists() else None
            out[key] = str(p)
            out[f"{key}_size"] = st.st_size if st else None
            out[f"{key}_mtime_ns"] = st.st_mtime_ns if st else None
        return out


def subject_from_name(name: str) -> str:
    """Subject id from a night name.

    ``SC4ssN*`` and ``ST7ssN*`` (Sleep-EDF) give ``ss``, simulated ``SIMsssN*`` gives ``sss``,
    NSRR names (``shhs1-200001``, ``mesa-sleep-0001``) give the last ``-`` part, anything
    else the name itself.
    """
    for pat in _SUBJECT_PATTERNS:
        m = pat.match(name)
        if m:
            return m.group(1)
    return name.rsplit("-", 1)[-1] if "-" in name else name


def canonical_subject(subject: str) -> str:
    """Subject id for matching: all-digit ids lose leading zeros (``"01"``, ``"001"`` -> ``"1"``).

    Real Sleep-EDF subjects (``SC4ssN``: 2 digits) and simulated ones (``SIMsssN``: 3 digits)
    then match the same split entries.
    """
    s = str(subject).strip()
    return str(int(s)) if s.isdigit() else s


def _sleep_edf_nights(folder: Path) -> list[NightSource]:
    from edge_scorer.io.hypnogram_io import pair_sleep_edf

    pairs = pair_sleep_edf(folder)
    if not pairs:  # the PhysioNet download keeps the files one level down (sleep-cassette/)
        for sub in sorted(p for p in folder.iterdir() if p.is_dir()):
            pairs += pair_sleep_edf(sub)
    out = []
    for psg, hyp in pairs:
        name = psg.name.split("-", 1)[0]
        out.append(NightSource(name, subject_from_name(name), psg, hyp))
    return out


def _nsrr_nights(folder: Path) -> list[NightSource]:
    base = folder / "polysomnography" if (folder / "polysomnography").is_dir() else folder
    edf_dir, ann_dir = base / "edfs", base / "annotations-events-nsrr"
    if edf_dir.is_dir() and ann_dir.is_dir():
        edfs = sorted(edf_dir.rglob("*.edf"))
        xmls = {p.name.lower(): p for p in ann_dir.rglob("*-nsrr.xml")}
    else:
        edfs = sorted(folder.glob("*.edf"))
        xmls = {p.name.lower(): p for p in folder.glob("*-nsrr.xml")}
    out = []
    for edf in edfs:
        xml = xmls.get(f"{edf.stem}-nsrr.xml".lower())
        if xml is None:
            log.warning("%s: no %s-nsrr.xml annotation file found, skipped", edf.name, edf.stem)
            continue
        out.append(NightSource(edf.stem, subject_from_name(edf.stem), edf, xml))
    return out


def nights_from_folder(folder: str | Path, layout: str = "auto") -> list[NightSource]:
    """Find the nights (PSG + hypnogram pairs) of a dataset folder.

    Parameters
    ----------
    folder : path-like
        A Sleep-EDF-layout folder (``*-PSG.edf`` + ``*-Hypnogram.edf``, also one level down as
        in PhysioNet's ``sleep-cassette/``), or an NSRR folder (SHHS/MESA: ``*.edf`` and
        ``*-nsrr.xml`` side by side, or ``edfs/`` + ``annotations-events-nsrr/``, optionally under
        ``polysomnography/``).
    layout : {"auto", "sleep-edf", "nsrr"}
        ``auto`` tries Sleep-EDF first, then NSRR.

    Returns
    -------
    list of NightSource
        Sorted by PSG name. Files without a partner are skipped with a warning.

    Raises
    ------
    FileNotFoundError
        The folder does not exist or holds no night of the layout.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"nights folder not found: {folder}")
    finders = {"sleep-edf": _sleep_edf_nights, "nsrr": _nsrr_nights}
    if layout not in (*finders, "auto"):
        raise ValueError(f"unknown layout {layout!r}; use 'auto', 'sleep-edf' or 'nsrr'")
    for name in finders if layout == "auto" else (layout,):
        nights = finders[name](folder)
        if nights:
            log.info("%s: %d night(s) in the %s layout", folder, len(nights), name)
            return nights
    raise FileNotFoundError(
        f"{folder}: no PSG + hypnogram pairs found (layout {layout!r}). Expected Sleep-EDF files "
        "(SC4001E0-PSG.edf + SC4001EC-Hypnogram.edf) or NSRR files (shhs1-200001.edf + "
        "shhs1-200001-nsrr.xml, or edfs/ + annotations-events-nsrr/); make simulated ones with "
        "'edge-scorer simulate -o DIR --nights N'"
    )


def _from_mapping(item: Mapping, base: Path | None, where: str) -> NightSource:
    if "psg" not in item:
        raise ValueError(f"{where}: a night needs a 'psg' path (and usually a 'hypnogram')")

    def path(v):
        if v in (None, ""):
            return None
        p = Path(str(v)).expanduser()
        return p if p.is_absolute() or base is None else base / p

    psg = path(item["psg"])
    name = str(item.get("name") or psg.name.split("-PSG")[0].removesuffix(".edf"))
    subject = str(item.get("subject") or subject_from_name(name))
    return NightSource(name, subject, psg, path(item.get("hypnogram")))


def load_nights(source: str | Path | Iterable, layout: str = "auto") -> list[NightSource]:
    """Nights from a folder, a list file, or a list of mappings.

    Parameters
    ----------
    source : path-like or iterable
        A dataset folder (:func:`nights_from_folder`); a ``.csv``/``.tsv`` file with columns
        ``psg``, ``hypnogram`` and optionally ``subject`` and ``name`` (relative paths are
        relative to the file); or a list of ``{"psg": ..., "hypnogram": ..., ...}`` mappings or
        :class:`NightSource` objects.
    layout : str
        Folder layout (see :func:`nights_from_folder`).
    """
    if isinstance(source, str | Path):
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(
                f"nights folder or list not found: {path}. Point data.nights at your PSG + "
                "hypnogram folder (edge-scorer train ... --data DIR), fetch Sleep-EDF with "
                "'edge-scorer data sleep-edf', or make simulated nights: 'edge-scorer simulate "
                f"-o {path} --nights 16 --hypnogram ../shared/data/sleep-edf/hypnograms'"
            )
        if path.is_dir():
            return nights_from_folder(path, layout)
        if path.suffix.lower() in (".csv", ".tsv") and path.is_file():
            with open(path, newline="") as fh:
                rows = list(csv.DictReader(fh, delimiter="\t" if path.suffix == ".tsv" else ","))
            return [_from_mapping(r, path.parent, f"{path.name} row {i + 2}")
                    for i, r in enumerate(rows)]
        raise FileNotFoundError(
            f"nights source {path} is neither a folder nor a .csv/.tsv list of nights; "
            "set data.nights to a Sleep-EDF/NSRR folder or a list file"
        )
    return [n if isinstance(n, NightSource) else _from_mapping(n, None, f"night {i}")
            for i, n in enumerate(source)]


# ---------------------------------------------------------------------------- .npy appending
