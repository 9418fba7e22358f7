"""Many nights from ``edge-scorer score``: one folder per night, the cohort table, re-runs.

Real simulated EDF nights, a corrupt EDF file and a missing one, the real shipped model on ONNX
Runtime, a real local process pool and a real local Ray instance with two workers; each
night's files are compared with what the single-file command writes.
"""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest

from edge_scorer.cli import main
from edge_scorer.engine.cohort import expand_inputs, is_cohort, plan_jobs

COMPARED = ("hypnogram.csv", "stats.json")


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> list[tuple[Path, Path]]:
    """Two simulated 0.1-h nights ``(psg, hypnogram)``, each PSG alone in a folder ``psg/``."""
    from edge_scorer.simulate import simulate_nights

    root = tmp_path_factory.mktemp("cohort")
    sim = simulate_nights(root / "sim", 2, layout="sleep-edf", seed=4, duration_h=0.1)
    (root / "psg").mkdir()
    out = []
    for psg, hyp in sim:
        dst = root / "psg" / psg.name
        shutil.copy(psg, dst)
        out.append((dst, hyp))
    return out


@pytest.fixture(scope="module")
def single(nights, tmp_path_factory) -> dict[str, Path]:
    """Each night scored by the single-file command: ``{stem: folder}``."""
    root = tmp_path_factory.mktemp("single")
    folders = {}
    for psg, _ in nights:
        folders[psg.stem] = root / psg.stem
        assert main(["score", str(psg), "-o", str(folders[psg.stem]), "--no-progress"]) == 0
    return folders


def _table(out: Path) -> dict[str, dict]:
    with open(out / "cohort.csv", newline="") as fh:
        return {r["night"]: r for r in csv.DictReader(fh)}


def _same_as_single(out: Path, single: dict[str, Path]) -> None:
    for stem, folder in single.items():
        for name in COMPARED:
            assert (out / stem / name).read_bytes() == (folder / name).read_bytes(), (stem, name)
        info = json.loads((out / stem / "run.json").read_text())
        assert info["state"] == "finished"


def test_inputs_folder_glob_list_and_names(nights, tmp_path):
    psgs = [p for p, _ in nights]
    folder = psgs[0].parent
    assert is_cohort([str(folder)]) and is_cohort([str(folder / "*.edf")])
    assert is_cohort([str(p) for p in psgs]) and not is_cohort([str(psgs[0])])
    assert [p for p, _ in expand_inputs([str(folder)])] == sorted(psgs)
    # the hypnograms (annotation-only EDF+) beside the PSGs are not nights
    sim = nights[0][1].parent
    assert all("Hypnogram" not in p.name for p, _ in expand_inputs([str(sim / "*.edf")]))
    listing = tmp_path / "nights.txt"
    listing.write_text(f"# cohort\n{psgs[0]},{nights[0][1]}\n\n{psgs[1]}\n{psgs[0]}\n")
    assert expand_inputs([str(listing)]) == [(psgs[0], nights[0][1]), (psgs[1], None)]
    bad = tmp_path / "bad.txt"
    bad.write_text("a.edf,b.csv,c\n")
    with pytest.raises(ValueError, match="bad.txt:1"):
        expand_inputs([str(bad)])
    with pytest.raises(FileNotFoundError, match="no file matches"):
        expand_inputs([str(tmp_path / "*.edf")])
    twins = plan_jobs([(Path("a/n.edf"), None), (Path("b/n.edf"), None)], tmp_path)
    assert [j.name for j in twins] == ["a_n", "b_n"]


def test_pool_scores_reports_failures_and_skips_finished_nights(nights, single, tmp_path,
                                                                capsys):
    corrupt = tmp_path / "corrupt.edf"
    corrupt.write_bytes(b"0       not an EDF header" * 20)
    listing = tmp_path / "nights.csv"
    listing.write_text("\n".join([f"{nights[0][0]},{nights[0][1]}", str(nights[1][0]),
                                  str(corrupt), str(tmp_path / "missing.edf")]) + "\n")
    out = tmp_path / "out"
    assert main(["score", str(listing), "-o", str(out), "--workers", "2"]) == 1
    rows = _table(out)
    stems = [p.stem for p, _ in nights]
    assert [rows[s]["status"] for s in stems] == ["ok", "ok"]
    assert float(rows[stems[0]]["accuracy"]) > 0 and rows[stems[1]]["accuracy"] == ""
    assert int(rows[stems[0]]["n_epochs"]) == 12
    stats = json.loads((single[stems[0]] / "stats.json").read_text())
    assert float(rows[stems[0]]["tst_min"]) == pytest.approx(stats["tst_min"])
    # the night's unfamiliar-signal fraction (empty when the model carries no statistics)
    frac = stats["unfamiliar_fraction"]
    assert rows[stems[0]]["unfamiliar_fraction"] == ("" if frac is None else str(frac))
    assert rows["corrupt"]["status"] == "failed" and "PsgReadError" in rows["corrupt"]["error"]
    assert rows["missing"]["status"] == "failed" and "not found" in rows["missing"]["error"]
    _same_as_single(out, single)
    first = {s: (out / s / "run.json").stat().st_mtime_ns for s in stems}
    capsys.readouterr()
    assert main(["score", str(listing), "-o", str(out), "--workers", "2"]) == 1
    assert "2 skipped" in capsys.readouterr().out
    rows = _table(out)
    assert [rows[s]["status"] for s in stems] == ["skipped", "skipped"]
    assert rows[stems[0]]["accuracy"]  # the stored row comes back
    assert {s: (out / s / "run.json").stat().st_mtime_ns for s in stems} == first


def test_many_nights_refuse_one_night_options(nights, tmp_path, capsys):
    folder = nights[0][0].parent
    assert main(["score", str(folder), "-o", str(tmp_path / "o"), "--hypnogram",
                 str(nights[0][1])]) == 2
    assert "list file" in capsys.readouterr().err
    assert main(["score", str(nights[0][0]), "-o", str(tmp_path / "o"), "--ray"]) == 2


def test_ray_local_two_workers_same_outputs(nights, single, tmp_path):
    pytest.importorskip("ray", reason="pip install 'edge-scorer[ray]'")
    out = tmp_path / "ray"
    pattern = str(nights[0][0].parent / "*.edf")
    assert main(["score", pattern, "-o", str(out), "--ray", "--workers", "2"]) == 0
    rows = _table(out)
    assert sorted(rows) == sorted(single) and {r["status"] for r in rows.values()} == {"ok"}
    _same_as_single(out, single)
