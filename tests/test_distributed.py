"""Data-parallel training: two CPU processes (gloo, under torchrun) follow the single-process loss
curve at the same global batch size, and a killed run resumes with another number of processes.

Tolerance: every logged loss (per step and per epoch, training and validation) within
``LOSS_TOL`` of the single-process run; the processes differ from one process only in the order
of floating-point sums (the gradient all-reduce), measured at about 1e-6 here.
"""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from edge_scorer.cli import main  # noqa: E402
from edge_scorer.simulate import simulate_night, write_night  # noqa: E402
from edge_scorer.stats.hypnogram import Hypnogram  # noqa: E402
from training.config import load_config  # noqa: E402
from training.dataset import build_cache, nights_from_folder  # noqa: E402
from training.distributed import EpochShardSampler, epoch_order  # noqa: E402
from training.splits import save_split  # noqa: E402
from training.tasks import train_intra  # noqa: E402

LOSS_TOL = 1e-4
EPOCHS = 20  # 5 steps each: long enough to kill the run in the middle
STAGES = {
    1: [0] * 12 + [1] * 3 + [2] * 8 + [-1] * 2 + [2] * 6 + [3] * 6 + [4] * 5 + [0] * 6,
    2: [0] * 10 + [1] * 4 + [2] * 10 + [3] * 8 + [2] * 4 + [4] * 6 + [0] * 6,
}


def test_sampler_shards_every_global_batch() -> None:
    n, bs = 37, 8
    one = EpochShardSampler(n, bs, seed=3, rank=0, world=1)
    for world in (2, 3, 5):
        ranks = [EpochShardSampler(n, bs, seed=3, rank=r, world=world) for r in range(world)]
        for epoch in (0, 1):
            one.set_epoch(epoch)
            for s in ranks:
                s.set_epoch(epoch)
            for whole, *parts in zip(one, *ranks):
                real = [idx for idx, ok in parts if ok]
                assert np.array_equal(np.concatenate(real), whole[0])  # the same global batch
                assert all(len(idx) >= 1 for idx, _ in parts)
    last = [list(EpochShardSampler(n, bs, rank=r, world=8))[-1] for r in range(8)]
    assert [ok for _, ok in last] == [True] * 5 + [False] * 3  # 5 items left for 8 ranks
    assert not np.array_equal(epoch_order(n, None, 3, 0), epoch_order(n, None, 3, 1))
    s = EpochShardSampler(n, bs, seed=3, rank=1, world=2)
    s.set_epoch(4, start=3)
    assert len(s) == 2 and len(list(s)) == 2


@pytest.fixture(scope="module")
def work(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("ddp")
    for subject, stages in STAGES.items():
        hyp = Hypnogram(np.array(stages, dtype=np.int8))
        write_night(simulate_night(hyp, seed=subject, subject=subject), root / "nights")
    save_split({"train": ["001"], "val": ["002"], "test": []}, root / "split.json")
    build_cache(nights_from_folder(root / "nights"), "sleep-edf", root / "cache",
                trim_wake_min=2.0)
    return root


def _sets(work: Path) -> list[str]:
    # deterministic options (no LineMix, drop path or class weights): one process and two
    # then compute the same losses up to summation order
    return [f"data.nights={json.dumps(str(work / 'nights'))}",
            f"data.cache_dir={json.dumps(str(work / 'cache'))}",
            f"data.split={json.dumps(str(work / 'split.json'))}", "data.trim_wake_min=2.0",
            "train.warmup_steps=0", "train.threads=1", "train.batch_size=8",
            f"train.epochs={EPOCHS}", "model.depth=1", "model.embed_dim=16", "model.num_heads=2",
            "model.mlp_ratio=2.0", "model.drop_path_rate=0.0", "intra.linemix_prob=0.0",
            "intra.imbalance=none"]


def _rows(path: Path) -> list[dict]:
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


def _assert_same_curve(run: Path, ref: Path) -> None:
    for name, keys in (("train_steps.csv", ("loss",)),
                       ("train_log.csv", ("train_loss", "val_loss", "val_acc"))):
        got, want = _rows(run / name), _rows(ref / name)
        assert [r["step"] for r in got] == [r["step"] for r in want], name
        for g, w in zip(got, want):
            for k in keys:
                assert abs(float(g[k]) - float(w[k])) <= LOSS_TOL, (name, g, w)


@pytest.fixture(scope="module")
def single(work) -> Path:
    """The single-process reference run."""
    cfg = load_config("intra_vit_tiny", [*_sets(work), f"out={json.dumps(str(work / 'one'))}"],
                      task="intra")
    return train_intra(cfg, quiet=True)


def _kill_tree(pid: int) -> None:
    """SIGKILL a process and its descendants (torchrun starts each worker in its own session,
    so killing torchrun's process group would leave them running)."""
    def children(p: int) -> list[int]:
        try:
            kids = Path(f"/proc/{p}/task/{p}/children").read_text().split()
        except OSError:
            return []
        return [int(k) for k in kids] + [g for k in kids for g in children(int(k))]

    for p in [*children(pid), pid]:
        try:
            os.kill(p, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def test_two_gloo_processes_follow_the_single_process_curve(work, single, capsys) -> None:
    os.environ.setdefault("OMP_NUM_THREADS", "1")
    out = work / "two"
    assert main(["train", "intra", "--nproc", "2", "--quiet", "--out", str(out),
                 "--set", *_sets(work)]) == 0
    assert "torch.distributed.run" in capsys.readouterr().err
    _assert_same_curve(out, single)
    assert len(_rows(out / "train_steps.csv")) == EPOCHS * 5  # rank 0 alone writes
    two = torch.load(out / "last.pt", weights_only=True)
    one = torch.load(single / "last.pt", weights_only=True)
    assert two["state"]["world_size"] == 2 and one["state"]["world_size"] == 1
    for key, value in one["state_dict"].items():
        torch.testing.assert_close(two["state_dict"][key], value, atol=1e-4, rtol=1e-3)


@pytest.mark.skipif(not Path("/proc/self/task").is_dir(), reason="needs Linux /proc")
def test_killed_run_resumes_with_another_process_count(work, single) -> None:
    out = work / "killed"
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2",
           "-m", "training", "intra", "--quiet", "--out", str(out), "--set", *_sets(work)]
    proc = subprocess.Popen(cmd, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    log = out / "train_log.csv"
    deadline = time.monotonic() + 240
    try:
        while time.monotonic() < deadline and proc.poll() is None:
            if (out / "last.pt").is_file() and log.is_file() and len(_rows(log)) >= 2:
                break
            time.sleep(0.02)
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        _kill_tree(proc.pid)  # torchrun and both workers, mid-run
    finally:
        if proc.poll() is None:
            _kill_tree(proc.pid)
        proc.wait(timeout=60)
        proc.stderr.close()
    done = len(_rows(log))
    assert 2 <= done < EPOCHS, done
    time.sleep(0.5)
    assert len(_rows(log)) == done  # nothing left running
    state = torch.load(out / "last.pt", weights_only=True)["state"]
    assert state["world_size"] == 2
    cfg = load_config("intra_vit_tiny", [*_sets(work), f"out={json.dumps(str(out))}"],
                      task="intra")
    train_intra(cfg, resume=True, quiet=True)  # one process now
    _assert_same_curve(out, single)
    assert torch.load(out / "last.pt", weights_only=True)["state"]["world_size"] == 1
