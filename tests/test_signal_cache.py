"""The signal cache: int16 conditioned signals, rendered on the fly, byte for byte the offline
path's images (image cache, render_night), in DataLoader workers as in the training process."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edge_scorer.dsp.render import _layout, render_epochs
from edge_scorer.dsp.render_night import render_night
from edge_scorer.io.spec import load_spec
from edge_scorer.simulate import simulate_night, write_night
from edge_scorer.stats.hypnogram import Hypnogram
from training.augment import AugmentConfig
from training.dataset import build_cache, nights_from_folder, open_cache
from training.signal_cache import NAN_CODE, SignalCodec

SPEC = load_spec("sleep-edf")
SHHS = load_spec("shhs")
TRIM_MIN = 2.0
STAGES = {
    1: [0] * 8 + [1] * 3 + [2] * 8 + [-1] * 2 + [2] * 4 + [3] * 5 + [4] * 5 + [0] * 5,
    2: [0] * 6 + [1] * 4 + [2] * 8 + [3] * 6 + [4] * 6 + [0] * 6,
}


def _boundary_epochs(spec, rng: np.random.Generator) -> np.ndarray:
    """Epochs whose samples sit exactly on the renderer's pixel boundaries (and one float64
    step either side), with NaN runs, infinities and far out-of-band values."""
    _, lo, bottom, _, scale = _layout(spec)[:5]
    n, rows, e = 6, spec.n_rows, spec.epoch_samples
    k = rng.integers(-20, spec.image_height + 20, size=(n, rows, e))
    # px + 0.5 = k  <=>  v = lo + (bottom + 0.5 - k) / scale
    v = lo[:, None] + (bottom[:, None] + 0.5 - k) / scale[:, None]
    v = np.nextafter(v, v + rng.choice([-1.0, 0.0, 1.0], size=v.shape))
    v[0] += rng.normal(0, 5, size=v[0].shape)  # ordinary values too
    v[1, 0, 50:400] = np.nan
    v[2, 1] = np.nan
    v[3, 0, 7], v[3, 0, 9], v[3, 1, 11] = np.inf, -np.inf, 1e12
    v[4, :, ::97] = np.nan  # isolated gaps: some columns lose their last sample
    v[5] = rng.normal(0, 1e4, size=v[5].shape)  # saturating codes
    return v


@pytest.mark.parametrize("spec", [SPEC, SHHS], ids=["sleep-edf", "shhs"])
@pytest.mark.parametrize("store", ["signals", "columns"])
def test_codes_render_the_same_pixels(spec, store) -> None:
    codec = SignalCodec(spec, store)
    epochs = _boundary_epochs(spec, np.random.default_rng(7))
    codes = codec.encode(epochs)
    assert codes.dtype == np.int16 and codes.shape == (len(epochs), *codec.item_shape)
    assert (codes == NAN_CODE).any() and (np.abs(codes[5]) == 32767).any()
    assert codec.render(codes).tobytes() == render_epochs(epochs, spec).tobytes()


def test_decoded_signals_are_close() -> None:
    codec = SignalCodec(SPEC)
    assert codec.bits == 6  # 1/64 pixel for 224-px images
    rng = np.random.default_rng(1)
    ranges = np.array([r.range for r in SPEC.rows])
    x = rng.uniform(ranges[:, :1], ranges[:, 1:], size=(3, SPEC.n_rows, SPEC.epoch_samples))
    scale = _layout(SPEC)[4]
    err = np.abs(codec.decode(codec.encode(x)) - x).max(axis=(0, 2))
    assert np.all(err <= 0.5 / 64 / scale + 1e-9), err


@pytest.fixture(scope="module")
def nights(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("signal-cache")
    for subject, stages in STAGES.items():
        hyp = Hypnogram(np.array(stages, dtype=np.int8))
        write_night(simulate_night(hyp, seed=subject, subject=subject), root / "nights")
    return root


def _build(root: Path, name: str, **kw):
    aug = AugmentConfig(copies=1, seed=3)
    return build_cache(nights_from_folder(root / "nights"), SPEC, root / name,
                       trim_wake_min=TRIM_MIN, augment=aug, augment_subjects=["001"], **kw)


def test_on_the_fly_images_equal_the_offline_path(nights) -> None:
    images = _build(nights, "img", signals=True)
    sig = _build(nights, "sig", store="signals")
    cols = _build(nights, "cols", store="columns")
    assert [n["name"] for n in sig.nights] == [n["name"] for n in images.nights]
    assert sig.nights[1]["augmented"] == 1  # an augmented copy goes through the same path
    assert np.array_equal(sig.labels, images.labels)
    assert sig.images.shape == images.images.shape and sig.images.dtype == np.uint8
    assert np.asarray(sig.images).tobytes() == np.asarray(images.images).tobytes()
    assert np.asarray(cols.images).tobytes() == np.asarray(images.images).tobytes()
    for i, info in enumerate(sig.nights):  # the offline path of a scored file
        if info.get("augmented"):
            continue
        offline = render_night(info["psg"], SPEC, info["hypnogram"]).images
        sl, trim = sig.night_slice(i), info["trim"]
        assert sig.images[sl].tobytes() == offline[trim["start"]:trim["stop"]].tobytes()
    rows = np.array([[5, 3], [len(sig) - 1, 0]])  # any index shape, any order
    assert sig.images[rows].tobytes() == np.asarray(images.images)[rows].tobytes()
    assert sig.images[-1].tobytes() == images.images[-1].tobytes()
    with pytest.raises(IndexError):
        sig.images[len(sig)]
    # STQS input: the decoded signals agree with the float16 ones to the code's resolution
    dec, f16 = sig.signals[rows], np.asarray(images.signals[rows], dtype=np.float32)
    assert dec.dtype == np.float32 and dec.shape == f16.shape
    assert np.nanmax(np.abs(dec - f16)) < 0.1
    assert cols.signals is None


def test_signal_cache_files_index_and_rebuild(nights, caplog) -> None:
    cache = _build(nights, "files", store="signals")
    meta = json.loads((cache.path / "cache.json").read_text())
    assert meta["store"] == "signals" and meta["codec"]["bits"] == 6
    assert not (cache.path / "images.npy").exists()
    for info in meta["nights"]:
        arr = np.load(cache.path / "signals" / info["file"], mmap_mode="r")
        assert arr.dtype == np.int16 and arr.shape == (info["n_epochs"], 4, 3000)
        assert info["bytes"] == info["n_epochs"] * 4 * 3000 * 2
    again = _build(nights, "files", store="signals")
    assert again.meta["build_time"] == cache.meta["build_time"]  # reused
    cols = _build(nights, "files", store="columns")
    assert cols.meta["store"] == "columns" and cols.meta["nights"][0]["bytes"] == (
        cols.nights[0]["n_epochs"] * 4 * 3 * 224 * 2)
    assert not (cache.path / "signals.old").exists()
    reopened = open_cache(cache.path)
    assert reopened.images[:3].tobytes() == cols.images[:3].tobytes()
    with pytest.raises(ValueError, match="columns"):
        _build(nights, "files", store="columns", signals=True)
    with pytest.raises(ValueError, match="data.store"):
        _build(nights, "files", store="pixels")


def _train(root: Path, task: str, out: str, *sets: str) -> Path:
    pytest.importorskip("torch")
    from training.config import load_config
    from training.splits import save_split
    from training.tasks import train

    save_split({"train": ["001"], "val": ["002"], "test": []}, root / "split.json")
    base = [f"data.nights={json.dumps(str(root / 'nights'))}",
            f"data.split={json.dumps(str(root / 'split.json'))}", f"data.trim_wake_min={TRIM_MIN}",
            f"out={json.dumps(str(root / out))}", "train.threads=1", "train.warmup_steps=0",
            "train.batch_size=8", "train.max_steps=4"]
    name = {"intra": "intra_vit_tiny", "stqs": "stqs"}[task]
    return train(load_config(name, [*base, *sets], task=task), quiet=True)


def test_training_renders_in_dataloader_workers(nights) -> None:
    import torch

    tiny = ["model.depth=1", "model.embed_dim=16", "model.num_heads=2"]
    a = _train(nights, "intra", "run-img", *tiny,
               f"data.cache_dir={json.dumps(str(nights / 'img'))}")
    b = _train(nights, "intra", "run-sig", *tiny, "train.workers=2", 'data.store="signals"',
               f"data.cache_dir={json.dumps(str(nights / 'sig'))}")
    wa = torch.load(a / "last.pt", weights_only=True)["state_dict"]
    wb = torch.load(b / "last.pt", weights_only=True)["state_dict"]
    assert all(torch.equal(wa[k], wb[k]) for k in wa)  # the same pixels, the same run
    s = _train(nights, "stqs", "run-stqs", "model.lstm_hidden=8", "train.workers=1",
               'data.store="signals"', f"data.cache_dir={json.dumps(str(nights / 'sig'))}")
    assert torch.load(s / "last.pt", weights_only=True)["state"]["step"] == 4
