"""Training recipes: where the nights come from (data fetching and the expected file layouts).

Sleep-EDF (PhysioNet, open)
    The Sleep Cassette (SC) study, fetched through MNE's fetcher
    (:func:`mne.datasets.sleep_physionet.age.fetch_data`) into MNE's folder
    ``<root>/physionet-sleep-data/`` (``<root>``: ``--path``, else the MNE config/environment
    ``PHYSIONET_SLEEP_PATH`` or ``MNE_DATA``, else ``~/mne_data``). Each night is a pair
    ``SC4ssNX0-PSG.edf`` + ``SC4ssNXY-Hypnogram.edf`` (``ss`` subject 00-82, ``N`` night 1/2,
    ``X`` the recording letter E/F/G, ``Y`` the scorer letter). Before any download a socket
    connect to the PhysioNet host (3-s limit) tells whether the network is there; offline, a
    :class:`DataUnavailableError` says where to put the files by hand.
SHHS (NSRR, account and token required)
    Never downloaded here: :func:`shhs_instructions` explains how to get it and the layout
    training reads.

Training finds the nights in these folders with :func:`training.dataset.nights_from_folder`
(``edge-scorer train --recipe sleep-edf --data DIR``).
"""

from __future__ import annotations

import csv
import os
import re
import socket
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from edge_scorer._log import get_logger

log = get_logger("recipes")

PHYSIONET_HOST = "physionet.org"
PHYSIONET_PORT = 443
SLEEP_EDF_URL = "https://physionet.org/content/sleep-edfx/1.0.0/sleep-cassette/"
#: Sleep-EDF SC subjects are 0..82; these numbers do not exist in the study.
SLEEP_EDF_MISSING_SUBJECTS = (39, 68, 69, 78, 79)
#: (subject, night) recordings missing from the study (lost recording hardware).
SLEEP_EDF_MISSING_NIGHTS = ((13, 2), (36, 1), (52, 1))
NSRR_SHHS_URL = "https://sleepdata.org/datasets/shhs"
NSRR_TOKEN_URL = "https://sleepdata.org/token"



class DataUnavailableError(RuntimeError):
    """The data cannot be fetched (no network, no account); the message says what to do."""


# -- connectivity ----------------------------------------------------------------------------
def check_connectivity(host: str = PHYSIONET_HOST, port: int = PHYSIONET_PORT,
                       timeout_s: float = 3.0) -> str | None:
    """Try a TCP connection to ``host:port`` within ``timeout_s`` seconds (name lookup included).

    The attempt runs in a daemon thread so that a hanging DNS lookup cannot hold the caller
    longer than ``timeout_s``.

    Returns
    -------
    str or None
        None when the host answered, otherwise the reason (e.g. ``"timed out after 3 s"``).
    """
    if timeout_s <= 0:
        raise ValueError(f"timeout_s must be positive, got {timeout_s}")
    result: list[str | None] = []

    def attempt() -> None:
        try:
            with socket.create_connection((host, int(port)), timeout=timeout_s):
                result.append(None)
        except OSError as exc:
            result.append(f"{type(exc).__name__}: {exc}")

    thread = threading.Thread(target=attempt, name="edge-scorer-probe", daemon=True)
    thread.start()
    thread.join(timeout_s + 0.1)
    if not result:
        return f"no answer within {timeout_s:g} s"
    return result[0]


# -- Sleep-EDF ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class SleepEdfRecord:
    """One Sleep-EDF SC night: subject, night and its two file names."""

    subject: int
    night: int
    psg: str
    hypnogram: str


def parse_subjects(values: str | Iterable[str | int]) -> list[int]:
    """Parse subject numbers such as ``"0-19"``, ``"0-4,7"`` or ``["0", "3-5"]``."""
    items = [values] if isinstance(values, (str, int)) else list(values)
    out: list[int] = []
    for item in items:
        for part in str(item).replace(" ", "").split(","):
            if not part:
                continue
            m = re.fullmatch(r"(\d+)(?:-(\d+))?", part)
            if not m:
                raise ValueError(
                    f"cannot read subjects {part!r}; write numbers and ranges like 0-19 or 0-4,7")
            lo, hi = int(m[1]), int(m[2] or m[1])
            if hi < lo:
                raise ValueError(f"subject range {part!r} runs backwards; write {hi}-{lo}")
            out.extend(range(lo, hi + 1))
    return sorted(set(out))


def _mne_records() -> dict[tuple[int, int], tuple[str, str]]:
    """(subject, night) -> (psg, hypnogram) file names from MNE's Sleep-EDF SC record table."""
    try:
        from mne.datasets.sleep_physionet._utils import AGE_SLEEP_RECORDS
    except ImportError:  # pragma: no cover - MNE moved its table
        return {}
    table: dict[tuple[int, int], dict[str, str]] = {}
    with open(AGE_SLEEP_RECORDS, newline="") as fh:
        for row in csv.DictReader(fh):
            key = (int(row["subject"]), int(row["night"]))
            table.setdefault(key, {})[row["record type"]] = row["fname"]
    return {k: (v["PSG"], v["Hypnogram"]) for k, v in table.items()
            if "PSG" in v and "Hypnogram" in v}


def sleep_edf_records(subjects: Iterable[int], recordings: Iterable[int] = (1, 2)
                      ) -> list[SleepEdfRecord]:
    """The Sleep-EDF SC nights of ``subjects`` x ``recordings`` that exist in the study.

    Nights missing from the study (subject 13 night 2, subjects 36 and 52 night 1) are skipped
    with a log message; subject numbers outside the study raise ``ValueError``.
    """
    subjects, recordings = sorted(set(subjects)), sorted(set(recordings))
    bad = [s for s in subjects if not 0 <= s <= 82 or s in SLEEP_EDF_MISSING_SUBJECTS]
    if bad:
        raise ValueError(
            f"Sleep-EDF SC has no subject(s) {bad}: subjects are 0-82 except "
            f"{', '.join(map(str, SLEEP_EDF_MISSING_SUBJECTS))}")
    bad_nights = [r for r in recordings if r not in (1, 2)]
    if bad_nights:
        raise ValueError(f"recordings must be 1 and/or 2 (the two nights), got {bad_nights}")
    table = _mne_records()
    out = []
    for s in subjects:
        for r in recordings:
            if (s, r) in SLEEP_EDF_MISSING_NIGHTS:
                log.info("Sleep-EDF has no night %d for subject %d (skipped)", r, s)
                continue
            default = (f"SC4{s:02d}{r}E0-PSG.edf", f"SC4{s:02d}{r}E?-Hypnogram.edf")
            psg, hyp = table.get((s, r), default)
            out.append(SleepEdfRecord(s, r, psg, hyp))
    return out


def sleep_edf_root(path: str | Path | None = None) -> Path:
    """The root folder MNE's fetcher uses (``--path``, MNE config, or ``~/mne_data``)."""
    if path is not None:
        return Path(path).expanduser()
    value = os.environ.get("PHYSIONET_SLEEP_PATH") or os.environ.get("MNE_DATA")
    if not value:
        try:
            import mne

            value = mne.get_config("PHYSIONET_SLEEP_PATH") or mne.get_config("MNE_DATA")
        except Exception:  # noqa: BLE001 - unreadable config: fall back to the default
            value = None
    return Path(value).expanduser() if value else Path.home() / "mne_data"


def sleep_edf_folder(path: str | Path | None = None) -> Path:
    """Where the Sleep-EDF files are (or go): ``<root>/physionet-sleep-data``."""
    return sleep_edf_root(path) / "physionet-sleep-data"


def _local_pair(folder: Path, rec: SleepEdfRecord) -> tuple[Path, Path] | None:
    psg = folder / rec.psg
    if "?" in rec.hypnogram:
        hyps = sorted(folder.glob(rec.hypnogram))
        hyp = hyps[0] if hyps else None
    else:
        hyp = folder / rec.hypnogram
    if psg.is_file() and hyp is not None and hyp.is_file():
        return psg, hyp
    return None


def offline_message(folder: Path, missing: Sequence[SleepEdfRecord], reason: str,
                    host: str, port: int) -> str:
    """The message shown when Sleep-EDF cannot be downloaded."""
    names = [n for r in missing for n in (r.psg, r.hypnogram)]
    shown = ", ".join(names[:6]) + (f" ... ({len(names)} files)" if len(names) > 6 else "")
    return (
        f"cannot reach {host}:{port} ({reason}), so Sleep-EDF cannot be downloaded. "
        f"Put the files in {folder} by hand (copy them from {SLEEP_EDF_URL} on a machine with "
        "network access): one pair per night, SC4ssNX0-PSG.edf + SC4ssNXY-Hypnogram.edf "
        f"(ss subject, N night 1/2, e.g. SC4001E0-PSG.edf + SC4001EC-Hypnogram.edf). Missing "
        f"here: {shown}. Then train on them with `edge-scorer train --recipe sleep-edf --data "
        f"{folder}`."
    )


def fetch_sleep_edf(
    subjects: Iterable[int] = range(20),
    recordings: Iterable[int] = (1, 2),
    path: str | Path | None = None,
    *,
    host: str = PHYSIONET_HOST,
    port: int = PHYSIONET_PORT,
    timeout_s: float = 3.0,
) -> list[tuple[Path, Path]]:
    """Fetch Sleep-EDF SC nights (only those not already on disk) through MNE's fetcher.

    Parameters
    ----------
    subjects, recordings : iterable of int
        Subjects 0-82 and nights 1/2; nights missing from the study are skipped.
    path : path-like, optional
        MNE root folder; the files go to ``<path>/physionet-sleep-data``.
    host, port, timeout_s
        Connectivity probe made before any download (a TCP connect, ``timeout_s`` at most).

    Returns
    -------
    list of (psg_path, hypnogram_path)

    Raises
    ------
    DataUnavailableError
        Files are missing and the host cannot be reached: the message says where to put them.
    """
    records = sleep_edf_records(subjects, recordings)
    folder = sleep_edf_folder(path)
    local = {r: _local_pair(folder, r) for r in records}
    missing = [r for r, pair in local.items() if pair is None]
    if not missing:
        log.info("all %d Sleep-EDF nights already in %s", len(records), folder)
        return [local[r] for r in records]
    reason = check_connectivity(host, port, timeout_s)
    if reason is not None:
        raise DataUnavailableError(offline_message(folder, missing, reason, host, port))
    from mne.datasets.sleep_physionet import age

    log.info("fetching %d Sleep-EDF nights into %s", len(missing), folder)
    paths = age.fetch_data(sorted({r.subject for r in missing}),
                           recording=sorted({r.night for r in missing}),
                           path=str(sleep_edf_root(path)), on_missing="warn", verbose="error")
    fetched = {Path(p).name: Path(p) for pair in paths for p in pair}
    out = []
    for r in records:
        pair = local[r] or _local_pair(folder, r)
        if pair is None and r.psg in fetched:
            hyp = fetched.get(r.hypnogram)
            pair = (fetched[r.psg], hyp) if hyp is not None else None
        if pair is None:
            raise DataUnavailableError(
                f"MNE's fetcher returned without {r.psg} / {r.hypnogram}; check {folder} "
                f"and retry (or copy the files from {SLEEP_EDF_URL})")
        out.append(pair)
    return out


# -- SHHS --------------------------------------------------------------------------------------
def shhs_instructions(folder: str | Path | None = None) -> str:
    """How to get SHHS from the NSRR, and the layout edge-scorer reads."""
    where = str(folder) if folder is not None else "DIR"
    return f"""\
SHHS (Sleep Heart Health Study) is distributed by the National Sleep Research Resource (NSRR)
and needs an approved data access request; edge-scorer never downloads it without one.

1. Create an account at https://sleepdata.org and request access to SHHS
   ({NSRR_SHHS_URL}); approval takes days.
2. Once approved, copy your personal download token from {NSRR_TOKEN_URL}.
3. Download with NSRR's tool (Ruby gem; it asks for the token), from inside {where}:
       gem install nsrr
       nsrr download shhs/polysomnography/edfs/shhs1
       nsrr download shhs/polysomnography/annotations-events-nsrr/shhs1
   (or pick files by hand on the dataset's "Files" tab; shhs2 works the same way).

Expected layout (NSRR's own), one night = <id>.edf + <id>-nsrr.xml (stages from the XML):
    {where}/shhs/polysomnography/edfs/shhs1/shhs1-200001.edf
    {where}/shhs/polysomnography/annotations-events-nsrr/shhs1/shhs1-200001-nsrr.xml
(a flat folder holding both kinds of files side by side works too). Train on it with the
"shhs" render spec, giving {where}/shhs as the data folder (`--data {where}/shhs`).
"""
