"""Fidelity of the relevance methods: deletion tests on held-out epochs, and their cost.

``python -m edge_scorer.bench fidelity [--nights 2] [--seed 7000] [--duration-h 8]
[--per-stage 20] [--steps 20] [--random-repeats 3] [--timing-epochs 20] [--json OUT]``

Simulates fresh nights (seeds the shipped model never saw), scores them with the shipped model
through ONNX Runtime and samples up to ``--per-stage`` epochs per intra-predicted stage.

- **Intra deletion**: the model's ``grid x grid`` image patches (``grid = 224 / patch``: 7 x 7
  for the shipped model's 32-px patches) are set to background (0) in order of
  decreasing relevance, 5 % of them per step, and the intra model's probability of the class it
  predicted on the intact image is read after each step (ONNX). The area under that curve
  (AUC, fraction deleted 0..1) is lower when the most relevant patches really carry the
  decision. Each method is compared with random orders on the same epochs (paired).
- **Inter deletion**: in the window placing the epoch at position 5, the other 9 epochs'
  features are replaced by the night's mean feature in order of decreasing relevance; the
  curve is the inter model's probability of its predicted class at that position.
- **Time per explanation** (one epoch, this machine), and the engine's per-epoch ONNX time,
  to decide whether gradient-free rollout should be computed inside the ONNX engine.

A method whose AUC is not below the random order's is reported as a bug.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.stages import CLASS_NAMES

if TYPE_CHECKING:
    from edge_scorer.explain.summary import ExplainedNight
    from edge_scorer.inference.scorer import ScoringModel

log = get_logger("bench.fidelity")


def deletion_images(image: np.ndarray, order: np.ndarray, grid: int, steps: int,
                    fill: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Copies of ``image`` with the first ``round(f * n)`` patches of ``order`` replaced, for
    ``f`` in ``0, 1/steps, ..., 1``: by 0 (background), or by the same pixels of ``fill``.
    Returns the images and the fractions."""
    h, w = image.shape[:2]
    ph, pw = h // grid, w // grid
    fracs = np.linspace(0.0, 1.0, steps + 1)
    counts = np.round(fracs * grid * grid).astype(int)
    out = np.repeat(image[None], len(fracs), axis=0)
    for k, c in enumerate(counts):
        for p in order[:c]:
            r, col = divmod(int(p), grid)
            rs, cs = slice(r * ph, (r + 1) * ph), slice(col * pw, (col + 1) * pw)
            out[k, rs, cs] = 0 if fill is None else fill[rs, cs]
    return out, fracs


def auc(fracs: np.ndarray, curve: np.ndarray) -> float:
    """Area under a deletion curve over the deleted fraction (trapezoid rule)."""
    return float(np.sum((curve[1:] + curve[:-1]) * np.diff(fracs)) / 2)


def _orders(maps: dict[str, np.ndarray], rng: np.random.Generator, n_random: int, n: int
            ) -> dict[str, list[np.ndarray]]:
    out = {m: [np.argsort(-v.ravel(), kind="stable")] for m, v in maps.items()}
    out["random"] = [rng.permutation(n) for _ in range(n_random)]
    return out


def _paired(results: dict[str, list[float]], base: str = "random") -> dict[str, dict]:
    """Mean AUC per method, and its paired difference to the random order (95 % CI)."""
    rand = np.array(results[base])
    out = {}
    for m, vals in results.items():
        v = np.array(vals)
        row = {"auc": float(v.mean()), "sem": float(v.std(ddof=1) / np.sqrt(len(v)))}
        if m != base:
            d = v - rand
            half = 1.96 * d.std(ddof=1) / np.sqrt(len(d))
            row.update(diff=float(d.mean()), ci=[float(d.mean() - half), float(d.mean() + half)],
                       better_frac=float(np.mean(d < 0)),
                       better_than_random=bool(d.mean() + half < 0))
        out[m] = row
    return out


def _sample(nights, per_stage: int, rng) -> list[tuple[int, int]]:
    picks = []
    for s in range(len(CLASS_NAMES)):
        cand = [(k, i) for k, night in enumerate(nights)
                for i in np.flatnonzero(night.intra_logits.argmax(1) == s)]
        if cand:
            sel = rng.choice(len(cand), size=min(per_stage, len(cand)), replace=False)
            picks += [cand[j] for j in sorted(sel)]
    return picks


def intra_deletion(nights, picks, models, proba_fn, steps: int, n_random: int, rng,
                   fill: np.ndarray | None = None) -> tuple[dict, dict]:
    """Deletion AUC per method (and random), overall and per predicted stage."""
    from edge_scorer.explain.relevance import METHODS, intra_relevance

    aucs: dict[str, list[float]] = {m: [] for m in (*METHODS, "random")}
    stages: list[int] = []
    curves: dict[str, list[np.ndarray]] = {m: [] for m in aucs}
    for k, i in picks:
        image = nights[k].images[i]
        res = intra_relevance(models.intra, image[None], methods=METHODS)
        grid = res.maps[METHODS[0]].shape[-1]
        orders = _orders({m: v[0] for m, v in res.maps.items()}, rng, n_random, grid * grid)
        batch, index = [], []
        for m, olist in orders.items():
            for o in olist:
                imgs, fracs = deletion_images(image, o, grid, steps, fill)
                batch.append(imgs)
                index.append(m)
        proba = proba_fn(np.concatenate(batch))[:, int(res.targets[0])]
        proba = proba.reshape(len(index), steps + 1)
        for m in aucs:
            rows = proba[[j for j, name in enumerate(index) if name == m]]
            aucs[m].append(float(np.mean([auc(fracs, r) for r in rows])))
            curves[m].append(rows.mean(0))
        stages.append(int(res.targets[0]))
    per_stage = {}
    st = np.array(stages)
    for s in np.unique(st):
        per_stage[CLASS_NAMES[s]] = {m: float(np.mean(np.array(v)[st == s]))
                                     for m, v in aucs.items()}
    summary = _paired(aucs)
    for m in summary:
        summary[m]["curve"] = np.mean(curves[m], 0).tolist()
        summary[m]["drop_at_10pct"] = float(np.mean([c[0] - c[round(0.1 * steps)]
                                                     for c in curves[m]]))
    return summary, {"per_stage_auc": per_stage, "n": len(picks),
                     "fractions": np.linspace(0, 1, steps + 1).tolist()}


def inter_deletion(nights, picks, models, scoring, n_random: int, rng) -> dict:
    """Deletion of the other epochs of a window, in relevance order (see module docstring)."""
    from edge_scorer.explain.relevance import METHODS, inter_relevance
    from edge_scorer.inference.windows import softmax

    length = int(models.inter.config.seq_len)
    pos = length // 2
    aucs: dict[str, list[float]] = {m: [] for m in (*METHODS, "random")}
    for k, i in picks:
        feats = nights[k].features
        start = int(np.clip(i - pos, 0, len(feats) - length))
        p = i - start
        window = feats[start:start + length].astype(np.float32)
        res = inter_relevance(models.inter, window[None], p, methods=METHODS)
        others = np.array([j for j in range(length) if j != p])
        orders = {m: [others[np.argsort(-v[0][others], kind="stable")]]
                  for m, v in res.maps.items()}
        orders["random"] = [rng.permutation(others) for _ in range(n_random)]
        neutral = feats.mean(0).astype(np.float32)
        fracs = np.linspace(0, 1, len(others) + 1)
        for m, olist in orders.items():
            vals = []
            for o in olist:
                wins = np.repeat(window[None], len(others) + 1, axis=0)
                for c in range(1, len(others) + 1):
                    wins[c:, o[c - 1]] = neutral
                pr = softmax(scoring.inter_logits(wins)[:, p].astype(np.float64))
                vals.append(auc(fracs, pr[:, int(res.targets[0])]))
            aucs[m].append(float(np.mean(vals)))
    return _paired(aucs)


def _median_time(fn, n: int) -> float:
    times = []
    for j in range(n):
        t0 = time.perf_counter()
        fn(j)
        times.append(time.perf_counter() - t0)
    return float(np.median(times))


def timings(nights, picks, models, scoring, n: int) -> dict[str, float]:
    """Median seconds per single-epoch explanation (after a warm-up)."""
    import torch

    from edge_scorer.explain.epoch import explain_epoch, explain_window_night
    from edge_scorer.explain.occlusion import occlusion_analysis, onnx_proba_fn
    from edge_scorer.explain.relevance import METHODS, intra_relevance

    sel = [picks[j % len(picks)] for j in range(n)]
    img = [nights[k].images[i] for k, i in sel]
    intra_relevance(models.intra, img[0][None], methods=METHODS)  # warm-up
    out = {}
    for m in METHODS:
        out[f"intra {m}"] = _median_time(
            lambda j, m=m: intra_relevance(models.intra, img[j][None], methods=m), n)
        out[f"inter {m} (all windows of an epoch)"] = _median_time(
            lambda j, m=m: explain_window_night(models.inter, nights[sel[j][0]].features,
                                                sel[j][1], method=m,
                                                temperature=models.temperature), n)
    out["explain_epoch chefer (intra + inter + aggregates)"] = _median_time(
        lambda j: explain_epoch(models, img[j], nights[0].spec, method="chefer",
                                features=nights[sel[j][0]].features, index=sel[j][1]), n)
    pf = onnx_proba_fn(scoring)
    out["occlusion (time per row, bands, modalities; ONNX)"] = _median_time(
        lambda j: occlusion_analysis(nights[sel[j][0]].epochs[sel[j][1]], nights[0].spec, pf,
                                     before=nights[sel[j][0]].context(sel[j][1])[0],
                                     after=nights[sel[j][0]].context(sel[j][1])[1]),
        min(n, max(3, n // 4)))
    scoring.epoch_outputs(img[0][None])
    out["engine: ONNX intra forward (1 epoch)"] = _median_time(
        lambda j: scoring.epoch_outputs(img[j][None]), n)
    with torch.no_grad():
        out["torch intra forward (1 epoch)"] = _median_time(
            lambda j: models.intra(torch.from_numpy(img[j][None])), n)
    return out


def _table(title: str, summary: dict) -> list[str]:
    lines = [title, "| method | AUC (lower = more faithful) | vs random: diff [95% CI] | "
             "epochs better than random | verdict |", "|---|---|---|---|---|"]
    for m, r in summary.items():
        if m == "random":
            lines.append(f"| random | {r['auc']:.3f} +- {r['sem']:.3f} | | | baseline |")
            continue
        verdict = "better than random" if r["better_than_random"] else \
            "NOT better than random (bug to report)"
        lines.append(f"| {m} | {r['auc']:.3f} +- {r['sem']:.3f} | {r['diff']:+.3f} "
                     f"[{r['ci'][0]:+.3f}, {r['ci'][1]:+.3f}] | {r['better_frac']:.0%} | "
                     f"{verdict} |")
    return lines


def _timing_lines(times: dict[str, float]) -> list[str]:
    lines = ["", "| time per explanation (one epoch, median) | ms |", "|---|---|"]
    lines += [f"| {k} | {v * 1e3:.1f} |" for k, v in times.items()]
    roll = times["intra rollout"]
    onnx = times["engine: ONNX intra forward (1 epoch)"]
    return lines + ["", f"rollout in torch costs {roll * 1e3:.1f} ms per epoch on demand, "
                    f"{roll / onnx:.1f}x the engine's ONNX forward ({onnx * 1e3:.1f} ms) and "
                    f"{roll / 30.0:.2%} of a 30-s epoch: computed on demand in torch, not as "
                    "extra ONNX outputs."]


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and print the tables."""
    args = _parse_args(argv)
    import torch

    from edge_scorer.explain.occlusion import onnx_proba_fn
    from edge_scorer.explain.relevance import TorchModels
    from edge_scorer.inference.scorer import ScoringModel

    torch.set_num_threads(max(1, torch.get_num_threads()))
    rng = np.random.default_rng(args.seed)
    scoring = ScoringModel.load()
    models = TorchModels.load()
    nights = _held_out_nights(scoring, args.nights, args.seed, args.duration_h)
    picks = _sample(nights, args.per_stage, rng)
    if args.timing_only:
        times = timings(nights, picks, models, scoring, args.timing_epochs)
        print("\n".join(_timing_lines(times)))
        return 0
    pf = onnx_proba_fn(scoring)
    t1 = time.perf_counter()
    fill = None
    if args.fill == "mean":
        fill = np.round(np.concatenate([n.images for n in nights]).mean(0)).astype(np.uint8)
    intra, extra = intra_deletion(nights, picks, models, pf, args.steps,
                                  args.random_repeats, rng, fill)
    inter = inter_deletion(nights, picks, models, scoring, args.random_repeats, rng)
    t_del = time.perf_counter() - t1
    times = timings(nights, picks, models, scoring, args.timing_epochs)
    n_stage = {CLASS_NAMES[s]: int(sum(1 for k, i in picks if
                                       nights[k].intra_logits[i].argmax() == s))
               for s in range(len(CLASS_NAMES))}
    lines = [f"held-out epochs: {len(picks)} from {args.nights} simulated nights (seed "
             f"{args.seed}+), per intra-predicted stage {n_stage}; deletion in {t_del:.0f} s",
             ""]
    lines += _report_lines(args, intra, extra, inter, times)
    print("\n".join(lines))
    bad = [m for m, r in intra.items() if m != "random" and not r["better_than_random"]]
    if bad:
        log.warning("relevance no better than random for %s: a bug to report", bad)
    if args.json:
        Path(args.json).write_text(json.dumps({
            "args": vars(args), "n_per_stage": n_stage, "intra": intra, "intra_extra": extra,
            "inter": inter, "times_s": times}, indent=1) + "\n")
    return 0


def _parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The benchmark's command line."""
    ap = argparse.ArgumentParser(prog="python -m edge_scorer.bench fidelity",
                                 description=__doc__.split("\n\n")[0])
    ap.add_argument("--nights", type=int, default=2)
    ap.add_argument("--seed", type=int, default=7000,
                    help="simulation seed (the shipped model was trained on seeds 0-15)")
    ap.add_argument("--duration-h", type=float, default=8.0)
    ap.add_argument("--per-stage", type=int, default=20)
    ap.add_argument("--steps", type=int, default=20, help="deletion steps")
    ap.add_argument("--random-repeats", type=int, default=3)
    ap.add_argument("--timing-epochs", type=int, default=20)
    ap.add_argument("--fill", choices=("zero", "mean"), default="zero",
                    help="deleted patches become background (zero) or the held-out nights' "
                         "mean image (mean)")
    ap.add_argument("--timing-only", action="store_true",
                    help="skip the deletion tests (time per explanation only)")
    ap.add_argument("--json", help="write all numbers here")
    return ap.parse_args(argv)


def _held_out_nights(
    scoring: ScoringModel, n_nights: int, seed: int, duration_h: float
) -> list[ExplainedNight]:
    """Simulate ``n_nights`` nights from ``seed`` and score them once."""
    from edge_scorer.explain.summary import ExplainedNight
    from edge_scorer.simulate import simulate_nights

    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory() as tmp:
        pairs = simulate_nights(tmp, n_nights, seed=seed, duration_h=duration_h)
        nights = [ExplainedNight.from_file(p, scoring, hypnogram=h) for p, h in pairs]
    log.info("simulated and scored %d nights in %.1f s", len(nights), time.perf_counter() - t0)
    return nights


def _report_lines(
    args: argparse.Namespace, intra: dict, extra: dict, inter: dict, times: dict[str, float]
) -> list[str]:
    """The deletion tables (intra, per stage, inter) and the timings."""
    lines = _table(f"intra deletion ({args.steps} steps of {100 / args.steps:g} % of the "
                   f"patches, filled with {args.fill}; random = mean of "
                   f"{args.random_repeats} orders)", intra)
    lines += ["", "drop of p(predicted class) after deleting the top 10 % patches: " + ", ".join(
        f"{m} {r['drop_at_10pct']:.3f}" for m, r in intra.items())]
    lines += ["", "intra deletion AUC per predicted stage:",
              "| stage | " + " | ".join(intra) + " |", "|---" * (len(intra) + 1) + "|"]
    for s, row in extra["per_stage_auc"].items():
        lines.append(f"| {s} | " + " | ".join(f"{row[m]:.3f}" for m in intra) + " |")
    lines += [""] + _table("inter deletion (the 9 other epochs of the window replaced by the "
                           "night's mean feature)", inter)
    return lines + _timing_lines(times)


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
