"""Placing pulled samples on the stream's grid from their time stamps (no network needed)."""

from __future__ import annotations

import numpy as np
import pylsl
import pytest

from edge_scorer.stream.inlet_stream import InletStream, RingBuffer


def _stream(sfreq=100.0, speed=1.0, fill_gap_s=1.0, t0=1000.0) -> InletStream:
    info = pylsl.StreamInfo("unit", "EEG", 2, sfreq, pylsl.cf_float32, "unit")
    s = InletStream(None, info, [(0, 0), (1, 1)], buffer_s=10.0, speed=speed,
                    fill_gap_s=fill_gap_s, gap_tolerance_s=0.1, chunk_max=64)
    s.t_next = t0
    return s


def _feed(s: InletStream, x: np.ndarray, ts: np.ndarray, chunk: int = 37):
    outs, masks = [], []
    for i in range(0, len(x), chunk):
        o, m = s.place(x[i:i + chunk], ts[i:i + chunk])
        outs.append(o)
        masks.append(m)
    return np.concatenate(outs), np.concatenate(masks)


def test_jitter_and_drift_are_not_gaps():
    rng = np.random.default_rng(0)
    n = 20_000
    x = rng.normal(size=(n, 2))
    # 0.05 % slow clock and +-3 ms of stamp jitter: no sample is lost
    ts = 1000.0 + np.arange(n) / 100.0 * 1.0005 + rng.uniform(-0.003, 0.003, n)
    s = _stream()
    out, filled = _feed(s, x, ts)
    assert s.n_gaps == 0 and not filled.any()
    np.testing.assert_array_equal(out, x)


@pytest.mark.parametrize("speed", [1.0, 300.0])
def test_short_gap_is_interpolated_and_long_gap_is_nan(speed):
    n = 3000
    x = np.stack([np.arange(n, dtype=float), -np.arange(n, dtype=float)], axis=1)
    keep = np.ones(n, dtype=bool)
    keep[500:550] = False  # 0.5 s: filled
    keep[1500:1800] = False  # 3 s: NaN
    ts = 1000.0 + np.arange(n) / (100.0 * speed)
    s = _stream(speed=speed)
    out, filled = _feed(s, x[keep], ts[keep])
    assert len(out) == n and s.n_gaps == 2 and s.n_missing == 350
    np.testing.assert_allclose(out[500:550], x[500:550])  # a ramp is interpolated exactly
    assert filled[500:550].all() and filled.sum() == 50
    assert np.isnan(out[1500:1800]).all()
    np.testing.assert_array_equal(out[1800:], x[1800:])


def test_start_time_drops_earlier_samples_and_pads_later_ones():
    x = np.arange(1000, dtype=float)[:, None].repeat(2, axis=1)
    ts = 1000.0 + np.arange(1000) / 100.0
    s = _stream(t0=1002.5)  # epoch 0 starts 2.5 s after the first sample
    out, _ = _feed(s, x, ts)
    np.testing.assert_array_equal(out[:, 0], np.arange(250, 1000))
    s = _stream(t0=999.0)  # epoch 0 starts 1 s before the first sample
    out, filled = _feed(s, x, ts)
    assert np.isnan(out[:100]).all() and not filled.any()
    np.testing.assert_array_equal(out[100:, 0], np.arange(1000))


def test_ring_buffer_wraps_and_returns_the_latest_samples():
    ring = RingBuffer(10, 1)
    for start in (0, 6, 12):
        view = ring.free_view(6)
        view[:, 0] = np.arange(start, start + len(view))
        ring.advance(len(view))
    # 0..5 at 0-5, 6..9 at 6-9 (only 4 free), then 12..17 wrapped to 0-5
    np.testing.assert_array_equal(ring.latest(7)[:, 0], [9, 12, 13, 14, 15, 16, 17])
    assert ring.n_written == 16
    with pytest.raises(ValueError, match="capacity"):
        RingBuffer(0, 1)


class _OffsetEstimate:
    """liblsl's clock-offset estimate as ``time_correction`` hands it out (a stand-in for the
    inlet: only the estimate is needed here)."""

    def __init__(self) -> None:
        self.value = 0.0

    def time_correction(self, timeout: float) -> float:
        return self.value


def test_a_new_clock_offset_estimate_is_not_a_gap():
    """A fast replay (30x: 0.33 ms per sample in LSL time) whose clock-offset estimate moves
    by 20 ms between two pulls: the stamps jump by 60 samples, but no sample is missing (the
    expectation moves with the offset). Before, this was logged as a gap and filled."""
    est = _OffsetEstimate()
    s = _stream(speed=30.0)
    s.inlet = est
    n = 3000
    x = np.random.default_rng(1).normal(size=(n, 2))
    remote = 1000.0 + np.arange(n) / 3000.0  # the sender's own stamps, contiguous
    outs = []
    for i in range(0, n, 300):
        if i == 1500:
            est.value = 0.02
        s._offset_at = -np.inf  # due for a refresh at every pull
        s.update_offset()
        out, filled = s.place(x[i:i + 300], remote[i:i + 300] + s.offset)
        assert not filled.any()
        outs.append(out)
    assert s.n_gaps == 0 and s.offset == 0.02
    np.testing.assert_array_equal(np.concatenate(outs), x)
