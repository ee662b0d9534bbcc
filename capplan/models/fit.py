"""
Per-node model fitting, selection and capacity at the SLO (pure: windows in, results out).

Every candidate model is turned into a *latency curve*: the mean and any percentile of the
response time as a function of the offered rate.  Selection compares the curves on one common
observable — the log of each window's latency at the SLO's percentile (its mean when the windows
carry no such percentile), weighted by the windows' request counts: the queueing model is kept
unless another fits significantly better (F test), the others are ranked by AICc, and the
empirical hyperbola must also fit significantly better (``_select``).  The chosen curve
gives the node's capacity at the SLO: the largest offered rate whose predicted percentile stays
within the SLO's latency (and whose observed error rate stays within the SLO's bound).

The capacity interval is the delta method on the log of the capacity, through the parameter
covariance of the fit (Student t on n − k degrees of freedom).  When the windows do not span
enough load to support an answer, the result says so in its warnings and the interval is opened
upward rather than reported as a confident number.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from functools import partial
from typing import Protocol

import numpy as np
import numpy.typing as npt
from scipy import stats

from capplan.models.queueing import (
    PooledQueue,
    Station,
    mgc_wait,
    own_queue_wait_rate,
    relaxation_time,
)
from capplan.models.scaled_fit import (
    BaseFits,
    fit_demand_many,
    fit_hyperbolic_many,
    fit_usl_many,
)
from capplan.models.station_fit import (
    STAT_QUANTILES,
    Packed,
    fit_stations,
    idle_quantile,
    station_capacity,
    window_log_residuals,
    with_given_wait,
)
from capplan.samples import Window

__all__ = [
    "ARRIVALS",
    "LEAST_CONNECTIONS_ARRIVALS",
    "LEAST_CONNECTIONS_PASSES",
    "MODELS",
    "Candidate",
    "LatencyCurve",
    "NodeFit",
    "NodeInput",
    "Observations",
    "SLOTarget",
    "balancer_arrival_scvs",
    "fit_least_connections",
    "fit_measured",
    "fit_node",
    "fit_nodes",
    "observations",
    "with_balancer_arrivals",
]

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.intp]

#: The models ``fit_node`` knows, in the order they are tried.
MODELS = ("mgc", "mmc", "usl", "demand", "hyperbolic")

#: The models that are stations: a slot count, a service time and its variability.
STATIONS = ("mgc", "mmc")

#: The hyperbola replaces the best mechanistic model only when this F test rejects it.
FALLBACK_ALPHA = 0.01

#: A window shows the stationary percentiles when it lasts this many relaxation times of the
#: queue (``_stationary_windows``).  Simulated M/G/c windows (``bench.lab.window_bias``'s
#: recursion, c = 1, 2, 8, exponential and fixed service, ρ = 0.5–0.9, 10 s and 60 s;
#: ``python -m bench.lab.window_bias --relaxations``): the geometric mean of the windows' p99
#: against the model's is 0.50–0.73 under 10 relaxation times, 0.75–1.00 at 10–100, and from
#: 100 on 0.95–1.02 with exponential service, 0.97–1.02 with fixed service on c ≤ 2 and
#: 1.05–1.08 on c = 8 (the model's own error there: its p99 for many fixed slots at moderate
#: loads is up to 7% low; before the wait's exact tail rate, c ≤ 2 read 0.85–0.94).
STATIONARY_RELAXATIONS = 100.0

#: Below this share of the estimated capacity the windows cannot support the number.
SUPPORT_SHARE = 0.3
#: Predictions beyond this multiple of the highest measured rate are extrapolations.
EXTRAPOLATION = 2.0


class LatencyCurve(Protocol):
    """
    Response time (seconds) as a function of the offered rate (requests per second).
    """

    @property
    def saturation(self) -> float:
        """
        The rate at which the latency grows without bound (inf when the model has none).
        """
        ...

    def mean(self, rate: FloatArray) -> FloatArray:
        """
        Mean response time at each rate.
        """
        ...

    def quantile(self, rate: FloatArray, q: float) -> FloatArray:
        """
        The q-quantile (0 < q < 1) of the response time at each rate.
        """
        ...


@dataclass(frozen=True)
class SLOTarget:
    """
    What capacity is measured against: a latency percentile bound and an error-rate bound.
    """

    percentile: float
    latency_ms: float
    max_error_rate: float = 1.0

    @property
    def quantile(self) -> float:
        """
        The percentile as a fraction (99 → 0.99).
        """
        return self.percentile / 100.0

    @property
    def stat(self) -> str | None:
        """
        The window column that carries this percentile, if any (99 → ``p99``).
        """
        key = f"p{self.percentile:g}"
        return key if key in STAT_QUANTILES else None


@dataclass(frozen=True)
class Observations:
    """
    One node's windows as arrays (latencies in seconds, nan where unknown).
    """

    node: str
    rate: FloatArray
    requests: FloatArray
    errors: FloatArray
    latency: dict[str, FloatArray]
    concurrency: FloatArray
    cpu: FloatArray
    #: Each window's inter-arrival scv (1: Poisson; see ``NodeInput.arrival_scv``).
    arrival: FloatArray | None = None
    #: Each window's given wait, (Erlang C, rate of the wait) (see ``NodeInput.wait``).
    wait: tuple[FloatArray, FloatArray] | None = None

    @property
    def n(self) -> int:
        """
        Number of windows.
        """
        return int(self.rate.size)

    @property
    def weight(self) -> FloatArray:
        """
        Each window's weight: its request count over the mean request count.
        """
        return self.requests / float(np.mean(self.requests))

    def has(self, stat: str) -> bool:
        """
        True when at least half of the windows carry ``stat``.
        """
        values = self.latency[stat]
        return bool(np.count_nonzero(np.isfinite(values)) * 2 >= max(self.n, 1))


def observations(
    node: str,
    windows: Sequence[Window],
    arrival_scv: Sequence[float] | None = None,
    wait: tuple[Sequence[float], Sequence[float]] | None = None,
) -> Observations:
    """
    Arrays of one node's windows that carry requests (empty windows say nothing of latency),
    with each one's inter-arrival scv and given wait when given (one per window of
    ``windows``).
    """
    for what, given in (
        ("arrival scvs", arrival_scv),
        ("wait probabilities", None if wait is None else wait[0]),
        ("wait rates", None if wait is None else wait[1]),
    ):
        if given is not None and len(given) != len(windows):
            raise ValueError(f"{node}: {len(given)} {what} for {len(windows)} windows (one each)")
    keep = [w.requests > 0 and w.seconds > 0 for w in windows]
    used = [w for w, k in zip(windows, keep, strict=True) if k]

    def column(get: Callable[[Window], float | None], scale: float = 1.0) -> FloatArray:
        return np.array(
            [np.nan if (v := get(w)) is None else v * scale for w in used], dtype=np.float64
        )

    latency = {
        "mean": column(lambda w: w.mean_ms, 1e-3),
        "p50": column(lambda w: w.p50_ms, 1e-3),
        "p95": column(lambda w: w.p95_ms, 1e-3),
        "p99": column(lambda w: w.p99_ms, 1e-3),
    }
    for values in latency.values():  # a latency of zero cannot be logged: unknown
        values[values <= 0] = np.nan
    return Observations(
        node=node,
        rate=np.array([w.rate for w in used], dtype=np.float64),
        requests=np.array([w.requests for w in used], dtype=np.float64),
        errors=np.array([w.errors for w in used], dtype=np.float64),
        latency=latency,
        concurrency=column(lambda w: w.concurrency),
        cpu=column(lambda w: w.cpu_util),
        arrival=None if arrival_scv is None else _kept(arrival_scv, keep),
        wait=None if wait is None else (_kept(wait[0], keep), _kept(wait[1], keep)),
    )


def _kept(values: Sequence[float], keep: Sequence[bool]) -> FloatArray:
    return np.array([v for v, k in zip(values, keep, strict=True) if k], dtype=np.float64)


#: How a pool's windows were measured (the inventory's ``arrivals``): each node driven alone
#: or at random (Poisson traffic), or behind a balancer using round robin, least connections
#: (the fewest open requests per weight: nginx's ``least_conn``, LVS's ``lc`` and ``wlc``) or
#: the shortest expected delay (the fewest open requests plus one per weight: HAProxy's
#: ``leastconn``, LVS's ``sed`` and ``nq``; and a balancer that holds the queue itself).
LEAST_CONNECTIONS_ARRIVALS = ("least_connections", "shortest_expected_delay")
ARRIVALS = ("poisson", "round_robin", *LEAST_CONNECTIONS_ARRIVALS)

#: Fits nodes (``fit_nodes``'s signature; e.g. ``fit_in_batches`` with its processes).
Fitter = Callable[..., list["NodeFit"]]


def fit_measured(
    inputs: Sequence[NodeInput],
    slo: SLOTarget,
    *,
    arrivals: str = "poisson",
    pool: Sequence[NodeInput] | None = None,
    model: str = "auto",
    utilization_ceiling: float = 0.8,
    fit: Fitter | None = None,
) -> list[NodeFit]:
    """
    Fit ``inputs`` as their windows were measured (``ARRIVALS``).

    Args:
        inputs: The nodes to fit.
        slo: The latency percentile and error bounds.
        arrivals: ``poisson`` (each window Poisson traffic); ``round_robin`` (each window's
            share of the pool's stream as its inter-arrival scv, ``with_balancer_arrivals``);
            ``least_connections`` (the pool's queue, each request waiting at its own node) or
            ``shortest_expected_delay`` (the pool's shared queue): ``fit_least_connections``.
        pool: Every node measured behind the same balancer (default: ``inputs``); shares and
            the pool's queue come from all of them, whichever are fitted.
        model: ``auto`` or one of ``MODELS``.
        utilization_ceiling: The CPU utilization the ``demand`` model may reach.
        fit: What fits nodes (default ``fit_nodes``); least connections call it
            ``LEAST_CONNECTIONS_PASSES`` times over the pool.

    Returns:
        One fit per input, in order.

    Raises:
        ValueError: an unknown ``arrivals``; ``least_connections`` or
            ``shortest_expected_delay`` with a node of the pool that has windows but no
            ``workers``.
    """
    if arrivals not in ARRIVALS:
        raise ValueError(f"arrivals must be one of {', '.join(ARRIVALS)}: {arrivals!r}")
    fitter = fit_nodes if fit is None else fit
    everyone = list(inputs if pool is None else pool)
    if arrivals == "poisson":
        return fitter(inputs, slo, model=model, utilization_ceiling=utilization_ceiling)
    if arrivals == "round_robin":
        shared = with_balancer_arrivals(inputs, {n.node: n.windows for n in everyone})
        return fitter(shared, slo, model=model, utilization_ceiling=utilization_ceiling)
    measured = [n for n in everyone if any(w.requests > 0 for w in n.windows)]
    fitted = dict(
        zip(
            (n.node for n in measured),
            fit_least_connections(
                measured,
                slo,
                model=model,
                utilization_ceiling=utilization_ceiling,
                own_queues=arrivals == "least_connections",
                fit=fitter,
            )
            if measured
            else [],
            strict=True,
        )
    )
    rest = [n for n in inputs if n.node not in fitted]  # no windows: fit_nodes says so
    alone = fit_nodes(rest, slo, model=model, utilization_ceiling=utilization_ceiling)
    for n, f in zip(rest, alone if rest else [], strict=True):
        fitted[n.node] = f
    return [fitted[n.node] for n in inputs]


#: Rounds of ``fit_least_connections``: each refits every node with the pool's wait from the
#: previous round's stations (on the lab's pool the capacities move by < 0.1% after the third).
LEAST_CONNECTIONS_ROUNDS = 4
#: How far each round moves the stations towards their refit (geometrically, in the service
#: time and its scv).  A full step swings: stations refitted slower make the pool's queue
#: longer, which the next refit answers with faster ones, and so on; on the lab's ramps through
#: the real nginx and HAProxy least connections (exponential service) the full-step iteration
#: settled with every node 5–9% under its capacity, the half step within 3%
#: (``python -m bench.lab.through``).
LEAST_CONNECTIONS_STEP = 0.5
#: How many times ``fit_least_connections`` fits the whole pool: once with the balancer's
#: interleaved arrivals, then once per round and once more with the last round's wait.
LEAST_CONNECTIONS_PASSES = LEAST_CONNECTIONS_ROUNDS + 2


def fit_least_connections(
    nodes: Sequence[NodeInput],
    slo: SLOTarget,
    *,
    model: str = "auto",
    utilization_ceiling: float = 0.8,
    rounds: int = LEAST_CONNECTIONS_ROUNDS,
    own_queues: bool = False,
    fit: Fitter | None = None,
) -> list[NodeFit]:
    """
    Fit a pool whose windows were measured behind least connections.

    Least connections sends a node a request when it has the fewest open ones: a node waits
    when the whole pool is busy.  With the shortest expected delay (``own_queues`` false:
    HAProxy's ``leastconn``, which ranks a busy node by its open requests plus one per weight
    and so fills the larger nodes' queues first, or a balancer that holds the queue itself) a
    request's wait is that of one queue the pool shares (``PooledQueue``: the nodes' slots and
    service rates added up) at the pool's rate in its window, its service its node's.  With
    ``own_queues`` (the fewest open requests per weight: nginx's ``least_conn``, LVS's ``wlc``)
    the requests that wait are spread over the nodes' own queues in proportion, and each waits
    for its own node's slots: the pool's wait made per node by ``own_queue_wait_rate``, longer
    on the small nodes.

    Each node's service time and variability are fitted with that wait given per window (the
    pool's rate: the requests of every node's window of the same start and length), from
    stations fitted first with the balancer's interleaved arrivals; the pool's wait is
    recomputed ``rounds`` times, each time from stations moved ``LEAST_CONNECTIONS_STEP`` of
    the way to their refit.  A node's own latencies cannot tell its slot count there (it
    rarely queues alone), so every node needs ``workers``.  Each capacity is the node's own,
    for Poisson traffic.  ``fit`` fits the pool in each pass (default ``fit_nodes``; e.g.
    ``fit_in_batches`` over worker processes, which gives the same answers).

    Raises:
        ValueError: when a node has no ``workers``.
    """
    missing = [n.node for n in nodes if n.workers is None]
    if missing:
        raise ValueError(
            "behind least connections a node's slot count cannot be fitted from its windows; "
            "give workers for " + ", ".join(missing)
        )
    if model != "auto" and model not in MODELS:
        raise ValueError(f"model must be 'auto' or one of {', '.join(MODELS)}: {model!r}")
    scvs = balancer_arrival_scvs({n.node: n.windows for n in nodes})
    current = [replace(n, arrival_scv=scvs[n.node]) for n in nodes]
    # the rounds need only the stations: M/G/c, or M/M/c for windows without percentiles
    has_percentiles = all(any(w.p50_ms or w.p95_ms or w.p99_ms for w in n.windows) for n in nodes)
    station_model = "mgc" if has_percentiles else "auto"
    fitter = fit_nodes if fit is None else fit
    fits = fitter(current, slo, model=station_model, utilization_ceiling=utilization_ceiling)
    pooled = _pool_requests({n.node: n.windows for n in nodes})
    stations = [_station_of(f, n) for f, n in zip(fits, nodes, strict=True)]
    for step in range(rounds + 1):
        pool = PooledQueue(tuple(stations), tuple(int(n.workers or 1) for n in nodes))
        wait = pool.wait_station
        current = []
        for i, n in enumerate(nodes):
            rates = np.array(
                [
                    pooled[(w.start, w.seconds)][0] / w.seconds if not math.isnan(a) else math.nan
                    for w, a in zip(n.windows, scvs[n.node], strict=True)
                ]
            )
            ok = np.isfinite(rates) & (rates < wait.max_rate)
            with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
                c_wait, theta = mgc_wait(
                    np.where(ok, rates, 0.0), wait.servers, wait.service_time, wait.scv
                )
            if own_queues:
                theta = own_queue_wait_rate(theta, float(pool.rates[i]), pool.max_rate)
            given = (
                np.where(ok, c_wait, math.nan).tolist(),
                np.where(ok, theta, math.nan).tolist(),
            )
            current.append(replace(n, arrival_scv=scvs[n.node], wait=given))
        last = step == rounds
        fits = fitter(
            current,
            slo,
            model=model if last else station_model,
            utilization_ceiling=utilization_ceiling,
        )
        if not last:
            stations = [
                _step_towards(old, _station_of(f, n, keep=old), LEAST_CONNECTIONS_STEP)
                for f, n, old in zip(fits, nodes, stations, strict=True)
            ]
    return fits


def _step_towards(
    old: tuple[float, float, float], new: tuple[float, float, float], step: float
) -> tuple[float, float, float]:
    """
    A station ``step`` of the way from ``old`` to ``new`` in log service time and log scv (the
    slot count is the node's given one in both).
    """
    servers, s_old, v_old = old
    _, s_new, v_new = new
    return (
        servers,
        s_old ** (1.0 - step) * s_new**step,
        v_old ** (1.0 - step) * v_new**step,
    )


def _station_of(
    fit: NodeFit, node: NodeInput, keep: tuple[float, float, float] | None = None
) -> tuple[float, float, float]:
    """
    The node's fitted station (M/G/c, else M/M/c) as (servers, service time, scv); ``keep``
    (or, without one, the node's lowest mean latency as an exponential service time) where the
    fit failed.
    """
    mgc = next((c for c in fit.candidates if c.model in STATIONS and c.success), None)
    if mgc is not None:
        p = mgc.params
        return float(p["servers"]), float(p["service_ms"]) / 1e3, float(p["scv"])
    if keep is not None:
        return keep
    means = [w.mean_ms for w in node.windows if w.mean_ms]
    return float(node.workers or 1), (min(means) if means else 1.0) / 1e3, 1.0


def _arrivals_known(obs: Observations) -> tuple[Observations, list[str]]:
    """
    ``obs`` with unknown (nan) arrival scvs taken as 1 (Poisson), and a warning naming them.
    """
    if obs.arrival is None or not np.any(unknown := np.isnan(obs.arrival)):
        return obs, []
    count = int(np.count_nonzero(unknown))
    warning = (
        f"{count} of {obs.n} windows line up with no other node's (same start and length), so "
        "nothing tells their share of the balancer's stream: fitted as Poisson traffic, which "
        "overstates the capacity when they were measured behind the balancer; store every "
        "node's windows on the same boundaries (capplan collect does)"
    )
    return replace(obs, arrival=np.where(unknown, 1.0, obs.arrival)), [warning]


# --------------------------------------------------------------------------------------------
# latency curves


@dataclass(frozen=True)
class _StationCurve:
    """
    An M/G/c station as a latency curve.
    """

    station: Station

    @property
    def saturation(self) -> float:
        return self.station.max_rate

    def mean(self, rate: FloatArray) -> FloatArray:
        r = np.asarray(rate, dtype=np.float64)
        out = np.full(r.shape, np.inf)
        ok = r < self.saturation
        if np.any(ok):
            out[ok] = self.station.mean_response(np.maximum(r[ok], 0.0))
        return out

    def quantile(self, rate: FloatArray, q: float) -> FloatArray:
        row: FloatArray = self.quantiles(rate, np.array([[q]]))[0]
        return row

    def quantiles(self, rate: FloatArray, qs: FloatArray) -> FloatArray:
        """
        Quantiles ``qs`` (a column, shape (k, 1)) at each rate: shape (k, len(rate)).
        """
        r = np.asarray(rate, dtype=np.float64)
        out = np.full((qs.shape[0], r.size), np.inf)
        ok = r < self.saturation
        if np.any(ok):
            out[:, ok] = self.station.response_quantile(qs, np.maximum(r[ok], 0.0)[None, :])
        return out


@dataclass(frozen=True)
class _ScaledCurve:
    """
    A base curve times a fitted factor per stat (for models that predict one statistic only).

    A quantile with no fitted factor is scaled from the nearest fitted one as an exponential
    tail would be: factor(q) = factor(q0) · ln(1 − q) / ln(1 − q0).
    """

    base: Callable[[FloatArray], FloatArray]
    sat: float
    factors: dict[str, float]

    @property
    def saturation(self) -> float:
        return self.sat

    def mean(self, rate: FloatArray) -> FloatArray:
        return self.factors["mean"] * self.base(rate)

    def quantile(self, rate: FloatArray, q: float) -> FloatArray:
        row = np.array([[self.factors.get(key, np.nan) for key in STAT_QUANTILES]])
        return float(_slo_factor(row, q)[0]) * self.base(rate)


# --------------------------------------------------------------------------------------------
# candidates


@dataclass(frozen=True)
class Candidate:
    """
    One model fitted to one node: its parameters, fit quality and capacity.
    """

    model: str
    params: dict[str, float]
    stderr: dict[str, float]
    k: int
    n: int
    rss: float
    aicc: float
    capacity_rps: float
    capacity_interval: tuple[float, float]
    success: bool
    message: str
    curve: LatencyCurve | None = field(default=None, compare=False, repr=False)
    #: What the node's result must warn of when this candidate is chosen.
    warnings: tuple[str, ...] = ()
    #: Per window, √weight × the log residual on the common statistic (``rss`` is their sum of
    #: squares); nan where the window has no such statistic.  None: not kept.
    residuals: FloatArray | None = field(default=None, compare=False, repr=False)


# --------------------------------------------------------------------------------------------
# selection


def _aicc(rss: float, n: int, k: int) -> float:
    if n - k - 1 <= 0 or rss <= 0:
        return math.inf
    return n * math.log(rss / n) + 2 * k + 2 * k * (k + 1) / (n - k - 1)


# --------------------------------------------------------------------------------------------
# the node


@dataclass(frozen=True)
class NodeFit:
    """
    One node's chosen model and its capacity at the SLO.

    ``capacity_interval`` is a 95% interval; its upper end is inf when the data cannot bound it.
    ``candidates`` holds every model tried (for reports and ``--model`` comparisons).
    """

    node: str
    model: str
    params: dict[str, float]
    stderr: dict[str, float]
    capacity_rps: float
    capacity_interval: tuple[float, float]
    warnings: tuple[str, ...]
    windows: int
    max_observed_rps: float
    selection: str
    candidates: tuple[Candidate, ...]
    success: bool
    message: str

    @property
    def curve(self) -> LatencyCurve | None:
        """
        The chosen model's latency curve.
        """
        for c in self.candidates:
            if c.model == self.model:
                return c.curve
        return None


def _error_cap(obs: Observations, slo: SLOTarget) -> tuple[float, list[str]]:
    """
    The rate above which windows break the SLO's error bound, judged by a one-sided binomial
    test (p < 0.01) so that one error in a small window does not count.
    """
    warnings: list[str] = []
    if slo.max_error_rate >= 1:
        return math.inf, warnings
    order = np.argsort(obs.rate)
    bad = [
        i
        for i in order
        if obs.errors[i] > 0
        and stats.binomtest(
            int(obs.errors[i]), int(obs.requests[i]), slo.max_error_rate, alternative="greater"
        ).pvalue
        < 0.01
    ]
    if not bad:
        return math.inf, warnings
    first = float(obs.rate[bad[0]])
    below = obs.rate[obs.rate < first]
    total = float(np.sum(obs.errors)) / float(np.sum(obs.requests))
    if below.size == 0:
        warnings.append(
            f"error rate {total:.3%} breaks the SLO's {slo.max_error_rate:.3%} even at the "
            "lowest measured load: fix the errors before planning capacity"
        )
        return 0.0, warnings
    cap = float(np.max(below))
    warnings.append(
        f"windows from {first:.4g} rps break the SLO's error bound "
        f"({slo.max_error_rate:.3%}): capacity capped at {cap:.4g} rps"
    )
    return cap, warnings


@dataclass(frozen=True)
class NodeInput:
    """
    One node to fit: its name, its windows and, when known, its slot count.
    """

    node: str
    windows: Sequence[Window]
    workers: int | None = None
    #: Per window, the scv of its requests' inter-arrival times (None: 1 for every window,
    #: Poisson traffic; nan: unknown, taken as 1 with a warning).  Behind a balancer that
    #: interleaves one stream (round robin; least connections at least as evenly) it is the
    #: node's share of the stream in that window (``balancer_arrival_scvs``): the station is
    #: fitted to the waits those arrivals make (Allen–Cunneen's (ca² + scv)/2), and its
    #: capacity is still that of Poisson traffic.
    arrival_scv: Sequence[float] | None = None
    #: Per window, the wait its requests met when the node is one of a pool behind least
    #: connections, which queues the pool's requests as one queue, or as the nodes' own queues
    #: in proportion (``fit_least_connections``): (Erlang C per window, the rate of the
    #: exponential wait per window); nan in both where the node's own wait applies.  None: the
    #: node's own wait everywhere.
    wait: tuple[Sequence[float], Sequence[float]] | None = None


def fit_node(
    node: str,
    windows: Sequence[Window],
    slo: SLOTarget,
    *,
    model: str = "auto",
    workers: int | None = None,
    utilization_ceiling: float = 0.8,
) -> NodeFit:
    """
    Fit the candidate models to one node's windows and report its capacity at the SLO.

    The same as ``fit_nodes`` with one node (see there).
    """
    [fit] = fit_nodes(
        [NodeInput(node, windows, workers)],
        slo,
        model=model,
        utilization_ceiling=utilization_ceiling,
    )
    return fit


def fit_nodes(
    nodes: Sequence[NodeInput],
    slo: SLOTarget,
    *,
    model: str = "auto",
    utilization_ceiling: float = 0.8,
) -> list[NodeFit]:
    """
    Fit the candidate models to each node's windows and report each capacity at the SLO.

    The station models (mgc, mmc) of all nodes are fitted together, with the maths batched
    over nodes in NumPy; the others node by node.

    Args:
        nodes: The nodes, each with its windows (empty windows are ignored).
        slo: The latency percentile and error bounds.
        model: ``auto`` (select by AICc) or one of MODELS.
        utilization_ceiling: The CPU utilization the ``demand`` model may reach.

    Returns:
        One fit per node, in order; ``success`` is False (with a message) for a node where
        nothing could be fitted.
    """
    if model != "auto" and model not in MODELS:
        raise ValueError(f"model must be 'auto' or one of {', '.join(MODELS)}: {model!r}")
    plans = [_plan(item, slo, model) for item in nodes]
    station: dict[tuple[int, str], Candidate] = {}
    for name in STATIONS:
        wanted = [i for i, p in enumerate(plans) if p.obs.n >= 4 and name in p.wanted]
        if name == "mgc":
            usable = [i for i in wanted if plans[i].has_percentiles]
            for i in sorted(set(wanted) - set(usable)):
                station[(i, name)] = _failed(
                    name, "needs latency percentiles to estimate the service-time variability"
                )
            wanted = usable
        for fixed in (False, True):
            group = [i for i in wanted if (nodes[i].workers is not None) == fixed]
            if group:
                found = _station_candidates(
                    [plans[i] for i in group],
                    [nodes[i].workers for i in group] if fixed else None,
                    scv_free=name == "mgc",
                    slo=slo,
                )
                station.update({(i, name): c for i, c in zip(group, found, strict=True)})
    scaled: dict[tuple[int, str], Candidate] = {}
    for name in ("usl", "demand", "hyperbolic"):
        wanted = [i for i, p in enumerate(plans) if p.obs.n >= 4 and name in p.wanted]
        if wanted:
            found = _scaled_candidates(name, [plans[i] for i in wanted], slo, utilization_ceiling)
            scaled.update({(i, name): c for i, c in zip(wanted, found, strict=True)})
    out = []
    for i, plan in enumerate(plans):
        if plan.obs.n < 4:
            out.append(_empty(plan, f"{plan.obs.n} windows with requests: at least 4 are needed"))
            continue
        candidates = [station.get((i, name)) or scaled[(i, name)] for name in plan.wanted]
        out.append(_finish(plan, candidates, slo, model))
    return out


@dataclass(frozen=True)
class _Plan:
    """
    What will be tried for one node.
    """

    node: str
    obs: Observations
    wanted: tuple[str, ...]
    common: str
    has_percentiles: bool
    warnings: tuple[str, ...]


def balancer_arrival_scvs(windows: Mapping[str, Sequence[Window]]) -> dict[str, list[float]]:
    """
    Per node and window, its requests' inter-arrival scv behind a balancer that spreads one
    Poisson stream over the nodes: the node's share of the requests of every node's window of
    the same start and length.

    Round robin hands a node of share p every (1/p)-th request of the stream, so its gaps are
    Erlang-(1/p): scv p.  Least connections spreads the stream at least as evenly.  A window
    that no other node has one of alike gets nan: nothing tells its share (the fit takes it as
    Poisson traffic and says so).

    Args:
        windows: Each node's windows (the pool behind one balancer).

    Returns:
        Per node, one scv per window, in the order of its windows.
    """
    pooled = _pool_requests(windows)
    out: dict[str, list[float]] = {}
    for node, ws in windows.items():
        shares = []
        for w in ws:
            total, count = pooled[(w.start, w.seconds)]
            shares.append(math.nan if count < 2 or total <= 0 else w.requests / total)
        out[node] = shares
    return out


def _pool_requests(
    windows: Mapping[str, Sequence[Window]],
) -> dict[tuple[object, float], tuple[int, int]]:
    """
    Per window start and length, the pool's requests in it and how many nodes have one.
    """
    out: dict[tuple[object, float], tuple[int, int]] = {}
    for ws in windows.values():
        for w in ws:
            total, count = out.get((w.start, w.seconds), (0, 0))
            out[(w.start, w.seconds)] = (total + w.requests, count + 1)
    return out


def with_balancer_arrivals(
    inputs: Sequence[NodeInput], pool: Mapping[str, Sequence[Window]]
) -> list[NodeInput]:
    """
    ``inputs`` with each window's arrival scv behind the balancer, from the shares of the
    whole ``pool``'s windows (``balancer_arrival_scvs``; a node fitted alone is still one of
    the pool that shared the stream).
    """
    scvs = balancer_arrival_scvs({**pool, **{i.node: i.windows for i in inputs}})
    return [replace(i, arrival_scv=scvs[i.node]) for i in inputs]


def _plan(item: NodeInput, slo: SLOTarget, model: str) -> _Plan:
    obs, warnings = _arrivals_known(
        observations(item.node, item.windows, item.arrival_scv, item.wait)
    )
    common = slo.stat if slo.stat is not None and obs.has(slo.stat) else "mean"
    has_percentiles = any(obs.has(k) for k in ("p50", "p95", "p99"))
    wanted = list(MODELS) if model == "auto" else [model]
    if model == "auto":
        wanted.remove("mgc" if not has_percentiles else "mmc")
        if not has_percentiles:
            warnings.append(
                "the windows carry no latency percentiles, so the service-time variability "
                "cannot be estimated: assuming exponential service (M/M/c)"
            )
    return _Plan(item.node, obs, tuple(wanted), common, has_percentiles, tuple(warnings))


def _failed(name: str, message: str) -> Candidate:
    return Candidate(
        name, {}, {}, 0, 0, math.inf, math.inf, math.nan, (math.nan, math.nan), False, message
    )


def _empty(plan: _Plan, message: str, candidates: Sequence[Candidate] = ()) -> NodeFit:
    obs = plan.obs
    return NodeFit(
        node=plan.node,
        model="",
        params={},
        stderr={},
        capacity_rps=math.nan,
        capacity_interval=(math.nan, math.nan),
        warnings=plan.warnings,
        windows=obs.n,
        max_observed_rps=float(np.max(obs.rate)) if obs.n else 0.0,
        selection="",
        candidates=tuple(candidates),
        success=False,
        message=message,
    )


def _finish(plan: _Plan, candidates: list[Candidate], slo: SLOTarget, model: str) -> NodeFit:
    """
    Choose among a node's candidates, apply the error bound and the honesty checks.
    """
    obs = plan.obs
    warnings = list(plan.warnings)
    usable = [c for c in candidates if c.success and math.isfinite(c.capacity_rps)]
    if not usable:
        reasons = "; ".join(f"{c.model}: {c.message}" for c in candidates)
        return _empty(plan, f"no model could be fitted ({reasons})", candidates)
    if model == "auto":
        chosen, selection = _select(usable, plan.common, _stationary_windows(usable, obs))
        if plan.common == slo.stat:
            # "met" beyond the windows' scatter (2 sd of the log residuals about the curve that
            # fits them best): a window a hair under the SLO is no evidence against capacity 0
            scatter = min(math.sqrt(c.rss / max(c.n - c.k, 1)) for c in usable)
            chosen, selection, contradiction = _consistent(
                chosen,
                selection,
                usable,
                _held_rate(obs, plan.common, slo.latency_ms * 1e-3, HELD_MARGIN_SD * scatter),
            )
            if contradiction:
                warnings.append(contradiction)
    else:
        chosen = usable[0]
        selection = "asked for"
    capacity, interval = chosen.capacity_rps, chosen.capacity_interval
    warnings.extend(chosen.warnings)
    error_cap, error_warnings = _error_cap(obs, slo)
    warnings.extend(error_warnings)
    if error_cap < capacity:
        capacity = error_cap
        interval = (min(interval[0], capacity), min(interval[1], capacity))
    rmax = float(np.max(obs.rate))
    if capacity > 0 and rmax < SUPPORT_SHARE * capacity:
        warnings.append(
            f"every window is below {rmax / capacity:.0%} of the estimated capacity "
            f"({rmax:.4g} of {capacity:.4g} rps): the data cannot support this number; "
            "measure at higher load"
        )
        interval = (min(interval[0], rmax), math.inf)
    elif capacity > EXTRAPOLATION * rmax:
        warnings.append(
            f"capacity {capacity:.4g} rps is beyond {EXTRAPOLATION:g}× the highest measured "
            f"rate ({rmax:.4g} rps): an extrapolation"
        )
    return NodeFit(
        node=plan.node,
        model=chosen.model,
        params=chosen.params,
        stderr=chosen.stderr,
        capacity_rps=capacity,
        capacity_interval=interval,
        warnings=tuple(warnings),
        windows=obs.n,
        max_observed_rps=rmax,
        selection=selection,
        candidates=tuple(candidates),
        success=True,
        message=chosen.message,
    )


#: A model whose capacity is below this share of the rate every window up to met the SLO
#: contradicts the windows (see ``_consistent``).
CONTRADICTION_SHARE = 0.5
#: ... where a window "met" it by this many standard deviations of the log residuals about the
#: best-fitting candidate.
HELD_MARGIN_SD = 2.0


def _held_rate(obs: Observations, stat: str, latency_s: float, margin: float = 0.0) -> float:
    """
    The highest rate up to which every window met the SLO's latency (0 when the lowest did not),
    each by ``margin`` on the log scale over the square root of its weight (a window's log
    residual variance is the fit's over its weight).

    The windows' own evidence of what the node takes: noisy one by one, but a model that puts
    capacity far below it contradicts them.
    """
    values = obs.latency[stat]
    ok = np.isfinite(values) & (obs.weight > 0)
    order = np.argsort(obs.rate[ok], kind="stable")
    limit = np.log(latency_s) - margin / np.sqrt(obs.weight[ok][order])
    rates, met = obs.rate[ok][order], np.log(values[ok][order]) <= limit
    held = 0.0
    for rate, good in zip(rates.tolist(), met.tolist(), strict=True):
        if not good:
            break
        held = rate
    return held


def _least_aicc(candidates: Sequence[Candidate]) -> Candidate:
    """
    The candidate of least AICc; ties go to the model listed first in MODELS.
    """
    rank = {m: i for i, m in enumerate(MODELS)}
    return min(candidates, key=lambda c: (c.aicc, rank[c.model]))


def _best_station(usable: Sequence[Candidate]) -> Candidate | None:
    """
    The queueing candidate (M/G/c or M/M/c) of least AICc; None when there is none.
    """
    stations = [c for c in usable if c.model in STATIONS and math.isfinite(c.aicc)]
    return _least_aicc(stations) if stations else None


def _consistent(
    chosen: Candidate, selection: str, usable: Sequence[Candidate], held: float
) -> tuple[Candidate, str, str | None]:
    """
    The chosen model, unless its capacity contradicts the windows: below CONTRADICTION_SHARE of
    the rate up to which every window met the SLO.  Then the best-AICc model that does not, with
    a warning.  A guard: the lab's c = 2 node was once fitted M/G/c c = 3, S = 29 ms on noisy
    10 s windows (capacity 0 where the windows met the SLO up to 48 rps; the truth was 54.5).
    """
    floor = CONTRADICTION_SHARE * held
    if held <= 0 or chosen.capacity_rps >= floor:
        return chosen, selection, None
    others = [c for c in usable if c.capacity_rps >= floor and math.isfinite(c.aicc)]
    if not others:
        return (
            chosen,
            selection,
            (
                f"{chosen.model}'s capacity {chosen.capacity_rps:.4g} rps contradicts the windows, "
                f"which met the SLO up to {held:.4g} rps, and no other model agrees with them"
            ),
        )
    other = _least_aicc(others)
    warning = (
        f"{chosen.model} put capacity at {chosen.capacity_rps:.4g} rps, below half of the "
        f"{held:.4g} rps up to which every window met the SLO: {other.model} is used instead"
    )
    return other, selection + f"; {chosen.model} contradicted the windows", warning


def _stationary_windows(usable: Sequence[Candidate], obs: Observations) -> BoolArray | None:
    """
    The windows long enough to show the stationary percentiles the models predict: at least
    ``STATIONARY_RELAXATIONS`` relaxation times of the best queueing candidate's queue; None
    when every window is (or there is no queueing candidate to tell).

    A window's percentile rests on the queue's excursions within it.  Near saturation those
    are long and rare, and a short window mostly misses them: its p99 is below the stationary
    one (simulated by ``bench.lab.window_bias``; the lab's 10 s windows at ρ ≈ 0.7–0.95 read
    20–50% low).  A free-form curve follows them and, on the F test over every window, beats
    the queueing model that predicts the stationary p99 — and overstates the capacity (the
    lab's c = 2 fixed-service node: hyperbola 85.8 rps, M/G/c 79.8, stationary 80.0).  The
    relaxation time is the queue's heavy-traffic one (``queueing.relaxation_time``).
    """
    station = _best_station(usable)
    if station is None:
        return None
    tau = relaxation_time(
        station.params["servers"],
        station.params["service_ms"] * 1e-3,
        station.params.get("scv", 1.0),
        obs.rate,
    )
    seconds = obs.requests / obs.rate
    keep: BoolArray = seconds >= STATIONARY_RELAXATIONS * tau
    return None if bool(np.all(keep)) else keep


def _select(
    usable: Sequence[Candidate], common: str, stationary: BoolArray | None = None
) -> tuple[Candidate, str]:
    """
    The queueing model (M/G/c or M/M/c) unless another fits significantly better; among the
    others, the mechanistic model with the least AICc unless the empirical hyperbola fits
    significantly better than every one of them.

    "Significantly": the residual-variance ratio on the common statistic beyond the F
    distribution's ``1 − FALLBACK_ALPHA`` quantile on the two fits' residual degrees of freedom,
    over the ``stationary`` windows (``_stationary_windows``; all when None) — too few of them
    to test, and the queueing model stands.
    Plain AICc picked models that fit the noise: the hyperbola ("for when nothing else fits")
    has as many parameters as M/G/c and no structure, and won AICc on a few noisy windows (the
    lab's c = 2 node: hyperbola −17% against the measured capacity, M/G/c within 3%); the USL
    won it by 2–15 on nodes measured to 50–65% of capacity (bench.fit's pool, where the truth
    is an M/G/c station: 12 of 400 nodes, the USL's capacity off by a median 218%, M/G/c's by
    6%), and on every lab node where a model other than the station was selected, the
    station's capacity was nearer the simulated stationary one.
    """
    pick, why = _select_free(usable, common, stationary)
    station = _best_station(usable)
    if pick.model in STATIONS or station is None:
        return pick, why
    mechanistic = [c for c in usable if c.model != "hyperbolic" and math.isfinite(c.aicc)]
    if pick.model == "hyperbolic" and station is _least_aicc(mechanistic):
        return pick, why  # the hyperbola was tested against the station already
    better = _significantly_better(pick, station, stationary)
    if better is None:
        if stationary is None:
            return pick, why
        return station, (
            f"{why}; too few windows long enough to show stationary percentiles to test the "
            f"queueing model {station.model} against {pick.model}: {station.model} is kept"
        )
    ratio, limit, significant = better
    if not significant:
        return station, (
            f"{why}; {pick.model} fits no significantly better than the queueing model "
            f"{station.model} (variance ratio {ratio:.3g} ≤ {limit:.3g}"
            f"{_over(stationary)}), which is kept"
        )
    return pick, (
        f"{why}; {station.model} lacks fit against it (variance ratio {ratio:.3g} > "
        f"{limit:.3g}{_over(stationary)})"
    )


def _over(stationary: BoolArray | None) -> str:
    """
    Which windows an F test was over, when not all.
    """
    if stationary is None:
        return ""
    return (
        f" over the {int(np.count_nonzero(stationary))} of {stationary.size} windows long "
        "enough to show stationary percentiles"
    )


def _significantly_better(
    challenger: Candidate, incumbent: Candidate, windows: BoolArray | None = None
) -> tuple[float, float, bool] | None:
    """
    The F test of ``challenger`` against ``incumbent`` over ``windows`` (all when None, or
    when either candidate kept no residuals): (variance ratio, its limit, whether beyond it);
    None where either has no residual degrees of freedom or a perfect fit.
    """
    n_i, rss_i = _on(incumbent, windows)
    n_c, rss_c = _on(challenger, windows)
    dof_i, dof_c = n_i - incumbent.k, n_c - challenger.k
    if dof_i <= 0 or dof_c <= 0 or rss_c <= 0:
        return None
    ratio = (rss_i / dof_i) / (rss_c / dof_c)
    limit = float(stats.f.ppf(1.0 - FALLBACK_ALPHA, dof_i, dof_c))
    return ratio, limit, ratio > limit


def _on(candidate: Candidate, windows: BoolArray | None) -> tuple[int, float]:
    """
    A candidate's count of fitted windows and residual sum of squares over ``windows``.
    """
    res = candidate.residuals
    if windows is None or res is None or res.shape != windows.shape:
        return candidate.n, candidate.rss
    kept = res[windows & np.isfinite(res)]
    return int(kept.size), float(np.sum(kept * kept))


def _select_free(
    usable: Sequence[Candidate], common: str, stationary: BoolArray | None = None
) -> tuple[Candidate, str]:
    """
    The least AICc among the mechanistic models, unless the empirical hyperbola fits
    significantly better than the best of them (see ``_select``).
    """
    best = _least_aicc(usable)
    mechanistic = [c for c in usable if c.model != "hyperbolic" and math.isfinite(c.aicc)]
    if best.model != "hyperbolic" or not mechanistic:
        return best, f"AICc on log {common} latency"
    mech = _least_aicc(mechanistic)
    better = _significantly_better(best, mech, stationary)
    if better is None:
        if stationary is None:
            return best, f"AICc on log {common} latency"
        return mech, (
            f"AICc on log {common} latency among the mechanistic models; too few windows long "
            "enough to show stationary percentiles to test them against the empirical hyperbola"
        )
    ratio, limit, significant = better
    if not significant:
        return mech, (
            f"AICc on log {common} latency among the mechanistic models; the empirical "
            f"hyperbola fits no significantly better (variance ratio {ratio:.3g} ≤ {limit:.3g}"
            f"{_over(stationary)})"
        )
    return best, (
        f"AICc on log {common} latency; {mech.model} lacks fit against the empirical "
        f"hyperbola (variance ratio {ratio:.3g} > {limit:.3g}{_over(stationary)})"
    )


def _slo_source(factors: FloatArray, q: float) -> tuple[IntArray, FloatArray]:
    """
    Per node, which column of ``factors`` gives its q-quantile factor, and the multiplier on
    it (see ``_slo_factor``).
    """
    keys = list(STAT_QUANTILES)
    n = factors.shape[0]
    key = f"p{q * 100:g}"
    column = np.full(n, keys.index("mean"), dtype=np.intp)
    scale = np.full(n, -math.log1p(-q))  # from the mean: the exponential tail's quantile
    best_d = np.full(n, np.inf)
    for j, (k, qq) in enumerate(STAT_QUANTILES.items()):
        if qq is None or k == key:
            continue
        d = abs(math.log1p(-qq) - math.log1p(-q))
        take = np.isfinite(factors[:, j]) & (d < best_d)
        column = np.where(take, j, column)
        scale = np.where(take, math.log1p(-q) / math.log1p(-qq), scale)
        best_d = np.where(take, d, best_d)
    if key in STAT_QUANTILES:
        direct = np.isfinite(factors[:, keys.index(key)])
        column = np.where(direct, keys.index(key), column)
        scale = np.where(direct, 1.0, scale)
    return column, scale


def _log_ratios(
    observed: FloatArray, base: FloatArray, weight: FloatArray
) -> tuple[FloatArray, FloatArray, FloatArray]:
    """
    The windows' ``ln(observed / base)`` along the last axis, their weights (0 where a window
    has no usable ratio) and the weighted mean: the log of a factor from a base curve to a
    statistic.  ``base`` and ``weight`` broadcast against ``observed``.
    """
    ok = np.isfinite(observed) & np.isfinite(base) & (base > 0) & (weight > 0)
    w: FloatArray = np.where(ok, weight, 0.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        logs: FloatArray = np.where(ok, np.log(np.where(ok, observed / base, 1.0)), 0.0)
        level: FloatArray = np.sum(w * logs, axis=-1) / np.sum(w, axis=-1)
    return logs, w, level


def _factor_variance(
    base: FloatArray,
    observed: FloatArray,
    weight: FloatArray,
    fitted: IntArray,
    factors: FloatArray,
    q: float,
) -> FloatArray:
    """
    Per node, the sampling variance of the log of its SLO factor (``_slo_factor``).

    Each factor is exp of a weighted mean of the windows' ``ln(observed / base)``; the variance
    of that mean is the sandwich ``Σ w²(l − l̄)² / (Σ w)²`` (× n/(n − 1)), which follows each
    window's own scatter.  0 for the statistic the base curve is fitted to (its factor is 1).
    """
    n = base.shape[0]
    logs, w, mean = _log_ratios(observed, base[:, None, :], weight[:, None, :])
    total = np.sum(w, axis=2)
    count = np.count_nonzero(w, axis=2)
    with np.errstate(divide="ignore", invalid="ignore"):
        var = np.sum(w * w * (logs - mean[..., None]) ** 2, axis=2) / (total * total)
        var = var * count / (count - 1.0)
    var = np.where(count > 1, var, np.inf)
    var[np.arange(n), fitted] = 0.0
    column, _ = _slo_source(factors, q)
    out: FloatArray = var[np.arange(n), column]
    return out


@dataclass(frozen=True)
class _Sandwich:
    """
    The joint sandwich of ``_joint_covariance``, with what its degrees of freedom need.

    A sandwich variance is a weighted sum of a few windows' squared residuals, and for a
    capacity set by the windows at one end of the range a few windows carry most of it: it is
    far less sure of itself than s² on m − k degrees of freedom.  ``dof`` gives, per node and
    for a gradient g, Satterthwaite's degrees of freedom of g'Vg (Bell and McCaffrey 2002;
    Imbens and Kolesár 2016): under a working model of independent errors (the curve's residuals
    ``(I − H)ε`` with a common variance, the factor's log ratios about their weighted mean with
    variance ∝ 1/weight), g'Vg = zᵀKᵀKz for standard normal z, and ν = (tr M)² / tr M² with
    M = KKᵀ.
    """

    covariance: FloatArray  # (n, k + 1, k + 1); inf where unusable
    bread_inv: FloatArray  # (n, k + 1, k + 1)
    curve_score: FloatArray  # (n, m, k): Jᵢ / (1 − hᵢ)
    factor_score: FloatArray  # (n, m): wᵢ / (1 − sᵢ)
    jacobian: FloatArray  # (n, m, k): the curve's J, for H = J(JᵀJ)⁻¹Jᵀ
    jtj_inv: FloatArray  # (n, k, k)
    curve_var: FloatArray  # (n,): s_ε²
    share: FloatArray  # (n, m): sᵢ = wᵢ/Σw, 0 where a window has no log ratio
    factor_var: FloatArray  # (n, m): s_η²/wᵢ, 0 where a window has no log ratio

    #: Nodes per block of ``dof``: its m × m matrices are formed a block at a time.
    BLOCK = 256

    def dof(self, grad: FloatArray) -> FloatArray:
        """
        ν per node for the gradient ``grad`` (n, k + 1); nan where it says nothing.

        M = diag(a)·s_ε²(I − H)·diag(a) + diag(b)·F·diag(b), a and b the windows' shares of
        gᵀA⁻¹ψ per unit residual, F = (I − 1sᵀ)diag(s_η²/w)(I − 1sᵀ)ᵀ on the windows with a log
        ratio: Fᵢⱼ = δᵢⱼdᵢ − sᵢdᵢ − sⱼdⱼ + Σ sₗ²dₗ.
        """
        n, m, k = self.curve_score.shape
        row = np.einsum("ik,ikl->il", grad, np.nan_to_num(self.bread_inv))  # gᵀA⁻¹
        a = np.einsum("imk,ik->im", self.curve_score, row[:, :k])
        b = self.factor_score * row[:, k:]
        out = np.full(n, np.nan)
        eye = np.eye(m)
        for start in range(0, n, self.BLOCK):
            at = slice(start, start + self.BLOCK)
            jac = self.jacobian[at]
            hat = np.einsum("imk,ikl,ijl->imj", jac, self.jtj_inv[at], jac)
            aa = a[at, :, None] * a[at, None, :]
            total = self.curve_var[at, None, None] * aa * (eye - hat)
            d, sh = self.factor_var[at], self.share[at]
            sd = sh * d
            used = (sh > 0).astype(np.float64)
            f = eye * d[:, :, None] - sd[:, :, None] - sd[:, None, :]
            f += np.sum(sh * sd, axis=1)[:, None, None]
            f *= used[:, :, None] * used[:, None, :]
            total += b[at, :, None] * f * b[at, None, :]
            trace = np.trace(total, axis1=1, axis2=2)
            square = np.sum(total * total, axis=(1, 2))  # M is symmetric: tr M² = Σ Mᵢⱼ²
            with np.errstate(divide="ignore", invalid="ignore"):
                out[at] = np.where(square > 0, trace * trace / square, np.nan)
        return out


def _joint_covariance(
    fits: BaseFits,
    theta: FloatArray,
    rate: FloatArray,
    observed: FloatArray,
    weight: FloatArray,
    fitted: IntArray,
    factors: FloatArray,
    q: float,
) -> _Sandwich:
    """
    Per node, the sandwich covariance of (theta, a shift of the log SLO factor), one M-estimate.

    Per window i the estimating equations are the base fit's score ``Jᵢᵀrᵢ`` and the factor's
    ``wᵢ(lᵢ(θ) − ℓ)``, ``lᵢ = ln(observedᵢ / base(θ, rateᵢ))``; bread ``A = [[JᵀJ, 0],
    [−Σ wᵢ ∂ln baseᵢ/∂θ, −Σ wᵢ]]``, meat ``Σ ψᵢψᵢᵀ`` with each window's ψ over one minus its
    leverage (HC3, MacKinnon and White; Long and Ervin recommend it below ~250 points: with the
    plain scaling G/(G − k − 1) the capacity interval covered a known USL's capacity 87.2% and
    89.0% of 400 replicates, seeds 1 and 2 of ``bench.usl_coverage``; with HC3 90.2% and
    91.2%; with HC3 on the degrees of freedom of ``_Sandwich.dof``, 94.5% and 95.2%).
    inf (the caller keeps the curve's own covariance, with no factor error) where the SLO
    statistic is the one the curve is fitted to (its factor is 1), and where there are too few
    windows.
    """
    assert fits.jacobian is not None
    assert fits.residuals is not None
    n, m, k = fits.jacobian.shape
    rows = np.arange(n)
    column, _ = _slo_source(factors, q)
    base = fits.base(theta, rate)
    logs, w, level = _log_ratios(observed[rows, column], base, weight)
    ok = w > 0
    with np.errstate(divide="ignore", invalid="ignore"):
        slope = np.zeros((n, m, k))
        for j in range(k):
            h = 1e-6 * np.maximum(np.abs(theta[:, j]), 1e-4)
            moved = theta.copy()
            moved[:, j] += h
            slope[..., j] = np.where(
                ok, (np.log(fits.base(moved, rate)) - np.log(base)) / h[:, None], 0.0
            )
    has_factor = column != fitted
    jac = np.nan_to_num(fits.jacobian)
    res = np.nan_to_num(fits.residuals)
    bread = np.zeros((n, k + 1, k + 1))
    bread[:, :k, :k] = np.einsum("imk,iml->ikl", jac, jac)
    bread[:, k, :k] = -np.einsum("im,imk->ik", w, slope)
    bread[:, k, k] = -np.sum(w, axis=1)
    # HC3: each window's score over its leverage (1 − h), the base fit's hat-matrix diagonal
    # for the curve's equations and its weight share for the factor's mean
    with np.errstate(divide="ignore", invalid="ignore"):
        jtj_inv = np.linalg.pinv(bread[:, :k, :k])
        leverage = np.einsum("imk,ikl,iml->im", jac, jtj_inv, jac)
        share = w / np.sum(w, axis=1, keepdims=True)
    curve_score = jac / np.maximum(1.0 - leverage, 1e-6)[..., None]
    factor_score = w / np.maximum(1.0 - share, 1e-6)
    score = np.zeros((n, m, k + 1))
    score[..., :k] = curve_score * res[..., None]
    score[..., k] = factor_score * (logs - level[:, None])
    meat = np.einsum("imk,iml->ikl", score, score)
    windows = np.count_nonzero(np.any(score != 0, axis=2), axis=1)
    out = np.full((n, k + 1, k + 1), np.inf)
    inv = np.full((n, k + 1, k + 1), np.nan)
    good = has_factor & (windows > k + 1) & np.all(np.isfinite(bread.reshape(n, -1)), axis=1)
    good &= np.all(np.isfinite(meat.reshape(n, -1)), axis=1)
    good &= np.abs(np.linalg.det(np.where(good[:, None, None], bread, np.eye(k + 1)))) > 0
    if np.any(good):
        inv[good] = np.linalg.inv(bread[good])
        out[good] = inv[good] @ meat[good] @ np.swapaxes(inv[good], 1, 2)
    # the working model's noise: the curve's residuals (I − H)ε, s_ε² = RSS/(windows − k); the
    # factor's log ratios about their weighted mean, (I − Q)η with Q = 1wᵀ/Σw, Var ηᵢ = s_η²/wᵢ
    used = np.count_nonzero(ok, axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        s_eps = np.sum(res * res, axis=1) / np.maximum(used - k, 1)
        s_eta = np.sum(w * (logs - level[:, None]) ** 2, axis=1) / np.maximum(used - 1, 1)
        spread = np.where(ok, s_eta[:, None] / np.where(ok, w, 1.0), 0.0)
    return _Sandwich(
        out,
        inv,
        curve_score,
        factor_score,
        jac,
        np.nan_to_num(jtj_inv),
        s_eps,
        np.where(ok, np.nan_to_num(share), 0.0),
        spread,
    )


def _slo_factor(factors: FloatArray, q: float) -> FloatArray:
    """
    Per node, the factor from a base curve to its q-quantile (see ``_ScaledCurve.quantile``):
    the q-quantile's own fitted factor, else the nearest fitted quantile's scaled as an
    exponential tail, else the mean's.

    ``factors`` has one column per stat of STAT_QUANTILES (nan: none fitted).
    """
    column, scale = _slo_source(factors, q)
    out: FloatArray = factors[np.arange(factors.shape[0]), column] * scale
    return out


def _scaled_candidates(
    name: str, plans: Sequence[_Plan], slo: SLOTarget, ceiling: float
) -> list[Candidate]:
    """
    USL, utilization-law or hyperbola candidates for many nodes, fitted and judged together.
    """
    packed = _pack(plans)
    n = len(plans)
    rate, weight = packed.rate, packed.weight
    requests = np.zeros_like(rate)
    concurrency = np.full(rate.shape, np.nan)
    cpu = np.full(rate.shape, np.nan)
    for i, p in enumerate(plans):
        m = p.obs.n
        requests[i, :m] = p.obs.requests
        concurrency[i, :m] = p.obs.concurrency
        cpu[i, :m] = p.obs.cpu
    keys = list(STAT_QUANTILES)
    if name == "usl":
        mean_all = np.full(rate.shape, np.nan)
        for i, p in enumerate(plans):
            mean_all[i, : p.obs.n] = p.obs.latency["mean"]
        load = np.where(np.isfinite(concurrency), concurrency, rate * mean_all)  # Little's law
        fits = fit_usl_many(load, rate, requests)
        fitted = np.full(n, keys.index("mean"))
    elif name == "demand":
        fits = fit_demand_many(rate, cpu, requests, packed.latency["mean"], weight, ceiling)
        fitted = np.full(n, keys.index("mean"))
    else:
        y = np.full(rate.shape, np.nan)
        for i, p in enumerate(plans):
            y[i, : p.obs.n] = p.obs.latency[p.common]
        fits = fit_hyperbolic_many(rate, y, requests)
        fitted = np.array([keys.index(p.common) for p in plans])
    observed = np.stack([packed.latency[k] for k in keys], axis=1)  # (n, stats, w)

    def factors(theta: FloatArray) -> FloatArray:
        _, _, level = _log_ratios(observed, fits.base(theta, rate)[:, None, :], weight[:, None, :])
        out: FloatArray = np.exp(level)
        out[np.arange(n), fitted] = 1.0
        return out

    target, q = slo.latency_ms * 1e-3, slo.quantile

    def capacity(
        theta: FloatArray, log_shift: FloatArray | None = None, factor: FloatArray | None = None
    ) -> FloatArray:
        f = _slo_factor(factors(theta), q) if factor is None else factor
        if log_shift is not None:
            f = f * np.exp(log_shift)

        def ok(r: FloatArray) -> BoolArray:
            value = f * fits.base(theta, r[:, None])[:, 0]
            result: BoolArray = np.isfinite(value) & (value <= target)
            return result

        return _bisect_rate(ok, fits.saturation(theta))

    theta = np.where(fits.success[:, None], fits.theta, 1.0)
    cap = np.where(fits.success, capacity(theta), np.nan)
    # The interval carries the base curve's parameters and the SLO factor's own sampling
    # error (a weighted mean of the windows' log ratios; none for the statistic the curve is
    # fitted to), as one more parameter: a shift of the log factor.  Where the base fit gives
    # its per-window scores (the USL), curve and factor are one M-estimate whose sandwich
    # holds their correlation (both come from the same windows); otherwise the factor's
    # variance is added as if independent.
    k0 = theta.shape[1]
    fac = factors(theta)
    extended = np.zeros((n, k0 + 1, k0 + 1))
    extended[:, :k0, :k0] = fits.covariance
    extended[:, k0, k0] = _factor_variance(fits.base(theta, rate), observed, weight, fitted, fac, q)
    at_zero = np.column_stack([theta, np.zeros(n)])
    low, high = _delta_interval(
        lambda th: capacity(th[:, :k0], th[:, k0]), at_zero, extended, fits.dof, cap
    )
    if fits.jacobian is not None and fits.residuals is not None:
        # (θ, ℓ) apart: the factor stays at its estimate when θ moves, ℓ moves it
        sandwich = _joint_covariance(fits, theta, rate, observed, weight, fitted, fac, q)
        joint = sandwich.covariance
        usable = np.all(np.isfinite(joint.reshape(n, -1)), axis=1)
        if np.any(usable):
            f_hat = _slo_factor(fac, q)
            low_j, high_j = _delta_interval(
                lambda th: capacity(th[:, :k0], th[:, k0], f_hat),
                at_zero,
                np.where(usable[:, None, None], joint, extended),
                fits.dof,
                cap,
                sandwich.dof,
            )
            low, high = np.where(usable, low_j, low), np.where(usable, high_j, high)
    common = np.array([keys.index(p.common) for p in plans])
    pred = fac[np.arange(n), common][:, None] * fits.base(theta, rate)
    obs_common = observed[np.arange(n), common]
    ok_c = np.isfinite(obs_common) & (weight > 0)
    with np.errstate(divide="ignore", invalid="ignore"):
        r = np.log(np.where(np.isfinite(pred) & (pred > 0), pred, 1e6)) - np.log(obs_common)
    rss = np.sum(np.where(ok_c, weight * r * r, 0.0), axis=1)
    n_common = np.count_nonzero(ok_c, axis=1)
    k = theta.shape[1] + (1 if name in ("usl", "demand") else 0)
    out = []
    for i, plan in enumerate(plans):
        if not fits.success[i]:
            out.append(_failed(name, fits.messages[i]))
            continue
        th = theta[i]
        sd = np.sqrt(np.clip(np.diag(fits.covariance[i]), 0.0, np.inf))
        if name == "usl":
            sat = float(fits.saturation(theta[i : i + 1])[0])
            params = {
                "sigma": float(th[0]),
                "kappa": float(th[1]),
                "lambda": float(th[2]),
                "peak_load": math.sqrt((1 - th[0]) / th[1]) if th[1] > 0 else math.inf,
                "max_throughput": sat,
            }
            stderr = {"sigma": float(sd[0]), "kappa": float(sd[1]), "lambda": float(sd[2])}
            message = fits.messages[i]
        elif name == "demand":
            params = {"demand_s": float(th[0]), "base_ms": float(th[1]) * 1e3, "ceiling": ceiling}
            stderr = {"demand_s": float(sd[0])}
            message = fits.messages[i]
        else:
            params = {"a_ms": float(th[0]) * 1e3, "b": float(th[1]), "cap_rps": float(th[2])}
            stderr = {"a_ms": float(sd[0]) * 1e3, "b": float(sd[1]), "cap_rps": float(sd[2])}
            message = f"fitted to {plan.common} latency; {fits.messages[i]}"
        row = theta[i : i + 1]
        curve = _ScaledCurve(
            partial(_row_curve, fits.base, row),
            float(fits.saturation(row)[0]),
            {key: float(fac[i, j]) for j, key in enumerate(keys) if np.isfinite(fac[i, j])},
        )
        out.append(
            Candidate(
                name,
                params,
                stderr,
                k,
                int(n_common[i]),
                float(rss[i]),
                _aicc(float(rss[i]), int(n_common[i]), k),
                float(cap[i]),
                (float(low[i]), float(high[i])),
                True,
                message,
                curve,
                residuals=np.where(ok_c[i], np.sqrt(weight[i]) * r[i], np.nan)[: plan.obs.n],
            )
        )
    return out


def _row_curve(
    base: Callable[[FloatArray, FloatArray], FloatArray], row: FloatArray, rate: FloatArray
) -> FloatArray:
    out: FloatArray = base(row, np.asarray(rate, dtype=np.float64).reshape(1, -1))[0]
    return out.reshape(np.shape(rate))


def _bisect_rate(ok: Callable[[FloatArray], BoolArray], saturation: FloatArray) -> FloatArray:
    """
    Per node, the largest rate below ``saturation`` where ``ok`` holds (``ok`` is monotone:
    true up to some rate); 0 where it fails at rate 0; inf where it holds at any rate.
    """
    lo = np.zeros(saturation.shape)
    hi = np.where(np.isfinite(saturation), saturation, 1.0)
    unbounded = ~np.isfinite(saturation)
    for _ in range(45):  # grow the bracket where there is no saturation
        grow = unbounded & ok(hi) & (hi < 1e12)
        if not np.any(grow):
            break
        hi = np.where(grow, 2 * hi, hi)
    endless = unbounded & ok(hi)
    for _ in range(64):
        mid = 0.5 * (lo + hi)
        good = ok(mid)
        lo = np.where(good, mid, lo)
        hi = np.where(good, hi, mid)
    out: FloatArray = np.where(ok(np.zeros(saturation.shape)), np.where(endless, np.inf, lo), 0.0)
    return out


def _delta_interval(
    capacity: Callable[[FloatArray], FloatArray],
    theta: FloatArray,
    covariance: FloatArray,
    dof: npt.NDArray[np.intp],
    point: FloatArray,
    dof_of: Callable[[FloatArray], FloatArray] | None = None,
) -> tuple[FloatArray, FloatArray]:
    """
    95% delta-method interval on log capacity per node (Student t on the fit's dof, or on what
    ``dof_of`` gives for the gradient of log capacity, never more than the fit's); (0, inf)
    where the data cannot bound it.
    """
    k = theta.shape[1]
    grad = np.zeros_like(theta)
    good = np.isfinite(point) & (point > 0) & (dof > 0)
    good &= np.all(np.isfinite(covariance.reshape(theta.shape[0], -1)), axis=1)
    var_diag = np.diagonal(covariance, axis1=1, axis2=2)
    for j in range(k):
        h = 1e-4 * np.maximum(np.abs(theta[:, j]), 1e-3)
        h = np.where(var_diag[:, j] > 0, np.minimum(h, 0.1 * np.sqrt(np.abs(var_diag[:, j]))), h)
        h = np.where(h > 0, h, 1e-7)
        ends = []
        for sign in (1.0, -1.0):
            moved = theta.copy()
            moved[:, j] += sign * h
            ends.append(capacity(moved))
        ok = (ends[0] > 0) & (ends[1] > 0) & np.isfinite(ends[0]) & np.isfinite(ends[1])
        good &= ok
        with np.errstate(divide="ignore", invalid="ignore"):
            grad[:, j] = np.where(ok, (np.log(ends[0]) - np.log(ends[1])) / (2 * h), 0.0)
    with np.errstate(invalid="ignore"):
        var = np.einsum(
            "ik,ikl,il->i", grad, np.where(np.isfinite(covariance), covariance, 0.0), grad
        )
    good &= np.isfinite(var) & (var >= 0)
    nu = np.maximum(dof, 1).astype(np.float64)
    if dof_of is not None:
        own = dof_of(grad)
        nu = np.where(np.isfinite(own), np.clip(own, 1.0, nu), nu)
    spread = stats.t.ppf(0.975, nu) * np.sqrt(np.where(good, var, 0.0))
    # beyond a factor e^50 either way the data do not bound the capacity at all
    good &= spread <= 50
    low = np.where(good, point * np.exp(-np.minimum(spread, 50)), 0.0)
    high = np.where(good, point * np.exp(np.minimum(spread, 50)), np.inf)
    return low, high


def _pack(plans: Sequence[_Plan]) -> Packed:
    """
    The plans' observations as padded arrays; a stat a node does not use is left out (nan).
    """
    width = max(p.obs.n for p in plans)
    n = len(plans)
    rate = np.zeros((n, width))
    weight = np.zeros((n, width))
    requests = np.zeros((n, width))
    latency = {key: np.full((n, width), np.nan) for key in STAT_QUANTILES}
    for i, p in enumerate(plans):
        m = p.obs.n
        rate[i, :m] = p.obs.rate
        weight[i, :m] = p.obs.weight
        requests[i, :m] = p.obs.requests
        for key in STAT_QUANTILES:
            if p.obs.has(key):
                latency[key][i, :m] = p.obs.latency[key]
    arrival = np.ones((n, width))
    given = np.full((n, width), np.nan), np.full((n, width), np.nan)
    for i, p in enumerate(plans):
        if p.obs.arrival is not None:
            arrival[i, : p.obs.n] = p.obs.arrival
        if p.obs.wait is not None:
            given[0][i, : p.obs.n], given[1][i, : p.obs.n] = p.obs.wait
    wait = given if any(p.obs.wait is not None for p in plans) else None
    return Packed(rate, weight, latency, requests, arrival, wait)


def _station_candidates(
    plans: Sequence[_Plan],
    workers: Sequence[int | None] | None,
    *,
    scv_free: bool,
    slo: SLOTarget,
) -> list[Candidate]:
    """
    M/G/c (``scv_free``) or M/M/c candidates for many nodes, fitted and judged together.
    """
    name = "mgc" if scv_free else "mmc"
    packed = _pack(plans)
    fixed = None if workers is None else np.array(workers, dtype=np.float64)
    fits = fit_stations(packed, fixed, scv_free=scv_free)
    latency, q = slo.latency_ms * 1e-3, slo.quantile
    capacity = station_capacity(fits.servers, fits.service_time, fits.scv, latency, q)
    # Delta method on log capacity through the covariance of the fit at the reported slot
    # count.  Where the continuous fit cannot tell c (its ±2 se range holds another integer),
    # the interval is widened to the union with the continuous-c fit's.
    low, high = _delta_interval(
        lambda th: station_capacity(*fits.unpack_rounded(th), latency, q),
        fits.rounded_theta,
        fits.rounded_covariance,
        fits.dof,
        capacity,
    )
    fixed_c = (low, high)
    if fits.c_free and not np.all(fits.c_resolved):
        low_c, high_c = _delta_interval(
            lambda th: station_capacity(*fits.unpack(th), latency, q),
            fits.theta,
            fits.covariance,
            fits.dof,
            capacity,
        )
        # (where the refit at the rounded c has no interval, e.g. neither integer gave a
        # stable fit and the reported station is the continuous one: the continuous interval)
        alone = (low <= 0) & ~np.isfinite(high)
        low = np.where(fits.c_resolved, low, np.where(alone, low_c, np.minimum(low, low_c)))
        high = np.where(fits.c_resolved, high, np.where(alone, high_c, np.maximum(high, high_c)))
    bounded_below = (
        np.isfinite(fits.floor_station[0])
        if fits.floor_station is not None
        else np.zeros(len(plans), dtype=bool)
    )
    if fits.floor_station is not None:
        # c bounded only from below: from the capacity at that bound (or the reported c's
        # interval, if lower), open above
        below = np.flatnonzero(bounded_below)
        floor_c, floor_s, floor_v = fits.floor_station
        floor = station_capacity(floor_c[below], floor_s[below], floor_v[below], latency, q)
        low[below] = np.fmin(fixed_c[0][below], floor)
        high[below] = np.inf
    # An idle station's latency is its service time's, and the capacity jumps to 0 where that
    # misses the SLO — a jump the delta method's smooth interval cannot see: where the SLO is
    # inside the interval of the idle quantile, the capacity's interval reaches down to 0.
    idle = idle_quantile(fits.service_time, fits.scv, q)
    _, idle_high = _delta_interval(
        lambda th: idle_quantile(*fits.unpack_rounded(th)[1:], q),
        fits.rounded_theta,
        fits.rounded_covariance,
        fits.dof,
        idle,
    )
    low = np.where(np.isfinite(idle_high) & (idle_high >= latency), 0.0, low)
    theta = fits.theta
    k = theta.shape[1]
    # Goodness of fit on the common observable, with the exact (Newton-polished) quantile.
    out = []
    for i, plan in enumerate(plans):
        c, s, v = float(fits.servers[i]), float(fits.service_time[i]), float(fits.scv[i])
        obs = plan.obs
        values = obs.latency[plan.common]
        ok = np.isfinite(values)
        qc = STAT_QUANTILES[plan.common]
        arrival = np.ones(int(np.count_nonzero(ok))) if obs.arrival is None else obs.arrival[ok]
        rate_ok = obs.rate[ok]
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):
            wait = mgc_wait(*np.broadcast_arrays(rate_ok, c, s, v), arrival_scv=arrival)
        with np.errstate(divide="ignore", invalid="ignore"):
            seconds = obs.requests[ok] / rate_ok
        if obs.wait is not None:  # a queue the pool shares
            wait = with_given_wait(wait, (obs.wait[0][ok], obs.wait[1][ok]))
            seconds = np.where(np.isfinite(obs.wait[0][ok]), np.nan, seconds)
        r = window_log_residuals(
            qc, rate_ok, seconds, values[ok], np.array(c), np.array(s), np.array(v), wait,
            arrival, newton_steps=3,
        )  # fmt: skip
        rss = float(np.sum(obs.weight[ok] * r**2))
        n = int(np.count_nonzero(ok))
        residuals = np.full(obs.n, np.nan)
        residuals[ok] = np.sqrt(obs.weight[ok]) * r
        params = {"servers": c, "service_ms": s * 1e3, "scv": v}
        sd = np.sqrt(np.clip(np.diag(fits.covariance[i]), 0, np.inf))
        stderr = {"service_ms": s * 1e3 * float(sd[0])}  # d(e^x) = e^x dx
        if fits.c_free:
            stderr["servers"] = c * float(fits.log_servers_se[i])
            message = f"slot count fitted ({c:g})"
            if bounded_below[i]:
                message += (
                    f"; the windows bound it only from below (c ≥ {fits.c_range[0][i]:g}, "
                    "95%): the smallest slot count they cannot tell from the best fit is "
                    "reported, and the capacity interval is open above"
                )
            elif not fits.c_resolved[i]:
                c_lo, c_hi = fits.c_range[0][i], fits.c_range[1][i]
                message += (
                    f"; the data cannot tell it (±2 se: {c_lo:.3g}–{c_hi:.3g}), so the "
                    "capacity interval includes the continuous-c fit's"
                )
        else:
            message = f"slot count from the inventory ({c:g})"
        if scv_free:
            stderr["scv"] = v * float(sd[-1])
        if not fits.converged[i]:
            message += "; the fit did not converge"
        curve = _StationCurve(Station(servers=c, service_time=s, scv=v))
        lower_only: tuple[str, ...] = ()
        if bounded_below[i]:
            lower_only = (
                f"the windows bound the slot count only from below (c ≥ "
                f"{fits.c_range[0][i]:g}, 95%): capacity {capacity[i]:.4g} rps is at the low "
                "end of what they allow and its interval is open above; measure at higher "
                "load to know it",
            )
        out.append(
            Candidate(
                name,
                params,
                stderr,
                k,
                n,
                rss,
                _aicc(rss, n, k),
                float(capacity[i]),
                (float(low[i]), float(high[i])),
                True,
                message,
                curve,
                lower_only,
                residuals,
            )
        )
    return out
