"""Hand-written PyTorch models of edge-scorer (needs the ``train`` extra: torch).

- :mod:`~training.models.vit`: intra-epoch ViT on rendered epoch images (+ shared layers).
- :mod:`~training.models.inter`: inter-epoch transformer and the sliding-window night scorer.
- :mod:`~training.models.stqs`: STQS CNN + BiLSTM on conditioned raw signals.
- :mod:`~training.models.linemix`: LineMix augmentation and mixed / weighted loss.
- :mod:`~training.models.registry`: presets, ``create_model``, ``model_from_cfg``.
"""

from __future__ import annotations

from training.models.inter import InterConfig, InterEpochTransformer, sliding_window_proba
from training.models.linemix import class_weights, linemix, linemix_loss
from training.models.registry import PRESETS, create_model, list_models, model_from_cfg
from training.models.stqs import STQS, STQSConfig, modalities_from_spec
from training.models.vit import (
    Attention,
    Block,
    VisionTransformer,
    ViTConfig,
    set_save_attn,
)

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
