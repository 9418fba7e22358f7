"""docs/ARCHITECTURE.md stays true: its module map names every module and only existing ones."""

from __future__ import annotations

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("edge_scorer", "training", "export", "gui")


def _map_paths() -> set[str]:
    text = (ROOT / "docs" / "ARCHITECTURE.md").read_text(encoding="utf-8")
    section = text[text.index("## Module map"):]
    return set(re.findall(r"`([\w/]+\.py)`", section))


def test_the_module_map_names_every_module_and_no_missing_one() -> None:
    named = _map_paths()
    modules = {str(p.relative_to(ROOT)) for pkg in PACKAGES for p in (ROOT / pkg).rglob("*.py")
               if p.name != "__init__.py" or p.parent.name == "nets"}
    modules = {m for m in modules if "__pycache__" not in m}
    assert sorted(modules - named) == [], "modules without a line in docs/ARCHITECTURE.md"
    assert sorted(p for p in named if not (ROOT / p).is_file()) == [], "lines for no module"
