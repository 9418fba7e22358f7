"""Scoring through ONNX Runtime: the runtime's numpy path equals the torch reference, and
models whose render spec differs from the input's are refused with a clear error."""

from __future__ import annotations

import json

import numpy as np
import pytest

from edge_scorer import load_spec
from edge_scorer.inference.scorer import ModelSpecMismatch, ScoringModel, default_model_dir

SPEC = load_spec("sleep-edf")


@pytest.fixture(scope="module")
def tiny_models(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from edge_scorer.inference.nets import create_model
    from export import export_inter, export_intra

    torch.manual_seed(0)
    intra = create_model("vit_tiny", depth=1, embed_dim=32, num_heads=2).eval()
    inter = create_model("inter_tiny", in_dim=32, depth=1, num_heads=2).eval()
    out = tmp_path_factory.mktemp("models")
    return (intra, inter, export_intra(intra, out / "intra.onnx", spec=SPEC),
            export_inter(inter, out / "inter.onnx", spec=SPEC))


def test_onnx_scoring_equals_torch_reference(tiny_models):
    import torch

    from edge_scorer.inference.nets import sliding_window_proba

    intra, inter, intra_path, inter_path = tiny_models
    model = ScoringModel.load(intra_path, inter_path, SPEC)
    images = np.random.default_rng(0).integers(0, 256, (23, 224, 224), dtype=np.uint8)
    got = model.score_images(images)
    with torch.no_grad():
        feats = intra.forward_features(torch.from_numpy(images[:, None].astype(np.float32)))
    ref = sliding_window_proba(inter, feats, L=10)
    np.testing.assert_allclose(got, ref, atol=1e-5)
    np.testing.assert_allclose(got.sum(1), 1.0, atol=1e-9)
    hyp = model.score_night(images[:4])  # shorter than a window: padded, still one per epoch
    assert hyp.n_epochs == 4 and hyp.probabilities.shape == (4, 5)


def test_spec_mismatch_is_refused(tiny_models):
    _, _, intra_path, inter_path = tiny_models
    shhs = load_spec("shhs")
    with pytest.raises(ModelSpecMismatch) as err:
        ScoringModel.load(intra_path, inter_path, shhs)
    assert SPEC.hash in str(err.value) and shhs.hash in str(err.value)
    assert "--spec" not in str(err.value)  # no command that scores has such an option


def test_model_without_metadata_and_wrong_pairing(tiny_models, tmp_path):
    onnx = pytest.importorskip("onnx")
    _, _, intra_path, inter_path = tiny_models
    bare = onnx.load(str(intra_path))
    del bare.metadata_props[:]
    onnx.save(bare, str(tmp_path / "bare.onnx"))
    with pytest.raises(ModelSpecMismatch, match="no edge_scorer render-spec metadata"):
        ScoringModel.load(tmp_path / "bare.onnx", None, SPEC)
    with pytest.raises(ValueError, match="not an intra model"):
        ScoringModel.load(inter_path, None, SPEC)
    with pytest.raises(FileNotFoundError, match="ONNX model not found"):
        ScoringModel.load(tmp_path / "missing.onnx", None, SPEC)


def test_shipped_default_model_fits_the_sleep_edf_spec():
    folder = default_model_dir()
    model = ScoringModel.load()
    assert model.spec.hash == SPEC.hash and model.window == 10
    meta = model.intra.metadata
    assert "simulated" in meta["training_data"].lower()
    assert json.loads(meta["montage"]) == list(SPEC.row_names)
    assert (folder / "MODEL_CARD.md").is_file()
    size_mb = sum(p.stat().st_size for p in folder.glob("*.onnx")) / 1e6
    assert size_mb < 8, f"shipped model files are {size_mb:.1f} MB; keep them a few MB"
