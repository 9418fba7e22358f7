"""``edge-scorer export onnx|quantize|tensorrt`` end to end on real files.

The TensorRT command runs against the FAKE tensorrt module of ``tests/fake_tensorrt.py``
(real TensorRT cannot be installed here; see that module and tests/test_tensorrt_fake.py)."""

from __future__ import annotations

import importlib.util
import json
import shutil
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")

from edge_scorer.cli import main  # noqa: E402
from edge_scorer.inference.backends import OrtBackend  # noqa: E402
from edge_scorer.inference.scorer import ScoringModel, default_model_dir  # noqa: E402
from edge_scorer.io.spec import load_spec  # noqa: E402
from export.epochs import simulated_epochs  # noqa: E402

SPEC = load_spec("sleep-edf")


@pytest.fixture(scope="module")
def epochs_npy(tmp_path_factory):
    """Rendered epochs of a simulated night saved as ``epochs.npy`` (as ``render`` writes)."""
    path = tmp_path_factory.mktemp("epochs") / "epochs.npy"
    np.save(path, simulated_epochs("sleep-edf", duration_h=0.2, seed=41))
    return path


@pytest.fixture(scope="module")
def run_folder(tmp_path_factory):
    """A ``train all``-style run folder with small intra and inter checkpoints."""
    from edge_scorer.inference.nets import create_model
    from training.checkpoint import make_meta, save_checkpoint

    torch.manual_seed(0)
    folder = tmp_path_factory.mktemp("run")
    intra = create_model("vit_tiny", depth=1, embed_dim=32, num_heads=2).eval()
    inter = create_model("inter_tiny", in_dim=32, depth=1, num_heads=2).eval()
    for task, model in (("intra", intra), ("inter", inter)):
        meta = make_meta(task=task, spec_name="sleep-edf", spec_hash=SPEC.hash, seed=0,
                         nights={"train": ["SIM0011E0"]}, cache="cache/sim")
        save_checkpoint(folder / task / "best.pt", model, meta=meta)
    return folder


def test_export_onnx_from_a_run_folder(run_folder, epochs_npy, tmp_path, capsys):
    from training.checkpoint import load_beside_onnx

    out = tmp_path / "export"
    assert main(["export", "onnx", str(run_folder), "-o", str(out), "--epochs",
                 str(epochs_npy)]) == 0
    printed = capsys.readouterr().out
    assert "intra:" in printed and "inter:" in printed and "parity report" in printed
    parity = json.loads((out / "parity.json").read_text())
    n = len(np.load(epochs_npy))
    assert parity["intra"]["n"] == n and parity["intra"]["argmax_agreement"] == 1.0
    assert parity["intra"]["max_abs_diff"] < 1e-3 and parity["inter"]["max_abs_diff"] < 1e-3
    assert parity["inter"]["n"] == (n - 9) * 10 and "epochs from" in parity["epochs"]
    # the gate: the intra features the inter model reads, and the night's final stages
    assert parity["passed"] and parity["intra"]["features"]["max_abs_diff"] < 1e-3
    assert parity["intra"]["features"]["min_cosine"] > 0.99999
    assert set(parity["gate"]["tensors"]) == {"intra/logits", "intra/features", "inter/logits"}
    stages = parity["gate"]["stages"]
    assert stages["n_epochs"] == n and stages["agreement"] == 1.0
    assert stages["max_abs_diff_proba"] < 1e-3
    assert "final stages vs torch: agreement 1.0000" in printed
    for kind in ("intra", "inter"):
        model = onnx.load(str(out / f"{kind}.onnx"))
        onnx.checker.check_model(model)
        assert model.opset_import[0].version == 17
        assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
        meta = OrtBackend(out / f"{kind}.onnx").metadata
        assert meta["kind"] == kind and meta["render_spec_hash"] == SPEC.hash
        assert json.loads(meta["nights"]) == {"train": ["SIM0011E0"]}
        load_beside_onnx(out / f"{kind}.onnx")  # weights beside, checked against the ONNX
    assert ScoringModel.load(out / "intra.onnx", out / "inter.onnx").window == 10


def test_export_onnx_refused_when_features_differ(run_folder, epochs_npy, tmp_path,
                                                  monkeypatch, capsys):
    """torch features that differ from the ONNX ones (logits equal): the parity gate names
    the features, keeps parity.json and removes the ONNX files (exit 2)."""
    from export.onnx_export import TorchReference

    real = TorchReference.infer

    def shifted(self, feed):
        out = real(self, feed)
        if "features" in out:
            out["features"] = out["features"] + np.float32(0.01)
        return out

    monkeypatch.setattr(TorchReference, "infer", shifted)
    out = tmp_path / "bad"
    assert main(["export", "onnx", str(run_folder), "-o", str(out), "--epochs",
                 str(epochs_npy)]) == 2
    err = capsys.readouterr().err
    assert "intra/features: max abs diff 0.01 > 0.001" in err and "ONNX files removed" in err
    parity = json.loads((out / "parity.json").read_text())
    assert not parity["passed"] and parity["intra"]["argmax_agreement"] == 1.0
    assert not (out / "intra.onnx").exists() and not (out / "inter.onnx").exists()


def test_export_onnx_parity_on_the_real_excerpt(run_folder, psg_excerpt, tmp_path):
    out = tmp_path / "real"
    assert main(["export", "onnx", str(run_folder / "intra" / "best.pt"), "-o", str(out),
                 "--epochs", str(psg_excerpt)]) == 0
    parity = json.loads((out / "parity.json").read_text())
    assert parity["intra"]["n"] == 10 and "rendered from" in parity["epochs"]
    assert parity["passed"] and parity["gate"]["stages"]["n_epochs"] == 10
    assert "inter" not in parity and not (out / "inter.onnx").exists()


def test_export_onnx_refuses_a_stale_spec_hash(run_folder, epochs_npy, tmp_path, capsys):
    from training.checkpoint import load_checkpoint, save_checkpoint

    model, ckpt = load_checkpoint(run_folder / "intra")
    ckpt["meta"]["spec"]["hash"] = "0123456789abcdef"
    stale = save_checkpoint(tmp_path / "stale.pt", model, meta=ckpt["meta"])
    args = ["export", "onnx", str(stale), "-o", str(tmp_path / "o"), "--epochs",
            str(epochs_npy)]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "0123456789abcdef" in err and "--force-spec" in err
    assert not (tmp_path / "o" / "intra.onnx").exists()
    assert main([*args, "--force-spec"]) == 0 and (tmp_path / "o" / "intra.onnx").is_file()


def test_export_quantize_command(tmp_path, epochs_npy, capsys):
    for name in ("intra.onnx", "inter.onnx"):
        shutil.copy(default_model_dir() / name, tmp_path / name)
    blank = tmp_path / "blank.npy"
    np.save(blank, np.zeros((12, 224, 224), np.uint8))
    assert main(["export", "quantize", str(tmp_path / "inter.onnx"), "--held-out",
                 str(epochs_npy), "--duration-h", "0.2"]) == 0
    printed = capsys.readouterr().out
    assert "verdict" in printed and "accepted" in printed
    assert (tmp_path / "inter.int8-dynamic.onnx").is_file()
    assert (tmp_path / "inter.int8-dynamic.json").is_file()
    out = tmp_path / "refused.onnx"
    assert main(["export", "quantize", str(tmp_path / "intra.onnx"), "--mode", "static",
                 "--calibration", str(blank), "--held-out", str(epochs_npy), "-o",
                 str(out)]) == 2
    assert "REFUSED" in capsys.readouterr().out and not out.exists()


@pytest.mark.skipif(importlib.util.find_spec("tensorrt") is not None,
                    reason="TensorRT is installed here")
def test_export_tensorrt_without_tensorrt_says_what_to_install(capsys):
    assert main(["export", "tensorrt", str(default_model_dir() / "inter.onnx"), "--gpu",
                 "X"]) == 2
    assert "edge-scorer[tensorrt]" in capsys.readouterr().err


def test_export_tensorrt_command_with_the_fake(tmp_path, monkeypatch, capsys):
    """The command's build path on the FAKE tensorrt module (no real TensorRT here)."""
    import fake_tensorrt

    monkeypatch.setitem(sys.modules, "tensorrt", fake_tensorrt)
    shutil.copy(default_model_dir() / "inter.onnx", tmp_path / "inter.onnx")
    assert main(["export", "tensorrt", str(tmp_path / "inter.onnx"), "-o",
                 str(tmp_path / "engines"), "--gpu", "NVIDIA Jetson Orin Nano",
                 "--profile", "1", "--profile", "2:16:64"]) == 0
    (engine,) = (tmp_path / "engines").glob("*.engine")
    assert engine.name.startswith("inter.") and ".nvidia-jetson-orin-nano.trt10.3.0.fp16." \
        in engine.name
    side = json.loads((tmp_path / "engines" / (engine.name + ".json")).read_text())
    assert side["profiles"] == [[1, 1, 1], [2, 16, 64]] and side["metadata"]["kind"] == "inter"
    assert list((tmp_path / "engines").glob("timing.*.cache"))
    assert f"engine: {engine}" in capsys.readouterr().out
    assert main(["export", "tensorrt", str(tmp_path / "inter.onnx"), "--gpu", "X",
                 "--profile", "4:2:8"]) == 2
    # --verify: every output and the final stages of whole held-out nights, in a JSON report
    import edge_scorer.inference.backends_trt as backends_trt

    # the fake runs on host memory (no CUDA device here for TorchCudaBuffers)
    monkeypatch.setattr(backends_trt, "TorchCudaBuffers", backends_trt.HostBuffers)
    shutil.copy(default_model_dir() / "intra.onnx", tmp_path / "intra.onnx")
    capsys.readouterr()
    assert main(["export", "tensorrt", str(tmp_path / "intra.onnx"), "-o",
                 str(tmp_path / "engines"), "--gpu", "NVIDIA Jetson Orin Nano", "--profile",
                 "1", "--profile", "2:16:64", "--verify", "--held-out-nights", "2",
                 "--duration-h", "0.2"]) == 0
    printed = capsys.readouterr().out
    assert "intra/features: max abs diff" in printed and "final stages: agreement" in printed
    (verify,) = (tmp_path / "engines").glob("intra.*.verify.json")
    report = json.loads(verify.read_text())
    assert report["passed"] and report["stages"]["n_nights"] == 2
    assert set(report["batches"]["64"]) == {"intra/logits", "intra/features"}


def test_export_gate_command_on_a_runtime_backend(tmp_path, capsys):
    """``export gate``: a runtime backend (here PyTorch on the CPU; torch-cuda fp16 on a GPU
    machine) against ONNX Runtime fp32 on whole held-out nights, through the shared gate."""
    report = tmp_path / "gate.json"
    assert main(["export", "gate", str(default_model_dir()), "--backend", "torch",
                 "--held-out-nights", "2", "--duration-h", "0.2", "-o", str(report)]) == 0
    printed = capsys.readouterr().out
    assert "intra/features: max abs diff" in printed and "final stages: agreement 1.0000" \
        in printed and "gate torch fp32: passed" in printed
    saved = json.loads(report.read_text())
    assert saved["passed"] and saved["stages"]["n_nights"] == 2
    assert set(saved["tensors"]) == {"intra/logits", "intra/features", "inter/logits"}
    assert saved["tensors"]["intra/features"]["max_abs_diff"] < 1e-3
    # fp16 needs a CUDA backend: a clear refusal here
    assert main(["export", "gate", str(default_model_dir()), "--backend", "torch", "--fp16",
                 "--duration-h", "0.2", "--held-out-nights", "1", "-o", str(report)]) == 2
    assert "torch-cuda" in capsys.readouterr().err
