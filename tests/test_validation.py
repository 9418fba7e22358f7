"""Validation that refuses what it cannot trust (issue 13): EDF header fields, unit factors of
1e3 and 1e6, hypnogram bounds, entity-laden XML, UTF-8 labels, models with the wrong shapes,
argument ranges, the spec-mismatch hint, corrupt ONNX files. Real files throughout."""

from __future__ import annotations

import shutil
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from edge_scorer import load_spec
from edge_scorer.cli import main
from edge_scorer.inference.scorer import (
    ModelShapeError,
    ModelSpecMismatch,
    ScoringModel,
    default_model_dir,
)
from edge_scorer.io.edf_writer import EdfSignal, write_edf
from edge_scorer.io.hypnogram_io import HypnogramError, read_hypnogram
from edge_scorer.io.montage import ChannelMapError
from edge_scorer.io.psg import PsgReadError, read_edf_header, read_psg

SPEC = load_spec("sleep-edf")
SIM_NIGHT = (0.1, 4)


def _psg(tmp_path: Path, n_s: float = 120.0, unit: str = "uV", name: str = "n.edf") -> Path:
    rng = np.random.default_rng(1)
    sig = [EdfSignal(lb, 20 * rng.standard_normal(int(n_s * 100)), 100.0, unit)
           for lb in ("EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal")]
    sig.append(EdfSignal("EMG submental", 3 + rng.random(int(n_s)), 1.0, "uV"))
    return write_edf(tmp_path / name, sig)


def _patch(path: Path, field_offset: int, width: int, signal: int, text: bytes) -> Path:
    """Overwrite one per-signal header field (offsets as in the EDF spec, e.g. 120 = digital
    minimum) of signal ``signal``."""
    data = bytearray(path.read_bytes())
    ns = int(data[252:256].decode())
    at = 256 + field_offset * ns + signal * width
    data[at:at + width] = text.ljust(width)
    path.write_bytes(bytes(data))
    return path


# ---------------------------------------------------------------- EDF headers
@pytest.mark.parametrize(("offset", "value", "message"), [
    (120, b"32767", r"digital minimum 32767 and maximum 32767"),   # dig min == dig max
    (104, b"1000", r"physical minimum = maximum = 1000"),           # phys min == phys max
    (128, b"99999", r"digital minimum .* and maximum 99999"),      # beyond 16 bits
    (104, b"abc", r"physical minimum of signal 1 \('EEG Fpz-Cz'\) is 'abc'"),
    (216, b"0", r"0 samples per data record"),
])
def test_bad_header_fields_are_refused_naming_the_field(tmp_path, offset, value, message):
    """Digital or physical min == max used to be scored with exit 0 and a misleading unit
    warning."""
    path = _psg(tmp_path)
    if offset == 104 and value == b"1000":
        _patch(path, 112, 8, 0, b"1000")
    _patch(path, offset, 8, 0, value)
    with pytest.raises(PsgReadError, match=message):
        read_psg(path, SPEC)
    out = tmp_path / "out"
    assert main(["score", str(path), "-o", str(out), "--no-progress"]) == 2
    assert not (out / "epochs.csv").exists()


def test_record_count_and_size(tmp_path):
    path = _psg(tmp_path)
    data = path.read_bytes()
    unknown = tmp_path / "unknown.edf"  # -1 records: counted from the size
    unknown.write_bytes(data[:236] + b"-1".ljust(8) + data[244:])
    assert read_edf_header(unknown).n_records == 4
    extra = tmp_path / "extra.edf"
    extra.write_bytes(data + b"\x00" * 100)
    assert any("100 bytes after the last" in w for w in read_psg(extra, SPEC).warnings)
    zero = tmp_path / "zero.edf"
    zero.write_bytes(data[:236] + b"0".ljust(8) + data[244:])
    with pytest.raises(PsgReadError, match="no data record"):
        read_edf_header(zero)
    dur = tmp_path / "dur.edf"
    dur.write_bytes(data[:244] + b"nan".ljust(8) + data[252:])
    with pytest.raises(PsgReadError, match="data record duration"):
        read_edf_header(dur)
    notedf = tmp_path / "not.edf"
    notedf.write_bytes(b"%PDF-1.4" + data[8:])
    with pytest.raises(PsgReadError, match="not an EDF or BDF file"):
        read_edf_header(notedf)


def test_truncated_hypnogram_edf_is_refused(shared_data, tmp_path):
    """A truncated Sleep-EDF hypnogram was read without a word (TST 326.5 -> 133.5 min)."""
    src = shared_data / "hypnograms" / "SC4001EC-Hypnogram.edf"
    whole = read_hypnogram(src)
    cut = tmp_path / "cut-Hypnogram.edf"
    data = src.read_bytes()
    cut.write_bytes(data[:len(data) - 2000])
    with pytest.raises(HypnogramError, match=r"truncated file .* 0 of 1 data records"):
        read_hypnogram(cut)
    assert whole.n_epochs > 1000


# ---------------------------------------------------------------- units
@pytest.mark.parametrize(("unit", "scale", "cause"), [
    ("mV", 1.0, "microvolts labelled as mV"),      # uV values, header says mV: 1000x too big
    ("uV", 1e-3, "millivolts labelled as uV"),     # mV values, header says uV: 1000x too small
    ("uV", 1e-6, "volts labelled as uV"),
    ("V", 1.0, "microvolts labelled as volts"),
])
def test_unit_factors_of_1e3_and_1e6_are_caught(tmp_path, unit, scale, cause):
    """Microvolts labelled mV passed unnoticed (kappa 0.73 -> 0.35)."""
    ref = read_psg(_psg(tmp_path, name="ref.edf"), SPEC)
    rng = np.random.default_rng(1)
    sig = [EdfSignal(lb, scale * 20 * rng.standard_normal(12000), 100.0, unit)
           for lb in ("EEG Fpz-Cz", "EEG Pz-Oz", "EOG horizontal")]
    sig.append(EdfSignal("EMG submental", 3 + rng.random(120), 1.0, "uV"))
    rec = read_psg(write_edf(tmp_path / "bad.edf", sig), SPEC)
    assert any(cause in w for w in rec.warnings), rec.warnings
    np.testing.assert_allclose(rec.data[:3], ref.data[:3], rtol=1e-3, atol=0.05)
    assert ref.warnings == []


# ---------------------------------------------------------------- hypnograms
@pytest.mark.parametrize("text", [
    "onset_s,duration_s,stage\n0,30,W\ninf,30,N1\n",
    "onset_s,duration_s,stage\n0,30,W\n30,1e12,N1\n",             # asks for ~1 TiB of epochs
    "onset_s,duration_s,stage\n0,30,W\n9e9,30,N1\n",
    "onset_s,duration_s,stage\n0,30,W\n30,nan,N1\n",
    "onset_s,duration_s,stage\n-600000,30,W\n600000,30,N1\n",    # a 14-day span
])
def test_absurd_onsets_and_durations_are_refused_before_allocating(tmp_path, text):
    """A 50-byte CSV with inf or huge onsets/durations asked for 7 to 931 GiB."""
    path = tmp_path / "h.csv"
    path.write_text(text)
    tracemalloc.start()
    try:
        with pytest.raises(HypnogramError, match="7 days|finite"):
            read_hypnogram(path)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 4 * 1024 * 1024


def test_nsrr_xml_with_entities_is_refused(tmp_path):
    path = tmp_path / "bomb.xml"
    path.write_text('<?xml version="1.0"?><!DOCTYPE r [<!ENTITY a "aaaaaaaaaa">'
                    '<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
                    "<PSGAnnotation><ScoredEvents><ScoredEvent><EventType>Stages|Stages"
                    "</EventType><EventConcept>&b;</EventConcept><Start>0</Start>"
                    "<Duration>30</Duration></ScoredEvent></ScoredEvents></PSGAnnotation>")
    with pytest.raises(HypnogramError, match="entities or a DTD"):
        read_hypnogram(path)


def test_nsrr_xml_with_an_unknown_encoding_is_refused(tmp_path):
    """Found by the fuzz test: a damaged declaration raised a bare LookupError."""
    path = tmp_path / "enc.xml"
    path.write_text("<?xml version='1.0' encoding='U-F-8'?><PSGAnnotation><ScoredEvents>"
                    "</ScoredEvents></PSGAnnotation>")
    with pytest.raises(HypnogramError, match="not a valid NSRR XML file.*U-F-8"):
        read_hypnogram(path)


def test_bad_epoch_length_and_huge_file(tmp_path):
    path = tmp_path / "h.csv"
    path.write_text("stage\nW\nN1\n")
    with pytest.raises(HypnogramError, match="epoch_s"):
        read_hypnogram(path, epoch_s=1e-9)
    nul = tmp_path / "nul.csv"
    nul.write_bytes(b"stage,onset_s\nW,0\x00\n")
    with pytest.raises(HypnogramError):
        read_hypnogram(nul)


# ---------------------------------------------------------------- labels
def test_utf8_channel_labels_are_read_as_utf8(tmp_path):
    """UTF-8 labels were shown as latin-1 mojibake, and only the mojibake mapped."""
    path = _psg(tmp_path)
    label = "EEG Fpz–Cz µ".encode()  # an en dash and a micro sign: not ASCII
    _patch(path, 0, 16, 0, label)
    header = read_edf_header(path)
    assert header.labels[0] == "EEG Fpz–Cz µ"
    with pytest.raises(ChannelMapError, match="EEG Fpz–Cz µ"):
        read_psg(path, SPEC)
    rec = read_psg(path, SPEC, {"EEG Fpz-Cz": "EEG Fpz–Cz µ"})
    assert rec.source_labels[0] == "EEG Fpz–Cz µ" and rec.data.shape == (4, 12000)


# ---------------------------------------------------------------- models
def _fake_intra(path: Path, *, n_logits: int = 5, side: int = 224) -> Path:
    """An ONNX 'intra model' with the shipped metadata but other shapes."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    shipped = onnx.load(str(default_model_dir() / "intra.onnx"))
    x = helper.make_tensor_value_info("image", TensorProto.FLOAT, ["b", 1, side, side])
    logits = helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["b", n_logits])
    feats = helper.make_tensor_value_info("features", TensorProto.FLOAT, ["b", 128])
    nodes = [
        helper.make_node("Reshape", ["image", "shape"], ["flat"]),
        helper.make_node("ReduceMean", ["flat"], ["m"], axes=[1], keepdims=1),
        helper.make_node("Tile", ["m", "nl"], ["logits"]),
        helper.make_node("Tile", ["m", "nf"], ["features"]),
    ]
    inits = [helper.make_tensor("shape", TensorProto.INT64, [2], [-1, side * side]),
             helper.make_tensor("nl", TensorProto.INT64, [2], [1, n_logits]),
             helper.make_tensor("nf", TensorProto.INT64, [2], [1, 128])]
    graph = helper.make_graph(nodes, "fake", [x], [logits, feats], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = shipped.ir_version
    model.metadata_props.extend(shipped.metadata_props)
    onnx.save(model, str(path))
    return path


@pytest.mark.parametrize(("kw", "message"), [
    ({"n_logits": 3}, r"gives logits \(1, 3\)"),
    ({"side": 64}, r"cannot run on an epoch image \(1, 1, 224, 224\)"),
])
def test_models_with_wrong_shapes_are_refused_at_load(tmp_path, sim_night, kw, message):
    """Such a model failed in warm-up, after epochs.csv was created."""
    bad = _fake_intra(tmp_path / "intra.onnx", **kw)
    with pytest.raises(ModelShapeError, match=message):
        ScoringModel.load(bad, default_model_dir() / "inter.onnx")
    out = tmp_path / "out"
    assert main(["score", str(sim_night[0]), "-o", str(out), "--intra", str(bad), "--inter",
                 str(default_model_dir() / "inter.onnx"), "--no-progress"]) == 2
    assert not out.exists()


def test_spec_mismatch_hint_names_options_that_exist(tmp_path, sim_night):
    """The hint named a --spec option that `score` does not have."""
    pytest.importorskip("onnx")
    from export.onnx_export import update_metadata

    inter = tmp_path / "inter.onnx"
    shutil.copy(default_model_dir() / "inter.onnx", inter)
    update_metadata(inter, {"render_spec": "shhs", "render_spec_hash": load_spec("shhs").hash})
    with pytest.raises(ModelSpecMismatch) as err:
        ScoringModel.load(default_model_dir() / "intra.onnx", inter)
    assert "--intra/--inter pair" in str(err.value) and "--spec" not in str(err.value)


def test_corrupt_onnx_is_a_clear_error(tmp_path):
    bad = tmp_path / "model.onnx"
    bad.write_bytes(b"\x08\x07garbage" * 50)
    assert main(["export", "quantize", str(bad)]) == 2
    with pytest.raises(ValueError, match="ONNX Runtime cannot load the model"):
        ScoringModel.load(bad)


# ---------------------------------------------------------------- arguments
@pytest.mark.parametrize("argv", [
    ["stream", "--name", "x", "--until-idle", "-1"],
    ["stream", "--name", "x", "--fill-gap-s", "-1"],
    ["stream", "--name", "x", "--max-invalid", "1.5"],
    ["stream", "--name", "x", "--speed", "nan"],
    ["replay", "x.edf", "--speed", "0"],
    ["replay", "x.edf", "--chunk-ms", "-5"],
    ["demo", "--speed", "inf"],
    ["render", "x.edf", "-o", "o", "--sheet-epochs", "0"],
])
def test_argument_ranges_are_checked_before_anything_connects(argv, capsys):
    """--until-idle -1 and --fill-gap-s -1 were accepted."""
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "must be" in capsys.readouterr().err
