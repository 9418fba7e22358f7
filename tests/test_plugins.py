"""Extensions found by entry point: a broken one is reported and leaves the others working."""

from __future__ import annotations

from importlib import metadata

from edge_scorer import plugins
from edge_scorer.cli import build_parser, main


def test_registered_commands_are_found() -> None:
    names = set(plugins.available(plugins.COMMANDS))
    assert {"train", "evaluate", "export", "gui", "review"} <= names
    assert {"gpu", "runtimes"} <= set(plugins.available(plugins.BENCHES))


def test_a_broken_command_does_not_break_the_others(monkeypatch, tmp_path, capsys) -> None:
    """A registered command whose module fails to import (a missing dependency, a bad install)
    used to make building the parser raise, so every command failed, `stats` included."""
    real = plugins.available

    def with_broken(group: str) -> dict:
        eps = real(group)
        if group == plugins.COMMANDS:
            eps["broken"] = metadata.EntryPoint(name="broken", value="no_such_module_x1:cmd",
                                                group=group)
        return eps

    monkeypatch.setattr(plugins, "available", with_broken)
    build_parser()  # does not raise
    hyp = tmp_path / "h.csv"
    hyp.write_text("stage\n" + "W\nN1\nN2\nN2\nN3\nREM\nW\n" * 4)
    assert main(["stats", str(hyp)]) == 0
    capsys.readouterr()
    assert main(["broken", "--anything"]) == 2
    err = capsys.readouterr().err
    assert "'broken' cannot load" in err and "no_such_module_x1" in err
    assert "ModuleNotFoundError" in err and "pip install -e ." in err


def test_a_command_loads_only_its_own_module() -> None:
    """``edge-scorer score`` imported every command's module (training's and export's too) to
    build the parser; now only the one being run, while --help still lists them all."""
    import subprocess
    import sys

    code = ("import sys; from edge_scorer.cli import build_parser; {}; print(sorted({{m.split('.')"
            "[0] for m in sys.modules}} & {{'training', 'export', 'gui'}}))")
    for call, expected in (("build_parser('score')", "[]"),
                           ("build_parser(None)", "['export', 'gui', 'training']")):
        out = subprocess.run([sys.executable, "-c", code.format(call)], capture_output=True,
                             text=True, check=True).stdout.strip()
        assert out == expected, call
    helps = build_parser(None).format_help()
    assert all(name in helps for name in ("score", "train", "export", "review"))
