"""``edge-scorer score``: score a PSG file offline through the live engine's code.

Given many nights (several files, a folder, a glob or a list file) it scores each into its own
folder with a cohort table, on a local process pool or Ray (:mod:`.score_many`).

Ctrl-C or SIGTERM stops after the current block of epochs: those scored are finalized and the
night's files written (exit code 130 / 143); a second one aborts at once.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from edge_scorer._log import get_logger
from edge_scorer.cli import CliError
from edge_scorer.cli._args import add_formats, add_overwrite, chosen_formats
from edge_scorer.cli._model_args import add_model_arguments, channel_overrides, load_model
from edge_scorer.cli.score_many import add_cohort_arguments, run_many

log = get_logger("cli.score")

HELP = ("score a PSG file (EDF/BDF) offline: epochs.csv, hypnogram CSV/EDF+, sleep statistics; "
        "with --hypnogram also agreement")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``score`` options."""
    parser.add_argument("psg", nargs="+",
                        help="PSG file (EDF, EDF+ or BDF); or many nights: several files, a "
                             "folder, a glob or a list file of 'PSG[,HYPNOGRAM]' lines (one "
                             "folder per night under -o and cohort.csv)")
    parser.add_argument("-o", "--out", type=Path, required=True, help="output folder")
    parser.add_argument("--hypnogram", type=Path,
                        help="reference hypnogram: print accuracy, kappa and macro-F1")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_formats(parser)
    add_overwrite(parser)
    add_model_arguments(parser)
    add_cohort_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Score, write the outputs, print the statistics (and agreement)."""
    import time

    from edge_scorer.cli.demo import hypnogram_text
    from edge_scorer.engine.cohort import is_cohort
    from edge_scorer.engine.offline import score_file
    from edge_scorer.engine.shutdown import Shutdown
    from edge_scorer.inference.familiarity import (
        flag_review,
        flag_review_line,
        summary_line,
        warning_line,
    )
    from edge_scorer.io.outputs import check_output_dir, prepare_output_dir
    from edge_scorer.io.psg import align_hypnogram
    from edge_scorer.stats.metrics import agreement

    if is_cohort(args.psg):
        return run_many(args)
    if args.ray is not None:
        raise CliError("--ray scores many nights: give a folder, a glob or a list file")
    args.psg = Path(args.psg[0])
    check_output_dir(args.out, args.overwrite)  # before the model is loaded
    model = load_model(args)
    prepare_output_dir(args.out, args.overwrite)
    t0 = time.perf_counter()
    with Shutdown("scoring the file") as stop:
        night = score_file(args.psg, model, args.out, channel_overrides=channel_overrides(args),
                           progress=not args.no_progress, stop=stop.event,
                           formats=chosen_formats(args))
    hyp = night.hypnogram
    elapsed = time.perf_counter() - t0
    print(f"scored {hyp.n_epochs} epochs of {args.psg.name} in {elapsed:.1f} s "
          f"({model.intra.metadata.get('preset', '')}, backend {model.intra.name})")
    for w in night.warnings:
        print(f"warning: {w}")
    print(hypnogram_text(hyp.stages, unfamiliar=night.unfamiliar))
    print(summary_line(night.familiarity))
    if warning_line(night.familiarity):
        print(warning_line(night.familiarity))
    print(hyp.sleep_statistics())
    if args.hypnogram:
        ref = align_hypnogram(args.hypnogram, hyp.n_epochs * model.spec.epoch_s,
                              epoch_s=model.spec.epoch_s)
        print(f"agreement with {args.hypnogram.name}:")
        print(agreement(ref.stages, hyp.stages))
        print(flag_review_line(flag_review(ref.stages, hyp.stages, hyp.probabilities,
                                           night.unfamiliar)))
    from edge_scorer.engine.sinks import HYPNOGRAM_FILES, parse_formats

    files = ", ".join(HYPNOGRAM_FILES[f] for f in parse_formats(chosen_formats(args)))
    print(f"outputs: {args.out} (epochs.csv, {files}, stats.json)")
    if night.interrupted:
        print(f"interrupted by {stop.name} after {hyp.n_epochs} of {night.n_epochs_file} "
              f"epochs: the outputs hold those (exit code {stop.exit_code})")
        return stop.exit_code
    return 0
