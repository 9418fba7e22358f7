"""``edge-scorer convert``: a hypnogram file into another format.

Reads any hypnogram :func:`~edge_scorer.io.hypnogram_io.read_hypnogram` reads (Sleep-EDF EDF+,
NSRR XML, CSV/TSV, BIDS ``events.tsv``) and writes it as CSV, TSV, EDF+ annotations, BIDS
``events.tsv`` or NSRR XML, chosen by the output's name (``.csv``, ``.tsv``, ``*events.tsv``,
``.edf``, ``.xml``) or ``--format``. Stages, epoch length, onset and the recording's clock time
(when the input has it) are kept; probabilities are kept in CSV/TSV.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_scorer.cli import CliError

HELP = ("convert a hypnogram file between formats: CSV, TSV, EDF+ (EDFbrowser, MNE), BIDS "
        "events.tsv, NSRR XML")

#: Output formats by name.
FORMATS = ("csv", "tsv", "edf", "bids", "nsrr")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-scorer convert``."""
    parser.add_argument("hypnogram", type=Path, metavar="HYPNOGRAM",
                        help="input: Sleep-EDF EDF+, NSRR XML, CSV/TSV or BIDS events.tsv")
    parser.add_argument("-o", "--out", type=Path, required=True, metavar="OUT",
                        help="output file: .csv, .tsv, *events.tsv (BIDS), .edf (EDF+) or .xml "
                             "(NSRR)")
    parser.add_argument("--format", choices=FORMATS,
                        help="output format when the name does not say it (e.g. BIDS events "
                             "in a file not named *events.tsv)")
    parser.add_argument("--from", dest="from_fmt", choices=("edf", "nsrr", "csv", "tsv", "bids"),
                        help="input format when it cannot be detected from the name/content")
    parser.add_argument("--epoch-s", type=float, default=30.0,
                        help="epoch length of the grid the annotations are laid on (default 30)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace OUT when it exists")


def run(args: argparse.Namespace) -> int:
    """Read, write, say what was written."""
    from edge_scorer.io.hypnogram_io import read_hypnogram

    if not args.hypnogram.is_file():
        raise CliError(f"hypnogram file {args.hypnogram} not found")
    out: Path = args.out
    if out.exists() and not args.overwrite:
        raise CliError(f"{out} exists; choose another name with -o, or pass --overwrite to "
                       "replace it")
    if out.is_dir():
        raise CliError(f"{out} is a folder; -o takes a file name such as night.edf")
    if args.format is None and out.suffix.lower() not in (".csv", ".tsv", ".edf", ".xml"):
        raise CliError(f"cannot tell the format of {out.name!r} from its name; name it .csv, "
                       ".tsv, *events.tsv, .edf or .xml, or pass --format "
                       f"{'|'.join(FORMATS)}")
    if not args.epoch_s > 0:
        raise CliError(f"--epoch-s must be positive, got {args.epoch_s}")
    hyp = read_hypnogram(args.hypnogram, epoch_s=args.epoch_s, fmt=args.from_fmt)
    written = hyp.write(out, fmt=args.format)
    fmt = args.format or ("bids" if out.name.lower().endswith("events.tsv")
                          else out.suffix.lower().lstrip(".").replace("xml", "nsrr"))
    clock = f", starts {hyp.start_time.isoformat()}" if hyp.start_time else ""
    print(f"wrote {written} ({fmt}): {hyp.n_epochs} epochs of {hyp.epoch_s:g} s from "
          f"{args.hypnogram.name} ({hyp.meta.get('format', '?')}{clock})")
    return 0
