"""The bedside window of edge-scorer (PySide6 + pyqtgraph).

``edge-scorer gui`` opens :class:`gui.app.MainWindow`: pick a live LSL stream (or a PSG file to
replay as one) and a model/backend, start, and watch the night being scored: live signals, the
hypnogram with provisional, revised and final epochs, the hypnodensity, the rendered epoch with
its relevance map, per-channel signal quality, sleep statistics and latency. Scoring and
explanations run off the GUI thread; the window pulls their results on timers.

Importing this package does not import Qt (so the CLI can report a missing install clearly);
the Qt modules are :mod:`gui.app`, :mod:`gui.controls`, :mod:`gui.panels` and :mod:`gui.export`.
:mod:`gui.session`, :mod:`gui.store`, :mod:`gui.workers` and :mod:`gui.explainer` need no Qt.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import sys

#: How to install what the window needs.
INSTALL_HINT = "pip install 'edge-scorer[gui]'"
#: Modules the window needs (import name -> distribution name).
REQUIRED = {"PySide6": "PySide6-Essentials", "pyqtgraph": "pyqtgraph"}


def missing_modules() -> list[str]:
    """Distributions of :data:`REQUIRED` that cannot be imported here (empty when all can)."""
    missing = []
    for module, dist in REQUIRED.items():
        try:
            found = importlib.util.find_spec(module) is not None
        except (ImportError, ValueError):  # a module blocked in sys.modules, a broken install
            found = False
        if not found:
            missing.append(dist)
    return missing


def binding_problem() -> str | None:
    """What is wrong with the installed Qt binding for this Python, with the fix (None: fine).

    PySide6 6.12 on Python 3.11 gives up references to ``None``/``True``/``False`` that it does
    not own on every call returning nothing (verified with 6.12.0: one reference per call);
    a running window then aborts within minutes ("deallocating None"). Python 3.12 and later
    are not affected (those objects are immortal there).
    """
    if sys.version_info >= (3, 12):
        return None
    try:
        version = importlib.metadata.version("shiboken6")
    except importlib.metadata.PackageNotFoundError:
        return None
    parts = tuple(int(p) for p in version.split(".")[:2] if p.isdigit())
    if parts >= (6, 12):
        return (f"PySide6 {version} corrupts reference counts on Python "
                f"{sys.version_info.major}.{sys.version_info.minor} (the window would crash "
                "within minutes); install an earlier release: "
                "pip install 'PySide6-Essentials>=6.5,<6.12'")
    return None


__all__ = ["INSTALL_HINT", "REQUIRED", "binding_problem", "missing_modules"]
