"""Sleep statistics: hand-worked values, edge cases, YASA 0.8.1 on real nights, the stats CLI."""

from __future__ import annotations

import dataclasses
import json
import math
import warnings
from pathlib import Path

import numpy as np
import pytest

from edge_scorer import Hypnogram
from edge_scorer.cli import main
from edge_scorer.io.hypnogram_io import inbed_crop, read_hypnogram
from edge_scorer.stats.sleepstats import SleepStatistics, sleep_statistics

U, W, N1, N2, N3, R = -1, 0, 1, 2, 3, 4

# Hand-worked night, 16 epochs of 30 s (0.5 min each):
#   idx   0 1 2  3  4  5 6 7  8  9  10 11 12 13 14 15
#   stage W W N1 N2 N2 W U N2 N3 N3 R  R  W  N2 W  W
# sleep epochs 2,3,4,7,8,9,10,11,13 -> TST = 9 ep = 4.5 min; first sleep 2, last 13
# TIB = 16 ep = 8 min; SPT = epochs 2..13 = 12 ep = 6 min
# WASO = W in SPT (5, 12) = 2 ep = 1 min; SPT = TST 9 + WASO 2 + unscored 1 (epoch 6)
# SE = 4.5/8 = 56.25 %; SME = 4.5/6 = 75 %; SOL = 2 ep = 1 min
# first REM at 10 -> AASM REM latency = 10 - 2 = 8 ep = 4 min (YASA Lat_REM = 5 min)
# W total = epochs 0,1,5,12,14,15 = 3 min; N1 0.5, N2 (3,4,7,13) 2, N3 1, REM 1, NREM 3.5 min
# % of TST: N1 11.11, N2 44.44, N3 22.22, REM 22.22, NREM 77.78
# awakenings in SPT: bouts {5}, {12} -> 2 (both 30 s: 0 if only bouts >= 60 s count)
# sleep->W transitions: 4->5, 11->12, 13->14 = 3 -> SFI = 3 / (4.5/60 h) = 40 /h
# scored SPT sequence N1 N2 N2 W (U) N2 N3 N3 R R W N2 -> 7 stage shifts -> 93.33 /h
# persistent sleep: sleep runs 2-4 (3 ep), 7-11 (5 ep), 13 (1 ep): no 5-min run -> NaN;
#   1.5-min run (3 ep) starts at 2 -> 1 min; 2-min run (4 ep) starts at 7 -> 3.5 min
HAND = [W, W, N1, N2, N2, W, U, N2, N3, N3, R, R, W, N2, W, W]
HAND_EXPECTED = dict(
    epoch_s=30.0, n_epochs=16, tib_min=8.0, spt_min=6.0, tst_min=4.5, se_pct=56.25,
    sme_pct=75.0, sol_min=1.0, sol_persistent_min=math.nan, waso_min=1.0, rem_latency_min=4.0,
    w_min=3.0, n1_min=0.5, n2_min=2.0, n3_min=1.0, rem_min=1.0, nrem_min=3.5, unscored_min=0.5,
    n1_pct=100 / 9, n2_pct=400 / 9, n3_pct=200 / 9, rem_pct=200 / 9, nrem_pct=700 / 9,
    n_awakenings=2, sfi_per_h=40.0, n_stage_shifts=7, stage_shift_index_per_h=7 / 0.075,
)


def _stats(codes: list[int], epoch_s: float = 30.0, **kwargs: float) -> SleepStatistics:
    return sleep_statistics(Hypnogram(np.array(codes, dtype=np.int8), epoch_s), **kwargs)


def _assert_matches(stats: SleepStatistics, expected: dict[str, float]) -> None:
    got = stats.as_dict()
    assert set(got) == set(expected)
    for key, value in expected.items():
        if isinstance(value, float) and math.isnan(value):
            assert math.isnan(got[key]), key
        else:
            assert got[key] == pytest.approx(value, abs=1e-9), key


def test_hand_worked_night() -> None:
    stats = _stats(HAND)
    _assert_matches(stats, HAND_EXPECTED)
    assert isinstance(stats.n_awakenings, int) and isinstance(stats.n_stage_shifts, int)
    assert _stats(HAND, min_awakening_s=60).n_awakenings == 0
    assert _stats(HAND, persistent_sleep_min=1.5).sol_persistent_min == 1.0
    assert _stats(HAND, persistent_sleep_min=2.0).sol_persistent_min == 3.5
    assert Hypnogram(np.array(HAND, dtype=np.int8)).sleep_statistics() == stats
    with pytest.raises(dataclasses.FrozenInstanceError):
        stats.tst_min = 0.0  # type: ignore[misc]
    text = str(stats)
    assert "TST   total sleep time" in text and "4.5 min" in text
    assert "latency to persistent sleep" in text and "n/a" in text


def test_other_epoch_length_scales_minutes() -> None:
    # 20-s epochs: W N1 N2 N2 -> TIB 80 s, TST 60 s = 1 min, SOL 20 s
    stats = _stats([W, N1, N2, N2], epoch_s=20.0)
    assert (stats.tib_min, stats.tst_min, stats.sol_min) == pytest.approx((4 / 3, 1.0, 1 / 3))


def test_no_sleep_at_all() -> None:
    stats = _stats([W, W, U, W])
    assert (stats.tib_min, stats.tst_min, stats.spt_min, stats.se_pct) == (2.0, 0.0, 0.0, 0.0)
    for key in ("sol_min", "sol_persistent_min", "rem_latency_min", "waso_min", "sme_pct",
                "n1_pct", "rem_pct", "sfi_per_h", "stage_shift_index_per_h"):
        assert math.isnan(getattr(stats, key)), key
    assert stats.n_awakenings == 0 and stats.w_min == 1.5 and stats.unscored_min == 0.5
    assert "n/a" in str(stats)


def test_all_unscored() -> None:
    stats = _stats([U] * 6)
    assert stats.tib_min == 3.0 and stats.unscored_min == 3.0
    assert stats.tst_min == 0.0 and stats.w_min == 0.0 and math.isnan(stats.sol_min)


def test_sleep_at_first_epoch_and_no_rem() -> None:
    stats = _stats([N2, N2, R, W])
    assert stats.sol_min == 0.0 and stats.rem_latency_min == 1.0
    assert (stats.spt_min, stats.waso_min, stats.n_awakenings) == (1.5, 0.0, 0)
    no_rem = _stats([W, N1, N2, N3, W])
    assert no_rem.sol_min == 0.5 and math.isnan(no_rem.rem_latency_min)
    assert no_rem.rem_pct == 0.0


def test_empty_hypnogram_raises() -> None:
    with pytest.raises(ValueError, match="at least one epoch"):
        _stats([])


# ------------------------------------------------------------------ YASA 0.8.1
# Our field -> YASA's legacy yasa.sleep_statistics key (unrounded floats).
LEGACY = {"tib_min": "TIB", "spt_min": "SPT", "waso_min": "WASO", "tst_min": "TST",
          "n1_min": "N1", "n2_min": "N2", "n3_min": "N3", "rem_min": "REM", "nrem_min": "NREM",
          "sol_min": "SOL", "n1_pct": "%N1", "n2_pct": "%N2", "n3_pct": "%N3",
          "rem_pct": "%REM", "nrem_pct": "%NREM", "se_pct": "SE", "sme_pct": "SME"}
# Our field -> yasa.Hypnogram(...).sleep_statistics() key; that API rounds to 4 decimals.
HYPNOGRAM_API = {"w_min": "WAKE", "sol_persistent_min": "SOL_5min", "sfi_per_h": "SFI",
                 "unscored_min": "UNS"}
YASA_LABELS = {U: "UNS", W: "WAKE", N1: "N1", N2: "N2", N3: "N3", R: "REM"}


def _close(ours: float, theirs: float, tol: float) -> bool:
    if math.isnan(ours) or math.isnan(theirs):
        return math.isnan(ours) and math.isnan(theirs)
    return abs(ours - theirs) <= tol


def _compare_with_yasa(hyp: Hypnogram) -> None:
    yasa = pytest.importorskip("yasa")
    assert yasa.__version__ == "0.8.1", "relations below were checked against YASA 0.8.1"
    ours = sleep_statistics(hyp).as_dict()
    codes = hyp.stages.astype(int)  # YASA integer codes: -1 = Art (not sleep), 0..4 = ours
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)  # legacy function deprecated in 0.8
        legacy = yasa.sleep_statistics(codes, sf_hyp=1 / hyp.epoch_s)
    for field, key in LEGACY.items():
        assert _close(ours[field], legacy[key], 1e-6), (field, ours[field], legacy[key])
    # Definitional difference: YASA's Lat_REM is counted from lights-off, AASM (ours) from
    # sleep onset, so ours == Lat_REM - SOL exactly (both NaN without REM).
    assert _close(ours["rem_latency_min"], legacy["Lat_REM"] - legacy["SOL"], 1e-9)
    new = yasa.Hypnogram([YASA_LABELS[int(c)] for c in codes], n_stages=5,
                         freq=f"{hyp.epoch_s:g}s").sleep_statistics()
    for field, key in HYPNOGRAM_API.items():
        if key == "UNS" and key not in new:  # YASA reports UNS only when present
            assert ours[field] == 0.0
            continue
        assert _close(ours[field], float(new[key]), 5.1e-5), (field, ours[field], new[key])
    if "Lat_REM" in new:
        assert _close(ours["rem_latency_min"], float(new["Lat_REM"] - new["SOL"]), 1e-4)


@pytest.mark.parametrize("codes", [HAND, [N2, N2, R, W], [W, N1, N2, N3, W], [W, W, U, W],
                                   [W, N1, N2, N2, N2, N2, N2, N2, N2, N2, N2, N2, N2, W, R]])
def test_matches_yasa_on_small_hypnograms(codes: list[int]) -> None:
    _compare_with_yasa(Hypnogram(np.array(codes, dtype=np.int8)))


def test_matches_yasa_on_real_nights(shared_data: Path) -> None:
    files = sorted((shared_data / "hypnograms").glob("*-Hypnogram.edf"))
    assert len(files) == 16
    for path in files:
        _compare_with_yasa(inbed_crop(read_hypnogram(path)))


# ------------------------------------------------------------------ CLI
def test_cli_stats_real_hypnogram(shared_data: Path, capsys: pytest.CaptureFixture) -> None:
    path = shared_data / "hypnograms" / "SC4001EC-Hypnogram.edf"
    assert main(["stats", str(path), "--crop-inbed", "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    # nights.csv, SC4001 in-bed: W 188, N1 58, N2 250, N3 220, REM 125 epochs of 30 s
    assert data["tst_min"] == (58 + 250 + 220 + 125) / 2 and data["tib_min"] == 841 / 2
    assert data["onset_s"] == 28830 and data["cropped_inbed"] is True
    assert data["rem_latency_min"] == inbed_crop(read_hypnogram(path)).sleep_statistics(
    ).rem_latency_min
    assert main(["stats", str(path), "--crop-inbed"]) == 0
    out = capsys.readouterr().out
    assert "(in-bed crop)" in out and "326.5 min" in out and "TST" in out


def test_cli_stats_own_file(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    path = Hypnogram(np.array([W, W, N1, N2, N3, N2, W], dtype=np.int8)).write(tmp_path / "h.tsv")
    assert main(["stats", str(path), "--json"]) == 0
    data = json.loads(capsys.readouterr().out)
    assert data["tst_min"] == 2.0 and data["sol_min"] == 1.0 and data["n_epochs"] == 7
    assert data["rem_latency_min"] is None  # NaN -> JSON null
    assert main(["stats", str(path)]) == 0
    assert "n/a" in capsys.readouterr().out


def test_cli_stats_bad_files(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("stage\nW\nfoo\n")
    assert main(["stats", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "cannot compute statistics" in err and "line 3" in err and "'foo'" in err
    assert main(["stats", str(tmp_path / "missing.edf")]) == 2
    assert "not found" in capsys.readouterr().err
    awake = Hypnogram(np.zeros(4, dtype=np.int8)).write(tmp_path / "awake.csv")
    assert main(["stats", str(awake), "--crop-inbed"]) == 2
    assert "no sleep epoch" in capsys.readouterr().err
