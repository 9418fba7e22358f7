"""Agreement between two hypnograms: confusion matrix, accuracy, Cohen's kappa, F1 (numpy only).

Used by offline evaluation (``edge-scorer evaluate``), ``score --hypnogram``, the demo and the
realism bench. :func:`expected_calibration_error` measures how well probabilities are
calibrated (``training.calibrate``). Stage codes are the canonical ones
(:mod:`edge_scorer.stages`): ``0..4`` are W, N1, N2, N3, REM and ``-1`` is UNSCORED.

Conventions
-----------
* Epochs that are UNSCORED (``-1``) in *either* sequence are excluded from every metric (an
  expert's "Movement time"/"?" epoch has no reference stage; an epoch the engine could not score
  has no prediction). :attr:`Agreement.n_excluded` counts them.
* Confusion matrices have the reference (``y_true``) in rows and the prediction in columns.
* F1 of a class that appears in neither sequence is undefined (NaN); the macro F1 is the mean
  over the classes that appear in at least one of them (scikit-learn's default label set).
* With no scored epoch every metric is NaN; Cohen's kappa is NaN when chance agreement is 1
  (both sequences one and the same single class), as in scikit-learn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edge_scorer.stages import CLASS_NAMES, N_CLASSES, Stage


def _codes(y: Any, name: str) -> np.ndarray:
    arr = np.asarray(y)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be 1-D (one stage code per epoch), got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iu":
        if arr.dtype.kind == "f" and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)):
            arr = arr.astype(np.int64)
        else:
            raise ValueError(
                f"{name} must hold integer stage codes (-1 unscored, 0..4), got dtype "
                f"{arr.dtype}; convert labels with edge_scorer.stages.parse_stage first"
            )
    return arr.astype(np.int64)


def _pair(y_true: Any, y_pred: Any, n_classes: int) -> tuple[np.ndarray, np.ndarray, int]:
    """Validated codes with UNSCORED epochs (in either) removed, and how many were removed."""
    if n_classes < 1:
        raise ValueError(f"n_classes must be at least 1, got {n_classes}")
    t, p = _codes(y_true, "y_true"), _codes(y_pred, "y_pred")
    if t.shape != p.shape:
        raise ValueError(
            f"y_true and y_pred must have one code per epoch each, got {t.size} and {p.size} "
            "epochs; align the hypnograms first (edge_scorer.io.psg.align_hypnogram)"
        )
    for arr, name in ((t, "y_true"), (p, "y_pred")):
        bad = (arr < Stage.UNSCORED) | (arr >= n_classes)
        if bad.any():
            raise ValueError(
                f"{name} holds codes {sorted(set(arr[bad].tolist()))[:5]} outside "
                f"-1..{n_classes - 1} (first at epoch {int(np.flatnonzero(bad)[0])}); "
                "-1 marks unscored epochs"
            )
    keep = (t >= 0) & (p >= 0)
    return t[keep], p[keep], int(t.size - keep.sum())


def confusion_matrix(y_true: Any, y_pred: Any, n_classes: int = N_CLASSES) -> np.ndarray:
    """Count matrix ``C[i, j]`` = epochs of reference class ``i`` predicted as ``j``.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n_epochs,)
        Reference and predicted stage codes; epochs with ``-1`` in either are ignored.
    n_classes : int
        Number of classes (5: W, N1, N2, N3, REM).

    Returns
    -------
    ndarray of int64, shape (n_classes, n_classes)
    """
    t, p, _ = _pair(y_true, y_pred, n_classes)
    return np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes)


def _check_cm(cm: np.ndarray) -> np.ndarray:
    cm = np.asarray(cm)
    if cm.ndim != 2 or cm.shape[0] != cm.shape[1] or (cm < 0).any():
        raise ValueError(f"expected a square non-negative confusion matrix, got shape {cm.shape}")
    return cm.astype(np.float64)


def accuracy_from_cm(cm: np.ndarray) -> float:
    """Fraction of epochs on the diagonal (NaN for an empty matrix)."""
    cm = _check_cm(cm)
    n = cm.sum()
    return float(np.trace(cm) / n) if n else math.nan


def kappa_from_cm(cm: np.ndarray) -> float:
    """Cohen's kappa ``(p_o - p_e) / (1 - p_e)`` of a confusion matrix.

    ``p_o`` is the observed agreement (accuracy) and ``p_e = sum_i rows_i * cols_i / n**2`` the
    agreement expected by chance from the two marginal distributions. NaN when ``n = 0`` or
    ``p_e = 1``.
    """
    cm = _check_cm(cm)
    n = cm.sum()
    if not n:
        return math.nan
    p_o = np.trace(cm) / n
    p_e = float(cm.sum(axis=1) @ cm.sum(axis=0)) / (n * n)
    if p_e >= 1.0:
        return math.nan
    return float((p_o - p_e) / (1.0 - p_e))


def f1_from_cm(cm: np.ndarray) -> np.ndarray:
    """Per-class F1 ``2 TP / (2 TP + FP + FN)``; NaN for a class absent from both sequences."""
    cm = _check_cm(cm)
    tp = np.diag(cm)
    denom = cm.sum(axis=0) + cm.sum(axis=1)  # (TP + FP) + (TP + FN)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(denom > 0, 2.0 * tp / np.where(denom > 0, denom, 1.0), np.nan)


def macro_f1_from_cm(cm: np.ndarray) -> float:
    """Mean F1 over the classes present in the reference or the prediction (NaN if none)."""
    f1 = f1_from_cm(cm)
    present = ~np.isnan(f1)
    return float(f1[present].mean()) if present.any() else math.nan


def accuracy(y_true: Any, y_pred: Any) -> float:
    """Fraction of scored epochs (neither is ``-1``) where the two stages agree."""
    return accuracy_from_cm(confusion_matrix(y_true, y_pred))


def cohen_kappa(y_true: Any, y_pred: Any, n_classes: int = N_CLASSES) -> float:
    """Cohen's kappa over scored epochs (see :func:`kappa_from_cm`)."""
    return kappa_from_cm(confusion_matrix(y_true, y_pred, n_classes))


def f1_per_class(y_true: Any, y_pred: Any, n_classes: int = N_CLASSES) -> np.ndarray:
    """F1 of each class ``0..n_classes-1`` over scored epochs (see :func:`f1_from_cm`)."""
    return f1_from_cm(confusion_matrix(y_true, y_pred, n_classes))


def macro_f1(y_true: Any, y_pred: Any, n_classes: int = N_CLASSES) -> float:
    """Macro-averaged F1 over the classes present in either sequence."""
    return macro_f1_from_cm(confusion_matrix(y_true, y_pred, n_classes))


def _finite(x: float) -> float | None:
    return None if x is None or not math.isfinite(x) else float(x)


@dataclass
class Agreement:
    """Agreement of a predicted hypnogram with a reference one.

    Attributes
    ----------
    accuracy, kappa, macro_f1 : float
        Over the scored epochs (NaN when there are none).
    f1 : dict of str to float
        Per-class F1 by class name (NaN for a class absent from both).
    confusion : ndarray of int64, shape (n_classes, n_classes)
        Reference in rows, prediction in columns.
    n : int
        Scored epochs (neither sequence UNSCORED).
    n_excluded : int
        Epochs left out because one of the sequences is UNSCORED there.
    class_names : tuple of str
    """

    accuracy: float
    kappa: float
    macro_f1: float
    f1: dict[str, float]
    confusion: np.ndarray
    n: int
    n_excluded: int = 0
    class_names: tuple[str, ...] = field(default=CLASS_NAMES)

    @classmethod
    def from_confusion(cls, cm: np.ndarray, n_excluded: int = 0,
                       class_names: tuple[str, ...] | None = None) -> Agreement:
        """Build from a count matrix (e.g. the sum of per-night matrices, for pooled metrics)."""
        cm = np.asarray(cm, dtype=np.int64)
        _check_cm(cm)
        names = tuple(class_names) if class_names else _names(cm.shape[0])
        if len(names) != cm.shape[0]:
            raise ValueError(f"{len(names)} class names for a {cm.shape[0]}-class matrix")
        f1 = f1_from_cm(cm)
        return cls(accuracy_from_cm(cm), kappa_from_cm(cm), macro_f1_from_cm(cm),
                   dict(zip(names, f1.tolist())), cm, int(cm.sum()), int(n_excluded), names)

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (NaN written as ``None``)."""
        return {
            "n": self.n,
            "n_excluded": self.n_excluded,
            "accuracy": _finite(self.accuracy),
            "kappa": _finite(self.kappa),
            "macro_f1": _finite(self.macro_f1),
            "f1": {k: _finite(v) for k, v in self.f1.items()},
            "class_names": list(self.class_names),
            "confusion": self.confusion.tolist(),
        }

    def __str__(self) -> str:
        def fmt(x: float) -> str:
            return "  n/a" if not math.isfinite(x) else f"{x:.3f}"

        lines = [
            f"{self.n} epochs scored ({self.n_excluded} unscored excluded): accuracy "
            f"{fmt(self.accuracy)}, Cohen's kappa {fmt(self.kappa)}, macro-F1 "
            f"{fmt(self.macro_f1)}",
            "F1 " + "  ".join(f"{k} {fmt(v)}" for k, v in self.f1.items()),
            "confusion (rows: reference, columns: predicted)",
        ]
        width = max(6, len(str(int(self.confusion.max(initial=0)))) + 2)
        lines.append(" " * 5 + "".join(f"{n:>{width}}" for n in self.class_names))
        for name, row in zip(self.class_names, self.confusion.tolist()):
            lines.append(f"{name:<5}" + "".join(f"{v:>{width}d}" for v in row))
        return "\n".join(lines)


def _names(n_classes: int) -> tuple[str, ...]:
    return CLASS_NAMES if n_classes == N_CLASSES else tuple(str(i) for i in range(n_classes))


def agreement(y_true: Any, y_pred: Any, n_classes: int = N_CLASSES) -> Agreement:
    """All agreement metrics of a prediction against a reference, UNSCORED epochs excluded.

    Parameters
    ----------
    y_true, y_pred : array-like of int, shape (n_epochs,)
        Reference and predicted stage codes (``-1`` = unscored).
    n_classes : int
        Number of classes.

    Returns
    -------
    Agreement
    """
    t, p, n_excluded = _pair(y_true, y_pred, n_classes)
    cm = np.bincount(t * n_classes + p, minlength=n_classes * n_classes).reshape(
        n_classes, n_classes)
    return Agreement.from_confusion(cm, n_excluded)


def expected_calibration_error(proba: Any, labels: Any, n_bins: int = 15) -> float:
    """Expected calibration error of class probabilities (Guo et al. 2017), UNSCORED excluded.

    Epochs are put in ``n_bins`` equal-width bins of confidence (the largest probability,
    bins ``(k / n_bins, (k + 1) / n_bins]``); the ECE is the mean over epochs of
    ``|accuracy - mean confidence|`` of their bin.

    Parameters
    ----------
    proba : array-like, shape (n_epochs, n_classes)
        Class probabilities (rows summing to 1).
    labels : array-like of int, shape (n_epochs,)
        Reference stage codes; ``-1`` (UNSCORED) epochs are left out.
    n_bins : int
        Number of confidence bins.

    Returns
    -------
    float
        In 0..1; NaN when no epoch is scored.
    """
    p = np.asarray(proba, dtype=np.float64)
    y = _codes(labels, "labels")
    if p.ndim != 2 or p.shape[0] != y.shape[0]:
        raise ValueError(f"proba must be (n_epochs, n_classes) with one row per label, got "
                         f"{p.shape} for {y.shape[0]} labels")
    if n_bins < 1:
        raise ValueError(f"n_bins must be at least 1, got {n_bins}")
    if np.any((y < Stage.UNSCORED) | (y >= p.shape[1])):
        raise ValueError(f"labels must be -1 (unscored) or 0..{p.shape[1] - 1}")
    keep = y >= 0
    p, y = p[keep], y[keep]
    if y.size == 0:
        return math.nan
    conf = p.max(axis=1)
    correct = (p.argmax(axis=1) == y).astype(np.float64)
    bins = np.clip(np.ceil(conf * n_bins).astype(np.int64) - 1, 0, n_bins - 1)
    gap = np.abs(np.bincount(bins, correct, n_bins) - np.bincount(bins, conf, n_bins))
    return float(gap.sum() / y.size)
