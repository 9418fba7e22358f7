"""``edge-scorer replay``: publish a PSG file as real-time LSL streams (a stand-in amplifier).

One stream per native-rate group of the spec rows (``NAME`` for the highest rate,
``NAME-<rate>Hz`` for the others) and, with ``--hypnogram``, a ``NAME-hypnogram`` marker
stream. Runs until the end of the file (or forever with ``--loop``), then keeps the streams up
until its receivers have left (``--linger``: a receiver that fell behind still gets the end).
Ctrl-C or SIGTERM stops it cleanly (outlets closed, the samples pushed reported; exit code
130 / 143), a second one at once.
Each run gets its own source id unless ``--source-id`` gives one (keep it across restarts so
that receivers reconnect to the restarted replay).
"""

from __future__ import annotations

import argparse
import time
from typing import TYPE_CHECKING

from edge_scorer._log import get_logger
from edge_scorer.cli import CliError
from edge_scorer.cli._args import non_negative, positive

if TYPE_CHECKING:
    from edge_scorer.engine.shutdown import Shutdown
    from edge_scorer.stream.replay import Replayer

log = get_logger("cli.replay")

HELP = "replay a PSG file (EDF/BDF) as real-time LSL streams, optionally with its hypnogram"

#: Seconds the outlets stay up after the last sample at least, so receivers can drain it.
LINGER_S = 1.0
#: Default of ``--linger``: the most seconds the outlets wait for their receivers to leave.
MAX_LINGER_S = 60.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``replay`` options."""
    parser.add_argument("psg", help="PSG file (EDF, EDF+ or BDF)")
    parser.add_argument("--speed", type=positive("must be positive (1 = real time)"),
                        default=1.0,
                        help="replay speed (1 = real time, 60 = one hour per minute)")
    parser.add_argument("--name", default="edge-scorer-replay", help="base LSL stream name")
    parser.add_argument("--chunk-ms", type=positive("must be a positive number of ms"),
                        default=100.0,
                        help="signal milliseconds per push at speed 1 (default 100)")
    parser.add_argument("--loop", action="store_true", help="restart at the end of the file")
    parser.add_argument("--wait", type=non_negative("must be zero or a positive number of "
                                                    "seconds"), default=0.0, metavar="S",
                        help="hold the first sample up to S seconds until every stream has a "
                             "receiver; the clock runs from the start, what became due is sent "
                             "at once (default 0: push at once)")
    parser.add_argument("--linger", type=non_negative("must be zero or a positive number of "
                                                      "seconds"), default=MAX_LINGER_S,
                        metavar="S",
                        help="after the last sample, keep the streams up until every receiver "
                             f"has left, at most S seconds (default {MAX_LINGER_S:g}), so a "
                             "receiver that fell behind still gets the end of the night; "
                             "Ctrl-C ends it")
    parser.add_argument("--source-id", help="base LSL source id (default: unique per run; give "
                                            "the same one to a restarted replay so receivers "
                                            "reconnect)")
    parser.add_argument("--hypnogram",
                        help="hypnogram file (Sleep-EDF EDF+, NSRR XML, CSV/TSV, BIDS events): "
                             "published as a marker stream, one stage per epoch")
    parser.add_argument("--spec", default="sleep-edf",
                        help="render spec: shipped name (sleep-edf, shhs) or a .toml path")
    parser.add_argument("--channel", action="append", default=[], metavar="ROW=LABEL",
                        help="use file channel LABEL for spec row ROW (repeatable)")
    parser.add_argument("--all-channels", action="store_true",
                        help="publish every channel of the file, not only the spec's rows "
                             "(the others keep their labels and units)")


def run(args: argparse.Namespace) -> int:
    """Start the replay and block until it ends or Ctrl-C."""
    from edge_scorer.engine.shutdown import Shutdown
    from edge_scorer.io.montage import parse_channel_overrides
    from edge_scorer.io.spec import SpecError, load_spec
    from edge_scorer.stream.replay import Replayer

    try:
        spec = load_spec(args.spec)
    except SpecError as exc:
        raise CliError(str(exc)) from None
    overrides = parse_channel_overrides(args.channel)
    try:
        rep = Replayer(args.psg, spec, name=args.name, speed=args.speed,
                       chunk_ms=args.chunk_ms, loop=args.loop, hypnogram=args.hypnogram,
                       channel_overrides=overrides, source_id=args.source_id,
                       wait_for_consumers_s=args.wait, all_channels=args.all_channels)
    except (ValueError, OSError) as exc:
        if args.hypnogram and "hypnogram" in str(exc).lower():
            raise CliError(f"cannot use hypnogram {args.hypnogram}: {exc}") from exc
        raise
    log.info("replaying %s (%.1f s) at %gx%s; Ctrl-C to stop", rep.path.name, rep.duration_s,
             rep.speed, ", looping" if rep.loop else "")
    with Shutdown("the replay") as stop:
        rep.start()
        try:
            while not rep.wait(0.2):
                if stop.requested:
                    break
            else:
                _linger(rep, stop, args.linger)
        finally:
            rep.stop()
    if rep.error is not None:
        raise CliError(f"replay failed: {rep.error}")
    pushed = ", ".join(f"{g.stream_name} {n}" for g, n in zip(rep.groups, rep.n_pushed))
    print(f"replayed {rep.path.name}: samples pushed {pushed}"
          + (f"; {rep.n_markers_pushed} hypnogram markers" if rep.markers is not None else ""))
    if stop.requested:
        print(f"stopped by {stop.name} (exit code {stop.exit_code})")
    return stop.exit_code


def _linger(rep: Replayer, stop: Shutdown, most_s: float) -> None:
    """Keep the finished replay's outlets up :data:`LINGER_S`, then while a receiver is still
    connected (one that was paused or slow has samples in flight, which deleting the outlets
    would drop), ``most_s`` seconds at most; a stop request ends the wait."""
    deadline = time.monotonic() + most_s
    if stop.wait(min(LINGER_S, most_s)) or not rep.has_receivers():
        return
    log.info("replay finished; keeping the streams up until the receivers leave (at most "
             "%.0f s more, --linger)", max(0.0, deadline - time.monotonic()))
    while rep.has_receivers() and not stop.wait(0.2):
        if time.monotonic() >= deadline:
            log.warning("receivers still connected after --linger %g s; closing the streams",
                        most_s)
            return
