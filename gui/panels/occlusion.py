"""The occlusion view of the explanation panel: what the stage loses when part of the epoch is
hidden (:mod:`edge_scorer.explain.occlusion`, STQS's model-agnostic analyses).

Three plots of the *drop* of the explained stage's probability (positive, red: the hidden part
supported the stage; negative, blue: it spoke against it):

* **time**: a 2-s window slides over the epoch, hiding all rows, then each row alone (one line
  per group, x = seconds of the epoch);
* **bands**: delta, theta, alpha, sigma and beta removed from each modality and each waveform row;
* **modalities**: all rows of one modality hidden.

The analysis runs off the GUI thread (:class:`gui.review.OcclusionExplainer`); the view shows a
message until it arrives.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from edge_scorer.explain.occlusion import OcclusionResult
from edge_scorer.stages import CLASS_NAMES


def drop_rgba(drop: np.ndarray, scale: float | None = None) -> np.ndarray:
    """RGBA uint8 image of probability drops: red for positive, blue for negative, opacity
    growing with the size (``scale``: the drop drawn fully opaque; default: the largest)."""
    d = np.nan_to_num(np.asarray(drop, dtype=np.float64))
    if d.ndim != 2:
        raise ValueError(f"drops must be 2-D (groups x items), got shape {d.shape}")
    top = float(scale) if scale else float(np.abs(d).max(initial=0.0))
    a = np.clip(np.abs(d) / top, 0.0, 1.0) if top > 0 else np.zeros_like(d)
    rgba = np.zeros((*d.shape, 4), dtype=np.uint8)
    rgba[..., 0] = np.where(d > 0, 239, 33)
    rgba[..., 1] = np.where(d > 0, 71, 158)
    rgba[..., 2] = np.where(d > 0, 111, 188)
    rgba[..., 3] = np.round(40 + 215 * a).astype(np.uint8)
    return rgba


class OcclusionView(QtWidgets.QWidget):
    """Time, band and modality occlusion of one epoch (see the module docstring)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.message = QtWidgets.QLabel("occlusion: select an epoch")
        self.message.setWordWrap(True)
        self.view = pg.GraphicsLayoutWidget()
        self.time_plot = self.view.addPlot(row=0, col=0, colspan=2)
        self.band_plot = self.view.addPlot(row=1, col=0)
        self.mod_plot = self.view.addPlot(row=1, col=1)
        for p in (self.time_plot, self.band_plot, self.mod_plot):
            p.setMenuEnabled(False)
            p.setMouseEnabled(x=False, y=False)
            p.hideButtons()
            p.invertY(True)
        self.time_plot.setTitle("drop when a 2-s window is hidden", size="9pt")
        self.time_plot.setLabel("bottom", "s")
        self.band_plot.setTitle("drop when a band is removed", size="9pt")
        self.mod_plot.setTitle("drop when a modality is hidden", size="9pt")
        self.mod_plot.invertY(False)
        self.time_item = pg.ImageItem(axisOrder="row-major")
        self.band_item = pg.ImageItem(axisOrder="row-major")
        self.time_plot.addItem(self.time_item)
        self.band_plot.addItem(self.band_item)
        self.mod_bars = pg.BarGraphItem(x=[], height=[], width=0.7, brush="#ef476f")
        self.mod_plot.addItem(self.mod_bars)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.message)
        layout.addWidget(self.view, 1)
        self.result: OcclusionResult | None = None
        self.index: int | None = None

    def clear(self, message: str) -> None:
        """No result: show ``message``."""
        self.result = None
        self.index = None
        self.time_item.clear()
        self.band_item.clear()
        self.mod_bars.setOpts(x=[], height=[])
        self.message.setText(message)

    def show_result(self, index: int, res: OcclusionResult) -> None:
        """Draw the occlusion analysis of epoch ``index``."""
        self.result, self.index = res, index
        drop = res.time_drop
        scale = float(max(np.abs(drop).max(initial=0), np.abs(res.band_drop).max(initial=0),
                          np.abs(res.modality_drop).max(initial=0), 1e-6))
        self.time_item.setImage(drop_rgba(drop, scale), autoLevels=False)
        starts = res.time_starts_s
        step = float(starts[1] - starts[0]) if starts.size > 1 else res.window_s
        width = float(starts[-1] + step) if starts.size else res.window_s
        self.time_item.setRect(QtCore.QRectF(0, 0, width, drop.shape[0]))
        self.time_plot.getAxis("left").setTicks([[(g + 0.5, name) for g, name in
                                                  enumerate(res.time_groups)]])
        self.time_plot.setXRange(0, width, padding=0)
        self.time_plot.setYRange(0, drop.shape[0], padding=0)
        band = res.band_drop
        self.band_item.setImage(drop_rgba(band, scale), autoLevels=False)
        self.band_item.setRect(QtCore.QRectF(0, 0, band.shape[1], band.shape[0]))
        self.band_plot.getAxis("left").setTicks([[(g + 0.5, n) for g, n in
                                                  enumerate(res.band_groups)]])
        self.band_plot.getAxis("bottom").setTicks([[(b + 0.5, n) for b, n in
                                                    enumerate(res.band_names)]])
        self.band_plot.setXRange(0, max(band.shape[1], 1), padding=0)
        self.band_plot.setYRange(0, max(band.shape[0], 1), padding=0)
        mod = res.modality_drop
        self.mod_bars.setOpts(x=np.arange(mod.size), height=mod,
                              brushes=[pg.mkBrush("#ef476f" if v > 0 else "#219ebc")
                                       for v in mod])
        self.mod_plot.getAxis("bottom").setTicks([list(enumerate(res.modality_names))])
        lim = max(0.05, float(np.abs(mod).max(initial=0)) * 1.1)
        self.mod_plot.setYRange(min(0.0, float(mod.min(initial=0)) * 1.1), lim, padding=0)
        g, t = np.unravel_index(int(np.argmax(drop)), drop.shape)
        best_mod = res.modality_names[int(np.argmax(mod))] if mod.size else "-"
        self.message.setText(
            f"epoch {index}: {CLASS_NAMES[res.target]} at p={res.baseline[res.target]:.2f} "
            f"(intra model alone); hiding {res.time_groups[g]} at {starts[t]:.0f}-"
            f"{starts[t] + res.window_s:.0f} s drops it most ({drop[g, t]:+.2f}); the most "
            f"needed modality is {best_mod} ({res.elapsed_s:.1f} s, fill '{res.fill}')")


__all__ = ["OcclusionView", "drop_rgba"]
