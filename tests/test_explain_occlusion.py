"""STQS occlusion analyses: the band-stop removes the band and nothing else, the masks hit the
right rows and windows, and the analyses run on the ONNX engine."""

from __future__ import annotations

import json

import numpy as np
import pytest
from scipy import signal

from edge_scorer.dsp.render import render_epochs
from edge_scorer.explain.occlusion import (
    BANDS,
    band_rows,
    modalities,
    occlusion_analysis,
    onnx_proba_fn,
    remove_band,
)
from edge_scorer.inference.scorer import ScoringModel
from edge_scorer.io.spec import load_spec
from edge_scorer.simulate import simulate_nights

SPEC = load_spec("sleep-edf")
SF = SPEC.sfreq


def _band_power_db(x: np.ndarray, lo: float, hi: float) -> float:
    f, p = signal.welch(x, fs=SF, nperseg=512)
    return 10 * np.log10(p[(f >= lo) & (f <= hi)].mean())


def test_band_stop_removes_the_band_and_keeps_the_rest():
    x = np.random.default_rng(0).normal(0, 10, int(120 * SF))
    y = remove_band(x, BANDS["sigma"], SF)
    assert _band_power_db(x, 12.5, 15.5) - _band_power_db(y, 12.5, 15.5) > 20
    for lo, hi in ((1.0, 3.0), (5.0, 9.0), (20.0, 30.0)):
        assert abs(_band_power_db(x, lo, hi) - _band_power_db(y, lo, hi)) < 1.0
    # zero phase: a rhythm outside the band comes out in place, edges included, when the
    # neighbouring signal is given as context
    t = np.arange(int(90 * SF)) / SF
    rhythm = 20 * np.sin(2 * np.pi * 2.0 * t)
    mid = slice(int(30 * SF), int(60 * SF))
    out = remove_band(rhythm[mid], BANDS["sigma"], SF,
                      (rhythm[:int(30 * SF)], rhythm[int(60 * SF):]))
    assert np.abs(out - rhythm[mid]).max() < 0.02 * 20
    with pytest.raises(ValueError, match="band"):
        remove_band(x, (8.0, 4.0), SF)


def test_modalities_and_waveform_rows_of_the_specs():
    assert modalities(SPEC) == {"EEG": [0, 1], "EOG": [2], "EMG": [3]}
    assert band_rows(SPEC) == [0, 1, 2]  # the EMG envelope has no waveform to filter
    shhs = load_spec("shhs")
    assert list(modalities(shhs)) == ["EEG", "EOG", "EMG", "ECG", "RESP", "SPO2"]
    assert [shhs.rows[i].type for i in band_rows(shhs)] == ["EEG"] * 2 + ["EOG"] * 2 + [
        "EMG", "ECG"]


def _lit_pixels_per_row(images: np.ndarray) -> np.ndarray:
    """A transparent, model-agnostic scorer: lit pixels in each row's band (one score per row),
    so each occlusion's effect on each row can be predicted exactly."""
    bands = [slice(o, o + r.height) for o, r in zip(SPEC.row_offsets, SPEC.rows)]
    return np.stack([(images[:, b] > 0).sum((1, 2)) for b in bands], axis=1).astype(float)


@pytest.fixture(scope="module")
def epoch() -> np.ndarray:
    rng = np.random.default_rng(3)
    n = SPEC.epoch_samples
    t = np.arange(n) / SF
    return np.stack([rng.normal(0, 15, n), 20 * np.sin(2 * np.pi * 10 * t) + rng.normal(0, 5, n),
                     rng.normal(0, 30, n), 5 + rng.random(n)])


def test_masks_hit_the_rows_and_windows_they_name(epoch):
    occ = occlusion_analysis(epoch, SPEC, _lit_pixels_per_row, target=1)  # EEG Pz-Oz score
    assert occ.time_groups == ["all rows", *SPEC.row_names]
    np.testing.assert_allclose(occ.time_starts_s, np.arange(29.0))
    assert occ.time_drop.shape == (5, 29)
    g = occ.time_groups.index
    assert (occ.time_drop[g("EEG Pz-Oz")] > 0).all()         # a flat 2-s stretch: fewer pixels
    np.testing.assert_array_equal(occ.time_drop[g("all rows")], occ.time_drop[g("EEG Pz-Oz")])
    for other in ("EEG Fpz-Cz", "EOG horizontal", "EMG submental"):
        assert (occ.time_drop[g(other)] == 0).all()           # other rows: Pz-Oz untouched
    assert occ.band_groups == ["EEG", "EOG", "EEG Fpz-Cz", "EEG Pz-Oz"]
    assert occ.band_names == list(BANDS)
    b = occ.band_groups.index
    alpha = occ.band_names.index("alpha")
    assert occ.band_drop[b("EEG Pz-Oz"), alpha] > 0           # the 10-Hz rhythm is removed
    assert (occ.band_drop[b("EOG")] == 0).all() and (occ.band_drop[b("EEG Fpz-Cz")] == 0).all()
    assert occ.modality_names == ["EEG", "EOG", "EMG"]
    assert occ.modality_drop[0] > 0 and (occ.modality_drop[1:] == 0).all()
    gap = occlusion_analysis(epoch, SPEC, _lit_pixels_per_row, target=1, fill="gap",
                             per_row=False)
    assert gap.time_groups == ["all rows"] and gap.band_groups == ["EEG", "EOG"]
    assert gap.modality_proba[0, 0] == 0  # a masked row draws nothing at all
    with pytest.raises(ValueError, match="fill"):
        occlusion_analysis(epoch, SPEC, _lit_pixels_per_row, fill="noise")
    with pytest.raises(ValueError, match="n_rows, epoch_samples"):
        occlusion_analysis(epoch[:, :100], SPEC, _lit_pixels_per_row)


def test_occlusion_runs_on_the_onnx_engine(tmp_path):
    from edge_scorer.explain.summary import ExplainedNight

    psg, hyp = simulate_nights(tmp_path, 1, seed=1001, duration_h=0.5)[0]
    scoring = ScoringModel.load()
    night = ExplainedNight.from_file(psg, scoring, hypnogram=hyp)
    i = night.n_epochs // 2
    proba_fn = onnx_proba_fn(scoring)
    before, after = night.context(i)
    occ = occlusion_analysis(night.epochs[i], night.spec, proba_fn, before=before, after=after)
    np.testing.assert_allclose(occ.baseline,
                               proba_fn(render_epochs(night.epochs[i:i + 1], night.spec))[0])
    assert occ.target == int(occ.baseline.argmax())
    for p in (occ.time_proba, occ.band_proba, occ.modality_proba):
        np.testing.assert_allclose(p.sum(-1), 1.0, atol=1e-6)
    d = json.loads(json.dumps(occ.to_dict()))
    assert set(d["modality_drop"]) == {"EEG", "EOG", "EMG"}
    assert len(d["time_drop"]["all rows"]) == 29
