"""``edge-scorer score`` on many nights: a folder, a glob, a list file or several files.

``edge-scorer score DIR | 'GLOB' | LIST.txt | A.edf B.edf ... -o OUT [--workers N]
[--ray [ADDRESS]]`` writes ``OUT/<night>/`` (what ``edge-scorer score NIGHT.edf -o
OUT/<night>`` writes) for every night and ``OUT/cohort.csv`` / ``cohort.json`` (see
:mod:`edge_scorer.engine.cohort`). Nights already finished are skipped; a failed night is a row of
the table and the exit code is 1 when any failed.
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from edge_scorer._log import get_logger
from edge_scorer.cli import CliError
from edge_scorer.cli._args import chosen_formats
from edge_scorer.cli._model_args import channel_overrides

log = get_logger("cli.score_many")


def add_cohort_arguments(parser: argparse.ArgumentParser) -> None:
    """``--workers`` and ``--ray [ADDRESS]``."""
    parser.add_argument("--workers", type=int, default=0, metavar="N",
                        help="many nights: processes of the local pool (default: the CPUs), or "
                             "the CPUs of a local Ray instance")
    parser.add_argument("--ray", nargs="?", const="", default=None, metavar="ADDRESS",
                        help="many nights: run them as Ray tasks; without ADDRESS on a new local "
                             "Ray instance, with it on that cluster (auto, HOST:6379 or "
                             "ray://HOST:10001); needs pip install 'edge-scorer[ray]'")


def run_many(args: argparse.Namespace) -> int:
    """Score every night the inputs name; write the cohort table; print one line per night."""
    from edge_scorer.engine.cohort import (
        ModelChoice,
        expand_inputs,
        plan_jobs,
        run_cohort,
        write_cohort_table,
    )

    if args.hypnogram:
        raise CliError("--hypnogram goes with one PSG file; for many nights give a list file "
                       "of 'PSG,HYPNOGRAM' lines")
    if args.workers < 0:
        raise CliError(f"--workers must be >= 0, got {args.workers}")
    if args.inter and not args.intra:
        raise CliError("--inter goes with --intra (the shipped model is used without both)")
    try:
        pairs = expand_inputs(args.psg)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    jobs = plan_jobs(pairs, args.out)
    args.out.mkdir(parents=True, exist_ok=True)
    if args.overwrite:
        from edge_scorer.io.outputs import prepare_output_dir

        for job in jobs:
            prepare_output_dir(job.out, overwrite=True)
    formats = chosen_formats(args)
    choice = ModelChoice(
        intra=str(Path(args.intra).resolve()) if args.intra else None,
        inter=str(Path(args.inter).resolve()) if args.inter else None,
        backend=args.backend, channels=tuple(sorted(channel_overrides(args).items())),
        formats=tuple(formats) if formats else None)
    workers = args.workers or os.cpu_count() or 1
    where = (f"Ray ({args.ray or 'local instance'})" if args.ray is not None
             else f"{min(workers, len(jobs))} process(es)")
    print(f"{len(jobs)} night(s) -> {args.out} on {where}")

    def show(row: dict) -> None:
        extra = (f" {row.get('n_epochs', '?')} epochs in {row.get('seconds', 0):.1f} s"
                 if row["status"] == "ok" else f" {row.get('error', '')}"
                 if row["status"] == "failed" else " (finished earlier)")
        print(f"  {row['status']:7s} {row['night']}:{extra}", flush=True)

    try:
        rows = run_cohort(jobs, choice, workers=workers, use_ray=args.ray is not None,
                          ray_address=args.ray or None, on_row=show)
    except ImportError as exc:
        raise CliError(str(exc)) from None
    table = write_cohort_table(args.out, rows)
    failed = sum(r["status"] == "failed" for r in rows)
    done = sum(r["status"] == "ok" for r in rows)
    skipped = sum(r["status"] == "skipped" for r in rows)
    print(f"{done} scored, {skipped} skipped (finished earlier), {failed} failed; "
          f"cohort table: {table}")
    return 1 if failed else 0
