"""
Intervals that mean what they say: the 95% capacity interval covers the true capacity 93–97%
of the time, on windows generated from known M/G/c stations (``bench._synthetic``).

For each station of ``bench._synthetic.CONFIGS`` (c = 4, scv 0.3 and c = 8, scv 1.0; SLO p99
at 120 ms; 40 windows of 60 s at utilizations 0.2–0.9 whose mean, p50, p95 and p99 carry their
joint sampling noise) REPLICATES seeded replicates are fitted with ``model="mgc"`` and the
intervals holding the true capacity are counted.  The replicates are fitted 50 at a time by
``fit_nodes`` — ``fit_node`` is ``fit_nodes`` with one node, and
``test_batches_answer_as_fit_node`` checks that the batch gives the same intervals.

The band asserted.  The target is a true coverage in [93%, 97%].  With n replicates the count
is Binomial(n, p), so the band is widened by that sampling error only: the test fails when the
count is improbable for *every* p in [0.93, 0.97] — below the 1.25% quantile of
Binomial(n, 0.93) or above the 98.75% quantile of Binomial(n, 0.97) (two-sided 5%, Bonferroni
over the two stations, so a fit whose true coverage is anywhere in 93–97% fails with
probability below 5%; one at exactly 95% with probability 1e-5).  For n = 500 that accepts
452–493 covering intervals: 90.4%–98.6%.  So a true coverage of 91% can pass here;
``python -m bench.coverage`` runs 1,000 replicates per station (band ±1.4–1.9%).

The time budget: the replicates of both stations should take well under a minute on two
processes of the 2-core development machine (about 35–45 s while other jobs loaded it).  It is
not asserted (tests check correctness, not timing): watch it when changing the station fit.
"""

from __future__ import annotations

import os

import pytest
from scipy import stats

from bench._synthetic import CONFIGS, Config, Outcome, replicate
from bench.coverage import SEED_STRIDE, run

REPLICATES = 500
TARGET = (0.93, 0.97)
ALPHA = 0.05

pytestmark = pytest.mark.slow

Runs = dict[str, list[Outcome]]


def accepted_counts(n: int, configs: int) -> tuple[int, int]:
    """
    The counts of covering intervals (out of n) consistent with a true coverage in TARGET.
    """
    tail = ALPHA / 2 / configs
    low = min(k for k in range(n + 1) if stats.binom.cdf(k, n, TARGET[0]) >= tail)
    high = max(k for k in range(n + 1) if stats.binom.sf(k - 1, n, TARGET[1]) >= tail)
    return low, high


@pytest.fixture(scope="module")
def outcomes() -> Runs:
    workers = min(2, os.cpu_count() or 1)
    return {
        config.name: run(config, REPLICATES, workers=workers, batch=True, index=i, progress=False)
        for i, config in enumerate(CONFIGS)
    }


def test_band_is_what_the_docstring_says() -> None:
    """For n = 500 and two stations the accepted counts are 452–493."""
    assert (452, 493) == accepted_counts(500, 2)


def test_every_fit_succeeds(outcomes: Runs) -> None:
    """No replicate's fit raises or fails (that would be no interval at all)."""
    failed = [
        f"{o.config} seed {o.seed}: {o.error}" for r in outcomes.values() for o in r if o.error
    ]
    assert [] == failed


@pytest.mark.parametrize("index", range(len(CONFIGS)), ids=[c.name for c in CONFIGS])
def test_batches_answer_as_fit_node(index: int, outcomes: Runs) -> None:
    """The first replicates refitted alone by fit_node give the batch's capacity and interval."""
    config = CONFIGS[index]
    for batched in outcomes[config.name][:3]:
        alone = replicate(config, batched.seed)
        assert SEED_STRIDE * index <= batched.seed < SEED_STRIDE * (index + 1)
        assert (alone.capacity, alone.low, alone.high) == pytest.approx(
            (batched.capacity, batched.low, batched.high), rel=1e-9
        )


@pytest.mark.parametrize("config", CONFIGS, ids=[c.name for c in CONFIGS])
def test_capacity_interval_coverage(config: Config, outcomes: Runs) -> None:
    """The 95% interval holds the true capacity at the SLO 93–97% of the time (± binomial)."""
    runs = outcomes[config.name]
    covered = sum(o.covered for o in runs)
    low, high = accepted_counts(len(runs), len(CONFIGS))
    below = sum(o.high < o.truth for o in runs)
    above = sum(o.low > o.truth for o in runs)
    assert low <= covered <= high, (
        f"{config.name}: {covered}/{len(runs)} intervals cover the truth "
        f"({below} entirely below it, {above} above); accepted {low}–{high}"
    )
