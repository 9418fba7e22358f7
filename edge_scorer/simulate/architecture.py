"""Sleep architecture model: a time-of-night dependent semi-Markov chain of sleep stages.

The model is fitted on real expert hypnograms (the 16 Sleep-EDF SC nights, cropped to the
standard in-bed window, i.e. from 30 min before sleep onset to 30 min after the last sleep
epoch) and samples new, realistic hypnograms.

Structure (all numbers are in ``architecture_params.json``, refitted with
``python -m edge_scorer.simulate.architecture --fit DIR -o FILE``):

* Time since sleep onset is split into bins (``bin_edges_min``: 0-60, 60-120, 120-240, 240-360,
  360+ min); each bin has its own stage-transition counts, so N3 dominates early and REM late.
* The chain is *dwell-time aware* (semi-Markov): it draws the length of each stage bout from
  the empirical bout-length histogram of that stage and time bin (pooled over bins when a bin
  has fewer than ``MIN_RUNS`` bouts), then the next stage from the jump (stage-change) counts.
* The sleep period (first to last sleep epoch) is drawn from the fitted nights' durations, the
  lead-in wake (lights-off to sleep onset) and tail wake from their empirical values. In the
  Sleep-EDF in-bed crop both are 30 min by construction of the crop.
* First-order transition counts (with self-transitions) are stored too, per bin, for other
  uses (e.g. HMM smoothing priors).

Unscored epochs ("Movement time") are counted as wake when fitting.
"""

from __future__ import annotations

import argparse
import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger
from edge_scorer.stages import CLASS_NAMES, N_CLASSES, Stage
from edge_scorer.stats.hypnogram import Hypnogram

log = get_logger("simulate.architecture")

#: Lower edges (minutes since sleep onset) of the time-of-night bins.
BIN_EDGES_MIN = (0.0, 60.0, 120.0, 240.0, 360.0)
#: Fewest bouts a (stage, bin) dwell histogram needs before the pooled histogram is used.
MIN_RUNS = 8
#: The committed parameter file (fitted on the 16 real Sleep-EDF SC hypnograms).
DEFAULT_PARAMS = Path(__file__).with_name("architecture_params.json")


@dataclass
class ArchitectureParams:
    """Fitted sleep-architecture numbers (all JSON-serializable).

    Attributes
    ----------
    epoch_s : float
        Epoch length of the fitted hypnograms.
    bin_edges_min : list of float
        Lower edges of the time-since-sleep-onset bins, minutes.
    transition_counts : list (n_bins x 5 x 5) of int
        First-order epoch-to-epoch counts ``[bin][from][to]`` within the sleep period.
    jump_counts : list (n_bins x 5 x 5) of int
        Stage-change counts ``[bin][from][to]`` (diagonal zero), binned by the time of the change.
    dwell_hist : list (5 x n_bins) of list of int
        Bout-length histograms: ``dwell_hist[stage][bin][k]`` bouts of ``k + 1`` epochs.
    first_stage_counts : list of int
        Stage of the first sleep epoch (W never occurs).
    sleep_period_epochs, lead_wake_epochs, tail_wake_epochs : list of int
        Per fitted night: sleep period (first to last sleep epoch), wake before and after it.
    n_nights : int
        Number of fitted nights.
    source : str
        What the numbers were fitted on.
    """

    epoch_s: float
    bin_edges_min: list[float]
    transition_counts: list[list[list[int]]]
    jump_counts: list[list[list[int]]]
    dwell_hist: list[list[list[int]]]
    first_stage_counts: list[int]
    sleep_period_epochs: list[int]
    lead_wake_epochs: list[int]
    tail_wake_epochs: list[int]
    n_nights: int
    source: str = ""
    stage_names: list[str] = field(default_factory=lambda: list(CLASS_NAMES))

    def to_json(self, path: str | Path) -> Path:
        """Write the parameters as JSON."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(asdict(self), indent=1) + "\n", encoding="utf-8")
        return path

    @classmethod
    def from_json(cls, path: str | Path) -> ArchitectureParams:
        """Read parameters written by :meth:`to_json`."""
        data = json.loads(Path(path).read_text(encoding="utf-8"))
        try:
            return cls(**data)
        except TypeError as exc:
            raise ValueError(f"{path}: not an architecture parameter file ({exc}); refit it "
                             "with python -m edge_scorer.simulate.architecture --fit DIR") from exc

    def transition_matrix(self, time_bin: int | None = None) -> np.ndarray:
        """Row-normalized first-order transition matrix of one bin (all bins pooled if None)."""
        counts = np.asarray(self.transition_counts, dtype=float)
        c = counts.sum(0) if time_bin is None else counts[time_bin]
        return c / np.maximum(c.sum(1, keepdims=True), 1.0)


def load_params(path: str | Path | None = None) -> ArchitectureParams:
    """Load architecture parameters (the committed, Sleep-EDF-fitted ones by default)."""
    return ArchitectureParams.from_json(path or DEFAULT_PARAMS)


def load_hypnograms(folder: str | Path) -> list[Hypnogram]:
    """Read every ``*-Hypnogram.edf`` (else ``*.csv``/``*.xml``) of a folder, in-bed cropped."""
    from edge_scorer.io.hypnogram_io import inbed_crop, read_hypnogram

    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"hypnogram folder not found: {folder}")
    files = sorted(folder.glob("*-Hypnogram.edf")) or sorted(
        [*folder.glob("*.csv"), *folder.glob("*.xml")])
    if not files:
        raise FileNotFoundError(f"no hypnogram files (*-Hypnogram.edf, *.csv, *.xml) in {folder}")
    return [inbed_crop(read_hypnogram(f)) for f in files]


def _bin_of(epoch: np.ndarray | int, epoch_s: float, edges_min: Sequence[float]) -> np.ndarray:
    minutes = np.asarray(epoch) * epoch_s / 60.0
    return np.searchsorted(np.asarray(edges_min), minutes, side="right") - 1


def _runs(stages: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    edges = np.r_[0, np.flatnonzero(np.diff(stages)) + 1, len(stages)]
    return stages[edges[:-1]], edges[:-1], np.diff(edges)


def fit_architecture(
    hypnograms: Sequence[Hypnogram], *, bin_edges_min: Sequence[float] = BIN_EDGES_MIN,
    source: str = "",
) -> ArchitectureParams:
    """Fit the semi-Markov architecture model on (in-bed cropped) hypnograms.

    Raises
    ------
    ValueError
        If no hypnogram has a sleep epoch, or epoch lengths differ.
    """
    epochs = {h.epoch_s for h in hypnograms}
    if len(epochs) != 1:
        raise ValueError(f"all hypnograms need the same epoch length, got {sorted(epochs)}")
    epoch_s = epochs.pop()
    nb = len(bin_edges_min)
    trans = np.zeros((nb, N_CLASSES, N_CLASSES), dtype=np.int64)
    jumps = np.zeros_like(trans)
    max_len = 1
    bouts: list[tuple[int, int, int]] = []
    first = np.zeros(N_CLASSES, dtype=np.int64)
    spt, lead, tail = [], [], []
    for h in hypnograms:
        st = np.where(h.stages == Stage.UNSCORED, Stage.W, h.stages).astype(np.int64)
        sleep = np.flatnonzero(st > Stage.W)
        if sleep.size == 0:
            log.warning("hypnogram %s has no sleep epoch; skipped", h.meta.get("source", "?"))
            continue
        a, b = int(sleep[0]), int(sleep[-1]) + 1
        sp = st[a:b]
        spt.append(b - a)
        lead.append(a)
        tail.append(len(st) - b)
        first[sp[0]] += 1
        bins = _bin_of(np.arange(len(sp) - 1) + 1, epoch_s, bin_edges_min)
        np.add.at(trans, (bins, sp[:-1], sp[1:]), 1)
        stages, starts, lengths = _runs(sp)
        jb = _bin_of(starts[1:], epoch_s, bin_edges_min)
        np.add.at(jumps, (jb, stages[:-1], stages[1:]), 1)
        for s, t0, n in zip(stages, _bin_of(starts, epoch_s, bin_edges_min), lengths):
            bouts.append((int(s), int(t0), int(n)))
            max_len = max(max_len, int(n))
    if not spt:
        raise ValueError("no hypnogram with sleep epochs to fit the architecture on")
    dwell = np.zeros((N_CLASSES, nb, max_len), dtype=np.int64)
    for s, b, n in bouts:
        dwell[s, b, n - 1] += 1
    return ArchitectureParams(
        epoch_s=float(epoch_s), bin_edges_min=[float(e) for e in bin_edges_min],
        transition_counts=trans.tolist(), jump_counts=jumps.tolist(),
        dwell_hist=[[_trim(dwell[s, b]) for b in range(nb)] for s in range(N_CLASSES)],
        first_stage_counts=first.tolist(), sleep_period_epochs=spt, lead_wake_epochs=lead,
        tail_wake_epochs=tail, n_nights=len(spt), source=source,
    )


def _trim(hist: np.ndarray) -> list[int]:
    nz = np.flatnonzero(hist)
    return hist[: nz[-1] + 1].tolist() if nz.size else []


def _draw_dwell(rng: np.random.Generator, params: ArchitectureParams, stage: int, b: int) -> int:
    hist = np.asarray(params.dwell_hist[stage][b], dtype=float)
    if hist.sum() < MIN_RUNS:  # too few bouts in this bin: pool all bins of the stage
        rows = params.dwell_hist[stage]
        width = max(len(r) for r in rows)
        hist = np.sum([np.pad(np.asarray(r, float), (0, width - len(r))) for r in rows], axis=0)
    if hist.sum() == 0:
        return 1
    return int(rng.choice(len(hist), p=hist / hist.sum())) + 1


def _draw_next(rng: np.random.Generator, params: ArchitectureParams, stage: int, b: int) -> int:
    row = np.asarray(params.jump_counts[b][stage], dtype=float)
    if row.sum() == 0:
        row = np.asarray(params.jump_counts, dtype=float).sum(0)[stage]
    if row.sum() == 0:
        return int(Stage.N2) if stage != Stage.N2 else int(Stage.N1)
    return int(rng.choice(N_CLASSES, p=row / row.sum()))


def sample_hypnogram(
    rng: np.random.Generator,
    params: ArchitectureParams | None = None,
    *,
    duration_h: float | None = None,
) -> Hypnogram:
    """Sample an in-bed hypnogram (lead-in wake, sleep period, final wake) from the model.

    Parameters
    ----------
    rng : numpy.random.Generator
        Randomness (same state, same hypnogram).
    params : ArchitectureParams, optional
        The model (the committed Sleep-EDF fit by default).
    duration_h : float, optional
        Target total in-bed duration; the sleep period is scaled to fit it (the lead-in and
        tail wake keep their drawn lengths). Default: drawn from the fitted nights.

    Returns
    -------
    Hypnogram
        ``meta["source"] = "simulated"``.
    """
    params = params or load_params()
    ep_min = params.epoch_s / 60.0
    lead = int(rng.choice(params.lead_wake_epochs))
    tail = int(rng.choice(params.tail_wake_epochs))
    if duration_h is not None:
        if not duration_h > 0:
            raise ValueError(f"duration_h must be positive, got {duration_h}")
        total = int(round(duration_h * 60.0 / ep_min))
        if total < lead + tail + 2:
            lead = tail = max(1, (total - 2) // 4)
        spt = max(2, total - lead - tail)
    else:
        spt = int(round(rng.choice(params.sleep_period_epochs) * rng.uniform(0.9, 1.1)))
    first = np.asarray(params.first_stage_counts, dtype=float)
    stage = int(rng.choice(N_CLASSES, p=first / first.sum())) if first.sum() else int(Stage.N1)
    out: list[np.ndarray] = []
    t = 0
    while t < spt:
        b = int(_bin_of(t, params.epoch_s, params.bin_edges_min))
        n = min(_draw_dwell(rng, params, stage, b), spt - t)
        out.append(np.full(n, stage, dtype=np.int8))
        t += n
        stage = _draw_next(rng, params, stage, int(_bin_of(t, params.epoch_s,
                                                            params.bin_edges_min)))
    sp = np.concatenate(out)
    if sp[-1] == Stage.W:  # the sleep period ends on a sleep epoch by definition
        sp[-1] = Stage.N1
    stages = np.r_[np.zeros(lead, np.int8), sp, np.zeros(tail, np.int8)].astype(np.int8)
    return Hypnogram(stages, epoch_s=params.epoch_s, meta={"source": "simulated"})


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m edge_scorer.simulate.architecture --fit DIR -o FILE``: refit the model."""
    from edge_scorer._log import setup_cli_logging

    parser = argparse.ArgumentParser(
        prog="python -m edge_scorer.simulate.architecture",
        description="Fit the sleep-architecture model on real hypnograms (in-bed cropped).")
    parser.add_argument("--fit", required=True, type=Path, metavar="DIR",
                        help="folder of hypnograms (*-Hypnogram.edf, else *.csv / *.xml)")
    parser.add_argument("-o", "--output", type=Path, default=DEFAULT_PARAMS,
                        help=f"parameter file to write (default {DEFAULT_PARAMS})")
    args = parser.parse_args(argv)
    setup_cli_logging()
    hyps = load_hypnograms(args.fit)
    params = fit_architecture(hyps, source=f"{len(hyps)} in-bed cropped hypnograms from "
                                            f"{args.fit.name}/")
    params.to_json(args.output)
    log.info("fitted %d nights -> %s", params.n_nights, args.output)
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
