"""Relevance maps on the shipped model: LRP rules, shapes, signs, class dependence, no side
effects on the model, and the per-row / per-second aggregation."""

from __future__ import annotations

import copy
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(2)

from edge_scorer.explain.aggregate import (  # noqa: E402
    aggregate,
    heatmap,
    patch_to_pixels,
    time_bins,
    top_regions,
)
from edge_scorer.explain.epoch import covering_windows, explain_epoch  # noqa: E402
from edge_scorer.explain.lrp import (  # noqa: E402
    add_relprop,
    linear_relprop,
    matmul_relprop,
    relprop,
    trace,
)
from edge_scorer.explain.relevance import (  # noqa: E402
    METHODS,
    TorchModels,
    inter_relevance,
    intra_relevance,
)
from edge_scorer.explain.summary import ExplainedNight  # noqa: E402
from edge_scorer.inference.nets import set_save_attn  # noqa: E402
from edge_scorer.inference.scorer import ScoringModel  # noqa: E402
from edge_scorer.io.spec import load_spec  # noqa: E402
from edge_scorer.simulate import simulate_nights  # noqa: E402

F = torch.nn.functional
SPEC = load_spec("sleep-edf")


@pytest.fixture(scope="module")
def models() -> TorchModels:
    return TorchModels.load()


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> ExplainedNight:
    """A fresh simulated night (a seed the shipped model was not trained on), scored by ONNX."""
    psg, hyp = simulate_nights(tmp_path_factory.mktemp("night"), 1, seed=1000,
                               duration_h=1.0)[0]
    return ExplainedNight.from_file(psg, ScoringModel.load(), hypnogram=hyp)


# ------------------------------------------------------------------ LRP rules


def _reference_linear(x, w, r, alpha):
    """Chefer's reference formulation (autograd of the split pre-activations), written from
    the paper's rule to check the closed form used in lrp.linear_relprop."""
    def part(w1, w2, x1, x2):
        x1, x2 = x1.clone().requires_grad_(), x2.clone().requires_grad_()
        z1, z2 = F.linear(x1, w1), F.linear(x2, w2)
        s = r / (z1 + z2)
        g1 = torch.autograd.grad(z1, x1, s)[0]
        g2 = torch.autograd.grad(z2, x2, s)[0]
        return x1 * g1 + x2 * g2
    px, nx = x.clamp(min=0), x.clamp(max=0)
    pw, nw = w.clamp(min=0), w.clamp(max=0)
    return alpha * part(pw, nw, px, nx) - (alpha - 1) * part(nw, pw, px, nx)


@pytest.mark.parametrize("alpha", [1.0, 2.0])
def test_linear_rule_equals_the_reference_formulation(alpha):
    g = torch.Generator().manual_seed(0)
    x = torch.randn(3, 7, 16, generator=g, dtype=torch.float64)
    w = torch.randn(9, 16, generator=g, dtype=torch.float64)
    r = torch.rand(3, 7, 9, generator=g, dtype=torch.float64)
    got = linear_relprop(x, w, r, alpha)
    torch.testing.assert_close(got, _reference_linear(x, w, r, alpha))
    if alpha == 1.0:  # alpha-1-beta-0 conserves each sample's relevance
        torch.testing.assert_close(got.sum((1, 2)), r.sum((1, 2)))
    with pytest.raises(ValueError, match="alpha"):
        linear_relprop(x, w, r, 0.5)


def test_matmul_and_add_rules_conserve_relevance():
    g = torch.Generator().manual_seed(1)
    a = torch.rand(2, 3, 5, 4, generator=g, dtype=torch.float64) + 0.1
    b = torch.rand(2, 3, 4, 6, generator=g, dtype=torch.float64) + 0.1
    r = torch.rand(2, 3, 5, 6, generator=g, dtype=torch.float64)
    ra, rb = matmul_relprop(a, b, r)
    assert ra.shape == a.shape and rb.shape == b.shape
    torch.testing.assert_close(ra.sum(), r.sum())
    torch.testing.assert_close(rb.sum(), r.sum())
    x = torch.randn(4, 5, 8, generator=g, dtype=torch.float64)
    y = torch.randn(4, 5, 8, generator=g, dtype=torch.float64)
    r = torch.randn(4, 5, 8, generator=g, dtype=torch.float64)
    rx, ry = add_relprop(x, y, r)
    # per sample: totals conserved and split by the branches' absolute z-rule shares
    torch.testing.assert_close(rx.sum((1, 2)) + ry.sum((1, 2)), r.sum((1, 2)))
    zx, zy = (x * r / (x + y)).sum((1, 2)), (y * r / (x + y)).sum((1, 2))
    torch.testing.assert_close(rx.sum((1, 2)) / r.sum((1, 2)),
                               zx.abs() / (zx.abs() + zy.abs()))


def test_trace_is_the_models_own_forward_and_leaves_no_trace(models, night):
    intra = models.intra
    x = torch.from_numpy(night.images[:2])
    with torch.no_grad():
        ref = intra(x)
    tr = trace(intra, x)
    torch.testing.assert_close(tr.logits.detach(), ref)
    for blk, t in zip(intra.blocks, tr.blocks):
        scores = (t.q @ t.k.transpose(-2, -1)) * blk.attn.scale
        torch.testing.assert_close(scores.softmax(-1), t.attn)
    # gradients of the class score w.r.t. every attention map, against a plain backward pass
    tr.attention_gradients(tr.logits[:, 2].sum())
    twin = copy.deepcopy(intra)
    layers = set_save_attn(twin, True)
    twin(x)[:, 2].sum().backward()
    for t, layer in zip(tr.blocks, layers):
        torch.testing.assert_close(t.attn_grad, layer.attn_grad)
    # the model itself is as before: no hooks, no kept maps, no parameter gradients
    for mod in intra.modules():
        assert not mod._forward_hooks
    assert all(not b.attn.save_attn and b.attn.attn_map is None for b in intra.blocks)
    assert all(p.grad is None for p in intra.parameters())
    with torch.no_grad():
        torch.testing.assert_close(intra(x), ref)
    cams = relprop(intra, tr, F.one_hot(torch.tensor([2, 2]), 5).double())
    assert [c.shape for c in cams] == [t.attn.shape for t in tr.blocks]


# ------------------------------------------------------------------ maps


@pytest.mark.parametrize("method", METHODS)
def test_intra_maps_have_the_grid_shape_and_are_non_negative(models, night, method):
    res = intra_relevance(models.intra, night.images[10:14], methods=method)
    grid = res.maps[method]
    g = models.intra.grid  # 224 / patch: 7 for the shipped model's 32-px patches
    assert grid.shape == (4, g, g) and grid.dtype == np.float32
    assert np.isfinite(grid).all() and (grid >= 0).all()
    assert (grid.reshape(4, -1).max(1) > 0).all()
    np.testing.assert_array_equal(res.targets, res.logits.argmax(1))
    if method == "rollout":  # rows of the rollout are distributions: patches get < 1 in all
        assert (grid.sum((1, 2)) < 1).all()


def test_class_specific_maps_change_with_the_target_and_rollout_does_not(models, night):
    images = night.images[20:24]
    a = intra_relevance(models.intra, images, target=0).maps
    b = intra_relevance(models.intra, images, target=2).maps
    for m in ("chefer", "gradient"):
        rel = np.abs(a[m] - b[m]).sum((1, 2)) / a[m].sum((1, 2))
        assert (rel > 0.05).all(), (m, rel)
    np.testing.assert_array_equal(a["rollout"], b["rollout"])


def test_inter_relevance_of_a_window(models, night):
    feats = night.features[:14].astype(np.float32)
    wins = np.stack([feats[i:i + 10] for i in range(4)])
    pos = np.array([9, 8, 7, 6])
    res = inter_relevance(models.inter, wins, pos)
    for m in METHODS:
        rel = res.maps[m]
        assert rel.shape == (4, 10) and (rel >= 0).all()
        if m == "rollout":
            np.testing.assert_allclose(rel.sum(1), 1.0, atol=1e-5)
        else:  # the identity of the rollout: each position keeps itself (residual path)
            assert (rel[np.arange(4), pos] >= 1.0 - 1e-6).all()
    other = inter_relevance(models.inter, wins, 0, methods="chefer").maps["chefer"]
    assert not np.allclose(other, res.maps["chefer"])
    with pytest.raises(ValueError, match="position"):
        inter_relevance(models.inter, wins, 10)
    with pytest.raises(TypeError, match="InterEpochTransformer"):
        inter_relevance(models.intra, wins, 0)


def test_explain_epoch_gives_the_scored_stage_and_aggregates(models, night):
    i = 25
    ex = explain_epoch(models, night.images[i], SPEC, features=night.features, index=i)
    # the default target is the final stage, equal to the ONNX engine's sliding-window stage
    assert ex.stage == ex.target == int(night.stages[i])
    g = models.intra.grid  # 224 / patch: 7 for the shipped model's 32-px patches
    assert ex.grid.shape == (g, g) and ex.heatmap.shape == (224, 224)
    assert ex.heatmap.min() == 0.0 and ex.heatmap.max() == pytest.approx(1.0)
    a = ex.aggregates
    assert a.row_names == SPEC.row_names
    assert a.row_share.sum() == pytest.approx(1.0)
    assert len(a.second_share) == 30 and a.second_share.sum() == pytest.approx(1.0)
    assert a.row_second.shape == (4, 30)
    inter = ex.inter
    windows, pos = covering_windows(night.n_epochs, i, 10)
    assert inter.n_windows == len(windows) == 10
    assert (windows[np.arange(10), pos] == i).all() and (windows[:, 0] + pos == i).all()
    np.testing.assert_array_equal(inter.epochs, np.arange(i - 9, i + 10))
    assert inter.share.sum() == pytest.approx(1.0)
    assert inter.context_share[inter.epochs == i] == 0
    np.testing.assert_allclose(inter.probabilities, night.proba[i], atol=1e-4)
    json.dumps(ex.to_dict())
    assert any(name in line for line in ex.describe() for name in SPEC.row_names)
    other = explain_epoch(models, night.images[i], SPEC, target=(ex.target + 1) % 5)
    assert other.target == (ex.target + 1) % 5 and other.inter is None


def test_scoring_only_around_the_explained_epochs_gives_the_same_numbers(night):
    part = ExplainedNight.from_file(night.source, ScoringModel.load(), only=[25, 60])
    assert part.valid.sum() == 2 * 19 and part.valid[[16, 34, 51, 69]].all()
    np.testing.assert_allclose(part.proba[part.valid], night.proba[part.valid], atol=1e-9)
    near = np.isfinite(part.features[:, 0])
    assert near[7:79].all() and not near[:7].any() and not near[79:].any()
    np.testing.assert_allclose(part.features[near], night.features[near], atol=1e-6)
    assert np.isnan(part.proba[~part.valid]).all()
    with pytest.raises(ValueError, match="outside the night"):
        ExplainedNight.from_file(night.source, ScoringModel.load(), only=[night.n_epochs])


def test_bad_input_is_refused_with_the_fix(models, night):
    with pytest.raises(ValueError, match="unknown relevance method"):
        intra_relevance(models.intra, night.images[:1], methods="saliency")
    with pytest.raises(ValueError, match="target class"):
        intra_relevance(models.intra, night.images[:1], target=7)
    with pytest.raises(ValueError, match="render the epoch"):
        explain_epoch(models, night.images[0][:100], SPEC)
    with pytest.raises(ValueError, match="index"):
        explain_epoch(models, night.images[0], SPEC, features=night.features)
    with pytest.raises(ValueError, match="spec"):
        explain_epoch(models, night.images[0], load_spec("shhs"))
    twin = copy.deepcopy(models.intra).train()
    with pytest.raises(ValueError, match="eval"):
        intra_relevance(twin, night.images[:1])


# ------------------------------------------------------------------ aggregation


def test_aggregation_follows_the_rows_and_the_seconds():
    grid = np.zeros((14, 14))
    grid[8:12, 0] = 1.0  # pixel rows 128-191 = the EOG band; pixel columns 0-15 = 0-2.14 s
    pix = patch_to_pixels(grid, SPEC)
    assert pix.shape == (224, 224) and pix.sum() == pytest.approx(grid.sum())
    a = aggregate(grid, SPEC)
    np.testing.assert_allclose(a.row_share, [0, 0, 1, 0], atol=1e-12)
    assert a.row_density[2] == pytest.approx(224 / 64)
    assert a.second_share[:2].sum() + a.second_share[2] == pytest.approx(1.0)
    assert a.second_share[2] == pytest.approx((16 * 30 / 224 - 2) / (16 * 30 / 224))
    assert a.second_share[3:].sum() == 0
    edges, overlap = time_bins(SPEC, 1.0)
    assert len(edges) == 31 and np.allclose(overlap.sum(1), 1.0)
    top = top_regions(a, span_s=4, k=1)[0]
    assert top["row"] == "EOG horizontal" and top["start_s"] == 0 and top["share"] == 1.0
    h = heatmap(grid, SPEC)
    assert h.max() == pytest.approx(1.0) and h[150, 5] > h[150, 100] == 0
    with pytest.raises(ValueError, match="tile"):
        aggregate(np.ones((13, 14)), SPEC)
