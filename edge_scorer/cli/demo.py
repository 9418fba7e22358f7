"""``edge-scorer demo``: the main job, end to end as far as it is built.

Today: a night (your EDF, or a simulated one in the Sleep-EDF file layout when none is given;
no network needed) is read through the real EDF reader, conditioned and rendered exactly as the
model sees it, scored offline by the shipped default model through ONNX Runtime (intra ViT +
inter transformer, SleepXViT's window rule), and compared with the night's hypnogram. The live
LSL path joins this command when the streaming engine lands (see docs/ARCHITECTURE.md).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from .._log import get_logger
from . import CliError

log = get_logger("cli.demo")

HELP = "run the demo: render and score a night (simulated unless --edf) with the shipped model"

_GLYPH = {-1: "?", 0: "W", 1: "1", 2: "2", 3: "3", 4: "R"}


def hypnogram_text(stages, per_line: int = 120) -> str:
    """One character per epoch (W 1 2 3 R, ? unscored), ``per_line`` epochs per line."""
    chars = "".join(_GLYPH[int(s)] for s in stages)
    return "\n".join(chars[i:i + per_line] for i in range(0, len(chars), per_line))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``edge-scorer demo``."""
    parser.add_argument("--edf", type=Path, help="your PSG file (default: a simulated night)")
    parser.add_argument("--hypnogram", type=Path, help="hypnogram of --edf (any readable format)")
    parser.add_argument("-o", "--out", type=Path, default=Path("edge-scorer-demo"),
                        help="output folder (default ./edge-scorer-demo)")
    parser.add_argument("--spec", default="sleep-edf", help="render spec (default sleep-edf)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the simulated night")
    parser.add_argument("--duration-h", type=float, default=None,
                        help="length of the simulated night in hours (default: as sampled)")


def run(args: argparse.Namespace) -> int:
    """Run the demo and print the hypnogram, statistics and where the outputs are."""
    import time

    from ..pipeline import render_night, save_rendered
    from ..sleepstats import sleep_statistics

    if args.hypnogram and not args.edf:
        raise CliError("--hypnogram goes with --edf (the simulated night brings its own)")
    out: Path = args.out
    t0 = time.perf_counter()
    if args.edf:
        psg, hyp_path = args.edf, args.hypnogram
        print(f"night: {psg} (your recording)")
    else:
        from ..simulate import simulate_nights

        (psg, hyp_path), = simulate_nights(out / "night", 1, layout="sleep-edf", seed=args.seed,
                                           duration_h=args.duration_h)
        print(f"night: SIMULATED (seed {args.seed}), written as Sleep-EDF files in {psg.parent}"
              " - not a real recording")
    night = render_night(psg, args.spec, hyp_path)
    save_rendered(night, out / "render", hypnogram=hyp_path)
    elapsed = time.perf_counter() - t0
    rec = night.recording
    print(f"read {rec.duration_s / 3600:.2f} h: rows {', '.join(rec.source_labels)} "
          f"(native rates {', '.join(f'{f:g}' for f in rec.native_sfreqs)} Hz)")
    print(f"rendered {night.n_epochs} epochs of {night.images.shape[1]}x{night.images.shape[2]}"
          f" with spec {night.spec.name} ({night.spec.hash}) in {elapsed:.1f} s")
    for w in night.warnings:
        print(f"warning: {w}")
    from ..metrics import agreement
    from ..scorer import ScoringModel

    t1 = time.perf_counter()
    model = ScoringModel.load(spec=night.spec)
    scored = model.score_night(night.images)
    scored.start_time = rec.start_time
    scored.write(out / "scored.csv")
    print(f"scored {scored.n_epochs} epochs with the shipped model (ONNX Runtime, "
          f"{model.intra.metadata.get('preset', '')} + inter window {model.window}) in "
          f"{time.perf_counter() - t1:.1f} s")
    print("\nmodel hypnogram (one character per 30-s epoch: W 1 2 3 R, ? unscored):")
    print(hypnogram_text(scored.stages))
    print("\nsleep statistics of the model hypnogram:")
    print(sleep_statistics(scored))
    if night.stages is not None:
        print("\nreference hypnogram:")
        print(hypnogram_text(night.stages))
        kind = ("SIMULATED night: a pipeline check, not clinical accuracy" if not args.edf
                else "your recording")
        print(f"\nagreement with the reference ({kind}):")
        print(agreement(night.stages, scored.stages))
    print(f"\noutputs: {out} (scored.csv; render/: epochs.npy, contact_sheet.png, labels.csv)")
    print("note: the shipped model is trained on simulated nights (see its MODEL_CARD.md); "
          "the live LSL engine is not built yet")
    return 0
