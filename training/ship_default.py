"""Export a finished ``train all`` run as the package's shipped default model.

``python -m training.ship_default runs/default`` writes ``edge_scorer/models/intra.onnx``,
``inter.onnx`` (calibrated: temperatures and unfamiliar-signal statistics, see
:mod:`training.calibrate`) and ``default.json`` (the run's evaluation summary, ONNX parity and
calibration report). The model card (``edge_scorer/models/MODEL_CARD.md``) is written by a
person from those numbers.

The default model is trained on simulated nights; its provenance metadata says so, and the
runtime shows it. Reproduce it with the commands in MODEL_CARD.md.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from pathlib import Path

PROVENANCE = (
    "SIMULATED PSG: edge-scorer simulator nights in the Sleep-EDF SC layout, driven by the 16 "
    "real expert hypnograms of Sleep-EDF SC4001-SC4072 (8 subjects x 2 nights), split by "
    "subject (training/splits/sleep-edf-sc.json). Not trained or validated on real recordings."
)


def ship(run: Path, dest: Path) -> dict:
    """Export the run's intra and inter models into ``dest`` with the default provenance
    (the same export and parity check as ``train all``), and write ``default.json``."""
    from training.checkpoint import load_checkpoint
    from training.recipe_run import export_runs

    runs = {"intra": run / "intra", "inter": run / "inter"}
    intra, ckpt = load_checkpoint(runs["intra"])
    inter, _ = load_checkpoint(runs["inter"])
    cache_dir = ckpt["meta"]["data"]["cache"]
    export_runs(run, cache_dir, runs, dest=dest, provenance=PROVENANCE)
    report = json.loads((run / "report" / "report.json").read_text())
    summary = {
        "provenance": PROVENANCE, "spec": report["meta"]["spec"],
        "intra_cfg": intra.cfg, "inter_cfg": inter.cfg, "split": ckpt["meta"]["data"]["split"],
        "test_pooled": {m: v["pooled"] for m, v in report["methods"].items()},
        "lookahead": report.get("lookahead", {}),
        "onnx_parity": json.loads((dest / "parity.json").read_text()),
        "calibration": (json.loads((dest / "calibration.json").read_text())
                        if (dest / "calibration.json").is_file() else None),
    }
    (dest / "default.json").write_text(json.dumps(summary, indent=2) + "\n")
    return summary


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path, help="a finished `edge-scorer train all` folder")
    parser.add_argument("--dest", type=Path,
                        default=Path(__file__).resolve().parents[1] / "edge_scorer" / "models")
    args = parser.parse_args(argv)
    summary = ship(args.run, args.dest)
    print(json.dumps(summary["test_pooled"], indent=1)[:2000])
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
