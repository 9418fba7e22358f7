"""Channel mapping in the source panel: which channel of the stream (or file) feeds each row of
the model's spec.

One line per spec row with an editable list of the source's channels: ``automatic`` uses the
spec's aliases and patterns (:func:`edge_scorer.io.montage.map_channels`), a label overrides them
(``--channel ROW=LABEL`` on the command line). Below, the mapping that results, or the error
naming what is missing, is shown as soon as the source's channels are known (a file's header,
or a stream's description read in the background); once scoring runs, the mapping in use.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from PySide6 import QtCore, QtWidgets

from edge_scorer.io.montage import ChannelMapError, map_channels
from edge_scorer.io.spec import RenderSpec

#: The combo entry that leaves a row to the spec's aliases.
AUTOMATIC = "automatic"


def file_channel_labels(path: str) -> list[str]:
    """Signal labels of an EDF/BDF file, from its header only (annotations left out)."""
    from edge_scorer.io.edf_header import read_edf_header

    header = read_edf_header(path)
    return [lb for i, lb in enumerate(header.labels) if not header.is_annotation(i)]


class ChannelMapBox(QtWidgets.QGroupBox):
    """The channel mapping (see the module docstring)."""

    #: The overrides changed.
    changed = QtCore.Signal()

    def __init__(self, spec: RenderSpec, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__("channels (spec row <- source channel)", parent)
        self.table = QtWidgets.QTableWidget(0, 2)
        self.table.setHorizontalHeaderLabels(["spec row", "channel"])
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(24)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionMode(QtWidgets.QAbstractItemView.SelectionMode.NoSelection)
        self.table.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(1, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.result = QtWidgets.QLabel("")
        self.result.setWordWrap(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(self.table)
        layout.addWidget(self.result)
        self.available: list[str] = []
        self.source_text = ""
        self.combos: dict[str, QtWidgets.QComboBox] = {}
        self.set_spec(spec)

    def set_spec(self, spec: RenderSpec) -> None:
        """One line per row of ``spec`` (overrides of rows it has are kept)."""
        if self.combos and spec.hash == self.spec.hash:
            return
        keep = self.overrides() if self.combos else {}
        self.spec = spec
        self.combos = {}
        self.table.setRowCount(spec.n_rows)
        for r, row in enumerate(spec.rows):
            item = QtWidgets.QTableWidgetItem(row.name)
            item.setFlags(item.flags() & ~QtCore.Qt.ItemFlag.ItemIsEditable)
            item.setToolTip(f"{row.type}; aliases: {', '.join(row.aliases[:5])}")
            self.table.setItem(r, 0, item)
            combo = QtWidgets.QComboBox()
            combo.setEditable(True)
            combo.setInsertPolicy(QtWidgets.QComboBox.InsertPolicy.NoInsert)
            combo.addItem(AUTOMATIC)
            combo.currentTextChanged.connect(self._edited)
            self.table.setCellWidget(r, 1, combo)
            self.combos[row.name] = combo
        self.table.setFixedHeight(26 + 24 * spec.n_rows)
        self.set_available(self.available, self.source_text)
        self.set_overrides({k: v for k, v in keep.items() if k in self.combos})

    def set_available(self, labels: Sequence[str], source: str = "") -> None:
        """The source's channels (offered in every row's list); the mapping is checked."""
        self.available, self.source_text = list(labels), source
        for combo in self.combos.values():
            text = combo.currentText()
            combo.blockSignals(True)
            combo.clear()
            combo.addItem(AUTOMATIC)
            combo.addItems(self.available)
            combo.setCurrentText(text)
            combo.blockSignals(False)
        self.check()

    def overrides(self) -> dict[str, str]:
        """``{row: channel label}`` for the rows not left automatic."""
        out = {}
        for row, combo in self.combos.items():
            text = combo.currentText().strip()
            if text and text != AUTOMATIC:
                out[row] = text
        return out

    def set_overrides(self, overrides: Mapping[str, str]) -> None:
        """Set rows to channels (other rows: automatic).

        Raises
        ------
        ValueError
            A row the spec does not have.
        """
        unknown = [r for r in overrides if r not in self.combos]
        if unknown:
            raise ValueError(f"channel mapping for unknown row(s) {unknown}; the spec "
                             f"{self.spec.name!r} has {list(self.combos)}")
        for row, combo in self.combos.items():
            combo.blockSignals(True)
            combo.setCurrentText(overrides.get(row, AUTOMATIC))
            combo.blockSignals(False)
        self.check()

    def check(self) -> dict[str, str] | None:
        """Map the known channels with the overrides; show the result or the error. Returns
        ``{row: channel}`` (None when the channels are not known or do not map)."""
        if not self.available:
            self.result.setStyleSheet("")
            self.result.setText("the source's channels are not known yet (pick a file or a "
                                "stream)")
            return None
        try:
            picks = map_channels(self.available, self.spec, self.overrides(),
                                 source=self.source_text or "the source")
        except ChannelMapError as exc:
            self.result.setStyleSheet("color: #ff4d6d")
            self.result.setText(str(exc))
            return None
        mapping = {row.name: self.available[k] for row, k in zip(self.spec.rows, picks)}
        self.show_mapping(mapping, "mapping")
        return mapping

    def show_mapping(self, mapping: Mapping[str, str], what: str = "in use") -> None:
        """Show a mapping (``what``: ``mapping`` before a run, ``in use`` during one)."""
        self.result.setStyleSheet("")
        self.result.setText(f"{what}: " + "; ".join(f"{r} <- {lb}" for r, lb in mapping.items()))

    def _edited(self, _text: str) -> None:
        self.check()
        self.changed.emit()


__all__ = ["AUTOMATIC", "ChannelMapBox", "file_channel_labels"]
