"""Model export: ONNX (with the metadata the engine checks), int8 ONNX, TensorRT engines.

- :mod:`export.onnx_export`: torch module -> ONNX file -> metadata -> check.
- :mod:`export.checkpoints`: ``edge-scorer export onnx`` (checkpoints -> ONNX + weights + parity).
- :mod:`export.epochs`: rendered epochs for parity, calibration and held-out checks.
- :mod:`export.quantize`: ONNX Runtime int8 (dynamic / static), refused below an agreement.
- :mod:`export.tensorrt_build`: TensorRT engines in small steps, and their verification.
- :mod:`export.gate`: the one comparison behind every gate (per-tensor: logits, features; the
  final stages of whole held-out nights through the runtime's window rule).

Heavy dependencies (torch, onnx, tensorrt) are imported inside the functions.
"""

from __future__ import annotations

# the metadata contract is the core's: one reader (ONNX Runtime), one writer of the keys
from edge_scorer.inference.backends import onnx_metadata as read_metadata

from .checkpoints import export_checkpoints, resolve_run
from .epochs import compare_logits, load_epochs, load_nights, model_feeds, simulated_epochs
from .gate import (
    THRESHOLDS,
    GateFailed,
    GateReport,
    GateThresholds,
    compare_models,
    compare_outputs,
    compare_stages,
    gate_backend,
)
from .onnx_export import (
    OPSET,
    TorchReference,
    export_inter,
    export_intra,
    model_metadata,
    update_metadata,
)
from .quantize import DEFAULT_MIN_AGREEMENT, QuantizationRefused, QuantizeReport, quantize_model
from .tensorrt_build import DEFAULT_PROFILES, build_engine, verify_engine

__all__ = ["DEFAULT_MIN_AGREEMENT", "DEFAULT_PROFILES", "OPSET", "THRESHOLDS", "GateFailed",
           "GateReport", "GateThresholds", "QuantizationRefused", "QuantizeReport",
           "TorchReference", "build_engine", "compare_logits", "compare_models",
           "compare_outputs", "compare_stages", "export_checkpoints", "export_inter",
           "export_intra", "gate_backend", "load_epochs", "load_nights", "model_feeds",
           "model_metadata", "quantize_model", "read_metadata", "resolve_run",
           "simulated_epochs", "update_metadata", "verify_engine"]
