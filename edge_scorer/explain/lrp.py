"""Layer-wise relevance propagation through edge-scorer's transformers (Chefer et al., CVPR 2021).

Chefer, Gur and Wolf, "Transformer Interpretability Beyond Attention Visualization" (CVPR 2021)
propagate the relevance of one class score back through every layer with LRP and, in every
block, keep the relevance that reaches the attention map. This module does that for the
hand-written :class:`edge_scorer.inference.nets.vit.VisionTransformer` and
:class:`edge_scorer.inference.nets.inter.InterEpochTransformer` (both are stacks of the same
pre-norm
:class:`~edge_scorer.inference.nets.vit.Block`).

Nothing in the models is changed: :func:`trace` runs the model's own forward pass with
temporary forward hooks on its linear layers and blocks (and the attention maps kept by
:func:`edge_scorer.inference.nets.vit.set_save_attn`), then removes them. :func:`relprop` walks the
recorded activations backwards with the rules of Chefer's reference implementation:

========================  =================================================================
layer                     rule
========================  =================================================================
Linear (qkv, proj, MLP,   LRP-alpha-beta (alpha=1, beta=0 by default) on the positive and
head)                     negative parts of inputs and weights; the bias takes no relevance
matmul (Q K^T, A V)       LRP-z (epsilon-stabilised) to both operands; each half of the
                          attention's relevance is divided by 2, as in the reference
residual add              LRP-z to both branches, rescaled so that each sample's total
                          relevance is conserved and split by the branches' absolute shares
clone (skip connection)   the relevances of the two uses are summed
LayerNorm, GELU/ReLU,     relevance passes unchanged (the reference implementation's rule
softmax, dropout          for these element-wise / normalising layers)
========================  =================================================================

The relevance that reaches each attention map (``R_A``), the map itself (``A``) and the gradient
of the class score with respect to it (``dA``) are what :mod:`edge_scorer.explain.relevance`
rolls out across layers.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from dataclasses import dataclass

try:
    import torch
    from torch import nn
except ImportError as exc:  # pragma: no cover - torch is an optional extra
    raise ImportError(
        "relevance maps need PyTorch: pip install 'edge-scorer[train]' (torch==2.13.0)"
    ) from exc

#: Stabiliser of the LRP divisions (as in the reference ``safe_divide``).
EPS = 1e-9

#: One explanation at a time per process: hooks and attention keeping are set on the model.
MODEL_LOCK = threading.RLock()


def safe_divide(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """``a / b`` with ``b`` pushed away from zero by :data:`EPS`; 0 where ``b == 0``."""
    den = b + EPS * torch.where(b >= 0, 1.0, -1.0).to(b.dtype)
    return torch.where(b == 0, torch.zeros_like(a * b), a / den)


def linear_relprop(x: torch.Tensor, weight: torch.Tensor, r: torch.Tensor,
                   alpha: float = 1.0) -> torch.Tensor:
    """LRP-alpha-beta through ``y = x @ weight.T`` (+ bias, which takes no relevance).

    Parameters
    ----------
    x : Tensor, shape (..., in)
        The layer's input.
    weight : Tensor, shape (out, in)
    r : Tensor, shape (..., out)
        Relevance of the outputs.
    alpha : float
        Weight of the positive (activating) contributions; ``beta = alpha - 1`` weighs the
        negative ones. ``alpha=1`` (beta 0) is the rule Chefer et al. use.

    Returns
    -------
    Tensor, shape (..., in)
        Relevance of the inputs. With ``alpha=1`` its sum equals the sum of ``r`` wherever the
        positive contributions to an output are not all zero.
    """
    if alpha < 1.0:
        raise ValueError(f"alpha must be >= 1 (beta = alpha - 1 >= 0), got {alpha}")
    beta = alpha - 1.0
    pw, nw = weight.clamp(min=0), weight.clamp(max=0)
    px, nx = x.clamp(min=0), x.clamp(max=0)

    def share(w1: torch.Tensor, w2: torch.Tensor) -> torch.Tensor:
        # x1 w1 + x2 w2 is one part of the pre-activation; its relevance goes back
        # proportionally to each input's contribution (the gradient of z = x w is w).
        s = safe_divide(r, px @ w1.T + nx @ w2.T)
        return px * (s @ w1) + nx * (s @ w2)

    out = alpha * share(pw, nw)
    if beta:
        out = out - beta * share(nw, pw)
    return out


def matmul_relprop(a: torch.Tensor, b: torch.Tensor, r: torch.Tensor
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """LRP-z through ``z = a @ b`` (batched): the relevance of each operand.

    Each operand receives ``operand * d(z . s)/d(operand)`` with ``s = r / z``, so each of the
    two returned relevances sums to about ``r.sum()`` (as in the reference implementation).
    """
    s = safe_divide(r, a @ b)
    return a * (s @ b.transpose(-2, -1)), b * (a.transpose(-2, -1) @ s)


def add_relprop(a: torch.Tensor, b: torch.Tensor, r: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
    """LRP-z through ``z = a + b``, rescaled to conserve each sample's relevance.

    Each branch first gets ``branch * r / z``; then, per sample, the branch totals are rescaled
    so that the two sum to ``r``'s total, split by the branches' absolute shares (the
    reference implementation's ``Add`` rule, applied per sample instead of per batch).
    """
    s = safe_divide(r, a + b)
    ra, rb = a * s, b * s
    dims = tuple(range(1, r.ndim))
    sa, sb, total = ra.sum(dims, keepdim=True), rb.sum(dims, keepdim=True), r.sum(dims,
                                                                                  keepdim=True)
    denom = sa.abs() + sb.abs()
    fa, fb = safe_divide(sa.abs(), denom) * total, safe_divide(sb.abs(), denom) * total
    return ra * safe_divide(fa, sa), rb * safe_divide(fb, sb)


@dataclass
class BlockTrace:
    """What one pre-norm block computed in the traced forward pass (all detached).

    Attributes
    ----------
    x_in : Tensor (B, N, D)
        Block input.
    n1 : Tensor (B, N, D)
        ``norm1(x_in)``, the qkv projection's input.
    q, k, v : Tensor (B, heads, N, head_dim)
    attn : Tensor (B, heads, N, N)
        Attention map (softmax output).
    attn_grad : Tensor or None
        Gradient of the explained score with respect to ``attn``.
    o : Tensor (B, N, D)
        Merged heads ``attn @ v``, the output projection's input.
    attn_out : Tensor (B, N, D)
        Attention branch output (added to ``x_in``).
    n2 : Tensor (B, N, D)
        ``norm2(x_in + attn_out)``, the MLP's input.
    act : Tensor (B, N, hidden)
        MLP hidden activation, the second linear layer's input.
    mlp_out : Tensor (B, N, D)
        MLP branch output.
    """

    x_in: torch.Tensor
    n1: torch.Tensor
    q: torch.Tensor
    k: torch.Tensor
    v: torch.Tensor
    attn: torch.Tensor
    attn_grad: torch.Tensor | None
    o: torch.Tensor
    attn_out: torch.Tensor
    n2: torch.Tensor
    act: torch.Tensor
    mlp_out: torch.Tensor


@dataclass
class Trace:
    """A traced forward pass: logits (still attached to the graph), head input and blocks."""

    logits: torch.Tensor
    head_in: torch.Tensor
    blocks: list[BlockTrace]
    _maps: list[torch.Tensor]

    def attention_gradients(self, score: torch.Tensor) -> None:
        """Fill every block's ``attn_grad`` with ``d score / d attn`` (no parameter ``.grad``
        is touched: :func:`torch.autograd.grad` is used, not ``backward``)."""
        grads = torch.autograd.grad(score, self._maps)
        for blk, g in zip(self.blocks, grads, strict=True):
            blk.attn_grad = g.detach()


def _check_model(model: nn.Module) -> None:
    for name in ("blocks", "norm", "head"):
        if not hasattr(model, name):
            raise TypeError(f"{type(model).__name__} has no {name!r}: relevance needs a "
                            "edge_scorer.inference.nets VisionTransformer or InterEpochTransformer")
    if model.training:
        raise ValueError("the model is in training mode (dropout would change the maps); "
                         "call model.eval() before explaining")


def trace(model: nn.Module, x: torch.Tensor, grad: bool = True) -> Trace:
    """Run the model's own forward pass and record what every block computed.

    Parameters
    ----------
    model : VisionTransformer or InterEpochTransformer
        In eval mode.
    x : Tensor
        Model input (images for the ViT, feature windows for the inter model).
    grad : bool
        Keep the graph from the attention maps to the logits (needed for
        :meth:`Trace.attention_gradients`).

    Returns
    -------
    Trace
    """
    from edge_scorer.inference.nets.vit import set_save_attn

    _check_model(model)
    store: dict[int, dict[str, torch.Tensor]] = {}
    handles = []

    def keep(idx: int, key_in: str | None, key_out: str | None) -> Callable:
        def hook(_mod, inputs, output):
            slot = store.setdefault(idx, {})
            if key_in:
                slot[key_in] = inputs[0].detach()
            if key_out:
                slot[key_out] = output.detach()
        return hook

    layers = [blk.attn for blk in model.blocks]
    saved = [layer.save_attn for layer in layers]
    try:
        for i, blk in enumerate(model.blocks):
            handles += [
                blk.register_forward_hook(keep(i, "x_in", "x_out")),
                blk.attn.qkv.register_forward_hook(keep(i, "n1", "qkv")),
                blk.attn.proj.register_forward_hook(keep(i, "o", "attn_out")),
                blk.mlp.fc1.register_forward_hook(keep(i, "n2", None)),
                blk.mlp.fc2.register_forward_hook(keep(i, "act", "mlp_out")),
            ]
        handles.append(model.head.register_forward_hook(keep(-1, "head_in", None)))
        set_save_attn(model, True)
        with torch.set_grad_enabled(grad):
            logits = model(x)
        maps = [layer.attn_map for layer in layers]
    finally:
        for h in handles:
            h.remove()
        for layer, flag in zip(layers, saved, strict=True):
            layer.save_attn = flag
            layer.attn_map = layer.attn_grad = None
    blocks = []
    for i, layer in enumerate(layers):
        s = store[i]
        b, n, _ = s["qkv"].shape
        qkv = s["qkv"].reshape(b, n, 3, layer.num_heads, layer.head_dim).permute(2, 0, 3, 1, 4)
        if not torch.allclose(s["x_in"] + s["attn_out"] + s["mlp_out"], s["x_out"],
                              atol=1e-4, rtol=1e-4):
            raise RuntimeError(
                f"block {i} is not x + attn(norm1(x)) + mlp(norm2(.)) in this forward pass; "
                "relevance propagation supports the pre-norm Block of "
                "edge_scorer.inference.nets.vit "
                "in eval mode")
        blocks.append(BlockTrace(
            x_in=s["x_in"], n1=s["n1"], q=qkv[0], k=qkv[1], v=qkv[2],
            attn=maps[i].detach(), attn_grad=None, o=s["o"], attn_out=s["attn_out"],
            n2=s["n2"], act=s["act"], mlp_out=s["mlp_out"]))
    return Trace(logits=logits, head_in=store[-1]["head_in"], blocks=blocks,
                 _maps=maps if grad else [])


def _block_relprop(blk: nn.Module, t: BlockTrace, r: torch.Tensor, alpha: float
                   ) -> tuple[torch.Tensor, torch.Tensor]:
    """Relevance of the block input and of the attention map, from the output's relevance."""
    x_mid = t.x_in + t.attn_out
    # second residual: out = x_mid + mlp(norm2(x_mid))
    r_skip, r_mlp = add_relprop(x_mid, t.mlp_out, r)
    r_hidden = linear_relprop(t.act, blk.mlp.fc2.weight, r_mlp, alpha)   # act: identity
    r_branch = linear_relprop(t.n2, blk.mlp.fc1.weight, r_hidden, alpha)  # norm2: identity
    r = r_skip + r_branch                                                 # clone: sum
    # first residual: x_mid = x + attn(norm1(x))
    r_skip, r_attn = add_relprop(t.x_in, t.attn_out, r)
    attn = blk.attn
    b, n, d = t.o.shape
    r_o = linear_relprop(t.o, attn.proj.weight, r_attn, alpha)
    r_o = r_o.reshape(b, n, attn.num_heads, attn.head_dim).transpose(1, 2)
    r_a, r_v = matmul_relprop(t.attn, t.v, r_o)
    r_a, r_v = r_a / 2, r_v / 2
    # softmax: identity; scores = q @ k^T (the scale is a constant factor)
    r_q, r_kt = matmul_relprop(t.q, t.k.transpose(-2, -1), r_a)
    r_q, r_k = r_q / 2, r_kt.transpose(-2, -1) / 2
    r_qkv = torch.stack((r_q, r_k, r_v)).permute(1, 3, 0, 2, 4).reshape(b, n, 3 * d)
    r_branch = linear_relprop(t.n1, attn.qkv.weight, r_qkv, alpha)        # norm1: identity
    return r_skip + r_branch, r_a


def relprop(model: nn.Module, tr: Trace, r_logits: torch.Tensor, alpha: float = 1.0
            ) -> list[torch.Tensor]:
    """Propagate the relevance of the logits down the model; return each block's ``R_A``.

    Parameters
    ----------
    model : VisionTransformer or InterEpochTransformer
        The traced model.
    tr : Trace
        From :func:`trace` on the same model.
    r_logits : Tensor
        Relevance of the outputs, shaped like the logits: ``(B, C)`` for the ViT (a one-hot
        of the explained class), ``(B, L, C)`` for the inter model (one-hot at the explained
        position and class).
    alpha : float
        LRP-alpha-beta parameter of the linear layers.

    Returns
    -------
    list of Tensor, shape (B, heads, N, N)
        Relevance of the attention map of every block, in forward order.
    """
    with torch.no_grad():
        r = linear_relprop(tr.head_in, model.head.weight, r_logits.to(tr.head_in.dtype), alpha)
        if r.ndim == 2:  # ViT: the head reads the CLS token only (index select)
            n = tr.blocks[-1].x_in.shape[1]
            r = torch.cat((r[:, None], r.new_zeros(r.shape[0], n - 1, r.shape[1])), dim=1)
        # final LayerNorm: identity
        cams: list[torch.Tensor] = []
        for blk, t in zip(reversed(list(model.blocks)), reversed(tr.blocks), strict=True):
            r, r_a = _block_relprop(blk, t, r, alpha)
            cams.append(r_a)
    return cams[::-1]


__all__ = ["EPS", "MODEL_LOCK", "BlockTrace", "Trace", "add_relprop", "linear_relprop",
           "matmul_relprop", "relprop", "safe_divide", "trace"]
