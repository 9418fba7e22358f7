"""``edge-scorer data``: fetch Sleep-EDF from PhysioNet, or explain how to get SHHS."""

from __future__ import annotations

import argparse

from edge_scorer._log import get_logger
from edge_scorer.cli import CliError

log = get_logger("cli.data")

HELP = "fetch training data: Sleep-EDF (PhysioNet, open) or instructions for SHHS (NSRR)"


def _host_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise argparse.ArgumentTypeError(f"expected HOST:PORT, got {text!r}")
    return host, int(port)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``data`` sub-commands (``sleep-edf``, ``shhs``)."""
    sub = parser.add_subparsers(dest="dataset", metavar="DATASET", required=True)
    sedf = sub.add_parser(
        "sleep-edf", help="download Sleep-EDF SC nights through MNE (skips files on disk)",
        description="Download Sleep-EDF Sleep Cassette nights (PSG + expert hypnogram) from "
                    "PhysioNet through MNE's fetcher into <path>/physionet-sleep-data. Files "
                    "already there are not downloaded again.")
    sedf.add_argument("--subjects", nargs="+", default=["0-19"], metavar="N",
                      help="subjects 0-82 as numbers and ranges: 0-19 (default), 0-4,7, 3 5 8")
    sedf.add_argument("--recording", nargs="+", type=int, default=[1, 2], choices=(1, 2),
                      metavar="{1,2}", help="nights per subject (default: 1 2)")
    sedf.add_argument("--path", metavar="DIR",
                      help="MNE data root (default: PHYSIONET_SLEEP_PATH / MNE_DATA from MNE's "
                           "config, else ~/mne_data)")
    sedf.add_argument("--timeout-s", type=float, default=3.0,
                      help="connectivity check limit in seconds before downloading (default 3)")
    sedf.add_argument("--probe", type=_host_port, metavar="HOST:PORT",
                      default=("physionet.org", 443),
                      help="host the connectivity check connects to (default physionet.org:443)")
    shhs = sub.add_parser(
        "shhs", help="how to get SHHS from the NSRR (account + token) and the layout to use",
        description="SHHS needs an NSRR account and an approved data request: print the steps "
                    "and the folder layout edge-scorer reads. Nothing is downloaded.")
    shhs.add_argument("--path", metavar="DIR",
                      help="folder to download into (used in the printed commands)")


def run(args: argparse.Namespace) -> int:
    """Fetch Sleep-EDF or print the SHHS instructions."""
    from edge_scorer.io.datasets import (
        DataUnavailableError,
        fetch_sleep_edf,
        parse_subjects,
        shhs_instructions,
        sleep_edf_folder,
    )

    if args.dataset == "shhs":
        print(shhs_instructions(args.path), end="")
        return 0
    try:
        subjects = parse_subjects(args.subjects)
        host, port = args.probe
        pairs = fetch_sleep_edf(subjects, args.recording, args.path, host=host, port=port,
                                timeout_s=args.timeout_s)
    except DataUnavailableError as exc:
        raise CliError(str(exc)) from exc
    except ValueError as exc:
        raise CliError(f"{exc} (see `edge-scorer data sleep-edf --help`)") from exc
    folder = sleep_edf_folder(args.path)
    print(f"{len(pairs)} Sleep-EDF nights in {folder}")
    print(f"train on them with: edge-scorer train --recipe sleep-edf --data {folder}")
    return 0
