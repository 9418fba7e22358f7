"""``edge-scorer stream`` on many beds: repeated ``--name``, ``--beds FILE`` or ``--all``.

Each bed writes ``OUT/<bed>/`` (what ``edge-scorer stream --name BED -o OUT/<bed>`` writes) and
publishes ``<bed>-stages`` (``--outlet none``: no outlets); ``OUT/beds.json`` and the printed
table give each bed's status (``ended``, ``lost``: its stream went away while liblsl was
recovering it, ``refused``, ``failed``), epochs and latency. One model session serves every
bed (:mod:`edge_scorer.stream.beds`). The process ends when every bed has
ended (``--until-idle``: a bed that sends nothing for that long is finalized) or at Ctrl-C;
with ``--all`` it keeps looking for new beds until Ctrl-C. Exit code 1 when a bed refused or
failed (the others' nights are complete).
"""

from __future__ import annotations

import argparse
import json
import time

from edge_scorer._log import get_logger
from edge_scorer.cli import CliError
from edge_scorer.cli._args import chosen_formats
from edge_scorer.cli._model_args import channel_overrides, load_model

log = get_logger("cli.stream_beds")


def add_beds_arguments(parser: argparse.ArgumentParser) -> None:
    """``--beds FILE`` and ``--all``."""
    parser.add_argument("--beds", metavar="FILE",
                        help="many beds: a TOML ([[bed]] name/source_id/label/channels) or CSV "
                             "(name,source_id,label,channels) file, one bed each")
    parser.add_argument("--all", action="store_true",
                        help="many beds: every stream of --type (default EEG) on the network, "
                             "and those that appear later")


def is_many(args: argparse.Namespace) -> bool:
    """Whether the options name several beds."""
    return bool(len(args.name or []) > 1 or args.beds or args.all)


def _bed_configs(args: argparse.Namespace) -> list:
    """The beds of ``--name`` and ``--beds``, each named once."""
    from edge_scorer.stream.beds import BedConfig, read_beds_file

    if args.source_id:
        raise CliError("--source-id names one stream; for many beds put source_id in --beds")
    try:
        beds = [BedConfig(name=n) for n in (args.name or [])]
        if args.beds:
            beds += read_beds_file(args.beds)
    except (FileNotFoundError, ValueError) as exc:
        raise CliError(str(exc)) from None
    labels = [b.label for b in beds]
    dupes = sorted({x for x in labels if labels.count(x) > 1})
    if dupes:
        raise CliError(f"beds {dupes} are named twice; name each bed once")
    return beds


def _bedset(args: argparse.Namespace, beds: list, outlet: str):
    """Load the model and build the :class:`~edge_scorer.stream.beds.BedSet` (not started)."""
    from edge_scorer.cli.stream import start_time_lsl
    from edge_scorer.stream.beds import BedSet
    from edge_scorer.stream.stream_units import parse_unit_overrides

    start_time, start_dt = (start_time_lsl(args.start_at) if args.start_at else (None, None))
    model = load_model(args)
    try:
        units = parse_unit_overrides(args.units, model.spec)
    except ValueError as exc:
        raise CliError(str(exc)) from None
    args.out.mkdir(parents=True, exist_ok=True)
    return BedSet(
        model, beds, args.out, outlets=outlet != "none",
        channel_overrides=channel_overrides(args),
        discover=(args.stype or "EEG") if args.all else None, overwrite=args.overwrite,
        live_kwargs={"idle_timeout_s": args.until_idle,
                     "source_kwargs": {"speed": args.speed, "fill_gap_s": args.fill_gap_s,
                                       "start_time": start_time, "units": units},
                     "engine_kwargs": {"max_invalid_fraction": args.max_invalid,
                                       "start_time": start_dt},
                     "formats": chosen_formats(args)})


def _print_table(rows: list[dict], n_calls: int, n_epochs: int, out: object) -> None:
    """Print each bed's status, epochs and latency, and the inference calls."""
    print(f"{'bed':24s} {'status':8s} {'epochs':>6s} {'median ms':>9s} {'p99 ms':>8s}  error")
    for r in rows:
        med = f"{r['median_ms']:.1f}" if r["median_ms"] is not None else "-"
        p99 = f"{r['p99_ms']:.1f}" if r["p99_ms"] is not None else "-"
        print(f"{r['bed'][:24]:24s} {r['status']:8s} {r['epochs']:6d} {med:>9s} {p99:>8s}  "
              f"{r['error']}")
    print(f"{n_epochs} epochs in {n_calls} inference calls (mean batch "
          f"{n_epochs / max(1, n_calls):.1f}); outputs: {out} (beds.json)")


def run_beds(args: argparse.Namespace) -> int:
    """Score every bed until they have all ended (or Ctrl-C); print and write the table."""
    from edge_scorer.engine.shutdown import Shutdown
    from edge_scorer.io.outputs import atomic_write

    beds = _bed_configs(args)
    outlet = (args.outlet or "").lower()
    if outlet not in ("", "none"):
        raise CliError("--outlet NAME names one outlet; with many beds each publishes "
                       "<bed>-stages (--outlet none: no outlets)")
    bedset = _bedset(args, beds, outlet)
    t0 = time.perf_counter()
    with Shutdown("the beds") as stop:
        bedset.start()
        log.info("%d bed(s); Ctrl-C to stop", len(bedset.beds))
        while bedset.poll() and not stop.requested:
            time.sleep(0.5)
        if stop.requested:
            log.info("stopping (%s): finalizing every bed", stop.name)
        bedset.stop()
    rows = bedset.summary()
    info = {"seconds": round(time.perf_counter() - t0, 1), "beds": rows,
            "inference_calls": bedset.model.n_calls, "epochs_scored": bedset.model.n_epochs}
    atomic_write(args.out / "beds.json", json.dumps(info, indent=2) + "\n")
    _print_table(rows, bedset.model.n_calls, bedset.model.n_epochs, args.out)
    return 1 if any(r["status"] in ("refused", "failed") for r in rows) else 0
