"""The runtime core needs no training, export or GUI code, even for its PyTorch jobs."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("torch")

_PROBE = """
import sys
import numpy as np
from edge_scorer.inference.scorer import ScoringModel
from edge_scorer.explain.epoch import explain_epoch
from edge_scorer.explain.relevance import TorchModels
models = TorchModels.load()
img = np.zeros((224, 224), np.uint8)
explain_epoch(models, img, ScoringModel.load().spec)
ScoringModel.load(backend="torch").score_images(np.zeros((3, 224, 224), np.uint8))
print(",".join(sorted({m.split(".")[0] for m in sys.modules} & {"training", "export", "gui"})))
"""


def test_torch_jobs_of_the_core_load_no_training_export_or_gui_module() -> None:
    out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"the core imported {out.stdout.strip()}"


_ALL_MODULES = """
import importlib, pkgutil, sys
import edge_scorer
names = [m.name for m in pkgutil.walk_packages(edge_scorer.__path__, "edge_scorer.")
         if not m.name.endswith("__main__")]
for name in names:
    importlib.import_module(name)
print(len(names))
print(",".join(sorted({m.split(".")[0] for m in sys.modules} & {"training", "export", "gui"})))
"""


def test_every_module_of_the_core_imports_without_training_export_or_gui() -> None:
    """``import edge_scorer.engine.engine`` (and every other core module) loads none of them."""
    out = subprocess.run([sys.executable, "-c", _ALL_MODULES], capture_output=True, text=True,
                         timeout=300)
    assert out.returncode == 0, out.stderr
    count, loaded = out.stdout.split("\n")[:2]
    assert int(count) > 80
    assert loaded == "", f"importing the core loaded {loaded}"
