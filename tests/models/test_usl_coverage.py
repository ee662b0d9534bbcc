"""
The USL's 95% capacity interval covers a known USL's capacity 93–97% of the time.

``bench.usl_coverage`` draws nodes from X(N) = λN / (1 + σ(N − 1) + κN(N − 1)) (24 windows,
3% throughput noise, the SLO's p99 a fixed multiple of the mean with its own sampling noise) and
fits each with ``model="usl"``.  The band is the one of ``test_coverage``: the count of
covering intervals must be probable for some true coverage in [93%, 97%] (two-sided 5%); with
800 replicates that accepts 729–785 (91.1%–98.1%).  The replicates take about two seconds.
"""

from __future__ import annotations

from bench.usl_coverage import measure
from tests.models.test_coverage import accepted_counts

REPLICATES = 800


def test_band_is_what_the_docstring_says() -> None:
    assert (729, 785) == accepted_counts(REPLICATES, 1)


def test_usl_capacity_interval_coverage() -> None:
    got = measure(REPLICATES, seed=11, noise=0.03)
    low, high = accepted_counts(REPLICATES, 1)
    assert low <= got.covered <= high, (
        f"{got.covered}/{REPLICATES} intervals cover the truth ({got.below} entirely below it, "
        f"{got.above} above); accepted {low}–{high}"
    )
