"""SleepXViT's window rule for the inter-epoch model: the one implementation (numpy, no torch).

Every window of ``L`` consecutive epochs (stride 1) is scored by a sequence model (the inter
transformer, ``L = 10``, or STQS, ``L = 8``); an epoch's probabilities are the sum of the softmax
outputs at its position in every window covering it. Offline scoring, the live
:class:`~edge_scorer.engine.rolling.RollingScorer`, evaluation (``training.evaluate``), the
look-ahead report (``training.lookahead``) and calibration (``training.calibrate``) all call
the functions below; none of them re-implements the rule.

Windows are named by the epoch they *end* at (the epoch whose arrival lets the live engine
score them):

* ``e >= L - 1``: the full window ``[e - L + 1, e]``;
* ``e < L - 1`` (the start of a night, or a night shorter than ``L``): epochs ``0..e`` padded at
  the end with copies of epoch ``e`` up to ``L`` (edge replication keeps the input in the
  training distribution, unlike zeros). These *prefix* windows give the start-of-night
  estimates, dropped once the first full window exists.

The rule for epoch ``t`` at look-ahead ``k`` (epochs ``0..t+k`` have arrived, ``a = min(t+k+1,
N)`` of them exist in a night of ``N``), :func:`window_sums`:

* ``a >= L``: sum the softmax at ``t`` over the full windows ending at ``t..min(t+k, N-1)`` (in
  that order);
* ``a < L``: no full window exists yet; read position ``t`` of the prefix window ending at
  ``a - 1``.

``k >= L - 1`` (every covering window exists) is the offline result,
:func:`sliding_window_proba`. With ``normalize`` the sum is divided by the number of windows in
it (rows are probabilities; the argmax is unchanged).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

__all__ = ["block_proba", "lookahead_curve", "lookahead_proba", "offline_ends",
           "score_windows", "sliding_proba_from_logits", "sliding_window_proba", "softmax",
           "window_index", "window_logits", "window_softmax", "window_sums"]


def softmax(logits: np.ndarray) -> np.ndarray:
    """Softmax over the last axis (numerically stable)."""
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


# ---------------------------------------------------------------------------- window index
def window_index(ends: np.ndarray, L: int) -> np.ndarray:
    """Epoch indices ``(len(ends), L)`` of the windows ending at ``ends``.

    Parameters
    ----------
    ends : array-like of int, shape (W,)
        Last epoch of each window.
    L : int
        Window length.

    Returns
    -------
    ndarray of int64, shape (W, L)
        ``[e - L + 1 .. e]`` for ``e >= L - 1``; ``[0 .. e, e, ..., e]`` (a prefix window padded
        with copies of ``e``) for ``e < L - 1``.
    """
    e = np.asarray(ends, dtype=np.int64).reshape(-1, 1)
    return np.minimum(np.maximum(e - L + 1, 0) + np.arange(L)[None, :], e)


def offline_ends(n: int, L: int) -> np.ndarray:
    """Ends of the windows offline scoring uses: every full window, or for a night shorter than
    ``L`` its one prefix window (ending at the last epoch)."""
    if n < 1 or L < 1:
        raise ValueError(f"a night needs at least one epoch and L >= 1, got n={n}, L={L}")
    return np.arange(min(n, L) - 1, n)


def _as_numpy(out: Any) -> np.ndarray:
    """A model output (numpy array, or a torch tensor) as float64 numpy."""
    if hasattr(out, "detach"):
        out = out.detach().cpu().numpy()
    return np.asarray(out, dtype=np.float64)


def _checked(features: Any, L: int, batch_size: int) -> tuple[Any, int]:
    """Validate a night's inputs; float16 numpy arrays are promoted to float32."""
    if L < 1 or batch_size < 1:
        raise ValueError(f"L and batch_size must be positive, got L={L}, batch={batch_size}")
    n = int(features.shape[0])
    if n == 0:
        raise ValueError("features is empty: a night needs at least one epoch")
    if isinstance(features, np.ndarray) and features.dtype == np.float16:
        features = features.astype(np.float32)
    return features, n


def score_windows(logits_fn: Callable, features: Any, ends: np.ndarray, L: int,
                  batch_size: int = 256, *, proba: bool = True) -> np.ndarray:
    """Run the sequence model on the windows ending at ``ends``, ``batch_size`` per call.

    Parameters
    ----------
    logits_fn : callable
        Windows ``(B, L, *item_shape)`` -> logits ``(B, L, C)`` (array or torch tensor), e.g.
        :meth:`~edge_scorer.inference.scorer.ScoringModel.inter_logits` or a torch model in eval
        mode. Called with windows of the array type of ``features``.
    features : ndarray or torch.Tensor, shape (N, *item_shape)
        Per-epoch inputs in time order (``ends`` index into them).
    ends : array-like of int, shape (W,)
        Last epoch of each window (:func:`window_index`).
    L : int
        Window length.
    batch_size : int
        Windows per ``logits_fn`` call (consecutive entries of ``ends``).
    proba : bool
        Return the softmax of each window (True) or the raw logits.

    Returns
    -------
    ndarray of float64, shape (W, L, C)
    """
    index = window_index(ends, L)
    parts = []
    for start in range(0, len(index), batch_size):
        idx = index[start:start + batch_size]
        out = _as_numpy(logits_fn(features[idx]))
        if out.ndim != 3 or out.shape[:2] != idx.shape:
            raise ValueError(
                f"logits_fn returned shape {out.shape} for {idx.shape[0]} windows of {L}; it "
                "must return (B, L, C) logits"
            )
        parts.append(softmax(out) if proba else out)
    return np.concatenate(parts)


# ---------------------------------------------------------------------------- scoring a night
def window_softmax(logits_fn: Callable, features: Any, L: int = 10, batch_size: int = 256, *,
                   min_lookahead: int = 0) -> np.ndarray:
    """Softmax of every window the live engine scores over one night, by window end.

    Parameters
    ----------
    logits_fn : callable
        See :func:`score_windows` (an inter transformer or STQS in eval mode, an ONNX session
        wrapper, any function).
    features : ndarray or torch.Tensor, shape (N, *item_shape)
        Per-epoch inputs of one night in time order: intra-model features ``(N, dim)`` for the
        inter model, conditioned signals ``(N, rows, samples)`` for STQS (float16 numpy arrays
        reach ``logits_fn`` as float32).
    L : int
        Window length (the model's sequence length).
    batch_size : int
        Full windows per ``logits_fn`` call (prefix windows go one per call, as live).
    min_lookahead : int
        Skip the prefix windows no look-ahead ``>= min_lookahead`` reads (``L - 1``: only what
        offline scoring needs). Their rows are NaN.

    Returns
    -------
    ndarray of float64, shape (N, L, C)
        Row ``e`` is the window ending at ``e`` (:func:`window_index`); in a prefix window the
        positions after ``e`` hold the padding's outputs, never read.
    """
    features, n = _checked(features, L, batch_size)
    if min_lookahead < 0:
        raise ValueError(f"min_lookahead must be >= 0, got {min_lookahead}")
    prefix = range(min(min_lookahead, n - 1), min(n, L - 1))
    parts = [(e, score_windows(logits_fn, features, [e], L, 1)) for e in prefix]
    if n >= L:
        parts.append((L - 1, score_windows(logits_fn, features, np.arange(L - 1, n), L,
                                           batch_size)))
    ws = np.full((n, L, parts[0][1].shape[-1]), np.nan)
    for first, rows in parts:
        ws[first:first + len(rows)] = rows
    return ws


def window_logits(logits_fn: Callable, features: Any, L: int = 10,
                  batch_size: int = 256) -> np.ndarray:
    """Raw logits ``(W, L, C)`` of the windows offline scoring uses (:func:`offline_ends`),
    for caching: :func:`sliding_proba_from_logits` turns them into the offline result at any
    temperature."""
    features, n = _checked(features, L, batch_size)
    return score_windows(logits_fn, features, offline_ends(n, L), L, batch_size, proba=False)


def sliding_proba_from_logits(logits: np.ndarray, n: int, temperature: float = 1.0,
                              normalize: bool = True) -> np.ndarray:
    """The offline result ``(n, C)`` from cached :func:`window_logits` at ``temperature``
    (each window's logits divided by it before its softmax, as at run time)."""
    logits = np.asarray(logits, dtype=np.float64)
    if logits.ndim != 3:
        raise ValueError(f"window logits must be (W, L, C), got shape {logits.shape}")
    L = logits.shape[1]
    ends = offline_ends(n, L)
    if len(ends) != len(logits):
        raise ValueError(f"{len(logits)} windows of {L} cached, but a night of {n} epochs has "
                         f"{len(ends)}; compute them with window_logits() on this night")
    ws = np.full((n, L, logits.shape[2]), np.nan)
    ws[ends] = softmax(logits / temperature)
    return lookahead_proba(ws, n, L - 1, normalize)


def sliding_window_proba(
    logits_fn: Callable[[np.ndarray], np.ndarray], features: np.ndarray, L: int = 10,
    batch_size: int = 256, normalize: bool = True,
) -> np.ndarray:
    """Score a whole night with windows of ``L`` epochs, stride 1, softmax summed per epoch
    (the offline result: look-ahead ``L - 1`` of :func:`lookahead_proba`).

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
    A night shorter than ``L`` epochs is one prefix window (padded at the end with copies of its
    last epoch's feature); only its first ``N`` positions are kept.
    """
    features = np.asarray(features)
    if features.ndim != 2:
        raise ValueError(f"expected features (N, dim), got shape {tuple(features.shape)}")
    n = int(features.shape[0])
    ws = window_softmax(logits_fn, features, L, batch_size, min_lookahead=L - 1)
    return lookahead_proba(ws, n, L - 1, normalize)


# ---------------------------------------------------------------------------- the rule
def window_sums(window_softmax: np.ndarray, n_epochs: int, k: int | np.ndarray,
                epochs: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Summed window softmax of epochs after ``k`` later epochs have arrived (the rule).

    Parameters
    ----------
    window_softmax : ndarray, shape (N, L, C)
        By window end, as :func:`window_softmax` returns it (only the rows the rule reads need
        to be filled).
    n_epochs : int
        Epochs that exist (``N``: the night, or those arrived so far live).
    k : int or ndarray of int
        Look-ahead in epochs, one for all or one per entry of ``epochs`` (``0``: only the window
        ending at ``t``; ``L - 1`` and above: every window covering ``t``).
    epochs : ndarray of int, optional
        Which epochs (default: all ``N``).

    Returns
    -------
    sums : ndarray of float64, shape (len(epochs), C)
        The sum of the softmax at ``t`` over the full windows read; for an epoch with no full
        window yet, the prefix window's estimate.
    counts : ndarray of int64, shape (len(epochs),)
        Full windows summed (0: a prefix-window estimate).
    """
    ws = np.asarray(window_softmax, dtype=np.float64)
    if ws.ndim != 3:
        raise ValueError(f"window_softmax must be (N, L, C), got shape {ws.shape}")
    n, L = ws.shape[0], ws.shape[1]
    if n != n_epochs:
        raise ValueError(
            f"window_softmax has {n} rows but the night has {n_epochs} epochs; compute it with "
            "window_softmax() on this night's features")
    t = np.arange(n) if epochs is None else np.asarray(epochs, dtype=np.int64).reshape(-1)
    kk = np.broadcast_to(np.asarray(k, dtype=np.int64), t.shape)
    if np.any(kk < 0):
        raise ValueError(f"look-ahead k must be >= 0, got {np.min(kk)}")
    if np.any((t < 0) | (t >= n)):
        raise ValueError(f"epochs must lie in 0..{n - 1}")
    avail = np.minimum(t + kk + 1, n)  # epochs that exist when t is read
    full = avail >= L
    sums = np.zeros((len(t), ws.shape[2]))
    counts = np.zeros(len(t), dtype=np.int64)
    # windows in order of their end e = t + d (the order in which they are scored)
    for d in range(min(int(kk.max(initial=0)), L - 1) + 1):
        e = t + d
        ok = full & (kk >= d) & (e >= L - 1) & (e <= n - 1)
        sums[ok] += ws[e[ok], L - 1 - d]
        counts[ok] += 1
    early = ~full
    sums[early] = ws[avail[early] - 1, t[early]]
    return sums, counts


def lookahead_proba(window_softmax: np.ndarray, n_epochs: int, k: int | np.ndarray,
                    normalize: bool = True, epochs: np.ndarray | None = None) -> np.ndarray:
    """Per-epoch class probabilities after ``k`` later epochs have arrived.

    Parameters
    ----------
    window_softmax, n_epochs, k, epochs
        As for :func:`window_sums`.
    normalize : bool
        Divide each epoch's sum by the number of windows summed (probabilities).

    Returns
    -------
    ndarray of float64, shape (len(epochs), C)
        What the live engine shows for each epoch at look-ahead ``k``; ``k >= L - 1`` is the
        offline result (:func:`sliding_window_proba`).
    """
    sums, counts = window_sums(window_softmax, n_epochs, k, epochs)
    if normalize:
        sums = sums / np.maximum(counts, 1)[:, None]
    return sums


def lookahead_curve(window_softmax: np.ndarray, n_epochs: int, max_k: int | None = None,
                    normalize: bool = True) -> list[np.ndarray]:
    """:func:`lookahead_proba` for ``k = 0..max_k`` (default ``L - 1``)."""
    L = np.asarray(window_softmax).shape[1]
    max_k = L - 1 if max_k is None else max_k
    return [lookahead_proba(window_softmax, n_epochs, k, normalize) for k in range(max_k + 1)]


def block_proba(logits_fn: Callable, features: Any, L: int, batch_size: int = 64) -> np.ndarray:
    """Softmax over non-overlapping blocks of ``L`` epochs from the night's start (STQS as it
    was trained; not the sliding rule).

    Each epoch is scored once. The last block, when incomplete, is padded at the end with copies
    of the last epoch (the padding of the prefix windows); padded positions are dropped.

    Parameters
    ----------
    logits_fn : callable
        ``(B, L, *item_shape)`` -> ``(B, L, C)`` logits (e.g. an STQS model in eval mode).
    features : ndarray or torch.Tensor, shape (N, *item_shape)
        Per-epoch inputs of one night in time order.
    L : int
        Block length.
    batch_size : int
        Blocks per call.

    Returns
    -------
    ndarray of float64, shape (N, C)
    """
    features, n = _checked(features, L, batch_size)
    n_blocks = -(-n // L)
    index = np.minimum(np.arange(n_blocks * L), n - 1).reshape(n_blocks, L)
    parts = []
    for start in range(0, n_blocks, batch_size):
        idx = index[start:start + batch_size]
        out = _as_numpy(logits_fn(features[idx]))
        if out.ndim != 3 or out.shape[:2] != idx.shape:
            raise ValueError(f"logits_fn returned shape {out.shape} for {idx.shape[0]} "
                             f"blocks of {L}; it must return (B, L, C) logits")
        parts.append(softmax(out).reshape(-1, out.shape[-1]))
    return np.concatenate(parts)[:n]
