"""The package's explicit re-exports resolve, and importing it stays light."""

from __future__ import annotations

import subprocess
import sys

import edge_scorer


def test_every_public_name_resolves():
    for name in edge_scorer.__all__:
        assert getattr(edge_scorer, name) is not None, name


def test_import_does_not_load_heavy_dependencies():
    code = ("import sys, edge_scorer; heavy = [m for m in ('scipy.signal', 'mne', 'onnxruntime', "
            "'torch') if m in sys.modules]; print(heavy); sys.exit(bool(heavy))")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert res.returncode == 0, res.stdout + res.stderr
