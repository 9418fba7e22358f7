"""Writing an epoch cache night by night (:func:`training.dataset.build_cache`).

Everything is written under temporary names and renamed into place at the end, so a process
still holding the old cache's memory maps keeps reading the old data and an interrupted build
never looks complete. Two stores (:data:`training.signal_cache.STORES`):

``images``
    ``images.npy`` uint8 rendered epochs (+ ``signals.npy`` float16 conditioned epochs when the
    STQS input is asked for).
``signals`` / ``columns``
    ``signals/NNNNNN.npy``: one int16 file of coded conditioned epochs per night
    (:class:`training.signal_cache.SignalCodec`), rendered when read.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.io.spec import RenderSpec
from edge_scorer.stages import CLASS_NAMES
from training.signal_cache import SignalCodec

log = get_logger("training.dataset")

__all__ = ["CacheWriter", "NpyAppender", "SIGNALS_DIR"]

_HEADER_BYTES = 256  # fixed .npy header so the shape can be rewritten after appending
_F16_MAX = float(np.finfo(np.float16).max)
#: Folder of the per-night code files of a signal cache.
SIGNALS_DIR = "signals"


class NpyAppender:
    """Write a ``.npy`` file one block at a time; the header is rewritten with the final shape."""

    def __init__(self, path: Path, dtype, item_shape: tuple[int, ...]) -> None:
        self.path, self.dtype, self.item_shape, self.n = path, np.dtype(dtype), item_shape, 0
        self.fh = open(path, "wb")  # closed in close()
        self.fh.write(self._header())

    def _header(self) -> bytes:
        d = {"descr": np.lib.format.dtype_to_descr(self.dtype), "fortran_order": False,
             "shape": (self.n, *self.item_shape)}
        body = repr(d).encode("latin1")
        pad = _HEADER_BYTES - 10 - len(body) - 1
        if pad < 0:
            raise ValueError(f"array shape {d['shape']} too long for the .npy header")
        size = (len(body) + pad + 1).to_bytes(2, "little")
        return b"\x93NUMPY\x01\x00" + size + body + b" " * pad + b"\n"

    def append(self, block: np.ndarray) -> None:
        block = np.ascontiguousarray(block, dtype=self.dtype)
        if block.shape[1:] != self.item_shape:
            raise ValueError(f"block shape {block.shape[1:]} != cache item {self.item_shape}")
        self.fh.write(block.tobytes())
        self.n += len(block)

    def close(self) -> None:
        self.fh.seek(0)
        self.fh.write(self._header())
        self.fh.close()


class CacheWriter:
    """The arrays of a cache being built: appended night by night, renamed into place at the
    end.

    Parameters
    ----------
    path : Path
        Cache folder.
    spec : RenderSpec
    signals : bool
        Image store: also write ``signals.npy`` (STQS input).
    store : str
        ``images``, ``signals`` or ``columns``.
    """

    def __init__(self, path: Path, spec: RenderSpec, signals: bool, store: str = "images"
                 ) -> None:
        self.path, self.spec, self.store = path, spec, store
        self.codec = SignalCodec(spec, store) if store != "images" else None
        self.img_w = self.sig_w = None
        if self.codec is None:
            self.img_w = NpyAppender(path / "images.npy.tmp", np.uint8, tuple(spec.image_shape))
            self.sig_w = (NpyAppender(path / "signals.npy.tmp", np.float16,
                                      (spec.n_rows, spec.epoch_samples)) if signals else None)
        else:
            self.code_dir = path / f"{SIGNALS_DIR}.tmp"
            shutil.rmtree(self.code_dir, ignore_errors=True)
            self.code_dir.mkdir(parents=True)
        self.labels: list[np.ndarray] = []
        self.night_idx: list[np.ndarray] = []
        self.epoch_idx: list[np.ndarray] = []
        self.infos: list[dict] = []
        self.skipped: list[dict] = []

    @property
    def needs_images(self) -> bool:
        """Whether :meth:`add` takes rendered images (the image store)."""
        return self.codec is None

    def add(self, info: dict, images: np.ndarray | None, conditioned: np.ndarray | None,
            stages: np.ndarray, t0: float) -> None:
        """Append one night: its rendered images (image store) and conditioned rows (signal
        stores, or the image store with signals), cut to ``info["trim"]``."""
        from edge_scorer.dsp.conditioning import epochs_from_signal

        start, stop = info["trim"]["start"], info["trim"]["stop"]
        extra: dict = {}
        if self.codec is not None:
            if conditioned is None:
                raise ValueError("a signal cache needs the conditioned rows of each night")
            codes = self.codec.encode(epochs_from_signal(conditioned, self.spec)[start:stop])
            name = f"{len(self.infos):06d}.npy"
            np.save(self.code_dir / name, codes)
            extra = {"file": name, "bytes": int(codes.nbytes)}
        else:
            if images is None:
                raise ValueError("an image cache needs the rendered images of each night")
            self.img_w.append(images[start:stop])
        if self.sig_w is not None:
            if conditioned is None:
                raise ValueError("a cache with signals needs the conditioned rows of each night")
            ep = epochs_from_signal(conditioned, self.spec)[start:stop]
            big = int((np.abs(ep) > _F16_MAX).sum())
            if big:
                log.warning("%s: %d conditioned samples beyond float16 range were clipped",
                            info["name"], big)
            self.sig_w.append(np.clip(ep, -_F16_MAX, _F16_MAX))
        self.labels.append(stages[start:stop].astype(np.int8))
        self.night_idx.append(np.full(stop - start, len(self.infos), dtype=np.int32))
        self.epoch_idx.append(np.arange(start, stop, dtype=np.int32))
        offset = sum(i["n_epochs"] for i in self.infos)
        self.infos.append({**info, "n_epochs": stop - start, "offset": offset,
                           "render_s": round(time.perf_counter() - t0, 3), **extra})

    def close(self) -> None:
        """Close the open files (always called, also after an error)."""
        for w in (self.img_w, self.sig_w):
            if w is not None:
                w.close()

    def finish(self) -> dict:
        """Write the small arrays, rename everything into place; the data part of the meta."""
        if not self.infos:
            raise ValueError("every night failed to load; nothing cached (see the warnings "
                             "above)")
        all_labels = np.concatenate(self.labels)
        for name, arr in (("labels", all_labels), ("night", np.concatenate(self.night_idx)),
                          ("epoch", np.concatenate(self.epoch_idx))):
            with open(self.path / f"{name}.npy.tmp", "wb") as fh:
                np.save(fh, arr)
        names = ["labels", "night", "epoch"]
        if self.img_w is not None:
            names.append("images")
        if self.sig_w is not None:
            names.append("signals")
        for name in names:
            (self.path / f"{name}.npy.tmp").replace(self.path / f"{name}.npy")
        if self.codec is not None:
            old = self.path / f"{SIGNALS_DIR}.old"
            shutil.rmtree(old, ignore_errors=True)
            if (self.path / SIGNALS_DIR).exists():  # open memory maps keep the old files
                (self.path / SIGNALS_DIR).rename(old)
            self.code_dir.rename(self.path / SIGNALS_DIR)
            shutil.rmtree(old, ignore_errors=True)
        counts = np.bincount(all_labels[all_labels >= 0].astype(np.int64),
                             minlength=len(CLASS_NAMES))
        return {"n_epochs": int(len(all_labels)),
                "class_counts": dict(zip(CLASS_NAMES, counts.tolist())),
                "nights": self.infos, "skipped": self.skipped}
