"""``edge-scorer review``: the technician's review of a scored night in the bedside window.

Opens a night's folder (what ``score``, ``stream``, the demo or the window wrote) with the PSG
file when it is known (``--edf``, or the file ``run.json`` names): page through the epochs with
the keyboard, set stages with W/1/2/3/R/U, zoom and click the hypnogram, see the model's stage,
probabilities, relevance and occlusion beside the technician's; every change is logged and saved
in ``NIGHT_DIR/review``; sign-off writes the reviewed hypnogram in every format and the
agreement report (``docs/GUI.md``).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_scorer.cli import CliError

HELP = ("review a scored night in the window: page with the keyboard, stage with W/1/2/3/R/U, "
        "audit log, sign-off writing the reviewed hypnogram (needs the gui extra)")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-scorer review``."""
    parser.add_argument("night", type=Path, metavar="NIGHT_DIR",
                        help="output folder of a scoring run (hypnogram.csv or epochs.csv)")
    parser.add_argument("--edf", type=Path, metavar="FILE",
                        help="the PSG file that was scored (default: the file run.json names)")
    parser.add_argument("--scorer", default="", help="the reviewer's name or initials")
    parser.add_argument("--explain", default="chefer",
                        choices=("chefer", "gradient", "rollout", "off"),
                        help="relevance method (default chefer; needs PyTorch, the train extra)")
    parser.add_argument("--screenshot", type=Path, metavar="PNG",
                        help="save a PNG of the window once the night is shown, then close")


def run(args: argparse.Namespace) -> int:
    """Open the window on the night until it is closed."""
    from gui.cli import require_gui

    require_gui()
    if not args.night.is_dir():
        raise CliError(f"night folder {args.night} not found; give the output folder (-o) of "
                       "edge-scorer score, stream, demo or gui")
    if not ((args.night / "hypnogram.csv").is_file() or (args.night / "epochs.csv").is_file()):
        raise CliError(f"{args.night} holds no scored night (no hypnogram.csv or epochs.csv)")
    if args.edf is not None and not args.edf.is_file():
        raise CliError(f"PSG file {args.edf} not found")
    from gui.launch import run_review

    return run_review(args.night, args.edf, scorer=args.scorer, explain=args.explain,
                      screenshot=args.screenshot)
