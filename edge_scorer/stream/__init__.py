"""Live input: LSL inlets, units, EDF replay as LSL streams, the live scorer and many beds.

Modules:

* :mod:`edge_scorer.stream.inlet`
* :mod:`edge_scorer.stream.inlet_stream`
* :mod:`edge_scorer.stream.replay`
* :mod:`edge_scorer.stream.replay_channels`
* :mod:`edge_scorer.stream.live`
* :mod:`edge_scorer.stream.stream_units`
* :mod:`edge_scorer.stream.beds`
"""
