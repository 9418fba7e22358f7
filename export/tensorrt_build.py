"""Build TensorRT engines from exported ONNX models, in small steps that can each be tested.

``ONNX file -> network (parse_onnx) -> builder config (make_config: precision, optimization
profiles, INT8 entropy calibrator, timing cache) -> engine bytes (build_engine_bytes) -> engine
file + JSON sidecar (write_engine)``; :func:`build_engine` runs them all and
:func:`verify_engine` gates the engine against ONNX Runtime CPU fp32 on whole nights
(:mod:`export.gate`: every output tensor, the intra model's features included, and the final
stages with the engine in place of its fp32 model).

Engines are named by model hash, GPU model, TensorRT version and precision (see
:mod:`edge_scorer.inference.backends_trt`), so the runtime never loads an engine built for something
else. Default optimization profiles: batch 1 (live scoring of one bed) and 2..256 with opt 64
(offline nights, many beds); the runtime picks the narrowest profile that covers a batch.

INT8 uses TensorRT's entropy calibrator fed with rendered epochs, in batches of the OPT batch
of a profile (TensorRT calibrates dynamic-shape networks at the calibration profile's OPT
shape). TensorRT deprecated implicit (calibrator) quantization in 10.1 in favour of explicit
Q/DQ models; it still works in 10.x.
A static QDQ model from ``edge-scorer export quantize --mode static`` is the explicit route.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.inference.backends_trt import (
    SIDECAR_FORMAT,
    EngineName,
    TensorRTBackend,
    TorchCudaBuffers,
    detect_gpu_name,
    gpu_slug,
    load_tensorrt,
    model_hash,
    sidecar_path,
)

from .epochs import model_feeds
from .gate import (
    THRESHOLDS,
    GateReport,
    GateThresholds,
    as_nights,
    compare_outputs,
    compare_stages,
    scoring_pair,
)

log = get_logger("export.tensorrt")

#: Batch profiles (min, opt, max): live (one bed), offline / many beds.
DEFAULT_PROFILES: tuple[tuple[int, int, int], ...] = ((1, 1, 1), (2, 64, 256))
PRECISIONS = ("fp32", "fp16", "int8")
#: Verification agreement thresholds (argmax and final stages vs ONNX Runtime CPU fp32); the
#: tensor limits are :data:`export.gate.THRESHOLDS` of the engine's precision.
MIN_AGREEMENT = {"fp32": 0.999, "fp16": 0.99, "int8": 0.95}


def parse_profile(text: str) -> tuple[int, int, int]:
    """``"MIN:OPT:MAX"`` (or one number for a fixed batch) as a checked profile."""
    try:
        parts = [int(p) for p in str(text).split(":")]
    except ValueError:
        raise ValueError(f"batch profile {text!r}: expected MIN:OPT:MAX, e.g. 2:64:256") from None
    if len(parts) == 1:
        parts *= 3
    if len(parts) != 3 or not 1 <= parts[0] <= parts[1] <= parts[2]:
        raise ValueError(f"batch profile {text!r}: need 1 <= MIN <= OPT <= MAX")
    return parts[0], parts[1], parts[2]


def create_builder(trt: Any, verbose: bool = False) -> tuple[Any, Any]:
    """A TensorRT logger and builder."""
    logger = trt.Logger(trt.Logger.VERBOSE if verbose else trt.Logger.WARNING)
    return trt.Builder(logger), logger


def parse_onnx(trt: Any, builder: Any, logger: Any, onnx_path: str | Path) -> tuple[Any, Any]:
    """Step 1: a new network filled by TensorRT's ONNX parser.

    Returns
    -------
    network, parser
        Keep the parser alive until the engine is built (it owns the weights).

    Raises
    ------
    ValueError
        The parser's errors.
    """
    network = builder.create_network(0)
    parser = trt.OnnxParser(network, logger)
    if not parser.parse(Path(onnx_path).read_bytes()):
        errors = "; ".join(str(parser.get_error(i)) for i in range(parser.num_errors))
        raise ValueError(f"TensorRT cannot parse {onnx_path}: {errors or 'unknown error'}")
    return network, parser


def network_io(network: Any) -> tuple[dict[str, tuple[int, ...]], dict[str, tuple[int, ...]]]:
    """Input and output shapes of a parsed network (``-1`` = dynamic)."""
    ins = {network.get_input(i).name: tuple(int(d) for d in network.get_input(i).shape)
           for i in range(network.num_inputs)}
    outs = {network.get_output(i).name: tuple(int(d) for d in network.get_output(i).shape)
            for i in range(network.num_outputs)}
    return ins, outs


def make_config(trt: Any, builder: Any, network: Any, *, precision: str = "fp16",
                profiles: Sequence[tuple[int, int, int]] = DEFAULT_PROFILES,
                calibrator: Any = None, calibration_batch: int | None = None,
                timing_cache: bytes = b"", workspace_mb: int | None = None) -> Any:
    """Step 2: the builder config: precision flags, one optimization profile per batch range
    (batch is the first axis of every input; other dimensions must be static), INT8
    calibrator and calibration profile, timing cache, workspace limit.

    Raises
    ------
    ValueError
        Unknown precision, int8 without a calibrator, a non-batch dynamic dimension, or a
        profile TensorRT refuses.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; use one of {PRECISIONS}")
    config = builder.create_builder_config()
    if workspace_mb:
        config.set_memory_pool_limit(trt.MemoryPoolType.WORKSPACE, int(workspace_mb) << 20)
    if precision in ("fp16", "int8"):
        config.set_flag(trt.BuilderFlag.FP16)
    inputs, _ = network_io(network)
    added = []
    for lo, opt, hi in profiles:
        profile = builder.create_optimization_profile()
        for name, shape in inputs.items():
            rest = shape[1:]
            if any(d < 0 for d in rest):
                raise ValueError(f"input {name} {shape}: only the batch axis may be dynamic")
            profile.set_shape(name, (lo, *rest), (opt, *rest), (hi, *rest))
        if config.add_optimization_profile(profile) < 0:
            raise ValueError(f"TensorRT refused the optimization profile {lo}:{opt}:{hi}")
        added.append(((lo, opt, hi), profile))
    if precision == "int8":
        if calibrator is None:
            raise ValueError("int8 needs calibration epochs (an entropy calibrator)")
        config.set_flag(trt.BuilderFlag.INT8)
        config.int8_calibrator = calibrator
        # dynamic shapes: TensorRT calibrates at the OPT shape of the calibration profile
        covering = [p for (_, opt, _), p in added if opt == calibration_batch]
        if not covering:
            raise ValueError(f"the calibration batch {calibration_batch} must be the OPT batch "
                             f"of a profile {list(profiles)}")
        if not config.set_calibration_profile(covering[0]):
            raise ValueError("TensorRT refused the calibration profile")
    cache = config.create_timing_cache(bytes(timing_cache))
    if cache is None:
        log.warning("timing cache unreadable (other TensorRT version?); starting a new one")
        cache = config.create_timing_cache(b"")
    config.set_timing_cache(cache, False)
    return config


def build_engine_bytes(builder: Any, network: Any, config: Any) -> bytes:
    """Step 3: the serialized engine.

    Raises
    ------
    RuntimeError
        The build failed (TensorRT's log says why; run with ``-v``).
    """
    mem = builder.build_serialized_network(network, config)
    if mem is None:
        raise RuntimeError("TensorRT could not build the engine; run with -v for the builder's "
                           "log")
    return bytes(mem)


def write_engine(engine: bytes, out_dir: str | Path, *, onnx_path: str | Path, gpu: str,
                 trt_version: str, precision: str, profiles: Sequence[tuple[int, int, int]],
                 inputs: dict[str, tuple[int, ...]], outputs: dict[str, tuple[int, ...]],
                 extra: dict[str, Any] | None = None) -> Path:
    """Step 4: the engine file (named by model hash, GPU, TensorRT version, precision) and its
    JSON sidecar with the ONNX model's ``edge_scorer.*`` metadata."""
    from edge_scorer import __version__
    from edge_scorer.inference.backends import onnx_metadata

    onnx_path = Path(onnx_path)
    name = EngineName(stem=onnx_path.stem, model_hash=model_hash(onnx_path), gpu=gpu_slug(gpu),
                      trt_version=trt_version, precision=precision)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / name.filename
    sidecar = {
        "format": SIDECAR_FORMAT, "onnx": onnx_path.name, "model_hash": name.model_hash,
        "gpu": name.gpu, "gpu_name": gpu, "trt_version": trt_version, "precision": precision,
        "profiles": [list(p) for p in profiles],
        "inputs": {k: list(v) for k, v in inputs.items()},
        "outputs": {k: list(v) for k, v in outputs.items()},
        "metadata": onnx_metadata(onnx_path),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        "edge_scorer_version": __version__, **(extra or {}),
    }
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(engine)
    tmp.replace(path)
    sidecar_path(path).write_text(json.dumps(sidecar, indent=2) + "\n")
    return path


def make_entropy_calibrator(trt: Any, batches: list[dict[str, np.ndarray]], buffers: Any,
                            cache_path: str | Path | None = None) -> Any:
    """An ``IInt8EntropyCalibrator2`` that feeds ``batches`` (equal batch sizes) through
    device buffers; the calibration table is cached at ``cache_path`` when given."""
    if not batches:
        raise ValueError("no calibration batches")
    size = len(next(iter(batches[0].values())))

    class EntropyCalibrator(trt.IInt8EntropyCalibrator2):
        def __init__(self) -> None:
            trt.IInt8EntropyCalibrator2.__init__(self)
            self._it = iter(batches)
            self._live: dict[str, Any] = {}

        def get_batch_size(self) -> int:
            return size

        def get_batch(self, names: list[str]) -> list[int] | None:
            batch = next(self._it, None)
            if batch is None:
                return None
            for n in names:
                self._live[n] = buffers.upload(np.ascontiguousarray(batch[n], np.float32),
                                               out=self._live.get(n))
            buffers.synchronize()
            return [buffers.pointer(self._live[n]) for n in names]

        def read_calibration_cache(self) -> bytes | None:
            if cache_path is not None and Path(cache_path).is_file():
                return Path(cache_path).read_bytes()
            return None

        def write_calibration_cache(self, cache: Any) -> None:
            if cache_path is not None:
                Path(cache_path).write_bytes(bytes(cache))

    return EntropyCalibrator()


def build_engine(
    onnx_path: str | Path, out_dir: str | Path | None = None, *, precision: str = "fp16",
    profiles: Sequence[tuple[int, int, int]] = DEFAULT_PROFILES,
    calibration: np.ndarray | None = None, gpu: str | None = None,
    timing_cache: str | Path | None = None, workspace_mb: int | None = None,
    intra: str | Path | None = None, trt: Any = None, buffers: Any = None,
    verbose: bool = False,
) -> Path:
    """All steps: ONNX model -> engine file + sidecar (+ timing cache updated).

    Parameters
    ----------
    onnx_path : path-like
        An exported edge-scorer model (intra or inter).
    out_dir : path-like, optional
        Engine folder (default: the model's).
    precision : {"fp32", "fp16", "int8"}
    profiles : sequence of (min, opt, max)
        Batch ranges, one optimization profile each.
    calibration : ndarray of uint8, optional
        Rendered epochs for the INT8 entropy calibrator (required for int8).
    gpu : str, optional
        GPU model the engine is named for (default: detected).
    timing_cache : path-like, optional
        Timing cache file, read when present and written after the build (default
        ``timing.<gpu>.trt<version>.cache`` in ``out_dir``).
    workspace_mb : int, optional
        Builder workspace limit.
    intra : path-like, optional
        For an inter model's calibration: the intra model computing its features.
    trt, buffers : optional
        ``tensorrt`` module and buffer provider (defaults: imported / PyTorch CUDA).

    Returns
    -------
    Path
        The engine file.
    """
    trt = trt or load_tensorrt()
    onnx_path = Path(onnx_path)
    out_dir = Path(out_dir) if out_dir is not None else onnx_path.parent
    gpu = gpu or detect_gpu_name()
    profiles = [tuple(p) for p in profiles]
    version = str(trt.__version__)
    cache_file = Path(timing_cache) if timing_cache else (
        out_dir / f"timing.{gpu_slug(gpu)}.trt{version}.cache")
    builder, logger = create_builder(trt, verbose)
    network, parser = parse_onnx(trt, builder, logger, onnx_path)
    inputs, outputs = network_io(network)
    calibrator, calib_batch, extra = None, None, {}
    if precision == "int8":
        if calibration is None or len(calibration) == 0:
            raise ValueError("int8 engines need calibration epochs (--calibration)")
        (whole,) = model_feeds(onnx_path, calibration, batch_size=max(1, len(calibration)),
                               intra=intra)
        n_inputs = len(next(iter(whole.values())))
        # TensorRT calibrates dynamic-shape networks at the calibration profile's OPT shape:
        # the largest OPT batch that the calibration inputs fill
        fitting = [opt for _, opt, _ in profiles if opt <= n_inputs]
        if not fitting:
            raise ValueError(f"{n_inputs} calibration inputs fill no profile's OPT batch "
                             f"({[opt for _, opt, _ in profiles]}); give more epochs")
        calib_batch = max(fitting)
        feeds = [{k: v[i:i + calib_batch] for k, v in whole.items()}
                 for i in range(0, n_inputs - calib_batch + 1, calib_batch)]
        buffers = buffers if buffers is not None else TorchCudaBuffers()
        calibrator = make_entropy_calibrator(trt, feeds, buffers)
        extra["calibration"] = {"batches": len(feeds), "batch_size": calib_batch}
    config = make_config(trt, builder, network, precision=precision, profiles=profiles,
                         calibrator=calibrator, calibration_batch=calib_batch,
                         timing_cache=cache_file.read_bytes() if cache_file.is_file() else b"",
                         workspace_mb=workspace_mb)
    engine = build_engine_bytes(builder, network, config)
    del parser  # the weights it owned are in the engine now
    path = write_engine(engine, out_dir, onnx_path=onnx_path, gpu=gpu, trt_version=version,
                        precision=precision, profiles=profiles, inputs=inputs, outputs=outputs,
                        extra=extra)
    cache = config.get_timing_cache()
    if cache is not None:
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        cache_file.write_bytes(bytes(cache.serialize()))
    log.info("TensorRT %s engine written to %s (%.1f MB)", precision, path, len(engine) / 1e6)
    return path


def _batch_gate(engine: Any, ref: Any, onnx_path: Path, images: np.ndarray, batch_size: int,
                intra: str | Path | None, thresholds: GateThresholds) -> GateReport:
    """Every output of the engine against ONNX Runtime CPU fp32, fed in batches of
    ``batch_size`` (names ``<kind>/<output>``)."""
    kind = ref.metadata.get("kind", "model")
    feeds = model_feeds(onnx_path, images, batch_size=batch_size, intra=intra)
    want, got = [ref.infer(f) for f in feeds], [engine.infer(f) for f in feeds]
    return compare_outputs(
        {f"{kind}/{k}": np.concatenate([w[k] for w in want]) for k in ref.output_names},
        {f"{kind}/{k}": np.concatenate([g[k] for g in got]) for k in ref.output_names},
        thresholds)


def _stage_pair(engine: Any, onnx_path: Path, kind: str, intra: str | Path | None,
                inter: str | Path | None) -> tuple[Any, Any]:
    """Reference (ONNX Runtime fp32) and candidate ScoringModel with the engine in place of
    its model; an intra engine's features are read by the fp32 inter model (``inter`` or
    ``inter.onnx`` beside the intra model; none: the intra model's own stages)."""
    from .epochs import sibling_intra

    if kind == "intra":
        sibling = Path(inter) if inter is not None else onnx_path.with_name("inter.onnx")
        return scoring_pair(onnx_path, sibling if sibling.is_file() else None,
                            intra_backend=engine)
    return scoring_pair(sibling_intra(onnx_path, intra), onnx_path, inter_backend=engine)


def verify_engine(engine_path: str | Path, onnx_path: str | Path,
                  images: np.ndarray | Sequence[np.ndarray], *,
                  batch_sizes: Sequence[int] = (1, 64), min_agreement: float | None = None,
                  intra: str | Path | None = None, inter: str | Path | None = None,
                  trt: Any = None, gpu: str | None = None, buffers: Any = None) -> dict[str, Any]:
    """Run an engine on whole nights and gate it against ONNX Runtime CPU fp32
    (:mod:`export.gate`): every output tensor per batch size, and the final stages of each
    night with the engine in place of its fp32 model.

    Parameters
    ----------
    images : ndarray or sequence of ndarray
        Rendered epochs of one night, or one array per night, each in time order.
    min_agreement : float, optional
        Least argmax and final-stage agreement (default: :data:`MIN_AGREEMENT` of the
        engine's precision); the other limits are :data:`export.gate.THRESHOLDS`.
    intra, inter : path-like, optional
        The fp32 model beside the engine's (default ``intra.onnx``/``inter.onnx`` beside it).

    Returns
    -------
    dict
        ``batches`` (per batch size, per tensor: max abs diff, relative diff, argmax agreement
        and probability difference of logits, cosine of features), ``stages`` (agreement, max
        probability difference, per night), ``failures`` (naming tensor and batch, or final
        stages), ``thresholds``, ``passed``.
    """
    from edge_scorer.inference.backends import OrtBackend

    onnx_path = Path(onnx_path)
    engine = TensorRTBackend(engine_path, onnx_path=onnx_path, trt=trt, gpu=gpu,
                             buffers=buffers)
    ref = OrtBackend(onnx_path)
    agreement = MIN_AGREEMENT[engine.precision] if min_agreement is None else min_agreement
    thresholds = THRESHOLDS[engine.precision].with_agreement(agreement)
    nights = as_nights(images)
    report: dict[str, Any] = {"engine": str(engine_path), "precision": engine.precision,
                              "min_agreement": agreement, "thresholds": thresholds.to_dict(),
                              "batches": {}, "failures": []}
    for bs in batch_sizes:
        gate = _batch_gate(engine, ref, onnx_path, np.concatenate(nights), bs, intra,
                           thresholds)
        report["batches"][str(bs)] = gate.tensors
        report["failures"] += [f"batch {bs}: {f}" for f in gate.failures]
    pair = _stage_pair(engine, onnx_path, ref.metadata.get("kind", ""), intra, inter)
    stages = compare_stages(*pair, nights, thresholds)
    report["stages"] = stages.stages
    report["failures"] += stages.failures
    report["passed"] = not report["failures"]
    return report


__all__ = ["DEFAULT_PROFILES", "MIN_AGREEMENT", "PRECISIONS", "build_engine",
           "build_engine_bytes", "create_builder", "make_config", "make_entropy_calibrator",
           "network_io", "parse_onnx", "parse_profile", "verify_engine", "write_engine"]
