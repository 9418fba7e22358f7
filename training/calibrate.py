"""Calibrate exported models: softmax temperatures and the unfamiliar-signal statistics.

``python -m training.calibrate MODEL_DIR --cache CACHE_DIR [--split SPLIT.json]
[--quantile 0.99]`` opens ``MODEL_DIR/intra.onnx`` (and ``inter.onnx`` when present) with
:class:`~edge_scorer.inference.scorer.ScoringModel` on ONNX Runtime, runs them over the epoch
cache's
nights of the split's train, validation and test subjects, and:

1. fits :class:`~edge_scorer.inference.familiarity.Familiarity` (class means + tied Ledoit-Wolf
   covariance of the intra CLS features) on training epochs (at most ``max_train``, a seeded
   subsample), and its threshold at ``quantile`` of the validation epochs' distances;
2. fits the temperatures (Guo et al. 2017) on the validation nights by minimising the negative
   log-likelihood over ``log T`` (``scipy.optimize.minimize_scalar``): the inter model's on the
   *final* probabilities of SleepXViT's sliding-window rule (the temperature divides every
   window's logits before its softmax, as at run time), the intra model's on the intra softmax
   (intra-only scoring);
3. stamps them into the models' metadata (``familiarity`` and ``temperature`` on intra,
   ``temperature`` on inter; every other key kept, weights untouched) and writes
   ``calibration.json``: temperatures, ECE and NLL before/after on the validation and the test
   subjects, the fraction of epochs flagged on train/val/test, threshold and quantile.

The test subjects are only reported, never fitted on. ``train all`` runs this right after the
ONNX export (:func:`training.recipe_run.export_runs`).
"""

from __future__ import annotations

import argparse
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.inference.familiarity import METADATA_KEY, TEMPERATURE_KEY, Familiarity
from edge_scorer.inference.scorer import ScoringModel
from edge_scorer.inference.windows import sliding_proba_from_logits, softmax
from edge_scorer.inference.windows import window_logits as _window_logits
from edge_scorer.stats.metrics import expected_calibration_error

log = get_logger("training.calibrate")

__all__ = ["CHUNK", "MAX_TRAIN", "CalibrationUnavailable", "calibrate", "fit_temperature",
           "main", "mean_nll", "window_logits", "windowed_proba"]

#: Default cap on the training epochs the familiarity statistics are computed from.
MAX_TRAIN = 20000
#: Cache rows read (and run through the intra model) at a time.
CHUNK = 512
#: Search interval of the temperature.
T_BOUNDS = (0.05, 20.0)


class CalibrationUnavailable(ValueError):
    """The cache holds no training or no validation night of the split."""


# ---------------------------------------------------------------------------- math
def mean_nll(proba: np.ndarray, labels: np.ndarray) -> float:
    """Mean negative log-likelihood of the reference stages (UNSCORED -1 left out)."""
    p = np.asarray(proba, dtype=np.float64)
    y = np.asarray(labels, dtype=np.int64)
    keep = y >= 0
    if not keep.any():
        return math.nan
    return float(-np.mean(np.log(np.clip(p[keep, y[keep]], 1e-12, 1.0))))


def fit_temperature(proba_of: Callable[[float], np.ndarray], labels: np.ndarray,
                    bounds: tuple[float, float] = T_BOUNDS) -> float:
    """The temperature minimising :func:`mean_nll` of ``proba_of(T)`` (search over ``log T``).

    Parameters
    ----------
    proba_of : callable
        ``T -> (n, C)`` probabilities of the fitting epochs at temperature ``T``.
    labels : ndarray of int, shape (n,)
        Reference stages (-1 left out).
    bounds : (float, float)
        Search interval of ``T``.

    Returns
    -------
    float
        ``T`` rounded to 6 significant digits (as stored); 1.0 when the fit does not beat it.
    """
    from scipy.optimize import minimize_scalar

    labels = np.asarray(labels)
    if not np.any(labels >= 0):
        raise ValueError("no scored epoch to fit a temperature on")
    lo, hi = bounds
    if not 0 < lo < 1 < hi:
        raise ValueError(f"temperature bounds must enclose 1, got {bounds}")
    res = minimize_scalar(lambda lt: mean_nll(proba_of(math.exp(lt)), labels),
                          bounds=(math.log(lo), math.log(hi)), method="bounded",
                          options={"xatol": 1e-4})
    t = float(f"{math.exp(float(res.x)):.6g}")
    if not mean_nll(proba_of(t), labels) <= mean_nll(proba_of(1.0), labels):
        return 1.0
    return t


def window_logits(model: ScoringModel, feats: np.ndarray, batch_size: int = 256
                  ) -> np.ndarray:
    """Raw inter logits ``(n_windows, L, C)`` of the windows offline scoring uses on one night
    (:func:`edge_scorer.inference.windows.window_logits`: stride 1; a night shorter than ``L`` is
    one window padded with its last epoch)."""
    return _window_logits(lambda w: model.inter_logits(w, raw=True), feats, model.window,
                          batch_size)


def windowed_proba(logits: np.ndarray, n: int, temperature: float = 1.0) -> np.ndarray:
    """Final probabilities ``(n, C)`` of a night from its window logits at ``temperature``: the
    runtime rule on cached logits
    (:func:`edge_scorer.inference.windows.sliding_proba_from_logits`)."""
    return sliding_proba_from_logits(logits, n, temperature)


# ---------------------------------------------------------------------------- model outputs
def _outputs(model: ScoringModel, images, rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Raw intra logits and features of cache rows, read :data:`CHUNK` rows at a time."""
    logits, feats = [], []
    for i in range(0, len(rows), CHUNK):
        lg, ft = model.epoch_outputs(np.asarray(images[rows[i:i + CHUNK]]), raw=True)
        logits.append(lg.astype(np.float64))
        feats.append(ft.astype(np.float64))
    if not logits:
        return np.zeros((0, 5)), np.zeros((0, 0))
    return np.concatenate(logits), np.concatenate(feats)


class _Night:
    """One night's raw outputs, labels and (with an inter model) window logits."""

    def __init__(self, model: ScoringModel, cache, index: int) -> None:
        sl = cache.night_slice(index)
        rows = np.arange(sl.start, sl.stop)
        self.name = cache.nights[index]["name"]
        self.labels = np.asarray(cache.labels[rows], dtype=np.int64)
        self.logits, self.feats = _outputs(model, cache.images, rows)
        self.windows = window_logits(model, self.feats) if model.inter is not None else None

    def proba(self, t_intra: float, t_inter: float) -> np.ndarray:
        """The model's final probabilities at these temperatures."""
        if self.windows is None:
            return softmax(self.logits / t_intra)
        return windowed_proba(self.windows, len(self.labels), t_inter)


def _part_metrics(nights: list[_Night], before: tuple[float, float],
                  after: tuple[float, float], fam: Familiarity) -> dict:
    if not nights:
        return {"n_nights": 0, "n_epochs": 0}
    y = np.concatenate([n.labels for n in nights])
    p0 = np.concatenate([n.proba(*before) for n in nights])
    p1 = np.concatenate([n.proba(*after) for n in nights])
    flags = fam.is_unfamiliar(np.concatenate([n.feats for n in nights]))

    def clean(x: float) -> float | None:
        return None if not math.isfinite(x) else round(float(x), 6)

    return {"n_nights": len(nights), "n_epochs": int(y.size),
            "n_scored": int(np.sum(y >= 0)), "nights": [n.name for n in nights],
            "ece_before": clean(expected_calibration_error(p0, y)),
            "ece_after": clean(expected_calibration_error(p1, y)),
            "nll_before": clean(mean_nll(p0, y)), "nll_after": clean(mean_nll(p1, y)),
            "accuracy": clean(float(np.mean(p1[y >= 0].argmax(1) == y[y >= 0]))
                              if np.any(y >= 0) else math.nan),
            "unfamiliar_fraction": round(float(flags.mean()), 6)}


# ---------------------------------------------------------------------------- the job
def _split_of(model: ScoringModel, split: dict | str | Path | None) -> dict[str, list[str]]:
    from training.splits import load_split

    if split is None:
        text = model.intra.metadata.get("split")
        if not text:
            raise ValueError("no --split given and the intra model records no split metadata")
        split = json.loads(text)
    if isinstance(split, str | Path):
        return load_split(split)
    return {p: list(split.get(p, [])) for p in ("train", "val", "test")}


def _training_rows(cache, nights: list[int], max_train: int, seed: int) -> np.ndarray:
    """Scored training epochs (cache rows), at most ``max_train`` drawn with ``seed``."""
    rows = cache.select(nights)
    rows = rows[np.asarray(cache.labels[rows]) >= 0]
    if len(rows) > max_train:
        rows = np.sort(np.random.default_rng(seed).choice(rows, max_train, replace=False))
    return rows


def _fit_temperatures(model: ScoringModel, val: list[_Night]) -> tuple[float, float]:
    """``(T_intra, T_inter)`` fitted on the validation nights (T_inter 1.0 without inter)."""
    y_val = np.concatenate([n.labels for n in val])
    t_intra = fit_temperature(
        lambda t: softmax(np.concatenate([n.logits for n in val]) / t), y_val)
    t_inter = 1.0
    if model.inter is not None:
        t_inter = fit_temperature(
            lambda t: np.concatenate([n.proba(t_intra, t) for n in val]), y_val)
    return t_intra, t_inter


def _report(model: ScoringModel, temps: tuple[float, float], fam: Familiarity,
            train_feats: np.ndarray, n_train_nights: int, val: list[_Night],
            test: list[_Night]) -> dict:
    """The ``calibration.json`` report."""
    t_intra, t_inter = temps
    return {
        "temperature": t_inter if model.inter is not None else t_intra,
        "temperature_intra": t_intra, "temperature_inter": t_inter if model.inter else None,
        "threshold": fam.threshold, "quantile": fam.quantile,
        "familiarity": fam.summary(),
        "train": {"n_epochs": int(len(train_feats)), "n_nights": n_train_nights,
                  "unfamiliar_fraction": round(float(fam.is_unfamiliar(train_feats).mean()),
                                               6)},
        "val": _part_metrics(val, (1.0, 1.0), temps, fam),
        "test": _part_metrics(test, (1.0, 1.0), temps, fam),
        "notes": "temperatures and threshold fitted on the validation subjects; the test "
                 "subjects are only reported. ECE: 15 equal-width confidence bins; NLL: mean "
                 "negative log-likelihood of the reference stage (UNSCORED epochs left out).",
    }


def _stamp(model_dir: Path, spec, fam: Familiarity, report: dict) -> None:
    """Stamp the statistics and temperatures into the models, check them read back, and
    write ``calibration.json``."""
    from export.onnx_export import update_metadata

    intra_path, inter_path = model_dir / "intra.onnx", model_dir / "inter.onnx"
    has_inter = report["temperature_inter"] is not None
    update_metadata(intra_path, {METADATA_KEY: fam.to_json(),
                                 TEMPERATURE_KEY: f"{report['temperature_intra']:.6g}"})
    if has_inter:
        update_metadata(inter_path, {TEMPERATURE_KEY: f"{report['temperature_inter']:.6g}"})
    back = ScoringModel.load(intra_path, inter_path if has_inter else None, spec=spec)
    if back.familiarity is None or back.familiarity.threshold != fam.threshold or (
            back.temperature != report["temperature"]):
        raise RuntimeError(f"the calibration read back from {model_dir} differs from the "
                           "one stamped")
    (model_dir / "calibration.json").write_text(json.dumps(report, indent=2) + "\n")
    log.info("calibrated %s: T=%g, threshold %.3f (q %.3g), val ECE %s -> %s", model_dir,
             report["temperature"], fam.threshold, fam.quantile, report["val"]["ece_before"],
             report["val"]["ece_after"])


def calibrate(model_dir: str | Path, cache_dir: str | Path,
              split: dict | str | Path | None = None, *, quantile: float = 0.99,
              max_train: int = MAX_TRAIN, seed: int = 0, write: bool = True) -> dict:
    """Fit and stamp the temperatures and the familiarity statistics of exported models.

    Parameters
    ----------
    model_dir : path-like
        Folder with ``intra.onnx`` (and ``inter.onnx``), as ``train all`` exports them.
    cache_dir : path-like
        The epoch cache (:func:`training.dataset.open_cache`) of the nights.
    split : dict, path-like or None
        Subjects per part (``train``/``val``/``test``); None: the split recorded in the
        intra model's metadata.
    quantile : float
        The flag's threshold is this quantile of the validation distances.
    max_train : int
        At most this many (scored) training epochs, drawn with ``seed``.
    seed : int
        Seed of the training subsample.
    write : bool
        Stamp the models and write ``calibration.json`` (False: only return the report).

    Returns
    -------
    dict
        The ``calibration.json`` report.

    Raises
    ------
    CalibrationUnavailable
        No training or validation night in the cache for the split.
    ModelSpecMismatch
        The models do not fit the cache's render spec.
    """
    from training.dataset import open_cache
    from training.splits import split_nights

    model_dir = Path(model_dir)
    inter_path = model_dir / "inter.onnx"
    cache = open_cache(cache_dir)
    model = ScoringModel.load(model_dir / "intra.onnx",
                              inter_path if inter_path.is_file() else None, spec=cache.spec())
    parts = split_nights(cache, _split_of(model, split))
    if not parts["train"] or not parts["val"]:
        raise CalibrationUnavailable(
            f"the cache {cache_dir} holds {len(parts['train'])} training and "
            f"{len(parts['val'])} validation night(s) of the split; both are needed "
            "(statistics from train, threshold and temperature from val)")
    rows = _training_rows(cache, parts["train"], max_train, seed)
    log.info("calibrate: %d training epochs, %d validation and %d test night(s)", len(rows),
             len(parts["val"]), len(parts["test"]))
    _, train_feats = _outputs(model, cache.images, rows)
    val = [_Night(model, cache, i) for i in parts["val"]]
    test = [_Night(model, cache, i) for i in parts["test"]]
    fam = Familiarity.fit(train_feats, cache.labels[rows], np.concatenate([n.feats for n in val]),
                          quantile)
    temps = _fit_temperatures(model, val)
    report = _report(model, temps, fam, train_feats, len(parts["train"]), val, test)
    if write:
        _stamp(model_dir, cache.spec(), fam, report)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m training.calibrate", description=__doc__.splitlines()[0])
    parser.add_argument("model_dir", type=Path, help="folder with intra.onnx (+ inter.onnx)")
    parser.add_argument("--cache", type=Path, required=True, help="epoch cache folder")
    parser.add_argument("--split", help="split file or committed split name (default: the "
                        "split recorded in the intra model)")
    parser.add_argument("--quantile", type=float, default=0.99,
                        help="threshold quantile of the validation distances (default 0.99)")
    parser.add_argument("--max-train", type=int, default=MAX_TRAIN,
                        help=f"training epochs used at most (default {MAX_TRAIN})")
    parser.add_argument("--seed", type=int, default=0, help="seed of the training subsample")
    args = parser.parse_args(argv)
    report = calibrate(args.model_dir, args.cache, args.split, quantile=args.quantile,
                       max_train=args.max_train, seed=args.seed)
    print(json.dumps({k: report[k] for k in ("temperature", "threshold", "quantile")}
                     | {p: {k: report[p].get(k) for k in ("ece_before", "ece_after",
                                                          "unfamiliar_fraction")}
                        for p in ("val", "test")}, indent=1))
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
