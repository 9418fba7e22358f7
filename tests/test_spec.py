"""Spec files: validation, and a render hash that covers exactly what changes the images."""

from __future__ import annotations

import dataclasses

import pytest

from edge_scorer.io import spec as spec_mod
from edge_scorer.io.spec import RenderSpec, SpecError, available_specs, load_spec


def test_shipped_specs_load_and_row_heights_fill_the_image():
    assert {"sleep-edf", "shhs"} <= set(available_specs())
    for name in ("sleep-edf", "shhs"):
        spec = load_spec(name)
        assert sum(r.height for r in spec.rows) == spec.image_height == 224
        assert len(spec.hash) == 16 and spec.hash == load_spec(name).hash


def _copy(spec: RenderSpec, **row0) -> RenderSpec:
    rows = (dataclasses.replace(spec.rows[0], **row0), *spec.rows[1:])
    return dataclasses.replace(spec, rows=rows)


def test_hash_covers_drawing_not_label_matching(monkeypatch):
    spec = load_spec("sleep-edf")
    assert _copy(spec, aliases=("x",), regex=None, min_sfreq=5.0).hash == spec.hash
    assert _copy(spec, range=(-40.0, 40.0)).hash != spec.hash
    assert _copy(spec, highpass=0.3).hash != spec.hash
    monkeypatch.setitem(spec_mod.CHAIN_SETTINGS, "highpass_order", 4)
    assert dataclasses.replace(spec).hash != spec.hash  # chain settings are in the hash


def test_bad_spec_files_are_refused(tmp_path):
    base = {"name": "t", "sfreq": 100, "image_height": 10,
            "rows": [{"name": "a", "type": "EEG", "height": 10, "range": [-1, 1]}]}
    assert RenderSpec.from_dict(base).n_rows == 1
    with pytest.raises(SpecError, match="sum to 10, image_height is 20"):
        RenderSpec.from_dict({**base, "image_height": 20})
    with pytest.raises(SpecError, match="lowpass=60"):
        RenderSpec.from_dict({**base, "rows": [{**base["rows"][0], "lowpass": 60}]})
    with pytest.raises(SpecError, match="unknown keys"):
        RenderSpec.from_dict({**base, "rows": [{**base["rows"][0], "colour": 1}]})
    with pytest.raises(SpecError, match="missing required key"):
        RenderSpec.from_dict({"name": "t"})
    with pytest.raises(SpecError, match="unknown spec 'nope'"):
        load_spec("nope")
    bad = tmp_path / "bad.toml"
    bad.write_text("name = [")
    with pytest.raises(SpecError, match="not valid TOML"):
        load_spec(bad)
