"""``python -m training.calibrate`` on scratch copies of the shipped models and an epoch cache of
simulated nights, and the unfamiliar-signal flag through every output: ``score`` (epochs.csv,
hypnogram.csv, stats.json, run.json, the printed summary), the LSL stage outlet and the window.
"""

from __future__ import annotations

import csv
import json
import uuid

import numpy as np
import pytest

pytest.importorskip("onnx")
pytest.importorskip("scipy")

from conftest import uncalibrated_models  # noqa: E402

from edge_scorer.inference.scorer import ScoringModel  # noqa: E402
from edge_scorer.simulate import simulate_night, write_night  # noqa: E402
from edge_scorer.stats.hypnogram import Hypnogram  # noqa: E402
from export import read_metadata  # noqa: E402
from training.calibrate import main as calibrate_main  # noqa: E402
from training.dataset import build_cache, nights_from_folder  # noqa: E402
from training.splits import save_split  # noqa: E402

# 39 epochs per night: wake, every sleep stage, wake
STAGES = [0] * 6 + [1] * 3 + [2] * 10 + [3] * 6 + [4] * 6 + [2] * 4 + [0] * 4
QUANTILE = 0.5  # half of the validation epochs above the threshold: the flag surely fires


@pytest.fixture(scope="module")
def calibrated(tmp_path_factory):
    """Three simulated nights (subjects 001 train, 002 validation, 003 test) in an epoch cache,
    the shipped models copied with their weights but without their calibration, calibrated by
    the command line."""
    root = tmp_path_factory.mktemp("calibrate")
    for subject in (1, 2, 3):
        night = simulate_night(Hypnogram(np.array(STAGES, np.int8)), seed=subject,
                               subject=subject)
        write_night(night, root / "nights")
    save_split({"train": ["001"], "val": ["002"], "test": ["003"]}, root / "split.json")
    build_cache(nights_from_folder(root / "nights"), "sleep-edf", root / "cache",
                trim_wake_min=None)
    models = uncalibrated_models(root / "models")
    before = {k: read_metadata(models / k) for k in ("intra.onnx", "inter.onnx")}
    assert calibrate_main([str(models), "--cache", str(root / "cache"), "--split",
                           str(root / "split.json"), "--quantile", str(QUANTILE)]) == 0
    psg = next((root / "nights").glob("SIM003*-PSG.edf"))
    return {"root": root, "models": models, "before": before, "psg": psg,
            "report": json.loads((models / "calibration.json").read_text())}


def _load(models) -> ScoringModel:
    return ScoringModel.load(models / "intra.onnx", models / "inter.onnx")


def test_calibration_report_and_metadata(calibrated):
    rep, models = calibrated["report"], calibrated["models"]
    assert rep["quantile"] == QUANTILE and rep["threshold"] > 0
    assert rep["temperature"] == rep["temperature_inter"] and 0.05 <= rep["temperature"] <= 20
    assert rep["val"]["nights"] == ["SIM0021E0"] and rep["test"]["nights"] == ["SIM0031E0"]
    assert rep["train"]["n_epochs"] == len(STAGES) and rep["train"]["n_nights"] == 1
    # the threshold is the validation median: about half of the validation epochs are flagged
    assert 0.4 <= rep["val"]["unfamiliar_fraction"] <= 0.5
    assert rep["val"]["nll_after"] <= rep["val"]["nll_before"]  # fitted there
    for part in ("val", "test"):
        for key in ("ece_before", "ece_after", "nll_before", "nll_after"):
            assert rep[part][key] is not None and rep[part][key] >= 0
    # the metadata: new keys stamped, every other key kept
    for name, new in (("intra.onnx", {"familiarity", "temperature"}),
                      ("inter.onnx", {"temperature"})):
        meta, old = read_metadata(models / name), calibrated["before"][name]
        assert set(meta) == set(old) | new
        assert {k: meta[k] for k in old} == old
    model = _load(models)
    assert model.familiarity is not None and model.familiarity.threshold == rep["threshold"]
    assert model.temperature == rep["temperature"]
    assert model.intra_temperature == rep["temperature_intra"]
    pytest.importorskip("torch")
    from training.checkpoint import load_beside_onnx

    for name in ("intra.onnx", "inter.onnx"):
        load_beside_onnx(models / name)  # the weights beside the stamped models still match


def test_recalibrating_fits_the_raw_outputs_again(calibrated, tmp_path):
    """A calibrated model calibrated again gets the same numbers (raw logits are fitted)."""
    from training.calibrate import calibrate

    root, models = calibrated["root"], calibrated["models"]
    again = calibrate(models, root / "cache", root / "split.json", quantile=QUANTILE,
                      write=False)
    assert again["temperature"] == calibrated["report"]["temperature"]
    assert again["threshold"] == pytest.approx(calibrated["report"]["threshold"], rel=1e-6)
    with pytest.raises(ValueError, match="validation night"):
        calibrate(models, root / "cache", {"train": ["001"], "val": [], "test": ["003"]},
                  write=False)


def test_score_writes_the_flag_everywhere(calibrated, tmp_path, capsys):
    from edge_scorer.cli import main
    from edge_scorer.dsp.render_night import render_night
    from edge_scorer.engine.sinks import LOG_COLUMNS, read_epoch_log

    models, psg = calibrated["models"], calibrated["psg"]
    out = tmp_path / "scored"
    assert main(["score", str(psg), "-o", str(out), "--intra", str(models / "intra.onnx"),
                 "--inter", str(models / "inter.onnx"), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    # the epoch log: the distance of every epoch, computed here independently
    model = _load(models)
    _, feats = model.epoch_outputs(render_night(psg, model.spec).images)
    dist = model.familiarity.distance(feats)
    flags = dist > model.familiarity.threshold
    assert flags.any() and not flags.all()
    with open(out / "epochs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert tuple(rows[0]) == LOG_COLUMNS
    logged = {int(r["epoch"]): (float(r["familiarity"]), r["unfamiliar"]) for r in rows}
    np.testing.assert_allclose([logged[i][0] for i in range(len(dist))], dist, atol=1e-3)
    assert [logged[i][1] for i in range(len(dist))] == [str(int(f)) for f in flags]
    _, info = read_epoch_log(out / "epochs.csv")
    np.testing.assert_array_equal(info["unfamiliar"], flags)
    # hypnogram.csv, stats.json, run.json
    with open(out / "hypnogram.csv", newline="") as fh:
        hyp_rows = list(csv.DictReader(fh))
    assert [r["unfamiliar"] for r in hyp_rows] == [str(int(f)) for f in flags]
    from edge_scorer.io.hypnogram_io import read_hypnogram

    assert read_hypnogram(out / "hypnogram.csv").n_epochs == len(flags)  # still readable
    stats = json.loads((out / "stats.json").read_text())
    assert stats["unfamiliar_epochs"] == int(flags.sum())
    assert stats["unfamiliar_fraction"] == pytest.approx(flags.mean())
    run = json.loads((out / "run.json").read_text())
    assert run["familiarity"]["available"] and run["familiarity"]["n_unfamiliar"] == flags.sum()
    assert run["temperature"]["inter"] == calibrated["report"]["temperature"]
    # the printed summary: the count, a warning, and markers under the flagged epochs
    k, n = int(flags.sum()), len(flags)
    assert f"unfamiliar-signal flag: {k} of {n} epochs ({100 * k / n:.0f} %)" in printed
    assert "warning:" in printed and "review" in printed
    marks = next(line for line in printed.splitlines() if set(line) <= {" ", "^"} and "^" in line)
    assert [i for i, c in enumerate(marks) if c == "^"] == np.flatnonzero(flags).tolist()


def test_a_model_without_statistics_scores_with_the_flag_off(model, calibrated, tmp_path,
                                                             capsys):
    from edge_scorer.cli import main
    from edge_scorer.engine.sinks import read_epoch_log

    out = tmp_path / "plain"
    plain = uncalibrated_models(tmp_path / "uncalibrated")
    assert main(["score", str(calibrated["psg"]), "-o", str(out), "--no-progress",
                 "--intra", str(plain / "intra.onnx"), "--inter", str(plain / "inter.onnx")]) == 0
    printed = capsys.readouterr().out
    assert "unfamiliar-signal flag: off" in printed and "warning" not in printed
    with open(out / "epochs.csv", newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert {r["familiarity"] for r in rows} == {""} and {r["unfamiliar"] for r in rows} == {"0"}
    _, info = read_epoch_log(out / "epochs.csv")
    assert np.isnan(info["familiarity"]).all() and not info["unfamiliar"].any()
    stats = json.loads((out / "stats.json").read_text())
    assert stats["unfamiliar_epochs"] == 0 and stats["unfamiliar_fraction"] is None
    assert json.loads((out / "run.json").read_text())["familiarity"]["available"] is False


def test_the_lsl_stage_outlet_carries_the_flag(calibrated, tmp_path):
    import pylsl

    from edge_scorer.engine.sinks import STAGE_CHANNELS, read_epoch_log
    from edge_scorer.stream.inlet import resolve_stream
    from edge_scorer.stream.live import LiveScorer
    from edge_scorer.stream.replay import Replayer

    model = _load(calibrated["models"])
    name = f"test-calibrate-{uuid.uuid4().hex[:10]}"
    out = tmp_path / "live"
    samples: list[list[float]] = []
    with Replayer(calibrated["psg"], model.spec, name=name, speed=150.0,
                  wait_for_consumers_s=10) as rep:
        live = LiveScorer(model, name=name, out_dir=out, outlet_name=f"{name}-stages",
                          idle_timeout_s=1.5)
        live.start()
        inlet = pylsl.StreamInlet(resolve_stream(name=f"{name}-stages", timeout_s=10))
        inlet.open_stream(10)
        info = inlet.info(5)
        while not live.join(0.0):
            data, _ = inlet.pull_chunk(timeout=0.2)
            samples += data
        data, _ = inlet.pull_chunk(timeout=1.0)
        samples += data
        rep.wait(5)
    assert info.channel_count() == len(STAGE_CHANNELS)
    ch = info.desc().child("channels").child("channel")
    labels = []
    while not ch.empty():
        labels.append(ch.child_value("label"))
        ch = ch.next_sibling()
    assert labels == list(STAGE_CHANNELS) and labels[-2:] == ["familiarity", "unfamiliar"]
    threshold = float(info.desc().child("edge_scorer").child_value("familiarity_threshold"))
    assert threshold == pytest.approx(model.familiarity.threshold, rel=1e-5)
    _, logged = read_epoch_log(out / "epochs.csv")
    got = {int(s[0]): (s[-2], s[-1]) for s in samples}
    assert len(got) >= 20  # the inlet connects while the first epochs are being published
    for epoch, (distance, flag) in got.items():
        assert bool(flag) == logged["unfamiliar"][epoch]
        assert distance == pytest.approx(logged["familiarity"][epoch], abs=1e-3)
    assert any(flag for _, flag in got.values())


def test_the_window_marks_flagged_epochs(calibrated, request):
    pytest.importorskip("PySide6", reason="the window needs the gui extra")
    pytest.importorskip("pyqtgraph", reason="the window needs the gui extra")
    pytest.importorskip("pytestqt", reason="the window tests need pytest-qt")
    qapp = request.getfixturevalue("qapp")
    from edge_scorer.engine.offline import score_file
    from edge_scorer.engine.sinks import Callback
    from gui.app import MainWindow
    from gui.launch import create_app
    from gui.panels.hypnogram import UNFAMILIAR_LEVEL
    from gui.store import ScoredEpochs

    model = _load(calibrated["models"])
    batches: list = []
    night = score_file(calibrated["psg"], model, None, progress=False,
                       sinks=[Callback(lambda ups, eng: batches.append(list(ups)))])
    flags = night.unfamiliar
    flagged, plain = int(np.flatnonzero(flags)[0]), int(np.flatnonzero(~flags)[0])
    create_app()
    win = MainWindow()
    win.resize(1200, 800)
    win.show()
    try:
        win.store.familiarity_threshold = model.familiarity.threshold
        for ups in batches:
            win.store.apply(ScoredEpochs(ups))
        win.hypnogram.update_night(win.store)
        win._update_familiarity()
        qapp.processEvents()
        # hypnogram: a marker above the W line at each flagged epoch, none elsewhere
        x, y = win.hypnogram.unfamiliar_marks.getData()
        epoch_h = win.spec.epoch_s / 3600.0
        np.testing.assert_array_equal(np.floor(x / epoch_h).astype(int), np.flatnonzero(flags))
        assert np.all(y == UNFAMILIAR_LEVEL) and win.hypnogram.n_unfamiliar == flags.sum()
        # epoch panel: the flag with its distance and the threshold
        win.select_epoch(flagged)
        text = win.epoch.familiarity_label.text()
        assert win.epoch.flagged and text.startswith("UNFAMILIAR signal")
        assert f"threshold {model.familiarity.threshold:.2f}" in text
        assert "UNFAMILIAR" in win.epoch.header.text()
        win.select_epoch(plain)
        assert not win.epoch.flagged and win.epoch.familiarity_label.text().startswith(
            "familiar signal")
        # status panel: the fraction of flagged epochs
        k, n = int(flags.sum()), len(flags)
        assert win.stats.familiarity.text() == (
            f"unfamiliar signal: {k} of {n} epochs ({100 * k / n:.0f} %)")
    finally:
        win.close()
