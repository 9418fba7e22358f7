"""Data fetching: offline Sleep-EDF gives a quick clear error; files on disk need no network.

The only connection attempts here go to a closed port on 127.0.0.1 (nothing leaves the machine).
"""

from __future__ import annotations

import socket
import time

import pytest

from edge_scorer.cli import main
from edge_scorer.io.datasets import (
    DataUnavailableError,
    check_connectivity,
    fetch_sleep_edf,
    parse_subjects,
    shhs_instructions,
    sleep_edf_folder,
    sleep_edf_records,
)


@pytest.fixture
def closed_port() -> int:
    """A local TCP port nobody listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_offline_sleep_edf_fails_fast_with_the_manual_route(tmp_path, closed_port, capsys):
    t0 = time.perf_counter()
    rc = main(["data", "sleep-edf", "--subjects", "0-1", "--recording", "1",
               "--path", str(tmp_path), "--probe", f"127.0.0.1:{closed_port}"])
    elapsed = time.perf_counter() - t0
    assert rc == 2
    assert elapsed < 10.0, f"the offline path took {elapsed:.1f} s (must never hang)"
    err = capsys.readouterr().err
    folder = tmp_path / "physionet-sleep-data"
    assert f"cannot reach 127.0.0.1:{closed_port}" in err
    assert str(folder) in err                                   # where to put the files
    assert "SC4ssNX0-PSG.edf + SC4ssNXY-Hypnogram.edf" in err   # the layout
    assert "SC4001E0-PSG.edf" in err and "SC4011EH-Hypnogram.edf" in err  # what is missing
    assert f"edge-scorer train --recipe sleep-edf --data {folder}" in err
    assert "Traceback" not in err


def test_files_on_disk_need_no_network(tmp_path, closed_port):
    folder = sleep_edf_folder(tmp_path)
    folder.mkdir(parents=True)
    for name in ("SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf",
                 "SC4002E0-PSG.edf", "SC4002EC-Hypnogram.edf"):
        (folder / name).write_bytes(b"0")
    pairs = fetch_sleep_edf([0], [1, 2], tmp_path, host="127.0.0.1", port=closed_port)
    assert [(p.name, h.name) for p, h in pairs] == [
        ("SC4001E0-PSG.edf", "SC4001EC-Hypnogram.edf"),
        ("SC4002E0-PSG.edf", "SC4002EC-Hypnogram.edf"),
    ]
    # one night missing -> the probe runs and the error names only the missing files
    with pytest.raises(DataUnavailableError, match="Missing here: SC4011E0-PSG.edf") as info:
        fetch_sleep_edf([0, 1], [1], tmp_path, host="127.0.0.1", port=closed_port)
    assert "SC4001E0" not in str(info.value).split("Missing here:")[1]
    # training finds the same pairs in that folder
    from training.dataset import nights_from_folder

    assert [n.name for n in nights_from_folder(folder)] == ["SC4001E0", "SC4002E0"]


def test_probe_is_bounded_even_when_name_lookup_hangs(monkeypatch):
    def hang(*args, **kwargs):  # a resolver that never answers in time
        time.sleep(5.0)
        raise OSError("late")

    monkeypatch.setattr(socket, "create_connection", hang)
    t0 = time.perf_counter()
    reason = check_connectivity("physionet.org", 443, timeout_s=0.3)
    assert time.perf_counter() - t0 < 2.0
    assert reason == "no answer within 0.3 s"


def test_probe_reports_a_listening_port_as_reachable():
    with socket.socket() as server:
        server.bind(("127.0.0.1", 0))
        server.listen(1)
        assert check_connectivity("127.0.0.1", server.getsockname()[1], timeout_s=2.0) is None


def test_subject_and_record_selection():
    assert parse_subjects("0-3,7") == [0, 1, 2, 3, 7]
    assert parse_subjects(["5", "1-2", "5"]) == [1, 2, 5]
    with pytest.raises(ValueError, match="0-19"):
        parse_subjects("a-b")
    with pytest.raises(ValueError, match="runs backwards"):
        parse_subjects("9-3")
    with pytest.raises(ValueError, match=r"no subject\(s\) \[39\]"):
        sleep_edf_records([38, 39])
    with pytest.raises(ValueError, match="1 and/or 2"):
        sleep_edf_records([0], [3])
    recs = sleep_edf_records([12, 13], [1, 2])  # subject 13 has no second night
    assert [(r.subject, r.night) for r in recs] == [(12, 1), (12, 2), (13, 1)]
    assert recs[-1].psg == "SC4131E0-PSG.edf"


def test_invalid_cli_values_are_clear(tmp_path, closed_port, capsys):
    rc = main(["data", "sleep-edf", "--subjects", "83", "--path", str(tmp_path),
               "--probe", f"127.0.0.1:{closed_port}"])
    assert rc == 2
    assert "subjects are 0-82" in capsys.readouterr().err


def test_shhs_prints_how_to_get_it(tmp_path, capsys):
    assert main(["data", "shhs", "--path", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert out == shhs_instructions(tmp_path)
    for needle in ("NSRR", "token", "https://sleepdata.org", "nsrr download",
                   f"{tmp_path}/shhs/polysomnography/edfs/shhs1/shhs1-200001.edf",
                   "annotations-events-nsrr/shhs1/shhs1-200001-nsrr.xml"):
        assert needle in out


def test_shhs_layout_in_the_instructions_is_what_training_reads(tmp_path):
    from training.dataset import nights_from_folder

    base = tmp_path / "shhs" / "polysomnography"
    (base / "edfs" / "shhs1").mkdir(parents=True)
    (base / "annotations-events-nsrr" / "shhs1").mkdir(parents=True)
    (base / "edfs" / "shhs1" / "shhs1-200001.edf").write_bytes(b"0")
    (base / "annotations-events-nsrr" / "shhs1" / "shhs1-200001-nsrr.xml").write_text("<x/>")
    assert f"--data {tmp_path}/shhs" in shhs_instructions(tmp_path)
    nights = nights_from_folder(tmp_path / "shhs")
    assert [(n.name, n.subject) for n in nights] == [("shhs1-200001", "200001")]
