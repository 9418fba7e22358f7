"""Outputs that are never torn or clobbered: atomic writes (a write limit stands in for a full
disk), refused output folders, --overwrite, and the file named on every failure."""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from edge_scorer.cli import main
from edge_scorer.engine.sinks import read_epoch_log
from edge_scorer.io.hypnogram_io import read_hypnogram
from edge_scorer.io.outputs import (
    OutputError,
    OutputExists,
    atomic_write,
    check_output_dir,
    prepare_output_dir,
)
from edge_scorer.stats.hypnogram import Hypnogram

SIM_NIGHT = (0.3, 9)


def _limited(limit_bytes: int):
    """preexec_fn: files the child writes may not grow beyond ``limit_bytes`` (EFBIG, as a full
    disk gives ENOSPC; Python ignores SIGXFSZ, so the write fails instead of killing it)."""
    def set_limit() -> None:
        resource.setrlimit(resource.RLIMIT_FSIZE, (limit_bytes, limit_bytes))

    return set_limit


def test_a_failed_write_leaves_the_old_file_whole_and_names_it(tmp_path):
    """A full disk used to leave a torn hypnogram.csv: the write was not atomic."""
    path = tmp_path / "hypnogram.csv"
    old = Hypnogram(np.array([0, 1, 2], dtype=np.int8), 30.0)
    old.write(path)
    before = path.read_bytes()
    code = textwrap.dedent(f"""
        import numpy as np
        from edge_scorer.stats.hypnogram import Hypnogram
        big = Hypnogram(np.zeros(2000, dtype=np.int8), 30.0,
                        probabilities=np.full((2000, 5), 0.2, dtype=np.float32))
        try:
            big.write({str(path)!r})
        except OSError as exc:
            print("ERROR", exc)
    """)
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          preexec_fn=_limited(16_384), timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "ERROR could not write" in proc.stdout and str(path) in proc.stdout
    assert path.read_bytes() == before  # the previous file, whole
    assert [p.name for p in tmp_path.iterdir()] == ["hypnogram.csv"]  # no temporary left


def test_atomic_write_errors_name_the_file(tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OutputError, match="could not write .*a-file/stats.json"):
        atomic_write(tmp_path / "a-file" / "stats.json", "{}")  # its folder is a file


def test_output_folder_guard(tmp_path):
    out = tmp_path / "out"
    assert check_output_dir(out) == [] and not out.exists()
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    (out / "stats.json").write_text("{}")
    (out / "png").mkdir()
    (out / "png" / "epoch_00000.png").write_bytes(b"x")
    with pytest.raises(OutputExists, match=r"stats\.json, png.*--overwrite"):
        prepare_output_dir(out)
    prepare_output_dir(out, overwrite=True)
    assert sorted(p.name for p in out.iterdir()) == ["notes.txt"]  # only ours removed
    (tmp_path / "file").write_text("x")
    with pytest.raises(NotADirectoryError):
        check_output_dir(tmp_path / "file")


def test_score_refuses_a_folder_holding_users_files(model, sim_night, tmp_path):
    """`score` used to check only epochs.csv and overwrote a user's hypnogram.csv/stats.json."""
    psg, _ = sim_night
    out = tmp_path / "out"
    out.mkdir()
    (out / "hypnogram.csv").write_text("my scoring\n")
    (out / "stats.json").write_text('{"mine": 1}\n')
    assert main(["score", str(psg), "-o", str(out), "--no-progress"]) == 2
    assert (out / "hypnogram.csv").read_text() == "my scoring\n"
    assert json.loads((out / "stats.json").read_text()) == {"mine": 1}
    assert not (out / "epochs.csv").exists()
    assert main(["score", str(psg), "-o", str(out), "--no-progress", "--overwrite"]) == 0
    assert read_hypnogram(out / "hypnogram.csv").n_epochs == 36
    assert json.loads((out / "run.json").read_text())["state"] == "finished"


def test_render_into_a_used_folder(psg_excerpt, tmp_path):
    """`render` into a used folder left the old labels.csv beside the new images."""
    hyp = psg_excerpt.with_name("SC4001E0-PSG_first300s_hypnogram.csv")
    out = tmp_path / "r"
    assert main(["render", str(psg_excerpt), "-o", str(out), "--hypnogram", str(hyp)]) == 0
    assert (out / "labels.csv").is_file()
    assert main(["render", str(psg_excerpt), "-o", str(out)]) == 2  # refused
    assert main(["render", str(psg_excerpt), "-o", str(out), "--overwrite"]) == 0
    assert not (out / "labels.csv").exists()  # no stale labels beside the new images
    assert {"epochs.npy", "contact_sheet.png", "render.json"} <= {p.name for p in out.iterdir()}


def test_score_on_a_full_disk_keeps_epochs_csv_valid_and_names_the_file(tmp_path):
    """The disk fills while scoring: the error names epochs.csv, the log ends with a whole
    batch (read back without torn lines) and no night file is torn."""
    from edge_scorer.simulate import simulate_nights

    (psg, _), = simulate_nights(tmp_path / "night", 1, layout="sleep-edf", seed=3,
                                duration_h=2.0)  # 4 blocks of 64 epochs: the 2nd fills the disk
    out = tmp_path / "out"
    proc = subprocess.run([sys.executable, "-m", "edge_scorer", "score", str(psg), "-o",
                           str(out), "--no-progress"], capture_output=True, text=True,
                          preexec_fn=_limited(12_000), timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert "could not write" in proc.stderr and "epochs.csv" in proc.stderr
    log_path = out / "epochs.csv"
    assert log_path.stat().st_size <= 12_000
    logged, info = read_epoch_log(log_path)
    assert info["n_torn"] == 0 and logged.n_epochs > 0
    assert not list(out.glob(".*.tmp"))
    run = json.loads((out / "run.json").read_text())
    assert run["state"] == "failed" and "epochs.csv" in run["errors"][0]
    for name in ("hypnogram.csv", "hypnogram.edf"):  # whole (or absent), never torn
        if (out / name).exists():
            assert read_hypnogram(out / name).n_epochs == run["n_epochs"] >= logged.n_epochs
