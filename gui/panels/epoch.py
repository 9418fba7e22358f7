"""One epoch in detail: its rendered image with the relevance overlay, relevance per channel
row, its stage probabilities, and the relevance of its neighbours in the inter-epoch window.

A line under the header shows the unfamiliar-signal flag of the epoch, with its distance to the
training data and the model's threshold (highlighted when flagged: review the epoch; it is not
a diagnosis of artifact).

Two tabs: *relevance* (the image with the overlay and the bars above) and *occlusion*
(:class:`~gui.panels.occlusion.OcclusionView`: the probability lost when parts of the epoch are
hidden; computed when the tab is shown, :attr:`EpochPanel.occlusionWanted`).

The image is the exact uint8 PSG screen the model scored (x in seconds of the epoch, y in image
pixels with the row names at their bands). The relevance overlay and bars come from an
:class:`~gui.explainer.Explanation`, computed off the GUI thread; until it arrives the panel
says so and shows the image and probabilities alone.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from edge_scorer.io.spec import RenderSpec
from edge_scorer.stages import CLASS_NAMES

from ..explainer import Explanation
from ..theme import STAGE_COLORS, UNFAMILIAR_COLOR
from .occlusion import OcclusionView

#: Largest opacity of the relevance overlay (at the most relevant pixels).
OVERLAY_ALPHA = 0.7


def overlay_rgba(heatmap: np.ndarray, alpha: float = OVERLAY_ALPHA) -> np.ndarray:
    """RGBA uint8 overlay of a 0..1 heatmap: ``inferno`` colours, opacity growing with
    relevance (transparent where there is none)."""
    h = np.clip(np.nan_to_num(np.asarray(heatmap, dtype=np.float64)), 0.0, 1.0)
    rgba = pg.colormap.get("inferno").map(h.ravel(), mode="byte").reshape(*h.shape, 4)
    rgba = np.array(rgba, dtype=np.uint8)
    rgba[..., 3] = np.round(h * alpha * 255).astype(np.uint8)
    return rgba


def neighbour_shares(exp: Explanation) -> tuple[np.ndarray, np.ndarray, float]:
    """Epoch offsets of the window, the neighbours' shares of the inter-epoch relevance left
    after the epoch's own (the epoch itself at 0; they sum to 1), and the epoch's own share."""
    offsets = np.asarray(exp.window_epochs) - exp.index
    share = np.asarray(exp.window_share, dtype=np.float64)
    own = float(share[offsets == 0].sum())
    context = np.where(offsets == 0, 0.0, share)
    total = context.sum()
    return offsets, (context / total if total > 0 else context), own


class EpochPanel(QtWidgets.QWidget):
    """The epoch panel (see the module docstring)."""

    #: The occlusion tab is shown (the window computes the shown epoch's analysis).
    occlusionWanted = QtCore.Signal()

    def __init__(self, spec: RenderSpec, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        heights = np.array([r.height for r in spec.rows], dtype=np.float64)
        self._centres = np.array(spec.row_offsets, dtype=np.float64) + heights / 2.0
        self._heights = heights
        self.header = QtWidgets.QLabel("no epoch yet")
        self.header.setWordWrap(True)
        self.familiarity_label = QtWidgets.QLabel("")
        self.familiarity_label.setWordWrap(True)
        self.flagged = False
        self.show_overlay = QtWidgets.QCheckBox("relevance overlay")
        self.show_overlay.setChecked(True)
        self.show_overlay.toggled.connect(self._overlay_toggled)

        self.view = pg.GraphicsLayoutWidget()
        self.image_plot = self.view.addPlot(row=0, col=0)
        self.rows_plot = self.view.addPlot(row=0, col=1)
        self.view.ci.layout.setColumnStretchFactor(0, 4)
        self.view.ci.layout.setColumnStretchFactor(1, 1)
        ticks = [[(float(c), r.name) for c, r in zip(self._centres, spec.rows)]]
        for p in (self.image_plot, self.rows_plot):
            p.setMenuEnabled(False)
            p.setMouseEnabled(x=False, y=False)
            p.hideButtons()
            p.invertY(True)
            p.setYRange(0, spec.image_height, padding=0)
        self.image_plot.getAxis("left").setTicks(ticks)
        self.image_plot.setXRange(0, spec.epoch_s, padding=0)
        self.image_plot.setLabel("bottom", "s")
        self.image_plot.setTitle("rendered epoch (model input)", size="9pt")
        self.rows_plot.setYLink(self.image_plot)
        self.rows_plot.getAxis("left").setStyle(showValues=False)
        self.rows_plot.setXRange(0, 1, padding=0)
        self.rows_plot.setTitle("relevance / row", size="9pt")
        self.image_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item = pg.ImageItem(axisOrder="row-major")
        self.overlay_item.setZValue(5)
        self._rect = QtCore.QRectF(0, 0, spec.epoch_s, spec.image_height)
        for item in (self.image_item, self.overlay_item):
            self.image_plot.addItem(item)
        self.row_bars = pg.BarGraphItem(x0=np.zeros(spec.n_rows), y=self._centres,
                                        height=self._heights * 0.7, width=np.zeros(spec.n_rows),
                                        brush="#ff9f1c")
        self.rows_plot.addItem(self.row_bars)

        self.side = pg.GraphicsLayoutWidget()
        self.proba_plot = self.side.addPlot(row=0, col=0)
        self.inter_plot = self.side.addPlot(row=1, col=0)
        for p in (self.proba_plot, self.inter_plot):
            p.setMenuEnabled(False)
            p.setMouseEnabled(x=False, y=False)
            p.hideButtons()
        self.proba_plot.setTitle("stage probabilities", size="9pt")
        self.proba_plot.setYRange(0, 1, padding=0.02)
        self.proba_plot.setXRange(-0.6, len(CLASS_NAMES) - 0.4, padding=0)
        self.proba_plot.getAxis("bottom").setTicks([list(enumerate(CLASS_NAMES))])
        self.proba_bars = pg.BarGraphItem(
            x=np.arange(len(CLASS_NAMES)), height=np.zeros(len(CLASS_NAMES)), width=0.7,
            brushes=[pg.mkBrush(STAGE_COLORS[k]) for k in range(len(CLASS_NAMES))])
        self.proba_plot.addItem(self.proba_bars)
        self.inter_plot.setTitle("inter-epoch relevance (window)", size="9pt")
        self.inter_plot.setLabel("bottom", "epoch offset")
        self.inter_bars = pg.BarGraphItem(x=[], height=[], width=0.8, brush="#8ecae6")
        self.inter_plot.addItem(self.inter_bars)

        self.text = QtWidgets.QLabel("")
        self.text.setWordWrap(True)
        self.text.setTextInteractionFlags(QtCore.Qt.TextInteractionFlag.TextSelectableByMouse)
        right = QtWidgets.QVBoxLayout()
        right.addWidget(self.side, 3)
        right.addWidget(self.text, 1)
        relevance = QtWidgets.QWidget()
        body = QtWidgets.QHBoxLayout(relevance)
        body.setContentsMargins(0, 0, 0, 0)
        body.addWidget(self.view, 3)
        body.addLayout(right, 2)
        self.occlusion = OcclusionView()
        self.tabs = QtWidgets.QTabWidget()
        self.tabs.addTab(relevance, "relevance")
        self.tabs.addTab(self.occlusion, "occlusion")
        self.tabs.currentChanged.connect(self._tab_changed)
        top = QtWidgets.QHBoxLayout()
        top.addWidget(self.header, 1)
        top.addWidget(self.show_overlay)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addLayout(top)
        layout.addWidget(self.familiarity_label)
        layout.addWidget(self.tabs, 1)
        self.shown_index: int | None = None
        self.explained_index: int | None = None
        self.explanation: Explanation | None = None

    # ------------------------------------------------------------------ content
    def show_epoch(self, index: int, image: np.ndarray | None, proba: np.ndarray,
                   header: str) -> None:
        """Show epoch ``index``: image (None when not kept), probabilities and a header line.
        An explanation of another epoch is cleared."""
        if index != self.explained_index:
            self.clear_explanation("")
        self.shown_index = index
        self.header.setText(header)
        if image is not None:
            img = np.asarray(image)
            self.image_item.setImage(img, autoLevels=False, levels=(0, 255))
            self.image_item.setRect(self._rect)  # after setImage: it scales the image size
        else:
            self.image_item.clear()
        self.proba_bars.setOpts(height=np.asarray(proba, dtype=np.float64))

    def show_familiarity(self, text: str, flagged: bool) -> None:
        """The unfamiliar-signal line of the shown epoch (highlighted when ``flagged``)."""
        self.flagged = bool(flagged)
        self.familiarity_label.setText(text)
        self.familiarity_label.setStyleSheet(
            f"color: {UNFAMILIAR_COLOR}; font-weight: bold;" if flagged else "")

    def update_proba(self, proba: np.ndarray, header: str) -> None:
        """New probabilities / header of the shown epoch (it was revised)."""
        self.header.setText(header)
        self.proba_bars.setOpts(height=np.asarray(proba, dtype=np.float64))

    def clear_explanation(self, message: str) -> None:
        """Remove the overlay and bars; show ``message`` instead."""
        self.explanation = None
        self.explained_index = None
        self.overlay_item.clear()
        self.row_bars.setOpts(width=np.zeros(self.spec.n_rows))
        self.inter_bars.setOpts(x=[], height=[])
        self.text.setText(message)

    def show_explanation(self, exp: Explanation) -> None:
        """Draw an explanation of the shown epoch."""
        if exp.index != self.shown_index:
            return
        self.explanation = exp
        self.explained_index = exp.index
        if exp.heatmap.shape != (self.spec.image_height, self.spec.image_width):
            raise ValueError(f"heatmap {exp.heatmap.shape} does not match the "
                             f"{self.spec.image_height}x{self.spec.image_width} image")
        self.overlay_item.setImage(overlay_rgba(exp.heatmap), autoLevels=False)
        self.overlay_item.setRect(self._rect)
        self.overlay_item.setVisible(self.show_overlay.isChecked())
        share = np.asarray(exp.row_share, dtype=np.float64)
        self.row_bars.setOpts(width=share)
        self.rows_plot.setXRange(0, max(0.05, float(share.max()) * 1.1), padding=0)
        if exp.window_epochs is not None and exp.window_share is not None:
            offsets, context, own = neighbour_shares(exp)
            self.inter_bars.setOpts(x=offsets, height=context)
            self.inter_plot.setXRange(min(-1.0, float(offsets.min())) - 0.6,
                                      max(1.0, float(offsets.max())) + 0.6, padding=0)
            self.inter_plot.setYRange(0, max(0.05, float(context.max()) * 1.1), padding=0)
            self.inter_plot.setTitle(f"inter-epoch relevance: self {own:.0%}, bars: the rest",
                                     size="9pt")
        else:
            self.inter_bars.setOpts(x=[], height=[])
            self.inter_plot.setTitle("inter-epoch relevance (no inter model)", size="9pt")
        self.text.setText("\n".join(exp.lines) + f"\n({exp.method}, {exp.elapsed_s:.2f} s)")

    @property
    def occlusion_shown(self) -> bool:
        """The occlusion tab is the current one."""
        return self.tabs.currentWidget() is self.occlusion

    def _tab_changed(self, _index: int) -> None:
        if self.occlusion_shown:
            self.occlusionWanted.emit()

    def _overlay_toggled(self, on: bool) -> None:
        self.overlay_item.setVisible(on)


__all__ = ["EpochPanel", "OVERLAY_ALPHA", "neighbour_shares", "overlay_rgba"]
