"""
Fitting a large pool in batches, over worker processes: :func:`fit_nodes` split up.

A node's fit does not depend on the other nodes of its batch (``fit_nodes`` batches the maths,
not the data), so the answers are the same bytes however the pool is split.  The maths is
CPU-bound NumPy and SciPy that holds the interpreter's lock for most of its time: threads would
take turns on one core; processes use them all.
"""

from __future__ import annotations

import multiprocessing
import os
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait

from capplan.models.fit import NodeFit, NodeInput, SLOTarget, fit_nodes

__all__ = ["BATCH_NODES", "available_cores", "fit_in_batches"]

#: Nodes per batch.  A batch this size fits as fast per node as one batch of all the nodes
#: (1,000 of ``bench.fit``'s synthetic nodes: one batch 14.4 s, four of 250 14.6 s, ten of 100
#: 17.9 s), and it is small enough for the progress to move every few seconds.
BATCH_NODES = 250

#: Reports progress: (nodes fitted so far, nodes).
Progress = Callable[[int, int], None]


def available_cores() -> int:
    """
    The cores this process may run on (its CPU affinity where the platform tells it).
    """
    if hasattr(os, "sched_getaffinity"):
        return max(len(os.sched_getaffinity(0)), 1)
    return max(os.cpu_count() or 1, 1)


def _one_blas_thread() -> None:
    # Each worker is one of ``processes``: BLAS threads on top would fight over the same cores
    # (1,000 nodes in two processes: 10.9 s with OpenBLAS' own threads, 8.5 s with one each,
    # set through OPENBLAS_NUM_THREADS for that measurement).
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1)


def _fit_batch(job: tuple[Sequence[NodeInput], SLOTarget, str, float]) -> list[NodeFit]:
    nodes, slo, model, ceiling = job
    return fit_nodes(nodes, slo, model=model, utilization_ceiling=ceiling)


def _context() -> multiprocessing.context.BaseContext:
    # Not fork: the caller may have threads (a live progress display), and a child forked from
    # a threaded process can inherit a lock another thread held.  The fork server imports the
    # maths once; each worker is forked from it, before any thread of ours exists.
    if "forkserver" in multiprocessing.get_all_start_methods():
        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(["capplan.models.fit"])
        return context
    return multiprocessing.get_context("spawn")


def fit_in_batches(
    nodes: Sequence[NodeInput],
    slo: SLOTarget,
    *,
    model: str = "auto",
    utilization_ceiling: float = 0.8,
    processes: int | None = None,
    progress: Progress | None = None,
) -> list[NodeFit]:
    """
    :func:`fit_nodes` in batches of :data:`BATCH_NODES`, over worker processes.

    Args:
        nodes: The nodes, each with its windows.
        slo: The latency percentile and error bounds.
        model: ``auto`` or one of ``MODELS`` (see :func:`fit_nodes`).
        utilization_ceiling: The CPU utilization the ``demand`` model may reach.
        processes: Worker processes (None: one per available core).  With one, or a pool of
            one batch, everything runs in this process.
        progress: Called with (nodes fitted, nodes) after each batch, in this process.

    Returns:
        One fit per node, in order: exactly what ``fit_nodes`` returns for all of them.
    """
    total = len(nodes)
    jobs = [
        (list(nodes[start : start + BATCH_NODES]), slo, model, utilization_ceiling)
        for start in range(0, total, BATCH_NODES)
    ]
    workers = min(available_cores() if processes is None else max(processes, 1), len(jobs))
    results: list[list[NodeFit]] = [[] for _ in jobs]
    done = 0
    if workers <= 1:
        for i, job in enumerate(jobs):
            results[i] = _fit_batch(job)
            done += len(job[0])
            if progress is not None:
                progress(done, total)
        return [fit for batch in results for fit in batch]
    pool = ProcessPoolExecutor(
        max_workers=workers, mp_context=_context(), initializer=_one_blas_thread
    )
    try:
        pending: dict[Future[list[NodeFit]], int] = {
            pool.submit(_fit_batch, job): i for i, job in enumerate(jobs)
        }
        while pending:
            finished, _ = wait(pending, return_when=FIRST_COMPLETED)
            for future in finished:
                i = pending.pop(future)
                results[i] = future.result()
                done += len(jobs[i][0])
                if progress is not None:
                    progress(done, total)
    finally:
        # On an error (or Ctrl-C) the batches not yet started are dropped, not waited for.
        pool.shutdown(wait=True, cancel_futures=True)
    return [fit for batch in results for fit in batch]
