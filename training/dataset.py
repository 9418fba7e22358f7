"""The epoch cache: every night rendered once, through the one renderer, into memory-mapped arrays.

Training reads epochs many times; rendering them each time would dominate a CPU run. So
:func:`build_cache` renders every night with
:func:`edge_scorer.dsp.render_night.render_night` (the same conditioning and renderer as live
scoring) and appends them to arrays on disk:
``images.npy`` uint8 ``(N, H, W)`` (memory-mapped), ``labels.npy`` int8 ``(N,)`` stage codes
(-1 unscored), ``night.npy`` int32 night index, ``epoch.npy`` int32 epoch index in the night's
recording, optional ``signals.npy`` float16 ``(N, n_rows, epoch_samples)`` conditioned signals
(STQS input, memory-mapped), and ``cache.json`` (spec name and hash; per night its name,
subject, psg, hypnogram, n_epochs, offset, trim; build time; edge-scorer version).

Unscored epochs stay in the cache with label -1 (losses mask them; sequence models keep their
continuity). Wake at both ends of a night is trimmed the usual Sleep-EDF way (30 min before the
first to 30 min after the last sleep epoch, :func:`edge_scorer.io.hypnogram_io.inbed_crop`).
A cache is reused while the spec hash, the night list (paths, sizes, modification times), the
trim and the augmentation settings are unchanged, and rebuilt otherwise.

With an :class:`~training.augment.AugmentConfig` of ``copies > 0``, each night of the given
training subjects is followed by ``copies`` augmented versions (``NAME+aug1``, ...): its
native-rate rows changed by :mod:`training.augment`, then the same conditioning and renderer
(:func:`edge_scorer.dsp.render_night.condition_recording` with a ``transform``). They keep the
night's subject, labels and trim, carry ``"augmented": k`` in ``cache.json``, and only ever serve
training (:meth:`EpochCache.nights_of` leaves them out unless asked).

Nights are rendered one after the other, never more than one night's images in memory (a
process pool would hold several; rendering is a one-off ~2.5 s per 8-h night on 2 cores).

With ``store="signals"`` (``data.store``) the cache holds no images: one int16 file of coded
conditioned epochs per night (``signals/NNNNNN.npy``), and ``EpochCache.images`` renders the
epochs when they are read, byte for byte the images of the image store
(:mod:`training.signal_cache`); ``EpochCache.signals`` decodes the same files for STQS.
``store="columns"`` keeps only the per-pixel-column minimum, maximum and last code (about 5x
smaller again; images only, no STQS input).
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.io.spec import RenderSpec, load_spec
from edge_scorer.stages import CLASS_NAMES, Stage
from training.augment import AugmentConfig
from training.cache_writer import SIGNALS_DIR, CacheWriter
from training.nights import (
    NightSource,
    canonical_subject,
    load_nights,
    nights_from_folder,
    subject_from_name,
)
from training.signal_cache import STORES, DecodedSignals, NightCodes, RenderedImages, SignalCodec

if TYPE_CHECKING:
    from edge_scorer.io.psg import PsgRecording

log = get_logger("training.dataset")

__all__ = [
    "CACHE_FORMAT", "EpochCache", "NightSource", "build_cache", "canonical_subject",
    "load_nights", "nights_from_folder", "open_cache", "subject_from_name",
]

#: Version of the cache layout; a different one is rebuilt.
CACHE_FORMAT = 1
# ---------------------------------------------------------------------------- the cache
@dataclass
class EpochCache:
    """An opened epoch cache: the arrays of the module docstring (``images`` and ``signals``
    memory-mapped, ``signals`` None when not built), ``nights`` (per night: name, subject, psg,
    hypnogram, n_epochs, offset, trim, ...), the render spec's ``spec_name``/``spec_hash`` and
    ``meta`` (all of ``cache.json``).
    """

    path: Path
    images: np.ndarray | RenderedImages
    labels: np.ndarray
    night: np.ndarray
    epoch: np.ndarray
    signals: np.ndarray | DecodedSignals | None
    nights: list[dict]
    spec_name: str
    spec_hash: str
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def n_nights(self) -> int:
        return len(self.nights)

    def night_slice(self, i: int) -> slice:
        """Rows of night ``i``."""
        n = self.nights[i]
        return slice(n["offset"], n["offset"] + n["n_epochs"])

    def subjects(self) -> list[str]:
        """Sorted distinct subject ids of the cached nights."""
        return sorted({n["subject"] for n in self.nights})

    def is_augmented(self, i: int) -> bool:
        """Whether night ``i`` is an augmented copy (training only)."""
        return bool(self.nights[i].get("augmented", 0))

    def nights_of(self, subjects: Iterable[str], *, augmented: bool = False) -> list[int]:
        """Indices of the nights of ``subjects`` (matched by :func:`canonical_subject`).

        Augmented copies are left out unless ``augmented`` (only training uses them; never
        validation, test or evaluation).
        """
        want = {canonical_subject(s) for s in subjects}
        return [i for i, n in enumerate(self.nights) if canonical_subject(n["subject"]) in want
                and (augmented or not n.get("augmented", 0))]

    def select(self, night_indices: Iterable[int]) -> np.ndarray:
        """Row indices (int64, in night order) of the given nights."""
        parts = [np.arange(self.night_slice(int(i)).start, self.night_slice(int(i)).stop)
                 for i in night_indices]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int64)

    def class_counts(self, rows: np.ndarray | None = None) -> dict[str, int]:
        """Epochs per stage (and ``unscored``) over ``rows`` (default all)."""
        y = self.labels if rows is None else self.labels[rows]
        counts = np.bincount(y[y >= 0].astype(np.int64), minlength=len(CLASS_NAMES))
        return {**dict(zip(CLASS_NAMES, counts.tolist())), "unscored": int((y < 0).sum())}

    def spec(self) -> RenderSpec:
        """The render spec of the cache, checked against the stored hash."""
        spec = load_spec(self.meta.get("spec", {}).get("source") or self.spec_name)
        if spec.hash != self.spec_hash:
            raise ValueError(
                f"cache {self.path} was rendered with spec {self.spec_name!r} hash "
                f"{self.spec_hash}, the spec now has hash {spec.hash}; rebuild the cache"
            )
        return spec


def open_cache(cache_dir: str | Path) -> EpochCache:
    """Open a cache written by :func:`build_cache` (images and signals memory-mapped).

    Raises
    ------
    FileNotFoundError
        No complete cache in ``cache_dir``.
    ValueError
        Inconsistent files (an interrupted build): rebuild it.
    """
    path = Path(cache_dir)
    meta_path = path / "cache.json"
    if not meta_path.is_file():
        raise FileNotFoundError(
            f"no epoch cache in {path} (cache.json missing); build one with "
            "training.dataset.build_cache or set data.nights so 'edge-scorer train' builds it"
        )
    meta = json.loads(meta_path.read_text())
    if meta.get("format") != CACHE_FORMAT:
        raise ValueError(f"{path}: cache format {meta.get('format')} is not {CACHE_FORMAT}; "
                         "rebuild it (delete the folder or run training with data.nights)")
    labels = np.load(path / "labels.npy")
    night = np.load(path / "night.npy")
    epoch = np.load(path / "epoch.npy")
    store = meta.get("store", "images")
    if store == "images":
        images = np.load(path / "images.npy", mmap_mode="r")
        signals = np.load(path / "signals.npy", mmap_mode="r") if meta.get("signals") else None
    else:
        images, signals = _signal_views(path, meta, store)
    n = int(meta["n_epochs"])
    lengths = {len(images), len(labels), len(night), len(epoch)} | (
        {len(signals)} if signals is not None else set())
    if lengths != {n}:
        raise ValueError(f"{path}: cache arrays disagree in length ({sorted(lengths)} vs {n}); "
                         "the build was interrupted, rebuild the cache")
    return EpochCache(path, images, labels, night, epoch, signals, list(meta["nights"]),
                      meta["spec"]["name"], meta["spec"]["hash"], meta)


def _signal_views(path: Path, meta: dict, store: str
                  ) -> tuple[RenderedImages, DecodedSignals | None]:
    """The rendered-on-read images (and decoded signals) of a signal cache."""
    spec = load_spec(meta["spec"].get("source") or meta["spec"]["name"])
    if spec.hash != meta["spec"]["hash"]:
        raise ValueError(f"{path}: the signal cache was written for spec hash "
                         f"{meta['spec']['hash']}, the spec now has hash {spec.hash}; its "
                         "epochs cannot be rendered, rebuild it (set data.nights)")
    codec = SignalCodec(spec, store, int(meta["codec"]["bits"]))
    nights = meta["nights"]
    offsets = np.array([n["offset"] for n in nights] + [int(meta["n_epochs"])], dtype=np.int64)
    codes = NightCodes(path / SIGNALS_DIR, [n["file"] for n in nights], offsets,
                       codec.item_shape)
    return RenderedImages(codes, codec), (DecodedSignals(codes, codec) if store == "signals"
                                          else None)


def trim_window(stages: np.ndarray, epoch_s: float, trim_wake_min: float | None) -> tuple[int, int]:
    """Epoch range ``[start, stop)`` kept by the in-bed trim (whole night when not trimming).

    Uses :func:`~edge_scorer.io.hypnogram_io.inbed_crop` with a ``trim_wake_min`` margin; a night
    without any sleep epoch (or ``trim_wake_min`` None or negative) is kept whole.
    """
    from edge_scorer.io.hypnogram_io import inbed_crop
    from edge_scorer.stats.hypnogram import Hypnogram

    n = len(stages)
    if trim_wake_min is None or trim_wake_min < 0 or not np.any(stages > Stage.W):
        return 0, n
    crop = inbed_crop(Hypnogram(np.asarray(stages, dtype=np.int8), epoch_s=epoch_s),
                      margin_s=trim_wake_min * 60.0)
    start = int(round(crop.onset_s / epoch_s))
    return start, start + crop.n_epochs


def _request(nights: Sequence[NightSource], spec: RenderSpec, trim_wake_min,
             augment: AugmentConfig | None, augment_subjects: list[str] | None,
             store: str = "images") -> dict:
    out = {"format": CACHE_FORMAT, "spec_hash": spec.hash, "trim_wake_min": trim_wake_min,
           "nights": [n.fingerprint() for n in nights]}
    if store != "images":  # absent for the image store: older caches stay valid
        out["store"] = store
    if augment is not None and augment.copies > 0:  # absent otherwise: older caches stay valid
        out["augment"] = {"settings": augment.to_dict(), "subjects": augment_subjects}
    return out


def _read_night(src: NightSource, spec: RenderSpec, *, render: bool, signals: bool):
    """``(recording, images or None, conditioned or None, stages, warnings)`` of one night:
    read, conditioned, rendered when asked (the offline path of
    :func:`edge_scorer.dsp.render_night.render_night`), labelled (UNSCORED without a hypnogram)."""
    from edge_scorer.dsp.conditioning import epochs_from_signal
    from edge_scorer.dsp.render_night import condition_recording, render_night
    from edge_scorer.io.psg import align_hypnogram, read_psg

    if render:
        night = render_night(src.psg, spec, src.hypnogram)
        rec, images, warnings = night.recording, night.images, list(night.warnings)
        cond = condition_recording(rec, spec)[0] if signals else None
        stages, n = night.stages, night.n_epochs
    else:
        rec = read_psg(src.psg, spec)
        warnings, images = list(rec.warnings), None
        cond, n_invalid = condition_recording(rec, spec)
        n = len(epochs_from_signal(cond, spec))
        if n == 0:
            raise ValueError(f"{src.psg}: the recording ({rec.duration_s:.1f} s) is shorter "
                             f"than one {spec.epoch_s:g}-s epoch; nothing to score")
        if n_invalid.any():
            warnings.append("non-finite samples drawn as gaps: " + ", ".join(
                f"{name} {k}" for name, k in zip(spec.row_names, n_invalid.tolist()) if k))
        stages = None
        if src.hypnogram is not None:
            stages = align_hypnogram(src.hypnogram, n * spec.epoch_s, epoch_s=spec.epoch_s,
                                     warnings=warnings).stages
    if stages is None:
        stages = np.full(n, Stage.UNSCORED, dtype=np.int8)
    return rec, images, cond, stages, warnings


def _reusable(path: Path, request: dict, signals: bool) -> EpochCache | None:
    try:
        cache = open_cache(path)
    except (FileNotFoundError, ValueError, OSError, KeyError):
        return None
    old = cache.meta.get("request")
    if old != request:
        why = ("the spec changed" if old and old.get("spec_hash") != request["spec_hash"]
               else "the night list changed" if old and old.get("nights") != request["nights"]
               else "the augmentation settings changed"
               if old and old.get("augment") != request.get("augment")
               else "the store changed" if old and old.get("store") != request.get("store")
               else "the trim setting changed" if old else "it has no build record")
        log.info("rebuilding the epoch cache in %s: %s", path, why)
        return None
    if signals and cache.signals is None:
        log.info("rebuilding the epoch cache in %s: conditioned signals were requested", path)
        return None
    return cache


def build_cache(
    nights: Sequence[NightSource],
    spec: RenderSpec | str,
    cache_dir: str | Path,
    *,
    signals: bool = False,
    trim_wake_min: float | None = 30.0,
    skip_bad: bool = False,
    augment: AugmentConfig | None = None,
    augment_subjects: Iterable[str] | None = None,
    store: str = "images",
) -> EpochCache:
    """Render nights into an epoch cache, or reuse the one in ``cache_dir`` when up to date.

    Parameters
    ----------
    nights : sequence of NightSource
        The nights, e.g. from :func:`nights_from_folder`.
    spec : RenderSpec or str
        Render spec (or shipped spec name / spec file path).
    cache_dir : path-like
        Output folder (created).
    signals : bool
        Also store the conditioned signals (``signals.npy``, STQS input).
    trim_wake_min : float or None
        Keep from this many minutes before the first to after the last sleep epoch; None or a
        negative value keeps whole nights.
    skip_bad : bool
        Skip nights that cannot be read (logged and listed in ``cache.json``) instead of
        raising.
    augment : AugmentConfig, optional
        With ``copies > 0``: that many augmented versions of each night of
        ``augment_subjects`` follow it (see the module docstring). None or 0 copies: none.
    augment_subjects : iterable of str, optional
        The training subjects whose nights are augmented (matched by
        :func:`canonical_subject`); None: every night.
    store : {"images", "signals", "columns"}
        What is stored (module docstring): rendered images, or coded conditioned signals
        rendered when read (``signals`` also serves STQS, ``columns`` does not).

    Returns
    -------
    EpochCache

    Raises
    ------
    ValueError
        No nights, duplicate night names, a night that cannot be read (without ``skip_bad``).
    """
    if store not in STORES:
        raise ValueError(f"data.store {store!r}: use one of {list(STORES)}")
    if signals and store == "columns":
        raise ValueError("STQS needs the conditioned signals, which data.store = \"columns\" "
                         "does not keep; use data.store = \"signals\" (or \"images\")")
    spec_source = spec if isinstance(spec, str) else spec.name
    spec = load_spec(spec) if isinstance(spec, str) else spec
    nights = list(nights)
    _check_night_names(nights)
    copies = augment.copies if augment is not None else 0
    aug_subjects = (None if augment_subjects is None or not copies
                    else sorted({canonical_subject(s) for s in augment_subjects}))
    path = Path(cache_dir)
    request = _request(nights, spec, trim_wake_min, augment, aug_subjects, store)
    cache = _reusable(path, request, signals)
    if cache is not None:
        log.info("reusing the epoch cache in %s (%d nights, %d epochs, spec %s %s)", path,
                 cache.n_nights, len(cache), cache.spec_name, cache.spec_hash)
        return cache

    t_start = time.perf_counter()
    _clear_cache_dir(path, signals, store)
    out = CacheWriter(path, spec, signals, store)
    try:
        for k, src in enumerate(nights):
            t0 = time.perf_counter()
            night = _cache_night(out, src, spec, signals=signals, trim_wake_min=trim_wake_min,
                                 skip_bad=skip_bad, progress=(k + 1, len(nights)))
            if night is None or augment is None or not copies or (
                    aug_subjects is not None
                    and canonical_subject(src.subject) not in aug_subjects):
                continue
            _cache_augmented_copies(out, src, spec, night, augment, signals=signals)
            log.info("%s: %d augmented copies, %.1f s", src.name, copies,
                     time.perf_counter() - t0)
    finally:
        out.close()
    meta = _cache_meta(out, spec, str(spec_source), signals=signals,
                       trim_wake_min=trim_wake_min, store=store, request=request,
                       t_start=t_start)
    if copies and augment is not None:
        meta["augment"] = {"copies": copies, "seed": augment.seed, "subjects": aug_subjects}
    tmp = path / "cache.json.tmp"
    tmp.write_text(json.dumps(meta, indent=1) + "\n")
    tmp.replace(path / "cache.json")
    log.info("built the epoch cache in %s: %d nights, %d epochs (%s), %.1f s", path,
             len(meta["nights"]), meta["n_epochs"],
             ", ".join(f"{k} {v}" for k, v in meta["class_counts"].items()), meta["build_s"])
    return open_cache(path)


def _check_night_names(nights: Sequence[NightSource]) -> None:
    """Refuse an empty night list and duplicate night names."""
    if not nights:
        raise ValueError("no nights to cache; check data.nights (folder or list)")
    names = [n.name for n in nights]
    if len(set(names)) != len(names):
        dup = sorted({x for x in names if names.count(x) > 1})
        raise ValueError(f"duplicate night names {dup}; give every night a unique name")


def _clear_cache_dir(path: Path, signals: bool, store: str) -> None:
    """Create the cache folder and remove what a build with these settings would not rewrite
    (and ``cache.json``: an interrupted build is never "complete")."""
    path.mkdir(parents=True, exist_ok=True)
    (path / "cache.json").unlink(missing_ok=True)  # an interrupted build is never "complete"
    if not signals or store != "images":
        (path / "signals.npy").unlink(missing_ok=True)
    if store != "images":
        (path / "images.npy").unlink(missing_ok=True)


@dataclass
class _CachedNight:
    """A night just added to the cache, as its augmented copies need it."""

    recording: PsgRecording
    info: dict
    stages: np.ndarray


def _cache_night(
    out: CacheWriter,
    src: NightSource,
    spec: RenderSpec,
    *,
    signals: bool,
    trim_wake_min: float | None,
    skip_bad: bool,
    progress: tuple[int, int],
) -> _CachedNight | None:
    """Read, condition, render and add one night; None when skipped (``skip_bad``)."""
    t0 = time.perf_counter()
    try:
        rec, images, cond, stages, warnings = _read_night(
            src, spec, render=out.needs_images, signals=signals or not out.needs_images)
    except (ValueError, FileNotFoundError, OSError) as exc:
        if not skip_bad:
            raise ValueError(f"night {src.name} ({src.psg}): {exc}") from exc
        log.warning("skipping night %s: %s", src.name, exc)
        out.skipped.append({"name": src.name, "psg": str(src.psg), "error": str(exc)})
        return None
    n_all = len(stages)
    start, stop = trim_window(stages, spec.epoch_s, trim_wake_min)
    info = {
        "name": src.name, "subject": src.subject, "psg": str(Path(src.psg).resolve()),
        "hypnogram": str(Path(src.hypnogram).resolve()) if src.hypnogram else None,
        "trim": {"start": start, "stop": stop, "n_rendered": n_all},
        "n_unscored": int((stages[start:stop] < 0).sum()),
        "warnings": warnings,
    }
    out.add(info, images, cond, stages, t0)
    log.info("%s (%d/%d): %d epochs kept of %d (trimmed %d + %d wake epochs at the "
             "ends), %d unscored, %.1f s", src.name, *progress, stop - start,
             n_all, start, n_all - stop, info["n_unscored"], time.perf_counter() - t0)
    return _CachedNight(rec, info, stages)


def _cache_augmented_copies(
    out: CacheWriter,
    src: NightSource,
    spec: RenderSpec,
    night: _CachedNight,
    augment: AugmentConfig,
    *,
    signals: bool,
) -> None:
    """Add ``augment.copies`` augmented versions of a night (seeded by night name and copy)."""
    from functools import partial

    from edge_scorer.dsp.conditioning import epochs_from_signal
    from edge_scorer.dsp.render import render_epochs
    from edge_scorer.dsp.render_night import condition_recording
    from training.augment import apply_augmentation, copy_seed, plan_augmentation

    types = [r.type for r in spec.rows]
    rec, n_all = night.recording, len(night.stages)
    for c in range(1, augment.copies + 1):
        t1 = time.perf_counter()
        plan = plan_augmentation(augment, types, rec.duration_s,
                                 copy_seed(augment.seed, src.name, c))
        cond, _ = condition_recording(rec, spec, partial(apply_augmentation, plan=plan))
        epochs = epochs_from_signal(cond, spec)
        if len(epochs) != n_all:
            raise ValueError(f"augmented copy {c} of {src.name} has {len(epochs)} "
                             f"epochs, the night {n_all}")
        images = render_epochs(epochs, spec) if out.needs_images else None
        out.add({**night.info, "name": f"{src.name}+aug{c}", "augmented": c,
                 "augment": plan.summary()}, images,
                cond if signals or not out.needs_images else None, night.stages, t1)
        del cond, images


def _cache_meta(
    out: CacheWriter,
    spec: RenderSpec,
    spec_source: str,
    *,
    signals: bool,
    trim_wake_min: float | None,
    store: str,
    request: dict,
    t_start: float,
) -> dict:
    """Finish the writer and return the ``cache.json`` record of the build (started at
    ``t_start``, a :func:`time.perf_counter` value)."""
    from edge_scorer import __version__

    data = out.finish()
    meta = {
        "format": CACHE_FORMAT,
        "spec": {"name": spec.name, "hash": spec.hash, "source": spec_source},
        "image_shape": list(spec.image_shape), "signals": bool(signals),
        "signal_shape": [spec.n_rows, spec.epoch_samples] if signals else None,
        "row_names": list(spec.row_names), "epoch_s": spec.epoch_s,
        "n_epochs": data["n_epochs"], "trim_wake_min": trim_wake_min,
        "class_counts": data["class_counts"], "nights": data["nights"],
        "skipped": data["skipped"], "store": store,
        "build_time": datetime.now(UTC).isoformat(timespec="seconds"),
        "build_s": round(time.perf_counter() - t_start, 2),
        "edge_scorer_version": __version__, "request": request,
    }
    if out.codec is not None:
        meta["codec"] = out.codec.to_dict()
    return meta
