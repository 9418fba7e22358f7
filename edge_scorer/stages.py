"""The one canonical sleep-stage encoding used everywhere in edge-scorer.

Integer codes (model class indices are 0..4)::

    W = 0, N1 = 1, N2 = 2, N3 = 3, REM = 4, UNSCORED = -1

``UNSCORED`` covers everything a scorer did not assign to a stage: "Movement time", "?",
artifact epochs, and epochs the engine could not score (too little signal). Rechtschaffen &
Kales stages 3 and 4 both map to AASM N3.
"""

from __future__ import annotations

import re
from enum import IntEnum

import numpy as np


class Stage(IntEnum):
    """Canonical sleep stages (AASM) plus ``UNSCORED`` (movement / artifact / unknown)."""

    UNSCORED = -1
    W = 0
    N1 = 1
    N2 = 2
    N3 = 3
    REM = 4

    @property
    def label(self) -> str:
        """Short label as written in CSV files (``"W"``, ``"N1"``, ..., ``"UNS"``)."""
        return "UNS" if self is Stage.UNSCORED else self.name


#: Class names in model output order (index = stage code).
CLASS_NAMES: tuple[str, ...] = ("W", "N1", "N2", "N3", "REM")
N_CLASSES = len(CLASS_NAMES)
SLEEP_STAGES = (Stage.N1, Stage.N2, Stage.N3, Stage.REM)

_EXACT: dict[str, Stage] = {
    "W": Stage.W, "WAKE": Stage.W, "0": Stage.W, "S0": Stage.W,
    "N1": Stage.N1, "S1": Stage.N1, "1": Stage.N1,
    "N2": Stage.N2, "S2": Stage.N2, "2": Stage.N2,
    "N3": Stage.N3, "S3": Stage.N3, "S4": Stage.N3, "3": Stage.N3, "4": Stage.N3, "SWS": Stage.N3,
    "R": Stage.REM, "REM": Stage.REM, "5": Stage.REM, "S5": Stage.REM,
    "UNS": Stage.UNSCORED, "UNSCORED": Stage.UNSCORED, "?": Stage.UNSCORED, "UNK": Stage.UNSCORED,
    "MOVE": Stage.UNSCORED, "MT": Stage.UNSCORED, "ART": Stage.UNSCORED, "ARTIFACT": Stage.UNSCORED,
    "-1": Stage.UNSCORED, "-2": Stage.UNSCORED, "6": Stage.UNSCORED, "9": Stage.UNSCORED,
    "MOVEMENT TIME": Stage.UNSCORED, "MOVEMENT": Stage.UNSCORED, "L": Stage.UNSCORED,
}
# "Sleep stage 3" (Sleep-EDF), "Stage 2 sleep|2" (NSRR), "Wake|0" (NSRR), "N2 sleep" ...
_PREFIX = re.compile(r"^(?:sleep\s*stage|stage)\s*", re.IGNORECASE)
_SUFFIX = re.compile(r"\s*(?:sleep)?\s*(?:\|.*)?$", re.IGNORECASE)


def parse_stage(label: str | int) -> Stage:
    """Map a stage label from any supported source to the canonical :class:`Stage`.

    Accepts canonical labels (``"N2"``), R&K labels (``"Sleep stage 4"`` -> N3), NSRR labels
    (``"Stage 2 sleep|2"``, ``"REM sleep|5"``, ``"Wake|0"``), ``"Movement time"`` / ``"?"``
    (-> UNSCORED), and integers as canonical codes (``4`` -> REM). Digit *strings* follow
    R&K/NSRR numbering (``"4"`` -> N3, ``"5"`` -> REM), as they appear in those files.

    Raises
    ------
    ValueError
        If the label is not a known stage label.
    """
    if isinstance(label, (int, np.integer)):
        # integers are canonical codes (YASA's -2 "unscored" accepted too)
        code = int(label)
        if -2 <= code <= 4:
            return Stage(max(code, -1))
        raise ValueError(
            f"unknown sleep-stage label {code} (integer): canonical codes are -1 (unscored), "
            "0 (W), 1 (N1), 2 (N2), 3 (N3), 4 (REM); pass R&K/NSRR numbers as strings ('4' -> N3)"
        )
    text = str(label).strip()
    key = text.upper()
    if key in _EXACT:
        return _EXACT[key]
    if "|" in text:  # NSRR "Stage 2 sleep|2": trust the descriptive part first, then the code
        head, _, code = text.partition("|")
        for candidate in (head, code):
            try:
                return parse_stage(candidate)
            except ValueError:
                pass
    core = _SUFFIX.sub("", _PREFIX.sub("", text)).strip().upper()
    if core in _EXACT:
        return _EXACT[core]
    raise ValueError(
        f"unknown sleep-stage label {str(label)!r}; expected one of W/N1/N2/N3/REM (or R&K "
        "'Sleep stage 1-4/R/W/?', 'Movement time', NSRR 'Stage 2 sleep|2')"
    )


def stages_to_labels(stages: np.ndarray) -> list[str]:
    """Return the short label (``"W"``, ..., ``"UNS"``) of each integer stage code."""
    return [Stage(int(s)).label for s in np.asarray(stages).ravel()]
