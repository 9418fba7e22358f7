"""``edge-scorer export onnx|quantize|tensorrt``: exported, optimized, checked models.

``onnx CHECKPOINT -o DIR``
    intra (+ inter) checkpoints -> ONNX (dynamic batch, opset 17, checked, metadata), weights
    beside them, and the parity gate against torch on a night of rendered epochs (logits,
    features, final stages; exit 2 and no ONNX files when it fails).
``quantize MODEL.onnx``
    ONNX Runtime int8 (dynamic, or static calibrated on rendered epochs); compared with fp32
    through the shared gate (:mod:`export.gate`: logits, features, final stages of whole
    held-out nights); refused (nothing written, exit 2) when it fails.
``tensorrt MODEL.onnx``
    A TensorRT engine for this GPU (fp32/fp16/int8), profiles for live and offline batches,
    a timing cache; ``--verify`` gates it against ONNX Runtime on held-out nights (every
    output, features included, and the final stages).
``gate MODEL_DIR --backend B [--fp16]``
    A runtime backend (torch, torch-cuda fp16 with or without CUDA graphs, ort-cuda,
    ort-tensorrt fp16, a TensorRT engine) against ONNX Runtime CPU fp32 through the same gate:
    logits, features, final stages of whole held-out nights; exit 1 when it fails.

Epoch sources (``--epochs``, ``--calibration``, ``--held-out``): ``simulated`` (default; a
simulated night of the model's spec), an ``epochs.npy`` from ``edge-scorer render`` (or its
folder), or a PSG file (EDF/BDF).
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_scorer._log import get_logger
from edge_scorer.cli import CliError
from edge_scorer.io.outputs import atomic_write

log = get_logger("cli.export")

HELP = ("export models: onnx (from checkpoints, parity gate), quantize (int8, refused when it "
        "fails the gate), tensorrt (engines for this GPU, --verify), gate (a runtime backend, "
        "e.g. torch-cuda fp16, against ONNX Runtime fp32)")


def _epochs_args(p: argparse.ArgumentParser, *names: str) -> None:
    for name in names:
        p.add_argument(f"--{name}", metavar="SRC", default="simulated",
                       help=f"{name} epochs: 'simulated' (default), epochs.npy (edge-scorer "
                            "render) or a PSG file")
    if "held-out" in names:
        p.add_argument("--held-out-nights", type=int, default=2, metavar="N",
                       help="simulated held-out nights, each scored whole for the final-stage "
                            "gate (default 2)")
    p.add_argument("--duration-h", type=float, default=0.5,
                   help="length of each simulated night in hours (default 0.5)")
    p.add_argument("--seed", type=int, default=0, help="seed of the simulated nights")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``export`` subcommands and their options."""
    sub = parser.add_subparsers(dest="export_command", metavar="WHAT", required=True)

    p = sub.add_parser("onnx", help="checkpoints -> ONNX + weights + parity report")
    p.add_argument("checkpoint", help="intra checkpoint (.pt), its folder, or a `train all` run "
                                      "folder (intra/ and inter/ inside)")
    p.add_argument("--inter", metavar="CKPT", help="inter checkpoint (default: the run's inter/)")
    p.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    p.add_argument("--force-spec", action="store_true",
                   help="export although the checkpoint's render-spec hash differs from the "
                        "current one (only when the images are unchanged)")
    _epochs_args(p, "epochs")

    p = sub.add_parser("quantize", help="ONNX Runtime int8, checked against fp32")
    p.add_argument("model", help="fp32 ONNX model exported by edge-scorer")
    p.add_argument("-o", "--out", metavar="FILE", help="int8 model (default MODEL.int8-MODE.onnx)")
    p.add_argument("--mode", choices=("dynamic", "static"), default="dynamic",
                   help="dynamic (weights only, default) or static (calibrated activations)")
    p.add_argument("--min-agreement", type=float, default=None,
                   help="refuse below this agreement with fp32: the int8 model's argmax and "
                        "the final stages of the held-out nights (default 0.95)")
    p.add_argument("--intra", metavar="ONNX",
                   help="for an inter model: the intra model making its features "
                        "(default intra.onnx beside it)")
    p.add_argument("--inter", metavar="ONNX",
                   help="for an intra model: the inter model reading its features for the "
                        "final stages (default inter.onnx beside it)")
    p.add_argument("--threads", type=int, help="ONNX Runtime threads for the comparison")
    _epochs_args(p, "calibration", "held-out")

    p = sub.add_parser("tensorrt", help="TensorRT engine for this GPU")
    p.add_argument("model", help="ONNX model exported by edge-scorer")
    p.add_argument("-o", "--out", metavar="DIR", help="engine folder (default: the model's)")
    p.add_argument("--precision", choices=("fp32", "fp16", "int8"), default="fp16",
                   help="engine precision (default fp16)")
    p.add_argument("--profile", action="append", metavar="MIN:OPT:MAX",
                   help="batch profile, repeatable (default 1:1:1 and 2:64:256)")
    p.add_argument("--timing-cache", metavar="FILE", help="timing cache file (default beside "
                                                          "the engine)")
    p.add_argument("--workspace-mb", type=int, help="builder workspace limit in MiB")
    p.add_argument("--gpu", metavar="NAME", help="GPU model the engine is named for (default: "
                                                 "detected)")
    p.add_argument("--intra", metavar="ONNX", help="for an inter model: its intra model")
    p.add_argument("--inter", metavar="ONNX", help="for an intra model: the inter model "
                                                   "reading its features (final stages)")
    p.add_argument("--verify", action="store_true",
                   help="gate the engine against ONNX Runtime CPU fp32 on held-out nights "
                        "(every output, features included, and the final stages)")
    _epochs_args(p, "calibration", "held-out")
    _gate_arguments(sub)


def _gate_arguments(sub) -> None:
    p = sub.add_parser("gate", help="gate a runtime backend (e.g. torch-cuda fp16) against "
                                    "ONNX Runtime CPU fp32 on held-out nights")
    p.add_argument("model", help="folder holding intra.onnx and inter.onnx, or the intra ONNX "
                                 "model (inter.onnx beside it)")
    p.add_argument("--inter", metavar="ONNX", help="the inter model (default inter.onnx beside "
                                                   "the intra model)")
    p.add_argument("--backend", required=True, help="candidate backend: torch, torch-cuda, "
                                                    "ort-cuda, ort-tensorrt, tensorrt")
    p.add_argument("--fp16", action="store_true",
                   help="half precision (torch-cuda half, ort-tensorrt fp16, a TensorRT fp16 "
                        "engine) and the fp16 limits")
    p.add_argument("--cuda-graphs", action="store_true", help="torch-cuda: CUDA graphs")
    p.add_argument("--which", choices=("both", "intra", "inter"), default="both",
                   help="models run on the candidate backend (default both)")
    p.add_argument("--min-agreement", type=float, default=None,
                   help="least argmax and final-stage agreement (default: the precision's)")
    p.add_argument("-o", "--out", metavar="JSON", help="report (default "
                                                       "gate.<backend>[.fp16].json beside)")
    _epochs_args(p, "held-out")


def _load(source: str, spec: str, args: argparse.Namespace, seed_offset: int = 0):
    from export.epochs import load_epochs

    try:
        return load_epochs(source, spec, seed=args.seed + seed_offset,
                           duration_h=args.duration_h)
    except FileNotFoundError as exc:
        raise CliError(f"epochs source not found: {exc}") from exc


def _load_nights(source: str, spec: str, args: argparse.Namespace):
    from export.epochs import HELD_OUT_SEED_OFFSET, load_nights

    try:
        return load_nights(source, spec, seed=args.seed + HELD_OUT_SEED_OFFSET,
                           duration_h=args.duration_h, n_nights=args.held_out_nights)
    except FileNotFoundError as exc:
        raise CliError(f"epochs source not found: {exc}") from exc
    except ValueError as exc:
        raise CliError(str(exc)) from exc


def _model_spec(model: str) -> str:
    from edge_scorer.inference.backends import onnx_metadata

    meta = onnx_metadata(model)
    if meta.get("kind") not in ("intra", "inter"):
        raise CliError(f"{model}: not an edge-scorer intra/inter model (kind "
                       f"{meta.get('kind')!r}); export it with edge-scorer export onnx")
    return meta.get("render_spec", "sleep-edf")


def _run_onnx(args: argparse.Namespace) -> int:
    try:
        import onnx  # noqa: F401
        import torch  # noqa: F401
    except ImportError as exc:
        raise CliError(f"ONNX export needs PyTorch and onnx: pip install 'edge-scorer[train]' "
                       f"({exc})") from exc
    from export.checkpoints import checkpoint_spec, export_checkpoints, resolve_run
    from export.gate import GateFailed

    intra, inter = resolve_run(args.checkpoint, args.inter)
    spec = checkpoint_spec(intra, args.force_spec)  # refuses a stale spec before any work
    images, desc = _load(args.epochs, spec.name, args)
    try:
        out = export_checkpoints(intra, args.out, inter=inter, images=images, images_desc=desc,
                                 force_spec=args.force_spec, spec=spec)
    except GateFailed as exc:
        raise CliError(str(exc)) from exc
    for kind in ("intra", "inter"):
        if out[kind] is not None:
            r = out["parity"][kind]
            feats = (f", features max |diff| {r['features']['max_abs_diff']:.2e} min cosine "
                     f"{r['features']['min_cosine']:.6f}" if "features" in r else "")
            print(f"{kind}: {out[kind]}  parity vs torch: max |diff| {r['max_abs_diff']:.2e}, "
                  f"argmax agreement {r['argmax_agreement']:.4f} (n={r['n']}){feats}")
    s = out["parity"]["gate"]["stages"]
    print(f"final stages vs torch: agreement {s['agreement']:.4f}, max |dp| "
          f"{s['max_abs_diff_proba']:.2e} ({s['n_epochs']} epochs)")
    print(f"parity report: {out['report']} ({desc})")
    return 0


def _run_quantize(args: argparse.Namespace) -> int:
    from export.quantize import DEFAULT_MIN_AGREEMENT, QuantizationRefused, quantize_model

    spec = _model_spec(args.model)
    held, held_desc = _load_nights(args.held_out, spec, args)
    calib, calib_desc = (None, "")
    if args.mode == "static":
        calib, calib_desc = _load(args.calibration, spec, args)
    try:
        report = quantize_model(
            args.model, args.out, mode=args.mode, held_out=held, calibration=calib,
            held_out_desc=held_desc, calibration_desc=calib_desc, intra=args.intra,
            inter=args.inter,
            min_agreement=DEFAULT_MIN_AGREEMENT if args.min_agreement is None
            else args.min_agreement, threads=args.threads)
    except QuantizationRefused as exc:
        print(exc.report.table())
        raise CliError(str(exc)) from exc
    except ImportError as exc:
        raise CliError(str(exc)) from exc
    print(report.table())
    for note in report.notes:
        print(f"note: {note}")
    print(f"report: {Path(report.output).with_suffix('.json')}")
    return 0


def _run_tensorrt(args: argparse.Namespace) -> int:
    from edge_scorer.inference.backends import BackendUnavailable
    from export.tensorrt_build import DEFAULT_PROFILES, build_engine, parse_profile, verify_engine

    spec = _model_spec(args.model)
    try:
        profiles = [parse_profile(p) for p in args.profile] if args.profile else DEFAULT_PROFILES
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    calib = None
    if args.precision == "int8":
        calib, desc = _load(args.calibration, spec, args)
        log.info("INT8 calibration: %s", desc)
    try:
        engine = build_engine(args.model, args.out, precision=args.precision, profiles=profiles,
                              calibration=calib, gpu=args.gpu, timing_cache=args.timing_cache,
                              workspace_mb=args.workspace_mb, intra=args.intra,
                              verbose=bool(args.verbose))
    except BackendUnavailable as exc:
        raise CliError(str(exc)) from exc
    print(f"engine: {engine}")
    if not args.verify:
        return 0
    held, desc = _load_nights(args.held_out, spec, args)
    report = verify_engine(engine, args.model, held, intra=args.intra, inter=args.inter,
                           gpu=args.gpu)
    report["epochs"] = desc
    path = engine.with_name(engine.name + ".verify.json")
    atomic_write(path, json.dumps(report, indent=2) + "\n")
    _print_verify(report)
    print(f"verify: {'passed' if report['passed'] else 'FAILED'} (agreement threshold "
          f"{report['min_agreement']:g}; {desc}); {path}")
    for failure in report["failures"]:
        print(f"  failed: {failure}")
    return 0 if report["passed"] else 1


def _print_verify(report: dict) -> None:
    """One line per batch size and tensor, one for the final stages."""
    for bs, tensors in report["batches"].items():
        for name, t in tensors.items():
            extra = (f", argmax agreement {t['argmax_agreement']:.4f}, max |dp| "
                     f"{t['max_abs_diff_proba']:.4f}" if "argmax_agreement" in t
                     else f", min cosine {t['min_cosine']:.6f}" if "min_cosine" in t else "")
            print(f"batch {bs:>3s} {name}: max abs diff {t['max_abs_diff']:.3g}{extra} "
                  f"(n={t['n']})")
    s = report["stages"]
    print(f"final stages: agreement {s['agreement']:.4f}, max |dp| "
          f"{s['max_abs_diff_proba']:.4f} ({s['n_epochs']} epochs of {s['n_nights']} night(s))")


def _run_gate(args: argparse.Namespace) -> int:
    from edge_scorer.inference.backends import BackendUnavailable
    from export.gate import THRESHOLDS, gate_backend

    model = Path(args.model)
    intra = model / "intra.onnx" if model.is_dir() else model
    inter = Path(args.inter) if args.inter else intra.with_name("inter.onnx")
    for path in (intra, inter):
        if not path.is_file():
            raise CliError(f"model not found: {path}")
    spec = _model_spec(str(intra))
    held, desc = _load_nights(args.held_out, spec, args)
    precision = "fp16" if args.fp16 else "fp32"
    options = {"half": args.fp16, "cuda_graphs": args.cuda_graphs, "fp16": args.fp16}
    if args.backend == "tensorrt":
        options = {"precision": precision}
    thresholds = (THRESHOLDS[precision] if args.min_agreement is None
                  else THRESHOLDS[precision].with_agreement(args.min_agreement))
    try:
        report = gate_backend(intra, inter, held, backend=args.backend, precision=precision,
                              which=args.which, thresholds=thresholds, **options)
    except (BackendUnavailable, ValueError) as exc:
        raise CliError(str(exc)) from exc
    out = Path(args.out) if args.out else intra.with_name(
        f"gate.{args.backend}{'.fp16' if args.fp16 else ''}.json")
    atomic_write(out, json.dumps({"backend": args.backend, "precision": precision,
                                  "which": args.which, "epochs": desc, **report.to_dict()},
                                 indent=2) + "\n")
    print(report.summary())
    print(f"gate {args.backend} {precision}: {'passed' if report.passed else 'FAILED'} "
          f"({desc}); {out}")
    for failure in report.failures:
        print(f"  failed: {failure}")
    return 0 if report.passed else 1


def run(args: argparse.Namespace) -> int:
    """Dispatch to the export subcommand."""
    return {"onnx": _run_onnx, "quantize": _run_quantize, "tensorrt": _run_tensorrt,
            "gate": _run_gate}[args.export_command](args)
