"""edge-scorer: bedside/edge real-time sleep-stage scoring of polysomnography.

Public API (explicit re-exports; heavy optional parts are imported lazily where used).
"""

from __future__ import annotations

from .hypnogram import Hypnogram
from .spec import RenderSpec, RowSpec, SpecError, available_specs, load_spec
from .stages import CLASS_NAMES, N_CLASSES, Stage, parse_stage, stages_to_labels

__version__ = "0.1.0"

__all__ = [
    "CLASS_NAMES",
    "N_CLASSES",
    "Hypnogram",
    "RenderSpec",
    "RowSpec",
    "SpecError",
    "Stage",
    "__version__",
    "available_specs",
    "load_spec",
    "parse_stage",
    "stages_to_labels",
]
