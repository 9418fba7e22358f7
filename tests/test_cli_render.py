"""``edge-scorer render`` on the real Sleep-EDF excerpt (+ its CSV hypnogram)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from edge_scorer import cli
from edge_scorer.io.spec import load_spec


@pytest.fixture(autouse=True)
def _render_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """Build the real CLI with only this subcommand (others are tested on their own)."""
    monkeypatch.setattr(cli, "COMMANDS", {"render": ".render"})


def main(argv: list[str]) -> int:
    return cli.main(argv)


def _hypnogram(psg_excerpt: Path) -> Path:
    return psg_excerpt.with_name("SC4001E0-PSG_first300s_hypnogram.csv")


def _labels(path: Path) -> list[dict[str, str]]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def test_render_real_excerpt(psg_excerpt: Path, tmp_path: Path) -> None:
    from edge_scorer.dsp.conditioning import condition, epochs_from_signal
    from edge_scorer.dsp.render import render_epochs
    from edge_scorer.io.psg import read_psg

    out = tmp_path / "out"
    rc = main(["render", str(psg_excerpt), "-o", str(out), "--hypnogram",
               str(_hypnogram(psg_excerpt)), "--png"])
    assert rc == 0
    spec = load_spec("sleep-edf")
    images = np.load(out / "epochs.npy")
    assert images.shape == (10, 224, 224) and images.dtype == np.uint8
    # the same pixels as the library path (read -> condition -> epochs -> render)
    rec = read_psg(psg_excerpt, spec)
    rows, rates = rec.native_rows()  # the 1-Hz EMG envelope is conditioned at 1 Hz
    assert rates == [100.0, 100.0, 100.0, 1.0]
    ref = render_epochs(epochs_from_signal(condition(rows, rates, spec, flush=True), spec), spec)
    assert images.tobytes() == ref.tobytes()
    meta = json.loads((out / "render.json").read_text())
    assert meta["spec"] == "sleep-edf" and meta["spec_hash"] == spec.hash
    assert meta["n_epochs"] == 10 and meta["sfreq"] == 100.0
    assert meta["source"] == str(psg_excerpt.resolve())
    assert meta["source_labels"] == list(spec.row_names)
    assert meta["native_sfreqs"] == [100.0, 100.0, 100.0, 1.0]
    assert meta["start_time"].startswith("1989-04-24T16:13:00")
    rows = _labels(out / "labels.csv")
    assert [r["epoch"] for r in rows] == [str(i) for i in range(10)]
    assert [r["onset_s"] for r in rows] == [str(30 * i) for i in range(10)]
    assert {r["stage"] for r in rows} == {"W"}
    sheet = np.asarray(Image.open(out / "contact_sheet.png"))
    assert sheet.ndim == 3 and sheet.shape[0] > 224 and sheet.shape[1] >= 10 * 224
    pngs = sorted((out / "png").glob("epoch_*.png"))
    assert len(pngs) == 10
    assert np.array_equal(np.asarray(Image.open(pngs[3])), images[3])


@pytest.mark.parametrize(("n_rows", "expect"), [(4, "marked unscored"), (14, "dropped")])
def test_hypnogram_shorter_or_longer_than_the_signal(psg_excerpt: Path, tmp_path: Path,
                                                     n_rows: int, expect: str) -> None:
    hyp = tmp_path / "hyp.csv"
    stages = ["W", "N1", "N2", "N3", "REM"] * 3
    hyp.write_text("onset_s,duration_s,stage\n" + "".join(
        f"{30 * i},30,{stages[i]}\n" for i in range(n_rows)))
    out = tmp_path / "out"
    assert main(["render", str(psg_excerpt), "-o", str(out), "--hypnogram", str(hyp)]) == 0
    rows = _labels(out / "labels.csv")
    assert len(rows) == 10
    got = [r["stage"] for r in rows]
    if n_rows < 10:
        assert got == stages[:4] + ["UNS"] * 6
    else:
        assert got == stages[:10]
    meta = json.loads((out / "render.json").read_text())
    assert any(expect in w for w in meta["warnings"])
    assert not (out / "png").exists()


def test_render_errors_are_reported(psg_excerpt: Path, tmp_path: Path) -> None:
    assert main(["render", str(tmp_path / "missing.edf"), "-o", str(tmp_path / "o")]) == 2
    assert main(["render", str(psg_excerpt), "-o", str(tmp_path / "o"), "--spec", "nope"]) == 2
    assert main(["render", str(psg_excerpt), "-o", str(tmp_path / "o"),
                 "--channel", "EEG Fpz-Cz=No Such Channel"]) == 2
    assert not (tmp_path / "o").exists()
