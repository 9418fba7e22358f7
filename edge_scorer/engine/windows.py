"""SleepXViT's test-time rule for the inter-epoch model, in numpy (no torch at run time).

Every window of ``L`` consecutive epochs (stride 1) is scored by the inter model; for each
epoch the softmax outputs of every window position covering it (up to ``L``) are summed.
Training, evaluation and the runtime all use this one implementation.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (numerically stable)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


def sliding_window_proba(
    logits_fn: Callable[[np.ndarray], np.ndarray], features: np.ndarray, L: int = 10,
    batch_size: int = 256, normalize: bool = True,
) -> np.ndarray:
    """Score a whole night with windows of ``L`` epochs, stride 1, softmax summed per epoch.

    Parameters
    ----------
    logits_fn : callable
        Maps windows ``(B, L, dim)`` (numpy) to logits ``(B, L, C)`` (array-like).
    features : ndarray, shape (N, dim)
        Epoch features of one night, in time order.
    L : int
        Window length (the inter model's ``seq_len``).
    batch_size : int
        Windows per ``logits_fn`` call.
    normalize : bool
        True: divide each epoch's sum by the number of windows covering it, so rows are
        probabilities (argmax unchanged). False: the raw sums, as in SleepXViT.

    Returns
    -------
    ndarray, shape (N, C)
        float64 summed (or averaged) class probabilities.

    Notes
    -----
    A night shorter than ``L`` epochs is padded at the end with copies of its last epoch's
    feature up to ``L`` (edge replication keeps the input in the training distribution, unlike
    zeros); that single window is scored and only its first ``N`` positions are kept.
    """
    features = np.asarray(features)
    n = int(features.shape[0])
    if n == 0:
        raise ValueError("features is empty: a night needs at least one epoch")
    if features.ndim != 2:
        raise ValueError(f"expected features (N, dim), got shape {tuple(features.shape)}")
    if L < 1 or batch_size < 1:
        raise ValueError(f"L and batch_size must be positive, got L={L}, batch={batch_size}")
    padded = features
    if n < L:
        padded = np.concatenate([features, np.repeat(features[-1:], L - n, axis=0)])
    n_win = max(1, n - L + 1)
    index = np.arange(n_win)[:, None] + np.arange(L)[None, :]
    sums: np.ndarray | None = None
    counts = np.zeros(n)
    for start in range(0, n_win, batch_size):
        idx = index[start:start + batch_size]
        out = np.asarray(logits_fn(padded[idx]), dtype=np.float64)
        if out.shape[:2] != idx.shape:
            raise ValueError(
                f"logits_fn returned shape {out.shape} for {idx.shape[0]} windows of {L}; "
                "it must return (B, L, C) logits"
            )
        proba = softmax(out)
        if sums is None:
            sums = np.zeros((n, proba.shape[-1]))
        keep = idx < n  # drops the padded positions of a short night
        np.add.at(sums, idx[keep], proba[keep])
        np.add.at(counts, idx[keep], 1.0)
    if normalize:
        sums = sums / counts[:, None]
    return sums
