"""The unfamiliar-signal flag: how far an epoch's intra-model feature is from the training data.

:class:`Familiarity` holds the class-conditional means of the intra model's CLS ``features``
over the training epochs and one shared (tied) covariance, shrunk towards a scaled identity
(Ledoit-Wolf), stored as the Cholesky factor of its inverse. An epoch's *distance* is the
Mahalanobis distance of its feature to the closest class mean (Lee et al. 2018, "A simple
unified framework for detecting out-of-distribution samples and adversarial attacks",
NeurIPS). The *threshold* is a quantile (default 0.99) of the distances of validation epochs,
from held-out subjects that the model never trained on (never the test subjects): about
``1 - quantile`` of epochs like the validation data are flagged, and epochs far from all of
it are.

The statistics and the threshold are fitted by ``training.calibrate`` and stored as JSON in the
intra model's metadata (key :data:`METADATA_KEY`);
:class:`~edge_scorer.inference.scorer.ScoringModel`
reads them. A model without them scores as before, with the flag off.

Clinical caveat: a flag means that the epoch's signal is *far from the data the model was
trained on* (another montage, amplifier, population or artifact than it has seen), so its stage
deserves a review by a trained scorer. It is not a diagnosis of artifact, and an epoch without a
flag is not thereby scored correctly.
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from edge_scorer.stages import N_CLASSES

#: Metadata key (``edge_scorer.inference.familiarity`` in the ONNX file) of the intra model's
#: statistics.
METADATA_KEY = "familiarity"
#: Metadata key of the softmax temperature (intra and inter models; see ``ScoringModel``).
TEMPERATURE_KEY = "temperature"
#: Format tag of the JSON form.
FORMAT = "edge-scorer-familiarity-1"
#: Significant digits kept in the JSON form (float32 precision).
DIGITS = 7


def _packed(values: np.ndarray) -> list[float]:
    """Values rounded to float32 and :data:`DIGITS` significant digits (a compact JSON list)."""
    flat = np.asarray(values, dtype=np.float32).ravel()
    return [float(f"{v:.{DIGITS}g}") for v in flat.tolist()]


def ledoit_wolf(centered: np.ndarray) -> tuple[np.ndarray, float]:
    """Ledoit-Wolf shrinkage covariance of centered rows (Ledoit & Wolf 2004).

    Parameters
    ----------
    centered : ndarray, shape (n, D)
        Observations with their (class) means removed.

    Returns
    -------
    covariance : ndarray, shape (D, D)
        ``(1 - s) * S + s * mu * I`` with ``S`` the sample covariance and ``mu`` its mean
        eigenvalue.
    shrinkage : float
        ``s`` in 0..1.
    """
    x = np.asarray(centered, dtype=np.float64)
    if x.ndim != 2 or x.shape[0] < 2:
        raise ValueError(f"need at least 2 observations (n, D), got shape {x.shape}")
    n, d = x.shape
    s = x.T @ x / n
    mu = float(np.trace(s)) / d
    delta = float(np.sum((s - mu * np.eye(d)) ** 2)) / d
    # sum_k ||x_k x_k^T - S||_F^2 = sum_k ||x_k||^4 - n ||S||_F^2
    beta_bar = (float(np.sum(np.sum(x * x, axis=1) ** 2)) - n * float(np.sum(s * s))) / (
        n * n * d)
    shrink = 1.0 if delta <= 0 else min(max(beta_bar, 0.0), delta) / delta
    return (1.0 - shrink) * s + shrink * mu * np.eye(d), float(shrink)


@dataclass
class Familiarity:
    """Class means + tied shrinkage covariance of intra features, and a distance threshold.

    Build it with :meth:`fit` or :meth:`from_json`; see the module docstring (and its clinical
    caveat).

    Parameters
    ----------
    means : ndarray, shape (K, D)
        Mean feature of each class present in the training epochs.
    factor : ndarray, shape (D, D)
        Lower-triangular ``L`` with ``L @ L.T`` the inverse of the shared covariance, so that
        the squared distance to mean ``m`` is ``||(x - m) @ L||^2``.
    threshold : float
        Distances above it are flagged.
    quantile : float
        The quantile of the validation distances the threshold was set at.
    classes : tuple of int
        Stage code of each row of ``means``.
    shrinkage : float
        Ledoit-Wolf shrinkage of the covariance (information).
    n_train, n_val : int
        Epochs the statistics and the threshold were computed from (information).
    """

    means: np.ndarray
    factor: np.ndarray
    threshold: float
    quantile: float
    classes: tuple[int, ...] = ()
    shrinkage: float = 0.0
    n_train: int = 0
    n_val: int = 0

    def __post_init__(self) -> None:
        self.means = np.asarray(self.means, dtype=np.float32)
        self.factor = np.tril(np.asarray(self.factor, dtype=np.float32))
        if self.means.ndim != 2 or self.means.shape[0] < 1:
            raise ValueError(f"means must be (K, D) with K >= 1, got {self.means.shape}")
        d = self.means.shape[1]
        if self.factor.shape != (d, d):
            raise ValueError(f"factor must be ({d}, {d}) for {d}-d means, got "
                             f"{self.factor.shape}")
        if not (np.all(np.isfinite(self.means)) and np.all(np.isfinite(self.factor))):
            raise ValueError("familiarity statistics hold non-finite values")
        if not math.isfinite(self.threshold) or self.threshold < 0:
            raise ValueError(f"threshold must be a finite distance >= 0, got {self.threshold}")
        if not 0.0 < self.quantile < 1.0:
            raise ValueError(f"quantile must be within (0, 1), got {self.quantile}")
        self.classes = tuple(int(c) for c in (self.classes or range(self.means.shape[0])))
        if len(self.classes) != self.means.shape[0]:
            raise ValueError(f"{len(self.classes)} class codes for {self.means.shape[0]} means")
        self.threshold = float(self.threshold)
        self.quantile = float(self.quantile)

    @property
    def dim(self) -> int:
        """Feature dimension ``D``."""
        return int(self.means.shape[1])

    # ------------------------------------------------------------------ runtime
    def distance(self, feats: np.ndarray) -> np.ndarray:
        """Mahalanobis distance of each feature to the closest class mean.

        Parameters
        ----------
        feats : ndarray, shape (N, D)
            Intra-model CLS features.

        Returns
        -------
        ndarray of float64, shape (N,)
            Distances (NaN for a feature holding non-finite values).
        """
        x = np.asarray(feats, dtype=np.float64)
        if x.ndim != 2 or x.shape[1] != self.dim:
            raise ValueError(f"features must be (N, {self.dim}), got shape {x.shape}")
        factor = self.factor.astype(np.float64)
        # einsum, not ``@``: a matrix product this small wakes OpenBLAS's worker threads, which
        # then spin and take the cores from ONNX Runtime's next intra call (measured: intra
        # 0.94 -> 0.65 s per 8-h night offline); einsum's own loop takes 0.2 ms per 64 epochs.
        z = np.einsum("nd,de->ne", x, factor)        # whitened features (N, D)
        best = np.full(len(x), np.inf)
        for zm in np.einsum("cd,de->ce", self.means.astype(np.float64), factor):  # class means
            best = np.minimum(best, np.sum((z - zm) ** 2, axis=1))
        best[~np.all(np.isfinite(x), axis=1)] = np.nan
        return np.sqrt(best)

    def is_unfamiliar(self, feats: np.ndarray) -> np.ndarray:
        """Whether each epoch is far from the training data (distance above the threshold,
        or not computable); bool ``(N,)``. A flag asks for review; it is not a diagnosis."""
        return ~(self.distance(feats) <= self.threshold)

    # ------------------------------------------------------------------ fitting
    @classmethod
    def fit(cls, train_feats: np.ndarray, train_labels: Sequence[int] | np.ndarray,
            val_feats: np.ndarray, quantile: float = 0.99) -> Familiarity:
        """Statistics from training epochs, threshold from validation epochs.

        Parameters
        ----------
        train_feats : ndarray, shape (n, D)
            Intra features of training epochs.
        train_labels : array-like of int, shape (n,)
            Their stage codes; UNSCORED (-1) epochs are left out.
        val_feats : ndarray, shape (m, D)
            Intra features of validation epochs: held-out subjects, never the test subjects.
        quantile : float
            The threshold is this quantile of the validation distances.

        Returns
        -------
        Familiarity
            With the values rounded as :meth:`to_json` stores them; the threshold is computed
            with the rounded values, so a model read back flags exactly the same epochs.
        """
        x = np.asarray(train_feats, dtype=np.float64)
        y = np.asarray(train_labels)
        v = np.asarray(val_feats, dtype=np.float64)
        if x.ndim != 2 or y.shape != (x.shape[0],):
            raise ValueError(f"expected train features (n, D) and n labels, got {x.shape} and "
                             f"{y.shape}")
        if v.ndim != 2 or v.shape[1] != x.shape[1] or v.shape[0] == 0:
            raise ValueError(f"expected validation features (m >= 1, {x.shape[1]}), got "
                             f"{v.shape}")
        if not 0.0 < quantile < 1.0:
            raise ValueError(f"quantile must be within (0, 1), got {quantile}")
        if not (np.all(np.isfinite(x)) and np.all(np.isfinite(v))):
            raise ValueError("features hold non-finite values")
        keep = (y >= 0) & (y < N_CLASSES)
        x, y = x[keep], y[keep].astype(np.int64)
        classes = sorted(set(y.tolist()))
        if not classes or len(x) < 2:
            raise ValueError("need at least 2 scored training epochs to fit the statistics")
        means = np.stack([x[y == c].mean(axis=0) for c in classes])
        centered = x - means[np.searchsorted(classes, y)]
        cov, shrink = ledoit_wolf(centered)
        precision = np.linalg.inv(cov)
        precision = (precision + precision.T) / 2.0
        factor = np.linalg.cholesky(precision)
        stats = cls(means, factor, 0.0, quantile, tuple(classes), shrink, len(x), len(v))
        stats = cls.from_json(stats.to_json())  # the rounded values the model will carry
        stats.threshold = float(np.quantile(stats.distance(v), quantile))
        return stats

    # ------------------------------------------------------------------ JSON
    def to_json(self) -> str:
        """Compact JSON: float32 statistics to :data:`DIGITS` significant digits, the factor's
        lower triangle only (about 95 kB for D = 128); the threshold exactly."""
        rows, cols = np.tril_indices(self.dim)
        return json.dumps({
            "format": FORMAT, "method": "mahalanobis-tied-ledoit-wolf", "dim": self.dim,
            "classes": list(self.classes), "threshold": self.threshold,
            "quantile": self.quantile, "shrinkage": round(self.shrinkage, 6),
            "n_train": int(self.n_train), "n_val": int(self.n_val),
            "means": _packed(self.means), "factor_tril": _packed(self.factor[rows, cols]),
        }, separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> Familiarity:
        """Read :meth:`to_json` output (e.g. the ``familiarity`` metadata of a model).

        Raises
        ------
        ValueError
            Not valid JSON, another format, or inconsistent sizes.
        """
        try:
            data = json.loads(text)
        except (TypeError, json.JSONDecodeError) as exc:
            raise ValueError(f"familiarity metadata is not valid JSON ({exc})") from None
        if not isinstance(data, dict) or data.get("format") != FORMAT:
            raise ValueError(f"familiarity metadata has format "
                             f"{data.get('format') if isinstance(data, dict) else None!r}, "
                             f"expected {FORMAT!r}")
        d = int(data["dim"])
        means = np.asarray(data["means"], dtype=np.float32)
        tril = np.asarray(data["factor_tril"], dtype=np.float32)
        if d < 1 or means.size % d or tril.size != d * (d + 1) // 2:
            raise ValueError(f"familiarity metadata: {means.size} mean values and "
                             f"{tril.size} factor values do not fit dimension {d}")
        factor = np.zeros((d, d), dtype=np.float32)
        factor[np.tril_indices(d)] = tril
        return cls(means.reshape(-1, d), factor, float(data["threshold"]),
                   float(data["quantile"]), tuple(data.get("classes", ())),
                   float(data.get("shrinkage", 0.0)), int(data.get("n_train", 0)),
                   int(data.get("n_val", 0)))

    def summary(self) -> dict[str, float | int]:
        """Threshold, quantile and sizes, for reports."""
        return {"threshold": self.threshold, "quantile": self.quantile, "dim": self.dim,
                "n_classes": len(self.classes), "shrinkage": self.shrinkage,
                "n_train": self.n_train, "n_val": self.n_val}


def read_temperature(metadata: dict[str, str]) -> float:
    """The softmax temperature in a model's metadata (1.0 when absent).

    Raises
    ------
    ValueError
        A temperature that is not a positive finite number.
    """
    text = metadata.get(TEMPERATURE_KEY)
    if text is None or text == "":
        return 1.0
    try:
        t = float(text)
    except ValueError:
        raise ValueError(f"model temperature {text!r} is not a number") from None
    if not (math.isfinite(t) and t > 0):
        raise ValueError(f"model temperature must be a positive finite number, got {t}")
    return t


def read_familiarity(metadata: dict[str, str]) -> Familiarity | None:
    """The :class:`Familiarity` in an intra model's metadata, or None when it has none."""
    text = metadata.get(METADATA_KEY)
    return None if not text else Familiarity.from_json(text)


def summary_line(summary: dict) -> str:
    """One line about the flag over a night, from ``Engine.familiarity_summary()``: e.g.
    ``unfamiliar-signal flag: 3 of 10 epochs (30 %)``."""
    if not summary.get("available"):
        return "unfamiliar-signal flag: off (the model carries no familiarity statistics)"
    n, k = int(summary.get("n_epochs", 0)), int(summary.get("n_unfamiliar", 0))
    return f"unfamiliar-signal flag: {k} of {n} epochs ({100.0 * k / max(n, 1):.0f} %)"


def warning_line(summary: dict) -> str | None:
    """A warning when any epoch of the night is flagged (None otherwise)."""
    k = int(summary.get("n_unfamiliar", 0))
    if not summary.get("available") or k == 0:
        return None
    return (f"warning: {k} epoch(s) are far from the data the model was trained on "
            "(unfamiliar-signal flag, column 'unfamiliar' of epochs.csv): review their stages; "
            "the flag is not a diagnosis of artifact")


#: A stage given with at least this probability is a confident one (for :func:`flag_review`).
CONFIDENT_P = 0.9


def flag_review(reference: np.ndarray, predicted: np.ndarray, proba: np.ndarray,
                unfamiliar: np.ndarray | None, confident_p: float = CONFIDENT_P) -> dict:
    """How the flag covers the wrongly scored epochs of a night with a reference hypnogram.

    Returns
    -------
    dict
        ``n_scored`` (epochs with a reference stage), ``n_wrong``, ``n_wrong_flagged``,
        ``n_wrong_unflagged``, ``n_confident_wrong_unflagged`` (wrong with probability of at
        least ``confident_p`` and no flag: the failure a reviewer cannot see coming), and
        ``n_flagged``.
    """
    ref = np.asarray(reference)
    pred = np.asarray(predicted)
    n = min(len(ref), len(pred))
    ref, pred = ref[:n], pred[:n]
    flag = (np.zeros(n, dtype=bool) if unfamiliar is None
            else np.asarray(unfamiliar, dtype=bool)[:n])
    p_max = np.asarray(proba, dtype=float)[:n].max(axis=1) if len(proba) else np.zeros(n)
    scored = ref >= 0
    wrong = scored & (pred != ref)
    return {"n_scored": int(scored.sum()), "n_wrong": int(wrong.sum()),
            "n_wrong_flagged": int((wrong & flag).sum()),
            "n_wrong_unflagged": int((wrong & ~flag).sum()),
            "n_confident_wrong_unflagged": int((wrong & ~flag & (p_max >= confident_p)).sum()),
            "n_flagged": int(flag.sum()), "confident_p": float(confident_p)}


def flag_review_line(review: dict) -> str:
    """One line of :func:`flag_review`: e.g. ``wrong epochs: 2 of 10; flagged 2, unflagged 0
    (confidently wrong and unflagged: 0)``."""
    return (f"wrong epochs: {review['n_wrong']} of {review['n_scored']}; flagged "
            f"{review['n_wrong_flagged']}, unflagged {review['n_wrong_unflagged']} (wrong with "
            f"p >= {review['confident_p']:g} and unflagged: "
            f"{review['n_confident_wrong_unflagged']})")


__all__ = ["CONFIDENT_P", "DIGITS", "FORMAT", "METADATA_KEY", "TEMPERATURE_KEY", "Familiarity",
           "flag_review", "flag_review_line", "ledoit_wolf", "read_familiarity",
           "read_temperature", "summary_line", "warning_line"]
