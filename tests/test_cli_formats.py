"""Every output format from the command line, and the command line's own consistency.

``score --format`` writes the hypnogram as CSV, EDF+, BIDS ``events.tsv`` and NSRR XML (read
back by our readers, MNE, pyedflib and an XML parser); ``edge-scorer convert`` turns the real
Sleep-EDF expert hypnograms into each format and back; ``replay --all-channels`` publishes every
channel of the file over real LSL (values checked against pyedflib); stream types match
ignoring case; and every option an error message names is accepted by the command that printed
it (real errors of score, stream, render, replay and demo).
"""

from __future__ import annotations

import json
import re
import time
import uuid
from xml.etree import ElementTree

import numpy as np
import pytest

from edge_scorer.cli import build_parser, main
from edge_scorer.io.hypnogram_io import read_hypnogram

SIM_NIGHT = (0.1, 9)  # 12 epochs


def test_score_writes_the_chosen_formats(sim_night, tmp_path, capsys):
    psg, _ = sim_night
    out = tmp_path / "bids-nsrr"
    assert main(["score", str(psg), "-o", str(out), "--format", "bids,NSRR", "--no-progress"]) == 0
    assert "hypnogram_events.tsv, hypnogram.xml" in capsys.readouterr().out
    assert not (out / "hypnogram.csv").exists() and not (out / "hypnogram.edf").exists()
    bids = read_hypnogram(out / "hypnogram_events.tsv")
    xml = read_hypnogram(out / "hypnogram.xml")
    assert bids.n_epochs == xml.n_epochs == 12
    np.testing.assert_array_equal(bids.stages, xml.stages)
    head = (out / "hypnogram_events.tsv").read_text().splitlines()[0]
    assert head.split("\t") == ["onset", "duration", "trial_type", "value"]
    root = ElementTree.parse(out / "hypnogram.xml").getroot()
    assert root.tag == "PSGAnnotation" and root.findtext("EpochLength") == "30"
    run = json.loads((out / "run.json").read_text())
    assert run["formats"] == ["bids", "nsrr"] and run["state"] == "finished"
    # repeated and comma-separated, all four; they agree with each other
    out2 = tmp_path / "all"
    assert main(["score", str(psg), "-o", str(out2), "--format", "csv", "--format", "edf,bids",
                 "--format", "nsrr", "--no-progress"]) == 0
    stages = [read_hypnogram(out2 / n).stages for n in ("hypnogram.csv", "hypnogram.edf",
                                                         "hypnogram_events.tsv", "hypnogram.xml")]
    for s in stages[1:]:
        np.testing.assert_array_equal(s, stages[0])
    np.testing.assert_array_equal(stages[0], bids.stages)
    mne = pytest.importorskip("mne")
    assert mne.read_annotations(out2 / "hypnogram.edf").duration.sum() == pytest.approx(360.0)
    # the folder guard knows the new files: a second run is refused without --overwrite
    assert main(["score", str(psg), "-o", str(out), "--no-progress"]) == 2
    with pytest.raises(SystemExit) as exc:
        main(["score", str(psg), "-o", str(tmp_path / "x"), "--format", "docx"])
    assert exc.value.code == 2
    assert "unknown hypnogram format 'docx'" in capsys.readouterr().err


def test_convert_real_hypnograms(shared_data, tmp_path, capsys):
    """A real Sleep-EDF expert hypnogram (EDF+) into every format and back."""
    pyedflib = pytest.importorskip("pyedflib")
    mne = pytest.importorskip("mne")
    src = shared_data / "hypnograms" / "SC4001EC-Hypnogram.edf"
    ref = read_hypnogram(src)
    assert ref.n_epochs > 800
    outs = {}
    for name in ("night.csv", "night.tsv", "night_events.tsv", "night.edf", "night.xml"):
        out = tmp_path / name
        assert main(["convert", str(src), "-o", str(out)]) == 0, name
        back = read_hypnogram(out)
        np.testing.assert_array_equal(back.stages, ref.stages, err_msg=name)
        assert back.onset_s == ref.onset_s
        outs[name] = out
    assert "2 epochs" not in capsys.readouterr().out
    assert read_hypnogram(outs["night.csv"]).start_time == ref.start_time is not None
    assert read_hypnogram(outs["night_events.tsv"]).meta["format"] == "bids"
    # independent readers
    ann = mne.read_annotations(outs["night.edf"])
    with pyedflib.EdfReader(str(outs["night.edf"])) as edf:
        onsets, durations, texts = edf.readAnnotations()
        start = edf.getStartdatetime()
    assert list(texts) == list(ann.description) and start == ref.start_time
    np.testing.assert_allclose(onsets, ann.onset)
    np.testing.assert_allclose(durations.sum(), ref.n_epochs * 30.0)
    expanded = np.concatenate([np.full(int(round(d / 30)), int(
        {"W": 0, "1": 1, "2": 2, "3": 3, "R": 4, "?": -1}[t.rsplit(" ", 1)[-1]]))
        for d, t in zip(durations, texts)])
    np.testing.assert_array_equal(expanded, ref.stages)
    root = ElementTree.parse(outs["night.xml"]).getroot()
    events = [e for e in root.iter("ScoredEvent") if e.findtext("EventType") == "Stages|Stages"]
    assert sum(float(e.findtext("Duration")) for e in events) == ref.n_epochs * 30.0
    # back again from the converted files, across formats
    assert main(["convert", str(outs["night.xml"]), "-o", str(tmp_path / "again.edf")]) == 0
    np.testing.assert_array_equal(read_hypnogram(tmp_path / "again.edf").stages, ref.stages)
    # refusals
    assert main(["convert", str(src), "-o", str(outs["night.csv"])]) == 2        # exists
    assert main(["convert", str(src), "-o", str(tmp_path / "night.txt")]) == 2   # which format?
    assert main(["convert", str(tmp_path / "none.edf"), "-o", str(tmp_path / "n.csv")]) == 2
    assert main(["convert", str(src), "-o", str(tmp_path / "b.txt"), "--format", "bids"]) == 0
    np.testing.assert_array_equal(read_hypnogram(tmp_path / "b.txt", fmt="bids").stages,
                                  ref.stages)
    err = capsys.readouterr().err
    assert "--overwrite" in err and "--format" in err


def test_stream_type_matches_ignoring_case():
    import pylsl

    from edge_scorer.stream.inlet import find_streams, resolve_stream

    name = f"case-{uuid.uuid4().hex[:8]}"
    outlet = pylsl.StreamOutlet(pylsl.StreamInfo(name, "eeg", 2, 100.0, pylsl.cf_float32,
                                                 name))
    try:
        for stype in ("EEG", "Eeg", "eeg"):
            assert resolve_stream(name=name, stype=stype, timeout_s=3.0).name() == name
        assert not find_streams(name=name, stype="EOG", timeout_s=0.5)
    finally:
        del outlet


def test_replay_all_channels(sim_night):
    """Every channel of the file goes out, in its unit, with the values pyedflib reads."""
    pyedflib = pytest.importorskip("pyedflib")
    import pylsl

    from edge_scorer.stream.inlet import LslSource, channel_labels
    from edge_scorer.stream.replay import Replayer

    psg, _ = sim_night
    with pyedflib.EdfReader(str(psg)) as edf:
        labels = [lb.strip() for lb in edf.getSignalLabels()]
        file_data = {lb: edf.readSignal(i) for i, lb in enumerate(labels)}
        units = {lb: edf.getPhysicalDimension(i).strip() for i, lb in enumerate(labels)}
    name = f"all-{uuid.uuid4().hex[:8]}"
    rep = Replayer(psg, "sleep-edf", name=name, speed=600.0, all_channels=True,
                   wait_for_consumers_s=20.0).start()
    try:
        infos = {g.stream_name: g for g in rep.groups}
        inlets, got = {}, {}
        for sname in infos:
            info = pylsl.resolve_byprop("name", sname, 1, 5.0)[0]
            inlets[sname] = pylsl.StreamInlet(info, max_buflen=360)
            inlets[sname].open_stream(timeout=5.0)   # every stream heard from the first sample
        full = {s: inlet.info(5.0) for s, inlet in inlets.items()}
        published = [lb for s in full for lb in channel_labels(full[s])]
        spec_rows = {"EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal", "EMG submental"}
        assert sorted(set(published) - spec_rows) == sorted(set(labels) - spec_rows)
        assert len(published) == len(labels)                  # every channel, once
        assert rep.wait(60.0)
        for s, inlet in inlets.items():
            chunks, n_want = [], len(infos[s].data)
            deadline = time.monotonic() + 20.0
            while sum(len(c) for c in chunks) < n_want and time.monotonic() < deadline:
                data, _ = inlet.pull_chunk(timeout=0.5, max_samples=100000)
                if data:
                    chunks.append(np.asarray(data))
            got[s] = (channel_labels(full[s]), np.concatenate(chunks))
        checked = 0
        for lbs, data in got.values():
            for k, lb in enumerate(lbs):
                if lb in spec_rows:
                    continue
                ref = file_data[lb]
                assert data.shape[0] == ref.size, lb
                np.testing.assert_allclose(data[:, k], ref, rtol=1e-5,
                                           atol=1e-4 * max(1.0, np.abs(ref).max()), err_msg=lb)
                checked += 1
        assert checked == len(set(labels) - spec_rows) >= 2
        xml = full[next(iter(full))].as_xml()
        assert units[next(iter(set(labels) - spec_rows))] is not None and "<unit>" in xml
    finally:
        rep.stop()
    # the engine still maps the spec rows of an all-channels replay
    rep = Replayer(psg, "sleep-edf", name=name + "b", speed=600.0, all_channels=True).start()
    try:
        src = LslSource(rep.spec, name=name + "b", timeout_s=5.0).connect()
        assert src.labels == {r: r for r in spec_rows}
        src.disconnect()
    finally:
        rep.stop()


def _options(parser_name: str) -> set[str]:
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    return {o for a in sub.choices[parser_name]._actions for o in a.option_strings}


def _named_options(message: str) -> dict[str, set[str]]:
    """Options a message names, by the command they belong to ('' = the one that printed it;
    options after ``edge-scorer CMD`` belong to CMD)."""
    out: dict[str, set[str]] = {"": set()}
    for m in re.finditer(r"edge-scorer ([a-z]+)([^`;\n]*)", message):
        out.setdefault(m.group(1), set()).update(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*",
                                                            m.group(2)))
        message = message.replace(m.group(0), "")
    out[""] |= set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", message))
    return out


def test_hints_name_only_options_the_command_accepts(sim_night, tmp_path, capsys):
    """Real errors of several commands; each option their message names is one of theirs."""
    import pylsl

    from edge_scorer.io.edf_writer import EdfSignal, write_edf

    psg, _ = sim_night
    other = write_edf(tmp_path / "other.edf", [
        EdfSignal("Fp1", np.random.default_rng(0).normal(0, 20, 3000), 100.0, "uV"),
        EdfSignal("Fp2", np.random.default_rng(1).normal(0, 20, 3000), 100.0, "uV")],
        record_s=1.0)
    name = f"hint-{uuid.uuid4().hex[:8]}"
    lacking = pylsl.StreamInfo(name, "EEG", 2, 100.0, pylsl.cf_float32, name + "-a")
    chans = lacking.desc().append_child("channels")
    for lb in ("Fp1", "Fp2"):
        chans.append_child("channel").append_child_value("label", lb)
    twin = pylsl.StreamInfo(name + "-twin", "EEG", 1, 100.0, pylsl.cf_float32, name + "-t1")
    twin2 = pylsl.StreamInfo(name + "-twin", "EEG", 1, 100.0, pylsl.cf_float32, name + "-t2")
    outlets = [pylsl.StreamOutlet(i) for i in (lacking, twin, twin2)]
    (tmp_path / "used").mkdir()
    (tmp_path / "used" / "hypnogram.csv").write_text("stage\nW\n")
    cases = [
        ("score", ["score", str(other), "-o", str(tmp_path / "s1"), "--no-progress"]),
        ("score", ["score", str(psg), "-o", str(tmp_path / "used"), "--no-progress"]),
        ("score", ["score", str(psg), "-o", str(tmp_path / "s2"), "--inter", "x.onnx"]),
        ("render", ["render", str(other), "-o", str(tmp_path / "r1")]),
        ("replay", ["replay", str(other), "--name", name + "-r"]),
        ("demo", ["demo", "--edf", str(other), "-o", str(tmp_path / "d1")]),
        ("stream", ["stream", "--name", name, "-o", str(tmp_path / "t1")]),
        ("stream", ["stream", "--name", name + "-twin", "-o", str(tmp_path / "t2")]),
        ("stream", ["stream", "--name", name + "-none", "-o", str(tmp_path / "t3")]),
        ("stream", ["stream", "-o", str(tmp_path / "t4")]),
    ]
    try:
        seen = 0
        for command, argv in cases:
            capsys.readouterr()
            assert main(argv) != 0, argv
            message = capsys.readouterr().err
            named = _named_options(message)
            for cmd, opts in named.items():
                accepted = _options(cmd or command)
                assert opts <= accepted, (f"{' '.join(argv)}: the message names "
                                          f"{sorted(opts - accepted)}, which `{cmd or command}` "
                                          f"does not accept:\n{message}")
                seen += len(opts)
        assert seen >= 8   # the messages do name options (--channel, --overwrite, ...)
    finally:
        del outlets
