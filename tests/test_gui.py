"""The bedside window, offscreen, on real replayed LSL streams scored by ONNX Runtime.

The window lists the streams on the network, scores the one picked, its panels update while
the night runs (provisional epochs drawn apart from final ones), a click on the hypnogram shows
that epoch's image, probabilities and explanation; the night is stopped, made final and
exported. Screenshots of the window are written as PNG into the test's output folder and must
not be blank. ``edge-scorer gui --edf ... --start --screenshot`` runs a file end to end.
"""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

import importlib.util  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pytest  # noqa: E402

pytest.importorskip("PySide6", reason="the window needs the gui extra (PySide6-Essentials)")
pytest.importorskip("pyqtgraph", reason="the window needs the gui extra (pyqtgraph)")
pytest.importorskip("pytestqt", reason="the window tests need pytest-qt")

from PIL import Image  # noqa: E402
from PySide6 import QtCore  # noqa: E402
from PySide6.QtTest import QTest  # noqa: E402

from edge_scorer.cli import main  # noqa: E402
from edge_scorer.io.hypnogram_io import read_hypnogram  # noqa: E402
from edge_scorer.io.spec import load_spec  # noqa: E402
from edge_scorer.stream.replay import Replayer  # noqa: E402
from gui.app import MainWindow  # noqa: E402
from gui.explainer import TORCH_HINT  # noqa: E402
from gui.export import export_hypnogram, save_hypnogram_png, write_report  # noqa: E402
from gui.launch import create_app  # noqa: E402
from gui.panels.hypnogram import density_image  # noqa: E402
from gui.panels.signals import minmax_decimate  # noqa: E402

HAS_TORCH = importlib.util.find_spec("torch") is not None
SPEED = 300.0


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> tuple[Path, Path]:
    """A simulated 0.25-h night (30 epochs) in the Sleep-EDF layout, as real EDF files."""
    from edge_scorer.simulate import simulate_nights

    (psg, hyp), = simulate_nights(tmp_path_factory.mktemp("night"), 1, layout="sleep-edf",
                                  seed=11, duration_h=0.25)
    return psg, hyp


def assert_not_blank(path: Path) -> np.ndarray:
    """The PNG exists, has a real size and shows more than a flat background."""
    img = np.asarray(Image.open(path).convert("RGB"))
    assert img.shape[0] > 200 and img.shape[1] > 300
    assert img.std() > 10.0
    rgb = img.astype(np.int32)
    packed = (rgb[..., 0] << 16) | (rgb[..., 1] << 8) | rgb[..., 2]
    assert len(np.unique(packed)) > 50  # many colours, not a flat or two-tone picture
    return img


def click_epoch(win: MainWindow, index: int) -> None:
    """A real left click on the middle of an epoch of the hypnogram."""
    panel = win.hypnogram
    pos = panel.view.mapFromScene(panel.scene_pos_of(index))
    QTest.mouseClick(panel.view.viewport(), QtCore.Qt.MouseButton.LeftButton,
                     QtCore.Qt.KeyboardModifier.NoModifier, pos)


def test_window_scores_a_live_stream(qtbot, night, tmp_path):
    create_app()
    psg, hyp_path = night
    spec = load_spec("sleep-edf")
    name = f"gui-test-{uuid.uuid4().hex[:8]}"
    rep = Replayer(psg, spec, name=name, speed=SPEED, hypnogram=hyp_path,
                   wait_for_consumers_s=20.0).start()
    win = MainWindow(out_dir=tmp_path / "runs")
    qtbot.addWidget(win)
    win.resize(1500, 950)
    win.show()
    try:
        # the stream list: what is on the network, with name, type, channels, rate, host
        win.refresh_streams()
        qtbot.waitUntil(lambda: any(s.name == name for s in win.controls.streams),
                        timeout=15000)
        row = next(s for s in win.controls.streams if s.name == name)
        assert (row.type, row.n_channels, row.sfreq) == ("EEG", 3, 100.0) and row.host
        win.controls.select_stream(name)
        # the channel mapping reads the stream's labels (and its 1-Hz companion's)
        box = win.controls.channels
        qtbot.waitUntil(lambda: "EMG submental" in box.available, timeout=15000)
        assert box.result.text().startswith("mapping: EEG Fpz-Cz <- EEG Fpz-Cz")
        win.controls.explain_combo.setCurrentText("chefer")
        win.start()
        qtbot.waitUntil(lambda: win.store.n_epochs >= 14 and 3 in win.store.images,
                        timeout=30000)
        qtbot.waitUntil(lambda: win.hypnogram.n_epochs >= 14, timeout=5000)
        # while the stream runs: provisional epochs at the end, final ones before
        s = win.store
        assert win.session.state == "running"
        assert 0 < win.hypnogram.n_final < win.hypnogram.n_epochs
        assert s.status[-1] != "final" and s.status[0] == "final"
        x, _ = win.hypnogram.prov_curve.getData()
        assert x is not None and len(x) == win.hypnogram.n_epochs - win.hypnogram.n_final + 1
        assert win.hypnogram.density_item.image.shape[1] == win.hypnogram.n_epochs
        assert win.hypnogram.quality_item.image.shape[:2] == (spec.n_rows,
                                                               win.hypnogram.n_epochs)
        assert 0 < win.signals.n_points_drawn < win.signals.n_samples_in
        assert win.follow and win.shown is not None
        qtbot.waitUntil(lambda: win.stats.values.get("tib_min", 0) > 0, timeout=5000)
        live_png = win.save_screenshot(tmp_path / "window-live.png")
        assert_not_blank(live_png)

        # a click on the hypnogram selects the epoch and shows its image and probabilities
        click_epoch(win, 3)
        qtbot.waitUntil(lambda: win.shown == 3, timeout=5000)
        assert not win.follow and win.hypnogram.selected == 3
        np.testing.assert_array_equal(win.epoch.image_item.image, s.images[3])
        np.testing.assert_allclose(win.epoch.proba_bars.opts["height"], s.proba[3])
        assert win.epoch.header.text().startswith("epoch 3 ")
        assert win.quality.title.text().endswith("epoch 3") and len(win.quality.flags) == 4
        if HAS_TORCH:
            qtbot.waitUntil(lambda: win.epoch.explained_index == 3, timeout=40000)
            exp = win.epoch.explanation
            assert exp.heatmap.shape == (224, 224) and exp.row_share.sum() == pytest.approx(1)
            assert win.epoch.overlay_item.image.shape == (224, 224, 4)
            assert 3 in exp.window_epochs and len(exp.window_epochs) > 1
            assert len(win.epoch.inter_bars.opts["x"]) == len(exp.window_epochs)
        else:
            qtbot.waitUntil(lambda: TORCH_HINT in win.epoch.text.text(), timeout=10000)
        win.save_screenshot(tmp_path / "window-epoch-3.png")
        assert_not_blank(tmp_path / "window-epoch-3.png")
        assert box.result.text().startswith("in use: EEG Fpz-Cz <- EEG Fpz-Cz")

        # review while the night is scored: a stage key on the shown epoch, saved at once
        QTest.keyClick(win.hypnogram.view, QtCore.Qt.Key.Key_2)
        assert win.reviewer.review.stage(3) == 2 and win.shown == 4
        audit = (win.session.out_dir / "review" / "audit.csv").read_text().splitlines()
        assert len(audit) == 2 and audit[1].startswith("3,90,")
        assert audit[1].split(",")[5] in ("provisional", "revised", "final")

        # stop: every epoch becomes final, the night's files are written
        qtbot.waitUntil(lambda: rep.wait(0), timeout=30000)
        qtbot.waitUntil(lambda: win.session.live.source.n_pulled >= sum(rep.n_pushed),
                        timeout=10000)
        win.stop()
        qtbot.waitUntil(lambda: win.session.state == "finished", timeout=30000)
        qtbot.waitUntil(lambda: win.controls.export_buttons["report"].isEnabled(), timeout=5000)
        assert s.n_epochs == 30 and set(s.status) == {"final"}
        assert win.hypnogram.n_final == 30 and not win.hypnogram.prov_band.isVisible()
        run_dir = win.session.out_dir
        assert read_hypnogram(run_dir / "hypnogram.csv").n_epochs == 30
        signed = win.reviewer.sign_off("T")             # the live night, reviewed, signed off
        assert {"reviewed_hypnogram.edf", "agreement.json"} <= {p.name for p in signed}
        reviewed = read_hypnogram(run_dir / "review" / "reviewed_hypnogram.csv")
        assert reviewed.stages[3] == 2 and reviewed.n_epochs == 30
        final_png = win.save_screenshot(tmp_path / "window-final.png")
        assert_not_blank(final_png)

        # exports from the window
        csv = win.export("hypnogram", tmp_path / "export" / "night.csv")
        edf = win.export("hypnogram", tmp_path / "export" / "night.edf")
        back = read_hypnogram(csv)
        np.testing.assert_array_equal(back.stages, s.stage_array())
        assert read_hypnogram(edf).n_epochs == 30
        assert_not_blank(win.export("png", tmp_path / "export" / "hypnogram.png"))
        assert_not_blank(win.export("report", tmp_path / "export" / "report.png"))
        pdf = win.export("report", tmp_path / "export" / "report.pdf")
        assert pdf.read_bytes()[:5] == b"%PDF-" and pdf.stat().st_size > 5000
        with pytest.raises(ValueError, match="cannot export a hypnogram"):
            win.export("hypnogram", tmp_path / "night.txt")
    finally:
        rep.stop()
        win.close()


def test_gui_command_replays_a_file(qtbot, night, tmp_path):
    """``edge-scorer gui --edf NIGHT --start --screenshot PNG``: the file is replayed, scored,
    the window saves its picture at the end and closes."""
    app = create_app()
    psg, hyp = night
    guard = QtCore.QTimer()
    guard.setSingleShot(True)
    guard.timeout.connect(app.closeAllWindows)  # never hang the suite
    guard.start(60000)
    png = tmp_path / "gui.png"
    out = tmp_path / "out"
    try:
        rc = main(["gui", "--edf", str(psg), "--hypnogram", str(hyp), "--start", "--speed",
                   str(SPEED), "--explain", "rollout", "-o", str(out), "--screenshot", str(png)])
    finally:
        guard.stop()
    assert rc == 0
    assert_not_blank(png)
    assert read_hypnogram(out / "hypnogram.csv").n_epochs == 30
    assert (out / "epochs.csv").is_file() and (out / "stats.json").is_file()


def test_gui_command_errors(tmp_path):
    assert main(["gui", "--start"]) == 2
    assert main(["gui", "--hypnogram", str(tmp_path / "h.csv")]) == 2
    assert main(["gui", "--edf", str(tmp_path / "missing.edf"), "--start"]) == 2
    assert main(["gui", "--edf", str(tmp_path / "x.edf"), "--screenshot", "a.png"]) == 2


def test_gui_command_without_qt_says_how_to_install():
    code = ("import sys; sys.modules['PySide6'] = None\n"
            "from edge_scorer.cli import main\n"
            "sys.exit(main(['gui']))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60, cwd=Path(__file__).resolve().parents[1])
    assert proc.returncode == 2
    assert "pip install 'edge-scorer[gui]'" in proc.stderr and "PySide6" in proc.stderr


def test_exports_of_a_real_hypnogram(qapp, shared_data, tmp_path):
    """The picture and report of a real Sleep-EDF expert hypnogram (a whole night in bed)."""
    path = sorted((shared_data / "hypnograms").glob("*_inbed_hypnogram.csv"))[0]
    hyp = read_hypnogram(path)
    assert hyp.n_epochs > 500 and hyp.probabilities is None
    assert_not_blank(save_hypnogram_png(hyp, tmp_path / "real.png", title=path.name))
    report = write_report(tmp_path / "real.pdf", hyp, {"source": path.name})
    assert report.read_bytes()[:5] == b"%PDF-"
    assert_not_blank(write_report(tmp_path / "real-report.png", hyp, {"source": path.name}))
    assert export_hypnogram(hyp, tmp_path / "real.tsv").is_file()
    with pytest.raises(ValueError, match="PDF or PNG"):
        write_report(tmp_path / "real.docx", hyp)


def test_drawing_helpers():
    t = np.arange(3000) / 100.0
    x = np.sin(t) * 10
    x[1500] = 99.0
    td, xd = minmax_decimate(t, x, 100)
    assert td.size == 200 and xd.max() == 99.0 and xd.min() == pytest.approx(x.min())
    assert minmax_decimate(t[:50], x[:50], 100)[1].size == 50
    proba = np.array([[1, 0, 0, 0, 0], [0, 0, 0, 0.5, 0.5], [0, 0, 0, 0, 0]], float)
    img = density_image(proba, steps=10)
    assert img.shape == (10, 3, 4)
    assert (img[:, 0] == img[0, 0]).all()                  # all W
    assert (img[:5, 1] == img[0, 1]).all() and (img[5:, 1] == img[9, 1]).all()
    assert not (img[0, 1] == img[9, 1]).all()              # N3 below, REM above
    assert (img[:, 2, 3] == 0).all()                        # no probabilities: transparent


def test_window_updates_keep_reference_counts(qapp):
    """Redrawing the panels many times must not give up references to None that it does not
    own: PySide6 6.12 on Python 3.11 releases one per call returning nothing, and the window
    aborts after some minutes ("deallocating None"). Also no Python objects pile up."""
    import gc

    from edge_scorer.engine.rolling import EpochUpdate
    from gui.store import ScoredEpochs, channel_quality

    create_app()
    win = MainWindow()
    win.resize(1200, 800)
    win.show()
    try:
        spec = win.spec
        rng = np.random.default_rng(0)
        for i in range(40):
            p = rng.dirichlet(np.ones(5))
            img = (rng.random((224, 224)) > 0.9).astype(np.uint8) * 255
            win.store.apply(ScoredEpochs(
                [EpochUpdate(i, i * 30.0, int(p.argmax()), p, "final", 10)], {i: img},
                {i: channel_quality(rng.normal(0, 10, (spec.n_rows, 3000)), spec)}))
        signals = {r.name: (100.0, rng.normal(0, 10, 3000)) for r in spec.rows}

        def redraw(i: int) -> None:
            win.hypnogram.update_night(win.store)
            win.select_epoch(i % 40)
            win.stats.update_stats(win.store.hypnogram())
            win.signals.update_signals(signals)
            qapp.processEvents()

        for i in range(80):  # warm caches (every epoch selected twice)
            redraw(i)
        gc.collect()
        before, n_objects = sys.getrefcount(None), len(gc.get_objects())
        for i in range(200):
            redraw(i)
        gc.collect()
        assert sys.getrefcount(None) - before > -50  # 6.12 on 3.11: about -3000
        assert len(gc.get_objects()) - n_objects < 500
        assert win.shown == 199 % 40 and win.hypnogram.n_epochs == 40
    finally:
        win.close()


def test_window_reports_a_source_that_cannot_start(qtbot, tmp_path):
    create_app()
    bad = tmp_path / "not-a-psg.edf"
    bad.write_bytes(b"this is not an EDF file" * 20)
    win = MainWindow(out_dir=tmp_path / "runs")
    qtbot.addWidget(win)
    win.controls.set_file(bad, speed=100)
    win.start()
    assert not win.controls.start_button.isEnabled()  # while connecting in the background
    qtbot.waitUntil(lambda: "could not start" in win.controls.message.text(), timeout=20000)
    assert win.controls.start_button.isEnabled() and win.session is None
    win.controls.set_file(tmp_path / "missing.edf")
    win.start()
    assert "not found" in win.controls.message.text()
