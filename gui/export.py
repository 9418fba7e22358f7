"""Exports from the window: the hypnogram (CSV/TSV/EDF+), a PNG of it, a report of the night.

The PNG and the report are drawn with ``QPainter`` from the :class:`~edge_scorer.stats.hypnogram.
Hypnogram` itself (white background, for printing), not grabbed from the screen: the same
picture comes out whether the window is shown, hidden or offscreen. The report (one A4 page,
PDF or PNG) holds the run's details, the hypnogram and hypnodensity, the sleep statistics and
the clinical caveat.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtGui

from edge_scorer.stats.hypnogram import Hypnogram
from edge_scorer.stats.sleepstats import sleep_statistics

from .panels.hypnogram import density_image, stage_levels
from .theme import PROVISIONAL_PEN, stage_ticks

#: Hypnogram file suffixes the window exports (written by ``Hypnogram.write``).
HYPNOGRAM_SUFFIXES = (".csv", ".tsv", ".edf")
#: Report formats.
REPORT_SUFFIXES = (".pdf", ".png")
#: Report resolution (dots per inch): an A4 page is 1240 x 1754 pixels.
REPORT_DPI = 150
CAVEAT = ("Automatic scoring by edge-scorer (research software): a decision aid that a trained "
          "scorer must review, not a diagnosis.")


def export_hypnogram(hyp: Hypnogram, path: str | Path) -> Path:
    """Write the hypnogram as CSV/TSV (stages + probabilities) or EDF+ annotations."""
    path = Path(path)
    if path.suffix.lower() not in HYPNOGRAM_SUFFIXES:
        raise ValueError(f"cannot export a hypnogram as {path.name!r}; use one of "
                         f"{', '.join(HYPNOGRAM_SUFFIXES)}")
    if hyp.n_epochs == 0:
        raise ValueError("no epoch is scored yet; start scoring before exporting")
    path.parent.mkdir(parents=True, exist_ok=True)
    return hyp.write(path)


def _hour_ticks(duration_h: float) -> np.ndarray:
    step = next(s for s in (0.25, 0.5, 1.0, 2.0) if duration_h / s <= 12)
    return np.arange(0.0, duration_h + 1e-9, step)


def paint_night(painter: QtGui.QPainter, rect: QtCore.QRectF, hyp: Hypnogram,
                final: np.ndarray | None = None) -> None:
    """Draw the hypnogram (top 65 %) and the hypnodensity (bottom; only with probabilities)
    of ``hyp`` into ``rect``.

    Parameters
    ----------
    final : ndarray of bool, optional
        Per epoch, whether the stage is final; other epochs are drawn in orange, dashed.
    """
    n = hyp.n_epochs
    fm = painter.fontMetrics()
    left = fm.horizontalAdvance("REM") + fm.height()
    bottom_h = 2.2 * fm.height()
    area = QtCore.QRectF(rect.left() + left, rect.top(), rect.width() - left - fm.height(),
                         rect.height() - bottom_h)
    has_density = hyp.probabilities is not None and n > 0
    hyp_rect = QtCore.QRectF(area.left(), area.top(), area.width(),
                             area.height() * (0.65 if has_density else 1.0))
    den_rect = QtCore.QRectF(area.left(), hyp_rect.bottom() + fm.height() * 0.6, area.width(),
                             area.bottom() - hyp_rect.bottom() - fm.height() * 0.6)
    painter.save()
    painter.setPen(QtGui.QPen(QtGui.QColor("#999999"), 0))
    painter.drawRect(hyp_rect)
    if has_density:
        painter.drawRect(den_rect)
    duration_h = max(n * hyp.epoch_s / 3600.0, 1e-6)

    def x_of(h: float) -> float:
        return hyp_rect.left() + hyp_rect.width() * h / duration_h

    def y_of(level: float) -> float:
        return hyp_rect.bottom() - hyp_rect.height() * (level + 0.5) / 6.0

    grid = QtGui.QPen(QtGui.QColor("#dddddd"), 0)
    for level, label in stage_ticks():
        painter.setPen(grid)
        painter.drawLine(QtCore.QPointF(hyp_rect.left(), y_of(level)),
                         QtCore.QPointF(hyp_rect.right(), y_of(level)))
        painter.setPen(QtGui.QColor("#000000"))
        painter.drawText(QtCore.QRectF(rect.left(), y_of(level) - fm.height(), left - 6,
                                       2 * fm.height()),
                         QtCore.Qt.AlignmentFlag.AlignRight | QtCore.Qt.AlignmentFlag.AlignVCenter,
                         label)
    for h in _hour_ticks(duration_h):
        painter.setPen(QtGui.QColor("#000000"))
        painter.drawText(QtCore.QRectF(x_of(h) - 40, area.bottom() + 2, 80, bottom_h),
                         QtCore.Qt.AlignmentFlag.AlignHCenter, f"{h:g} h")
    if n:
        levels = stage_levels(hyp.stages)
        final = np.ones(n, dtype=bool) if final is None else np.asarray(final, dtype=bool)
        width = max(1.5, hyp_rect.height() / 120)
        pens = {True: QtGui.QPen(QtGui.QColor("#1d3557"), width),
                False: QtGui.QPen(QtGui.QColor(PROVISIONAL_PEN), width,
                                  QtCore.Qt.PenStyle.DashLine)}
        eh = hyp.epoch_s / 3600.0
        for i in range(n):
            painter.setPen(pens[bool(final[i])])
            y = y_of(levels[i])
            painter.drawLine(QtCore.QPointF(x_of(i * eh), y), QtCore.QPointF(x_of((i + 1) * eh), y))
            if i + 1 < n and levels[i + 1] != levels[i]:
                painter.drawLine(QtCore.QPointF(x_of((i + 1) * eh), y),
                                 QtCore.QPointF(x_of((i + 1) * eh), y_of(levels[i + 1])))
    if has_density:
        img = np.ascontiguousarray(density_image(hyp.probabilities)[::-1])
        qimg = QtGui.QImage(img.data, img.shape[1], img.shape[0], img.strides[0],
                            QtGui.QImage.Format.Format_RGBA8888)
        painter.drawImage(den_rect, qimg)
        painter.setPen(QtGui.QColor("#000000"))
        painter.drawText(QtCore.QRectF(rect.left(), den_rect.top(), left - 6, den_rect.height()),
                         QtCore.Qt.AlignmentFlag.AlignRight
                         | QtCore.Qt.AlignmentFlag.AlignVCenter, "p")
    painter.restore()


def _new_image(width: int, height: int, dpi: float) -> QtGui.QImage:
    image = QtGui.QImage(width, height, QtGui.QImage.Format.Format_RGB32)
    image.fill(QtGui.QColor("#ffffff"))
    dpm = int(round(dpi / 0.0254))
    image.setDotsPerMeterX(dpm)
    image.setDotsPerMeterY(dpm)
    return image


def save_hypnogram_png(hyp: Hypnogram, path: str | Path, size: tuple[int, int] = (1600, 520),
                       final: np.ndarray | None = None, title: str | None = None) -> Path:
    """A PNG picture of the hypnogram and hypnodensity (white background)."""
    path = Path(path)
    if path.suffix.lower() != ".png":
        raise ValueError(f"the hypnogram picture is a PNG file; got {path.name!r}")
    if hyp.n_epochs == 0:
        raise ValueError("no epoch is scored yet; start scoring before exporting")
    image = _new_image(*size, dpi=110)
    painter = QtGui.QPainter(image)
    try:
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        top = 8.0
        if title:
            painter.drawText(QtCore.QPointF(10, 8 + painter.fontMetrics().ascent()), title)
            top += painter.fontMetrics().height() * 1.5
        paint_night(painter, QtCore.QRectF(6, top, size[0] - 12, size[1] - top - 6), hyp, final)
    finally:
        painter.end()
    path.parent.mkdir(parents=True, exist_ok=True)
    if not image.save(str(path)):
        raise OSError(f"could not write {path}")
    return path


def _paint_report(painter: QtGui.QPainter, page: QtCore.QRectF, hyp: Hypnogram,
                  info: Mapping[str, str], title: str, final: np.ndarray | None) -> None:
    margin = page.width() * 0.06
    body = page.adjusted(margin, margin, -margin, -margin)
    font = painter.font()
    font.setPointSizeF(16)
    font.setBold(True)
    painter.setFont(font)
    y = body.top() + painter.fontMetrics().ascent()
    painter.drawText(QtCore.QPointF(body.left(), y), title)
    y += painter.fontMetrics().height() * 0.8
    font.setPointSizeF(9)
    font.setBold(False)
    painter.setFont(font)
    line = painter.fontMetrics().height()
    for key, value in info.items():
        y += line
        painter.drawText(QtCore.QPointF(body.left(), y), f"{key}: {value}")
    y += line
    night = QtCore.QRectF(body.left(), y, body.width(), body.height() * 0.33)
    paint_night(painter, night, hyp, final)
    y = night.bottom() + line
    mono = QtGui.QFont("DejaVu Sans Mono")
    mono.setStyleHint(QtGui.QFont.StyleHint.Monospace)
    mono.setPointSizeF(8.5)
    painter.setFont(mono)
    mline = painter.fontMetrics().height()
    for text in str(sleep_statistics(hyp)).splitlines():
        y += mline
        painter.drawText(QtCore.QPointF(body.left(), y), text)
    painter.setFont(font)
    painter.drawText(QtCore.QRectF(body.left(), body.bottom() - 3 * line, body.width(), 3 * line),
                     int(QtCore.Qt.TextFlag.TextWordWrap), CAVEAT)


def write_report(path: str | Path, hyp: Hypnogram, info: Mapping[str, str] | None = None,
                 title: str = "edge-scorer: night report",
                 final: np.ndarray | None = None) -> Path:
    """A one-page A4 report of the night: details, hypnogram + hypnodensity, statistics.

    Parameters
    ----------
    path : path-like
        ``.pdf`` or ``.png``.
    hyp : Hypnogram
        The night (current stages and probabilities).
    info : mapping, optional
        ``{label: value}`` lines under the title (source, model, backend, latency, ...).
    final : ndarray of bool, optional
        Per epoch, whether its stage is final (others are drawn as provisional).
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in REPORT_SUFFIXES:
        raise ValueError(f"a report is a PDF or PNG file; got {path.name!r}")
    if hyp.n_epochs == 0:
        raise ValueError("no epoch is scored yet; start scoring before writing a report")
    info = {"written": datetime.now().strftime("%Y-%m-%d %H:%M"), **dict(info or {})}
    path.parent.mkdir(parents=True, exist_ok=True)
    if suffix == ".pdf":
        writer = QtGui.QPdfWriter(str(path))
        writer.setPageSize(QtGui.QPageSize(QtGui.QPageSize.PageSizeId.A4))
        writer.setResolution(REPORT_DPI)
        writer.setTitle(title)
        writer.setCreator("edge-scorer")
        painter = QtGui.QPainter(writer)
        try:
            page = QtCore.QRectF(0, 0, writer.width(), writer.height())
            _paint_report(painter, page, hyp, info, title, final)
        finally:
            painter.end()
        return path
    w, h = int(round(8.27 * REPORT_DPI)), int(round(11.69 * REPORT_DPI))
    image = _new_image(w, h, dpi=REPORT_DPI)
    painter = QtGui.QPainter(image)
    try:
        painter.setRenderHint(QtGui.QPainter.RenderHint.Antialiasing)
        _paint_report(painter, QtCore.QRectF(0, 0, w, h), hyp, info, title, final)
    finally:
        painter.end()
    if not image.save(str(path)):
        raise OSError(f"could not write {path}")
    return path


__all__ = ["CAVEAT", "HYPNOGRAM_SUFFIXES", "REPORT_SUFFIXES", "export_hypnogram", "paint_night",
           "save_hypnogram_png", "write_report"]
