"""Dispatcher: ``python -m edge_scorer.bench NAME [args]`` -> ``edge_scorer.bench.NAME.main``, or
the ``main`` of the module registered as ``NAME`` in the entry-point group ``edge_scorer.benches``
(benchmarks that need ``training`` or ``export``: :mod:`edge_scorer.plugins`)."""

from __future__ import annotations

import importlib
import pkgutil
import sys
from collections.abc import Sequence

from edge_scorer import plugins


def _available(registered: dict) -> list[str]:
    from edge_scorer.bench import __path__ as pkg_path

    own = {m.name for m in pkgutil.iter_modules(pkg_path) if not m.name.startswith("_")}
    return sorted(own | set(registered))


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark named by the first argument with the remaining arguments."""
    argv = list(sys.argv[1:] if argv is None else argv)
    registered = plugins.available(plugins.BENCHES)
    names = _available(registered)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: python -m edge_scorer.bench NAME [args]\nbenchmarks: " + ", ".join(names))
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in names:
        print(f"unknown benchmark {name!r}; available: {', '.join(names)}", file=sys.stderr)
        return 2
    module = (registered[name].load() if name in registered
              else importlib.import_module(f"{__package__}.{name}"))
    return int(module.main(rest) or 0)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
