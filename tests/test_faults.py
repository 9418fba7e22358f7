"""The fault harness (edge_scorer.bench.faults) as tests: real replay and stream processes over
loopback LSL with kill -9, SIGSTOP/SIGCONT, restarts, NaN rows, wrong channel counts, a full
disk and signals; after each, no published epoch is missing from epochs.csv and the night
files are whole. The quick scenario runs by default, the rest with the slow tests."""

from __future__ import annotations

import pytest

from edge_scorer.bench.faults import SCENARIOS, run_scenario

QUICK = ("wrong_channels",)


def _check(name: str, tmp_path) -> None:
    result = run_scenario(name, folder=tmp_path)
    failed = [c for c, ok in result.checks.items() if not ok]
    assert result.checks and not failed, f"{name}: {failed} ({result.measured})"


@pytest.mark.parametrize("name", QUICK)
def test_quick_fault(name, tmp_path):
    _check(name, tmp_path)


@pytest.mark.slow
@pytest.mark.parametrize("name", [n for n in SCENARIOS if n not in QUICK])
def test_fault(name, tmp_path):
    _check(name, tmp_path)
