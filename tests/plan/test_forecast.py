"""
The demand forecast of ``capplan plan``: growth parsing, the history CSV, compound growth, and
backtests of the history forecast on synthetic series with a known trend and weekly season.

The backtests.  BACKTESTS series are drawn (seeded): daily peaks
``level · (1 + g)^(t / M) · (1 + a·sin(2π(t + φ)/7)) · exp(σ·ε)`` with ``g`` from -2 % to
+12 % a month, weekly amplitude ``a`` up to 30 %, noise ``σ`` from 2 % to 8 % of the level
(noise proportional to demand, as a pool's daily peaks have) and 30 to 400 days of history,
followed by HOLD_BACK held-back days.  Each is forecast from its history alone.

* Coverage: the fraction of held-back days whose realised peak lies in that day's 80 % band,
  pooled over all the series, must be within 70–90 % (the issue's check).  BACKTESTS × HOLD_BACK
  = 6,480 days are pooled, but days of one series are correlated (one misjudged trend moves all
  of them), so the spread comes from the number of series: over 16 seeds the pooled figure was
  0.797–0.851, well inside the band.
* Exhaustion: each series is given eight capacities, its noise-free weekly peak 10, 20, … 80
  days into the held-back stretch, each known exactly (no capacity interval: the forecast alone
  must get the early date right).  The true crossing is the first held-back day whose realised
  peak exceeds the capacity.  The early date must be on or before it in at least 90 % of the
  (series, capacity) pairs that cross (about 570).  Nominally it is the 10 % quantile of the
  crossing time, so about 90 % is expected; over 16 seeds it was 0.929–0.958 (the corrected
  error scale and the Akaike-weighted mixture make the band a little wide), so the check has
  about four standard deviations of room.

The backtests take 5–20 s on the 2-core development machine (almost all of it the 72 fits),
but up to about 45 s when other jobs share the cores: scipy's L-BFGS-B calls OpenBLAS, whose
threads then wait for each other (``OPENBLAS_NUM_THREADS=1`` avoids it).  Timing is not
asserted (a 2-year history forecast 24 months ahead takes 0.2–0.5 s once statsmodels is
imported).
"""

from __future__ import annotations

import dataclasses
import math
from pathlib import Path

import numpy as np
import pytest

from capplan.errors import InputError
from capplan.plan.forecast import (
    DAY,
    MONTH,
    Exhaustion,
    Forecast,
    History,
    exhaustion,
    growth_forecast,
    history_forecast,
    history_from,
    parse_growth,
    read_history_csv,
)

M_DAYS = MONTH / DAY
ORIGIN = 20_000 * DAY  # 2024-10-04T00:00:00Z, a UTC midnight
BACKTESTS = 72
HOLD_BACK = 90
CAPACITY_DAYS = (10, 20, 30, 40, 50, 60, 70, 80)


# --------------------------------------------------------------------------- parse_growth


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("8%/month", 0.08),
        ("8 %/mo", 0.08),
        ("8% / Month", 0.08),
        ("0.08/month", 0.08),
        ("-2%/month", -0.02),
        ("\u22122%/month", -0.02),
        ("+1.5%/months", 0.015),
        ("5% per month", 0.05),
        ("0%/month", 0.0),
        ("100%/year", 2.0 ** (1 / 12) - 1),
        ("1/yr", 2.0 ** (1 / 12) - 1),
        ("-50%/year", 0.5 ** (1 / 12) - 1),
    ],
)
def test_parse_growth(text: str, expected: float) -> None:
    assert expected == pytest.approx(parse_growth(text), rel=1e-12, abs=1e-15)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "8%",
        "8",
        "8%/week",
        "eight%/month",
        "%/month",
        "8%%/month",
        "nan/month",
        "-100%/month",
        "-1/month",
        "-150%/year",
        "1e400%/month",
    ],
)
def test_parse_growth_rejects(text: str) -> None:
    with pytest.raises(InputError) as info:
        parse_growth(text)
    assert "growth" == info.value.key
    assert "8%/month" in str(info.value)  # says the accepted forms


# --------------------------------------------------------------------------- history CSV


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "demand.csv"
    path.write_text(text, encoding="utf-8")
    return path


def test_read_history_csv(tmp_path: Path) -> None:
    """Any row order, ISO with or without offset, epoch seconds, BOM, blanks, repeated rows."""
    path = write(
        tmp_path,
        "\ufeffrps,time\n"
        "120.5,2026-01-02T00:00:00+01:00\n"
        "\n"
        "100,2026-01-01T00:00:00\n"
        "90,1767312000\n"
        "100,2026-01-01 00:00:00Z\n",
    )
    history = read_history_csv(path)
    assert [1767225600.0, 1767308400.0, 1767312000.0] == history.times.tolist()
    assert [100.0, 120.5, 90.0] == history.rps.tolist()
    assert not history.times.flags.writeable


@pytest.mark.parametrize(
    ("text", "line", "key", "fragment"),
    [
        ("", 1, None, "the file is empty"),
        ("when,rps\n1,2\n", 1, "header", "exactly the columns time,rps"),
        ("time,rps,node\n1,2,a\n", 1, "header", "exactly the columns time,rps"),
        ("time,rps\n0,1\n1,2,3\n", 3, None, "3 cells where the header has 2"),
        ("time,rps\n0,1\nyesterday,2\n", 3, "time", "is not a time"),
        ("time,rps\n0,1\n,2\n", 3, "time", "empty"),
        ("time,rps\n0,1\n-5,2\n", 3, "time", "between 1970 and 9999"),
        ("time,rps\n0,1\n10,lots\n", 3, "rps", "is not a number"),
        ("time,rps\n0,1\n10,\n", 3, "rps", "empty"),
        ("time,rps\n0,1\n10,-3\n", 3, "rps", "negative"),
        ("time,rps\n0,1\n10,inf\n", 3, "rps", "not a finite number"),
        ("time,rps\n0,1\n10,nan\n", 3, "rps", "not a finite number"),
        ("time,rps\n0,1\n1970-01-01T00:00:00Z,2\n", 3, "time", "also on line 2 with rps 1"),
        ("time,rps\n0,1\n", 2, None, "only one row of demand; a history needs at least 2"),
        ("time,rps\n0,1\n0,1\n", 3, None, "only one row of demand"),
        ("time,rps\n", 1, None, "no rows of demand"),
        ('time,rps\n0,1\n"' + "9" * 200_000 + '",2\n', 3, None, "not a CSV line"),
        ("\ufeff\n \n", 1, None, "the file is empty (expected a header line: time,rps)"),
    ],
)
def test_read_history_csv_errors(
    tmp_path: Path, text: str, line: int, key: str | None, fragment: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(InputError) as info:
        read_history_csv(path)
    where = f"{path}:{line}: " + (f"{key}: " if key else "")
    assert str(info.value).startswith(where), str(info.value)
    assert fragment in str(info.value)


def test_read_history_csv_missing_file(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"nope\.csv: no such demand history file"):
        read_history_csv(tmp_path / "nope.csv")


def test_history_from() -> None:
    """Sorted, the same moment twice keeps the higher rate, bad rates and no points refused."""
    history = history_from([30.0, 10.0, 30.0, 20.0], [1.0, 2.0, 5.0, 0.0])
    assert [10.0, 20.0, 30.0] == history.times.tolist()
    assert [2.0, 0.0, 5.0] == history.rps.tolist()
    with pytest.raises(InputError, match=r"rps: -1\.0 is not a rate"):
        history_from([1.0, 2.0], [3.0, -1.0])
    with pytest.raises(InputError, match="no demand history"):
        history_from([], [])
    with pytest.raises(ValueError, match="strictly increasing"):
        History(np.array([2.0, 1.0]), np.array([1.0, 1.0]))


# --------------------------------------------------------------------------- growth


@pytest.mark.parametrize("rate", [0.08, 0.0, 0.5, -0.02])
def test_growth_forecast_compounds_exactly(rate: float) -> None:
    """Month m's peak is load·(1+r)^m (growing) or load·(1+r)^(m-1) (declining)."""
    load, months = 1800.0, 24
    forecast = growth_forecast(load, rate, months, now=ORIGIN)
    assert "growth" == forecast.method
    assert months == forecast.horizon_months
    for m in range(1, months + 1):
        low, median, high = forecast.month(m)
        expected = load * (1.0 + rate) ** (m if rate >= 0 else m - 1)
        assert expected == pytest.approx(median, rel=1e-12)
        assert low == median == high
    assert math.ceil(months * M_DAYS) == forecast.times.size
    np.testing.assert_array_equal(
        ORIGIN + DAY * np.arange(1, forecast.times.size + 1), forecast.times
    )
    np.testing.assert_array_equal(forecast.low, forecast.high)
    # a day's peak is the rate at its higher end
    k = np.arange(1, forecast.times.size + 1)
    days = load * np.maximum((1 + rate) ** (k / M_DAYS), (1 + rate) ** ((k - 1) / M_DAYS))
    np.testing.assert_allclose(forecast.median, days, rtol=1e-12)
    assert load == forecast.current


def test_growth_forecast_month_bounds_and_inputs() -> None:
    forecast = growth_forecast(100.0, 0.1, 3, now=ORIGIN)
    for m in (0, 4):
        with pytest.raises(ValueError, match=r"outside the forecast's 1\.\.3"):
            forecast.month(m)
    for bad in (
        {"load_now": -1.0},
        {"load_now": math.nan},
        {"monthly_rate": -1.0},
        {"horizon_months": 0},
        {"horizon_months": 121},
        {"level": 1.0},
    ):
        arguments = {"load_now": 100.0, "monthly_rate": 0.1, "horizon_months": 3, **bad}
        with pytest.raises(InputError):
            growth_forecast(now=ORIGIN, **arguments)  # type: ignore[arg-type]


# --------------------------------------------------------------------------- exhaustion


def test_exhaustion_of_compound_growth() -> None:
    """1000 rps growing 10 %/month against capacity 1500 / 2000 / 2500 rps."""
    forecast = growth_forecast(1000.0, 0.10, 24, now=ORIGIN)
    result = exhaustion(forecast, (1500.0, 2000.0, 2500.0))
    assert result is not None

    def crossing(capacity: float) -> float:
        day = math.floor(M_DAYS * math.log(capacity / 1000.0) / math.log(1.1))  # 0-based step
        return ORIGIN + day * DAY

    assert (crossing(1500.0), crossing(2000.0), crossing(2500.0)) == (
        result.early,
        result.median,
        result.late,
    )
    assert not result.exceeded_now


def test_exhaustion_now_and_never() -> None:
    forecast = growth_forecast(1000.0, 0.0, 12, now=ORIGIN)
    assert exhaustion(forecast, (1000.0, 1200.0, 1500.0)) is None
    partly = exhaustion(forecast, (900.0, 1000.0, 1100.0))
    assert partly == Exhaustion(ORIGIN, None, None, True, partly.notes if partly else ())
    assert partly is not None
    assert "already exceeds" in partly.notes[0]
    over = exhaustion(forecast, (500.0, 600.0, 700.0))
    assert over is not None
    assert (ORIGIN, ORIGIN, ORIGIN) == (over.early, over.median, over.late)
    with pytest.raises(ValueError, match="not an interval"):
        exhaustion(forecast, (2.0, 1.0, 3.0))
    with pytest.raises(ValueError, match="not an interval"):
        exhaustion(forecast, (math.nan, 1.0, 3.0))


# --------------------------------------------------------------------------- history forecast


def daily(rps: np.ndarray, first_day: int = 20_000 - 400) -> History:
    """One point per day, at noon, starting on ``first_day``."""
    return History((first_day + np.arange(rps.size)) * DAY + DAY / 2, rps)


@dataclasses.dataclass(frozen=True)
class Backtest:
    forecast: Forecast
    held_back: np.ndarray
    capacities: tuple[float, ...]


def synthetic(rng: np.random.Generator) -> tuple[int, np.ndarray, np.ndarray]:
    """History length, realised daily peaks, noise-free weekly peaks (see the docstring)."""
    fit_days = int(rng.integers(30, 401))
    level = rng.uniform(200.0, 5000.0)
    growth = rng.uniform(-0.02, 0.12)
    amplitude = rng.uniform(0.0, 0.3)
    noise = rng.uniform(0.02, 0.08)
    phase = rng.uniform(0.0, 7.0)
    t = np.arange(fit_days + HOLD_BACK, dtype=np.float64)
    trend = level * (1.0 + growth) ** (t / M_DAYS)
    peaks = trend * (1 + amplitude * np.sin(2 * np.pi * (t + phase) / 7))
    return fit_days, peaks * np.exp(noise * rng.standard_normal(t.size)), trend * (1 + amplitude)


@pytest.fixture(scope="module")
def backtests() -> list[Backtest]:
    rng = np.random.default_rng(20_260_101)
    out = []
    for i in range(BACKTESTS):
        fit_days, realised, weekly_peak = synthetic(rng)
        origin_day = 20_000
        history = daily(realised[:fit_days], origin_day - fit_days)
        forecast = history_forecast(history, 3, now=origin_day * DAY, seed=i)
        assert "ets" == forecast.method, forecast.notes
        capacities = tuple(float(weekly_peak[fit_days + k]) for k in CAPACITY_DAYS)
        out.append(Backtest(forecast, realised[fit_days:], capacities))
    return out


def test_backtest_coverage(backtests: list[Backtest]) -> None:
    """The per-day 80 % band holds 70–90 % of the held-back daily peaks, pooled."""
    inside = []
    for b in backtests:
        assert ORIGIN + DAY * np.arange(1, HOLD_BACK + 1) == pytest.approx(
            b.forecast.times[:HOLD_BACK]
        )
        low, high = b.forecast.low[:HOLD_BACK], b.forecast.high[:HOLD_BACK]
        inside.append((low <= b.held_back) & (b.held_back <= high))
    coverage = float(np.mean(inside))
    assert 0.70 <= coverage <= 0.90, f"pooled coverage {coverage:.3f}"


def test_backtest_exhaustion(backtests: list[Backtest]) -> None:
    """The early date is on or before the true crossing in ≥ 90 % of the backtests that cross."""
    on_time = crossings = 0
    for b in backtests:
        for capacity in b.capacities:
            over = np.flatnonzero(b.held_back > capacity)
            if not over.size:
                continue
            crossings += 1
            true_crossing = ORIGIN + over[0] * DAY  # the start of the first day over capacity
            result = exhaustion(b.forecast, (capacity, capacity, capacity))
            if result is not None and result.early is not None and result.early <= true_crossing:
                on_time += 1
            if result is not None and result.median is not None:
                assert result.early is not None
                assert result.early <= result.median
                if result.late is not None:
                    assert result.median <= result.late
    assert crossings >= 400, f"only {crossings} backtests cross their capacity"
    assert on_time >= 0.9 * crossings, (
        f"early on or before the crossing in {on_time} of {crossings} ({on_time / crossings:.3f})"
    )


def test_month_band_is_the_band_of_the_months_peak() -> None:
    """Each path's month peak is at least its every day, so the month quantiles dominate."""
    rng = np.random.default_rng(7)
    t = np.arange(200.0)
    rps = 500 * 1.05 ** (t / M_DAYS) * (1 + 0.2 * np.sin(t)) * np.exp(0.05 * rng.normal(size=200))
    forecast = history_forecast(daily(rps), 6, now=ORIGIN)
    first = 0
    for m in range(1, 7):
        stop = int(np.searchsorted(forecast.times - DAY, ORIGIN + m * MONTH))
        low, median, high = forecast.month(m)
        assert low <= median <= high
        assert median >= forecast.median[first:stop].max()
        assert high >= forecast.high[first:stop].max()
        assert low >= forecast.low[first:stop].max()
        first = stop - 1
    assert np.all(forecast.low <= forecast.median)
    assert np.all(forecast.median <= forecast.high)
    again = history_forecast(daily(rps), 6, now=ORIGIN)
    np.testing.assert_array_equal(forecast.high, again.high)
    np.testing.assert_array_equal(forecast.month_high, again.month_high)
    other = history_forecast(daily(rps), 6, now=ORIGIN, seed=1)
    assert not np.array_equal(forecast.high, other.high)


def test_short_history_is_flat() -> None:
    """Under 14 days: the highest rate seen, held flat, no interval, and a note saying so."""
    history = history_from(ORIGIN - DAY * np.arange(1, 11) - 3600.0, np.linspace(100, 190, 10))
    forecast = history_forecast(history, 12, now=ORIGIN)
    assert "flat" == forecast.method
    assert any("fewer than 14" in note and "--growth" in note for note in forecast.notes)
    assert (190.0, 190.0, 190.0) == forecast.month(12)
    assert np.all(forecast.high == 190.0)
    assert np.all(forecast.low == 190.0)
    single = history_forecast(history_from([ORIGIN - 10.0], [42.0]), 1, now=ORIGIN)
    assert ("flat", (42.0, 42.0, 42.0)) == (single.method, single.month(1))


def test_constant_history_is_flat() -> None:
    forecast = history_forecast(daily(np.full(60, 250.0)), 3, now=ORIGIN)
    assert "flat" == forecast.method
    assert (250.0, 250.0, 250.0) == forecast.month(3)
    assert any("all 250 rps" in note for note in forecast.notes)
    zeros = history_forecast(daily(np.zeros(60)), 3, now=ORIGIN)
    assert ("flat", (0.0, 0.0, 0.0)) == (zeros.method, zeros.month(1))


def test_zero_days_fit_on_the_raw_scale() -> None:
    rng = np.random.default_rng(3)
    rps = np.maximum(0.0, 100 + 10 * rng.normal(size=90))
    rps[[10, 40]] = 0.0
    forecast = history_forecast(daily(rps), 4, now=ORIGIN)
    assert "ets" == forecast.method
    assert any("raw scale" in note for note in forecast.notes)
    assert np.all(forecast.low >= 0.0)
    assert 60 < forecast.month(1)[1] < 200


def test_origin_cuts_the_history() -> None:
    """Points after ``now`` and the day in progress are left out, with notes; gaps forecast."""
    rng = np.random.default_rng(5)
    rps = 300 * np.exp(0.05 * rng.normal(size=100))
    history = daily(rps, 20_000 - 80)  # 20 days run past the origin
    noon = ORIGIN + DAY / 2
    forecast = history_forecast(history, 2, now=noon)
    assert "ets" == forecast.method
    assert any("19 history points after the origin" in note for note in forecast.notes)
    assert any("day in progress" in note for note in forecast.notes)
    assert ORIGIN + DAY == forecast.times[0]  # the day in progress is the first step
    assert noon == forecast.origin
    assert float(rps[80]) == forecast.current  # today's peak so far (noon itself)
    stale = history_forecast(daily(rps[:60], 20_000 - 80), 2, now=ORIGIN)
    assert any("ends 20 day(s) before" in note for note in stale.notes)
    with pytest.raises(InputError, match="starts after the forecast origin"):
        history_forecast(history, 2, now=ORIGIN - 100 * DAY)


def test_missing_days_and_short_season() -> None:
    rng = np.random.default_rng(9)
    rps = 300 * np.exp(0.05 * rng.normal(size=18))
    forecast = history_forecast(daily(np.delete(rps, [5, 6]), 20_000 - 18), 1, now=ORIGIN)
    assert "ets" == forecast.method
    assert any("too short for a weekly season" in note for note in forecast.notes)
    history = History(np.delete(daily(rps, 20_000 - 18).times, [5, 6]), np.delete(rps, [5, 6]))
    forecast = history_forecast(history, 1, now=ORIGIN)
    assert any("2 day(s) without data" in note for note in forecast.notes)
