"""Model export: ONNX (with the metadata the engine checks); TensorRT engines later.

Heavy dependencies (torch, onnx) are imported inside the functions.
"""

from __future__ import annotations

from .onnx_export import (
    OPSET,
    export_inter,
    export_intra,
    model_metadata,
    parity_report,
    read_metadata,
)

__all__ = ["OPSET", "export_inter", "export_intra", "model_metadata", "parity_report",
           "read_metadata"]
