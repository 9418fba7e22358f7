"""A FAKE ``tensorrt`` module: the part of the TensorRT 10 Python API edge-scorer uses.

Real TensorRT cannot be installed on the machines these tests run on (no NVIDIA GPU, and the
PyPI ``tensorrt`` packages only pull NVIDIA's real wheels, which need CUDA). So the TensorRT
code path of edge-scorer is tested against this module, which enforces what the real API
requires and fails the way it fails:

- a network comes from ``Builder.create_network`` and is filled by ``OnnxParser.parse`` once
  (parsing into a used network, or building an unparsed one, fails);
- every dynamic input needs an optimization profile with ``min <= opt <= max`` per dimension
  and static dimensions equal to the network's (else ``add_optimization_profile`` returns -1);
- INT8 without Q/DQ nodes needs an ``IInt8Calibrator`` whose base ``__init__`` was called; the
  build calls ``get_batch_size``, ``read_calibration_cache``, ``get_batch`` until it returns
  None (reading each batch from the given addresses) and ``write_calibration_cache``; the
  calibration batch must fit the calibration profile;
- the timing cache and the serialized engine round-trip through bytes (garbage is refused);
- an execution context starts on profile 0; switching profile drops the input shapes;
  ``set_input_shape`` refuses shapes outside the active profile; ``execute_async_v3`` needs
  every input shape and every I/O tensor address set, and an integer stream handle.

Execution reads the inputs from the addresses given to ``set_tensor_address`` (host memory:
:class:`edge_scorer.inference.backends_trt.HostBuffers`), runs the ONNX model kept inside the
"engine"
with ONNX Runtime on the CPU (fp16 engines round inputs and outputs to float16) and writes the
outputs to their addresses. It checks API use and data flow, not TensorRT's numerics or speed:
those need the real check on a GPU machine (``edge-scorer export tensorrt --verify``).
"""

from __future__ import annotations

import ctypes
import enum
import hashlib
import json

import numpy as np

__version__ = "10.3.0"

_ENGINE_MAGIC = b"FAKE-TRT-ENGINE\x00"
_CACHE_MAGIC = b"FAKE-TRT-TIMING\x00"


class Severity(enum.IntEnum):
    INTERNAL_ERROR = 0
    ERROR = 1
    WARNING = 2
    INFO = 3
    VERBOSE = 4


class Logger:
    """Records messages at or above ``min_severity`` in ``messages``."""

    Severity = Severity
    INTERNAL_ERROR, ERROR, WARNING, INFO, VERBOSE = tuple(Severity)

    def __init__(self, min_severity: Severity = Severity.WARNING) -> None:
        self.min_severity = min_severity
        self.messages: list[tuple[Severity, str]] = []

    def log(self, severity: Severity, msg: str) -> None:
        if severity <= self.min_severity:
            self.messages.append((severity, msg))


class DataType(enum.IntEnum):
    FLOAT = 0
    HALF = 1
    INT8 = 2
    INT32 = 3
    BOOL = 4
    UINT8 = 5
    INT64 = 8


_NP = {DataType.FLOAT: np.float32, DataType.HALF: np.float16, DataType.INT8: np.int8,
       DataType.INT32: np.int32, DataType.BOOL: np.bool_, DataType.UINT8: np.uint8,
       DataType.INT64: np.int64}
_ONNX_TYPES = {1: DataType.FLOAT, 10: DataType.HALF, 3: DataType.INT8, 6: DataType.INT32,
               9: DataType.BOOL, 2: DataType.UINT8, 7: DataType.INT64}


def nptype(dtype: DataType):
    """The numpy type of a TensorRT data type."""
    return _NP[DataType(dtype)]


class TensorIOMode(enum.IntEnum):
    NONE = 0
    INPUT = 1
    OUTPUT = 2


class BuilderFlag(enum.IntEnum):
    FP16 = 0
    INT8 = 1


class MemoryPoolType(enum.IntEnum):
    WORKSPACE = 0


class CalibrationAlgoType(enum.IntEnum):
    LEGACY_CALIBRATION = 0
    ENTROPY_CALIBRATION = 1
    ENTROPY_CALIBRATION_2 = 2
    MINMAX_CALIBRATION = 3


class Dims(tuple):
    """A shape (``-1`` marks a dynamic dimension)."""

    def __new__(cls, dims=()):
        return super().__new__(cls, (int(d) for d in dims))


class IHostMemory(bytes):
    """Serialized data (bytes-like, as the real one supports the buffer protocol)."""

    @property
    def nbytes(self) -> int:
        return len(self)


class ITensor:
    def __init__(self, name: str, shape: Dims, dtype: DataType) -> None:
        self.name, self.shape, self.dtype = name, shape, dtype


class INetworkDefinition:
    def __init__(self, builder: Builder, flags: int) -> None:
        self._builder, self.flags = builder, flags
        self._inputs: list[ITensor] = []
        self._outputs: list[ITensor] = []
        self._onnx: bytes | None = None
        self._has_qdq = False

    num_inputs = property(lambda self: len(self._inputs))
    num_outputs = property(lambda self: len(self._outputs))

    def get_input(self, index: int) -> ITensor:
        return self._inputs[index]

    def get_output(self, index: int) -> ITensor:
        return self._outputs[index]


class ParserError:
    def __init__(self, message: str) -> None:
        self._message = message

    def desc(self) -> str:
        return self._message

    def __str__(self) -> str:
        return self._message


class OnnxParser:
    def __init__(self, network: INetworkDefinition, logger: Logger) -> None:
        if not isinstance(network, INetworkDefinition):
            raise TypeError("OnnxParser needs a network from Builder.create_network")
        self.network, self.logger = network, logger
        self._errors: list[ParserError] = []

    num_errors = property(lambda self: len(self._errors))

    def get_error(self, index: int) -> ParserError:
        return self._errors[index]

    def parse_from_file(self, model: str) -> bool:
        with open(model, "rb") as fh:
            return self.parse(fh.read())

    def parse(self, model: bytes, path: str | None = None) -> bool:
        import onnx

        net = self.network
        if net._onnx is not None:
            raise RuntimeError("this network was already parsed: create a new network per model")
        try:
            proto = onnx.load_from_string(bytes(model))
            onnx.checker.check_model(proto)
        except Exception as exc:  # onnx raises DecodeError / ValidationError
            self._errors.append(ParserError(f"ONNX parse error: {exc}"))
            return False
        inits = {i.name for i in proto.graph.initializer}

        def tensor(vi) -> ITensor:
            tt = vi.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else -1 for d in tt.shape.dim]
            if tt.elem_type not in _ONNX_TYPES:
                raise ValueError(f"unsupported element type {tt.elem_type} of {vi.name}")
            return ITensor(vi.name, Dims(dims), _ONNX_TYPES[tt.elem_type])

        try:
            net._inputs = [tensor(v) for v in proto.graph.input if v.name not in inits]
            net._outputs = [tensor(v) for v in proto.graph.output]
        except ValueError as exc:
            self._errors.append(ParserError(str(exc)))
            return False
        net._onnx = bytes(model)
        net._has_qdq = any(n.op_type in ("QuantizeLinear", "DequantizeLinear")
                           for n in proto.graph.node)
        return True


class IOptimizationProfile:
    def __init__(self) -> None:
        self._shapes: dict[str, tuple[Dims, Dims, Dims]] = {}
        self._valid = True

    def set_shape(self, input: str, min, opt, max) -> None:  # noqa: A002 - TensorRT's names
        lo, mid, hi = Dims(min), Dims(opt), Dims(max)
        if not (len(lo) == len(mid) == len(hi)) or not all(
                0 <= a <= b <= c for a, b, c in zip(lo, mid, hi)):
            self._valid = False  # TensorRT logs an error; adding the profile then fails
            return
        self._shapes[input] = (lo, mid, hi)

    def get_shape(self, input: str) -> list[Dims]:  # noqa: A002
        return list(self._shapes.get(input, ()))

    def __bool__(self) -> bool:
        return self._valid


class ITimingCache:
    def __init__(self, entries: dict[str, str]) -> None:
        self.entries = dict(entries)
        self.loaded_entries = len(entries)

    def serialize(self) -> IHostMemory:
        return IHostMemory(_CACHE_MAGIC + json.dumps(self.entries, sort_keys=True).encode())


class IInt8Calibrator:
    """Base of application calibrators; subclasses must call ``__init__`` explicitly."""

    def __init__(self) -> None:
        self._fake_trt_initialized = True

    def get_algorithm(self) -> CalibrationAlgoType:
        return CalibrationAlgoType.ENTROPY_CALIBRATION_2


class IInt8EntropyCalibrator2(IInt8Calibrator):
    pass


class IBuilderConfig:
    def __init__(self, builder: Builder) -> None:
        self._builder = builder
        self._flags: set[BuilderFlag] = set()
        self._profiles: list[IOptimizationProfile] = []
        self._pools: dict[MemoryPoolType, int] = {}
        self._calibrator: IInt8Calibrator | None = None
        self._calibration_profile: IOptimizationProfile | None = None
        self._timing_cache: ITimingCache | None = None

    def set_flag(self, flag: BuilderFlag) -> None:
        self._flags.add(BuilderFlag(flag))

    def clear_flag(self, flag: BuilderFlag) -> None:
        self._flags.discard(BuilderFlag(flag))

    def get_flag(self, flag: BuilderFlag) -> bool:
        return BuilderFlag(flag) in self._flags

    def set_memory_pool_limit(self, pool: MemoryPoolType, pool_size: int) -> None:
        if int(pool_size) <= 0:
            raise ValueError("memory pool limit must be positive")
        self._pools[MemoryPoolType(pool)] = int(pool_size)

    def add_optimization_profile(self, profile: IOptimizationProfile) -> int:
        if not isinstance(profile, IOptimizationProfile) or not profile or not profile._shapes:
            return -1
        self._profiles.append(profile)
        return len(self._profiles) - 1

    @property
    def num_optimization_profiles(self) -> int:
        return len(self._profiles)

    @property
    def int8_calibrator(self) -> IInt8Calibrator | None:
        return self._calibrator

    @int8_calibrator.setter
    def int8_calibrator(self, calibrator: IInt8Calibrator) -> None:
        if not getattr(calibrator, "_fake_trt_initialized", False):
            raise TypeError("calibrator: call IInt8EntropyCalibrator2.__init__(self) in your "
                            "__init__ (pybind11 base classes are not initialised implicitly)")
        self._calibrator = calibrator

    def set_calibration_profile(self, profile: IOptimizationProfile) -> bool:
        if not profile or not profile._shapes:
            return False
        self._calibration_profile = profile
        return True

    def create_timing_cache(self, serialized_timing_cache: bytes) -> ITimingCache | None:
        data = bytes(serialized_timing_cache)
        if not data:
            return ITimingCache({})
        if not data.startswith(_CACHE_MAGIC):
            return None  # TensorRT logs an error for an invalid cache
        return ITimingCache(json.loads(data[len(_CACHE_MAGIC):]))

    def set_timing_cache(self, cache: ITimingCache, ignore_mismatch: bool) -> bool:
        if not isinstance(cache, ITimingCache):
            return False
        self._timing_cache = cache
        return True

    def get_timing_cache(self) -> ITimingCache | None:
        return self._timing_cache


def _read(ptr: int, shape: tuple[int, ...], dtype) -> np.ndarray:
    dtype = np.dtype(dtype)
    n = int(np.prod(shape)) * dtype.itemsize
    if not isinstance(ptr, int) or ptr == 0:
        raise ValueError(f"invalid address {ptr!r}")
    raw = (ctypes.c_char * n).from_address(ptr)
    return np.frombuffer(bytes(raw), dtype=dtype).reshape(shape)


class Builder:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def create_network(self, flags: int = 0) -> INetworkDefinition:
        return INetworkDefinition(self, int(flags))

    def create_builder_config(self) -> IBuilderConfig:
        return IBuilderConfig(self)

    def create_optimization_profile(self) -> IOptimizationProfile:
        return IOptimizationProfile()

    def _error(self, msg: str) -> None:
        self.logger.log(Severity.ERROR, msg)

    def build_serialized_network(self, network: INetworkDefinition,
                                 config: IBuilderConfig) -> IHostMemory | None:
        if network._builder is not self or config._builder is not self:
            self._error("network and config must come from this builder")
            return None
        if network._onnx is None or not network._inputs:
            self._error("network has no inputs: parse the ONNX model into it first")
            return None
        profiles = []
        for prof in config._profiles:
            entry = {}
            for t in network._inputs:
                if t.name not in prof._shapes:
                    if any(d < 0 for d in t.shape):
                        self._error(f"profile has no shape for dynamic input {t.name}")
                        return None
                    entry[t.name] = [list(t.shape)] * 3
                    continue
                for s in prof._shapes[t.name]:
                    if len(s) != len(t.shape) or any(
                            d >= 0 and d != v for d, v in zip(t.shape, s)):
                        self._error(f"profile shape {tuple(s)} of {t.name} does not fit the "
                                    f"network's {tuple(t.shape)}")
                        return None
                entry[t.name] = [list(s) for s in prof._shapes[t.name]]
            profiles.append(entry)
        if not profiles:
            if any(d < 0 for t in network._inputs for d in t.shape):
                self._error("dynamic inputs need at least one optimization profile")
                return None
            profiles = [{t.name: [list(t.shape)] * 3 for t in network._inputs}]
        calibration = None
        if BuilderFlag.INT8 in config._flags and not network._has_qdq:
            calibration = self._calibrate(network, config)
            if calibration is None:
                return None
        digest = hashlib.sha256(network._onnx).hexdigest()[:16]
        precision = ("int8" if BuilderFlag.INT8 in config._flags else
                     "fp16" if BuilderFlag.FP16 in config._flags else "fp32")
        if config._timing_cache is not None:
            config._timing_cache.entries[f"{digest}:{precision}:{len(profiles)}"] = "tactics"
        header = {
            "inputs": [{"name": t.name, "shape": list(t.shape), "dtype": int(t.dtype)}
                       for t in network._inputs],
            "outputs": [{"name": t.name, "shape": list(t.shape), "dtype": int(t.dtype)}
                        for t in network._outputs],
            "profiles": profiles, "precision": precision, "calibration": calibration,
        }
        head = json.dumps(header).encode()  # engine bytes: magic, header size, header, ONNX
        return IHostMemory(_ENGINE_MAGIC + len(head).to_bytes(8, "little") + head
                           + network._onnx)

    def _calibrate(self, network: INetworkDefinition, config: IBuilderConfig) -> dict | None:
        calib = config._calibrator
        if calib is None:
            self._error("INT8 without Q/DQ nodes needs config.int8_calibrator")
            return None
        prof = config._calibration_profile or (config._profiles[0] if config._profiles
                                               else None)
        if prof is None:
            self._error("INT8 calibration of a dynamic network needs a calibration profile")
            return None
        names = [t.name for t in network._inputs]
        shapes = {t.name: tuple(prof._shapes[t.name][1]) for t in network._inputs}  # OPT
        batch = int(calib.get_batch_size())
        if any(s[0] != batch for s in shapes.values()):
            # TensorRT reads OPT-shaped batches whatever get_batch_size says; the fake insists
            # they agree, so a calibrator that sends other batch sizes is caught here
            self._error(f"calibrator batch {batch} differs from the calibration profile's OPT "
                        f"shapes {shapes}")
            return None
        cache = calib.read_calibration_cache()
        if cache:
            return {"from_cache": True, "batches": 0}
        amax = {n: 0.0 for n in names}
        n_batches = 0
        while True:
            ptrs = calib.get_batch(names)
            if not ptrs:
                break
            if len(ptrs) != len(names):
                self._error(f"get_batch returned {len(ptrs)} addresses for inputs {names}")
                return None
            for name, ptr in zip(names, ptrs):
                t = next(t for t in network._inputs if t.name == name)
                data = _read(int(ptr), shapes[name], nptype(t.dtype))
                amax[name] = max(amax[name], float(np.abs(data).max()))
            n_batches += 1
        if n_batches == 0:
            self._error("the calibrator gave no batch")
            return None
        calib.write_calibration_cache(IHostMemory(json.dumps(amax).encode()))
        return {"from_cache": False, "batches": n_batches, "amax": amax}


class ICudaEngine:
    def __init__(self, header: dict, onnx_bytes: bytes) -> None:
        self._header, self._onnx = header, onnx_bytes
        self._io = [(t, TensorIOMode.INPUT) for t in header["inputs"]] + [
            (t, TensorIOMode.OUTPUT) for t in header["outputs"]]
        self._by_name = {t["name"]: (t, mode) for t, mode in self._io}

    num_io_tensors = property(lambda self: len(self._io))
    num_optimization_profiles = property(lambda self: len(self._header["profiles"]))

    def _tensor(self, name: str) -> tuple[dict, TensorIOMode]:
        if name not in self._by_name:
            raise KeyError(f"no I/O tensor named {name!r}")
        return self._by_name[name]

    def get_tensor_name(self, index: int) -> str:
        return self._io[index][0]["name"]

    def get_tensor_mode(self, name: str) -> TensorIOMode:
        return self._by_name[name][1] if name in self._by_name else TensorIOMode.NONE

    def get_tensor_dtype(self, name: str) -> DataType:
        return DataType(self._tensor(name)[0]["dtype"])

    def get_tensor_shape(self, name: str) -> Dims:
        return Dims(self._tensor(name)[0]["shape"])

    def get_tensor_profile_shape(self, name: str, profile_index: int) -> list[Dims]:
        t, mode = self._tensor(name)
        if mode != TensorIOMode.INPUT:
            raise ValueError(f"{name} is not an input")
        return [Dims(s) for s in self._header["profiles"][profile_index][name]]

    def create_execution_context(self) -> IExecutionContext:
        return IExecutionContext(self)


class Runtime:
    def __init__(self, logger: Logger) -> None:
        self.logger = logger

    def deserialize_cuda_engine(self, serialized_engine: bytes) -> ICudaEngine | None:
        data = bytes(serialized_engine)
        if not data.startswith(_ENGINE_MAGIC):
            self.logger.log(Severity.ERROR, "engine deserialization failed: bad magic")
            return None
        off = len(_ENGINE_MAGIC)
        size = int.from_bytes(data[off:off + 8], "little")
        header = json.loads(data[off + 8:off + 8 + size])
        return ICudaEngine(header, data[off + 8 + size:])


class IExecutionContext:
    def __init__(self, engine: ICudaEngine) -> None:
        self.engine = engine
        self._profile = 0
        self._shapes: dict[str, tuple[int, ...]] = {}
        self._addresses: dict[str, int] = {}
        self._session = None
        self._shape_cache: dict[tuple, dict[str, tuple[int, ...]]] = {}
        self.executions = 0
        self.last_error = ""

    @property
    def active_optimization_profile(self) -> int:
        return self._profile

    def _fail(self, msg: str) -> bool:
        self.last_error = msg
        return False

    def set_optimization_profile_async(self, profile_index: int, stream_handle: int) -> bool:
        if not isinstance(stream_handle, int):
            raise TypeError("stream_handle must be an int (a cudaStream_t)")
        if not 0 <= profile_index < self.engine.num_optimization_profiles:
            return self._fail(f"no optimization profile {profile_index}")
        self._profile = profile_index
        self._shapes.clear()  # input shapes must be set again for the new profile
        return True

    def set_input_shape(self, name: str, shape) -> bool:
        if self.engine.get_tensor_mode(name) != TensorIOMode.INPUT:
            return self._fail(f"{name} is not an input tensor")
        shape = tuple(int(d) for d in shape)
        lo, _, hi = self.engine.get_tensor_profile_shape(name, self._profile)
        if len(shape) != len(lo) or not all(a <= s <= b for a, s, b in zip(lo, shape, hi)):
            return self._fail(f"shape {shape} of {name} is outside profile {self._profile} "
                              f"({tuple(lo)}..{tuple(hi)})")
        self._shapes[name] = shape
        return True

    def infer_shapes(self) -> list[str]:
        return [t["name"] for t in self.engine._header["inputs"] if t["name"] not in self._shapes]

    def _ort(self):
        import onnxruntime as ort

        if self._session is None:
            self._session = ort.InferenceSession(self.engine._onnx,
                                                 providers=["CPUExecutionProvider"])
        return self._session

    def _output_shapes(self) -> dict[str, tuple[int, ...]]:
        """Output shapes for the current input shapes (TensorRT infers them statically; the
        fake runs the model once on zeros per input-shape combination)."""
        key = tuple(sorted(self._shapes.items()))
        if key not in self._shape_cache:
            feed = {t["name"]: np.zeros(self._shapes[t["name"]], nptype(DataType(t["dtype"])))
                    for t in self.engine._header["inputs"]}
            outs = self._ort().run(None, feed)
            self._shape_cache[key] = {t["name"]: tuple(y.shape) for t, y in
                                      zip(self.engine._header["outputs"], outs)}
        return self._shape_cache[key]

    def get_tensor_shape(self, name: str) -> Dims:
        t, mode = self.engine._tensor(name)
        if mode == TensorIOMode.INPUT:
            return Dims(self._shapes.get(name, t["shape"]))
        if self.infer_shapes():
            return Dims(t["shape"])
        return Dims(self._output_shapes()[name])

    def set_tensor_address(self, name: str, memory: int) -> bool:
        if self.engine.get_tensor_mode(name) == TensorIOMode.NONE:
            return self._fail(f"{name} is not an I/O tensor")
        if not isinstance(memory, int) or memory == 0:
            return self._fail(f"invalid address for {name}")
        self._addresses[name] = memory
        return True

    def execute_async_v3(self, stream_handle: int) -> bool:
        if not isinstance(stream_handle, int):
            raise TypeError("stream_handle must be an int (a cudaStream_t)")
        missing = self.infer_shapes()
        if missing:
            return self._fail(f"input shapes not set: {missing}")
        unset = [self.engine.get_tensor_name(i) for i in range(self.engine.num_io_tensors)
                 if self.engine.get_tensor_name(i) not in self._addresses]
        if unset:
            return self._fail(f"tensor addresses not set: {unset}")
        half = self.engine._header["precision"] in ("fp16", "int8")
        feed = {}
        for t in self.engine._header["inputs"]:
            x = _read(self._addresses[t["name"]], self._shapes[t["name"]],
                      nptype(DataType(t["dtype"])))
            feed[t["name"]] = x.astype(np.float16).astype(x.dtype) if half else x
        outs = self._ort().run(None, feed)
        for t, y in zip(self.engine._header["outputs"], outs):
            expect = tuple(self.get_tensor_shape(t["name"]))
            if tuple(y.shape) != expect:
                return self._fail(f"output {t['name']} has shape {y.shape}, expected {expect}")
            y = np.ascontiguousarray(y.astype(np.float16) if half else y,
                                     dtype=nptype(DataType(t["dtype"])))
            ctypes.memmove(self._addresses[t["name"]], y.ctypes.data, y.nbytes)
        self.executions += 1
        return True
