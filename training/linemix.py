"""LineMix augmentation (SleepXViT) and the mixed / class-weighted loss.

LineMix splits each rendered image into horizontal bands of ``band_px`` rows (14 bands of
16 px for 224-px images), picks one band per batch at random and replaces it, in every image,
with the same band of another image of the batch (a random permutation). The loss mixes the two
labels with ``lam = band_px / height``: ``(1 - lam) * CE(y_a) + lam * CE(y_b)``.
"""

from __future__ import annotations

import numpy as np
import torch
from torch.nn import functional as F  # noqa: N812

from edge_scorer.stages import N_CLASSES


def linemix(
    images: torch.Tensor, labels: torch.Tensor, generator: torch.Generator | None = None,
    band_px: int = 16,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, float]:
    """Swap one horizontal band between the images of a batch.

    Parameters
    ----------
    images : torch.Tensor
        ``(B, H, W)``, ``(B, C, H, W)`` (rows on axis -2) image batch, any dtype.
    labels : torch.Tensor
        ``(B,)`` (or ``(B, ...)``) stage labels.
    generator : torch.Generator, optional
        Source of the band choice and the permutation (seed it for determinism).
    band_px : int
        Band height in pixels; must divide ``H``.

    Returns
    -------
    mixed : torch.Tensor
        New tensor: ``images`` with band ``k`` replaced by that band of ``images[perm]``.
    y_a, y_b : torch.Tensor
        ``labels`` and ``labels[perm]``.
    lam : float
        Share of the image taken from the other sample, ``band_px / H`` (16/224).
    """
    if images.ndim not in (3, 4):
        raise ValueError(f"expected images (B, H, W) or (B, C, H, W), got {tuple(images.shape)}")
    height = images.shape[-2]
    if band_px < 1 or height % band_px:
        raise ValueError(
            f"image height {height} is not a multiple of band_px {band_px}; use a band height "
            "that divides it (16 for 224-px images)"
        )
    if labels.shape[0] != images.shape[0]:
        raise ValueError(f"{labels.shape[0]} labels for {images.shape[0]} images")
    n_bands = height // band_px
    k = int(torch.randint(n_bands, (1,), generator=generator))
    perm = torch.randperm(images.shape[0], generator=generator).to(images.device)
    mixed = images.clone()
    rows = slice(k * band_px, (k + 1) * band_px)
    mixed[..., rows, :] = images[perm][..., rows, :]
    return mixed, labels, labels[perm.to(labels.device)], band_px / height


def linemix_loss(
    logits: torch.Tensor, y_a: torch.Tensor, y_b: torch.Tensor, lam: float,
    weight: torch.Tensor | None = None, ignore_index: int = -1,
) -> torch.Tensor:
    """``(1 - lam) * CE(logits, y_a) + lam * CE(logits, y_b)``, optionally class-weighted.

    Parameters
    ----------
    logits : torch.Tensor
        ``(B, C)`` logits, or ``(B, L, C)`` for a label per position.
    y_a, y_b : torch.Tensor
        Integer labels ``(B,)`` / ``(B, L)``; ``ignore_index`` (``UNSCORED`` = -1) is skipped.
    lam : float
        Weight of ``y_b`` (0 gives plain cross-entropy).
    weight : torch.Tensor, optional
        Per-class weights ``(C,)`` against class imbalance (see :func:`class_weights`).
    ignore_index : int
        Label excluded from the loss.
    """
    if logits.ndim == 3:  # (B, L, C): cross_entropy wants the class axis second
        logits = logits.transpose(1, 2)
    ce_a = F.cross_entropy(logits, y_a.long(), weight=weight, ignore_index=ignore_index)
    if lam == 0:
        return ce_a
    ce_b = F.cross_entropy(logits, y_b.long(), weight=weight, ignore_index=ignore_index)
    return (1.0 - lam) * ce_a + lam * ce_b


def class_weights(labels, n_classes: int = N_CLASSES) -> torch.Tensor:
    """Inverse-frequency class weights ``n / (n_classes * count_c)`` (mean 1 over samples).

    ``UNSCORED`` (negative) labels are ignored; a class absent from ``labels`` gets weight 0.
    """
    y = np.asarray(labels.cpu() if isinstance(labels, torch.Tensor) else labels).ravel()
    y = y[y >= 0].astype(np.int64)
    if y.size == 0:
        raise ValueError("no scored labels to compute class weights from")
    counts = np.bincount(y, minlength=n_classes).astype(np.float64)
    w = np.divide(y.size, n_classes * counts, out=np.zeros(n_classes), where=counts > 0)
    return torch.tensor(w, dtype=torch.float32)
