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
