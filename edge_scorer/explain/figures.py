"""Figures of explanations, for people: matplotlib ``Figure`` objects, written as PNG.

Every function builds a :class:`matplotlib.figure.Figure` directly (no ``pyplot``, hence no
global figure state: safe off the GUI thread) and returns it; :func:`save_figure` writes it
with the Agg renderer. matplotlib comes with MNE, a core dependency.

- :func:`relevance_figure`: the epoch image with the relevance overlay (one panel per method);
- :func:`bars_figure`: shares per channel row and per second (stacked by row);
- :func:`inter_figure`: relevance of the neighbouring epochs (SleepXViT's inter-epoch bars);
- :func:`occlusion_figure`: STQS occlusion curves (time), band and modality drops;
- ``stage_*_figure``: the same per stage over a night (``explain --all``).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_scorer.io.spec import RenderSpec
from edge_scorer.stages import CLASS_NAMES

#: Overlay colour map and opacity of the relevance heatmap.
CMAP, ALPHA = "inferno", 0.55
_ROW_COLORS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2",
               "#7f7f7f", "#bcbd22", "#17becf")
_STAGE_COLORS = {0: "#f0b400", 1: "#8fd0ff", 2: "#3a7bd5", 3: "#1b2f6b", 4: "#d6336c"}


def _figure(w: float, h: float):
    from matplotlib.figure import Figure

    return Figure(figsize=(w, h), dpi=100, layout="constrained")


def save_figure(fig, path: str | Path, dpi: int = 110) -> Path:
    """Write ``fig`` as a PNG (Agg renderer), atomically; the folder is created."""
    from edge_scorer.io.outputs import atomic_open

    path = Path(path)
    with atomic_open(path, "wb") as fh:
        fig.savefig(fh, dpi=dpi, format="png")
    return path


def hms(seconds: float | None) -> str:
    """``H:MM:SS`` of a time from the start of the recording."""
    if seconds is None:
        return "?"
    s = int(round(seconds))
    return f"{s // 3600}:{s % 3600 // 60:02d}:{s % 60:02d}"


def _epoch_axes(ax, spec: RenderSpec) -> None:
    """Row names at band centres, seconds on x, dashed row boundaries."""
    centres = [o + r.height / 2 for o, r in zip(spec.row_offsets, spec.rows)]
    ax.set_yticks(centres, [r.name for r in spec.rows], fontsize=8)
    ticks_s = np.arange(0, spec.epoch_s + 1e-9, 5.0)
    ax.set_xticks(ticks_s * spec.image_width / spec.epoch_s - 0.5,
                  [f"{t:g}" for t in ticks_s], fontsize=8)
    ax.set_xlabel("time in epoch (s)", fontsize=8)
    for o in spec.row_offsets[1:]:
        ax.axhline(o - 0.5, color="white", lw=0.6, ls="--", alpha=0.6)


def draw_overlay(ax, image: np.ndarray, heat: np.ndarray, spec: RenderSpec,
                 title: str = "") -> None:
    """Draw the epoch image in grey with the 0..1 heatmap over it on ``ax``."""
    img = image if image.ndim == 2 else image.mean(-1)
    ax.imshow(img, cmap="gray", vmin=0, vmax=255 if img.max() > 1.0 else 1.0,
              interpolation="nearest")
    ax.imshow(heat, cmap=CMAP, alpha=ALPHA, vmin=0, vmax=1, interpolation="bilinear")
    _epoch_axes(ax, spec)
    if title:
        ax.set_title(title, fontsize=9)


def _decision(ex) -> str:
    when = f"epoch {ex.epoch} ({hms(ex.onset_s)})" if ex.epoch is not None else "epoch"
    stage = f"scored {CLASS_NAMES[ex.stage]}, " if ex.stage is not None else ""
    p = ex.intra_probabilities[ex.intra_predicted]
    return (f"{when}: {stage}relevance for {CLASS_NAMES[ex.target]}; intra model "
            f"{CLASS_NAMES[ex.intra_predicted]} (p={p:.2f})")


def relevance_figure(image: np.ndarray, explanations, spec: RenderSpec):
    """The epoch image with each explanation's relevance overlaid (one panel per method)."""
    exs = list(explanations) if isinstance(explanations, Sequence) else [explanations]
    fig = _figure(3.6 * len(exs) + 0.4, 4.2)
    axes = np.atleast_1d(fig.subplots(1, len(exs)))
    for ax, ex in zip(axes, exs):
        draw_overlay(ax, image, ex.heatmap, spec, ex.method)
    fig.suptitle(_decision(exs[0]), fontsize=10)
    cb = fig.colorbar(axes[-1].images[-1], ax=list(axes), shrink=0.7)
    cb.set_label("relevance (scaled 0-1)", fontsize=8)
    return fig


def bars_figure(ex, spec: RenderSpec):
    """Shares of the relevance per channel row and per second, stacked by row."""
    a = ex.aggregates
    fig = _figure(10, 3.6)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1, 2.6])
    y = np.arange(len(a.row_names))[::-1]
    ax1.barh(y, a.row_share * 100, color=_ROW_COLORS[:len(y)])
    ax1.set_yticks(y, a.row_names, fontsize=8)
    for yi, s, d in zip(y, a.row_share, a.row_density):
        ax1.text(s * 100, yi, f" {s:.0%} (x{d:.1f})", va="center", fontsize=7)
    ax1.set_xlabel("% of relevance (x density vs row height)", fontsize=8)
    ax1.set_xlim(0, max(a.row_share.max() * 100 * 1.45, 1))
    ax1.set_title("per channel row", fontsize=9)
    mids = (a.bin_edges_s[:-1] + a.bin_edges_s[1:]) / 2
    width = np.diff(a.bin_edges_s) * 0.9
    bottom = np.zeros(len(mids))
    for i, name in enumerate(a.row_names):
        ax2.bar(mids, a.row_second[i] * 100, width, bottom=bottom, label=name,
                color=_ROW_COLORS[i % len(_ROW_COLORS)])
        bottom += a.row_second[i] * 100
    for reg in ex.regions[:1]:
        ax2.axvspan(reg["start_s"], reg["end_s"], color="k", alpha=0.08)
        ax2.set_title(f"per second; most relevant: {reg['row']} at {reg['start_s']:g}-"
                      f"{reg['end_s']:g} s ({reg['share']:.0%})", fontsize=9)
    ax2.set_xlim(0, spec.epoch_s)
    ax2.set_xlabel("time in epoch (s)", fontsize=8)
    ax2.set_ylabel("% of relevance", fontsize=8)
    ax2.legend(fontsize=7, ncols=min(4, len(a.row_names)), loc="upper right")
    fig.suptitle(_decision(ex) + f" [{ex.method}]", fontsize=10)
    return fig


def inter_figure(ex, stages: np.ndarray | None = None):
    """Relevance of each neighbouring epoch for the explained epoch's decision.

    The bars are the neighbours' shares of the relevance that reaches *other* epochs (they sum
    to 100 %); the explained epoch's own share of the whole row, which includes the residual
    path by which every position reads its own epoch, is written on the plot.
    """
    inter = ex.inter
    if inter is None:
        raise ValueError("this explanation has no inter-epoch part (no inter model or no "
                         "night features were given)")
    off = inter.epochs - inter.explained
    fig = _figure(max(6.0, 0.42 * len(off) + 1.5), 3.4)
    ax = fig.subplots()
    ctx = inter.context_share * 100
    ax.bar(off, ctx, color=["#d62728" if o == 0 else "#4c72b0" for o in off])
    ax.axvline(0, color="#d62728", lw=1.0, ls=":")
    labels = [f"{o:+d}" if o else "0" for o in off]
    if stages is not None:
        labels = [f"{lab}\n{CLASS_NAMES[int(stages[e])]}" for lab, e in zip(labels,
                                                                            inter.epochs)]
    ax.set_xticks(off, labels, fontsize=7)
    ax.set_xlabel("epoch offset from the explained epoch (dotted)"
                  + (" / scored stage" if stages is not None else ""), fontsize=8)
    ax.set_ylabel("% of the neighbours' relevance", fontsize=8)
    ax.set_title(f"inter-epoch relevance for {CLASS_NAMES[inter.target]} at epoch "
                 f"{inter.explained} ({inter.method}, summed over {inter.n_windows} windows)",
                 fontsize=9)
    own = inter.share[off == 0]
    if len(own):
        ax.text(0.01, 0.97, f"own epoch: {own[0]:.1%} of the whole relevance row "
                f"(residual path included); neighbours: {1 - own[0]:.1%}",
                transform=ax.transAxes, va="top", fontsize=8)
    return fig


def occlusion_figure(occ, title: str = ""):
    """STQS occlusion: time curves per row, band drops per group, modality drops."""
    fig = _figure(12, 3.8)
    ax1, ax2, ax3 = fig.subplots(1, 3, width_ratios=[2.2, 1.6, 1])
    centres = occ.time_starts_s + occ.window_s / 2
    for i, (g, d) in enumerate(zip(occ.time_groups, occ.time_drop)):
        ax1.plot(centres, d, lw=2.0 if i == 0 else 1.2, label=g,
                 color="k" if i == 0 else _ROW_COLORS[(i - 1) % len(_ROW_COLORS)])
    ax1.axhline(0, color="grey", lw=0.5)
    ax1.set_xlabel(f"centre of the {occ.window_s:g}-s occluded window (s)", fontsize=8)
    ax1.set_ylabel(f"drop of p({CLASS_NAMES[occ.target]})", fontsize=8)
    ax1.set_title("time-domain occlusion", fontsize=9)
    ax1.legend(fontsize=7)
    n_g = len(occ.band_groups)
    x = np.arange(len(occ.band_names))
    w = 0.8 / max(n_g, 1)
    for i, (g, d) in enumerate(zip(occ.band_groups, occ.band_drop)):
        ax2.bar(x + (i - (n_g - 1) / 2) * w, d, w, label=g,
                color=_ROW_COLORS[i % len(_ROW_COLORS)])
    ax2.set_xticks(x, occ.band_names, fontsize=8)
    ax2.axhline(0, color="grey", lw=0.5)
    ax2.set_title("frequency band removed", fontsize=9)
    ax2.legend(fontsize=7)
    ax3.bar(occ.modality_names, occ.modality_drop, color="#55a868")
    ax3.axhline(0, color="grey", lw=0.5)
    ax3.set_title(f"modality masked ({occ.fill})", fontsize=9)
    ax3.tick_params(labelsize=8)
    base = occ.baseline[occ.target]
    fig.suptitle((title + "; " if title else "") + f"occlusion of p({CLASS_NAMES[occ.target]})"
                 f" = {base:.2f} (positive: the occluded part supported it)", fontsize=10)
    return fig


def stage_title(st) -> str:
    agree = "" if st.agreement is None else f"; {st.agreement:.0%} as hypnogram"
    return f"{CLASS_NAMES[st.stage]}: {len(st.epochs)} of {st.n_scored} epochs{agree}"


def stage_maps_figure(summary, spec: RenderSpec):
    """Per stage: the mean epoch image with the mean relevance map over it."""
    from edge_scorer.explain.aggregate import heatmap

    n = len(summary.stages)
    fig = _figure(3.6 * n + 0.5, 3.9)
    axes = np.atleast_1d(fig.subplots(1, n))
    for ax, st in zip(axes, summary.stages):
        draw_overlay(ax, st.mean_image, heatmap(st.mean_grid, spec), spec, stage_title(st))
    fig.suptitle(f"mean {summary.method} relevance per scored stage", fontsize=10)
    return fig


def stage_bars_figure(summary):
    """Per stage: relevance share per row and its profile over the epoch."""
    fig = _figure(12, 3.8)
    ax1, ax2 = fig.subplots(1, 2, width_ratios=[1.2, 2])
    rows = summary.row_names
    x = np.arange(len(rows))
    w = 0.8 / max(len(summary.stages), 1)
    for i, st in enumerate(summary.stages):
        c = _STAGE_COLORS.get(st.stage)
        ax1.bar(x + (i - (len(summary.stages) - 1) / 2) * w, st.row_density, w,
                label=CLASS_NAMES[st.stage], color=c)
        mids = (summary.bin_edges_s[:-1] + summary.bin_edges_s[1:]) / 2
        ax2.plot(mids, st.second_share * 100, label=CLASS_NAMES[st.stage], color=c)
    ax1.axhline(1.0, color="grey", lw=0.5, ls="--")
    ax1.set_xticks(x, rows, fontsize=8, rotation=15)
    ax1.set_ylabel("relevance density (1 = even)", fontsize=8)
    ax1.set_title("per channel row", fontsize=9)
    ax1.legend(fontsize=7)
    ax2.set_xlabel("time in epoch (s)", fontsize=8)
    ax2.set_ylabel("% of relevance per second", fontsize=8)
    ax2.set_title("over the epoch", fontsize=9)
    ax2.legend(fontsize=7)
    fig.suptitle(f"{summary.method} relevance per scored stage", fontsize=10)
    return fig


def stage_inter_figure(summary):
    """Per stage: mean relevance of the neighbouring epochs by offset (own epoch excluded)."""
    fig = _figure(8, 3.4)
    ax = fig.subplots()
    for st in summary.stages:
        if st.inter_context_share is not None:
            ax.plot(summary.inter_offsets, st.inter_context_share * 100, marker="o", ms=3,
                    label=CLASS_NAMES[st.stage], color=_STAGE_COLORS.get(st.stage))
    ax.set_xlabel("epoch offset from the explained epoch", fontsize=8)
    ax.set_ylabel("% of the neighbours' relevance", fontsize=8)
    ax.set_title(f"inter-epoch relevance per scored stage ({summary.method})", fontsize=9)
    ax.legend(fontsize=7)
    return fig


def stage_occlusion_figure(summary):
    """Per stage: modality and band drops, and the all-rows time-occlusion curve."""
    fig = _figure(13, 3.8)
    ax1, ax2, ax3 = fig.subplots(1, 3, width_ratios=[1.2, 1.6, 2])
    sts = [s for s in summary.stages if s.modality_drop is not None]
    if not sts:
        raise ValueError("the summary has no occlusion results (run it with a proba_fn)")
    w = 0.8 / len(sts)
    x = np.arange(len(summary.modality_names))
    xb = np.arange(len(summary.band_names))
    centres = summary.time_starts_s + summary.window_s / 2
    for i, st in enumerate(sts):
        c, lab = _STAGE_COLORS.get(st.stage), CLASS_NAMES[st.stage]
        off = (i - (len(sts) - 1) / 2) * w
        ax1.bar(x + off, st.modality_drop, w, color=c, label=lab)
        ax2.bar(xb + off, st.band_drop[0], w, color=c, label=lab)
        ax3.plot(centres, st.time_drop[0], color=c, label=lab)
    ax1.set_xticks(x, summary.modality_names, fontsize=8)
    ax1.set_title("modality masked", fontsize=9)
    ax1.set_ylabel("drop of p(stage)", fontsize=8)
    ax2.set_xticks(xb, summary.band_names, fontsize=8)
    ax2.set_title(f"band removed from {summary.band_groups[0]}", fontsize=9)
    ax3.set_title(f"{summary.window_s:g}-s window masked on all rows", fontsize=9)
    ax3.set_xlabel("window centre (s)", fontsize=8)
    for ax in (ax1, ax2, ax3):
        ax.axhline(0, color="grey", lw=0.5)
        ax.legend(fontsize=7)
    fig.suptitle("STQS occlusion per scored stage (positive: the occluded part supported "
                 "the stage)", fontsize=10)
    return fig


__all__ = ["bars_figure", "draw_overlay", "hms", "stage_title", "inter_figure", "occlusion_figure",
           "relevance_figure", "save_figure", "stage_bars_figure", "stage_inter_figure",
           "stage_maps_figure", "stage_occlusion_figure"]
