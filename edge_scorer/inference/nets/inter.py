"""Inter-epoch transformer over sequences of epoch features (SleepXViT's inter model).

Input: ``(B, L, in_dim)`` CLS features of ``L`` consecutive epochs from the intra model; output:
``(B, L, num_classes)`` logits, a label per position (no CLS token). A learned position embedding
(trunc-normal, std 0.02) is added, then pre-norm blocks (the same :class:`~.vit.Attention` as the
intra ViT, so attention maps and their gradients are readable for relevance), a final LayerNorm
and one linear head shared by every position.

At test time a night is scored with :func:`sliding_window_proba`: windows of ``L`` epochs with
stride 1, the softmax of every window position covering an epoch summed for that epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from edge_scorer.inference.nets.vit import (
    Block,
    config_dict,
    init_transformer_weights,
    replace_config,
)
from edge_scorer.inference.windows import sliding_window_proba as _sliding_window_proba
from edge_scorer.stages import N_CLASSES


@dataclass(frozen=True)
class InterConfig:
    """Configuration of :class:`InterEpochTransformer` (stored as ``model.cfg``).

    Attributes
    ----------
    seq_len : int
        Window length ``L`` in epochs (size of the position embedding).
    in_dim : int
        Feature dimension; equals the intra model's ``num_features`` (768 for ViT-B/16).
    depth, num_heads : int
        Number of pre-norm blocks and attention heads.
    mlp_ratio : float
        MLP hidden size / ``in_dim`` (0.5 in SleepXViT).
    act : str
        MLP activation, ``"relu"`` or ``"gelu"``.
    qkv_bias : bool
        Bias on the qkv projection (False in SleepXViT).
    drop_rate, attn_drop_rate : float
        Dropout (position-embedded input, projections, MLP) and attention-map dropout.
    ln_eps : float
        LayerNorm epsilon.
    num_classes : int
        Output classes per position.
    """

    seq_len: int = 10
    in_dim: int = 768
    depth: int = 4
    num_heads: int = 8
    mlp_ratio: float = 0.5
    act: str = "relu"
    qkv_bias: bool = False
    drop_rate: float = 0.2
    attn_drop_rate: float = 0.2
    ln_eps: float = 1e-5
    num_classes: int = N_CLASSES


class InterEpochTransformer(nn.Module):
    """Sequence-to-sequence transformer: ``(B, L, in_dim)`` features -> ``(B, L, C)`` logits.

    Parameters
    ----------
    config : InterConfig, optional
        Architecture; defaults to ``InterConfig()`` (SleepXViT's ``inter_base``).
    **overrides
        Fields replacing those of ``config`` (e.g. ``in_dim=model.num_features``).

    Notes
    -----
    Sequences shorter than ``seq_len`` use the first ``L`` position embeddings; longer ones are
    refused. :func:`sliding_window_proba` always feeds full windows.
    """

    arch = "inter"

    def __init__(self, config: InterConfig | None = None, **overrides) -> None:
        super().__init__()
        c = replace_config(config or InterConfig(), overrides)
        if c.seq_len < 1:
            raise ValueError(f"seq_len must be at least 1, got {c.seq_len}")
        self.config = c
        self.cfg = {"arch": self.arch, **config_dict(c)}
        self.num_features = c.in_dim
        self.pos_embed = nn.Parameter(torch.zeros(1, c.seq_len, c.in_dim))
        self.pos_drop = nn.Dropout(c.drop_rate)
        self.blocks = nn.ModuleList(
            Block(c.in_dim, c.num_heads, c.mlp_ratio, c.qkv_bias, c.drop_rate,
                  c.attn_drop_rate, 0.0, act=c.act, ln_eps=c.ln_eps)
            for _ in range(c.depth)
        )
        self.norm = nn.LayerNorm(c.in_dim, eps=c.ln_eps)
        self.head = nn.Linear(c.in_dim, c.num_classes)
        self.apply(init_transformer_weights)
        nn.init.trunc_normal_(self.pos_embed, std=0.02)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Contextual features ``(B, L, in_dim)`` after the final LayerNorm."""
        if not torch.jit.is_tracing():
            self._check(x)
        x = self.pos_drop(x + self.pos_embed[:, : x.shape[1]])
        for block in self.blocks:
            x = block(x)
        return self.norm(x)

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        if x.ndim != 3 or x.shape[-1] != c.in_dim:
            raise ValueError(
                f"expected features (B, L, {c.in_dim}), got shape {tuple(x.shape)}; "
                "build the inter model with in_dim equal to the intra model's num_features"
            )
        if x.shape[1] > c.seq_len:
            raise ValueError(
                f"sequence of {x.shape[1]} epochs is longer than seq_len={c.seq_len}; "
                "cut the night into windows (see sliding_window_proba)"
            )

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, L, num_classes)``: the shared head applied at each position."""
        return self.head(features)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, L, num_classes)`` of a batch of feature windows."""
        return self.forward_head(self.forward_features(x))


def sliding_window_proba(
    logits_fn: Callable, features, L: int = 10, batch_size: int = 256,
    normalize: bool = True,
) -> np.ndarray:
    """SleepXViT's sliding-window rule (:func:`edge_scorer.inference.windows.sliding_window_proba`)
    for torch models and tensors as well as numpy.

    ``logits_fn`` may be an :class:`InterEpochTransformer` (in eval mode) or any callable;
    ``features`` a tensor or an array ``(N, dim)``. Windows reach ``logits_fn`` as the type
    of ``features``; it may return a tensor or an array.
    """
    is_torch = isinstance(features, torch.Tensor)
    device = features.device if is_torch else None

    def fn(windows: np.ndarray) -> np.ndarray:
        x = torch.from_numpy(windows).to(device) if is_torch else windows
        with torch.no_grad():
            out = logits_fn(x)
        return out.detach().cpu().numpy() if isinstance(out, torch.Tensor) else out

    feats = features.detach().cpu().numpy() if is_torch else features
    return _sliding_window_proba(fn, feats, L=L, batch_size=batch_size, normalize=normalize)
