"""``edge-scorer stats``: clinical sleep statistics of a hypnogram file."""

from __future__ import annotations

import argparse
import json
import math

from edge_scorer._log import get_logger
from edge_scorer.cli import CliError

log = get_logger("cli.stats")

HELP = "print sleep statistics (TIB, TST, SE, SOL, WASO, REM latency, ...) of a hypnogram file"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``stats`` options."""
    parser.add_argument(
        "hypnogram",
        help="hypnogram file: Sleep-EDF *-Hypnogram.edf, NSRR *.xml, CSV/TSV or BIDS events.tsv",
    )
    parser.add_argument("--json", action="store_true", help="print JSON instead of a table")
    parser.add_argument(
        "--crop-inbed", action="store_true",
        help="crop to 30 min before the first to 30 min after the last sleep epoch (Sleep-EDF "
             "in-bed window; needed for the 24-h PhysioNet hypnograms)",
    )
    parser.add_argument("--epoch-s", type=float, default=30.0,
                        help="epoch length in seconds (default 30)")


def run(args: argparse.Namespace) -> int:
    """Read the hypnogram, compute the statistics and print them."""
    from edge_scorer.io.hypnogram_io import inbed_crop, read_hypnogram
    from edge_scorer.stats.sleepstats import sleep_statistics

    try:
        hyp = read_hypnogram(args.hypnogram, epoch_s=args.epoch_s)
        if args.crop_inbed:
            hyp = inbed_crop(hyp)
        elif hyp.n_epochs * hyp.epoch_s > 16 * 3600:
            log.warning("the hypnogram spans %.1f h; if it is a full-day Sleep-EDF file, "
                        "add --crop-inbed", hyp.n_epochs * hyp.epoch_s / 3600)
        stats = sleep_statistics(hyp)
    except (ValueError, OSError) as exc:
        raise CliError(
            f"cannot compute statistics of {args.hypnogram}: {exc} (supported: Sleep-EDF EDF+, "
            "NSRR XML, CSV/TSV with a 'stage' column, BIDS events.tsv)"
        ) from exc
    if args.json:
        values = {k: (None if isinstance(v, float) and math.isnan(v) else v)
                  for k, v in stats.as_dict().items()}
        values["source"] = str(args.hypnogram)
        values["cropped_inbed"] = bool(args.crop_inbed)
        values["onset_s"] = hyp.onset_s
        print(json.dumps(values, indent=2))
    else:
        print(f"{args.hypnogram}" + (" (in-bed crop)" if args.crop_inbed else ""))
        print(stats)
    return 0
