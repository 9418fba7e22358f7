"""edge-scorer: bedside/edge real-time sleep-stage scoring of polysomnography.

Public API (explicit re-exports; heavy optional parts are imported lazily where used).
"""

from __future__ import annotations

from edge_scorer.io.spec import RenderSpec, RowSpec, SpecError, available_specs, load_spec
from edge_scorer.stages import CLASS_NAMES, N_CLASSES, Stage, parse_stage, stages_to_labels
from edge_scorer.stats.hypnogram import Hypnogram

# Re-exported lazily (explicit name -> module map) so that `import edge_scorer` and light CLI
# commands do not pay for scipy.signal, MNE or ONNX Runtime.
_LAZY = {
    "Conditioner": "dsp.conditioning",
    "Epocher": "dsp.conditioning",
    "condition": "dsp.conditioning",
    "epochs_from_signal": "dsp.conditioning",
    "read_hypnogram": "io.hypnogram_io",
    "write_hypnogram": "io.hypnogram_io",
    "Agreement": "stats.metrics",
    "agreement": "stats.metrics",
    "ChannelMapError": "io.montage",
    "map_channels": "io.montage",
    "parse_channel_overrides": "io.montage",
    "RenderedNight": "dsp.render_night",
    "render_night": "dsp.render_night",
    "PsgReadError": "io.psg",
    "PsgRecording": "io.psg",
    "read_psg": "io.psg",
    "contact_sheet": "dsp.render",
    "render_epoch": "dsp.render",
    "render_epochs": "dsp.render",
    "ModelSpecMismatch": "inference.scorer",
    "ScoringModel": "inference.scorer",
    "SleepStatistics": "stats.sleepstats",
    "sleep_statistics": "stats.sleepstats",
    "Engine": "engine.engine",
    "EpochUpdate": "engine.rolling",
    "RollingScorer": "engine.rolling",
    "LslSource": "stream.inlet",
    "find_streams": "stream.inlet",
    "resolve_stream": "stream.inlet",
    "AmbiguousStream": "stream.inlet",
    "StreamNotFound": "stream.inlet",
    "LiveScorer": "stream.live",
    "score_file": "engine.offline",
    "Replayer": "stream.replay",
    "CsvLog": "engine.sinks",
    "read_epoch_log": "engine.sinks",
    "LslStageOutlet": "engine.sinks",
    "Familiarity": "inference.familiarity",
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
