"""Checkpoints: ``{"cfg", "state_dict", "optimizer", "epoch", "best", "meta", "state"}``.

A checkpoint holds tensors and plain Python values only, so it loads with
``torch.load(..., weights_only=True)`` (no code from the file is run). ``cfg`` is the model's
``model.cfg`` and rebuilds the architecture with :func:`training.models.model_from_cfg`.

``meta`` (see :func:`make_meta`) says what the model expects and where it came from: the render
spec name and hash (a live engine refuses a model whose spec hash differs from its own), the
class names, the task, the training data (cache, night names per split part, the split), the
seed, and the edge-scorer / torch versions. ``state`` is the trainer's resume state
(step, position in the epoch, RNG states); ``last.pt`` has it, ``best.pt`` too.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_scorer._log import get_logger
from edge_scorer.inference.backends import file_hash  # re-exported: checkpoint identity
from edge_scorer.inference.nets.weights import (  # re-exported: loading lives in the core
    load_beside_onnx,
    load_checkpoint,
    resolve_checkpoint,
)
from edge_scorer.stages import CLASS_NAMES

log = get_logger("training.checkpoint")

__all__ = ["file_hash", "load_beside_onnx", "load_checkpoint", "make_meta", "resolve_checkpoint",
           "save_checkpoint", "save_weights"]


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
        A model with ``model.cfg`` (every model of :mod:`training.models`).
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
                         "training.models.create_model can be checkpointed")
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






def make_meta(
    *,
    task: str,
    spec_name: str,
    spec_hash: str,
    seed: int,
    nights: dict[str, list[str]] | None = None,
    split: dict[str, list[str]] | None = None,
    cache: str | None = None,
    **extra,
) -> dict:
    """Checkpoint provenance in plain values.

    Parameters
    ----------
    task : str
        ``intra``, ``inter`` or ``stqs``.
    spec_name, spec_hash : str
        Render spec of the training data.
    seed : int
        Training seed.
    nights : dict, optional
        Night names per split part (``{"train": [...], "val": [...], "test": [...]}``).
    split : dict, optional
        Subjects per split part.
    cache : str, optional
        Epoch cache folder.
    **extra
        More plain values (e.g. ``intra_checkpoint``).
    """
    from edge_scorer import __version__

    return {
        "task": task, "spec": {"name": spec_name, "hash": spec_hash},
        "class_names": list(CLASS_NAMES), "seed": int(seed),
        "data": {"cache": cache, "nights": nights or {}, "split": split or {}},
        "edge_scorer_version": __version__, "torch_version": str(torch.__version__),
        "created": datetime.now(UTC).isoformat(timespec="seconds"), **extra,
    }


def save_weights(model: nn.Module, path: str | Path, meta: dict | None = None) -> Path:
    """Write the weights-only checkpoint shipped beside an ONNX model (``intra.onnx`` ->
    ``intra.pt``): ``cfg``, ``state_dict`` and ``meta``, no optimizer or resume state.

    PyTorch-only jobs (relevance maps, the torch backend) load it with
    :func:`load_beside_onnx`, which checks that it holds the ONNX model's weights.
    """
    return save_checkpoint(path, model, meta=meta)
