"""Hypnograms, sleep statistics and agreement metrics.

Modules:

* :mod:`edge_scorer.stats.hypnogram`
* :mod:`edge_scorer.stats.sleepstats`
* :mod:`edge_scorer.stats.metrics`
"""
