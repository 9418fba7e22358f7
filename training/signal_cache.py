"""The signal cache: conditioned signals on disk, epoch images rendered on the fly.

An image cache holds 50 KB per epoch (224 x 224 uint8) and cannot hold SHHS; the renderer costs
about 0.1 ms an epoch. A cache with ``data.store = "signals"`` keeps instead what is expensive to
make and cheap to store: the conditioned signals (the output of the one conditioning chain), as
int16, one memory-mapped ``.npy`` file per night (``signals/000000.npy`` ...; the rows of the
cache's ``labels``/``night``/``epoch`` arrays are the index). Training reads epochs through
:class:`RenderedImages`, which decodes them and calls the one renderer,
:func:`edge_scorer.dsp.render.render_epochs`, in the DataLoader workers (:mod:`training.loader`).

The int16 code is the renderer's own pixel coordinate at 1/2**bits pixel. For a sample ``v`` of
row ``r`` the renderer computes ``px = bottom_r - (v - lo_r) * scale_r`` and lights pixel row
``floor(clip(px) + 0.5)``; the code is ``floor((px + 0.5) * 2**bits)`` (exact in floating point:
a power-of-two scale), saturated to +-32767, and -32768 for a non-finite sample. Decoding puts
``v`` at the middle of its code's interval, 1/2**(bits+1) pixel from any pixel boundary, so the
renderer lights exactly the pixels it lit from the original samples: on-the-fly images equal
the offline path's byte for byte (``tests/test_signal_cache.py``). ``bits`` is the largest that
keeps +-2 image heights in range (6 for 224-px images: 1/64 pixel, e.g. 0.025 uV on Sleep-EDF's
Fpz-Cz row, 0.06 uV on SHHS's EEG rows; samples beyond two image heights from the band saturate,
which changes no pixel). The decoded signals are STQS's input too.

``data.store = "columns"`` keeps, of the same codes, only what the renderer reads: per pixel
column and row the minimum, the maximum and the last sample (``3 * image_width`` codes per row
instead of ``epoch_samples``). :meth:`SignalCodec.decode` lays them back out on the epoch's
sample grid (min, max, then the last sample at the column's end), which renders the same
pixels; the waveform itself is gone, so STQS cannot train on such a cache.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edge_scorer.dsp.render import _layout, render_epochs
from edge_scorer.io.spec import RenderSpec

__all__ = ["NAN_CODE", "STORES", "DecodedSignals", "NightCodes", "RenderedImages",
           "SignalCodec"]

#: Cache stores: rendered images (the classic cache), full-rate codes, per-column codes.
STORES = ("images", "signals", "columns")
NAN_CODE = -32768
_MAX_CODE = 32767


def _bits(image_height: int) -> int:
    """Fraction bits keeping +-2 image heights inside int16."""
    bits = int(np.floor(np.log2(_MAX_CODE / (2.0 * image_height))))
    if bits < 0:
        raise ValueError(f"image height {image_height} px is too tall for int16 signal codes; "
                         "use data.store = \"images\"")
    return bits


@dataclass(frozen=True)
class SignalCodec:
    """int16 codes of conditioned epochs for one render spec (see the module docstring).

    Attributes
    ----------
    spec : RenderSpec
    store : {"signals", "columns"}
        Every sample, or per pixel column the min, max and last sample.
    bits : int
        Fraction bits of the pixel coordinate.
    """

    spec: RenderSpec
    store: str = "signals"
    bits: int = -1

    def __post_init__(self) -> None:
        if self.store not in STORES[1:]:
            raise ValueError(f"signal store {self.store!r}: use one of {list(STORES[1:])}")
        if self.bits < 0:
            object.__setattr__(self, "bits", _bits(self.spec.image_height))

    @property
    def item_shape(self) -> tuple[int, int]:
        """Shape of one epoch's codes."""
        n = self.spec.epoch_samples if self.store == "signals" else 3 * self.spec.image_width
        return (self.spec.n_rows, n)

    def _consts(self) -> tuple[np.ndarray, ...]:
        starts, lo, bottom, _, scale = _layout(self.spec)[:5]
        return starts, lo[:, None], bottom[:, None], scale[:, None]

    def encode(self, epochs: np.ndarray) -> np.ndarray:
        """Conditioned epochs ``(n, n_rows, epoch_samples)`` -> int16 codes ``(n, *item_shape)``."""
        x = np.asarray(epochs, dtype=np.float64)
        want = (self.spec.n_rows, self.spec.epoch_samples)
        if x.ndim != 3 or x.shape[1:] != want:
            raise ValueError(f"epochs must have shape (n, {want[0]}, {want[1]}), got {x.shape}")
        starts, lo, bottom, scale = self._consts()
        t = (bottom - (x - lo) * scale) + 0.5  # the renderer's expression, then its rounding
        codes = np.floor(t * float(2 ** self.bits))
        finite = np.isfinite(codes)
        np.clip(codes, -_MAX_CODE, _MAX_CODE, out=codes)
        codes = np.where(finite, codes, NAN_CODE).astype(np.int16)
        return codes if self.store == "signals" else self._columns(codes, starts)

    def _columns(self, codes: np.ndarray, starts: np.ndarray) -> np.ndarray:
        nan = codes == NAN_CODE
        wide = codes.astype(np.int32)
        big = 1 << 20
        cmin = np.minimum.reduceat(np.where(nan, big, wide), starts, axis=-1)
        cmax = np.maximum.reduceat(np.where(nan, -big, wide), starts, axis=-1)
        empty = cmin == big
        cmin[empty] = NAN_CODE
        cmax[empty] = NAN_CODE
        ends = np.append(starts[1:], codes.shape[-1]) - 1
        out = np.stack([cmin, cmax, wide[..., ends]], axis=-1)
        return out.reshape(*codes.shape[:-1], -1).astype(np.int16)

    def _expand(self, cols: np.ndarray) -> np.ndarray:
        """Per-column (min, max, last) codes -> codes on the epoch's sample grid that hold the
        same per-column minimum, maximum and last sample."""
        starts = self._consts()[0]
        e = self.spec.epoch_samples
        c = cols.reshape(*cols.shape[:-1], -1, 3)
        cmin, cmax, last = c[..., 0], c[..., 1], c[..., 2]
        lengths = np.diff(np.append(starts, e))
        out = np.repeat(cmin, lengths, axis=-1)  # middle samples: the minimum
        ends = starts + lengths - 1
        two = lengths == 2  # [other, last]: the extreme that is not the last sample
        other = np.where(last == cmin, cmax, cmin)
        other = np.where(last == NAN_CODE, cmin, other)
        out[..., starts[two]] = other[..., two]
        three = lengths >= 3
        out[..., starts[three] + 1] = cmax[..., three]
        out[..., ends] = last
        return out

    def decode(self, codes: np.ndarray) -> np.ndarray:
        """Codes -> float64 epochs ``(n, n_rows, epoch_samples)`` in row units (NaN where the
        sample was not finite), rendering to the same pixels as the encoded epochs."""
        codes = np.asarray(codes)
        if codes.shape[-2:] != self.item_shape:
            raise ValueError(f"codes must end in {self.item_shape}, got {codes.shape}")
        if self.store == "columns":
            codes = self._expand(codes)
        _, lo, bottom, scale = self._consts()
        t = (codes.astype(np.float64) + 0.5) / float(2 ** self.bits)
        x = lo + (bottom - (t - 0.5)) / scale
        x[codes == NAN_CODE] = np.nan
        return x

    def render(self, codes: np.ndarray) -> np.ndarray:
        """Images of coded epochs through the one renderer."""
        return render_epochs(self.decode(codes), self.spec)

    def to_dict(self) -> dict:
        """What ``cache.json`` records."""
        return {"store": self.store, "bits": self.bits, "dtype": "int16", "nan_code": NAN_CODE,
                "item_shape": list(self.item_shape)}


class NightCodes:
    """The per-night code files of a signal cache, memory-mapped when first read.

    Parameters
    ----------
    folder : Path
        The cache's ``signals`` folder.
    files : list of str
        File name per night.
    offsets : ndarray
        First cache row of each night, then the total.
    item_shape : tuple
        Codes per epoch.
    """

    def __init__(self, folder: Path, files: list[str], offsets: np.ndarray,
                 item_shape: tuple[int, int]) -> None:
        self.folder, self.files = Path(folder), list(files)
        self.offsets, self.item_shape = np.asarray(offsets, dtype=np.int64), tuple(item_shape)
        self._maps: dict[int, np.ndarray] = {}

    def __len__(self) -> int:
        return int(self.offsets[-1])

    def night(self, k: int) -> np.ndarray:
        """The codes of night ``k`` (memory-mapped)."""
        if k not in self._maps:
            arr = np.load(self.folder / self.files[k], mmap_mode="r")
            n = int(self.offsets[k + 1] - self.offsets[k])
            if arr.shape != (n, *self.item_shape) or arr.dtype != np.int16:
                raise ValueError(f"{self.folder / self.files[k]} holds {arr.dtype} "
                                 f"{arr.shape}, the index says int16 {(n, *self.item_shape)}; "
                                 "the cache is damaged, rebuild it")
            self._maps[k] = arr
        return self._maps[k]

    def read(self, rows: np.ndarray) -> np.ndarray:
        """Codes of cache rows (1-D int array, any order), night by night."""
        rows = np.asarray(rows, dtype=np.int64)
        out = np.empty((len(rows), *self.item_shape), dtype=np.int16)
        nights = np.searchsorted(self.offsets, rows, side="right") - 1
        for k in np.unique(nights):
            sel = np.flatnonzero(nights == k)
            local = rows[sel] - self.offsets[k]
            order = np.argsort(local, kind="stable")  # sorted reads from the memmap
            out[sel[order]] = self.night(int(k))[local[order]]
        return out


def _rows(key, n: int) -> np.ndarray:
    """Cache rows selected by an int, a slice or an int array (negative ones count from the
    end), as an int64 array of the key's shape."""
    if isinstance(key, slice):
        return np.arange(*key.indices(n), dtype=np.int64)
    rows = np.asarray(key)
    if rows.dtype == bool or not np.issubdtype(rows.dtype, np.integer):
        raise IndexError(f"cache rows are selected by an int, a slice or an int array, got "
                         f"{rows.dtype}")
    rows = np.where(rows < 0, rows + n, rows).astype(np.int64)
    if rows.size and (rows.min() < 0 or rows.max() >= n):
        raise IndexError(f"cache row out of range 0..{n - 1}")
    return rows


class _LazyRows:
    """Array-like over cache rows: ``view[key]`` with an int, a slice or an int array."""

    def __init__(self, codes: NightCodes, codec: SignalCodec, dtype,
                 item_shape: tuple[int, ...]) -> None:
        self.codes, self.codec = codes, codec
        self.dtype, self.item_shape = np.dtype(dtype), tuple(item_shape)

    @property
    def shape(self) -> tuple[int, ...]:
        return (len(self.codes), *self.item_shape)

    @property
    def ndim(self) -> int:
        return len(self.shape)

    def __len__(self) -> int:
        return len(self.codes)

    def _convert(self, codes: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def __getitem__(self, key) -> np.ndarray:
        rows = _rows(key, len(self.codes))
        flat = rows.reshape(-1)
        out = self._convert(self.codes.read(flat))
        return out.reshape(*np.shape(rows), *self.item_shape)

    def __array__(self, dtype=None, copy=None) -> np.ndarray:
        out = self[:]
        return out if dtype is None else out.astype(dtype)


class RenderedImages(_LazyRows):
    """``cache.images`` of a signal cache: uint8 images rendered when read."""

    def __init__(self, codes: NightCodes, codec: SignalCodec) -> None:
        super().__init__(codes, codec, np.uint8, tuple(codec.spec.image_shape))

    def _convert(self, codes: np.ndarray) -> np.ndarray:
        return self.codec.render(codes)


class DecodedSignals(_LazyRows):
    """``cache.signals`` of a full-rate signal cache: float32 conditioned epochs."""

    def __init__(self, codes: NightCodes, codec: SignalCodec) -> None:
        super().__init__(codes, codec, np.float32,
                         (codec.spec.n_rows, codec.spec.epoch_samples))

    def _convert(self, codes: np.ndarray) -> np.ndarray:
        return self.codec.decode(codes).astype(np.float32)
