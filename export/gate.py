"""The one comparison behind every gate on what ships: tensors, then the final stages.

An exported, quantized or fp16 model is accepted only when it matches the fp32 reference on
what reaches the bedside, not only on the intra model's logits. The shipped stages come from
the inter model reading the intra model's ``features`` through the window rule, so every gate
(ONNX parity in :mod:`export.checkpoints`, int8 in :mod:`export.quantize`, TensorRT
``--verify`` in :mod:`export.tensorrt_build`, runtime backends such as torch-cuda fp16 through
:func:`gate_backend`) compares, with the routines below:

- every output tensor (:func:`compare_outputs`): largest absolute difference, relative
  difference (that difference over the reference's largest magnitude), for logits the argmax
  agreement and largest softmax difference, for features the cosine similarity per row;
- the final stages of whole nights in time order (:func:`compare_stages`): the candidate
  :class:`~edge_scorer.inference.scorer.ScoringModel` (e.g. the candidate intra model with the
  reference inter model reading the candidate's features) against the reference one, both
  scoring each night with :meth:`ScoringModel.proba_from_outputs` (the runtime's window rule,
  ``edge_scorer.inference.windows.sliding_window_proba``): stage agreement and largest difference
  of the final probabilities.

A failed check is named in :attr:`GateReport.failures` (``"intra/features: max abs diff 0.31 >
0.05"``, ``"final stages: agreement 0.962 < 0.99"``); :meth:`GateReport.check` raises
:class:`GateFailed` with them. Thresholds per precision are in :data:`THRESHOLDS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field, replace
from typing import Any

import numpy as np

from edge_scorer.inference.windows import softmax as _softmax

from .epochs import feature_windows


class GateFailed(ValueError):
    """A candidate differs from its reference beyond a threshold (the message names what)."""

    def __init__(self, message: str, report: GateReport) -> None:
        super().__init__(message)
        self.report = report


@dataclass(frozen=True)
class GateThresholds:
    """Limits of one gate.

    Attributes
    ----------
    max_abs_diff : mapping
        Largest allowed absolute difference per tensor kind (``"logits"``, ``"features"``;
        a tensor is of the kind its name ends with); other tensors are reported, not gated.
    min_argmax_agreement : float
        Least argmax agreement of logits tensors.
    min_feature_cosine : float
        Least cosine similarity of any feature row with its reference.
    min_stage_agreement : float
        Least agreement of the final stages over the nights.
    max_stage_proba_diff : float
        Largest allowed difference of a final probability.
    """

    max_abs_diff: Mapping[str, float]
    min_argmax_agreement: float
    min_feature_cosine: float
    min_stage_agreement: float
    max_stage_proba_diff: float

    def with_agreement(self, agreement: float) -> GateThresholds:
        """The same limits with both agreement thresholds (argmax and stages) set."""
        if not 0.0 <= agreement <= 1.0:
            raise ValueError(f"an agreement threshold must be within 0..1, got {agreement}")
        return replace(self, min_argmax_agreement=agreement, min_stage_agreement=agreement)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON)."""
        out = asdict(self)
        out["max_abs_diff"] = dict(self.max_abs_diff)
        return out


#: Limits per precision of the candidate. fp32: another runtime of the same graph (ONNX vs
#: torch, TensorRT fp32); fp16; int8 (measured on the shipped model, dynamic int8: features
#: max abs diff 0.05-0.07 of a range of about 4, cosine >= 0.9997, final stages 0.98-1.0).
THRESHOLDS: dict[str, GateThresholds] = {
    "fp32": GateThresholds({"logits": 1e-3, "features": 1e-3}, 0.999, 0.99999, 0.999, 1e-3),
    "fp16": GateThresholds({"logits": 0.05, "features": 0.05}, 0.99, 0.999, 0.99, 0.05),
    "int8": GateThresholds({"logits": 0.5, "features": 0.25}, 0.95, 0.99, 0.95, 0.15),
}
#: Limits that never fail (benchmarks that only report).
REPORT_ONLY = GateThresholds({}, 0.0, -1.0, 0.0, float("inf"))


@dataclass
class GateReport:
    """Per-tensor and final-stage comparison of a candidate with its reference.

    Attributes
    ----------
    tensors : dict
        ``{name: {"max_abs_diff", "rel_diff", "n", ...}}``; logits add ``argmax_agreement`` and
        ``max_abs_diff_proba``, features ``min_cosine`` and ``mean_cosine``.
    stages : dict or None
        ``{"agreement", "max_abs_diff_proba", "n_epochs", "n_nights", "nights": [...]}``.
    failures : list of str
        One line per failed check, naming the tensor or ``final stages``.
    thresholds : dict
        The limits used.
    """

    tensors: dict[str, dict[str, float]] = field(default_factory=dict)
    stages: dict[str, Any] | None = None
    failures: list[str] = field(default_factory=list)
    thresholds: dict[str, Any] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        """True when no check failed."""
        return not self.failures

    def merge(self, other: GateReport) -> GateReport:
        """This report with ``other``'s tensors, stages and failures added."""
        return GateReport({**self.tensors, **other.tensors}, other.stages or self.stages,
                          [*self.failures, *other.failures],
                          other.thresholds or self.thresholds)

    def to_dict(self) -> dict[str, Any]:
        """Plain values (JSON), with ``passed``."""
        return {"passed": self.passed, "tensors": self.tensors, "stages": self.stages,
                "failures": list(self.failures), "thresholds": self.thresholds}

    def check(self, what: str) -> None:
        """Raise :class:`GateFailed` (``"<what>: <failures>"``) unless every check passed."""
        if self.failures:
            raise GateFailed(f"{what}: " + "; ".join(self.failures), self)

    def summary(self) -> str:
        """One line per tensor and one for the final stages."""
        lines = []
        for name, t in self.tensors.items():
            extra = (f", argmax agreement {t['argmax_agreement']:.4f}" if "argmax_agreement" in t
                     else f", min cosine {t['min_cosine']:.6f}" if "min_cosine" in t else "")
            lines.append(f"{name}: max abs diff {t['max_abs_diff']:.3g} (rel "
                         f"{t['rel_diff']:.3g}){extra} (n={t['n']})")
        if self.stages is not None:
            s = self.stages
            lines.append(f"final stages: agreement {s['agreement']:.4f}, max |dp| "
                         f"{s['max_abs_diff_proba']:.3g} ({s['n_epochs']} epochs of "
                         f"{s['n_nights']} night(s))")
        return "\n".join(lines)


def tensor_stats(name: str, reference: np.ndarray, candidate: np.ndarray) -> dict[str, float]:
    """Differences of one tensor (see :class:`GateReport`); its kind is the end of its name.

    Raises
    ------
    ValueError
        Different shapes, or non-finite candidate values.
    """
    ref = np.asarray(reference, dtype=np.float64)
    got = np.asarray(candidate, dtype=np.float64)
    if ref.shape != got.shape:
        raise ValueError(f"{name}: reference {ref.shape} and candidate {got.shape} differ in "
                         "shape")
    if not np.isfinite(got).all():
        raise ValueError(f"{name}: the candidate gives non-finite values")
    diff = float(np.abs(ref - got).max()) if ref.size else 0.0
    scale = float(np.abs(ref).max()) if ref.size else 0.0
    out: dict[str, float] = {"max_abs_diff": diff, "rel_diff": diff / scale if scale else diff,
                             "n": int(np.prod(ref.shape[:-1])) if ref.ndim else 1}
    if name.endswith("logits") and ref.ndim:
        agree = ref.argmax(-1) == got.argmax(-1)
        out["argmax_agreement"] = float(agree.mean()) if agree.size else 1.0
        out["max_abs_diff_proba"] = float(np.abs(_softmax(ref) - _softmax(got)).max()
                                          if ref.size else 0.0)
    elif name.endswith("features") and ref.ndim:
        a, b = ref.reshape(-1, ref.shape[-1]), got.reshape(-1, got.shape[-1])
        norm = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
        cos = np.where(norm > 0, (a * b).sum(1) / np.where(norm > 0, norm, 1.0), 1.0)
        out["min_cosine"] = float(cos.min()) if cos.size else 1.0
        out["mean_cosine"] = float(cos.mean()) if cos.size else 1.0
    return out


def _tensor_failures(name: str, stats: Mapping[str, float], t: GateThresholds) -> list[str]:
    kind = next((k for k in t.max_abs_diff if name.endswith(k)), None)
    fails = []
    if kind is not None and stats["max_abs_diff"] > t.max_abs_diff[kind]:
        fails.append(f"{name}: max abs diff {stats['max_abs_diff']:.3g} > "
                     f"{t.max_abs_diff[kind]:g}")
    if stats.get("argmax_agreement", 1.0) < t.min_argmax_agreement:
        fails.append(f"{name}: argmax agreement {stats['argmax_agreement']:.4f} < "
                     f"{t.min_argmax_agreement:g}")
    if stats.get("min_cosine", 1.0) < t.min_feature_cosine:
        fails.append(f"{name}: min cosine {stats['min_cosine']:.6f} < "
                     f"{t.min_feature_cosine:g}")
    return fails


def compare_outputs(reference: Mapping[str, np.ndarray], candidate: Mapping[str, np.ndarray],
                    thresholds: GateThresholds = THRESHOLDS["fp32"]) -> GateReport:
    """Compare every tensor of ``reference`` with the candidate's tensor of the same name.

    Parameters
    ----------
    reference, candidate : mapping of str to ndarray
        Outputs by name (``logits``, ``features``, or prefixed: ``intra/features``).
    thresholds : GateThresholds

    Returns
    -------
    GateReport
        Tensors and failures (no stages).

    Raises
    ------
    ValueError
        A reference tensor the candidate lacks, or shapes that differ.
    """
    report = GateReport(thresholds=thresholds.to_dict())
    for name, ref in reference.items():
        if name not in candidate:
            raise ValueError(f"the candidate gives no {name!r} (it gives {sorted(candidate)})")
        stats = tensor_stats(name, ref, candidate[name])
        report.tensors[name] = stats
        report.failures.extend(_tensor_failures(name, stats, thresholds))
    return report


def _night_outputs(model: Any, images: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One night through a ScoringModel: intra logits, features and final probabilities."""
    logits, feats = model.epoch_outputs(images)
    return logits, feats, model.proba_from_outputs(logits, feats)


def _inter_logits(model: Any, feats: np.ndarray, batch_size: int = 256) -> np.ndarray:
    windows = feature_windows(feats, model.window)
    return np.concatenate([model.inter_logits(windows[i:i + batch_size])
                           for i in range(0, len(windows), batch_size)])


def as_nights(nights: np.ndarray | Sequence[np.ndarray]) -> list[np.ndarray]:
    """One night (an image array) or several, as a checked list of nights."""
    if isinstance(nights, np.ndarray):
        nights = [nights]
    out = [np.asarray(n) for n in nights]
    if not out or any(len(n) == 0 for n in out):
        raise ValueError("the gate needs at least one night of rendered epochs, none empty")
    return out


def stage_stats(reference: Sequence[np.ndarray], candidate: Sequence[np.ndarray],
                thresholds: GateThresholds = THRESHOLDS["fp32"]) -> GateReport:
    """Compare the final probabilities ``(N, 5)`` of whole nights (one array per night).

    Returns
    -------
    GateReport
        ``stages``: agreement of the argmax stages over every epoch, largest probability
        difference, and both per night; failures name ``final stages``.
    """
    per_night, agree, worst = [], 0, 0.0
    for ref, got in zip(reference, candidate, strict=True):
        ref, got = np.asarray(ref, np.float64), np.asarray(got, np.float64)
        if ref.shape != got.shape:
            raise ValueError(f"final probabilities {ref.shape} and {got.shape} differ in shape")
        same = int((ref.argmax(1) == got.argmax(1)).sum())
        dp = float(np.abs(ref - got).max()) if ref.size else 0.0
        per_night.append({"epochs": len(ref), "agreement": same / max(len(ref), 1),
                          "max_abs_diff_proba": dp})
        agree, worst = agree + same, max(worst, dp)
    n = sum(night["epochs"] for night in per_night)
    stages = {"agreement": agree / max(n, 1), "max_abs_diff_proba": worst, "n_epochs": n,
              "n_nights": len(per_night), "nights": per_night}
    fails = []
    if stages["agreement"] < thresholds.min_stage_agreement:
        fails.append(f"final stages: agreement {stages['agreement']:.4f} < "
                     f"{thresholds.min_stage_agreement:g}")
    if worst > thresholds.max_stage_proba_diff:
        fails.append(f"final stages: max prob diff {worst:.3g} > "
                     f"{thresholds.max_stage_proba_diff:g}")
    return GateReport(stages=stages, failures=fails, thresholds=thresholds.to_dict())


def compare_stages(reference: Any, candidate: Any, nights: np.ndarray | Sequence[np.ndarray],
                   thresholds: GateThresholds = THRESHOLDS["fp32"]) -> GateReport:
    """Final stages of two :class:`~edge_scorer.inference.scorer.ScoringModel` over whole
    nights (each in time order): see :func:`stage_stats`.

    Each night is scored as the runtime scores it (:meth:`ScoringModel.epoch_outputs`, then
    :meth:`ScoringModel.proba_from_outputs`: the sliding-window rule over the features).
    """
    nights = as_nights(nights)
    ref = [_night_outputs(reference, n)[2] for n in nights]
    got = [_night_outputs(candidate, n)[2] for n in nights]
    return stage_stats(ref, got, thresholds)


def compare_models(reference: Any, candidate: Any, nights: np.ndarray | Sequence[np.ndarray],
                   thresholds: GateThresholds = THRESHOLDS["fp32"]) -> GateReport:
    """The whole gate: tensors of the models the candidate replaces, and the final stages.

    Parameters
    ----------
    reference, candidate : ScoringModel
        The fp32 pair, and the pair that would ship (typically one model replaced: the
        candidate intra model with the reference inter model, which then reads the
        candidate's features; or the reference intra model with a candidate inter model).
    nights : ndarray or sequence of ndarray
        Rendered uint8 epochs of one night, or one array per night, each in time order.
    thresholds : GateThresholds

    Returns
    -------
    GateReport
        ``intra/logits`` and ``intra/features`` (when the intra backends differ; over every
        epoch), ``inter/logits`` (when the inter backends differ; every window of the
        reference features, so the inter model alone is compared), and the final stages.
    """
    nights = as_nights(nights)
    refs, gots, tensors = [], [], {"ref": {}, "got": {}}
    for images in nights:
        r_logits, r_feats, r_proba = _night_outputs(reference, images)
        g_logits, g_feats, g_proba = _night_outputs(candidate, images)
        refs.append(r_proba)
        gots.append(g_proba)
        pairs = {}
        if candidate.intra is not reference.intra:
            pairs.update({"intra/logits": (r_logits, g_logits),
                          "intra/features": (r_feats, g_feats)})
        if reference.inter is not None and candidate.inter is not reference.inter:
            pairs["inter/logits"] = (_inter_logits(reference, r_feats),
                                     _inter_logits(candidate, r_feats))
        for name, (r, g) in pairs.items():
            tensors["ref"].setdefault(name, []).append(r)
            tensors["got"].setdefault(name, []).append(g)
    report = compare_outputs({k: np.concatenate(v) for k, v in tensors["ref"].items()},
                             {k: np.concatenate(v) for k, v in tensors["got"].items()},
                             thresholds)
    return report.merge(stage_stats(refs, gots, thresholds))


def scoring_pair(intra: Any, inter: Any = None, *, intra_backend: Any = None,
                 inter_backend: Any = None, threads: int | None = None) -> tuple[Any, Any]:
    """The reference :class:`~edge_scorer.inference.scorer.ScoringModel` (ONNX Runtime CPU
    fp32 on ``intra`` and ``inter``) and the candidate, in which ``intra_backend`` and/or
    ``inter_backend`` replace the reference's models (the others are shared, so that e.g. the
    reference inter model reads the candidate intra model's features).

    Parameters
    ----------
    intra, inter : path-like
        The fp32 ONNX models (``inter`` None: intra-only stages).
    intra_backend, inter_backend : Backend, optional
        Candidate backends of those models.
    threads : int, optional
        ONNX Runtime intra-op threads of the reference.
    """
    from edge_scorer.inference.backends import OrtBackend
    from edge_scorer.inference.scorer import ScoringModel
    from edge_scorer.io.spec import load_spec

    ref_intra = OrtBackend(intra, threads=threads)
    ref_inter = OrtBackend(inter, threads=threads) if inter is not None else None
    if inter_backend is not None and ref_inter is None:
        raise ValueError("a candidate inter model needs the reference inter model file")
    spec = load_spec(ref_intra.metadata.get("render_spec", "sleep-edf"))
    reference = ScoringModel(ref_intra, ref_inter, spec)
    candidate = ScoringModel(intra_backend or ref_intra, inter_backend or ref_inter, spec)
    return reference, candidate


def gate_backend(intra: Any, inter: Any, nights: np.ndarray | Sequence[np.ndarray], *,
                 backend: str, precision: str = "fp32", which: str = "both",
                 thresholds: GateThresholds | None = None, **options: Any) -> GateReport:
    """Gate a runtime backend (e.g. ``torch-cuda`` with ``half=True``: fp16) against ONNX
    Runtime CPU fp32 on the same model files.

    Parameters
    ----------
    intra, inter : path-like
        The exported ONNX models (weights beside them for the torch backends).
    nights : ndarray or sequence of ndarray
        Rendered epochs of whole nights, in time order.
    backend : str
        A backend name of :func:`~edge_scorer.inference.backends.create_backend`.
    precision : {"fp32", "fp16", "int8"}
        Picks the default :data:`THRESHOLDS`.
    which : {"both", "intra", "inter"}
        Which models run on the candidate backend (the other on the reference).
    thresholds : GateThresholds, optional
        Instead of ``THRESHOLDS[precision]``.
    options
        Passed to ``create_backend`` (``half``, ``cuda_graphs``, ``precision``, ...).

    Returns
    -------
    GateReport
    """
    from edge_scorer.inference.backends import create_backend

    if which not in ("both", "intra", "inter"):
        raise ValueError(f"which must be 'both', 'intra' or 'inter', got {which!r}")
    if precision not in THRESHOLDS:
        raise ValueError(f"unknown precision {precision!r}; use one of {sorted(THRESHOLDS)}")
    reference, candidate = scoring_pair(
        intra, inter,
        intra_backend=create_backend(intra, backend, **options) if which != "inter" else None,
        inter_backend=create_backend(inter, backend, **options) if which != "intra" else None)
    return compare_models(reference, candidate, nights, thresholds or THRESHOLDS[precision])


__all__ = ["REPORT_ONLY", "THRESHOLDS", "GateFailed", "GateReport", "GateThresholds",
           "as_nights", "compare_models", "compare_outputs", "compare_stages", "gate_backend",
           "scoring_pair", "stage_stats", "tensor_stats"]
