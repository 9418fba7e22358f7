"""Intra-model features of cached epochs (the inter model's input).

:func:`extract_features` runs a trained intra ViT's :meth:`forward_features` (the CLS feature)
over cache rows. :func:`cached_features` does it for every row of a cache once and keeps the
result as ``features.npy`` beside the intra checkpoint, with ``features.json`` naming the
checkpoint's hash and the cache it came from; a later call with the same checkpoint and cache
reuses the file, any change recomputes it.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_scorer._log import get_logger
from training.checkpoint import file_hash, load_checkpoint, resolve_checkpoint
from training.dataset import EpochCache

log = get_logger("training.features")

__all__ = ["cached_features", "extract_features", "image_batch"]


def image_batch(images: np.ndarray) -> torch.Tensor:
    """Cached uint8 images ``(B, H, W)`` / ``(B, H, W, 3)`` as a ``(B, [C,] H, W)`` tensor."""
    arr = np.ascontiguousarray(images)
    x = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    return x.permute(0, 3, 1, 2).contiguous() if x.ndim == 4 else x


@torch.no_grad()
def extract_features(
    model: nn.Module, cache: EpochCache, rows: np.ndarray, batch_size: int = 256,
    *, quiet: bool = True,
) -> np.ndarray:
    """CLS features of cache rows.

    Parameters
    ----------
    model : torch.nn.Module
        An intra model with ``forward_features`` (put in eval mode here).
    cache : EpochCache
        Source of the images.
    rows : ndarray of int
        Cache rows, in the order wanted.
    batch_size : int
        Images per forward pass.
    quiet : bool
        No progress bar.

    Returns
    -------
    ndarray of float32, shape (len(rows), model.num_features)
    """
    from tqdm.auto import tqdm

    if not hasattr(model, "forward_features"):
        raise ValueError(f"{type(model).__name__} has no forward_features; features come from "
                         "an intra (vit) model")
    if batch_size < 1:
        raise ValueError(f"batch_size must be positive, got {batch_size}")
    rows = np.asarray(rows, dtype=np.int64)
    model.eval()
    device = next(model.parameters()).device
    out = np.zeros((len(rows), int(model.num_features)), dtype=np.float32)
    starts = range(0, len(rows), batch_size)
    for s in tqdm(starts, disable=quiet or not sys.stderr.isatty(), desc="features",
                  leave=False, file=sys.stderr):
        x = image_batch(cache.images[rows[s:s + batch_size]]).to(device)
        out[s:s + len(x)] = model.forward_features(x).float().cpu().numpy()
    return out


def _key(ckpt_hash: str, cache: EpochCache) -> dict:
    # the cache's build request (spec hash, night files, trim) fixes its images: a rebuild for
    # the same request (e.g. to add the STQS signals) keeps the features valid
    request = json.dumps(cache.meta.get("request"), sort_keys=True).encode()
    return {"checkpoint_sha256": ckpt_hash, "cache": str(Path(cache.path).resolve()),
            "cache_request": hashlib.sha256(request).hexdigest()[:16],
            "spec_hash": cache.spec_hash, "n_rows": len(cache)}


def cached_features(
    checkpoint: str | Path, cache: EpochCache, *, batch_size: int = 256, quiet: bool = True,
    device: str | torch.device = "cpu",
) -> tuple[np.ndarray, dict]:
    """Features of every cache row from an intra checkpoint, computed once and kept on disk.

    Parameters
    ----------
    checkpoint : path-like
        Intra checkpoint (``best.pt``) or its run folder.
    cache : EpochCache
        The epochs.
    batch_size : int
        Images per forward pass.
    quiet : bool
        No progress bar.
    device : str or torch.device
        Where the model runs.

    Returns
    -------
    features : ndarray of float32, shape (len(cache), D)
        Row ``i`` is the feature of cache row ``i`` (unscored epochs included).
    info : dict
        ``features.json``: checkpoint hash, cache identity, feature size, time taken.

    Raises
    ------
    ValueError
        The checkpoint is not an intra model, or its spec differs from the cache's.
    """
    path = resolve_checkpoint(checkpoint)
    feat_path, info_path = path.parent / "features.npy", path.parent / "features.json"
    key = _key(file_hash(path), cache)
    if feat_path.is_file() and info_path.is_file():
        info = json.loads(info_path.read_text())
        if info.get("key") == key:
            feats = np.load(feat_path)
            if feats.shape[0] == len(cache):
                log.info("reusing intra features %s (%d x %d)", feat_path, *feats.shape)
                return feats, info
        log.info("intra features in %s are for another checkpoint or cache; recomputing",
                 feat_path)
    model, ckpt = load_checkpoint(path, map_location=device)
    if ckpt["cfg"].get("arch") != "vit":
        raise ValueError(f"{path} is a {ckpt['cfg'].get('arch')!r} model; the inter model "
                         "needs an intra (vit) checkpoint: train one with 'edge-scorer train "
                         "intra'")
    spec_hash = ckpt.get("meta", {}).get("spec", {}).get("hash")
    if spec_hash is not None and spec_hash != cache.spec_hash:
        raise ValueError(f"{path} was trained on spec hash {spec_hash}, the cache {cache.path} "
                         f"holds spec hash {cache.spec_hash}; use a cache of the same spec")
    t0 = time.perf_counter()
    feats = extract_features(model, cache, np.arange(len(cache)), batch_size, quiet=quiet)
    np.save(feat_path, feats)
    info = {"key": key, "dim": int(feats.shape[1]), "n_rows": int(feats.shape[0]),
            "seconds": round(time.perf_counter() - t0, 2)}
    info_path.write_text(json.dumps(info, indent=1) + "\n")
    log.info("extracted intra features for %d epochs (%d-d) in %.1f s -> %s", len(feats),
             feats.shape[1], info["seconds"], feat_path)
    return feats, info
