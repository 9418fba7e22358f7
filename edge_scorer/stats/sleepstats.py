"""Clinical sleep statistics of a hypnogram (TIB, SPT, TST, SE, SOL, WASO, REM latency, ...).

Clinical caveat: these are summary statistics of whatever hypnogram they are given. For an
automatic edge-scorer hypnogram they inherit every scoring error of the model; they are a
decision aid, not a diagnosis, and must be reviewed by a trained scorer before clinical use.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, fields
from typing import TYPE_CHECKING

import numpy as np

from edge_scorer.stages import Stage

if TYPE_CHECKING:
    from edge_scorer.stats.hypnogram import Hypnogram

__all__ = ["SleepStatistics", "sleep_statistics"]


@dataclass(frozen=True)
class SleepStatistics:
    """Summary sleep statistics; durations in minutes, ``*_pct`` in percent.

    See :func:`sleep_statistics` for the definitions. ``NaN`` marks a statistic that is
    undefined for this hypnogram (e.g. REM latency without REM sleep).
    """

    epoch_s: float
    n_epochs: int
    tib_min: float
    spt_min: float
    tst_min: float
    se_pct: float
    sme_pct: float
    sol_min: float
    sol_persistent_min: float
    waso_min: float
    rem_latency_min: float
    w_min: float
    n1_min: float
    n2_min: float
    n3_min: float
    rem_min: float
    nrem_min: float
    unscored_min: float
    n1_pct: float
    n2_pct: float
    n3_pct: float
    rem_pct: float
    nrem_pct: float
    n_awakenings: int
    sfi_per_h: float
    n_stage_shifts: int
    stage_shift_index_per_h: float

    def as_dict(self) -> dict[str, float | int]:
        """All statistics as a plain ``{field name: value}`` dict (NaN where undefined)."""
        return asdict(self)

    def __str__(self) -> str:
        lines = [f"Sleep statistics ({self.n_epochs} epochs of {self.epoch_s:g} s)"]
        for f in fields(self)[2:]:
            label, unit = _ROWS[f.name]
            value = getattr(self, f.name)
            text = "n/a" if isinstance(value, float) and math.isnan(value) else (
                f"{value:d}" if isinstance(value, int) else f"{value:.1f}")
            lines.append(f"  {label:<44s} {text:>8s} {unit}".rstrip())
        return "\n".join(lines)


_ROWS: dict[str, tuple[str, str]] = {
    "tib_min": ("TIB   time in bed", "min"),
    "spt_min": ("SPT   sleep period time", "min"),
    "tst_min": ("TST   total sleep time", "min"),
    "se_pct": ("SE    sleep efficiency (TST/TIB)", "%"),
    "sme_pct": ("SME   sleep maintenance efficiency (TST/SPT)", "%"),
    "sol_min": ("SOL   sleep onset latency", "min"),
    "sol_persistent_min": ("      latency to persistent sleep", "min"),
    "waso_min": ("WASO  wake after sleep onset", "min"),
    "rem_latency_min": ("      REM latency (from sleep onset)", "min"),
    "w_min": ("W     wake", "min"),
    "n1_min": ("N1", "min"),
    "n2_min": ("N2", "min"),
    "n3_min": ("N3", "min"),
    "rem_min": ("REM", "min"),
    "nrem_min": ("NREM  N1+N2+N3", "min"),
    "unscored_min": ("      unscored / movement", "min"),
    "n1_pct": ("N1    of TST", "%"),
    "n2_pct": ("N2    of TST", "%"),
    "n3_pct": ("N3    of TST", "%"),
    "rem_pct": ("REM   of TST", "%"),
    "nrem_pct": ("NREM  of TST", "%"),
    "n_awakenings": ("      awakenings (wake bouts in SPT)", ""),
    "sfi_per_h": ("SFI   sleep-to-wake transitions per h TST", "/h"),
    "n_stage_shifts": ("      stage shifts in SPT", ""),
    "stage_shift_index_per_h": ("      stage shifts per h TST", "/h"),
}


def _runs(mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Start indices and lengths of the runs of ``True`` in a boolean array."""
    padded = np.r_[False, mask, False].astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return edges[::2], edges[1::2] - edges[::2]


def sleep_statistics(
    hyp: Hypnogram, *, persistent_sleep_min: float = 5.0, min_awakening_s: float = 0.0
) -> SleepStatistics:
    """Compute the standard clinical sleep statistics of a hypnogram.

    The hypnogram is taken as the time in bed: its first epoch is lights-off and its last
    epoch lights-on (crop a full-day recording first, e.g. with
    :func:`edge_scorer.io.hypnogram_io.inbed_crop`). All durations are in minutes.

    Parameters
    ----------
    hyp : Hypnogram
        The scored night (at least one epoch).
    persistent_sleep_min : float
        Run length, in minutes of uninterrupted sleep (any of N1/N2/N3/REM), that defines
        persistent sleep for ``sol_persistent_min``. 5 min as YASA's ``SOL_5min``; insomnia
        trials often use 10 min ("latency to persistent sleep").
    min_awakening_s : float
        Only wake bouts at least this long count in ``n_awakenings``. Default 0: every bout of
        one or more consecutive W epochs within SPT counts (one 30-s epoch is an awakening).

    Returns
    -------
    SleepStatistics

    Notes
    -----
    Sleep = N1, N2, N3 or REM. Definitions (AASM, as in YASA 0.8 where they coincide):

    * TIB: number of epochs x epoch length (UNSCORED epochs included).
    * SPT: first to last sleep epoch, inclusive.
    * TST: sleep epochs (N1+N2+N3+REM); never includes UNSCORED epochs.
    * WASO: W epochs within SPT. SE = 100 TST/TIB, SME = 100 TST/SPT.
    * SOL: lights-off (first epoch) to the first sleep epoch.
    * ``sol_persistent_min``: lights-off to the first run of ``persistent_sleep_min`` of
      uninterrupted sleep (a W or UNSCORED epoch breaks a run); equals YASA ``SOL_5min``.
    * REM latency (AASM): sleep onset (first sleep epoch) to the first REM epoch.
      **YASA differs**: its ``Lat_REM`` is counted from lights-off, so ours equals
      ``Lat_REM - SOL`` of YASA.
    * Stage minutes cover the whole hypnogram; ``*_pct`` are percentages of TST.
    * ``n_awakenings``: bouts of >= 1 consecutive W epochs (and >= ``min_awakening_s``)
      inside SPT; the final awakening after the last sleep epoch is not counted.
    * ``sfi_per_h`` (YASA ``SFI``): direct sleep -> W transitions per hour of TST, the final
      awakening included; a sleep -> UNSCORED -> W sequence is not counted.
    * Stage shifts: changes of stage between consecutive *scored* epochs inside SPT (UNSCORED
      epochs are skipped), also per hour of TST.

    UNSCORED epochs ("Movement time", "?", artifact) count in TIB and, when they lie between
    sleep epochs, in SPT; they never count in TST, WASO, SOL or any stage, so SPT = TST + WASO +
    UNSCORED-in-SPT. YASA (>= 0.5) treats its "Art"/"Uns" epochs the same way.

    Undefined values are NaN: without sleep, SOL, WASO, SME, SFI, REM latency and the
    percentages; without REM, the REM latency.

    Clinical caveat: statistics of an automatic hypnogram inherit its scoring errors (a
    misplaced first N1 epoch moves SOL, SPT and WASO); review the hypnogram before reporting.

    Raises
    ------
    ValueError
        If the hypnogram has no epochs.
    """
    stages = np.asarray(hyp.stages)
    n = len(stages)
    if n == 0:
        raise ValueError("sleep statistics need at least one epoch; the hypnogram is empty")
    epoch_min = hyp.epoch_s / 60.0
    nan = math.nan
    is_sleep = np.isin(stages, [Stage.N1, Stage.N2, Stage.N3, Stage.REM])
    sleep_idx = np.flatnonzero(is_sleep)
    has_sleep = sleep_idx.size > 0

    def minutes(stage: Stage) -> float:
        return float(np.count_nonzero(stages == stage)) * epoch_min

    tib = n * epoch_min
    tst = float(sleep_idx.size) * epoch_min
    if has_sleep:
        first, last = int(sleep_idx[0]), int(sleep_idx[-1])
        spt_stages = stages[first:last + 1]
        spt = len(spt_stages) * epoch_min
        waso = float(np.count_nonzero(spt_stages == Stage.W)) * epoch_min
        sol = first * epoch_min
        rem_idx = np.flatnonzero(stages == Stage.REM)
        rem_latency = (int(rem_idx[0]) - first) * epoch_min if rem_idx.size else nan
        starts, lengths = _runs(spt_stages == Stage.W)
        n_awake = int(np.count_nonzero(lengths * hyp.epoch_s >= min_awakening_s - 1e-9))
        scored = spt_stages[spt_stages != Stage.UNSCORED]
        n_shifts = int(np.count_nonzero(np.diff(scored)))
        n_to_wake = int(np.count_nonzero(is_sleep[:-1] & (stages[1:] == Stage.W)))
        sfi = n_to_wake / (tst / 60.0)
        shift_index = n_shifts / (tst / 60.0)
        sme = 100.0 * tst / spt
    else:
        spt, waso, sol, rem_latency, sme, sfi, shift_index = 0.0, nan, nan, nan, nan, nan, nan
        n_awake = n_shifts = 0
    min_run = int(math.ceil(persistent_sleep_min / epoch_min - 1e-9))
    starts, lengths = _runs(is_sleep)
    persistent = starts[lengths >= max(min_run, 1)]
    sol_persistent = int(persistent[0]) * epoch_min if persistent.size else nan

    stage_min = {s: minutes(s) for s in (Stage.N1, Stage.N2, Stage.N3, Stage.REM)}
    nrem = stage_min[Stage.N1] + stage_min[Stage.N2] + stage_min[Stage.N3]

    def pct(value: float) -> float:
        return 100.0 * value / tst if tst > 0 else nan

    return SleepStatistics(
        epoch_s=float(hyp.epoch_s), n_epochs=n, tib_min=tib, spt_min=spt, tst_min=tst,
        se_pct=100.0 * tst / tib, sme_pct=sme, sol_min=sol, sol_persistent_min=sol_persistent,
        waso_min=waso, rem_latency_min=rem_latency, w_min=minutes(Stage.W),
        n1_min=stage_min[Stage.N1], n2_min=stage_min[Stage.N2], n3_min=stage_min[Stage.N3],
        rem_min=stage_min[Stage.REM], nrem_min=nrem, unscored_min=minutes(Stage.UNSCORED),
        n1_pct=pct(stage_min[Stage.N1]), n2_pct=pct(stage_min[Stage.N2]),
        n3_pct=pct(stage_min[Stage.N3]), rem_pct=pct(stage_min[Stage.REM]), nrem_pct=pct(nrem),
        n_awakenings=n_awake, sfi_per_h=sfi, n_stage_shifts=n_shifts,
        stage_shift_index_per_h=shift_index,
    )
