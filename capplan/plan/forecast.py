"""
The demand forecast for ``capplan plan``: peak requests per second over the coming months, with
an interval, and the dates the pool runs out.

Demand comes either as a rate now and a compound growth (``--load 1800 --growth 8%/month``) or as
a history of observed rates (the store's peaks, or a ``time,rps`` CSV).  Capacity must cover
*peaks*, so every figure here is a peak: the forecast's steps are days and a step's value is the
highest rate in that day; a month's value is the highest rate in that month.

Time.  The forecast origin ``now`` is epoch seconds (UTC).  A month is 30.4375 days (365.25 / 12)
counted from the origin: month ``m`` (1-based) is ``(now + (m-1)·M, now + m·M]``.  Steps are
``(t - step_s, t]`` for each ``t`` in :attr:`Forecast.times`; a step that straddles two months
belongs to both (its peak may fall in either), which errs on the high side by at most a day.

Growth.  ``load · (1 + r)^(t / M)``, continuous in time, so month ``m``'s peak is exactly
``load · (1 + r)^m`` for growth (``load · (1 + r)^(m-1)`` for decline) and a day's peak is the
value at whichever end of the day is higher.  There is no interval: the band has zero width.

History.  The history is reduced to daily peaks (the highest rate in each UTC day) and an
exponential-smoothing state-space model (statsmodels ``ETSModel``) is fitted to them:

* On the log scale when every daily peak is positive.  Additive models of ``log(peak)`` are
  multiplicative models of the peak: compound trend (the planner's own notion of growth, as in
  ``--growth``), weekly swings proportional to the level, noise proportional to the level, and
  forecasts that cannot go negative.  The raw-scale multiplicative-error and multiplicative-trend
  ETS models would express the same, but each fit took 0.3–0.7 s on two years of days (against
  0.02–0.1 s here) and multiplicative trends are known to explode over long horizons.  With a day
  of zero demand the log is undefined: the same candidates are then fitted to the raw peaks
  (additive error) and the simulated paths are clipped at zero, with a note.
* Candidates: no trend, additive trend, damped additive trend; each without and, once there are
  3 full weeks of days, with a weekly season.  Rather than keeping only the lowest AICc, the
  simulated paths are shared among the candidates by their Akaike weights ``exp(-ΔAICc / 2)``
  (normalised; under 1 % dropped), as in N. Kolassa, "Combining exponential smoothing forecasts
  using Akaike weights", *Int. J. Forecasting* 27 (2011) 238–251.  On daily peaks "trend" and
  "no trend" (a level that wanders) are often within 2 AICc of each other, and keeping only one
  of them made the band forget the other: in the backtests the early exhaustion date was on or
  before the true crossing in 91–95 % of cases (across seeds) with the single best model, and
  93–96 % with the mixture.
* The models use statsmodels' heuristic initial states (Hyndman et al., *Forecasting:
  principles and practice*, §2.6) instead of estimating them: four times faster, and in the
  backtests (``tests/plan/test_forecast.py``) the 80 % band covered 80–85 % of the held-back
  days, where fits with estimated initial states (which settle on near-deterministic trends and
  ignore their parameters' uncertainty) covered about 75 %.
* The interval is by simulation: up to 1000 seeded sample paths of the candidate models from the
  end of the history.  A day's band is the quantiles of the paths on that day.  A month's band is
  the quantiles over paths of each path's highest day in the month: the peak of a month is a
  maximum over about 30 noisy days, and it is higher and narrower than the highest of the
  per-day quantiles would suggest, so the month figures are *not* the maxima of the day bands.
* Missing days inside the history are filled by linear interpolation (on the fitted scale), with
  a note; only the last two years are fitted (older demand says little about next year's, and the
  fit stays well under a second); yearly seasonality is not modelled.
* With fewer than 14 days of history a trend cannot be told from a weekly swing, and a trend
  from a few days extrapolated over months would be pretending.  The forecast is then "flat":
  the highest rate observed anywhere in the history, held for the whole horizon, with no
  interval, and a note saying so (give ``--growth`` to plan for growth).  Hourly models of a few
  days of data were considered and rejected for the same reason, and because simulating hourly
  steps over months is costly.  The same flat forecast is used when the daily peaks are all equal
  (nothing to fit) or when no candidate model can be fitted.

Time to exhaustion (:func:`exhaustion`) is a first-passage time: the first day demand exceeds
capacity.  It is read from the band of the *running peak* (the highest day from the origin to
each day, :attr:`Forecast.peak_high` etc.), not from the per-day band: the probability that the
demand has crossed by day ``t`` is the probability that its running peak exceeds capacity at
``t``, which is larger than the probability that day ``t`` alone does.  So the first day whose
running-peak upper quantile exceeds the capacity is exactly the lower quantile of the crossing
time (with an 80 % level: 10 % of paths cross earlier), where the first day whose per-day upper
quantile does comes later (in the backtests it was on or before the true crossing in only 85 %
of series).  The early date compares the running peak's upper quantile with the capacity's low
end, the median date median with median, and the late date the lower quantile with the
capacity's high end.

Everything is pure: no printing, no clock (the origin is an argument), seeded randomness.
statsmodels is imported only when a history is fitted (it pulls pandas: seconds to import).
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from capplan.errors import InputError
from capplan.files import read_input
from capplan.samples import csv_table, parse_time

__all__ = [
    "DAY",
    "MONTH",
    "Exhaustion",
    "Forecast",
    "History",
    "exhaustion",
    "growth_forecast",
    "history_forecast",
    "history_from",
    "parse_growth",
    "parse_history_csv",
    "read_history_csv",
]

FloatArray = npt.NDArray[np.float64]

DAY: Final = 86400.0
MONTH: Final = 365.25 / 12 * DAY  # 30.4375 days, in seconds
MAX_HORIZON_MONTHS: Final = 120
MIN_FIT_DAYS: Final = 14  # fewer observed daily peaks: flat forecast
MIN_SEASONAL_DAYS: Final = 21  # 3 full weeks before a weekly season is tried
MAX_FIT_DAYS: Final = 730  # only the last two years are fitted
SEASON: Final = 7
MAX_PATHS: Final = 1000
MIN_PATHS: Final = 200
PATH_BUDGET: Final = 3_000_000  # simulated days × paths, to bound time and memory on long horizons
MIN_WEIGHT: Final = 0.01  # candidates with a smaller Akaike weight are not simulated
BAND_CAP: Final = 1e6  # simulated peaks are capped at this multiple of the history's peak

_HISTORY_COLUMNS: Final = ("time", "rps")
_GROWTH_FORMS: Final = "8%/month, 0.08/month, 100%/year or -2%/month (compound)"
_GROWTH_RE: Final = re.compile(
    r"""^\s*
    (?P<number>[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?)
    \s*(?P<percent>%)?\s*
    (?:/|\s+per\s+)\s*
    (?P<unit>months?|mon|mo|years?|yr|y)
    \s*$""",
    re.VERBOSE | re.IGNORECASE,
)


# --------------------------------------------------------------------------- inputs


def parse_growth(text: str) -> float:
    """
    Parse a compound growth rate and return it per month, as a fraction.

    Args:
        text: ``8%/month``, ``8 %/mo``, ``0.08/month``, ``100%/year``, ``-2%/month``,
            ``5% per month``.  A yearly rate ``R`` becomes the monthly ``(1 + R)^(1/12) - 1``
            (compound: 100 %/year is about 5.95 %/month, not 8.33 %).

    Returns:
        The monthly rate, e.g. 0.08; above -1 (a fall of 100 % or more is not a rate).

    Raises:
        InputError: when the text is none of these forms.
    """
    match = _GROWTH_RE.match(text.replace("\u2212", "-"))
    if match is None:
        raise InputError(f"{text!r} is not a growth rate", key="growth", hint=_GROWTH_FORMS)
    rate = float(match["number"])
    if match["percent"]:
        rate /= 100.0
    if not math.isfinite(rate) or rate <= -1.0:
        raise InputError(
            f"{text!r} would take demand to zero or below",
            key="growth",
            hint="a fall must be less than 100 %; " + _GROWTH_FORMS,
        )
    if match["unit"].lower().startswith("y"):
        rate = (1.0 + rate) ** (1.0 / 12.0) - 1.0
    if not math.isfinite(rate):
        raise InputError(f"{text!r} is too large", key="growth", hint=_GROWTH_FORMS)
    return rate


@dataclass(frozen=True, eq=False)
class History:
    """
    Observed demand: rates (requests per second) at moments (epoch seconds, UTC).

    Build one with :func:`history_from` (sorts, merges duplicate moments) or
    :func:`read_history_csv`.  The arrays are read-only.

    Attributes:
        times: Strictly increasing epoch seconds, at least one.
        rps: The rate at each moment; finite, 0 or more.
    """

    times: FloatArray
    rps: FloatArray

    def __post_init__(self) -> None:
        times = np.array(self.times, dtype=np.float64)
        rps = np.array(self.rps, dtype=np.float64)
        if times.ndim != 1 or rps.shape != times.shape:
            raise ValueError("times and rps must be 1-D arrays of the same length")
        if times.size == 0:
            raise ValueError("a history needs at least one point")
        if not (np.all(np.isfinite(times)) and np.all(np.isfinite(rps))):
            raise ValueError("times and rps must be finite")
        if np.any(rps < 0):
            raise ValueError("rps must be 0 or more")
        if np.any(np.diff(times) <= 0):
            raise ValueError("times must be strictly increasing (use history_from to sort)")
        times.setflags(write=False)
        rps.setflags(write=False)
        object.__setattr__(self, "times", times)
        object.__setattr__(self, "rps", rps)


def history_from(times: npt.ArrayLike, rps: npt.ArrayLike) -> History:
    """
    A :class:`History` from points in any order; the same moment twice keeps the higher rate.

    Args:
        times: Epoch seconds.
        rps: The rate at each moment (finite, 0 or more).

    Raises:
        InputError: no points, or a rate that is negative or not finite.
    """
    t = np.asarray(times, dtype=np.float64).ravel()
    r = np.asarray(rps, dtype=np.float64).ravel()
    if t.shape != r.shape:
        raise ValueError(f"{t.size} times but {r.size} rates")
    if t.size == 0:
        raise InputError(
            "no demand history", key="history", hint="give --load and --growth instead"
        )
    if not np.all(np.isfinite(t)):
        raise InputError("a time is not finite", key="time")
    bad = ~np.isfinite(r) | (r < 0)
    if np.any(bad):
        raise InputError(
            f"{float(r[bad][0])!r} is not a rate: rates are finite and 0 or more", key="rps"
        )
    order = np.argsort(t, kind="stable")
    t, r = t[order], r[order]
    unique, start = np.unique(t, return_index=True)
    return History(unique, np.maximum.reduceat(r, start))


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"{text!r} is not a number") from None
    if not math.isfinite(value):
        raise ValueError(f"{text!r} is not a finite number")
    if value < 0:
        raise ValueError(f"{text} is negative; a rate is 0 or more")
    return value


def parse_history_csv(text: str, file: str = "<stdin>") -> History:
    """
    Parse a demand history CSV: header ``time,rps``, one row per observation.

    ``time`` is ISO-8601 (no offset means UTC) or epoch seconds, as in the samples CSV
    (:func:`capplan.samples.parse_time`); ``rps`` is a finite rate, 0 or more.  Rows may come in
    any order.  The same time twice with the same rate is kept once; with another rate it is an
    error.  Every problem is ``FILE:LINE: column: what is wrong``.

    Args:
        text: The whole file.
        file: Its name, for messages.

    Returns:
        The history, sorted by time; at least 2 points.
    """
    header, records = csv_table(text, file, expected="time,rps")
    if sorted(header) != sorted(_HISTORY_COLUMNS):
        raise InputError(
            f"the header is {','.join(header)!r}",
            file=file,
            line=1,
            key="header",
            hint="a demand history has exactly the columns time,rps",
        )
    seen: dict[float, tuple[int, float]] = {}
    last_line = 1
    for line, cells in records:
        last_line = line
        row = dict(zip(header, (c.strip() for c in cells), strict=True))
        try:
            if not row["time"]:
                raise ValueError("empty; every row needs a time")
            moment = parse_time(row["time"]).timestamp()
        except ValueError as exc:
            raise InputError(str(exc), file=file, line=line, key="time") from None
        try:
            if not row["rps"]:
                raise ValueError("empty; every row needs a rate")
            rate = _rate(row["rps"])
        except ValueError as exc:
            raise InputError(str(exc), file=file, line=line, key="rps") from None
        earlier = seen.get(moment)
        if earlier is not None:
            if earlier[1] == rate:
                continue
            raise InputError(
                f"{row['time']} is also on line {earlier[0]} with rps {earlier[1]:g}",
                file=file,
                line=line,
                key="time",
                hint="keep one of the two rows",
            )
        seen[moment] = (line, rate)
    if len(seen) < 2:
        count = "no rows" if not seen else "only one row"
        raise InputError(
            f"{count} of demand; a history needs at least 2",
            file=file,
            line=last_line,
            hint="add rows, or give --load and --growth instead",
        )
    return history_from(list(seen), [rate for _, rate in seen.values()])


def read_history_csv(path: str | Path) -> History:
    """
    Read a demand history CSV (see :func:`parse_history_csv`); errors name the file.
    """
    return parse_history_csv(read_input(path, "demand history"), str(path))


# --------------------------------------------------------------------------- forecast


_FORECAST_ARRAYS: Final = (
    "times",
    "low",
    "median",
    "high",
    "month_low",
    "month_median",
    "month_high",
    "peak_low",
    "peak_median",
    "peak_high",
)


@dataclass(frozen=True, eq=False)
class Forecast:
    """
    Peak demand (requests per second) over the coming months, with an interval.

    Attributes:
        method: ``growth`` (compound growth from a rate now), ``ets`` (exponential smoothing of
            a history) or ``flat`` (a history too short or too plain to fit: its peak, held).
        level: The interval's coverage, e.g. 0.8: ``low``/``high`` are the 10 % and 90 %
            quantiles.
        origin: The forecast origin, epoch seconds.
        step_s: The step length in seconds (a day).
        times: Each step's end; the step is ``(t - step_s, t]``.  A history forecast's steps are
            UTC days, so the first one may start before the origin (the day in progress).
        low, median, high: The band of each step's peak demand.
        month_low, month_median, month_high: The band of each month's peak demand, month ``m``
            at index ``m - 1`` (see :meth:`month`).
        peak_low, peak_median, peak_high: The band of the running peak: the highest step peak
            from the first step to each step (non-decreasing; used by :func:`exhaustion`).
        current: The demand at the origin: ``--load``, or the history's last day's peak.
        notes: What the reader of the plan should know: the model chosen, what was left out,
            why there is no interval.
    """

    method: str
    level: float
    origin: float
    step_s: float
    times: FloatArray
    low: FloatArray
    median: FloatArray
    high: FloatArray
    month_low: FloatArray
    month_median: FloatArray
    month_high: FloatArray
    peak_low: FloatArray
    peak_median: FloatArray
    peak_high: FloatArray
    current: float
    notes: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        for name in _FORECAST_ARRAYS:
            array = np.array(getattr(self, name), dtype=np.float64)
            array.setflags(write=False)
            object.__setattr__(self, name, array)

    @property
    def horizon_months(self) -> int:
        """
        The number of months forecast.
        """
        return int(self.month_median.size)

    def month(self, m: int) -> tuple[float, float, float]:
        """
        Month ``m``'s (1-based) peak demand: ``(low, median, high)``.

        For a history this is the band of the month's peak over simulated paths, which is higher
        and narrower than the highest per-day quantiles (see the module's notes); for growth it
        is exact.
        """
        if not 1 <= m <= self.horizon_months:
            raise ValueError(f"month {m} is outside the forecast's 1..{self.horizon_months}")
        i = m - 1
        return (float(self.month_low[i]), float(self.month_median[i]), float(self.month_high[i]))


def _check_horizon(horizon_months: int) -> None:
    if isinstance(horizon_months, bool) or not isinstance(horizon_months, int | np.integer):
        raise InputError(f"{horizon_months!r} is not a whole number of months", key="horizon")
    if not 1 <= horizon_months <= MAX_HORIZON_MONTHS:
        raise InputError(
            f"{horizon_months} months is outside 1..{MAX_HORIZON_MONTHS}", key="horizon"
        )


def _quantile_levels(level: float) -> tuple[float, float]:
    if not (isinstance(level, int | float) and 0.0 < level < 1.0):
        raise InputError(f"{level!r} is not a coverage in (0, 1)", key="level", hint="e.g. 0.8")
    return (1.0 - level) / 2.0, (1.0 + level) / 2.0


def _month_slices(times: FloatArray, step_s: float, origin: float, months: int) -> list[slice]:
    """
    For each month, the slice of steps ``(t - step_s, t]`` that overlap it.
    """
    out = []
    starts = times - step_s
    for m in range(1, months + 1):
        first = int(np.searchsorted(times, origin + (m - 1) * MONTH, side="right"))
        stop = int(np.searchsorted(starts, origin + m * MONTH, side="left"))
        out.append(slice(first, max(stop, first + 1)))
    return out


def growth_forecast(
    load_now: float,
    monthly_rate: float,
    horizon_months: int,
    *,
    now: float,
    level: float = 0.8,
) -> Forecast:
    """
    Deterministic compound growth: ``load_now · (1 + monthly_rate)^(t / M)``, daily steps.

    Args:
        load_now: Peak demand now, requests per second (finite, 0 or more).
        monthly_rate: Compound growth per month as a fraction (see :func:`parse_growth`), > -1.
        horizon_months: Months to forecast, 1..120.
        now: The origin, epoch seconds.
        level: Nominal coverage (the band has zero width; kept for the plan's labels).

    Returns:
        A ``growth`` forecast with ``low == median == high``; month ``m``'s peak is exactly
        ``load_now · (1 + monthly_rate)^m`` when growing.
    """
    _check_horizon(horizon_months)
    _quantile_levels(level)
    if not (math.isfinite(load_now) and load_now >= 0):
        raise InputError(f"{load_now!r} is not a rate: 0 or more requests per second", key="load")
    if not (math.isfinite(monthly_rate) and monthly_rate > -1.0):
        raise InputError(f"{monthly_rate!r} is not a growth rate above -100 %", key="growth")
    if not math.isfinite(now):
        raise InputError(f"{now!r} is not a time", key="now")
    steps = math.ceil(horizon_months * MONTH / DAY - 1e-9)
    k = np.arange(1, steps + 1, dtype=np.float64)
    factor = 1.0 + monthly_rate
    with np.errstate(over="ignore"):
        ends = load_now * factor ** (k * DAY / MONTH)
        starts = load_now * factor ** ((k - 1.0) * DAY / MONTH)
        months = np.arange(1, horizon_months + 1, dtype=np.float64)
        month_peak = load_now * np.maximum(factor**months, factor ** (months - 1.0))
    peak = np.maximum(ends, starts)
    notes = (f"compound growth {monthly_rate:+.2%}/month from {load_now:g} rps; no interval",)
    return Forecast(
        method="growth",
        level=level,
        origin=float(now),
        step_s=DAY,
        times=now + k * DAY,
        low=peak,
        median=peak,
        high=peak,
        month_low=month_peak,
        month_median=month_peak,
        month_high=month_peak,
        peak_low=np.maximum.accumulate(peak),
        peak_median=np.maximum.accumulate(peak),
        peak_high=np.maximum.accumulate(peak),
        current=float(load_now),
        notes=notes,
    )


def _day_grid(origin: float, horizon_months: int) -> tuple[int, int]:
    """
    The first and last UTC day (index ``floor(t / DAY)``) a history forecast reports.
    """
    first = math.floor(origin / DAY)
    last = math.ceil((origin + horizon_months * MONTH) / DAY) - 1
    return first, last


def _flat(
    value: float,
    origin: float,
    horizon_months: int,
    level: float,
    current: float,
    notes: list[str],
) -> Forecast:
    first, last = _day_grid(origin, horizon_months)
    times = (np.arange(first, last + 1, dtype=np.float64) + 1.0) * DAY
    band = np.full(times.size, value)
    month = np.full(horizon_months, value)
    return Forecast(
        method="flat",
        level=level,
        origin=origin,
        step_s=DAY,
        times=times,
        low=band,
        median=band,
        high=band,
        month_low=month,
        month_median=month,
        month_high=month,
        peak_low=band,
        peak_median=band,
        peak_high=band,
        current=current,
        notes=tuple(notes),
    )


@dataclass(frozen=True)
class _Candidate:
    result: Any  # statsmodels ETSResults
    name: str
    aicc: float
    sigma: float  # the error's standard deviation, corrected for the fitted parameters
    converged: bool


def _fit_candidates(series: FloatArray, *, seasonal: bool) -> tuple[list[_Candidate], int]:
    """
    Fit the candidate ETS models (additive error) to ``series``: those that fit, and how many
    were tried.

    The damping factor may go up to 0.999 rather than statsmodels' 0.98: that cap is meant for
    monthly or quarterly data, and per day it stops a trend within about two months
    (0.98^30 ≈ 0.55), where 0.999 per day is about 0.97 per month.

    The simulation's error scale is not statsmodels' ``scale`` (the maximum-likelihood
    ``mean(resid²)``, biased low) but ``SSE / (n - k)``, ``k`` counting the smoothing parameters
    and the initial states (level, trend, 6 free seasonals), which the heuristic takes from the
    data too.  It matters for short histories: with 30 days and a weekly season the band is a
    quarter wider, with a year of days 1–2 % wider.
    """
    from statsmodels.tools.sm_exceptions import ConvergenceWarning
    from statsmodels.tsa.exponential_smoothing.ets import ETSModel

    fitted: list[_Candidate] = []
    tried = 0
    n = int(series.size)
    for season in (None, "add") if seasonal else (None,):
        for trend, damped in ((None, False), ("add", False), ("add", True)):
            tried += 1
            with warnings.catch_warnings(), np.errstate(all="ignore"):
                warnings.simplefilter("ignore", ConvergenceWarning)
                try:
                    result = ETSModel(
                        series,
                        error="add",
                        trend=trend,
                        damped_trend=damped,
                        seasonal=season,
                        seasonal_periods=SEASON if season else None,
                        initialization_method="heuristic",
                        bounds={"damping_trend": (0.8, 0.999)} if damped else None,
                    ).fit(disp=False)
                except (ValueError, np.linalg.LinAlgError, FloatingPointError):
                    continue
            aicc, scale = float(result.aicc), float(result.scale)
            if not (math.isfinite(aicc) and math.isfinite(scale)):
                continue
            name = "ETS(A,{},{})".format(
                "N" if trend is None else ("Ad" if damped else "A"), "A" if season else "N"
            )
            k = int(result.df_model) - 1 + 1 + (trend is not None) + (SEASON - 1 if season else 0)
            converged = bool((result.mle_retvals or {}).get("converged", True))
            sigma = math.sqrt(scale * n / max(n - k, 1))
            fitted.append(_Candidate(result, name, aicc, sigma, converged))
    return fitted, tried


def _share_paths(candidates: list[_Candidate], paths: int) -> list[tuple[_Candidate, float, int]]:
    """
    The candidates' Akaike weights (on AICc) and their shares of ``paths`` (largest remainder);
    weights below 1 % are dropped, best first.
    """
    best = min(c.aicc for c in candidates)
    raw = np.array([math.exp(-(c.aicc - best) / 2.0) for c in candidates])
    weights = raw / raw.sum()
    keep = [i for i in np.argsort(-weights, kind="stable") if weights[i] >= MIN_WEIGHT]
    kept = weights[keep] / weights[keep].sum()
    exact = kept * paths
    counts = np.floor(exact).astype(int)
    for i in np.argsort(-(exact - counts), kind="stable")[: paths - int(counts.sum())]:
        counts[i] += 1
    return [
        (candidates[i], float(w), int(c))
        for i, w, c in zip(keep, kept, counts, strict=True)
        if c > 0
    ]


def history_forecast(
    history: History,
    horizon_months: int,
    *,
    now: float | None = None,
    level: float = 0.8,
    seed: int = 0,
) -> Forecast:
    """
    Forecast peak demand from a history, with an interval (see the module's notes).

    Args:
        history: Observed rates.
        horizon_months: Months to forecast, 1..120.
        now: The origin, epoch seconds.  None: the end of the history's last UTC day (every day
            counted complete).  Otherwise the day containing ``now`` is in progress and left out
            of the fit, and points after ``now`` are ignored (so a backtest can cut a history).
        level: The interval's coverage, e.g. 0.8.
        seed: Seeds the simulated paths: the same inputs give the same forecast.

    Returns:
        An ``ets`` forecast, or a ``flat`` one (with a note why) when the history is shorter than
        14 days, constant, or cannot be fitted.
    """
    _check_horizon(horizon_months)
    q_low, q_high = _quantile_levels(level)
    notes: list[str] = []
    times, rps = history.times, history.rps
    if now is None:
        origin = (math.floor(float(times[-1]) / DAY) + 1.0) * DAY
    else:
        origin = float(now)
        if not math.isfinite(origin):
            raise InputError(f"{now!r} is not a time", key="now")
        after = times > origin
        if np.all(after):
            raise InputError("the demand history starts after the forecast origin", key="history")
        if np.any(after):
            notes.append(f"{int(after.sum())} history points after the origin are ignored")
            times, rps = times[~after], rps[~after]
    day = np.floor(times / DAY).astype(np.int64)
    last_day = int(day[-1])
    current = float(rps[day == last_day].max())
    origin_day = math.floor(origin / DAY)
    complete = day < origin_day  # the day containing the origin has not ended
    if not np.all(complete):
        notes.append("the day in progress is left out of the fit")
    observed = float(rps.max())

    days, first_index = np.unique(day[complete], return_index=True)
    peaks = np.maximum.reduceat(rps[complete], first_index) if days.size else np.zeros(0)
    if days.size and days[-1] - days[0] + 1 > MAX_FIT_DAYS:
        keep = days > days[-1] - MAX_FIT_DAYS
        notes.append(f"only the last {MAX_FIT_DAYS} days of history are fitted")
        days, peaks = days[keep], peaks[keep]

    if days.size < MIN_FIT_DAYS:
        notes.append(
            f"the history has {days.size} complete day(s) of demand, fewer than {MIN_FIT_DAYS}:"
            f" no trend or interval can be estimated; the highest rate seen ({observed:g} rps)"
            " is held flat, with no interval (give --growth to plan for growth)"
        )
        return _flat(observed, origin, horizon_months, level, current, notes)
    if float(np.ptp(peaks)) <= 1e-9 * max(1.0, float(peaks.max())):
        notes.append(
            f"the daily peaks are all {float(peaks[0]):g} rps: nothing to fit; held flat,"
            " with no interval"
        )
        return _flat(float(peaks[0]), origin, horizon_months, level, current, notes)

    use_log = bool(np.all(peaks > 0))
    span = np.arange(days[0], days[-1] + 1)
    fitted = np.log(peaks) if use_log else peaks.astype(np.float64)
    series = np.interp(span, days, fitted)
    missing = span.size - days.size
    if missing:
        notes.append(f"{missing} day(s) without data inside the history are interpolated")
    if not use_log:
        notes.append("some days have zero demand: fitted on the raw scale, not the log scale")
    seasonal = span.size >= MIN_SEASONAL_DAYS
    if not seasonal:
        notes.append(
            f"{span.size} days of history: too short for a weekly season"
            f" (needs {MIN_SEASONAL_DAYS})"
        )

    candidates, tried = _fit_candidates(series, seasonal=seasonal)
    if not candidates:
        notes.append(
            f"no exponential smoothing model could be fitted; the highest rate seen"
            f" ({observed:g} rps) is held flat, with no interval"
        )
        return _flat(observed, origin, horizon_months, level, current, notes)

    first, last = _day_grid(origin, horizon_months)
    skip = first - int(span[-1]) - 1  # days between the history's end and the first reported
    steps = last - int(span[-1])
    paths = int(min(MAX_PATHS, max(MIN_PATHS, PATH_BUDGET // steps)))
    mixture = _share_paths(candidates, paths)
    scale = "log" if use_log else "raw"
    weights = ", ".join(f"{c.name} {w:.0%}" for c, w, _ in mixture)
    notes.append(
        f"{weights} (Akaike weights of {tried} candidates) on the {scale} daily peaks"
        f" of {span.size} days"
    )
    if not all(c.converged for c, _, _ in mixture):
        notes.append("a model fit did not converge: the interval may be off")
    if skip > 0:
        notes.append(f"the history ends {skip} day(s) before the forecast starts")
    rng = np.random.default_rng(seed)
    parts = []
    with np.errstate(all="ignore"):
        for candidate, _, count in mixture:
            errors = rng.standard_normal((steps, count)) * candidate.sigma
            part = candidate.result.simulate(
                steps, anchor="end", repetitions=count, random_errors=errors
            )
            parts.append(np.asarray(part, dtype=np.float64).reshape(steps, count))
        simulated = np.hstack(parts)[skip:]
        cap = BAND_CAP * max(observed, 1.0)
        if use_log:
            simulated = np.exp(np.minimum(simulated, math.log(cap)))
        simulated = np.clip(np.nan_to_num(simulated, nan=cap, posinf=cap), 0.0, cap)

    times_out = (np.arange(first, last + 1, dtype=np.float64) + 1.0) * DAY
    low, median, high = np.quantile(simulated, [q_low, 0.5, q_high], axis=1)
    running = np.quantile(np.maximum.accumulate(simulated, axis=0), [q_low, 0.5, q_high], axis=1)
    month_bands = np.array(
        [
            np.quantile(simulated[s].max(axis=0), [q_low, 0.5, q_high])
            for s in _month_slices(times_out, DAY, origin, horizon_months)
        ]
    )
    return Forecast(
        method="ets",
        level=level,
        origin=origin,
        step_s=DAY,
        times=times_out,
        low=low,
        median=median,
        high=high,
        month_low=month_bands[:, 0],
        month_median=month_bands[:, 1],
        month_high=month_bands[:, 2],
        peak_low=running[0],
        peak_median=running[1],
        peak_high=running[2],
        current=current,
        notes=tuple(notes),
    )


# --------------------------------------------------------------------------- exhaustion


@dataclass(frozen=True)
class Exhaustion:
    """
    When demand outgrows the pool: epoch seconds (a step's start), None when not within the
    horizon.

    Attributes:
        early: The day by which demand may have exceeded capacity: the running peak's upper
            quantile exceeds the capacity's low end (with an 80 % level, 10 % of the forecast's
            paths cross the capacity's low end earlier).
        median: The day by which it is as likely as not to have (median against median).
        late: The day by which it almost surely has (the running peak's lower quantile exceeds
            the capacity's high end).
        exceeded_now: Demand at the origin already exceeds the capacity's low end (``early`` is
            then the origin).
        notes: The same in words where it matters.
    """

    early: float | None
    median: float | None
    late: float | None
    exceeded_now: bool = False
    notes: tuple[str, ...] = ()


def exhaustion(forecast: Forecast, capacity: tuple[float, float, float]) -> Exhaustion | None:
    """
    When the forecast demand first exceeds the pool's capacity, as early / median / late dates.

    The dates are quantiles of the first-passage time, read from the running-peak band (see the
    module's notes), combined with the capacity's interval.

    Args:
        forecast: The demand forecast.
        capacity: The pool's capacity interval ``(low, median, high)`` in requests per second.

    Returns:
        The dates (see :class:`Exhaustion`), or None when even the early date is beyond the
        horizon.  A date is the start of the first day that crosses (the origin at the
        earliest); when the demand at the origin already exceeds a bound, that date is the
        origin.
    """
    cap_low, cap_median, cap_high = (float(c) for c in capacity)
    if not (
        not math.isnan(cap_low)
        and 0.0 <= cap_low <= cap_median <= cap_high
        and not math.isnan(cap_high)
    ):
        raise ValueError(f"capacity {capacity!r} is not an interval 0 <= low <= median <= high")
    starts = np.maximum(forecast.times - forecast.step_s, forecast.origin)

    def first(band: FloatArray, bound: float) -> float | None:
        if forecast.current > bound:
            return forecast.origin
        over = np.flatnonzero(band > bound)
        return float(starts[over[0]]) if over.size else None

    early = first(forecast.peak_high, cap_low)
    if early is None:
        return None
    exceeded_now = forecast.current > cap_low
    notes: list[str] = []
    if exceeded_now:
        notes.append(
            f"demand now ({forecast.current:g} rps) already exceeds the capacity's low end"
            f" ({cap_low:g} rps)"
        )
    return Exhaustion(
        early=early,
        median=first(forecast.peak_median, cap_median),
        late=first(forecast.peak_low, cap_high),
        exceeded_now=exceeded_now,
        notes=tuple(notes),
    )
