"""Batches for the training loop: prepared in a background thread or in DataLoader workers.

``train.workers = 0`` prepares the next batch in one background thread of the training process
(numpy releases the GIL for most of the reading and rendering). ``train.workers = N`` hands the
batches to a :class:`torch.utils.data.DataLoader` with N worker processes: each worker calls the
task's ``get(indices)`` (reading the memory-mapped cache and, for a signal cache, rendering the
epochs through the one renderer, :mod:`training.signal_cache`) while the training process
computes. Workers are forked, so they share the opened cache without copying it.
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np

__all__ = ["iterate_batches"]

Shard = tuple[np.ndarray, bool]


def _prefetch(get: Callable, shards: list[Shard]) -> Iterator[tuple[dict, bool]]:
    """Yield ``(get(indices), real)``, preparing the next batch in a thread."""
    if not shards:
        return
    with ThreadPoolExecutor(max_workers=1) as pool:
        fut = pool.submit(get, shards[0][0])
        for i in range(len(shards)):
            batch = fut.result()
            if i + 1 < len(shards):
                fut = pool.submit(get, shards[i + 1][0])
            yield batch, shards[i][1]


class _BatchDataset:
    """A map-style dataset whose keys are whole batches: ``(indices, real)`` -> batch."""

    def __init__(self, get: Callable[[np.ndarray], dict]) -> None:
        self.get = get

    def __getitem__(self, key: Shard) -> tuple[dict, bool]:
        indices, real = key
        return self.get(np.asarray(indices)), bool(real)


def _keep(item):
    """The DataLoader's collate function: the batch is already made."""
    return item


def _worker_init(_: int) -> None:
    import torch

    torch.set_num_threads(1)  # workers read and render with numpy; torch threads would compete


def iterate_batches(get: Callable[[np.ndarray], dict], shards: Iterable[Shard], workers: int,
                    *, pin_memory: bool = False) -> Iterator[tuple[dict, bool]]:
    """The batches of ``shards`` in order, as ``(batch, real)``.

    Parameters
    ----------
    get : callable
        ``get(indices) -> dict of tensors`` (a :class:`training.trainer.BatchSource`'s).
    shards : iterable of (ndarray, bool)
        Item indices of each batch and whether it is a real batch (see
        :class:`training.distributed.EpochShardSampler`).
    workers : int
        0: a background thread; N > 0: N DataLoader worker processes.
    pin_memory : bool
        Page-locked batches (faster copies to a CUDA device).

    Raises
    ------
    ValueError
        Negative ``workers``.
    RuntimeError
        Workers asked for on a platform without ``fork``.
    """
    shards = list(shards)
    if workers < 0:
        raise ValueError(f"train.workers must be 0 or more, got {workers}")
    if workers == 0 or not shards:
        yield from _prefetch(get, shards)
        return
    if "fork" not in multiprocessing.get_all_start_methods():
        raise RuntimeError("DataLoader workers need the 'fork' start method (Linux); set "
                           "train.workers=0 on this platform")
    from torch.utils.data import DataLoader

    loader = DataLoader(_BatchDataset(get), sampler=shards, batch_size=None, collate_fn=_keep,
                        num_workers=min(workers, max(1, len(shards))), pin_memory=pin_memory,
                        worker_init_fn=_worker_init,
                        multiprocessing_context=multiprocessing.get_context("fork"))
    yield from loader
