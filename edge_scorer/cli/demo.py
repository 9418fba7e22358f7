"""``edge-scorer demo``: the main job end to end, live over Lab Streaming Layer.

A night is replayed on the loopback network as real LSL streams (:class:`~edge_scorer.stream.replay.
Replayer`, accelerated) and scored live by the shipped default model through the streaming
engine (:class:`~edge_scorer.stream.live.LiveScorer`: inlet -> conditioning -> renderer -> intra ViT
-> rolling inter window -> stage outlet + epochs.csv). The hypnogram is printed as it grows
(final labels, one line per 30 min of signal); at the end the sleep statistics and the
agreement with the night's own hypnogram.

The night: ``--edf FILE`` (+ ``--hypnogram``) when given; otherwise one Sleep-EDF night
(SC4001, fetched through MNE when the PhysioNet host answers within 3 s, or found in MNE's data
folder); otherwise a simulated night in the Sleep-EDF layout, and the demo says so.

Ctrl-C or SIGTERM stops the replay, scores what it had sent, finalizes the labels and writes the
night's files (exit code 130 / 143); a second one aborts at once.
"""

from __future__ import annotations

import argparse
import time
import uuid
from pathlib import Path

from edge_scorer._log import get_logger
from edge_scorer.cli import CliError
from edge_scorer.cli._args import add_overwrite, positive

log = get_logger("cli.demo")

HELP = ("run the demo: replay a night as live LSL streams and score it live with the shipped "
        "model (Sleep-EDF when online, else simulated; --edf for yours)")

_GLYPH = {-1: "?", 0: "W", 1: "1", 2: "2", 3: "3", 4: "R"}
#: Default wall-clock length of the demo (the replay speed is chosen to fit it).
TARGET_S = 120.0
#: Epochs per printed hypnogram line (30 min).
LINE_EPOCHS = 60


#: Marker under an epoch flagged by the unfamiliar-signal flag.
UNFAMILIAR_MARK = "^"


def _marks(flags) -> str:
    """A line with :data:`UNFAMILIAR_MARK` under each flagged epoch ('' when none is)."""
    line = "".join(UNFAMILIAR_MARK if f else " " for f in flags).rstrip()
    return line


def hypnogram_text(stages, per_line: int = 120, unfamiliar=None) -> str:
    """One character per epoch (W 1 2 3 R, ? unscored), ``per_line`` epochs per line; with
    ``unfamiliar`` (a flag per epoch) a line of ``^`` under the flagged epochs of each line."""
    chars = "".join(_GLYPH[int(s)] for s in stages)
    flags = [False] * len(chars) if unfamiliar is None else [bool(f) for f in unfamiliar]
    lines = []
    for i in range(0, len(chars), per_line):
        lines.append(chars[i:i + per_line])
        marks = _marks(flags[i:i + per_line])
        if marks:
            lines.append(marks)
    return "\n".join(lines)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-scorer demo``."""
    parser.add_argument("--edf", type=Path, help="your PSG file (default: Sleep-EDF SC4001 "
                        "when online, else a simulated night)")
    parser.add_argument("--hypnogram", type=Path, help="hypnogram of --edf (any readable format)")
    parser.add_argument("--simulated", action="store_true",
                        help="use a simulated night even when online")
    parser.add_argument("-o", "--out", type=Path, default=Path("edge-scorer-demo"),
                        help="output folder (default ./edge-scorer-demo)")
    parser.add_argument("--speed", type=positive("must be positive (1 = real time)"),
                        default=None,
                        help=f"replay speed (default: the whole night in about {TARGET_S:g} s)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated night")
    parser.add_argument("--duration-h", type=positive("must be a positive number of hours"),
                        default=None,
                        help="length of the simulated night in hours (default: as sampled)")
    parser.add_argument("--gui", action="store_true",
                        help="show the live run in the bedside window (the gui extra)")
    parser.add_argument("--channel", action="append", default=[], metavar="ROW=LABEL",
                        help="use channel LABEL of --edf for spec row ROW (repeatable)")
    add_overwrite(parser)


def _night(args: argparse.Namespace, out: Path) -> tuple[Path, Path | None, str]:
    """The PSG file, its hypnogram and a description of where it came from."""
    if args.edf:
        return args.edf, args.hypnogram, "your recording"
    if not args.simulated:
        from edge_scorer.io.datasets import DataUnavailableError, fetch_sleep_edf

        try:
            (psg, hyp), = fetch_sleep_edf([0], [1], timeout_s=3.0)
            return Path(psg), Path(hyp), "real Sleep-EDF night SC4001 (PhysioNet)"
        except DataUnavailableError as exc:
            log.debug("%s", exc)
            print("Sleep-EDF night SC4001 is not on disk and PhysioNet does not answer (offline):"
                  " using a simulated night")
    from edge_scorer.simulate import simulate_nights

    (psg, hyp), = simulate_nights(out / "night", 1, layout="sleep-edf", seed=args.seed,
                                  duration_h=args.duration_h)
    return psg, hyp, (f"SIMULATED night (seed {args.seed}), Sleep-EDF layout, in {psg.parent}"
                      " - not a real recording")


class _Printer:
    """Print the final hypnogram in lines of :data:`LINE_EPOCHS` epochs as it grows."""

    def __init__(self, epoch_s: float) -> None:
        self.epoch_s = epoch_s
        self.final: dict[int, int] = {}
        self.unfamiliar: dict[int, bool] = {}
        self.printed = 0
        self.n_provisional = 0

    def __call__(self, updates, engine) -> None:
        for u in updates:
            if u.status == "final":
                self.final[u.index] = u.stage
                self.unfamiliar[u.index] = bool(u.unfamiliar)
            if u.status == "provisional":
                self.n_provisional += 1
        while all(i in self.final for i in range(self.printed, self.printed + LINE_EPOCHS)):
            self._line(LINE_EPOCHS)

    def _line(self, n: int) -> None:
        start = self.printed * self.epoch_s
        epochs = range(self.printed, self.printed + n)
        chars = "".join(_GLYPH[self.final[i]] for i in epochs)
        print(f"  {int(start // 3600):02d}:{int(start % 3600 // 60):02d}  {chars}", flush=True)
        marks = _marks(self.unfamiliar.get(i, False) for i in epochs)
        if marks:
            print(f"  {'':5}  {marks}  ({UNFAMILIAR_MARK}: unfamiliar signal)", flush=True)
        self.printed += n

    def flush(self) -> None:
        n = len([i for i in self.final if i >= self.printed])
        if n:
            self._line(n)


def _check_args(args: argparse.Namespace) -> dict[str, str]:
    """Refuse option combinations that cannot work and the used output folder; check that the
    window can open (before a night is fetched or simulated). Returns the channel overrides."""
    from edge_scorer.io.montage import parse_channel_overrides
    from edge_scorer.io.outputs import check_output_dir

    if args.hypnogram and not args.edf:
        raise CliError("--hypnogram goes with --edf (the demo night brings its own)")
    if args.channel and not args.edf:
        raise CliError("--channel goes with --edf (the demo night has the model's channels)")
    overrides = parse_channel_overrides(args.channel)
    check_output_dir(args.out, args.overwrite)
    if args.gui:
        _window("check")()
    return overrides


def _window(name: str):
    """The ``name`` entry point of the bedside window (``check`` or ``demo``, gui extra)."""
    from edge_scorer import plugins

    try:
        return plugins.load(plugins.WINDOWS, name)
    except plugins.PluginUnavailable as exc:
        raise CliError(f"the window is not available: {exc}") from exc


def _score_live(rep, live, out: Path):
    """Replay and score the night until its end or the first SIGINT/SIGTERM; the Shutdown."""
    from edge_scorer.engine.shutdown import Shutdown

    with Shutdown("the demo night") as stop:
        rep.start()
        try:
            live.start()
            print("final hypnogram as it grows (one character per 30-s epoch: W 1 2 3 R, "
                  f"? unscorable; {UNFAMILIAR_MARK} below: unfamiliar signal, review):")
            live.follow(rep, stop=stop.event)  # the whole night, then what is in flight
        finally:
            rep.stop()
        if stop.requested:
            print(f"interrupted ({stop.name}): finalizing the epochs scored so far")
        live.stop(timeout=None, raise_error=False)
    if rep.error is not None:
        raise CliError(f"the replay failed: {rep.error}")
    if live.error is not None:
        raise CliError(f"live scoring failed: {type(live.error).__name__}: {live.error} (the "
                       f"epochs scored before it are in {out})")
    return stop


def _report(live, printer: _Printer, elapsed_s: float):
    """Print the epochs, the unfamiliar-signal summary, latency, gaps and the sleep statistics;
    return the night's hypnogram."""
    from edge_scorer.inference.familiarity import summary_line, warning_line

    printer.flush()
    engine = live.engine
    hyp = engine.hypnogram()
    lat = engine.latency_summary()
    print(f"\nscored {hyp.n_epochs} epochs live in {elapsed_s:.0f} s "
          f"({printer.n_provisional} provisional labels, each revised until final)")
    fam = engine.familiarity_summary()
    print(summary_line(fam))
    if warning_line(fam):
        print(warning_line(fam))
    if lat:
        print(f"provisional latency (chunk in -> label out): median {lat['median_ms']:.1f} ms, "
              f"p99 {lat['p99_ms']:.1f} ms")
    if live.source.n_gaps:
        print(f"gaps in the stream: {live.source.n_gaps}")
    print("\nsleep statistics of the model hypnogram:")
    print(hyp.sleep_statistics())
    return hyp


def _report_agreement(hyp, hyp_path: Path | None, where: str, epoch_s: float) -> None:
    """Agreement with the night's own hypnogram, when it has one (a pipeline check)."""
    from edge_scorer.io.psg import align_hypnogram
    from edge_scorer.stats.metrics import agreement

    if hyp_path is None:
        return
    ref = align_hypnogram(hyp_path, hyp.n_epochs * epoch_s, epoch_s=epoch_s)
    kind = ("SIMULATED night: a pipeline check, not clinical accuracy"
            if where.startswith("SIMULATED") else where)
    print(f"\nagreement with the night's hypnogram ({kind}):")
    print(agreement(ref.stages, hyp.stages))


def run(args: argparse.Namespace) -> int:
    """Replay the night, score it live, print the hypnogram, statistics and agreement."""
    from edge_scorer.engine.sinks import Callback
    from edge_scorer.inference.scorer import ScoringModel
    from edge_scorer.io.outputs import prepare_output_dir
    from edge_scorer.io.psg import read_edf_header
    from edge_scorer.stream.live import LiveScorer
    from edge_scorer.stream.replay import Replayer

    overrides = _check_args(args)
    out: Path = args.out
    t0 = time.perf_counter()
    prepare_output_dir(out, args.overwrite)
    psg, hyp_path, where = _night(args, out)
    print(f"night: {where}\n  {psg}")
    model = ScoringModel.load()
    name = f"edge-scorer-demo-{uuid.uuid4().hex[:6]}"
    header = read_edf_header(psg)
    speed = args.speed or max(1.0, header.n_records * header.record_s / TARGET_S)
    if args.gui:
        print(f"opening the bedside window: replay at {speed:.0f}x, outputs in {out}")
        return _window("demo")(psg, hyp_path, out, speed, channel_overrides=overrides)
    rep = Replayer(psg, model.spec, name=name, speed=speed, hypnogram=hyp_path,
                   wait_for_consumers_s=10.0, channel_overrides=overrides or None)
    print(f"replaying {rep.duration_s / 3600:.2f} h as LSL streams {', '.join(rep.stream_names)}"
          f" at {speed:.0f}x (about {rep.duration_s / speed:.0f} s); scoring live with the "
          f"shipped model ({model.intra.metadata.get('preset')} + inter window {model.window})")
    printer = _Printer(model.spec.epoch_s)
    live = LiveScorer(model, name=name, out_dir=out, outlet_name=f"{name}-stages",
                      sinks=[Callback(printer)])
    stop = _score_live(rep, live, out)
    hyp = _report(live, printer, time.perf_counter() - t0)
    _report_agreement(hyp, hyp_path, where, model.spec.epoch_s)
    print(f"\noutputs: {out} (epochs.csv: every provisional/revised/final label; hypnogram.csv,"
          " hypnogram.edf, stats.json)")
    print("note: the shipped model is trained on simulated nights (see its MODEL_CARD.md)")
    if stop.requested:
        print(f"stopped by {stop.name} before the end of the night (exit code {stop.exit_code})")
    return stop.exit_code
