"""``edge-scorer explain``: figures a person can open and the numbers as JSON, for single epochs
and per-stage summaries; and the fidelity benchmark's deletion machinery."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("torch")

from edge_scorer.cli import main  # noqa: E402
from edge_scorer.explain.relevance import TorchModels  # noqa: E402
from edge_scorer.simulate import simulate_nights  # noqa: E402

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def night_files(tmp_path_factory):
    return simulate_nights(tmp_path_factory.mktemp("night"), 1, seed=1002, duration_h=1.0)[0]


def _png_ok(path) -> None:
    data = path.read_bytes()
    assert data[:8] == PNG and 10_000 < len(data) < 600_000, (path, len(data))


def test_explain_one_epoch_writes_figures_and_json(night_files, tmp_path, capsys):
    psg, hyp = night_files
    out = tmp_path / "out"
    assert main(["explain", str(psg), "--epoch", "40", "--method", "all", "--hypnogram",
                 str(hyp), "-o", str(out)]) == 0
    for suffix in ("relevance", "bars", "inter", "occlusion"):
        _png_ok(out / f"epoch_00040_{suffix}.png")
    data = json.loads((out / "epoch_00040.json").read_text())
    assert set(data["relevance"]) == {"chefer", "gradient", "rollout"}
    chefer = data["relevance"]["chefer"]
    assert chefer["target"] == data["scored_stage"] == chefer["stage"]
    g = TorchModels.load().intra.grid  # 224 / patch of the shipped model (7 at 32 px)
    assert len(chefer["grid"]) == g and sum(chefer["row_share"].values()) == pytest.approx(1)
    assert len(chefer["inter"]["epochs"]) == 19
    assert data["hypnogram_stage"] in ("W", "N1", "N2", "N3", "REM")
    assert set(data["occlusion"]["modality_drop"]) == {"EEG", "EOG", "EMG"}
    text = capsys.readouterr().out
    assert "epoch 40 (0:20:00)" in text and "per row:" in text


def test_explain_all_writes_per_stage_summaries(night_files, tmp_path):
    psg, _ = night_files
    out = tmp_path / "all"
    assert main(["explain", str(psg), "--all", "--per-stage", "2", "-o", str(out)]) == 0
    for name in ("stages_maps", "stages_bars", "stages_inter", "stages_occlusion"):
        _png_ok(out / f"{name}.png")
    data = json.loads((out / "summary.json").read_text())
    assert data["stages"] and data["method"] == "chefer"
    for st in data["stages"].values():
        assert 1 <= len(st["epochs"]) <= 2
        assert sum(st["row_share"].values()) == pytest.approx(1)
        assert set(st["modality_drop"]) == {"EEG", "EOG", "EMG"}
        assert sum(st["inter_context_share_by_offset"].values()) == pytest.approx(1, abs=1e-6)


def test_explain_refuses_bad_requests(night_files, tmp_path):
    psg, _ = night_files
    assert main(["explain", str(psg), "--epoch", "100000", "-o", str(tmp_path)]) == 2
    assert main(["explain", str(psg), "--epoch", "3", "--target", "N5",
                 "-o", str(tmp_path)]) == 2
    assert main(["explain", str(psg), "--all", "--target", "W", "-o", str(tmp_path)]) == 2


def test_deletion_images_and_auc():
    from edge_scorer.bench.fidelity import auc, deletion_images

    image = np.full((224, 224), 255, dtype=np.uint8)
    order = np.arange(196)[::-1]
    imgs, fracs = deletion_images(image, order, 14, 4)
    assert imgs.shape == (5, 224, 224) and fracs.tolist() == [0, 0.25, 0.5, 0.75, 1]
    assert (imgs[0] == 255).all() and (imgs[-1] == 0).all()
    assert (imgs[1][-16:, -16:] == 0).all() and (imgs[1][:16, :16] == 255).all()
    lit = (imgs > 0).mean((1, 2))
    np.testing.assert_allclose(lit, [1, 1 - 49 / 196, 0.5, 1 - 147 / 196, 0])
    assert auc(fracs, lit) == pytest.approx(0.5)
    filled, _ = deletion_images(image, order, 14, 1, fill=np.full_like(image, 7))
    assert (filled[-1] == 7).all()
