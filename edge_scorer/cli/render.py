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
import csv
import json
from pathlib import Path

from .._log import get_logger
from . import CliError

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
    parser.add_argument("--sheet-epochs", type=int, default=SHEET_EPOCHS,
                        help=f"epochs on the contact sheet (default {SHEET_EPOCHS})")


def run(args: argparse.Namespace) -> int:
    """Read, condition, render and write the outputs; print a one-line summary."""
    import numpy as np

    from .. import __version__
    from ..montage import parse_channel_overrides
    from ..pipeline import render_night
    from ..psg import align_hypnogram
    from ..render import contact_sheet, save_png
    from ..spec import SpecError, load_spec
    from ..stages import Stage

    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        raise CliError(str(exc)) from None
    if args.sheet_epochs < 1:
        raise CliError(f"--sheet-epochs must be at least 1, got {args.sheet_epochs}")
    overrides = parse_channel_overrides(args.channel)
    # PSG errors (ValueError/OSError) carry their own fix; hypnogram errors name the file.
    night = render_night(args.psg, spec, None, overrides)
    if args.hypnogram:
        from ..hypnogram_io import read_hypnogram

        try:
            hyp = read_hypnogram(args.hypnogram, epoch_s=spec.epoch_s)
            night.stages = align_hypnogram(hyp, night.n_epochs * spec.epoch_s,
                                           epoch_s=spec.epoch_s, warnings=night.warnings).stages
        except (ValueError, OSError) as exc:
            raise CliError(f"cannot use hypnogram {args.hypnogram}: {exc}") from exc
    images, stages, rec, warnings = night.images, night.stages, night.recording, night.warnings
    n = night.n_epochs

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "epochs.npy", images)
    if n <= args.sheet_epochs:
        picks = np.arange(n)
    else:
        picks = np.unique(np.linspace(0, n - 1, args.sheet_epochs).round().astype(int))
    contact_sheet(images[picks], labels=None if stages is None else stages[picks].tolist(),
                  indices=picks.tolist(), path=out / "contact_sheet.png")
    if stages is not None:
        with open(out / "labels.csv", "w", newline="") as fh:
            writer = csv.writer(fh)
            writer.writerow(["epoch", "onset_s", "stage"])
            for i, code in enumerate(stages.tolist()):
                writer.writerow([i, f"{i * spec.epoch_s:g}", Stage(code).label])
    if args.png:
        for i, img in enumerate(images):
            save_png(img, out / "png" / f"epoch_{i:05d}.png")
    meta = {
        "edge_scorer_version": __version__,
        "spec": spec.name, "spec_version": spec.version, "spec_hash": spec.hash,
        "source": str(Path(args.psg).resolve()),
        "source_labels": list(rec.source_labels), "row_names": list(spec.row_names),
        "native_sfreqs": list(rec.native_sfreqs), "input_sfreq": rec.sfreq,
        "sfreq": spec.sfreq, "epoch_s": spec.epoch_s, "n_epochs": n,
        "duration_s": rec.duration_s, "image_shape": list(images.shape[1:]),
        "start_time": rec.start_time.isoformat() if rec.start_time else None,
        "hypnogram": str(Path(args.hypnogram).resolve()) if args.hypnogram else None,
        "invalid_samples": dict(zip(spec.row_names, night.n_invalid.tolist(), strict=True)),
        "warnings": warnings,
    }
    (out / "render.json").write_text(json.dumps(meta, indent=2) + "\n")
    print(f"{n} epochs of {args.psg} rendered with spec {spec.name} ({spec.hash}) -> {out}")
    return 0
