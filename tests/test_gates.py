"""The shared gate on what ships (``export/gate.py``): per-tensor comparison (logits, features)
and the final stages of whole nights scored through the runtime's window rule.

The case the old logits-only gates missed: an intra model whose logits are untouched but whose
``features`` (what the inter model reads, hence what the final stages come from) drift."""

from __future__ import annotations

import numpy as np
import pytest

from edge_scorer.inference.backends import OrtBackend
from edge_scorer.inference.scorer import ScoringModel
from export.epochs import compare_logits, simulated_epochs
from export.gate import (
    REPORT_ONLY,
    THRESHOLDS,
    GateFailed,
    GateThresholds,
    compare_models,
    compare_outputs,
    compare_stages,
    scoring_pair,
    stage_stats,
)


class Perturbed:
    """A backend whose ``features`` output is shifted by ``shift`` (logits untouched)."""

    def __init__(self, inner: OrtBackend, shift: float) -> None:
        self.inner, self.shift = inner, shift
        self.name, self.metadata, self.path = "perturbed", inner.metadata, inner.path
        self.input_names, self.output_names = inner.input_names, inner.output_names

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        out = dict(self.inner.infer(feed))
        feats = out["features"]
        pattern = np.where(np.arange(feats.shape[1]) % 2 == 0, 1.0, -1.0).astype(np.float32)
        out["features"] = feats + np.float32(self.shift) * pattern
        return out


@pytest.fixture(scope="module")
def nights():
    """Two short simulated held-out nights (each scored whole, in time order)."""
    return [simulated_epochs("sleep-edf", duration_h=0.3, seed=1000 + i) for i in range(2)]


def _pair(models, shift: float):
    intra = OrtBackend(models / "intra.onnx")
    return scoring_pair(models / "intra.onnx", models / "inter.onnx",
                        intra_backend=Perturbed(intra, shift))


def test_identical_outputs_pass(models, nights):
    rng = np.random.default_rng(0)
    out = {"logits": rng.normal(size=(20, 5)), "features": rng.normal(size=(20, 128))}
    report = compare_outputs(out, {k: v.copy() for k, v in out.items()})
    assert report.passed and report.tensors["features"]["min_cosine"] == pytest.approx(1.0)
    assert report.tensors["logits"]["argmax_agreement"] == 1.0
    reference, candidate = _pair(models, 0.0)
    report = compare_models(reference, candidate, nights)
    assert report.passed, report.failures
    assert set(report.tensors) == {"intra/logits", "intra/features"}
    assert report.tensors["intra/features"]["max_abs_diff"] == 0.0
    stages = report.stages
    assert stages["agreement"] == 1.0 and stages["max_abs_diff_proba"] == 0.0
    assert stages["n_nights"] == 2 and stages["n_epochs"] == sum(map(len, nights))
    report.check("identical")  # does not raise


def test_features_drift_with_identical_logits_fails_naming_features(models, nights):
    """Logits identical, features shifted: the old logits-only gate passed this."""
    reference, candidate = _pair(models, 0.3)
    ref_logits, _ = reference.epoch_outputs(nights[0])
    got_logits, _ = candidate.epoch_outputs(nights[0])
    assert compare_logits(ref_logits, got_logits)["argmax_agreement"] == 1.0  # old gate: pass
    report = compare_models(reference, candidate, nights, THRESHOLDS["fp16"])
    assert not report.passed
    assert report.tensors["intra/logits"]["max_abs_diff"] == 0.0
    assert report.tensors["intra/features"]["max_abs_diff"] == pytest.approx(0.3, abs=1e-5)
    assert "intra/features: max abs diff 0.3 > 0.05" in report.failures
    with pytest.raises(GateFailed, match=r"features: max abs diff 0\.3 > 0\.05") as err:
        report.check("fp16 candidate")
    assert err.value.report is report
    assert not any(f.startswith("intra/logits") for f in report.failures)


def test_stage_drift_fails_naming_final_stages(models, nights):
    """Tensor limits loose enough to let the features through; the final stages still fail."""
    loose = GateThresholds({}, 0.0, -1.0, 0.99, 0.05)
    reference, candidate = _pair(models, 1.5)
    report = compare_models(reference, candidate, nights, loose)
    assert report.stages["agreement"] < 0.99, report.stages
    assert any(f.startswith("final stages: agreement") for f in report.failures)
    assert all(f.startswith("final stages") for f in report.failures)
    with pytest.raises(GateFailed, match=r"final stages: agreement 0\.\d+ < 0\.99"):
        report.check("candidate")
    again = compare_stages(reference, candidate, nights, loose)
    assert again.stages["agreement"] == report.stages["agreement"] and not again.tensors
    assert compare_models(reference, candidate, nights, REPORT_ONLY).passed


def test_stage_stats_per_night_and_limits():
    ref = [np.eye(5)[[0, 1, 2, 3, 4, 0]], np.eye(5)[[2, 2, 2, 2]]]
    got = [r.copy() for r in ref]
    got[1][0] = [0.0, 0.0, 0.4, 0.6, 0.0]  # one epoch of ten changes stage
    report = stage_stats(ref, got, THRESHOLDS["fp16"])
    assert report.stages["agreement"] == pytest.approx(0.9)
    assert report.stages["nights"][0]["agreement"] == 1.0
    assert report.stages["nights"][1]["agreement"] == 0.75
    assert report.stages["max_abs_diff_proba"] == pytest.approx(0.6)
    assert report.failures == ["final stages: agreement 0.9000 < 0.99",
                               "final stages: max prob diff 0.6 > 0.05"]
    assert report.to_dict()["passed"] is False


def test_bad_inputs_are_refused():
    with pytest.raises(ValueError, match="gives no 'features'"):
        compare_outputs({"features": np.zeros((2, 3))}, {"logits": np.zeros((2, 5))})
    with pytest.raises(ValueError, match="differ in shape"):
        compare_outputs({"logits": np.zeros((2, 5))}, {"logits": np.zeros((3, 5))})
    with pytest.raises(ValueError, match="non-finite"):
        compare_outputs({"logits": np.zeros((2, 5))}, {"logits": np.full((2, 5), np.nan)})
    with pytest.raises(ValueError, match="within 0..1"):
        THRESHOLDS["int8"].with_agreement(1.5)


def test_scoring_model_path_is_the_runtime_one(models, nights):
    """The gate's final probabilities are the runtime's: ScoringModel.score_images."""
    reference, candidate = _pair(models, 0.3)
    report = compare_stages(reference, candidate, nights[:1], REPORT_ONLY)
    want = ScoringModel.load(models / "intra.onnx", models / "inter.onnx").score_images(
        nights[0])
    got = reference.score_images(nights[0])
    np.testing.assert_allclose(got, want)
    assert report.stages["n_epochs"] == len(nights[0])
