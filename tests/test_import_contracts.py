"""Which package may import which: the import-linter contracts of ``pyproject.toml``.

The runtime core (``edge_scorer``) never imports ``training``, ``export`` or ``gui``; training
builds on export, both on the core; the window needs only the core; the core's subpackages
follow the data path (docs/ARCHITECTURE.md, "Layers"). ``lint-imports`` counts imports inside
functions too, so a lazy import is no way around a contract.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("importlinter", reason="the test extra installs import-linter")

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_scorer", "training", "export", "gui")


def _lint(cwd: Path, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    exe = Path(sys.executable).with_name("lint-imports")
    cmd = [str(exe)] if exe.is_file() else [sys.executable, "-m", "importlinter.cli"]
    return subprocess.run([*cmd, "--no-cache"], cwd=cwd, capture_output=True, text=True,
                          timeout=300, env=env)


def test_the_import_contracts_are_kept() -> None:
    out = _lint(ROOT)
    assert out.returncode == 0, out.stdout[-4000:] + out.stderr[-2000:]
    assert "0 broken" in out.stdout


@pytest.mark.parametrize(("where", "line", "broken"), [
    ("edge_scorer/engine/_probe.py", "def f():\n    import training.tasks  # noqa\n",
     "The runtime core imports no training, export or gui code BROKEN"),
    ("edge_scorer/io/_probe.py", "from edge_scorer.engine import sinks  # noqa\n",
     "each imports only those below it BROKEN"),
    ("gui/_probe.py", "import export.quantize  # noqa\n",
     "The window runs on the core alone: no training or export code BROKEN"),
])
def test_a_new_import_against_a_contract_fails_the_lint(tmp_path: Path, where: str, line: str,
                                                          broken: str) -> None:
    """A copy of the project with one forbidden import added (a lazy one for the core)."""
    for pkg in PACKAGES:
        shutil.copytree(ROOT / pkg, tmp_path / pkg,
                        ignore=shutil.ignore_patterns("__pycache__", "*.onnx", "*.pt"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    (tmp_path / where).write_text(line)
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    out = _lint(tmp_path, env)
    assert out.returncode != 0, out.stdout[-3000:]
    assert broken in " ".join(out.stdout.split()), out.stdout[-3000:]
    assert "_probe" in out.stdout
