"""edge_scorer.dsp.iir equals scipy.signal (designs, zi, filtering) without importing it."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from scipy import signal

from edge_scorer.dsp import conditioning, iir
from edge_scorer.io.spec import available_specs, load_spec

RTOL, ATOL = 1e-12, 1e-14


def _same(ours: np.ndarray, ref: np.ndarray) -> None:
    assert ours.shape == ref.shape
    np.testing.assert_allclose(ours, ref, rtol=RTOL, atol=ATOL)
    assert np.array_equal(ours, ref), "not bit-identical"


@pytest.mark.parametrize("name", available_specs())
def test_row_designs_equal_scipy_for_every_shipped_spec(name: str) -> None:
    spec = load_spec(name)
    fs = spec.sfreq
    n_checked = 0
    for row in spec.rows:
        if row.highpass is not None:
            _same(iir.butter_sos(conditioning.HIGHPASS_ORDER, row.highpass, "highpass", fs),
                  signal.butter(conditioning.HIGHPASS_ORDER, row.highpass, "highpass", fs=fs,
                                output="sos"))
            n_checked += 1
        if row.lowpass is not None:
            _same(iir.butter_sos(conditioning.LOWPASS_ORDER, row.lowpass, "lowpass", fs),
                  signal.butter(conditioning.LOWPASS_ORDER, row.lowpass, "lowpass", fs=fs,
                                output="sos"))
            n_checked += 1
        if row.notch is not None and 0 < row.notch < fs / 2:
            _same(iir.notch_sos(row.notch, conditioning.NOTCH_Q, fs),
                  signal.tf2sos(*signal.iirnotch(row.notch, conditioning.NOTCH_Q, fs=fs)))
            n_checked += 1
        sos = conditioning.row_sos(row, fs, spec.name)
        if sos is not None:
            _same(iir.sosfilt_zi(sos), signal.sosfilt_zi(sos))
    assert n_checked > 0


@pytest.mark.parametrize("in_sfreq", [128.0, 200.0, 250.0, 256.0, 500.0, 512.0, 1000.0])
def test_antialias_design_equals_scipy(in_sfreq: float) -> None:
    corner = conditioning.ANTIALIAS_FRACTION * 100.0 / 2.0
    ref = signal.butter(conditioning.ANTIALIAS_ORDER, corner, "lowpass", fs=in_sfreq,
                        output="sos")
    _same(conditioning.antialias_sos(in_sfreq, 100.0), ref)
    _same(iir.sosfilt_zi(ref), signal.sosfilt_zi(ref))


@pytest.mark.parametrize("btype", ["lowpass", "highpass"])
@pytest.mark.parametrize("order", range(1, 9))
def test_butterworth_orders_equal_scipy(order: int, btype: str) -> None:
    for fs, corner in ((100.0, 0.3), (100.0, 35.0), (256.0, 10.0), (500.0, 1.0), (64.0, 31.0)):
        ref = signal.butter(order, corner, btype, fs=fs, output="sos")
        _same(iir.butter_sos(order, corner, btype, fs), ref)
        _same(iir.sosfilt_zi(ref), signal.sosfilt_zi(ref))


@pytest.mark.parametrize(("f0", "fs"), [(50.0, 100.1), (50.0, 128.0), (60.0, 200.0),
                                        (50.0, 250.0), (60.0, 512.0)])
def test_notch_equals_scipy(f0: float, fs: float) -> None:
    _same(iir.notch_sos(f0, 30.0, fs), signal.tf2sos(*signal.iirnotch(f0, 30.0, fs=fs)))


def test_invalid_designs_are_refused() -> None:
    with pytest.raises(ValueError):
        iir.butter_sos(4, 60.0, "lowpass", 100.0)
    with pytest.raises(ValueError):
        iir.butter_sos(4, 10.0, "bandpass", 100.0)


def _cascade() -> np.ndarray:
    return np.vstack((signal.butter(2, 0.3, "highpass", fs=100.0, output="sos"),
                      signal.butter(8, 35.0, "lowpass", fs=100.0, output="sos"),
                      signal.tf2sos(*signal.iirnotch(50.0, 30.0, fs=128.0))))


def test_sosfilt_is_bit_identical_to_scipy_and_leaves_inputs_alone() -> None:
    sos = _cascade()
    x = np.random.default_rng(3).standard_normal(20_000) * 50.0
    zi = np.random.default_rng(4).standard_normal((sos.shape[0], 2))
    x0, zi0 = x.copy(), zi.copy()
    y, zf = iir.sosfilt(sos, x, zi)
    y_ref, zf_ref = signal.sosfilt(sos, x, zi=zi)
    assert np.array_equal(y, y_ref) and np.array_equal(zf, zf_ref)
    assert np.array_equal(x, x0) and np.array_equal(zi, zi0)
    zero = np.zeros((sos.shape[0], 2))
    assert np.array_equal(iir.sosfilt(sos, x, zero)[0], signal.sosfilt(sos, x))
    assert iir._get_kernel() is not None  # the compiled kernel, not the fallback


def test_sosfilt_chunked_equals_whole() -> None:
    sos = _cascade()
    x = np.random.default_rng(5).standard_normal(10_000)
    state = iir.sosfilt_zi(sos) * x[0]
    whole = iir.sosfilt(sos, x, state)[0]
    parts = []
    for chunk in np.split(x, [1, 7, 500, 501, 4096]):
        y, state = iir.sosfilt(sos, chunk, state)
        parts.append(y)
    assert np.concatenate(parts).tobytes() == whole.tobytes()


def test_fallback_to_scipy_signal_gives_the_same_numbers(monkeypatch, caplog) -> None:
    def broken() -> None:
        raise ImportError("simulated: no _sosfilt extension")

    monkeypatch.setattr(iir, "_load_kernel", broken)
    monkeypatch.setattr(iir, "_kernel", [])
    sos = _cascade()
    x = np.random.default_rng(6).standard_normal(3000)
    zi = iir.sosfilt_zi(sos)
    with caplog.at_level("INFO", logger="edge_scorer.iir"):
        y, zf = iir.sosfilt(sos, x, zi)
    assert iir._kernel == [None]
    assert "using scipy.signal.sosfilt" in caplog.text
    y_ref, zf_ref = signal.sosfilt(sos, x, zi=zi)
    assert np.array_equal(y, y_ref) and np.array_equal(zf, zf_ref)


def test_the_kernel_self_check_passes_and_matches_the_python_reference() -> None:
    sos = _cascade()
    x = np.random.default_rng(7).standard_normal(200)
    zi = iir.sosfilt_zi(sos)
    np.testing.assert_allclose(iir._reference_sosfilt(sos, x, zi), iir.sosfilt(sos, x, zi)[0],
                               rtol=1e-12, atol=1e-12)
    assert iir._load_kernel() is not None


def test_conditioning_does_not_import_scipy_signal() -> None:
    code = (
        "import sys\n"
        "import numpy as np\n"
        "from edge_scorer.dsp.conditioning import condition\n"
        "from edge_scorer.io.spec import load_spec\n"
        "spec = load_spec('sleep-edf')\n"
        "x = np.random.default_rng(0).standard_normal((spec.n_rows, 256 * 40))\n"
        "out = condition(x, 256.0, spec)\n"
        "assert out.shape[0] == spec.n_rows and out.shape[1] > 0 and np.isfinite(out).all()\n"
        "print('scipy.signal' in sys.modules)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=120, check=False)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "False"
