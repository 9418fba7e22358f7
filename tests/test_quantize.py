"""ONNX Runtime int8 quantization of the shipped models: accepted only when it agrees with fp32
on held-out rendered epochs (nights not used for calibration); refused otherwise, writing
nothing."""

from __future__ import annotations

import json

import numpy as np
import pytest

pytest.importorskip("onnx")

from edge_scorer.inference.backends import OrtBackend  # noqa: E402
from edge_scorer.inference.scorer import ScoringModel  # noqa: E402
from export.epochs import simulated_epochs  # noqa: E402
from export.quantize import QuantizationRefused, quantize_model  # noqa: E402


@pytest.fixture(scope="module")
def nights():
    """Calibration and held-out epochs from two different simulated nights."""
    return (simulated_epochs("sleep-edf", duration_h=0.3, seed=31),
            simulated_epochs("sleep-edf", duration_h=0.3, seed=1031))


def test_dynamic_int8_intra_is_accepted_and_scores(models, nights):
    _, held = nights
    report = quantize_model(models / "intra.onnx", mode="dynamic", held_out=held,
                            held_out_desc="held-out night", repeats=5)
    out = models / "intra.int8-dynamic.onnx"
    assert report.accepted and report.output == str(out) and out.is_file()
    assert report.argmax_agreement >= 0.95 and report.n_held_out == len(held)
    assert 0 <= report.max_abs_diff_proba < 0.2
    assert report.size_int8_bytes < report.size_fp32_bytes / 2
    assert report.latency_fp32_ms > 0 and report.speedup == pytest.approx(
        report.latency_fp32_ms / report.latency_int8_ms)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["argmax_agreement"] == report.argmax_agreement
    assert "argmax agreement with fp32" in report.table()
    meta = OrtBackend(out).metadata
    fp32 = OrtBackend(models / "intra.onnx").metadata
    assert meta["precision"] == "int8-dynamic"
    assert {k: v for k, v in meta.items() if k not in ("precision", "quantization")} == fp32
    # the scorer takes the int8 intra model (same spec metadata) with the fp32 inter model
    hyp = ScoringModel.load(out, models / "inter.onnx").score_night(held)
    ref = ScoringModel.load(models / "intra.onnx", models / "inter.onnx").score_night(held)
    assert np.mean(hyp.stages == ref.stages) >= 0.9
    with pytest.raises(ValueError, match="already quantized"):
        quantize_model(out, models / "again.onnx", held_out=held)


def test_static_int8_inter_is_calibrated_on_another_night(models, nights):
    calib, held = nights
    report = quantize_model(models / "inter.onnx", models / "q" / "inter8.onnx", mode="static",
                            calibration=calib, held_out=held, calibration_desc="night 31",
                            repeats=5)
    assert report.accepted and report.calibration == "night 31"
    # inter predictions: every position of every window of the held-out night
    assert report.n_held_out == (len(held) - 9) * 10
    q = json.loads(OrtBackend(models / "q" / "inter8.onnx").metadata["quantization"])
    assert q["mode"] == "static" and q["ops"] == ["MatMul", "Gemm", "Conv"]
    with pytest.raises(ValueError, match="needs calibration epochs"):
        quantize_model(models / "inter.onnx", models / "x.onnx", mode="static", held_out=held)


def test_refused_below_threshold_writes_nothing(models, nights):
    """Calibrating on blank screens (a real mistake: wrong epochs) ruins the activation ranges;
    the agreement check catches it and nothing is written."""
    _, held = nights
    out = models / "bad" / "intra.int8.onnx"
    blank = np.zeros((16, 224, 224), np.uint8)
    with pytest.raises(QuantizationRefused, match="below the threshold 0.95") as err:
        quantize_model(models / "intra.onnx", out, mode="static", calibration=blank,
                       held_out=held, repeats=3)
    assert err.value.report.argmax_agreement < 0.95 and not err.value.report.accepted
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert not out.parent.exists()
