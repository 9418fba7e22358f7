"""``edge-scorer render``: a PSG file -> the model's epoch images (the training input).

Writes into ``DIR``:

- ``epochs.npy``: uint8 array (n_epochs, H, W) (or (n, H, W, 3) for colour specs);
- ``contact_sheet.png``: the first epochs, or a sample across a long night, labelled;
- ``render.json``: spec name/hash, source file and channels, rates, n_epochs, warnings;
- ``labels.csv`` (with ``--hypnogram``): ``epoch,onset_s,stage`` on the signal's epoch grid;
- ``png/epoch_NNNNN.png`` (with ``--png``): one PNG per epoch.

It runs the same conditioning and renderer as live scoring, so the images match what the
engine shows the model.
"""

from __future__ import annotations

import argparse

from edge_scorer._log import get_logger
from edge_scorer.cli import CliError
from edge_scorer.cli._args import add_overwrite, positive_int

log = get_logger("cli.render")

HELP = "render a PSG file (EDF/BDF) into the model's 30-s epoch images (+ labels)"

#: Epochs shown on the contact sheet (all of them for a shorter recording).
SHEET_EPOCHS = 60


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``render`` options."""
    parser.add_argument("psg", help="PSG file (EDF, EDF+ or BDF)")
    parser.add_argument("-o", "--out", required=True, help="output folder (created)")
    parser.add_argument("--spec", default="sleep-edf",
                        help="render spec: shipped name (sleep-edf, shhs) or a .toml path")
    parser.add_argument("--hypnogram",
                        help="hypnogram of the night (Sleep-EDF EDF+, NSRR XML, CSV/TSV, BIDS "
                             "events.tsv): also writes labels.csv aligned to the epochs")
    parser.add_argument("--channel", action="append", default=[], metavar="ROW=LABEL",
                        help="use file channel LABEL for spec row ROW (repeatable)")
    parser.add_argument("--png", action="store_true", help="also write one PNG per epoch")
    parser.add_argument("--sheet-epochs", type=positive_int, default=SHEET_EPOCHS,
                        help=f"epochs on the contact sheet (default {SHEET_EPOCHS})")
    add_overwrite(parser)


def run(args: argparse.Namespace) -> int:
    """Read, condition, render and write the outputs; print a one-line summary."""
    from edge_scorer.dsp.render_night import render_night, save_rendered
    from edge_scorer.io.montage import parse_channel_overrides
    from edge_scorer.io.outputs import check_output_dir, prepare_output_dir
    from edge_scorer.io.spec import SpecError, load_spec

    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        raise CliError(str(exc)) from None
    check_output_dir(args.out, args.overwrite)
    overrides = parse_channel_overrides(args.channel)
    # PSG errors (ValueError/OSError) carry their own fix; hypnogram errors name the file.
    night = render_night(args.psg, spec, None, overrides)
    if args.hypnogram:
        try:
            night.label_with(args.hypnogram)
        except (ValueError, OSError) as exc:
            raise CliError(f"cannot use hypnogram {args.hypnogram}: {exc}") from exc
    prepare_output_dir(args.out, args.overwrite)  # no earlier labels.csv beside new images
    out = save_rendered(night, args.out, hypnogram=args.hypnogram,
                        sheet_epochs=args.sheet_epochs, png=args.png)
    n = night.n_epochs
    print(f"{n} epochs of {args.psg} rendered with spec {spec.name} ({spec.hash}) -> {out}")
    return 0
