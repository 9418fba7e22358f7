"""Rendered epochs for parity, calibration and held-out checks of exported models.

Every check of an exported model runs on epochs drawn exactly as the engine draws them: a night
of the simulator (rendered through the real EDF reader, conditioning and renderer), a PSG file
of yours, or an ``epochs.npy`` written by ``edge-scorer render``. The inter model reads windows
of intra features; :func:`model_feeds` computes them with the intra ONNX model beside it.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from edge_scorer._log import get_logger

log = get_logger("export.epochs")

#: Seed offset of held-out nights, so that they never coincide with calibration nights.
HELD_OUT_SEED_OFFSET = 1000


def simulated_epochs(spec: Any = "sleep-edf", *, n_nights: int = 1, duration_h: float = 0.5,
                     seed: int = 0) -> np.ndarray:
    """Rendered epochs of simulated nights (night ``i`` has seed ``seed + i``).

    The nights are written as EDF files to a temporary folder and read back through
    :func:`edge_scorer.dsp.render_night.render_night`, the path every recording takes.

    Returns
    -------
    ndarray of uint8, shape (n_epochs, *spec.image_shape)
    """
    from edge_scorer.dsp.render_night import render_night
    from edge_scorer.io.spec import load_spec
    from edge_scorer.simulate import simulate_nights

    spec = load_spec(spec) if isinstance(spec, str) else spec
    with tempfile.TemporaryDirectory(prefix="edge-scorer-epochs-") as tmp:
        pairs = simulate_nights(tmp, n_nights, layout=spec.name, seed=seed,
                                duration_h=duration_h)
        images = [render_night(psg, spec, hyp).images for psg, hyp in pairs]
    return np.concatenate(images)


def load_epochs(source: str | Path | None, spec: Any = "sleep-edf", *, seed: int = 0,
                duration_h: float = 0.5, n_nights: int = 1) -> tuple[np.ndarray, str]:
    """Rendered epochs from a source, and a one-line description of it.

    Parameters
    ----------
    source : str, path or None
        None or ``"simulated"``: simulated nights (``seed``, ``duration_h``, ``n_nights``);
        an ``.npy`` file (or a folder holding ``epochs.npy``) written by ``edge-scorer render``;
        anything else: a PSG file (EDF/EDF+/BDF) rendered with ``spec``.
    spec : str or RenderSpec
        The model's render spec.

    Raises
    ------
    ValueError
        An ``.npy`` file that does not hold uint8 images of the spec's shape.
    """
    from edge_scorer.dsp.render_night import render_night
    from edge_scorer.io.spec import load_spec

    spec = load_spec(spec) if isinstance(spec, str) else spec
    if source is None or str(source) == "simulated":
        images = simulated_epochs(spec, n_nights=n_nights, duration_h=duration_h, seed=seed)
        return images, (f"{len(images)} epochs of {n_nights} simulated {spec.name} night(s) of "
                        f"{duration_h:g} h, seed {seed}")
    path = Path(source)
    if path.is_dir() and (path / "epochs.npy").is_file():
        path = path / "epochs.npy"
    if path.suffix == ".npy":
        images = np.load(path)
        if images.dtype != np.uint8 or tuple(images.shape[1:]) != tuple(spec.image_shape):
            raise ValueError(f"{path}: expected rendered epochs uint8 (N, "
                             f"{', '.join(map(str, spec.image_shape))}) of spec {spec.name!r}, "
                             f"got {images.dtype} {images.shape}; write them with edge-scorer "
                             f"render --spec {spec.name}")
        return images, f"{len(images)} epochs from {path}"
    images = render_night(path, spec).images
    return images, f"{len(images)} epochs rendered from {path}"


def load_nights(source: str | Path | None, spec: Any = "sleep-edf", *, seed: int = 0,
                duration_h: float = 0.5, n_nights: int = 1) -> tuple[list[np.ndarray], str]:
    """Whole nights of rendered epochs (one array per night, in time order) and a description.

    The gates score whole nights through the window rule, so nights are kept apart: simulated
    night ``i`` has seed ``seed + i`` (held-out checks pass ``seed + HELD_OUT_SEED_OFFSET``);
    a file source (``epochs.npy``, a PSG file) is one night. See :func:`load_epochs`.
    """
    if n_nights < 1:
        raise ValueError(f"n_nights must be >= 1, got {n_nights}")
    if source is None or str(source) == "simulated":
        nights = [load_epochs(None, spec, seed=seed + i, duration_h=duration_h)[0]
                  for i in range(n_nights)]
        name = spec if isinstance(spec, str) else spec.name
        return nights, (f"{sum(map(len, nights))} epochs of {n_nights} simulated {name} "
                        f"night(s) of {duration_h:g} h, seeds {seed}..{seed + n_nights - 1}")
    images, desc = load_epochs(source, spec, seed=seed, duration_h=duration_h)
    return [images], desc


def image_input(images: np.ndarray) -> np.ndarray:
    """Rendered uint8 images as the intra model's float32 ``image`` input ``(B, C, H, W)``."""
    x = np.asarray(images, dtype=np.float32)
    if x.ndim == 3:
        return x[:, None]
    if x.ndim == 4 and x.shape[-1] == 3:
        return np.ascontiguousarray(x.transpose(0, 3, 1, 2))
    return x


def feature_windows(features: np.ndarray, length: int) -> np.ndarray:
    """Every window of ``length`` consecutive features, stride 1 (a short night is
    edge-padded to one window): the windows offline scoring reads, from the one window rule
    (:func:`edge_scorer.inference.windows.window_index` at
    :func:`~edge_scorer.inference.windows.offline_ends`)."""
    from edge_scorer.inference.windows import offline_ends, window_index

    index = window_index(offline_ends(len(features), length), length)
    return np.ascontiguousarray(np.asarray(features)[index], dtype=np.float32)


def sibling_intra(model: Path, intra: str | Path | None = None) -> Path:
    """The intra model that feeds an inter model (``intra`` or ``intra.onnx`` beside it)."""
    path = Path(intra) if intra is not None else model.with_name("intra.onnx")
    if not path.is_file():
        raise FileNotFoundError(f"{model.name} is an inter model: its inputs are intra features; "
                                f"give the intra model (--intra INTRA.onnx), {path} not found")
    return path


def model_feeds(model: str | Path, images: np.ndarray, *, batch_size: int = 32,
                intra: str | Path | None = None) -> list[dict[str, np.ndarray]]:
    """Input batches of an exported model for rendered epochs.

    Intra models get the images; inter models get every window of intra features (computed
    by the fp32 intra model on ONNX Runtime CPU), in batches of ``batch_size``.

    Raises
    ------
    ValueError
        A model that is neither intra nor inter, or an intra model of another feature size.
    """
    from edge_scorer.inference.backends import OrtBackend

    model = Path(model)
    be = OrtBackend(model)
    kind = be.metadata.get("kind")
    if kind == "intra":
        x = image_input(images)
        return [{"image": x[i:i + batch_size]} for i in range(0, len(x), batch_size)]
    if kind != "inter":
        raise ValueError(f"{model}: model kind {kind!r}; expected an edge-scorer intra or inter "
                         "model (exported with edge-scorer export onnx)")
    src = OrtBackend(sibling_intra(model, intra))
    if src.metadata.get("feature_dim") != be.metadata.get("feature_dim"):
        raise ValueError(f"{src.path.name} makes {src.metadata.get('feature_dim')}-d features, "
                         f"{model.name} reads {be.metadata.get('feature_dim')}-d ones")
    x = image_input(images)
    feats = np.concatenate([src.infer({"image": x[i:i + 64]})["features"]
                            for i in range(0, len(x), 64)])
    windows = feature_windows(feats, int(be.metadata.get("window_length") or 10))
    return [{"features": windows[i:i + batch_size]} for i in range(0, len(windows), batch_size)]


def compare_logits(reference: np.ndarray, other: np.ndarray) -> dict[str, float]:
    """Agreement of two models' logits ``(..., C)``: argmax agreement, max abs difference of the
    softmax probabilities and of the logits, number of compared predictions (the logits-only
    comparison the gates of :mod:`export.gate` extend to features and final stages)."""
    from edge_scorer.inference.windows import softmax

    reference, other = np.asarray(reference, np.float64), np.asarray(other, np.float64)
    if reference.shape != other.shape:
        raise ValueError(f"logits of shape {reference.shape} and {other.shape} cannot be compared")
    agree = reference.argmax(-1) == other.argmax(-1)
    return {"argmax_agreement": float(agree.mean()) if agree.size else 1.0,
            "max_abs_diff_proba": float(np.abs(softmax(reference) - softmax(other)).max()),
            "max_abs_diff_logits": float(np.abs(reference - other).max()),
            "n": int(agree.size)}
