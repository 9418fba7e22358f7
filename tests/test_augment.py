"""Training augmentations (training/augment.py) and their path into the epoch cache.

The signal tests run on real arrays (synthetic rows at native rates); the cache tests on two
short simulated nights written as real Sleep-EDF files, rendered through the one conditioning
chain and renderer.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import numpy as np
import pytest

from edge_scorer.io.spec import load_spec
from edge_scorer.simulate import simulate_night, write_night
from edge_scorer.stats.hypnogram import Hypnogram
from training.augment import (
    GAIN_RANGE,
    AugmentConfig,
    apply_augmentation,
    augment_rows,
    copy_seed,
    plan_augmentation,
)
from training.dataset import build_cache, nights_from_folder
from training.splits import save_split, split_nights

SPEC = load_spec("sleep-edf")
TYPES = [r.type for r in SPEC.rows]  # EEG, EEG, EOG, EMG_ENVELOPE
RATES = [100.0, 100.0, 100.0, 1.0]
DURATION_S = 600.0
TRIM_MIN = 2.0
# 24 epochs per night (12 min): wake, sleep, wake
STAGES = {1: [0] * 5 + [1] * 2 + [2] * 6 + [3] * 3 + [4] * 4 + [0] * 4,
          2: [0] * 4 + [1] * 3 + [2] * 7 + [3] * 2 + [4] * 5 + [0] * 3}


def _rows(seed: int = 0) -> list[np.ndarray]:
    """Ten minutes of EEG-like noise (100 Hz) and a positive 1-Hz EMG envelope."""
    rng = np.random.default_rng(seed)
    n = int(DURATION_S * 100)
    eeg = [np.cumsum(rng.standard_normal(n)) * 0.5 + 20 * rng.standard_normal(n)
           for _ in range(3)]
    env = 2.0 + np.abs(rng.standard_normal(int(DURATION_S)))
    return [x - x.mean() for x in eeg] + [env]


def _rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x))))


def _spans(events, rate: float, n: int):
    for t0, dur in events:
        a = int(round(t0 * rate))
        yield a, min(a + max(int(round(dur * rate)), 1), n)


# ---------------------------------------------------------------- the augmentations


def test_deterministic_per_seed() -> None:
    rows, cfg = _rows(), AugmentConfig(copies=1)
    a = augment_rows(rows, RATES, TYPES, cfg, seed=7)
    b = augment_rows(rows, RATES, TYPES, cfg, seed=7)
    c = augment_rows(rows, RATES, TYPES, cfg, seed=8)
    assert all(np.array_equal(x, y) for x, y in zip(a, b))
    assert not any(np.array_equal(x, y) for x, y in zip(a[:3], c[:3]))
    assert [len(x) for x in a] == [len(x) for x in rows]
    assert not any(np.array_equal(x, y) for x, y in zip(rows[:3], a[:3]))  # it did something
    assert np.array_equal(rows[0], _rows()[0])  # the input is untouched
    # a copy's seed depends on the base seed, the night and the copy number only
    assert copy_seed(0, "SIM0011E0", 1) == copy_seed(0, "SIM0011E0", 1)
    assert len({copy_seed(0, "SIM0011E0", 1), copy_seed(0, "SIM0011E0", 2),
                copy_seed(0, "SIM0021E0", 1), copy_seed(1, "SIM0011E0", 1)}) == 4


def test_all_off_is_the_identity() -> None:
    rows = _rows()
    out = augment_rows(rows, RATES, TYPES, AugmentConfig.off(), seed=3)
    assert all(np.array_equal(x, y) for x, y in zip(rows, out))


def test_gain_scales_rms_by_the_drawn_factor() -> None:
    rows = _rows()
    cfg = AugmentConfig.off(gain=GAIN_RANGE)
    gains = []
    for seed in range(6):
        plan = plan_augmentation(cfg, TYPES, DURATION_S, seed)
        out = apply_augmentation(rows, RATES, plan)
        for x, y, rp in zip(rows, out, plan.rows):
            assert _rms(y) / _rms(x) == pytest.approx(rp.gain, rel=1e-12)
            gains.append(rp.gain)
    assert min(gains) >= GAIN_RANGE[0] and max(gains) <= GAIN_RANGE[1]
    assert max(gains) / min(gains) > 1.5  # really drawn, not fixed
    fixed = augment_rows(rows, RATES, TYPES, AugmentConfig.off(gain=(1.5, 1.5)), seed=0)
    assert _rms(fixed[1]) == pytest.approx(1.5 * _rms(rows[1]))


def test_flip_negates_eeg_eog_only() -> None:
    rows = _rows()
    out = augment_rows(rows, RATES, TYPES, AugmentConfig.off(flip_prob=1.0), seed=0)
    for x, y in zip(rows[:3], out[:3]):
        assert np.array_equal(y, -x)
    assert np.array_equal(out[3], rows[3])  # the EMG envelope is never flipped
    # with p = 0.25, about a quarter of the EEG/EOG rows flip
    cfg = AugmentConfig()
    flips = [r.flip for s in range(200) for r in plan_augmentation(cfg, TYPES, 60.0, s).rows[:3]]
    assert 0.15 < np.mean(flips) < 0.35


def test_flat_stretch_is_constant() -> None:
    rows = _rows()
    plan = plan_augmentation(AugmentConfig.off(flat_rate_h=(60.0, 60.0)), TYPES, DURATION_S, 1)
    out = apply_augmentation(rows, RATES, plan)
    n_flat = 0
    for x, y, rate, rp in zip(rows, out, RATES, plan.rows):
        assert rp.flats, "60 per hour over 10 min: every row gets some"
        touched = np.zeros(len(x), dtype=bool)
        for a, b in _spans(rp.flats, rate, len(x)):
            assert b - a >= 2 * rate - 1 and np.all(y[a:b] == y[a])
            touched[a:b] = True
            n_flat += 1
        assert np.array_equal(y[~touched], x[~touched])  # nothing else changed
    assert n_flat >= 8


@pytest.mark.parametrize("shift_s", [2.0, -1.5, 3.0])
def test_time_shift_moves_an_impulse(shift_s: float) -> None:
    n = int(DURATION_S * 100)
    rows = [np.zeros(n) for _ in range(3)] + [np.zeros(int(DURATION_S))]
    for x, rate in zip(rows, RATES):
        x[int(300 * rate)] = 1.0
    out = augment_rows(rows, RATES, TYPES, AugmentConfig.off(shift_s=(shift_s, shift_s)), 0)
    for x, y, rate in zip(rows, out, RATES):
        assert len(y) == len(x)  # the epoch count is kept
        assert np.flatnonzero(y).tolist() == [int(300 * rate) + int(round(shift_s * rate))]
    # the shift is drawn within -3..+3 s by default
    shifts = [plan_augmentation(AugmentConfig(), TYPES, 60.0, s).shift_s for s in range(100)]
    assert -3.0 <= min(shifts) < -2.0 and 2.0 < max(shifts) <= 3.0


@pytest.mark.parametrize("hum_hz", [50.0, 60.0])
def test_hum_shows_a_mains_peak(hum_hz: float) -> None:
    from scipy.signal import periodogram

    rate = 256.0
    rows = [np.zeros(int(60 * rate)), np.zeros(int(60 * 100))]
    cfg = AugmentConfig.off(hum_hz=(hum_hz,), hum_uv=(5.0, 5.0))
    out = augment_rows(rows, [rate, 100.0], ["EEG", "EEG"], cfg, seed=0)
    f, p = periodogram(out[0], fs=rate)
    assert f[np.argmax(p)] == pytest.approx(hum_hz, abs=0.1)
    assert _rms(out[0]) == pytest.approx(5.0 / np.sqrt(2), rel=0.01)
    # a 100-Hz recording cannot carry 50/60-Hz hum (its recorder's anti-alias filter removed it)
    assert not out[1].any()


def test_noise_ecg_and_filters() -> None:
    from scipy.signal import welch

    rate, n = 100.0, int(DURATION_S * 100)
    zero = [np.zeros(n)]
    white = augment_rows(zero, [rate], ["EEG"], AugmentConfig.off(white_uv=(2.0, 2.0)), 0)[0]
    assert _rms(white) == pytest.approx(2.0, rel=0.02)
    pink = augment_rows(zero, [rate], ["EEG"], AugmentConfig.off(pink_uv=(3.0, 3.0)), 0)[0]
    assert _rms(pink) == pytest.approx(3.0, rel=1e-6)
    f, p = welch(pink, fs=rate, nperseg=4096)
    lo, hi = p[(f > 0.5) & (f < 1)].mean(), p[(f > 20) & (f < 40)].mean()
    assert 10 < lo / hi < 100  # 1/f: ~30x more power at 0.75 Hz than at 30 Hz
    cfg = AugmentConfig.off(ecg_uv=(10.0, 10.0), ecg_bpm=(60.0, 60.0))
    ecg = np.abs(augment_rows(zero, [rate], ["EEG"], cfg, 0)[0])
    assert ecg.max() == pytest.approx(10.0, rel=0.05)
    peaks = np.flatnonzero((ecg[1:-1] > 5) & (ecg[1:-1] >= ecg[:-2]) & (ecg[1:-1] > ecg[2:]))
    assert abs(len(peaks) - DURATION_S) <= 0.05 * DURATION_S  # 60 bpm for 10 min
    # an extra high-pass lets a step through and then takes it away (tau = 1/(2 pi 0.5 Hz));
    # it starts settled (no start-up transient); an extra low-pass takes 45 Hz away
    step = np.where(np.arange(n) >= 10000, 100.0, 0.0) + 50.0
    hp = augment_rows([step], [rate], ["EEG"],
                      AugmentConfig.off(highpass_prob=1.0, highpass_hz=(0.5, 0.5)), 0)[0]
    assert abs(hp[:10000]).max() < 1e-9
    assert hp[10000] == pytest.approx(100.0, rel=0.02)
    assert hp[10032] == pytest.approx(100.0 * np.exp(-0.32 * 2 * np.pi * 0.5), rel=0.05)
    assert abs(hp[11000:]).max() < 1e-6
    sine = np.sin(2 * np.pi * 45.0 * np.arange(n) / rate)
    lp = augment_rows([sine], [rate], ["EEG"],
                      AugmentConfig.off(lowpass_prob=1.0, lowpass_hz=(25.0, 25.0)), 0)[0]
    assert _rms(lp[1000:]) < 0.4 * _rms(sine)


def test_artifacts_pops_moves_sweat() -> None:
    from scipy.signal import periodogram

    rate, n = 100.0, int(DURATION_S * 100)
    rows = [np.zeros(n), np.zeros(n), np.zeros(int(DURATION_S))]
    types = ["EEG", "EMG", "EMG_ENVELOPE"]
    rates = [rate, rate, 1.0]
    plan = plan_augmentation(AugmentConfig.off(pop_rate_h=(30.0, 30.0)), types, DURATION_S, 2)
    pops = apply_augmentation(rows, rates, plan)[0]
    assert plan.rows[0].pops and not plan.rows[1].pops  # pops are an EEG/EOG artifact
    for t0, amp, _tau in plan.rows[0].pops:
        i = int(round(t0 * rate))
        assert 50 <= abs(amp) <= 300 and abs(pops[i]) >= abs(amp) * 0.99
    cfg = AugmentConfig.off(move_rate_h=(30.0, 30.0))
    plan = plan_augmentation(cfg, types, DURATION_S, 3)
    moved = apply_augmentation(rows, rates, plan)
    assert plan.moves
    for x, r in zip(moved, rates):
        inside = np.zeros(len(x), dtype=bool)
        for a, b in _spans(plan.moves, r, len(x)):
            inside[a:b] = True
        assert not x[~inside].any() and x[inside].any()  # only during the bursts, on every row
    assert moved[2].min() >= 0 and moved[2].max() >= 5 * 0.9  # the envelope rises
    plan = plan_augmentation(AugmentConfig.off(sweat_rate_h=(30.0, 30.0)), ["EEG"],
                             DURATION_S, 4)
    sweat = apply_augmentation(rows[:1], [rate], plan)[0]
    assert plan.rows[0].sweats and 10 <= np.abs(sweat).max() <= 60 * len(plan.rows[0].sweats)
    f, p = periodogram(sweat, fs=rate)
    assert p[f < 0.2].sum() / p.sum() > 0.95  # slow drifts: below 0.2 Hz


def test_emg_envelope_stays_non_negative() -> None:
    rows = _rows()
    rows[3] = np.abs(rows[3]) * 0.2  # a quiet chin, near the floor
    for seed in range(10):
        out = augment_rows(rows, RATES, TYPES, AugmentConfig(), seed)
        assert out[3].min() >= 0.0
    low = augment_rows(rows, RATES, TYPES, AugmentConfig.off(emg_offset_uv=(-1.0, -1.0)), 0)[3]
    assert low.min() == 0.0 and np.array_equal(low, np.maximum(rows[3] - 1.0, 0.0))


def test_non_finite_samples_stay_gaps_and_config_checks() -> None:
    rows = _rows()
    rows[0][1000:1100] = np.nan
    out = augment_rows(rows, RATES, TYPES, AugmentConfig(shift_s=(0.0, 0.0)), 0)
    assert np.isnan(out[0][1000:1100]).all() and np.isfinite(out[0][:1000]).all()
    assert np.isfinite(out[0][1100:]).all()  # filters do not smear the gap over the night
    with pytest.raises(ValueError, match="copies"):
        AugmentConfig(copies=-1)
    with pytest.raises(ValueError, match="flip_prob"):
        AugmentConfig(flip_prob=1.5)
    with pytest.raises(ValueError, match="low <= high"):
        AugmentConfig(white_uv=(3.0, 1.0))
    with pytest.raises(ValueError, match="rows"):
        apply_augmentation(rows[:2], RATES[:2], plan_augmentation(AugmentConfig(), TYPES, 60, 0))


# ---------------------------------------------------------------- the cache


@pytest.fixture(scope="module")
def nights_dir(tmp_path_factory) -> Path:
    """Two simulated 12-min nights (subjects 001 and 002) in the Sleep-EDF layout."""
    root = tmp_path_factory.mktemp("augment")
    for subject, stages in STAGES.items():
        hyp = Hypnogram(np.array(stages, dtype=np.int8))
        write_night(simulate_night(hyp, seed=subject, subject=subject), root / "nights")
    return root


def test_cache_has_augmented_training_nights(nights_dir: Path, caplog) -> None:
    nights = nights_from_folder(nights_dir / "nights")
    cache = build_cache(nights, SPEC, nights_dir / "c1", signals=True, trim_wake_min=TRIM_MIN,
                        augment=AugmentConfig(copies=1, seed=5), augment_subjects=["001"])
    names = [n["name"] for n in cache.nights]
    assert names == ["SIM0011E0", "SIM0011E0+aug1", "SIM0021E0"]
    orig, aug, other = cache.nights
    assert aug["augmented"] == 1 and aug["subject"] == orig["subject"] == "001"
    assert "augmented" not in orig and "augmented" not in other
    assert cache.subjects() == ["001", "002"]  # a copy is not a subject of its own
    assert len(cache.signals) == len(cache.images) == len(cache.labels)
    o, a = cache.night_slice(0), cache.night_slice(1)
    assert np.array_equal(cache.labels[o], cache.labels[a])  # same labels, same trim
    assert np.array_equal(cache.epoch[o], cache.epoch[a])
    assert not np.array_equal(cache.images[o], cache.images[a])
    assert not np.array_equal(cache.signals[o], cache.signals[a])
    assert cache.meta["request"]["augment"]["settings"]["seed"] == 5
    # splits: augmented copies in the training part only, never in validation or test
    parts = split_nights(cache, {"train": ["001"], "val": ["002"], "test": []})
    assert parts == {"train": [0, 1], "val": [2], "test": []}
    parts = split_nights(cache, {"train": ["002"], "val": [], "test": ["1"]})
    assert parts == {"train": [2], "val": [], "test": [0]}
    assert not any(cache.is_augmented(i) for i in cache.nights_of(["001", "002"]))
    assert cache.nights_of(["001"], augmented=True) == [0, 1]
    # reused while the settings stay, rebuilt when they change
    caplog.set_level("INFO", logger="edge_scorer")
    again = build_cache(nights, SPEC, nights_dir / "c1", signals=True, trim_wake_min=TRIM_MIN,
                        augment=AugmentConfig(copies=1, seed=5), augment_subjects=["1"])
    assert again.meta["build_time"] == cache.meta["build_time"]
    caplog.clear()
    other_seed = build_cache(nights, SPEC, nights_dir / "c1", trim_wake_min=TRIM_MIN,
                             signals=True, augment=AugmentConfig(copies=1, seed=6),
                             augment_subjects=["001"])
    assert "the augmentation settings changed" in caplog.text
    assert not np.array_equal(other_seed.images[other_seed.night_slice(1)],
                              cache.images[cache.night_slice(1)])


def test_all_off_copy_equals_the_night_byte_for_byte(nights_dir: Path) -> None:
    nights = nights_from_folder(nights_dir / "nights")
    plain = build_cache(nights, SPEC, nights_dir / "plain", signals=True,
                        trim_wake_min=TRIM_MIN)
    assert "augment" not in plain.meta["request"]  # no copies: the request of older caches
    assert not any(plain.is_augmented(i) for i in range(plain.n_nights))
    cache = build_cache(nights, SPEC, nights_dir / "off", signals=True, trim_wake_min=TRIM_MIN,
                        augment=AugmentConfig.off(copies=2))
    assert [n["name"] for n in cache.nights] == [
        "SIM0011E0", "SIM0011E0+aug1", "SIM0011E0+aug2",
        "SIM0021E0", "SIM0021E0+aug1", "SIM0021E0+aug2"]
    for i in range(cache.n_nights):
        j = [n["name"] for n in plain.nights].index(cache.nights[i]["name"].split("+")[0])
        a, b = cache.night_slice(i), plain.night_slice(j)
        assert cache.images[a].tobytes() == plain.images[b].tobytes()
        assert cache.signals[a].tobytes() == plain.signals[b].tobytes()
        assert np.array_equal(cache.labels[a], plain.labels[b])


def test_prepare_data_uses_copies_for_training_only(nights_dir: Path) -> None:
    pytest.importorskip("torch")
    from training.config import load_config
    from training.tasks import prepare_data

    save_split({"train": ["001"], "val": [], "test": ["002"]}, nights_dir / "split.json")
    base = [f"data.nights={json.dumps(str(nights_dir / 'nights'))}",
            f"data.cache_dir={json.dumps(str(nights_dir / 'c2'))}",
            f"data.trim_wake_min={TRIM_MIN}", f"out={json.dumps(str(nights_dir / 'run'))}"]
    cfg = load_config("stqs", [*base, f"data.split={json.dumps(str(nights_dir / 'split.json'))}",
                               "data.augment_copies=2", "data.augment_seed=3"])
    assert (cfg["data"]["augment_copies"], cfg["data"]["augment_seed"]) == (2, 3)
    data = prepare_data(cfg, signals=True)
    names = data.night_names()
    assert names == {"train": ["SIM0011E0", "SIM0011E0+aug1", "SIM0011E0+aug2"], "val": [],
                     "test": ["SIM0021E0"]}
    assert data.split == {"train": ["001"], "val": [], "test": ["002"]}
    test_rows = data.cache.select(data.parts["test"])
    assert not np.isin(data.cache.night[test_rows],
                       [i for i in range(data.cache.n_nights) if data.cache.is_augmented(i)]).any()
    # a seeded split without a file: only the subject that lands in training is augmented
    cfg = load_config("stqs", [*base, "data.split_fractions=[0.5, 0.5, 0.0]",
                               "data.augment_copies=1"])
    data = prepare_data(cfg, signals=True)
    train_subject = data.split["train"][0]
    aug = [n for n in data.cache.nights if n.get("augmented")]
    assert [n["subject"] for n in aug] == [train_subject]
    assert all(not data.cache.is_augmented(i) for i in data.parts["val"])
    # the same cache opened with augment_copies = 0 trains on original nights only
    cfg = load_config("stqs", [*base, "data.split_fractions=[0.5, 0.5, 0.0]"])
    cfg["data"]["nights"] = None  # open the cache as it is
    data = prepare_data(cfg, signals=True)
    assert any(data.cache.is_augmented(i) for i in range(data.cache.n_nights))
    assert not any(data.cache.is_augmented(i) for p in data.parts.values() for i in p)


def test_config_dataclass_round_trip() -> None:
    cfg = AugmentConfig(copies=2, seed=4)
    d = cfg.to_dict()
    assert json.loads(json.dumps(d)) == d and d["gain"] == list(GAIN_RANGE)
    assert AugmentConfig(**{f.name: getattr(cfg, f.name)
                            for f in dataclasses.fields(cfg)}) == cfg


def test_cli_train_with_augment_copies(nights_dir: Path, capsys) -> None:
    pytest.importorskip("torch")
    import logging

    from edge_scorer.cli import main

    save_split({"train": ["001"], "val": ["002"], "test": []}, nights_dir / "split3.json")
    logger = logging.getLogger("edge_scorer")
    saved = (list(logger.handlers), logger.propagate, logger.level)
    try:  # the CLI installs its own stderr handler; put the logger back afterwards
        args = ["train", "intra", "--data", str(nights_dir / "nights"), "--set",
                f"data.cache_dir={json.dumps(str(nights_dir / 'c3'))}",
                f"data.split={json.dumps(str(nights_dir / 'split3.json'))}",
                f"data.trim_wake_min={TRIM_MIN}", "data.augment_copies=2", "train.threads=1",
                "model.depth=1", "model.embed_dim=32", "model.num_heads=2",
                "--out", str(nights_dir / "cli"), "--max-steps", "1", "--quiet"]
        assert main(args) == 0
    finally:
        logger.handlers[:], logger.propagate = saved[0], saved[1]
        logger.setLevel(saved[2])
    run = Path(capsys.readouterr().out.strip())
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["data"]["augment_copies"] == 2
    cache = json.loads((nights_dir / "c3" / "cache.json").read_text())
    assert [n["name"] for n in cache["nights"]] == [
        "SIM0011E0", "SIM0011E0+aug1", "SIM0011E0+aug2", "SIM0021E0"]
