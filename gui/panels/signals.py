"""Live scrolling signals: the last epoch of every channel in the render spec's band layout
(in review: the shown epoch of the recording, :meth:`SignalPanel.show_epoch`).

Each spec row is drawn in its band (the heights of ``spec.rows``, top to bottom, as on the
rendered image) with the row's fixed amplitude range mapped onto the band and the trace clipped
to it, like the PSG screen the model reads. The samples are the raw native-rate samples from the
inlet's ring buffer (:meth:`~edge_scorer.stream.inlet.LslSource.latest`); rows that the spec
high-pass
filters are drawn around their median (the display removes the offset the filter would remove).
Each trace is reduced for drawing to the minimum and maximum of every pixel column
(:func:`minmax_decimate`), as the renderer does.
"""

from __future__ import annotations

import numpy as np
import pyqtgraph as pg
from PySide6 import QtWidgets

from edge_scorer.io.spec import RenderSpec

from ..theme import FOREGROUND


def minmax_decimate(t: np.ndarray, x: np.ndarray, n_bins: int) -> tuple[np.ndarray, np.ndarray]:
    """Reduce a trace to the minimum and maximum of each of ``n_bins`` equal time bins.

    Returns ``2 * n_bins`` points or fewer (two per non-empty bin, at the bin's first time), or
    the trace itself when it is already that short. Non-finite samples are skipped (an all-NaN
    bin gives NaN, drawn as a gap).
    """
    t = np.asarray(t, dtype=np.float64)
    x = np.asarray(x, dtype=np.float64)
    if t.shape != x.shape or t.ndim != 1:
        raise ValueError(f"t and x must be 1-D and of one length, got {t.shape} and {x.shape}")
    if n_bins < 1:
        raise ValueError(f"n_bins must be >= 1, got {n_bins}")
    if x.size <= 2 * n_bins:
        return t, x
    starts = np.unique((np.arange(n_bins) * x.size) // n_bins)
    with np.errstate(invalid="ignore"):
        lo = np.fmin.reduceat(x, starts)
        hi = np.fmax.reduceat(x, starts)
    return np.repeat(t[starts], 2), np.column_stack([lo, hi]).ravel()


class SignalPanel(QtWidgets.QWidget):
    """The scrolling signals (see the module docstring).

    Parameters
    ----------
    spec : RenderSpec
        Rows, band heights and amplitude ranges.
    window_s : float
        Seconds shown (default: one epoch).
    """

    def __init__(self, spec: RenderSpec, window_s: float | None = None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.spec = spec
        self.window_s = float(window_s or spec.epoch_s)
        self.plot = pg.PlotWidget()
        self.plot.setMenuEnabled(False)
        self.plot.setMouseEnabled(x=False, y=False)
        self.plot.hideButtons()
        item = self.plot.getPlotItem()
        item.invertY(True)
        item.setLabel("bottom", "time (s of signal, 0 = now)")
        self._top = np.array(spec.row_offsets, dtype=np.float64)
        heights = np.array([r.height for r in spec.rows], dtype=np.float64)
        self._bottom = self._top + heights - 1.0
        centres = self._top + heights / 2.0
        item.getAxis("left").setTicks([[(float(c), r.name) for c, r in zip(centres, spec.rows)]])
        item.setYRange(0, spec.image_height, padding=0.0)
        item.setXRange(-self.window_s, 0, padding=0.0)
        for top in self._top[1:]:
            item.addItem(pg.InfiniteLine(float(top) - 0.5, angle=0,
                                         pen=pg.mkPen("#3a424a", width=1)))
        self.curves = []
        for r, row in enumerate(spec.rows):
            curve = pg.PlotDataItem(pen=pg.mkPen("#9be564", width=1), connect="finite")
            item.addItem(curve)
            self.curves.append(curve)
            lo, hi = row.range
            text = f"±{hi:g} {row.unit}" if lo == -hi else f"{lo:g}..{hi:g} {row.unit}"
            label = pg.TextItem(text, color=FOREGROUND, anchor=(1, 0))
            label.setPos(0, float(self._top[r]))
            item.addItem(label)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.plot)
        self.n_points_drawn = 0
        self.n_samples_in = 0
        self._epoch: int | None = None

    def to_band(self, r: int, x: np.ndarray) -> np.ndarray:
        """Amplitudes of row ``r`` -> y in image pixels, clipped to the row's band."""
        lo, hi = self.spec.rows[r].range
        top, bottom = self._top[r], self._bottom[r]
        y = bottom - (np.asarray(x, dtype=np.float64) - lo) * (bottom - top) / (hi - lo)
        return np.clip(y, top, bottom)

    def update_signals(self, signals: dict[str, tuple[float, np.ndarray]]) -> None:
        """Draw ``{row name: (native rate, latest samples)}`` (rows not given keep their trace)."""
        if self._epoch is not None:
            self._epoch = None
            item = self.plot.getPlotItem()
            item.setLabel("bottom", "time (s of signal, 0 = now)")
            item.setXRange(-self.window_s, 0, padding=0.0)
        self._draw(signals, end_at_zero=True)

    def show_epoch(self, index: int, signals: dict[str, tuple[float, np.ndarray]]) -> None:
        """Draw one epoch of a recording, ``{row name: (native rate, samples)}``, from 0 s."""
        item = self.plot.getPlotItem()
        if self._epoch is None:
            item.setXRange(0, self.window_s, padding=0.0)
        self._epoch = index
        item.setLabel("bottom", f"epoch {index}: seconds from its start")
        self._draw(signals, end_at_zero=False)

    def _draw(self, signals: dict[str, tuple[float, np.ndarray]], end_at_zero: bool) -> None:
        n_cols = max(50, self.plot.width())
        drawn = samples = 0
        for r, row in enumerate(self.spec.rows):
            if row.name not in signals:
                continue
            sfreq, x = signals[row.name]
            x = np.asarray(x, dtype=np.float64)
            n = min(x.size, int(round(self.window_s * sfreq)))
            if n < 2 or sfreq <= 0:
                self.curves[r].setData([], [])
                continue
            x = x[-n:]
            if row.highpass:
                finite = np.isfinite(x)
                if finite.any():
                    x = x - np.median(x[finite])
            t = (np.arange(n) - (n - 1)) / sfreq if end_at_zero else np.arange(n) / sfreq
            td, xd = minmax_decimate(t, x, n_cols)
            self.curves[r].setData(td, self.to_band(r, xd))
            drawn += td.size
            samples += n
        self.n_points_drawn, self.n_samples_in = drawn, samples


__all__ = ["SignalPanel", "minmax_decimate"]
