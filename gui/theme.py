"""Colours, stage order and the dark palette of the window (a dim bedside room).

The hypnogram puts the stages in the clinical order, top to bottom: W, REM, N1, N2, N3, with
unscorable epochs on a line of their own below.
"""

from __future__ import annotations

from edge_scorer.stages import CLASS_NAMES, Stage

#: One colour per stage code (also the hypnodensity bands and the probability bars).
STAGE_COLORS: dict[int, str] = {
    int(Stage.W): "#ffd166", int(Stage.N1): "#8ecae6", int(Stage.N2): "#219ebc",
    int(Stage.N3): "#8d5cf6", int(Stage.REM): "#ef476f", int(Stage.UNSCORED): "#808080",
}
#: Hypnogram level of each stage code (higher is drawn higher).
STAGE_LEVEL: dict[int, int] = {
    int(Stage.W): 5, int(Stage.REM): 4, int(Stage.N1): 3, int(Stage.N2): 2, int(Stage.N3): 1,
    int(Stage.UNSCORED): 0,
}
#: Stage codes from the bottom of the hypnodensity stack to its top (W on top, as drawn in the
#: hypnogram).
DENSITY_ORDER: tuple[int, ...] = (int(Stage.N3), int(Stage.N2), int(Stage.N1), int(Stage.REM),
                                  int(Stage.W))
#: Colours of the quality flags (``gui.store.FLAGS`` order: ok, clipped, flat, missing).
FLAG_COLORS: tuple[str, ...] = ("#2a9d8f", "#e9c46a", "#f4a261", "#e63946")
FINAL_PEN = "#e0e0e0"
PROVISIONAL_PEN = "#ff9f1c"
REVISION_PEN = "#ff4d6d"
#: Marker of an epoch flagged by the unfamiliar-signal flag (far from the training data).
UNFAMILIAR_COLOR = "#f72585"
SELECTION_BRUSH = (255, 255, 255, 40)
#: The technician's stages in review (hypnogram segments, ticks, the review panel).
EDIT_COLOR = "#3ddc84"
BACKGROUND = "#101418"
FOREGROUND = "#d0d4d8"


def stage_ticks() -> list[tuple[int, str]]:
    """Y-axis ticks of the hypnogram: ``(level, label)``."""
    return [(lvl, Stage(code).label if code != int(Stage.UNSCORED) else "?")
            for code, lvl in STAGE_LEVEL.items()]


def class_color(k: int) -> str:
    """Colour of model class ``k`` (``CLASS_NAMES[k]``)."""
    if not 0 <= k < len(CLASS_NAMES):
        raise ValueError(f"class index {k} outside 0..{len(CLASS_NAMES) - 1}")
    return STAGE_COLORS[k]


def hex_rgb(color: str) -> tuple[int, int, int]:
    """``#rrggbb`` -> ``(r, g, b)``."""
    c = color.lstrip("#")
    if len(c) != 6:
        raise ValueError(f"expected a #rrggbb colour, got {color!r}")
    return int(c[0:2], 16), int(c[2:4], 16), int(c[4:6], 16)


def apply_dark_palette(app) -> None:
    """Fusion style with a dark palette on a ``QApplication``, and pyqtgraph's colours."""
    import pyqtgraph as pg
    from PySide6 import QtGui

    app.setStyle("Fusion")
    pal = QtGui.QPalette()
    role = QtGui.QPalette.ColorRole
    for r, c in ((role.Window, "#1b2026"), (role.WindowText, FOREGROUND), (role.Base, "#14181d"),
                 (role.AlternateBase, "#1f252c"), (role.ToolTipBase, "#2b323a"),
                 (role.ToolTipText, FOREGROUND), (role.Text, FOREGROUND),
                 (role.Button, "#2b323a"), (role.ButtonText, FOREGROUND),
                 (role.BrightText, "#ff4d6d"), (role.Highlight, "#219ebc"),
                 (role.HighlightedText, "#000000"), (role.PlaceholderText, "#7a828a")):
        pal.setColor(r, QtGui.QColor(c))
    app.setPalette(pal)
    pg.setConfigOptions(background=BACKGROUND, foreground=FOREGROUND, antialias=False)


__all__ = ["BACKGROUND", "DENSITY_ORDER", "EDIT_COLOR", "FINAL_PEN", "FLAG_COLORS", "FOREGROUND",
           "PROVISIONAL_PEN", "REVISION_PEN", "SELECTION_BRUSH", "STAGE_COLORS", "STAGE_LEVEL",
           "UNFAMILIAR_COLOR", "apply_dark_palette", "class_color", "hex_rgb", "stage_ticks"]
