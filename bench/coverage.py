"""
Coverage of the capacity interval: does the 95% interval hold the true capacity 95% of the time?

    python -m bench.coverage [--replicates 1000] [--workers 2] [--noise joint]

For each configuration of ``bench._synthetic.CONFIGS`` (a known M/G/c station and a p99 SLO),
``--replicates`` independent sets of windows are generated (seeds 0, 1, ...; the same seeds as
``tests/models/test_coverage.py`` uses for its first replicates) and fitted with
``fit_node(..., model="mgc")``.  Printed per configuration: the coverage, its exact
(Clopper–Pearson) binomial 95% band, how the misses split (interval entirely below / above the
truth), the mean interval width relative to the true capacity, the median fit time, and the
number of fits that raised.  Progress goes to stderr.

``--batch`` fits ``BATCH`` replicates per ``fit_nodes`` call (the same answers, about twenty
times faster; the fit time printed is then the batch's time per replicate).
``--noise independent`` drops the correlation between a window's statistics (a diagnostic:
the fit treats them as independent); ``--known-workers`` gives the fit the true slot count.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor

import numpy as np
from scipy import stats

from bench._synthetic import CONFIGS, Config, Noise, Outcome, replicate, replicate_batch

__all__ = ["main", "run", "summarise"]

#: Seeds of configuration i are SEED_STRIDE·i + 0, 1, ... (disjoint between configurations).
SEED_STRIDE = 1_000_000
#: Replicates per ``fit_nodes`` call in ``--batch`` mode.
BATCH = 50


def run(
    config: Config,
    replicates: int,
    *,
    workers: int = 2,
    noise: Noise = "joint",
    known_workers: bool = False,
    batch: bool = False,
    index: int = 0,
    progress: bool = True,
) -> list[Outcome]:
    """
    Fit ``replicates`` replicates of one configuration on a pool of ``workers`` processes.

    ``batch``: fit them BATCH at a time with ``fit_nodes`` (the same answers as ``fit_node``,
    about twenty times faster; the fit time is then the batch's time per replicate).
    """
    seeds = [SEED_STRIDE * index + i for i in range(replicates)]
    slots = int(config.servers) if known_workers else None
    out: list[Outcome] = []
    started = time.perf_counter()
    with ProcessPoolExecutor(max_workers=workers) as pool:
        if batch:
            chunks = [seeds[i : i + BATCH] for i in range(0, replicates, BATCH)]
            done = pool.map(
                replicate_batch,
                [config] * len(chunks),
                chunks,
                [noise] * len(chunks),
                [slots] * len(chunks),
            )
            results: Iterable[Outcome] = (o for chunk in done for o in chunk)
        else:
            results = pool.map(
                replicate,
                [config] * replicates,
                seeds,
                [noise] * replicates,
                [slots] * replicates,
                chunksize=max(1, min(16, replicates // (8 * max(workers, 1)))),
            )
        for i, outcome in enumerate(results, 1):
            out.append(outcome)
            if progress and (i % 50 == 0 or i == replicates):
                covered = sum(o.covered for o in out)
                print(
                    f"  {config.name}: {i}/{replicates}, coverage so far {covered / i:.1%}, "
                    f"{time.perf_counter() - started:.0f} s",
                    file=sys.stderr,
                    flush=True,
                )
    return out


def summarise(outcomes: Sequence[Outcome]) -> dict[str, float]:
    """
    Coverage, its Clopper–Pearson 95% band, misses, mean relative width, median fit time.
    """
    n = len(outcomes)
    good = [o for o in outcomes if not o.error]
    k = sum(o.covered for o in outcomes)
    band = stats.binomtest(k, n).proportion_ci(confidence_level=0.95, method="exact")
    return {
        "n": n,
        "coverage": k / n,
        "band_low": float(band.low),
        "band_high": float(band.high),
        "below": sum(o.high < o.truth for o in good) / n,
        "above": sum(o.low > o.truth for o in good) / n,
        "width": float(np.mean([o.relative_width for o in good])) if good else float("nan"),
        "fit_s": float(np.median([o.seconds for o in outcomes])),
        "failed": n - len(good),
    }


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.coverage", description=__doc__)
    parser.add_argument("--replicates", type=int, default=1000)
    parser.add_argument("--workers", type=int, default=min(2, os.cpu_count() or 1))
    parser.add_argument("--noise", choices=["joint", "independent"], default="joint")
    parser.add_argument("--known-workers", action="store_true")
    parser.add_argument("--batch", action="store_true", help="fit with fit_nodes, BATCH at a time")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    rows = []
    for index, config in enumerate(CONFIGS):
        print(f"{config.name}: {args.replicates} replicates", file=sys.stderr, flush=True)
        outcomes = run(
            config,
            args.replicates,
            workers=args.workers,
            noise=args.noise,
            known_workers=args.known_workers,
            batch=args.batch,
            index=index,
        )
        for o in outcomes:
            if o.error:
                print(f"  {config.name} seed {o.seed} raised {o.error}", file=sys.stderr)
        rows.append((config, summarise(outcomes)))
    print(
        f"noise={args.noise} known_workers={args.known_workers} batch={args.batch} "
        f"replicates={args.replicates} target 93–97%"
    )
    print(
        f"{'config':<12} {'truth rps':>10} {'coverage':>9} {'95% band':>15} {'below':>6} "
        f"{'above':>6} {'width':>7} {'fit s':>6} {'failed':>6}"
    )
    for config, s in rows:
        band = f"{s['band_low']:.1%}–{s['band_high']:.1%}"
        print(
            f"{config.name:<12} {config.truth:>10.2f} {s['coverage']:>9.1%} {band:>15} "
            f"{s['below']:>6.1%} {s['above']:>6.1%} {s['width']:>7.2%} {s['fit_s']:>6.3f} "
            f"{int(s['failed']):>6d}"
        )
    print(f"total {time.perf_counter() - started:.0f} s", file=sys.stderr)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
