"""Offline evaluation of trained models on the nights of a split part (``edge-scorer evaluate``).

Methods (each gives per-epoch class probabilities; the stage is their argmax):

``intra``
    The intra-epoch ViT alone: softmax of its logits for each epoch image.
``intra+inter``
    SleepXViT: the inter transformer on the ViT's epoch features, windows of ``L = 10`` with
    stride 1, the softmax of every window covering an epoch summed (the runtime window rule,
    :mod:`edge_scorer.inference.windows`, the one the live engine runs).
``stqs``
    STQS on the cache's conditioned signals, sequences of ``S = 8`` epochs with a label per
    epoch. ``stqs_mode="sliding"`` (default) scores every window of 8 with stride 1 and sums
    the softmax per epoch, exactly like the inter model (and like the live engine would);
    ``"blocks"`` scores non-overlapping blocks of 8 from the night's start (the last block
    padded with copies of the last epoch), each epoch seen once, as STQS was trained.

For the sequence methods scored with sliding windows, accuracy and kappa are also computed as
a function of the look-ahead ``k = 0..L-1`` (:func:`edge_scorer.inference.windows.lookahead_proba`):
what the live engine shows for an epoch once ``k`` later epochs have arrived (``k = L-1`` is the
offline result). :mod:`training.lookahead` computes the same table for exported (ONNX) models.

Metrics (:mod:`edge_scorer.stats.metrics`) exclude epochs unscored in the reference (label -1);
*pooled* metrics count every epoch of the part together (per-night confusion matrices summed).
:meth:`EvaluationReport.write` gives ``report.json``, ``report.md``, ``confusion.png``,
``lookahead.png`` and ``predictions.csv``.
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.stages import CLASS_NAMES, Stage
from edge_scorer.stats.metrics import Agreement, agreement

log = get_logger("training.evaluate")

__all__ = ["EXCLUSION_NOTE", "EvaluationReport", "NightPrediction", "curve_predictions",
           "evaluate"]

SEQUENCE_METHODS = ("intra+inter", "stqs")
EXCLUSION_NOTE = (
    "Epochs unscored in the reference (label -1: movement time, '?', artifact) are excluded "
    "from every metric; 'n' counts the scored epochs."
)


@dataclass
class NightPrediction:
    """Reference and predictions of one night.

    Attributes
    ----------
    name, subject : str
    labels : ndarray of int8, shape (n,)
        Reference stages (-1 unscored).
    epoch : ndarray of int, shape (n,)
        Epoch index of each row in the night's recording.
    proba : dict of str to ndarray (n, 5)
        Class probabilities per method.
    lookahead : dict of str to ndarray (K, n)
        Predicted stages at look-ahead ``k = 0..K-1`` per sequence method.
    """

    name: str
    subject: str
    labels: np.ndarray
    epoch: np.ndarray
    proba: dict[str, np.ndarray]
    lookahead: dict[str, np.ndarray] = field(default_factory=dict)

    def predictions(self, method: str) -> np.ndarray:
        """Predicted stages (argmax of the probabilities) of ``method``."""
        return np.argmax(self.proba[method], axis=1).astype(np.int8)


@dataclass
class EvaluationReport:
    """Evaluation of one or more methods on a set of nights; see :meth:`write`."""

    nights: list[NightPrediction]
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def methods(self) -> list[str]:
        """Evaluated methods, in the order intra, intra+inter, stqs."""
        have = set(self.nights[0].proba) if self.nights else set()
        return [m for m in ("intra", "intra+inter", "stqs") if m in have]

    @property
    def primary(self) -> str:
        """The headline method: the most complete one (intra+inter > stqs > intra)."""
        for m in ("intra+inter", "stqs", "intra"):
            if m in self.methods:
                return m
        raise ValueError("the report holds no method")

    @property
    def epoch_s(self) -> float:
        return float(self.meta.get("epoch_s", 30.0))

    def per_night(self, method: str) -> list[Agreement]:
        """Agreement of ``method`` on each night."""
        return [agreement(n.labels, n.predictions(method)) for n in self.nights]

    def pooled(self, method: str) -> Agreement:
        """Agreement over every epoch of every night (confusion matrices summed)."""
        per = self.per_night(method)
        return Agreement.from_confusion(sum(a.confusion for a in per),
                                        sum(a.n_excluded for a in per))

    def lookahead_methods(self) -> list[str]:
        return [m for m in SEQUENCE_METHODS if self.nights and m in self.nights[0].lookahead]

    def lookahead(self, method: str) -> tuple[list[Agreement], list[list[Agreement]]]:
        """Pooled and per-night agreement of ``method`` at each look-ahead ``k``."""
        n_k = self.nights[0].lookahead[method].shape[0]
        per = [[agreement(n.labels, n.lookahead[method][k]) for k in range(n_k)]
               for n in self.nights]
        pooled = [Agreement.from_confusion(sum(p[k].confusion for p in per),
                                           sum(p[k].n_excluded for p in per))
                  for k in range(n_k)]
        return pooled, per

    # -- serialisation -------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """Everything in ``report.json`` (NaN written as null)."""
        methods = {}
        for m in self.methods:
            per = self.per_night(m)
            rows = [{"night": n.name, "subject": n.subject, "n": a.n,
                     "n_excluded": a.n_excluded, "accuracy": _num(a.accuracy),
                     "kappa": _num(a.kappa), "macro_f1": _num(a.macro_f1)}
                    for n, a in zip(self.nights, per)]
            means = {k: _num(_nanmean([getattr(a, k) for a in per]))
                     for k in ("accuracy", "kappa", "macro_f1")}
            methods[m] = {"pooled": self.pooled(m).as_dict(), "mean_over_nights": means,
                          "nights": rows}
        look = {}
        for m in self.lookahead_methods():
            pooled, per = self.lookahead(m)
            ks = list(range(len(pooled)))
            look[m] = {
                "k": ks, "delay_s": [k * self.epoch_s for k in ks],
                "pooled": {key: [_num(getattr(a, key)) for a in pooled]
                           for key in ("accuracy", "kappa", "macro_f1")},
                "nights": [{"night": n.name, "accuracy": [_num(a.accuracy) for a in p],
                            "kappa": [_num(a.kappa) for a in p]}
                           for n, p in zip(self.nights, per)],
            }
        n_all = int(sum(len(n.labels) for n in self.nights))
        n_uns = int(sum(int((n.labels < 0).sum()) for n in self.nights))
        return {
            "meta": self.meta, "primary": self.primary, "class_names": list(CLASS_NAMES),
            "note": EXCLUSION_NOTE, "n_nights": len(self.nights), "n_epochs": n_all,
            "n_unscored_reference": n_uns, "methods": methods, "lookahead": look,
        }

    def write(self, out_dir: str | Path) -> dict[str, Path]:
        """Write ``report.json``, ``report.md``, ``confusion.png``, ``lookahead.png`` and
        ``predictions.csv`` into ``out_dir`` (created); returns their paths by name."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        data = self.to_dict()
        paths = {"json": out / "report.json", "md": out / "report.md",
                 "confusion": out / "confusion.png", "lookahead": out / "lookahead.png",
                 "predictions": out / "predictions.csv"}
        paths["json"].write_text(json.dumps(data, indent=2) + "\n")
        paths["md"].write_text(_markdown(self, data))
        plot_confusions({m: self.pooled(m) for m in self.methods}, paths["confusion"])
        plot_lookahead(data, paths["lookahead"])
        with open(paths["predictions"], "w", newline="") as fh:
            w = csv.writer(fh)
            w.writerow(["night", "subject", "epoch", "reference", *self.methods])
            for n in self.nights:
                preds = [n.predictions(m) for m in self.methods]
                for i in range(len(n.labels)):
                    w.writerow([n.name, n.subject, int(n.epoch[i]),
                                Stage(int(n.labels[i])).label,
                                *(Stage(int(p[i])).label for p in preds)])
        log.info("wrote the evaluation report to %s", out)
        return paths


def _num(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


def _nanmean(values: list[float]) -> float:
    v = [x for x in values if math.isfinite(x)]
    return float(np.mean(v)) if v else math.nan


def _f(x: float | None) -> str:
    return "n/a" if x is None else f"{x:.3f}"


def _markdown(report: EvaluationReport, data: dict) -> str:
    meta = data["meta"]
    lines = ["# Evaluation report", ""]
    if meta:
        lines += [f"- {k}: `{v}`" for k, v in meta.items() if not isinstance(v, dict)]
        for k, v in meta.items():
            if isinstance(v, dict):
                lines.append(f"- {k}: " + ", ".join(f"{a} `{b}`" for a, b in v.items()))
        lines.append("")
    lines += [f"{data['n_nights']} nights, {data['n_epochs']} epochs, "
              f"{data['n_unscored_reference']} unscored in the reference.", "",
              f"**{EXCLUSION_NOTE}** Pooled metrics count every epoch of the part together.",
              "", "## Pooled", "",
              "| method | n | accuracy | kappa | macro-F1 | " + " | ".join(
                  f"F1 {c}" for c in CLASS_NAMES) + " |",
              "|---" * (5 + len(CLASS_NAMES)) + "|"]
    for m, d in data["methods"].items():
        p = d["pooled"]
        lines.append(f"| {m} | {p['n']} | {_f(p['accuracy'])} | {_f(p['kappa'])} | "
                     f"{_f(p['macro_f1'])} | "
                     + " | ".join(_f(p["f1"][c]) for c in CLASS_NAMES) + " |")
    for m, d in data["methods"].items():
        mean = d["mean_over_nights"]
        lines.append(f"\nMean over nights, {m}: accuracy {_f(mean['accuracy'])}, kappa "
                     f"{_f(mean['kappa'])}, macro-F1 {_f(mean['macro_f1'])}.")
    methods = list(data["methods"])
    lines += ["", "## Per night", "",
              "| night | subject | n | " + " | ".join(
                  f"{m} acc | {m} kappa | {m} MF1" for m in methods) + " |",
              "|---" * (3 + 3 * len(methods)) + "|"]
    for i, night in enumerate(report.nights):
        cells = []
        for m in methods:
            r = data["methods"][m]["nights"][i]
            cells += [_f(r["accuracy"]), _f(r["kappa"]), _f(r["macro_f1"])]
        n = data["methods"][methods[0]]["nights"][i]["n"]
        lines.append(f"| {night.name} | {night.subject} | {n} | " + " | ".join(cells) + " |")
    for m, d in data["lookahead"].items():
        lines += ["", f"## Look-ahead ({m})", "",
                  "Stage shown for an epoch once k later epochs have arrived (live engine); "
                  f"k = {d['k'][-1]} is the offline result.", "",
                  "| k (epochs) | delay | accuracy | kappa | macro-F1 |", "|---|---|---|---|---|"]
        for j, k in enumerate(d["k"]):
            lines.append(f"| {k} | {d['delay_s'][j] / 60:g} min | "
                         f"{_f(d['pooled']['accuracy'][j])} | {_f(d['pooled']['kappa'][j])} | "
                         f"{_f(d['pooled']['macro_f1'][j])} |")
    primary = report.pooled(report.primary)
    lines += ["", f"## Confusion matrix ({report.primary}, pooled)", "",
              "Rows: reference, columns: predicted.", "",
              "| | " + " | ".join(CLASS_NAMES) + " |", "|---" * (1 + len(CLASS_NAMES)) + "|"]
    for name, row in zip(CLASS_NAMES, primary.confusion.tolist()):
        lines.append(f"| **{name}** | " + " | ".join(str(v) for v in row) + " |")
    lines += ["", "![confusion matrices](confusion.png)", "", "![look-ahead](lookahead.png)",
              "", "Per-epoch predictions: `predictions.csv`.", ""]
    return "\n".join(lines)


# -- figures (matplotlib, Agg) ----------------------------------------------------------------
def _pyplot():
    import matplotlib

    matplotlib.use("Agg", force=False)
    import matplotlib.pyplot as plt

    return plt


def plot_confusions(pooled: dict[str, Agreement], path: str | Path) -> Path:
    """Row-normalised confusion matrices (colour = share of the reference row, text = count and
    percentage), one panel per method."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, len(pooled), figsize=(4.6 * len(pooled), 4.4), squeeze=False)
    for ax, (method, ag) in zip(axes[0], pooled.items()):
        cm = ag.confusion.astype(np.float64)
        rows = cm.sum(axis=1, keepdims=True)
        share = np.divide(cm, rows, out=np.zeros_like(cm), where=rows > 0)
        ax.imshow(share, cmap="Blues", vmin=0.0, vmax=1.0)
        for (i, j), v in np.ndenumerate(ag.confusion):
            ax.text(j, i, f"{v}\n{100 * share[i, j]:.0f}%", ha="center", va="center",
                    fontsize=8, color="white" if share[i, j] > 0.55 else "black")
        ticks = range(len(ag.class_names))
        ax.set_xticks(ticks, ag.class_names)
        ax.set_yticks(ticks, ag.class_names)
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
        ax.set_title(f"{method}: acc {ag.accuracy:.3f}, kappa {ag.kappa:.3f}\n"
                     f"n = {ag.n} (unscored excluded)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


def plot_lookahead(data: dict, path: str | Path) -> Path:
    """Pooled accuracy and kappa against look-ahead (thin lines: nights), with the intra-only
    model as a flat reference (it does not use later epochs)."""
    plt = _pyplot()
    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    epoch_s = float(data["meta"].get("epoch_s", 30.0))
    for ax, key, label in zip(axes, ("accuracy", "kappa"), ("accuracy", "Cohen's kappa")):
        for i, (method, d) in enumerate(data["lookahead"].items()):
            color = f"C{i}"
            for night in d["nights"]:
                y = [np.nan if v is None else v for v in night[key]]
                ax.plot(d["k"], y, color=color, alpha=0.25, lw=0.8)
            y = [np.nan if v is None else v for v in d["pooled"][key]]
            ax.plot(d["k"], y, "o-", color=color, lw=2, label=f"{method} (pooled)")
        intra = data["methods"].get("intra")
        if intra is not None and intra["pooled"][key] is not None:
            ax.axhline(intra["pooled"][key], color="grey", ls="--", label="intra only")
        if not data["lookahead"]:
            ax.text(0.5, 0.5, "no sequence model: look-ahead does not apply", ha="center",
                    transform=ax.transAxes, fontsize=9)
        ax.set_xlabel(f"look-ahead k (epochs of {epoch_s:g} s)")
        ax.set_ylabel(label)
        ax.set_xlim(-0.3, 9.3)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, loc="lower right")
    fig.suptitle("Live scoring: agreement once k later epochs have arrived (thin lines: "
                 "single nights)", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return Path(path)


# -- running the models -------------------------------------------------------------------------
def _check_ckpt(kind: str, path: Path, ckpt: dict, arch: str, cache) -> None:
    got = ckpt.get("cfg", {}).get("arch")
    if got != arch:
        raise ValueError(f"{path} holds a {got!r} model, but --{kind} needs a {arch!r} model "
                         "checkpoint")
    spec = (ckpt.get("meta") or {}).get("spec") or {}
    if not spec.get("hash"):
        log.warning("%s has no spec hash in its meta; cannot check it against the cache", path)
    elif spec["hash"] != cache.spec_hash:
        raise ValueError(
            f"checkpoint {path} was trained on spec {spec.get('name')!r} hash {spec['hash']}, "
            f"but the cache {cache.path} holds spec {cache.spec_name!r} hash "
            f"{cache.spec_hash}; evaluate on a cache rendered with the checkpoint's spec "
            "(rebuild it) or use a checkpoint trained on this one"
        )


def curve_predictions(window_softmax: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    """The offline probabilities ``(n, C)`` and the stages at look-ahead ``k = 0..L-1``
    ``(L, n)`` of one night, from its window softmax (the runtime rule,
    :func:`edge_scorer.inference.windows.lookahead_curve`)."""
    from edge_scorer.inference.windows import lookahead_curve

    curve = lookahead_curve(window_softmax, n)
    return curve[-1], np.stack([np.argmax(p, 1) for p in curve]).astype(np.int8)


def _check_request(intra, inter, stqs, stqs_mode: str, part: str) -> None:
    """Refuse an evaluation request that cannot run (before anything is loaded)."""
    from training.splits import PARTS

    if intra is None and stqs is None:
        raise ValueError("nothing to evaluate: give an intra checkpoint (optionally with an "
                         "inter one) and/or an STQS checkpoint")
    if inter is not None and intra is None:
        raise ValueError("the inter model scores intra-model features: give --intra too")
    if stqs_mode not in ("sliding", "blocks"):
        raise ValueError(f"stqs_mode must be 'sliding' or 'blocks', got {stqs_mode!r}")
    if part not in PARTS:
        raise ValueError(f"part must be one of {PARTS}, got {part!r}")


def _part_nights(cache, split_dict: dict, part: str) -> list[int]:
    nights = cache.nights_of(split_dict[part])
    if not nights:
        raise ValueError(
            f"no night of the {part!r} subjects {split_dict[part]} is in the cache {cache.path} "
            f"(its subjects: {cache.subjects()}); use the split the cache was built for")
    return nights


def _load_models(cache, device: str, **paths: str | Path | None) -> dict[str, tuple]:
    """``{kind: (model in eval mode, checkpoint dict, path)}`` of the given checkpoints,
    checked against each other and the cache."""
    from training.checkpoint import load_checkpoint

    models: dict[str, tuple] = {}
    for kind, arch in (("intra", "vit"), ("inter", "inter"), ("stqs", "stqs")):
        path = paths.get(kind)
        if path is not None:
            model, ckpt = load_checkpoint(path, map_location=device)
            _check_ckpt(kind, Path(path), ckpt, arch, cache)
            models[kind] = (model.eval(), ckpt, Path(path))
    if "inter" in models and models["inter"][0].config.in_dim != models["intra"][0].num_features:
        raise ValueError(
            f"the inter model takes {models['inter'][0].config.in_dim}-d features but the intra "
            f"model gives {models['intra'][0].num_features}-d; use the inter checkpoint trained "
            "on this intra model's features")
    if "stqs" in models and cache.signals is None:
        raise ValueError(f"the cache {cache.path} has no conditioned signals (STQS input); "
                         "rebuild it with signals=True (build_cache(..., signals=True))")
    return models


def _score_night(models: dict[str, tuple], cache, index: int, *, batch_size: int,
                 stqs_mode: str, device: str) -> NightPrediction:
    """Every method's probabilities (and look-ahead stages) on one night of the cache."""
    import torch

    from edge_scorer.inference.windows import block_proba, softmax, window_softmax
    from training.features import extract_features

    info, sl = cache.nights[index], cache.night_slice(index)
    rows = np.arange(sl.start, sl.stop)
    n = len(rows)
    proba: dict[str, np.ndarray] = {}
    look: dict[str, np.ndarray] = {}
    with torch.no_grad():
        if "intra" in models:
            vit = models["intra"][0]
            feats = torch.as_tensor(np.asarray(extract_features(vit, cache, rows, batch_size)),
                                    dtype=torch.float32, device=device)
            proba["intra"] = softmax(vit.forward_head(feats).cpu().numpy().astype(np.float64))
            if "inter" in models:
                m = models["inter"][0]
                ws = window_softmax(m, feats, L=m.config.seq_len, batch_size=256)
                proba["intra+inter"], look["intra+inter"] = curve_predictions(ws, n)
        if "stqs" in models:
            m = models["stqs"][0]
            x = torch.as_tensor(np.asarray(cache.signals[sl], dtype=np.float32), device=device)
            if stqs_mode == "blocks":
                proba["stqs"] = block_proba(m, x, m.config.seq_len, batch_size)
            else:
                ws = window_softmax(m, x, L=m.config.seq_len, batch_size=batch_size)
                proba["stqs"], look["stqs"] = curve_predictions(ws, n)
    log.info("evaluated night %s (%d epochs)", info["name"], n)
    return NightPrediction(info["name"], str(info["subject"]), cache.labels[sl].copy(),
                           np.asarray(cache.epoch[sl]), proba, look)


def _meta(cache, split, part: str, results: list[NightPrediction]) -> dict[str, Any]:
    """The report's provenance: cache, split, part, spec, subjects, time."""
    return {
        "cache": str(cache.path), "split": str(split) if isinstance(split, str | Path) else None,
        "part": part, "spec": {"name": cache.spec_name, "hash": cache.spec_hash},
        "epoch_s": float(cache.meta.get("epoch_s", 30.0)),
        "subjects": ", ".join(sorted({r.subject for r in results})),
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
    }


def evaluate(
    cache,
    split,
    *,
    intra: str | Path | None = None,
    inter: str | Path | None = None,
    stqs: str | Path | None = None,
    part: str = "test",
    batch_size: int = 64,
    stqs_mode: str = "sliding",
    device: str = "cpu",
) -> EvaluationReport:
    """Evaluate checkpoints on the nights of one split part of an epoch cache.

    Parameters
    ----------
    cache : path-like or EpochCache
        The epoch cache (:func:`training.dataset.open_cache`).
    split : path-like, str or dict
        Split file, committed split name, or ``{"train": ..., "val": ..., "test": ...}``.
    intra, inter, stqs : path-like, optional
        Checkpoints (``.pt`` or run folder). ``inter`` needs ``intra`` (its features).
    part : {"test", "val", "train"}
        Which part's nights to score (original nights only: augmented training copies,
        :mod:`training.augment`, are never scored).
    batch_size : int
        Images / windows per forward pass.
    stqs_mode : {"sliding", "blocks"}
        How STQS sequences cover a night (see the module docstring).
    device : str
        Torch device.

    Returns
    -------
    EvaluationReport

    Raises
    ------
    ValueError
        No model, ``inter`` without ``intra``, a checkpoint of the wrong kind or spec hash,
        no night of the part in the cache, STQS on a cache without signals.
    FileNotFoundError
        A missing cache, split or checkpoint.
    """
    from training.dataset import open_cache
    from training.splits import load_split

    _check_request(intra, inter, stqs, stqs_mode, part)
    cache = open_cache(cache) if isinstance(cache, str | Path) else cache
    split_dict = load_split(split) if isinstance(split, str | Path) else split
    nights = _part_nights(cache, split_dict, part)
    models = _load_models(cache, device, intra=intra, inter=inter, stqs=stqs)
    results = [_score_night(models, cache, i, batch_size=batch_size, stqs_mode=stqs_mode,
                            device=device) for i in nights]
    meta = _meta(cache, split, part, results)
    for kind, (model, ckpt, path) in models.items():
        meta[f"{kind}_checkpoint"] = {"path": str(path), "preset": model.cfg.get("preset"),
                                      "epoch": ckpt.get("epoch")}
    if "stqs" in models:
        meta["stqs_mode"] = stqs_mode
    return EvaluationReport(results, meta)
