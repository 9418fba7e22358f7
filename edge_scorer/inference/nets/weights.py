"""Rebuild a network from a checkpoint, or from the weights exported beside an ONNX model.

Runtime jobs that need PyTorch (the torch backend, explanations) load models here, without
training code. Checkpoints are state_dict-only (``weights_only=True``), written by
``training.checkpoint``.
"""

from __future__ import annotations

import json
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


__all__ = ["load_beside_onnx", "load_checkpoint", "resolve_checkpoint"]
