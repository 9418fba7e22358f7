"""PSG reading and montage mapping on real EDF files (written by our EDF writer, read by MNE)."""

from __future__ import annotations

import numpy as np
import pytest

from edge_scorer import Hypnogram, load_spec
from edge_scorer.io.edf_writer import EdfSignal, write_edf
from edge_scorer.io.montage import ChannelMapError, map_channels, parse_channel_overrides
from edge_scorer.io.psg import PsgReadError, align_hypnogram, read_edf_header, read_psg

SPEC = load_spec("sleep-edf")


def _signals(n_s: float = 120.0, *, labels=None, eeg_scale: float = 1.0, unit: str = "uV"):
    rng = np.random.default_rng(0)
    labels = labels or ["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal"]
    out = [EdfSignal(lb, eeg_scale * 20 * rng.standard_normal(int(n_s * 100)), 100.0, unit)
           for lb in labels]
    out.append(EdfSignal("EMG submental", 3 + rng.random(int(n_s)), 1.0, "uV"))
    return out


def test_reads_rows_in_spec_order_and_units(tmp_path):
    sig = _signals(labels=["EOG horizontal", "EEG Pz-Oz", "EEG Fpz-Cz"])
    path = write_edf(tmp_path / "night.edf", sig)
    rec = read_psg(path, SPEC)
    assert rec.source_labels == ("EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG submental")
    assert rec.sfreq == 100.0 and rec.data.shape == (4, 12000)
    assert rec.native_sfreqs == (100.0, 100.0, 100.0, 1.0)
    # uV in the file come back as uV (EDF quantisation: 16 bit over the data range)
    np.testing.assert_allclose(rec.data[0], sig[2].data, atol=0.01 * np.ptp(sig[2].data) / 100)
    assert rec.warnings == []


def test_real_excerpt(psg_excerpt):
    rec = read_psg(psg_excerpt, SPEC)
    assert rec.duration_s == 300.0
    assert rec.start_time is not None and rec.start_time.year == 1989
    amp = np.median(np.abs(rec.data[:3]), axis=1)
    assert np.all((amp > 1) & (amp < 200)), amp  # microvolts


def test_missing_channel_lists_what_the_file_has(tmp_path):
    path = write_edf(tmp_path / "n.edf", _signals(labels=["EEG C4-A1", "EOG horizontal"]))
    with pytest.raises(ChannelMapError) as err:
        read_psg(path, SPEC)
    msg = str(err.value)
    assert "'EEG C4-A1'" in msg and "'EOG horizontal'" in msg  # what the file has
    assert "--channel 'EEG Fpz-Cz=<label>'" in msg and "EEG Pz-Oz" in msg
    # the override maps it (the same channel may serve two rows only if asked explicitly)
    rec = read_psg(path, SPEC, parse_channel_overrides(
        ["EEG Fpz-Cz=EEG C4-A1", "EEG Pz-Oz=eeg c4-a1"]))
    assert rec.source_labels[:2] == ("EEG C4-A1", "EEG C4-A1")


def test_override_errors():
    with pytest.raises(ValueError, match="ROW=LABEL"):
        parse_channel_overrides(["EEG Fpz-Cz"])
    with pytest.raises(ChannelMapError, match="unknown row"):
        map_channels(["a"], SPEC, {"C3": "a"})
    with pytest.raises(ChannelMapError, match="has no channel 'nope'"):
        map_channels(["EEG Fpz-Cz"], SPEC, {"EEG Fpz-Cz": "nope"})


def test_alias_beats_regex_and_ambiguity_is_refused():
    shhs = load_spec("shhs")
    labels = ["EEG", "EEG(sec)", "EOG(L)", "EOG(R)", "EMG", "ECG", "AIRFLOW", "THOR RES",
              "ABDO RES", "SaO2"]
    assert map_channels(labels[::-1], shhs) == [8, 9, 7, 6, 5, 4, 3, 2, 1, 0]
    # two channels fit the chin-EMG regex and none is an alias: refuse, list both
    with pytest.raises(ChannelMapError, match="several channels.*EMG1.*EMG2"):
        map_channels(["EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG1", "EMG2"],
                     shhs.__class__.from_dict({
                         "name": "t", "sfreq": 100, "image_height": 10,
                         "rows": [{"name": "chin", "type": "EMG", "height": 10,
                                   "range": [0, 1], "regex": "(?i)^emg"}]}))


def test_rate_too_low_for_row(tmp_path):
    sig = _signals()
    sig[1] = EdfSignal("EEG Pz-Oz", np.zeros(120), 1.0, "uV")
    path = write_edf(tmp_path / "n.edf", sig)
    with pytest.raises(PsgReadError, match=r"'EEG Pz-Oz'.*1 Hz.*at least 70 Hz"):
        read_psg(path, SPEC)


def test_volts_labelled_as_microvolts_is_corrected_with_warning(tmp_path):
    # data in volts (2e-5) but the header says uV: amplitudes 1e6 too small
    path = write_edf(tmp_path / "n.edf", _signals(eeg_scale=1e-6))
    rec = read_psg(path, SPEC)
    assert any("volts labelled" in w for w in rec.warnings)
    assert 5 < np.median(np.abs(rec.data[0])) < 50


def test_microvolts_labelled_as_volts(tmp_path):
    path = write_edf(tmp_path / "n.edf", _signals(unit="V"))
    rec = read_psg(path, SPEC)
    assert any("microvolts labelled" in w for w in rec.warnings)
    assert 5 < np.median(np.abs(rec.data[0])) < 50


def test_flat_channel_warns_and_all_flat_is_an_error(tmp_path):
    sig = _signals()
    sig[0] = EdfSignal("EEG Fpz-Cz", np.zeros(12000), 100.0, "uV", phys_range=(-100, 100))
    rec = read_psg(write_edf(tmp_path / "a.edf", sig), SPEC)
    assert any("'EEG Fpz-Cz'" in w and "flat" in w for w in rec.warnings)
    flat = [EdfSignal(s.label, np.zeros_like(s.data), s.sfreq, "uV", phys_range=(-100, 100))
            for s in sig]
    with pytest.raises(PsgReadError, match="no usable channel"):
        read_psg(write_edf(tmp_path / "b.edf", flat), SPEC)


def test_truncated_and_corrupt_files(tmp_path):
    path = write_edf(tmp_path / "n.edf", _signals())
    data = path.read_bytes()
    trunc = tmp_path / "trunc.edf"
    trunc.write_bytes(data[: len(data) - 5000])
    with pytest.raises(PsgReadError, match=r"truncated file .*3 of 4 data records"):
        read_psg(trunc, SPEC)
    bad = tmp_path / "bad.edf"
    bad.write_bytes(b"0       " + b"garbage" * 100)
    with pytest.raises(PsgReadError, match="corrupt EDF header"):
        read_psg(bad, SPEC)
    tiny = tmp_path / "tiny.edf"
    tiny.write_bytes(b"0    ")
    with pytest.raises(PsgReadError, match="too short"):
        read_edf_header(tiny)
    with pytest.raises(FileNotFoundError, match="not found"):
        read_psg(tmp_path / "missing.edf", SPEC)
    with pytest.raises(PsgReadError, match="expected an .edf"):
        read_psg(tmp_path.joinpath("x.txt").resolve().parent / __file__, SPEC)


def test_align_hypnogram_longer_and_shorter():
    hyp = Hypnogram(np.array([0, 1, 2, 3, 4, 2], dtype=np.int8))
    warnings: list[str] = []
    long_ = align_hypnogram(hyp, 4 * 30.0, warnings=warnings)
    assert long_.stages.tolist() == [0, 1, 2, 3]
    assert any("outside" in w for w in warnings)
    warnings.clear()
    short = align_hypnogram(hyp, 8 * 30.0 + 10, warnings=warnings)
    assert short.stages.tolist() == [0, 1, 2, 3, 4, 2, -1, -1]
    assert any("only 6 of the signal's 8" in w for w in warnings)
    shifted = align_hypnogram(Hypnogram(hyp.stages, onset_s=60.0), 5 * 30.0)
    assert shifted.stages.tolist() == [-1, -1, 0, 1, 2]
    with pytest.raises(ValueError, match="not a multiple of 30"):
        align_hypnogram(Hypnogram(hyp.stages, onset_s=45.0), 300.0)
