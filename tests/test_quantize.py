"""ONNX Runtime int8 quantization of the shipped models: accepted only when it passes the
shared gate (``export/gate.py``) against fp32 on held-out nights (not used for calibration):
the quantized model's logits, the intra model's features, and the final stages of whole nights
through the window rule; refused otherwise, writing nothing."""

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
    # what ships: the fp32 inter model reads the int8 features through the window rule
    assert report.n_stage_epochs == len(held) and report.n_nights == 1
    assert report.stage_agreement >= 0.95 and report.stage_max_abs_diff_proba < 0.15
    assert 0 < report.features_max_abs_diff < 0.25 and report.features_min_cosine > 0.99
    assert report.size_int8_bytes < report.size_fp32_bytes / 2
    assert report.latency_fp32_ms > 0 and report.speedup == pytest.approx(
        report.latency_fp32_ms / report.latency_int8_ms)
    saved = json.loads(out.with_suffix(".json").read_text())
    assert saved["argmax_agreement"] == report.argmax_agreement
    assert saved["gate"]["passed"] and set(saved["gate"]["tensors"]) == {"intra/logits",
                                                                        "intra/features"}
    assert saved["gate"]["stages"]["agreement"] == report.stage_agreement
    assert saved["gate"]["tensors"]["intra/features"]["min_cosine"] == report.features_min_cosine
    assert "argmax agreement with fp32" in report.table()
    assert "final stages vs fp32" in report.table() and "min cosine" in report.table()
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
    assert set(report.gate["tensors"]) == {"inter/logits"} and report.features_min_cosine is None
    assert report.n_stage_epochs == len(held) and report.stage_agreement >= 0.95
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
    with pytest.raises(QuantizationRefused, match="fails the gate") as err:
        quantize_model(models / "intra.onnx", out, mode="static", calibration=blank,
                       held_out=held, repeats=3)
    report = err.value.report
    assert report.argmax_agreement < 0.95 and not report.accepted
    assert "final stages: agreement" in str(err.value) and "intra/features" in str(err.value)
    assert report.stage_agreement < 0.95
    assert not out.exists() and not out.with_suffix(".json").exists()
    assert not out.parent.exists()


def test_features_and_stages_refuse_what_the_logits_gate_accepted(models, nights):
    """Static int8 calibrated on one short night: its logits agree with fp32 above the
    threshold, but its features and the final stages drift; the gate refuses it."""
    calib, held = nights
    threshold = 0.8
    with pytest.raises(QuantizationRefused) as err:
        quantize_model(models / "intra.onnx", models / "s" / "intra8.onnx", mode="static",
                       calibration=calib[:8], held_out=held, repeats=3,
                       min_agreement=threshold)
    report = err.value.report
    assert report.argmax_agreement >= threshold  # the old logits-only gate accepted this
    assert any(f.startswith("intra/features") for f in report.gate["failures"])
    assert not (models / "s").exists()
    # report only (benchmarks): same numbers, written
    kept = quantize_model(models / "intra.onnx", models / "s" / "intra8.onnx", mode="static",
                          calibration=calib[:8], held_out=held, repeats=3,
                          min_agreement=threshold, enforce=False)
    assert kept.accepted and not kept.gate["passed"] and "not enforced" in kept.notes[-1]
