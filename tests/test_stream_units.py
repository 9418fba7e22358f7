"""Units on the live path: every spelling of the stream description, conversion, the amplitude
check that refuses a stream off by 1e3/1e6, and mne-lsl's ``PlayerLSL`` (the standard LSL
player, a real peer) in volts and in microvolts scored by ``edge-scorer stream``.

The real Sleep-EDF excerpt (SC4001E0, first 300 s) is the signal throughout.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from edge_scorer.stream.stream_units import (
    StreamUnitError,
    parse_unit_overrides,
    row_scales,
    volts_per_unit,
)

SPEC_ROWS = ("EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG submental")


def test_unit_spellings_and_overrides():
    from edge_scorer.io.spec import load_spec

    for text, v in (("V", 1), ("volts", 1), ("mV", 1e-3), ("millivolts", 1e-3), ("uV", 1e-6),
                    ("µV", 1e-6), ("μV", 1e-6), ("microvolts", 1e-6), (" Microvolts ", 1e-6),
                    ("nV", 1e-9), ("0", 1), ("-3", 1e-3), ("-6", 1e-6)):
        assert volts_per_unit(text) == pytest.approx(v), text
    for text in ("", "none", "n/a", "DegC", "%", None):
        assert volts_per_unit(text) is None
    with pytest.raises(ValueError, match="power of ten"):
        volts_per_unit("-40")
    spec = load_spec("sleep-edf")
    scales, used = row_scales(spec, ["0", "microvolts", "-3", ""])
    np.testing.assert_allclose(scales, [1e6, 1, 1e3, 1])
    scales, used = row_scales(spec, ["0", "0", "0", "0"], {"EEG Pz-Oz": "uV"})
    np.testing.assert_allclose(scales, [1e6, 1, 1e6, 1e6])
    assert used[1] == "uV"
    assert parse_unit_overrides(["uV"], spec) == dict.fromkeys(SPEC_ROWS, "uV")
    assert parse_unit_overrides(["EEG Fpz-Cz=mV"], spec) == {"EEG Fpz-Cz": "mV"}
    with pytest.raises(ValueError, match="no row 'EEG C3'"):
        parse_unit_overrides(["EEG C3=uV"], spec)
    with pytest.raises(ValueError, match="not a voltage unit"):
        parse_unit_overrides(["percent"], spec)
    from edge_scorer.cli import main

    assert main(["stream", "--name", "nothing-here", "--units", "percent"]) == 2


def _excerpt_rows(psg_excerpt: Path, seconds: float) -> tuple[list[np.ndarray], list[float]]:
    """The spec rows of the real excerpt in uV at native rates, the first ``seconds``."""
    from edge_scorer.io.psg import read_psg

    rows, rates = read_psg(psg_excerpt, "sleep-edf").native_rows()
    return [x[: int(seconds * fs)] for x, fs in zip(rows, rates)], rates


def _outlet(name: str, unit: str, rates: list[float], desc_units: str | None = None):
    """One pylsl outlet per rate, spec labels, ``unit`` in the description (mne-lsl style)."""
    import pylsl

    outlets = []
    for i, fs in enumerate(sorted(set(rates), reverse=True)):
        labels = [r for r, f in zip(SPEC_ROWS, rates) if f == fs]
        info = pylsl.StreamInfo(name if i == 0 else f"{name}-{fs:g}Hz", "eeg", len(labels), fs,
                                pylsl.cf_double64, f"{name}/{fs:g}Hz")
        chans = info.desc().append_child("channels")
        for lb in labels:
            ch = chans.append_child("channel")
            ch.append_child_value("label", lb)
            ch.append_child_value("unit", desc_units if desc_units is not None else unit)
        outlets.append((fs, labels, pylsl.StreamOutlet(info)))
    return outlets


def _push_all(outlets, rows, rates, factor: float) -> None:
    """Push the rows (times ``factor``) at once, stamped as if recorded over the last seconds."""
    import pylsl

    t0 = pylsl.local_clock() - len(rows[0]) / rates[0]
    for fs, labels, outlet in outlets:
        data = np.stack([rows[SPEC_ROWS.index(lb)] for lb in labels], axis=1) * factor
        outlet.push_chunk(data.tolist(), (t0 + np.arange(len(data)) / fs).tolist())


def _pull_seconds(src, seconds: float, timeout: float = 20.0) -> list[np.ndarray]:
    got: list[list[np.ndarray]] = [[] for _ in SPEC_ROWS]
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        chunk = src.pull()
        if chunk is not None:
            for r, x in enumerate(chunk.rows):
                got[r].append(x)
        if all(sum(len(x) for x in g) >= seconds * fs for g, fs in zip(got, src.row_sfreq)):
            break
        time.sleep(0.02)
    return [np.concatenate(g) for g in got]


@pytest.mark.parametrize("unit,factor", [("0", 1e-6), ("-6", 1.0), ("V", 1e-6),
                                         ("millivolts", 1e-3), ("µV", 1.0)])
def test_stream_units_are_converted(psg_excerpt, unit, factor):
    """A stream in volts (mne-lsl code 0), microvolts (-6), V, mV or µV gives the file's uV."""
    from edge_scorer.io.spec import load_spec
    from edge_scorer.stream.inlet import LslSource

    rows, rates = _excerpt_rows(psg_excerpt, 12.0)
    name = f"units-{uuid.uuid4().hex[:8]}"
    outlets = _outlet(name, unit, rates)
    src = LslSource(load_spec("sleep-edf"), name=name, timeout_s=5.0).connect()
    try:
        _push_all(outlets, rows, rates, factor)
        got = _pull_seconds(src, 11.0)
    finally:
        src.disconnect()
        del outlets
    for r, (x, ref) in enumerate(zip(got, rows)):
        n = min(len(x), len(ref))
        assert n >= 11 * rates[r] - 1
        np.testing.assert_allclose(x[:n], ref[:n], rtol=1e-6, atol=1e-6, err_msg=SPEC_ROWS[r])
    assert src.amplitude.first["EEG Fpz-Cz"] > 1.0                  # uV, plausible


def test_a_stream_off_by_a_unit_factor_is_refused(psg_excerpt):
    """Volts described as microvolts (what a player without units does): refused before the
    first epoch is scored, the message naming the row, the cause and the --units fix; with
    --units the same stream is read right."""
    from edge_scorer.io.spec import load_spec
    from edge_scorer.stream.inlet import LslSource

    spec = load_spec("sleep-edf")
    rows, rates = _excerpt_rows(psg_excerpt, 12.0)
    name = f"wrong-{uuid.uuid4().hex[:8]}"
    outlets = _outlet(name, "microvolts", rates)
    src = LslSource(spec, name=name, timeout_s=5.0).connect()
    try:
        _push_all(outlets, rows, rates, 1e-6)
        with pytest.raises(StreamUnitError) as exc:
            _pull_seconds(src, 11.0)
    finally:
        src.disconnect()
    text = str(exc.value)
    assert "volts labelled as uV" in text and "--units 'EEG Fpz-Cz=V'" in text
    assert "Refusing" in text
    forced = LslSource(spec, name=name, timeout_s=5.0,
                       units=parse_unit_overrides(["V"], spec)).connect()
    try:
        _push_all(outlets, rows, rates, 1e-6)
        got = _pull_seconds(forced, 11.0)
    finally:
        forced.disconnect()
        del outlets
    np.testing.assert_allclose(got[0][:1000], rows[0][:1000], rtol=1e-6, atol=1e-6)


def test_implausible_epochs_are_flagged():
    from edge_scorer.io.spec import load_spec
    from edge_scorer.stream.stream_units import AmplitudeGuard

    spec = load_spec("sleep-edf")
    guard = AmplitudeGuard(spec, [100.0, 100.0, 100.0, 1.0], ["uV"] * 4)
    rng = np.random.default_rng(0)
    for k in range(3):
        eeg = rng.normal(0, 20, 3000) * (200 if k == 1 else 1)    # epoch 1: 4000 uV MAD
        guard.add([eeg, rng.normal(0, 20, 3000), rng.normal(0, 30, 3000),
                   np.abs(rng.normal(3, 1, 30))])
    assert guard.flags == {1: ["EEG Fpz-Cz"]}
    assert guard.summary()["implausible_epochs"] == {"1": ["EEG Fpz-Cz"]}


def _crop(psg_excerpt: Path, out: Path, seconds: float) -> Path:
    """The spec rows of the first ``seconds`` of the real excerpt, at the 100 Hz MNE reads
    them at (what PlayerLSL publishes), as an EDF file."""
    import mne

    from edge_scorer.io.edf_writer import EdfSignal, write_edf

    raw = mne.io.read_raw_edf(psg_excerpt, preload=True, verbose="error")
    n = int(seconds * raw.info["sfreq"])
    return write_edf(out, [EdfSignal(ch, raw.get_data(picks=[ch])[0, :n] * 1e6,
                                     raw.info["sfreq"], "uV") for ch in SPEC_ROWS],
                     record_s=1.0, start_time=raw.info["meas_date"].replace(tzinfo=None))


@pytest.mark.slow
def test_player_lsl_in_volts_and_microvolts_gives_the_offline_stages(psg_excerpt, model,
                                                                     tmp_path):
    """mne-lsl's PlayerLSL publishes MNE's data in volts (unit code 0) or, after
    set_channel_units, in microvolts (-6); ``edge-scorer stream`` scores both as offline
    scoring scores the samples it received (a late join loses the first chunks: the
    reference starts at the first received sample)."""
    mne_lsl_player = pytest.importorskip("mne_lsl.player")
    import mne

    from edge_scorer.engine.engine import Engine
    from edge_scorer.io.hypnogram_io import read_hypnogram

    seconds = 80.0
    crop = _crop(psg_excerpt, tmp_path / "crop.edf", seconds)
    raw = mne.io.read_raw_edf(crop, preload=True, verbose="error")
    players, procs, outs = [], [], {}
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    for kind in ("volts", "microvolts"):
        name = f"player-{kind}-{uuid.uuid4().hex[:6]}"
        player = mne_lsl_player.PlayerLSL(crop, chunk_size=10, n_repeat=1, name=name,
                                          source_id=name)
        if kind == "microvolts":
            player.set_channel_units(dict.fromkeys(player.ch_names, "microvolts"))
        outs[kind] = tmp_path / kind
        players.append(player.start())
        procs.append(subprocess.Popen(
            [sys.executable, "-c", "import sys; from edge_scorer.cli import main; "
             "sys.exit(main(sys.argv[1:]))", "stream", "--name", name, "-o", str(outs[kind]),
             "--until-idle", "4"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
            text=True))
    try:
        results = [p.communicate(timeout=seconds + 90) for p in procs]
    finally:
        for p in procs:
            p.kill()
        for pl in players:
            pl.stop() if pl.running else None
    for (out, _), p in zip(results, procs):
        assert p.returncode == 0, out[-3000:]
    ref_data = raw.get_data(picks=list(SPEC_ROWS)) * 1e6                   # uV, 100 Hz
    for kind, folder in outs.items():
        run = json.loads((folder / "run.json").read_text())
        assert run["amplitude"]["units"]["EEG Fpz-Cz"] == ("0" if kind == "volts" else "-6")
        assert 5.0 < run["amplitude"]["first_amplitude_uv"]["EEG Fpz-Cz"] < 200.0
        received = run["samples"]["received"]["EEG Fpz-Cz"]
        k = ref_data.shape[1] - received                                    # lost at the join
        assert 0 <= k < 10 * 100
        engine = Engine(model, [100.0] * 4)
        engine.push([x[k:] for x in ref_data])
        engine.finish()
        offline = engine.hypnogram()
        live = read_hypnogram(folder / "hypnogram.csv")
        assert live.n_epochs == offline.n_epochs >= 2
        np.testing.assert_array_equal(live.stages, offline.stages, err_msg=kind)
        np.testing.assert_allclose(live.probabilities, offline.probabilities, atol=2e-3,
                                   err_msg=kind)
