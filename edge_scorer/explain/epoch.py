"""Explain one epoch: why it got its stage (intra patch relevance + inter-epoch relevance).

:func:`explain_epoch` takes the PyTorch models (:class:`~.relevance.TorchModels`), the epoch's
rendered image and, for the inter-epoch part, the night's epoch features; it returns an
:class:`EpochExplanation` with the patch grid, the heatmap over the image, the shares per
channel row and per second, and the relevance of the neighbouring epochs. It keeps no state
outside its arguments (the GUI calls it off its main thread; calls on one model are
serialised by :data:`~.lrp.MODEL_LOCK`).

The explained class is, by default, the epoch's final stage: the argmax of the softmax summed
over every 10-epoch window covering it (SleepXViT's rule,
:mod:`edge_scorer.inference.windows`), or the intra model's own argmax when there is no inter
model or no features.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field

import numpy as np

from edge_scorer.explain.aggregate import Aggregates, aggregate, heatmap, top_regions
from edge_scorer.explain.relevance import (
    TorchModels,
    check_methods,
    inter_relevance,
    intra_relevance,
    torch,
)
from edge_scorer.inference.windows import offline_ends, softmax, window_index
from edge_scorer.io.spec import RenderSpec
from edge_scorer.stages import CLASS_NAMES


def covering_windows(n_epochs: int, index: int, length: int) -> tuple[np.ndarray, np.ndarray]:
    """The windows of a night that contain epoch ``index``, and its position in each.

    The windows are the ones offline scoring sums (:func:`edge_scorer.inference.windows.
    offline_ends` and :func:`~edge_scorer.inference.windows.window_index`: stride 1; a night
    shorter than a window is one window padded with copies of its last epoch).

    Returns
    -------
    windows : ndarray of int (W, length)
        Epoch indices of each covering window.
    positions : ndarray of int (W,)
        Position of ``index`` in each window (its first occurrence).
    """
    if not 0 <= index < n_epochs:
        raise ValueError(f"epoch {index} is outside the night (0..{n_epochs - 1})")
    idx = window_index(offline_ends(n_epochs, length), length)
    rows = idx[(idx == index).any(axis=1)]
    return rows, (rows == index).argmax(axis=1)


def window_logits(inter, features: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Inter logits ``(W, L, C)`` of the windows of epoch indices ``windows`` (torch, no
    grad)."""
    feats = np.asarray(features, dtype=np.float32)
    with torch.no_grad():
        return inter(torch.from_numpy(feats[windows])).numpy()


@dataclass
class InterExplanation:
    """Relevance of the neighbouring epochs for the decision about one epoch.

    Attributes
    ----------
    method : str
    explained : int
        The explained epoch (index in the night).
    target : int
        Explained class.
    epochs : ndarray of int (K,)
        Night indices of every epoch in a window covering ``explained``.
    relevance : ndarray (K,)
        The explained position's row of the rolled-out relevance, summed over the windows
        covering ``explained`` (the decision sums their softmax outputs).
    share : ndarray (K,)
        ``relevance`` as fractions of its total.
    n_windows : int
    probabilities : ndarray (C,)
        Final probabilities of ``explained`` (mean softmax over its windows).
    """

    method: str
    explained: int
    target: int
    epochs: np.ndarray
    relevance: np.ndarray
    share: np.ndarray
    n_windows: int
    probabilities: np.ndarray

    @property
    def context_share(self) -> np.ndarray:
        """Shares of the *other* epochs (the explained one set to 0), summing to 1: which
        neighbours the inter model used, apart from the epoch itself."""
        s = np.where(self.epochs == self.explained, 0.0, self.relevance)
        return s / s.sum() if s.sum() > 0 else s

    def to_dict(self) -> dict:
        """JSON-ready numbers."""
        return {"method": self.method, "explained": self.explained,
                "target": CLASS_NAMES[self.target], "epochs": self.epochs.tolist(),
                "relevance": self.relevance.tolist(), "share": self.share.tolist(),
                "context_share": self.context_share.tolist(), "n_windows": self.n_windows,
                "probabilities": dict(zip(CLASS_NAMES, self.probabilities.tolist()))}


def explain_window_night(inter, features: np.ndarray, index: int, target: int | None = None,
                         method: str = "chefer", temperature: float = 1.0) -> InterExplanation:
    """Inter-epoch relevance for epoch ``index`` of a night, over all windows covering it.

    Parameters
    ----------
    inter : edge_scorer.inference.nets.InterEpochTransformer
    features : ndarray (N, D)
        The night's epoch features (intra CLS features, any backend).
    index : int
        Explained epoch.
    target : int, optional
        Explained class; default: the final stage of ``index``.
    method : str
        One of :data:`~.relevance.METHODS`.
    temperature : float
        The model's softmax temperature (``TorchModels.temperature``), so the probabilities
        equal the engine's final ones.
    """
    (method,) = check_methods(method)
    n = len(features)
    length = int(inter.config.seq_len)
    windows, pos = covering_windows(n, index, length)
    wins = np.asarray(features, dtype=np.float32)[windows]
    logits = window_logits(inter, features, windows)
    proba = softmax(logits[np.arange(len(windows)), pos].astype(np.float64)
                    / temperature).mean(0)
    tgt = int(proba.argmax()) if target is None else int(target)
    res = inter_relevance(inter, wins, pos, target=tgt, methods=method)
    lo, hi = int(windows.min()), int(windows.max()) + 1
    rel = np.zeros(hi - lo)
    for epochs, row in zip(windows, res.maps[method], strict=True):
        keep = epochs == epochs[0] + np.arange(length)  # not the padding of a short night
        np.add.at(rel, epochs[keep] - lo, row[keep])
    total = rel.sum()
    return InterExplanation(method, int(index), tgt, np.arange(lo, hi), rel,
                            rel / total if total > 0 else rel, len(windows), proba)


@dataclass
class EpochExplanation:
    """Why one epoch got its stage (see module docstring).

    Attributes
    ----------
    method : str
        Relevance method (:data:`~.relevance.METHODS`).
    target : int
        Explained class (``CLASS_NAMES[target]``).
    stage : int or None
        Final stage of the epoch (intra + inter), when known.
    intra_predicted : int
        The intra model's argmax for this image.
    intra_probabilities : ndarray (C,)
        Softmax of the intra model's logits.
    grid : ndarray (g, g)
        Patch relevance, non-negative; ``g = 224 / patch``: 7 x 7 for the shipped model's
        32-px patches (14 x 14 with 16-px patches).
    heatmap : ndarray (H, W)
        ``grid`` upsampled bilinearly to the image, scaled to 0..1 (for overlays).
    aggregates : Aggregates
        Shares per channel row, per second, and per row x second.
    inter : InterExplanation or None
        Relevance of the neighbouring epochs (with an inter model and the night's features).
    epoch : int or None
        Index in the night; ``onset_s`` its start.
    elapsed_s : float
        Time spent computing the explanation.
    """

    method: str
    target: int
    stage: int | None
    intra_predicted: int
    intra_probabilities: np.ndarray
    grid: np.ndarray
    heatmap: np.ndarray
    aggregates: Aggregates
    inter: InterExplanation | None = None
    epoch: int | None = None
    onset_s: float | None = None
    elapsed_s: float = 0.0
    regions: list[dict] = field(default_factory=list)

    def describe(self) -> list[str]:
        """Plain-language lines: the decision, the rows, the most relevant regions, the
        neighbours."""
        name = CLASS_NAMES[self.target]
        head = f"relevance for {name} ({self.method})"
        if self.stage is not None:
            head = f"stage {CLASS_NAMES[self.stage]}; " + head
        lines = [head + f"; intra model: {CLASS_NAMES[self.intra_predicted]} "
                 f"(p={self.intra_probabilities[self.intra_predicted]:.2f})"]
        rows = ", ".join(f"{r} {s:.0%}" for r, s in zip(self.aggregates.row_names,
                                                         self.aggregates.row_share))
        lines.append(f"per row: {rows}")
        for reg in self.regions:
            lines.append(f"{reg['row']} at {reg['start_s']:g}-{reg['end_s']:g} s: "
                         f"{reg['share']:.0%} of the relevance")
        if self.inter is not None:
            ctx = self.inter.context_share
            if ctx.sum() > 0:
                top = np.argsort(ctx)[::-1][:3]
                parts = [f"{int(self.inter.epochs[i]) - self.inter.explained:+d} "
                         f"({ctx[i]:.0%})" for i in top if ctx[i] > 0]
                lines.append("neighbouring epochs used most (offset): " + ", ".join(parts))
        return lines

    def to_dict(self) -> dict:
        """JSON-ready numbers (maps as nested lists)."""
        a = self.aggregates
        return {
            "epoch": self.epoch, "onset_s": self.onset_s, "method": self.method,
            "target": CLASS_NAMES[self.target],
            "stage": None if self.stage is None else CLASS_NAMES[self.stage],
            "intra_predicted": CLASS_NAMES[self.intra_predicted],
            "intra_probabilities": dict(zip(CLASS_NAMES, self.intra_probabilities.tolist())),
            "grid": self.grid.tolist(),
            "row_share": dict(zip(a.row_names, a.row_share.tolist())),
            "row_density": dict(zip(a.row_names, a.row_density.tolist())),
            "bin_edges_s": a.bin_edges_s.tolist(), "second_share": a.second_share.tolist(),
            "row_second": {r: v.tolist() for r, v in zip(a.row_names, a.row_second)},
            "regions": self.regions, "description": self.describe(),
            "inter": None if self.inter is None else self.inter.to_dict(),
            "elapsed_s": self.elapsed_s,
        }


def explain_epoch(models: TorchModels, image: np.ndarray, spec: RenderSpec, *,
                  method: str = "chefer", target: int | None = None,
                  features: np.ndarray | None = None, index: int | None = None,
                  bin_s: float = 1.0, span_s: float = 4.0) -> EpochExplanation:
    """Explain one rendered epoch.

    Parameters
    ----------
    models : TorchModels
        PyTorch intra (and inter) models (e.g. ``TorchModels.load()`` for the shipped model).
    image : ndarray of uint8, shape ``spec.image_shape``
        The epoch as the model sees it.
    spec : RenderSpec
        The spec it was rendered with (checked against the models; gives the rows).
    method : str
        ``chefer`` (default), ``gradient`` or ``rollout``.
    target : int, optional
        Class to explain; default: the final stage (or the intra argmax without features).
    features : ndarray (N, D), optional
        The night's epoch features; with ``index`` and an inter model, adds the inter-epoch
        relevance and the final stage.
    index : int, optional
        The epoch's index in the night (needed with ``features``).
    bin_s, span_s : float
        Time-bin width of the aggregates and span of the reported top regions (s).

    Returns
    -------
    EpochExplanation
    """
    (method,) = check_methods(method)
    models.check_spec(spec)
    image = np.asarray(image)
    if image.shape != spec.image_shape:
        raise ValueError(f"image shape {image.shape} is not spec {spec.name!r}'s "
                         f"{spec.image_shape}; render the epoch with that spec")
    if features is not None and index is None:
        raise ValueError("features given without index: pass the epoch's index in the night")
    t0 = time.perf_counter()
    inter = stage = None
    if features is not None and models.inter is not None:
        inter = explain_window_night(models.inter, features, int(index), target, method,
                                     temperature=models.temperature)
        stage = int(inter.probabilities.argmax())
    tgt = target if target is not None else stage
    res = intra_relevance(models.intra, image[None], target=tgt, methods=method)
    proba = softmax(res.logits[0].astype(np.float64) / models.intra_temperature)
    grid = res.maps[method][0]
    agg = aggregate(grid, spec, bin_s)
    return EpochExplanation(
        method=method, target=int(res.targets[0]), stage=stage,
        intra_predicted=int(proba.argmax()), intra_probabilities=proba, grid=grid,
        heatmap=heatmap(grid, spec), aggregates=agg, inter=inter,
        epoch=None if index is None else int(index),
        onset_s=None if index is None else float(index) * spec.epoch_s,
        elapsed_s=time.perf_counter() - t0, regions=top_regions(agg, span_s))


__all__ = ["EpochExplanation", "InterExplanation", "covering_windows", "explain_epoch",
           "explain_window_night", "window_logits"]
