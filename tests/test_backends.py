"""Inference backends behind one ``infer(feed) -> dict``: names, choice, install hints, and the
PyTorch backend against ONNX Runtime on the shipped model (same outputs, same metadata)."""

from __future__ import annotations

import importlib.util
import logging

import numpy as np
import pytest

from edge_scorer import load_spec
from edge_scorer.inference.backends import (
    BACKENDS,
    BackendUnavailable,
    OrtBackend,
    choose_backend,
    create_backend,
    nvidia_gpu_present,
)
from edge_scorer.inference.scorer import ModelSpecMismatch, ScoringModel, default_model_dir

SPEC = load_spec("sleep-edf")
MODELS = default_model_dir()


@pytest.fixture(scope="module")
def images():
    """Rendered epochs of a short simulated night."""
    from export.epochs import simulated_epochs

    return simulated_epochs("sleep-edf", duration_h=0.3, seed=21)


def test_onnxruntime_is_the_default_and_names_itself():
    be = create_backend(MODELS / "intra.onnx")
    assert isinstance(be, OrtBackend) and be.name == "onnxruntime"
    assert be.providers == ["CPUExecutionProvider"]
    assert be.input_names == ("image",) and be.output_names == ("logits", "features")
    assert be.metadata["kind"] == "intra" and be.metadata["render_spec_hash"] == SPEC.hash
    with pytest.raises(ValueError, match="missing inputs"):
        be.infer({"features": np.zeros((1, 10, 128), np.float32)})
    with pytest.raises(ValueError, match="unknown backend 'cuda'.*torch-cuda"):
        create_backend(MODELS / "intra.onnx", "cuda")
    assert "auto" in BACKENDS and create_backend(MODELS / "intra.onnx", "ort").name == \
        "onnxruntime"


@pytest.mark.skipif(nvidia_gpu_present(), reason="this machine has an NVIDIA GPU")
def test_auto_picks_the_cpu_here_and_says_why(caplog):
    assert choose_backend(MODELS / "intra.onnx") == ("onnxruntime", "no NVIDIA GPU found")
    with caplog.at_level(logging.INFO, logger="edge_scorer"):
        be = create_backend(MODELS / "inter.onnx", "auto")
    assert be.name == "onnxruntime"
    assert "backend auto -> onnxruntime (no NVIDIA GPU found)" in caplog.text


def test_missing_backends_give_the_install_hint():
    import onnxruntime as ort

    if "CUDAExecutionProvider" not in ort.get_available_providers():
        for name in ("ort-cuda", "ort-tensorrt"):
            with pytest.raises(BackendUnavailable, match="pip install onnxruntime-gpu"):
                create_backend(MODELS / "intra.onnx", name)
    if importlib.util.find_spec("tensorrt") is None:
        with pytest.raises(BackendUnavailable, match=r"edge-scorer\[tensorrt\]"):
            create_backend(MODELS / "intra.onnx", "tensorrt")
    torch = pytest.importorskip("torch")
    if not torch.cuda.is_available():
        with pytest.raises(BackendUnavailable, match="no CUDA device"):
            create_backend(MODELS / "intra.onnx", "torch-cuda")
        from edge_scorer.inference.backends_torch import TorchBackend

        with pytest.raises(ValueError, match="need the torch-cuda backend"):
            TorchBackend(MODELS / "intra.onnx", half=True)


def test_torch_backend_equals_onnxruntime_on_the_shipped_model(images):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    x = images[:5, None].astype(np.float32)
    for name, feed in (("intra", {"image": x}), ("inter", None)):
        ort_be = create_backend(MODELS / f"{name}.onnx")
        torch_be = create_backend(MODELS / f"{name}.onnx", "torch")
        assert torch_be.name == "torch" and torch_be.metadata == ort_be.metadata
        assert (torch_be.input_names, torch_be.output_names) == (ort_be.input_names,
                                                                  ort_be.output_names)
        if feed is None:
            feats = create_backend(MODELS / "intra.onnx").infer({"image": x})["features"]
            feed = {"features": np.stack([np.resize(feats, (10, feats.shape[1]))] * 2)}
        want, got = ort_be.infer(feed), torch_be.infer(feed)
        for k in want:
            assert got[k].dtype == np.float32
            np.testing.assert_allclose(got[k], want[k], atol=1e-4)
    a = ScoringModel.load(backend="torch").score_night(images)
    b = ScoringModel.load().score_night(images)
    np.testing.assert_array_equal(a.stages, b.stages)
    np.testing.assert_allclose(a.probabilities, b.probabilities, atol=1e-5)


def test_torch_backend_from_a_training_checkpoint(tmp_path, images):
    torch = pytest.importorskip("torch")
    from edge_scorer.inference.nets import create_model
    from training.checkpoint import make_meta, save_checkpoint

    torch.manual_seed(0)
    intra = create_model("vit_tiny", depth=1, embed_dim=32, num_heads=2).eval()
    inter = create_model("inter_tiny", in_dim=32, depth=1, num_heads=2).eval()
    paths = {}
    for task, model, spec_hash in (("intra", intra, SPEC.hash), ("inter", inter, SPEC.hash),
                                   ("stale", intra, "0123456789abcdef")):
        meta = make_meta(task="intra" if task == "stale" else task, spec_name="sleep-edf",
                         spec_hash=spec_hash, seed=0)
        paths[task] = save_checkpoint(tmp_path / f"{task}.pt", model, meta=meta)
    be = create_backend(paths["intra"], "torch")
    assert be.metadata["kind"] == "intra" and be.metadata["feature_dim"] == "32"
    model = ScoringModel(be, create_backend(paths["inter"], "torch"), SPEC)
    proba = model.score_images(images[:12])
    assert proba.shape == (12, 5)
    with torch.no_grad():
        want = intra(torch.from_numpy(images[:3, None].astype(np.float32))).numpy()
    np.testing.assert_allclose(model.epoch_outputs(images[:3])[0], want, atol=1e-5)
    # a checkpoint trained on images of another render-spec hash is refused by the scorer
    with pytest.raises(ModelSpecMismatch, match="0123456789abcdef"):
        ScoringModel(create_backend(paths["stale"], "torch"), None, SPEC)
