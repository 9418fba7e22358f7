"""Signal conditioning and rendering: the render spec, channel mapping, the filter chain and the
epoch image.

Modules:

* :mod:`edge_scorer.dsp.spec`
* :mod:`edge_scorer.dsp.montage`
* :mod:`edge_scorer.dsp.conditioning`
* :mod:`edge_scorer.dsp.render`
* :mod:`edge_scorer.dsp.pipeline`
"""
