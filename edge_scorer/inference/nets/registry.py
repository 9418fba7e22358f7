"""Model registry (timm style): named presets, ``create_model``, rebuild from ``model.cfg``.

Presets
-------
``vit_mini``
    ViT with patch 16, 128-d, 4 blocks, 4 heads on 224x224 grayscale images (the v0.2.0
    default model); trains on 2 CPU cores.
``vit_mini_patch32``
    The shipped model's shape (v0.3.0): ``vit_mini`` with 32x32 patches (7x7 = 49 tokens),
    about 4x less compute per epoch. The ``sleep-edf`` spec's 64/64/64/32-px rows are whole
    multiples of 32, so every patch lies in one channel row.
``vit_tiny``
    Small ViT (patch 16, 192-d, 4 blocks, 3 heads) on 224x224 grayscale images.
``vit_small_patch16``
    ViT-S/16: 384-d, 12 blocks, 6 heads.
``vit_base_patch16``
    ViT-B/16 as in SleepXViT: 768-d, 12 blocks, 12 heads, 224x224.
``inter_base``
    SleepXViT's inter-epoch transformer: L=10, 4 pre-norm blocks, 8 heads, MLP ratio 0.5 with
    ReLU, no qkv bias, dropout/attention dropout 0.2, LayerNorm eps 1e-5, in_dim 768.
``inter_tiny``
    The same on ``vit_tiny`` features: in_dim 192, 2 blocks, 4 heads.
``inter_mini``
    The same on 128-d ``vit_mini*`` features (the shipped inter model): in_dim 128, 2 blocks,
    4 heads.
``stqs``
    STQS on the ``sleep-edf`` spec's conditioned signals (EEG, EOG, EMG modalities).

Every model carries ``model.cfg`` (a dict of plain values with ``"arch"`` and ``"preset"``), so
a checkpoint ``{"cfg": model.cfg, "state_dict": model.state_dict()}`` is rebuilt with
:func:`model_from_cfg`. The inter model's ``in_dim`` must follow the intra model's feature
size: ``create_model("inter_base", in_dim=intra.num_features)``.

A preset name is a promise about the shape: a model built with overrides that change anything
but regularization (:data:`REGULARIZATION`) records them in its name, e.g.
``vit_tiny+depth=1+embed_dim=32`` (:func:`honest_name`); that name goes into checkpoints and
the exported models' metadata.
"""

from __future__ import annotations

import json
from dataclasses import fields

from torch import nn

from edge_scorer.inference.nets.inter import InterConfig, InterEpochTransformer
from edge_scorer.inference.nets.stqs import STQS, STQSConfig
from edge_scorer.inference.nets.vit import VisionTransformer, ViTConfig

ARCHS: dict[str, tuple[type[nn.Module], type]] = {
    "vit": (VisionTransformer, ViTConfig),
    "inter": (InterEpochTransformer, InterConfig),
    "stqs": (STQS, STQSConfig),
}

PRESETS: dict[str, object] = {
    "vit_mini": ViTConfig(patch_size=16, embed_dim=128, depth=4, num_heads=4),
    "vit_mini_patch32": ViTConfig(patch_size=32, embed_dim=128, depth=4, num_heads=4),
    "vit_tiny": ViTConfig(patch_size=16, embed_dim=192, depth=4, num_heads=3),
    "vit_small_patch16": ViTConfig(patch_size=16, embed_dim=384, depth=12, num_heads=6),
    "vit_base_patch16": ViTConfig(patch_size=16, embed_dim=768, depth=12, num_heads=12),
    "inter_base": InterConfig(),
    "inter_tiny": InterConfig(in_dim=192, depth=2, num_heads=4),
    "inter_mini": InterConfig(in_dim=128, depth=2, num_heads=4),
    "stqs": STQSConfig(spec="sleep-edf"),
}


#: Config fields that regularize training without changing the network's shape or its
#: inference: overriding them keeps the preset's name.
REGULARIZATION = frozenset({"drop_rate", "attn_drop_rate", "drop_path_rate"})


def _same(a: object, b: object) -> bool:
    """Equal as plain values (a tuple and a list of the same items are the same)."""
    return json.dumps(a, sort_keys=True, default=str) == json.dumps(b, sort_keys=True,
                                                                   default=str)


def honest_name(name: str, overrides: dict) -> str:
    """The name a model built from preset ``name`` with ``overrides`` records.

    The preset's own name when no override changes more than regularization, else the name
    followed by every such override in field order (``vit_tiny+depth=1+embed_dim=32``).
    """
    base = PRESETS[name]
    changed = [f"{k}={v}" for k, v in sorted(overrides.items())
               if k not in REGULARIZATION and not _same(getattr(base, k, None), v)]
    return "+".join([name, *changed])


def list_models() -> list[str]:
    """Names of the registered presets."""
    return sorted(PRESETS)


def _arch_of(config) -> str:
    for arch, (_, cfg_type) in ARCHS.items():
        if isinstance(config, cfg_type):
            return arch
    raise TypeError(f"no architecture for config type {type(config).__name__}")


def create_model(name: str, **overrides) -> nn.Module:
    """Build a preset, with config fields overridden by keyword.

    Parameters
    ----------
    name : str
        Preset name (see :func:`list_models`).
    **overrides
        Config fields to change, e.g. ``depth=6`` or ``in_dim=384``; ``stqs`` also takes
        ``spec=`` (a spec name or :class:`~edge_scorer.io.spec.RenderSpec`).

    Returns
    -------
    torch.nn.Module
        The model, in train mode, with ``model.cfg["preset"]`` its :func:`honest_name`.
    """
    if name not in PRESETS:
        raise ValueError(f"unknown model {name!r}; available: {', '.join(list_models())}")
    config = PRESETS[name]
    cls, _ = ARCHS[_arch_of(config)]
    model = cls(config, **overrides)
    model.cfg["preset"] = honest_name(name, overrides)
    return model


def model_from_cfg(cfg: dict) -> nn.Module:
    """Rebuild a model (fresh weights) from a ``model.cfg`` dict, e.g. read from a checkpoint.

    Load the weights afterwards with ``model.load_state_dict(state_dict)``.
    """
    cfg = dict(cfg)
    arch = cfg.pop("arch", None)
    preset = cfg.pop("preset", None)
    if arch not in ARCHS:
        raise ValueError(f"cfg has arch {arch!r}; expected one of {sorted(ARCHS)}")
    cls, cfg_type = ARCHS[arch]
    known = {f.name for f in fields(cfg_type)}
    unknown = set(cfg) - known
    if unknown:
        raise ValueError(
            f"cfg has fields {sorted(unknown)} unknown to {cfg_type.__name__}; the checkpoint "
            "was written by a newer edge-scorer, upgrade to load it"
        )
    model = cls(cfg_type(), **cfg)
    if preset is not None:
        model.cfg["preset"] = preset
    return model
