"""The one renderer: a conditioned 30-s epoch -> a PSG-screen image (uint8).

Each spec row is a horizontal band (``spec.row_offsets`` / ``row.height``) on a black
background; the epoch spans the full image width; the row's amplitude ``range`` maps linearly
onto the band (bottom .. top, positive up) and the trace is clipped to the band. Like a PSG
screen, each pixel column is lit from the minimum to the maximum of the samples falling in it,
extended to the last sample of the previous column so the trace is continuous. Non-finite
samples draw nothing. Everything is vectorized numpy (one loop over blocks of epochs).

Training and live scoring both call :func:`render_epochs` / :func:`render_epoch`, so the model
always sees the same pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from edge_scorer.io.spec import RenderSpec

#: Epochs rendered per vectorized block in :func:`render_epochs` (bounds temporary memory).
BLOCK_EPOCHS = 16
_FG = 255


@lru_cache(maxsize=16)
def _layout(spec: RenderSpec) -> tuple[np.ndarray, ...]:
    """Per-spec constants: column starts, per-row mapping and per-pixel-row band index."""
    e, w = spec.epoch_samples, spec.image_width
    if e < w:
        raise ValueError(
            f"spec {spec.name!r}: an epoch has {e} samples, fewer than the image width {w} "
            "pixels; raise the spec's sfreq or lower its image_width"
        )
    # sample j falls in column floor(j * w / e); column c starts at ceil(c * e / w)
    starts = -((-np.arange(w, dtype=np.int64) * e) // w)
    lo = np.array([r.range[0] for r in spec.rows])
    hi = np.array([r.range[1] for r in spec.rows])
    top = np.array(spec.row_offsets, dtype=np.float64)
    bottom = top + np.array([r.height for r in spec.rows], dtype=np.float64) - 1.0
    # pixel y = bottom - (v - lo) * scale, clipped to [top, bottom]
    scale = (bottom - top) / (hi - lo)
    band_of_y = np.repeat(np.arange(spec.n_rows), [r.height for r in spec.rows])
    y = np.arange(spec.image_height, dtype=_pixel_dtype(spec))
    return starts, lo, bottom, top, scale, band_of_y, y


def _pixel_dtype(spec: RenderSpec) -> type:
    return np.int16 if spec.image_height < 2**15 - 1 else np.int32


def _to_pixels(v: np.ndarray, lo: np.ndarray, bottom: np.ndarray, top: np.ndarray,
               scale: np.ndarray, nan_value: int, dtype: type) -> np.ndarray:
    """Amplitudes (..., n_rows, w) -> integer pixel rows, clipped to the band.

    NaN (a column with no finite sample) becomes ``nan_value``, chosen by the caller so that
    the column's span is empty.
    """
    px = bottom[:, None] - (v - lo[:, None]) * scale[:, None]
    np.clip(px, top[:, None], bottom[:, None], out=px)
    px = np.floor(px + 0.5, out=px)
    px[np.isnan(px)] = nan_value
    return px.astype(dtype)


def render_epochs(epochs: np.ndarray, spec: RenderSpec) -> np.ndarray:
    """Render a batch of conditioned epochs.

    Parameters
    ----------
    epochs : ndarray of shape (n, n_rows, spec.epoch_samples)
        Conditioned epochs in row units (output of
        :func:`edge_scorer.dsp.conditioning.epochs_from_signal`).
    spec : RenderSpec
        The render spec.

    Returns
    -------
    ndarray of shape (n, *spec.image_shape), uint8
        0 background, 255 trace.
    """
    epochs = np.asarray(epochs, dtype=np.float64)
    want = (spec.n_rows, spec.epoch_samples)
    if epochs.ndim != 3 or epochs.shape[1:] != want:
        raise ValueError(f"epochs must have shape (n, {want[0]}, {want[1]}) for spec "
                         f"{spec.name!r} (n_rows, epoch_samples), got {epochs.shape}")
    starts, lo, bottom, top, scale, band_of_y, y = _layout(spec)
    dtype = _pixel_dtype(spec)
    n = epochs.shape[0]
    out = np.empty((n, spec.image_height, spec.image_width), dtype=np.uint8)
    for b0 in range(0, n, BLOCK_EPOCHS):
        x = epochs[b0:b0 + BLOCK_EPOCHS]
        finite = np.isfinite(x)
        if finite.all():
            vmax = np.maximum.reduceat(x, starts, axis=-1)
            vmin = np.minimum.reduceat(x, starts, axis=-1)
            prev_hi = prev_lo = x[..., starts[1:] - 1]
        else:
            # fmax/fmin skip NaN: a column draws its finite samples, an all-NaN column stays NaN
            x = np.where(finite, x, np.nan)
            vmax = np.fmax.reduceat(x, starts, axis=-1)
            vmin = np.fmin.reduceat(x, starts, axis=-1)
            prev = x[..., starts[1:] - 1]
            prev_hi = np.where(np.isnan(prev), -np.inf, prev)
            prev_lo = np.where(np.isnan(prev), np.inf, prev)
        # join each column to the last sample of the previous column (continuous trace);
        # maximum/minimum keep an all-NaN column NaN (nothing drawn there)
        vmax[..., 1:] = np.maximum(vmax[..., 1:], prev_hi)
        vmin[..., 1:] = np.minimum(vmin[..., 1:], prev_lo)
        # pixel rows of each column's span; an all-NaN column gets an empty span (top > bottom)
        y_top = _to_pixels(vmax, lo, bottom, top, scale, spec.image_height, dtype)
        y_bot = _to_pixels(vmin, lo, bottom, top, scale, -1, dtype)   # (b, n_rows, w)
        yy = y[None, :, None]
        lit = (yy >= y_top[:, band_of_y]) & (yy <= y_bot[:, band_of_y])   # (b, H, w)
        np.multiply(lit.view(np.uint8), np.uint8(_FG), out=out[b0:b0 + BLOCK_EPOCHS])
    if not spec.grayscale:
        out = np.repeat(out[..., None], 3, axis=-1)
    return out


def render_epoch(epoch: np.ndarray, spec: RenderSpec) -> np.ndarray:
    """Render one conditioned epoch (n_rows, spec.epoch_samples) to a ``spec.image_shape`` image.

    Same pixels as ``render_epochs(epoch[None], spec)[0]``.
    """
    epoch = np.asarray(epoch, dtype=np.float64)
    if epoch.ndim != 2:
        raise ValueError(f"epoch must have shape (n_rows, epoch_samples), got {epoch.shape}")
    return render_epochs(epoch[None], spec)[0]


def _label_text(label: object) -> str:
    from edge_scorer.stages import Stage

    if label is None:
        return ""
    if isinstance(label, (int, np.integer)) and not isinstance(label, bool):
        try:
            return Stage(int(label)).label
        except ValueError:
            return str(label)
    return str(label)


def contact_sheet(images: np.ndarray, labels: Sequence[object] | None = None, cols: int = 10,
                  path: str | Path | None = None, indices: Sequence[int] | None = None,
                  gap: int = 2) -> np.ndarray:
    """Lay epoch images out on a labelled grid (a quick visual check of a night).

    Parameters
    ----------
    images : ndarray of shape (n, H, W) or (n, H, W, 3), uint8
        Rendered epochs.
    labels : sequence, optional
        One stage per image (``Stage``/int codes or strings), drawn with the epoch index.
    cols : int
        Images per grid row.
    path : str or Path, optional
        Also write the sheet as a PNG there.
    indices : sequence of int, optional
        Epoch indices to print (default ``0 .. n-1``), e.g. when the images are a sample.
    gap : int
        Grey gutter between tiles in pixels.

    Returns
    -------
    ndarray of shape (rows * (H + caption + gap), cols * (W + gap), 3), uint8
    """
    from PIL import Image, ImageDraw, ImageFont

    images = np.asarray(images)
    if images.ndim not in (3, 4) or images.dtype != np.uint8 or len(images) == 0:
        raise ValueError("images must be a non-empty uint8 array (n, H, W) or (n, H, W, 3), "
                         f"got {images.dtype} {images.shape}")
    n, h, w = images.shape[:3]
    if labels is not None and len(labels) != n:
        raise ValueError(f"got {len(labels)} labels for {n} images: give one label per image")
    idx = list(range(n)) if indices is None else [int(i) for i in indices]
    if len(idx) != n:
        raise ValueError(f"got {len(idx)} indices for {n} images: give one index per image")
    if cols < 1:
        raise ValueError(f"cols must be >= 1, got {cols}")
    cols = min(cols, n)
    nrows = -(-n // cols)
    caption = 12
    tile_h, tile_w = h + caption + gap, w + gap
    sheet = Image.new("RGB", (cols * tile_w, nrows * tile_h), (64, 64, 64))
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for j in range(n):
        r, c = divmod(j, cols)
        x0, y0 = c * tile_w, r * tile_h
        draw.rectangle((x0, y0, x0 + w - 1, y0 + caption - 1), fill=(0, 0, 0))
        text = f"#{idx[j]} {_label_text(labels[j]) if labels is not None else ''}".strip()
        draw.text((x0 + 2, y0), text, fill=(255, 255, 0), font=font)
        tile = images[j] if images.ndim == 4 else np.repeat(images[j][..., None], 3, axis=-1)
        sheet.paste(Image.fromarray(np.ascontiguousarray(tile)), (x0, y0 + caption))
    arr = np.asarray(sheet)
    if path is not None:
        save_png(arr, path)
    return arr


def save_png(image: np.ndarray, path: str | Path) -> Path:
    """Write a uint8 image ((H, W) grayscale or (H, W, 3) RGB) as a PNG, atomically; return the
    path."""
    from PIL import Image

    image = np.asarray(image)
    if image.dtype != np.uint8 or not (image.ndim == 2 or (image.ndim == 3
                                                           and image.shape[2] == 3)):
        raise ValueError(f"image must be uint8 (H, W) or (H, W, 3), got {image.dtype} "
                         f"{image.shape}")
    from edge_scorer.io.outputs import atomic_open

    path = Path(path)
    with atomic_open(path, "wb") as fh:
        Image.fromarray(np.ascontiguousarray(image)).save(fh, format="PNG")
    return path
