"""Argument types that check ranges while parsing, before anything connects or is written.

Each is an ``argparse`` ``type=``: a bad value is an argparse error naming the option and the
allowed range (exit code 2), e.g. ``--until-idle: must be a positive number of seconds``.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Callable


def _number(text: str, what: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number; {what}") from None
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"{text!r} is not finite; {what}")
    return value


def positive(what: str = "must be a positive number") -> Callable[[str], float]:
    """A finite number > 0."""
    def parse(text: str) -> float:
        value = _number(text, what)
        if not value > 0:
            raise argparse.ArgumentTypeError(f"{text}: {what}")
        return value

    return parse


def non_negative(what: str = "must be zero or a positive number") -> Callable[[str], float]:
    """A finite number >= 0."""
    def parse(text: str) -> float:
        value = _number(text, what)
        if value < 0:
            raise argparse.ArgumentTypeError(f"{text}: {what}")
        return value

    return parse


def fraction(text: str) -> float:
    """A number within [0, 1]."""
    what = "must be a fraction within 0..1"
    value = _number(text, what)
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"{text}: {what}")
    return value


def positive_int(text: str) -> int:
    """An integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text}: must be at least 1")
    return value


def add_overwrite(parser: argparse.ArgumentParser) -> None:
    """``--overwrite``: replace the outputs of an earlier run in the output folder."""
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the files of an earlier run in the output folder (only "
                             "ours: epochs.csv, hypnogram.*, stats.*, run.json, review/, render "
                             "outputs)")


def hypnogram_formats(text: str) -> list[str]:
    """``--format csv,edf,bids,nsrr`` (comma-separated, repeatable; case ignored)."""
    from edge_scorer.engine.sinks import parse_formats

    try:
        return list(parse_formats(text))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_formats(parser: argparse.ArgumentParser) -> None:
    """``--format``: the night's hypnogram files (several allowed)."""
    parser.add_argument("--format", dest="formats", action="append", type=hypnogram_formats,
                        metavar="FMT[,FMT]",
                        help="hypnogram files to write: csv (hypnogram.csv), edf (EDF+ "
                             "hypnogram.edf), bids (hypnogram_events.tsv), nsrr "
                             "(hypnogram.xml); comma-separated or repeated (default csv,edf)")


def chosen_formats(args: argparse.Namespace) -> list[str] | None:
    """The formats of ``--format`` options (None: the default)."""
    if not getattr(args, "formats", None):
        return None
    out: list[str] = []
    for group in args.formats:
        out += [f for f in group if f not in out]
    return out
