"""PyTorch backend, for machines with torch but no TensorRT (CPU, or CUDA with fp16 and graphs).

The weights come from the weights-only ``.pt`` exported beside an ONNX model (checked against
the ONNX initializers by :func:`training.checkpoint.load_beside_onnx`) or from a training
checkpoint. The metadata is the ONNX file's (or, for a checkpoint, the same keys built from its
provenance, with the render-spec hash it was trained on), so the spec check is the same as on
ONNX Runtime. ``torch`` and the training package are imported only when this backend is used.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.inference.backends import (
    INSTALL_HINTS,
    META_PREFIX,
    BackendUnavailable,
    check_feed,
    onnx_metadata,
)

log = get_logger("backends.torch")

_IO = {"intra": (("image",), ("logits", "features")), "inter": (("features",), ("logits",))}
_KIND = {"vit": "intra", "inter": "inter"}


def _torch():
    try:
        import torch
    except ImportError:
        raise BackendUnavailable(f"the torch backend needs PyTorch; install: "
                                 f"{INSTALL_HINTS['torch']}") from None
    return torch


def checkpoint_metadata(ckpt: dict[str, Any]) -> dict[str, str]:
    """The ONNX-style metadata of a training checkpoint (what the exporter would embed, with the
    render-spec hash the checkpoint was trained on)."""
    from edge_scorer.inference.backends import model_metadata
    from edge_scorer.io.spec import load_spec

    cfg, meta = ckpt["cfg"], ckpt.get("meta") or {}
    kind = _KIND.get(cfg.get("arch"))
    if kind is None:
        raise ValueError(f"checkpoint of a {cfg.get('arch')!r} model: the torch backend runs "
                         "the intra (vit) and inter models")
    spec_info = meta.get("spec") or {}
    if not spec_info.get("name"):
        raise ValueError("the checkpoint records no render spec (meta.spec.name); it was not "
                         "written by edge-scorer's trainer")
    window = int(cfg["seq_len"]) if kind == "inter" else None
    dim = cfg["in_dim"] if kind == "inter" else cfg["embed_dim"]
    out = model_metadata(kind=kind, spec=load_spec(spec_info["name"]), model_cfg=cfg,
                         window=window, provenance=json.dumps(meta.get("data", {})),
                         extra={"feature_dim": str(dim)})
    out = {k.removeprefix(META_PREFIX): v for k, v in out.items()}
    out["render_spec_hash"] = str(spec_info.get("hash", out["render_spec_hash"]))
    return out


class TorchBackend:
    """PyTorch eager (or CUDA-graph) execution behind the common ``infer`` interface.

    Parameters
    ----------
    path : path-like
        An ONNX model with its ``.pt`` beside it, or a training checkpoint (``.pt`` / run folder).
    device : {"cpu", "cuda"} or str
        Torch device.
    half : bool
        Run in fp16 (CUDA only); outputs are returned as float32.
    cuda_graphs : bool
        Capture one CUDA graph per input shape and replay it (CUDA only; fixed batch sizes such
        as live batch 1 gain most).

    Raises
    ------
    BackendUnavailable
        No PyTorch, or CUDA asked for and not available.
    """

    def __init__(self, path: str | Path, *, device: str = "cpu", half: bool = False,
                 cuda_graphs: bool = False) -> None:
        torch = _torch()
        self.torch = torch
        self.path = Path(path)
        self.device = torch.device(device)
        cuda = self.device.type == "cuda"
        if cuda and not torch.cuda.is_available():
            raise BackendUnavailable("backend 'torch-cuda': this PyTorch sees no CUDA device "
                                     f"(torch {torch.__version__}); {INSTALL_HINTS['torch-cuda']}")
        if (half or cuda_graphs) and not cuda:
            raise ValueError("fp16 and CUDA graphs need the torch-cuda backend")
        from edge_scorer.inference.nets.weights import load_beside_onnx, load_checkpoint

        if self.path.suffix == ".onnx":
            model, _ = load_beside_onnx(self.path, map_location=self.device)
            self.metadata = onnx_metadata(self.path)
        else:
            model, ckpt = load_checkpoint(self.path, map_location=self.device)
            self.metadata = checkpoint_metadata(ckpt)
        kind = self.metadata.get("kind")
        if kind not in _IO:
            raise ValueError(f"{self.path}: model kind {kind!r}; the torch backend runs intra "
                             "and inter models")
        self.kind = kind
        self.input_names, self.output_names = _IO[kind]
        self.half = half
        self.model = (model.half() if half else model).eval()
        self.cuda_graphs = cuda_graphs
        self._graphs: dict[tuple[int, ...], tuple[Any, Any, tuple[Any, ...]]] = {}
        self.name = "torch-cuda" if cuda else "torch"

    def _forward(self, x):
        if self.kind == "intra":
            feats = self.model.forward_features(x)
            return self.model.forward_head(feats), feats
        return (self.model(x),)

    def _graph(self, x):
        torch = self.torch
        key = tuple(x.shape)
        if key not in self._graphs:
            static_in = torch.empty_like(x)
            static_in.copy_(x)
            side = torch.cuda.Stream(self.device)
            side.wait_stream(torch.cuda.current_stream(self.device))
            with torch.cuda.stream(side):
                for _ in range(3):  # warm-up outside the capture (cuBLAS handles, autotune)
                    self._forward(static_in)
            torch.cuda.current_stream(self.device).wait_stream(side)
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph):
                static_out = self._forward(static_in)
            self._graphs[key] = (graph, static_in, static_out)
            log.debug("captured a CUDA graph for input %s", key)
        graph, static_in, static_out = self._graphs[key]
        static_in.copy_(x)
        graph.replay()
        return static_out

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model; outputs are float32 numpy arrays."""
        torch = self.torch
        check_feed(feed, self.input_names, self.path.name)
        x = torch.from_numpy(np.ascontiguousarray(feed[self.input_names[0]], dtype=np.float32))
        x = x.to(self.device, dtype=torch.float16 if self.half else torch.float32)
        with torch.no_grad():
            outs = self._graph(x) if self.cuda_graphs else self._forward(x)
            return {n: o.float().cpu().numpy() for n, o in zip(self.output_names, outs)}
