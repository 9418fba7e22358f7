"""The unfamiliar-signal statistics, temperature scaling and the calibration error, on synthetic
features and logits with known answers, and on the shipped ONNX models."""

from __future__ import annotations

import json
import math
import shutil

import numpy as np
import pytest

from edge_scorer.inference.familiarity import (
    Familiarity,
    ledoit_wolf,
    read_temperature,
    summary_line,
)
from edge_scorer.inference.scorer import ScoringModel, default_model_dir
from edge_scorer.inference.windows import sliding_window_proba, softmax
from edge_scorer.stats.metrics import expected_calibration_error

D = 16


def _blobs(rng, n: int, shift: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    """Five Gaussian classes in D dimensions with one shared, correlated covariance."""
    means = np.arange(5)[:, None] * np.linspace(1.0, 2.0, D)[None, :]
    mix = np.eye(D) + 0.5 * np.diag(np.ones(D - 1), 1)
    y = rng.integers(0, 5, n)
    return means[y] + rng.normal(size=(n, D)) @ mix + shift, y


@pytest.fixture(scope="module")
def fitted() -> Familiarity:
    rng = np.random.default_rng(0)
    x, y = _blobs(rng, 6000)
    v, _ = _blobs(rng, 4000)
    return Familiarity.fit(x, y, v, quantile=0.95)


def test_in_distribution_epochs_are_flagged_at_one_minus_the_quantile(fitted):
    x, _ = _blobs(np.random.default_rng(1), 20000)
    rate = fitted.is_unfamiliar(x).mean()
    assert 0.035 < rate < 0.065  # about 1 - 0.95
    assert fitted.quantile == 0.95 and fitted.classes == (0, 1, 2, 3, 4)
    assert fitted.n_train == 6000 and fitted.n_val == 4000


def test_far_away_epochs_are_flagged(fitted):
    rng = np.random.default_rng(2)
    x, _ = _blobs(rng, 500)
    far = x + 15.0 * rng.normal(size=(1, D))
    assert fitted.is_unfamiliar(far).all()
    assert np.all(fitted.distance(far) > fitted.distance(x).max())
    nan_row = x[:2].copy()
    nan_row[0, 3] = np.nan
    assert np.isnan(fitted.distance(nan_row)[0]) and fitted.is_unfamiliar(nan_row)[0]


def test_distance_is_the_mahalanobis_distance_to_the_closest_mean(fitted):
    x, _ = _blobs(np.random.default_rng(3), 50)
    precision = fitted.factor.astype(np.float64) @ fitted.factor.T.astype(np.float64)
    d = x[:, None, :] - fitted.means[None].astype(np.float64)
    ref = np.sqrt(np.einsum("nkd,de,nke->nk", d, precision, d).min(axis=1))
    np.testing.assert_allclose(fitted.distance(x), ref, rtol=1e-6)


def test_unscored_training_epochs_are_left_out():
    rng = np.random.default_rng(4)
    x, y = _blobs(rng, 3000)
    y = y.copy()
    y[:1000] = -1
    x[:1000] += 100.0  # would drag the means away if they were used
    fam = Familiarity.fit(x, y, _blobs(rng, 1000)[0], 0.99)
    assert fam.n_train == 2000
    assert fam.is_unfamiliar(_blobs(rng, 5000)[0]).mean() < 0.03


def test_json_round_trip_flags_the_same_epochs(fitted):
    text = fitted.to_json()
    back = Familiarity.from_json(text)
    x, _ = _blobs(np.random.default_rng(5), 2000)
    np.testing.assert_array_equal(back.distance(x), fitted.distance(x))
    assert back.threshold == fitted.threshold and back.quantile == fitted.quantile
    data = json.loads(text)
    assert len(data["factor_tril"]) == D * (D + 1) // 2  # the lower triangle only
    assert all(len(repr(v)) <= 16 for v in data["means"])  # rounded float32 values
    with pytest.raises(ValueError, match="format"):
        Familiarity.from_json(json.dumps({**data, "format": "other"}))
    with pytest.raises(ValueError, match="do not fit"):
        Familiarity.from_json(json.dumps({**data, "factor_tril": data["factor_tril"][:-1]}))
    with pytest.raises(ValueError, match="not valid JSON"):
        Familiarity.from_json("{")


def test_fit_is_validated():
    rng = np.random.default_rng(6)
    x, y = _blobs(rng, 100)
    with pytest.raises(ValueError, match="quantile"):
        Familiarity.fit(x, y, x, quantile=1.0)
    with pytest.raises(ValueError, match="validation"):
        Familiarity.fit(x, y, x[:0])
    with pytest.raises(ValueError, match="scored"):
        Familiarity.fit(x, np.full(100, -1), x)
    with pytest.raises(ValueError, match="features must be"):
        Familiarity.fit(x, y, x).distance(x[:, :3])


def test_ledoit_wolf_shrinks_more_with_fewer_samples():
    rng = np.random.default_rng(7)
    scale = np.linspace(0.5, 3.0, 30)  # a covariance far from the identity target
    few = rng.normal(size=(20, 30)) * scale
    many = rng.normal(size=(5000, 30)) * scale
    cov_few, s_few = ledoit_wolf(few - few.mean(0))
    cov_many, s_many = ledoit_wolf(many - many.mean(0))
    assert 0 < s_many < 0.05 < 0.5 < s_few <= 1
    assert np.all(np.linalg.eigvalsh(cov_few) > 0)  # invertible although n < D
    sk = pytest.importorskip("sklearn.covariance")
    for x, cov, s in ((few, cov_few, s_few), (many, cov_many, s_many)):
        ref_cov, ref_s = sk.ledoit_wolf(x - x.mean(0), assume_centered=True)
        assert s == pytest.approx(ref_s, rel=1e-9)
        np.testing.assert_allclose(cov, ref_cov, atol=1e-12)


# ---------------------------------------------------------------------------- ECE
def test_expected_calibration_error_known_cases():
    # 10 epochs at confidence 0.8, 8 right: perfectly calibrated
    p = np.tile([0.8, 0.05, 0.05, 0.05, 0.05], (10, 1))
    y = np.array([0] * 8 + [1] * 2)
    assert expected_calibration_error(p, y) == pytest.approx(0.0)
    # all right at confidence 0.6: ECE 0.4; an unscored epoch changes nothing
    p2 = np.tile([0.6, 0.1, 0.1, 0.1, 0.1], (5, 1))
    assert expected_calibration_error(p2, [0] * 5) == pytest.approx(0.4)
    assert expected_calibration_error(np.vstack([p2, p2[:1]]), [0] * 5 + [-1]) == \
        pytest.approx(0.4)
    # two bins: half at 0.9 (all right: gap 0.1), half at 0.5 (all wrong: gap 0.5) -> 0.3
    p3 = np.array([[0.9, 0.1, 0, 0, 0]] * 4 + [[0.5, 0.5, 0, 0, 0]] * 4)
    y3 = np.array([0] * 4 + [2] * 4)
    assert expected_calibration_error(p3, y3, n_bins=10) == pytest.approx(0.3)
    assert math.isnan(expected_calibration_error(p3, [-1] * 8))
    with pytest.raises(ValueError, match="one row per label"):
        expected_calibration_error(p3, y3[:3])
    with pytest.raises(ValueError, match="labels must be"):
        expected_calibration_error(p3, [7] * 8)


# ---------------------------------------------------------------------------- temperature
def test_temperature_fit_recovers_a_known_temperature():
    pytest.importorskip("scipy")
    from training.calibrate import fit_temperature

    rng = np.random.default_rng(8)
    z = rng.normal(0, 3.0, size=(20000, 5))
    for true_t in (0.5, 2.5):
        p = softmax(z / true_t)
        y = (rng.random(len(z))[:, None] > np.cumsum(p, axis=1)).sum(1)  # drawn from p
        t = fit_temperature(lambda t: softmax(z / t), y)
        assert t == pytest.approx(true_t, rel=0.05)
    with pytest.raises(ValueError, match="no scored epoch"):
        fit_temperature(lambda t: softmax(z / t), np.full(len(z), -1))


def test_windowed_proba_is_the_sliding_window_rule(model):
    from training.calibrate import window_logits, windowed_proba

    rng = np.random.default_rng(9)
    for n in (4, 23):  # shorter than a window (padded) and longer
        feats = rng.normal(size=(n, 128)).astype(np.float32)
        cached = window_logits(model, feats)
        for t in (1.0, 1.7):
            ref = sliding_window_proba(lambda w, t=t: model.inter_logits(w, raw=True) / t, feats,
                                       L=model.window)
            np.testing.assert_allclose(windowed_proba(cached, n, t), ref, atol=1e-6)


# ---------------------------------------------------------------------------- models
def _scratch(tmp_path, names=("intra.onnx", "inter.onnx")):
    for name in names:
        shutil.copy(default_model_dir() / name, tmp_path / name)
    return tmp_path


def test_shipped_model_is_calibrated(model):
    assert model.familiarity is not None and model.familiarity.dim == 128
    assert 0.05 < model.temperature < 20 and model.temperature != 1.0


def test_a_model_without_statistics_has_the_flag_off(tmp_path):
    from conftest import uncalibrated_models

    folder = uncalibrated_models(tmp_path)
    model = ScoringModel.load(folder / "intra.onnx", folder / "inter.onnx")
    assert model.familiarity is None and model.temperature == 1.0
    dist, flags = model.familiarity_of(np.zeros((3, 128), np.float32))
    assert np.isnan(dist).all() and not flags.any()
    assert "off" in summary_line({"available": False})
    assert read_temperature({}) == 1.0 and read_temperature({"temperature": "2.5"}) == 2.5
    with pytest.raises(ValueError, match="positive"):
        read_temperature({"temperature": "0"})


def test_stamped_temperature_scales_every_softmax(tmp_path, fitted):
    pytest.importorskip("onnx")
    from export import read_metadata, update_metadata

    folder = _scratch(tmp_path)
    before = read_metadata(folder / "inter.onnx")
    update_metadata(folder / "inter.onnx", {"temperature": "2"})
    update_metadata(folder / "intra.onnx", {"temperature": "0.5"})
    after = read_metadata(folder / "inter.onnx")
    assert after == {**before, "temperature": "2"}  # every other key kept
    raw = ScoringModel.load()  # the shipped (calibrated) model: raw=True gives its own logits
    cal = ScoringModel.load(folder / "intra.onnx", folder / "inter.onnx")
    intra_only = ScoringModel.load(folder / "intra.onnx")
    assert (cal.intra_temperature, cal.inter_temperature, cal.temperature) == (0.5, 2.0, 2.0)
    assert intra_only.temperature == 0.5
    images = np.random.default_rng(10).integers(0, 256, (12, 224, 224), dtype=np.uint8)
    logits, feats = raw.epoch_outputs(images, raw=True)
    cal_logits, _ = cal.epoch_outputs(images)
    np.testing.assert_allclose(cal_logits, logits / 0.5, rtol=1e-5)
    np.testing.assert_allclose(cal.epoch_outputs(images, raw=True)[0], logits, rtol=1e-6)
    ref = sliding_window_proba(lambda w: raw.inter_logits(w, raw=True) / 2.0, feats,
                               L=raw.window)
    np.testing.assert_allclose(cal.score_images(images), ref, atol=1e-6)
    np.testing.assert_allclose(intra_only.score_images(images), softmax(logits / 0.5),
                               atol=1e-6)
    update_metadata(folder / "intra.onnx", {"familiarity": fitted.to_json()})  # 16-d, not 128
    with pytest.raises(ValueError, match="familiarity statistics are 16-d"):
        ScoringModel.load(folder / "intra.onnx", folder / "inter.onnx")
    with pytest.raises(TypeError, match="must be a string"):
        update_metadata(folder / "intra.onnx", {"temperature": 2.0})


def test_stamped_model_keeps_its_weights_beside_it(tmp_path):
    pytest.importorskip("torch")
    pytest.importorskip("onnx")
    from edge_scorer.inference.backends import file_hash
    from export import update_metadata
    from training.checkpoint import load_beside_onnx

    folder = _scratch(tmp_path, ("intra.onnx", "intra.pt"))
    digest = file_hash(folder / "intra.onnx")
    update_metadata(folder / "intra.onnx", {"temperature": "1.5"})
    load_beside_onnx(folder / "intra.onnx")  # the weights check still passes
    # the file's identity changed: TensorRT engines named by the old hash are not reused
    assert file_hash(folder / "intra.onnx") != digest


def test_epoch_logs_without_the_flag_columns_are_still_read(tmp_path):
    from edge_scorer.engine.sinks import LEGACY_LOG_COLUMNS, CsvLog, read_epoch_log

    path = tmp_path / "epochs.csv"
    rows = [",".join(LEGACY_LOG_COLUMNS),
            "0,0,final,N2,0.1,0.1,0.6,0.1,0.1,10,0.0000,0,0,,1.0",
            "1,30,provisional,W,0.6,0.1,0.1,0.1,0.1,1,0.0000,0,0,5.00,2.0"]
    path.write_text("\n".join(rows) + "\n")
    hyp, info = read_epoch_log(path)
    assert hyp.labels == ["N2", "W"] and info["status"] == ["final", "provisional"]
    assert np.isnan(info["familiarity"]).all() and not info["unfamiliar"].any()
    with pytest.raises(ValueError, match="older edge-scorer"):
        CsvLog(path)  # not appended to in the new format
