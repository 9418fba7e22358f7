"""``edge-scorer simulate``: write simulated PSG nights in the Sleep-EDF or SHHS file layout."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "write simulated PSG nights (Sleep-EDF or SHHS layout) with their hypnograms"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-scorer simulate``."""
    parser.add_argument("-o", "--output", required=True, type=Path, metavar="DIR",
                        help="output folder (created)")
    parser.add_argument("--nights", type=int, default=1, metavar="N",
                        help="number of nights (default 1); night i uses seed S+i")
    parser.add_argument("--layout", choices=("sleep-edf", "shhs"), default="sleep-edf",
                        help="file layout: Sleep-EDF SC (default) or SHHS/NSRR")
    parser.add_argument("--seed", type=int, default=0, metavar="S", help="random seed (default 0)")
    parser.add_argument("--hypnogram", type=Path, metavar="FILE_OR_DIR",
                        help="drive the nights by real hypnograms (a file, or a folder such as "
                             "../shared/data/sleep-edf/hypnograms), cropped to the in-bed "
                             "window; default: sample them from the fitted architecture model")
    parser.add_argument("--duration-h", type=float, metavar="H",
                        help="night length in hours (sampled nights are drawn to this length, "
                             "given hypnograms are cropped to it)")
    parser.add_argument("--label-noise", type=float, default=None, metavar="X",
                        help="scale of the scorer disagreement between the written hypnogram "
                             "and the stages the signals follow (default 0.8; 0: none; 1: one "
                             "AASM-program scorer against the majority)")


def run(args: argparse.Namespace) -> int:
    """Simulate and write the nights; print one line per written file pair."""
    from edge_scorer.cli import CliError
    from edge_scorer.io.hypnogram_io import inbed_crop, read_hypnogram
    from edge_scorer.simulate import simulate_nights

    if args.nights < 1:
        raise CliError(f"--nights must be at least 1, got {args.nights}")
    if args.duration_h is not None and not args.duration_h > 0:
        raise CliError(f"--duration-h must be positive, got {args.duration_h}")
    if args.label_noise is not None and not 0 <= args.label_noise <= 3:
        raise CliError(f"--label-noise must be between 0 and 3, got {args.label_noise}")
    extra = {} if args.label_noise is None else {"label_noise": args.label_noise}
    drivers = None
    if args.hypnogram is not None:
        if args.hypnogram.is_dir():
            drivers = args.hypnogram
        elif args.hypnogram.is_file():
            drivers = [inbed_crop(read_hypnogram(args.hypnogram))]
        else:
            raise CliError(f"--hypnogram {args.hypnogram} does not exist; give a hypnogram file "
                           "or a folder of them (e.g. ../shared/data/sleep-edf/hypnograms)")
    written = simulate_nights(args.output, args.nights, layout=args.layout, seed=args.seed,
                              hypnograms_from=drivers, duration_h=args.duration_h, **extra)
    for psg, hyp in written:
        print(f"{psg}\t{hyp}")
    return 0
