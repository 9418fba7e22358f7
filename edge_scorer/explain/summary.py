"""A night ready to explain, and per-stage summaries of its explanations (``explain --all``).

:class:`ExplainedNight` reads, conditions, renders and scores a PSG file once (the ONNX
engine gives the features and the final sliding-window probabilities), keeping the
conditioned epochs for the occlusion analyses. :func:`summarize_night` explains up to
``per_stage`` epochs of every scored stage (a seeded sample) and averages, per stage: the
normalised relevance map, the shares per row and per second, the inter-epoch relevance by
offset from the explained epoch and the occlusion drops.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.explain.occlusion import OcclusionResult, ProbaFn, occlusion_analysis
from edge_scorer.io.spec import RenderSpec
from edge_scorer.stages import CLASS_NAMES

if TYPE_CHECKING:
    from edge_scorer.explain.aggregate import Aggregates
    from edge_scorer.explain.relevance import TorchModels

log = get_logger("explain.summary")


@dataclass
class ExplainedNight:
    """One night as the model sees it, scored once.

    Attributes
    ----------
    spec : RenderSpec
    images : ndarray of uint8 (N, H, W)
    epochs : ndarray of float32 (N, n_rows, epoch_samples)
        Conditioned epochs (what the images are rendered from).
    features : ndarray (N, D)
        Intra CLS features (engine backend).
    intra_logits : ndarray (N, C)
    proba : ndarray (N, C)
        Final probabilities (sliding-window rule, or intra softmax without inter model).
    true_stages : ndarray of int8 (N,) or None
        From a hypnogram, when given.
    source : str
    valid : ndarray of bool (N,) or None
        Epochs whose ``proba`` is computed (all of them unless scored with ``only``).
    """

    spec: RenderSpec
    images: np.ndarray
    epochs: np.ndarray
    features: np.ndarray
    intra_logits: np.ndarray
    proba: np.ndarray
    true_stages: np.ndarray | None = None
    source: str = ""
    valid: np.ndarray | None = None

    @property
    def n_epochs(self) -> int:
        return len(self.images)

    @property
    def stages(self) -> np.ndarray:
        """Final scored stage of every epoch (-1 where not scored, see ``valid``)."""
        stages = np.nan_to_num(self.proba, nan=-1.0).argmax(1)
        if self.valid is not None:
            stages[~self.valid] = -1
        return stages

    @classmethod
    def from_file(cls, psg: str | Path, model, spec: RenderSpec | None = None,
                  hypnogram: str | Path | None = None,
                  channel_overrides: Mapping[str, str] | None = None,
                  only: Sequence[int] | None = None) -> ExplainedNight:
        """Read, condition, render and score a PSG file with a
        :class:`~edge_scorer.inference.scorer.ScoringModel`.

        With ``only`` (epoch indices), the models run on those epochs' neighbourhoods alone:
        features within two window lengths and final probabilities within one window length
        of each; the rest of ``features``, ``intra_logits`` and ``proba`` is NaN (``valid``
        says which probabilities hold).
        """
        from edge_scorer.dsp.conditioning import epochs_from_signal
        from edge_scorer.dsp.render_night import condition_recording, render_night

        spec = spec or model.spec
        night = render_night(psg, spec, hypnogram, channel_overrides)
        conditioned, _ = condition_recording(night.recording, spec)
        epochs = epochs_from_signal(conditioned, spec).astype(np.float32)[:night.n_epochs]
        n = night.n_epochs
        if only is None:
            logits, feats = model.epoch_outputs(night.images)
            proba = model.proba_from_outputs(logits, feats)
            valid = np.ones(n, dtype=bool)
        else:
            logits, feats, proba, valid = _score_around(model, night.images, only)
        return cls(spec, night.images, epochs, feats, logits, proba, night.stages, str(psg),
                   valid)
    def context(self, index: int) -> tuple[np.ndarray | None, np.ndarray | None]:
        """Conditioned epochs before and after ``index`` (filter context), None at the ends."""
        before = self.epochs[index - 1] if index > 0 else None
        after = self.epochs[index + 1] if index + 1 < self.n_epochs else None
        return before, after


def _score_around(model, images: np.ndarray, only: Sequence[int]):
    """Intra outputs within ``2 (L - 1)`` epochs of each index, final probabilities within
    ``L - 1`` (exactly what the whole night would give there); NaN elsewhere."""
    n, reach = len(images), max(0, model.window - 1)
    need, valid = np.zeros(n, dtype=bool), np.zeros(n, dtype=bool)
    for i in only:
        if not 0 <= int(i) < n:
            raise ValueError(f"epoch {i} is outside the night (0..{n - 1})")
        need[max(0, i - 2 * reach):i + 2 * reach + 1] = True
        valid[max(0, i - reach):i + reach + 1] = True
    logits = feats = proba = None
    edges = np.flatnonzero(np.diff(np.concatenate(([0], need.view(np.int8), [0]))))
    for lo, hi in zip(edges[::2], edges[1::2]):
        lg, ft = model.epoch_outputs(images[lo:hi])
        if logits is None:
            logits = np.full((n, lg.shape[1]), np.nan)
            feats = np.full((n, ft.shape[1]), np.nan, dtype=np.float32)
            proba = np.full((n, lg.shape[1]), np.nan)
        logits[lo:hi], feats[lo:hi] = lg, ft
        proba[lo:hi] = model.proba_from_outputs(lg, ft)
    proba[~valid] = np.nan
    return logits, feats, proba, valid


@dataclass
class StageSummary:
    """Mean explanation of the sampled epochs scored as one stage.

    ``n_scored`` epochs of the night got the stage; ``epochs`` were explained. Maps and shares
    are means of per-epoch fractions; ``agreement`` is the fraction of the explained epochs
    whose hypnogram stage equals ``stage`` (None without a hypnogram).
    """

    stage: int
    n_scored: int
    epochs: list[int]
    agreement: float | None
    mean_image: np.ndarray
    mean_grid: np.ndarray
    row_share: np.ndarray
    row_density: np.ndarray
    second_share: np.ndarray
    row_second: np.ndarray
    inter_share: np.ndarray | None
    inter_context_share: np.ndarray | None
    time_drop: np.ndarray | None
    band_drop: np.ndarray | None
    modality_drop: np.ndarray | None

    def to_dict(self, night: NightSummary) -> dict:
        out = {
            "stage": CLASS_NAMES[self.stage], "n_scored": self.n_scored,
            "epochs": self.epochs, "agreement": self.agreement,
            "mean_grid": self.mean_grid.tolist(),
            "row_share": dict(zip(night.row_names, self.row_share.tolist())),
            "row_density": dict(zip(night.row_names, self.row_density.tolist())),
            "second_share": self.second_share.tolist(),
            "row_second": {r: v.tolist() for r, v in zip(night.row_names, self.row_second)},
        }
        if self.inter_share is not None:
            out["inter_share_by_offset"] = dict(zip(night.inter_offsets.tolist(),
                                                    self.inter_share.tolist()))
            out["inter_context_share_by_offset"] = dict(zip(
                night.inter_offsets.tolist(), self.inter_context_share.tolist()))
        if self.time_drop is not None:
            out["time_drop"] = {g: d.tolist() for g, d in zip(night.time_groups,
                                                              self.time_drop)}
            out["band_drop"] = {g: dict(zip(night.band_names, d.tolist()))
                                for g, d in zip(night.band_groups, self.band_drop)}
            out["modality_drop"] = dict(zip(night.modality_names,
                                            self.modality_drop.tolist()))
        return out


@dataclass
class NightSummary:
    """Per-stage summaries of one night (see :func:`summarize_night`)."""

    method: str
    spec_name: str
    source: str
    n_epochs: int
    row_names: tuple[str, ...]
    bin_edges_s: np.ndarray
    inter_offsets: np.ndarray
    stages: list[StageSummary]
    time_groups: list[str] = field(default_factory=list)
    time_starts_s: np.ndarray | None = None
    window_s: float = 0.0
    band_groups: list[str] = field(default_factory=list)
    band_names: list[str] = field(default_factory=list)
    modality_names: list[str] = field(default_factory=list)
    elapsed_s: float = 0.0

    def to_dict(self) -> dict:
        """JSON-ready numbers."""
        return {
            "method": self.method, "spec": self.spec_name, "source": self.source,
            "n_epochs": self.n_epochs, "row_names": list(self.row_names),
            "bin_edges_s": self.bin_edges_s.tolist(),
            "time_starts_s": None if self.time_starts_s is None else
            self.time_starts_s.tolist(), "window_s": self.window_s,
            "elapsed_s": self.elapsed_s,
            "stages": {CLASS_NAMES[s.stage]: s.to_dict(self) for s in self.stages},
        }


def summarize_night(night: ExplainedNight, models, proba_fn: ProbaFn | None = None, *,
                    per_stage: int = 10, method: str = "chefer", seed: int = 0,
                    per_row: bool = False, fill: str = "zero",
                    progress: Callable[[int, int], None] | None = None) -> NightSummary:
    """Explain up to ``per_stage`` epochs of every scored stage and average per stage.

    Parameters
    ----------
    night : ExplainedNight
    models : TorchModels
        PyTorch models for relevance.
    proba_fn : callable, optional
        Images -> probabilities for the occlusion analyses (e.g.
        :func:`~.occlusion.onnx_proba_fn`); None skips occlusion.
    per_stage : int
        Most epochs explained per stage (a seeded random sample of the epochs scored so).
    method : str
        Relevance method.
    seed : int
        Sampling seed.
    per_row : bool
        Also per-row time/band occlusion (slower).
    fill : str
        Occlusion mask value (``zero`` or ``gap``).
    progress : callable, optional
        Called with ``(done, total)`` after each explained epoch.
    """
    if per_stage < 1:
        raise ValueError(f"per_stage must be at least 1, got {per_stage}")
    t0 = time.perf_counter()
    spec = night.spec
    picks = _pick_epochs(night.stages, per_stage, np.random.default_rng(seed))
    total, done = sum(len(v) for v in picks.values()), 0
    length = int(models.inter.config.seq_len) if models.inter is not None else 1
    offsets = np.arange(-(length - 1), length)
    summaries, first_occ = [], None
    for s, idx in picks.items():
        parts = []
        for i in idx.tolist():
            parts.append(_explain_one(night, models, proba_fn, s, i, offsets, method=method,
                                      per_row=per_row, fill=fill))
            first_occ = first_occ or parts[-1].occ
            done += 1
            if progress is not None:
                progress(done, total)
        summaries.append(_stage_summary(night, s, idx, parts))
    out = NightSummary(method=method, spec_name=spec.name, source=night.source,
                       n_epochs=night.n_epochs, row_names=spec.row_names,
                       bin_edges_s=parts[0].agg.bin_edges_s, inter_offsets=offsets,
                       stages=summaries)
    if first_occ is not None:
        _copy_occlusion_axes(out, first_occ)
    out.elapsed_s = time.perf_counter() - t0
    log.info("explained %d epochs of %s in %.1f s", total, night.source or "the night",
             out.elapsed_s)
    return out


def _pick_epochs(
    scored: np.ndarray, per_stage: int, rng: np.random.Generator
) -> dict[int, np.ndarray]:
    """A seeded random sample of at most ``per_stage`` epochs of each scored stage (sorted)."""
    picks = {}
    for s in range(len(CLASS_NAMES)):
        idx = np.flatnonzero(scored == s)
        if len(idx):
            picks[s] = np.sort(rng.choice(idx, size=min(per_stage, len(idx)), replace=False))
    return picks


@dataclass
class _EpochParts:
    """What one explained epoch adds to its stage's averages."""

    grid: np.ndarray
    agg: Aggregates
    inter: np.ndarray | None
    inter_ctx: np.ndarray | None
    occ: OcclusionResult | None


def _explain_one(
    night: ExplainedNight,
    models: TorchModels,
    proba_fn: ProbaFn | None,
    stage: int,
    i: int,
    offsets: np.ndarray,
    *,
    method: str,
    per_row: bool,
    fill: str,
) -> _EpochParts:
    """Relevance (normalized grid, aggregates, inter shares by offset) and the occlusion
    analysis (with ``proba_fn``) of epoch ``i`` for class ``stage``."""
    from edge_scorer.explain.epoch import explain_epoch

    spec = night.spec
    ex = explain_epoch(models, night.images[i], spec, method=method, target=stage,
                       features=night.features if models.inter is not None else None,
                       index=i)
    g = ex.grid / ex.grid.sum() if ex.grid.sum() > 0 else ex.grid
    inter = inter_ctx = None
    if ex.inter is not None:
        inter = _by_offset(ex.inter.epochs - i, ex.inter.share, offsets)
        inter_ctx = _by_offset(ex.inter.epochs - i, ex.inter.context_share, offsets)
    occ = None
    if proba_fn is not None:
        before, after = night.context(i)
        occ = occlusion_analysis(night.epochs[i], spec, proba_fn, target=stage,
                                 before=before, after=after, per_row=per_row, fill=fill)
    return _EpochParts(g, ex.aggregates, inter, inter_ctx, occ)


def _stage_summary(
    night: ExplainedNight, s: int, idx: np.ndarray, parts: list[_EpochParts]
) -> StageSummary:
    """Average the explained epochs ``idx`` of stage ``s``."""
    aggs = [p.agg for p in parts]
    inter = [p.inter for p in parts if p.inter is not None]
    inter_ctx = [p.inter_ctx for p in parts if p.inter_ctx is not None]
    occs = [p.occ for p in parts if p.occ is not None]
    return StageSummary(
        stage=s, n_scored=int((night.stages == s).sum()), epochs=idx.tolist(),
        agreement=None if night.true_stages is None else
        float(np.mean(night.true_stages[idx] == s)),
        mean_image=night.images[idx].astype(np.float32).mean(0) / 255.0,
        mean_grid=np.mean([p.grid for p in parts], 0),
        row_share=np.mean([a.row_share for a in aggs], 0),
        row_density=np.mean([a.row_density for a in aggs], 0),
        second_share=np.mean([a.second_share for a in aggs], 0),
        row_second=np.mean([a.row_second for a in aggs], 0),
        inter_share=np.mean(inter, 0) if inter else None,
        inter_context_share=np.mean(inter_ctx, 0) if inter_ctx else None,
        time_drop=_mean(occs, "time_drop"), band_drop=_mean(occs, "band_drop"),
        modality_drop=_mean(occs, "modality_drop"))


def _by_offset(rel_offsets: np.ndarray, values: np.ndarray, offsets: np.ndarray
               ) -> np.ndarray:
    out = np.zeros(len(offsets))
    out[rel_offsets - offsets[0]] = values
    return out


def _mean(occs: list[OcclusionResult], attr: str) -> np.ndarray | None:
    return np.mean([getattr(o, attr) for o in occs], 0) if occs else None


def _copy_occlusion_axes(out: NightSummary, occ: OcclusionResult) -> None:
    out.time_groups, out.time_starts_s = list(occ.time_groups), occ.time_starts_s
    out.window_s = occ.window_s
    out.band_groups, out.band_names = list(occ.band_groups), list(occ.band_names)
    out.modality_names = list(occ.modality_names)


__all__ = ["ExplainedNight", "NightSummary", "StageSummary", "summarize_night"]
