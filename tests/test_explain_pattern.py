"""Relevance lands on the row carrying a stage's defining pattern, not on a row of pure noise.

The shipped model was trained on simulated nights. Wake (W) is defined (AASM) by the alpha
rhythm over the occipital region: in the simulator alpha is strongest on ``EEG Pz-Oz``
(occipital gain 1.0). Here, in wake epochs of a fresh simulated night, the ``EMG submental`` row
is replaced by pure noise: its own samples in random order (same amplitudes, no structure).
The class-specific methods must put more relevance (per pixel of band height) on the
alpha-carrying ``EEG Pz-Oz`` row than on the noise row, on average and in most epochs.

Why not N2 and spindles: for this model N2 rests on the quiet EOG and the EEG's delta content,
and removing the sigma band (spindles) barely changes p(N2) (see docs/EXPLAIN.md). Both the
relevance maps and the occlusion analysis say so, so a spindle test would test a property the
model does not have.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(2)

from edge_scorer.dsp.render import render_epochs  # noqa: E402
from edge_scorer.explain.aggregate import aggregate  # noqa: E402
from edge_scorer.explain.occlusion import onnx_proba_fn  # noqa: E402
from edge_scorer.explain.relevance import TorchModels, intra_relevance  # noqa: E402
from edge_scorer.explain.summary import ExplainedNight  # noqa: E402
from edge_scorer.inference.scorer import ScoringModel  # noqa: E402
from edge_scorer.simulate import simulate_nights  # noqa: E402
from edge_scorer.stages import Stage  # noqa: E402

PATTERN_ROW, NOISE_ROW = 1, 3  # EEG Pz-Oz (alpha), EMG submental


@pytest.fixture(scope="module")
def wake_with_noise_row(tmp_path_factory):
    """Wake epochs of a fresh night with the EMG row replaced by time-shuffled samples."""
    psg, hyp = simulate_nights(tmp_path_factory.mktemp("night"), 1, seed=1000,
                               duration_h=2.0)[0]
    scoring = ScoringModel.load()
    night = ExplainedNight.from_file(psg, scoring, hypnogram=hyp)
    spec = night.spec
    assert spec.rows[PATTERN_ROW].name == "EEG Pz-Oz"
    assert spec.rows[NOISE_ROW].name == "EMG submental"
    wake = np.flatnonzero((night.true_stages == Stage.W)
                          & (night.intra_logits.argmax(1) == Stage.W))
    assert len(wake) >= 12, "the simulated night should hold wake epochs the model scores W"
    picks = wake[np.linspace(0, len(wake) - 1, 12).astype(int)]
    rng = np.random.default_rng(0)
    epochs = night.epochs[picks].astype(np.float64)
    for e in epochs:
        e[NOISE_ROW] = rng.permutation(e[NOISE_ROW])
    images = render_epochs(epochs, spec)
    still_wake = onnx_proba_fn(scoring)(images).argmax(1) == Stage.W
    assert still_wake.sum() >= 9, "the noise row should not change most wake decisions"
    return images[still_wake], spec


@pytest.mark.parametrize("method", ["chefer", "gradient"])
def test_relevance_prefers_the_alpha_row_over_a_noise_row(wake_with_noise_row, method):
    images, spec = wake_with_noise_row
    models = TorchModels.load()
    grids = intra_relevance(models.intra, images, target=int(Stage.W), methods=method)
    density = np.array([aggregate(g, spec).row_density for g in grids.maps[method]])
    pattern, noise = density[:, PATTERN_ROW], density[:, NOISE_ROW]
    assert pattern.mean() > 1.5 * noise.mean(), (pattern.mean(), noise.mean())
    assert np.mean(pattern > noise) >= 0.75, (pattern, noise)
