"""ONNX Runtime int8 quantization, accepted only when it agrees with fp32 on held-out epochs.

``dynamic``: int8 weights, activations quantized at run time (no calibration data).
``static``: int8 weights and activations in QDQ format, activation ranges calibrated (MinMax) on
rendered epochs; by default only MatMul/Gemm/Conv are quantized (LayerNorm, Softmax and GELU of
a ViT lose most accuracy in int8; measured on the default model: argmax agreement 0.99 vs 0.98
when every op is quantized).

The quantized model is written to a temporary folder, stamped with the source's
``edge_scorer.*`` metadata plus ``precision`` and ``quantization`` keys, and compared with the
fp32 model on held-out epochs (epochs of nights not used for calibration): argmax agreement,
largest probability difference, batch-1 latency of both on ONNX Runtime CPU. Below
``min_agreement`` nothing is written and :class:`QuantizationRefused` carries the report.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger

from .epochs import compare_logits, model_feeds

log = get_logger("export.quantize")

MODES = ("dynamic", "static")
#: Default acceptance threshold: argmax agreement with fp32 on held-out epochs.
DEFAULT_MIN_AGREEMENT = 0.95
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
    held_out: str
    calibration: str
    latency_fp32_ms: float
    latency_int8_ms: float
    speedup: float
    size_fp32_bytes: int
    size_int8_bytes: int
    ort_threads: int
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
            ("latency batch 1, fp32", f"{self.latency_fp32_ms:.2f} ms"),
            ("latency batch 1, int8", f"{self.latency_int8_ms:.2f} ms"),
            ("speed-up int8 / fp32", f"{self.speedup:.2f}x"
             + ("  (int8 is slower on this CPU)" if self.speedup < 1 else "")),
            ("size", f"{self.size_fp32_bytes / 1e6:.2f} MB -> {self.size_int8_bytes / 1e6:.2f} MB"),
            ("held-out epochs", self.held_out),
            ("calibration", self.calibration),
            ("verdict", "accepted" if self.accepted else "REFUSED (nothing written)"),
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


def quantize_model(
    model: str | Path, output: str | Path | None = None, *, mode: str = "dynamic",
    held_out: np.ndarray, calibration: np.ndarray | None = None, held_out_desc: str = "",
    calibration_desc: str = "", min_agreement: float = DEFAULT_MIN_AGREEMENT,
    intra: str | Path | None = None, threads: int | None = None, repeats: int = 30,
) -> QuantizeReport:
    """Quantize an exported model to int8 and accept it only above ``min_agreement``.

    Parameters
    ----------
    model : path-like
        An fp32 ONNX model exported by edge-scorer (intra or inter).
    output : path-like, optional
        Where the int8 model goes (default ``MODEL.int8-<mode>.onnx``); its report is written
        beside it as ``.json``.
    mode : {"dynamic", "static"}
    held_out : ndarray of uint8
        Rendered epochs (not used for calibration) to compare int8 with fp32.
    calibration : ndarray of uint8, optional
        Rendered epochs for static calibration (required for ``static``).
    held_out_desc, calibration_desc : str
        Where those epochs come from (for the report).
    min_agreement : float
        Refuse below this argmax agreement with fp32 (0..1).
    intra : path-like, optional
        For an inter model: the intra model that computes its input features (default
        ``intra.onnx`` beside it).
    threads : int, optional
        ONNX Runtime intra-op threads for the comparison and timings.
    repeats : int
        Timed runs per latency.

    Returns
    -------
    QuantizeReport

    Raises
    ------
    QuantizationRefused
        Agreement below ``min_agreement``; nothing is written.
    ValueError
        Bad mode/threshold, static without calibration epochs, or no held-out epochs.
    """
    from export.onnx_export import META_PREFIX, stamp_metadata

    if mode not in MODES:
        raise ValueError(f"unknown quantization mode {mode!r}; use one of {MODES}")
    if not 0.0 <= min_agreement <= 1.0:
        raise ValueError(f"min_agreement must be within 0..1, got {min_agreement}")
    if mode == "static" and (calibration is None or len(calibration) == 0):
        raise ValueError("static quantization needs calibration epochs (--calibration)")
    if len(held_out) == 0:
        raise ValueError("no held-out epochs to compare int8 with fp32")
    q = _require_quantization()
    model = Path(model)
    if not model.is_file():
        raise FileNotFoundError(f"ONNX model not found: {model}")
    output = Path(output) if output is not None else default_output(model, mode)
    try:
        source_meta = _session(model).get_modelmeta().custom_metadata_map
    except Exception as exc:  # onnxruntime raises its own exception types
        raise ValueError(f"{model}: not a readable ONNX model ({type(exc).__name__}: "
                         f"{str(exc)[:300]}); quantize an fp32 model exported by edge-scorer"
                         ) from exc
    if source_meta.get(META_PREFIX + "precision", "fp32") != "fp32":
        raise ValueError(f"{model} is already quantized "
                         f"({source_meta[META_PREFIX + 'precision']}); quantize the fp32 model")
    held_feeds = model_feeds(model, held_out, intra=intra)
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edge-scorer-quant-") as tmp:
        pre, out_tmp = Path(tmp) / "pre.onnx", Path(tmp) / "int8.onnx"
        try:
            q.quant_pre_process(str(model), str(pre))
        except Exception as exc:  # shape inference can fail on unusual graphs: quantize as is
            notes.append(f"pre-processing skipped ({type(exc).__name__}: {exc})")
            shutil.copy(model, pre)
        if mode == "dynamic":
            q.quantize_dynamic(str(pre), str(out_tmp), weight_type=q.QuantType.QInt8)
        else:
            calib_feeds = model_feeds(model, calibration, batch_size=16, intra=intra)
            q.quantize_static(str(pre), str(out_tmp), _Reader(calib_feeds),
                              quant_format=q.QuantFormat.QDQ,
                              activation_type=q.QuantType.QUInt8,
                              weight_type=q.QuantType.QInt8,
                              op_types_to_quantize=list(STATIC_OP_TYPES),
                              calibrate_method=q.CalibrationMethod.MinMax)
        meta = {k: v for k, v in source_meta.items() if k.startswith(META_PREFIX)}
        meta[META_PREFIX + "precision"] = f"int8-{mode}"
        meta[META_PREFIX + "quantization"] = json.dumps(
            {"mode": mode, "source": model.name, "ops": list(STATIC_OP_TYPES)
             if mode == "static" else "MatMul/Gemm weights", "calibration": calibration_desc})
        stamp_metadata(out_tmp, meta)
        fp32, int8 = _session(model, threads), _session(out_tmp, threads)
        ref = np.concatenate([fp32.run(["logits"], f)[0] for f in held_feeds])
        got = np.concatenate([int8.run(["logits"], f)[0] for f in held_feeds])
        cmp = compare_logits(ref, got)
        one = {k: v[:1] for k, v in held_feeds[0].items()}
        t32, t8 = latency_ms(fp32, one, repeats), latency_ms(int8, one, repeats)
        accepted = cmp["argmax_agreement"] >= min_agreement
        if t8 > t32:
            notes.append("int8 is slower than fp32 at batch 1 on this CPU: keep fp32 here "
                         "unless the smaller file matters")
        report = QuantizeReport(
            model=str(model), mode=mode, output=str(output), accepted=accepted,
            min_agreement=min_agreement, argmax_agreement=cmp["argmax_agreement"],
            max_abs_diff_proba=cmp["max_abs_diff_proba"], n_held_out=cmp["n"],
            held_out=held_out_desc, calibration=calibration_desc if mode == "static" else "none",
            latency_fp32_ms=t32, latency_int8_ms=t8, speedup=t32 / t8,
            size_fp32_bytes=model.stat().st_size, size_int8_bytes=out_tmp.stat().st_size,
            ort_threads=int(threads or 0), notes=notes)
        log.debug("quantized %s (%s): %s", model.name, mode, cmp)
        if not accepted:
            raise QuantizationRefused(
                f"{model.name}: int8 ({mode}) agrees with fp32 on {cmp['argmax_agreement']:.4f} "
                f"of held-out predictions, below the threshold {min_agreement:g}; nothing "
                "written. Try --mode dynamic, more calibration epochs, or keep fp32", report)
        output.parent.mkdir(parents=True, exist_ok=True)
        shutil.move(str(out_tmp), output)
    from edge_scorer.io.outputs import atomic_write

    atomic_write(output.with_suffix(".json"), json.dumps(report.to_dict(), indent=2) + "\n")
    log.info("int8 model written to %s (agreement %.4f, speed-up %.2fx)", output,
             report.argmax_agreement, report.speedup)
    return report
