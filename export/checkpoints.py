"""``edge-scorer export onnx``: training checkpoints -> ONNX models + weights + parity report.

Reuses the exporter of :mod:`export.onnx_export` (dynamic batch, opset 17, ``onnx.checker``,
``edge_scorer.*`` metadata) and :func:`training.checkpoint.save_weights`; the parity gate
(:mod:`export.gate`) compares torch and ONNX Runtime on a night of rendered epochs: the intra
model's logits and features, the inter model's logits on every window of the torch features,
and the final stages of the night through the runtime's window rule.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.io.outputs import atomic_write

log = get_logger("export.checkpoints")


def resolve_run(checkpoint: str | Path, inter: str | Path | None = None
                ) -> tuple[Path, Path | None]:
    """The intra (and inter) checkpoint of a ``.pt`` file, a task folder or a ``train all`` run
    folder (``intra/`` and ``inter/`` inside)."""
    from edge_scorer.inference.nets.weights import resolve_checkpoint

    path = Path(checkpoint)
    if path.is_dir() and (path / "intra").is_dir():
        intra = resolve_checkpoint(path / "intra")
        if inter is None and (path / "inter").is_dir():
            inter = path / "inter"
    else:
        intra = resolve_checkpoint(path)
    return intra, resolve_checkpoint(inter) if inter is not None else None


def checkpoint_spec(path: str | Path, force_spec: bool = False):
    """The render spec a checkpoint was trained with, checked against the current spec hash.

    Raises
    ------
    ValueError
        No spec recorded, or another hash than the current one (unless ``force_spec``).
    """
    import torch

    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    return _spec_of(ckpt, Path(path), force_spec)


def _spec_of(ckpt: dict[str, Any], what: Path, force_spec: bool):
    from edge_scorer.io.spec import load_spec

    info = (ckpt.get("meta") or {}).get("spec") or {}
    if not info.get("name"):
        raise ValueError(f"{what}: the checkpoint records no render spec; it was not written "
                         "by edge-scorer's trainer")
    spec = load_spec(info["name"])
    if info.get("hash") != spec.hash:
        msg = (f"{what} was trained on images of spec {info['name']!r} hash {info.get('hash')}, "
               f"this edge-scorer renders that spec with hash {spec.hash}")
        if not force_spec:
            raise ValueError(msg + "; the exported model would claim the new hash. Retrain, or "
                             "pass --force-spec if only the hash definition changed and the "
                             "images are the same")
        log.warning("%s; exporting with the current hash (--force-spec)", msg)
    return spec


def export_checkpoints(
    intra: str | Path, out_dir: str | Path, *, inter: str | Path | None = None,
    images: np.ndarray, images_desc: str = "", provenance: str | None = None,
    force_spec: bool = False, spec: Any = None,
) -> dict[str, Any]:
    """Export an intra checkpoint (and an inter one) to ONNX beside their weights, gated.

    The parity gate (:mod:`export.gate`, fp32 limits) compares torch with ONNX Runtime on the
    rendered epochs, scored as one night in time order: the intra model's logits and features,
    the inter model's logits on the torch features, and the final stages of the night (ONNX
    pair against torch pair, through the runtime's window rule).

    Parameters
    ----------
    intra, inter : path-like
        Checkpoints (``.pt`` or run folders); ``inter`` optional.
    out_dir : path-like
        Receives ``intra.onnx`` + ``intra.pt`` (``inter.*``) and ``parity.json``.
    images : ndarray of uint8
        Rendered epochs of one night, in time order, for the parity gate.
    images_desc : str
        Where they come from (recorded in the report).
    provenance : str, optional
        ``training_data`` metadata (default: the checkpoint's data record as JSON).
    force_spec : bool
        Export although the checkpoint's render-spec hash differs from the current one.
    spec : RenderSpec, optional
        The spec already checked by :func:`checkpoint_spec` (default: checked here).

    Returns
    -------
    dict
        ``{"intra": Path, "inter": Path | None, "parity": {...}, "report": Path}``.

    Raises
    ------
    ValueError
        Spec hash mismatch (without ``force_spec``), or an inter model reading another feature
        size than the intra model makes.
    GateFailed
        ONNX and torch differ beyond the fp32 limits (the message names the tensor or the
        final stages); ``parity.json`` is written and the ONNX files are removed.
    """
    from edge_scorer.inference.nets.weights import load_checkpoint

    out_dir = Path(out_dir)
    intra_model, ckpt = load_checkpoint(intra)
    if intra_model.cfg.get("arch") != "vit":
        raise ValueError(f"{intra} holds a {intra_model.cfg.get('arch')!r} model, not an intra "
                         "ViT")
    spec = spec if spec is not None else _spec_of(ckpt, Path(intra), force_spec)
    data = (ckpt.get("meta") or {}).get("data") or {}
    extra = {"split": data.get("split", {}), "nights": data.get("nights", {})}
    if provenance is None:
        provenance = json.dumps({"cache": data.get("cache"), **extra})
    stamp = {"spec": spec, "provenance": provenance, "extra": extra}
    inter_model = None
    if inter is not None:
        inter_model, inter_ckpt = load_checkpoint(inter)
        dim = int(inter_model.cfg.get("in_dim", -1))
        if dim != int(intra_model.num_features):
            raise ValueError(f"{inter} reads {dim}-d features, {intra} makes "
                             f"{intra_model.num_features}-d ones; export matching checkpoints")
    paths: dict[str, Any] = {"intra": _write("intra", intra_model, ckpt, out_dir, stamp),
                             "inter": None}
    if inter_model is not None:
        paths["inter"] = _write("inter", inter_model, inter_ckpt, out_dir, stamp)
    gate = parity_gate(intra_model, inter_model, paths, [images])
    parity = {"epochs": images_desc, **per_model(gate), "gate": gate.to_dict(),
              "passed": gate.passed}
    report = out_dir / "parity.json"
    atomic_write(report, json.dumps(parity, indent=2) + "\n")
    if not gate.passed:
        for kind in ("intra", "inter"):
            if paths[kind] is not None:
                paths[kind].unlink(missing_ok=True)
        gate.check(f"ONNX parity with torch failed ({report} kept, ONNX files removed)")
    paths.update(parity=parity, report=report)
    log.info("ONNX models in %s, parity %s", out_dir, gate.summary().replace("\n", "; "))
    return paths


def _write(kind: str, model: Any, ckpt: dict[str, Any], out_dir: Path,
           stamp: dict[str, Any]) -> Path:
    """One model as ONNX (with metadata) and its weights beside it."""
    from edge_scorer.inference.nets.weights import save_weights

    from .onnx_export import export_inter, export_intra

    export = export_intra if kind == "intra" else export_inter
    path = export(model, out_dir / f"{kind}.onnx", spec=stamp["spec"],
                  provenance=stamp["provenance"], extra=stamp["extra"])
    save_weights(model, out_dir / f"{kind}.pt", meta=ckpt.get("meta"))
    return path


def parity_gate(intra_model: Any, inter_model: Any, paths: dict[str, Any],
                nights: list[np.ndarray]) -> Any:
    """The torch pair (reference) against the exported ONNX Runtime pair (candidate) over
    ``nights`` (each a night's rendered epochs in time order), fp32 limits of
    :mod:`export.gate`: logits, features, inter logits and the final stages."""
    from edge_scorer.inference.backends import OrtBackend
    from edge_scorer.inference.scorer import ScoringModel
    from edge_scorer.io.spec import load_spec

    from .gate import compare_models
    from .onnx_export import TorchReference

    onnx = {k: OrtBackend(p) if p is not None else None for k, p in paths.items()
            if k in ("intra", "inter")}
    torch_ref = {"intra": TorchReference(intra_model, onnx["intra"].metadata),
                 "inter": TorchReference(inter_model, onnx["inter"].metadata)
                 if inter_model is not None else None}
    spec = load_spec(onnx["intra"].metadata["render_spec"])
    reference = ScoringModel(torch_ref["intra"], torch_ref["inter"], spec)
    candidate = ScoringModel(onnx["intra"], onnx["inter"], spec)
    return compare_models(reference, candidate, nights)


def per_model(gate: Any) -> dict[str, dict[str, Any]]:
    """``{"intra": {logits numbers, "features": {...}}, "inter": {...}}`` from a gate."""
    out: dict[str, dict[str, Any]] = {}
    for kind in ("intra", "inter"):
        if f"{kind}/logits" in gate.tensors:
            out[kind] = dict(gate.tensors[f"{kind}/logits"])
            if f"{kind}/features" in gate.tensors:
                out[kind]["features"] = gate.tensors[f"{kind}/features"]
    return out
