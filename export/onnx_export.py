"""Export trained models to ONNX with the metadata the engine checks before it scores.

Intra model: input ``image`` float32 (B, C, H, W) holding the renderer's 0..255 pixels (the
model normalises inside); outputs ``logits`` (B, 5) and ``features`` (B, D), the CLS feature
the inter model reads. Inter model: input ``features`` float32 (B, L, D); output ``logits``
(B, L, 5), a label per window position. Both have a dynamic batch axis, a fixed opset, pass
``onnx.checker``, and carry metadata (``edge_scorer.*`` keys): render spec name and hash,
montage rows, class names, window length, preset, training data provenance, version.

Built as small steps: torch module -> ONNX file -> metadata -> check. The parity gate is
:func:`export.checkpoints.parity_gate` (every output and the final stages through
:mod:`export.gate`); :class:`TorchReference` puts the torch module behind the backend interface
for it.
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


class TorchReference:
    """A torch intra or inter module behind the backend interface (``infer``, ``metadata``):
    the reference of the ONNX parity gate, scored by a
    :class:`~edge_scorer.inference.scorer.ScoringModel` like any backend.

    Parameters
    ----------
    module : torch.nn.Module
        An intra ViT (``forward_features``/``forward_head``) or an inter transformer.
    metadata : mapping
        The exported model's ``edge_scorer.*`` metadata (prefix removed), ``kind`` included.
    """

    name = "torch"

    def __init__(self, module: Any, metadata: Mapping[str, str], path: str | Path = "") -> None:
        self.module, self.metadata, self.path = module.eval(), dict(metadata), path
        self.kind = self.metadata.get("kind")
        if self.kind not in ("intra", "inter"):
            raise ValueError(f"model kind {self.kind!r}; expected intra or inter")
        self.input_names = ("image",) if self.kind == "intra" else ("features",)
        self.output_names = ("logits", "features") if self.kind == "intra" else ("logits",)

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the module on the named input; every output as float32 numpy."""
        torch = _torch()
        x = torch.from_numpy(np.ascontiguousarray(feed[self.input_names[0]], dtype=np.float32))
        with torch.no_grad():
            if self.kind == "inter":
                return {"logits": self.module(x).numpy()}
            feats = self.module.forward_features(x)
            return {"logits": self.module.forward_head(feats).numpy(), "features": feats.numpy()}
