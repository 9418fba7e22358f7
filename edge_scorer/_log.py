"""The package logger (``logging.getLogger("edge_scorer")``); nothing in the package prints."""

from __future__ import annotations

import logging
import sys

logger = logging.getLogger("edge_scorer")
logger.addHandler(logging.NullHandler())


def get_logger(name: str | None = None) -> logging.Logger:
    """Return the package logger or one of its children (``edge_scorer.<name>``)."""
    return logger if not name else logger.getChild(name)


class _StderrHandler(logging.StreamHandler):
    """Writes to the *current* ``sys.stderr`` (it may be swapped after set-up, e.g. by a test
    runner capturing output), never to a stream that has since been closed."""

    @property
    def stream(self):  # type: ignore[override]
        return sys.stderr

    @stream.setter
    def stream(self, value) -> None:
        pass


def setup_cli_logging(verbose: int = 0) -> None:
    """Send package log records to stderr for command-line use (INFO, or DEBUG with ``-v``)."""
    level = logging.DEBUG if verbose else logging.INFO
    handler = _StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname).1s %(name)s: %(message)s"))
    logger.handlers[:] = [handler]
    logger.setLevel(level)
    logger.propagate = False
