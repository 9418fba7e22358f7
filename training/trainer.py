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

__all__ = ["BatchSource", "FitResult", "LOG_COLUMNS", "STEP_COLUMNS", "fit", "lr_at"]

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
        A :mod:`training.models` model (it has ``cfg``).
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
        return _run(model, train, val, loss_fn, t, out, device, amp, seed, meta or {}, resume,
                    quiet)
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


def _run(model, train, val, loss_fn, t, out, device, amp, seed, meta, resume, quiet) -> FitResult:
    ctx = dist.context()
    bs, workers = int(t["batch_size"]), int(t["workers"])
    sampler = dist.EpochShardSampler(train.n, bs, weights=train.weights, seed=seed)
    steps_per_epoch = sampler.batches_per_epoch
    torch.manual_seed(seed)
    gen = torch.Generator().manual_seed(seed)
    opt = torch.optim.AdamW(_param_groups(model, float(t["weight_decay"])), lr=float(t["lr"]))
    check = {"n_train": int(train.n), "batch_size": bs}
    epoch0, batch0, step, best, elapsed0 = 0, 0, 0, math.inf, 0.0
    log_path = out / "train_log.csv"
    if resume:
        st = _load_resume(out / "last.pt", model, opt, check)
        epoch0, batch0, step = st["next_epoch"], st["next_batch"], st["step"]
        best, elapsed0 = st["best"], st["elapsed_s"]
        torch.set_rng_state(st["torch_rng"])
        gen.set_state(st["gen_rng"])
        log.info("resuming %s at epoch %d, batch %d (step %d, best %.4f; %d process(es), "
                 "%s before)", out, epoch0 + 1, batch0, step, best, ctx.world,
                 st.get("world_size", 1))
    elif ctx.main and (out / "last.pt").exists():
        log.warning("%s already holds a run; its checkpoints and log are replaced (use "
                    "--resume to continue it instead)", out)
    if ctx.main:
        _start_logs(out, resume, step)
    _rank_seed(seed, step)
    net: nn.Module = model
    if ctx.enabled:
        from torch.nn.parallel import DistributedDataParallel

        net = DistributedDataParallel(
            model, device_ids=[device.index] if device.type == "cuda" else None)
    has_val = val is not None and val.n > 0
    if not has_val:
        log.warning("no validation items: best.pt is chosen by training loss")
    epochs, max_steps = int(t["epochs"]), int(t["max_steps"])
    budget_s = float(t["time_budget_min"]) * 60.0
    show = ctx.main and not quiet and sys.stderr.isatty()
    t_run = time.monotonic()
    result = FitResult(out, step, best, None)
    from tqdm.auto import tqdm

    for epoch in range(epoch0, epochs):
        if max_steps and step >= max_steps:
            result.stopped = "max_steps"
            break
        t_epoch = time.monotonic()
        first = batch0 if epoch == epoch0 else 0
        sampler.set_epoch(epoch, first)
        net.train()
        loss_sum, n_sum, done, last_i = 0.0, 0.0, 0, first
        stopped = None
        step_rows: list[dict] = []
        bar = tqdm(total=steps_per_epoch, initial=first, disable=not show, leave=False,
                   desc=f"epoch {epoch + 1}/{epochs}", file=sys.stderr)
        batches = iterate_batches(train.get, sampler, workers, pin_memory=device.type == "cuda")
        for i, (batch, real) in enumerate(batches, start=first):
            if max_steps and step >= max_steps:
                stopped = "max_steps"
                break
            if budget_s:  # every process stops at the same step
                over = float(time.monotonic() - t_run > budget_s)
                if dist.all_reduce_sum([over], device)[0] > 0:
                    stopped = "time budget"
                    break
            lr = lr_at(step, t, steps_per_epoch)
            for g in opt.param_groups:
                g["lr"] = lr
            batch = _to(batch, device)
            with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
                loss, logits, y = loss_fn(net, batch, True, gen)
            n_local = _scored(logits.detach(), y)[0] if real else 0
            if ctx.enabled:  # the global batch's mean loss, and this rank's share of it
                total, n = dist.all_reduce_sum([float(loss.detach()) * n_local, n_local],
                                               device)
                loss_value = total / n if n else float("nan")
                backward = loss * (n_local * ctx.world / n) if n else loss
            else:
                loss_value, n, backward = float(loss.detach()), n_local, loss
            if not math.isfinite(loss_value):
                raise FloatingPointError(f"training loss is {loss_value} at step {step}; lower "
                                         "train.lr or enable train.grad_clip")
            opt.zero_grad(set_to_none=True)
            backward.backward()
            if t["grad_clip"]:
                nn.utils.clip_grad_norm_(model.parameters(), float(t["grad_clip"]))
            opt.step()
            step += 1
            done += 1
            last_i = i + 1
            loss_sum += loss_value * n
            n_sum += n
            step_rows.append({"step": step, "epoch": epoch + 1,
                              "loss": round(loss_value, 6), "lr": f"{lr:.3e}"})
            bar.update(1)
            bar.set_postfix(loss=f"{loss_sum / max(n_sum, 1):.4f}", lr=f"{lr:.2e}")
        bar.close()
        if done == 0:  # stopped before training anything in this epoch
            result.stopped = stopped
            break
        train_loss = loss_sum / max(n_sum, 1)
        if has_val:
            val_loss, val_acc = _validate(model, val, loss_fn, bs, device,
                                          int(t["val_max_items"]), amp, gen, workers)
        else:
            val_loss, val_acc = float("nan"), float("nan")
        score = val_loss if has_val else train_loss
        is_best = bool(score < best)
        best = min(best, score) if math.isfinite(score) else best
        finished = stopped is None
        elapsed = elapsed0 + time.monotonic() - t_run
        row = {"epoch": epoch + 1, "step": step, "train_loss": round(train_loss, 6),
               "val_loss": round(val_loss, 6), "val_acc": round(val_acc, 6),
               "lr": f"{lr:.3e}", "epoch_s": round(time.monotonic() - t_epoch, 2),
               "elapsed_s": round(elapsed, 2), "best": int(is_best), "stopped": stopped or ""}
        if ctx.main:
            state = {
                "step": step, "next_epoch": epoch + 1 if finished else epoch,
                "next_batch": 0 if finished else last_i, "best": best, "elapsed_s": elapsed,
                "torch_rng": torch.get_rng_state(), "gen_rng": gen.get_state(),
                "world_size": ctx.world, **check,
            }
            ck_meta = {**meta, "train": {"step": step, "epoch": epoch + 1, "val_loss": val_loss,
                                         "val_acc": val_acc, "train_loss": train_loss}}
            _write_rows(out / "train_steps.csv", STEP_COLUMNS, step_rows)
            _write_rows(log_path, LOG_COLUMNS, [row])
            save_checkpoint(out / "last.pt", model, optimizer=opt, epoch=epoch, best=best,
                            meta=ck_meta, state=state)
            if is_best:
                save_checkpoint(out / "best.pt", model, epoch=epoch, best=best, meta=ck_meta,
                                state=state)
        result.history.append(row)
        log.info("epoch %d/%d step %d: train loss %.4f, val loss %.4f, val acc %.3f, lr %.2e, "
                 "%.1f s%s%s", epoch + 1, epochs, step, train_loss, val_loss, val_acc, lr,
                 row["epoch_s"], " (best)" if is_best else "",
                 f" - stopped: {stopped}" if stopped else "")
        if stopped:
            result.stopped = stopped
            break
    else:
        if epoch0 >= epochs:
            log.info("%s: all %d epochs are already trained; nothing to do", out, epochs)
    result.step, result.best = step, best
    if ctx.main and not (out / "best.pt").exists() and (out / "last.pt").exists():
        log.warning("no epoch had a finite score; best.pt is a copy of last.pt")
        shutil.copyfile(out / "last.pt", out / "best.pt")
    dist.barrier()  # the next step (features, export) reads what rank 0 wrote
    return result
