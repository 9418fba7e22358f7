"""``edge-scorer train all``: the whole recipe (intra, inter, STQS, evaluation, ONNX export) on
simulated nights written in the real Sleep-EDF and SHHS/NSRR file layouts."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("torch")
pytest.importorskip("onnx")

from edge_scorer.cli import main  # noqa: E402
from edge_scorer.simulate import simulate_nights  # noqa: E402
from export import read_metadata  # noqa: E402

TINY = ["intra:model.depth=1", "intra:model.embed_dim=32", "intra:model.num_heads=2",
        "inter:model.depth=1", "inter:model.num_heads=2", "stqs:model.lstm_hidden=8",
        "train.epochs=1", "train.max_steps=3", "train.threads=1", "train.batch_size=8",
        "train.warmup_steps=0", "data.trim_wake_min=5"]


def _run(tmp_path, recipe: str, data) -> dict:
    out = tmp_path / "run"
    argv = ["train", "all", "--recipe", recipe, "--data", str(data), "--out", str(out),
            "--quiet", "--set", f"data.cache_dir={tmp_path / 'cache'}", *TINY]
    assert main(argv) == 0
    report = json.loads((out / "report" / "report.json").read_text())
    parity = json.loads((out / "export" / "parity.json").read_text())
    assert parity["intra"]["max_abs_diff"] < 1e-3 and parity["inter"]["max_abs_diff"] < 1e-3
    meta = read_metadata(out / "export" / "intra.onnx")
    assert meta["kind"] == "intra" and meta["render_spec"] == recipe
    assert read_metadata(out / "export" / "inter.onnx")["window_length"] == "10"
    # calibrated right after the export: temperatures and the unfamiliar-signal statistics
    cal = json.loads((out / "export" / "calibration.json").read_text())
    assert cal["quantile"] == 0.99 and cal["threshold"] > 0 and cal["temperature"] > 0
    assert {"familiarity", "temperature"} <= set(meta)
    assert float(read_metadata(out / "export" / "inter.onnx")["temperature"]) == \
        cal["temperature"]
    for name in ("confusion.png", "lookahead.png", "report.md"):
        assert (out / "report" / name).stat().st_size > 0
    return report


def test_recipe_sleep_edf_layout(tmp_path, shared_data):
    from edge_scorer.io.hypnogram_io import inbed_crop, read_hypnogram

    # Nights named after the real nights that drive them (SIM0011 <- SC4011 ...), so the
    # committed Sleep-EDF SC split applies: subject 00 is validation, 01 test, 02 train.
    hyps = [h for h in sorted((shared_data / "hypnograms").glob("*-Hypnogram.edf"))
            if h.name[3:5] in ("00", "01", "02")]
    drivers = [inbed_crop(read_hypnogram(h)) for h in hyps]
    simulate_nights(tmp_path / "nights", len(drivers), hypnograms_from=drivers,
                    duration_h=1.0)
    report = _run(tmp_path, "sleep-edf", tmp_path / "nights")
    assert report["meta"]["part"] == "test" and report["n_nights"] == 2
    assert report["meta"]["subjects"] in ("001", ["001"], "01", ["01"])
    assert {"intra", "intra+inter", "stqs"} <= set(report["methods"])
    # the run ships as a default model the runtime loads (same export code as the recipe)
    from edge_scorer import ScoringModel, load_spec
    from training.ship_default import PROVENANCE, ship

    summary = ship(tmp_path / "run", tmp_path / "shipped")
    assert summary["spec"]["hash"] == load_spec("sleep-edf").hash
    model = ScoringModel.load(tmp_path / "shipped" / "intra.onnx",
                              tmp_path / "shipped" / "inter.onnx")
    assert model.intra.metadata["training_data"] == PROVENANCE
    assert model.familiarity is not None and summary["calibration"]["quantile"] == 0.99
    assert model.temperature == summary["calibration"]["temperature"]
    assert json.loads(model.inter.metadata["split"])["test"]


def test_recipe_shhs_layout(tmp_path):
    # NSRR layout (EDF + XML side by side), no committed split: a seeded subject-wise split
    simulate_nights(tmp_path / "nights", 4, layout="shhs", seed=5, duration_h=0.6)
    report = _run(tmp_path, "shhs", tmp_path / "nights")
    assert report["meta"]["spec"]["name"] == "shhs" and report["n_nights"] >= 1
    assert {"intra", "intra+inter", "stqs"} <= set(report["methods"])


def test_train_all_config_pairs_are_checked(capsys):
    assert main(["train", "all", "--config", "intra"]) == 2
    assert "TASK=NAME" in capsys.readouterr().err
