"""Checkpoints: ``{"cfg", "state_dict", "optimizer", "epoch", "best", "meta", "state"}``.

A checkpoint holds tensors and plain Python values only, so it loads with
``torch.load(..., weights_only=True)`` (no code from the file is run). ``cfg`` is the model's
``model.cfg`` and rebuilds the architecture with :func:`edge_scorer.inference.nets.model_from_cfg`.

``meta`` (see :func:`make_meta`) says what the model expects and where it came from: the render
spec name and hash (a live engine refuses a model whose spec hash differs from its own), the
class names, the task, the training data (cache, night names per split part, the split), the
seed, and the edge-scorer / torch versions. ``state`` is the trainer's resume state
(step, position in the epoch, RNG states); ``last.pt`` has it, ``best.pt`` too.
"""

from __future__ import annotations

from datetime import UTC, datetime

import torch

from edge_scorer._log import get_logger
from edge_scorer.inference.backends import file_hash  # re-exported: checkpoint identity
from edge_scorer.inference.nets.weights import (  # re-exported: the format lives in the core
    load_beside_onnx,
    load_checkpoint,
    resolve_checkpoint,
    save_checkpoint,
    save_weights,
)
from edge_scorer.stages import CLASS_NAMES

log = get_logger("training.checkpoint")

__all__ = ["file_hash", "load_beside_onnx", "load_checkpoint", "make_meta", "resolve_checkpoint",
           "save_checkpoint", "save_weights"]


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
