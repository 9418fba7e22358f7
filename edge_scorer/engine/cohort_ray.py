"""The nights of a cohort as Ray tasks (``edge-scorer score ... --ray [ADDRESS]``).

Each night is one task running :func:`~edge_scorer.engine.cohort.score_night` (the single-file
command's work), one CPU each; each worker process loads the model once. Ray is an optional
extra (``pip install 'edge-scorer[ray]'``), imported only here. On a cluster every worker needs
edge-scorer installed and the PSG files and output folder at the same paths (a shared file
system), as for any Ray job reading files.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from edge_scorer._log import get_logger
from edge_scorer.engine.cohort import ModelChoice, NightJob, score_night

log = get_logger("cohort_ray")

INSTALL_HINT = ("Ray is not installed: pip install 'edge-scorer[ray]' (or pip install ray) on "
                "this machine and on every node of the cluster")


def _ray():
    try:
        import ray
    except ImportError as exc:
        raise ImportError(INSTALL_HINT) from exc
    return ray


def run_ray(jobs: Sequence[NightJob], choice: ModelChoice, address: str | None,
            workers: int = 2) -> Iterator[tuple[int, dict]]:
    """Yield ``(index in jobs, row)`` as the Ray tasks finish.

    ``address``: a running cluster (``auto``, ``ray://HOST:10001`` or ``HOST:6379``); None
    starts a local instance with ``workers`` CPUs (stopped at the end). A task that dies (a
    worker killed) gives a ``failed`` row; the other nights go on.
    """
    ray = _ray()
    started_here = False
    if not ray.is_initialized():
        if address:
            ray.init(address=address, log_to_driver=False)
        else:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False)
            started_here = True
    try:
        one_thread = ModelChoice(**{**choice.__dict__, "threads": choice.threads or 1})
        task = ray.remote(num_cpus=1, max_retries=0)(score_night)
        refs = {task.remote(job, one_thread): i for i, job in enumerate(jobs)}
        log.info("%d nights submitted to Ray (%s)", len(refs), address or "local instance")
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                i = refs[ref]
                try:
                    row = ray.get(ref)
                except Exception as exc:  # the task or its worker died
                    job = jobs[i]
                    row = {"night": job.name, "status": "failed", "psg": job.psg,
                           "out": job.out, "error": f"{type(exc).__name__}: {exc}"[:2000]}
                yield i, row
    finally:
        if started_here:
            ray.shutdown()


__all__ = ["INSTALL_HINT", "run_ray"]
