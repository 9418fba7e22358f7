"""Tests of the hand-written PyTorch models (``edge_scorer.inference.nets``) and LineMix;
skipped without torch."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torch.set_num_threads(2)

from edge_scorer.inference.nets import (  # noqa: E402
    STQS,
    create_model,
    list_models,
    model_from_cfg,
    set_save_attn,
    sliding_window_proba,
)
from edge_scorer.io.spec import load_spec  # noqa: E402
from training.linemix import class_weights, linemix, linemix_loss  # noqa: E402

F = torch.nn.functional


def _n_params(model: torch.nn.Module) -> int:
    return sum(p.numel() for p in model.parameters())


def _images(n: int, seed: int = 0, size: int = 224) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, 256, (n, size, size), dtype=torch.uint8, generator=g)


# ---------------------------------------------------------------- registry and shapes


def test_list_models() -> None:
    assert list_models() == sorted([
        "vit_mini", "vit_mini_patch32", "vit_tiny", "vit_small_patch16", "vit_base_patch16",
        "inter_base", "inter_tiny", "inter_mini", "stqs",
    ])
    with pytest.raises(ValueError, match="unknown model"):
        create_model("vit_huge")
    with pytest.raises(TypeError, match="unknown ViTConfig field"):
        create_model("vit_tiny", dims=3)
    with pytest.raises(ValueError, match="num_heads"):
        create_model("vit_tiny", num_heads=5)
    with pytest.raises(ValueError, match="patch_size"):
        create_model("vit_tiny", patch_size=15)


@pytest.mark.parametrize(("name", "dim", "depth", "heads"), [
    ("vit_mini", 128, 4, 4), ("vit_mini_patch32", 128, 4, 4), ("vit_tiny", 192, 4, 3),
    ("vit_small_patch16", 384, 12, 6),
])
def test_vit_presets_shapes(name: str, dim: int, depth: int, heads: int) -> None:
    model = create_model(name).eval()
    assert (model.cfg["embed_dim"], model.cfg["depth"], model.cfg["num_heads"]) == (
        dim, depth, heads)
    assert model.cfg["preset"] == name and model.num_features == dim
    x = _images(2)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert feats.shape == (2, dim)
    assert logits.shape == (2, 5)
    torch.testing.assert_close(model.forward_head(feats), logits)


def test_vit_base_on_meta_device() -> None:
    with torch.device("meta"):
        model = create_model("vit_base_patch16")
        feats = model.forward_features(torch.empty(2, 1, 224, 224))
        logits = model.forward_head(feats)
    # ViT-B/16 is 86.6M with a 3-channel stem and 1000 classes; 1 channel and 5 classes: 85.4M
    assert 85.0e6 < _n_params(model) < 86.0e6
    assert feats.shape == (2, 768) and logits.shape == (2, 5)
    assert len(model.blocks) == 12 and model.blocks[0].attn.num_heads == 12


@pytest.mark.parametrize(("name", "in_dim"), [("inter_base", 768), ("inter_tiny", 192)])
def test_inter_presets_shapes(name: str, in_dim: int) -> None:
    model = create_model(name).eval()
    c = model.config
    if name == "inter_base":  # SleepXViT's inter-epoch transformer
        assert (c.seq_len, c.depth, c.num_heads, c.mlp_ratio, c.act, c.qkv_bias) == (
            10, 4, 8, 0.5, "relu", False)
        assert (c.drop_rate, c.attn_drop_rate, c.ln_eps) == (0.2, 0.2, 1e-5)
        assert model.blocks[0].mlp.fc1.out_features == 384
        assert model.blocks[0].attn.qkv.bias is None
        assert isinstance(model.blocks[0].mlp.act, torch.nn.ReLU)
    x = torch.randn(3, 10, in_dim)
    with torch.no_grad():
        feats = model.forward_features(x)
        logits = model(x)
    assert feats.shape == (3, 10, in_dim) and logits.shape == (3, 10, 5)
    # one shared head applied at every position
    torch.testing.assert_close(logits[:, 4], model.head(feats[:, 4]))
    assert create_model(name, in_dim=384)(torch.randn(1, 10, 384)).shape == (1, 10, 5)


def test_inter_label_per_position_uses_context() -> None:
    model = create_model("inter_tiny").eval()
    x = torch.randn(2, 10, 192)
    with torch.no_grad():
        base = model(x)
        x2 = x.clone()
        x2[:, 0] = torch.randn(2, 192)
        moved = model(x2)
        short = model(x[:, :4])
    assert (moved[:, 7] - base[:, 7]).abs().max() > 1e-4  # position 7 sees epoch 0
    assert short.shape == (2, 4, 5)
    with pytest.raises(ValueError, match="longer than seq_len"):
        model(torch.randn(1, 11, 192))
    with pytest.raises(ValueError, match="in_dim"):
        model(torch.randn(1, 10, 100))


# ---------------------------------------------------------------- ViT input and learning


def test_vit_input_forms_and_normalisation() -> None:
    model = create_model("vit_tiny", depth=1).eval()
    u8 = _images(2, seed=1)
    as_float = u8.float().unsqueeze(1)
    torch.testing.assert_close(model.prepare(u8), (as_float / 255.0 - 0.5) / 0.5)
    with torch.no_grad():
        torch.testing.assert_close(model(u8), model(as_float))
        torch.testing.assert_close(model(u8), model(u8.unsqueeze(-1)))  # channel-last
    with pytest.raises(ValueError, match="1-channel 224x224"):
        model(torch.zeros(2, 1, 200, 224))
    rgb = create_model("vit_tiny", depth=1, in_chans=3, mean=[0.1, 0.2, 0.3], std=[1, 2, 3])
    assert rgb(torch.zeros(2, 224, 224, 3, dtype=torch.uint8)).shape == (2, 5)


def _pattern_batch(n_per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Dim noise images; class k has bright vertical traces every k + 2 px in a middle band."""
    g = torch.Generator().manual_seed(seed)
    labels = torch.arange(5).repeat_interleave(n_per_class)
    images = torch.randint(0, 60, (len(labels), 224, 224), dtype=torch.uint8, generator=g)
    for i, k in enumerate(labels.tolist()):
        images[i, 64:160, :: k + 2] = 255
    return images, labels


def test_vit_tiny_learns_a_pattern() -> None:
    torch.manual_seed(0)
    model = create_model("vit_tiny")
    x, y = _pattern_batch(2, seed=0)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3, weight_decay=1e-5)

    def eval_loss() -> float:
        model.eval()
        with torch.no_grad():
            return float(F.cross_entropy(model(x), y))

    before = eval_loss()
    model.train()
    for _ in range(10):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    after = eval_loss()
    assert after < 0.5 * before, (before, after)


# ---------------------------------------------------------------- attention maps


@pytest.mark.parametrize("name", ["vit_tiny", "inter_tiny"])
def test_attention_maps_and_gradients(name: str) -> None:
    model = create_model(name).eval()
    x = _images(2) if name == "vit_tiny" else torch.randn(2, 10, 192)
    n_tokens = 197 if name == "vit_tiny" else 10
    layers = set_save_attn(model, True)
    assert len(layers) == len(model.blocks) and all(b.attn.save_attn for b in model.blocks)
    logits = model(x)
    score = logits[..., 2].sum()
    score.backward()
    for layer in layers:
        amap, grad = layer.attn_map, layer.attn_grad
        assert amap.shape == (2, layer.num_heads, n_tokens, n_tokens)
        torch.testing.assert_close(amap.sum(-1), torch.ones(amap.shape[:-1]))
        assert grad is not None and grad.shape == amap.shape
        assert grad.abs().sum() > 0
    set_save_attn(model, False)
    assert all(layer.attn_map is None for layer in layers)
    model(x)
    assert all(layer.attn_map is None for layer in layers)


# ---------------------------------------------------------------- sliding windows


def test_sliding_window_proba_by_hand() -> None:
    # 4 epochs, L=3: windows [0,1,2] and [1,2,3]; coverage counts 1, 2, 2, 1.
    feats = np.array([[0.0], [1.0], [2.0], [3.0]])

    def by_position(w: np.ndarray) -> np.ndarray:  # one-hot on class = window position
        out = np.full((w.shape[0], w.shape[1], 5), -1e3)
        out[:, np.arange(w.shape[1]), np.arange(w.shape[1])] = 1e3
        return out

    sums = sliding_window_proba(by_position, feats, L=3, normalize=False)
    expected = np.array([
        [1, 0, 0, 0, 0],  # epoch 0: window 0 position 0
        [1, 1, 0, 0, 0],  # epoch 1: window 0 position 1, window 1 position 0
        [0, 1, 1, 0, 0],  # epoch 2: window 0 position 2, window 1 position 1
        [0, 0, 1, 0, 0],  # epoch 3: window 1 position 2
    ], dtype=float)
    np.testing.assert_allclose(sums, expected, atol=1e-12)
    np.testing.assert_allclose(
        sliding_window_proba(by_position, feats, L=3), expected / [[1], [2], [2], [1]])

    def uniform(w: np.ndarray) -> np.ndarray:
        return np.zeros((w.shape[0], w.shape[1], 5))

    np.testing.assert_allclose(
        sliding_window_proba(uniform, feats, L=3, normalize=False).sum(1), [1, 2, 2, 1])

    def own_stage(w: np.ndarray) -> np.ndarray:  # logits favour class = epoch index
        return 5.0 * np.eye(5)[w[..., 0].astype(int)]

    p = sliding_window_proba(own_stage, feats, L=3, batch_size=1)
    np.testing.assert_array_equal(p.argmax(1), [0, 1, 2, 3])
    np.testing.assert_allclose(p.sum(1), 1.0)


def test_sliding_window_short_night_pads_with_last_epoch() -> None:
    seen = []

    def record(w: np.ndarray) -> np.ndarray:
        seen.append(w.copy())
        return np.zeros((w.shape[0], w.shape[1], 5))

    feats = np.array([[7.0, 1.0], [8.0, 2.0]])
    sums = sliding_window_proba(record, feats, L=4, normalize=False)
    assert len(seen) == 1 and seen[0].shape == (1, 4, 2)
    np.testing.assert_array_equal(seen[0][0, :, 0], [7, 8, 8, 8])
    np.testing.assert_allclose(sums, np.full((2, 5), 0.2))  # each epoch covered once
    with pytest.raises(ValueError, match="empty"):
        sliding_window_proba(record, np.zeros((0, 2)), L=4)


def test_sliding_window_with_inter_model() -> None:
    model = create_model("inter_tiny").eval()
    feats = torch.randn(23, 192)
    p = sliding_window_proba(model, feats, L=10)
    p_small_batches = sliding_window_proba(model, feats, L=10, batch_size=3)
    assert p.shape == (23, 5)
    np.testing.assert_allclose(p.sum(1), 1.0, rtol=1e-6)
    np.testing.assert_allclose(p, p_small_batches, rtol=1e-5, atol=1e-6)
    with torch.no_grad():  # epoch 0 is covered by window 0 only
        first = torch.softmax(model(feats[None, :10])[0, 0], -1).numpy()
    np.testing.assert_allclose(p[0], first, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------- STQS


def test_stqs_with_sleep_edf_spec() -> None:
    spec = load_spec("sleep-edf")
    model = create_model("stqs").eval()
    assert model.config.modalities == ((0, 1), (2,), (3,))
    assert model.config.modality_names == ("EEG", "EOG", "EMG")
    assert (model.config.n_rows, model.config.epoch_samples) == (4, spec.epoch_samples) == (
        4, 3000)
    assert model.branches[0].spatial[0].out_channels == 2  # filters = channels of EEG
    assert model.branches[0].temporal[1].kernel_size == (64,)
    # 3000 -> pool 16 -> 187 -> pool 16 -> 11; 8 filters x 11 x 3 modalities
    assert model.epoch_dim == 3 * 8 * 11
    x = torch.randn(2, 8, 4, 3000) * 20
    with torch.no_grad():
        e = model.epoch_features(x)
        feats = model.forward_features(x)
        logits = model(x)
    assert e.shape == (2, 8, 264) and feats.shape == (2, 8, 256) and logits.shape == (2, 8, 5)
    torch.testing.assert_close(model.forward_head(feats), logits)
    # the EOG row (2) feeds the EOG branch only
    x2 = x.clone()
    x2[:, :, 2] = 0
    with torch.no_grad():
        e2 = model.epoch_features(x2)
    changed = (e2 - e).abs().amax(dim=(0, 1)) > 0
    assert not changed[:88].any() and changed[88:176].any() and not changed[176:].any()
    with pytest.raises(ValueError, match=r"\(B, S, 4, 3000\)"):
        model(torch.randn(2, 8, 4, 3750))


def test_stqs_explicit_modalities_and_other_spec() -> None:
    shhs = STQS(spec=load_spec("shhs"))
    assert shhs.config.modalities == ((0, 1), (2, 3), (4,))
    assert (shhs.config.n_rows, shhs.config.epoch_samples) == (10, 3750)
    model = create_model("stqs", modalities=[[0, 1, 2], [3]], residual=True).eval()
    assert model.config.modality_names == ("mod0", "mod1") and model.residual is not None
    assert model(torch.randn(1, 3, 4, 3000)).shape == (1, 3, 5)
    with pytest.raises(ValueError, match="outside"):
        create_model("stqs", modalities=[[0, 4]])


# ---------------------------------------------------------------- LineMix


def test_linemix_swaps_one_band() -> None:
    b = 6
    images = torch.arange(b, dtype=torch.uint8)[:, None, None].expand(b, 224, 224).clone()
    labels = torch.tensor([0, 1, 2, 3, 4, 0])
    g = torch.Generator().manual_seed(3)
    mixed, y_a, y_b, lam = linemix(images, labels, generator=g)
    assert lam == pytest.approx(16 / 224)
    diff_rows = (mixed != images).any(dim=2).any(dim=0).nonzero().ravel()
    assert len(diff_rows) > 0
    top = int(diff_rows[0]) // 16 * 16
    assert diff_rows.tolist() == list(range(top, top + 16))[: len(diff_rows)] and top % 16 == 0
    outside = torch.ones(224, dtype=torch.bool)
    outside[top:top + 16] = False
    torch.testing.assert_close(mixed[:, outside], images[:, outside])
    source = mixed[:, top, 0].long()  # which image each band came from
    assert sorted(source.tolist()) == list(range(b))  # a permutation of the batch
    assert (mixed[:, top:top + 16] == source[:, None, None].to(torch.uint8)).all()
    torch.testing.assert_close(y_a, labels)
    torch.testing.assert_close(y_b, labels[source])
    again = linemix(images, labels, generator=torch.Generator().manual_seed(3))
    torch.testing.assert_close(again[0], mixed)
    assert torch.equal(images[:, 0, 0], torch.arange(b, dtype=torch.uint8))  # input untouched
    four_d = linemix(images.unsqueeze(1).float(), labels, generator=g)[0]
    assert four_d.shape == (b, 1, 224, 224)
    with pytest.raises(ValueError, match="multiple of band_px"):
        linemix(torch.zeros(2, 200, 224), labels[:2])


def test_linemix_loss_and_class_weights() -> None:
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(8, 5, generator=g)
    y_a = torch.tensor([0, 1, 2, 3, 4, 0, 1, 2])
    y_b = torch.tensor([4, 3, 2, 1, 0, 4, 3, 2])
    lam = 16 / 224
    expected = (1 - lam) * F.cross_entropy(logits, y_a) + lam * F.cross_entropy(logits, y_b)
    torch.testing.assert_close(linemix_loss(logits, y_a, y_b, lam), expected)
    torch.testing.assert_close(linemix_loss(logits, y_a, y_b, 0.0), F.cross_entropy(logits, y_a))
    w = torch.tensor([1.0, 2.0, 1.0, 3.0, 0.5])
    wexp = ((1 - lam) * F.cross_entropy(logits, y_a, weight=w)
            + lam * F.cross_entropy(logits, y_b, weight=w))
    torch.testing.assert_close(linemix_loss(logits, y_a, y_b, lam, weight=w), wexp)
    y_unscored = y_a.clone()
    y_unscored[0] = -1
    torch.testing.assert_close(linemix_loss(logits, y_unscored, y_unscored, lam),
                               F.cross_entropy(logits[1:], y_a[1:]))
    seq = torch.randn(2, 10, 5, generator=g)
    ys = torch.randint(0, 5, (2, 10), generator=g)
    torch.testing.assert_close(linemix_loss(seq, ys, ys, 0.0),
                               F.cross_entropy(seq.reshape(20, 5), ys.reshape(20)))
    weights = class_weights(np.array([0, 0, 0, 2, -1, 4]))
    np.testing.assert_allclose(weights.numpy(), [5 / 15, 0, 5 / 5, 0, 5 / 5])


# ---------------------------------------------------------------- ONNX and checkpoints


@pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript:DeprecationWarning")
@pytest.mark.filterwarnings("ignore:The feature will be removed:DeprecationWarning")
@pytest.mark.parametrize("name", ["vit_tiny", "inter_tiny"])
def test_onnx_export_matches_torch(name: str, tmp_path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    model = create_model(name).eval()
    if name == "vit_tiny":
        example, x = _images(2).float().unsqueeze(1), _images(3, seed=5).float().unsqueeze(1)
    else:
        example, x = torch.randn(2, 10, 192), torch.randn(3, 10, 192)
    path = tmp_path / f"{name}.onnx"
    torch.onnx.export(model, (example,), str(path), input_names=["input"],
                      output_names=["logits"], opset_version=17, dynamo=False,
                      dynamic_axes={"input": {0: "batch"}, "logits": {0: "batch"}})
    graph = onnx.load(str(path))
    onnx.checker.check_model(graph)
    assert {op.domain for op in graph.graph.node} <= {"", "ai.onnx"}  # no custom ops
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    out = session.run(None, {"input": x.numpy()})[0]  # batch 3, exported with batch 2
    with torch.no_grad():
        ref = model(x).numpy()
    assert out.shape == ref.shape
    assert np.abs(out - ref).max() < 1e-4


@pytest.mark.parametrize("name", ["vit_tiny", "inter_tiny", "stqs"])
def test_state_dict_round_trip(name: str, tmp_path) -> None:
    torch.manual_seed(1)
    model = create_model(name, depth=1) if name == "vit_tiny" else create_model(name)
    model.eval()
    path = tmp_path / "ckpt.pt"
    torch.save({"cfg": model.cfg, "state_dict": model.state_dict()}, path)
    ckpt = torch.load(path, weights_only=True)
    rebuilt = model_from_cfg(ckpt["cfg"])
    rebuilt.load_state_dict(ckpt["state_dict"])
    rebuilt.eval()
    assert rebuilt.cfg == model.cfg
    x = {"vit_tiny": _images(2), "inter_tiny": torch.randn(2, 10, 192),
         "stqs": torch.randn(1, 8, 4, 3000)}[name]
    with torch.no_grad():
        torch.testing.assert_close(rebuilt(x), model(x))
    with pytest.raises(ValueError, match="unknown to"):
        model_from_cfg({**model.cfg, "wings": 2})


def test_a_preset_name_records_overrides_that_change_the_shape() -> None:
    assert create_model("vit_tiny", drop_path_rate=0.3).cfg["preset"] == "vit_tiny"
    assert create_model("vit_tiny", mean=[0.5]).cfg["preset"] == "vit_tiny"  # list == tuple
    model = create_model("vit_tiny", depth=1, embed_dim=48)
    assert model.cfg["preset"] == "vit_tiny+depth=1+embed_dim=48"
    assert model_from_cfg(model.cfg).cfg["preset"] == "vit_tiny+depth=1+embed_dim=48"
    assert create_model("inter_tiny", in_dim=128).cfg["preset"] == "inter_tiny+in_dim=128"
    assert create_model("inter_mini", in_dim=128).cfg["preset"] == "inter_mini"


def test_the_shipped_models_have_the_shape_of_the_preset_they_name() -> None:
    """The metadata's preset is a promise: rebuilding the preset gives the shipped shape."""
    import json

    from edge_scorer.inference.backends import META_PREFIX
    from edge_scorer.inference.nets.weights import _onnx_contents
    from edge_scorer.inference.scorer import default_model_dir

    for kind in ("intra", "inter"):
        _, meta = _onnx_contents(default_model_dir() / f"{kind}.onnx")
        cfg = json.loads(meta[META_PREFIX + "model_cfg"])
        preset = meta[META_PREFIX + "preset"]
        assert cfg["preset"] == preset and "+" not in preset
        rebuilt = create_model(preset).cfg
        shape = {k: v for k, v in cfg.items() if k not in ("drop_rate", "attn_drop_rate",
                                                           "drop_path_rate")}
        assert {k: json.loads(json.dumps(rebuilt[k])) for k in shape} == shape, kind
