"""From a patch-relevance grid to the epoch image, its channel rows and its seconds.

The renderer draws each spec row in a fixed horizontal band (``spec.row_offsets``, row
heights) and maps the 30-s epoch linearly onto the image width, so a pixel column covers
``epoch_s / image_width`` seconds. Relevance is aggregated on the pixel grid: each patch's
relevance is spread evenly over its pixels (nearest-neighbour upsampling, which conserves the
total), summed over each row's band, and each pixel column's share is split over the 1-s bins
its time span overlaps. Shares are fractions of the epoch's total relevance.

No torch here: the GUI and the reports use these on stored maps.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from edge_scorer.io.spec import RenderSpec


def _check_grid(grid: np.ndarray, spec: RenderSpec) -> tuple[int, int]:
    grid = np.asarray(grid)
    h, w = spec.image_height, spec.image_width
    if grid.ndim != 2 or h % grid.shape[0] or w % grid.shape[1]:
        raise ValueError(f"relevance grid {grid.shape} does not tile the {h}x{w} image of spec "
                         f"{spec.name!r}; use the model trained for this spec")
    return h // grid.shape[0], w // grid.shape[1]


def patch_to_pixels(grid: np.ndarray, spec: RenderSpec) -> np.ndarray:
    """Nearest-neighbour upsampling of a patch grid to the image, each patch's relevance
    spread evenly over its pixels (the total is kept). Shape ``(H, W)``, float64."""
    ph, pw = _check_grid(grid, spec)
    return np.kron(np.asarray(grid, dtype=np.float64), np.ones((ph, pw))) / (ph * pw)


def _bilinear_axis(n_in: int, n_out: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Source indices and weight of bilinear resizing along one axis, half-pixel centres
    (``align_corners=False``, like ``torch.nn.functional.interpolate``)."""
    pos = np.clip((np.arange(n_out) + 0.5) * n_in / n_out - 0.5, 0, n_in - 1)
    lo = np.floor(pos).astype(int)
    return lo, np.minimum(lo + 1, n_in - 1), pos - lo


def heatmap(grid: np.ndarray, spec: RenderSpec) -> np.ndarray:
    """Bilinear upsampling of the grid to the image, scaled to 0..1 (min-max, as Chefer et al.
    display it). Shape ``(H, W)``, float32; all zeros for a constant grid."""
    # element-wise on purpose: a BLAS matmul here wakes numpy's BLAS thread pool, which then
    # competes with torch's threads on a small CPU (it tripled the next relevance pass)
    _check_grid(grid, spec)
    g = np.asarray(grid, dtype=np.float64)
    lo, hi, f = _bilinear_axis(g.shape[0], spec.image_height)
    rows = g[lo] * (1 - f)[:, None] + g[hi] * f[:, None]
    lo, hi, f = _bilinear_axis(g.shape[1], spec.image_width)
    up = rows[:, lo] * (1 - f)[None] + rows[:, hi] * f[None]
    lo_v, hi_v = up.min(), up.max()
    return ((up - lo_v) / (hi_v - lo_v) if hi_v > lo_v else np.zeros_like(up)).astype(
        np.float32)


def time_bins(spec: RenderSpec, bin_s: float = 1.0) -> tuple[np.ndarray, np.ndarray]:
    """Edges of the time bins (s) and the ``(W, n_bins)`` share of each pixel column's time
    span falling in each bin (rows sum to 1)."""
    if not 0 < bin_s <= spec.epoch_s:
        raise ValueError(f"bin_s must be in (0, {spec.epoch_s}], got {bin_s}")
    n_bins = int(np.ceil(spec.epoch_s / bin_s - 1e-9))
    edges = np.minimum(np.arange(n_bins + 1) * bin_s, spec.epoch_s)
    w = spec.image_width
    c0 = np.arange(w) * spec.epoch_s / w
    c1 = c0 + spec.epoch_s / w
    overlap = (np.minimum(c1[:, None], edges[None, 1:]) - np.maximum(c0[:, None], edges[None, :-1]))
    overlap = np.clip(overlap, 0, None)
    return edges, overlap / overlap.sum(1, keepdims=True)


@dataclass
class Aggregates:
    """Shares of an epoch's relevance per channel row and per time bin.

    Attributes
    ----------
    row_names : tuple of str
    row_share : ndarray (n_rows,)
        Fraction of the relevance in each row's band (sums to 1; 0 for an all-zero map).
    row_density : ndarray (n_rows,)
        ``row_share`` divided by the row's share of the image height: 1 is the average, so rows
        of different heights compare fairly.
    bin_edges_s : ndarray (n_bins + 1,)
    second_share : ndarray (n_bins,)
        Fraction of the relevance in each time bin.
    row_second : ndarray (n_rows, n_bins)
        Fraction in each row x time bin (sums to 1).
    """

    row_names: tuple[str, ...]
    row_share: np.ndarray
    row_density: np.ndarray
    bin_edges_s: np.ndarray
    second_share: np.ndarray
    row_second: np.ndarray


def aggregate(grid: np.ndarray, spec: RenderSpec, bin_s: float = 1.0) -> Aggregates:
    """Aggregate a patch-relevance grid per spec row and per ``bin_s`` seconds."""
    pix = patch_to_pixels(grid, spec)
    if (pix < 0).any():
        pix = np.clip(pix, 0, None)  # shares of non-negative evidence only
    band_of_y = np.repeat(np.arange(spec.n_rows), [r.height for r in spec.rows])
    per_row_col = np.zeros((spec.n_rows, spec.image_width))
    np.add.at(per_row_col, band_of_y, pix)
    edges, overlap = time_bins(spec, bin_s)
    row_second = (per_row_col[:, :, None] * overlap[None]).sum(1)  # no BLAS (see heatmap)
    total = row_second.sum()
    if total > 0:
        row_second = row_second / total
    row_share = row_second.sum(1)
    heights = np.array([r.height for r in spec.rows], dtype=np.float64) / spec.image_height
    return Aggregates(spec.row_names, row_share, row_share / heights, edges,
                      row_second.sum(0), row_second)


def top_regions(agg: Aggregates, span_s: float = 4.0, k: int = 3) -> list[dict]:
    """The ``k`` most relevant (row, time span) regions, spans not overlapping within a row.

    Each region is ``{"row", "start_s", "end_s", "share"}``: e.g. ``EEG Pz-Oz`` at 12-16 s
    holding 18 % of the epoch's relevance.
    """
    edges = agg.bin_edges_s
    width = float(edges[1] - edges[0])
    n = max(1, min(len(edges) - 1, int(round(span_s / width))))
    sums = np.stack([np.convolve(r, np.ones(n), mode="valid") for r in agg.row_second])
    taken = np.zeros(agg.row_second.shape, dtype=bool)
    out = []
    for _ in range(k):
        free = np.array([[not taken[r, s:s + n].any() for s in range(sums.shape[1])]
                         for r in range(sums.shape[0])])
        masked = np.where(free, sums, -np.inf)
        r, s = np.unravel_index(np.argmax(masked), masked.shape)
        if not np.isfinite(masked[r, s]) or masked[r, s] <= 0:
            break
        taken[r, s:s + n] = True
        out.append({"row": agg.row_names[r], "start_s": float(edges[s]),
                    "end_s": float(edges[s + n]), "share": float(sums[r, s])})
    return out


__all__ = ["Aggregates", "aggregate", "heatmap", "patch_to_pixels", "time_bins",
           "top_regions"]
