"""A scoring model: intra ViT + inter transformer behind backends, checked against the spec.

:class:`ScoringModel` loads the two exported models (the shipped default model unless paths
are given), refuses a model whose render-spec hash or montage differs from the spec the
images are rendered with, and scores epoch images with SleepXViT's rule: the intra model gives
each epoch's CLS feature, the inter model scores every window of 10 epochs, and each epoch's
probabilities are the softmax summed over every window covering it.

Calibration (Guo et al. 2017, temperature scaling): each model may carry a ``temperature``
(metadata, default 1.0). :meth:`ScoringModel.epoch_outputs` divides the intra logits by the
intra model's and :meth:`ScoringModel.inter_logits` the inter logits by the inter model's, so
every softmax downstream (each window's, before the sliding sum; the intra-only softmax) is the
calibrated one, live and offline alike. The intra model may also carry the statistics of the
unfamiliar-signal flag (:mod:`edge_scorer.inference.familiarity`), read into
:attr:`ScoringModel.familiarity`.

Clinical caveat: the shipped default model is trained on *simulated* nights; it is for demos
and pipeline checks and is not validated on real recordings (see its MODEL_CARD.md).
"""

from __future__ import annotations

import json
from importlib import resources
from pathlib import Path

import numpy as np

from edge_scorer.inference.backends import Backend, create_backend
from edge_scorer.inference.familiarity import Familiarity, read_familiarity, read_temperature
from edge_scorer.inference.windows import sliding_window_proba
from edge_scorer.io.spec import RenderSpec, load_spec
from edge_scorer.stages import CLASS_NAMES
from edge_scorer.stats.hypnogram import Hypnogram


class ModelSpecMismatch(ValueError):
    """The model was trained on images rendered with another spec."""


class ModelShapeError(ValueError):
    """A model does not take or give the shapes the engine feeds and reads (checked at load)."""


def default_model_dir() -> Path:
    """Folder of the shipped default model (``intra.onnx``, ``inter.onnx``, MODEL_CARD.md)."""
    return Path(str(resources.files("edge_scorer").joinpath("models")))


def check_model_spec(meta: dict[str, str], spec: RenderSpec, what: str) -> None:
    """Raise :class:`ModelSpecMismatch` unless the model metadata fits ``spec``."""
    got = meta.get("render_spec_hash")
    if got is None:
        raise ModelSpecMismatch(
            f"{what} carries no edge_scorer render-spec metadata; export it with "
            "edge-scorer's exporter (export.export_intra / export_inter)")
    if got != spec.hash:
        raise ModelSpecMismatch(
            f"{what} was trained on images of spec {meta.get('render_spec')!r} (hash {got}), "
            f"but the input is rendered with spec {spec.name!r} (hash {spec.hash}); use a model "
            f"trained for spec {spec.name!r}")
    montage = json.loads(meta.get("montage", "[]"))
    if montage and tuple(montage) != spec.row_names:
        raise ModelSpecMismatch(f"{what} expects rows {montage}, the spec has "
                                f"{list(spec.row_names)}")
    classes = json.loads(meta.get("class_names", "[]"))
    if classes and tuple(classes) != CLASS_NAMES:
        raise ModelSpecMismatch(f"{what} predicts classes {classes}, expected {CLASS_NAMES}")


def _image_feed(images: np.ndarray) -> np.ndarray:
    """uint8 images ``(B, H, W)`` or ``(B, H, W, 3)`` -> the float32 ``(B, C, H, W)`` feed."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        return x[:, None]  # grayscale (B, H, W) -> (B, 1, H, W)
    if x.ndim == 4 and x.shape[-1] == 3:
        return x.transpose(0, 3, 1, 2)
    return x


def _run_checked(backend: Backend, feed: dict[str, np.ndarray], what: str,
                 given: str) -> dict[str, np.ndarray]:
    """Run a backend once, turning any failure into :class:`ModelShapeError`."""
    try:
        return backend.infer(feed)
    except Exception as exc:  # every backend raises its own types
        raise ModelShapeError(f"{what} cannot run on {given} ({type(exc).__name__}: "
                              f"{str(exc)[:300]}); it was exported for other inputs: use a "
                              "model exported by edge-scorer for this spec") from exc


class ScoringModel:
    """Intra + inter models behind backends (see module docstring).

    Parameters
    ----------
    intra, inter : Backend
        Opened models (``inter`` may be None: intra-only scoring).
    spec : RenderSpec
        The spec the images are rendered with (checked against both models).

    Attributes
    ----------
    intra_temperature, inter_temperature : float
        Softmax temperatures from the models' ``temperature`` metadata (1.0 when absent).
    familiarity : Familiarity or None
        The unfamiliar-signal statistics of the intra model (None: the flag is off).
    """

    def __init__(self, intra: Backend, inter: Backend | None, spec: RenderSpec) -> None:
        check_model_spec(intra.metadata, spec, f"intra model {getattr(intra, 'path', '')}")
        if intra.metadata.get("kind") != "intra":
            raise ValueError(f"{getattr(intra, 'path', 'model')} is not an intra model "
                             f"(kind {intra.metadata.get('kind')!r})")
        if inter is not None:
            a, b = intra.metadata.get("render_spec_hash"), inter.metadata.get("render_spec_hash")
            if a and b and a != b:
                raise ModelSpecMismatch(
                    f"inter model {getattr(inter, 'path', '')} was trained on images of spec "
                    f"{inter.metadata.get('render_spec')!r} (hash {b}), the intra model "
                    f"{getattr(intra, 'path', '')} on spec {intra.metadata.get('render_spec')!r} "
                    f"(hash {a}); pass an --intra/--inter pair exported together")
            check_model_spec(inter.metadata, spec, f"inter model {getattr(inter, 'path', '')}")
            if inter.metadata.get("feature_dim") != intra.metadata.get("feature_dim"):
                raise ValueError(
                    f"inter model reads {inter.metadata.get('feature_dim')}-d features, the "
                    f"intra model makes {intra.metadata.get('feature_dim')}-d ones")
        self.intra, self.inter, self.spec = intra, inter, spec
        self.window = int(inter.metadata.get("window_length") or 10) if inter else 1
        self.intra_temperature = read_temperature(intra.metadata)
        self.inter_temperature = read_temperature(inter.metadata) if inter else 1.0
        self.familiarity: Familiarity | None = read_familiarity(intra.metadata)
        dim = intra.metadata.get("feature_dim")
        if self.familiarity is not None and dim and int(dim) != self.familiarity.dim:
            raise ValueError(f"the intra model's familiarity statistics are "
                             f"{self.familiarity.dim}-d, its features {dim}-d")
        self._warm = False

    @property
    def temperature(self) -> float:
        """Temperature of the final probabilities: the inter model's, or the intra model's
        when scoring with the intra model alone."""
        return self.inter_temperature if self.inter is not None else self.intra_temperature

    @classmethod
    def load(cls, intra: str | Path | None = None, inter: str | Path | None = None,
             spec: RenderSpec | str | None = None, backend: str = "onnxruntime",
             **backend_options) -> ScoringModel:
        """Open model files (default: the shipped model, scored with its own spec).

        ``backend`` and ``backend_options`` go to
        :func:`~edge_scorer.inference.backends.create_backend`
        (e.g. ``precision``/``engine_dir`` for TensorRT, ``half``/``cuda_graphs`` for torch).
        The models are run once on blank inputs (:meth:`warmup`), which checks their input and
        output shapes before anything is written.

        Raises
        ------
        ModelSpecMismatch, ModelShapeError, ValueError, FileNotFoundError
            A model for another spec, with other shapes, unreadable, or missing.
        """
        if intra is None:
            folder = default_model_dir()
            intra, inter = folder / "intra.onnx", folder / "inter.onnx"
            if not Path(intra).is_file():
                raise FileNotFoundError(
                    f"the shipped default model is missing from {folder}; reinstall edge-scorer "
                    "or pass --intra/--inter model files")
        intra_b = create_backend(intra, backend, **backend_options)
        inter_b = (create_backend(inter, backend, **backend_options) if inter is not None
                   else None)
        if spec is None:
            spec = intra_b.metadata.get("render_spec", "sleep-edf")
        spec = load_spec(spec) if isinstance(spec, str) else spec
        model = cls(intra_b, inter_b, spec)
        model.warmup()
        return model

    def warmup(self) -> None:
        """Run each model once on blank inputs, checking the shapes it takes and gives (the
        first run of a session is also slow); once.

        Raises
        ------
        ModelShapeError
            The intra model does not take a ``(1, C, H, W)`` image of the spec or give
            ``logits (1, 5)`` and ``features (1, D)`` (D its ``feature_dim``), or the inter
            model does not take ``(1, L, D)`` windows or give ``logits (1, L, 5)``.
        """
        if self._warm:
            return
        n_cls = len(CLASS_NAMES)
        image = _image_feed(np.zeros((1, *self.spec.image_shape), dtype=np.uint8))
        intra = f"intra model {getattr(self.intra, 'path', '')}"
        out = _run_checked(self.intra, {"image": image}, intra,
                           f"an epoch image {image.shape} of spec {self.spec.name!r}")
        logits, feats = out.get("logits"), out.get("features")
        if logits is None or feats is None:
            raise ModelShapeError(f"{intra} gives {sorted(out)}; the engine reads 'logits' and "
                                  "'features': export it with edge-scorer export onnx")
        if np.shape(logits) != (1, n_cls) or np.ndim(feats) != 2 or np.shape(feats)[0] != 1:
            raise ModelShapeError(
                f"{intra} gives logits {np.shape(logits)} and features {np.shape(feats)} for one "
                f"image; expected (1, {n_cls}) and (1, D): it is not an edge-scorer intra model "
                "of this spec")
        dim = int(np.shape(feats)[1])
        declared = self.intra.metadata.get("feature_dim")
        if declared and int(declared) != dim:
            raise ModelShapeError(f"{intra} gives {dim}-d features but its metadata says "
                                  f"{declared}")
        if self.inter is not None:
            inter = f"inter model {getattr(self.inter, 'path', '')}"
            windows = np.zeros((1, self.window, dim), dtype=np.float32)
            got = _run_checked(self.inter, {"features": windows}, inter,
                               f"a window of {self.window} {dim}-d features")
            if np.shape(got.get("logits")) != (1, self.window, n_cls):
                raise ModelShapeError(
                    f"{inter} gives logits {np.shape(got.get('logits'))} for one window of "
                    f"{self.window} epochs; expected (1, {self.window}, {n_cls})")
        self._warm = True

    def epoch_outputs(self, images: np.ndarray, batch_size: int = 64, *, raw: bool = False
                      ) -> tuple[np.ndarray, np.ndarray]:
        """Intra logits ``(N, 5)`` and CLS features ``(N, D)`` of rendered uint8 images.

        The logits are divided by :attr:`intra_temperature` unless ``raw`` (fitting it).
        """
        logits, feats = [], []
        for i in range(0, len(images), batch_size):
            out = self.intra.infer({"image": _image_feed(images[i:i + batch_size])})
            logits.append(out["logits"])
            feats.append(out["features"])
        logits_all = np.concatenate(logits)
        if not raw and self.intra_temperature != 1.0:
            logits_all = logits_all / np.float32(self.intra_temperature)
        return logits_all, np.concatenate(feats)

    def inter_logits(self, windows: np.ndarray, *, raw: bool = False) -> np.ndarray:
        """Inter logits ``(B, L, 5)`` of feature windows ``(B, L, D)``, divided by
        :attr:`inter_temperature` unless ``raw``: the one place the temperature meets the
        windows (each window's softmax is taken of these)."""
        if self.inter is None:
            raise ValueError("no inter model loaded")
        logits = self.inter.infer({"features": windows})["logits"]
        if not raw and self.inter_temperature != 1.0:
            logits = logits / np.float32(self.inter_temperature)
        return logits

    def familiarity_of(self, feats: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Distance to the training data and unfamiliar-signal flag of each epoch feature.

        Returns
        -------
        distance : ndarray of float64, shape (N,)
            NaN when the model carries no familiarity statistics.
        unfamiliar : ndarray of bool, shape (N,)
            All False when it carries none (the flag is off).
        """
        n = len(feats)
        if self.familiarity is None:
            return np.full(n, np.nan), np.zeros(n, dtype=bool)
        dist = self.familiarity.distance(feats)
        return dist, ~(dist <= self.familiarity.threshold)

    def score_images(self, images: np.ndarray) -> np.ndarray:
        """Per-epoch class probabilities ``(N, 5)`` of one night's images, in time order."""
        return self.proba_from_outputs(*self.epoch_outputs(images))

    def proba_from_outputs(self, logits: np.ndarray, feats: np.ndarray) -> np.ndarray:
        """Final probabilities ``(N, 5)`` from a night's intra outputs (in time order, as
        :meth:`epoch_outputs` returns them: calibrated logits): the sliding-window rule over the
        features (calibrated inter logits), or the intra softmax without an inter model."""
        from edge_scorer.inference.windows import softmax

        if self.inter is None:
            return softmax(np.asarray(logits, dtype=np.float64))
        return sliding_window_proba(self.inter_logits, feats, L=self.window)

    def score_night(self, images: np.ndarray, epoch_s: float | None = None) -> Hypnogram:
        """A :class:`Hypnogram` with the argmax stages and the probabilities."""
        proba = self.score_images(images)
        return Hypnogram(proba.argmax(1).astype(np.int8), epoch_s or self.spec.epoch_s,
                         probabilities=proba.astype(np.float32),
                         meta={"scorer": "edge-scorer", "model": str(getattr(
                             self.intra, "path", ""))})
