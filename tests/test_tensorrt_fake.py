"""TensorRT export and runtime, tested against a FAKE ``tensorrt`` module.

Real TensorRT cannot be installed on the machines these tests run on (no NVIDIA GPU; the
PyPI ``tensorrt`` packages only fetch NVIDIA's CUDA wheels). ``tests/fake_tensorrt.py``
implements the TensorRT 10 Python API subset edge-scorer uses and enforces its call order and
shapes (network before parse, valid optimization profiles covering the batch, calibrator
protocol, set_input_shape before execute_async_v3, an address for every I/O tensor,
serialized engine and timing-cache round trips). It executes the engine by running the ONNX
model with ONNX Runtime on the host, so outputs are compared for real; TensorRT's own numerics
and speed are NOT tested here. On a Jetson or an NVIDIA PC run the real check::

    edge-scorer export tensorrt edge_scorer/models/intra.onnx -o engines --verify
    edge-scorer export tensorrt edge_scorer/models/inter.onnx -o engines --verify
"""

from __future__ import annotations

import json
import shutil

import fake_tensorrt as trt
import numpy as np
import pytest

from edge_scorer.inference.backends import BackendUnavailable, OrtBackend
from edge_scorer.inference.backends_trt import (
    EngineMismatch,
    EngineName,
    HostBuffers,
    TensorRTBackend,
    gpu_slug,
    model_hash,
    sidecar_path,
)
from edge_scorer.inference.scorer import ScoringModel
from export.epochs import image_input, simulated_epochs
from export.tensorrt_build import (
    build_engine,
    build_engine_bytes,
    create_builder,
    make_config,
    make_entropy_calibrator,
    network_io,
    parse_onnx,
    parse_profile,
    verify_engine,
)

GPU = "NVIDIA Fake GPU 16GB"


@pytest.fixture(scope="module")
def images():
    """Rendered epochs of a short simulated night (36 epochs)."""
    return simulated_epochs("sleep-edf", duration_h=0.3, seed=11)


@pytest.fixture(scope="module")
def engines(models, images):
    """fp32 and fp16 engines of both models, and an int8 intra engine."""
    out = {}
    for name in ("intra", "inter"):
        for precision in ("fp32", "fp16"):
            out[name, precision] = build_engine(models / f"{name}.onnx", precision=precision,
                                                gpu=GPU, trt=trt, buffers=HostBuffers())
    out["intra", "int8"] = build_engine(models / "intra.onnx", precision="int8",
                                        profiles=[(1, 1, 1), (2, 16, 64)], calibration=images,
                                        gpu=GPU, trt=trt, buffers=HostBuffers())
    return out


def _backend(path, **kw):
    return TensorRTBackend(path, trt=trt, gpu=GPU, buffers=HostBuffers(), **kw)


def test_steps_onnx_network_config_bytes(models):
    builder, logger = create_builder(trt)
    network, parser = parse_onnx(trt, builder, logger, models / "intra.onnx")
    inputs, outputs = network_io(network)
    assert inputs == {"image": (-1, 1, 224, 224)}
    assert list(outputs) == ["logits", "features"]
    with pytest.raises(RuntimeError, match="already parsed"):
        parser.parse((models / "intra.onnx").read_bytes())
    config = make_config(trt, builder, network, precision="fp16",
                         profiles=[(1, 1, 1), (2, 8, 16)])
    assert config.get_flag(trt.BuilderFlag.FP16) and config.num_optimization_profiles == 2
    engine = build_engine_bytes(builder, network, config)
    assert trt.Runtime(logger).deserialize_cuda_engine(engine).num_optimization_profiles == 2
    # an unparsed network cannot be built: TensorRT returns None, the step raises
    empty = builder.create_network(0)
    with pytest.raises(RuntimeError, match="could not build"):
        build_engine_bytes(builder, empty, builder.create_builder_config())
    assert any("parse the ONNX model" in m for _, m in logger.messages)
    bad = builder.create_network(0)
    assert not trt.OnnxParser(bad, logger).parse(b"not an onnx model")
    with pytest.raises(ValueError, match="cannot parse"):
        parse_onnx(trt, builder, logger, _garbage(models))
    with pytest.raises(ValueError, match="int8 needs calibration"):
        make_config(trt, builder, network, precision="int8")
    with pytest.raises(ValueError, match="OPT batch"):
        calibrator = make_entropy_calibrator(
            trt, [{"image": np.zeros((32, 1, 224, 224), np.float32)}], HostBuffers())
        make_config(trt, builder, network, precision="int8", calibrator=calibrator,
                    calibration_batch=32)


def _garbage(folder):
    path = folder / "garbage.onnx"
    path.write_bytes(b"\x00garbage")
    return path


def test_profiles_are_checked():
    assert parse_profile("1") == (1, 1, 1) and parse_profile("2:64:256") == (2, 64, 256)
    for bad in ("0:1:2", "4:2:8", "a:b:c", "1:2"):
        with pytest.raises(ValueError, match="profile"):
            parse_profile(bad)
    profile = trt.Builder(trt.Logger()).create_optimization_profile()
    profile.set_shape("image", (4, 1, 224, 224), (2, 1, 224, 224), (8, 1, 224, 224))
    assert trt.Builder(trt.Logger()).create_builder_config().add_optimization_profile(
        profile) == -1  # min > opt: TensorRT rejects the profile


def test_engine_name_sidecar_and_timing_cache(models, engines):
    path = engines["intra", "fp16"]
    name = EngineName.parse(path.name)
    assert name == EngineName("intra", model_hash(models / "intra.onnx"), gpu_slug(GPU),
                              trt.__version__, "fp16")
    assert name.gpu == "nvidia-fake-gpu-16gb"
    side = json.loads(sidecar_path(path).read_text())
    assert side["metadata"] == OrtBackend(models / "intra.onnx").metadata
    assert side["profiles"] == [[1, 1, 1], [2, 64, 256]]
    cache = models / f"timing.{gpu_slug(GPU)}.trt{trt.__version__}.cache"
    assert cache.is_file()
    builder, logger = create_builder(trt)
    network, _ = parse_onnx(trt, builder, logger, models / "inter.onnx")
    config = make_config(trt, builder, network, timing_cache=cache.read_bytes())
    assert config.get_timing_cache().loaded_entries >= 4  # the builds above were recorded


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_engine_outputs_equal_onnxruntime(models, engines, images, precision):
    intra = _backend(engines["intra", precision], onnx_path=models / "intra.onnx")
    ref = OrtBackend(models / "intra.onnx")
    assert intra.metadata == ref.metadata and intra.precision == precision
    assert intra.input_names == ("image",) and intra.output_names == ("logits", "features")
    tol = 1e-4 if precision == "fp32" else 0.05
    x = image_input(images)
    for batch, profile in ((1, 0), (17, 1)):
        got, want = intra.infer({"image": x[:batch]}), ref.infer({"image": x[:batch]})
        assert intra.context.active_optimization_profile == profile
        for k in want:
            np.testing.assert_allclose(got[k], want[k], atol=tol, rtol=tol)


def test_batches_above_the_largest_profile_are_split(models, engines):
    inter = _backend(engines["inter", "fp32"], onnx_path=models / "inter.onnx")
    assert inter.max_batch == 256
    windows = np.random.default_rng(0).normal(size=(300, 10, 128)).astype(np.float32)
    got = inter.infer({"features": windows})["logits"]
    assert got.shape == (300, 10, 5) and inter.context.executions == 2
    want = OrtBackend(models / "inter.onnx").infer({"features": windows})["logits"]
    np.testing.assert_allclose(got, want, atol=1e-4)


def test_scoring_model_on_tensorrt_equals_onnxruntime(models, engines, images):
    spec_model = ScoringModel.load(models / "intra.onnx", models / "inter.onnx")
    trt_model = ScoringModel(_backend(engines["intra", "fp32"]),
                             _backend(engines["inter", "fp32"]), spec_model.spec)
    np.testing.assert_allclose(trt_model.score_images(images), spec_model.score_images(images),
                               atol=1e-5)


def test_int8_calibrator_is_fed_rendered_epochs(models, engines, images):
    side = json.loads(sidecar_path(engines["intra", "int8"]).read_text())
    assert side["precision"] == "int8"
    # TensorRT calibrates at the OPT batch of a profile: 16 here (36 epochs -> 2 batches)
    assert side["calibration"] == {"batches": 2, "batch_size": 16}
    report = verify_engine(engines["intra", "int8"], models / "intra.onnx", images, trt=trt,
                           gpu=GPU, buffers=HostBuffers(), batch_sizes=(1, 8))
    assert report["passed"] and report["batches"]["8"]["intra/logits"]["n"] == len(images)


@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_verify_reports_features_and_final_stages(models, engines, images, precision):
    """--verify gates every output (the features the inter model reads included) per batch
    size, and the final stages of the night with the engine in place of the fp32 model."""
    report = verify_engine(engines["intra", precision], models / "intra.onnx", images, trt=trt,
                           gpu=GPU, buffers=HostBuffers(), batch_sizes=(1, 16))
    assert report["passed"], report["failures"]
    for bs in ("1", "16"):
        feats = report["batches"][bs]["intra/features"]
        assert feats["n"] == len(images) and feats["min_cosine"] > 0.999
        assert feats["max_abs_diff"] < (1e-4 if precision == "fp32" else 0.05)
        assert report["batches"][bs]["intra/logits"]["argmax_agreement"] == 1.0
    stages = report["stages"]
    assert stages["n_epochs"] == len(images) and stages["n_nights"] == 1
    assert stages["agreement"] == 1.0 and stages["max_abs_diff_proba"] < 0.05
    assert report["thresholds"]["min_stage_agreement"] == report["min_agreement"]
    # an inter engine: its logits on the fp32 features, and the final stages
    inter = verify_engine(engines["inter", precision], models / "inter.onnx", images, trt=trt,
                          gpu=GPU, buffers=HostBuffers(), batch_sizes=(8,))
    assert inter["passed"] and set(inter["batches"]["8"]) == {"inter/logits"}
    assert inter["stages"]["agreement"] == 1.0


def test_verify_fails_naming_features_when_only_features_drift(models, engines, images,
                                                                monkeypatch):
    """An engine whose features drift while its logits stay exact: the old logits-only check
    passed it; the gate names the features."""
    real = TensorRTBackend.infer

    def drifting(self, feed):
        out = real(self, feed)
        if "features" in out:
            out["features"] = out["features"] + np.float32(0.3)
        return out

    monkeypatch.setattr(TensorRTBackend, "infer", drifting)
    report = verify_engine(engines["intra", "fp16"], models / "intra.onnx", images, trt=trt,
                           gpu=GPU, buffers=HostBuffers(), batch_sizes=(8,))
    assert not report["passed"]
    assert report["batches"]["8"]["intra/logits"]["argmax_agreement"] == 1.0
    assert any(f.startswith("batch 8: intra/features: max abs diff 0.3") and f.endswith("> 0.05")
               for f in report["failures"]), report["failures"]
    assert not any("intra/logits" in f for f in report["failures"])


def test_open_by_onnx_prefers_fp16_and_refuses_wrong_engines(models, engines, tmp_path):
    be = TensorRTBackend.open(models / "inter.onnx", trt=trt, gpu=GPU, buffers=HostBuffers())
    assert be.precision == "fp16"
    be32 = TensorRTBackend.open(models / "inter.onnx", precision="fp32", trt=trt, gpu=GPU,
                                buffers=HostBuffers())
    assert be32.precision == "fp32"
    with pytest.raises(EngineMismatch, match="none for GPU 'nvidia-jetson-orin'"):
        TensorRTBackend.open(models / "inter.onnx", trt=trt, gpu="NVIDIA Jetson Orin",
                             buffers=HostBuffers())
    fresh = tmp_path / "inter.onnx"
    shutil.copy(models / "inter.onnx", fresh)
    with pytest.raises(BackendUnavailable, match="edge-scorer export tensorrt"):
        TensorRTBackend.open(fresh, trt=trt, gpu=GPU, buffers=HostBuffers())
    engine = engines["inter", "fp32"]
    with pytest.raises(EngineMismatch, match="built for GPU"):
        TensorRTBackend(engine, trt=trt, gpu="NVIDIA GeForce RTX 4090", buffers=HostBuffers())
    # another model: the intra model is not what this engine was built from
    with pytest.raises(EngineMismatch, match="another model"):
        _backend(engine, onnx_path=models / "intra.onnx")
    # a renamed engine (precision in the name no longer matches its sidecar)
    renamed = tmp_path / engine.name.replace(".fp32.", ".fp16.")
    shutil.copy(engine, renamed)
    shutil.copy(sidecar_path(engine), sidecar_path(renamed))
    with pytest.raises(EngineMismatch, match="renamed"):
        _backend(renamed)
    # not named by the scheme
    plain = tmp_path / "model.engine"
    shutil.copy(engine, plain)
    with pytest.raises(EngineMismatch, match="not named"):
        _backend(plain)
    # corrupt bytes under a valid name and sidecar
    corrupt = tmp_path / engine.name
    corrupt.write_bytes(b"garbage")
    shutil.copy(sidecar_path(engine), sidecar_path(corrupt))
    with pytest.raises(ValueError, match="could not deserialize"):
        _backend(corrupt)


def test_other_tensorrt_version_is_refused(engines, monkeypatch):
    monkeypatch.setattr(trt, "__version__", "10.4.0")
    with pytest.raises(EngineMismatch, match="TensorRT 10.3.0, this is TensorRT 10.4.0"):
        _backend(engines["inter", "fp32"])


def test_fake_enforces_the_execution_order(engines):
    """The fake itself refuses what real TensorRT refuses (so the tests above mean something)."""
    runtime = trt.Runtime(trt.Logger())
    engine = runtime.deserialize_cuda_engine(engines["inter", "fp32"].read_bytes())
    ctx = engine.create_execution_context()
    buffers = HostBuffers()
    x = np.zeros((4, 10, 128), np.float32)
    out = np.zeros((4, 10, 5), np.float32)
    assert not ctx.set_input_shape("features", x.shape)  # profile 0 is batch 1 only
    assert ctx.set_optimization_profile_async(1, 0)
    assert not ctx.execute_async_v3(0) and "input shapes" in ctx.last_error
    assert ctx.set_input_shape("features", x.shape)
    ctx.set_tensor_address("features", buffers.pointer(x))
    assert not ctx.execute_async_v3(0) and "addresses" in ctx.last_error
    ctx.set_tensor_address("logits", buffers.pointer(out))
    assert tuple(ctx.get_tensor_shape("logits")) == (4, 10, 5)
    assert ctx.execute_async_v3(0) and ctx.executions == 1
    assert ctx.set_optimization_profile_async(0, 0)  # switching drops the input shapes
    assert not ctx.execute_async_v3(0)
