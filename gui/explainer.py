"""Explanations for the epoch panel, behind one small interface.

The window asks an *explainer* ``fn(ExplainRequest) -> Explanation`` for the epoch it shows, in
a :class:`~gui.workers.LatestOnlyWorker` thread. An :class:`Explanation` is what the panel
draws: a relevance heatmap over the rendered image (0..1), the share of relevance per channel
row, and the relevance of the neighbouring epochs of the inter-epoch window.

:class:`TorchExplainer` computes them with :mod:`edge_scorer.explain` (Chefer et al.'s
relevance through the PyTorch intra ViT and inter transformer; the weights travel beside the
ONNX models). It needs PyTorch (``pip install 'edge-scorer[train]'``); without it the panel
says so and scoring is unaffected. The epoch features the inter model reads are recomputed here
from the stored images with the PyTorch intra model (cached per epoch), so the engine's backend
(which may not be thread-safe, e.g. TensorRT) is never called from this thread.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.io.spec import RenderSpec

log = get_logger("gui.explainer")

#: Install hint when PyTorch is missing.
TORCH_HINT = "explanations need PyTorch: pip install 'edge-scorer[train]'"


@dataclass(frozen=True)
class ExplainRequest:
    """What an explainer gets.

    Attributes
    ----------
    index : int
        The epoch to explain (index in the night).
    images : mapping
        ``{epoch index: rendered uint8 image}``: the epoch and its neighbours (as many as are
        scored and kept, up to one inter window on each side).
    n_epochs : int
        Epochs scored so far in the night.
    night : int
        Identifies the night (a new scoring run gets a new number; cached features are
        dropped when it changes).
    """

    index: int
    images: Mapping[int, np.ndarray]
    n_epochs: int
    night: int = 0


@dataclass
class Explanation:
    """What the epoch panel draws for one epoch.

    Attributes
    ----------
    index : int
        The explained epoch.
    target : int
        Explained class (stage code).
    heatmap : ndarray (H, W) float32
        Relevance over the rendered image, scaled to 0..1.
    row_names : tuple of str
    row_share : ndarray (n_rows,)
        Fraction of the relevance in each channel row's band (sums to 1).
    window_epochs, window_share : ndarray (K,) or None
        Night indices of the epochs of the inter windows covering ``index`` and their share of
        the inter-epoch relevance (None without an inter model).
    lines : list of str
        Plain-language summary.
    method : str
    elapsed_s : float
    """

    index: int
    target: int
    heatmap: np.ndarray
    row_names: tuple[str, ...]
    row_share: np.ndarray
    window_epochs: np.ndarray | None = None
    window_share: np.ndarray | None = None
    lines: list[str] = field(default_factory=list)
    method: str = ""
    elapsed_s: float = 0.0


def contiguous_window(index: int, available: Mapping[int, object], length: int,
                      n_epochs: int) -> tuple[int, int]:
    """``[lo, hi)``: the epochs every inter window covering ``index`` reads (``length - 1``
    each side, inside the night), shrunk to the contiguous run of ``available`` ones."""
    if index not in available:
        raise ValueError(f"epoch {index} has no stored image to explain")
    lo, hi = index, index + 1
    while lo > max(0, index - length + 1) and (lo - 1) in available:
        lo -= 1
    while hi < min(n_epochs, index + length) and hi in available:
        hi += 1
    return lo, hi


class TorchExplainer:
    """Chefer relevance of the intra ViT and the inter transformer (see the module notes).

    Parameters
    ----------
    spec : RenderSpec
        The spec the images are rendered with (checked against the models).
    intra, inter : path-like, optional
        The ONNX models scored (their PyTorch weights are beside them); default: the shipped
        model.
    method : str
        ``chefer`` (default), ``gradient`` or ``rollout``.
    torch_threads : int or None
        PyTorch threads for the explanations (default 1, leaving the other cores to scoring;
        None keeps PyTorch's setting). Applied when the models load.
    """

    def __init__(self, spec: RenderSpec, intra: str | Path | None = None,
                 inter: str | Path | None = None, method: str = "chefer",
                 torch_threads: int | None = 1) -> None:
        self.spec = spec
        self.intra_path, self.inter_path = intra, inter
        self.method = method
        self.torch_threads = torch_threads
        self.models = None
        self._features: dict[int, np.ndarray] = {}
        self._night: int | None = None

    def load(self) -> None:
        """Import PyTorch and load the models (slow: seconds; done on the first request)."""
        if self.models is not None:
            return
        try:
            import torch
        except ImportError as exc:
            raise ImportError(TORCH_HINT) from exc
        from edge_scorer.explain.relevance import TorchModels, check_methods

        check_methods(self.method)
        if self.torch_threads is not None:
            torch.set_num_threads(int(self.torch_threads))
        models = TorchModels.load(self.intra_path, self.inter_path)
        models.check_spec(self.spec)
        self.models = models

    @property
    def window(self) -> int:
        """Inter window length (1 without an inter model)."""
        inter = self.models.inter if self.models is not None else None
        return int(inter.config.seq_len) if inter is not None else 1

    def _night_features(self, images: Mapping[int, np.ndarray], lo: int, hi: int) -> np.ndarray:
        import torch

        from edge_scorer.explain.lrp import MODEL_LOCK

        todo = [i for i in range(lo, hi) if i not in self._features]
        if todo:
            batch = torch.from_numpy(np.stack([np.asarray(images[i]) for i in todo]))
            with MODEL_LOCK, torch.no_grad():
                feats = self.models.intra.forward_features(batch).float().numpy()
            self._features.update(zip(todo, feats))
        return np.stack([self._features[i] for i in range(lo, hi)])

    def __call__(self, request: ExplainRequest) -> Explanation:
        """Explain ``request.index`` (worker thread)."""
        from edge_scorer.explain.epoch import explain_epoch

        t0 = time.perf_counter()
        self.load()
        if request.night != self._night:
            self._features.clear()
            self._night = request.night
        i = int(request.index)
        image = np.asarray(request.images[i])
        feats = sub = None
        lo = i
        if self.models.inter is not None:
            lo, hi = contiguous_window(i, request.images, self.window, request.n_epochs)
            feats, sub = self._night_features(request.images, lo, hi), i - lo
        exp = explain_epoch(self.models, image, self.spec, method=self.method,
                            features=feats, index=sub)
        window_epochs = window_share = None
        if exp.inter is not None:
            window_epochs = np.asarray(exp.inter.epochs) + lo
            window_share = np.asarray(exp.inter.share, dtype=np.float64)
        return Explanation(
            index=i, target=int(exp.target), heatmap=np.asarray(exp.heatmap, np.float32),
            row_names=tuple(exp.aggregates.row_names),
            row_share=np.asarray(exp.aggregates.row_share, dtype=np.float64),
            window_epochs=window_epochs, window_share=window_share, lines=exp.describe(),
            method=self.method, elapsed_s=time.perf_counter() - t0)


__all__ = ["ExplainRequest", "Explanation", "TORCH_HINT", "TorchExplainer",
           "contiguous_window"]
