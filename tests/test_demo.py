"""The README's main job: ``edge-scorer demo`` end to end over real loopback LSL."""

from __future__ import annotations

from edge_scorer.cli import main
from edge_scorer.engine.sinks import read_epoch_log
from edge_scorer.io.hypnogram_io import read_hypnogram


def test_demo_on_a_simulated_night(tmp_path, capsys):
    assert main(["demo", "--simulated", "-o", str(tmp_path), "--duration-h", "1.0",
                 "--seed", "4", "--speed", "600"]) == 0
    out = capsys.readouterr().out
    assert "SIMULATED" in out and "agreement with the night's hypnogram" in out
    assert "Cohen's kappa" in out and "provisional latency" in out
    assert "  00:30  " in out  # the hypnogram printed as it grew, one line per 30 min
    scored = read_hypnogram(tmp_path / "hypnogram.csv")
    assert scored.n_epochs == 120 and scored.probabilities is not None
    logged, info = read_epoch_log(tmp_path / "epochs.csv")
    assert logged.n_epochs == 120 and set(info["status"]) == {"final"}
    assert (tmp_path / "stats.json").is_file() and (tmp_path / "hypnogram.edf").is_file()
    assert main(["demo", "--simulated", "-o", str(tmp_path)]) == 2  # will not overwrite


def test_demo_on_the_real_excerpt(tmp_path, capsys, psg_excerpt):
    hyp = psg_excerpt.with_name("SC4001E0-PSG_first300s_hypnogram.csv")
    assert main(["demo", "--edf", str(psg_excerpt), "--hypnogram", str(hyp),
                 "-o", str(tmp_path), "--speed", "100"]) == 0
    out = capsys.readouterr().out
    assert "your recording" in out and "SIMULATED" not in out
    assert read_hypnogram(tmp_path / "hypnogram.csv").n_epochs == 10


def test_demo_uses_a_sleep_edf_night_found_on_disk(tmp_path, capsys, monkeypatch, psg_excerpt,
                                                   shared_data):
    """Without --edf the demo takes SC4001 from MNE's folder (no download when it is there).

    The real 5-min excerpt and the real SC4001 hypnogram stand in for the full night here.
    """
    import shutil

    folder = tmp_path / "mne" / "physionet-sleep-data"
    folder.mkdir(parents=True)
    shutil.copy(psg_excerpt, folder / "SC4001E0-PSG.edf")
    shutil.copy(shared_data / "hypnograms" / "SC4001EC-Hypnogram.edf", folder)
    monkeypatch.setenv("MNE_DATA", str(tmp_path / "mne"))
    monkeypatch.delenv("PHYSIONET_SLEEP_PATH", raising=False)
    assert main(["demo", "-o", str(tmp_path / "out"), "--speed", "100"]) == 0
    out = capsys.readouterr().out
    assert "real Sleep-EDF night SC4001" in out and "SIMULATED" not in out
    assert "agreement with the night's hypnogram" in out
    assert read_hypnogram(tmp_path / "out" / "hypnogram.csv").n_epochs == 10
