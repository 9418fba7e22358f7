"""Hypnogram readers/writers: round trips for every format, real Sleep-EDF files, errors."""

from __future__ import annotations

import csv
import warnings
import xml.etree.ElementTree as ET
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from edge_scorer import Hypnogram
from edge_scorer.io.edf_writer import write_edf
from edge_scorer.io.hypnogram_io import (
    inbed_crop,
    pair_sleep_edf,
    read_hypnogram,
    write_hypnogram,
    write_nsrr_xml,
)

STAGE_COLS = {"W": 0, "N1": 1, "N2": 2, "N3": 3, "REM": 4}
# every stage, runs of several epochs and single epochs, UNSCORED inside and at the end
CODES = np.array([0, 0, 1, 2, 2, 2, 3, 3, -1, 2, 4, 4, 0, 1, 2, 4, 0, -1, -1], dtype=np.int8)
START = datetime(1989, 4, 24, 16, 13, 0)


def _read_mne_annotations(path: Path):
    import mne

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return mne.read_annotations(path)


@pytest.fixture
def hyp() -> Hypnogram:
    rng = np.random.default_rng(0)
    proba = rng.dirichlet(np.ones(5), size=len(CODES)).astype(np.float32)
    return Hypnogram(CODES.copy(), 30.0, 90.0, START, proba)


# ------------------------------------------------------------------ round trips
@pytest.mark.parametrize("name", ["night.csv", "night.tsv"])
def test_table_round_trip(tmp_path: Path, hyp: Hypnogram, name: str) -> None:
    path = hyp.write(tmp_path / name)
    lines = path.read_text().splitlines()
    sep = "\t" if name.endswith(".tsv") else ","
    assert lines[0].split(sep) == ["epoch", "onset_s", "duration_s", "stage", "p_W", "p_N1",
                                   "p_N2", "p_N3", "p_REM", "clock_time"]
    assert lines[1].split(sep)[:4] == ["0", "90", "30", "W"]
    back = Hypnogram.read(path)
    assert back == hyp
    assert back.start_time == START
    assert back.meta["format"] == name[-3:]
    np.testing.assert_allclose(back.probabilities, hyp.probabilities, rtol=1e-5, atol=1e-6)


def test_csv_without_probabilities_or_time(tmp_path: Path) -> None:
    plain = Hypnogram(CODES.copy(), 20.0)
    path = write_hypnogram(plain, tmp_path / "x.csv")
    assert path.read_text().splitlines()[0] == "epoch,onset_s,duration_s,stage"
    back = read_hypnogram(path, epoch_s=20.0)
    assert back == plain and back.probabilities is None and back.start_time is None


def test_bids_events_round_trip(tmp_path: Path, hyp: Hypnogram) -> None:
    path = write_hypnogram(hyp, tmp_path / "sub-01_task-sleep_events.tsv")
    rows = list(csv.DictReader(path.open(), delimiter="\t"))
    assert list(rows[0]) == ["onset", "duration", "trial_type", "value"]
    assert rows[6] == {"onset": "270", "duration": "30", "trial_type": "N3", "value": "3"}
    assert rows[10]["trial_type"] == "REM" and rows[10]["value"] == "4"
    back = read_hypnogram(path)
    assert back == hyp and back.meta["format"] == "bids"
    # the integer value column alone is read as canonical codes (4 = REM)
    only_value = tmp_path / "v_events.tsv"
    only_value.write_text("\n".join("\t".join([r["onset"], r["duration"], r["value"]])
                                    for r in [{"onset": "onset", "duration": "duration",
                                               "value": "value"}, *rows]))
    assert read_hypnogram(only_value) == hyp


def test_edf_round_trip_looks_like_physionet(tmp_path: Path, hyp: Hypnogram) -> None:
    path = write_hypnogram(hyp, tmp_path / "SIM0001EC-Hypnogram.edf")
    ann = _read_mne_annotations(path)
    # consecutive equal stages are merged into one annotation, labels in Sleep-EDF style
    assert list(ann.description[:6]) == ["Sleep stage W", "Sleep stage 1", "Sleep stage 2",
                                        "Sleep stage 3", "Sleep stage ?", "Sleep stage 2"]
    assert ann.onset[:4].tolist() == [90, 150, 180, 270]
    assert ann.duration[:4].tolist() == [60, 30, 90, 60]
    assert len(ann) == len(np.flatnonzero(np.diff(CODES))) + 1
    assert path.read_bytes()[192:197] == b"EDF+C"
    back = read_hypnogram(path)
    assert back == hyp and back.start_time == START and back.probabilities is None


def test_nsrr_xml_round_trip(tmp_path: Path, hyp: Hypnogram) -> None:
    path = write_nsrr_xml(hyp, tmp_path / "shhs1-200001-nsrr.xml")
    root = ET.parse(path).getroot()
    assert root.tag == "PSGAnnotation" and root.findtext("EpochLength") == "30"
    events = root.findall("ScoredEvents/ScoredEvent")
    assert events[0].findtext("EventConcept") == "Recording Start Time"
    assert events[0].findtext("ClockTime") == "00.00.00 16.13.00"
    stages = [e for e in events if e.findtext("EventType") == "Stages|Stages"]
    assert [e.findtext("EventConcept") for e in stages[:6]] == [
        "Wake|0", "Stage 1 sleep|1", "Stage 2 sleep|2", "Stage 3 sleep|3", "Unscored|9",
        "Stage 2 sleep|2"]
    assert stages[6].findtext("EventConcept") == "REM sleep|5"
    assert (stages[0].findtext("Start"), stages[0].findtext("Duration")) == ("90.0", "60.0")
    back = read_hypnogram(path)
    assert back == hyp and back.meta["clock_time"] == "16:13:00"
    assert write_hypnogram(hyp, tmp_path / "again.xml").read_bytes() == path.read_bytes()


# ------------------------------------------------------------------ tolerant reading
def test_nsrr_ignores_other_events_and_fills_gaps(tmp_path: Path) -> None:
    def event(etype: str, concept: str, start: float, dur: float) -> str:
        return (f"<ScoredEvent><EventType>{etype}</EventType><EventConcept>{concept}"
                f"</EventConcept><Start>{start}</Start><Duration>{dur}</Duration></ScoredEvent>")

    body = "".join([
        event("", "Recording Start Time", 0, 300),
        event("Stages|Stages", "Wake|0", 0, 60),
        event("Arousals|Arousals", "Arousal|Arousal ()", 31.5, 4.2),
        event("Stages|Stages", "Stage 4 sleep|4", 90, 90),   # gap 60-90 s -> unscored
        event("Stages|Stages", "REM sleep|5", 180, 30),
    ])
    path = tmp_path / "m.xml"
    path.write_text(f'<?xml version="1.0"?><PSGAnnotation><ScoredEvents>{body}'
                    "</ScoredEvents></PSGAnnotation>")
    assert read_hypnogram(path).stages.tolist() == [0, 0, -1, 3, 3, 3, 4]


def test_real_inbed_csv_gap_and_one_column_files(tmp_path: Path) -> None:
    shared_like = tmp_path / "X_inbed_hypnogram.csv"
    # 600 W, 630-690 N2 (one 60-s row -> 2 epochs), 690-750 gap -> unscored, 750 REM
    shared_like.write_text("onset_s,duration_s,stage\n600,30,W\n630,60,N2\n750,30,REM\n")
    h = read_hypnogram(shared_like)
    assert h.onset_s == 600 and h.stages.tolist() == [0, 2, 2, -1, -1, 4]
    partial = tmp_path / "partial.csv"  # the recording ends inside the last epoch: dropped
    partial.write_text("onset_s,duration_s,stage\n0,30,W\n30,75,N1\n")
    assert read_hypnogram(partial).stages.tolist() == [0, 1, 1]
    labels = tmp_path / "labels.txt"
    labels.write_text("Sleep stage W\nN1\nStage 2 sleep|2\n\nS4\nR\n?\n")
    assert read_hypnogram(labels).stages.tolist() == [0, 1, 2, 3, 4, -1]
    canonical = tmp_path / "codes.txt"
    canonical.write_text("0\n1\n2\n3\n4\n-1\n")  # canonical codes: 4 = REM
    assert read_hypnogram(canonical).stages.tolist() == [0, 1, 2, 3, 4, -1]
    rk = tmp_path / "rk_codes.txt"
    rk.write_text("0\n1\n2\n3\n4\n5\n9\n")  # a 5 present: R&K/NSRR numbering, 4 -> N3
    assert read_hypnogram(rk).stages.tolist() == [0, 1, 2, 3, 3, 4, -1]
    header_only_stage = tmp_path / "s.csv"
    header_only_stage.write_text("Stage\nW\nN3\n")
    assert read_hypnogram(header_only_stage).stages.tolist() == [0, 3]


# ------------------------------------------------------------------ errors
def test_unknown_label_error_names_file_line_and_label(tmp_path: Path) -> None:
    path = tmp_path / "bad.csv"
    path.write_text("stage\nW\nN4\n")
    with pytest.raises(ValueError, match=r"bad\.csv, line 3.*'N4'"):
        read_hypnogram(path)
    edf = write_edf(tmp_path / "bad.edf", [], annotations=[(0, 30, "Sleep stage W"),
                                                           (30, 30, "Lights off")])
    with pytest.raises(ValueError, match=r"bad\.edf, annotation 1 .*'Lights off'"):
        read_hypnogram(edf)
    xml = tmp_path / "bad.xml"
    xml.write_text("<PSGAnnotation><ScoredEvents><ScoredEvent><EventType>Stages|Stages"
                   "</EventType><EventConcept>Stage 7 sleep|7</EventConcept><Start>0</Start>"
                   "<Duration>30</Duration></ScoredEvent></ScoredEvents></PSGAnnotation>")
    with pytest.raises(ValueError, match=r"bad\.xml, ScoredEvent 0 .*Stage 7 sleep"):
        read_hypnogram(xml)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("onset_s,duration_s,stage\n0,30,W\n45,30,N1\n", "not aligned to the 30-s epoch grid"),
        ("onset_s,duration_s,stage\n0,45,W\n45,30,N1\n", "not a multiple of the 30-s epoch"),
        ("onset_s,duration_s,stage\n0,60,W\n30,30,N1\n", "overlaps"),
        ("onset_s,stage\n0,W\n,N1\n", "some onsets are missing"),
        ("onset_s,duration_s,stage\n0,0,W\n", "a stage needs a positive one"),
        ("a,b\n1,2\n", "no stage column"),
        ("0,30,W\n", "no header"),
        ("", "empty file"),
    ],
)
def test_table_errors(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "h.csv"
    path.write_text(text)
    with pytest.raises(ValueError, match=message):
        read_hypnogram(path)


def test_other_errors(tmp_path: Path, hyp: Hypnogram) -> None:
    with pytest.raises(FileNotFoundError):
        read_hypnogram(tmp_path / "missing.edf")
    with pytest.raises(ValueError, match="cannot choose a hypnogram format"):
        write_hypnogram(hyp, tmp_path / "night.json")
    binary = tmp_path / "b.dat"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(ValueError, match="not a text hypnogram file"):
        read_hypnogram(binary)
    not_edf = tmp_path / "fake.edf"
    not_edf.write_text("hello")
    with pytest.raises(ValueError, match="not an EDF"):
        read_hypnogram(not_edf)
    # onsets the EDF writer cannot store exactly are refused, not silently rounded
    far = Hypnogram(np.zeros(2, dtype=np.int8), onset_s=123456.25)
    with pytest.raises(ValueError, match="cannot be stored exactly"):
        write_hypnogram(far, tmp_path / "far.edf")


# ------------------------------------------------------------------ Sleep-EDF helpers
def test_pair_sleep_edf(tmp_path: Path) -> None:
    for name in ["SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf", "SC4002E0-PSG.edf",
                 "SC4002EC-Hypnogram.edf", "SC4011E0-PSG.edf", "ST7011J0-PSG.edf",
                 "ST7011JP-Hypnogram.edf", "SIM0003EC-Hypnogram.edf", "notes.txt"]:
        (tmp_path / name).write_bytes(b"")
    pairs = pair_sleep_edf(tmp_path)
    assert [(p.name, h.name) for p, h in pairs] == [
        ("SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf"),
        ("SC4002E0-PSG.edf", "SC4002EC-Hypnogram.edf"),
        ("ST7011J0-PSG.edf", "ST7011JP-Hypnogram.edf"),
    ]
    (tmp_path / "SC4001EH-Hypnogram.edf").write_bytes(b"")
    with pytest.raises(ValueError, match="keep one file per night"):
        pair_sleep_edf(tmp_path)


def test_inbed_crop_synthetic() -> None:
    # 100 W, 10 N2, 20 W, 10 REM, 70 W, 30 unscored tail (1 epoch = 30 s, margin 60 epochs)
    codes = np.r_[[0] * 100, [2] * 10, [0] * 20, [4] * 10, [0] * 70, [-1] * 30]
    hyp = Hypnogram(codes.astype(np.int8), onset_s=0.0)
    crop = inbed_crop(hyp)
    assert crop.onset_s == 40 * 30                  # 60 epochs before first sleep (epoch 100)
    assert crop.n_epochs == (140 + 60) - 40         # to 60 epochs after the last (epoch 139)
    short = inbed_crop(hyp, margin_s=3600)          # clipped at start and at the last scored
    assert short.onset_s == 0 and short.n_epochs == 210
    with pytest.raises(ValueError, match="no sleep epoch"):
        inbed_crop(Hypnogram(np.zeros(5, dtype=np.int8)))


def test_real_sleep_edf_hypnograms_match_nights_table(shared_data: Path) -> None:
    """All 16 real hypnograms: reader + in-bed crop == README table == shared in-bed CSVs."""
    nights = list(csv.DictReader((shared_data / "nights.csv").open()))
    assert len(nights) == 16
    for row in nights:
        full = read_hypnogram(shared_data / "hypnograms" / row["hypnogram_file"])
        assert full.n_epochs == 2880 and full.onset_s == 0        # 24 h incl. the "?" tail
        full_counts = [int(row[f"full_{k}"]) for k in ("W", "N1", "N2", "N3", "REM")]
        assert [int(np.sum(full.stages == c)) for c in range(5)] == full_counts
        assert np.sum(full.stages == -1) == int(row["full_MOVE"]) + int(row["full_UNK"])
        crop = inbed_crop(full)
        assert crop.onset_s == float(row["crop_start_s"])
        assert crop.onset_s + crop.duration_s == float(row["crop_end_s"])
        counts = [int(np.sum(crop.stages == c)) for c in range(5)]
        assert counts == [int(row[f"inbed_{k}"]) for k in ("W", "N1", "N2", "N3", "REM")]
        assert np.sum(crop.stages == -1) == int(row["inbed_MOVE"]) + int(row["inbed_UNK"])
        table = read_hypnogram(shared_data / "hypnograms" / f"{row['night']}_inbed_hypnogram.csv")
        assert table == crop


def test_real_hypnogram_start_time_and_edf_round_trip(shared_data: Path, tmp_path: Path) -> None:
    src = shared_data / "hypnograms" / "SC4002EC-Hypnogram.edf"
    real = read_hypnogram(src)
    assert real.start_time == datetime(1989, 4, 25, 14, 50, 0)
    assert real.meta == {"source": str(src), "format": "edf"}
    back = read_hypnogram(write_hypnogram(real, tmp_path / "SC4002EC-Hypnogram.edf"))
    assert back == real and back.start_time == real.start_time
    # same annotations as PhysioNet's once R&K 4 -> "Sleep stage 3", movement -> "?" and the
    # neighbours that then become equal are merged
    ours = _read_mne_annotations(tmp_path / "SC4002EC-Hypnogram.edf")
    theirs = _read_mne_annotations(src)
    relabel = {"Sleep stage 4": "Sleep stage 3", "Movement time": "Sleep stage ?"}
    merged: list[list] = []
    for on, du, desc in zip(theirs.onset, theirs.duration, theirs.description):
        desc = relabel.get(desc, desc)
        if merged and merged[-1][2] == desc and merged[-1][0] + merged[-1][1] == on:
            merged[-1][1] += du
        else:
            merged.append([on, du, desc])
    assert [[float(a), float(b), str(c)] for a, b, c in
            zip(ours.onset, ours.duration, ours.description)] == merged
    excerpt = read_hypnogram(shared_data / "psg_excerpt" / "SC4001E0-PSG_first300s_hypnogram.csv")
    assert excerpt.stages.tolist() == [0] * 10 and excerpt.onset_s == 0


def test_psg_edf_without_annotations_is_refused(psg_excerpt: Path) -> None:
    with pytest.raises(ValueError, match=r"no annotations; .*\*-Hypnogram\.edf"):
        read_hypnogram(psg_excerpt)
