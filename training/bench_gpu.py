"""GPU check: every GPU path of edge-scorer, measured once, in one table.

``python -m edge_scorer.bench gpu [--json OUT] [--markdown] [--budget-min 7.5] [--duration-h 0.5]``

On a machine with a CUDA GPU and a CUDA build of PyTorch, without network access, within the
time budget (default 7.5 min; sections that no longer fit are listed as skipped), on one
simulated night (written as EDF, read, conditioned and rendered as any recording):

- the shipped intra + inter models on ``torch-cuda`` in fp32 and fp16, each with and without
  CUDA graphs, and on ONNX Runtime's CUDA provider where ``onnxruntime-gpu`` is installed:
  batch-1 latency of one epoch (intra image + inter window, median and p99), intra throughput
  at batch 64, and stage agreement of the whole night with the CPU path (ONNX Runtime CPU);
- ViT-B/16 (SleepXViT's intra size, random weights: no download) the same way on
  ``torch-cuda``, agreement of its predicted classes with PyTorch fp32 on the CPU;
- bf16 training steps per second of ViT-B/16 at batch 64 per GPU, DDP (NCCL) over every visible
  GPU;
- the project's own trainer under ``torchrun`` (NCCL, one process per GPU) on a signal cache
  of the simulated nights for two epochs (that the path runs; its rate);
- Chefer relevance of one epoch (intra ViT + inter window) on the GPU and the CPU.

It prints one table and writes JSON (``--json``, default ``gpu-check.json``; the format is in
``docs/RUNTIMES.md``). The exit code is 1 when a GPU path failed. Without a CUDA GPU it says so,
writes the JSON with the reason and exits 0.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger

log = get_logger("bench.gpu")

SCHEMA = 1
VARIANTS = (("fp32", False, False), ("fp32 + CUDA graphs", False, True),
            ("fp16", True, False), ("fp16 + CUDA graphs", True, True))


@dataclass
class Row:
    """One measurement of the table (``None``: not measured for this row)."""

    path: str
    model: str
    b1_ms: float | None = None
    b1_p99_ms: float | None = None
    b64_per_s: float | None = None
    agreement: float | None = None
    status: str = "ok"  # ok | failed | not installed | skipped
    note: str = ""


def cuda_status() -> tuple[bool, str]:
    """Whether PyTorch sees a CUDA GPU, and what it sees (or why not)."""
    try:
        import torch
    except ImportError:
        return False, ("PyTorch is not installed (pip install -e '.[train]' with a CUDA wheel "
                       "of torch)")
    if not torch.cuda.is_available():
        build = torch.version.cuda or "CPU-only build"
        return False, f"torch {torch.__version__} ({build}) sees no CUDA device"
    names = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    return True, ", ".join(names)


def _times(fn: Callable[[], Any], runs: int) -> tuple[float, float]:
    """Median and p99 wall time of ``fn`` in ms (``fn`` returns host data: synchronous)."""
    fn()
    out = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        out.append(time.perf_counter() - t0)
    return float(np.median(out) * 1e3), float(np.percentile(out, 99) * 1e3)


class Check:
    """The state of one run: inputs, rows, deadline."""

    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args, self.tmp = args, tmp
        self.deadline = time.monotonic() + args.budget_min * 60.0
        self.rows: list[Row] = []

    def left_s(self) -> float:
        return self.deadline - time.monotonic()

    def run(self, path: str, model: str, need_s: float, fn: Callable[[], list[Row]]) -> None:
        """Add ``fn``'s rows, or one row saying why it did not run."""
        if self.left_s() < need_s:
            self.rows.append(Row(path, model, status="skipped",
                                 note=f"time budget ({self.left_s():.0f} s left)"))
            return
        try:
            self.rows += fn()
        except Exception as exc:  # every GPU path is reported, the check goes on
            from edge_scorer.inference.backends import BackendUnavailable

            status = "not installed" if isinstance(exc, BackendUnavailable) else "failed"
            self.rows.append(Row(path, model, status=status, note=f"{type(exc).__name__}: "
                                 f"{str(exc).splitlines()[0] if str(exc) else ''}"[:300]))
            log.debug("%s failed", path, exc_info=True)


def _night(tmp: Path, duration_h: float, seed: int, spec) -> np.ndarray:
    """Two simulated nights as files (the trainer check trains on both); the first's images."""
    from edge_scorer.dsp.render_night import render_night
    from edge_scorer.simulate import simulate_nights

    pairs = simulate_nights(tmp / "nights", 2, layout=spec.name, seed=seed,
                            duration_h=duration_h)
    return render_night(pairs[0][0], spec).images


def _pair_rows(label: str, intra: Any, inter: Any, images: np.ndarray, spec,
               cpu_stages: np.ndarray, runs: int, model: str = "shipped intra + inter"
               ) -> Row:
    from edge_scorer.inference.scorer import ScoringModel

    scorer = ScoringModel(intra, inter, spec)
    x1, x64 = images[:1, None].astype(np.float32), images[:64, None].astype(np.float32)
    w1 = np.ascontiguousarray(scorer.epoch_outputs(images[:scorer.window])[1][None],
                              dtype=np.float32)
    a = _times(lambda: intra.infer({"image": x1}), runs)
    b = _times(lambda: inter.infer({"features": w1}), runs)
    t64 = _times(lambda: intra.infer({"image": x64}), max(3, runs // 10))[0] / 1e3
    stages = scorer.score_images(images).argmax(1)
    return Row(label, model, a[0] + b[0], a[1] + b[1], len(x64) / t64,
               float(np.mean(stages == cpu_stages)), note="b1: intra + inter; b64: intra")


def _shipped(check: Check, images: np.ndarray, spec, cpu_stages: np.ndarray) -> None:
    from edge_scorer.inference.backends import create_backend
    from edge_scorer.inference.scorer import default_model_dir

    folder = Path(check.args.intra).parent if check.args.intra else default_model_dir()
    paths = [folder / "intra.onnx", folder / "inter.onnx"]
    runs = check.args.latency_runs
    for name, half, graphs in VARIANTS:
        def make(half=half, graphs=graphs, name=name) -> list[Row]:
            pair = [create_backend(p, "torch-cuda", half=half, cuda_graphs=graphs)
                    for p in paths]
            return [_pair_rows(f"torch-cuda {name}", *pair, images, spec, cpu_stages, runs)]
        check.run(f"torch-cuda {name}", "shipped intra + inter", 20, make)
    check.run("ORT CUDA EP fp32", "shipped intra + inter", 20, lambda: [_pair_rows(
        "ORT CUDA EP fp32", *[create_backend(p, "ort-cuda") for p in paths], images, spec,
        cpu_stages, runs)])


def _vit_base(check: Check, images: np.ndarray, spec) -> None:
    import torch

    from edge_scorer.inference.backends_torch import TorchBackend

    def checkpoint() -> Path:
        from edge_scorer.inference.nets import create_model
        from training.checkpoint import save_checkpoint

        torch.manual_seed(0)
        model = create_model("vit_base_patch16", img_size=spec.image_height,
                             in_chans=1 if spec.grayscale else 3)
        return save_checkpoint(check.tmp / "vit_base.pt", model,
                               meta={"spec": {"name": spec.name, "hash": spec.hash}})

    state: dict = {}

    def reference() -> list[Row]:
        state["ckpt"] = ckpt = checkpoint()
        cpu = TorchBackend(ckpt, device="cpu")
        x = images[:16, None].astype(np.float32)
        state["x"], state["cpu"] = x, cpu.infer({"image": x})["logits"].argmax(1)
        return []

    check.run("ViT-B/16 CPU reference", "ViT-B/16 intra", 60, reference)
    if "cpu" not in state:
        return
    x1, x64 = images[:1, None].astype(np.float32), images[:64, None].astype(np.float32)
    for name, half, graphs in VARIANTS:
        def make(half=half, graphs=graphs, name=name) -> list[Row]:
            be = TorchBackend(state["ckpt"], device="cuda", half=half, cuda_graphs=graphs)
            a = _times(lambda: be.infer({"image": x1}), check.args.latency_runs)
            t64 = _times(lambda: be.infer({"image": x64}), 10)[0] / 1e3
            agree = be.infer({"image": state["x"]})["logits"].argmax(1) == state["cpu"]
            return [Row(f"torch-cuda {name}", "ViT-B/16 intra", a[0], a[1], len(x64) / t64,
                        float(np.mean(agree)), note="agreement: classes vs CPU fp32, 16 "
                        "epochs (random weights)")]
        check.run(f"torch-cuda {name}", "ViT-B/16 intra", 20, make)


def _train_worker(rank: int, world: int, port: int, steps: int, images: np.ndarray,
                  queue: Any) -> None:
    """bf16 training steps of ViT-B/16 on one GPU (rank), DDP over ``world`` GPUs."""
    import torch
    import torch.nn.functional as F

    from edge_scorer.inference.nets import create_model

    torch.cuda.set_device(rank)
    dev = torch.device("cuda", rank)
    if world > 1:
        import torch.distributed as dist

        dist.init_process_group("nccl", init_method=f"tcp://127.0.0.1:{port}", rank=rank,
                                world_size=world, device_id=dev)
    torch.manual_seed(0)
    model = create_model("vit_base_patch16", img_size=images.shape[-1]).to(dev)
    net = (torch.nn.parallel.DistributedDataParallel(model, device_ids=[rank]) if world > 1
           else model)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-4)
    x = torch.from_numpy(images).to(dev)
    y = torch.arange(len(images), device=dev) % 5

    def step() -> None:
        with torch.autocast("cuda", dtype=torch.bfloat16):
            loss = F.cross_entropy(net(x).float(), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    for _ in range(3):
        step()
    torch.cuda.synchronize(dev)
    t0 = time.perf_counter()
    for _ in range(steps):
        step()
    torch.cuda.synchronize(dev)
    rate = steps / (time.perf_counter() - t0)
    if world > 1:
        torch.distributed.destroy_process_group()
    if rank == 0:
        queue.put(rate)


def _training(check: Check, images: np.ndarray) -> list[Row]:
    import socket

    import torch
    import torch.multiprocessing as mp

    world, steps = torch.cuda.device_count(), check.args.train_steps
    batch = np.ascontiguousarray(np.resize(images, (64, *images.shape[1:])))
    ctx = mp.get_context("spawn")
    queue = ctx.SimpleQueue()
    if world == 1:
        _train_worker(0, 1, 0, steps, batch, queue)
    else:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        mp.spawn(_train_worker, args=(world, port, steps, batch, queue), nprocs=world)
    rate = float(queue.get())
    how = f"DDP over {world} GPUs" if world > 1 else "1 GPU, no DDP"
    return [Row(f"bf16 training, {how}", "ViT-B/16 intra",
                b64_per_s=rate * 64 * world,
                note=f"{rate:.2f} steps/s at batch 64 per GPU ({steps} steps after 3 warm-up)")]


def _trainer(check: Check) -> list[Row]:
    """The project's trainer under torchrun (NCCL) on a signal cache of the nights."""
    import torch

    from training.nights import nights_from_folder
    from training.splits import save_split

    world = torch.cuda.device_count()
    subjects = [n.subject for n in nights_from_folder(check.tmp / "nights")]
    save_split({"train": subjects[:1], "val": subjects[1:], "test": []}, check.tmp / "split.json")
    out = check.tmp / "trainer"
    sets = [f"data.nights={json.dumps(str(check.tmp / 'nights'))}",
            f"data.cache_dir={json.dumps(str(check.tmp / 'cache'))}", 'data.store="signals"',
            f"data.split={json.dumps(str(check.tmp / 'split.json'))}", "train.epochs=2",
            "train.amp=true", "train.workers=2", "train.batch_size=32", "train.warmup_steps=0"]
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={world}", "-m", "training", "intra", "--quiet", "--out",
           str(out), "--set", *sets]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True,
                          timeout=max(30.0, min(240.0, check.left_s() - 10)))
    if proc.returncode != 0:
        raise RuntimeError(f"torchrun exited {proc.returncode}: {proc.stderr[-600:]}")
    rows = (out / "train_log.csv").read_text().splitlines()
    last = dict(zip(rows[0].split(","), rows[-1].split(",")))
    how = f"NCCL DDP x{world}" if world > 1 else "x1 (one GPU: no DDP)"
    return [Row(f"project trainer, torchrun {how}", "vit_tiny intra (signal cache)",
                note=f"{len(rows) - 1} epochs, {last['step']} steps, last epoch "
                     f"{last['epoch_s']} s, whole command {time.perf_counter() - t0:.0f} s")]


def _chefer(check: Check, images: np.ndarray) -> list[Row]:
    import torch

    from edge_scorer.explain.relevance import TorchModels, inter_relevance, intra_relevance

    models = TorchModels.load()
    with torch.no_grad():
        feats = models.intra.forward_features(torch.from_numpy(images[:10]))
    w = feats.numpy()[None]

    def explain() -> tuple[np.ndarray, np.ndarray]:
        a = intra_relevance(models.intra, images[:1], methods="chefer").maps["chefer"]
        b = inter_relevance(models.inter, w, 9, methods="chefer").maps["chefer"]
        return a, b

    cpu_ms = _times(explain, 5)[0]
    ref = explain()
    models.intra.cuda()
    models.inter.cuda()
    gpu_ms, p99 = _times(explain, 10)
    got = explain()
    diff = max(float(np.abs(g - r).max() / max(np.abs(r).max(), 1e-12))
               for g, r in zip(got, ref))
    return [Row("Chefer relevance, one epoch (intra + inter)", "shipped intra + inter",
                gpu_ms, p99, note=f"CPU {cpu_ms:.1f} ms; largest GPU-CPU difference "
                                  f"{diff:.1e} of the largest relevance")]


def _fmt(v: float | None, spec: str) -> str:
    return "" if v is None else format(v, spec)


def format_table(rows: Sequence[Row], markdown: bool = False, note_width: int = 110) -> str:
    """The check's one table (Markdown with ``markdown``; text notes cut at ``note_width``)."""
    head = ["path", "model", "b1 ms", "p99", "b64 /s", "agree CPU", "status", "note"]
    body = [[r.path, r.model, _fmt(r.b1_ms, ".2f"), _fmt(r.b1_p99_ms, ".2f"),
             _fmt(r.b64_per_s, ".0f"), _fmt(r.agreement, ".4f"), r.status, r.note]
            for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(c.replace("|", "\\|") for c in b) + " |"
                                  for b in body])
    body = [[*b[:-1], b[-1] if len(b[-1]) <= note_width else b[-1][:note_width - 3] + "..."]
            for b in body]
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = [f"{{:{'>' if 2 <= i <= 5 else '<'}{w}s}}" for i, w in enumerate(widths)]
    lines = ["  ".join(f.format(x) for f, x in zip(fmt, head)).rstrip()]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(f.format(x) for f, x in zip(fmt, b)).rstrip() for b in body]
    return "\n".join(lines)


def _environment() -> dict:
    out: dict = {"host": platform.node(), "python": platform.python_version(),
                 "cpus": os.cpu_count()}
    try:
        import torch

        out.update(torch=torch.__version__, cuda=torch.version.cuda,
                   cudnn=torch.backends.cudnn.version() if torch.cuda.is_available() else None)
        if torch.cuda.is_available():
            out["gpus"] = [{"name": torch.cuda.get_device_name(i),
                            "capability": ".".join(map(str, torch.cuda.get_device_capability(i))),
                            "memory_gb": round(torch.cuda.get_device_properties(i).total_memory
                                               / 2**30, 1)}
                           for i in range(torch.cuda.device_count())]
    except ImportError:
        out["torch"] = None
    try:
        import onnxruntime as ort

        out.update(onnxruntime=ort.__version__, providers=ort.get_available_providers())
    except ImportError:
        out["onnxruntime"] = None
    return out


def main(argv: Sequence[str] | None = None) -> int:
    """Run the check (see the module docstring); 0 when every GPU path ran (or no GPU)."""
    ap = argparse.ArgumentParser(prog="python -m edge_scorer.bench gpu",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--json", default="gpu-check.json", metavar="OUT",
                    help="JSON results (default gpu-check.json)")
    ap.add_argument("--markdown", action="store_true", help="print the table as Markdown")
    ap.add_argument("--budget-min", type=float, default=7.5, help="time budget (minutes)")
    ap.add_argument("--duration-h", type=float, default=0.5, help="simulated night length")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--latency-runs", type=int, default=100)
    ap.add_argument("--train-steps", type=int, default=20)
    ap.add_argument("--intra", help="intra ONNX model with inter.onnx beside it (default: the "
                                    "shipped model)")
    args = ap.parse_args(argv)
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    ok, what = cuda_status()
    env = _environment()
    result: dict = {"schema": SCHEMA, "date": stamp, "environment": env, "gpu": what if ok
                    else None, "reason": None if ok else what, "rows": [], "failed": 0}
    if not ok:
        print(f"edge-scorer GPU check, {stamp}: no CUDA GPU here ({what}); nothing measured. "
              "Run it on a machine with an NVIDIA GPU and a CUDA build of PyTorch.")
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
        return 0
    from edge_scorer.inference.scorer import ScoringModel

    t_start = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="edge-scorer-gpu-") as tmp_name:
        check = Check(args, Path(tmp_name))
        cpu = (ScoringModel.load(args.intra, Path(args.intra).with_name("inter.onnx"))
               if args.intra else ScoringModel.load())
        spec = cpu.spec
        images = _night(check.tmp, args.duration_h, args.seed, spec)
        cpu_stages = cpu.score_images(images).argmax(1)
        _shipped(check, images, spec, cpu_stages)
        _vit_base(check, images, spec)
        check.run("Chefer relevance", "shipped intra + inter", 30,
                  lambda: _chefer(check, images))
        check.run("bf16 training", "ViT-B/16 intra", 60, lambda: _training(check, images))
        check.run("project trainer, torchrun", "vit_tiny intra", 60,
                  lambda: _trainer(check))
        rows = check.rows
    result.update(rows=[asdict(r) for r in rows], failed=sum(r.status == "failed" for r in rows),
                  night={"epochs": int(len(images)), "duration_h": args.duration_h,
                         "seed": args.seed, "spec": spec.name},
                  elapsed_s=round(time.monotonic() - t_start, 1))
    gpus = ", ".join(f"{g['name']} ({g['memory_gb']} GB)" for g in env.get("gpus", []))
    print(f"edge-scorer GPU check, {stamp}: {gpus}; torch {env.get('torch')} (CUDA "
          f"{env.get('cuda')}, cuDNN {env.get('cudnn')}), onnxruntime {env.get('onnxruntime')}; "
          f"simulated {spec.name} night of {len(images)} epochs; {result['elapsed_s']:.0f} s\n")
    print(format_table(rows, args.markdown))
    Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    print(f"\nJSON: {args.json}")
    return 1 if result["failed"] else 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
