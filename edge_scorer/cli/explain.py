"""``edge-scorer explain``: why epochs got their stage, as figures and numbers.

``edge-scorer explain NIGHT.edf --epoch N [--epoch M ...]`` writes, per epoch, into ``DIR``:

- ``epoch_NNNNN_relevance.png``: the epoch image with the relevance overlay (one panel per
  method);
- ``epoch_NNNNN_bars.png``: relevance per channel row and per second;
- ``epoch_NNNNN_inter.png``: relevance of the neighbouring epochs (inter transformer);
- ``epoch_NNNNN_occlusion.png``: STQS time, band and modality occlusion;
- ``epoch_NNNNN.json``: all the numbers.

``--all`` explains up to ``--per-stage`` epochs of every scored stage and writes the per-stage
means: ``stages_maps.png``, ``stages_bars.png``, ``stages_inter.png``,
``stages_occlusion.png`` and ``summary.json``.

Relevance runs in PyTorch on the weights shipped beside the ONNX models (``pip install
'edge-scorer[train]'``); scoring and occlusion run on the engine's ONNX models.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from edge_scorer._log import get_logger
from edge_scorer.cli import CliError
from edge_scorer.io.outputs import atomic_write

log = get_logger("cli.explain")

HELP = "explain why epochs got their stage: relevance maps, occlusion, figures + JSON"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``explain`` options."""
    parser.add_argument("psg", help="PSG file (EDF, EDF+ or BDF)")
    what = parser.add_mutually_exclusive_group(required=True)
    what.add_argument("--epoch", type=int, action="append", metavar="N",
                      help="epoch index to explain (0-based, repeatable)")
    what.add_argument("--all", action="store_true",
                      help="per-stage summaries over the whole night")
    parser.add_argument("-o", "--out", help="output folder (default explain-<file stem>)")
    parser.add_argument("--method", default="chefer",
                        choices=("chefer", "gradient", "rollout", "all"),
                        help="relevance method (default chefer = Chefer et al. CVPR 2021)")
    parser.add_argument("--target", help="stage to explain (W, N1, N2, N3, REM; default: the "
                                         "scored stage)")
    parser.add_argument("--per-stage", type=int, default=10,
                        help="with --all: most epochs explained per stage (default 10)")
    parser.add_argument("--no-occlusion", action="store_true",
                        help="skip the occlusion analyses (faster)")
    parser.add_argument("--per-row", action="store_true",
                        help="with --all: also per-row time/band occlusion (slower)")
    parser.add_argument("--window-s", type=float, default=2.0,
                        help="time-occlusion window (s, default 2)")
    parser.add_argument("--fill", choices=("zero", "gap"), default="zero",
                        help="occlusion mask: zero (flat line, STQS) or gap (nothing drawn)")
    parser.add_argument("--hypnogram", help="hypnogram of the night (reported beside the "
                                            "scored stages)")
    parser.add_argument("--spec", help="render spec (default: the model's)")
    parser.add_argument("--channel", action="append", default=[], metavar="ROW=LABEL",
                        help="use file channel LABEL for spec row ROW (repeatable)")
    parser.add_argument("--intra", help="intra model (.onnx with its .pt beside it; default: "
                                        "the shipped model)")
    parser.add_argument("--inter", help="inter model (.onnx with its .pt beside it)")
    parser.add_argument("--seed", type=int, default=0, help="sampling seed for --all")


def _target(text: str | None) -> int | None:
    from edge_scorer.stages import CLASS_NAMES

    if text is None:
        return None
    names = {n.upper(): i for i, n in enumerate(CLASS_NAMES)}
    key = text.strip().upper()
    if key in names:
        return names[key]
    if key.isdigit() and int(key) < len(CLASS_NAMES):
        return int(key)
    raise CliError(f"--target {text!r} is not a stage; use one of {', '.join(CLASS_NAMES)}")


def _in_night(args: argparse.Namespace) -> list[int]:
    """The requested epochs (those past the end are refused once the night is read)."""
    bad = [n for n in args.epoch if n < 0]
    if bad:
        raise CliError(f"--epoch must be 0 or more, got {bad[0]}")
    return list(args.epoch)


def run(args: argparse.Namespace) -> int:
    """Load the models and the night, explain, write figures and JSON."""
    try:
        from edge_scorer.explain.relevance import TorchModels
    except ImportError as exc:
        raise CliError(f"{exc}") from None
    from edge_scorer.explain.occlusion import onnx_proba_fn
    from edge_scorer.explain.summary import ExplainedNight
    from edge_scorer.inference.scorer import ScoringModel
    from edge_scorer.io.montage import parse_channel_overrides
    from edge_scorer.io.spec import SpecError, load_spec

    if args.intra is None and args.inter is not None:
        raise CliError("--inter needs --intra (the two models come from one training run)")
    if args.all and args.target:
        raise CliError("--target goes with --epoch; --all explains each stage's own epochs")
    if args.per_stage < 1:
        raise CliError(f"--per-stage must be at least 1, got {args.per_stage}")
    try:
        spec = load_spec(args.spec) if args.spec else None
    except SpecError as exc:
        raise CliError(str(exc)) from None
    target = _target(args.target)
    model = ScoringModel.load(args.intra, args.inter, spec)
    torch_models = TorchModels.load(args.intra, args.inter if args.intra else None)
    torch_models.check_spec(model.spec)
    night = ExplainedNight.from_file(args.psg, model, model.spec, args.hypnogram,
                                     parse_channel_overrides(args.channel),
                                     only=None if args.all else _in_night(args))
    out = Path(args.out or f"explain-{Path(args.psg).stem}")
    out.mkdir(parents=True, exist_ok=True)
    proba_fn = None if args.no_occlusion else onnx_proba_fn(model)
    if args.all:
        _run_all(args, night, torch_models, proba_fn, out)
    else:
        for n in args.epoch:
            _run_epoch(args, night, torch_models, proba_fn, n, target, out)
    return 0


def _run_epoch(args, night, models, proba_fn, n: int, target, out: Path) -> None:
    from edge_scorer.explain import figures
    from edge_scorer.explain.epoch import explain_epoch
    from edge_scorer.explain.occlusion import occlusion_analysis
    from edge_scorer.explain.relevance import METHODS
    from edge_scorer.stages import CLASS_NAMES

    methods = METHODS if args.method == "all" else (args.method,)
    feats = night.features if models.inter is not None else None
    exs = [explain_epoch(models, night.images[n], night.spec, method=m, target=target,
                         features=feats, index=n) for m in methods]
    ex = exs[0]
    stem = out / f"epoch_{n:05d}"
    written = [figures.save_figure(figures.relevance_figure(night.images[n], exs, night.spec),
                                   f"{stem}_relevance.png"),
               figures.save_figure(figures.bars_figure(ex, night.spec), f"{stem}_bars.png")]
    if ex.inter is not None:
        written.append(figures.save_figure(figures.inter_figure(ex, night.stages),
                                           f"{stem}_inter.png"))
    occ = None
    if proba_fn is not None:
        before, after = night.context(n)
        occ = occlusion_analysis(night.epochs[n], night.spec, proba_fn, target=ex.target,
                                 before=before, after=after, window_s=args.window_s,
                                 fill=args.fill)
        written.append(figures.save_figure(
            figures.occlusion_figure(occ, f"epoch {n}"), f"{stem}_occlusion.png"))
    data = {
        "source": night.source, "spec": night.spec.name, "epoch": n,
        "onset_s": n * night.spec.epoch_s,
        "scored_stage": CLASS_NAMES[int(night.stages[n])],
        "final_probabilities": dict(zip(CLASS_NAMES, night.proba[n].tolist())),
        "hypnogram_stage": None if night.true_stages is None or night.true_stages[n] < 0
        else CLASS_NAMES[int(night.true_stages[n])],
        "relevance": {e.method: e.to_dict() for e in exs},
        "occlusion": None if occ is None else occ.to_dict(),
    }
    path = Path(f"{stem}.json")
    atomic_write(path, json.dumps(data, indent=1) + "\n")
    print(f"epoch {n} ({figures.hms(n * night.spec.epoch_s)}): "
          + "\n  ".join(ex.describe()))
    print(f"  -> {', '.join(p.name for p in [*written, path])} in {out}")


def _run_all(args, night, models, proba_fn, out: Path) -> None:
    from edge_scorer.explain import figures
    from edge_scorer.explain.summary import summarize_night

    method = "chefer" if args.method == "all" else args.method
    summary = summarize_night(
        night, models, proba_fn, per_stage=args.per_stage, method=method, seed=args.seed,
        per_row=args.per_row, fill=args.fill,
        progress=lambda d, t: log.info("explained %d/%d epochs", d, t) if d % 10 == 0 or
        d == t else None)
    written = [
        figures.save_figure(figures.stage_maps_figure(summary, night.spec),
                            out / "stages_maps.png"),
        figures.save_figure(figures.stage_bars_figure(summary), out / "stages_bars.png"),
    ]
    if models.inter is not None:
        written.append(figures.save_figure(figures.stage_inter_figure(summary),
                                           out / "stages_inter.png"))
    if proba_fn is not None:
        written.append(figures.save_figure(figures.stage_occlusion_figure(summary),
                                           out / "stages_occlusion.png"))
    path = out / "summary.json"
    atomic_write(path, json.dumps(summary.to_dict(), indent=1) + "\n")
    for st in summary.stages:
        rows = ", ".join(f"{r} {s:.0%}" for r, s in zip(summary.row_names, st.row_share))
        print(f"{figures.stage_title(st)}: {rows}")
    print(f"-> {', '.join(p.name for p in [*written, path])} in {out} "
          f"({summary.elapsed_s:.1f} s)")
