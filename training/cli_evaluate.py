"""``edge-scorer evaluate``: score the test nights of a split with trained checkpoints."""

from __future__ import annotations

import argparse

from edge_scorer._log import get_logger
from edge_scorer.cli import CliError

log = get_logger("cli.evaluate")

HELP = ("evaluate trained checkpoints on a split's test nights: metrics, per-night table, "
        "look-ahead curve, confusion matrix (report.json/.md, PNGs)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``evaluate`` options."""
    parser.add_argument("--intra", metavar="CKPT",
                        help="intra-epoch ViT checkpoint (.pt or training output folder)")
    parser.add_argument("--inter", metavar="CKPT",
                        help="inter-epoch transformer checkpoint (needs --intra): SleepXViT "
                             "sliding-window scoring and the look-ahead curve")
    parser.add_argument("--stqs", metavar="CKPT", help="STQS checkpoint (needs a cache with "
                        "conditioned signals)")
    parser.add_argument("--stqs-mode", choices=("sliding", "blocks"), default="sliding",
                        help="STQS sequences of 8: sliding windows with stride 1, softmax summed "
                             "per epoch (default), or non-overlapping blocks")
    parser.add_argument("--cache", required=True, metavar="DIR", help="epoch cache folder")
    parser.add_argument("--split", required=True, metavar="FILE",
                        help="split file (JSON train/val/test subjects) or a committed split "
                             "name such as sleep-edf-sc")
    parser.add_argument("--part", choices=("test", "val", "train"), default="test",
                        help="which part's nights to score (default test)")
    parser.add_argument("-o", "--out", required=True, metavar="DIR", help="report folder")
    parser.add_argument("--batch-size", type=int, default=64, help="images per forward pass")
    parser.add_argument("--device", default="cpu", help="torch device (default cpu)")


def run(args: argparse.Namespace) -> int:
    """Evaluate, write the report and print the pooled metrics."""
    if args.inter is not None and args.intra is None:
        raise CliError("--inter scores the intra model's features: add --intra CKPT")
    if args.intra is None and args.stqs is None:
        raise CliError("give the model to evaluate: --intra CKPT [--inter CKPT] and/or "
                       "--stqs CKPT")
    if args.batch_size < 1:
        raise CliError(f"--batch-size must be at least 1, got {args.batch_size}")
    try:
        from training.evaluate import evaluate
    except ImportError as exc:
        raise CliError(f"evaluation needs the training extra (torch): pip install "
                       f"'edge-scorer[train]' ({exc})") from exc

    report = evaluate(args.cache, args.split, intra=args.intra, inter=args.inter,
                      stqs=args.stqs, part=args.part, batch_size=args.batch_size,
                      stqs_mode=args.stqs_mode, device=args.device)
    paths = report.write(args.out)
    print(f"{len(report.nights)} {args.part} nights; unscored reference epochs excluded")
    for method in report.methods:
        print(f"[{method}] {report.pooled(method)}")
    print(f"report: {paths['md']}")
    return 0
