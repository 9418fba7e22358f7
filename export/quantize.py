"""ONNX Runtime int8 quantization, accepted only when it agrees with fp32 on held-out epochs.

``dynamic``: int8 weights, activations quantized at run time (no calibration data).
``static``: int8 weights and activations in QDQ format, activation ranges calibrated (MinMax) on
rendered epochs; by default only MatMul/Gemm/Conv are quantized (LayerNorm, Softmax and GELU of
a ViT lose most accuracy in int8; measured on the default model: argmax agreement 0.99 vs 0.98
when every op is quantized).

The quantized model is written to a temporary folder, stamped with the source's
``edge_scorer.*`` metadata plus ``precision`` and ``quantization`` keys, and put through the
shared gate (:mod:`export.gate`) on whole held-out nights (nights not used for calibration):
the int8 model in place of the fp32 one, beside the other fp32 model (an int8 intra model's
features are read by the fp32 inter model), compared per tensor (logits: argmax agreement and
largest probability difference; features: largest difference and cosine) and on the final
stages of each night scored through the runtime's window rule (stage agreement, largest
probability difference). ``min_agreement`` is the least agreement with fp32 accepted, applied
to the quantized model's argmax and to the final stages; the feature and probability limits are
:data:`export.gate.THRESHOLDS` ``["int8"]``. When the gate fails nothing is written and
:class:`QuantizationRefused` carries the report. Batch-1 latency of both is measured on ONNX
Runtime CPU.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger

from .epochs import model_feeds
from .gate import THRESHOLDS, GateReport, GateThresholds, compare_models, scoring_pair

log = get_logger("export.quantize")

MODES = ("dynamic", "static")
#: Default acceptance threshold: agreement with fp32 on held-out nights (the quantized model's
#: argmax and the final stages).
DEFAULT_MIN_AGREEMENT = 0.95
META_KIND = "edge_scorer.kind"
STATIC_OP_TYPES = ("MatMul", "Gemm", "Conv")


class QuantizationRefused(ValueError):
    """The quantized model agrees too little with fp32; nothing was written."""

    def __init__(self, message: str, report: QuantizeReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass
class QuantizeReport:
    """What quantization did (see the module docstring)."""

    model: str
    mode: str
    output: str
    accepted: bool
    min_agreement: float
    argmax_agreement: float
    max_abs_diff_proba: float
    n_held_out: int
    stage_agreement: float
    stage_max_abs_diff_proba: float
    n_stage_epochs: int
    n_nights: int
    features_max_abs_diff: float | None
    features_min_cosine: float | None
    held_out: str
    calibration: str
    latency_fp32_ms: float
    latency_int8_ms: float
    speedup: float
    size_fp32_bytes: int
    size_int8_bytes: int
    ort_threads: int
    gate: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON)."""
        return asdict(self)

    def table(self) -> str:
        """The report as a small text table."""
        rows = [
            ("model", f"{Path(self.model).name} -> {Path(self.output).name} ({self.mode})"),
            ("argmax agreement with fp32",
             f"{self.argmax_agreement:.4f} (threshold {self.min_agreement:g}, "
             f"{self.n_held_out} predictions)"),
            ("max |p_int8 - p_fp32|", f"{self.max_abs_diff_proba:.4f}"),
            ("final stages vs fp32",
             f"agreement {self.stage_agreement:.4f}, max |dp| "
             f"{self.stage_max_abs_diff_proba:.4f} ({self.n_stage_epochs} epochs of "
             f"{self.n_nights} night(s))"),
            ("features vs fp32", "not compared (inter model)"
             if self.features_max_abs_diff is None else
             f"max abs diff {self.features_max_abs_diff:.4f}, min cosine "
             f"{self.features_min_cosine:.5f}"),
            ("latency batch 1, fp32", f"{self.latency_fp32_ms:.2f} ms"),
            ("latency batch 1, int8", f"{self.latency_int8_ms:.2f} ms"),
            ("speed-up int8 / fp32", f"{self.speedup:.2f}x"
             + ("  (int8 is slower on this CPU)" if self.speedup < 1 else "")),
            ("size", f"{self.size_fp32_bytes / 1e6:.2f} MB -> {self.size_int8_bytes / 1e6:.2f} MB"),
            ("held-out epochs", self.held_out),
            ("calibration", self.calibration),
            ("verdict", "accepted" if self.accepted else "REFUSED (nothing written): "
             + "; ".join(self.gate.get("failures", []))),
        ]
        width = max(len(k) for k, _ in rows)
        return "\n".join(f"{k:{width}s}  {v}" for k, v in rows)


def _require_quantization():
    try:
        import onnx  # noqa: F401
        from onnxruntime import quantization
    except ImportError as exc:
        raise ImportError(f"int8 quantization needs the onnx package: pip install 'edge-scorer"
                          f"[export]' (or onnx>=1.15) ({exc})") from None
    return quantization


def _session(path: Path, threads: int | None = None):
    import onnxruntime as ort

    opts = ort.SessionOptions()
    if threads:
        opts.intra_op_num_threads = threads
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def latency_ms(session, feed: dict[str, np.ndarray], repeats: int = 30) -> float:
    """Median wall time of one ``session.run`` on ``feed`` (after two warm-up runs), in ms."""
    for _ in range(2):
        session.run(None, feed)
    times = np.empty(repeats)
    for i in range(repeats):
        t0 = time.perf_counter()
        session.run(None, feed)
        times[i] = time.perf_counter() - t0
    return float(np.median(times) * 1e3)


def default_output(model: Path, mode: str) -> Path:
    """``MODEL.int8-<mode>.onnx`` beside the model."""
    return model.with_name(f"{model.stem}.int8-{mode}.onnx")


class _Reader:
    """ONNX Runtime calibration data reader over prepared feeds."""

    def __init__(self, feeds: list[dict[str, np.ndarray]]) -> None:
        self._it = iter(feeds)

    def get_next(self) -> dict[str, np.ndarray] | None:
        return next(self._it, None)


def _check_args(model: Path, mode: str, min_agreement: float, calibration: Any,
                held_out: list[np.ndarray]) -> dict[str, str]:
    """Refuse bad arguments before any work; the source model's metadata map."""
    from edge_scorer.inference.backends import META_PREFIX, onnx_metadata

    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; use one of {MODES}")
    if not 0.0 <= min_agreement <= 1.0:
        raise ValueError(f"min_agreement must be within 0..1, got {min_agreement}")
    if mode == "static" and (calibration is None or len(calibration) == 0):
        raise ValueError("static quantization needs calibration epochs (--calibration)")
    if not held_out or any(len(night) == 0 for night in held_out):
        raise ValueError("no held-out epochs to compare int8 with fp32")
    if not model.is_file():
        raise FileNotFoundError(f"ONNX model not found: {model}")
    # the core's one reader of the metadata contract (clear error on an unreadable file)
    source_meta = {META_PREFIX + k: v for k, v in onnx_metadata(model).items()}
    if source_meta.get(META_PREFIX + "precision", "fp32") != "fp32":
        raise ValueError(f"{model} is already quantized "
                         f"({source_meta[META_PREFIX + 'precision']}); quantize the fp32 model")
    if source_meta.get(META_PREFIX + "kind") not in ("intra", "inter"):
        raise ValueError(f"{model}: model kind {source_meta.get(META_PREFIX + 'kind')!r}; "
                         "expected an edge-scorer intra or inter model")
    return source_meta


def _quantize_file(model: Path, tmp: Path, mode: str, calib_feeds: list | None,
                   notes: list[str]) -> Path:
    """ONNX Runtime's pre-processing and int8 quantization into ``tmp``; the int8 file."""
    q = _require_quantization()
    pre, out = tmp / "pre.onnx", tmp / "int8.onnx"
    try:
        q.quant_pre_process(str(model), str(pre))
    except Exception as exc:  # shape inference can fail on unusual graphs: quantize as is
        notes.append(f"pre-processing skipped ({type(exc).__name__}: {exc})")
        shutil.copy(model, pre)
    if mode == "dynamic":
        q.quantize_dynamic(str(pre), str(out), weight_type=q.QuantType.QInt8)
    else:
        q.quantize_static(str(pre), str(out), _Reader(calib_feeds or []),
                          quant_format=q.QuantFormat.QDQ,
                          activation_type=q.QuantType.QUInt8,
                          weight_type=q.QuantType.QInt8,
                          op_types_to_quantize=list(STATIC_OP_TYPES),
                          calibrate_method=q.CalibrationMethod.MinMax)
    return out


def _stamp(path: Path, source_meta: dict[str, str], model: Path, mode: str,
           calibration_desc: str) -> None:
    """The source's ``edge_scorer.*`` metadata plus ``precision`` and ``quantization``."""
    from export.onnx_export import META_PREFIX, stamp_metadata

    meta = {k: v for k, v in source_meta.items() if k.startswith(META_PREFIX)}
    meta[META_PREFIX + "precision"] = f"int8-{mode}"
    meta[META_PREFIX + "quantization"] = json.dumps(
        {"mode": mode, "source": model.name, "ops": list(STATIC_OP_TYPES)
         if mode == "static" else "MatMul/Gemm weights", "calibration": calibration_desc})
    stamp_metadata(path, meta)


def _gate(model: Path, kind: str, int8: Path, nights: list[np.ndarray], *,
          intra: Any, inter: Any, threads: int | None, min_agreement: float,
          thresholds: GateThresholds | None) -> GateReport:
    """The shared gate (:mod:`export.gate`): the int8 model in place of the fp32 one, with the
    other fp32 model beside it, over whole held-out nights."""
    from edge_scorer.inference.backends import OrtBackend

    from .epochs import sibling_intra

    candidate = OrtBackend(int8, threads=threads)
    if kind == "intra":
        sibling = Path(inter) if inter is not None else model.with_name("inter.onnx")
        pair = scoring_pair(model, sibling if sibling.is_file() else None,
                            intra_backend=candidate, threads=threads)
    else:
        pair = scoring_pair(sibling_intra(model, intra), model, inter_backend=candidate,
                            threads=threads)
    limits = (thresholds or THRESHOLDS["int8"]).with_agreement(min_agreement)
    return compare_models(*pair, nights, limits)


def _timings(model: Path, int8: Path, feed: dict[str, np.ndarray], threads: int | None,
             repeats: int) -> tuple[float, float]:
    """Batch-1 latency of the fp32 and the int8 model (ms)."""
    one = {k: v[:1] for k, v in feed.items()}
    return (latency_ms(_session(model, threads), one, repeats),
            latency_ms(_session(int8, threads), one, repeats))


def quantize_model(
    model: str | Path, output: str | Path | None = None, *, mode: str = "dynamic",
    held_out: np.ndarray | Sequence[np.ndarray], calibration: np.ndarray | None = None,
    held_out_desc: str = "", calibration_desc: str = "",
    min_agreement: float = DEFAULT_MIN_AGREEMENT, intra: str | Path | None = None,
    inter: str | Path | None = None, threads: int | None = None, repeats: int = 30,
    enforce: bool = True, thresholds: GateThresholds | None = None,
) -> QuantizeReport:
    """Quantize an exported model to int8 and accept it only when it passes the gate.

    Parameters
    ----------
    model : path-like
        An fp32 ONNX model exported by edge-scorer (intra or inter).
    output : path-like, optional
        Where the int8 model goes (default ``MODEL.int8-<mode>.onnx``); its report is written
        beside it as ``.json``.
    mode : {"dynamic", "static"}
    held_out : ndarray of uint8, or a sequence of them
        Rendered epochs of one whole night (or one array per night), in time order, not used
        for calibration: int8 is compared with fp32 on them.
    calibration : ndarray of uint8, optional
        Rendered epochs for static calibration (required for ``static``).
    held_out_desc, calibration_desc : str
        Where those epochs come from (for the report).
    min_agreement : float
        Refuse below this agreement with fp32 (0..1): the argmax agreement of the quantized
        model's logits and the agreement of the final stages.
    intra : path-like, optional
        For an inter model: the intra model that computes its input features (default
        ``intra.onnx`` beside it).
    inter : path-like, optional
        For an intra model: the inter model reading its features for the final stages
        (default ``inter.onnx`` beside it; none there: the intra model's own stages).
    threads : int, optional
        ONNX Runtime intra-op threads for the comparison and timings.
    repeats : int
        Timed runs per latency.
    enforce : bool
        False: report only, never refuse (benchmarks).
    thresholds : GateThresholds, optional
        Tensor and probability limits instead of :data:`export.gate.THRESHOLDS` ``["int8"]``
        (``min_agreement`` still sets both agreement limits).

    Returns
    -------
    QuantizeReport

    Raises
    ------
    QuantizationRefused
        The gate failed (:data:`export.gate.THRESHOLDS` ``["int8"]`` with ``min_agreement``:
        logits, features, final stages); nothing is written.
    ValueError
        Bad mode/threshold, static without calibration epochs, or no held-out epochs.
    """
    model = Path(model)
    nights = [held_out] if isinstance(held_out, np.ndarray) else list(held_out)
    source_meta = _check_args(model, mode, min_agreement, calibration, nights)
    kind = source_meta[META_KIND]
    output = Path(output) if output is not None else default_output(model, mode)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edge-scorer-quant-") as tmp:
        calib_feeds = (model_feeds(model, calibration, batch_size=16, intra=intra)
                       if mode == "static" else None)
        out_tmp = _quantize_file(model, Path(tmp), mode, calib_feeds, notes)
        _stamp(out_tmp, source_meta, model, mode, calibration_desc)
        gate = _gate(model, kind, out_tmp, nights, intra=intra, inter=inter, threads=threads,
                     min_agreement=min_agreement, thresholds=thresholds)
        feed = model_feeds(model, nights[0][:16], batch_size=1, intra=intra)[0]
        t32, t8 = _timings(model, out_tmp, feed, threads, repeats)
        report = _report(model, output, mode, gate, min_agreement, t32, t8, out_tmp,
                         held_out_desc, calibration_desc, threads, notes, enforce)
        if not report.accepted:
            raise QuantizationRefused(
                f"{model.name}: int8 ({mode}) fails the gate against fp32 on held-out nights: "
                + "; ".join(gate.failures) + "; nothing written. Try --mode dynamic, more "
                "calibration epochs, or keep fp32", report)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(out_tmp), output)
    from edge_scorer.io.outputs import atomic_write

    atomic_write(output.with_suffix(".json"), json.dumps(report.to_dict(), indent=2) + "\n")
    log.info("int8 model written to %s (final-stage agreement %.4f, speed-up %.2fx)", output,
             report.stage_agreement, report.speedup)
    return report


def _report(model: Path, output: Path, mode: str, gate: GateReport, min_agreement: float,
            t32: float, t8: float, int8: Path, held_out_desc: str, calibration_desc: str,
            threads: int | None, notes: list[str], enforce: bool) -> QuantizeReport:
    """The :class:`QuantizeReport` of a gate and the timings."""
    name = next(k for k in ("intra/logits", "inter/logits") if k in gate.tensors)
    logits, stages = gate.tensors[name], gate.stages or {}
    feats = gate.tensors.get("intra/features", {})
    if t8 > t32:
        notes.append("int8 is slower than fp32 at batch 1 on this CPU: keep fp32 here "
                     "unless the smaller file matters")
    if not enforce and not gate.passed:
        notes.append("gate not enforced (report only): " + "; ".join(gate.failures))
    return QuantizeReport(
        model=str(model), mode=mode, output=str(output), accepted=gate.passed or not enforce,
        min_agreement=min_agreement, argmax_agreement=logits["argmax_agreement"],
        max_abs_diff_proba=logits["max_abs_diff_proba"], n_held_out=int(logits["n"]),
        stage_agreement=stages["agreement"],
        stage_max_abs_diff_proba=stages["max_abs_diff_proba"],
        n_stage_epochs=int(stages["n_epochs"]), n_nights=int(stages["n_nights"]),
        features_max_abs_diff=feats.get("max_abs_diff"),
        features_min_cosine=feats.get("min_cosine"),
        held_out=held_out_desc, calibration=calibration_desc if mode == "static" else "none",
        latency_fp32_ms=t32, latency_int8_ms=t8, speedup=t32 / t8,
        size_fp32_bytes=model.stat().st_size, size_int8_bytes=int8.stat().st_size,
        ort_threads=int(threads or 0), gate=gate.to_dict(), notes=notes)
