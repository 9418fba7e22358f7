"""Data-parallel training through PyTorch's own engine (``torch.distributed`` + DDP).

``torchrun --nproc-per-node N -m training intra ...`` (or ``edge-scorer train intra ... --nproc
N``, which launches it) starts N processes; each calls :func:`setup`, which reads torchrun's
environment (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``/``MASTER_PORT``) and joins
the process group: NCCL when the processes train on CUDA devices (one GPU per process,
``cuda:LOCAL_RANK``), gloo on the CPU. Without that environment (a plain ``edge-scorer train``)
:func:`setup` does nothing and every helper here acts as the single process it is.

The sampling rule (:class:`EpochShardSampler`) keeps multi-process training the same run as
single-process training at the same *global* batch size: every process draws the same order of
the training items from ``(seed, epoch)`` (a fresh shuffle each training epoch), cuts it into
global batches of ``train.batch_size`` items, and takes its share of each (``np.array_split``
of the batch into ``WORLD_SIZE`` parts). The trainer weights each process's loss by its share
of the batch's scored targets, so the averaged DDP gradient is the gradient of the global
batch's mean loss. The resume state counts global batches, so a run resumes with any number of
processes. Rank 0 alone writes checkpoints, logs and metrics; the other ranks log warnings only.

A multi-node run needs the run folder and the cache on a filesystem every node sees.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import timedelta

import numpy as np

from edge_scorer._log import get_logger

log = get_logger("training.distributed")

__all__ = ["DistContext", "EpochShardSampler", "all_reduce_sum", "barrier", "context",
           "epoch_order", "is_main", "main_first", "setup", "shutdown"]

#: Process-group timeout (minutes): rank 0 may build the epoch cache while the others wait.
TIMEOUT_ENV = "EDGE_SCORER_DIST_TIMEOUT_MIN"
DEFAULT_TIMEOUT_MIN = 180.0


@dataclass(frozen=True)
class DistContext:
    """Where this process stands: ``rank`` of ``world`` processes, ``local_rank`` on its node,
    ``backend`` (``nccl``/``gloo``, None for a single process)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0
    backend: str | None = None

    @property
    def enabled(self) -> bool:
        """More than one process."""
        return self.world > 1

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes files."""
        return self.rank == 0


_CTX = DistContext()


def _env_int(name: str, default: int) -> int:
    value = os.environ.get(name)
    if value is None or value == "":
        return default
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"environment variable {name}={value!r} is not an integer; it is set "
                         "by torchrun, do not set it by hand") from None


def setup(device: str = "auto") -> DistContext:
    """Join torchrun's process group once (no-op without ``WORLD_SIZE`` > 1).

    Parameters
    ----------
    device : str
        ``train.device``: ``auto`` (CUDA when present), ``cuda``, ``cpu``. CUDA gives NCCL and
        one GPU per process (``cuda:LOCAL_RANK``), the CPU gloo.

    Returns
    -------
    DistContext

    Raises
    ------
    RuntimeError
        More processes per node than GPUs, or torch without distributed support.
    """
    global _CTX
    world = _env_int("WORLD_SIZE", 1)
    if world <= 1 or _CTX.enabled:
        return _CTX
    import torch
    import torch.distributed as dist

    if not dist.is_available():
        raise RuntimeError("this PyTorch build has no torch.distributed; install the "
                           "official wheels (pip install -e '.[train]')")
    rank, local = _env_int("RANK", 0), _env_int("LOCAL_RANK", 0)
    cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if cuda:
        n_gpu = torch.cuda.device_count()
        if local >= n_gpu:
            raise RuntimeError(f"process {local} on this node has no GPU of its own ({n_gpu} "
                               "visible); run at most one process per GPU "
                               "(--nproc-per-node <= number of GPUs)")
        torch.cuda.set_device(local)
    backend = "nccl" if cuda else "gloo"
    minutes = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_MIN))
    if not dist.is_initialized():
        kwargs = {"device_id": torch.device("cuda", local)} if cuda else {}
        dist.init_process_group(backend, timeout=timedelta(minutes=minutes), **kwargs)
    _CTX = DistContext(dist.get_rank(), dist.get_world_size(), local, backend)
    if rank != _CTX.rank:
        raise RuntimeError(f"RANK={rank} but the process group says {_CTX.rank}")
    if not _CTX.main:  # rank 0 alone logs progress; the others say only what goes wrong
        import logging

        logging.getLogger("edge_scorer").setLevel(logging.WARNING)
    log.info("data-parallel training: %d processes (%s), this is rank %d", _CTX.world, backend,
             _CTX.rank)
    return _CTX


def shutdown() -> None:
    """Leave the process group (end of a torchrun process)."""
    global _CTX
    if _CTX.enabled:
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()
    _CTX = DistContext()


def context() -> DistContext:
    """The current :class:`DistContext` (a single process until :func:`setup` joined)."""
    return _CTX


def is_main() -> bool:
    """Whether this process writes files (rank 0, or the only process)."""
    return _CTX.main


def barrier() -> None:
    """Wait for every process (no-op for a single process)."""
    if _CTX.enabled:
        import torch.distributed as dist

        if _CTX.backend == "nccl":
            import torch

            dist.barrier(device_ids=[torch.cuda.current_device()])
        else:
            dist.barrier()


@contextmanager
def main_first() -> Iterator[None]:
    """Run the body on rank 0 first, then on the other ranks (building a cache or features
    once: the others then find it up to date and reuse it)."""
    if not _CTX.main:
        barrier()
    try:
        yield
    finally:
        if _CTX.main:
            barrier()


def all_reduce_sum(values, device) -> np.ndarray:
    """Sum a few float64 numbers over every process (identity for a single process)."""
    arr = np.asarray(values, dtype=np.float64)
    if not _CTX.enabled:
        return arr
    import torch
    import torch.distributed as dist

    t = torch.from_numpy(arr.copy()).to(device)
    dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t.cpu().numpy()


def epoch_order(n: int, weights: np.ndarray | None, seed: int, epoch: int) -> np.ndarray:
    """The global order of ``n`` items in training epoch ``epoch``: a permutation, or with
    ``weights`` ``n`` draws with replacement in proportion to them (balanced sampling)."""
    rng = np.random.default_rng([int(seed), int(epoch)])
    if weights is None:
        return rng.permutation(n)
    w = np.asarray(weights, dtype=np.float64)
    return rng.choice(n, size=n, replace=True, p=w / w.sum())


class EpochShardSampler:
    """This process's share of every global batch of a training epoch.

    Iterating yields ``(indices, real)`` per global batch from ``start``: ``indices`` the item
    indices of this rank's part, ``real`` False when the global batch has fewer items than
    processes and this rank got none (it then gets the batch's first item, whose loss the
    trainer weights by zero, so every rank runs the same number of steps).

    Parameters
    ----------
    n : int
        Number of items.
    batch_size : int
        Global batch size (``train.batch_size``), the same for any number of processes.
    weights : ndarray, optional
        Sampling weights (see :func:`epoch_order`).
    seed : int
        Seed of the order.
    rank, world : int
        This process and the number of processes (default: :func:`context`).
    """

    def __init__(self, n: int, batch_size: int, *, weights: np.ndarray | None = None,
                 seed: int = 0, rank: int | None = None, world: int | None = None) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be at least 1, got {batch_size}")
        self.n, self.batch_size, self.weights, self.seed = int(n), int(batch_size), weights, seed
        self.rank = _CTX.rank if rank is None else int(rank)
        self.world = _CTX.world if world is None else int(world)
        if not 0 <= self.rank < self.world:
            raise ValueError(f"rank {self.rank} is not in 0..{self.world - 1}")
        self.epoch, self.start = 0, 0

    @property
    def batches_per_epoch(self) -> int:
        """Global batches (optimizer steps) per training epoch."""
        return -(-self.n // self.batch_size)

    def set_epoch(self, epoch: int, start: int = 0) -> None:
        """Use the order of training epoch ``epoch``, from global batch ``start``."""
        self.epoch, self.start = int(epoch), int(start)

    def global_batches(self) -> list[np.ndarray]:
        """Every global batch of the current epoch (the same on every rank)."""
        order = epoch_order(self.n, self.weights, self.seed, self.epoch)
        return [order[i:i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def shard(self, batch: np.ndarray) -> tuple[np.ndarray, bool]:
        """This rank's part of one global batch (see the class docstring)."""
        if self.world == 1:
            return batch, True
        part = np.array_split(batch, self.world)[self.rank]
        return (part, True) if len(part) else (batch[:1], False)

    def __len__(self) -> int:
        return max(0, self.batches_per_epoch - self.start)

    def __iter__(self) -> Iterator[tuple[np.ndarray, bool]]:
        for batch in self.global_batches()[self.start:]:
            yield self.shard(batch)
