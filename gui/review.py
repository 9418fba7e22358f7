"""Review in the window: the technician pages through the night, sets stages, signs off.

:class:`ReviewController` belongs to a :class:`~gui.app.MainWindow`, live or reviewing a scored
night (``edge-scorer review NIGHT_DIR``). Keys work anywhere in the window except while typing
in a text field:

=====================  =========================================================
``W 1 2 3 R``          set the shown epoch to W, N1, N2, N3, REM, then show the next
``U``                  unscorable (artifact, movement), then the next epoch
``Left`` / ``Right``   previous / next epoch (also ``PageUp`` / ``PageDown``)
``Up`` / ``Down``      10 epochs back / forward (5 minutes)
``Home`` / ``End``     first / last epoch
``+`` / ``-``          zoom the hypnogram in / out around the shown epoch
``A``                  the whole night on the hypnogram again
=====================  =========================================================

Every change goes into the night's :class:`~edge_scorer.engine.review.NightReview` (audit log, saved
at once into ``NIGHT_DIR/review``). The technician's stage of the shown epoch is shown beside
the model's (:class:`~gui.panels.review.ReviewPanel`), their stages that differ from the
model's are drawn green on the hypnogram. Sign-off writes the reviewed hypnogram in every
format, the agreement report and a PDF report of the reviewed night.

The occlusion tab of the explanation panel is filled here too (:class:`gui.night.
OcclusionExplainer` in its own worker thread, for the shown epoch when the tab is open).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PySide6 import QtCore, QtWidgets

from edge_scorer._log import get_logger
from edge_scorer.engine.review import NightReview, ReviewError
from edge_scorer.stages import Stage
from edge_scorer.stats.hypnogram import Hypnogram

from .night import LoadedNight, OcclusionExplainer, OcclusionRequest, load_night
from .store import NightStore
from .workers import LatestOnlyWorker, WorkerError

log = get_logger("gui.review")

#: Stage keys -> stage codes.
STAGE_KEYS: dict[int, int] = {
    QtCore.Qt.Key.Key_W: int(Stage.W), QtCore.Qt.Key.Key_1: int(Stage.N1),
    QtCore.Qt.Key.Key_2: int(Stage.N2), QtCore.Qt.Key.Key_3: int(Stage.N3),
    QtCore.Qt.Key.Key_R: int(Stage.REM), QtCore.Qt.Key.Key_U: int(Stage.UNSCORED)}
#: Paging keys -> epochs moved (None: first / last).
PAGE_KEYS: dict[int, int] = {
    QtCore.Qt.Key.Key_Left: -1, QtCore.Qt.Key.Key_Right: 1, QtCore.Qt.Key.Key_PageUp: -1,
    QtCore.Qt.Key.Key_PageDown: 1, QtCore.Qt.Key.Key_Up: -10, QtCore.Qt.Key.Key_Down: 10}
#: Zoom factor of one ``+`` / ``-``.
ZOOM_STEP = 2.0
#: Widgets in which keys are typed, not used for review.
TEXT_WIDGETS = (QtWidgets.QLineEdit, QtWidgets.QAbstractSpinBox, QtWidgets.QTextEdit,
                QtWidgets.QPlainTextEdit)


class ReviewController(QtCore.QObject):
    """Keys, stage edits, the audit log and sign-off of one window (see the module notes)."""

    def __init__(self, win) -> None:
        super().__init__(win)
        self.win = win
        self.review: NightReview | None = None
        self.night: LoadedNight | None = None
        self.occlusion_worker: LatestOnlyWorker | None = None
        self._occlusion_key: tuple | None = None
        self._night_no = 0
        self._drawn = -1
        self.signed_files: list[Path] = []
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.installEventFilter(self)

    def attach(self) -> None:
        """Connect the window's (re)built panels."""
        w = self.win
        w.review_panel.stageClicked.connect(self.set_stage)
        w.review_panel.noteRequested.connect(self.add_note)
        w.review_panel.signOffRequested.connect(self.sign_off)
        w.audit_table.epochClicked.connect(w.select_epoch)
        w.epoch.occlusionWanted.connect(self.request_occlusion)

    # ------------------------------------------------------------------ keys
    def eventFilter(self, obj, event) -> bool:  # noqa: N802 - Qt's name
        """Review keys pressed anywhere in the window (not while typing)."""
        if event.type() != QtCore.QEvent.Type.KeyPress or not isinstance(obj, QtWidgets.QWidget):
            return False
        if obj.window() is not self.win or isinstance(obj, TEXT_WIDGETS):
            return False
        if isinstance(obj, QtWidgets.QComboBox) and obj.isEditable():
            return False
        mods = event.modifiers() & ~QtCore.Qt.KeyboardModifier.KeypadModifier
        if mods & ~QtCore.Qt.KeyboardModifier.ShiftModifier:
            return False  # Ctrl/Alt combinations are not ours
        return self.handle_key(event.key(), event.text())

    def handle_key(self, key: int, text: str = "") -> bool:
        """Act on one key; False when it is not a review key."""
        w = self.win
        if key in STAGE_KEYS:
            self.set_stage(STAGE_KEYS[key])
        elif key in PAGE_KEYS:
            self.page(PAGE_KEYS[key])
        elif key == QtCore.Qt.Key.Key_Home:
            self.go(0)
        elif key == QtCore.Qt.Key.Key_End:
            self.go(w.store.n_epochs - 1)
        elif text in ("+", "=") or key == QtCore.Qt.Key.Key_Plus:
            w.hypnogram.zoom(ZOOM_STEP)
        elif text == "-" or key == QtCore.Qt.Key.Key_Minus:
            w.hypnogram.zoom(1.0 / ZOOM_STEP)
        elif key == QtCore.Qt.Key.Key_A:
            w.hypnogram.show_all()
        else:
            return False
        return True

    # ------------------------------------------------------------------ navigation
    def go(self, index: int) -> None:
        """Show epoch ``index`` (kept inside the night)."""
        n = self.win.store.n_epochs
        if n:
            self.win.select_epoch(int(min(max(index, 0), n - 1)))

    def page(self, delta: int) -> None:
        """Show the epoch ``delta`` epochs away from the shown one."""
        shown = self.win.shown
        self.go((shown if shown is not None else 0) + delta)

    # ------------------------------------------------------------------ the night
    def new_night(self, out_dir: Path | None, source: str) -> None:
        """A live run started: an empty review that grows with it."""
        spec = self.win.spec
        self._night_no += 1
        self.night = None
        self.review = NightReview(Hypnogram(np.zeros(0, np.int8), spec.epoch_s), out_dir,
                                  scorer=self.win.review_panel.scorer_edit.text().strip(),
                                  source=source)
        self.signed_files = []
        self._drawn = -1
        self._state()

    def open_folder(self, folder: str | Path, psg: str | Path | None = None,
                    scorer: str = "") -> None:
        """Read a scored night's folder in the background, then show it for review."""
        w = self.win
        w.controls.show_message(f"opening {folder} ...")
        self._state(f"opening {folder} ...")

        def failed(exc: BaseException) -> None:
            w.controls.show_message(f"could not open {folder}: {exc}", error=True)
            self._state(f"could not open {folder}: {exc}", error=True)
            if w.screenshot_path is not None:  # nothing to picture: do not wait forever
                w.close()

        w.calls.submit("open", lambda: load_night(folder, psg, scorer=scorer), self._loaded,
                       failed)

    def _loaded(self, night: LoadedNight) -> None:
        from .controls import ModelChoice

        w = self.win
        if w.session is not None and w.session.is_active:
            w.controls.show_message("stop scoring before opening a night for review",
                                    error=True)
            return
        if night.spec != w.spec:
            w._build_panels(night.spec)
        else:
            w.store = NightStore(night.spec)
            w._drawn_version, w.shown = -1, None
        fam = night.run_info.get("familiarity_statistics") or {}
        w.store.familiarity_threshold = fam.get("threshold")
        w.store.apply(night.batch)
        w.model, w.night = night.model, w.night + 1
        w.follow = False
        w.follow_box.blockSignals(True)
        w.follow_box.setChecked(False)
        w.follow_box.blockSignals(False)
        w.hypnogram.update_night(w.store)
        w._drawn_version = w.store.version
        if w.store.n_epochs:
            w.stats.update_stats(w.store.hypnogram())
        w._update_familiarity()
        c = w.controls
        w._setup_explainer(ModelChoice(night.intra, night.inter, c.backend_combo.currentText(),
                                       c.explain_combo.currentText()))
        w.setWindowTitle(f"edge-scorer: review of {night.folder}")
        c.set_running(False, can_export=w.store.n_epochs > 0)
        c.show_message(f"reviewing {night.folder}: {w.store.n_epochs} epochs"
                       + (f", signals from {night.psg.name}" if night.psg else ", no signals"))
        self.open_night(night)
        if w.store.n_epochs:
            w.select_epoch(0)
        if w.screenshot_path is not None:
            import time

            w._screenshot_deadline = time.perf_counter() + 30.0

    def open_night(self, night: LoadedNight) -> None:
        """A scored night to review (the window's store is filled by the caller)."""
        self._night_no += 1
        self.night, self.review = night, night.review
        self.signed_files = []
        if night.review.scorer:
            self.win.review_panel.scorer_edit.setText(night.review.scorer)
        self._drawn = -1
        self.refresh()
        self._state("; ".join(night.warnings), error=bool(night.review.warnings))

    def refresh(self) -> None:
        """Follow the automatic stages of a live night; redraw the technician's marks."""
        r, s = self.review, self.win.store
        if r is None:
            return
        if s.n_epochs > r.n_epochs or (s.n_epochs and s.version != self._drawn):
            r.update_automatic(s.stage_array(), s.final_mask())
        if self._drawn != s.version or self._drawn == -1:
            self._draw()
            self._drawn = s.version

    def _draw(self) -> None:
        r = self.review
        if r is None:
            return
        self.win.hypnogram.set_review(r.reviewed_stages(), r.edited_mask(), r.differs_mask())
        self.win.audit_table.show_audit(r.audit)

    def night_finished(self, hyp: Hypnogram) -> None:
        """The live run ended: every automatic stage final, the clock time known."""
        r = self.review
        if r is None:
            return
        r.update_automatic(hyp.stages, np.ones(hyp.n_epochs, bool), start_time=hyp.start_time)
        r.onset_s = hyp.onset_s
        self._draw()
        self._state()

    def show_epoch(self, index: int) -> None:
        """The shown epoch changed: model vs technician, signals (review), occlusion."""
        w, r, s = self.win, self.review, self.win.store
        w.hypnogram.ensure_visible(index)
        if r is not None and index < r.n_epochs:
            w.review_panel.show_epoch(index, s.stages[index], s.proba[index], s.status[index],
                                      r.stage(index), r.is_edited(index))
        if self.night is not None and self.night.signals:
            w.signals.show_epoch(index, self.night.epoch_signals(index))
        if w.epoch.occlusion.index != index:
            w.epoch.occlusion.clear("occlusion: open this tab to compute it for the shown epoch"
                                    if not w.epoch.occlusion_shown else "computing ...")
        if w.epoch.occlusion_shown:
            self.request_occlusion()

    # ------------------------------------------------------------------ changes
    def set_stage(self, code: int) -> None:
        """Set the shown epoch's stage (with the typed note) and show the next epoch."""
        w, r = self.win, self.review
        if r is None or w.shown is None:
            self._state("no epoch to set: open a night or start scoring", error=True)
            return
        try:
            entry = r.set_stage(w.shown, code, w.review_panel.take_note())
        except (ReviewError, OSError) as exc:
            self._state(f"not saved: {exc}", error=True)
            return
        log.debug("epoch %d: %s -> %s", entry.epoch, entry.previous, entry.edited)
        self._draw()
        self._state()
        if w.shown < w.store.n_epochs - 1:
            self.go(w.shown + 1)
        else:
            self.show_epoch(w.shown)

    def add_note(self, text: str) -> None:
        """A note on the shown epoch without a change of stage."""
        w, r = self.win, self.review
        if r is None or w.shown is None:
            return
        try:
            r.add_note(w.shown, text)
        except (ReviewError, OSError) as exc:
            self._state(f"note not saved: {exc}", error=True)
            return
        w.review_panel.note_edit.clear()
        self._draw()
        self._state()

    def sign_off(self, scorer: str) -> list[Path]:
        """Write the reviewed hypnogram (every format), the agreement and a PDF report."""
        from . import export

        r = self.review
        if r is None:
            self._state("nothing to sign off: open a night or score one", error=True)
            return []
        try:
            files = r.sign_off(scorer)
            info = {"night": str(r.folder), "scorer": r.scorer,
                    **self._agreement_lines(r)}
            files.append(export.write_report(r.review_dir / "reviewed_report.pdf",
                                             r.reviewed_hypnogram(), info,
                                             title="edge-scorer: reviewed night"))
        except (ReviewError, OSError, ValueError) as exc:
            self._state(f"not signed off: {exc}", error=True)
            return []
        self.signed_files = files
        self._state(f"signed off by {r.scorer}: {len(files)} files in {r.review_dir}")
        return files

    @staticmethod
    def _agreement_lines(r: NightReview) -> dict[str, str]:
        a = r.agreement()
        n_diff = int(r.differs_mask().sum())
        return {"changes": f"{len(r.audit)} in the audit log, {n_diff} of {r.n_epochs} epochs "
                           "differ from the automatic stages",
                "agreement": f"automatic vs reviewed: accuracy {a.accuracy:.3f}, Cohen's kappa "
                             f"{a.kappa:.3f} ({a.n} epochs)"}

    def _state(self, extra: str = "", error: bool = False) -> None:
        r = self.review
        if r is None:
            self.win.review_panel.show_state(extra or "review: no night", error)
            return
        summary = r.summary()
        where = f"saved in {r.review_dir}" if r.review_dir else "not saved (no output folder)"
        text = (f"review {summary['state']}: {summary['n_changes']} change(s), "
                f"{summary['n_differ']} epoch(s) differ from the model; {where}")
        self.win.review_panel.show_state(text + (f"; {extra}" if extra else ""), error)

    # ------------------------------------------------------------------ occlusion
    def request_occlusion(self) -> None:
        """Compute the shown epoch's occlusion analysis (in the worker thread)."""
        w = self.win
        i = w.shown
        view = w.epoch.occlusion
        if i is None:
            return
        if view.index == i:
            return
        rows = w.store.rows
        if i not in rows:
            view.clear("occlusion needs the epoch's signals: score it in this window, or open "
                       "the night with --edf FILE")
            return
        worker = self._occlusion()
        target = w.store.stages[i] if w.store.stages[i] >= 0 else None
        worker.submit(OcclusionRequest(i, rows[i], rows.get(i - 1), rows.get(i + 1), target,
                                       self._night_no))
        view.clear(f"computing the occlusion analysis of epoch {i} ...")

    def _occlusion(self) -> LatestOnlyWorker:
        intra, inter = self._model_files()
        key = (intra, inter, self.win.spec.hash)
        if self.occlusion_worker is None or key != self._occlusion_key:
            if self.occlusion_worker is not None:
                self.occlusion_worker.close(timeout=0.1)
            self.occlusion_worker = LatestOnlyWorker(
                OcclusionExplainer(self.win.spec, intra, inter), name="occlusion")
            self._occlusion_key = key
        return self.occlusion_worker

    def _model_files(self) -> tuple[Path | None, Path | None]:
        if self.night is not None:
            return self.night.intra, self.night.inter
        choice = self.win.controls.model_choice()
        return choice.intra, choice.inter

    def poll(self) -> None:
        """Deliver finished occlusion analyses of the shown epoch (GUI thread)."""
        if self.occlusion_worker is None:
            return
        for request, result in self.occlusion_worker.poll():
            if request.index != self.win.shown or request.night != self._night_no:
                continue
            if isinstance(result, WorkerError):
                self.win.epoch.occlusion.clear(f"no occlusion analysis: {result}")
            else:
                self.win.epoch.occlusion.show_result(request.index, result)

    def close(self) -> None:
        """Stop the worker and the key filter."""
        app = QtWidgets.QApplication.instance()
        if app is not None:
            app.removeEventFilter(self)
        if self.occlusion_worker is not None:
            self.occlusion_worker.close(timeout=0.5)
            self.occlusion_worker = None


__all__ = ["PAGE_KEYS", "STAGE_KEYS", "ZOOM_STEP", "ReviewController"]
