"""The control panel: what to score (a live LSL stream or a PSG file to replay), which of its
channels feeds each spec row (:class:`~gui.panels.channels.ChannelMapBox`), with which model and
backend, start/stop, and the exports."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from edge_scorer.inference.backends import BACKENDS

from .panels.channels import ChannelMapBox, file_channel_labels
from .session import FileSource, StreamSource

#: Explanation methods offered (``off``: no explanations).
EXPLAIN_METHODS = ("chefer", "gradient", "rollout", "off")
DEFAULT_MODEL = "shipped default model"


@dataclass(frozen=True)
class StreamRow:
    """One LSL stream on the network, as listed."""

    name: str
    type: str
    n_channels: int
    sfreq: float
    host: str
    source_id: str

    @classmethod
    def from_info(cls, info) -> StreamRow:
        """From a ``pylsl.StreamInfo``."""
        return cls(info.name(), info.type(), int(info.channel_count()),
                   float(info.nominal_srate()), info.hostname(), info.source_id())


def list_streams(timeout_s: float = 1.0) -> list[StreamRow]:
    """Every LSL stream on the network (blocks ``timeout_s``), sorted by name."""
    from edge_scorer.stream.inlet import find_streams

    rows = [StreamRow.from_info(i) for i in find_streams(timeout_s=timeout_s)]
    return sorted(rows, key=lambda r: (r.name, r.source_id))


def stream_channel_labels(row: StreamRow, listed: list[StreamRow],
                          timeout_s: float = 2.0) -> list[str]:
    """Channel labels of a listed stream and of its listed ``NAME-<rate>Hz`` companions on the
    same host, read from their descriptions (blocks: opens one inlet per stream)."""
    import pylsl

    from edge_scorer.stream.inlet import channel_labels, find_streams

    pattern = re.compile(re.escape(row.name) + r"-[0-9.]+Hz")
    labels: list[str] = []
    for r in [row] + [s for s in listed if pattern.fullmatch(s.name) and s.host == row.host]:
        found = find_streams(source_id=r.source_id, timeout_s=timeout_s) if r.source_id else \
            find_streams(name=r.name, timeout_s=timeout_s)
        if not found:
            raise LookupError(f"stream {r.name!r} is gone from the network; find streams again")
        inlet = pylsl.StreamInlet(found[0], max_buflen=1, recover=False)
        try:
            labels += channel_labels(inlet.info(timeout_s))
        finally:
            inlet.close_stream()
    return labels


@dataclass(frozen=True)
class ModelChoice:
    """Model files (None: the shipped model), backend and explanation method."""

    intra: Path | None
    inter: Path | None
    backend: str
    explain: str


class ControlPanel(QtWidgets.QWidget):
    """Source, model and run controls (signals are wired by the main window)."""

    startRequested = QtCore.Signal()
    stopRequested = QtCore.Signal()
    refreshRequested = QtCore.Signal()
    exportRequested = QtCore.Signal(str)
    #: A stream was selected in the table (the window reads its channel labels).
    streamSelected = QtCore.Signal(object)

    def __init__(self, parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.streams: list[StreamRow] = []
        # --- source
        self.use_stream = QtWidgets.QRadioButton("live LSL stream")
        self.use_file = QtWidgets.QRadioButton("PSG file, replayed as LSL")
        self.use_stream.setChecked(True)
        self.stream_table = QtWidgets.QTableWidget(0, 5)
        self.stream_table.setHorizontalHeaderLabels(["name", "type", "ch", "Hz", "host"])
        self.stream_table.setSelectionBehavior(
            QtWidgets.QAbstractItemView.SelectionBehavior.SelectRows)
        self.stream_table.setSelectionMode(
            QtWidgets.QAbstractItemView.SelectionMode.SingleSelection)
        self.stream_table.setEditTriggers(QtWidgets.QAbstractItemView.EditTrigger.NoEditTriggers)
        self.stream_table.verticalHeader().setVisible(False)
        self.stream_table.itemSelectionChanged.connect(self._stream_selection_changed)
        header = self.stream_table.horizontalHeader()
        header.setSectionResizeMode(QtWidgets.QHeaderView.ResizeMode.ResizeToContents)
        header.setSectionResizeMode(0, QtWidgets.QHeaderView.ResizeMode.Stretch)
        self.refresh_button = QtWidgets.QPushButton("find streams")
        self.refresh_button.clicked.connect(self.refreshRequested)
        self.psg_edit = QtWidgets.QLineEdit()
        self.psg_edit.setPlaceholderText("night.edf")
        self.hyp_edit = QtWidgets.QLineEdit()
        self.hyp_edit.setPlaceholderText("hypnogram (optional)")
        self.speed = QtWidgets.QDoubleSpinBox()
        self.speed.setRange(0.1, 10_000.0)
        self.speed.setDecimals(1)
        self.speed.setValue(1.0)
        self.speed.setSuffix(" x")
        browse_psg = QtWidgets.QPushButton("...")
        browse_psg.clicked.connect(lambda: self._browse(self.psg_edit, "PSG (*.edf *.bdf)"))
        browse_hyp = QtWidgets.QPushButton("...")
        browse_hyp.clicked.connect(lambda: self._browse(self.hyp_edit, "hypnogram (*)"))
        src = QtWidgets.QGroupBox("source")
        g = QtWidgets.QGridLayout(src)
        g.addWidget(self.use_stream, 0, 0, 1, 2)
        g.addWidget(self.refresh_button, 0, 2)
        g.addWidget(self.stream_table, 1, 0, 1, 3)
        g.addWidget(self.use_file, 2, 0, 1, 3)
        g.addWidget(self.psg_edit, 3, 0, 1, 2)
        g.addWidget(browse_psg, 3, 2)
        g.addWidget(self.hyp_edit, 4, 0, 1, 2)
        g.addWidget(browse_hyp, 4, 2)
        g.addWidget(QtWidgets.QLabel("speed"), 5, 0)
        g.addWidget(self.speed, 5, 1, 1, 2)
        from edge_scorer.io.spec import load_spec

        self.channels = ChannelMapBox(load_spec("sleep-edf"))
        g.addWidget(self.channels, 6, 0, 1, 3)
        self.psg_edit.editingFinished.connect(self._file_changed)
        # --- model
        self.model_combo = QtWidgets.QComboBox()
        self.model_combo.addItem(DEFAULT_MODEL)
        browse_model = QtWidgets.QPushButton("...")
        browse_model.clicked.connect(self._browse_model)
        self.backend_combo = QtWidgets.QComboBox()
        self.backend_combo.addItems(list(BACKENDS))
        self.backend_combo.setCurrentText("onnxruntime")
        self.explain_combo = QtWidgets.QComboBox()
        self.explain_combo.addItems(list(EXPLAIN_METHODS))
        mdl = QtWidgets.QGroupBox("model")
        m = QtWidgets.QGridLayout(mdl)
        m.addWidget(self.model_combo, 0, 0, 1, 2)
        m.addWidget(browse_model, 0, 2)
        m.addWidget(QtWidgets.QLabel("backend"), 1, 0)
        m.addWidget(self.backend_combo, 1, 1, 1, 2)
        m.addWidget(QtWidgets.QLabel("explain"), 2, 0)
        m.addWidget(self.explain_combo, 2, 1, 1, 2)
        # --- run and export
        self.start_button = QtWidgets.QPushButton("Start")
        self.stop_button = QtWidgets.QPushButton("Stop")
        self.stop_button.setEnabled(False)
        self.start_button.clicked.connect(self.startRequested)
        self.stop_button.clicked.connect(self.stopRequested)
        run = QtWidgets.QHBoxLayout()
        run.addWidget(self.start_button)
        run.addWidget(self.stop_button)
        exp = QtWidgets.QGroupBox("export")
        e = QtWidgets.QVBoxLayout(exp)
        self.export_buttons = {}
        for kind, text in (("hypnogram", "hypnogram (CSV / EDF+)..."),
                           ("png", "hypnogram picture (PNG)..."),
                           ("report", "night report (PDF / PNG)...")):
            b = QtWidgets.QPushButton(text)
            b.clicked.connect(lambda _=False, k=kind: self.exportRequested.emit(k))
            b.setEnabled(False)
            e.addWidget(b)
            self.export_buttons[kind] = b
        self.message = QtWidgets.QLabel("")
        self.message.setWordWrap(True)
        layout = QtWidgets.QVBoxLayout(self)
        layout.addWidget(src)
        layout.addWidget(mdl)
        layout.addLayout(run)
        layout.addWidget(exp)
        layout.addWidget(self.message)
        layout.addStretch(1)

    # ------------------------------------------------------------------ browsing
    def _browse(self, edit: QtWidgets.QLineEdit, filt: str) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "open", edit.text(), filt)
        if path:
            edit.setText(path)
            if edit is self.psg_edit:
                self.use_file.setChecked(True)
                self._file_changed()

    def _file_changed(self) -> None:
        """Offer the chosen file's channels in the channel mapping."""
        text = self.psg_edit.text().strip()
        if not text or not Path(text).is_file():
            return
        try:
            labels = file_channel_labels(text)
        except (OSError, ValueError) as exc:
            self.channels.set_available([], Path(text).name)
            self.channels.result.setText(f"cannot read the channels of {Path(text).name}: {exc}")
            return
        self.channels.set_available(labels, Path(text).name)

    def _stream_selection_changed(self) -> None:
        row = self.selected_stream()
        if row is not None:
            self.streamSelected.emit(row)

    def _browse_model(self) -> None:
        path, _ = QtWidgets.QFileDialog.getOpenFileName(self, "intra model", "",
                                                        "ONNX model (*.onnx)")
        if path:
            self.add_model(Path(path))

    def add_model(self, intra: Path, inter: Path | None = None) -> None:
        """Offer an intra model file with its inter model (default: ``inter.onnx`` beside it,
        when there is one) and select it."""
        if inter is None:
            beside = Path(intra).with_name("inter.onnx")
            inter = beside if beside.is_file() and beside != Path(intra) else None
        self.model_combo.addItem(str(intra), (Path(intra), inter))
        self.model_combo.setCurrentIndex(self.model_combo.count() - 1)

    # ------------------------------------------------------------------ state
    def set_streams(self, rows: list[StreamRow]) -> None:
        """Fill the stream table (keeps the selection by name when possible)."""
        current = self.selected_stream()
        self.streams = list(rows)
        self.stream_table.setRowCount(len(rows))
        for r, s in enumerate(rows):
            cells = (s.name, s.type, str(s.n_channels), f"{s.sfreq:g}", s.host)
            for c, text in enumerate(cells):
                item = QtWidgets.QTableWidgetItem(text)
                item.setToolTip(f"{s.name} ({s.type}), {s.n_channels} ch @ {s.sfreq:g} Hz, "
                                f"host {s.host}, source id {s.source_id}")
                self.stream_table.setItem(r, c, item)
            if current is not None and (s.name, s.source_id) == (current.name,
                                                                  current.source_id):
                self.stream_table.selectRow(r)

    def selected_stream(self) -> StreamRow | None:
        """The stream selected in the table (None: none)."""
        rows = self.stream_table.selectionModel().selectedRows()
        if not rows or rows[0].row() >= len(self.streams):
            return None
        return self.streams[rows[0].row()]

    def select_stream(self, name: str) -> None:
        """Select the listed stream called ``name`` (and the stream source)."""
        for r, s in enumerate(self.streams):
            if s.name == name:
                self.stream_table.selectRow(r)
                self.use_stream.setChecked(True)
                return
        raise ValueError(f"no listed stream is called {name!r}; press 'find streams'")

    def set_file(self, psg: str | Path, hypnogram: str | Path | None = None,
                 speed: float | None = None) -> None:
        """Choose a file source."""
        self.psg_edit.setText(str(psg))
        self.hyp_edit.setText("" if hypnogram is None else str(hypnogram))
        if speed is not None:
            self.speed.setValue(float(speed))
        self.use_file.setChecked(True)
        self._file_changed()

    def source_choice(self) -> StreamSource | FileSource:
        """The chosen source; ``ValueError`` saying what is missing."""
        if self.use_stream.isChecked():
            s = self.selected_stream()
            if s is None:
                raise ValueError("select a stream in the list (press 'find streams' to list "
                                 "the streams on the network)")
            return StreamSource(s.name, s.source_id)
        text = self.psg_edit.text().strip()
        if not text:
            raise ValueError("give the PSG file to replay (EDF/BDF)")
        psg = Path(text)
        if not psg.is_file():
            raise ValueError(f"PSG file {psg} not found")
        hyp_text = self.hyp_edit.text().strip()
        hyp = Path(hyp_text) if hyp_text else None
        if hyp is not None and not hyp.is_file():
            raise ValueError(f"hypnogram file {hyp} not found (leave it empty for none)")
        return FileSource(psg, hyp, float(self.speed.value()))

    def model_choice(self) -> ModelChoice:
        """The chosen model files, backend and explanation method."""
        text = self.model_combo.currentText()
        explain = self.explain_combo.currentText()
        backend = self.backend_combo.currentText()
        if text == DEFAULT_MODEL:
            return ModelChoice(None, None, backend, explain)
        intra, inter = self.model_combo.currentData()
        return ModelChoice(intra, inter, backend, explain)

    def set_running(self, running: bool, can_export: bool) -> None:
        """Enable the buttons for the run state."""
        self.start_button.setEnabled(not running)
        self.stop_button.setEnabled(running)
        for b in self.export_buttons.values():
            b.setEnabled(can_export)

    def show_message(self, text: str, error: bool = False) -> None:
        """Show a line under the controls (red for an error)."""
        self.message.setStyleSheet("color: #ff4d6d" if error else "")
        self.message.setText(text)


__all__ = ["ControlPanel", "DEFAULT_MODEL", "EXPLAIN_METHODS", "ModelChoice", "StreamRow",
           "list_streams", "stream_channel_labels"]
