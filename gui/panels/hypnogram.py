"""The night so far: hypnogram, hypnodensity and per-channel quality strip, on one time axis.

* **Hypnogram.** Final epochs are drawn as a solid step line; the epochs still inside the
  rolling inter-epoch window (provisional or revised: their stage may still change) as a dashed
  orange line on an orange band. An epoch whose current stage differs from its first,
  provisional one is marked with a red ring at the stage it first got (a revision). An epoch
  flagged by the unfamiliar-signal flag (far from the model's training data: review it) is
  marked with a magenta triangle above the W line.
* **Hypnodensity.** The stage probabilities of every epoch stacked to 1 (W on top, as in the
  hypnogram).
* **Quality strip.** One line per channel row; per epoch the worst signal-quality flag
  (:data:`gui.store.FLAGS`: ok, clipped, flat, missing).

Clicking any of the three selects the epoch under the mouse (:attr:`HypnogramPanel.epochClicked`).
The mouse wheel zooms the time axis around the pointer, dragging scrolls it, and the scroll bar
under the plots moves a zoomed view (:meth:`HypnogramPanel.zoom`, :meth:`~HypnogramPanel.scroll`,
:meth:`~HypnogramPanel.show_all`). In review, the technician's stages that differ from the
model's are drawn as thick green segments at their level, and epochs they confirmed as small
green ticks under the plot.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtCore, QtWidgets

from edge_scorer.stages import CLASS_NAMES

from ..store import FLAGS, NightStore
from ..theme import (
    DENSITY_ORDER,
    EDIT_COLOR,
    FINAL_PEN,
    FLAG_COLORS,
    PROVISIONAL_PEN,
    REVISION_PEN,
    SELECTION_BRUSH,
    STAGE_COLORS,
    STAGE_LEVEL,
    UNFAMILIAR_COLOR,
    hex_rgb,
    stage_ticks,
)

#: Vertical resolution of the hypnodensity image (pixels per epoch column).
DENSITY_STEPS = 100
#: The time axis spans at least this many epochs (the start of a night is not stretched).
MIN_EPOCHS_SHOWN = 120
#: Hypnogram level of the unfamiliar-signal markers (above W at 5).
UNFAMILIAR_LEVEL = 5.6
#: Hypnogram level of the ticks marking epochs the technician set (below the ? line).
EDIT_LEVEL = -0.2
#: A zoomed view shows at least this many epochs.
MIN_EPOCHS_ZOOMED = 10


def stage_levels(stages: np.ndarray) -> np.ndarray:
    """Hypnogram levels (:data:`~gui.theme.STAGE_LEVEL`) of stage codes."""
    lut = np.zeros(8, dtype=np.float64)
    for code, lvl in STAGE_LEVEL.items():
        lut[code + 1] = lvl
    return lut[np.asarray(stages, dtype=np.int64) + 1]


def density_image(proba: np.ndarray, steps: int = DENSITY_STEPS) -> np.ndarray:
    """RGBA image ``(steps, n_epochs, 4)`` of stacked probabilities (row 0 = bottom, N3 first,
    W on top); columns whose probabilities are all zero stay transparent."""
    proba = np.asarray(proba, dtype=np.float64)
    if proba.ndim != 2 or proba.shape[1] != len(CLASS_NAMES):
        raise ValueError(f"proba must be (n_epochs, {len(CLASS_NAMES)}), got {proba.shape}")
    ordered = proba[:, list(DENSITY_ORDER)]
    total = ordered.sum(1, keepdims=True)
    cum = np.cumsum(ordered / np.where(total > 0, total, 1.0), axis=1)   # (n, 5)
    y = (np.arange(steps) + 0.5) / steps
    band = np.minimum((y[:, None, None] > cum[None, :, :]).sum(-1), len(DENSITY_ORDER) - 1)
    colors = np.array([(*hex_rgb(STAGE_COLORS[c]), 255) for c in DENSITY_ORDER], np.uint8)
    img = colors[band]
    img[:, total[:, 0] <= 0] = 0
    return img


def quality_image(codes: np.ndarray) -> np.ndarray:
    """RGBA image ``(n_rows, n_epochs, 4)`` of quality codes (row 0 = the last spec row, so
    the first is drawn on top); unknown (-1) is transparent."""
    codes = np.asarray(codes, dtype=np.int64)
    colors = np.array([(0, 0, 0, 0)] + [(*hex_rgb(c), 255) for c in FLAG_COLORS], np.uint8)
    return colors[codes[::-1] + 1]


class HypnogramPanel(QtWidgets.QWidget):
    """The hypnogram, hypnodensity and quality strip of a night (see the module docstring)."""

    #: The epoch under a mouse click.
    epochClicked = QtCore.Signal(int)

    def __init__(self, row_names: tuple[str, ...], epoch_s: float = 30.0,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.row_names = tuple(row_names)
        self.epoch_s = float(epoch_s)
        self.epoch_h = self.epoch_s / 3600.0
        self.view = pg.GraphicsLayoutWidget()
        self.view.ci.setSpacing(2)
        self.hyp = self.view.addPlot(row=0, col=0)
        self.density = self.view.addPlot(row=1, col=0)
        self.quality = self.view.addPlot(row=2, col=0)
        self.view.ci.layout.setRowStretchFactor(0, 5)
        self.view.ci.layout.setRowStretchFactor(1, 2)
        self.view.ci.layout.setRowStretchFactor(2, 1)
        self.density.setMaximumHeight(90)
        self.quality.setMaximumHeight(40 + 14 * len(self.row_names))
        for p in (self.hyp, self.density, self.quality):
            p.setMenuEnabled(False)
            p.setMouseEnabled(x=True, y=False)  # wheel zooms, drag scrolls (time axis only)
            p.hideButtons()
            p.getAxis("left").setWidth(110)
            if p is not self.hyp:
                p.setXLink(self.hyp)
        self.hyp.getAxis("left").setTicks([stage_ticks()])
        self.hyp.setYRange(-0.4, 5.9, padding=0)
        self.hyp.setTitle("hypnogram (solid: final, dashed: provisional, ring: first stage "
                          "of a revised epoch, triangle: unfamiliar signal, green: the "
                          "technician's stage; wheel: zoom, drag: scroll)", size="9pt")
        self.hyp.getAxis("bottom").setStyle(showValues=False)
        self.density.getAxis("left").setTicks([[(0.5, "hypnodensity")]])
        self.density.setYRange(0, 1, padding=0)
        self.density.getAxis("bottom").setStyle(showValues=False)
        self.quality.getAxis("left").setTicks([[(len(self.row_names) - r - 0.5, name)
                                                 for r, name in enumerate(self.row_names)]])
        self.quality.setYRange(0, len(self.row_names), padding=0)
        self.quality.setLabel("bottom", "time (h)")
        self.quality.getAxis("bottom").enableAutoSIPrefix(False)
        self.final_curve = pg.PlotDataItem(stepMode="center", pen=pg.mkPen(FINAL_PEN, width=2))
        self.prov_curve = pg.PlotDataItem(stepMode="center", pen=pg.mkPen(
            PROVISIONAL_PEN, width=2, style=QtCore.Qt.PenStyle.DashLine))
        self.prov_band = pg.LinearRegionItem((0, 0), movable=False,
                                             brush=pg.mkBrush(255, 159, 28, 35))
        self.prov_band.setZValue(-10)
        self.revisions = pg.ScatterPlotItem(symbol="o", size=9, pen=pg.mkPen(REVISION_PEN,
                                                                            width=1.5),
                                            brush=None)
        self.unfamiliar_marks = pg.ScatterPlotItem(symbol="t", size=9, pen=None,
                                                   brush=pg.mkBrush(UNFAMILIAR_COLOR))
        self.edit_marks = pg.PlotDataItem(connect="pairs", pen=pg.mkPen(EDIT_COLOR, width=5))
        self.edit_ticks = pg.ScatterPlotItem(symbol="s", size=5, pen=None,
                                             brush=pg.mkBrush(EDIT_COLOR))
        for item in (self.prov_band, self.final_curve, self.prov_curve, self.revisions,
                     self.unfamiliar_marks, self.edit_marks, self.edit_ticks):
            self.hyp.addItem(item)
        self.density_item = pg.ImageItem(axisOrder="row-major")
        self.density.addItem(self.density_item)
        self.quality_item = pg.ImageItem(axisOrder="row-major")
        self.quality.addItem(self.quality_item)
        self.selection = [pg.LinearRegionItem((0, 0), movable=False,
                                              brush=pg.mkBrush(*SELECTION_BRUSH))
                          for _ in range(3)]
        for p, sel in zip((self.hyp, self.density, self.quality), self.selection):
            sel.setZValue(10)
            sel.setVisible(False)
            p.addItem(sel)
        legend = "  ".join(f"<span style='color:{STAGE_COLORS[c]}'>&#9632; {CLASS_NAMES[c]}"
                           "</span>" for c in DENSITY_ORDER[::-1])
        flags = "  ".join(f"<span style='color:{c}'>&#9632; {f}</span>"
                          for f, c in zip(FLAGS, FLAG_COLORS))
        self.legend = QtWidgets.QLabel(
            f"{legend} &nbsp;&nbsp;&nbsp; quality: {flags} &nbsp;&nbsp;&nbsp; "
            f"<span style='color:{UNFAMILIAR_COLOR}'>&#9650; unfamiliar signal (review)</span>")
        self.scrollbar = QtWidgets.QScrollBar(QtCore.Qt.Orientation.Horizontal)
        self.scrollbar.setRange(0, 0)
        self.scrollbar.valueChanged.connect(self._scrolled)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.view)
        layout.addWidget(self.scrollbar)
        layout.addWidget(self.legend)
        self.view.scene().sigMouseClicked.connect(self._clicked)
        for p in (self.hyp, self.density, self.quality):
            p.vb.sigRangeChangedManually.connect(self._zoomed_by_mouse)
        self.hyp.vb.sigXRangeChanged.connect(lambda *_: self._sync_scrollbar())
        #: The user zoomed or scrolled: redraws keep the view (until :meth:`show_all`).
        self.zoomed = False
        self.n_edited = 0
        self.n_epochs = 0
        self.n_final = 0
        self.n_revised = 0
        self.n_unfamiliar = 0
        self.selected: int | None = None
        self._set_x_range(0)

    # ------------------------------------------------------------------ drawing
    def _set_x_range(self, n: int) -> None:
        self.hyp.setXRange(0, max(n, MIN_EPOCHS_SHOWN) * self.epoch_h, padding=0.01)

    def _span(self) -> int:
        """Epochs the time axis can show (the night, at least :data:`MIN_EPOCHS_SHOWN`)."""
        return max(self.n_epochs, MIN_EPOCHS_SHOWN)

    def view_epochs(self) -> tuple[float, float]:
        """The shown part of the time axis, in epochs ``(first, last)``."""
        lo, hi = self.hyp.vb.viewRange()[0]
        return lo / self.epoch_h, hi / self.epoch_h

    def set_view(self, first: float, n_shown: float) -> None:
        """Show ``n_shown`` epochs from ``first`` (kept inside the night; marks it zoomed)."""
        span = self._span()
        n_shown = float(min(max(n_shown, MIN_EPOCHS_ZOOMED), span))
        first = float(min(max(first, 0.0), span - n_shown))
        self.zoomed = n_shown < span
        self.hyp.setXRange(first * self.epoch_h, (first + n_shown) * self.epoch_h, padding=0)
        self._sync_scrollbar()

    def zoom(self, factor: float, center: float | None = None) -> None:
        """Zoom the time axis by ``factor`` (> 1: closer) around epoch ``center`` (default:
        the selected epoch, else the middle of the view)."""
        if not factor > 0:
            raise ValueError(f"zoom factor must be positive, got {factor}")
        lo, hi = self.view_epochs()
        if center is None:
            center = self.selected + 0.5 if self.selected is not None else (lo + hi) / 2
        n = (hi - lo) / factor
        frac = (center - lo) / (hi - lo) if hi > lo else 0.5
        self.set_view(center - frac * n, n)

    def scroll(self, n_epochs: float) -> None:
        """Move the view by ``n_epochs`` (negative: earlier)."""
        lo, hi = self.view_epochs()
        self.set_view(lo + n_epochs, hi - lo)

    def ensure_visible(self, index: int) -> None:
        """Scroll a zoomed view so that epoch ``index`` is inside it."""
        if not self.zoomed:
            return
        lo, hi = self.view_epochs()
        if index < lo or index + 1 > hi:
            n = hi - lo
            self.set_view(index + 0.5 - n / 2, n)

    def show_all(self) -> None:
        """The whole night again (redraws follow its growth)."""
        self.zoomed = False
        self._set_x_range(self.n_epochs)
        self._sync_scrollbar()

    def _zoomed_by_mouse(self, *_args) -> None:
        lo, hi = self.view_epochs()
        self.zoomed = (hi - lo) < self._span() * 0.99
        self._sync_scrollbar()

    def _sync_scrollbar(self) -> None:
        lo, hi = self.view_epochs()
        shown = max(1, int(round(hi - lo)))
        bar = self.scrollbar
        bar.blockSignals(True)
        bar.setRange(0, max(0, self._span() - shown) if self.zoomed else 0)
        bar.setPageStep(shown)
        bar.setValue(int(round(max(lo, 0))))
        bar.blockSignals(False)

    def _scrolled(self, value: int) -> None:
        lo, hi = self.view_epochs()
        self.set_view(float(value), hi - lo)

    def set_review(self, stages: np.ndarray, edited: np.ndarray, differs: np.ndarray) -> None:
        """The technician's stages: segments where they differ from the model's, ticks where
        they were set."""
        differ_idx = np.flatnonzero(differs)
        self.n_edited = int(np.count_nonzero(edited))
        if differ_idx.size:
            x = np.column_stack([differ_idx, differ_idx + 1]).ravel() * self.epoch_h
            y = np.repeat(stage_levels(np.asarray(stages)[differ_idx]), 2)
            self.edit_marks.setData(x, y)
        else:
            self.edit_marks.clear()
        idx = np.flatnonzero(edited)
        self.edit_ticks.setData((idx + 0.5) * self.epoch_h, np.full(idx.size, EDIT_LEVEL))

    def update_night(self, store: NightStore) -> None:
        """Redraw everything from the store."""
        n = store.n_epochs
        self.n_epochs = n
        levels = stage_levels(store.stage_array())
        edges = np.arange(n + 1) * self.epoch_h
        k = store.n_final_prefix()
        self.n_final = k
        if k:
            self.final_curve.setData(edges[:k + 1], levels[:k])
        else:
            self.final_curve.clear()
        if k < n:
            self.prov_curve.setData(edges[k:], levels[k:])
            self.prov_band.setRegion((edges[k], edges[n]))
            self.prov_band.setVisible(True)
        else:
            self.prov_curve.clear()
            self.prov_band.setVisible(False)
        changed = np.flatnonzero(store.changed_mask())
        self.n_revised = int(changed.size)
        first = stage_levels(np.asarray(store.first_stage, dtype=np.int8))
        self.revisions.setData((changed + 0.5) * self.epoch_h, first[changed])
        flagged = np.flatnonzero(store.unfamiliar_mask())
        self.n_unfamiliar = int(flagged.size)
        self.unfamiliar_marks.setData((flagged + 0.5) * self.epoch_h,
                                      np.full(flagged.size, UNFAMILIAR_LEVEL))
        if n:
            self.density_item.setImage(density_image(store.proba_array()), autoLevels=False)
            self.density_item.setRect(QtCore.QRectF(0, 0, n * self.epoch_h, 1))
            self.quality_item.setImage(quality_image(store.quality_codes()), autoLevels=False)
            self.quality_item.setRect(QtCore.QRectF(0, 0, n * self.epoch_h,
                                                    len(self.row_names)))
        else:
            self.density_item.clear()
            self.quality_item.clear()
        for p in (self.hyp, self.density, self.quality):
            p.vb.setLimits(xMin=-0.01 * self._span() * self.epoch_h,
                           xMax=self._span() * self.epoch_h * 1.01,
                           minXRange=MIN_EPOCHS_ZOOMED * self.epoch_h)
        if not self.zoomed:
            self._set_x_range(n)
        self._sync_scrollbar()

    def select(self, index: int | None) -> None:
        """Highlight epoch ``index`` (None: no highlight)."""
        self.selected = index
        for sel in self.selection:
            sel.setVisible(index is not None)
            if index is not None:
                sel.setRegion((index * self.epoch_h, (index + 1) * self.epoch_h))

    # ------------------------------------------------------------------ clicks
    def epoch_at(self, scene_pos: QtCore.QPointF) -> int | None:
        """The epoch under a scene position (None outside the plots or the night)."""
        for p in (self.hyp, self.density, self.quality):
            if p.vb.sceneBoundingRect().contains(scene_pos):
                x = p.vb.mapSceneToView(scene_pos).x()
                i = int(np.floor(x / self.epoch_h))
                return i if 0 <= i < self.n_epochs else None
        return None

    def scene_pos_of(self, index: int, level: float = 2.5) -> QtCore.QPointF:
        """Scene position of the middle of epoch ``index`` in the hypnogram (for tests and
        keyboard navigation)."""
        return self.hyp.vb.mapViewToScene(QtCore.QPointF((index + 0.5) * self.epoch_h, level))

    def _clicked(self, ev) -> None:
        i = self.epoch_at(ev.scenePos())
        if i is not None:
            ev.accept()
            self.epochClicked.emit(i)


__all__ = ["DENSITY_STEPS", "EDIT_LEVEL", "MIN_EPOCHS_ZOOMED", "UNFAMILIAR_LEVEL",
           "HypnogramPanel", "density_image", "quality_image", "stage_levels"]
