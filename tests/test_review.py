"""The technician's review without Qt: stage edits, the audit log saved with the night, reopening,
sign-off writing the reviewed hypnogram in every format (read back by MNE, an XML parser and our
readers) and the agreement report; on a real scored night (a simulated night scored by the
engine with ONNX Runtime)."""

from __future__ import annotations

import csv
import json
import shutil
from datetime import datetime, timedelta
from xml.etree import ElementTree

import numpy as np
import pytest

from edge_scorer.engine.review import (
    AUDIT_COLUMNS,
    SIGNED_FILES,
    NightReview,
    ReviewError,
    epoch_log_updates,
)
from edge_scorer.engine.sinks import read_epoch_log
from edge_scorer.io.hypnogram_io import read_hypnogram
from edge_scorer.stages import Stage
from edge_scorer.stats.hypnogram import Hypnogram

SIM_NIGHT = (0.1, 5)  # 12 epochs


@pytest.fixture(scope="module")
def scored(sim_night, tmp_path_factory, model):
    """A simulated night scored by the engine: its output folder."""
    from edge_scorer.engine.offline import score_file

    out = tmp_path_factory.mktemp("scored")
    score_file(sim_night[0], model, out, progress=False)
    return out


@pytest.fixture
def night(scored, tmp_path):
    """A fresh copy of the scored night for one test."""
    return shutil.copytree(scored, tmp_path / "night")


def read_audit(folder) -> list[dict]:
    with open(folder / "review" / "audit.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert rows and tuple(rows[0]) == AUDIT_COLUMNS
    return rows


def test_edit_save_reopen_sign_off(night):
    review = NightReview.open(night)
    auto = read_hypnogram(night / "hypnogram.csv")
    np.testing.assert_array_equal(review.automatic, auto.stages)
    assert review.n_epochs == 12 and review.start_time == auto.start_time is not None
    # a change the model disagrees with, unscorable, a note alone, a change of a change
    first = "N3" if auto.stages[2] != Stage.N3 else "REM"
    review.set_stage(2, first, note="  slow waves  ")
    review.set_stage(5, "U")
    review.add_note(7, "arousal at 10 s")
    review.set_stage(5, 2)
    rows = read_audit(night)                       # saved after every change
    assert [r["epoch"] for r in rows] == ["2", "5", "7", "5"]
    assert [r["action"] for r in rows] == ["stage", "stage", "note", "stage"]
    assert rows[0]["note"] == "slow waves" and rows[0]["edited"] == first
    assert rows[0]["automatic"] == Stage(int(auto.stages[2])).label
    assert rows[1]["edited"] == "UNS" and rows[3]["previous"] == "UNS"
    assert rows[3]["edited"] == "N2" and rows[2]["edited"] == rows[2]["previous"]
    assert all(r["automatic_status"] == "final" for r in rows)
    assert datetime.fromisoformat(rows[0]["clock_time"]) == auto.start_time + timedelta(
        seconds=60)
    assert datetime.fromisoformat(rows[0]["time"]).tzinfo is not None
    state = json.loads((night / "review" / "review.json").read_text())
    assert state["state"] == "in progress" and state["n_changes"] == 4
    assert state["n_edited_epochs"] == 2

    reopened = NightReview.open(night)
    assert reopened.edits == {2: int(Stage[first]), 5: int(Stage.N2)}
    assert len(reopened.audit) == 4 and reopened.audit[2].note == "arousal at 10 s"
    assert 7 not in reopened.edits                 # a note changes no stage

    with pytest.raises(ReviewError, match="scorer's name"):
        reopened.sign_off("  ")
    files = reopened.sign_off("A. Scorer")
    names = {p.name for p in files}
    assert set(SIGNED_FILES.values()) | {"agreement.json", "agreement.txt"} <= names
    expected = auto.stages.copy()
    expected[2], expected[5] = int(Stage[first]), int(Stage.N2)
    out = night / "review"
    for name in SIGNED_FILES.values():              # every format reads back the same night
        back = read_hypnogram(out / name)
        np.testing.assert_array_equal(back.stages, expected, err_msg=name)
    assert read_hypnogram(out / "reviewed_hypnogram.csv").start_time == auto.start_time
    mne = pytest.importorskip("mne")
    ann = mne.read_annotations(out / "reviewed_hypnogram.edf")
    assert ann.duration.sum() == pytest.approx(12 * 30.0)
    assert all(d.startswith("Sleep stage") for d in ann.description)
    root = ElementTree.parse(out / "reviewed_hypnogram.xml").getroot()
    stages = [e.findtext("EventConcept") for e in root.iter("ScoredEvent")
              if e.findtext("EventType") == "Stages|Stages"]
    assert len(stages) >= 2
    report = json.loads((out / "agreement.json").read_text())
    assert report["n_changed_epochs"] == int(np.sum(expected != auto.stages))
    assert report["scorer"] == "A. Scorer" and report["agreement"]["n"] == 12
    assert report["stage_minutes"]["N2"]["reviewed"] == pytest.approx(
        np.sum(expected == Stage.N2) * 0.5)
    assert "Cohen's kappa" in (out / "agreement.txt").read_text()
    state = json.loads((out / "review.json").read_text())
    assert state["state"] == "signed off" and state["signed_off"]["by"] == "A. Scorer"

    # a change after the sign-off: the review is in progress again, the old sign-off kept
    again = NightReview.open(night)
    assert again.scorer == "A. Scorer"
    again.set_stage(0, "W")
    state = json.loads((out / "review.json").read_text())
    assert state["state"] == "in progress" and state["previous_sign_off"]["by"] == "A. Scorer"


def test_refusals(night, tmp_path):
    hyp = Hypnogram(np.array([0, 1, 2, 2], np.int8))
    with pytest.raises(ReviewError, match="outside the night"):
        NightReview(hyp).set_stage(4, "W")
    with pytest.raises(ValueError, match="unknown"):
        NightReview(hyp).set_stage(1, "X9")
    with pytest.raises(ReviewError, match="no folder"):
        NightReview(hyp, scorer="AB").sign_off()
    live = NightReview(hyp, tmp_path / "live", scorer="AB", final=np.array([1, 1, 0, 0], bool))
    live.set_stage(3, "N3")
    assert live.audit[0].automatic_status == "provisional"
    with pytest.raises(ReviewError, match="still being scored"):
        live.sign_off()
    with pytest.raises(ReviewError, match="cannot shrink"):
        live.update_automatic(np.zeros(2, np.int8))
    live.update_automatic(np.array([0, 1, 2, 2, 4], np.int8), np.ones(5, bool))
    assert live.reviewed_stages().tolist() == [0, 1, 2, 3, 4] and live.sign_off()
    with pytest.raises(ReviewError, match="no scored night"):
        NightReview.open(tmp_path)
    # an audit log of another (longer) night
    review = NightReview.open(night)
    review.set_stage(3, "W")
    text = (night / "review" / "audit.csv").read_text().replace("\n3,", "\n40,")
    (night / "review" / "audit.csv").write_text(text)
    with pytest.raises(ReviewError, match="belongs to another night"):
        NightReview.open(night)
    (night / "review" / "audit.csv").write_text("epoch,stage\n1,W\n")
    with pytest.raises(ReviewError, match="not an edge-scorer audit log"):
        NightReview.open(night)


def test_a_review_folder_belongs_to_its_run(night):
    """A new run into the folder refuses it (or, with --overwrite, removes the old review)."""
    from edge_scorer.io.outputs import OutputExists, prepare_output_dir

    NightReview.open(night).set_stage(0, "W")
    for name in ("epochs.csv", "hypnogram.csv", "hypnogram.edf", "stats.json", "stats.txt",
                 "run.json"):
        (night / name).unlink()
    with pytest.raises(OutputExists, match="review"):
        prepare_output_dir(night)
    prepare_output_dir(night, overwrite=True)
    assert not (night / "review").exists()


def test_night_scored_again_is_reported(night):
    review = NightReview.open(night)
    review.set_stage(4, "N1")
    path = night / "review" / "audit.csv"
    rows = list(csv.reader(path.open()))
    auto = rows[1][AUDIT_COLUMNS.index("automatic")]
    rows[1][AUDIT_COLUMNS.index("automatic")] = "REM" if auto != "REM" else "W"
    with open(path, "w", newline="") as fh:
        csv.writer(fh, lineterminator="\n").writerows(rows)
    again = NightReview.open(night)
    assert again.stage(4) == int(Stage.N1)
    assert any("scored again" in w for w in again.warnings)


def test_epoch_log_updates_rebuild_the_night(night):
    updates = list(epoch_log_updates(night / "epochs.csv"))
    hyp, info = read_epoch_log(night / "epochs.csv")
    last = {u.index: u for u in updates}
    assert len(updates) > hyp.n_epochs                      # provisional, revised and final rows
    np.testing.assert_array_equal([last[i].stage for i in range(hyp.n_epochs)], hyp.stages)
    np.testing.assert_allclose(np.stack([last[i].proba for i in range(hyp.n_epochs)]),
                               hyp.probabilities, atol=1e-6)
    assert {u.status for u in updates} == {"provisional", "revised", "final"}
    assert updates[0].latency_s is not None and updates[0].latency_s > 0
    (night / "bad.csv").write_text("a,b\n1,2\n")
    with pytest.raises(ReviewError, match="not an edge-scorer epoch log"):
        list(epoch_log_updates(night / "bad.csv"))
