"""
Per-node limits and pool thresholds from the fitted models, each with a one-line reason (pure).

Per node (``Limits`` in plan.yaml):

- ``max_conns``: the balancer refuses a request when the node already has this many.  For a
  station, the least K ≥ c such that, at capacity, refusing above K refuses at most half the
  SLO's error budget (the fitted M/G/c's queue cut at K: ``PoolCurves.in_system_limit``; for a
  node whose slots come from an agreeing M/G/c candidate, that candidate's queue) —
  the mean number in system (Little's law) would refuse far more, the number in a node
  spreading wide at high load.  For another model,
  ⌈λ·R·(1 + margin)⌉ at capacity (Little's law, the margin the profile's headroom).  Within
  [1, 65535].
- No ``min_conns``: HAProxy's ``minconn``/``fullconn`` would hold a node below its limit while
  the backend is not busy, and a limit at the planned concurrency (the mean at the planned
  rate) queues requests whenever a node's concurrency rises above its mean: in the lab a c = 2
  node was held to 1 connection at 70% load, and HAProxy refused requests at 102% of the
  pool's capacity that nginx, with the same ``max_conns``, served within the SLO at 110%.
- ``max_active`` = the slots c of a station and a hand-over buffer: a balancer with a queue of
  its own (HAProxy's ``maxconn``) sends the node no more at once and holds the rest in one
  FIFO queue for the whole pool, where a request takes the first slot free on any node, up to
  ``queue_timeout_ms``.  The nodes' own queues would add to the balancer's: in the lab, HAProxy
  with ``maxconn`` at ``max_conns`` let admitted requests wait in both (p99 246 ms at 120% of
  capacity; largest rate within the SLO 1,024 rps), with ``max_active`` 169 ms and 1,059 rps.
  Held to exactly c, a slot idles between finishing one request and receiving the next from
  the balancer's queue (a round trip and the balancer's turn, ``HANDOFF_S``): a few percent of
  a 20 ms service, which near saturation is the difference between meeting the SLO and not.
  The buffer, ⌈c · HANDOFF_S / S⌉ and at least 1 (S the mean service time), is what the node
  completes during one hand-over: requests waiting at the node take a slot the moment it frees.
  With round robin (HAProxy's ``roundrobin``/``static-rr``) the buffer is larger: the
  balancer hands each node its turn whatever its queue and skips a node at ``maxconn``, which
  breaks the even interleaving that makes round robin good (``bench.lab.arrivals``).  The
  buffer is the least k ≥ 1 such that at the node's cap (capacity less headroom), with
  arrivals as even as its share of the caps, at most ``ROUND_ROBIN_DIVERT`` (1%) of its
  requests find c + k at the node (``PoolCurves.in_system_limit``).  Simulated on the lab's
  pool with fixed service (smooth round robin, one queue behind ``maxconn``, seeds 1–3): p99
  27.7–28.1 ms at 80% with a buffer of 1, 26.4–26.9 with this one (2–4), the same as with no
  limit.
- No ``maxqueue``: HAProxy's leastconn queues requests at a server up to its ``maxqueue``
  (when set) instead of in the backend's one queue.  In the lab one node without
  ``max_active`` but with a ``maxqueue`` drew the overflow into its own queue: p99 163 ms at
  1,013 rps, where the nodes' queues alone had given 112 ms.  A plan that states ``maxqueue``
  is still rendered.
- ``uthreshold`` = max_conns; ``lthreshold`` = ⌈0.75 × uthreshold⌉, kept below uthreshold
  (LVS hysteresis), and left out when uthreshold < 2.
- ``slowstart_s`` from the profile (left out when 0).

Pool (``Thresholds`` in plan.yaml):

- ``queue_timeout_ms``: when every node with planned traffic has ``max_active`` (and the station
  it comes from), the balancer's one queue makes the pool one M/G/c (``PooledQueue``: the
  slots added up, the service rates added up); the timeout is the
  wait that station exceeds with probability half the SLO's error budget at its capacity at
  the SLO, so refusing what waited longer keeps within the budget up to that load.  A shorter
  timeout refuses requests that the pool would serve within the SLO: in the lab, HAProxy with
  ``timeout queue`` at SLO − the slowest mean response (97–98 ms) refused 1.6% of the requests
  at 1,077 rps with fixed service, where unlimited ``wrr`` met the SLO.  Otherwise, SLO
  latency − the largest mean response of a node at its planned rate: the longest a request
  can wait for a slot and still make the SLO on average.  At least 1 ms, at most a day.
- ``connect_timeout_ms`` = 1000 and ``server_timeout_ms`` = max(10 × SLO latency, 2 × the
  slowest p99.99 at capacity).
- Failure detection, for a false alarm rate of at most ``FALSE_ALARM`` (1e-6): a healthy node
  fails each check with its observed error rate p, so ``fall`` = ⌈log 1e-6 / log p⌉ for the
  worst node, within [2, 10]; ``rise`` = 2; ``check_interval_s`` = the profile's interval,
  lowered (to 0.1 s steps, not below 0.5 s) until fall × interval ≤ ``detection_s``.  nginx's
  passive checks: ``fail_timeout_s`` = ``detection_s`` and ``max_fails`` the least k ≥ 2 with
  P(Binomial(requests in fail_timeout, p) ≥ k) ≤ 1e-6 on every node.
- ``scale_out_load_rps``: the largest load the pool without its largest node (by capacity)
  carries with the SLO percentile met under its best split (``max_slo_load``: the exact
  percentile optimum, not the cheaper mean split checked afterwards).  Nodes may run past
  their headroom there: after a loss, the headroom is what gets spent.
- ``alert_load_rps``: the sum of the remaining nodes' caps (capacity less headroom), the load
  above which losing the largest node eats into the headroom; without caps (or when that is
  not below the trigger) ``alert_fraction`` (85%) of the trigger.

Every value comes with a reason: one printable line of at most 500 characters.  A reason may
also explain a key that was left out.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from scipy.stats import binom

from capplan.models.queueing import PooledQueue
from capplan.numbers import sig
from capplan.optimize.curves import NodeCurve, PoolCurves

__all__ = [
    "FALSE_ALARM",
    "DerivedThresholds",
    "NodeThresholdInput",
    "ThresholdInputs",
    "derive_thresholds",
    "fall_for",
    "max_fails_for",
    "max_slo_load",
]

FloatArray = npt.NDArray[np.float64]

#: The most a healthy node may be marked down by chance: per check (fall) or per window
#: (max_fails).
FALSE_ALARM = 1e-6

#: The range ``fall`` is kept in.
FALL_RANGE = (2, 10)

#: The least ``check_interval_s`` chosen.
MIN_INTERVAL_S = 0.5

#: The range ``max_fails`` is kept in (the plan allows up to 1000).
MAX_FAILS_RANGE = (2, 1000)

#: ``lthreshold`` as a fraction of ``uthreshold``.
LOWER_FRACTION = 0.75

#: The largest connection limit (the plan's bound for every target).
MAX_CONNS = 65535
#: The least share of requests a connection limit may refuse at capacity (an SLO without an
#: error budget would otherwise ask for an unbounded limit).
MIN_BUDGET = 1e-6

CONNECT_TIMEOUT_MS = 1000
#: What a balancer's hand-over of a queued request to a node takes: a LAN round trip and the
#: request's turn in the balancer's event loop.
HANDOFF_S = 0.001
#: With round robin, the share of a node's requests at its cap that may find it at
#: ``max_active`` (and go to another node or the balancer's queue instead of taking their turn).
ROUND_ROBIN_DIVERT = 0.01
#: The longest timeout written (the plan's bound: a day).
MAX_TIMEOUT_MS = 86_400_000
SERVER_TIMEOUT_SLO_MULTIPLE = 10
RISE = 2


@dataclass(frozen=True)
class NodeThresholdInput:
    """
    One node as the thresholds see it.

    ``servers`` is the node's slot count (None when unknown); ``servers_from`` says where it
    comes from when its latency curve in ``ThresholdInputs.pool`` is not that station (e.g.
    "its mgc fit, ..."), for the reasons; ``station`` is that station, (servers, mean service
    time in s, scv), when known: the pool as one queue (HAProxy's) is made of them.
    ``error_rate`` is its observed fraction of failed requests; ``name`` is for the reasons
    (``node #i`` when empty).
    """

    rate_rps: float
    capacity_rps: float
    error_rate: float = 0.0
    servers: int | None = None
    name: str = ""
    servers_from: str = ""
    station: tuple[float, float, float] | None = None

    def __post_init__(self) -> None:
        """
        Check every value on entry, naming the node when it has a name.
        """
        who = f"node {self.name}: " if self.name else ""
        for key in ("rate_rps", "capacity_rps"):
            value = getattr(self, key)
            if not (math.isfinite(value) and value >= 0):
                raise ValueError(f"{who}{key} must be a finite number >= 0: {value!r}")
        if not (0.0 <= self.error_rate <= 1.0):
            raise ValueError(f"{who}error_rate must be in [0, 1]: {self.error_rate!r}")
        if self.servers is not None and self.servers < 1:
            raise ValueError(f"{who}servers must be >= 1: {self.servers!r}")
        if self.station is not None:
            c, s, v = self.station
            if self.servers is None:
                raise ValueError(f"{who}a station needs servers")
            if not (c >= 1 and math.isfinite(c) and s > 0 and math.isfinite(s) and v >= 0):
                raise ValueError(
                    f"{who}station must be (servers >= 1, service time > 0, scv >= 0): "
                    f"{self.station!r}"
                )


@dataclass(frozen=True)
class Loss:
    """
    A loss the pool must survive: its words ("zone b") and the nodes it takes (positions in
    the inputs).
    """

    text: str
    removed: tuple[int, ...]


@dataclass(frozen=True)
class ForecastMonth:
    """
    One month of a capacity plan's forecast: when it starts (ISO date) and its planned load.
    """

    start: str
    load_rps: float


@dataclass(frozen=True)
class ScaleOutForecast:
    """
    What a capacity plan (``capplan plan --out``) says of the future: its monthly planned loads
    (``band`` of the forecast) and the date to order by. The scale-out reason tells when the
    forecast crosses the trigger.
    """

    band: str
    months: tuple[ForecastMonth, ...]
    order_by: str | None = None


@dataclass(frozen=True)
class ThresholdInputs:
    """
    Everything the limits and thresholds are derived from.

    ``pool`` holds the nodes' latency curves in the order of ``nodes``; the SLO is
    ``quantile`` (0.99 for p99) within ``slo_latency_ms``.  ``caps`` are the split's caps
    (capacity at the SLO less the profile's headroom): they set the alert, the load above
    which the pool without its largest node eats into its headroom.  The scale-out trigger
    ignores them (after a loss, the headroom is what gets spent); without caps the alert is
    ``alert_fraction`` of the trigger.

    ``losses`` are what the pool must survive (the inventory's ``planning``: any ``n_plus``
    nodes, any one zone); the trigger is the worst of them.  ``None`` means N−1, the loss of
    the largest node; an empty tuple asks for no redundancy (the trigger is the whole pool's).
    """

    pool: PoolCurves
    nodes: tuple[NodeThresholdInput, ...]
    slo_latency_ms: float = 250.0
    quantile: float = 0.99
    headroom: float = 0.2
    detection_s: float = 10.0
    check_interval_s: float = 2.0
    slowstart_s: int = 30
    caps: tuple[float, ...] | None = None
    alert_fraction: float = 0.85
    error_budget: float = 0.001  # the SLO's max_error_rate
    losses: tuple[Loss, ...] | None = None
    forecast: ScaleOutForecast | None = None
    round_robin: bool = False  # the queueing balancer (HAProxy) hands out requests in turn

    def __post_init__(self) -> None:
        """
        Check every value on entry, naming the argument (and node) at fault.
        """
        n = len(self.pool)
        if len(self.nodes) != n or n == 0:
            raise ValueError(f"nodes must be one per pool node ({n}): {len(self.nodes)}")
        if not (0 < self.quantile < 1):
            raise ValueError(f"quantile must be in (0, 1): {self.quantile!r}")
        if not (math.isfinite(self.slo_latency_ms) and self.slo_latency_ms > 0):
            raise ValueError(f"slo_latency_ms must be a positive number: {self.slo_latency_ms!r}")
        if not (0 <= self.headroom < 1):
            raise ValueError(f"headroom must be in [0, 1): {self.headroom!r}")
        if not (math.isfinite(self.detection_s) and self.detection_s > 0):
            raise ValueError(f"detection_s must be a positive number: {self.detection_s!r}")
        if not (math.isfinite(self.check_interval_s) and self.check_interval_s >= MIN_INTERVAL_S):
            raise ValueError(
                f"check_interval_s must be at least {MIN_INTERVAL_S}: {self.check_interval_s!r}"
            )
        if self.slowstart_s < 0:
            raise ValueError(f"slowstart_s must be >= 0: {self.slowstart_s!r}")
        if not (0 <= self.error_budget <= 1):
            raise ValueError(f"error_budget must be in [0, 1]: {self.error_budget!r}")
        if not (0 < self.alert_fraction <= 1):
            raise ValueError(f"alert_fraction must be in (0, 1]: {self.alert_fraction!r}")
        if self.caps is not None:
            if len(self.caps) != n:
                raise ValueError(f"caps must be one per pool node ({n}): {len(self.caps)}")
            if not all(math.isfinite(c) and c >= 0 for c in self.caps):
                raise ValueError(f"caps must be finite numbers >= 0: {self.caps!r}")
        for loss in self.losses or ():
            if not loss.removed or not all(0 <= i < n for i in loss.removed):
                raise ValueError(f"loss {loss.text!r} must remove nodes among 0..{n - 1}")
        sat = self.pool.saturation
        for i, (node, name) in enumerate(zip(self.nodes, _names(self), strict=True)):
            for key in ("rate_rps", "capacity_rps"):
                value = getattr(node, key)
                if value > 0 and not value < sat[i]:
                    raise ValueError(
                        f"{name}: {key} {value!r} must be below the model's saturation "
                        f"({float(sat[i]):.6g} rps)"
                    )


@dataclass(frozen=True)
class DerivedThresholds:
    """
    Per node, its limits (plan.yaml ``limits``: ints) and a reason per key; for the pool, its
    thresholds (plan.yaml ``pool.thresholds``) and a reason per key.
    """

    limits: tuple[dict[str, int], ...]
    node_reasons: tuple[dict[str, str], ...]
    pool: dict[str, float | int]
    pool_reasons: dict[str, str]


# ----------------------------------------------------------------------------- helpers


def _names(inputs: ThresholdInputs) -> tuple[str, ...]:
    """
    The nodes' names for messages: their own, else ``node #i`` (position in the inputs).
    """
    return tuple(n.name or f"node #{i}" for i, n in enumerate(inputs.nodes))


def _ms(seconds: float) -> str:
    """
    Seconds as milliseconds, three significant digits.
    """
    return f"{seconds * 1e3:.3g} ms"


def _rps(rate: float) -> str:
    """
    A rate, four significant digits.
    """
    return f"{rate:.4g} rps"


def _line(text: str) -> str:
    """
    ``text`` as one printable line of at most 500 characters (what plan.yaml accepts).
    """
    flat = "".join(c if c.isprintable() else " " for c in text)
    return flat if len(flat) <= 500 else flat[:497] + "..."


def _lines(reasons: dict[str, str]) -> dict[str, str]:
    """
    Every reason as one printable line of at most 500 characters.
    """
    return {key: _line(text) for key, text in reasons.items()}


# ----------------------------------------------------------------------------- failure detection


def fall_for(error_rate: float) -> int:
    """
    Consecutive failed checks before a node is marked down: ⌈log FALSE_ALARM / log p⌉.

    A healthy node fails a check with probability p (its error rate), so ``fall`` failures in
    a row happen with probability p^fall ≤ FALSE_ALARM.  Kept within FALL_RANGE: at least 2
    so one lost check never marks a node down, at most 10 (above p ≈ 0.25 the bound cannot
    hold within it).

    Args:
        error_rate: The node's observed fraction of failed requests, in [0, 1].

    Returns:
        ``fall``, non-decreasing in ``error_rate``.
    """
    if not (0.0 <= error_rate <= 1.0):
        raise ValueError(f"error_rate must be in [0, 1]: {error_rate!r}")
    low, high = FALL_RANGE
    if error_rate <= 0.0:
        return low
    if error_rate >= 1.0:
        return high
    # rounded first so that 6.000000000000001 is 6 (rounding keeps the result monotone)
    exact = round(math.log(FALSE_ALARM) / math.log(error_rate), 9)
    return min(max(math.ceil(exact), low), high)


def _tail(k: int, n: int, p: float) -> float:
    """
    P(Binomial(n, p) ≥ k).
    """
    return float(binom.sf(k - 1, n, p))


def max_fails_for(rate_rps: float, error_rate: float, window_s: float) -> int:
    """
    The least k ≥ 1 with P(Binomial(requests in the window, p) ≥ k) ≤ FALSE_ALARM.

    Args:
        rate_rps: The node's planned rate.
        error_rate: Its observed fraction of failed requests p, in [0, 1].
        window_s: nginx's ``fail_timeout``: the window failures are counted in.

    Returns:
        k, unclipped (n + 1 when even n failures are too likely, e.g. p = 1).
    """
    if not (0.0 <= error_rate <= 1.0):
        raise ValueError(f"error_rate must be in [0, 1]: {error_rate!r}")
    if not (math.isfinite(rate_rps) and rate_rps >= 0):
        raise ValueError(f"rate_rps must be a finite number >= 0: {rate_rps!r}")
    if not (math.isfinite(window_s) and window_s > 0):
        raise ValueError(f"window_s must be a positive number: {window_s!r}")
    n = math.ceil(rate_rps * window_s)
    if n == 0 or error_rate == 0.0:
        return 1
    if error_rate >= 1.0:
        return n + 1
    guess = float(binom.isf(FALSE_ALARM, n, error_rate))
    k = min(max(int(guess) + 1, 1), n + 1) if math.isfinite(guess) else 1
    while k > 1 and _tail(k - 1, n, error_rate) <= FALSE_ALARM:
        k -= 1
    while k <= n and _tail(k, n, error_rate) > FALSE_ALARM:
        k += 1
    return k


# ----------------------------------------------------------------------------- N−1 load


def _search_caps(pool: PoolCurves, caps: FloatArray, t: float) -> FloatArray:
    """
    Per node, the top of the rate search: its cap, below its saturation; for a model without
    saturation, the rate (doubling from 1 rps) at which half its requests miss ``t``.
    """
    sat = np.asarray(pool.saturation, dtype=np.float64)
    cap = np.minimum(caps, sat * (1 - 1e-9))
    unbounded = ~np.isfinite(cap)
    if np.any(unbounded):
        probe = np.where(unbounded, 1.0, cap)
        for _ in range(200):
            low = unbounded & (pool.sf(t, probe) < 0.5)
            if not np.any(low):
                break
            probe = np.where(low, 2.0 * probe, probe)
        cap = np.where(unbounded, probe, cap)
    out: FloatArray = np.where(cap > 0, cap, 0.0)
    return out


def max_slo_load(
    pool: PoolCurves, caps: FloatArray | None, latency_ms: float, quantile: float
) -> float:
    """
    The largest load the pool carries with its SLO percentile met, under its best split.

    The SLO holds at load Λ when some split has Σ λᵢ·(P(Tᵢ(λᵢ) > t) − ε) ≤ 0 (t the SLO
    latency, ε = 1 − q: the pool's tail, not the worst node's).  The largest such Λ maximises
    Σ λᵢ under that one convex constraint (each λᵢ·P(Tᵢ > t) is convex, as the split solver
    assumes), so at the optimum every node strictly inside its range has the same marginal
    tail mass gᵢ'(λᵢ) = ν.  Bisection on ν (Σ gᵢ rises with it), each node's rate by bisection
    on its marginal, warm-started in the bracket of the previous steps: the same answer as
    bisecting the load with ``split_load(objective="percentile")`` at a fraction of the cost.

    Args:
        pool: The nodes' latency curves.
        caps: Per node, the most it may carry (None: its saturation).
        latency_ms: The SLO latency.
        quantile: The SLO quantile (0.99 for p99).

    Returns:
        The load in requests per second (0 when no load meets the SLO).
    """
    t = latency_ms / 1e3
    eps = 1.0 - quantile
    n = len(pool)
    raw = np.full(n, np.inf) if caps is None else np.asarray(caps, dtype=np.float64)
    cap = _search_caps(pool, np.where(np.isnan(raw), 0.0, raw), t)
    h = np.maximum(1e-7 * cap, 1e-12)

    def g(rate: FloatArray) -> FloatArray:
        """
        Per node, its tail mass beyond the budget: λ·(P(T > t) − ε).
        """
        out: FloatArray = rate * (pool.sf(t, rate) - eps)
        return out

    def dg(rate: FloatArray) -> FloatArray:
        """
        Per node, d g / d rate by central differences inside [0, cap].
        """
        lo = np.maximum(rate - h, 0.0)
        hi = np.minimum(rate + h, cap)
        out: FloatArray = (g(hi) - g(lo)) / np.maximum(hi - lo, 1e-300)
        return out

    def rates_at(nu: float, low: FloatArray, high: FloatArray) -> FloatArray:
        """
        Per node, the largest rate in [low, high] whose marginal is at most ``nu``.
        """
        lo, hi = low.copy(), high.copy()
        for _ in range(80):
            if np.all(hi - lo <= 1e-12 * np.maximum(cap, 1e-300)):
                break
            mid = 0.5 * (lo + hi)
            ok = dg(mid) <= nu
            lo = np.where(ok, mid, lo)
            hi = np.where(ok, hi, mid)
        out: FloatArray = np.where(dg(high) <= nu, high, np.where(dg(low) > nu, low, lo))
        return out

    zero = np.zeros(n)
    if float(np.sum(g(cap))) <= 0.0:
        return float(cap.sum())  # the caps bind before the SLO does
    nu_lo, nu_hi = 0.0, float(np.max(dg(cap)))
    r_lo = rates_at(nu_lo, zero, cap)
    r_hi = cap.copy()
    g_lo, g_hi = float(np.sum(g(r_lo))), float(np.sum(g(r_hi)))
    if g_lo > 0.0:
        return 0.0  # even the least tail the pool can have misses the SLO
    for _ in range(200):
        if r_hi.sum() - r_lo.sum() <= 1e-10 * max(float(cap.sum()), 1e-300):
            break
        nu = 0.5 * (nu_lo + nu_hi)
        rates = rates_at(nu, r_lo, r_hi)
        mass = float(np.sum(g(rates)))
        if mass <= 0.0:
            nu_lo, r_lo, g_lo = nu, rates, mass
        else:
            nu_hi, r_hi, g_hi = nu, rates, mass
    # the constraint crosses 0 between the brackets' ends: interpolate the load
    frac = -g_lo / (g_hi - g_lo) if g_hi > g_lo else 0.0
    return float(r_lo.sum() + frac * (r_hi.sum() - r_lo.sum()))


# ----------------------------------------------------------------------------- per node


def _node_limits(
    node: NodeThresholdInput,
    r_cap: float,
    k_cap: float,
    k_turn: float,
    inputs: ThresholdInputs,
    reasons: dict[str, str],
) -> dict[str, int]:
    """
    One node's limits from its mean response at capacity (``r_cap``) and at its planned rate,
    its queue-tail limit at capacity (``k_cap``) and, with round robin, the number in system
    that at most ``ROUND_ROBIN_DIVERT`` of its requests find at its cap (``k_turn``; both nan
    when it is not a station); their reasons go into ``reasons``.
    """
    limits: dict[str, int] = {}
    margin = inputs.headroom
    cap = node.capacity_rps

    # max_conns: the queue tail at capacity for a station; Little's law, with a margin, else
    budget = max(inputs.error_budget / 2, MIN_BUDGET)
    if cap > 0 and node.servers is not None and math.isfinite(k_cap):
        value = int(k_cap)
        why = (
            f"max_conns {{v}} = {node.servers} slots + {value - node.servers} waiting: at "
            f"capacity ({_rps(cap)}) a balancer refusing above it refuses at most "
            f"{budget:.2g} of the requests (half the SLO's error budget; the fitted M/G/c's "
            "queue, cut at the limit)"
        )
        if node.servers_from:
            why += f"; the M/G/c is {node.servers_from}"
    elif cap > 0:
        exact = cap * r_cap * (1 + margin)
        value = math.ceil(round(exact, 9))
        why = (
            f"max_conns {{v}} = ⌈{_rps(cap)} × {_ms(r_cap)} × {1 + margin:.3g}⌉ "
            f"(Little's law at capacity, {margin:.0%} margin)"
        )
    else:
        value = 1
        why = "max_conns {v}: the node has no capacity at the SLO"
    if node.servers is not None and value < node.servers:
        value = node.servers
        why += f"; raised to its {node.servers} slots (a lower limit leaves slots idle)"
    if value > MAX_CONNS:
        value = MAX_CONNS
        why += f"; capped at {MAX_CONNS}, the largest limit the balancers take"
    max_conns = max(value, 1)
    limits["max_conns"] = max_conns
    reasons["max_conns"] = why.replace("{v}", str(max_conns))

    # max_active: a station's slots, the rest waiting in the balancer's one queue
    if cap > 0 and node.servers is not None:
        service = node.station[1] if node.station is not None else math.inf
        during = node.servers * HANDOFF_S / service
        buffer = max(math.ceil(round(during, 9)), 1)
        source = f" (from {node.servers_from})" if node.servers_from else ""
        if inputs.round_robin and math.isfinite(k_turn):
            buffer = max(int(k_turn) - node.servers, buffer)
            active = min(node.servers + buffer, max_conns)
            reasons["max_active"] = (
                f"max_active {active} = the node's {node.servers} slots{source} + {buffer} "
                "waiting: round robin hands the node its turn whatever its queue, and a node at "
                "max_active is skipped (its request goes to the next node or the balancer's "
                f"queue), which breaks the even interleaving; at its cap "
                f"({_rps(cap * (1 - margin))}) at most {ROUND_ROBIN_DIVERT:.0%} of its requests "
                f"find {node.servers + buffer} at the node (the fitted M/G/c, arrivals as even as "
                "its share of the caps)"
            )
        else:
            active = min(node.servers + buffer, max_conns)
            served = (
                f" ({node.servers} × {HANDOFF_S * 1e3:g} ms / {_ms(service)} = {during:.2g})"
                if math.isfinite(service)
                else ""
            )
            reasons["max_active"] = (
                f"max_active {active} = the node's {node.servers} slots{source} + {buffer} "
                f"waiting at the node, what it completes during a {HANDOFF_S * 1e3:g} ms "
                f"hand-over{served}, so no slot idles while the balancer sends the next: a "
                "balancer that queues (HAProxy's maxconn) sends it no more at once and keeps "
                "the rest in one queue for the pool, where a request takes the first slot free "
                "on any node"
            )
        limits["max_active"] = active
        if active < node.servers + buffer:
            reasons["max_active"] += f"; held to max_conns {max_conns}"
    reasons["maxqueue"] = (
        "maxqueue left out: requests wait in the balancer's one queue, at most "
        "queue_timeout_ms, for the first slot free on any node (HAProxy's leastconn would "
        "queue them at a server up to its maxqueue)"
    )
    _lvs_limits(max_conns, limits, reasons)
    _slowstart(inputs, limits, reasons)
    return limits


def _lvs_limits(max_conns: int, limits: dict[str, int], reasons: dict[str, str]) -> None:
    # LVS thresholds: the upper one is the connection cap, the lower one its hysteresis
    upper = max_conns
    limits["uthreshold"] = upper
    reasons["uthreshold"] = (
        f"uthreshold {upper} = max_conns (LVS sends no new connections to the node above it)"
    )
    if upper >= 2:
        lower = min(math.ceil(round(LOWER_FRACTION * upper, 9)), upper - 1)
        limits["lthreshold"] = lower
        reasons["lthreshold"] = (
            f"lthreshold {lower} = min(⌈{LOWER_FRACTION} × {upper}⌉, {upper} − 1) "
            "(LVS resumes below it: hysteresis against flapping)"
        )
    else:
        reasons["lthreshold"] = (
            f"lthreshold left out: uthreshold {upper} leaves no room for a lower threshold"
        )


def _slowstart(inputs: ThresholdInputs, limits: dict[str, int], reasons: dict[str, str]) -> None:
    if inputs.slowstart_s > 0:
        limits["slowstart_s"] = inputs.slowstart_s
        reasons["slowstart_s"] = (
            f"slowstart_s {inputs.slowstart_s} from the profile: a returning node ramps up "
            "to its share instead of taking it cold"
        )
    else:
        reasons["slowstart_s"] = "slowstart_s left out: the profile sets 0 (no slow start)"


# ----------------------------------------------------------------------------- pool


def _detection(
    inputs: ThresholdInputs, thresholds: dict[str, float | int], reasons: dict[str, str]
) -> None:
    """
    fall, rise, check_interval_s, max_fails and fail_timeout_s.
    """
    nodes = inputs.nodes
    names = _names(inputs)
    worst = max(range(len(nodes)), key=lambda i: (nodes[i].error_rate, -i))
    p = nodes[worst].error_rate
    fall = fall_for(p)
    thresholds["fall"] = fall
    if p <= 0:
        reasons["fall"] = (
            f"fall {fall}: no node shows errors; {FALL_RANGE[0]} so that one lost check never "
            "marks a node down"
        )
    else:
        exact = math.log(FALSE_ALARM) / math.log(p) if p < 1 else math.inf
        why = (
            f"fall {fall} from ⌈log {FALSE_ALARM:g} / log {p:.3g}⌉ = ⌈{exact:.3g}⌉ (worst error "
            f"rate, {names[worst]}): a healthy node fails {fall} checks in a row with "
            f"probability {p**fall:.2g}"
        )
        if p**fall > FALSE_ALARM * (1 + 1e-9):
            why += (
                f", above {FALSE_ALARM:g}: {FALL_RANGE[1]} is the most capplan sets; fix the errors"
            )
        elif exact < FALL_RANGE[0]:
            why += f"; at least {FALL_RANGE[0]} so one lost check never marks a node down"
        reasons["fall"] = why
    thresholds["rise"] = RISE
    reasons["rise"] = (
        f"rise {RISE}: {RISE} passing checks in a row before a recovered node takes traffic "
        "again (one lucky check is not enough)"
    )

    default, detect = inputs.check_interval_s, inputs.detection_s
    fitted = math.floor(round(detect / fall * 10, 9)) / 10
    interval = max(min(default, fitted), MIN_INTERVAL_S)
    thresholds["check_interval_s"] = interval
    if fall * interval <= detect + 1e-9:
        how = (
            "the profile's" if interval == default else f"lowered from the profile's {default:g} s"
        )
        reasons["check_interval_s"] = (
            f"check_interval_s {interval:g} ({how}): a dead node is marked down after fall × "
            f"interval = {fall} × {interval:g} s = {fall * interval:.3g} s ≤ detection_s {detect:g}"
        )
    else:
        reasons["check_interval_s"] = (
            f"check_interval_s {interval:g}, the least capplan sets: cannot find a dead node "
            f"within detection_s {detect:g}, it takes fall × interval = {fall} × {interval:g} s "
            f"= {fall * interval:.3g} s"
        )

    window = detect
    thresholds["fail_timeout_s"] = window
    reasons["fail_timeout_s"] = (
        f"fail_timeout_s {window:g} = detection_s: nginx counts max_fails within it and keeps a "
        "failed node out for as long"
    )
    low, high = MAX_FAILS_RANGE
    needed = [max_fails_for(n.rate_rps, n.error_rate, window) for n in nodes]
    busiest = max(range(len(nodes)), key=lambda i: (needed[i], -i))
    k = min(max(needed[busiest], low), high)
    thresholds["max_fails"] = k
    node = nodes[busiest]
    if needed[busiest] <= low:
        why = (
            f"max_fails {k}: every node's chance of {low} failures within {window:g} s is at "
            f"most {FALSE_ALARM:g}; at least {low} so one error never takes a node out"
        )
    else:
        requests = math.ceil(node.rate_rps * window)
        why = (
            f"max_fails {k}: P(at least {k} failures among {requests} requests in {window:g} s "
            f"at error rate {node.error_rate:.3g}) ≤ {FALSE_ALARM:g} on the most demanding node, "
            f"{names[busiest]}"
        )
        if needed[busiest] > high:
            why += f"; cannot: it needs {needed[busiest]}, above the {high} capplan sets"
    slow = [i for i, n in enumerate(nodes) if 0 < n.rate_rps and k / n.rate_rps > window]
    if slow:
        late = min(slow, key=lambda i: (nodes[i].rate_rps, i))
        rate = nodes[late].rate_rps
        why += (
            f"; cannot find a dead {names[late]} within {window:g} s: at {_rps(rate)} "
            f"{k} failures take {k / rate:.3g} s"
        )
    else:
        active = [n.rate_rps for n in nodes if n.rate_rps > 0]
        if active:
            why += f"; a dead node is marked down within {k / min(active):.3g} s"
    reasons["max_fails"] = why


def _pooled_timeout(inputs: ThresholdInputs, active: list[int]) -> tuple[int, str] | None:
    """
    The queue timeout when every node with planned traffic has its slots and their station:
    the balancer's one queue makes the pool one queue (``PooledQueue``), and the timeout
    is the wait that station exceeds with probability half the error budget at its capacity
    at the SLO.  None otherwise, or when the pool meets the SLO at no load.
    """
    stations = tuple(s for s in (inputs.nodes[i].station for i in active) if s is not None)
    slots = tuple(n for n in (inputs.nodes[i].servers for i in active) if n is not None)
    if not active or len(stations) < len(active) or len(slots) < len(active):
        return None
    pool = PooledQueue(stations, slots)
    slo_s = inputs.slo_latency_ms / 1e3
    rate = pool.max_rate_for(slo_s, inputs.quantile * 100.0)
    if rate <= 0:
        return None
    budget = max(inputs.error_budget / 2, MIN_BUDGET)
    value = math.ceil(round(pool.wait_isf(budget, rate) * 1e3, 9))
    wait = pool.wait_station
    why = (
        f"queue_timeout_ms {{v}}: the nodes' {sum(pool.slots)} slots fed by one queue (mean "
        f"service {_ms(wait.service_time)}, the wait's scv {wait.scv:.2g}) meet the SLO up "
        f"to {_rps(rate)}, where a request waits longer than {{v}} ms with probability "
        f"{budget:.2g} (half the SLO's error budget): a balancer that refuses what waited "
        "longer (HAProxy's timeout queue) refuses no more than that there, and at overload "
        "admits no request that waited longer"
    )
    return value, why


def _timeouts(
    inputs: ThresholdInputs,
    r_cap: FloatArray,
    r_plan: FloatArray,
    thresholds: dict[str, float | int],
    reasons: dict[str, str],
) -> None:
    """
    queue_timeout_ms, connect_timeout_ms and server_timeout_ms.
    """
    nodes = inputs.nodes
    slo = inputs.slo_latency_ms
    active = [i for i, n in enumerate(nodes) if n.rate_rps > 0]
    pooled = _pooled_timeout(inputs, active)
    if pooled is not None:
        value, why = pooled
    elif active:
        slowest = max(active, key=lambda i: (float(r_plan[i]), -i))
        r = float(r_plan[slowest])
        value = math.floor(round(slo - r * 1e3, 9))
        why = (
            f"queue_timeout_ms {{v}} = {slo:.4g} ms SLO − {_ms(r)} (the slowest mean response at "
            f"its planned rate, {_names(inputs)[slowest]}): the longest a request can wait for a "
            "slot and still make the SLO on average"
        )
    else:
        value = math.floor(slo)
        why = "queue_timeout_ms {v} = the SLO latency (no node has planned traffic)"
    if value < 1:
        value = 1
        why += "; at least 1 ms"
    if value > MAX_TIMEOUT_MS:
        value = MAX_TIMEOUT_MS
        why += "; at most a day"
    thresholds["queue_timeout_ms"] = value
    reasons["queue_timeout_ms"] = why.replace("{v}", str(value))

    thresholds["connect_timeout_ms"] = CONNECT_TIMEOUT_MS
    reasons["connect_timeout_ms"] = (
        f"connect_timeout_ms {CONNECT_TIMEOUT_MS}: a connect on a LAN takes well under 1 ms; "
        "1 s is Linux's first SYN retransmission, so a dead node is given up on and the request "
        "retried elsewhere instead of waited for"
    )

    q = 0.9999
    caps = np.array([n.capacity_rps for n in nodes])
    tails = inputs.pool.quantile(q, caps)
    tails = tails[(caps > 0) & np.isfinite(tails)]
    tail_ms = float(np.max(tails)) * 1e3 if tails.size else 0.0
    value = math.ceil(round(max(SERVER_TIMEOUT_SLO_MULTIPLE * slo, 2 * tail_ms), 9))
    value = min(value, MAX_TIMEOUT_MS)
    thresholds["server_timeout_ms"] = value
    reasons["server_timeout_ms"] = (
        f"server_timeout_ms {value} = max({SERVER_TIMEOUT_SLO_MULTIPLE} × {slo:.4g} ms SLO, "
        f"2 × {tail_ms:.4g} ms, the slowest p99.99 at capacity): cuts off only hung requests"
    )


def _losses(inputs: ThresholdInputs) -> tuple[Loss, ...]:
    """
    The losses to survive: the inputs' own, else the largest node's (N−1).
    """
    if inputs.losses is not None:
        return inputs.losses
    nodes = inputs.nodes
    largest = max(range(len(nodes)), key=lambda i: (nodes[i].capacity_rps, -i))
    return (
        Loss(
            f"its largest node ({_names(inputs)[largest]}, {_rps(nodes[largest].capacity_rps)})",
            (largest,),
        ),
    )


def _forecast_text(forecast: ScaleOutForecast | None, trigger: float) -> str:
    """
    When the capacity plan's forecast reaches ``trigger``, and the date to order by.
    """
    if forecast is None or not forecast.months:
        return ""
    crossing = next((m for m in forecast.months if m.load_rps >= trigger), None)
    if crossing is None:
        last = forecast.months[-1]
        text = (
            f"; the capacity plan's {forecast.band} forecast stays below it until {last.start} "
            f"({_rps(last.load_rps)})"
        )
    else:
        text = (
            f"; the capacity plan's {forecast.band} forecast reaches it in the month from "
            f"{crossing.start} ({_rps(crossing.load_rps)})"
        )
    if forecast.order_by is not None:
        text += f"; its fleet must be ordered by {forecast.order_by}"
    return text


def _scale_out(
    inputs: ThresholdInputs, thresholds: dict[str, float | int], reasons: dict[str, str]
) -> None:
    """
    scale_out_load_rps (the load the pool carries within the SLO after its worst loss) and
    alert_load_rps.
    """
    nodes = inputs.nodes
    losses = _losses(inputs)
    if inputs.losses is None and len(nodes) < 2:
        why = "left out: a single node has no N−1 pool, so losing it loses everything; add a node"
        reasons["scale_out_load_rps"] = "scale_out_load_rps " + why
        reasons["alert_load_rps"] = "alert_load_rps " + why
        return
    slo = f"p{inputs.quantile * 100:g} ≤ {inputs.slo_latency_ms:.4g} ms"
    worst: tuple[float, Loss | None, list[int]] | None = None
    for loss in losses or (None,):
        gone = set(loss.removed) if loss is not None else set()
        keep = [i for i in range(len(nodes)) if i not in gone]
        trigger = 0.0
        if keep:
            reduced = PoolCurves([inputs.pool.nodes[i] for i in keep], inputs.pool.tail_quantile)
            trigger = sig(max_slo_load(reduced, None, inputs.slo_latency_ms, inputs.quantile))
        if worst is None or trigger < worst[0]:
            worst = (trigger, loss, keep)
    assert worst is not None
    trigger, loss, keep = worst
    without = f"the pool without {loss.text}" if loss is not None else "the whole pool"
    if trigger <= 0:
        why = f"left out: {without} cannot meet {slo} at any load; add a node"
        reasons["scale_out_load_rps"] = "scale_out_load_rps " + why
        reasons["alert_load_rps"] = "alert_load_rps " + why
        return
    load = sum(n.rate_rps for n in nodes)
    thresholds["scale_out_load_rps"] = trigger
    if loss is None:
        why = (
            f"scale_out_load_rps {trigger:.6g}: above it the whole pool misses {slo} even with "
            "its best split (the inventory's planning asks to survive no loss)"
        )
    else:
        kind = "N−1 redundancy" if inputs.losses is None else "the loss planning asks to survive"
        worst_of = f", the worst of {len(losses)} losses" if len(losses) > 1 else ""
        why = (
            f"scale_out_load_rps {trigger:.6g}: above it {without} misses {slo} even with its "
            f"best split ({kind}{worst_of})"
        )
    if load >= trigger:
        why += f"; the planned {_rps(load)} is already above it: add a node now"
    why += _forecast_text(inputs.forecast, trigger)
    reasons["scale_out_load_rps"] = why

    headroom_load = math.inf
    if inputs.caps is not None:
        headroom_load = sig(math.fsum(inputs.caps[i] for i in keep))
    if 0 < headroom_load < trigger:
        alert = headroom_load
        why = (
            f"alert_load_rps {alert:.6g} = the caps of {without} (capacity less "
            f"{inputs.headroom:.0%} headroom): above it, that loss eats into the headroom; "
            f"scale out at {trigger:.6g} rps"
        )
    else:
        alert = sig(inputs.alert_fraction * trigger)
        lost = "N−1 redundancy is lost" if inputs.losses is None else "that loss breaks the SLO"
        why = (
            f"alert_load_rps {alert:.6g} = {inputs.alert_fraction:.0%} of the scale-out trigger "
            f"{trigger:.6g} rps: time to add capacity before {lost}"
        )
    thresholds["alert_load_rps"] = alert
    reasons["alert_load_rps"] = why


def derive_thresholds(inputs: ThresholdInputs) -> DerivedThresholds:
    """
    Every node's limits and the pool's thresholds, each with its reason.

    Args:
        inputs: The nodes, their curves, the SLO and the profile's knobs.

    Returns:
        Per node ``limits`` (ints, plan.yaml ``Limits`` keys) and ``node_reasons``; for the
        pool ``pool`` (plan.yaml ``Thresholds`` keys) and ``pool_reasons``.  A reason may also
        explain a key that was left out.
    """
    nodes = inputs.nodes
    pool = inputs.pool
    caps = np.array([n.capacity_rps for n in nodes], dtype=np.float64)
    rates = np.array([n.rate_rps for n in nodes], dtype=np.float64)
    r_cap = pool.mean(caps)
    r_plan = pool.mean(rates)
    # the queue tails of the nodes' stations, also where the slots come from an agreeing
    # station fit rather than the node's chosen curve
    queues = PoolCurves(
        [
            NodeCurve(station=node.station) if node.station is not None else curve
            for node, curve in zip(nodes, pool.nodes, strict=True)
        ]
    )
    k_cap = queues.in_system_limit(caps, max(inputs.error_budget / 2, MIN_BUDGET))
    k_turn = np.full(len(nodes), np.nan)
    planned_caps = caps * (1.0 - inputs.headroom)
    if inputs.round_robin and planned_caps.sum() > 0:
        k_turn = queues.interleaved(float(planned_caps.sum())).in_system_limit(
            planned_caps, ROUND_ROBIN_DIVERT
        )
    limits: list[dict[str, int]] = []
    node_reasons: list[dict[str, str]] = []
    for i, node in enumerate(nodes):
        reasons: dict[str, str] = {}
        limits.append(
            _node_limits(node, float(r_cap[i]), float(k_cap[i]), float(k_turn[i]), inputs, reasons)
        )
        node_reasons.append(_lines(reasons))
    thresholds: dict[str, float | int] = {}
    pool_reasons: dict[str, str] = {}
    _timeouts(inputs, r_cap, r_plan, thresholds, pool_reasons)
    _detection(inputs, thresholds, pool_reasons)
    _scale_out(inputs, thresholds, pool_reasons)
    return DerivedThresholds(
        limits=tuple(limits),
        node_reasons=tuple(node_reasons),
        pool=thresholds,
        pool_reasons=_lines(pool_reasons),
    )
