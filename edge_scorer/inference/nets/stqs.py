"""STQS: per-modality CNN feature blocks + bidirectional LSTM over epochs, on raw signals.

A re-implementation of the STQS architecture (Pathak et al.) on edge-scorer's conditioned
signals. Input: ``(B, S, n_rows, epoch_samples)`` — sequences of ``S`` epochs of the spec's rows
after conditioning (resampled to the spec rate and filtered; 3000 samples per 30-s epoch for
``sleep-edf`` at 100 Hz). Output: ``(B, S, num_classes)`` logits, a label per epoch.

Per modality (the rows of one channel type, e.g. both EEG rows):

1. spatial conv across the modality's ``n`` rows (kernel ``n`` x 1, ``n`` filters) + BN + ReLU;
2. two temporal blocks ``Conv1d(8 filters, kernel 64, 'same' padding) + BN + ReLU +
   MaxPool(16)``;
3. dropout 0.5, flatten.

The modality features are concatenated, the epoch sequence goes through a bidirectional LSTM
(optionally plus a residual linear path from the epoch features), then a shared linear head.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from edge_scorer.inference.nets.vit import config_dict, replace_config
from edge_scorer.io.spec import RenderSpec, load_spec
from edge_scorer.stages import N_CLASSES

#: Channel types grouped into one modality, in output order.
MODALITY_TYPES: dict[str, tuple[str, ...]] = {
    "EEG": ("EEG",),
    "EOG": ("EOG",),
    "EMG": ("EMG", "EMG_ENVELOPE"),
}


def modalities_from_spec(spec: RenderSpec) -> tuple[tuple[str, ...], tuple[tuple[int, ...], ...]]:
    """Group a spec's rows by modality (EEG, EOG, EMG rows; other types are not used).

    Returns
    -------
    names : tuple of str
        Modality names present in the spec (``("EEG", "EOG", "EMG")`` for ``sleep-edf``).
    groups : tuple of tuple of int
        Row indices of each modality.
    """
    names, groups = [], []
    for name, types in MODALITY_TYPES.items():
        rows = tuple(i for i, r in enumerate(spec.rows) if r.type in types)
        if rows:
            names.append(name)
            groups.append(rows)
    if not groups:
        raise ValueError(
            f"spec {spec.name!r} has no EEG, EOG or EMG rows; STQS needs at least one of them "
            "(or pass modalities=[[row indices], ...] explicitly)"
        )
    return tuple(names), tuple(groups)


@dataclass(frozen=True)
class STQSConfig:
    """Configuration of :class:`STQS` (stored as ``model.cfg``).

    Attributes
    ----------
    spec : str
        Spec name the input rows follow (used to derive the unset fields below).
    modalities : tuple of tuple of int, optional
        Row indices of each modality; default: grouped by row type from the spec.
    modality_names : tuple of str, optional
        Names of the modalities (for occlusion reports); default from the spec grouping.
    n_rows, epoch_samples : int, optional
        Input rows and samples per epoch; default: the spec's.
    seq_len : int
        Epochs per training sequence (8 in STQS); the forward accepts any length.
    n_filters, kernel_size, pool_size : int
        Temporal conv filters, kernel (samples) and max-pool size.
    dropout : float
        Dropout after the CNN blocks and before the head.
    lstm_hidden, lstm_layers : int
        LSTM hidden size per direction and number of layers.
    residual : bool
        Add a linear projection of the epoch features to the LSTM output.
    num_classes : int
        Output classes per epoch.
    """

    spec: str = "sleep-edf"
    modalities: tuple[tuple[int, ...], ...] | None = None
    modality_names: tuple[str, ...] | None = None
    n_rows: int | None = None
    epoch_samples: int | None = None
    seq_len: int = 8
    n_filters: int = 8
    kernel_size: int = 64
    pool_size: int = 16
    dropout: float = 0.5
    lstm_hidden: int = 128
    lstm_layers: int = 1
    residual: bool = False
    num_classes: int = N_CLASSES

    def resolve(self, spec: RenderSpec | None = None) -> STQSConfig:
        """Fill the spec-derived fields (loading ``self.spec`` when ``spec`` is None)."""
        if None not in (self.modalities, self.modality_names, self.n_rows, self.epoch_samples):
            return self
        spec = spec or load_spec(self.spec)
        names, groups = modalities_from_spec(spec)
        modalities = self.modalities if self.modalities is not None else groups
        if self.modality_names is not None:
            modality_names = self.modality_names
        elif self.modalities is None:
            modality_names = names
        else:
            modality_names = tuple(f"mod{i}" for i in range(len(modalities)))
        return replace_config(self, {
            "spec": spec.name, "modalities": modalities, "modality_names": modality_names,
            "n_rows": self.n_rows if self.n_rows is not None else spec.n_rows,
            "epoch_samples": (self.epoch_samples if self.epoch_samples is not None
                              else spec.epoch_samples),
        })

    def validate(self) -> None:
        """Raise ``ValueError`` naming the inconsistent field and the fix."""
        if not self.modalities or any(len(g) == 0 for g in self.modalities):
            raise ValueError(f"modalities must be non-empty lists of row indices, got "
                             f"{self.modalities}")
        if len(self.modality_names) != len(self.modalities):
            raise ValueError("modality_names needs one name per modality")
        bad = [i for g in self.modalities for i in g if not 0 <= i < self.n_rows]
        if bad:
            raise ValueError(f"modality row indices {bad} are outside 0..{self.n_rows - 1}")
        if self.epoch_samples // self.pool_size // self.pool_size < 1:
            raise ValueError(
                f"epoch_samples={self.epoch_samples} is too short for two max-pools of "
                f"{self.pool_size}; use a smaller pool_size"
            )


class ModalityBlock(nn.Module):
    """Spatial conv over one modality's rows, then two temporal conv blocks and dropout."""

    def __init__(self, n_channels: int, n_filters: int, kernel_size: int, pool_size: int,
                 dropout: float) -> None:
        super().__init__()
        self.spatial = nn.Sequential(
            nn.Conv2d(1, n_channels, kernel_size=(n_channels, 1)),
            nn.BatchNorm2d(n_channels), nn.ReLU(),
        )
        layers: list[nn.Module] = []
        left = (kernel_size - 1) // 2  # 'same' padding, explicit so even kernels need no copy
        for c_in in (n_channels, n_filters):
            layers += [nn.ConstantPad1d((left, kernel_size - 1 - left), 0.0),
                       nn.Conv1d(c_in, n_filters, kernel_size),
                       nn.BatchNorm1d(n_filters), nn.ReLU(), nn.MaxPool1d(pool_size)]
        self.temporal = nn.Sequential(*layers)
        self.drop = nn.Dropout(dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """``(N, n_channels, T)`` -> flat features ``(N, n_filters * T // pool**2)``."""
        x = self.spatial(x.unsqueeze(1)).squeeze(2)
        return self.drop(self.temporal(x)).flatten(1)


class STQS(nn.Module):
    """STQS sleep stager: per-modality CNN features + BiLSTM, a label per epoch.

    Parameters
    ----------
    config : STQSConfig, optional
        Architecture; defaults to ``STQSConfig()`` (the ``sleep-edf`` spec).
    spec : RenderSpec or str, optional
        Spec to derive the modalities and input size from (overrides ``config.spec``).
    **overrides
        Fields replacing those of ``config``, e.g. ``modalities=[[0, 1], [2], [3]]``.

    Attributes
    ----------
    cfg : dict
        Resolved config (modalities, n_rows, epoch_samples filled in), enough to rebuild the
        model without the spec file.
    num_features : int
        Dimension of :meth:`forward_features` output per epoch (``2 * lstm_hidden``).
    epoch_dim : int
        Dimension of the concatenated per-epoch CNN features.
    """

    arch = "stqs"

    def __init__(self, config: STQSConfig | None = None, spec: RenderSpec | str | None = None,
                 **overrides) -> None:
        super().__init__()
        if isinstance(overrides.get("spec"), RenderSpec):
            spec = overrides.pop("spec")
        if isinstance(spec, str):
            spec = load_spec(spec)
        if spec is not None:
            overrides["spec"] = spec.name
        c = replace_config(config or STQSConfig(), overrides).resolve(spec)
        c.validate()
        self.config = c
        self.cfg = {"arch": self.arch, **config_dict(c)}
        self.branches = nn.ModuleList(
            ModalityBlock(len(g), c.n_filters, c.kernel_size, c.pool_size, c.dropout)
            for g in c.modalities
        )
        t_out = c.epoch_samples // c.pool_size // c.pool_size
        self.epoch_dim = len(c.modalities) * c.n_filters * t_out
        self.lstm = nn.LSTM(self.epoch_dim, c.lstm_hidden, num_layers=c.lstm_layers,
                            batch_first=True, bidirectional=True)
        self.num_features = 2 * c.lstm_hidden
        self.residual = nn.Linear(self.epoch_dim, self.num_features) if c.residual else None
        self.head_drop = nn.Dropout(c.dropout)
        self.head = nn.Linear(self.num_features, c.num_classes)

    def _check(self, x: torch.Tensor) -> None:
        c = self.config
        if x.ndim != 4 or x.shape[2] != c.n_rows or x.shape[3] != c.epoch_samples:
            raise ValueError(
                f"expected signals (B, S, {c.n_rows}, {c.epoch_samples}) (batch, epochs, "
                f"rows of spec {c.spec!r}, samples per epoch), got shape {tuple(x.shape)}"
            )

    def epoch_features(self, x: torch.Tensor) -> torch.Tensor:
        """Concatenated per-epoch CNN features ``(B, S, epoch_dim)`` (before the LSTM)."""
        self._check(x)
        b, s = x.shape[:2]
        flat = x.reshape(b * s, *x.shape[2:]).float()
        feats = [branch(flat[:, list(rows)])
                 for branch, rows in zip(self.branches, self.config.modalities)]
        return torch.cat(feats, dim=1).reshape(b, s, -1)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """Sequence features ``(B, S, 2 * lstm_hidden)`` (BiLSTM output, + residual path)."""
        e = self.epoch_features(x)
        out, _ = self.lstm(e)
        if self.residual is not None:
            out = out + self.residual(e)
        return out

    def forward_head(self, features: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, S, num_classes)`` from sequence features."""
        return self.head(self.head_drop(features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Logits ``(B, S, num_classes)`` of conditioned signal sequences."""
        return self.forward_head(self.forward_features(x))
