"""The ``edge-scorer`` command line: one subcommand per module in this package, plus the
subcommands ``training``, ``export`` and ``gui`` register (entry-point group
``edge_scorer.commands``, see :mod:`edge_scorer.plugins`; the core never imports them).

Each subcommand module defines ``HELP`` (one line), ``add_arguments(parser)`` and
``run(args) -> int``. Modules keep heavy imports inside ``run`` so that ``edge-scorer --help``
and light commands start fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

from edge_scorer import plugins
from edge_scorer._log import get_logger, setup_cli_logging

#: Subcommand name -> module: the core's own (relative to this package) or, for a name with
#: no module here, the entry point of that name in ``edge_scorer.commands``. The order is the
#: order of ``edge-scorer --help``; registered commands not listed here come last.
COMMANDS: dict[str, str | None] = {
    "demo": ".demo",
    "simulate": ".simulate",
    "render": ".render",
    "stats": ".stats",
    "convert": ".convert",
    "train": None,
    "data": ".data",
    "evaluate": None,
    "replay": ".replay",
    "export": None,
    "score": ".score",
    "stream": ".stream",
    "gui": None,
    "review": None,
    "explain": ".explain",
    "finalize": ".finalize",
}

log = get_logger("cli")


class CliError(Exception):
    """An error to report to the user as one clear line (exit code 2), without a traceback."""


class _Unavailable:
    """Stands in for a registered command whose module fails to import: the other commands
    still work, and this one says why it cannot run."""

    def __init__(self, name: str, target: str, exc: BaseException) -> None:
        self.error = (f"command {name!r} cannot load ({target}: {type(exc).__name__}: {exc}); "
                      "reinstall the project (pip install -e .) or its extra's dependencies")
        self.HELP = f"(unavailable: {type(exc).__name__}; run it for details)"
        log.debug("%s", self.error)

    def add_arguments(self, parser: argparse.ArgumentParser) -> None:
        parser.add_argument("args", nargs="*", help=argparse.SUPPRESS)  # ignored

    def run(self, args: argparse.Namespace) -> int:
        raise CliError(self.error)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand, or with ``only`` that one.

    Building one imports one command's module: ``edge-scorer score`` does not import the
    modules (and the training and export code) behind the other commands.
    """
    from edge_scorer import __version__

    parser = argparse.ArgumentParser(
        prog="edge-scorer",
        description="Bedside/edge real-time sleep-stage scoring of polysomnography.",
    )
    parser.add_argument("--version", action="version", version=f"edge-scorer {__version__}")
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    registered = plugins.available(plugins.COMMANDS)
    names = list(COMMANDS) + sorted(set(registered) - set(COMMANDS))
    for name in [only] if only in names else names:
        modname = COMMANDS.get(name)
        if modname is None and name not in registered:
            log.debug("command %r is not registered (project not installed?)", name)
            continue
        if modname:
            mod = importlib.import_module(modname, __name__)
        else:
            try:
                mod = registered[name].load()
            except Exception as exc:  # a broken extension must not take the other commands
                mod = _Unavailable(name, registered[name].value, exc)
        p = sub.add_parser(name, help=mod.HELP, description=mod.HELP)
        mod.add_arguments(p)
        p.set_defaults(_module=mod)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``edge-scorer`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    # the first word that is not an option names the command (only -v, -h and --version,
    # which take no value, can come before it)
    parser = build_parser(next((a for a in argv if not a.startswith("-")), None))
    args, extra = parser.parse_known_args(argv)
    if extra and not isinstance(getattr(args, "_module", None), _Unavailable):
        parser.parse_args(argv)  # the usual error naming the unrecognized arguments
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    setup_cli_logging(args.verbose)
    try:
        return int(args._module.run(args) or 0)
    except CliError as exc:
        log.error("%s", exc)
        return 2
    except KeyboardInterrupt:
        log.warning("interrupted")
        return 130
    except (ValueError, FileNotFoundError, OSError) as exc:
        # Validation errors carry their own fix; show them without a traceback.
        if args.verbose:
            raise
        log.error("%s: %s", type(exc).__name__, exc)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
