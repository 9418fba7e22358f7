"""Entry points of the window: :func:`run_window` (``edge-scorer gui``),
:func:`run_review` (``edge-scorer review``), :func:`run_demo_gui` (``edge-scorer demo --gui``),
and :func:`create_app`."""

from __future__ import annotations

from pathlib import Path

from PySide6 import QtCore, QtWidgets

from . import binding_problem, platform_problem
from .app import MainWindow
from .controls import list_streams
from .session import FileSource, StreamSource
from .theme import apply_dark_palette


def create_app():
    """The ``QApplication`` (created when there is none) with the window's palette.

    Raises
    ------
    RuntimeError
        The installed PySide6 is known to crash with this Python (see
        :func:`gui.binding_problem`), or Qt's platform plugin cannot be loaded here (see
        :func:`gui.platform_problem`: Qt would abort the process).
    """
    app = QtWidgets.QApplication.instance()
    problem = binding_problem() or (platform_problem() if app is None else None)
    if problem:
        raise RuntimeError(problem)
    app = app or QtWidgets.QApplication(["edge-scorer"])
    apply_dark_palette(app)
    return app


def run_window(*, source: StreamSource | FileSource | None = None,
               intra: str | Path | None = None, inter: str | Path | None = None,
               backend: str = "onnxruntime", explain: str = "chefer",
               out_dir: str | Path | None = None, start: bool = False,
               screenshot: str | Path | None = None, size: tuple[int, int] = (1600, 1000),
               channel_overrides: dict[str, str] | None = None) -> int:
    """Open the window and run the Qt event loop until it closes.

    Parameters
    ----------
    source : StreamSource or FileSource, optional
        Pre-selected source (a stream is selected once listed).
    intra, inter, backend, explain
        Model files (default: the shipped model), backend, explanation method (or ``off``).
    out_dir : path-like, optional
        Output folder of the runs.
    channel_overrides : dict, optional
        ``{spec row: channel label}``.
    start : bool
        Start scoring at once.
    screenshot : path-like, optional
        When the run ends, save a PNG of the window there and close it.

    Returns
    -------
    int
        0, or 130 / 143 when SIGINT / SIGTERM closed the window. Either signal closes the
        window as its close button does: the run is stopped, its epochs made final and the
        night's files written; a second signal aborts at once.
    """
    app = create_app()
    win = MainWindow(out_dir=out_dir, channel_overrides=channel_overrides)
    c = win.controls
    if intra is not None:
        c.add_model(Path(intra), None if inter is None else Path(inter))
    c.backend_combo.setCurrentText(backend)
    c.explain_combo.setCurrentText(explain)
    win.resize(*size)
    win.show()
    win.screenshot_path = Path(screenshot) if screenshot is not None else None
    if isinstance(source, FileSource):
        c.set_file(source.psg, source.hypnogram, source.speed)
        if start:
            win.start()
    elif isinstance(source, StreamSource):
        def listed(rows) -> None:
            win.show_streams(rows)
            try:
                c.select_stream(source.name)
            except ValueError as exc:
                c.show_message(str(exc), error=True)
                return
            if start:
                win.start()

        win.calls.submit("streams", lambda: list_streams(1.0), listed)
    else:
        win.refresh_streams()
    return _exec(app, win)


def _exec(app, win: MainWindow) -> int:
    """Run the event loop until the window closes; SIGINT/SIGTERM close it."""
    from edge_scorer.engine.shutdown import Shutdown

    with Shutdown("the window's night") as stop:
        # Python runs signal handlers only between bytecodes: a timer gives it the chance
        # while Qt's event loop waits, and closes the window (which finalizes the run).
        timer = QtCore.QTimer()
        timer.setInterval(200)
        timer.timeout.connect(lambda: stop.requested and win.isVisible() and win.close())
        timer.start()
        app.exec()
        timer.stop()
    return stop.exit_code


def run_review(night: str | Path, psg: str | Path | None = None, *, scorer: str = "",
               explain: str = "chefer", screenshot: str | Path | None = None,
               size: tuple[int, int] = (1600, 1000)) -> int:
    """Open the window on a scored night's folder for review (``edge-scorer review``).

    Parameters
    ----------
    night : path-like
        The night's folder.
    psg : path-like, optional
        The PSG file that was scored (default: the file ``run.json`` names).
    scorer : str
        The reviewer's name or initials.
    explain : str
        Relevance method (or ``off``).
    screenshot : path-like, optional
        Save a PNG of the window once the night is shown (and explained), then close.

    Returns
    -------
    int
        0, or 130 / 143 when SIGINT / SIGTERM closed the window (the review is saved after
        every change).
    """
    app = create_app()
    win = MainWindow()
    win.controls.explain_combo.setCurrentText(explain)
    win.review_panel.scorer_edit.setText(scorer)
    win.resize(*size)
    win.show()
    win.screenshot_path = Path(screenshot) if screenshot is not None else None
    win.open_night(night, psg, scorer)
    return _exec(app, win)


def run_demo_gui(psg: str | Path, hypnogram: str | Path | None, out_dir: str | Path,
                 speed: float, explain: str = "chefer",
                 channel_overrides: dict[str, str] | None = None) -> int:
    """``edge-scorer demo --gui``: the window replaying the demo night and scoring it at once
    (the shipped model, ONNX Runtime); files go to ``out_dir``. Returns the exit code."""
    return run_window(source=FileSource(Path(psg), None if hypnogram is None else Path(hypnogram),
                                        float(speed)),
                      out_dir=out_dir, start=True, explain=explain,
                      channel_overrides=channel_overrides)


__all__ = ["create_app", "run_demo_gui", "run_review", "run_window"]
