"""One command for the whole recipe: train intra, inter and STQS, evaluate, export to ONNX.

``edge-scorer train all [--recipe sleep-edf|shhs] [--data DIR] [--out DIR]`` runs, in one
folder::

    DIR/intra/   ViT checkpoints (best.pt, last.pt, config.json, train_log.csv)
    DIR/inter/   inter-epoch transformer on the ViT's features
    DIR/stqs/    STQS (CNN + BiLSTM on conditioned signals)
    DIR/report/  evaluation on the split's test subjects (report.md/json, figures)
    DIR/export/  intra.onnx + inter.onnx with edge_scorer metadata, parity.json, calibrated
                 (temperatures + unfamiliar-signal statistics, calibration.json)

Every step is the same code as the single-task commands; nothing here trains on its own.
``--set key=value`` applies to every task, ``--set intra:key=value`` to one task only.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from edge_scorer._log import get_logger

log = get_logger("training.recipe")

#: Shipped config of each task.
TASK_CONFIGS = {"intra": "intra_vit_tiny", "inter": "inter_tiny", "stqs": "stqs"}


def _task_overrides(overrides: Sequence[str], task: str) -> list[str]:
    out = []
    for item in overrides:
        head, sep, rest = item.partition(":")
        if sep and head in TASK_CONFIGS and "=" not in head:
            if head == task:
                out.append(rest)
        else:
            out.append(item)
    return out


def run_all(
    out: str | Path,
    *,
    recipe: str | None = None,
    data: str | Path | None = None,
    overrides: Sequence[str] = (),
    tasks: Sequence[str] = ("intra", "inter", "stqs"),
    configs: dict[str, str] | None = None,
    quiet: bool = False,
) -> dict[str, Path]:
    """Train the tasks in order, evaluate them on the test part, export intra+inter to ONNX.

    Returns
    -------
    dict
        Paths by name: each task's run folder, ``report`` and ``export``.
    """
    from training import distributed
    from training.config import load_config
    from training.tasks import train

    out = Path(out)
    configs = {**TASK_CONFIGS, **(configs or {})}
    common = [f"data.nights={json.dumps(str(data))}"] if data is not None else []
    paths: dict[str, Path] = {}
    cfg = None
    for task in tasks:
        items = [*common, *_task_overrides(overrides, task), f"out={json.dumps(str(out / task))}"]
        if task == "inter":
            items.append(f"inter.intra_checkpoint={json.dumps(str(out / 'intra'))}")
        cfg = load_config(configs[task], items, task=task, recipe=recipe)
        distributed.setup(str(cfg["train"]["device"]))  # under torchrun: join (once)
        log.info("recipe: training %s -> %s", task, cfg["out"])
        paths[task] = train(cfg, resume=(Path(cfg["out"]) / "last.pt").exists(), quiet=quiet)
    if cfg is None:
        return paths
    if not distributed.is_main():  # under torchrun, rank 0 alone evaluates and exports
        return paths
    paths["report"] = evaluate_runs(out, cfg["data"]["cache_dir"], paths)
    if "intra" in paths:
        paths["export"] = export_runs(out, cfg["data"]["cache_dir"], paths)
    return paths


def evaluate_runs(out: Path, cache_dir: str | Path, runs: dict[str, Path]) -> Path:
    """Evaluate the trained runs on the test subjects of the split they were trained with."""
    from training.checkpoint import load_checkpoint
    from training.evaluate import evaluate

    first = runs.get("intra") or runs.get("stqs")
    _, ckpt = load_checkpoint(first)
    split = ckpt["meta"]["data"]["split"]
    report = evaluate(cache_dir, split, intra=runs.get("intra"), inter=runs.get("inter"),
                      stqs=runs.get("stqs"), part="test")
    report.write(out / "report")
    log.info("recipe: evaluation written to %s", out / "report")
    return out / "report"


def export_runs(out: Path, cache_dir: str | Path, runs: dict[str, Path], *,
                dest: Path | None = None, provenance: str | None = None,
                parity_nights: int = 2) -> Path:
    """Export intra (+ inter) to ONNX, gate them against torch on whole test nights, and
    calibrate the exported models (:func:`training.calibrate.calibrate`).

    Writes ``intra.onnx``, ``inter.onnx`` (each with its weights-only ``.pt`` beside it, see
    :func:`edge_scorer.inference.nets.weights.save_weights`), ``parity.json`` and
    ``calibration.json`` into ``dest`` (default ``out/export``). The parity gate is the one of
    ``edge-scorer export onnx`` (:func:`export.checkpoints.parity_gate`): logits, features and
    the final stages of the first ``parity_nights`` test nights, each whole and in time order;
    a failed gate raises :class:`export.gate.GateFailed` (``parity.json`` is kept). Calibration
    needs training and validation nights of the split in the cache; without them it is skipped
    with a warning (the models then score uncalibrated, with the unfamiliar-signal flag off).
    ``provenance`` (default: the cache, nights and split as JSON) becomes the models'
    ``training_data`` metadata; the nights and split are also stored as their own keys.
    """
    from export import export_inter, export_intra
    from export.checkpoints import parity_gate, per_model
    from training.checkpoint import load_checkpoint, save_weights
    from training.dataset import open_cache

    cache = open_cache(cache_dir)
    spec = cache.spec()
    intra, ckpt = load_checkpoint(runs["intra"])
    nights = ckpt["meta"]["data"]["nights"]
    extra = {"split": ckpt["meta"]["data"]["split"], "nights": nights}
    if provenance is None:
        provenance = json.dumps({"cache": str(cache_dir), **extra})
    dest = dest or out / "export"
    dest.mkdir(parents=True, exist_ok=True)
    paths = {"intra": export_intra(intra, dest / "intra.onnx", spec=spec,
                                   provenance=provenance, extra=extra), "inter": None}
    save_weights(intra, dest / "intra.pt", meta=ckpt["meta"])
    inter = None
    if "inter" in runs:
        inter, inter_ckpt = load_checkpoint(runs["inter"])
        paths["inter"] = export_inter(inter, dest / "inter.onnx", spec=spec,
                                      provenance=provenance, extra=extra)
        save_weights(inter, dest / "inter.pt", meta=inter_ckpt["meta"])
    test = [i for i, n in enumerate(cache.nights) if n["name"] in set(nights.get("test", []))]
    chosen = (test or list(range(len(cache.nights))))[:max(1, parity_nights)]
    gate = parity_gate(intra, inter, paths, [cache.images[cache.select([i])] for i in chosen])
    parity = {"nights": [cache.nights[i]["name"] for i in chosen], **per_model(gate),
              "gate": gate.to_dict(), "passed": gate.passed}
    (dest / "parity.json").write_text(json.dumps(parity, indent=2) + "\n")
    gate.check(f"ONNX parity with torch failed ({dest / 'parity.json'})")
    log.info("recipe: ONNX models in %s, parity %s", dest, gate.summary().replace("\n", "; "))
    from training.calibrate import CalibrationUnavailable, calibrate

    try:
        calibrate(dest, cache_dir, ckpt["meta"]["data"]["split"])
    except CalibrationUnavailable as exc:
        log.warning("recipe: models left uncalibrated: %s", exc)
    return dest
