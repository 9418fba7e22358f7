"""The renderer: geometry of the PSG screen, NaN, clipping, determinism, contact sheet."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from PIL import Image

from edge_scorer.bench.render import baseline_render_loop
from edge_scorer.dsp.render import (
    BLOCK_EPOCHS,
    contact_sheet,
    render_epoch,
    render_epochs,
    save_png,
)
from edge_scorer.io.spec import RenderSpec, load_spec

SPECS = [load_spec("sleep-edf"), load_spec("shhs")]
IDS = [s.name for s in SPECS]


def _mid(spec: RenderSpec) -> np.ndarray:
    """An epoch sitting at the middle of every row's range."""
    mid = np.array([(r.range[0] + r.range[1]) / 2 for r in spec.rows])
    return np.repeat(mid[:, None], spec.epoch_samples, axis=1)


def _bands(spec: RenderSpec) -> list[slice]:
    return [slice(top, top + r.height) for top, r in zip(spec.row_offsets, spec.rows,
                                                             strict=True)]


def _walk(spec: RenderSpec, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    half = np.array([(r.range[1] - r.range[0]) / 2 for r in spec.rows])
    mid = np.array([(r.range[0] + r.range[1]) / 2 for r in spec.rows])
    walk = np.cumsum(rng.standard_normal((n, spec.n_rows, spec.epoch_samples)), axis=-1)
    walk /= np.abs(walk).max(axis=-1, keepdims=True)
    return mid[:, None] + 1.2 * half[:, None] * walk  # a little beyond the range: clipped


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_shape_dtype_and_colour(spec: RenderSpec) -> None:
    img = render_epoch(_mid(spec), spec)
    assert img.shape == spec.image_shape == (224, 224) and img.dtype == np.uint8
    assert set(np.unique(img)) == {0, 255}
    rgb_spec = dataclasses.replace(spec, grayscale=False)
    rgb = render_epoch(_mid(spec), rgb_spec)
    assert rgb.shape == (224, 224, 3) == rgb_spec.image_shape
    assert all(np.array_equal(rgb[..., c], img) for c in range(3))
    batch = render_epochs(np.stack([_mid(spec)] * 3), rgb_spec)
    assert batch.shape == (3, 224, 224, 3) and batch.dtype == np.uint8


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_flat_signal_is_one_line_at_the_band_centre(spec: RenderSpec) -> None:
    img = render_epoch(_mid(spec), spec)
    lit_rows = np.flatnonzero(img.any(axis=1))
    expected = [top + int(np.floor((r.height - 1) / 2 + 0.5))
                for top, r in zip(spec.row_offsets, spec.rows, strict=True)]
    assert lit_rows.tolist() == expected
    assert np.all(img[expected] == 255)  # the line spans the full width


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_range_ends_map_to_band_top_and_bottom(spec: RenderSpec) -> None:
    hi = np.array([r.range[1] for r in spec.rows])[:, None] + np.zeros(spec.epoch_samples)
    lo = np.array([r.range[0] for r in spec.rows])[:, None] + np.zeros(spec.epoch_samples)
    top_img, bottom_img = render_epoch(hi, spec), render_epoch(lo, spec)
    for band in _bands(spec):
        assert np.flatnonzero(top_img.any(axis=1)[band]).tolist() == [0]  # positive up
        assert np.flatnonzero(bottom_img.any(axis=1)[band]).tolist() == [band.stop - band.start
                                                                         - 1]


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_sine_spanning_the_range_stays_in_its_band(spec: RenderSpec) -> None:
    t = np.arange(spec.epoch_samples) / spec.sfreq
    for i, (row, band) in enumerate(zip(spec.rows, _bands(spec), strict=True)):
        epoch = np.full((spec.n_rows, spec.epoch_samples), np.nan)
        lo, hi = row.range
        epoch[i] = (lo + hi) / 2 + (hi - lo) / 2 * np.sin(2 * np.pi * 0.5 * t)
        img = render_epoch(epoch, spec)
        inside = img[band]
        assert inside[0].any() and inside[-1].any()  # touches the top and bottom rows
        outside = img.copy()
        outside[band] = 0
        assert not outside.any()
        assert inside.any(axis=0).all()  # continuous: every column drawn


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_clipping_keeps_the_trace_in_its_band(spec: RenderSpec) -> None:
    t = np.arange(spec.epoch_samples) / spec.sfreq
    half = np.array([(r.range[1] - r.range[0]) / 2 for r in spec.rows])[:, None]
    mid = np.array([(r.range[0] + r.range[1]) / 2 for r in spec.rows])[:, None]
    epoch = mid + 10 * half * np.sin(2 * np.pi * 0.2 * t)  # 10 x the range
    img = render_epoch(epoch, spec)
    assert img.shape == spec.image_shape
    for band in _bands(spec):
        rows_lit = img[band].any(axis=1)
        assert rows_lit[0] and rows_lit[-1]
        # clipped: most columns sit on the top or the bottom row of the band
        at_edges = (img[band][0] > 0) | (img[band][-1] > 0)
        assert at_edges.mean() > 0.8


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_non_finite_samples_draw_nothing(spec: RenderSpec) -> None:
    assert not render_epoch(np.full((spec.n_rows, spec.epoch_samples), np.nan), spec).any()
    assert not render_epoch(np.full((spec.n_rows, spec.epoch_samples), np.inf), spec).any()
    epoch = _mid(spec)
    e, w = spec.epoch_samples, spec.image_width
    epoch[0, : e // 2] = np.nan  # first half of row 0 missing
    img = render_epoch(epoch, spec)
    band0 = img[_bands(spec)[0]]
    drawn = band0.any(axis=0)
    first_full = int(np.ceil((e // 2) * w / e))  # first column with a finite sample
    assert not drawn[: (e // 2) * w // e].any()
    assert drawn[first_full:].all()
    assert img[_bands(spec)[1]].any(axis=0).all()  # other rows unaffected


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_matches_the_per_column_reference_and_is_deterministic(spec: RenderSpec) -> None:
    epochs = _walk(spec, BLOCK_EPOCHS + 5, seed=1)  # crosses a block boundary
    epochs[3, 1, 100:900] = np.nan
    epochs[4, :, ::7] = np.nan
    epochs[5, 0, 2000] = -np.inf
    batch = render_epochs(epochs, spec)
    assert batch.tobytes() == render_epochs(epochs.copy(), spec).tobytes()
    for i in (0, 3, 4, 5, BLOCK_EPOCHS, BLOCK_EPOCHS + 4):
        one = render_epoch(epochs[i], spec)
        assert one.tobytes() == batch[i].tobytes()
        assert np.array_equal(one, baseline_render_loop(epochs[i], spec))


@pytest.mark.parametrize("spec", SPECS, ids=IDS)
def test_trace_is_continuous_between_columns(spec: RenderSpec) -> None:
    img = render_epoch(_walk(spec, 1, seed=2)[0], spec)
    for band in _bands(spec):
        lit = img[band] > 0
        assert lit.any(axis=0).all()
        overlap = (lit[:, 1:] & lit[:, :-1]).any(axis=0)  # neighbour spans share a pixel row
        assert overlap.all()


def test_bad_input_is_refused() -> None:
    spec = SPECS[0]
    with pytest.raises(ValueError, match="shape"):
        render_epochs(np.zeros((2, 3, spec.epoch_samples)), spec)
    with pytest.raises(ValueError, match="shape"):
        render_epoch(np.zeros(spec.epoch_samples), spec)
    short = RenderSpec.from_dict({"name": "short", "sfreq": 5.0, "rows": [
        {"name": "X", "type": "EEG", "height": 224, "range": [-1, 1]}]})
    with pytest.raises(ValueError, match="image width"):
        render_epoch(np.zeros((1, short.epoch_samples)), short)


def test_contact_sheet_and_png(tmp_path) -> None:
    spec = SPECS[0]
    imgs = render_epochs(_walk(spec, 7, seed=3), spec)
    path = tmp_path / "sheet.png"
    sheet = contact_sheet(imgs, labels=[0, 1, 2, 3, 4, -1, "N2"], cols=3, path=path,
                          indices=range(100, 107))
    assert sheet.dtype == np.uint8 and sheet.ndim == 3 and sheet.shape[2] == 3
    assert sheet.shape[1] == 3 * (224 + 2)
    assert sheet.shape[0] == 3 * (224 + 12 + 2)
    assert np.array_equal(np.asarray(Image.open(path)), sheet)
    # the tile of image 4 (row 1, col 1) holds the image below a caption with text in it
    x0, y0 = 1 * 226, 1 * 238
    assert np.array_equal(sheet[y0 + 12:y0 + 12 + 224, x0:x0 + 224, 0], imgs[4])
    caption = sheet[y0:y0 + 12, x0:x0 + 224]
    assert (caption[..., 0] > 128).any() and (caption[..., 2] < 64).all()  # yellow text
    # the 8th/9th tiles are empty gutter
    assert (sheet[2 * 238:, 226:] == 64).all()
    with pytest.raises(ValueError, match="one label per image"):
        contact_sheet(imgs, labels=[0, 1])
    with pytest.raises(ValueError, match="uint8"):
        contact_sheet(imgs.astype(float))
    out = save_png(imgs[0], tmp_path / "sub" / "one.png")
    assert np.array_equal(np.asarray(Image.open(out)), imgs[0])
    rgb = render_epochs(_walk(spec, 2, seed=4), dataclasses.replace(spec, grayscale=False))
    assert contact_sheet(rgb).shape == (224 + 12 + 2, 2 * 226, 3)
