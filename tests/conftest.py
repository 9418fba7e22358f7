"""Shared fixtures: the real Sleep-EDF material in ``../shared/data`` (never copied here)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = Path(os.environ.get("EDGE_SCORER_SHARED_DATA", REPO.parent / "shared" / "data"))
SLEEP_EDF = SHARED_DATA / "sleep-edf"


@pytest.fixture(scope="session")
def shared_data() -> Path:
    """The real Sleep-EDF folder (``../shared/data/sleep-edf``), or skip when it is absent."""
    if not (SLEEP_EDF / "hypnograms").is_dir():
        pytest.skip(
            f"real Sleep-EDF material not found at {SLEEP_EDF} (expected ../shared/data beside "
            "the repo, or set EDGE_SCORER_SHARED_DATA)"
        )
    return SLEEP_EDF


@pytest.fixture(scope="session")
def psg_excerpt(shared_data: Path) -> Path:
    """The real 5-minute Sleep-EDF PSG excerpt (SC4001E0, first 300 s)."""
    path = shared_data / "psg_excerpt" / "SC4001E0-PSG_first300s.edf"
    if not path.is_file():
        pytest.skip(f"real PSG excerpt not found at {path}")
    return path


@pytest.fixture(scope="session")
def model():
    """The shipped default scoring model (ONNX Runtime, CPU), loaded once per session."""
    from edge_scorer.inference.scorer import ScoringModel

    return ScoringModel.load()


@pytest.fixture(scope="module")
def sim_night(request, tmp_path_factory):
    """One simulated Sleep-EDF night for a test module: ``(psg, hypnogram)`` paths.

    Its length and seed come from the module's ``SIM_NIGHT = (duration_h, seed)``.
    """
    from edge_scorer.simulate import simulate_nights

    duration_h, seed = getattr(request.module, "SIM_NIGHT", (0.3, 0))
    (psg, hyp), = simulate_nights(tmp_path_factory.mktemp("night"), 1, layout="sleep-edf",
                                  seed=seed, duration_h=duration_h)
    return psg, hyp


@pytest.fixture(scope="module")
def models(tmp_path_factory):
    """The shipped intra/inter ONNX models copied to a scratch folder (outputs go beside)."""
    import shutil

    from edge_scorer.inference.scorer import default_model_dir

    folder = tmp_path_factory.mktemp("models")
    for name in ("intra.onnx", "inter.onnx"):
        shutil.copy(default_model_dir() / name, folder / name)
    return folder


def uncalibrated_models(dest: Path) -> Path:
    """Copies of the shipped models (ONNX + weights) without the calibration metadata
    (``temperature``, ``familiarity``): temperature 1 and the unfamiliar-signal flag off, as a
    model exported before calibration existed."""
    import shutil

    import onnx

    from edge_scorer.inference.backends import META_PREFIX
    from edge_scorer.inference.scorer import default_model_dir

    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    drop = {f"{META_PREFIX}temperature", f"{META_PREFIX}familiarity"}
    for name in ("intra", "inter"):
        m = onnx.load(str(default_model_dir() / f"{name}.onnx"))
        keep = [(p.key, p.value) for p in m.metadata_props if p.key not in drop]
        del m.metadata_props[:]
        for k, v in keep:
            entry = m.metadata_props.add()
            entry.key, entry.value = k, v
        onnx.save(m, str(dest / f"{name}.onnx"))
        shutil.copy(default_model_dir() / f"{name}.pt", dest / f"{name}.pt")
    return dest
