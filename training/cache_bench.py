"""Disk and speed of the epoch-cache stores: ``python -m training.cache_bench``.

``python -m training.cache_bench [--nights 1] [--duration-h 8] [--steps 8] [--batch 64]
[--workers 0 1 2] [--json OUT]`` simulates nights (Sleep-EDF layout, or ``--spec shhs``), builds
an ``images``, a ``signals`` and a ``columns`` cache of them and prints:

- disk per night and per epoch of each store, and its build time;
- batches read per second from each store (random batches, as training draws them) with 0, 1,
  2 DataLoader workers: for a signal cache this is the on-the-fly rendering rate;
- training epochs per second (the default ``vit_tiny`` intra model, ``--steps`` optimizer steps
  of ``--batch`` epochs on the CPU) from the signal cache with 0, 1, 2 workers.

Numbers depend on the machine and its load; the run prints the CPU count and load average.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from edge_scorer._log import get_logger

log = get_logger("training.cache_bench")


def _disk(cache) -> int:
    path = Path(cache.path)
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file()
               and p.name not in ("cache.json",))


def _read_rate(cache, batch: int, n_batches: int, workers: int) -> float:
    """Epochs per second reading random batches of cache images in ``workers`` workers."""
    import torch

    from training.features import image_batch
    from training.loader import iterate_batches

    rng = np.random.default_rng(0)
    shards = [(np.sort(rng.choice(len(cache), size=batch, replace=False)), True)
              for _ in range(n_batches)]

    def get(idx):
        return {"x": image_batch(cache.images[idx]), "y": torch.zeros(len(idx))}

    t0 = time.perf_counter()
    n = sum(len(b["x"]) for b, _ in iterate_batches(get, shards, workers))
    return n / (time.perf_counter() - t0)


def _train_rate(root: Path, cache_dir: Path, nights: Path, steps: int, batch: int,
                workers: int) -> float:
    """Training epochs per second of the default intra model on the signal cache."""
    from training.config import load_config
    from training.dataset import nights_from_folder
    from training.splits import save_split
    from training.tasks import train_intra

    out = root / f"run-w{workers}"
    subjects = sorted({n.subject for n in nights_from_folder(nights)})
    save_split({"train": subjects, "val": [], "test": []}, root / "split.json")
    cfg = load_config("intra_vit_tiny", [
        f"data.nights={json.dumps(str(nights))}", f"data.cache_dir={json.dumps(str(cache_dir))}",
        'data.store="signals"', f"data.split={json.dumps(str(root / 'split.json'))}",
        f"train.batch_size={batch}",
        f"train.max_steps={steps}", f"train.workers={workers}", "train.epochs=1",
        "train.val_max_items=1", f"out={json.dumps(str(out))}"], task="intra")
    train_intra(cfg, quiet=True)
    with open(out / "train_log.csv") as fh:
        rows = fh.read().splitlines()
    epoch_s = float(rows[-1].split(",")[6])
    return steps * batch / epoch_s


def main(argv: Sequence[str] | None = None) -> int:
    """Run the measurements (module docstring) and print them."""
    ap = argparse.ArgumentParser(prog="python -m training.cache_bench",
                                 description=__doc__.splitlines()[0])
    ap.add_argument("--nights", type=int, default=1)
    ap.add_argument("--duration-h", type=float, default=8.0)
    ap.add_argument("--spec", default="sleep-edf", choices=("sleep-edf", "shhs"))
    ap.add_argument("--steps", type=int, default=8, help="training steps per worker count")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--read-batches", type=int, default=20)
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--no-train", action="store_true", help="skip the training rates")
    ap.add_argument("--json", metavar="OUT")
    args = ap.parse_args(argv)
    from edge_scorer.simulate import simulate_nights
    from training.dataset import build_cache, nights_from_folder

    result: dict = {"cpus": os.cpu_count(), "load_before": os.getloadavg()[0], "spec": args.spec,
                    "duration_h": args.duration_h, "stores": {}}
    with tempfile.TemporaryDirectory(prefix="edge-scorer-cache-bench-") as tmp:
        root = Path(tmp)
        simulate_nights(root / "nights", args.nights, layout=args.spec, seed=11,
                        duration_h=args.duration_h)
        nights = nights_from_folder(root / "nights")
        caches = {}
        for store in ("images", "signals", "columns"):
            t0 = time.perf_counter()
            caches[store] = cache = build_cache(nights, args.spec, root / store, store=store)
            disk = _disk(cache)
            result["stores"][store] = {
                "build_s_per_night": (time.perf_counter() - t0) / args.nights,
                "bytes_per_night": disk / args.nights, "bytes_per_epoch": disk / len(cache),
                "epochs_per_night": len(cache) / args.nights,
                "read_epochs_per_s": {w: _read_rate(cache, args.batch, args.read_batches, w)
                                      for w in args.workers}}
        if not args.no_train:
            result["train_epochs_per_s"] = {
                w: _train_rate(root, root / "signals", root / "nights", args.steps, args.batch, w)
                for w in args.workers}
    result["load_after"] = os.getloadavg()[0]
    print(f"epoch-cache stores, {args.nights} simulated {args.duration_h:g}-h {args.spec} "
          f"night(s); {result['cpus']} CPUs, 1-min load {result['load_before']:.2f} -> "
          f"{result['load_after']:.2f}")
    print(f"{'store':8s} {'MB/night':>9s} {'KB/epoch':>9s} {'build s':>8s}  read epochs/s "
          "(workers " + ", ".join(map(str, args.workers)) + ")")
    for store, r in result["stores"].items():
        rates = ", ".join(f"{v:.0f}" for v in r["read_epochs_per_s"].values())
        print(f"{store:8s} {r['bytes_per_night'] / 1e6:9.1f} {r['bytes_per_epoch'] / 1e3:9.1f} "
              f"{r['build_s_per_night']:8.1f}  {rates}")
    if "train_epochs_per_s" in result:
        rates = ", ".join(f"{w} workers {v:.1f}" for w, v in result["train_epochs_per_s"].items())
        print(f"training epochs/s (vit_tiny, batch {args.batch}, signal cache): {rates}")
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
