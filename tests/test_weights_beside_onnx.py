"""The shipped ONNX models carry their PyTorch weights beside them, checked on load."""

from __future__ import annotations

import shutil

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_scorer.inference.scorer import ScoringModel, default_model_dir  # noqa: E402
from training.checkpoint import load_beside_onnx, save_weights  # noqa: E402


def test_shipped_weights_match_the_onnx_models():
    folder = default_model_dir()
    intra, _ = load_beside_onnx(folder / "intra.onnx")
    inter, _ = load_beside_onnx(folder / "inter.onnx")
    model = ScoringModel.load()
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, size=(3, 224, 224), dtype=np.uint8)
    logits, feats = model.epoch_outputs(images, raw=True)  # the models' own logits, no T
    with torch.no_grad():
        x = torch.from_numpy(images[:, None].astype(np.float32))
        t_feats = intra.forward_features(x)
        t_logits = intra.forward_head(t_feats)
        windows = np.repeat(feats[None, :1], 10, axis=1)
        t_inter = inter(torch.from_numpy(windows)).numpy()
    np.testing.assert_allclose(t_logits.numpy(), logits, atol=1e-3)
    np.testing.assert_allclose(t_feats.numpy(), feats, atol=1e-3)
    np.testing.assert_allclose(t_inter, model.inter_logits(windows, raw=True), atol=1e-3)


def test_other_weights_beside_an_onnx_model_are_refused(tmp_path):
    folder = default_model_dir()
    shutil.copy(folder / "inter.onnx", tmp_path / "inter.onnx")
    with pytest.raises(FileNotFoundError, match="weights exported beside"):
        load_beside_onnx(tmp_path / "inter.onnx")
    inter, _ = load_beside_onnx(folder / "inter.onnx")
    with torch.no_grad():
        inter.pos_embed.add_(0.01)
    save_weights(inter, tmp_path / "inter.pt")
    with pytest.raises(ValueError, match="does not hold the weights"):
        load_beside_onnx(tmp_path / "inter.onnx")
