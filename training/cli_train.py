"""``edge-scorer train intra|inter|stqs``: train a model from PSG nights and hypnograms."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

HELP = "train the intra ViT, the inter transformer or STQS from PSG nights + hypnograms"

_DEFAULT_CONFIGS = {"intra": "intra_vit_tiny", "inter": "inter_tiny", "stqs": "stqs"}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-scorer train``."""
    parser.add_argument("task", choices=(*_DEFAULT_CONFIGS, "all"),
                        help="intra (ViT on epoch images), inter (transformer on intra "
                             "features; needs a trained intra model), stqs (CNN+BiLSTM on "
                             "conditioned signals), or all: the three in order, then "
                             "evaluation on the test subjects and ONNX export")
    parser.add_argument("--config", metavar="FILE",
                        help="TOML config file or shipped config name (default: "
                             + ", ".join(f"{t}: {c}" for t, c in _DEFAULT_CONFIGS.items())
                             + "; see training/configs/). With 'all': TASK=NAME pairs, "
                             "e.g. intra=intra_vit_base,inter=inter_base")
    parser.add_argument("--recipe", choices=("sleep-edf", "shhs"),
                        help="dataset recipe: spec, file layout, split and cache of real "
                             "Sleep-EDF SC or SHHS nights; runs go to runs/<task>-<recipe>")
    parser.add_argument("--data", type=Path, metavar="DIR",
                        help="folder of the nights (PSG + hypnogram files), the same as "
                             "--set data.nights=DIR (with --recipe sleep-edf the default is "
                             "the folder 'edge-scorer data sleep-edf' downloads to)")
    parser.add_argument("--set", dest="overrides", action="extend", nargs="+", default=[],
                        metavar="KEY=VALUE",
                        help="override config values, e.g. --set train.epochs=2 "
                             "data.nights=data/sim-sleep-edf model.depth=2")
    parser.add_argument("--out", type=Path, metavar="DIR",
                        help="run folder for best.pt, last.pt, config.json, train_log.csv "
                             "(default: the config's 'out')")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in the output folder from its last.pt")
    parser.add_argument("--max-steps", type=int, metavar="N",
                        help="stop after N optimizer steps in total (quick runs, CPU users)")
    parser.add_argument("--quiet", action="store_true", help="no progress bars")
    parser.add_argument("--nproc", type=int, metavar="N",
                        help="data-parallel training in N processes on this machine (one per "
                             "GPU, or gloo on the CPU): launches 'torchrun --standalone "
                             "--nproc-per-node N -m training ...' with the other options; "
                             "train.batch_size stays the global batch (docs/TRAINING.md)")


def _forwarded(args: argparse.Namespace) -> list[str]:
    """The options of ``args`` as ``python -m training`` arguments (without ``--nproc``)."""
    out = ["-v"] * int(getattr(args, "verbose", 0) or 0) + [args.task]
    for flag, value in (("--config", args.config), ("--recipe", args.recipe),
                        ("--data", args.data), ("--out", args.out),
                        ("--max-steps", args.max_steps)):
        if value is not None:
            out += [flag, str(value)]
    if args.overrides:
        out += ["--set", *args.overrides]
    out += ["--resume"] * bool(args.resume) + ["--quiet"] * bool(args.quiet)
    return out


def launch(args: argparse.Namespace) -> int:
    """Run this training under ``torchrun`` with ``args.nproc`` processes; its exit code."""
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone",
           f"--nproc-per-node={args.nproc}", "-m", "training", *_forwarded(args)]
    print("launching: " + " ".join(cmd), file=sys.stderr, flush=True)
    return subprocess.run(cmd, check=False).returncode


def run(args: argparse.Namespace) -> int:
    """Resolve the configuration, train, print the run folder."""
    from edge_scorer.cli import CliError

    try:
        import torch  # noqa: F401
    except ImportError:
        raise CliError("PyTorch is not installed; training needs it: pip install -e '.[train]'"
                       ) from None
    if args.nproc is not None:
        if args.nproc < 1:
            raise CliError(f"--nproc must be at least 1, got {args.nproc}")
        if args.nproc > 1:
            return launch(args)
    from training import distributed
    from training.config import load_config
    from training.tasks import train

    overrides = list(args.overrides)
    data = args.data
    if data is None and args.recipe == "sleep-edf":
        try:
            from edge_scorer.io.datasets import sleep_edf_folder
        except ImportError:  # pragma: no cover - recipes ship with the package
            sleep_edf_folder = None
        if sleep_edf_folder is not None:
            data = sleep_edf_folder()
    if data is not None:
        overrides.insert(0, f"data.nights={json.dumps(str(data))}")
    if args.out is not None:
        overrides.append(f"out={json.dumps(str(args.out))}")
    if args.max_steps is not None:
        if args.max_steps < 1:
            raise CliError(f"--max-steps must be at least 1, got {args.max_steps}")
        overrides.append(f"train.max_steps={args.max_steps}")
    if args.task == "all":
        from training.recipe_run import run_all

        configs = {}
        for item in filter(None, (args.config or "").split(",")):
            task, sep, name = item.partition("=")
            if not sep or task.strip() not in _DEFAULT_CONFIGS:
                raise CliError(f"train all --config takes TASK=NAME pairs (tasks "
                               f"{list(_DEFAULT_CONFIGS)}), e.g. intra=intra_vit_base; got "
                               f"{item!r}")
            configs[task.strip()] = name.strip()
        out = args.out or Path("runs") / f"all-{args.recipe or 'default'}"
        task_sets = [o for o in overrides if not o.startswith("out=")]
        try:
            paths = run_all(out, recipe=args.recipe, overrides=task_sets, configs=configs,
                            quiet=args.quiet)
        except (ValueError, FileNotFoundError) as exc:
            raise CliError(str(exc)) from None
        if distributed.is_main():  # under torchrun, rank 0 alone reports
            for name, path in paths.items():
                print(f"{name}\t{path}")
        return 0
    try:
        cfg = load_config(args.config or _DEFAULT_CONFIGS[args.task], overrides, task=args.task,
                          recipe=args.recipe)
    except (ValueError, FileNotFoundError) as exc:
        raise CliError(str(exc)) from None
    out = train(cfg, resume=args.resume, quiet=args.quiet)
    if distributed.is_main():
        print(out)
    return 0
