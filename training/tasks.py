"""The three training tasks, each a data set-up + a loss handed to the one loop (:func:`fit`).

* :func:`train_intra`: the intra-epoch ViT on cached epoch images, LineMix with probability
  ``intra.linemix_prob``, class imbalance by ``class_weighted`` loss, ``balanced`` sampling or
  ``none``. Unscored epochs are left out of its batches.
* :func:`train_inter`: the inter-epoch transformer on features of the trained intra model
  (:func:`~training.features.cached_features`), over non-overlapping runs of ``seq_len`` (10)
  consecutive epochs per night (plus one run ending at the night's last epoch), the loss averaged
  over the scored positions (unscored ones masked).
* :func:`train_stqs`: STQS on the cached conditioned signals, sequences of ``seq_len`` (8)
  epochs per night, class-weighted loss or oversampling.

Each writes ``config.json`` (the resolved configuration), ``split.json``, ``best.pt``,
``last.pt`` and ``train_log.csv`` into the run folder and returns it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_scorer._log import get_logger
from edge_scorer.inference.nets import create_model
from edge_scorer.io.spec import RenderSpec, load_spec
from edge_scorer.stages import N_CLASSES
from training import distributed as dist
from training.augment import AugmentConfig
from training.checkpoint import file_hash, make_meta, resolve_checkpoint
from training.config import save_config
from training.dataset import (
    EpochCache,
    build_cache,
    canonical_subject,
    load_nights,
    open_cache,
)
from training.features import cached_features, image_batch
from training.linemix import class_weights, linemix, linemix_loss
from training.splits import PARTS, find_split, resolve_split, save_split, split_nights
from training.trainer import BatchSource, fit

log = get_logger("training.tasks")

__all__ = ["TrainData", "prepare_data", "sequence_windows", "train", "train_inter",
           "train_intra", "train_stqs"]


@dataclass
class TrainData:
    """The data of a run: spec, cache, subject split and the night indices of each part."""

    spec: RenderSpec
    cache: EpochCache
    split: dict[str, list[str]]
    parts: dict[str, list[int]]

    def night_names(self) -> dict[str, list[str]]:
        """Night names per split part."""
        return {p: [self.cache.nights[i]["name"] for i in self.parts[p]] for p in PARTS}


def prepare_data(cfg: dict, *, signals: bool = False) -> TrainData:
    """Build or open the epoch cache of ``cfg["data"]`` and split its nights by subject.

    With ``data.nights`` set the cache is built (or reused when up to date); without, an existing
    cache in ``data.cache_dir`` is opened. With ``data.augment_copies > 0`` the nights of the
    training subjects get that many augmented copies (:mod:`training.augment`), used in the
    training part only; validation and test hold original nights only, and a copy is never a
    subject of its own.

    Raises
    ------
    FileNotFoundError
        No nights and no cache.
    ValueError
        Cache of another spec, no signals for STQS, an empty training part.
    """
    d = cfg["data"]
    spec = load_spec(d["spec"])
    augment = AugmentConfig(copies=int(d["augment_copies"]), seed=int(d["augment_seed"]))
    with dist.main_first():  # rank 0 builds the cache; the other ranks then reuse it
        cache = _open_or_build(cfg, spec, augment, signals)
    split = resolve_split(cache.subjects(), d["split"], d["split_fractions"], d["split_seed"])
    _check_augmented(cache, augment)
    parts = split_nights(cache, split, augmented=augment.copies > 0)
    if augment.copies:
        have = {canonical_subject(cache.nights[i]["subject"]) for i in parts["train"]
                if cache.is_augmented(i)}
        lacking = [s for s in split["train"] if canonical_subject(s) not in have]
        if lacking:
            log.warning("training subject(s) %s have no augmented copies in the cache (the "
                        "split changed after the build, e.g. a skipped night)", lacking)
    for p in PARTS:
        rows = cache.select(parts[p])
        counts = cache.class_counts(rows)
        n_aug = sum(cache.is_augmented(i) for i in parts[p])
        log.info("%s: %d subject(s), %d night(s)%s, %d epochs (%s)", p, len(split[p]),
                 len(parts[p]), f" ({n_aug} augmented copies)" if n_aug else "", len(rows),
                 ", ".join(f"{k} {v}" for k, v in counts.items()))
    if not parts["train"]:
        raise ValueError(f"the training part of the split has no night (subjects "
                         f"{cache.subjects()}); check data.split")
    return TrainData(spec, cache, split, parts)


def _open_or_build(cfg: dict, spec: RenderSpec, augment: AugmentConfig,
                   signals: bool) -> EpochCache:
    """The cache of ``cfg["data"]``: built or reused from ``data.nights``, else opened."""
    d = cfg["data"]
    if d["nights"] is not None:
        nights = load_nights(d["nights"], d["layout"])
        train_subjects = None
        if augment.copies:  # the split of the night list decides which nights are augmented
            train_subjects = resolve_split([n.subject for n in nights], d["split"],
                                           d["split_fractions"], d["split_seed"])["train"]
        cache = build_cache(nights, spec, d["cache_dir"], signals=signals,
                            trim_wake_min=d["trim_wake_min"], skip_bad=d["skip_bad"],
                            augment=augment if augment.copies else None,
                            augment_subjects=train_subjects, store=d["store"])
    else:
        try:
            cache = open_cache(d["cache_dir"])
        except FileNotFoundError as exc:
            raise FileNotFoundError(
                f"{exc}. Set data.nights to a folder of PSG + hypnogram files (e.g. --set "
                "data.nights=data/sim-sleep-edf; make simulated ones with 'edge-scorer "
                "simulate -o data/sim-sleep-edf --nights 16')") from None
        if cache.spec_hash != spec.hash:
            raise ValueError(f"cache {cache.path} holds spec {cache.spec_name!r} hash "
                             f"{cache.spec_hash}, the config asks for {spec.name!r} hash "
                             f"{spec.hash}; set data.nights so the cache is rebuilt")
        if signals and cache.signals is None:
            raise ValueError(f"cache {cache.path} has no conditioned signals (STQS input); set "
                             "data.nights so it is rebuilt with them (data.store = images or "
                             "signals; a columns store keeps no waveform)")
    return cache


def _check_augmented(cache: EpochCache, augment: AugmentConfig) -> None:
    """Say when the cache's augmented copies differ from what the config asks for."""
    n_aug = sum(cache.is_augmented(i) for i in range(cache.n_nights))
    built = cache.meta.get("augment") or {}
    if augment.copies == 0:
        if n_aug:
            log.info("data.augment_copies = 0: the %d augmented nights of the cache %s are not "
                     "used", n_aug, cache.path)
    elif (built.get("copies"), built.get("seed")) != (augment.copies, augment.seed):
        log.warning("the cache %s holds %d augmented nights (copies %s, seed %s) but the config "
                    "asks for %d copies, seed %d; set data.nights so the cache is rebuilt",
                    cache.path, n_aug, built.get("copies", 0), built.get("seed"),
                    augment.copies, augment.seed)


def _model(cfg: dict, **derived) -> nn.Module:
    overrides = {k: v for k, v in cfg["model"].items() if k != "preset"}
    torch.manual_seed(int(cfg["seed"]))  # the initial weights follow the seed
    try:
        return create_model(cfg["model"]["preset"], **{**derived, **overrides})
    except TypeError as exc:  # unknown config field
        raise ValueError(f"[model]: {exc}") from None


def _start(cfg: dict, data: TrainData, out: Path) -> None:
    if not dist.is_main():
        return
    out.mkdir(parents=True, exist_ok=True)
    save_split(data.split, out / "split.json")
    resolved = {**cfg, "out": str(out)}
    resolved["data"] = {**cfg["data"], "cache_dir": str(Path(data.cache.path).resolve())}
    if isinstance(cfg["data"]["nights"], str):
        resolved["data"]["nights"] = str(Path(cfg["data"]["nights"]).resolve())
    if cfg["data"]["split"] is not None:
        resolved["data"]["split"] = str(find_split(cfg["data"]["split"]).resolve())
    resolved["resolved_split"] = data.split
    save_config(resolved, out / "config.json")


def _meta(cfg: dict, data: TrainData, **extra) -> dict:
    return make_meta(task=cfg["task"], spec_name=data.spec.name, spec_hash=data.spec.hash,
                     seed=cfg["seed"], nights=data.night_names(), split=data.split,
                     cache=str(Path(data.cache.path).resolve()), **extra)


def _imbalance(mode: str, labels: np.ndarray) -> tuple[torch.Tensor | None, np.ndarray | None]:
    """(loss class weights, per-label sampling weights) of an imbalance mode."""
    if mode == "class_weighted":
        return class_weights(labels), None
    if mode in ("balanced", "oversample"):
        w = class_weights(labels).numpy()
        return None, w
    return None, None


def _ce_loss(weight: torch.Tensor | None) -> Callable:
    def loss_fn(model, batch, train, generator):
        logits, y = model(batch["x"]), batch["y"]
        w = None if weight is None else weight.to(logits.device)
        return linemix_loss(logits.float(), y, y, 0.0, weight=w), logits, y
    return loss_fn


def _out(cfg: dict) -> Path:
    return Path(cfg["out"]).expanduser().resolve()


# ---------------------------------------------------------------------------- intra
def train_intra(cfg: dict, *, resume: bool = False, quiet: bool = False) -> Path:
    """Train the intra-epoch ViT (see the module docstring); returns the run folder."""
    data = prepare_data(cfg)
    cache, spec, opts = data.cache, data.spec, cfg["intra"]
    if spec.image_height != spec.image_width:
        raise ValueError(f"spec {spec.name!r} renders {spec.image_height}x{spec.image_width} "
                         "images; the ViT needs square ones")

    def rows_of(part: str) -> np.ndarray:
        rows = cache.select(data.parts[part])
        return rows[cache.labels[rows] >= 0]

    train_rows, val_rows = rows_of("train"), rows_of("val")
    weight, per_class = _imbalance(opts["imbalance"], cache.labels[train_rows])

    def source(rows: np.ndarray, sample_w: np.ndarray | None = None) -> BatchSource:
        def get(idx: np.ndarray) -> dict:
            r = np.sort(rows[idx])  # sorted reads from the memmap
            return {"x": image_batch(cache.images[r]),
                    "y": torch.from_numpy(cache.labels[r].astype(np.int64))}
        return BatchSource(len(rows), get, sample_w)

    sample_w = None if per_class is None else per_class[cache.labels[train_rows]]
    p_mix, band = float(opts["linemix_prob"]), int(opts["band_px"])

    def loss_fn(model, batch, train, generator):
        x, y = batch["x"], batch["y"]
        ya, yb, lam = y, y, 0.0
        if train and p_mix > 0 and float(torch.rand(1, generator=generator)) < p_mix:
            x, ya, yb, lam = linemix(x, y, generator, band)
        logits = model(x)
        w = None if weight is None else weight.to(logits.device)
        return linemix_loss(logits.float(), ya, yb, lam, weight=w), logits, y

    model = _model(cfg, img_size=spec.image_height, in_chans=1 if spec.grayscale else 3)
    out = _out(cfg)
    _start(cfg, data, out)
    log.info("intra: %s, %d training / %d validation epochs, imbalance %s, LineMix p=%g",
             cfg["model"]["preset"], len(train_rows), len(val_rows), opts["imbalance"], p_mix)
    fit(model, source(train_rows, sample_w), source(val_rows), loss_fn, cfg["train"], out,
        seed=cfg["seed"], meta=_meta(cfg, data, input="rendered epoch images"),
        resume=resume, quiet=quiet)
    return out


# ---------------------------------------------------------------------------- sequences
def sequence_windows(cache: EpochCache, nights: list[int], seq_len: int) -> np.ndarray:
    """Runs of ``seq_len`` consecutive epochs within each night, as cache rows ``(n, seq_len)``.

    Non-overlapping runs from each night's first epoch, plus one run ending at its last epoch
    when the night length is not a multiple of ``seq_len`` (so every epoch is used). Runs without
    a scored epoch are dropped; nights shorter than ``seq_len`` are skipped with a warning.
    """
    if seq_len < 1:
        raise ValueError(f"seq_len must be at least 1, got {seq_len}")
    out = []
    for i in nights:
        sl = cache.night_slice(i)
        n = sl.stop - sl.start
        if n < seq_len:
            log.warning("night %s has %d epochs, fewer than seq_len=%d; skipped",
                        cache.nights[i]["name"], n, seq_len)
            continue
        starts = list(range(0, n - seq_len + 1, seq_len))
        if (n - seq_len) % seq_len:
            starts.append(n - seq_len)
        out += [sl.start + s + np.arange(seq_len) for s in starts]
    if not out:
        return np.zeros((0, seq_len), dtype=np.int64)
    win = np.stack(out).astype(np.int64)
    return win[(cache.labels[win] >= 0).any(axis=1)]


def _sequence_run(cfg: dict, data: TrainData, opts: dict, make_x: Callable, model: nn.Module,
                  resume: bool, quiet: bool, **meta_extra) -> Path:
    """Shared set-up of the two sequence tasks (inter, STQS)."""
    cache, seq_len = data.cache, int(opts["seq_len"])
    wins = {p: sequence_windows(cache, data.parts[p], seq_len) for p in ("train", "val")}
    if len(wins["train"]) == 0:
        raise ValueError(f"no training sequence of {seq_len} epochs with a scored epoch; "
                         "check the nights' length and hypnograms")
    labels_train = cache.labels[np.unique(wins["train"])]
    weight, per_class = _imbalance(opts["imbalance"], labels_train)
    sample_w = None
    if per_class is not None:
        y = cache.labels[wins["train"]]
        w = np.where(y >= 0, per_class[np.clip(y, 0, N_CLASSES - 1)], 0.0)
        sample_w = w.sum(axis=1) / np.maximum((y >= 0).sum(axis=1), 1)

    def source(win: np.ndarray, sw: np.ndarray | None = None) -> BatchSource:
        def get(idx: np.ndarray) -> dict:
            rows = win[np.sort(idx)]
            return {"x": make_x(rows), "y": torch.from_numpy(cache.labels[rows].astype(np.int64))}
        return BatchSource(len(win), get, sw)

    out = _out(cfg)
    _start(cfg, data, out)
    log.info("%s: %s, %d training / %d validation sequences of %d epochs, imbalance %s",
             cfg["task"], cfg["model"]["preset"], len(wins["train"]), len(wins["val"]), seq_len,
             opts["imbalance"])
    fit(model, source(wins["train"], sample_w), source(wins["val"]), _ce_loss(weight),
        cfg["train"], out, seed=cfg["seed"], meta=_meta(cfg, data, seq_len=seq_len,
                                                         **meta_extra),
        resume=resume, quiet=quiet)
    return out


def train_inter(cfg: dict, *, resume: bool = False, quiet: bool = False) -> Path:
    """Train the inter-epoch transformer on intra features; returns the run folder."""
    opts = cfg["inter"]
    if not opts["intra_checkpoint"]:
        raise ValueError("inter.intra_checkpoint is not set: give the intra run folder or its "
                         "best.pt (train it first with 'edge-scorer train intra')")
    try:
        ckpt_path = resolve_checkpoint(opts["intra_checkpoint"])
    except FileNotFoundError as exc:
        raise FileNotFoundError(f"{exc}. Train the intra model first: 'edge-scorer train intra "
                                "--config training/configs/intra_vit_tiny.toml'") from None
    data = prepare_data(cfg)
    device = "cuda" if cfg["train"]["device"] == "auto" and torch.cuda.is_available() else (
        "cpu" if cfg["train"]["device"] == "auto" else cfg["train"]["device"])
    with dist.main_first():  # rank 0 extracts the features; the others then read them
        feats, info = cached_features(ckpt_path, data.cache,
                                      batch_size=int(opts["feature_batch_size"]), quiet=quiet,
                                      device=device)

    def make_x(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(feats[rows])

    model = _model(cfg, in_dim=int(feats.shape[1]), seq_len=int(opts["seq_len"]))
    return _sequence_run(cfg, data, opts, make_x, model, resume, quiet,
                         input="intra features", intra_checkpoint=str(ckpt_path),
                         intra_checkpoint_sha256=file_hash(ckpt_path))


def train_stqs(cfg: dict, *, resume: bool = False, quiet: bool = False) -> Path:
    """Train STQS on cached conditioned signals; returns the run folder."""
    opts = cfg["stqs"]
    data = prepare_data(cfg, signals=True)
    signals = data.cache.signals

    def make_x(rows: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.asarray(signals[rows], dtype=np.float32))

    model = _model(cfg, spec=data.spec, seq_len=int(opts["seq_len"]))
    return _sequence_run(cfg, data, opts, make_x, model, resume, quiet,
                         input="conditioned signals (spec rows at spec.sfreq, row units)")


TASK_FUNCS: dict[str, Callable[..., Path]] = {
    "intra": train_intra, "inter": train_inter, "stqs": train_stqs,
}


def train(cfg: dict, *, resume: bool = False, quiet: bool = False) -> Path:
    """Run the task named by ``cfg["task"]``; returns the run folder.

    Under ``torchrun`` the processes join their process group first
    (:func:`training.distributed.setup`) and train data-parallel.
    """
    dist.setup(str(cfg["train"]["device"]))
    return TASK_FUNCS[cfg["task"]](cfg, resume=resume, quiet=quiet)
