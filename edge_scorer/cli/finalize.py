"""``edge-scorer finalize OUT_DIR``: write a night's files from its ``epochs.csv`` after a crash."""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_scorer._log import get_logger
from edge_scorer.cli._args import add_overwrite

log = get_logger("cli.finalize")

HELP = ("rebuild a night's hypnogram.csv/.edf, stats and run.json from epochs.csv after a crash, "
        "kill or second Ctrl-C")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``finalize`` options."""
    parser.add_argument("out", type=Path, metavar="OUT_DIR",
                        help="output folder of a stream, score or demo run (holds epochs.csv)")
    add_overwrite(parser)


def run(args: argparse.Namespace) -> int:
    """Finalize and print what was recovered."""
    from edge_scorer.engine.recover import finalize_night

    night = finalize_night(args.out, overwrite=args.overwrite)
    hyp = night.hypnogram
    print(f"finalized {hyp.n_epochs} epochs from {args.out / 'epochs.csv'}"
          + (f" ({night.n_torn} torn line(s) ignored)" if night.n_torn else ""))
    if night.not_final:
        print(f"note: {night.not_final} epoch(s) were not final when the run stopped; they keep "
              "their last published label")
    if night.missing:
        print(f"note: {len(night.missing)} epoch(s) were never published; UNSCORED")
    print(hyp.sleep_statistics())
    print("wrote " + ", ".join(p.name for p in night.written))
    return 0
