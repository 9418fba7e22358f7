"""Native TensorRT backend: serialized engines named so that a wrong engine is never loaded.

An engine only runs on the GPU model and TensorRT version it was built with, and only means
something for the ONNX file it was built from. ``edge-scorer export tensorrt`` therefore names
engines ``<stem>.<modelhash16>.<gpu-slug>.trt<version>.<precision>.engine`` (e.g.
``intra.3f2a...c1.nvidia-geforce-rtx-4090.trt10.3.0.fp16.engine``) and writes a JSON sidecar
(``<engine>.json``) with the same fields, the optimization profiles, the I/O tensors and the
ONNX model's ``edge_scorer.*`` metadata. :class:`TensorRTBackend` refuses an engine whose name,
sidecar, GPU, TensorRT version or model hash disagree (:class:`EngineMismatch`).

Execution follows TensorRT 10's name-based API: pick the optimization profile that covers the
batch, ``set_input_shape`` for every input, ``set_tensor_address`` for every I/O tensor, then
``execute_async_v3`` on a CUDA stream. Device buffers come from PyTorch's CUDA allocator
(:class:`TorchCudaBuffers`); ``tensorrt`` and ``torch`` are imported only when used.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.inference.backends import INSTALL_HINTS, BackendUnavailable, check_feed
from edge_scorer.inference.backends import (
    file_hash as model_hash,  # an engine is named by its model file's hash
)

log = get_logger("backends.tensorrt")

#: Engine precisions, in the order they are preferred when opening by ONNX path.
PRECISIONS = ("fp16", "fp32", "int8")
SIDECAR_FORMAT = "edge-scorer-engine/1"
_ENGINE_RE = re.compile(
    r"^(?P<stem>.+)\.(?P<model_hash>[0-9a-f]{16})\.(?P<gpu>[a-z0-9-]+)"
    r"\.trt(?P<trt_version>\d+(?:\.\d+)*)\.(?P<precision>fp32|fp16|int8)\.engine$")


class EngineMismatch(ValueError):
    """An engine file does not fit this GPU, TensorRT version or ONNX model."""


@dataclass(frozen=True)
class EngineName:
    """The fields of an engine file name (see the module docstring)."""

    stem: str
    model_hash: str
    gpu: str
    trt_version: str
    precision: str

    @property
    def filename(self) -> str:
        """``<stem>.<hash>.<gpu>.trt<version>.<precision>.engine``."""
        return (f"{self.stem}.{self.model_hash}.{self.gpu}.trt{self.trt_version}."
                f"{self.precision}.engine")

    @classmethod
    def parse(cls, name: str) -> EngineName | None:
        """The fields of an engine file name, or None when it is not one."""
        m = _ENGINE_RE.match(name)
        return cls(**m.groupdict()) if m else None


def gpu_slug(name: str) -> str:
    """A GPU model name as a file-name part: ``NVIDIA GeForce RTX 4090`` -> ``nvidia-geforce-
    rtx-4090``."""
    slug = re.sub(r"[^a-z0-9]+", "-", name.lower()).strip("-")
    if not slug:
        raise ValueError(f"GPU name {name!r} has no letters or digits")
    return slug



def sidecar_path(engine: str | Path) -> Path:
    """The JSON sidecar of an engine file (``<engine>.json``)."""
    engine = Path(engine)
    return engine.with_name(engine.name + ".json")


def load_tensorrt():
    """Import ``tensorrt`` (10 or later).

    Raises
    ------
    BackendUnavailable
        Not installed, or an older major version.
    """
    try:
        import tensorrt as trt
    except ImportError as exc:
        raise BackendUnavailable(f"TensorRT is not installed ({exc}); install: "
                                 f"{INSTALL_HINTS['tensorrt']}") from None
    major = int(str(getattr(trt, "__version__", "0")).split(".")[0] or 0)
    if major < 10:
        raise BackendUnavailable(
            f"TensorRT {getattr(trt, '__version__', '?')} found; edge-scorer uses the TensorRT "
            "10 API (JetPack 6.1 or later on a Jetson, pip install 'tensorrt>=10' on a PC); "
            "use --backend ort-cuda or onnxruntime with older versions")
    return trt


def detect_gpu_name(device: int = 0) -> str:
    """The model name of CUDA device ``device`` (PyTorch, else ``nvidia-smi``, else a Jetson's
    device-tree model).

    Raises
    ------
    BackendUnavailable
        No NVIDIA GPU could be named.
    """
    try:
        import torch

        if torch.cuda.is_available():
            return str(torch.cuda.get_device_name(device))
    except ImportError:
        pass
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run([smi, "--query-gpu=name", "--format=csv,noheader"],
                                 capture_output=True, text=True, timeout=10, check=True).stdout
            names = [line.strip() for line in out.splitlines() if line.strip()]
            if len(names) > device:
                return names[device]
        except (subprocess.SubprocessError, OSError):
            pass
    model = Path("/proc/device-tree/model")
    if model.is_file():
        return model.read_text(errors="replace").strip("\x00 \n")
    raise BackendUnavailable("no NVIDIA GPU found (PyTorch sees no CUDA device, no nvidia-smi, "
                             "not a Jetson); pass --gpu NAME to name the target GPU")


def engine_folders(onnx_path: Path, engine_dir: str | Path | None = None) -> list[Path]:
    """Folders searched for engines: ``engine_dir``, ``$EDGE_SCORER_ENGINE_DIR``, the model's."""
    found = [Path(p) for p in (engine_dir, os.environ.get("EDGE_SCORER_ENGINE_DIR")) if p]
    return [*found, onnx_path.parent]


def find_engine(onnx_path: str | Path, *, gpu: str, trt_version: str,
                precision: str | None = None, engine_dir: str | Path | None = None
                ) -> Path | None:
    """The engine built from ``onnx_path`` for this GPU and TensorRT version, or None.

    Raises
    ------
    EngineMismatch
        Engines of this model exist, but none for this GPU / TensorRT version / precision (the
        message lists them and says how to build the right one).
    """
    onnx_path = Path(onnx_path)
    digest, slug = model_hash(onnx_path), gpu_slug(gpu)
    others: list[str] = []
    for folder in engine_folders(onnx_path, engine_dir):
        if not folder.is_dir():
            continue
        names = [EngineName.parse(p.name) for p in sorted(folder.glob(f"{onnx_path.stem}.*"))]
        ours = [n for n in names if n and n.stem == onnx_path.stem and n.model_hash == digest]
        fits = [n for n in ours if n.gpu == slug and n.trt_version == trt_version
                and (precision is None or n.precision == precision)]
        if fits:
            best = min(fits, key=lambda n: PRECISIONS.index(n.precision))
            return folder / best.filename
        others += [str(folder / n.filename) for n in ours]
    if others:
        raise EngineMismatch(
            f"engines of {onnx_path.name} exist but none for GPU {slug!r}, TensorRT "
            f"{trt_version}{'' if precision is None else ', ' + precision}: {others}; build one "
            f"here: edge-scorer export tensorrt {onnx_path}"
            + ("" if precision is None else f" --precision {precision}"))
    return None


def find_engine_for(onnx_path: str | Path, precision: str | None = None,
                    engine_dir: str | Path | None = None) -> Path | None:
    """:func:`find_engine` for the GPU and TensorRT of this machine."""
    trt = load_tensorrt()
    return find_engine(onnx_path, gpu=detect_gpu_name(), trt_version=trt.__version__,
                       precision=precision, engine_dir=engine_dir)


def check_engine(engine_path: str | Path, *, gpu: str, trt_version: str,
                 onnx_path: str | Path | None = None) -> dict[str, Any]:
    """Check an engine's name and sidecar against this GPU, TensorRT and (optionally) its ONNX.

    Returns
    -------
    dict
        The sidecar.

    Raises
    ------
    FileNotFoundError
        No engine or no sidecar.
    EngineMismatch
        Anything disagrees (name not of the scheme, sidecar differs from the name, other GPU,
        other TensorRT version, other model).
    """
    engine_path = Path(engine_path)
    if not engine_path.is_file():
        raise FileNotFoundError(f"TensorRT engine not found: {engine_path}")
    rebuild = "rebuild it with: edge-scorer export tensorrt MODEL.onnx"
    name = EngineName.parse(engine_path.name)
    if name is None:
        raise EngineMismatch(f"{engine_path.name} is not named <model>.<hash16>.<gpu>.trt<ver>."
                             f"<precision>.engine, so its target cannot be checked; {rebuild}")
    side = sidecar_path(engine_path)
    if not side.is_file():
        raise FileNotFoundError(f"{side} not found: the engine's sidecar carries the model "
                                f"metadata; {rebuild}")
    meta = json.loads(side.read_text())
    if meta.get("format") != SIDECAR_FORMAT:
        raise EngineMismatch(f"{side}: unknown sidecar format {meta.get('format')!r}; {rebuild}")
    for field in ("model_hash", "gpu", "trt_version", "precision"):
        if str(meta.get(field)) != getattr(name, field):
            raise EngineMismatch(f"{engine_path.name}: the name says {field}="
                                 f"{getattr(name, field)!r}, its sidecar {meta.get(field)!r} "
                                 f"(renamed file?); {rebuild}")
    if name.gpu != gpu_slug(gpu):
        raise EngineMismatch(f"{engine_path.name} was built for GPU {meta.get('gpu_name')!r}, "
                             f"this one is {gpu!r}; engines only run on the GPU model they were "
                             f"built on: {rebuild}")
    if name.trt_version != trt_version:
        raise EngineMismatch(f"{engine_path.name} was built with TensorRT {name.trt_version}, "
                             f"this is TensorRT {trt_version}; {rebuild}")
    if onnx_path is not None and model_hash(onnx_path) != name.model_hash:
        raise EngineMismatch(f"{engine_path.name} was built from another model than "
                             f"{Path(onnx_path).name} (hash {model_hash(onnx_path)}); {rebuild}")
    return meta


class HostBuffers:
    """I/O buffers in host memory, addressed by their numpy data pointers.

    Real TensorRT on a GPU needs device memory (:class:`TorchCudaBuffers`). Host buffers serve
    runtimes that read host pointers, such as the test suite's fake TensorRT module, and run
    the same call sequence.
    """

    stream_handle = 0

    def empty(self, shape: tuple[int, ...], dtype: np.dtype) -> np.ndarray:
        return np.empty(shape, dtype=dtype)

    def upload(self, array: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
        if out is None or out.shape != array.shape or out.dtype != array.dtype:
            out = np.empty_like(array)
        np.copyto(out, array)
        return out

    def pointer(self, buf: np.ndarray) -> int:
        return int(buf.ctypes.data)

    def download(self, buf: np.ndarray) -> np.ndarray:
        return buf.copy()

    def synchronize(self) -> None:
        return None


class TorchCudaBuffers:
    """Device buffers and a CUDA stream from PyTorch (a CUDA build of torch is needed).

    Parameters
    ----------
    device : int
        CUDA device index.
    """

    def __init__(self, device: int = 0) -> None:
        try:
            import torch
        except ImportError:
            raise BackendUnavailable("TensorRT device buffers need PyTorch with CUDA; install: "
                                     f"{INSTALL_HINTS['tensorrt']}") from None
        if not torch.cuda.is_available():
            raise BackendUnavailable("TensorRT device buffers need a CUDA device, and this "
                                     "PyTorch sees none (CPU build, or no GPU/driver)")
        self.torch = torch
        self.device = torch.device("cuda", device)
        self.stream = torch.cuda.Stream(self.device)
        self.stream_handle = int(self.stream.cuda_stream)

    def _dtype(self, dtype: np.dtype):
        return self.torch.from_numpy(np.empty(0, dtype=dtype)).dtype

    def empty(self, shape: tuple[int, ...], dtype: np.dtype):
        with self.torch.cuda.stream(self.stream):
            return self.torch.empty(shape, dtype=self._dtype(dtype), device=self.device)

    def upload(self, array: np.ndarray, out=None):
        host = self.torch.from_numpy(np.ascontiguousarray(array))
        if out is None or tuple(out.shape) != array.shape or out.dtype != host.dtype:
            out = self.empty(array.shape, array.dtype)
        with self.torch.cuda.stream(self.stream):
            out.copy_(host, non_blocking=True)
        return out

    def pointer(self, buf) -> int:
        return int(buf.data_ptr())

    def download(self, buf) -> np.ndarray:
        with self.torch.cuda.stream(self.stream):
            host = buf.to("cpu")
        return host.numpy()

    def synchronize(self) -> None:
        self.stream.synchronize()


class TensorRTBackend:
    """A serialized TensorRT engine behind the common ``infer`` interface.

    Parameters
    ----------
    engine_path : path-like
        An engine written by ``edge-scorer export tensorrt`` (with its sidecar).
    onnx_path : path-like, optional
        The ONNX file the engine must have been built from (checked by hash).
    trt : module, optional
        The ``tensorrt`` module (default: imported).
    gpu : str, optional
        This machine's GPU model (default: detected).
    buffers : HostBuffers or TorchCudaBuffers, optional
        Buffer provider (default: :class:`TorchCudaBuffers`).

    Raises
    ------
    EngineMismatch
        The engine was built for another GPU, TensorRT version or model.
    """

    name = "tensorrt"

    def __init__(self, engine_path: str | Path, *, onnx_path: str | Path | None = None,
                 trt: Any = None, gpu: str | None = None, buffers: Any = None) -> None:
        trt = trt or load_tensorrt()
        self.path = Path(engine_path)
        gpu = gpu or detect_gpu_name()
        sidecar = check_engine(self.path, gpu=gpu, trt_version=trt.__version__,
                               onnx_path=onnx_path)
        self.sidecar = sidecar
        self.metadata = dict(sidecar.get("metadata", {}))
        self.precision = str(sidecar["precision"])
        self._logger = trt.Logger(trt.Logger.WARNING)
        self._runtime = trt.Runtime(self._logger)
        engine = self._runtime.deserialize_cuda_engine(self.path.read_bytes())
        if engine is None:
            raise ValueError(f"{self.path}: TensorRT could not deserialize the engine (corrupt "
                             "file?); rebuild it with edge-scorer export tensorrt")
        self.engine = engine
        names = [engine.get_tensor_name(i) for i in range(engine.num_io_tensors)]
        self.input_names = tuple(n for n in names
                                 if engine.get_tensor_mode(n) == trt.TensorIOMode.INPUT)
        self.output_names = tuple(n for n in names
                                  if engine.get_tensor_mode(n) == trt.TensorIOMode.OUTPUT)
        if (list(self.input_names) != list(sidecar["inputs"])
                or list(self.output_names) != list(sidecar["outputs"])):
            raise EngineMismatch(f"{self.path.name}: engine tensors {names} differ from its "
                                 f"sidecar's {list(sidecar['inputs'])} + "
                                 f"{list(sidecar['outputs'])}")
        self._dtypes = {n: np.dtype(trt.nptype(engine.get_tensor_dtype(n))) for n in names}
        self.profiles = [{n: tuple(tuple(int(d) for d in s)
                                   for s in engine.get_tensor_profile_shape(n, p))
                          for n in self.input_names}
                         for p in range(engine.num_optimization_profiles)]
        self.context = engine.create_execution_context()
        self.buffers = buffers if buffers is not None else TorchCudaBuffers()
        self._active: int | None = None
        self._bufs: dict[str, Any] = {}

    @classmethod
    def open(cls, path: str | Path, *, precision: str | None = None,
             engine_dir: str | Path | None = None, **kwargs: Any) -> TensorRTBackend:
        """An engine file, or the engine of an ONNX model for this GPU and TensorRT.

        Raises
        ------
        BackendUnavailable
            No engine for the ONNX model has been built (the message says how).
        """
        path = Path(path)
        if path.suffix == ".engine":
            return cls(path, **kwargs)
        trt = kwargs.get("trt") or load_tensorrt()
        gpu = kwargs.get("gpu") or detect_gpu_name()
        engine = find_engine(path, gpu=gpu, trt_version=trt.__version__, precision=precision,
                             engine_dir=engine_dir)
        if engine is None:
            raise BackendUnavailable(
                f"backend 'tensorrt': no engine of {path.name} for GPU {gpu!r} and TensorRT "
                f"{trt.__version__}; build one on this machine: edge-scorer export tensorrt "
                f"{path} --precision {precision or 'fp16'}")
        log.info("TensorRT engine %s", engine.name)
        return cls(engine, onnx_path=path, **{**kwargs, "trt": trt, "gpu": gpu})

    @property
    def max_batch(self) -> int:
        """The largest batch any optimization profile takes."""
        return max(shapes[2][0] for prof in self.profiles for shapes in prof.values())

    def _profile_for(self, shapes: dict[str, tuple[int, ...]]) -> int:
        fits = []
        for i, prof in enumerate(self.profiles):
            ok = all(len(shapes[n]) == len(lo) and all(a <= s <= b for a, s, b in
                                                       zip(lo, shapes[n], hi))
                     for n, (lo, _, hi) in prof.items())
            if ok:
                fits.append((max(hi[0] for _, _, hi in prof.values()), i))
        if not fits:
            raise ValueError(f"{self.path.name}: input shapes {shapes} are outside every "
                             f"optimization profile {self.profiles}; rebuild with a --profile "
                             "that covers them")
        return min(fits)[1]

    def _buffer(self, name: str, shape: tuple[int, ...], array: np.ndarray | None = None):
        buf = self._bufs.get(name)
        if array is not None:
            buf = self.buffers.upload(array, out=buf)
        elif buf is None or tuple(buf.shape) != shape:
            buf = self.buffers.empty(shape, self._dtypes[name])
        self._bufs[name] = buf
        return buf

    def _run(self, arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        ctx, stream = self.context, self.buffers.stream_handle
        profile = self._profile_for({n: a.shape for n, a in arrays.items()})
        if profile != self._active:
            ctx.set_optimization_profile_async(profile, stream)
            self._active = profile
        for n, a in arrays.items():
            if not ctx.set_input_shape(n, a.shape):
                raise ValueError(f"{self.path.name}: TensorRT refused shape {a.shape} for {n}")
            ctx.set_tensor_address(n, self.buffers.pointer(self._buffer(n, a.shape, a)))
        for n in self.output_names:
            shape = tuple(int(d) for d in ctx.get_tensor_shape(n))
            if any(d < 0 for d in shape):
                raise RuntimeError(f"{self.path.name}: output {n} shape {shape} unresolved")
            ctx.set_tensor_address(n, self.buffers.pointer(self._buffer(n, shape)))
        if not ctx.execute_async_v3(stream):
            raise RuntimeError(f"{self.path.name}: TensorRT execution failed (see its log)")
        self.buffers.synchronize()
        return {n: np.asarray(self.buffers.download(self._bufs[n]), dtype=np.float32)
                for n in self.output_names}

    def infer(self, feed: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        """Run the engine; batches above the largest profile are split."""
        check_feed(feed, self.input_names, self.path.name)
        arrays = {n: np.ascontiguousarray(feed[n], dtype=self._dtypes[n])
                  for n in self.input_names}
        batch = {a.shape[0] for a in arrays.values()}
        if len(batch) != 1:
            raise ValueError(f"{self.path.name}: inputs disagree on the batch size: "
                             f"{ {n: a.shape for n, a in arrays.items()} }")
        n, step = batch.pop(), self.max_batch
        if n <= step:
            return self._run(arrays)
        parts = [self._run({k: a[i:i + step] for k, a in arrays.items()})
                 for i in range(0, n, step)]
        return {k: np.concatenate([p[k] for p in parts]) for k in self.output_names}
