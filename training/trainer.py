"""The one training loop shared by every task (intra ViT, inter transformer, STQS).

A task (:mod:`training.tasks`) hands :func:`fit` a model, its training and validation items as
:class:`BatchSource` objects (``get(indices) -> dict of tensors``), and a loss function
``loss_fn(model, batch, train, generator) -> (loss, logits, targets)``. The loop does the rest:

* AdamW (no weight decay on biases, norms, position embeddings and the CLS token), an optional
  linear warm-up and a cosine or step learning-rate schedule (computed from the step count, so a
  resumed run follows the same curve);
* epochs of shuffled items (or weighted sampling with replacement for ``balanced`` sampling),
  the order drawn from ``(seed, epoch)``, the next batch prepared in a background thread or in
  ``train.workers`` DataLoader worker processes (:mod:`training.loader`);
* data-parallel training under ``torchrun`` (:mod:`training.distributed`): DDP over the
  processes, each taking its share of every global batch, losses weighted so the run follows
  the single-process curve at the same global batch size, validation reduced over the
  processes, rank 0 alone writing checkpoints and logs;
* validation loss and accuracy each epoch; ``best.pt`` kept by validation loss (training loss
  when there is no validation set), ``last.pt`` written every epoch and when a step limit or the
  time budget stops the run mid-epoch;
* ``--resume`` from ``last.pt``: weights, optimizer, step, position in the epoch and RNG states,
  so a resumed run continues exactly where it stopped (with any number of processes: the
  position counts global batches);
* determinism: seeded torch/numpy generators and ``torch.use_deterministic_algorithms(True)``;
* ``max_steps`` / ``time_budget_min`` for tests and CPU users, ``train_log.csv`` with one row per
  epoch, ``train_steps.csv`` with the loss and learning rate of every optimizer step, tqdm
  progress bars (only on a terminal, never with ``quiet``).
"""

from __future__ import annotations

import csv
import math
import shutil
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from torch import nn

from edge_scorer._log import get_logger
from training import distributed as dist
from training.checkpoint import save_checkpoint
from training.loader import iterate_batches

log = get_logger("training.trainer")

__all__ = ["BatchSource", "FitResult", "LOG_COLUMNS", "RunConfig", "STEP_COLUMNS", "fit", "lr_at"]

LOG_COLUMNS = ("epoch", "step", "train_loss", "val_loss", "val_acc", "lr", "epoch_s",
               "elapsed_s", "best", "stopped")
STEP_COLUMNS = ("step", "epoch", "loss", "lr")
LossFn = Callable[[nn.Module, dict, bool, torch.Generator], tuple[torch.Tensor, torch.Tensor,
                                                                   torch.Tensor]]


@dataclass
class BatchSource:
    """The items of one split part.

    Attributes
    ----------
    n : int
        Number of items (epochs for intra, windows for inter/STQS).
    get : callable
        ``get(indices: ndarray) -> dict[str, torch.Tensor]`` builds the batch of those items
        (on the CPU; the trainer moves it to the device).
    weights : ndarray, optional
        Sampling weight per item; given, epochs draw ``n`` items with replacement in
        proportion to it (balanced sampling / oversampling).
    """

    n: int
    get: Callable[[np.ndarray], dict[str, torch.Tensor]]
    weights: np.ndarray | None = None


@dataclass
class FitResult:
    """What :func:`fit` did: output folder, steps, best validation loss, why it stopped."""

    out_dir: Path
    step: int
    best: float
    stopped: str | None
    history: list[dict] = field(default_factory=list)


def lr_at(step: int, train: dict, steps_per_epoch: int) -> float:
    """Learning rate of optimizer step ``step`` (0-based) under the ``[train]`` settings."""
    base, warm = float(train["lr"]), int(train["warmup_steps"])
    total = max(1, int(train["epochs"]) * steps_per_epoch)
    if warm > 0 and step < warm:
        return base * (step + 1) / warm
    if train["lr_schedule"] == "cosine":
        progress = min(1.0, (step - warm) / max(1, total - warm))
        return base * 0.5 * (1.0 + math.cos(math.pi * progress))
    if train["lr_schedule"] == "step":
        return base * float(train["gamma"]) ** (step // max(1, train["step_epochs"]
                                                            * steps_per_epoch))
    return base


def _param_groups(model: nn.Module, weight_decay: float) -> list[dict]:
    decay, no_decay = [], []
    for name, p in model.named_parameters():
        if not p.requires_grad:
            continue
        flat = name.rsplit(".", 1)[-1]
        (no_decay if p.ndim <= 1 or flat in ("pos_embed", "cls_token") else decay).append(p)
    return [{"params": decay, "weight_decay": weight_decay},
            {"params": no_decay, "weight_decay": 0.0}]


def _device(name: str) -> torch.device:
    ctx = dist.context()
    if name == "auto":
        name = "cuda" if torch.cuda.is_available() else "cpu"
    device = torch.device(name)
    if ctx.enabled and device.type == "cuda":  # one GPU per process
        return torch.device("cuda", ctx.local_rank)
    return device


def _to(batch: dict, device: torch.device) -> dict:
    return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v
            for k, v in batch.items()}


def _scored(logits: torch.Tensor, y: torch.Tensor) -> tuple[int, int]:
    """(number of scored targets, number predicted right)."""
    mask = y >= 0
    pred = logits.argmax(-1)
    return int(mask.sum()), int(((pred == y) & mask).sum())


@torch.no_grad()
def _validate(model: nn.Module, source: BatchSource, loss_fn: LossFn, batch_size: int,
              device: torch.device, max_items: int, amp: bool, generator: torch.Generator,
              workers: int = 0) -> tuple[float, float]:
    """Validation loss and accuracy; each process scores every ``world``-th item and the sums
    are reduced over the processes."""
    ctx = dist.context()
    items = np.arange(source.n)
    if max_items and source.n > max_items:
        items = np.unique(np.linspace(0, source.n - 1, max_items).round().astype(np.int64))
    items = items[ctx.rank::ctx.world]
    model.eval()
    total, n_all, right = 0.0, 0, 0
    batches = [(items[i:i + batch_size], True) for i in range(0, len(items), batch_size)]
    for batch, _ in iterate_batches(source.get, batches, workers,
                                    pin_memory=device.type == "cuda"):
        batch = _to(batch, device)
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            loss, logits, y = loss_fn(model, batch, False, generator)
        n, r = _scored(logits, y)
        total += float(loss) * n
        n_all += n
        right += r
    total, n_all, right = dist.all_reduce_sum([total, n_all, right], device)
    return (total / n_all, right / n_all) if n_all else (float("nan"), float("nan"))


def _load_resume(path: Path, model: nn.Module, opt: torch.optim.Optimizer, check: dict) -> dict:
    if not path.is_file():
        raise FileNotFoundError(f"nothing to resume: {path} does not exist; run without "
                                "--resume (or give the --out folder of the run to continue)")
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    if ckpt["cfg"] != model.cfg:
        raise ValueError(f"{path} holds a different model ({ckpt['cfg'].get('preset')}, "
                         f"cfg differs from the config's); use another --out or drop --resume")
    state = ckpt.get("state") or {}
    for key, value in check.items():
        if state.get(key) != value:
            raise ValueError(f"cannot resume {path}: {key} was {state.get(key)} and is now "
                             f"{value}; resume with the same data and batch size")
    model.load_state_dict(ckpt["state_dict"])
    if ckpt.get("optimizer") is not None:
        opt.load_state_dict(ckpt["optimizer"])
    return state


def fit(
    model: nn.Module,
    train: BatchSource,
    val: BatchSource | None,
    loss_fn: LossFn,
    settings: dict,
    out_dir: str | Path,
    *,
    seed: int = 0,
    meta: dict | None = None,
    resume: bool = False,
    quiet: bool = False,
) -> FitResult:
    """Train ``model`` and write ``best.pt``, ``last.pt`` and ``train_log.csv`` into ``out_dir``.

    Parameters
    ----------
    model : torch.nn.Module
        A :mod:`edge_scorer.inference.nets` model (it has ``cfg``).
    train, val : BatchSource
        Training items; validation items (None or empty: best by training loss).
    loss_fn : callable
        ``loss_fn(model, batch, train, generator) -> (loss, logits, targets)``; ``loss`` is the
        mean over scored targets, ``targets`` hold -1 where unscored.
    settings : dict
        The ``[train]`` section of the configuration (:mod:`training.config`).
    out_dir : path-like
        Run folder.
    seed : int
        Seed of the sampling order, augmentation and dropout.
    meta : dict, optional
        Provenance stored in every checkpoint (:func:`training.checkpoint.make_meta`).
    resume : bool
        Continue from ``out_dir/last.pt``.
    quiet : bool
        No progress bars.

    Returns
    -------
    FitResult
    """
    t = settings
    if train.n < 1:
        raise ValueError("no training items: the training split holds no scored epoch; check "
                         "data.nights and the split")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    device = _device(t["device"])
    amp = bool(t["amp"]) and device.type == "cuda"
    model.to(device)
    prev_threads, prev_det = torch.get_num_threads(), torch.are_deterministic_algorithms_enabled()
    if t["threads"]:
        torch.set_num_threads(int(t["threads"]))
    if t["deterministic"]:
        torch.use_deterministic_algorithms(True, warn_only=device.type == "cuda")
    try:
        return _run(RunConfig(model=model, train=train, val=val, loss_fn=loss_fn, settings=t,
                              out=out, device=device, amp=amp, seed=seed, meta=meta or {},
                              resume=resume, quiet=quiet))
    finally:
        torch.set_num_threads(prev_threads)
        torch.use_deterministic_algorithms(prev_det)


def _rank_seed(seed: int, step: int) -> None:
    """Give ranks > 0 their own torch RNG stream (dropout, drop path); rank 0 keeps the run's."""
    ctx = dist.context()
    if ctx.rank > 0:
        state = np.random.SeedSequence([int(seed), ctx.rank, int(step)]).generate_state(1)
        torch.manual_seed(int(state[0]))


def _write_rows(path: Path, columns: tuple[str, ...], rows: list[dict]) -> None:
    with open(path, "a", newline="") as fh:
        w = csv.writer(fh)
        for row in rows:
            w.writerow([row[c] for c in columns])


def _start_logs(out: Path, resume: bool, step: int) -> None:
    """Fresh run: new log files. Resume: drop the rows written after the checkpoint's step (a
    process killed between writing them and the checkpoint)."""
    logs = ((out / "train_log.csv", LOG_COLUMNS), (out / "train_steps.csv", STEP_COLUMNS))
    if not resume:
        for name in ("best.pt", "last.pt"):
            (out / name).unlink(missing_ok=True)
    for path, columns in logs:
        kept: list[dict] = []
        if resume and path.is_file():
            with open(path, newline="") as fh:
                kept = [r for r in csv.DictReader(fh) if int(r["step"]) <= step]
        with open(path, "w", newline="") as fh:
            csv.writer(fh).writerow(columns)
        _write_rows(path, columns, kept)


@dataclass
class RunConfig:
    """Everything one training run needs; :func:`fit` builds it (see its parameters).

    Attributes
    ----------
    model : torch.nn.Module
        The model, already on ``device``.
    train, val : BatchSource
        Training items; validation items (None or empty: best by training loss).
    loss_fn : callable
        ``loss_fn(model, batch, train, generator) -> (loss, logits, targets)``.
    settings : dict
        The ``[train]`` section of the configuration.
    out : Path
        Run folder (exists).
    device : torch.device
        Where the model and the batches go.
    amp : bool
        bfloat16 autocast (CUDA only).
    seed : int
        Seed of the sampling order, augmentation and dropout.
    meta : dict
        Provenance stored in every checkpoint.
    resume : bool
        Continue from ``out/last.pt``.
    quiet : bool
        No progress bars.
    """

    model: nn.Module
    train: BatchSource
    val: BatchSource | None
    loss_fn: LossFn
    settings: dict
    out: Path
    device: torch.device
    amp: bool
    seed: int
    meta: dict
    resume: bool
    quiet: bool

    @property
    def batch_size(self) -> int:
        """Global batch size (items per optimizer step over all processes)."""
        return int(self.settings["batch_size"])

    @property
    def workers(self) -> int:
        """DataLoader worker processes (0: a background thread)."""
        return int(self.settings["workers"])

    @property
    def epochs(self) -> int:
        """Number of epochs of the run."""
        return int(self.settings["epochs"])

    @property
    def max_steps(self) -> int:
        """Optimizer steps after which the run stops (0: no limit)."""
        return int(self.settings["max_steps"])

    @property
    def budget_s(self) -> float:
        """Seconds after which the run stops (0: no limit)."""
        return float(self.settings["time_budget_min"]) * 60.0

    @property
    def has_val(self) -> bool:
        """Whether there are validation items."""
        return self.val is not None and self.val.n > 0


@dataclass
class _RunState:
    """What changes while a run goes: optimizer, generators, position, best score, clock."""

    sampler: dist.EpochShardSampler
    opt: torch.optim.Optimizer
    gen: torch.Generator
    net: nn.Module
    check: dict
    epoch0: int = 0
    batch0: int = 0
    step: int = 0
    best: float = math.inf
    elapsed0: float = 0.0
    t_run: float = 0.0

    @property
    def steps_per_epoch(self) -> int:
        """Optimizer steps (global batches) of one epoch."""
        return self.sampler.batches_per_epoch


@dataclass
class _EpochStats:
    """What one epoch of training did."""

    last_i: int
    done: int = 0
    loss_sum: float = 0.0
    n_sum: float = 0.0
    lr: float = math.nan
    stopped: str | None = None
    step_rows: list[dict] = field(default_factory=list)

    @property
    def train_loss(self) -> float:
        """Mean training loss over the scored targets of the epoch."""
        return self.loss_sum / max(self.n_sum, 1)


def _run(cfg: RunConfig) -> FitResult:
    """The training loop of :func:`fit`: set up (or resume), then epochs of training, each
    followed by validation, the logs and the checkpoints, until the last epoch, ``max_steps``
    or the time budget."""
    st = _set_up(cfg)
    show = dist.context().main and not cfg.quiet and sys.stderr.isatty()
    result = FitResult(cfg.out, st.step, st.best, None)
    for epoch in range(st.epoch0, cfg.epochs):
        if cfg.max_steps and st.step >= cfg.max_steps:
            result.stopped = "max_steps"
            break
        t_epoch = time.monotonic()
        ep = _train_epoch(cfg, st, epoch, st.batch0 if epoch == st.epoch0 else 0, show)
        if ep.done == 0:  # stopped before training anything in this epoch
            result.stopped = ep.stopped
            break
        result.history.append(_end_epoch(cfg, st, epoch, ep, t_epoch))
        if ep.stopped:
            result.stopped = ep.stopped
            break
    else:
        if st.epoch0 >= cfg.epochs:
            log.info("%s: all %d epochs are already trained; nothing to do", cfg.out,
                     cfg.epochs)
    result.step, result.best = st.step, st.best
    _finish(cfg)
    return result


def _set_up(cfg: RunConfig) -> _RunState:
    """Seeds, sampler, optimizer, the resumed state (or fresh logs), DDP; starts the clock."""
    ctx = dist.context()
    sampler = dist.EpochShardSampler(cfg.train.n, cfg.batch_size, weights=cfg.train.weights,
                                     seed=cfg.seed)
    torch.manual_seed(cfg.seed)
    gen = torch.Generator().manual_seed(cfg.seed)
    opt = torch.optim.AdamW(_param_groups(cfg.model, float(cfg.settings["weight_decay"])),
                            lr=float(cfg.settings["lr"]))
    st = _RunState(sampler=sampler, opt=opt, gen=gen, net=cfg.model,
                   check={"n_train": int(cfg.train.n), "batch_size": cfg.batch_size})
    if cfg.resume:
        _resume(cfg, st)
    elif ctx.main and (cfg.out / "last.pt").exists():
        log.warning("%s already holds a run; its checkpoints and log are replaced (use "
                    "--resume to continue it instead)", cfg.out)
    if ctx.main:
        _start_logs(cfg.out, cfg.resume, st.step)
    _rank_seed(cfg.seed, st.step)
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        st.net = DistributedDataParallel(
            cfg.model, device_ids=[cfg.device.index] if cfg.device.type == "cuda" else None)
    if not cfg.has_val:
        log.warning("no validation items: best.pt is chosen by training loss")
    st.t_run = time.monotonic()
    return st


def _resume(cfg: RunConfig, st: _RunState) -> None:
    """Load ``last.pt`` into the model and optimizer; restore position, best, clock and RNGs."""
    saved = _load_resume(cfg.out / "last.pt", cfg.model, st.opt, st.check)
    st.epoch0, st.batch0, st.step = saved["next_epoch"], saved["next_batch"], saved["step"]
    st.best, st.elapsed0 = saved["best"], saved["elapsed_s"]
    torch.set_rng_state(saved["torch_rng"])
    st.gen.set_state(saved["gen_rng"])
    log.info("resuming %s at epoch %d, batch %d (step %d, best %.4f; %d process(es), "
             "%s before)", cfg.out, st.epoch0 + 1, st.batch0, st.step, st.best,
             dist.context().world, saved.get("world_size", 1))


def _stop_reason(cfg: RunConfig, st: _RunState) -> str | None:
    """``"max_steps"`` or ``"time budget"`` when the run must stop before the next step."""
    if cfg.max_steps and st.step >= cfg.max_steps:
        return "max_steps"
    if cfg.budget_s:  # every process stops at the same step
        over = float(time.monotonic() - st.t_run > cfg.budget_s)
        if dist.all_reduce_sum([over], cfg.device)[0] > 0:
            return "time budget"
    return None


def _train_epoch(
    cfg: RunConfig, st: _RunState, epoch: int, first: int, show: bool
) -> _EpochStats:
    """Optimizer steps over the epoch's batches from batch ``first`` (after a resume mid-epoch)
    until its end, ``max_steps`` or the time budget."""
    from tqdm.auto import tqdm

    st.sampler.set_epoch(epoch, first)
    st.net.train()
    ep = _EpochStats(last_i=first)
    bar = tqdm(total=st.steps_per_epoch, initial=first, disable=not show, leave=False,
               desc=f"epoch {epoch + 1}/{cfg.epochs}", file=sys.stderr)
    batches = iterate_batches(cfg.train.get, st.sampler, cfg.workers,
                              pin_memory=cfg.device.type == "cuda")
    for i, (batch, real) in enumerate(batches, start=first):
        ep.stopped = _stop_reason(cfg, st)
        if ep.stopped:
            break
        lr = lr_at(st.step, cfg.settings, st.steps_per_epoch)
        loss_value, n = _train_step(cfg, st, batch, real, lr)
        st.step += 1
        ep.done += 1
        ep.last_i = i + 1
        ep.loss_sum += loss_value * n
        ep.n_sum += n
        ep.lr = lr
        ep.step_rows.append({"step": st.step, "epoch": epoch + 1,
                             "loss": round(loss_value, 6), "lr": f"{lr:.3e}"})
        bar.update(1)
        bar.set_postfix(loss=f"{ep.loss_sum / max(ep.n_sum, 1):.4f}", lr=f"{lr:.2e}")
    bar.close()
    return ep


def _train_step(
    cfg: RunConfig, st: _RunState, batch: dict, real: bool, lr: float
) -> tuple[float, float]:
    """One optimizer step at learning rate ``lr``.

    Returns
    -------
    loss : float
        Mean loss of the global batch (over every process).
    n : float
        Scored targets of the global batch (0 for a padding batch, ``real`` False).
    """
    ctx = dist.context()
    for g in st.opt.param_groups:
        g["lr"] = lr
    batch = _to(batch, cfg.device)
    with torch.autocast(cfg.device.type, dtype=torch.bfloat16, enabled=cfg.amp):
        loss, logits, y = cfg.loss_fn(st.net, batch, True, st.gen)
    n_local = _scored(logits.detach(), y)[0] if real else 0
    if ctx.enabled:  # the global batch's mean loss, and this rank's share of it
        total, n = dist.all_reduce_sum([float(loss.detach()) * n_local, n_local], cfg.device)
        loss_value = total / n if n else float("nan")
        backward = loss * (n_local * ctx.world / n) if n else loss
    else:
        loss_value, n, backward = float(loss.detach()), n_local, loss
    if not math.isfinite(loss_value):
        raise FloatingPointError(f"training loss is {loss_value} at step {st.step}; lower "
                                 "train.lr or enable train.grad_clip")
    st.opt.zero_grad(set_to_none=True)
    backward.backward()
    if cfg.settings["grad_clip"]:
        nn.utils.clip_grad_norm_(cfg.model.parameters(), float(cfg.settings["grad_clip"]))
    st.opt.step()
    return loss_value, n


def _end_epoch(
    cfg: RunConfig, st: _RunState, epoch: int, ep: _EpochStats, t_epoch: float
) -> dict:
    """Validate, update the best score, write the logs and checkpoints (rank 0) and log the
    epoch; returns its ``train_log.csv`` row."""
    train_loss = ep.train_loss
    val_loss, val_acc = float("nan"), float("nan")
    if cfg.val is not None and cfg.has_val:
        val_loss, val_acc = _validate(cfg.model, cfg.val, cfg.loss_fn, cfg.batch_size,
                                      cfg.device, int(cfg.settings["val_max_items"]), cfg.amp,
                                      st.gen, cfg.workers)
    score = val_loss if cfg.has_val else train_loss
    is_best = bool(score < st.best)
    st.best = min(st.best, score) if math.isfinite(score) else st.best
    elapsed = st.elapsed0 + time.monotonic() - st.t_run
    row = {"epoch": epoch + 1, "step": st.step, "train_loss": round(train_loss, 6),
           "val_loss": round(val_loss, 6), "val_acc": round(val_acc, 6),
           "lr": f"{ep.lr:.3e}", "epoch_s": round(time.monotonic() - t_epoch, 2),
           "elapsed_s": round(elapsed, 2), "best": int(is_best), "stopped": ep.stopped or ""}
    if dist.context().main:
        scores = {"val_loss": val_loss, "val_acc": val_acc, "train_loss": train_loss}
        _save_epoch(cfg, st, epoch, ep, row, scores, elapsed, is_best)
    log.info("epoch %d/%d step %d: train loss %.4f, val loss %.4f, val acc %.3f, lr %.2e, "
             "%.1f s%s%s", epoch + 1, cfg.epochs, st.step, train_loss, val_loss, val_acc,
             ep.lr, row["epoch_s"], " (best)" if is_best else "",
             f" - stopped: {ep.stopped}" if ep.stopped else "")
    return row


def _save_epoch(
    cfg: RunConfig,
    st: _RunState,
    epoch: int,
    ep: _EpochStats,
    row: dict,
    scores: dict,
    elapsed: float,
    is_best: bool,
) -> None:
    """Append the epoch's step rows and log row; write ``last.pt`` (and ``best.pt``) with the
    resume state (the next epoch, or the next batch of a run stopped mid-epoch)."""
    finished = ep.stopped is None
    state = {
        "step": st.step, "next_epoch": epoch + 1 if finished else epoch,
        "next_batch": 0 if finished else ep.last_i, "best": st.best, "elapsed_s": elapsed,
        "torch_rng": torch.get_rng_state(), "gen_rng": st.gen.get_state(),
        "world_size": dist.context().world, **st.check,
    }
    ck_meta = {**cfg.meta, "train": {"step": st.step, "epoch": epoch + 1, **scores}}
    _write_rows(cfg.out / "train_steps.csv", STEP_COLUMNS, ep.step_rows)
    _write_rows(cfg.out / "train_log.csv", LOG_COLUMNS, [row])
    save_checkpoint(cfg.out / "last.pt", cfg.model, optimizer=st.opt, epoch=epoch, best=st.best,
                    meta=ck_meta, state=state)
    if is_best:
        save_checkpoint(cfg.out / "best.pt", cfg.model, epoch=epoch, best=st.best, meta=ck_meta,
                        state=state)


def _finish(cfg: RunConfig) -> None:
    """Make sure ``best.pt`` exists (rank 0) and wait for every process."""
    out = cfg.out
    if dist.context().main and not (out / "best.pt").exists() and (out / "last.pt").exists():
        log.warning("no epoch had a finite score; best.pt is a copy of last.pt")
        shutil.copyfile(out / "last.pt", out / "best.pt")
    dist.barrier()  # the next step (features, export) reads what rank 0 wrote
