"""Property-based fuzzing (hypothesis) of the file readers that take outside input: the
hypnogram readers and the EDF/BDF header parser (and ``read_psg`` behind it).

Random and mutated real files: every input gives a result or one of our error types, never
another exception, and never more than a bounded amount of memory (traced by tracemalloc).
``EDGE_SCORER_FUZZ_EXAMPLES`` sets the examples per property (120 by default).
"""

from __future__ import annotations

import os
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

from edge_scorer.io.edf_writer import EdfSignal, write_edf  # noqa: E402
from edge_scorer.io.hypnogram_io import HypnogramError, read_hypnogram  # noqa: E402
from edge_scorer.io.montage import ChannelMapError  # noqa: E402
from edge_scorer.io.psg import EdfHeader, PsgReadError, read_edf_header, read_psg  # noqa: E402
from edge_scorer.stats.hypnogram import Hypnogram  # noqa: E402

#: Most memory one read may take (bytes, traced by tracemalloc).
MEMORY_LIMIT = 64 * 1024 * 1024
#: Examples per property (EDGE_SCORER_FUZZ_EXAMPLES=5000 for a long run).
FUZZ = settings(max_examples=int(os.environ.get("EDGE_SCORER_FUZZ_EXAMPLES", "120")),
                deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                                       HealthCheck.function_scoped_fixture])


def _bounded(fn, *args, **kwargs):
    """Call ``fn``; return (result or exception, peak traced memory)."""
    tracemalloc.start()
    try:
        try:
            out = fn(*args, **kwargs)
        except Exception as exc:  # noqa: BLE001 - classified by the caller
            out = exc
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    return out, peak


def _mutate(data: bytes, edits: list[tuple[int, int, int]]) -> bytes:
    """Apply (kind, position, value) edits: 0 overwrite a byte, 1 insert, 2 delete, 3 cut."""
    buf = bytearray(data)
    for kind, pos, value in edits:
        if not buf:
            break
        pos %= len(buf)
        if kind == 0:
            buf[pos] = value
        elif kind == 1:
            buf.insert(pos, value)
        elif kind == 2:
            del buf[pos]
        else:
            del buf[pos:]
    return bytes(buf)


EDITS = st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1 << 20), st.integers(0, 255)),
                 min_size=1, max_size=8)


# ---------------------------------------------------------------- hypnograms
def _hypnogram_ok(path: Path) -> None:
    out, peak = _bounded(read_hypnogram, path)
    assert peak < MEMORY_LIMIT, f"{peak / 2**20:.0f} MiB for a {path.stat().st_size}-byte file"
    if isinstance(out, Exception):
        assert isinstance(out, HypnogramError), f"{type(out).__name__}: {out}"
        assert str(path) in str(out) or "epoch_s" in str(out)
    else:
        assert isinstance(out, Hypnogram) and 0 < out.n_epochs <= 7 * 24 * 120


@pytest.fixture(scope="module")
def hypnogram_seeds(tmp_path_factory) -> dict[str, bytes]:
    """Real-shaped hypnogram files of every format, written by our writers."""
    folder = tmp_path_factory.mktemp("seeds")
    rng = np.random.default_rng(0)
    hyp = Hypnogram(rng.integers(-1, 5, 40).astype(np.int8), 30.0,
                    probabilities=rng.dirichlet(np.ones(5), 40).astype(np.float32))
    seeds = {}
    for name in ("h.csv", "h.tsv", "h_events.tsv", "h.edf", "h.xml"):
        seeds[name] = hyp.write(folder / name).read_bytes()
    return seeds


@FUZZ
@given(data=st.binary(max_size=4096), suffix=st.sampled_from([".csv", ".tsv", ".xml", ".edf",
                                                               "_events.tsv", ".txt"]))
def test_random_bytes_as_a_hypnogram(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("h") / f"hyp{suffix}"
    path.write_bytes(data)
    _hypnogram_ok(path)


@FUZZ
@given(name=st.sampled_from(["h.csv", "h.tsv", "h_events.tsv", "h.edf", "h.xml"]), edits=EDITS)
def test_mutated_hypnogram_files(tmp_path_factory, hypnogram_seeds, name, edits):
    path = tmp_path_factory.mktemp("h") / name
    path.write_bytes(_mutate(hypnogram_seeds[name], edits))
    _hypnogram_ok(path)


@FUZZ
@given(rows=st.lists(st.tuples(
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12)),
    st.one_of(st.floats(allow_nan=True, allow_infinity=True), st.integers(-10**12, 10**12)),
    st.sampled_from(["W", "N1", "N2", "N3", "REM", "R", "?", "5", "-1", "x", ""])),
    min_size=1, max_size=20))
def test_csv_onsets_and_durations(tmp_path_factory, rows):
    path = tmp_path_factory.mktemp("h") / "h.csv"
    path.write_text("onset_s,duration_s,stage\n" + "".join(f"{o},{d},{s}\n" for o, d, s in rows))
    _hypnogram_ok(path)


def test_real_hypnogram_mutations(shared_data, tmp_path):
    """Mutations of the real Sleep-EDF hypnogram (a fixed sample of cuts and flips)."""
    real = (shared_data / "hypnograms" / "SC4001EC-Hypnogram.edf").read_bytes()
    rng = np.random.default_rng(13)
    for k in range(60):
        edits = [(int(rng.integers(0, 4)), int(rng.integers(0, len(real))),
                  int(rng.integers(0, 256))) for _ in range(int(rng.integers(1, 4)))]
        path = tmp_path / f"m{k}-Hypnogram.edf"
        path.write_bytes(_mutate(real, edits))
        _hypnogram_ok(path)


# ---------------------------------------------------------------- EDF headers
def _header_ok(path: Path) -> None:
    out, peak = _bounded(read_edf_header, path)
    assert peak < MEMORY_LIMIT
    if isinstance(out, Exception):
        assert isinstance(out, PsgReadError), f"{type(out).__name__}: {out}"
        assert path.name in str(out)
    else:
        assert isinstance(out, EdfHeader) and out.n_records > 0
        assert out.file_bytes >= out.expected_bytes  # never past the end of the file
        assert all(lo < hi for lo, hi in zip(out.digital_min, out.digital_max))


def _field(value: str, width: int) -> bytes:
    return value.encode("latin-1", "replace")[:width].ljust(width)


NUMBERS = st.one_of(st.integers(-10**9, 10**9).map(str), st.floats().map(str),
                    st.sampled_from(["", " ", "-1", "0", "1e308", "nan", "inf", "x", "-0"]))


@FUZZ
@given(ns=st.integers(0, 6), n_records=NUMBERS, record_s=NUMBERS,
       per_signal=st.lists(st.tuples(NUMBERS, NUMBERS, NUMBERS, NUMBERS, NUMBERS), min_size=6,
                           max_size=6),
       body=st.integers(0, 20_000), bdf=st.booleans(), header_size=st.one_of(st.none(), NUMBERS))
def test_random_edf_headers(tmp_path_factory, ns, n_records, record_s, per_signal, body, bdf,
                            header_size):
    """Headers whose every numeric field is random: a header or a PsgReadError naming it."""
    fixed = (b"\xffBIOSEMI" if bdf else _field("0", 8)) + b" " * 176
    fixed += _field(str(256 * (ns + 1)) if header_size is None else header_size, 8)
    fixed += _field("EDF+C", 44) + _field(n_records, 8) + _field(record_s, 8)
    fixed += _field(str(ns), 4)
    sig = [_field(f"EEG {i}", 16) for i in range(ns)] + [b" " * 80] * ns
    sig += [_field("uV", 8)] * ns
    for j in range(5):
        sig += [_field(per_signal[i][j], 8) for i in range(ns)]
        if j == 3:
            sig += [b" " * 80] * ns  # prefilter sits before samples per record
    sig += [b" " * 32] * ns
    path = tmp_path_factory.mktemp("edf") / "x.edf"
    path.write_bytes(fixed + b"".join(sig) + b"\x00" * body)
    _header_ok(path)


@pytest.fixture(scope="module")
def small_psg(tmp_path_factory) -> bytes:
    rng = np.random.default_rng(2)
    sig = [EdfSignal(lb, 20 * rng.standard_normal(6000), 100.0, "uV")
           for lb in ("EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal")]
    sig.append(EdfSignal("EMG submental", 3 + rng.random(60), 1.0, "uV"))
    return write_edf(tmp_path_factory.mktemp("psg") / "n.edf", sig).read_bytes()


@FUZZ
@given(edits=st.lists(st.tuples(st.integers(0, 3), st.integers(0, 1279),
                                st.sampled_from(b"0123456789-+. eE\x00\xffx")),
                      min_size=1, max_size=6))
def test_mutated_psg_headers_through_read_psg(tmp_path_factory, small_psg, edits):
    """Mutations of a real EDF's header, read all the way by read_psg (MNE behind it)."""
    path = tmp_path_factory.mktemp("psg") / "m.edf"
    path.write_bytes(_mutate(small_psg, edits))
    _header_ok(path)
    out, peak = _bounded(read_psg, path, "sleep-edf")
    assert peak < 4 * MEMORY_LIMIT
    if isinstance(out, Exception):
        assert isinstance(out, (PsgReadError, ChannelMapError)), f"{type(out).__name__}: {out}"


def test_real_psg_excerpt_header_mutations(psg_excerpt, tmp_path):
    real = psg_excerpt.read_bytes()
    header_bytes = int(real[184:192])
    rng = np.random.default_rng(7)
    for k in range(40):
        edits = [(int(rng.integers(0, 4)), int(rng.integers(0, header_bytes)),
                  int(rng.choice(list(b"0123456789-. x")))) for _ in range(2)]
        path = tmp_path / f"m{k}.edf"
        path.write_bytes(_mutate(real, edits))
        _header_ok(path)
