"""``edge-scorer stream``: score a live LSL stream until stopped.

Ctrl-C or SIGTERM ends the night cleanly (what has arrived is scored, every label made final,
the night's files written; exit code 0: that is how a live night ends); a second one aborts at
once, leaving ``epochs.csv`` valid for ``edge-scorer finalize``. An error while scoring (a full
disk, a stream that changes shape) still finalizes what was scored and exits with 1.
"""

from __future__ import annotations

import argparse
from datetime import datetime, timedelta
from datetime import time as time_of_day
from pathlib import Path

from edge_scorer._log import get_logger
from edge_scorer.cli import CliError
from edge_scorer.cli._args import (
    add_formats,
    add_overwrite,
    chosen_formats,
    fraction,
    non_negative,
    positive,
)
from edge_scorer.cli._model_args import add_model_arguments, channel_overrides, load_model
from edge_scorer.cli.stream_beds import add_beds_arguments, is_many, run_beds

log = get_logger("cli.stream")

HELP = ("score a live LSL PSG stream epoch by epoch: stages on an LSL outlet, an append-only "
        "epochs.csv, the hypnogram and statistics at the end")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``stream`` options."""
    parser.add_argument("--name", action="append",
                        help="LSL stream name (e.g. the replay's --name); repeat it to score "
                             "several beds in this process, one folder each under -o")
    parser.add_argument("--type", dest="stype", help="LSL stream type (e.g. EEG)")
    parser.add_argument("--source-id", help="LSL source id (picks one of several streams)")
    parser.add_argument("-o", "--out", type=Path, default=Path("edge-scorer-stream"),
                        help="output folder (default ./edge-scorer-stream)")
    parser.add_argument("--outlet", metavar="NAME",
                        help="name of the stage outlet, every update keyed by epoch (default: "
                             "<stream>-stages); NAME-final carries the final stages, one per "
                             "epoch; 'none' for no outlets")
    parser.add_argument("--until-idle", type=positive("must be a positive number of seconds"),
                        metavar="S",
                        help="end after S seconds without samples (default: run until Ctrl-C)")
    parser.add_argument("--speed", type=positive("must be positive (1 = real time)"),
                        help="signal seconds per second of time stamps (default: from the "
                             "stream's description, else 1)")
    parser.add_argument("--start-at", metavar="HH:MM[:SS]",
                        help="align epoch 0 to this local clock time (e.g. lights-off) instead "
                             "of the first sample; a time within the last or next 12 h")
    parser.add_argument("--fill-gap-s", type=non_negative("must be zero (never interpolate) or "
                                                            "a positive number of seconds"),
                        default=1.0,
                        help="fill gaps up to this long by interpolation (default 1 s)")
    parser.add_argument("--max-invalid", type=fraction, default=0.5,
                        help="an epoch with a larger fraction of missing signal is unscorable "
                             "(default 0.5)")
    parser.add_argument("--units", action="append", default=[], metavar="[ROW=]UNIT",
                        help="the unit the stream sends (V, mV, uV/microvolts), for every "
                             "voltage row or ROW=UNIT for one; wins over the stream's "
                             "description and lets an implausible amplitude through with a "
                             "warning (repeatable)")
    add_beds_arguments(parser)
    add_formats(parser)
    add_overwrite(parser)
    add_model_arguments(parser)


def log_updates(updates, engine) -> None:
    """Log each new epoch's provisional label (with latency) and each final label."""
    from edge_scorer.engine.rolling import FINAL, PROVISIONAL

    for u in updates:
        if u.status == PROVISIONAL or (u.status == FINAL and u.latency_s is not None):
            log.info("epoch %d provisional %s (p=%.2f) latency %.1f ms%s", u.index, u.label,
                     u.proba.max(), (u.latency_s or 0) * 1000,
                     " [unscorable]" if u.unscorable else " [gap filled]" if u.gap_filled
                     else "")
        if u.status == FINAL:
            log.info("epoch %d final %s", u.index, u.label)


def start_time_lsl(text: str, now: datetime | None = None) -> tuple[float, datetime]:
    """LSL clock time of the local clock time ``HH:MM[:SS]`` nearest to now (within 12 h)."""
    import pylsl

    try:
        parts = [int(v) for v in text.split(":")]
        if len(parts) not in (2, 3):
            raise ValueError
        at = time_of_day(*parts)
    except ValueError:
        raise CliError(f"--start-at {text!r} is not a clock time; use HH:MM or HH:MM:SS "
                       "(e.g. 22:30)") from None
    now = now or datetime.now()
    target = datetime.combine(now.date(), at)
    if (target - now).total_seconds() > 12 * 3600:
        target -= timedelta(days=1)
    elif (now - target).total_seconds() > 12 * 3600:
        target += timedelta(days=1)
    return pylsl.local_clock() + (target - now).total_seconds(), target


def _live_scorer(args: argparse.Namespace, model, units: dict, start_time: float | None,
                 start_dt: datetime | None):
    """The :class:`~edge_scorer.stream.live.LiveScorer` the options describe (not started)."""
    from edge_scorer.engine.sinks import Callback
    from edge_scorer.stream.live import LiveScorer

    outlet = args.outlet or f"{args.name or args.source_id or args.stype}-stages"
    return LiveScorer(
        model, name=args.name, stype=args.stype, source_id=args.source_id, out_dir=args.out,
        outlet_name=None if outlet.lower() == "none" else outlet,
        sinks=[Callback(log_updates)], channel_overrides=channel_overrides(args),
        idle_timeout_s=args.until_idle,
        source_kwargs={"speed": args.speed, "fill_gap_s": args.fill_gap_s,
                       "start_time": start_time, "units": units},
        engine_kwargs={"max_invalid_fraction": args.max_invalid, "start_time": start_dt},
        formats=chosen_formats(args))


def _report(live, seconds: float, stopped_by: str | None, out: Path) -> int:
    """Print the night's summary; the exit code (2: stream refused, 1: stopped by an
    error)."""
    from edge_scorer.inference.familiarity import summary_line, warning_line
    from edge_scorer.stream.stream_units import StreamUnitError

    hyp = live.engine.hypnogram()
    lat = live.engine.latency_summary()
    print(f"scored {hyp.n_epochs} epochs in {seconds:.0f} s"
          + (f"; provisional latency median {lat['median_ms']:.1f} ms, p99 "
             f"{lat['p99_ms']:.1f} ms" if lat else ""))
    if hyp.n_epochs:
        print(hyp.sleep_statistics())
    fam = live.engine.familiarity_summary()
    print(summary_line(fam))
    if warning_line(fam):
        print(warning_line(fam))
    print(f"outputs: {out}")
    if isinstance(live.error, StreamUnitError):
        log.error("stream refused: %s", live.error)
        return 2
    if live.error is not None:
        log.error("scoring stopped early: %s: %s (the epochs scored before it are in the "
                  "outputs)", type(live.error).__name__, live.error)
        return 1
    if stopped_by:
        print(f"stopped by {stopped_by}; the night is finalized (exit code 0)")
    return 0


def run(args: argparse.Namespace) -> int:
    """Connect, score until Ctrl-C/SIGTERM or idle, finalize the outputs."""
    import time

    from edge_scorer.engine.shutdown import Shutdown
    from edge_scorer.io.outputs import check_output_dir, prepare_output_dir
    from edge_scorer.stream.inlet import AmbiguousStream, StreamNotFound
    from edge_scorer.stream.stream_units import parse_unit_overrides

    if is_many(args):
        return run_beds(args)
    args.name = args.name[0] if args.name else None
    if not (args.name or args.stype or args.source_id):
        raise CliError("say which stream to score: --name NAME (or --type / --source-id)")
    check_output_dir(args.out, args.overwrite)
    start_time, start_dt = None, None
    if args.start_at:
        start_time, start_dt = start_time_lsl(args.start_at)
        log.info("epoch 0 starts at %s", start_dt.isoformat(timespec="seconds"))
    model = load_model(args)  # shapes checked and warmed up before any output exists
    try:
        units = parse_unit_overrides(args.units, model.spec)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    prepare_output_dir(args.out, args.overwrite)
    live = _live_scorer(args, model, units, start_time, start_dt)
    with Shutdown("the night") as stop:
        try:
            live.start()
        except (StreamNotFound, AmbiguousStream) as exc:
            raise CliError(str(exc)) from None
        log.info("scoring %s; Ctrl-C to stop", " + ".join(live.source.stream_names))
        t0 = time.perf_counter()
        while not live.join(0.5, raise_error=False) and not stop.requested:
            pass
        if stop.requested:
            log.info("stopping (%s): finalizing the epochs scored so far", stop.name)
        live.stop(timeout=None, raise_error=False)
    return _report(live, time.perf_counter() - t0, stop.name if stop.requested else None,
                   args.out)
