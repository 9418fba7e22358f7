"""The EDF/BDF sample reader (no MNE): same samples and start time as MNE, BDF's 24 bits, and
the scoring path no longer imports MNE."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pytest

from edge_scorer.io.edf_header import parse_start_time, read_edf_header
from edge_scorer.io.edf_reader import read_signals
from edge_scorer.io.psg import read_psg

EXCERPT = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data" / "sleep-edf"
           / "psg_excerpt" / "SC4001E0-PSG_first300s.edf")


def _field(value: object, width: int) -> bytes:
    return str(value).encode("latin-1").ljust(width)[:width]


def _bdf(path: Path, signals: list[tuple[str, str, np.ndarray, int]], record_s: int = 1,
         start: tuple[str, str] = ("24.04.89", "16.13.00")) -> Path:
    """A BDF file: ``(label, unit, digital samples, samples per record)`` per signal, with the
    physical range -1000..1000 on the full 24-bit digital range."""
    n_records = len(signals[0][2]) // signals[0][3]
    ns = len(signals)
    head = (b"\xffBIOSEMI" + _field("X", 80) + _field("Y", 80) + _field(start[0], 8)
            + _field(start[1], 8) + _field(256 * (ns + 1), 8) + _field("24BIT", 44)
            + _field(n_records, 8) + _field(record_s, 8) + _field(ns, 4))
    cols = [[_field(s[0], 16) for s in signals], [_field("", 80)] * ns,
            [_field(s[1], 8) for s in signals], [_field(-1000, 8)] * ns,
            [_field(1000, 8)] * ns, [_field(-(2 ** 23), 8)] * ns,
            [_field(2 ** 23 - 1, 8)] * ns, [_field("", 80)] * ns,
            [_field(s[3], 8) for s in signals], [_field("", 32)] * ns]
    head += b"".join(b"".join(c) for c in cols)
    body = bytearray()
    for r in range(n_records):
        for _, _, dig, spr in signals:
            chunk = dig[r * spr:(r + 1) * spr].astype("<i4")
            body += b"".join(int(v).to_bytes(3, "little", signed=True) for v in chunk)
    path.write_bytes(head + bytes(body))
    return path


def test_bdf_24_bit_samples_and_their_scaling(tmp_path):
    """Every 24-bit value, the extremes and negatives included, comes back scaled as the EDF
    specification says; the two signals keep their own rates."""
    rng = np.random.default_rng(0)
    fast = np.concatenate(([-(2 ** 23), 2 ** 23 - 1, -1, 0, 1],
                           rng.integers(-(2 ** 23), 2 ** 23, 95)))
    slow = np.array([-5, 7, -(2 ** 23), 2 ** 23 - 1])
    path = _bdf(tmp_path / "x.bdf", [("EEG A", "uV", fast, 25), ("EMG B", "uV", slow, 1)])
    header = read_edf_header(path)
    got_fast, got_slow = read_signals(path, header, [0, 1])
    cal = 2000.0 / (2 ** 24 - 1)
    for got, dig in ((got_fast, fast), (got_slow, slow)):
        assert got.shape == dig.shape
        np.testing.assert_allclose(got, (dig + 2 ** 23) * cal - 1000.0, rtol=0, atol=1e-9)
    assert header.sfreqs[:2] == (25.0, 1.0)


def test_the_same_samples_and_start_as_mne(tmp_path):
    """A BDF and the real EDF excerpt read as MNE reads them (MNE scales to volts)."""
    mne = pytest.importorskip("mne")
    rng = np.random.default_rng(1)
    dig = rng.integers(-(2 ** 23), 2 ** 23, 200)
    files = [_bdf(tmp_path / "y.bdf", [("EEG A", "uV", dig, 50)])]
    if EXCERPT.is_file():
        files.append(EXCERPT)
    for path in files:
        header = read_edf_header(path)
        reader = mne.io.read_raw_bdf if path.suffix == ".bdf" else mne.io.read_raw_edf
        raw = reader(path, preload=True, verbose="error")
        signals = [i for i in range(len(header.labels)) if not header.is_annotation(i)]
        compared = 0
        for i, x in zip(signals, read_signals(path, header, signals)):
            if header.sfreqs[i] != raw.info["sfreq"]:
                continue  # MNE brought it to its common rate
            scale = 1e-6 if header.units[i] == "uV" else 1.0
            np.testing.assert_allclose(x * scale, raw.get_data(picks=[header.labels[i]])[0],
                                       rtol=1e-12, atol=1e-18)
            compared += 1
        assert compared >= 1
        meas = raw.info["meas_date"].replace(tzinfo=None)
        assert header.start_time == meas


def test_start_time_years_and_bad_fields():
    base = bytearray(b" " * 184)

    def at(date: str, time: str, rec: str = "") -> datetime | None:
        head = bytearray(base)
        head[88:168] = _field(rec, 80)
        head[168:176], head[176:184] = _field(date, 8), _field(time, 8)
        return parse_start_time(bytes(head))

    assert at("01.02.84", "03.04.05") == datetime(2084, 2, 1, 3, 4, 5)
    assert at("01.02.85", "03.04.05") == datetime(1985, 2, 1, 3, 4, 5)
    assert at("01.02.85", "03.04.05", "Startdate 01-FEB-2085 X Y Z") == datetime(
        2085, 2, 1, 3, 4, 5)
    assert at("31.02.85", "03.04.05") is None
    assert at("01.02.85", "xx") == datetime(1985, 2, 1)


def test_scoring_reads_without_mne(tmp_path):
    """``read_psg`` (what ``score`` and ``replay`` read with) loads neither MNE nor
    scipy.signal; before, MNE's import and read took 1.4 s of an 8-h night's 2.5 s."""
    from edge_scorer.simulate import simulate_nights

    (psg, _), = simulate_nights(tmp_path, 1, layout="sleep-edf", seed=3, duration_h=0.1)
    code = ("import sys; from edge_scorer.io.psg import read_psg; "
            f"rec = read_psg({str(psg)!r}); "
            "print(rec.native_sfreqs, sorted(m for m in ('mne', 'scipy.signal') "
            "if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout.strip()
    assert out == "(100.0, 100.0, 100.0, 1.0) []"
    rec = read_psg(psg)
    assert [r.size for r in rec.rows] == [36000, 36000, 36000, 360]
    assert rec.data.shape == (4, 36000) and np.array_equal(rec.data[3, :100],
                                                           np.repeat(rec.rows[3][:1], 100))
