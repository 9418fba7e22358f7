"""Stage labels from every supported family, and Hypnogram validation."""

from __future__ import annotations

import numpy as np
import pytest

from edge_scorer import Hypnogram, Stage, parse_stage, stages_to_labels
from edge_scorer.stages import CLASS_NAMES

S = Stage

FAMILIES = {
    "canonical": [("W", S.W), ("N1", S.N1), ("N2", S.N2), ("N3", S.N3), ("REM", S.REM),
                  ("UNS", S.UNSCORED), ("R", S.REM), ("wake", S.W), (" n2 ", S.N2)],
    "rk_sleep_edf": [("Sleep stage W", S.W), ("Sleep stage 1", S.N1), ("Sleep stage 2", S.N2),
                     ("Sleep stage 3", S.N3), ("Sleep stage 4", S.N3), ("Sleep stage R", S.REM),
                     ("Sleep stage ?", S.UNSCORED), ("Movement time", S.UNSCORED),
                     ("sleep stage r", S.REM)],
    "rk_short": [("S1", S.N1), ("S2", S.N2), ("S3", S.N3), ("S4", S.N3), ("SWS", S.N3),
                 ("MT", S.UNSCORED), ("?", S.UNSCORED)],
    "nsrr": [("Wake|0", S.W), ("Stage 1 sleep|1", S.N1), ("Stage 2 sleep|2", S.N2),
             ("Stage 3 sleep|3", S.N3), ("Stage 4 sleep|4", S.N3), ("REM sleep|5", S.REM),
             ("Unscored|9", S.UNSCORED), ("Movement|6", S.UNSCORED)],
    # integers are canonical codes (4 = REM, YASA's -2 = unscored); digit strings follow
    # R&K/NSRR numbering as written in those files ("4" = S4 -> N3, "5" = REM)
    "integers": [(0, S.W), (1, S.N1), (2, S.N2), (3, S.N3), (4, S.REM), ("4", S.N3),
                 ("5", S.REM), (-1, S.UNSCORED), (-2, S.UNSCORED), (np.int64(2), S.N2),
                 ("9", S.UNSCORED)],
}


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_parse_stage_families(family: str) -> None:
    for label, expected in FAMILIES[family]:
        assert parse_stage(label) is expected, label


@pytest.mark.parametrize("label", ["N4", "foo", "", "Stage 7 sleep|7", "Arousal", 7, "Lights off"])
def test_parse_stage_unknown_label_raises(label: object) -> None:
    with pytest.raises(ValueError, match="unknown sleep-stage label"):
        parse_stage(label)  # type: ignore[arg-type]


def test_stage_labels_and_class_names() -> None:
    assert CLASS_NAMES == ("W", "N1", "N2", "N3", "REM")
    assert [Stage(i).label for i in range(5)] == list(CLASS_NAMES)
    assert stages_to_labels(np.array([-1, 0, 4])) == ["UNS", "W", "REM"]
    # every written short label parses back to its stage
    assert all(parse_stage(s.label) is s for s in Stage)


def test_hypnogram_integer_codes_are_canonical_not_rk() -> None:
    # An integer array holds canonical codes (4 = REM); a *string* "4" is R&K stage 4 (N3).
    assert Hypnogram(np.array([0, 4])).stages.tolist() == [0, 4]
    assert Hypnogram(np.array(["W", "4"])).stages.tolist() == [0, 3]


def test_hypnogram_parses_labels() -> None:
    hyp = Hypnogram(np.array(["Sleep stage W", "N1", "Stage 2 sleep|2", "Sleep stage 4", "R", "?"]))
    assert hyp.stages.dtype == np.int8
    assert hyp.stages.tolist() == [0, 1, 2, 3, 4, -1]
    assert hyp.labels == ["W", "N1", "N2", "N3", "REM", "UNS"]


@pytest.mark.parametrize("codes", [[0, 5], [-2, 1], [9]])
def test_hypnogram_rejects_bad_codes(codes: list[int]) -> None:
    with pytest.raises(ValueError, match="invalid stage codes"):
        Hypnogram(np.array(codes))


def test_hypnogram_rejects_unknown_label() -> None:
    with pytest.raises(ValueError, match=r"unknown sleep-stage label .*N5"):
        Hypnogram(np.array(["W", "N5"]))


def test_hypnogram_rejects_bad_shapes_and_epoch() -> None:
    with pytest.raises(ValueError, match="1-D"):
        Hypnogram(np.zeros((2, 3), dtype=int))
    with pytest.raises(ValueError, match="epoch_s must be positive"):
        Hypnogram(np.zeros(3, dtype=int), epoch_s=0)
    with pytest.raises(ValueError, match=r"probabilities must have shape \(3, 5\)"):
        Hypnogram(np.zeros(3, dtype=int), probabilities=np.full((3, 4), 0.25))
    with pytest.raises(ValueError, match=r"probabilities must have shape \(3, 5\)"):
        Hypnogram(np.zeros(3, dtype=int), probabilities=np.full((2, 5), 0.2))
    ok = Hypnogram(np.zeros(3, dtype=int), probabilities=np.full((3, 5), 0.2))
    assert ok.probabilities is not None and ok.probabilities.dtype == np.float32
