"""Review in the bedside window, offscreen, driven by real key presses and mouse clicks.

A simulated night is scored by the engine (ONNX Runtime) and opened with ``MainWindow.
open_night`` (what ``edge-scorer review NIGHT_DIR`` does): the keyboard pages through the
epochs and sets stages, the mouse clicks stage buttons and the hypnogram, the wheel and the
scroll bar move the hypnogram; the audit log and the signed-off files are read back from disk,
the night is reopened and signed off again. Also: the occlusion tab, the channel mapping of the
source panel, ``edge-scorer review --screenshot`` and the platform-plugin check.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import csv  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402
from xml.etree import ElementTree  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6", reason="the window needs the gui extra (PySide6-Essentials)")
pytest.importorskip("pyqtgraph", reason="the window needs the gui extra (pyqtgraph)")
pytest.importorskip("pytestqt", reason="the window tests need pytest-qt")

from PySide6 import QtCore, QtGui  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402
from test_gui import assert_not_blank, click_epoch  # noqa: E402

from edge_scorer.cli import main  # noqa: E402
from edge_scorer.io.hypnogram_io import read_hypnogram  # noqa: E402
from edge_scorer.stages import Stage  # noqa: E402
from gui.app import MainWindow  # noqa: E402
from gui.launch import create_app  # noqa: E402

SIM_NIGHT = (0.25, 7)  # 30 epochs
Key = QtCore.Qt.Key


@pytest.fixture(scope="module")
def scored(sim_night, tmp_path_factory, model):
    """The simulated night scored by the engine: its output folder (run.json names the EDF)."""
    from edge_scorer.engine.offline import score_file

    out = tmp_path_factory.mktemp("scored")
    score_file(sim_night[0], model, out, progress=False)
    return out


def open_window(qtbot, folder: Path, psg: Path | None = None) -> MainWindow:
    create_app()
    win = MainWindow()
    qtbot.addWidget(win)
    win.resize(1500, 950)
    win.show()
    win.controls.explain_combo.setCurrentText("off")
    win.open_night(folder, psg)
    qtbot.waitUntil(lambda: win.reviewer.night is not None and win.shown == 0, timeout=30000)
    return win


def key(win: MainWindow, k, widget=None) -> None:
    QTest.keyClick(widget or win.hypnogram.view, k)


def audit_rows(folder: Path) -> list[dict]:
    with open(folder / "review" / "audit.csv", newline="") as fh:
        return list(csv.DictReader(fh))


def test_review_with_keys_and_mouse(qtbot, scored, sim_night, tmp_path):
    folder = shutil.copytree(scored, tmp_path / "night")
    auto = read_hypnogram(folder / "hypnogram.csv").stages
    win = open_window(qtbot, folder)
    s = win.store
    assert s.n_epochs == 30 and len(s.images) == 30 and len(s.rows) == 30
    assert set(s.status) == {"final"} and s.n_updates > 30      # every row of epochs.csv
    np.testing.assert_array_equal(s.stage_array(), auto)
    assert win.signals.n_samples_in > 0 and "epoch 0" in win.signals.plot.getPlotItem() \
        .getAxis("bottom").labelText
    assert "not reviewed yet" in win.review_panel.tech_label.text()

    # keyboard paging
    key(win, Key.Key_Right)
    assert win.shown == 1
    key(win, Key.Key_Down, win.epoch)                 # from another panel too
    assert win.shown == 11
    key(win, Key.Key_End)
    assert win.shown == 29
    key(win, Key.Key_Home)
    assert win.shown == 0
    key(win, Key.Key_Left)                            # stays inside the night
    assert win.shown == 0

    # staging keys: set and go to the next epoch
    key(win, Key.Key_Right)
    key(win, Key.Key_3)
    assert win.reviewer.review.stage(1) == Stage.N3 and win.shown == 2
    # typing a note does not stage; the note goes with the next change (a mouse click)
    QTest.keyClicks(win.review_panel.note_edit, "W2 spindles R")
    assert win.shown == 2 and 2 not in win.reviewer.review.edits
    QTest.mouseClick(win.review_panel.buttons[int(Stage.REM)], QtCore.Qt.MouseButton.LeftButton)
    assert win.reviewer.review.stage(2) == Stage.REM and win.shown == 3
    assert win.review_panel.note_edit.text() == ""
    key(win, Key.Key_U)
    assert win.reviewer.review.stage(3) == Stage.UNSCORED and win.shown == 4
    click_epoch(win, 20)                               # a click on the hypnogram jumps there
    qtbot.waitUntil(lambda: win.shown == 20, timeout=5000)
    key(win, Key.Key_W)
    key(win, Key.Key_1)
    key(win, Key.Key_2)
    assert [win.reviewer.review.stage(i) for i in (20, 21, 22)] == [0, 1, 2]
    key(win, Key.Key_R)
    assert win.reviewer.review.stage(23) == Stage.REM and win.shown == 24
    assert "technician" in win.review_panel.tech_label.text()
    win.select_epoch(2)
    assert "set by the technician" in win.review_panel.tech_label.text()
    assert "REM" in win.review_panel.tech_label.text()

    # saved with the night after every change
    rows = audit_rows(folder)
    assert [int(r["epoch"]) for r in rows] == [1, 2, 3, 20, 21, 22, 23]
    assert [r["edited"] for r in rows] == ["N3", "REM", "UNS", "W", "N1", "N2", "REM"]
    assert [r["automatic"] for r in rows] == [Stage(int(auto[int(r["epoch"])])).label
                                             for r in rows]
    assert rows[1]["note"] == "W2 spindles R" and rows[0]["note"] == ""
    assert win.audit_table.table.rowCount() == 7
    assert win.hypnogram.n_edited == 7
    differ = [int(r["epoch"]) for r in rows if r["edited"] != r["automatic"]]
    x, _ = win.hypnogram.edit_marks.getData()
    assert len(x) == 2 * len(differ)

    # zoom and scroll the hypnogram: keys, the wheel, the scroll bar, a click on the audit log
    hyp = win.hypnogram
    lo, hi = hyp.view_epochs()
    key(win, Key.Key_Plus)
    lo2, hi2 = hyp.view_epochs()
    assert hyp.zoomed and hi2 - lo2 == pytest.approx((hi - lo) / 2, rel=0.02)
    assert lo2 <= 2 < hi2                                # around the shown epoch
    vp = hyp.view.viewport()
    centre = QtCore.QPointF(hyp.view.mapFromScene(hyp.scene_pos_of(10)))
    wheel = QtGui.QWheelEvent(centre, QtCore.QPointF(vp.mapToGlobal(centre.toPoint())),
                              QtCore.QPoint(0, 0), QtCore.QPoint(0, 240),
                              QtCore.Qt.MouseButton.NoButton,
                              QtCore.Qt.KeyboardModifier.NoModifier,
                              QtCore.Qt.ScrollPhase.NoScrollPhase, False)
    QtCore.QCoreApplication.sendEvent(vp, wheel)
    lo3, hi3 = hyp.view_epochs()
    assert hi3 - lo3 < hi2 - lo2 and hyp.zoomed
    hyp.scrollbar.setValue(hyp.scrollbar.value() + 5)
    assert hyp.view_epochs()[0] == pytest.approx(lo3 + 5, abs=1)
    win.audit_table.table.cellClicked.emit(0, 0)          # newest first: epoch 23
    assert win.shown == 23
    key(win, Key.Key_A)
    assert not hyp.zoomed

    # occlusion tab: computed for the shown epoch off the GUI thread
    win.epoch.tabs.setCurrentWidget(win.epoch.occlusion)
    qtbot.waitUntil(lambda: win.epoch.occlusion.index == 23, timeout=60000)
    res = win.epoch.occlusion.result
    assert res.time_drop.shape == (5, 29) and res.modality_names == ["EEG", "EOG", "EMG"]
    assert "epoch 23" in win.epoch.occlusion.message.text()

    # sign-off: refused without a name, then every format and the agreement report
    QTest.mouseClick(win.review_panel.sign_button, QtCore.Qt.MouseButton.LeftButton)
    assert "scorer's name" in win.review_panel.state_label.text()
    assert not (folder / "review" / "agreement.json").exists()
    QTest.keyClicks(win.review_panel.scorer_edit, "TK")
    QTest.mouseClick(win.review_panel.sign_button, QtCore.Qt.MouseButton.LeftButton)
    assert "signed off by TK" in win.review_panel.state_label.text()
    expected = auto.copy()
    for r in rows:
        expected[int(r["epoch"])] = int(Stage[r["edited"]]) if r["edited"] != "UNS" else -1
    out = folder / "review"
    for name in ("reviewed_hypnogram.csv", "reviewed_hypnogram.edf", "reviewed_events.tsv",
                 "reviewed_hypnogram.xml"):
        np.testing.assert_array_equal(read_hypnogram(out / name).stages, expected, name)
    assert ElementTree.parse(out / "reviewed_hypnogram.xml").getroot().tag == "PSGAnnotation"
    report = json.loads((out / "agreement.json").read_text())
    assert report["n_changed_epochs"] == len(differ) and report["scorer"] == "TK"
    assert (out / "reviewed_report.pdf").read_bytes()[:5] == b"%PDF-"
    assert_not_blank(win.save_screenshot(tmp_path / "review.png"))
    win.close()

    # reopen: the review is back; one more change; sign off again
    win2 = open_window(qtbot, folder, sim_night[0])
    review = win2.reviewer.review
    np.testing.assert_array_equal(review.reviewed_stages(), expected)
    assert review.scorer == "TK" and win2.review_panel.scorer_edit.text() == "TK"
    assert win2.hypnogram.n_edited == 7 and win2.audit_table.table.rowCount() == 7
    key(win2, Key.Key_2)
    assert review.stage(0) == Stage.N2 and len(audit_rows(folder)) == 8
    assert json.loads((out / "review.json").read_text())["state"] == "in progress"
    QTest.mouseClick(win2.review_panel.sign_button, QtCore.Qt.MouseButton.LeftButton)
    expected[0] = int(Stage.N2)
    np.testing.assert_array_equal(read_hypnogram(out / "reviewed_hypnogram.edf").stages,
                                  expected)
    assert json.loads((out / "review.json").read_text())["state"] == "signed off"
    win2.close()


def test_review_command_and_its_errors(qtbot, scored, tmp_path):
    create_app()
    folder = shutil.copytree(scored, tmp_path / "night")
    png = tmp_path / "review.png"
    guard = QtCore.QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(QtCore.QCoreApplication.instance().closeAllWindows)
    guard.start(60000)
    try:
        rc = main(["review", str(folder), "--scorer", "AB", "--explain", "off",
                   "--screenshot", str(png)])
    finally:
        guard.stop()
    assert rc == 0
    assert_not_blank(png)
    assert main(["review", str(tmp_path / "missing")]) == 2
    assert main(["review", str(tmp_path)]) == 2                   # no scored night there
    assert main(["review", str(folder), "--edf", str(tmp_path / "x.edf")]) == 2


def test_channel_mapping_in_the_source_panel(qtbot, sim_night):
    create_app()
    win = MainWindow()
    qtbot.addWidget(win)
    box = win.controls.channels
    assert "not known yet" in box.result.text()
    win.controls.set_file(sim_night[0])
    assert "EEG Fpz-Cz" in box.available and box.check() is not None
    assert box.result.text().startswith("mapping: EEG Fpz-Cz <- EEG Fpz-Cz")
    combo = box.combos["EEG Pz-Oz"]
    combo.setCurrentText("EEG Fpz-Cz")                            # both rows on one channel
    assert box.overrides() == {"EEG Pz-Oz": "EEG Fpz-Cz"}
    assert "EEG Pz-Oz <- EEG Fpz-Cz" in box.result.text() or "lacks" in box.result.text()
    combo.setCurrentText("no such channel")
    assert "has no channel 'no such channel'" in box.result.text()
    combo.setCurrentText("automatic")
    assert box.overrides() == {} and box.check() is not None
    with pytest.raises(ValueError, match="unknown row"):
        box.set_overrides({"EEG C3": "x"})


def test_platform_check_names_the_debian_packages():
    """Qt aborts the process when its xcb plugin misses system libraries; the check names
    them and their Debian/Ubuntu packages first (real ldd on the installed plugin)."""
    import gui

    assert gui.platform_problem({"QT_QPA_PLATFORM": "offscreen"}) is None
    assert "DISPLAY" in gui.platform_problem({"QT_QPA_PLATFORM": "xcb"})
    plugin = gui._xcb_plugin()
    if plugin is None:
        pytest.skip("PySide6's xcb plugin is not installed here")
    missing = gui.missing_libraries(plugin)
    env = {"QT_QPA_PLATFORM": "xcb", "DISPLAY": ":97"}
    problem = gui.platform_problem(env)
    if not missing:
        assert problem is None
        pytest.skip("every library of the xcb plugin is installed here (nothing to report)")
    assert "sudo apt-get install" in problem
    for lib in missing:
        assert lib in problem and gui.XCB_PACKAGES.get(lib, "apt-file") in problem
    code = "import sys; from edge_scorer.cli import main; sys.exit(main(['gui']))"
    proc = subprocess.run([sys.executable, "-c", code],
                          env={**os.environ, **env}, capture_output=True, text=True,
                          timeout=120, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2, proc.stderr[-2000:]              # an error, not Qt's abort
    assert "apt-get install" in proc.stderr and missing[0] in proc.stderr
