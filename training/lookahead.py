"""What the live engine knows about an epoch after ``k`` later epochs have arrived.

The live engine scores with a sequence model (SleepXViT's inter transformer, L = 10, or STQS,
L = 8) over windows of ``L`` epochs with stride 1. When epoch ``e`` arrives it scores the one
new window ending at ``e``; the probability of an earlier epoch ``t`` is then the sum of the
softmax outputs at ``t``'s position in every window scored so far that covers it. Offline
(``k = L - 1``, all windows covering ``t`` exist) this is SleepXViT's test-time rule,
:func:`edge_scorer.inference.nets.inter.sliding_window_proba`.

The rule for epoch ``t`` at look-ahead ``k`` (epochs ``0..t+k`` have arrived, ``a = min(t+k+1,
N)`` of them exist in a night of ``N``):

* ``a >= L``: sum the softmax at ``t`` over the full windows ``[s, s+L-1]`` with
  ``s <= t <= s+L-1`` and ``s+L-1 <= min(t+k, N-1)`` (only windows that exist);
* ``a < L`` (the first ``L - 1`` epochs of a night, or a night shorter than ``L``): no full
  window exists yet; the engine scores the ``a`` epochs padded at the end with copies of the
  newest one up to ``L`` (the padding of :func:`sliding_window_proba`) and reads position ``t``.
  Once the first full window exists these padded estimates are dropped.

With ``normalize`` the sum is divided by the number of windows in it (rows are probabilities,
as with ``sliding_window_proba(normalize=True)``). Look-ahead ``k >= L - 1`` is the offline
result, equal to ``sliding_window_proba`` to the last bit (the full windows are scored in the
same batches).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import torch

from edge_scorer.engine.windows import softmax as _softmax


def _as_numpy(out) -> np.ndarray:
    if isinstance(out, torch.Tensor):
        out = out.detach().cpu().numpy()
    return np.asarray(out, dtype=np.float64)


def _checked(features, L: int, batch_size: int) -> tuple:
    """Validate a night's features; float16 arrays are promoted to float32."""
    n = int(features.shape[0])
    if n == 0:
        raise ValueError("features is empty: a night needs at least one epoch")
    if L < 1 or batch_size < 1:
        raise ValueError(f"L and batch_size must be positive, got L={L}, batch={batch_size}")
    is_torch = isinstance(features, torch.Tensor)
    if not is_torch and features.dtype == np.float16:
        features = features.astype(np.float32)
    return features, n, is_torch


def window_softmax(
    logits_fn: Callable, features, L: int = 10, batch_size: int = 256,
) -> np.ndarray:
    """Softmax of every window the live engine scores over one night.

    Parameters
    ----------
    logits_fn : callable
        Maps windows ``(B, L, *item_shape)`` to logits ``(B, L, C)``: an
        :class:`~edge_scorer.inference.nets.inter.InterEpochTransformer` or
        :class:`~edge_scorer.inference.nets.stqs.STQS` in eval mode, or any function (e.g. an ONNX
        session wrapper). Called with the array type of ``features`` (float32 for a float16
        numpy array).
    features : torch.Tensor or numpy.ndarray, shape (N, *item_shape)
        Per-epoch inputs of one night in time order: intra-model features ``(N, dim)`` for the
        inter model, conditioned signals ``(N, rows, samples)`` for STQS.
    L : int
        Window length (the model's sequence length).
    batch_size : int
        Full windows per ``logits_fn`` call (use the same value as ``sliding_window_proba``
        for bit-identical results).

    Returns
    -------
    ndarray of float64, shape (N, L, C)
        Row ``e`` is the window scored when epoch ``e`` arrived: for ``e >= L - 1`` the full
        window ``[e - L + 1, e]``; for ``e < L - 1`` the window of epochs ``0..e`` padded with
        copies of epoch ``e`` (positions after ``e`` hold the padding's outputs, never used).
    """
    features, n, is_torch = _checked(features, L, batch_size)
    rows: list[np.ndarray | None] = [None] * n

    def score(idx: np.ndarray) -> np.ndarray:
        windows = features[torch.from_numpy(idx)] if is_torch else features[idx]
        out = _as_numpy(logits_fn(windows))
        if out.shape[:2] != idx.shape:
            raise ValueError(
                f"logits_fn returned shape {out.shape} for {idx.shape[0]} windows of {L}; it "
                "must return (B, L, C) logits"
            )
        return _softmax(out)

    with torch.no_grad():
        # padded prefix windows, one per call (a night shorter than L is then scored exactly
        # as sliding_window_proba scores it: one padded window in a batch of one)
        for e in range(min(n, L - 1)):
            idx = np.minimum(np.arange(L), e)[None, :]
            rows[e] = score(idx)[0]
        n_win = n - L + 1
        if n_win > 0:
            index = np.arange(n_win)[:, None] + np.arange(L)[None, :]
            for start in range(0, n_win, batch_size):
                proba = score(index[start:start + batch_size])
                for i, p in enumerate(proba):
                    rows[start + i + L - 1] = p
    return np.stack(rows)


def lookahead_proba(
    window_softmax: np.ndarray, n_epochs: int, k: int, normalize: bool = True,
) -> np.ndarray:
    """Per-epoch class probabilities after ``k`` later epochs have arrived.

    Parameters
    ----------
    window_softmax : ndarray, shape (N, L, C)
        From :func:`window_softmax`.
    n_epochs : int
        Epochs in the night (``N``; checked against ``window_softmax``).
    k : int
        Look-ahead in epochs (``0``: only the window ending at ``t``; ``L - 1`` and above:
        every window covering ``t``, the offline result).
    normalize : bool
        Divide each epoch's sum by the number of windows summed (probabilities).

    Returns
    -------
    ndarray of float64, shape (N, C)
    """
    ws = np.asarray(window_softmax, dtype=np.float64)
    if ws.ndim != 3:
        raise ValueError(f"window_softmax must be (N, L, C), got shape {ws.shape}")
    n, L = ws.shape[0], ws.shape[1]
    if n != n_epochs:
        raise ValueError(
            f"window_softmax has {n} rows but the night has {n_epochs} epochs; compute it with "
            "window_softmax() on this night's features"
        )
    if k < 0:
        raise ValueError(f"look-ahead k must be >= 0, got {k}")
    t = np.arange(n)
    avail = np.minimum(t + k + 1, n)  # epochs that exist when t is read
    full = avail >= L
    sums = np.zeros((n, ws.shape[2]))
    counts = np.zeros(n)
    # windows in order of their end e = t + d (the order sliding_window_proba adds them in)
    for d in range(min(k, L - 1) + 1):
        e = t + d
        ok = full & (e >= L - 1) & (e <= n - 1)
        sums[ok] += ws[e[ok], L - 1 - d]
        counts[ok] += 1.0
    early = ~full
    sums[early] = ws[avail[early] - 1, t[early]]
    counts[early] = 1.0
    if normalize:
        sums = sums / counts[:, None]
    return sums


def lookahead_curve(window_softmax: np.ndarray, n_epochs: int, max_k: int | None = None,
                    normalize: bool = True) -> list[np.ndarray]:
    """:func:`lookahead_proba` for ``k = 0..max_k`` (default ``L - 1``)."""
    L = np.asarray(window_softmax).shape[1]
    max_k = L - 1 if max_k is None else max_k
    return [lookahead_proba(window_softmax, n_epochs, k, normalize) for k in range(max_k + 1)]


def block_proba(logits_fn: Callable, features, L: int, batch_size: int = 64) -> np.ndarray:
    """Softmax over non-overlapping blocks of ``L`` epochs from the night's start.

    Each epoch is scored once. The last block, when incomplete, is padded at the end with copies
    of the last epoch (the padding of :func:`window_softmax`); padded positions are dropped.

    Parameters
    ----------
    logits_fn : callable
        ``(B, L, *item_shape)`` -> ``(B, L, C)`` logits (e.g. an STQS model in eval mode).
    features : torch.Tensor or numpy.ndarray, shape (N, *item_shape)
        Per-epoch inputs of one night in time order.
    L : int
        Block length.
    batch_size : int
        Blocks per call.

    Returns
    -------
    ndarray of float64, shape (N, C)
    """
    features, n, is_torch = _checked(features, L, batch_size)
    n_blocks = -(-n // L)
    index = np.minimum(np.arange(n_blocks * L), n - 1).reshape(n_blocks, L)
    parts = []
    with torch.no_grad():
        for start in range(0, n_blocks, batch_size):
            idx = index[start:start + batch_size]
            out = _as_numpy(logits_fn(features[torch.from_numpy(idx)] if is_torch
                                      else features[idx]))
            if out.shape[:2] != idx.shape:
                raise ValueError(f"logits_fn returned shape {out.shape} for {idx.shape[0]} "
                                 f"blocks of {L}; it must return (B, L, C) logits")
            parts.append(_softmax(out).reshape(-1, out.shape[-1]))
    return np.concatenate(parts)[:n]
