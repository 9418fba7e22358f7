"""Files in and out: PSG (EDF) and hypnogram readers and writers, the render spec and channel
mapping, atomic output files, public datasets.

Modules:

* :mod:`edge_scorer.io.psg`
* :mod:`edge_scorer.io.edf_header`
* :mod:`edge_scorer.io.edf_writer`
* :mod:`edge_scorer.io.hypnogram_io`
* :mod:`edge_scorer.io.hypnogram_writers`
* :mod:`edge_scorer.io.outputs`
* :mod:`edge_scorer.io.spec`
* :mod:`edge_scorer.io.montage`
* :mod:`edge_scorer.io.datasets`
"""
