"""The bedside window, :class:`MainWindow` (the entry points are in :mod:`gui.launch`).

Threads: scoring runs in the :class:`~edge_scorer.stream.live.LiveScorer` thread of a
:class:`~gui.session.Session`; connecting, loading a model and finishing a run in
:class:`~gui.workers.BackgroundCalls` threads; explanations in a
:class:`~gui.workers.LatestOnlyWorker` thread. The GUI thread only pulls: one ``QTimer``
(:data:`POLL_MS`) drains the session's queue into the :class:`~gui.store.NightStore`, delivers
finished background calls and explanations, and redraws what changed (the hypnogram at most
every :data:`REDRAW_S`, the statistics every :data:`STATS_S`). Nothing on the GUI thread waits
for scoring, and no explanation, however slow, delays it.

Review (:mod:`gui.review`): live or on a scored night (:meth:`MainWindow.open_night`), the
technician pages with the keyboard, sets stages with W/1/2/3/R/U, and signs off.
"""

from __future__ import annotations

import time
from pathlib import Path

from PySide6 import QtCore, QtWidgets

from edge_scorer._log import get_logger
from edge_scorer.io.spec import RenderSpec, load_spec

from .controls import ControlPanel, ModelChoice, list_streams, stream_channel_labels
from .explainer import ExplainRequest, TorchExplainer
from .panels.epoch import EpochPanel
from .panels.hypnogram import HypnogramPanel
from .panels.review import AuditTable, ReviewPanel
from .panels.signals import SignalPanel
from .panels.status import QualityTable, StatsTable
from .review import ReviewController
from .session import Session
from .store import NightStore
from .window_exports import ExportsMixin
from .workers import BackgroundCalls, LatestOnlyWorker, WorkerError

log = get_logger("gui.app")

#: Period of the GUI timer (ms).
POLL_MS = 100
#: Shortest interval between two hypnogram redraws (s).
REDRAW_S = 0.25
#: Interval between two statistics updates (s).
STATS_S = 1.0


class MainWindow(ExportsMixin, QtWidgets.QMainWindow):
    """The bedside window (see the module docstring).

    Parameters
    ----------
    out_dir : path-like, optional
        Where each run writes ``epochs.csv`` and the night's files (a run finding an earlier
        run's ``epochs.csv`` there goes to ``run-2``, ``run-3``, ...); None: no files.
    spec : RenderSpec, optional
        Layout of the panels before the first run (default ``sleep-edf``; each run uses its
        model's spec).
    channel_overrides : dict, optional
        ``{spec row: channel label}`` for the streams (or files) scored.
    """

    def __init__(self, out_dir: str | Path | None = None, spec: RenderSpec | None = None,
                 channel_overrides: dict[str, str] | None = None,
                 parent: QtWidgets.QWidget | None = None) -> None:
        super().__init__(parent)
        self.channel_overrides = dict(channel_overrides or {})
        self.setWindowTitle("edge-scorer: bedside sleep scoring")
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.calls = BackgroundCalls()
        self.session: Session | None = None
        self.model = None
        self._model_key: ModelChoice | None = None
        self.worker: LatestOnlyWorker | None = None
        self._worker_key: tuple | None = None
        self.night = 0
        self.follow = True
        self.shown: int | None = None
        self._shown_status: str | None = None
        self._drawn_version = -1
        self._last_draw = self._last_stats = 0.0
        self._finished_handled = True
        self.screenshot_path: Path | None = None
        self.screenshot_taken: Path | None = None
        self._screenshot_deadline: float | None = None
        self.controls = ControlPanel()
        self.controls.startRequested.connect(self.start)
        self.controls.stopRequested.connect(self.stop)
        self.controls.refreshRequested.connect(self.refresh_streams)
        self.controls.exportRequested.connect(self._export_dialog)
        self.controls.streamSelected.connect(self._stream_selected)
        if self.channel_overrides:
            self.controls.channels.set_overrides(self.channel_overrides)
        dock = QtWidgets.QDockWidget("scoring", self)
        dock.setObjectName("controls")
        dock.setFeatures(QtWidgets.QDockWidget.DockWidgetFeature.DockWidgetMovable)
        scroll = QtWidgets.QScrollArea()
        scroll.setWidgetResizable(True)
        scroll.setHorizontalScrollBarPolicy(QtCore.Qt.ScrollBarPolicy.ScrollBarAlwaysOff)
        scroll.setMinimumWidth(360)
        scroll.setWidget(self.controls)
        dock.setWidget(scroll)
        self.controls.setMinimumWidth(330)
        self.addDockWidget(QtCore.Qt.DockWidgetArea.LeftDockWidgetArea, dock)
        self.status = {k: QtWidgets.QLabel("") for k in ("state", "backend", "epochs",
                                                         "latency", "explain")}
        for label in self.status.values():
            self.statusBar().addPermanentWidget(label)
        self.review_panel = ReviewPanel()
        self.audit_table = AuditTable()
        self.reviewer = ReviewController(self)
        self._build_panels(spec or load_spec("sleep-edf"))
        self.timer = QtCore.QTimer(self)
        self.timer.timeout.connect(self.tick)
        self.timer.start(POLL_MS)
        self._update_status()

    # ------------------------------------------------------------------ layout
    def _build_panels(self, spec: RenderSpec) -> None:
        """(Re)build the panels for ``spec`` and a fresh store."""
        self.spec = spec
        self.store = NightStore(spec)
        self.signals = SignalPanel(spec)
        self.hypnogram = HypnogramPanel(spec.row_names, spec.epoch_s)
        self.hypnogram.epochClicked.connect(self.select_epoch)
        self.epoch = EpochPanel(spec)
        self.quality = QualityTable(spec.row_names)
        self.stats = StatsTable()
        self.follow_box = QtWidgets.QCheckBox("follow the newest epoch")
        self.follow_box.setChecked(True)
        self.follow_box.toggled.connect(self._follow_toggled)
        epoch_box = QtWidgets.QWidget()
        ev = QtWidgets.QVBoxLayout(epoch_box)
        ev.setContentsMargins(0, 0, 0, 0)
        ev.addWidget(self.follow_box)
        ev.addWidget(self.review_panel)
        ev.addWidget(self.epoch, 1)
        tables = QtWidgets.QWidget()
        tv = QtWidgets.QVBoxLayout(tables)
        tv.setContentsMargins(0, 0, 0, 0)
        tv.addWidget(self.quality, 2)
        tv.addWidget(self.stats, 3)
        tv.addWidget(self.audit_table, 2)
        bottom = QtWidgets.QSplitter(QtCore.Qt.Orientation.Horizontal)
        bottom.addWidget(epoch_box)
        bottom.addWidget(tables)
        bottom.setStretchFactor(0, 4)
        bottom.setStretchFactor(1, 1)
        main = QtWidgets.QSplitter(QtCore.Qt.Orientation.Vertical)
        main.addWidget(self.signals)
        main.addWidget(self.hypnogram)
        main.addWidget(bottom)
        main.setStretchFactor(0, 2)
        main.setStretchFactor(1, 3)
        main.setStretchFactor(2, 4)
        main.setSizes([150, 310, 540])
        old = self.centralWidget()
        self.setCentralWidget(main)
        if old is not None:
            old.deleteLater()
        self._drawn_version = -1
        self.shown = None
        self.controls.channels.set_spec(spec)
        self.reviewer.attach()

    # ------------------------------------------------------------------ runs
    def refresh_streams(self) -> None:
        """List the LSL streams on the network (in the background)."""
        self.controls.show_message("looking for LSL streams...")
        self.calls.submit("streams", lambda: list_streams(1.0), self.show_streams,
                          lambda exc: self.controls.show_message(f"listing streams failed: "
                                                                 f"{exc}", error=True))

    def show_streams(self, rows) -> None:
        """Show listed streams (:class:`~gui.controls.StreamRow`) in the controls."""
        self.controls.set_streams(rows)
        self.controls.show_message(f"{len(rows)} LSL stream(s) on the network"
                                   if rows else "no LSL stream found on the network")

    def start(self) -> None:
        """Start scoring the chosen source with the chosen model (connects in the
        background)."""
        if self.session is not None and self.session.is_active:
            self.controls.show_message("already scoring; stop first", error=True)
            return
        try:
            source = self.controls.source_choice()
        except ValueError as exc:
            self.controls.show_message(str(exc), error=True)
            return
        choice = self.controls.model_choice()
        overrides = self.controls.channels.overrides()
        run_dir = self._run_dir()
        self.controls.set_running(True, can_export=False)
        self.controls.show_message(f"starting: {source.describe()} ...")

        key = ModelChoice(choice.intra, choice.inter, choice.backend, "")
        loaded = self.model if self._model_key == key else None

        def work() -> tuple[Session, object]:
            from edge_scorer.inference.scorer import ScoringModel

            model = loaded or ScoringModel.load(choice.intra, choice.inter,
                                                backend=choice.backend)
            session = Session(model, source, out_dir=run_dir, channel_overrides=overrides)
            return session.start(), model

        if not self.calls.submit("start", work, lambda r: self._started(*r, key, choice),
                                 self._start_failed):
            self.controls.show_message("already starting; wait for it", error=True)

    def _run_dir(self) -> Path | None:
        if self.out_dir is None:
            return None
        run, k = self.out_dir, 1
        while (run / "epochs.csv").exists():
            k += 1
            run = self.out_dir / f"run-{k}"
        return run

    def _started(self, session: Session, model, key: ModelChoice, choice: ModelChoice) -> None:
        self._model_key, self.model = key, model
        if session.spec != self.spec:
            self._build_panels(session.spec)
        else:
            self.store = NightStore(session.spec)
            self._drawn_version = -1
            self.shown = None
            self.epoch.clear_explanation("")
        fam = getattr(model, "familiarity", None)
        self.store.familiarity_threshold = fam.threshold if fam is not None else None
        self._update_familiarity()
        self.session = session
        self.night += 1
        self.follow = True
        self.follow_box.setChecked(True)
        self._finished_handled = False
        self._setup_explainer(choice)
        labels = getattr(session.live.source, "labels", None) if session.live else None
        if labels:
            self.controls.channels.show_mapping(labels)
        self.reviewer.new_night(session.out_dir, session.describe())
        self.controls.show_message(f"scoring {session.describe()}"
                                   + (f"; files in {session.out_dir}" if session.out_dir else ""))

    def _start_failed(self, exc: BaseException) -> None:
        self.controls.set_running(False, can_export=self.store.n_epochs > 0)
        self.controls.show_message(f"could not start: {exc}", error=True)

    def _setup_explainer(self, choice: ModelChoice) -> None:
        key = (choice.intra, choice.inter, choice.explain, choice.backend)
        if key == self._worker_key and self.worker is not None:
            return
        if self.worker is not None:
            self.worker.close(timeout=0.1)
            self.worker = None
        self._worker_key = key
        if choice.explain != "off":
            # one PyTorch thread leaves the other cores to scoring, unless scoring runs on
            # PyTorch itself (the thread count is per process)
            threads = None if choice.backend.startswith("torch") else 1
            explainer = TorchExplainer(self.spec, choice.intra, choice.inter,
                                       method=choice.explain, torch_threads=threads)
            self.worker = LatestOnlyWorker(explainer, name="explain")

    def stop(self) -> None:
        """Stop scoring: the epochs so far become final and the files are written (in the
        background)."""
        if self.session is None or not self.session.is_active:
            return
        self.controls.show_message("stopping: finalizing the night ...")
        self.calls.submit("stop", self.session.stop)

    # ------------------------------------------------------------------ selection
    def _follow_toggled(self, on: bool) -> None:
        self.follow = on
        if on and self.store.n_epochs:
            self._show(self.store.n_epochs - 1)

    def select_epoch(self, index: int) -> None:
        """Show epoch ``index`` (image, probabilities, quality, explanation); stop following."""
        if not 0 <= index < self.store.n_epochs:
            raise ValueError(f"epoch {index} is outside the night (0..{self.store.n_epochs - 1})")
        self.follow = False
        self.follow_box.blockSignals(True)
        self.follow_box.setChecked(False)
        self.follow_box.blockSignals(False)
        self._show(index)

    def _show(self, index: int) -> None:
        s = self.store
        self.shown = index
        self._shown_status = s.status[index]
        self.hypnogram.select(index)
        self.epoch.show_epoch(index, s.images.get(index), s.proba[index], s.describe(index))
        self.epoch.show_familiarity(s.familiarity_text(index), s.unfamiliar[index])
        self.quality.show_quality(index, s.quality.get(index), s.invalid_fraction[index],
                                  s.gap_filled[index], s.unscorable[index])
        self._request_explanation(index)
        self.reviewer.show_epoch(index)

    def _request_explanation(self, index: int) -> None:
        if self.worker is None:
            self.epoch.clear_explanation("explanations are off")
            return
        images = self.store.images
        if index not in images:
            self.epoch.clear_explanation("no image was kept for this epoch")
            return
        window = self.model.window if self.model is not None else 1
        near = {i: images[i] for i in range(index - window + 1, index + window) if i in images}
        self.worker.submit(ExplainRequest(index, near, self.store.n_epochs, self.night))
        if self.epoch.explained_index != index:
            self.epoch.clear_explanation("computing the explanation ...")

    # ------------------------------------------------------------------ the timer
    def tick(self) -> None:
        """Pull everything that arrived and redraw what changed (GUI thread, every POLL_MS)."""
        self.calls.poll()
        now = time.perf_counter()
        touched: set[int] = set()
        if self.session is not None:
            for batch in self.session.drain():
                touched |= self.store.apply(batch)
        self._poll_explanations()
        self.reviewer.poll()
        s = self.store
        ending = self.session is not None and not self.session.is_active
        if s.version != self._drawn_version and (now - self._last_draw >= REDRAW_S or ending):
            self.hypnogram.update_night(s)
            self._drawn_version = s.version
            self._last_draw = now
            self.reviewer.refresh()
            if self.follow and s.n_epochs and (self.shown != s.n_epochs - 1
                                               or self.shown not in s.images):
                self._show(s.n_epochs - 1)
        if self.shown is not None and self.shown in touched:
            self.epoch.update_proba(s.proba[self.shown], s.describe(self.shown))
            self.epoch.show_familiarity(s.familiarity_text(self.shown),
                                        s.unfamiliar[self.shown])
            if s.status[self.shown] != self._shown_status:
                self._shown_status = s.status[self.shown]
                if self._shown_status == "final":
                    self._request_explanation(self.shown)
        if self.session is not None and self.session.scoring:
            self.signals.update_signals(self.session.latest_signals(self.spec.epoch_s))
        if s.n_epochs and now - self._last_stats >= STATS_S:
            self.stats.update_stats(s.hypnogram())
            self._update_familiarity()
            self._last_stats = now
        sess = self.session
        if (sess is not None and sess.state == "running" and sess.live is not None
                and not sess.live.is_running and not self.calls.busy("stop")):
            self.calls.submit("stop", sess.stop)  # the scoring thread ended (error, idle)
        if self.session is not None and not self.session.is_active and not self._finished_handled:
            self._run_ended()
        self._update_status()
        self._maybe_screenshot()

    def _poll_explanations(self) -> None:
        if self.worker is None:
            return
        for request, result in self.worker.poll():
            if request.index != self.shown:
                continue
            if isinstance(result, WorkerError):
                self.epoch.clear_explanation(f"no explanation: {result}")
            else:
                self.epoch.show_explanation(result)

    def _run_ended(self) -> None:
        self._finished_handled = True
        s = self.store
        self.hypnogram.update_night(s)
        self._drawn_version = s.version
        live = self.session.live
        self.reviewer.night_finished(live.engine.hypnogram() if live is not None
                                     and live.engine is not None else s.hypnogram())
        if s.n_epochs:
            self.stats.update_stats(s.hypnogram())
        self._update_familiarity()
        sess = self.session
        self.controls.set_running(False, can_export=s.n_epochs > 0)
        if sess.error is not None:
            self.controls.show_message(f"scoring stopped: {type(sess.error).__name__}: "
                                       f"{sess.error}", error=True)
        else:
            where = f"; files in {sess.out_dir}" if sess.out_dir else ""
            self.controls.show_message(f"night finished: {s.n_epochs} epochs{where}")
        if self.screenshot_path is not None:
            self._screenshot_deadline = time.perf_counter() + 30.0

    def _update_familiarity(self) -> None:
        """The status panel's unfamiliar-signal line."""
        s = self.store
        self.stats.update_familiarity(s.familiarity_summary(), bool(s.unfamiliar_mask().any()))

    def _update_status(self) -> None:
        sess = self.session
        st = self.status
        if self.calls.busy("start"):
            st["state"].setText("state: starting")
        else:
            st["state"].setText(f"state: {sess.state}" if sess is not None else "state: idle")
        model = self.model
        st["backend"].setText(f"backend: {model.intra.name}" if model is not None else
                              "backend: -")
        s = self.store
        st["epochs"].setText(f"epochs: {s.n_epochs} ({s.n_final_prefix()} final, "
                             f"{self.hypnogram.n_revised} revised)")
        lat = sess.latency_summary() if sess is not None else {}
        st["latency"].setText(f"latency: median {lat['median_ms']:.0f} ms, p99 "
                              f"{lat['p99_ms']:.0f} ms" if lat else "latency: -")
        exp = self.epoch.explanation
        st["explain"].setText(f"explanation: {exp.elapsed_s:.2f} s" if exp is not None
                              else "explanation: -")

    # ------------------------------------------------------------------ review, channels
    def open_night(self, folder: str | Path, psg: str | Path | None = None,
                   scorer: str = "") -> None:
        """Open a scored night's folder for review (read in the background)."""
        self.reviewer.open_folder(folder, psg, scorer)

    def _stream_selected(self, row) -> None:
        """Read the selected stream's channel labels (background) for the channel mapping."""
        listed = list(self.controls.streams)
        self.calls.submit("labels", lambda: stream_channel_labels(row, listed),
                          lambda labels: self.controls.channels.set_available(labels, row.name),
                          lambda exc: self.controls.channels.result.setText(
                              f"cannot read the channels of {row.name}: {exc}"))

    # ------------------------------------------------------------------ screenshots, closing
    def save_screenshot(self, path: str | Path) -> Path:
        """Grab the window into a PNG."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        if not self.grab().save(str(path)):
            raise OSError(f"could not write {path}")
        return path

    def _maybe_screenshot(self) -> None:
        if self._screenshot_deadline is None or self.screenshot_taken is not None:
            return
        explained = (self.worker is None or self.epoch.explanation is not None
                     or self.epoch.text.text().startswith("no explanation"))
        if explained or time.perf_counter() > self._screenshot_deadline:
            self.screenshot_taken = self.save_screenshot(self.screenshot_path)
            log.info("wrote %s", self.screenshot_taken)
            self.close()

    def closeEvent(self, event) -> None:  # noqa: N802 - Qt's name
        """Stop the run (the night's files are written) and the explanation thread."""
        self.timer.stop()
        self.reviewer.close()
        if self.session is not None and self.session.is_active:
            self.session.stop()
        if self.worker is not None:
            self.worker.close(timeout=0.5)
        super().closeEvent(event)


__all__ = ["MainWindow", "POLL_MS", "REDRAW_S", "STATS_S"]
