"""Export trained models to ONNX with the metadata the engine checks before it scores.

Intra model: input ``image`` float32 (B, C, H, W) holding the renderer's 0..255 pixels (the
model normalises inside); outputs ``logits`` (B, 5) and ``features`` (B, D), the CLS feature
the inter model reads. Inter model: input ``features`` float32 (B, L, D); output ``logits``
(B, L, 5), a label per window position. Both have a dynamic batch axis, a fixed opset, pass
``onnx.checker``, and carry metadata (``edge_scorer.*`` keys): render spec name and hash,
montage rows, class names, window length, preset, training data provenance, version.

Built as small steps: torch module -> ONNX file -> metadata -> check -> parity report.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.inference.backends import (  # the one metadata contract lives in the core
    META_PREFIX,
    OPSET,
    model_metadata,
)

log = get_logger("export.onnx")



def _torch():
    try:
        import torch
    except ImportError:  # pragma: no cover - depends on the install
        raise ImportError(
            "exporting models needs PyTorch: pip install -e '.[train]' (torch==2.13.0)"
        ) from None
    return torch


def read_metadata(path: str | Path) -> dict[str, str]:
    """Read the ``edge_scorer.*`` metadata of an ONNX file (prefix removed)."""
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    return {k[len(META_PREFIX):]: v for k, v in meta.items() if k.startswith(META_PREFIX)}


def _to_onnx(module, example, path: Path, input_names, output_names, dynamic_axes) -> Path:
    torch = _torch()
    module.eval()
    path.parent.mkdir(parents=True, exist_ok=True)
    with warnings.catch_warnings(), torch.no_grad():
        warnings.simplefilter("ignore")  # TorchScript-exporter deprecation / tracer notes
        torch.onnx.export(module, example, str(path), input_names=input_names,
                          output_names=output_names, dynamic_axes=dynamic_axes,
                          opset_version=OPSET, dynamo=False)
    return path


def stamp_metadata(path: Path, meta: Mapping[str, str]) -> None:
    """Replace a model's metadata with ``meta`` (keys ``edge_scorer.*``) and check it."""
    import onnx

    model = onnx.load(str(path))
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    onnx.save(model, str(path))


def update_metadata(path: str | Path, updates: Mapping[str, str]) -> dict[str, str]:
    """Set some ``edge_scorer.*`` metadata keys of an ONNX file and keep every other property.

    The graph and its weights are untouched (the weights beside the model still match it, see
    ``training.checkpoint.load_beside_onnx``); the file's bytes, hence its hash and the name
    of any TensorRT engine built from it, change: engines are rebuilt for the new file. The
    file is replaced atomically.

    Parameters
    ----------
    path : path-like
        The ONNX model.
    updates : mapping
        ``{key without the prefix: string value}``.

    Returns
    -------
    dict
        The model's ``edge_scorer.*`` metadata after the update (prefix removed).
    """
    import os

    import onnx

    path = Path(path)
    model = onnx.load(str(path))
    meta = {m.key: m.value for m in model.metadata_props}
    for k, v in updates.items():
        if not isinstance(v, str):
            raise TypeError(f"metadata value of {k!r} must be a string, got {type(v).__name__}")
        meta[META_PREFIX + k] = v
    del model.metadata_props[:]
    for k, v in meta.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = k, v
    onnx.checker.check_model(model)
    tmp = path.with_name(path.name + ".tmp")
    onnx.save(model, str(tmp))
    os.replace(tmp, path)
    return {k[len(META_PREFIX):]: v for k, v in meta.items() if k.startswith(META_PREFIX)}


def export_intra(model, path: str | Path, *, spec, provenance: str = "",
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Export an intra-epoch ViT: ``image`` -> (``logits``, ``features``)."""
    torch = _torch()

    class _Both(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, image):
            feats = self.inner.forward_features(image)
            return self.inner.forward_head(feats), feats

    chans = 1 if spec.grayscale else 3
    example = torch.zeros(2, chans, spec.image_height, spec.image_width)
    path = _to_onnx(_Both(model), (example,), Path(path), ["image"], ["logits", "features"],
                    {"image": {0: "batch"}, "logits": {0: "batch"}, "features": {0: "batch"}})
    stamp_metadata(path, model_metadata(kind="intra", spec=spec, model_cfg=model.cfg,
                                provenance=provenance,
                                extra={"feature_dim": str(model.num_features), **(extra or {})}))
    return path


def export_inter(model, path: str | Path, *, spec, provenance: str = "",
                 extra: Mapping[str, Any] | None = None) -> Path:
    """Export an inter-epoch transformer: ``features`` (B, L, D) -> ``logits`` (B, L, 5)."""
    torch = _torch()
    cfg = model.cfg
    window, dim = int(cfg["seq_len"]), int(cfg["in_dim"])
    example = torch.zeros(2, window, dim)
    path = _to_onnx(model, (example,), Path(path), ["features"], ["logits"],
                    {"features": {0: "batch"}, "logits": {0: "batch"}})
    stamp_metadata(path, model_metadata(kind="inter", spec=spec, model_cfg=cfg, window=window,
                                provenance=provenance,
                                extra={"feature_dim": str(dim), **(extra or {})}))
    return path


def parity_report(model, path: str | Path, inputs: np.ndarray, *, output: str = "logits",
                  batch_size: int = 64) -> dict[str, float]:
    """Run torch and ONNX Runtime on the same inputs; max abs diff and argmax agreement."""
    import onnxruntime as ort

    torch = _torch()
    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name
    model.eval()
    diffs, agree, total = [], 0, 0
    for i in range(0, len(inputs), batch_size):
        x = np.ascontiguousarray(inputs[i:i + batch_size], dtype=np.float32)
        with torch.no_grad():
            ref = model(torch.from_numpy(x)).numpy()
        got = sess.run([output], {name: x})[0]
        diffs.append(float(np.max(np.abs(ref - got))))
        agree += int((ref.argmax(-1) == got.argmax(-1)).sum())
        total += int(np.prod(ref.shape[:-1]))
    return {"max_abs_diff": max(diffs), "argmax_agreement": agree / max(total, 1),
            "n": int(total)}
