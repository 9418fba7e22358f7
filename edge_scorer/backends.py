"""Inference backends: every backend exposes the same ``infer(feed: dict) -> dict``.

ONNX Runtime on the CPU is the default (and the embedded one). Further backends (ONNX Runtime
CUDA/TensorRT providers, native TensorRT, PyTorch) plug in behind the same interface.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Protocol

import numpy as np

from ._log import get_logger

log = get_logger("backends")


class Backend(Protocol):
    """What the engine needs of an inference backend."""

    name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    metadata: dict[str, str]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named inputs; return every named output."""
        ...


class OrtBackend:
    """ONNX Runtime session behind the common ``infer`` interface.

    Parameters
    ----------
    path : path-like
        ONNX model file.
    providers : sequence of str, optional
        Execution providers (default: CPU).
    threads : int, optional
        Intra-op threads (default: ONNX Runtime's choice; ``EDGE_SCORER_ORT_THREADS`` wins).
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[str] | None = None,
                 threads: int | None = None) -> None:
        import onnxruntime as ort

        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        opts = ort.SessionOptions()
        threads = threads or int(os.environ.get("EDGE_SCORER_ORT_THREADS", "0") or 0)
        if threads:
            opts.intra_op_num_threads = threads
        try:
            self.session = ort.InferenceSession(
                str(path), opts, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: ONNX Runtime cannot load the model ({exc})") from exc
        self.path = path
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k.removeprefix("edge_scorer."): v for k, v in meta.items()
                         if k.startswith("edge_scorer.")}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the session; inputs are cast to contiguous float32."""
        missing = set(self.input_names) - set(feed)
        if missing:
            raise ValueError(f"{self.path.name}: missing inputs {sorted(missing)}; the model "
                             f"takes {list(self.input_names)}")
        arrays = {k: np.ascontiguousarray(feed[k], dtype=np.float32) for k in self.input_names}
        return dict(zip(self.output_names, self.session.run(list(self.output_names), arrays)))


def create_backend(path: str | Path, backend: str = "onnxruntime") -> Backend:
    """Open a model file with the named backend (``onnxruntime``; more in later releases)."""
    if backend in ("onnxruntime", "ort", "auto"):
        return OrtBackend(path)
    raise ValueError(f"unknown backend {backend!r}; available: onnxruntime")
