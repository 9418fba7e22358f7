"""The technician's side of the shown epoch: the model's stage beside theirs, stage buttons, a
note, the scorer's name, sign-off, and the audit log.

Keys (handled by :class:`gui.review.ReviewController` for the whole window): ``W``, ``1``,
``2``, ``3``, ``R`` set the stage (``U``: unscorable) and go to the next epoch; the buttons
here do the same with the mouse. The audit table lists every change, newest first; a click on a
row shows its epoch.
"""

from __future__ import annotations

import numpy as np
from PySide6 import QtCore, QtWidgets

from edge_scorer.engine.review import AuditEntry
from edge_scorer.stages import CLASS_NAMES, Stage

from ..theme import EDIT_COLOR, STAGE_COLORS

#: Stage buttons: (label, stage code, key).
STAGE_BUTTONS: tuple[tuple[str, int, str], ...] = (
    ("W", int(Stage.W), "W"), ("N1", int(Stage.N1), "1"), ("N2", int(Stage.N2), "2"),
    ("N3", int(Stage.N3), "3"), ("REM", int(Stage.REM), "R"), ("U", int(Stage.UNSCORED), "U"))
#: Audit rows shown (the file keeps them all).
AUDIT_ROWS_SHOWN = 500


def stage_text(code: int) -> str:
    """A stage code as the technician reads it (``U`` for unscorable)."""
    return "U" if code == int(Stage.UNSCORED) else Stage(code).label


class ReviewPanel(QtWidgets.QWidget):
    """Model vs technician for the shown epoch, stage buttons, note, sign-off."""

    #: A stage button was pressed (stage code).
    stageClicked = QtCore.Signal(int)
    #: "add note" with the note's text.
    noteRequested = QtCore.Signal(str)
    #: "sign off" with the scorer's name.
    signOffRequested = QtCore.Signal(str)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.model_label = QtWidgets.QLabel("model: -")
        self.tech_label = QtWidgets.QLabel("technician: -")
        for label in (self.model_label, self.tech_label):
            label.setTextFormat(QtCore.Qt.TextFormat.RichText)
            label.setWordWrap(True)
            label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                                QtWidgets.QSizePolicy.Policy.Preferred)
        self.buttons: dict[int, QtWidgets.QPushButton] = {}
        first = QtWidgets.QHBoxLayout()
        first.addWidget(self.model_label, 3)
        first.addWidget(self.tech_label, 2)
        row = QtWidgets.QHBoxLayout()
        for text, code, key in STAGE_BUTTONS:
            b = QtWidgets.QPushButton(text if text == key else f"{text} [{key}]")
            b.setToolTip(f"set this epoch to {text} and go to the next one (key {key})")
            b.setFocusPolicy(QtCore.Qt.FocusPolicy.NoFocus)
            b.setStyleSheet(f"QPushButton {{ border-left: 4px solid {STAGE_COLORS[code]}; }}")
            b.clicked.connect(lambda _=False, c=code: self.stageClicked.emit(c))
            self.buttons[code] = b
            row.addWidget(b)
        self.note_edit = QtWidgets.QLineEdit()
        self.note_edit.setPlaceholderText("note for the next change (optional)")
        self.note_button = QtWidgets.QPushButton("add note")
        self.note_button.setToolTip("log the note on the shown epoch without changing its stage")
        self.note_button.clicked.connect(lambda: self.noteRequested.emit(self.note_edit.text()))
        self.scorer_edit = QtWidgets.QLineEdit()
        self.scorer_edit.setPlaceholderText("scorer (name or initials)")
        self.scorer_edit.setMaximumWidth(170)
        self.sign_button = QtWidgets.QPushButton("sign off")
        self.sign_button.setToolTip("write the reviewed hypnogram (CSV, EDF+, BIDS, NSRR XML) "
                                    "and the agreement report into the night's review folder")
        self.sign_button.clicked.connect(
            lambda: self.signOffRequested.emit(self.scorer_edit.text()))
        row.addWidget(self.note_edit, 3)
        row.addWidget(self.note_button)
        row.addWidget(self.scorer_edit, 1)
        row.addWidget(self.sign_button)
        self.state_label = QtWidgets.QLabel("review: no change yet")
        self.state_label.setWordWrap(True)
        self.state_label.setSizePolicy(QtWidgets.QSizePolicy.Policy.Ignored,
                                       QtWidgets.QSizePolicy.Policy.Preferred)
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.setSpacing(2)
        layout.addLayout(first)
        layout.addLayout(row)
        layout.addWidget(self.state_label)

    def show_epoch(self, index: int, model_stage: int, proba: np.ndarray, status: str,
                   tech_stage: int, edited: bool) -> None:
        """The model's stage (with its probabilities and status) beside the technician's."""
        p = np.asarray(proba, dtype=np.float64)
        probs = " ".join(f"{c} {v:.2f}" for c, v in zip(CLASS_NAMES, p))
        self.model_label.setText(
            f"epoch {index} &nbsp; model: <b style='color:{STAGE_COLORS[model_stage]}'>"
            f"{stage_text(model_stage)}</b> ({status}; {probs})")
        mark = (f"<b style='color:{EDIT_COLOR}'>set by the technician</b>" if edited
                else "not reviewed yet: the model's stage")
        self.tech_label.setText(
            f"technician: <b style='color:{STAGE_COLORS[tech_stage]}'>{stage_text(tech_stage)}"
            f"</b> ({mark})")
        for code, b in self.buttons.items():
            b.setDown(edited and code == tech_stage)

    def take_note(self) -> str:
        """The typed note (cleared: it goes with one change)."""
        text = self.note_edit.text().strip()
        self.note_edit.clear()
        return text

    def show_state(self, text: str, error: bool = False) -> None:
        """One line on the review's state (red for an error)."""
        self.state_label.setStyleSheet("color: #ff4d6d" if error else "")
        self.state_label.setText(text)


class AuditTable(QtWidgets.QWidget):
    """The audit log, newest first; a click on a row emits its epoch."""

    epochClicked = QtCore.Signal(int)
    COLUMNS = ("epoch", "time", "model", "was", "set", "note")

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.title = QtWidgets.QLabel("audit log (every change)")
        self.table = QtWidgets.QTableWidget(0, len(self.COLUMNS))
        self.table.setHorizontalHeaderLabels(list(self.COLUMNS))
        self.table.verticalHeader().setVisible(False)
        self.table.verticalHeader().setDefaultSectionSize(20)
        self.table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.table.setSelectionBehavior(QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        header = self.table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(len(self.COLUMNS) - 1,
                                    QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.table.cellClicked.connect(self._clicked)
        self._epochs: list[int] = []
        layout = QtWidgets.QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.title)
        layout.addWidget(self.table)

    def show_audit(self, audit: list[AuditEntry]) -> None:
        """Fill the table from the log (newest first)."""
        rows = audit[::-1][:AUDIT_ROWS_SHOWN]
        self._epochs = [e.epoch for e in rows]
        self.table.setRowCount(len(rows))
        for r, e in enumerate(rows):
            cells = (str(e.epoch), e.time[11:19], stage_text(e.automatic), stage_text(e.previous),
                     stage_text(e.edited) if e.action == "stage" else "(note)", e.note)
            for c, text in enumerate(cells):
                item = self.table.item(r, c)
                if item is None:
                    self.table.setItem(r, c, QtWidgets.QTableWidgetItem(text))
                else:
                    item.setText(text)
        self.title.setText(f"audit log: {len(audit)} change(s)")

    def _clicked(self, row: int, _col: int) -> None:
        if 0 <= row < len(self._epochs):
            self.epochClicked.emit(self._epochs[row])


__all__ = ["AUDIT_ROWS_SHOWN", "AuditTable", "ReviewPanel", "STAGE_BUTTONS", "stage_text"]
