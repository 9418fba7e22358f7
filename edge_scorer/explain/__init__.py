"""Explanations: why an epoch got its stage, and how faithful that explanation is.

- :mod:`.lrp`: LRP relevance propagation through the transformer blocks (Chefer et al. 2021);
- :mod:`.relevance`: ``chefer`` / ``gradient`` / ``rollout`` relevance of the intra ViT's
  patches and of the inter transformer's epochs; :class:`~.relevance.TorchModels`;
- :mod:`.aggregate`: patch grid -> image heatmap, shares per channel row and per second;
- :mod:`.epoch`: :func:`~.epoch.explain_epoch` -> :class:`~.epoch.EpochExplanation`;
- :mod:`.occlusion`: STQS's time, frequency-band and modality occlusion on any backend;
- :mod:`.summary`: per-stage summaries over a night;
- :mod:`.figures`: matplotlib figures (Agg, no pyplot state) and PNG writing.

Relevance needs PyTorch (the ``train`` extra); occlusion and the figures do not. Names are
imported lazily, so ``import edge_scorer.explain`` does not import torch.
"""

from __future__ import annotations

import importlib

_LAZY = {
    "METHODS": "relevance", "RelevanceResult": "relevance", "TorchModels": "relevance",
    "intra_relevance": "relevance", "inter_relevance": "relevance",
    "Aggregates": "aggregate", "aggregate": "aggregate", "heatmap": "aggregate",
    "top_regions": "aggregate",
    "EpochExplanation": "epoch", "InterExplanation": "epoch", "explain_epoch": "epoch",
    "explain_window_night": "epoch",
    "BANDS": "occlusion", "OcclusionResult": "occlusion", "occlusion_analysis": "occlusion",
    "onnx_proba_fn": "occlusion", "torch_proba_fn": "occlusion",
    "NightSummary": "summary", "StageSummary": "summary", "summarize_night": "summary",
    "ExplainedNight": "summary",
}


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(f"module 'edge_scorer.explain' has no attribute {name!r}")


__all__ = sorted(_LAZY)
