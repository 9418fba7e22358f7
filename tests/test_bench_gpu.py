"""``python -m edge_scorer.bench gpu``: without a CUDA GPU it says so, writes its JSON and exits 0;
the table formats every kind of row."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from edge_scorer.bench import __main__ as dispatcher
from training import bench_gpu as gpu


def _has_cuda() -> bool:
    try:
        import torch
    except ImportError:
        return False
    return torch.cuda.is_available()


@pytest.mark.skipif(_has_cuda(), reason="this machine has a CUDA GPU: run the check itself")
def test_no_gpu_path_says_so_and_exits_0(tmp_path) -> None:
    out = tmp_path / "gpu.json"
    proc = subprocess.run([sys.executable, "-m", "edge_scorer.bench", "gpu", "--json", str(out)],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert "no CUDA GPU here" in proc.stdout and "nothing measured" in proc.stdout
    result = json.loads(out.read_text())
    assert result["schema"] == gpu.SCHEMA and result["gpu"] is None and result["rows"] == []
    assert result["reason"] == gpu.cuda_status()[1] and result["failed"] == 0
    assert result["environment"]["cpus"] >= 1
    assert not list(tmp_path.glob("edge-scorer-gpu-*"))


def test_dispatcher_lists_gpu(capsys) -> None:
    assert dispatcher.main(["--help"]) == 0
    assert "gpu" in capsys.readouterr().out.split("benchmarks:")[1]


def test_table_formats_every_row_kind() -> None:
    rows = [gpu.Row("torch-cuda fp16 + CUDA graphs", "shipped intra + inter", 0.61, 0.9, 41000.0,
                    1.0, note="b1: intra + inter; b64: intra"),
            gpu.Row("ORT CUDA EP fp32", "shipped intra + inter", status="not installed",
                    note="BackendUnavailable: x | y " + "z" * 200),
            gpu.Row("bf16 training, DDP over 8 GPU(s)", "ViT-B/16 intra", b64_per_s=9000.0)]
    text = gpu.format_table(rows).splitlines()
    assert text[0].split()[:3] == ["path", "model", "b1"] and len(text) == 2 + len(rows)
    assert "41000" in text[2] and "1.0000" in text[2] and text[3].endswith("...")
    md = gpu.format_table(rows, markdown=True).splitlines()
    assert md[1] == "|---|---|---|---|---|---|---|---|"
    assert all(line.count(" | ") == 7 for line in md[2:])  # the pipe in a note is escaped
