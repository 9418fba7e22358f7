"""Hand-written PyTorch models of edge-scorer (needs the ``train`` extra: torch).

The network definitions (ViT, inter transformer, STQS, the registry) live in the runtime core,
:mod:`edge_scorer.inference.nets`, and are re-exported here; training adds
:mod:`~training.models.linemix` (LineMix augmentation and mixed / weighted loss).
"""

from __future__ import annotations

from edge_scorer.inference.nets import (
    PRESETS,
    STQS,
    Attention,
    Block,
    InterConfig,
    InterEpochTransformer,
    STQSConfig,
    VisionTransformer,
    ViTConfig,
    create_model,
    list_models,
    modalities_from_spec,
    model_from_cfg,
    set_save_attn,
    sliding_window_proba,
)
from training.models.linemix import class_weights, linemix, linemix_loss

__all__ = [
    "PRESETS",
    "STQS",
    "Attention",
    "Block",
    "InterConfig",
    "InterEpochTransformer",
    "STQSConfig",
    "ViTConfig",
    "VisionTransformer",
    "class_weights",
    "create_model",
    "linemix",
    "linemix_loss",
    "list_models",
    "modalities_from_spec",
    "model_from_cfg",
    "set_save_attn",
    "sliding_window_proba",
]
