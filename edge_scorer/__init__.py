"""edge-scorer: bedside/edge real-time sleep-stage scoring of polysomnography.

Public API (explicit re-exports; heavy optional parts are imported lazily where used).
"""

from __future__ import annotations

from .hypnogram import Hypnogram
from .spec import RenderSpec, RowSpec, SpecError, available_specs, load_spec
from .stages import CLASS_NAMES, N_CLASSES, Stage, parse_stage, stages_to_labels

# Re-exported lazily (explicit name -> module map) so that `import edge_scorer` and light CLI
# commands do not pay for scipy.signal, MNE or ONNX Runtime.
_LAZY = {
    "Conditioner": "conditioning", "Epocher": "conditioning", "condition": "conditioning",
    "epochs_from_signal": "conditioning", "read_hypnogram": "hypnogram_io",
    "write_hypnogram": "hypnogram_io", "Agreement": "metrics", "agreement": "metrics",
    "ChannelMapError": "montage", "map_channels": "montage",
    "parse_channel_overrides": "montage", "RenderedNight": "pipeline",
    "render_night": "pipeline", "PsgReadError": "psg", "PsgRecording": "psg",
    "read_psg": "psg", "contact_sheet": "render", "render_epoch": "render",
    "render_epochs": "render", "ModelSpecMismatch": "scorer", "ScoringModel": "scorer",
    "SleepStatistics": "sleepstats", "sleep_statistics": "sleepstats",
    "Engine": "engine", "EpochUpdate": "rolling", "RollingScorer": "rolling",
    "LslSource": "inlet", "find_streams": "inlet", "resolve_stream": "inlet",
    "AmbiguousStream": "inlet", "StreamNotFound": "inlet", "LiveScorer": "live",
    "score_file": "offline", "Replayer": "replay", "CsvLog": "sinks",
    "read_epoch_log": "sinks", "LslStageOutlet": "sinks", "Familiarity": "familiarity",
}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'edge_scorer' has no attribute {name!r}")


__version__ = "0.1.0"

__all__ = [
    "CLASS_NAMES",
    "N_CLASSES",
    "Agreement",
    "ChannelMapError",
    "Conditioner",
    "Epocher",
    "Familiarity",
    "Hypnogram",
    "ModelSpecMismatch",
    "PsgReadError",
    "PsgRecording",
    "RenderSpec",
    "RenderedNight",
    "RowSpec",
    "ScoringModel",
    "SleepStatistics",
    "SpecError",
    "Stage",
    "__version__",
    "agreement",
    "available_specs",
    "condition",
    "contact_sheet",
    "epochs_from_signal",
    "load_spec",
    "map_channels",
    "parse_channel_overrides",
    "parse_stage",
    "read_hypnogram",
    "read_psg",
    "render_epoch",
    "render_epochs",
    "render_night",
    "sleep_statistics",
    "stages_to_labels",
    "write_hypnogram",
    "Engine",
    "EpochUpdate",
    "RollingScorer",
    "LslSource",
    "find_streams",
    "resolve_stream",
    "AmbiguousStream",
    "StreamNotFound",
    "LiveScorer",
    "score_file",
    "Replayer",
    "CsvLog",
    "read_epoch_log",
    "LslStageOutlet",
]
