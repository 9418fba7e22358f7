"""Tables: signal quality per channel of the shown epoch, and the running sleep statistics with
the fraction of epochs flagged by the unfamiliar-signal flag."""

from __future__ import annotations

import math

from PySide6 import QtGui, QtWidgets

from edge_scorer.stats.hypnogram import Hypnogram
from edge_scorer.stats.sleepstats import sleep_statistics

from ..store import FLAGS, ChannelQuality
from ..theme import FLAG_COLORS, FOREGROUND, UNFAMILIAR_COLOR

#: Statistics shown in the window: (field of SleepStatistics, label, unit).
STATS_SHOWN: tuple[tuple[str, str, str], ...] = (
    ("tib_min", "time in bed", "min"), ("tst_min", "total sleep time", "min"),
    ("se_pct", "sleep efficiency", "%"), ("sol_min", "sleep onset latency", "min"),
    ("waso_min", "wake after sleep onset", "min"),
    ("rem_latency_min", "REM latency", "min"), ("n1_pct", "N1 of TST", "%"),
    ("n2_pct", "N2 of TST", "%"), ("n3_pct", "N3 of TST", "%"), ("rem_pct", "REM of TST", "%"),
    ("n_awakenings", "awakenings", ""), ("unscored_min", "unscored", "min"),
)


def _table(n_rows: int, columns: list[str]) -> QtWidgets.QTableWidget:
    """A read-only table whose items are created once (then only their text changes)."""
    table = QtWidgets.QTableWidget(n_rows, len(columns))
    table.setHorizontalHeaderLabels(columns)
    table.verticalHeader().setVisible(False)
    table.verticalHeader().setDefaultSectionSize(20)
    table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
    header = table.horizontalHeader()
    header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
    header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
    table.setMinimumWidth(300)
    for r in range(n_rows):
        for c in range(len(columns)):
            table.setItem(r, c, QtWidgets.QTableWidgetItem(""))
    return table


def _set(table: QtWidgets.QTableWidget, r: int, c: int, text: str,
         color: str | None = None) -> None:
    """Change a cell in place (no new item per update: they would pile up)."""
    item = table.item(r, c)
    item.setText(text)
    item.setForeground(QtGui.QBrush(QtGui.QColor(color or FOREGROUND)))


class QualityTable(QtWidgets.QWidget):
    """Per-channel quality of one epoch (flag, missing %, clipped %) and the epoch's flags."""

    def __init__(self, row_names: tuple[str, ...],
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.row_names = tuple(row_names)
        self.title = QtWidgets.QLabel("signal quality")
        self.table = _table(len(self.row_names), ["channel", "flag", "missing", "clipped"])
        for r, name in enumerate(self.row_names):
            _set(self.table, r, 0, name)
        self.epoch_line = QtWidgets.QLabel("")
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.table)
        layout.addWidget(self.epoch_line)
        self.flags: list[str] = []

    def show_quality(self, index: int, quality: list[ChannelQuality] | None,
                     invalid_fraction: float, gap_filled: bool, unscorable: bool) -> None:
        """Fill the table for epoch ``index`` (``quality`` None: not known)."""
        self.title.setText(f"signal quality, epoch {index}")
        self.flags = []
        for r in range(len(self.row_names)):
            if quality is None:
                cells = [("?", None), ("", None), ("", None)]
            else:
                q = quality[r]
                self.flags.append(q.flag)
                cells = [(q.flag, FLAG_COLORS[FLAGS.index(q.flag)]),
                         (f"{q.missing_fraction:.0%}", None),
                         (f"{q.clipped_fraction:.0%}", None)]
            for c, (text, color) in enumerate(cells):
                _set(self.table, r, c + 1, text, color)
        parts = [f"invalid {invalid_fraction:.0%}"]
        if gap_filled:
            parts.append("gap filled")
        if unscorable:
            parts.append("UNSCORABLE")
        self.epoch_line.setText("epoch: " + ", ".join(parts))


class StatsTable(QtWidgets.QWidget):
    """The running sleep statistics of the night so far (current stages)."""

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QtWidgets.QLabel("sleep statistics (night so far)")
        self.table = _table(len(STATS_SHOWN), ["statistic", "value"])
        for r, (_, label, _) in enumerate(STATS_SHOWN):
            _set(self.table, r, 0, label)
        self.familiarity = QtWidgets.QLabel("")
        self.familiarity.setWordWrap(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.table)
        layout.addWidget(self.familiarity)
        self.values: dict[str, float | int] = {}

    def update_familiarity(self, text: str, any_flagged: bool) -> None:
        """The unfamiliar-signal line (e.g. ``unfamiliar signal: 3 of 40 epochs (8 %)``),
        highlighted when an epoch is flagged."""
        self.familiarity.setText(text)
        self.familiarity.setStyleSheet(
            f"color: {UNFAMILIAR_COLOR}; font-weight: bold;" if any_flagged else "")

    def update_stats(self, hyp: Hypnogram) -> None:
        """Recompute and show the statistics of ``hyp`` (nothing for an empty night)."""
        if hyp.n_epochs == 0:
            return
        stats = sleep_statistics(hyp).as_dict()
        self.values = stats
        self.title.setText(f"sleep statistics ({hyp.n_epochs} epochs so far)")
        for r, (key, _, unit) in enumerate(STATS_SHOWN):
            v = stats[key]
            if isinstance(v, float) and math.isnan(v):
                text = "n/a"
            elif isinstance(v, int):
                text = f"{v:d}"
            else:
                text = f"{v:.1f} {unit}".rstrip()
            _set(self.table, r, 1, text)


__all__ = ["QualityTable", "STATS_SHOWN", "StatsTable"]
