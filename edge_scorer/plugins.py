"""Extensions the runtime core finds by name: commands, benchmarks and the window.

The runtime core never imports ``training``, ``export`` or ``gui`` (they import it; the
import-linter contracts in ``pyproject.toml`` enforce it). What they add to the product's
entry points is declared as Python entry points in ``pyproject.toml`` and found here:

* ``edge_scorer.commands``: ``edge-scorer`` subcommands (``train``, ``evaluate``, ``export``,
  ``gui``, ``review``), each a module with ``HELP``, ``add_arguments(parser)`` and
  ``run(args) -> int`` like the core's own in :mod:`edge_scorer.cli`;
* ``edge_scorer.benches``: ``python -m edge_scorer.bench NAME`` benchmarks (``gpu``,
  ``runtimes``), each a module with ``main(argv) -> int``;
* ``edge_scorer.windows``: the bedside window for ``edge-scorer demo --gui`` (``check``, a
  callable that raises when the window cannot open, and ``demo``, the callable that runs it).

They are registered when the project is installed (``pip install -e .``); an entry that is
missing or cannot load raises :class:`PluginUnavailable` naming the install command.
"""

from __future__ import annotations

from importlib import metadata
from typing import Any

from edge_scorer._log import get_logger

__all__ = ["BENCHES", "COMMANDS", "WINDOWS", "PluginUnavailable", "available", "load"]

COMMANDS = "edge_scorer.commands"
BENCHES = "edge_scorer.benches"
WINDOWS = "edge_scorer.windows"

log = get_logger("plugins")


class PluginUnavailable(RuntimeError):
    """An extension the user asked for is not registered or cannot be imported."""


def available(group: str) -> dict[str, metadata.EntryPoint]:
    """The entry points of ``group`` (name -> entry point) of the installed distributions.

    Parameters
    ----------
    group : str
        One of :data:`COMMANDS`, :data:`BENCHES`, :data:`WINDOWS`.
    """
    return {ep.name: ep for ep in metadata.entry_points(group=group)}


def load(group: str, name: str) -> Any:
    """Import and return the object that entry point ``name`` of ``group`` names.

    Raises
    ------
    PluginUnavailable
        When edge-scorer is not installed with its entry points (run from a source tree without
        ``pip install -e .``) or the module behind the entry point fails to import.
    """
    eps = available(group)
    if name not in eps:
        raise PluginUnavailable(
            f"{name!r} is not registered in the entry-point group {group!r} (registered: "
            f"{', '.join(sorted(eps)) or 'none'}); install the project so that its entry points "
            "exist: pip install -e . (from the repository root)")
    try:
        return eps[name].load()
    except ImportError as exc:
        raise PluginUnavailable(f"{name!r} ({eps[name].value}) cannot be imported: {exc}; "
                                "reinstall the project: pip install -e .") from exc
