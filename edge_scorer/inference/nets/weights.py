"""Rebuild a network from a checkpoint, or from the weights exported beside an ONNX model.

Runtime jobs that need PyTorch (the torch backend, explanations) load models here, without
training code. This module is the one place the checkpoint format is written
(:func:`save_checkpoint`, :func:`save_weights`; the trainer and the exporter call them) and
read: ``{"cfg", "state_dict", "optimizer", "epoch", "best", "meta", "state"}``, tensors and
plain values only, so files load with ``torch.load(..., weights_only=True)``. The provenance in
``meta`` is built by ``training.checkpoint.make_meta``.
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_scorer.inference.backends import META_PREFIX


def resolve_checkpoint(path: str | Path, name: str = "best.pt") -> Path:
    """A checkpoint file, or ``name`` inside a run folder.

    Raises
    ------
    FileNotFoundError
        Neither exists.
    """
    p = Path(path)
    if p.is_dir():
        p = p / name
    if not p.is_file():
        raise FileNotFoundError(
            f"checkpoint not found: {p}; give a .pt file or a training output folder "
            f"holding {name}"
        )
    return p


def load_checkpoint(path: str | Path, map_location: str | torch.device = "cpu"
                    ) -> tuple[nn.Module, dict]:
    """Rebuild the model of a checkpoint (eval mode) and return it with the checkpoint dict.

    Parameters
    ----------
    path : path-like
        A ``.pt`` file, or a run folder (its ``best.pt``).
    map_location : str or torch.device
        Where tensors are loaded.

    Returns
    -------
    model : torch.nn.Module
        In eval mode, on ``map_location``.
    ckpt : dict
        The checkpoint (``cfg``, ``state_dict``, ``optimizer``, ``epoch``, ``best``, ``meta``,
        ``state``).

    Raises
    ------
    FileNotFoundError
        No such file.
    ValueError
        Not an edge-scorer checkpoint, or weights that do not fit the architecture.
    """
    from edge_scorer.inference.nets.registry import model_from_cfg

    path = resolve_checkpoint(path)
    try:
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # torch raises many types for foreign or corrupt files
        raise ValueError(f"{path}: not a readable edge-scorer checkpoint "
                         f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(ckpt, dict) or "cfg" not in ckpt or "state_dict" not in ckpt:
        raise ValueError(f"{path}: not an edge-scorer checkpoint (no 'cfg'/'state_dict' keys)")
    model = model_from_cfg(ckpt["cfg"])
    try:
        model.load_state_dict(ckpt["state_dict"])
    except RuntimeError as exc:
        raise ValueError(f"{path}: weights do not fit the stored architecture: {exc}") from exc
    model.to(map_location)
    model.eval()
    return model, ckpt


def _onnx_contents(onnx_path: Path) -> tuple[dict[str, np.ndarray], dict[str, str]]:
    """An ONNX file's initializers by name and its metadata properties, from one load."""
    try:
        import onnx
        from onnx import numpy_helper
    except ImportError as exc:  # pragma: no cover - onnx is in the train/test extras
        raise ImportError("checking weights against an ONNX model needs the onnx package: "
                          "pip install 'edge-scorer[train]'") from exc
    proto = onnx.load(str(onnx_path), load_external_data=False)
    return ({i.name: numpy_helper.to_array(i) for i in proto.graph.initializer},
            {m.key: m.value for m in proto.metadata_props})


def load_beside_onnx(onnx_path: str | Path, map_location: str | torch.device = "cpu"
                     ) -> tuple[nn.Module, dict]:
    """The PyTorch model of an exported ONNX model, from the ``.pt`` file beside it.

    The exporter (``train all``, ``training.ship_default``) writes ``NAME.pt`` next to
    ``NAME.onnx``. The weights are checked against the ONNX file: every ONNX initializer that
    kept its PyTorch name (embeddings, norms, biases) must equal the checkpoint's tensor, and
    the architecture must equal the ONNX ``model_cfg`` metadata.

    Raises
    ------
    FileNotFoundError
        No ``.pt`` beside the ONNX file.
    ValueError
        The checkpoint holds other weights or another architecture than the ONNX model.
    """
    onnx_path = Path(onnx_path)
    pt = onnx_path.with_suffix(".pt")
    if not pt.is_file():
        raise FileNotFoundError(
            f"{pt} not found: PyTorch jobs (explanations, the torch backend) need the weights "
            f"exported beside {onnx_path.name}; re-export the model with `edge-scorer train "
            "all` / `python -m training.ship_default`, or pass the training checkpoint (.pt)")
    model, ckpt = load_checkpoint(pt, map_location)
    inits, meta = _onnx_contents(onnx_path)
    state = {k: v.detach().cpu().numpy() for k, v in model.state_dict().items()}
    # the exporter may wrap the model (e.g. "inner." prefix): match on the name suffix
    matched, differ = 0, []
    for name, arr in inits.items():
        key = name if name in state else next((k for k in state if name.endswith("." + k)),
                                              None)
        if key is None:
            continue
        matched += 1
        if state[key].shape != arr.shape or not np.array_equal(state[key], arr):
            differ.append(key)
    if matched == 0 or differ:
        raise ValueError(
            f"{pt} does not hold the weights of {onnx_path.name} ("
            + (f"tensors differ: {differ[:5]}" if differ else "no tensor in common")
            + "); export both from the same checkpoint")
    meta_cfg = meta.get(META_PREFIX + "model_cfg")
    if meta_cfg and json.loads(meta_cfg) != json.loads(json.dumps(model.cfg)):
        raise ValueError(f"{pt}: architecture {model.cfg} differs from {onnx_path.name}'s "
                         f"model_cfg metadata {meta_cfg}")
    return model, ckpt


__all__ = ["load_beside_onnx", "load_checkpoint", "resolve_checkpoint", "save_checkpoint",
           "save_weights"]


def save_checkpoint(
    path: str | Path,
    model: nn.Module,
    *,
    optimizer: torch.optim.Optimizer | None = None,
    epoch: int | None = None,
    best: float | None = None,
    meta: dict | None = None,
    state: dict | None = None,
) -> Path:
    """Write a checkpoint atomically (a temporary file renamed over ``path``).

    Parameters
    ----------
    path : path-like
        Output file (``best.pt``, ``last.pt``); its folder is created.
    model : torch.nn.Module
        A model with ``model.cfg`` (every network of :mod:`edge_scorer.inference.nets`).
    optimizer : torch.optim.Optimizer, optional
        Its state is stored for resuming.
    epoch : int, optional
        Training epoch (0-based) the weights come from.
    best : float, optional
        Best validation loss so far.
    meta : dict, optional
        Provenance (see :func:`make_meta`); plain values only.
    state : dict, optional
        Trainer resume state; tensors and plain values only.

    Returns
    -------
    Path
    """
    cfg = getattr(model, "cfg", None)
    if not isinstance(cfg, dict):
        raise ValueError(f"{type(model).__name__} has no cfg dict; only models built by "
                         "edge_scorer.inference.nets.create_model can be checkpointed")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ckpt = {
        "cfg": dict(cfg),
        "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "epoch": epoch, "best": None if best is None else float(best),
        "meta": _plain(dict(meta or {})), "state": _plain(state),
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(ckpt, tmp)
    os.replace(tmp, path)
    return path


def _plain(obj):
    """``obj`` in types ``torch.load(weights_only=True)`` accepts (numpy scalars, paths and str
    subclasses such as ``torch.__version__`` converted)."""
    if obj is None or isinstance(obj, bool | torch.Tensor):
        return obj
    if isinstance(obj, dict):
        return {str(k): _plain(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [_plain(v) for v in obj]
    if isinstance(obj, int | np.integer):
        return int(obj)
    if isinstance(obj, float | np.floating):
        return float(obj)
    return str(obj)


def save_weights(model: nn.Module, path: str | Path, meta: dict | None = None) -> Path:
    """Write the weights-only checkpoint shipped beside an ONNX model (``intra.onnx`` ->
    ``intra.pt``): ``cfg``, ``state_dict`` and ``meta``, no optimizer or resume state.

    PyTorch-only jobs (relevance maps, the torch backend) load it with
    :func:`load_beside_onnx`, which checks that it holds the ONNX model's weights.
    """
    return save_checkpoint(path, model, meta=meta)
