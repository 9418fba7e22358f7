"""Runtime benchmark: every inference backend present, on the same rendered night, in one run.

``python -m edge_scorer.bench runtimes [--duration-h 1] [--latency-runs 200] [--repeats 10]
[--intra ONNX --inter ONNX] [--markdown] [--json OUT]``

On a simulated night (written as EDF, read back, conditioned and rendered as any recording):

- per-epoch cost of reading, conditioning and rendering (the whole night / epochs);
- per backend: live latency at batch 1 (intra on one image, inter on one window; median and
  p99), their sum per epoch, offline throughput (the whole night scored by
  :meth:`~edge_scorer.inference.scorer.ScoringModel.score_images`: intra in batches of 64, inter
  windows
  in batches of 256), and argmax agreement of the night's stages with ONNX Runtime fp32;
- ratios against ONNX Runtime fp32 on the CPU (the baseline): ``>1`` is faster.

Backends: ONNX Runtime fp32 (baseline), int8 dynamic and static (quantized here, calibrated on
another simulated night), PyTorch eager CPU; when a GPU is present, ONNX Runtime CUDA and
TensorRT providers, native TensorRT fp32/fp16 (engines built here), PyTorch CUDA fp32/fp16 and
fp16 with CUDA graphs. Rows that cannot run on this machine are listed with the reason.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.bench.render import time_each as _time

log = get_logger("bench.runtimes")


@dataclass
class Row:
    """One backend's measurements (times in ms, throughput in epochs/s)."""

    label: str
    backend: str
    intra_ms: float
    intra_p99_ms: float
    inter_ms: float
    epoch_ms: float
    throughput: float
    agreement: float


def cpu_name() -> str:
    """The CPU model (``/proc/cpuinfo``), else ``platform.processor()``."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def render_timings(psg: Path, spec: Any, repeats: int) -> tuple[np.ndarray, list[tuple]]:
    """The night's images and (step, ms per epoch) of reading, conditioning, rendering."""
    from edge_scorer.dsp.conditioning import epochs_from_signal
    from edge_scorer.dsp.render import render_epochs
    from edge_scorer.dsp.render_night import condition_recording
    from edge_scorer.io.psg import read_psg

    read_s = _time(lambda: read_psg(psg, spec), repeats)
    rec = read_psg(psg, spec)
    cond_s = _time(lambda: condition_recording(rec, spec), repeats)
    conditioned, _ = condition_recording(rec, spec)
    epochs = epochs_from_signal(conditioned, spec)
    render_s = _time(lambda: render_epochs(epochs, spec), repeats)
    images = render_epochs(epochs, spec)
    n = len(images)
    steps = [("read EDF (MNE)", read_s), ("condition", cond_s), ("render", render_s)]
    rows = [(name, float(np.median(s)) / n * 1e3) for name, s in steps]
    rows.append(("read + condition + render", sum(ms for _, ms in rows)))
    return images, rows


@dataclass
class _Candidate:
    label: str
    intra: Any
    inter: Any
    model: Any
    x1: np.ndarray
    w1: np.ndarray
    intra_s: list[float]
    inter_s: list[float]
    night_s: list[float]
    proba: np.ndarray | None = None


def prepare(label: str, intra: Any, inter: Any, images: np.ndarray, spec: Any) -> _Candidate:
    """A backend pair ready to time: scoring model, batch-1 inputs, warmed up."""
    from edge_scorer.inference.scorer import ScoringModel

    model = ScoringModel(intra, inter, spec)
    x1 = images[:1, None].astype(np.float32)
    feats = model.epoch_outputs(images[:model.window])[1]
    w1 = np.ascontiguousarray(feats[None, :model.window], dtype=np.float32)
    for _ in range(3):  # warm-up (first runs allocate, autotune, capture graphs)
        intra.infer({"image": x1})
        inter.infer({"features": w1})
    cand = _Candidate(label, intra, inter, model, x1, w1, [], [], [])
    cand.proba = model.score_images(images)
    return cand


def timing_round(cands: list[_Candidate], images: np.ndarray, latency_runs: int,
                 pause_s: float = 0.2) -> None:
    """One round: every backend's batch-1 latencies and one whole night, back to back.

    Rounds interleave the backends, so a change of machine load hits them all alike; the pause
    before each block lets the previous runtime's spinning worker threads go idle (ONNX
    Runtime and OpenMP spin after a run and would otherwise steal the cores).
    """
    for c in cands:
        time.sleep(pause_s)
        c.intra_s += list(_time(lambda c=c: c.intra.infer({"image": c.x1}), latency_runs))
        time.sleep(pause_s)
        c.inter_s += list(_time(lambda c=c: c.inter.infer({"features": c.w1}), latency_runs))
        time.sleep(pause_s)
        c.night_s += list(_time(lambda c=c: c.model.score_images(images), 1))


def summarize(c: _Candidate, n_epochs: int, reference: np.ndarray) -> Row:
    """The row of a timed backend."""
    intra_ms = float(np.median(c.intra_s) * 1e3)
    inter_ms = float(np.median(c.inter_s) * 1e3)
    return Row(c.label, getattr(c.intra, "name", "?"), intra_ms,
               float(np.percentile(c.intra_s, 99) * 1e3), inter_ms, intra_ms + inter_ms,
               n_epochs / float(np.median(c.night_s)),
               float(np.mean(c.proba.argmax(1) == reference.argmax(1))))


def backend_factories(intra: Path, inter: Path, tmp: Path, calib: np.ndarray,
                      held: np.ndarray) -> list[tuple[str, Callable[[], tuple[Any, Any]]]]:
    """(label, factory) per configuration; a factory raises when it cannot run here."""
    from edge_scorer.inference.backends import OrtBackend, create_backend, nvidia_gpu_present

    def ort(a: Path, b: Path):
        return lambda: (OrtBackend(a), OrtBackend(b))

    def quantized(mode: str):
        def make():
            from export.quantize import quantize_model

            paths = []
            for src in (intra, inter):
                dst = tmp / f"{src.stem}.int8-{mode}.onnx"
                if not dst.is_file():
                    report = quantize_model(src, dst, mode=mode, held_out=held,
                                            calibration=calib, min_agreement=0.0, intra=intra,
                                            enforce=False)
                    log.info("%s int8 %s: agreement with fp32 %.4f", src.name, mode,
                             report.argmax_agreement)
                paths.append(dst)
            return OrtBackend(paths[0]), OrtBackend(paths[1])
        return make

    def named(backend: str, **opts):
        return lambda: (create_backend(intra, backend, **opts),
                        create_backend(inter, backend, **opts))

    def trt_native(precision: str):
        def make():
            from edge_scorer.inference.backends_trt import TensorRTBackend
            from export.tensorrt_build import build_engine

            engines = [build_engine(p, tmp, precision=precision) for p in (intra, inter)]
            return tuple(TensorRTBackend(e, onnx_path=p) for e, p in zip(engines,
                                                                        (intra, inter)))
        return make

    rows = [("ORT fp32 CPU (baseline)", ort(intra, inter)),
            ("ORT int8 dynamic CPU", quantized("dynamic")),
            ("ORT int8 static CPU", quantized("static")),
            ("torch eager fp32 CPU", named("torch"))]
    gpu_rows = [("ORT CUDA fp32", named("ort-cuda")),
                ("ORT TensorRT EP fp16", named("ort-tensorrt", fp16=True,
                                               cache_dir=tmp / "ort-trt")),
                ("TensorRT fp32", trt_native("fp32")),
                ("TensorRT fp16", trt_native("fp16")),
                ("torch CUDA fp32", named("torch-cuda")),
                ("torch CUDA fp16", named("torch-cuda", half=True)),
                ("torch CUDA fp16 + CUDA graphs", named("torch-cuda", half=True,
                                                        cuda_graphs=True))]
    if nvidia_gpu_present():
        return rows + gpu_rows

    def absent():
        raise RuntimeError("no NVIDIA GPU on this machine")

    return rows + [(label, absent) for label, _ in gpu_rows]


def format_table(rows: list[Row], markdown: bool = False) -> str:
    """The backend table with ratios against the first row (the baseline)."""
    base = rows[0]
    head = ["backend", "intra b1 ms", "p99", "inter b1 ms", "epoch ms", "x baseline",
            "offline ep/s", "x baseline", "agree fp32"]
    body = [[r.label, f"{r.intra_ms:.2f}", f"{r.intra_p99_ms:.2f}", f"{r.inter_ms:.3f}",
             f"{r.epoch_ms:.2f}", f"{base.epoch_ms / r.epoch_ms:.2f}", f"{r.throughput:.1f}",
             f"{r.throughput / base.throughput:.2f}", f"{r.agreement:.4f}"] for r in rows]
    if markdown:
        lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
        return "\n".join(lines + ["| " + " | ".join(b) + " |" for b in body])
    widths = [max(len(x) for x in col) for col in zip(head, *body)]
    fmt = [f"{{:{'<' if i == 0 else '>'}{w}s}}" for i, w in enumerate(widths)]
    lines = ["  ".join(f.format(x) for f, x in zip(fmt, head))]
    lines.append("-" * len(lines[0]))
    lines += ["  ".join(f.format(x) for f, x in zip(fmt, b)) for b in body]
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the tables (see the module docstring)."""
    parser = argparse.ArgumentParser(prog="python -m edge_scorer.bench runtimes",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("--intra", help="intra ONNX model (default: the shipped model)")
    parser.add_argument("--inter", help="inter ONNX model (default: the shipped model)")
    parser.add_argument("--duration-h", type=float, default=1.0,
                        help="length of the simulated night (default 1 h)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated night")
    parser.add_argument("--latency-runs", type=int, default=200,
                        help="batch-1 runs timed per backend (spread over the rounds)")
    parser.add_argument("--repeats", type=int, default=10,
                        help="timing rounds; each times one whole night per backend")
    parser.add_argument("--markdown", action="store_true", help="print Markdown tables")
    parser.add_argument("--json", metavar="OUT", help="also write the results as JSON")
    args = parser.parse_args(argv)
    if args.latency_runs < 2 or args.repeats < 1:
        parser.error("--latency-runs must be >= 2 and --repeats >= 1")
    import onnxruntime as ort

    from edge_scorer.inference.backends import onnx_metadata
    from edge_scorer.inference.scorer import default_model_dir
    from edge_scorer.io.spec import load_spec
    from edge_scorer.simulate import simulate_nights
    from export.epochs import HELD_OUT_SEED_OFFSET, simulated_epochs

    folder = default_model_dir()
    intra = Path(args.intra or folder / "intra.onnx")
    inter = Path(args.inter or (Path(args.intra).with_name("inter.onnx") if args.intra
                                else folder / "inter.onnx"))
    spec = load_spec(onnx_metadata(intra).get("render_spec", "sleep-edf"))
    rows: list[Row] = []
    skipped: list[tuple[str, str]] = []
    with tempfile.TemporaryDirectory(prefix="edge-scorer-bench-") as tmp_name:
        tmp = Path(tmp_name)
        (psg, _), = simulate_nights(tmp / "night", 1, layout=spec.name, seed=args.seed,
                                    duration_h=args.duration_h)
        images, render_rows = render_timings(psg, spec, args.repeats)
        calib = simulated_epochs(spec, duration_h=0.5, seed=args.seed + HELD_OUT_SEED_OFFSET)
        cands: list[_Candidate] = []
        for label, make in backend_factories(intra, inter, tmp, calib, images):
            try:
                cands.append(prepare(label, *make(), images, spec))
            except Exception as exc:  # report every backend that cannot run, keep going
                skipped.append((label, f"{type(exc).__name__}: {exc}"))
                log.debug("%s skipped", label, exc_info=True)
        load = [os.getloadavg()[0]]
        for i in range(args.repeats):
            timing_round(cands, images, max(1, args.latency_runs // args.repeats))
            log.info("timing round %d/%d done", i + 1, args.repeats)
        load.append(os.getloadavg()[0])
        if cands:
            rows = [summarize(c, len(images), cands[0].proba) for c in cands]
    if not rows or not rows[0].label.endswith("(baseline)"):
        raise RuntimeError(f"the baseline (ONNX Runtime CPU) could not run: {skipped}")
    try:
        import torch

        torch_info = f"torch {torch.__version__} ({torch.get_num_threads()} threads)"
    except ImportError:
        torch_info = "torch not installed"
    stamp = datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC")
    print(f"edge-scorer runtime benchmark, {stamp}: {cpu_name()}, "
          f"{os.cpu_count()} logical CPUs, onnxruntime {ort.__version__} "
          f"(providers {', '.join(ort.get_available_providers())}), {torch_info}")
    print(f"model {intra.name} + {inter.name} ({onnx_metadata(intra).get('preset', '?')}), "
          f"simulated {spec.name} night: {len(images)} epochs ({args.duration_h:g} h, seed "
          f"{args.seed}); latency: median of {args.latency_runs} runs; offline: median of "
          f"{args.repeats} whole-night runs; {args.repeats} interleaved rounds; 1-min load "
          f"average {load[0]:.2f} -> {load[1]:.2f}\n")
    width = max(len(n) for n, _ in render_rows)
    print("render path, per epoch:" if not args.markdown else
          "| render path | ms per epoch |\n|---|---|")
    for name, ms in render_rows:
        print(f"| {name} | {ms:.2f} |" if args.markdown else f"  {name:{width}s} {ms:8.2f} ms")
    print()
    print(format_table(rows, args.markdown))
    for label, why in skipped:
        print(f"not measured: {label}: {why}")
    if args.json:
        Path(args.json).write_text(json.dumps(
            {"date": stamp, "cpu": cpu_name(), "onnxruntime": ort.__version__,
             "epochs": len(images), "render_ms_per_epoch": dict(render_rows),
             "load_average": load,
             "rows": [asdict(r) for r in rows], "skipped": dict(skipped)}, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
