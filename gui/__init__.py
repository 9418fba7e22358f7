"""The bedside window of edge-scorer (PySide6 + pyqtgraph).

``edge-scorer gui`` opens :class:`gui.app.MainWindow`: pick a live LSL stream (or a PSG file to
replay as one) and a model/backend, start, and watch the night being scored: live signals, the
hypnogram with provisional, revised and final epochs, the hypnodensity, the rendered epoch with
its relevance map, per-channel signal quality, sleep statistics and latency. Scoring and
explanations run off the GUI thread; the window pulls their results on timers.

Importing this package does not import Qt (so the CLI can report a missing install, or system
libraries Qt's platform plugin lacks, :func:`platform_problem`, clearly);
the Qt modules are :mod:`gui.app`, :mod:`gui.controls`, :mod:`gui.panels` and :mod:`gui.export`.
:mod:`gui.session`, :mod:`gui.store`, :mod:`gui.workers` and :mod:`gui.explainer` need no Qt.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import re
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

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


#: Libraries Qt's xcb platform plugin (the window on an X11 desktop) loads, by the Debian /
#: Ubuntu package that ships them.
XCB_PACKAGES: dict[str, str] = {
    "libxcb-cursor.so.0": "libxcb-cursor0", "libxcb-icccm.so.4": "libxcb-icccm4",
    "libxcb-keysyms.so.1": "libxcb-keysyms1", "libxcb-image.so.0": "libxcb-image0",
    "libxcb-render-util.so.0": "libxcb-render-util0", "libxcb-randr.so.0": "libxcb-randr0",
    "libxcb-shape.so.0": "libxcb-shape0", "libxcb-xinerama.so.0": "libxcb-xinerama0",
    "libxcb-xkb.so.1": "libxcb-xkb1", "libxcb-sync.so.1": "libxcb-sync1",
    "libxcb-xfixes.so.0": "libxcb-xfixes0", "libxcb-shm.so.0": "libxcb-shm0",
    "libxcb-render.so.0": "libxcb-render0", "libxcb-glx.so.0": "libxcb-glx0",
    "libxcb-util.so.1": "libxcb-util1", "libxcb.so.1": "libxcb1",
    "libX11-xcb.so.1": "libx11-xcb1", "libX11.so.6": "libx11-6",
    "libxkbcommon-x11.so.0": "libxkbcommon-x11-0", "libxkbcommon.so.0": "libxkbcommon0",
    "libEGL.so.1": "libegl1", "libGL.so.1": "libgl1", "libOpenGL.so.0": "libopengl0",
    "libfontconfig.so.1": "libfontconfig1", "libfreetype.so.6": "libfreetype6",
    "libdbus-1.so.3": "libdbus-1-3", "libglib-2.0.so.0": "libglib2.0-0",
    "libSM.so.6": "libsm6", "libICE.so.6": "libice6"}


def _xcb_plugin() -> Path | None:
    """PySide6's xcb platform plugin (None: not found, e.g. a system Qt)."""
    try:
        spec = importlib.util.find_spec("PySide6")
    except (ImportError, ValueError):
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    path = Path(list(spec.submodule_search_locations)[0]) / "Qt/plugins/platforms/libqxcb.so"
    return path if path.is_file() else None


def missing_libraries(plugin: Path) -> list[str]:
    """Shared libraries a Qt plugin needs that the system lacks (``ldd``; without ``ldd``,
    the first one the dynamic loader reports)."""
    ldd = shutil.which("ldd")
    if ldd:
        out = subprocess.run([ldd, str(plugin)], capture_output=True, text=True,
                             timeout=30).stdout
        found = re.findall(r"^\s*(\S+)\s+=>\s+not found", out, flags=re.MULTILINE)
        return sorted(set(found))
    import ctypes

    try:
        ctypes.CDLL(str(plugin))
    except OSError as exc:
        match = re.search(r"(\S+\.so[.\d]*): cannot open shared object", str(exc))
        return [match.group(1)] if match else [str(exc)]
    return []


def platform_problem(env: Mapping[str, str] | None = None) -> str | None:
    """Why Qt could not open a window here, with the fix (None: nothing found).

    On Linux with the ``xcb`` platform (the default on an X11 desktop), Qt aborts the process
    when its xcb plugin cannot be loaded (Qt's own message names ``libxcb-cursor0`` whatever is
    missing). This checks beforehand: a display must be set, and every library the plugin
    needs must be there; the message names the Debian/Ubuntu packages to install. Other
    platforms (``offscreen``, ``wayland``, ...) are not checked.
    """
    env = os.environ if env is None else env
    if not sys.platform.startswith("linux"):
        return None
    plat = re.split(r"[:;]", env.get("QT_QPA_PLATFORM", ""))[0].strip().lower()
    if plat not in ("", "xcb"):
        return None
    if not plat and env.get("WAYLAND_DISPLAY") and env.get("XDG_SESSION_TYPE") == "wayland":
        return None
    if not env.get("DISPLAY"):
        return ("no display to open the window on (DISPLAY is not set): run it in a desktop "
                "session or over 'ssh -X', or without a screen with QT_QPA_PLATFORM=offscreen "
                "(e.g. with --screenshot)")
    plugin = _xcb_plugin()
    if plugin is None:
        return None
    missing = missing_libraries(plugin)
    if not missing:
        return None
    packages = sorted({XCB_PACKAGES.get(lib, "") for lib in missing} - {""})
    unknown = [lib for lib in missing if lib not in XCB_PACKAGES]
    text = (f"Qt cannot load its xcb platform plugin: the system lacks {', '.join(missing)}. "
            "On Debian/Ubuntu install them with: sudo apt-get install "
            + " ".join(packages or ["<the packages providing them>"]))
    if unknown:
        text += f" (find the package of {', '.join(unknown)} with: apt-file search NAME)"
    return text + "; or run without a screen with QT_QPA_PLATFORM=offscreen"


__all__ = ["INSTALL_HINT", "REQUIRED", "XCB_PACKAGES", "binding_problem", "missing_libraries",
           "missing_modules", "platform_problem"]
