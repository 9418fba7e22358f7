"""Signal conditioning and rendering: the one filter chain and the one renderer of epoch images.

Modules:

* :mod:`edge_scorer.dsp.conditioning`
* :mod:`edge_scorer.dsp.render`
* :mod:`edge_scorer.dsp.render_night`
"""
