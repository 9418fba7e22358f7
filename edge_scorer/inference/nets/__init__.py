"""The network definitions the runtime runs and explains (PyTorch; needs the ``train`` extra).

They live in the runtime core so that PyTorch jobs at the bedside (the torch backend,
explanations) need no training code; ``training`` imports them from here.

- :mod:`.vit`: intra-epoch ViT on rendered epoch images (+ shared transformer layers).
- :mod:`.inter`: inter-epoch transformer and the sliding-window night scorer.
- :mod:`.stqs`: STQS CNN + BiLSTM on conditioned raw signals.
- :mod:`.registry`: presets, ``create_model``, ``model_from_cfg``.
- :mod:`.weights`: rebuilding a model from a checkpoint or from the weights beside an ONNX file.
"""

from __future__ import annotations

from edge_scorer.inference.nets.inter import (
           InterConfig,
           InterEpochTransformer,
           sliding_window_proba,
)
from edge_scorer.inference.nets.registry import PRESETS, create_model, list_models, model_from_cfg
from edge_scorer.inference.nets.stqs import STQS, STQSConfig, modalities_from_spec
from edge_scorer.inference.nets.vit import (
           Attention,
           Block,
           VisionTransformer,
           ViTConfig,
           set_save_attn,
)

__all__ = ["PRESETS", "STQS", "Attention", "Block", "InterConfig", "InterEpochTransformer",
           "STQSConfig", "ViTConfig", "VisionTransformer", "create_model", "list_models",
           "modalities_from_spec", "model_from_cfg", "set_save_attn", "sliding_window_proba"]
