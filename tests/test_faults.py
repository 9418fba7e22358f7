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


def test_soak_summary_reports_memory_slope_and_latency_drift():
    from edge_scorer.bench.soak import summarize

    samples = [{"t_s": 30.0 * k, "rss_mib": 200.0 + k, "threads": 5, "open_files": 9,
                "epochs": 100 * k, "lat_ms": [10.0 + k] * 5} for k in range(1, 13)]
    s = summarize(samples)
    assert s["rss_slope_mib_per_h"] == pytest.approx(120.0)  # 1 MiB per 30 s
    assert s["rss_slope_mib_per_1000_epochs"] == pytest.approx(10.0)
    assert s["median_ms_first"] == 12.5 and s["median_ms_last"] == 20.5
    assert s["median_drift"] == pytest.approx(20.5 / 12.5)
