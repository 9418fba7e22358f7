"""Intra-epoch Vision Transformer on rendered PSG epoch images (SleepXViT's intra model).

The model reads one rendered 30-s epoch image and returns the 5 stage logits. It also holds
the transformer layers shared with the inter-epoch model (:class:`Attention`, :class:`Mlp`,
:class:`Block`).

Input and normalisation
-----------------------
The renderer produces uint8 images (``(H, W)`` grayscale or ``(H, W, 3)``). The model takes
them batched as uint8 ``(B, H, W)`` / ``(B, H, W, C)`` or as float ``(B, C, H, W)`` holding the
same 0..255 values (the renderer's uint8 image cast to float). Normalisation happens inside the
model: ``x / 255``, then ``(x - mean) / std`` per channel. An exported ONNX model therefore
takes the renderer's image cast to float32, with no preprocessing outside it.

Relevance
---------
Every :class:`Attention` layer can keep its attention map and the gradient that reaches it
(``block.attn.save_attn = True`` -> ``attn_map`` and, after ``backward``, ``attn_grad``), which is
what Chefer et al. (CVPR 2021) relevance propagation needs. See :func:`set_save_attn`.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import torch
from torch import nn

from edge_scorer.stages import N_CLASSES

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}


class DropPath(nn.Module):
    """Stochastic depth: drop a whole residual branch per sample while training.

    Parameters
    ----------
    p : float
        Probability of dropping the branch.
    """

    def __init__(self, p: float = 0.0) -> None:
        super().__init__()
        self.p = float(p)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.p == 0.0 or not self.training:
            return x
        keep = 1.0 - self.p
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask / keep


class Attention(nn.Module):
    """Multi-head self-attention whose attention map is readable.

    Parameters
    ----------
    dim : int
        Token dimension.
    num_heads : int
        Number of heads; must divide ``dim``.
    qkv_bias : bool
        Bias on the query/key/value projection.
    attn_drop, proj_drop : float
        Dropout on the attention map and on the output projection.

    Attributes
    ----------
    save_attn : bool
        When True, each forward keeps ``attn_map`` (B, heads, N, N) and, when the map requires
        grad, registers a hook that stores the gradient reaching it in ``attn_grad``. The map
        is kept after attention dropout (the same as before it in eval mode: read maps for
        relevance with the model in eval mode).
    attn_map, attn_grad : torch.Tensor or None
        The stored map and its gradient (None until saved).
    """

    def __init__(self, dim: int, num_heads: int, qkv_bias: bool = True,
                 attn_drop: float = 0.0, proj_drop: float = 0.0) -> None:
        super().__init__()
        if dim % num_heads:
            raise ValueError(
                f"attention dim {dim} is not divisible by num_heads {num_heads}; "
                "choose num_heads that divides the embedding dim"
            )
        self.num_heads = num_heads
        self.head_dim = dim // num_heads
        self.scale = self.head_dim ** -0.5
        self.qkv = nn.Linear(dim, dim * 3, bias=qkv_bias)
        self.attn_drop = nn.Dropout(attn_drop)
        self.proj = nn.Linear(dim, dim)
        self.proj_drop = nn.Dropout(proj_drop)
        self.save_attn = False
        self.attn_map: torch.Tensor | None = None
        self.attn_grad: torch.Tensor | None = None

    def _keep_grad(self, grad: torch.Tensor) -> None:
        self.attn_grad = grad

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, self.head_dim).permute(2, 0, 3, 1, 4)
        q, k, v = qkv[0], qkv[1], qkv[2]
        attn = (q @ k.transpose(-2, -1)) * self.scale
        attn = attn.softmax(dim=-1)
        attn = self.attn_drop(attn)
        if self.save_attn:
            self.attn_map = attn
            self.attn_grad = None
            if attn.requires_grad:
                attn.register_hook(self._keep_grad)
        out = (attn @ v).transpose(1, 2).reshape(b, n, c)
        return self.proj_drop(self.proj(out))


class Mlp(nn.Module):
    """Two-layer feed-forward block (Linear, activation, dropout, Linear, dropout)."""

    def __init__(self, dim: int, hidden: int, act: str = "gelu", drop: float = 0.0) -> None:
        super().__init__()
        if act not in _ACTIVATIONS:
            raise ValueError(f"unknown activation {act!r}; use one of {sorted(_ACTIVATIONS)}")
        self.fc1 = nn.Linear(dim, hidden)
        self.act = _ACTIVATIONS[act]()
        self.drop1 = nn.Dropout(drop)
        self.fc2 = nn.Linear(hidden, dim)
        self.drop2 = nn.Dropout(drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop2(self.fc2(self.drop1(self.act(self.fc1(x)))))


class Block(nn.Module):
    """Pre-norm transformer block: ``x + attn(norm1(x))``, then ``x + mlp(norm2(x))``."""

    def __init__(self, dim: int, num_heads: int, mlp_ratio: float = 4.0, qkv_bias: bool = True,
                 drop: float = 0.0, attn_drop: float = 0.0, drop_path: float = 0.0,
                 act: str = "gelu", ln_eps: float = 1e-6) -> None:
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=ln_eps)
        self.attn = Attention(dim, num_heads, qkv_bias=qkv_bias, attn_drop=attn_drop,
                              proj_drop=drop)
        self.drop_path = DropPath(drop_path)
        self.norm2 = nn.LayerNorm(dim, eps=ln_eps)
        self.mlp = Mlp(dim, max(1, int(round(dim * mlp_ratio))), act=act, drop=drop)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = x + self.drop_path(self.attn(self.norm1(x)))
        return x + self.drop_path(self.mlp(self.norm2(x)))


def init_transformer_weights(module: nn.Module) -> None:
    """ViT-style init: trunc-normal(0.02) linear weights, zero biases, unit LayerNorm."""
    if isinstance(module, nn.Linear):
        nn.init.trunc_normal_(module.weight, std=0.02)
        if module.bias is not None:
            nn.init.zeros_(module.bias)
    elif isinstance(module, nn.LayerNorm):
        nn.init.ones_(module.weight)
        nn.init.zeros_(module.bias)


def set_save_attn(model: nn.Module, enabled: bool = True) -> list[Attention]:
    """Switch attention-map keeping on every :class:`Attention` in ``model``.

    Returns the attention layers in forward order (read ``attn_map`` / ``attn_grad`` there).
    """
    layers = [m for m in model.modules() if isinstance(m, Attention)]
    for layer in layers:
        layer.save_attn = enabled
        if not enabled:
            layer.attn_map = layer.attn_grad = None
    return layers


@dataclass(frozen=True)
class ViTConfig:
    """Configuration of :class:`VisionTransformer` (stored as ``model.cfg``).

    Attributes
    ----------
    img_size : int
        Square input size in pixels (the spec's image height and width).
    patch_size : int
        Patch size in pixels (patch-embedding conv kernel and stride).
    in_chans : int
        Image channels: 1 for grayscale specs, 3 otherwise.
    embed_dim, depth, num_heads : int
        Token dimension, number of blocks, attention heads.
    mlp_ratio : float
        MLP hidden size / ``embed_dim``.
    qkv_bias : bool
        Bias on the qkv projection.
    drop_rate, attn_drop_rate, drop_path_rate : float
        Dropout (tokens, projections, MLP, head), attention-map dropout, and the stochastic
        depth rate reached by the last block (linear ramp).
    num_classes : int
        Output classes (5: W, N1, N2, N3, REM).
    mean, std : tuple of float
        Per-channel normalisation applied after scaling to [0, 1] (one value or ``in_chans``).
    ln_eps : float
        LayerNorm epsilon.
    """

    img_size: int = 224
    patch_size: int = 16
    in_chans: int = 1
    embed_dim: int = 192
    depth: int = 4
    num_heads: int = 3
    mlp_ratio: float = 4.0
    qkv_bias: bool = True
    drop_rate: float = 0.0
    attn_drop_rate: float = 0.0
    drop_path_rate: float = 0.0
    num_classes: int = N_CLASSES
    mean: tuple[float, ...] = (0.5,)
    std: tuple[float, ...] = (0.5,)
    ln_eps: float = 1e-6

    def validate(self) -> None:
        """Raise ``ValueError`` naming the inconsistent field and the fix."""
        if self.img_size % self.patch_size:
            raise ValueError(
                f"img_size {self.img_size} is not a multiple of patch_size {self.patch_size}; "
                "pick a patch size that divides the image size"
            )
        for name in ("mean", "std"):
            vals = getattr(self, name)
            if len(vals) not in (1, self.in_chans):
                raise ValueError(
                    f"{name} has {len(vals)} values for in_chans={self.in_chans}; "
                    f"give one value or one per channel"
                )
        if any(s <= 0 for s in self.std):
            raise ValueError(f"std values must be positive, got {self.std}")


class VisionTransformer(nn.Module):
    """ViT classifier of rendered epoch images (patch conv, CLS token, pre-norm blocks).

    Parameters
    ----------
    config : ViTConfig, optional
        Architecture; defaults to ``ViTConfig()`` (the ``vit_tiny`` shape).
    **overrides
        Fields replacing those of ``config``.

    Attributes
    ----------
    cfg : dict
        ``{"arch": "vit", **config fields}``; :func:`edge_scorer.inference.nets.model_from_cfg`
        rebuilds
        the model from it.
    num_features : int
        Dimension of :meth:`forward_features` output.
    """

    arch = "vit"

    def __init__(self, config: ViTConfig | None = None, **overrides) -> None:
        super().__init__()
        c = replace_config(config or ViTConfig(), overrides)
        c.validate()
        self.config = c
        self.cfg = {"arch": self.arch, **config_dict(c)}
        self.num_features = c.embed_dim
        self.grid = c.img_size // c.patch_size
        n_patches = self.grid * self.grid
        mean = torch.tensor(c.mean, dtype=torch.float32).reshape(-1, 1, 1)
        std = torch.tensor(c.std, dtype=torch.float32).reshape(-1, 1, 1)
        self.register_buffer("pix_mean", mean.expand(c.in_chans, 1, 1).clone(), persistent=False)
        self.register_buffer("pix_std", std.expand(c.in_chans, 1, 1).clone(), persistent=False)

        self.patch_embed = nn.Conv2d(c.in_chans, c.embed_dim, c.patch_size, stride=c.patch_size)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, c.embed_dim))
        self.pos_embed = nn.Parameter(torch.zeros(1, n_patches + 1, c.embed_dim))
        self.pos_drop = nn.Dropout(c.drop_rate)
        rates = [c.drop_path_rate * i / max(1, c.depth - 1) for i in range(c.depth)]
        self.blocks = nn.ModuleList(
            Block(c.embed_dim, c.num_heads, c.mlp_ratio, c.qkv_bias, c.drop_rate,
                  c.attn_drop_rate, rates[i], act="gelu", ln_eps=c.ln_eps)
            for i in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.embed_dim, eps=c.ln_eps)
        self.head_drop = nn.Dropout(c.drop_rate)
        self.head = nn.Linear(c.embed_dim, c.num_classes)

        self.apply(init_transformer_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)
        nn.init.trunc_normal_(self.cls_token, std=0.02)
        w = self.patch_embed.weight
        nn.init.trunc_normal_(w.view(w.shape[0], -1), std=math.sqrt(1.0 / w[0].numel()))
        nn.init.zeros_(self.patch_embed.bias)

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """Convert an image batch to normalised float ``(B, C, H, W)``.

        Accepts uint8 or float ``(B, H, W)`` (one channel), ``(B, C, H, W)`` or channel-last
        ``(B, H, W, C)``, holding 0..255 pixel values. While tracing (ONNX export) the
        input must already be float ``(B, C, H, W)``.
        """
        if x.ndim == 3:
            x = x.unsqueeze(1)
        if not torch.jit.is_tracing():  # ONNX export traces the (B, C, H, W) float form
            x = self._check_layout(x)
        x = x.to(self.pix_mean.dtype) / 255.0
        return (x - self.pix_mean) / self.pix_std

    def _check_layout(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if x.ndim != 4:
            raise ValueError(
                f"expected images (B, H, W) or (B, C, H, W), got shape {tuple(x.shape)}"
            )
        if x.shape[1] != c.in_chans and x.shape[-1] == c.in_chans:
            x = x.permute(0, 3, 1, 2)
        if x.shape[1] != c.in_chans or x.shape[-2:] != (c.img_size, c.img_size):
            raise ValueError(
                f"expected {c.in_chans}-channel {c.img_size}x{c.img_size} images, got shape "
                f"{tuple(x.shape)}; render with the spec the model was built for"
            )
        return x

    def tokens(self, x: torch.Tensor) -> torch.Tensor:
        """All output tokens after the final norm: ``(B, 1 + n_patches, dim)`` (CLS first)."""
        x = self.patch_embed(self.prepare(x)).flatten(2).transpose(1, 2)
        cls = self.cls_token.expand(x.shape[0], -1, -1)
        x = self.pos_drop(torch.cat((cls, x), dim=1) + self.pos_embed)
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """CLS feature of each image: ``(B, embed_dim)`` (the inter model's input)."""
        return self.tokens(x)[:, 0]

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Stage logits ``(B, num_classes)`` from CLS features."""
        return self.head(self.head_drop(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Stage logits ``(B, num_classes)`` of an image batch."""
        return self.forward_head(self.forward_features(x))


def replace_config(config, overrides: dict):
    """``dataclasses.replace`` that names unknown fields and turns lists into tuples."""
    fields = set(asdict(config))
    unknown = set(overrides) - fields
    if unknown:
        raise TypeError(
            f"unknown {type(config).__name__} field(s) {sorted(unknown)}; "
            f"valid fields are {sorted(fields)}"
        )
    fixed = {k: _to_tuple(v) for k, v in overrides.items()}
    return type(config)(**{**asdict(config), **fixed})


def config_dict(config) -> dict:
    """Config as a dict of plain values, tuples as lists (JSON- and ``weights_only``-safe)."""
    return {k: _to_list(v) for k, v in asdict(config).items()}


def _to_tuple(v):
    return tuple(_to_tuple(i) for i in v) if isinstance(v, list | tuple) else v


def _to_list(v):
    return [_to_list(i) for i in v] if isinstance(v, list | tuple) else v


__all__ = [
    "Attention", "Block", "DropPath", "Mlp", "ViTConfig", "VisionTransformer",
    "config_dict", "init_transformer_weights", "replace_config", "set_save_attn",
]
