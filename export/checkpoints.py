"""``edge-scorer export onnx``: training checkpoints -> ONNX models + weights + parity report.

Reuses the exporter of :mod:`export.onnx_export` (dynamic batch, opset 17, ``onnx.checker``,
``edge_scorer.*`` metadata) and :func:`training.checkpoint.save_weights`; the parity report
compares torch and ONNX Runtime on rendered epochs (intra: the images; inter: every window of
the intra model's features).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.io.outputs import atomic_write

from .epochs import feature_windows, image_input

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
    """Export an intra checkpoint (and an inter one) to ONNX beside their weights.

    Parameters
    ----------
    intra, inter : path-like
        Checkpoints (``.pt`` or run folders); ``inter`` optional.
    out_dir : path-like
        Receives ``intra.onnx`` + ``intra.pt`` (``inter.*``) and ``parity.json``.
    images : ndarray of uint8
        Rendered epochs for the parity report.
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
    """
    import torch

    from edge_scorer.inference.nets.weights import load_checkpoint, save_weights

    from .onnx_export import export_inter, export_intra, parity_report

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
    x = image_input(images)
    paths: dict[str, Any] = {"inter": None}
    paths["intra"] = export_intra(intra_model, out_dir / "intra.onnx", spec=spec,
                                  provenance=provenance, extra=extra)
    save_weights(intra_model, out_dir / "intra.pt", meta=ckpt.get("meta"))
    parity = {"epochs": images_desc, "intra": parity_report(intra_model, paths["intra"], x)}
    if inter is not None:
        inter_model, inter_ckpt = load_checkpoint(inter)
        dim = int(inter_model.cfg.get("in_dim", -1))
        if dim != int(intra_model.num_features):
            raise ValueError(f"{inter} reads {dim}-d features, {intra} makes "
                             f"{intra_model.num_features}-d ones; export matching checkpoints")
        paths["inter"] = export_inter(inter_model, out_dir / "inter.onnx", spec=spec,
                                      provenance=provenance, extra=extra)
        save_weights(inter_model, out_dir / "inter.pt", meta=inter_ckpt.get("meta"))
        with torch.no_grad():
            feats = np.concatenate([intra_model.forward_features(
                torch.from_numpy(x[i:i + 64])).numpy() for i in range(0, len(x), 64)])
        windows = feature_windows(feats, int(inter_model.cfg["seq_len"]))
        parity["inter"] = parity_report(inter_model, paths["inter"], windows)
    report = out_dir / "parity.json"
    atomic_write(report, json.dumps(parity, indent=2) + "\n")
    paths.update(parity=parity, report=report)
    log.info("ONNX models in %s, parity %s", out_dir, parity)
    return paths
