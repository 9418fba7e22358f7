"""Options shared by the commands that score (``score``, ``stream``, ``demo``)."""

from __future__ import annotations

import argparse

from edge_scorer.cli import CliError


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """``--intra/--inter/--backend/--channel`` (the shipped model by default)."""
    parser.add_argument("--intra", metavar="ONNX",
                        help="intra-epoch model (default: the shipped model)")
    parser.add_argument("--inter", metavar="ONNX", help="inter-epoch model (with --intra)")
    from edge_scorer.inference.backends import BACKENDS

    parser.add_argument("--backend", default="onnxruntime", choices=BACKENDS,
                        help="inference backend (default onnxruntime, CPU; auto: the best one "
                             "present, logged)")
    parser.add_argument("--channel", action="append", default=[], metavar="ROW=LABEL",
                        help="use channel LABEL for spec row ROW (repeatable)")


def load_model(args: argparse.Namespace):
    """The :class:`~edge_scorer.inference.scorer.ScoringModel` the options name (spec from the
    model)."""
    from edge_scorer.inference.scorer import ScoringModel

    if args.inter and not args.intra:
        raise CliError("--inter goes with --intra (the shipped model is used without both)")
    return ScoringModel.load(args.intra, args.inter, backend=args.backend)


def channel_overrides(args: argparse.Namespace) -> dict[str, str]:
    """``--channel ROW=LABEL`` options as a dict."""
    from edge_scorer.io.montage import parse_channel_overrides

    return parse_channel_overrides(args.channel)
