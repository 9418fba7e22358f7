"""The README's main job: ``edge-scorer demo`` end to end (simulated night, and a real EDF)."""

from __future__ import annotations

from edge_scorer.cli import main
from edge_scorer.hypnogram_io import read_hypnogram


def test_demo_on_a_simulated_night(tmp_path, capsys):
    assert main(["demo", "-o", str(tmp_path), "--duration-h", "1.5", "--seed", "4"]) == 0
    out = capsys.readouterr().out
    assert "SIMULATED" in out and "agreement with the reference" in out
    assert "Cohen's kappa" in out
    scored = read_hypnogram(tmp_path / "scored.csv")
    assert scored.n_epochs == 180 and scored.probabilities is not None
    assert (tmp_path / "render" / "contact_sheet.png").stat().st_size > 10_000


def test_demo_on_the_real_excerpt(tmp_path, capsys, psg_excerpt):
    hyp = psg_excerpt.with_name("SC4001E0-PSG_first300s_hypnogram.csv")
    assert main(["demo", "--edf", str(psg_excerpt), "--hypnogram", str(hyp),
                 "-o", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "your recording" in out and "SIMULATED" not in out
    assert read_hypnogram(tmp_path / "scored.csv").n_epochs == 10
