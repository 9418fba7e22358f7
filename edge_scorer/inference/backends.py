"""Inference backends: every backend exposes the same ``infer(feed: dict) -> dict``.

Names accepted by :func:`create_backend` (and ``--backend`` on the command line):

``onnxruntime``
    ONNX Runtime on the CPU (the default; part of the core install).
``ort-cuda`` / ``ort-tensorrt``
    ONNX Runtime's CUDA / TensorRT execution providers (``pip install onnxruntime-gpu``).
``tensorrt``
    Native TensorRT: a serialized engine built by ``edge-scorer export tensorrt`` for this GPU
    model, TensorRT version and ONNX file (:mod:`edge_scorer.inference.backends_trt`).
``torch`` / ``torch-cuda``
    PyTorch eager (optionally fp16 and CUDA graphs) on the weights exported beside the ONNX
    file or a training checkpoint (:mod:`edge_scorer.inference.backends_torch`).
``auto``
    The best one present: ``tensorrt`` (module, GPU and a matching engine) > ``ort-cuda`` >
    ``torch-cuda`` > ``onnxruntime``; the choice and its reason are logged.

Every backend has ``name``, ``input_names``, ``output_names`` and ``metadata`` (the ONNX
model's ``edge_scorer.*`` keys without the prefix, so the render-spec check of
:class:`~edge_scorer.inference.scorer.ScoringModel` works the same on every backend).
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from edge_scorer._log import get_logger

log = get_logger("backends")

#: Backend names :func:`create_backend` accepts.
BACKENDS = ("auto", "onnxruntime", "ort-cuda", "ort-tensorrt", "tensorrt", "torch", "torch-cuda")
_ALIASES = {"ort": "onnxruntime", "cpu": "onnxruntime", "trt": "tensorrt"}

#: What to install for each backend.
INSTALL_HINTS = {
    "onnxruntime": "pip install onnxruntime (a core dependency of edge-scorer)",
    "ort-cuda": "pip uninstall onnxruntime && pip install onnxruntime-gpu (on a Jetson: the "
                "onnxruntime-gpu wheel built for your JetPack), with the CUDA/cuDNN libraries it "
                "names",
    "ort-tensorrt": "pip uninstall onnxruntime && pip install onnxruntime-gpu, plus TensorRT "
                    "libraries of the version that ONNX Runtime release was built with",
    "tensorrt": "pip install 'edge-scorer[tensorrt]' on a PC with an NVIDIA GPU (JetPack ships "
                "TensorRT's Python bindings on a Jetson), PyTorch with CUDA for device buffers, "
                "and an engine: edge-scorer export tensorrt MODEL.onnx",
    "torch": "pip install 'edge-scorer[train]' (PyTorch CPU); for torch-cuda a CUDA build of "
             "PyTorch",
}
INSTALL_HINTS["torch-cuda"] = INSTALL_HINTS["torch"]
META_PREFIX = "edge_scorer."
#: ONNX opset used for every exported model.
OPSET = 17


class BackendUnavailable(ValueError):
    """The requested backend is not installed or cannot run here (the message says how to fix)."""


class Backend(Protocol):
    """What the engine needs of an inference backend."""

    name: str
    input_names: tuple[str, ...]
    output_names: tuple[str, ...]
    metadata: dict[str, str]

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the model on named inputs; return every named output."""
        ...


def _ort():
    import onnxruntime as ort

    return ort


def file_hash(path: str | Path, n_hex: int = 16) -> str:
    """SHA-256 of a file's bytes (first ``n_hex`` hex digits): model and checkpoint identity."""
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()[:n_hex]


def model_metadata(
    *, kind: str, spec: Any, model_cfg: Mapping[str, Any], window: int | None = None,
    provenance: str = "", extra: Mapping[str, Any] | None = None,
) -> dict[str, str]:
    """The ``edge_scorer.*`` metadata written into an exported model (all values strings)."""
    from edge_scorer import __version__
    from edge_scorer.stages import CLASS_NAMES

    meta = {
        "kind": kind,
        "render_spec": spec.name,
        "render_spec_hash": spec.hash,
        "montage": json.dumps(list(spec.row_names)),
        "class_names": json.dumps(list(CLASS_NAMES)),
        "preset": str(model_cfg.get("preset", model_cfg.get("arch", ""))),
        "model_cfg": json.dumps(dict(model_cfg), sort_keys=True),
        "window_length": str(window or ""),
        "training_data": provenance,
        "edge_scorer_version": __version__,
        "opset": str(OPSET),
    }
    for k, v in (extra or {}).items():
        meta[k] = v if isinstance(v, str) else json.dumps(v)
    return {META_PREFIX + k: v for k, v in meta.items()}


def onnx_metadata(path: str | Path) -> dict[str, str]:
    """The ``edge_scorer.*`` metadata of an ONNX file (prefix removed), read by ONNX Runtime."""
    ort = _ort()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"ONNX model not found: {path}")
    try:
        sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ValueError(f"{path}: not a readable ONNX model ({type(exc).__name__}: "
                         f"{str(exc)[:300]}); export it again with edge-scorer export onnx"
                         ) from exc
    meta = sess.get_modelmeta().custom_metadata_map
    return {k.removeprefix(META_PREFIX): v for k, v in meta.items() if k.startswith(META_PREFIX)}


def check_feed(feed: dict[str, np.ndarray], input_names: tuple[str, ...], what: str) -> None:
    """Raise ``ValueError`` when ``feed`` lacks one of ``input_names``."""
    missing = set(input_names) - set(feed)
    if missing:
        raise ValueError(f"{what}: missing inputs {sorted(missing)}; the model takes "
                         f"{list(input_names)}")


class OrtBackend:
    """ONNX Runtime session behind the common ``infer`` interface.

    Parameters
    ----------
    path : path-like
        ONNX model file.
    providers : sequence, optional
        Execution providers, names or ``(name, options)`` pairs (default: CPU).
    threads : int, optional
        Intra-op threads (default: ONNX Runtime's choice; ``EDGE_SCORER_ORT_THREADS`` wins).
        Idle threads do not spin unless ``EDGE_SCORER_ORT_SPIN=1``.

    Attributes
    ----------
    name : str
        ``onnxruntime``, ``ort-cuda`` or ``ort-tensorrt``: the provider that runs first.
    providers : list of str
        The providers the session really uses (ONNX Runtime drops those it cannot load).
    """

    name = "onnxruntime"

    def __init__(self, path: str | Path, providers: list[Any] | None = None,
                 threads: int | None = None) -> None:
        ort = _ort()
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"ONNX model not found: {path}")
        opts = ort.SessionOptions()
        threads = threads or int(os.environ.get("EDGE_SCORER_ORT_THREADS", "0") or 0)
        if threads:
            opts.intra_op_num_threads = threads
        # Idle worker threads sleep instead of spinning: on a shared CPU (other beds, a GUI, a
        # training job) spinning threads burn the cores the work needs (measured 20 % faster
        # under load, identical outputs); EDGE_SCORER_ORT_SPIN=1 restores ONNX Runtime's spin.
        spin = os.environ.get("EDGE_SCORER_ORT_SPIN", "0").strip() or "0"
        if spin not in ("0", "1"):
            raise ValueError(f"EDGE_SCORER_ORT_SPIN must be 0 or 1, got {spin!r}")
        opts.add_session_config_entry("session.intra_op.allow_spinning", spin)
        try:
            self.session = ort.InferenceSession(
                str(path), opts, providers=providers or ["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own exception types
            raise ValueError(f"{path}: ONNX Runtime cannot load the model ({exc})") from exc
        self.path = path
        self.providers = list(self.session.get_providers())
        self.name = {"CUDAExecutionProvider": "ort-cuda",
                     "TensorrtExecutionProvider": "ort-tensorrt"}.get(self.providers[0],
                                                                      "onnxruntime")
        self.input_names = tuple(i.name for i in self.session.get_inputs())
        self.output_names = tuple(o.name for o in self.session.get_outputs())
        meta = self.session.get_modelmeta().custom_metadata_map
        self.metadata = {k.removeprefix(META_PREFIX): v for k, v in meta.items()
                         if k.startswith(META_PREFIX)}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the session; inputs are cast to contiguous float32."""
        check_feed(feed, self.input_names, self.path.name)
        arrays = {k: np.ascontiguousarray(feed[k], dtype=np.float32) for k in self.input_names}
        return dict(zip(self.output_names, self.session.run(list(self.output_names), arrays)))


def ort_gpu_backend(path: str | Path, backend: str = "ort-cuda", *, fp16: bool = False,
                    cache_dir: str | Path | None = None, device_id: int = 0) -> OrtBackend:
    """ONNX Runtime with the CUDA (``ort-cuda``) or TensorRT (``ort-tensorrt``) provider.

    Parameters
    ----------
    path : path-like
        ONNX model file.
    backend : {"ort-cuda", "ort-tensorrt"}
    fp16 : bool
        ``ort-tensorrt`` only: let TensorRT build fp16 kernels.
    cache_dir : path-like, optional
        ``ort-tensorrt`` only: engine and timing cache folder (default
        ``~/.cache/edge-scorer/ort-tensorrt``); the first session on a machine builds the
        engine, later ones load it.
    device_id : int
        CUDA device.

    Raises
    ------
    BackendUnavailable
        The installed onnxruntime has no such provider, or it could not start (the session fell
        back to the CPU).
    """
    ort = _ort()
    wanted = {"ort-cuda": "CUDAExecutionProvider",
              "ort-tensorrt": "TensorrtExecutionProvider"}[backend]
    available = ort.get_available_providers()
    if wanted not in available:
        raise BackendUnavailable(
            f"backend {backend!r}: this onnxruntime ({ort.__version__}) has no {wanted} (it has "
            f"{', '.join(available)}); install: {INSTALL_HINTS[backend]}")
    cuda = ("CUDAExecutionProvider", {"device_id": device_id})
    if backend == "ort-cuda":
        providers: list[Any] = [cuda, "CPUExecutionProvider"]
    else:
        cache = Path(cache_dir or Path.home() / ".cache" / "edge-scorer" / "ort-tensorrt")
        cache.mkdir(parents=True, exist_ok=True)
        trt_opts = {"device_id": device_id, "trt_fp16_enable": bool(fp16),
                    "trt_engine_cache_enable": True, "trt_engine_cache_path": str(cache),
                    "trt_timing_cache_enable": True}
        providers = [("TensorrtExecutionProvider", trt_opts), cuda, "CPUExecutionProvider"]
    be = OrtBackend(path, providers=providers)
    if be.providers[0] != wanted:
        raise BackendUnavailable(
            f"backend {backend!r}: ONNX Runtime could not start {wanted} (the session uses "
            f"{be.providers}); check the CUDA/cuDNN/TensorRT libraries it needs "
            f"({INSTALL_HINTS[backend]})")
    return be


def nvidia_gpu_present() -> bool:
    """True when an NVIDIA driver exposes a GPU (desktop driver or Jetson), without importing
    any CUDA library."""
    gpus = Path("/proc/driver/nvidia/gpus")
    if gpus.is_dir() and any(gpus.iterdir()):
        return True
    return any(Path(p).exists() for p in ("/dev/nvidia0", "/etc/nv_tegra_release",
                                          "/dev/nvhost-gpu", "/dev/nvgpu/igpu0"))


def _has_module(name: str) -> bool:
    return importlib.util.find_spec(name) is not None


def choose_backend(path: str | Path) -> tuple[str, str]:
    """The backend ``auto`` picks for ``path`` and why.

    Returns
    -------
    name, reason : str
    """
    path = Path(path)
    if not nvidia_gpu_present():
        return "onnxruntime", "no NVIDIA GPU found"
    reasons = []
    torch_cuda = False
    if _has_module("torch"):
        import torch

        torch_cuda = bool(torch.cuda.is_available())
    if _has_module("tensorrt") and torch_cuda:
        from edge_scorer.inference.backends_trt import find_engine_for

        try:
            engine = find_engine_for(path)
        except (ValueError, ImportError, RuntimeError, OSError) as exc:  # incl. EngineMismatch
            engine, why = None, str(exc)
        else:
            why = f"no engine for {path.name} on this GPU/TensorRT"
        if engine is not None:
            return "tensorrt", f"TensorRT engine {engine.name} matches this GPU and model"
        reasons.append(f"tensorrt: {why}")
    else:
        reasons.append("tensorrt: needs the tensorrt module and PyTorch with CUDA (buffers)")
    if "CUDAExecutionProvider" in _ort().get_available_providers():
        return "ort-cuda", "; ".join(reasons + ["onnxruntime has the CUDA provider"])
    reasons.append("ort-cuda: onnxruntime has no CUDA provider")
    if torch_cuda:
        return "torch-cuda", "; ".join(reasons + ["PyTorch sees CUDA"])
    reasons.append("torch-cuda: no PyTorch with CUDA")
    return "onnxruntime", "; ".join(reasons)


def create_backend(path: str | Path, backend: str = "onnxruntime", **options: Any) -> Backend:
    """Open a model file with the named backend (see the module docstring).

    Parameters
    ----------
    path : path-like
        The ONNX model (every backend); ``torch`` also takes a training checkpoint (``.pt``)
        and ``tensorrt`` an engine file (``.engine``).
    backend : str
        One of :data:`BACKENDS` (``ort`` is ``onnxruntime``).
    **options
        Passed on: ``threads`` (onnxruntime), ``fp16`` / ``cache_dir`` (ort-tensorrt),
        ``precision`` / ``engine_dir`` (tensorrt), ``half`` / ``cuda_graphs`` (torch-cuda).

    Raises
    ------
    BackendUnavailable
        The backend is not installed or cannot run here; the message says what to install.
    ValueError
        Unknown backend name.
    """
    name = _ALIASES.get(backend, backend)
    if name not in BACKENDS:
        raise ValueError(f"unknown backend {backend!r}; available: {', '.join(BACKENDS)}")
    if name == "auto":
        name, why = choose_backend(path)
        log.info("backend auto -> %s (%s)", name, why)
    if name == "onnxruntime":
        return OrtBackend(path, threads=options.get("threads"))
    if name in ("ort-cuda", "ort-tensorrt"):
        return ort_gpu_backend(path, name, fp16=bool(options.get("fp16", False)),
                               cache_dir=options.get("cache_dir"))
    if name == "tensorrt":
        if not _has_module("tensorrt"):
            raise BackendUnavailable(f"backend 'tensorrt': the tensorrt module is not installed; "
                                     f"install: {INSTALL_HINTS['tensorrt']}")
        from edge_scorer.inference.backends_trt import TensorRTBackend

        return TensorRTBackend.open(path, precision=options.get("precision"),
                                    engine_dir=options.get("engine_dir"))
    if not _has_module("torch"):
        raise BackendUnavailable(f"backend {name!r}: PyTorch is not installed; install: "
                                 f"{INSTALL_HINTS[name]}")
    from edge_scorer.inference.backends_torch import TorchBackend

    return TorchBackend(path, device="cuda" if name == "torch-cuda" else "cpu",
                        half=bool(options.get("half", False)),
                        cuda_graphs=bool(options.get("cuda_graphs", False)))
