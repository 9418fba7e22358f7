"""Readable functions: none in the runtime core has more than 60 lines of code.

Lines of code: the body after the docstring, without blank and comment-only lines. A longer
function is split into named steps (issue 12).
"""

from __future__ import annotations

import ast
from pathlib import Path

LIMIT = 60
CORE = Path(__file__).resolve().parents[1] / "edge_scorer"


def _code_lines(node: ast.FunctionDef | ast.AsyncFunctionDef, lines: list[str]) -> int:
    body = node.body
    first = body[0]
    has_doc = (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
               and isinstance(first.value.value, str))
    start = first.end_lineno + 1 if has_doc and len(body) > 1 else first.lineno
    if has_doc and len(body) == 1:
        return 0
    return sum(1 for line in lines[start - 1:node.end_lineno]
               if line.strip() and not line.strip().startswith("#"))


def long_functions(root: Path = CORE, limit: int = LIMIT) -> list[str]:
    """``path:line name (n lines)`` of every function over ``limit`` lines of code."""
    found = []
    for path in sorted(root.rglob("*.py")):
        text = path.read_text(encoding="utf-8")
        lines = text.split("\n")
        for node in ast.walk(ast.parse(text)):
            if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                n = _code_lines(node, lines)
                if n > limit:
                    found.append(f"{path.relative_to(root.parent)}:{node.lineno} {node.name} "
                                 f"({n} lines)")
    return found


def test_no_function_of_the_core_is_over_60_lines_of_code() -> None:
    assert long_functions() == []


def test_the_counter_finds_a_long_function(tmp_path: Path) -> None:
    body = "\n".join(f"    x{i} = {i}  # step" for i in range(LIMIT + 1))
    (tmp_path / "m.py").write_text(f'def f():\n    """Doc."""\n\n    # comment\n{body}\n')
    (tmp_path / "ok.py").write_text('def g():\n    """Doc."""\n' + "\n".join(
        f"    y{i} = {i}" for i in range(LIMIT)) + "\n")
    assert [s.split(" ")[1] for s in long_functions(tmp_path)] == ["f"]
