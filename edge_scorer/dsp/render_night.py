"""The offline path: a PSG file (and its hypnogram) -> the model's epoch images and labels.

It runs the same :class:`~edge_scorer.dsp.conditioning.Conditioner` and renderer as live scoring
(the live engine feeds them chunk by chunk; here one chunk holds the whole night), so the images
are the ones the engine shows the model. Training, ``edge-scorer render`` and the demo use it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.dsp.conditioning import Conditioner, epochs_from_signal
from edge_scorer.dsp.render import render_epochs
from edge_scorer.io.psg import PsgRecording, align_hypnogram, read_psg
from edge_scorer.io.spec import RenderSpec, load_spec

log = get_logger("pipeline")

#: A change of a recording's native-rate rows before conditioning (training augmentations):
#: ``transform(rows, rates) -> rows`` with the rows in spec order and the same rates.
RowsTransform = Callable[[list[np.ndarray], list[float]], Sequence[np.ndarray]]


@dataclass
class RenderedNight:
    """The epoch images of one night, with labels when a hypnogram was given.

    Attributes
    ----------
    images : ndarray of uint8, shape (n_epochs, *spec.image_shape)
    stages : ndarray of int8 or None
        Stage of each epoch (hypnogram aligned to the signal's epoch grid), or None.
    recording : PsgRecording
        What was read.
    spec : RenderSpec
    n_invalid : ndarray of int64, shape (n_rows,)
        Samples per row that came from non-finite input (drawn as gaps).
    warnings : list of str
        Everything found and handled on the way (units, flat channels, hypnogram length).
    """

    images: np.ndarray
    stages: np.ndarray | None
    recording: PsgRecording
    spec: RenderSpec
    n_invalid: np.ndarray
    warnings: list[str] = field(default_factory=list)

    @property
    def n_epochs(self) -> int:
        return len(self.images)

    def label_with(self, hypnogram: str | Path) -> np.ndarray:
        """Read a hypnogram file and lay it on the epochs (sets and returns ``stages``).

        A hypnogram longer than the signal is cropped, a shorter one padded with UNSCORED;
        both are recorded in ``warnings``.
        """
        self.stages = align_hypnogram(hypnogram, self.n_epochs * self.spec.epoch_s,
                                      epoch_s=self.spec.epoch_s, warnings=self.warnings).stages
        return self.stages


def condition_recording(
    rec: PsgRecording, spec: RenderSpec, transform: RowsTransform | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Condition a whole recording at its rows' native rates (flushed at the end).

    Parameters
    ----------
    rec : PsgRecording
    spec : RenderSpec
    transform : callable, optional
        Applied to the native-rate rows before conditioning (``transform(rows, rates)``,
        e.g. :func:`training.augment.apply_augmentation`); it must keep the rates.

    Returns
    -------
    conditioned : ndarray, shape (n_rows, n_samples)
        At ``spec.sfreq``.
    n_invalid : ndarray, shape (n_rows,)
        Non-finite input samples per row.
    """
    rows, rates = rec.native_rows()
    if transform is not None:
        rows = list(transform(rows, rates))
    cond = Conditioner(spec, rates)
    conditioned = np.concatenate((cond.process(rows), cond.flush()), axis=1)
    return conditioned, cond.n_invalid.copy()


def render_recording(
    rec: PsgRecording, spec: RenderSpec, transform: RowsTransform | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Condition and render every complete epoch of a recording (``transform``: see
    :func:`condition_recording`).

    Returns
    -------
    images : ndarray of uint8, shape (n_epochs, *spec.image_shape)
    n_invalid : ndarray, shape (n_rows,)
    """
    conditioned, n_invalid = condition_recording(rec, spec, transform)
    return render_epochs(epochs_from_signal(conditioned, spec), spec), n_invalid


def render_night(
    psg: str | Path,
    spec: RenderSpec | str = "sleep-edf",
    hypnogram: str | Path | None = None,
    channel_overrides: Mapping[str, str] | None = None,
) -> RenderedNight:
    """Read, condition and render a PSG file; align its hypnogram to the epochs.

    Raises
    ------
    PsgReadError, ChannelMapError, FileNotFoundError
        From :func:`~edge_scorer.io.psg.read_psg`.
    ValueError
        When the recording is shorter than one epoch or the hypnogram cannot be aligned.
    """
    spec = load_spec(spec) if isinstance(spec, str) else spec
    rec = read_psg(psg, spec, channel_overrides)
    warnings = list(rec.warnings)
    images, n_invalid = render_recording(rec, spec)
    if len(images) == 0:
        raise ValueError(
            f"{psg}: the recording ({rec.duration_s:.1f} s) is shorter than one "
            f"{spec.epoch_s:g}-s epoch; nothing to score"
        )
    if n_invalid.any():
        text = "non-finite samples drawn as gaps: " + ", ".join(
            f"{name} {k}" for name, k in zip(spec.row_names, n_invalid.tolist()) if k)
        log.warning("%s", text)
        warnings.append(text)
    night = RenderedNight(images, None, rec, spec, n_invalid, warnings)
    if hypnogram is not None:
        night.label_with(hypnogram)
    return night


def save_rendered(
    night: RenderedNight,
    out_dir: str | Path,
    *,
    hypnogram: str | Path | None = None,
    sheet_epochs: int = 60,
    png: bool = False,
) -> Path:
    """Write a rendered night: ``epochs.npy``, ``contact_sheet.png``, ``render.json``,
    ``labels.csv`` (when labelled) and, with ``png``, ``png/epoch_NNNNN.png``.

    The contact sheet shows every epoch of a short recording, or ``sheet_epochs`` spread over a
    long night. Every file is written atomically (:mod:`edge_scorer.io.outputs`); the caller
    decides about a folder holding an earlier run (``edge-scorer render`` refuses it unless
    ``--overwrite``, which removes the earlier run's files first). Returns the output folder.
    """
    import json

    from edge_scorer import __version__
    from edge_scorer.dsp.render import contact_sheet, save_png
    from edge_scorer.io.outputs import atomic_open, atomic_write
    from edge_scorer.stages import Stage

    spec, rec, images, stages = night.spec, night.recording, night.images, night.stages
    n = night.n_epochs
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    with atomic_open(out / "epochs.npy", "wb") as fh:
        np.save(fh, images)
    if n <= sheet_epochs:
        picks = np.arange(n)
    else:
        picks = np.unique(np.linspace(0, n - 1, sheet_epochs).round().astype(int))
    contact_sheet(images[picks], labels=None if stages is None else stages[picks].tolist(),
                  indices=picks.tolist(), path=out / "contact_sheet.png")
    if stages is not None:
        atomic_write(out / "labels.csv", "epoch,onset_s,stage\n" + "".join(
            f"{i},{i * spec.epoch_s:g},{Stage(code).label}\n"
            for i, code in enumerate(stages.tolist())))
    if png:
        for i, img in enumerate(images):
            save_png(img, out / "png" / f"epoch_{i:05d}.png")
    meta = {
        "edge_scorer_version": __version__,
        "spec": spec.name, "spec_version": spec.version, "spec_hash": spec.hash,
        "source": str(Path(rec.path).resolve()) if rec.path else None,
        "source_labels": list(rec.source_labels), "row_names": list(spec.row_names),
        "native_sfreqs": list(rec.native_sfreqs), "input_sfreq": rec.sfreq,
        "sfreq": spec.sfreq, "epoch_s": spec.epoch_s, "n_epochs": n,
        "duration_s": rec.duration_s, "image_shape": list(images.shape[1:]),
        "start_time": rec.start_time.isoformat() if rec.start_time else None,
        "hypnogram": str(Path(hypnogram).resolve()) if hypnogram else None,
        "invalid_samples": dict(zip(spec.row_names, night.n_invalid.tolist(), strict=True)),
        "warnings": night.warnings,
    }
    atomic_write(out / "render.json", json.dumps(meta, indent=2) + "\n")
    return out
