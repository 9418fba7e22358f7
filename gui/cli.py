"""``edge-scorer gui``: the bedside window (PySide6 + pyqtgraph, the ``gui`` extra).

Pick a live LSL stream (or a PSG file to replay as one) and a model/backend, start and stop;
the window shows the live signals, the hypnogram as it is scored (provisional, revised and
final epochs), the hypnodensity, each epoch's image with its relevance map, signal quality,
sleep statistics and latency, and exports the hypnogram, a picture of it and a report.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_scorer.cli import CliError
from edge_scorer.cli._args import positive
from edge_scorer.cli._model_args import add_model_arguments

HELP = ("open the bedside window: score a live LSL stream or a replayed PSG file, with the "
        "hypnogram, hypnodensity, explanations and exports (needs the gui extra)")


def require_gui() -> None:
    """Raise :class:`CliError` with the install command when PySide6 / pyqtgraph are missing,
    the installed PySide6 is known to crash with this Python, or Qt's platform plugin cannot
    be loaded (the message names the system packages to install)."""
    from gui import INSTALL_HINT, binding_problem, missing_modules, platform_problem

    missing = missing_modules()
    if missing:
        raise CliError(f"the window needs {' and '.join(missing)}, which are not installed: "
                       f"{INSTALL_HINT}")
    problem = binding_problem() or platform_problem()
    if problem:
        raise CliError(problem)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-scorer gui``."""
    src = parser.add_mutually_exclusive_group()
    src.add_argument("--edf", type=Path, help="PSG file to replay as LSL streams and score")
    src.add_argument("--stream", metavar="NAME", help="LSL stream to score (selected once "
                     "listed)")
    parser.add_argument("--hypnogram", type=Path, help="hypnogram of --edf (replayed as "
                        "markers)")
    parser.add_argument("--speed", type=positive("must be positive (1 = real time)"),
                        default=1.0,
                        help="replay speed of --edf (default 1 = real time)")
    parser.add_argument("--start", action="store_true",
                        help="start scoring at once (with --edf or --stream)")
    parser.add_argument("--explain", default="chefer",
                        choices=("chefer", "gradient", "rollout", "off"),
                        help="relevance method of the explanations (default chefer; needs "
                             "PyTorch, the train extra)")
    parser.add_argument("-o", "--out", type=Path, default=Path("edge-scorer-gui"),
                        help="output folder of the runs (default ./edge-scorer-gui)")
    parser.add_argument("--screenshot", type=Path, metavar="PNG",
                        help="when the run ends, save a PNG of the window and close it "
                             "(with --edf --start)")
    add_model_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Open the window and run it until it is closed."""
    require_gui()
    if args.hypnogram and not args.edf:
        raise CliError("--hypnogram goes with --edf")
    if args.start and not (args.edf or args.stream):
        raise CliError("--start needs a source: --edf FILE or --stream NAME")
    if args.screenshot and not (args.edf and args.start):
        raise CliError("--screenshot needs --edf FILE --start (it is taken when the replay "
                       "has been scored)")
    if args.inter and not args.intra:
        raise CliError("--inter goes with --intra (the shipped model is used without both)")
    if args.edf and not args.edf.is_file():
        raise CliError(f"PSG file {args.edf} not found")
    from edge_scorer.cli._model_args import channel_overrides
    from gui.launch import run_window
    from gui.session import FileSource, StreamSource

    source = None
    if args.edf:
        source = FileSource(args.edf, args.hypnogram, args.speed)
    elif args.stream:
        source = StreamSource(args.stream)
    return run_window(source=source, intra=args.intra, inter=args.inter, backend=args.backend,
                      explain=args.explain, out_dir=args.out, start=args.start,
                      screenshot=args.screenshot, channel_overrides=channel_overrides(args))
