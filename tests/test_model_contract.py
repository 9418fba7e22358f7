"""One model metadata contract: the engine and the explanations apply the same spec rule."""

from __future__ import annotations

import dataclasses

import pytest

from edge_scorer.inference.scorer import ModelSpecMismatch, check_model_spec
from edge_scorer.io.spec import load_spec

pytest.importorskip("torch")


def test_explanations_refuse_what_the_engine_refuses() -> None:
    from edge_scorer.explain.relevance import TorchModels

    spec = load_spec("sleep-edf")
    models = TorchModels.load()
    models.check_spec(spec)  # the shipped model fits its spec
    other = dataclasses.replace(models, spec_hash="0" * 16)
    missing = dataclasses.replace(models, spec_hash=None, spec_name=None)
    for case, meta in ((other, {"render_spec": "sleep-edf", "render_spec_hash": "0" * 16}),
                       (missing, {})):
        with pytest.raises(ModelSpecMismatch):
            check_model_spec(meta, spec, "model")
        with pytest.raises(ModelSpecMismatch, match="spec"):
            case.check_spec(spec)
