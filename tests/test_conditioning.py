"""The conditioning chain: chunk-by-chunk == whole file byte for byte, resampling, filters."""

from __future__ import annotations

import logging
import zlib

import numpy as np
import pytest

from edge_scorer.dsp.conditioning import (
    Conditioner,
    Epocher,
    _LinearResampler,
    condition,
    epochs_from_signal,
    row_sos,
)
from edge_scorer.io.spec import RenderSpec, load_spec

SLEEP_EDF = load_spec("sleep-edf")
SHHS = load_spec("shhs")


def _plain_spec(sfreq: float = 100.0, **row_kw: object) -> RenderSpec:
    """A one-row spec without filters (or with the given ones) to test single steps."""
    row = {"name": "X", "type": "EEG", "height": 224, "range": [-1.0, 1.0], "min_sfreq": 0.5}
    row.update(row_kw)
    return RenderSpec.from_dict({"name": "plain", "sfreq": sfreq, "rows": [row]})


def _signal(n: int, rng: np.random.Generator, fs: float) -> np.ndarray:
    t = np.arange(n) / fs
    walk = np.cumsum(rng.standard_normal(n)) * 2
    return walk + 30 * np.sin(2 * np.pi * 10 * t) + 200 + 20 * np.sin(2 * np.pi * 60 * t)


def _feed(cond: Conditioner, rows: list[np.ndarray], sizes: list[np.ndarray]) -> np.ndarray:
    """Feed each row in its own independent chunk sizes (rows may have different rates)."""
    pos = [0] * len(rows)
    out = []
    step = 0
    while any(p < r.size for p, r in zip(pos, rows, strict=True)):
        chunk = []
        for i, r in enumerate(rows):
            n = int(sizes[i][step % sizes[i].size])
            chunk.append(r[pos[i]:pos[i] + n])
            pos[i] += n
        out.append(cond.process(chunk))
        step += 1
    return np.concatenate(out, axis=1)


CHUNKINGS = {
    "one-sample": lambda rng: np.array([1]),
    "primes": lambda rng: np.array([7, 13, 101, 997, 2, 3]),
    "random": lambda rng: rng.integers(1, 5000, 64),
    "big": lambda rng: np.array([100_000]),
}

# (spec, per-row input rates, seconds of signal)
CASES = {
    "sleep-edf equal 100": (SLEEP_EDF, [100.0] * 4),
    "sleep-edf above 256": (SLEEP_EDF, [256.0] * 4),
    "sleep-edf above 200": (SLEEP_EDF, [200.0] * 4),
    "sleep-edf above 512": (SLEEP_EDF, [512.0] * 4),
    "sleep-edf mixed, EMG envelope 1 Hz": (SLEEP_EDF, [100.0, 100.0, 100.0, 1.0]),
    "shhs equal 125": (SHHS, [125.0] * 10),
    "shhs above 256": (SHHS, [256.0] * 10),
    "shhs above 200": (SHHS, [200.0] * 10),
    "shhs above 512": (SHHS, [512.0] * 10),
    "shhs mixed, EOG 50 Hz": (SHHS, [256, 250, 50, 50, 200, 512, 10, 10, 10, 1]),
}


@pytest.mark.parametrize("chunking", list(CHUNKINGS))
@pytest.mark.parametrize("case", list(CASES))
def test_chunked_equals_whole_bytewise(case: str, chunking: str) -> None:
    spec, rates = CASES[case]
    rng = np.random.default_rng(zlib.crc32(f"{case}|{chunking}".encode()))
    duration_s = 8.0 if chunking == "one-sample" else 75.0
    rows = [_signal(int(duration_s * fs), rng, fs) for fs in rates]
    # a NaN gap and an inf in the first row must not change chunk invariance
    rows[0][int(0.3 * rows[0].size):int(0.3 * rows[0].size) + 17] = np.nan
    rows[0][int(0.6 * rows[0].size)] = np.inf
    whole = condition(rows, rates, spec)
    sizes = [CHUNKINGS[chunking](rng) for _ in rows]
    if chunking != "one-sample":  # also independent chunk sizes per row
        sizes = [rng.permutation(s) for s in sizes]
    chunked = _feed(Conditioner(spec, rates), rows, sizes)
    assert whole.shape[0] == spec.n_rows
    assert whole.shape[1] >= int((duration_s - 1.1) * spec.sfreq)
    assert chunked.shape == whole.shape
    assert chunked.tobytes() == whole.tobytes()


def test_2d_input_and_sequence_input_agree() -> None:
    rng = np.random.default_rng(1)
    x = np.vstack([_signal(25_600, rng, 256.0) for _ in range(4)])
    assert condition(x, 256.0, SLEEP_EDF).tobytes() == condition(list(x), 256, SLEEP_EDF).tobytes()
    cond = Conditioner(SLEEP_EDF, 256.0)
    parts = [cond.process(x[:, i:i + 333]) for i in range(0, x.shape[1], 333)]
    assert np.concatenate(parts, axis=1).tobytes() == condition(x, 256.0, SLEEP_EDF).tobytes()


def test_caller_may_reuse_its_chunk_buffer() -> None:
    """Live readers refill one buffer per chunk: held-back samples must not alias it."""
    spec = RenderSpec.from_dict({"name": "two", "sfreq": 100.0, "rows": [
        {"name": name, "type": "EEG", "height": 112, "range": [-1, 1], "min_sfreq": 1.0}
        for name in ("A", "B")]})  # no filters: row A passes its input straight through
    rates = [100.0, 1.0]
    rng = np.random.default_rng(8)
    rows = [_signal(int(40 * fs), rng, fs) for fs in rates]
    whole = condition(rows, rates, spec)
    cond, parts = Conditioner(spec, rates), []
    buf = np.empty(50)
    for s in range(80):  # half-second chunks; row B gets one sample every other chunk
        buf[:] = rows[0][s * 50:(s + 1) * 50]
        b = rows[1][s // 2:s // 2 + 1] if s % 2 == 0 else rows[1][:0]
        parts.append(cond.process([buf, b]))
        buf[:] = -1e9  # the reader overwrites its buffer
    assert np.concatenate(parts, axis=1).tobytes() == whole.tobytes()


def test_reset_restarts_from_scratch() -> None:
    rng = np.random.default_rng(2)
    x = np.vstack([_signal(5000, rng, 100.0) for _ in range(4)])
    cond = Conditioner(SLEEP_EDF, 100.0)
    first = cond.process(x)
    cond.process(x[:, :1234] + 5)
    cond.reset()
    assert cond.process(x).tobytes() == first.tobytes()
    assert cond.n_out == x.shape[1]


def test_rate_below_row_minimum_is_refused_with_names() -> None:
    with pytest.raises(ValueError, match=r"EEG Fpz-Cz.*50 Hz.*minimum 70 Hz"):
        Conditioner(SLEEP_EDF, 50.0)
    with pytest.raises(ValueError, match=r"EOG\(L\).*20 Hz.*minimum 32 Hz"):
        Conditioner(SHHS, [256, 256, 20, 50, 200, 256, 10, 10, 10, 1])
    with pytest.raises(ValueError, match="one per row"):
        Conditioner(SLEEP_EDF, [100.0, 100.0])
    with pytest.raises(ValueError, match="positive"):
        Conditioner(SLEEP_EDF, 0.0)
    with pytest.raises(ValueError, match="different input rates"):
        Conditioner(SLEEP_EDF, [100, 100, 100, 1]).process(np.zeros((4, 10)))
    with pytest.raises(ValueError, match="rows"):
        Conditioner(SLEEP_EDF, 100).process(np.zeros((3, 10)))


# ------------------------------------------------------------------------ resampling
@pytest.mark.parametrize("in_sfreq", [256.0, 200.0, 512.0, 333.0, 100.0, 50.0, 37.5])
def test_resampled_sine_keeps_its_frequency(in_sfreq: float) -> None:
    spec = _plain_spec(100.0)
    f0 = 7.0
    t = np.arange(int(60 * in_sfreq)) / in_sfreq
    y = condition(np.sin(2 * np.pi * f0 * t)[None], in_sfreq, spec)[0]
    seg = y[500:500 + 4000]  # 40 s after the start
    spectrum = np.abs(np.fft.rfft(seg * np.hanning(seg.size)))
    freqs = np.fft.rfftfreq(seg.size, 1 / spec.sfreq)
    assert abs(freqs[np.argmax(spectrum)] - f0) < 0.05
    assert 0.8 < np.sqrt(2) * seg.std() < 1.02  # amplitude kept (7 Hz is in the passband)


@pytest.mark.parametrize("in_sfreq", [1.0, 10.0, 50.0, 100.0])
def test_upsampling_interpolates_linearly_on_the_exact_grid(in_sfreq: float) -> None:
    spec = _plain_spec(100.0)
    n = int(600 * in_sfreq)
    ramp = np.arange(n, dtype=np.float64) / in_sfreq  # value = time in s
    y = condition(ramp[None], in_sfreq, spec)[0]
    k = np.arange(y.size)
    np.testing.assert_allclose(y, k / spec.sfreq, rtol=0, atol=1e-9)
    # the last output needs its right neighbour: it lies strictly before the last input
    assert y.size == (n if in_sfreq == spec.sfreq else int(np.ceil((n - 1) * spec.sfreq
                                                                  / in_sfreq)))


def test_resampling_grid_never_drifts() -> None:
    res = _LinearResampler(256.0, 100.0)
    n = 256 * 3600 * 9  # nine hours at 256 Hz
    out, bad = [], []
    for start in range(0, n, 1_000_003):  # ramp fed in ~1e6-sample chunks
        x = np.arange(start, min(n, start + 1_000_003), dtype=np.float64)
        o, b = res(x, np.zeros(x.size, dtype=bool))
        out.append(o)
        bad.append(b)
    y = np.concatenate(out)
    k = np.arange(y.size, dtype=np.float64)
    np.testing.assert_allclose(y, k * 2.56, rtol=0, atol=1e-6)
    assert not np.concatenate(bad).any()


@pytest.mark.parametrize("in_sfreq", [1.0, 100.0, 256.0, 512.0])
def test_constant_stays_constant(in_sfreq: float) -> None:
    spec = _plain_spec(100.0)
    y = condition(np.full((1, int(30 * in_sfreq)), 37.25), in_sfreq, spec)[0]
    if in_sfreq <= spec.sfreq:
        assert np.all(y == 37.25)  # no filter: exact
    else:
        np.testing.assert_allclose(y, 37.25, rtol=1e-12)  # anti-alias starts in steady state


# ------------------------------------------------------------------------ row filters
def _amplitude(y: np.ndarray) -> float:
    return float(np.sqrt(2) * np.std(y))


def test_notch_removes_60_hz_on_shhs_eeg_at_125_hz() -> None:
    row = SHHS.rows[0]
    assert row.notch == 60.0 and SHHS.sfreq == 125.0
    assert row_sos(row, SHHS.sfreq).shape[0] == 1 + 2 + 1  # hp order 2, lp order 4, notch
    notch_only = _plain_spec(125.0, notch=60.0)
    t = np.arange(int(20 * 125)) / 125
    hum = 100 * np.sin(2 * np.pi * 60 * t)
    y = condition(hum[None], 125.0, notch_only)[0]
    assert _amplitude(y[-500:]) < 1.0  # 100 uV of hum -> < 1 uV
    z = condition(np.tile(hum, (10, 1)), 125.0, SHHS)[0]
    assert _amplitude(z[-500:]) < 0.1


def test_alpha_passes_and_dc_is_removed() -> None:
    fs = SLEEP_EDF.sfreq
    t = np.arange(int(60 * fs)) / fs
    alpha = 20 * np.sin(2 * np.pi * 10 * t)
    x = np.vstack([alpha + 500.0, alpha - 300.0, alpha + 1000.0, np.full(t.size, 5.0)])
    y = condition(x, fs, SLEEP_EDF)
    for i in range(3):
        assert abs(_amplitude(y[i, -2000:]) - 20) < 1.0  # alpha kept within 5 %
        assert abs(np.mean(y[i, -2000:])) < 0.5  # DC removed
    np.testing.assert_allclose(y[3], 5.0, rtol=1e-12)  # EMG envelope row has no filter
    # steady-state start: a pure DC offset yields no start transient at all
    dc = condition(np.full((4, 3000), 250.0), fs, SLEEP_EDF)
    assert np.max(np.abs(dc[:3])) < 1e-9


def test_notch_above_nyquist_is_skipped_and_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    row = SLEEP_EDF.rows[0]  # 60-Hz notch at a 100-Hz model rate
    spec = _plain_spec(90.0, notch=60.0, highpass=0.5)
    with caplog.at_level(logging.INFO, logger="edge_scorer"):
        assert row_sos(row, SLEEP_EDF.sfreq).shape[0] == 1 + 2
        Conditioner(spec, 90.0)
        Conditioner(spec, 90.0)
    skipped = [r for r in caplog.records if "notch skipped" in r.getMessage()
               and "'X'" in r.getMessage()]
    assert len(skipped) == 1


# ------------------------------------------------------------------------ NaN policy
def test_nan_gap_is_marked_and_does_not_poison_the_filters() -> None:
    fs = SLEEP_EDF.sfreq
    rng = np.random.default_rng(3)
    x = np.vstack([_signal(int(120 * fs), rng, fs) for _ in range(4)])
    clean = condition(x, fs, SLEEP_EDF)
    x[1, 3000:3100] = np.nan
    cond = Conditioner(SLEEP_EDF, fs)
    y = cond.process(x)
    assert np.isnan(y[1, 3000:3100]).all()
    assert np.isfinite(y[1, :3000]).all() and np.isfinite(y[1, 3100:]).all()
    assert cond.n_invalid.tolist() == [0, 100, 0, 0]
    assert y[[0, 2, 3]].tobytes() == clean[[0, 2, 3]].tobytes()
    # the gap's effect decays: 60 s later the row matches the clean conditioning closely
    np.testing.assert_allclose(y[1, -1000:], clean[1, -1000:], atol=1.0)
    held = condition(x, fs, SLEEP_EDF, mark_invalid=False)
    assert np.isfinite(held).all()


def test_nan_marks_follow_the_resampling_grid() -> None:
    spec = _plain_spec(100.0)
    x = np.arange(512.0)  # 2 s at 256 Hz
    x[256] = np.nan  # t = 1.0 s
    y = condition(x[None], 256.0, spec)[0]
    bad = np.flatnonzero(np.isnan(y))
    # outputs whose left or right neighbour is input 256: t in (255/256, 257/256) s
    t = bad / 100.0
    assert bad.size >= 1 and np.all((t > 255 / 256) & (t < 257 / 256))


# ------------------------------------------------------------------------ epochs
def test_epocher_aligns_epochs_to_the_first_sample() -> None:
    spec = SLEEP_EDF
    rng = np.random.default_rng(4)
    sig = rng.standard_normal((4, 7 * spec.epoch_samples + 1234))
    ep = Epocher(spec)
    got = []
    pos = 0
    for n in rng.integers(1, 5000, 100):
        got += ep.push(sig[:, pos:pos + n])
        pos += int(n)
        if pos >= sig.shape[1]:
            break
    assert [i for i, _ in got] == list(range(7))
    whole = epochs_from_signal(sig, spec)
    assert whole.shape == (7, 4, spec.epoch_samples) and whole.flags.c_contiguous
    assert ep.epochs_from_signal(sig).tobytes() == whole.tobytes()
    for i, e in got:
        assert e.tobytes() == sig[:, i * spec.epoch_samples:(i + 1) * spec.epoch_samples].tobytes()
    assert ep.pending_samples == 1234 and ep.next_index == 7
    ep.reset()
    assert ep.pending_samples == 0 and ep.next_index == 0
    with pytest.raises(ValueError, match="shape"):
        ep.push(np.zeros((3, 10)))


def test_conditioner_plus_epocher_live_equals_offline() -> None:
    spec = SHHS
    rng = np.random.default_rng(5)
    rates = [256, 256, 50, 50, 200, 512, 10, 10, 10, 1]
    rows = [_signal(int(100 * fs), rng, fs) for fs in rates]
    offline = epochs_from_signal(condition(rows, rates, spec), spec)
    cond, ep = Conditioner(spec, rates), Epocher(spec)
    live = []
    for s in range(100):  # one-second chunks, as from a live stream
        live += ep.push(cond.process([r[int(s * fs):int((s + 1) * fs)]
                                      for r, fs in zip(rows, rates, strict=True)]))
    assert len(live) == offline.shape[0] == 3
    assert np.stack([e for _, e in live]).tobytes() == offline.tobytes()


# ------------------------------------------------------------------------ real PSG
def test_real_excerpt_chunked_equals_whole(psg_excerpt) -> None:
    from edge_scorer.dsp.render import render_epochs
    from edge_scorer.io.psg import read_psg

    rec = read_psg(psg_excerpt, SLEEP_EDF)
    assert rec.row_names == SLEEP_EDF.row_names and rec.sfreq == 100.0
    whole = condition(rec.data, rec.sfreq, SLEEP_EDF)
    rng = np.random.default_rng(6)
    cond, pos, parts = Conditioner(SLEEP_EDF, rec.sfreq), 0, []
    while pos < rec.n_samples:
        n = int(rng.choice([1, 7, 97, 1009, 3000, 4099]))
        parts.append(cond.process(rec.data[:, pos:pos + n]))
        pos += n
    chunked = np.concatenate(parts, axis=1)
    assert chunked.tobytes() == whole.tobytes()
    imgs = render_epochs(epochs_from_signal(whole, SLEEP_EDF), SLEEP_EDF)
    imgs_c = render_epochs(epochs_from_signal(chunked, SLEEP_EDF), SLEEP_EDF)
    assert imgs.shape == (10, 224, 224) and imgs.tobytes() == imgs_c.tobytes()
    assert all(img.any() for img in imgs)


def test_real_excerpt_native_rates(psg_excerpt) -> None:
    """The excerpt's EMG envelope at its native 1 Hz, conditioned beside the 100-Hz rows."""
    import mne

    raw = mne.io.read_raw_edf(psg_excerpt, include=["EMG submental"], preload=True,
                              verbose="error")
    assert raw.info["sfreq"] == 1.0
    emg = raw.get_data()[0] * 1e6
    full = mne.io.read_raw_edf(psg_excerpt, include=list(SLEEP_EDF.row_names[:3]),
                               preload=True, verbose="error")
    eeg = full.get_data(picks=list(SLEEP_EDF.row_names[:3])) * 1e6
    rows, rates = [*eeg, emg], [100.0, 100.0, 100.0, 1.0]
    whole = condition(rows, rates, SLEEP_EDF)
    chunked = _feed(Conditioner(SLEEP_EDF, rates), rows, [np.array([100, 100, 100, 1])] * 3
                    + [np.array([1])])
    assert whole.shape == (4, 29_900)  # the 1-Hz row ends 1 s early (needs a right neighbour)
    assert chunked.tobytes() == whole.tobytes()
    np.testing.assert_array_equal(whole[3, ::100], emg[:-1])  # passes through the 1-Hz samples
    flushed = condition(rows, rates, SLEEP_EDF, flush=True)
    assert flushed.shape == (4, 30_000)  # the last 1-Hz sample held for its period
    assert flushed[:, :29_900].tobytes() == whole.tobytes()
    assert np.all(flushed[3, 29_900:] == emg[-1])
    assert len(epochs_from_signal(flushed, SLEEP_EDF)) == 10


@pytest.mark.parametrize("rates", [[100.0] * 4, [256.0] * 4, [100.0, 100.0, 100.0, 1.0],
                                   [512.0, 200.0, 50.0, 10.0]])
def test_flush_completes_the_recording_and_keeps_chunk_invariance(rates: list[float]) -> None:
    spec = RenderSpec.from_dict({"name": "four", "sfreq": 100.0, "rows": [
        {"name": f"R{i}", "type": "EEG", "height": 56, "range": [-1, 1], "highpass": 0.3,
         "min_sfreq": 1.0} for i in range(4)]})
    rng = np.random.default_rng(7)
    rows = [_signal(int(61 * fs), rng, fs) for fs in rates]  # 61 s on every row
    whole = condition(rows, rates, spec, flush=True)
    assert whole.shape == (4, 6100)
    cond = Conditioner(spec, rates)
    parts = [cond.process([r[: r.size // 3] for r in rows]),
             cond.process([r[r.size // 3:] for r in rows]), cond.flush()]
    assert np.concatenate(parts, axis=1).tobytes() == whole.tobytes()
    with pytest.raises(ValueError, match="reset"):
        cond.process([r[:5] for r in rows])
    cond.reset()
    assert cond.process(rows).tobytes() == condition(rows, rates, spec).tobytes()
