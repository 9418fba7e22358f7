"""Agreement against look-ahead, measured with the runtime window rule (the model card's table).

``python -m training.lookahead MODEL_DIR --cache CACHE [--data NIGHTS] [--split SPLIT]
[--part test] [--raw] [-o OUT]`` opens ``MODEL_DIR/intra.onnx`` and ``inter.onnx`` with
:class:`~edge_scorer.inference.scorer.ScoringModel` (ONNX Runtime, CPU: what runs at the
bedside), runs them over the epoch cache's nights of the split part, and reads every epoch at
look-ahead ``k = 0..L-1`` with the runtime window rule
(:func:`edge_scorer.inference.windows.window_softmax` and
:func:`~edge_scorer.inference.windows.lookahead_curve`): the stage the live
:class:`~edge_scorer.engine.rolling.RollingScorer` shows for an epoch once ``k`` later epochs
have arrived (``k = L-1``: the final, offline stage). Nothing here re-implements the rule.

It prints the pooled kappa / accuracy / macro-F1 per ``k`` as a Markdown table and, with
``-o``, writes the full evaluation report (:class:`training.evaluate.EvaluationReport`:
``report.json``/``.md``, confusion and look-ahead figures, ``predictions.csv``).

``--data NIGHTS`` first builds (or reuses) the cache from a folder of nights
(:func:`training.dataset.build_cache`, wake trimmed to 30 min as in training), rendering only the
nights of the part's subjects. ``--raw`` leaves out the temperatures stamped in the models
(the numbers before temperature scaling); by default the models score as the engine does.
"""

from __future__ import annotations

import argparse
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.inference.scorer import ScoringModel
from edge_scorer.inference.windows import softmax, window_softmax
from training.evaluate import EvaluationReport, NightPrediction, curve_predictions

log = get_logger("training.lookahead")

__all__ = ["build_part_cache", "lookahead_report", "lookahead_table", "main", "score_night"]

#: Cache rows read (and run through the intra model) at a time.
CHUNK = 512


def score_night(model: ScoringModel, cache, index: int, *, raw: bool = False
                ) -> NightPrediction:
    """Intra and intra + inter predictions of one cached night, with the stages at every
    look-ahead (the runtime rule on the model's window softmax).

    Parameters
    ----------
    model : ScoringModel
        Intra + inter models (an inter model is required).
    cache : EpochCache
        The epoch cache.
    index : int
        Night index in the cache.
    raw : bool
        Ignore the models' temperatures.

    Returns
    -------
    NightPrediction
        Methods ``intra`` and ``intra+inter``; ``lookahead["intra+inter"]`` is ``(L, n)``.
    """
    if model.inter is None:
        raise ValueError("look-ahead needs an inter model (MODEL_DIR/inter.onnx)")
    info, sl = cache.nights[index], cache.night_slice(index)
    logits, feats = [], []
    for start in range(sl.start, sl.stop, CHUNK):
        lg, ft = model.epoch_outputs(np.asarray(cache.images[start:min(start + CHUNK, sl.stop)]),
                                     raw=raw)
        logits.append(np.asarray(lg, dtype=np.float64))
        feats.append(ft)
    feats_all = np.concatenate(feats)
    ws = window_softmax(lambda w: model.inter_logits(w, raw=raw), feats_all, L=model.window)
    proba, look = curve_predictions(ws, len(feats_all))
    log.info("look-ahead: night %s (%d epochs)", info["name"], len(feats_all))
    return NightPrediction(info["name"], str(info["subject"]), cache.labels[sl].copy(),
                           np.asarray(cache.epoch[sl]),
                           {"intra": softmax(np.concatenate(logits)), "intra+inter": proba},
                           {"intra+inter": look})


def lookahead_report(model_dir: str | Path, cache_dir: str | Path,
                     split: dict | str | Path | None = None, *, part: str = "test",
                     raw: bool = False) -> EvaluationReport:
    """Score the part's nights of a cache with exported models, look-ahead included.

    Parameters
    ----------
    model_dir : path-like
        Folder with ``intra.onnx`` and ``inter.onnx`` (e.g. ``edge_scorer/models``).
    cache_dir : path-like
        The epoch cache (:func:`training.dataset.open_cache`), rendered with the models' spec.
    split : dict, path-like or None
        Split file or committed split name; None: the split recorded in the intra model.
    part : {"test", "val", "train"}
        Which subjects' nights (original nights only).
    raw : bool
        Ignore the temperatures stamped in the models.

    Returns
    -------
    EvaluationReport
    """
    from training.calibrate import _split_of
    from training.dataset import open_cache
    from training.splits import PARTS

    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")
    model_dir = Path(model_dir)
    cache = open_cache(cache_dir)
    model = ScoringModel.load(model_dir / "intra.onnx", model_dir / "inter.onnx",
                              spec=cache.spec())
    subjects = _split_of(model, split)[part]
    nights = cache.nights_of(subjects)
    if not nights:
        raise ValueError(f"no night of the {part!r} subjects {subjects} is in the cache "
                         f"{cache_dir} (its subjects: {cache.subjects()})")
    results = [score_night(model, cache, i, raw=raw) for i in nights]
    meta = {"models": str(model_dir), "cache": str(cache_dir), "part": part,
            "split": str(split) if isinstance(split, str | Path) else None,
            "spec": {"name": cache.spec_name, "hash": cache.spec_hash},
            "epoch_s": float(cache.meta.get("epoch_s", 30.0)),
            "subjects": ", ".join(sorted({r.subject for r in results})),
            "temperature_inter": 1.0 if raw else model.inter_temperature,
            "rule": "edge_scorer.inference.windows (runtime)"}
    return EvaluationReport(results, meta)


def lookahead_table(report: EvaluationReport, method: str = "intra+inter") -> str:
    """The pooled look-ahead table in the model card's layout (k, kappa, accuracy, macro-F1)."""
    pooled, _ = report.lookahead(method)

    def row(name: str, key: str) -> str:
        vals = [getattr(a, key) for a in pooled]
        return f"| {name} | " + " | ".join(
            "n/a" if not math.isfinite(v) else f"{v:.3f}" for v in vals) + " |"

    ks = range(len(pooled))
    return "\n".join(["| k | " + " | ".join(str(k) for k in ks) + " |",
                      "|---" * (len(pooled) + 1) + "|",
                      row("kappa", "kappa"), row("accuracy", "accuracy"),
                      row("macro-F1", "macro_f1")])


def build_part_cache(data: str | Path, cache_dir: str | Path, spec, subjects: Sequence[str]):
    """Build (or reuse) an epoch cache of the nights of ``subjects`` found in ``data``."""
    from training.dataset import build_cache
    from training.nights import canonical_subject, nights_from_folder

    want = {canonical_subject(s) for s in subjects}
    nights = [n for n in nights_from_folder(data) if canonical_subject(n.subject) in want]
    if not nights:
        raise ValueError(f"no night of the subjects {sorted(want)} in {data}")
    return build_cache(nights, spec, cache_dir)


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m training.lookahead``: print the look-ahead table (and write the report)."""
    parser = argparse.ArgumentParser(prog="python -m training.lookahead",
                                     description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="folder with intra.onnx + inter.onnx")
    parser.add_argument("--cache", type=Path, required=True, help="epoch cache folder")
    parser.add_argument("--data", type=Path, help="folder of nights: build the cache of the "
                        "part's nights from it first (reused when up to date)")
    parser.add_argument("--split", help="split file or committed split name (default: the "
                        "split recorded in the intra model)")
    parser.add_argument("--part", choices=("test", "val", "train"), default="test")
    parser.add_argument("--raw", action="store_true",
                        help="ignore the models' temperatures (before temperature scaling)")
    parser.add_argument("-o", "--out", type=Path, help="write the evaluation report here")
    args = parser.parse_args(argv)
    if args.data is not None:
        from training.calibrate import _split_of

        model = ScoringModel.load(args.model_dir / "intra.onnx", args.model_dir / "inter.onnx")
        build_part_cache(args.data, args.cache, model.spec,
                         _split_of(model, args.split)[args.part])
    report = lookahead_report(args.model_dir, args.cache, args.split, part=args.part,
                              raw=args.raw)
    print(f"{len(report.nights)} {args.part} nights, {sum(len(n.labels) for n in report.nights)}"
          f" epochs, inter temperature {report.meta['temperature_inter']:g}")
    print(lookahead_table(report))
    if args.out is not None:
        paths = report.write(args.out)
        print(f"report: {paths['md']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
