"""The live path and the offline path give identical epoch images for the same night.

Live: each row arrives at its native rate in small, irregular chunks (as an LSL inlet delivers
them), goes through a ``Conditioner`` and an ``Epocher`` chunk by chunk, and every completed
epoch is rendered on its own. Offline: ``pipeline.render_night`` reads the whole file and runs
the same code over it in one chunk. The images must be equal byte for byte, on the real
Sleep-EDF excerpt and on a simulated night written as real EDF files.
"""

from __future__ import annotations

import numpy as np
import pytest

from edge_scorer import load_spec
from edge_scorer.dsp.conditioning import Conditioner, Epocher
from edge_scorer.dsp.render import render_epoch
from edge_scorer.dsp.render_night import render_night
from edge_scorer.io.psg import read_psg

SPEC = load_spec("sleep-edf")


def _live_images(path, spec, seed: int) -> np.ndarray:
    """Feed the file's rows at their native rates in random chunks (~0-2 s of signal each)."""
    rows, rates = read_psg(path, spec).native_rows()
    rng = np.random.default_rng(seed)
    cond, epocher = Conditioner(spec, rates), Epocher(spec)
    pos = [0] * len(rows)
    images: list[np.ndarray] = []
    t = 0.0
    while any(p < len(r) for p, r in zip(pos, rows)):
        t += float(rng.uniform(0.0, 2.0))  # wall-clock arrival of the next chunk
        chunk = []
        for i, (r, fs) in enumerate(zip(rows, rates)):
            stop = min(len(r), int(t * fs))
            chunk.append(r[pos[i]:stop])
            pos[i] = max(pos[i], stop)
        for _, epoch in epocher.push(cond.process(chunk)):
            images.append(render_epoch(epoch, spec))
    for _, epoch in epocher.push(cond.flush()):  # the stream ended
        images.append(render_epoch(epoch, spec))
    return np.stack(images)


def _check_same(path, spec) -> None:
    offline = render_night(path, spec).images
    live = _live_images(path, spec, seed=1)
    assert live.shape == offline.shape
    assert live.tobytes() == offline.tobytes()
    assert (offline > 0).mean() > 0.01  # the traces are really drawn


def test_real_excerpt_live_equals_offline(psg_excerpt):
    _check_same(psg_excerpt, SPEC)


@pytest.mark.parametrize("layout,spec_name", [("sleep-edf", "sleep-edf"), ("shhs", "shhs")])
def test_simulated_night_live_equals_offline(tmp_path, layout, spec_name):
    from edge_scorer.simulate import simulate_night, write_night

    night = simulate_night(layout=layout, seed=3, duration_h=0.5)
    psg, _ = write_night(night, tmp_path)
    _check_same(psg, load_spec(spec_name))
