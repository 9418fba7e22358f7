"""Networks, weights, the model metadata contract, inference backends, the one window rule and
the scoring model.

Modules:

* :mod:`edge_scorer.inference.backends`
* :mod:`edge_scorer.inference.backends_torch`
* :mod:`edge_scorer.inference.backends_trt`
* :mod:`edge_scorer.inference.windows`
* :mod:`edge_scorer.inference.scorer`
* :mod:`edge_scorer.inference.familiarity`
* :mod:`edge_scorer.inference.nets`
"""
