"""A scored night opened for review, and the occlusion analyses of the window. No Qt here.

:func:`load_night` reads a night's folder (what ``edge-scorer score``, ``stream``, the demo or
the window wrote): every update of ``epochs.csv`` (so the window shows the first provisional
stage and the revisions, as it did live), the technician's review so far
(:class:`~edge_scorer.engine.review.NightReview`), the model named in ``run.json`` and, when the PSG
file is known (``--edf``, or the file ``run.json`` names), the night conditioned and rendered
again through the one pipeline with the channel mapping of the run: the epoch images, the
conditioned epochs (for occlusion) and the native-rate signals (for the signal panel).

:class:`OcclusionExplainer` runs :func:`~edge_scorer.explain.occlusion.occlusion_analysis` in
the window's worker thread with its own ONNX Runtime session (the scoring backend is never
called from another thread).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.engine.review import NightReview, ReviewError, epoch_log_updates
from edge_scorer.io.spec import RenderSpec, load_spec

from .store import ScoredEpochs, channel_quality

log = get_logger("gui.night")


@dataclass
class LoadedNight:
    """A night's folder, read for the window (see :func:`load_night`).

    Attributes
    ----------
    folder : Path
    review : NightReview
    spec : RenderSpec
    batch : ScoredEpochs
        Every update of the epoch log, with the epoch images, quality and conditioned epochs
        when the PSG file was read.
    run_info : dict
        ``run.json``.
    psg : Path or None
        The PSG file read (None: no signals, images or occlusion).
    signals : list of ndarray
        Native-rate rows of the recording (spec order; empty without a file).
    rates : list of float
        Their sampling rates.
    intra, inter : Path or None
        The model files of the run (None: the shipped model).
    model : ScoringModel or None
        Those models, loaded (ONNX Runtime).
    warnings : list of str
    """

    folder: Path
    review: NightReview
    spec: RenderSpec
    batch: ScoredEpochs
    run_info: dict
    psg: Path | None = None
    signals: list[np.ndarray] = field(default_factory=list)
    rates: list[float] = field(default_factory=list)
    intra: Path | None = None
    inter: Path | None = None
    model: object = None
    warnings: list[str] = field(default_factory=list)

    def epoch_signals(self, index: int) -> dict[str, tuple[float, np.ndarray]]:
        """``{row: (rate, samples)}`` of epoch ``index`` (empty without a file)."""
        out = {}
        for row, x, rate in zip(self.spec.row_names, self.signals, self.rates):
            n = int(round(self.spec.epoch_s * rate))
            out[row] = (rate, x[index * n:(index + 1) * n])
        return out


def model_files(run_info: dict) -> tuple[Path | None, Path | None]:
    """The run's intra/inter model files (None, None: the shipped model, or files gone)."""
    from edge_scorer.inference.scorer import default_model_dir

    text = run_info.get("model") or ""
    if not text:
        return None, None
    intra = Path(text)
    if not intra.is_file() or intra.parent.resolve() == default_model_dir().resolve():
        if not intra.is_file():
            log.warning("the run's model %s is gone; using the shipped model", intra)
        return None, None
    inter = intra.with_name("inter.onnx")
    return intra, (inter if inter.is_file() and inter != intra else None)


def load_night(folder: str | Path, psg: str | Path | None = None, *,
               scorer: str = "") -> LoadedNight:
    """Read a night's folder for review (blocking: run it off the GUI thread).

    Parameters
    ----------
    folder : path-like
        The output folder of a scoring run.
    psg : path-like, optional
        The PSG file that was scored (default: the file ``run.json`` names, when it is there).
    scorer : str
        Who reviews.

    Raises
    ------
    ReviewError
        No scored night in the folder, or an audit log that does not fit it.
    FileNotFoundError
        ``psg`` does not exist.
    """
    from edge_scorer.dsp.conditioning import epochs_from_signal
    from edge_scorer.dsp.render import render_epochs
    from edge_scorer.dsp.render_night import condition_recording
    from edge_scorer.io.psg import read_psg

    folder = Path(folder)
    if not folder.is_dir():
        raise ReviewError(f"night folder {folder} not found; give the output folder (-o) of "
                          "a scoring run")
    review = NightReview.open(folder, scorer=scorer)
    info = json.loads((folder / "run.json").read_text()) if (folder / "run.json").is_file() \
        else {}
    spec = load_spec(info.get("spec") or "sleep-edf")
    warnings = list(review.warnings)
    if info.get("spec_hash") and info["spec_hash"] != spec.hash:
        warnings.append(f"the night was scored with spec {info.get('spec')} {info['spec_hash']}, "
                        f"this installation has {spec.hash}: images may differ")
    log_path = folder / "epochs.csv"
    updates = list(epoch_log_updates(log_path)) if log_path.is_file() else []
    batch = ScoredEpochs(updates)
    night = LoadedNight(folder, review, spec, batch, info, warnings=warnings)
    night.intra, night.inter = model_files(info)
    from edge_scorer.inference.scorer import ScoringModel

    night.model = ScoringModel.load(night.intra, night.inter, spec=spec)
    if psg is None and info.get("source") and Path(info["source"]).is_file():
        psg = info["source"]
    if psg is None:
        night.warnings.append("no PSG file: open the night with --edf FILE to see the signals, "
                              "epoch images, relevance and occlusion")
        return night
    psg = Path(psg)
    if not psg.is_file():
        raise FileNotFoundError(f"PSG file {psg} not found")
    channels = info.get("channels") if isinstance(info.get("channels"), dict) else None
    rec = read_psg(psg, spec, channels)
    conditioned, _ = condition_recording(rec, spec)
    epochs = epochs_from_signal(conditioned, spec).astype(np.float32)
    n = review.n_epochs
    if len(epochs) != n:
        night.warnings.append(f"{psg.name} gives {len(epochs)} epochs, the night has {n}; "
                              "the first min of both are shown")
    epochs = epochs[:n]
    images = render_epochs(epochs, spec)
    batch.images = dict(enumerate(images))
    batch.rows = dict(enumerate(epochs))
    batch.quality = {i: channel_quality(e, spec) for i, e in enumerate(epochs)}
    night.psg = psg
    night.signals, night.rates = rec.native_rows()
    night.rates = [float(r) for r in night.rates]
    log.info("review of %s: %d epochs, signals from %s", folder, n, psg)
    return night


@dataclass(frozen=True)
class OcclusionRequest:
    """One epoch to analyse: its conditioned rows, the neighbours (filter context), the stage
    to explain (None: the intra model's own) and the night's number."""

    index: int
    epoch: np.ndarray
    before: np.ndarray | None
    after: np.ndarray | None
    target: int | None
    night: int = 0


class OcclusionExplainer:
    """Occlusion analyses with an own ONNX Runtime session (loaded on the first request).

    Parameters
    ----------
    spec : RenderSpec
    intra, inter : path-like, optional
        The run's model files (default: the shipped model).
    """

    def __init__(self, spec: RenderSpec, intra: str | Path | None = None,
                 inter: str | Path | None = None) -> None:
        self.spec = spec
        self.intra, self.inter = intra, inter
        self.model = None

    def __call__(self, request: OcclusionRequest):
        """The :class:`~edge_scorer.explain.occlusion.OcclusionResult` of the request."""
        from edge_scorer.explain.occlusion import occlusion_analysis, onnx_proba_fn
        from edge_scorer.inference.scorer import ScoringModel

        if self.model is None:
            self.model = ScoringModel.load(self.intra, self.inter, spec=self.spec)
        target = request.target if request.target is not None and request.target >= 0 else None
        return occlusion_analysis(request.epoch, self.spec, onnx_proba_fn(self.model),
                                  target=target, before=request.before, after=request.after)


__all__ = ["LoadedNight", "OcclusionExplainer", "OcclusionRequest", "load_night", "model_files"]
