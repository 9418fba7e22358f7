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
from edge_scorer.backends import file_hash  # re-exported: checkpoint identity
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
    from training.models import model_from_cfg

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
    import json

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
    from edge_scorer.backends import META_PREFIX

    meta_cfg = meta.get(META_PREFIX + "model_cfg")
    if meta_cfg and json.loads(meta_cfg) != json.loads(json.dumps(model.cfg)):
        raise ValueError(f"{pt}: architecture {model.cfg} differs from {onnx_path.name}'s "
                         f"model_cfg metadata {meta_cfg}")
    return model, ckpt
