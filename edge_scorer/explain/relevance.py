"""Relevance of image patches (intra ViT) and of the epochs of a window (inter transformer).

Three methods, from the most faithful to the cheapest:

``chefer``
    Chefer et al., CVPR 2021 ("Transformer Interpretability Beyond Attention Visualization"),
    as SleepXViT uses it: in every block the LRP relevance of the attention map (see
    :mod:`edge_scorer.explain.lrp`) times its gradient, negatives clamped, averaged over heads;
    the identity is added and the blocks are multiplied (rolled out) from the first to the last.
``gradient``
    Chefer et al., ICCV 2021 ("Generic Attention-model Explainability"): the same rollout of
    ``mean_heads((grad * A)^+)`` with the attention map ``A`` itself instead of its LRP
    relevance (one forward and one backward pass, no relevance propagation).
``rollout``
    Abnar and Zuidema (2020) attention rollout: ``0.5 * mean_heads(A) + 0.5 * I`` multiplied
    across blocks. Gradient-free and therefore the same for every class.

All three give non-negative relevance. For the ViT the explained row is the CLS token's and the
relevance of the patches is read from it (a ``grid x grid`` map). For the inter model, which has
a label per position and no CLS token, the row of the explained position is read (SleepXViT's
inter-epoch relevance): the relevance of every epoch of the window for that epoch's decision.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_scorer.explain.lrp import MODEL_LOCK, relprop, torch, trace

#: The relevance methods, most faithful first.
METHODS: tuple[str, ...] = ("chefer", "gradient", "rollout")


def check_methods(methods: str | Sequence[str]) -> tuple[str, ...]:
    """Validate method names; a single name is allowed."""
    methods = (methods,) if isinstance(methods, str) else tuple(methods)
    bad = [m for m in methods if m not in METHODS]
    if bad or not methods:
        raise ValueError(f"unknown relevance method(s) {bad or methods}; choose from {METHODS}")
    return methods


def _rollout(layer_maps: list[torch.Tensor], add_identity: bool) -> torch.Tensor:
    """``(I + M_L) ... (I + M_1)`` (or without the identity), batched ``(B, N, N)``."""
    eye = torch.eye(layer_maps[0].shape[-1], dtype=layer_maps[0].dtype,
                    device=layer_maps[0].device)
    joint = None
    for m in layer_maps:
        m = m + eye if add_identity else m
        joint = m if joint is None else m @ joint
    return joint


def _rolled_out(method: str, tr, cams: list[torch.Tensor] | None) -> torch.Tensor:
    blocks = tr.blocks
    if method == "rollout":
        eye = torch.eye(blocks[0].attn.shape[-1], dtype=blocks[0].attn.dtype,
                        device=blocks[0].attn.device)
        return _rollout([0.5 * b.attn.mean(1) + 0.5 * eye for b in blocks], add_identity=False)
    if method == "gradient":
        maps = [(b.attn_grad * b.attn).clamp(min=0).mean(1) for b in blocks]
    else:
        maps = [(b.attn_grad * c).clamp(min=0).mean(1) for b, c in zip(blocks, cams,
                                                                         strict=True)]
    return _rollout(maps, add_identity=True)


def _device(model) -> torch.device:
    """Where the model's weights are (inputs go there; results come back to the CPU)."""
    return next(model.parameters()).device


def _targets(target, logits: torch.Tensor) -> torch.Tensor:
    """Explained class per sample: ``None`` -> argmax, an int -> that class for all."""
    b, n_classes = logits.shape
    if target is None:
        return logits.argmax(-1)
    t = torch.as_tensor(np.broadcast_to(np.asarray(target, dtype=np.int64), (b,)).copy())
    if ((t < 0) | (t >= n_classes)).any():
        raise ValueError(f"target class must be in 0..{n_classes - 1}, got {target}")
    return t.to(logits.device)


def _run(model, x: torch.Tensor, select, methods: tuple[str, ...], alpha: float):
    """Trace, pick the explained outputs, backpropagate and roll out every method."""
    need_grad = any(m != "rollout" for m in methods)
    with MODEL_LOCK:
        tr = trace(model, x, grad=need_grad)
        flat_logits, targets, r_logits = select(tr.logits.detach())
        if need_grad:
            score = (tr.logits * r_logits).sum()
            tr.attention_gradients(score)
        cams = relprop(model, tr, r_logits, alpha) if "chefer" in methods else None
    with torch.no_grad():
        joint = {m: _rolled_out(m, tr, cams) for m in methods}
    return joint, flat_logits, targets


@dataclass
class RelevanceResult:
    """Relevance of one batch for every requested method.

    Attributes
    ----------
    maps : dict of str -> ndarray
        Per method: ``(B, grid, grid)`` patch relevance (intra) or ``(B, L)`` epoch relevance
        (inter), float32, non-negative.
    logits : ndarray
        The model's logits for the explained outputs, ``(B, C)``.
    targets : ndarray of int64, shape (B,)
        The explained class of each sample.
    """

    maps: dict[str, np.ndarray]
    logits: np.ndarray
    targets: np.ndarray


def intra_relevance(model, images, target=None, methods: str | Sequence[str] = METHODS,
                    alpha: float = 1.0) -> RelevanceResult:
    """Patch relevance of rendered epoch images for one class.

    Parameters
    ----------
    model : edge_scorer.inference.nets.VisionTransformer
        In eval mode.
    images : array-like of uint8, shape (B, H, W) or (B, C, H, W)
        Rendered epochs (the renderer's output; the model normalises inside).
    target : int or sequence of int, optional
        Explained class (one for all or one per image); default: the model's prediction.
    methods : str or sequence of str
        Any of :data:`METHODS`.
    alpha : float
        LRP-alpha-beta parameter (``chefer`` only).

    Returns
    -------
    RelevanceResult
        ``maps[m]`` has shape ``(B, grid, grid)``, ``grid = 224 / patch`` (7 x 7 for the
        shipped model's 32-px patches).
    """
    methods = check_methods(methods)
    x = torch.as_tensor(np.asarray(images)).to(_device(model))
    if x.ndim == 2:
        x = x[None]
    grid = int(getattr(model, "grid", 0))
    if getattr(model, "arch", None) != "vit" or not grid:
        raise TypeError(f"intra_relevance needs a VisionTransformer, got {type(model).__name__}")

    def select(logits):
        t = _targets(target, logits)
        r = torch.zeros_like(logits)
        r[torch.arange(len(t)), t] = 1.0
        return logits, t, r

    joint, logits, targets = _run(model, x, select, methods, alpha)
    maps = {m: j[:, 0, 1:].reshape(-1, grid, grid).cpu().numpy().astype(np.float32)
            for m, j in joint.items()}
    return RelevanceResult(maps, logits.cpu().numpy(), targets.cpu().numpy())


def inter_relevance(model, windows, position, target=None,
                    methods: str | Sequence[str] = METHODS, alpha: float = 1.0
                    ) -> RelevanceResult:
    """Relevance of each epoch of a window for the decision about one position.

    Parameters
    ----------
    model : edge_scorer.inference.nets.InterEpochTransformer
        In eval mode.
    windows : array-like of float, shape (B, L, D)
        Windows of epoch features (the intra model's CLS features).
    position : int or sequence of int
        Explained position in each window (``0 .. L-1``).
    target : int or sequence of int, optional
        Explained class; default: the model's prediction at ``position``.
    methods, alpha
        As in :func:`intra_relevance`.

    Returns
    -------
    RelevanceResult
        ``maps[m]`` has shape ``(B, L)``; ``logits`` are those at ``position``.
    """
    methods = check_methods(methods)
    if getattr(model, "arch", None) != "inter":
        raise TypeError(f"inter_relevance needs an InterEpochTransformer, got "
                        f"{type(model).__name__}")
    x = torch.as_tensor(np.asarray(windows, dtype=np.float32)).to(_device(model))
    if x.ndim == 2:
        x = x[None]
    b, n = x.shape[:2]
    pos = torch.as_tensor(np.broadcast_to(np.asarray(position, dtype=np.int64), (b,)).copy())
    if ((pos < 0) | (pos >= n)).any():
        raise ValueError(f"position must be in 0..{n - 1}, got {position}")
    rows, pos = torch.arange(b, device=x.device), pos.to(x.device)

    def select(logits):
        at = logits[rows, pos]
        t = _targets(target, at)
        r = torch.zeros_like(logits)
        r[rows, pos, t] = 1.0
        return at, t, r

    joint, logits, targets = _run(model, x, select, methods, alpha)
    maps = {m: j[rows, pos].cpu().numpy().astype(np.float32) for m, j in joint.items()}
    return RelevanceResult(maps, logits.cpu().numpy(), targets.cpu().numpy())


@dataclass
class TorchModels:
    """The PyTorch intra and inter models used for relevance, with the spec they read.

    Attributes
    ----------
    intra : edge_scorer.inference.nets.VisionTransformer
    inter : edge_scorer.inference.nets.InterEpochTransformer or None
    spec_name, spec_hash : str or None
        Render spec the models were trained on (from their metadata).
    temperature, intra_temperature : float
        Softmax temperatures of the inter and intra models stamped into the ONNX metadata by
        calibration (1.0 for checkpoints), applied as the engine applies them.
    """

    intra: object
    inter: object | None
    spec_name: str | None
    spec_hash: str | None
    temperature: float = 1.0
    intra_temperature: float = 1.0

    @classmethod
    def load(cls, intra: str | Path | None = None, inter: str | Path | None = None
             ) -> TorchModels:
        """Load the models: ``.onnx`` paths use the weights exported beside them
        (:func:`edge_scorer.inference.nets.weights.load_beside_onnx`), ``.pt`` paths are training
        checkpoints; default: the shipped model."""
        from edge_scorer.inference.scorer import default_model_dir

        if intra is None:
            folder = default_model_dir()
            intra = folder / "intra.onnx"
            inter = folder / "inter.onnx" if inter is None else inter
        intra_m, spec = _load_one(Path(intra))
        inter_m, inter_spec = _load_one(Path(inter)) if inter is not None else (None, {})
        if getattr(intra_m, "arch", None) != "vit":
            raise ValueError(f"{intra} is not an intra (ViT) model")
        if inter_m is not None and getattr(inter_m, "arch", None) != "inter":
            raise ValueError(f"{inter} is not an inter-epoch model")
        return cls(intra_m, inter_m, spec.get("name"), spec.get("hash"),
                   temperature=float(inter_spec.get("temperature", 1.0)),
                   intra_temperature=float(spec.get("temperature", 1.0)))

    def check_spec(self, spec) -> None:
        """Raise :class:`~edge_scorer.inference.scorer.ModelSpecMismatch` (a ``ValueError``)
        when the images are rendered with another spec, or the models carry no spec: the same
        rule as the engine's (:func:`~edge_scorer.inference.scorer.check_model_spec`)."""
        from edge_scorer.inference.scorer import check_model_spec

        meta = {"render_spec": self.spec_name, "render_spec_hash": self.spec_hash}
        check_model_spec({k: v for k, v in meta.items() if v}, spec,
                         "the PyTorch models of the explanation")


def _load_one(path: Path) -> tuple[object, dict]:
    from edge_scorer.inference.nets.weights import load_beside_onnx, load_checkpoint

    if path.suffix == ".onnx":
        from edge_scorer.inference.backends import OrtBackend

        model, _ = load_beside_onnx(path)
        # the ONNX metadata is what the engine checks (a re-stamped model keeps old .pt meta)
        from edge_scorer.inference.familiarity import read_temperature

        meta = OrtBackend(path).metadata
        spec = {"name": meta.get("render_spec"), "hash": meta.get("render_spec_hash"),
                "temperature": read_temperature(meta)}
    else:
        model, ckpt = load_checkpoint(path)
        spec = dict((ckpt.get("meta") or {}).get("spec") or {})
    return model.eval(), spec


__all__ = ["METHODS", "RelevanceResult", "TorchModels", "check_methods", "inter_relevance",
           "intra_relevance"]
