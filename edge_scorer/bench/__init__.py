"""Benchmarks: ``python -m edge_scorer.bench NAME [args]`` runs ``edge_scorer.bench.NAME.main``.

Each benchmark is a module of this package with ``main(argv) -> int``; speed and quality
measurements live here rather than in timed tests.
"""

from __future__ import annotations

__all__: list[str] = []
