"""Offline training of edge-scorer models: data cache, splits, configs, trainers, evaluation.

Importing this package does not import torch: the data side (cache, splits, configs) works
without it. The torch parts live in :mod:`training.tasks`, :mod:`training.checkpoint`,
:mod:`training.evaluate` (``pip install -e '.[train]'``); the networks are the runtime core's
(:mod:`edge_scorer.inference.nets`).
"""

from __future__ import annotations

from .config import load_config
from .dataset import EpochCache, NightSource, build_cache, nights_from_folder, open_cache
from .splits import load_split, save_split, split_by_subject

__all__ = [
    "EpochCache",
    "NightSource",
    "build_cache",
    "load_config",
    "load_split",
    "nights_from_folder",
    "open_cache",
    "save_split",
    "split_by_subject",
]
