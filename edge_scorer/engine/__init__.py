"""The engine: epochs to stages (the live rolling scorer of the window rule), sinks, offline
scoring, cohorts, recovery, review.

Modules:

* :mod:`edge_scorer.engine.engine`
* :mod:`edge_scorer.engine.rolling`
* :mod:`edge_scorer.engine.sinks`
* :mod:`edge_scorer.engine.offline`
* :mod:`edge_scorer.engine.recover`
* :mod:`edge_scorer.engine.cohort`
* :mod:`edge_scorer.engine.cohort_ray`
* :mod:`edge_scorer.engine.shutdown`
* :mod:`edge_scorer.engine.review`
"""
