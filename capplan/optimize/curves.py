"""
Every node's latency curve, evaluated for all nodes at once.

The optimizer asks the same question of every node many times (its mean latency, its tail
probability at a time t, at a trial rate); for station models (M/G/c, M/M/c) the answers come
from one batched call over the nodes' parameter arrays, for the others from each node's own
curve.

Arrivals.  A station is fitted to windows of Poisson arrivals (a node measured on its own, or
what the windows show).  Behind a balancer a node does not see Poisson arrivals: every method
capplan writes — round robin, least connections and their weighted forms — interleaves one
stream over the nodes, so a node that takes a share p of a Poisson stream gets about every
(1/p)-th request, and its inter-arrival times are sums of 1/p exponential gaps: squared
coefficient of variation ca² ≈ p.  :meth:`PoolCurves.interleaved` gives the curves of a pool
whose load Λ is split that way (ca²ᵢ = λᵢ/Λ, Allen–Cunneen's GI/G/c wait
``C·(ca² + scv)/2 / (cμ − λ)``); the split uses them.  ``python -m bench.lab.arrivals``
measures the difference on the lab's pool (c = 2, 4, 8, 8 at 20 ms, 80% load, simulated):
with fixed service Poisson arrivals predict a p99 of 47 ms, interleaved 27 ms, and smooth
weighted round robin measures 26.5 ms (least connections 28 ms); the Poisson split gives the
c = 2 node 6% of the load instead of its slots' 9%, which costs 2–4 ms of the pool's p99.
Capacities, limits and thresholds keep Poisson arrivals: a node's capacity is what it carries
on its own, and the limits are meant to hold whatever the balancer does — except the room
round robin needs at a node (``max_active``), which is sized for its interleaving.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from capplan.models.fit import LatencyCurve
from capplan.models.queueing import (
    erlang_b,
    mgc_mean_response,
    mgc_response_quantile,
    mgc_response_sf,
    mgc_wait,
)

__all__ = ["NodeCurve", "PoolCurves"]

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True)
class NodeCurve:
    """
    One node's latency model: an M/G/c station (servers, service time in s, scv), or any
    other LatencyCurve.
    """

    station: tuple[float, float, float] | None = None
    curve: LatencyCurve | None = None

    def __post_init__(self) -> None:
        if (self.station is None) == (self.curve is None):
            raise ValueError("a NodeCurve is a station or a curve, exactly one of them")


def _tail_from_quantiles(curve: LatencyCurve, t: float, rate: float, q0: float) -> float:
    """
    P(T > t) for a curve known by its quantiles: exponential tail through its q0-quantile,
    P(T > t) = (1 − q0)^(t / t_q0), the same tail its quantile scaling assumes.
    """
    t0 = float(curve.quantile(np.array([rate]), q0)[0])
    if not math.isfinite(t0):
        return 1.0
    if t0 <= 0:
        return 0.0
    return float((1.0 - q0) ** (t / t0))


class PoolCurves:
    """
    The nodes' curves; every method takes one rate per node and answers per node.
    """

    def __init__(
        self,
        nodes: Sequence[NodeCurve],
        tail_quantile: float = 0.99,
        *,
        interleaved_load: float | None = None,
    ) -> None:
        """
        Args:
            nodes: the nodes' curves.
            tail_quantile: the quantile whose exponential tail stands for a non-station curve's.
            interleaved_load: None for Poisson arrivals at every node; a total load Λ > 0 for a
                balancer's even interleaving of a Poisson stream of Λ (see the module's text).
        """
        self.nodes = tuple(nodes)
        self.tail_quantile = tail_quantile
        if interleaved_load is not None and not interleaved_load > 0:
            raise ValueError(f"interleaved_load must be > 0: {interleaved_load!r}")
        self.interleaved_load = interleaved_load
        st = [i for i, n in enumerate(self.nodes) if n.station is not None]
        self._st = np.array(st, dtype=np.intp)
        self._other = [i for i, n in enumerate(self.nodes) if n.station is None]
        params = np.array([self.nodes[i].station for i in st], dtype=np.float64).reshape(-1, 3)
        self._c, self._s, self._v = params[:, 0], params[:, 1], params[:, 2]
        sat = np.empty(len(self.nodes))
        sat[self._st] = self._c / self._s
        for i in self._other:
            curve = self.nodes[i].curve
            assert curve is not None
            sat[i] = curve.saturation
        self.saturation: FloatArray = sat

    def __len__(self) -> int:
        return len(self.nodes)

    def interleaved(self, load: float) -> PoolCurves:
        """
        The same nodes behind a balancer that interleaves a Poisson stream of ``load`` rps.
        """
        return PoolCurves(self.nodes, self.tail_quantile, interleaved_load=load)

    def _arrival_scv(self, lam: FloatArray) -> FloatArray | float:
        """
        The stations' inter-arrival scv at their rates: 1 (Poisson), or their share of the
        interleaved load (at most 1).
        """
        if self.interleaved_load is None:
            return 1.0
        out: FloatArray = np.clip(lam / self.interleaved_load, 0.0, 1.0)
        return out

    def mean(self, rate: FloatArray) -> FloatArray:
        """
        Mean response time per node at its rate (inf at or past saturation).
        """
        out = np.empty(len(self.nodes))
        if self._st.size:
            lam = rate[self._st]
            out[self._st] = mgc_mean_response(
                lam, self._c, self._s, self._v, arrival_scv=self._arrival_scv(lam)
            )
        for i in self._other:
            curve = self.nodes[i].curve
            assert curve is not None
            out[i] = float(curve.mean(np.array([rate[i]]))[0])
        return out

    def marginal_time_in_system(self, rate: FloatArray) -> FloatArray:
        """
        d(λ·R(λ))/dλ per node: the time in system one more request per second adds.

        Closed form for stations (Allen–Cunneen: R = S + k·S·C/(c − A), A = λS,
        k = (ca² + scv)/2, with dB/dA = B·(c/A − 1 + B) for Erlang B, which holds for the
        continuous extension in c too; interleaved, ca² = λ/Λ adds λ·S·C/(c − A)/(2Λ));
        central differences for other curves.  inf at and past saturation.
        """
        out = np.empty(len(self.nodes))
        if self._st.size:
            c, s, v = self._c, self._s, self._v
            lam = rate[self._st]
            a = np.maximum(lam * s, 1e-12)
            stable = a < c
            a_ok = np.where(stable, a, 0.5 * c)
            b = erlang_b(c, a_ok)
            d = 1.0 - a_ok / c * (1.0 - b)
            db = b * (c / a_ok - 1.0 + b)
            dd = -(1.0 - b) / c + a_ok / c * db
            erl_c = b / d
            dc = (db * d - b * dd) / (d * d)
            ca2 = self._arrival_scv(lam)
            k = 0.5 * (ca2 + v)
            gap = c - a_ok
            wait = k * s * erl_c / gap
            dwait_da = k * s * (dc / gap + erl_c / (gap * gap))
            marginal = s + wait + lam * s * dwait_da
            if self.interleaved_load is not None:  # d(ca²)/dλ = 1/Λ below the whole load
                growing = lam < self.interleaved_load
                dk = np.where(growing, 0.5 / self.interleaved_load, 0.0)
                marginal = marginal + lam * dk * s * erl_c / gap
            out[self._st] = np.where(stable, marginal, np.inf)
        for i in self._other:
            curve = self.nodes[i].curve
            assert curve is not None
            r = float(rate[i])
            h = max(
                1e-7 * max(r, curve.saturation if math.isfinite(curve.saturation) else 1.0), 1e-12
            )
            lo, hi = max(r - h, 0.0), r + h
            grid = np.array([lo, hi])
            cost = grid * curve.mean(grid)
            out[i] = float((cost[1] - cost[0]) / (hi - lo))
        return out

    def in_system_limit(self, rate: FloatArray, budget: float) -> FloatArray:
        """
        Per node: the least K ≥ c such that a balancer refusing requests that find K in the
        node refuses at most ``budget`` of them at its rate; nan for a node that is not a
        station, and at or past saturation.

        The FCFS queue's length is the number of arrivals during a wait (distributional
        Little's law), so with the model's wait — positive with weight C, then exponential with
        rate θ (``mgc_wait``: the tail's weight and exact decay rate) — P(N = c + k) =
        C·(1 − r)·rᵏ, r = λ/(λ + θ).  A cap truncates that chain (the M/M/c/K distribution is
        the M/M/c one cut at K and renormalised), so the share refused is P(N = K) / P(N ≤ K) =
        C(1 − r)rᵏ / (1 − C·rᵏ⁺¹): at most ``budget`` when rᵏ ≤ budget / (C·(1 − r + budget·r)).
        Exact for M/M/c (r = ρ).
        """
        out = np.full(len(self.nodes), np.nan)
        if not self._st.size:
            return out
        c, s, v = self._c, self._s, self._v
        lam = rate[self._st]
        a = lam * s
        stable = (a < c) & (lam > 0)
        lam_ok = np.where(stable, lam, 0.5 * c / s)
        p_wait, theta = mgc_wait(lam_ok, c, s, v, arrival_scv=self._arrival_scv(lam_ok))
        r = lam_ok / (lam_ok + theta)
        with np.errstate(divide="ignore", invalid="ignore", over="ignore"):  # P(wait) ≈ 0: no cap
            bound = budget / (p_wait * (1.0 - r + budget * r))
            extra = np.ceil(np.log(bound) / np.log(r) - 1e-9)
        extra = np.where(bound >= 1.0, 0.0, np.maximum(extra, 0.0))
        limit = np.ceil(c) + extra
        out[self._st] = np.where(stable, limit, np.where(lam > 0, np.nan, np.ceil(c)))
        return out

    def sf(self, t: float, rate: FloatArray) -> FloatArray:
        """
        P(response time > t) per node at its rate (1 at or past saturation).
        """
        out = np.empty(len(self.nodes))
        if self._st.size:
            lam = rate[self._st]
            out[self._st] = mgc_response_sf(
                t, lam, self._c, self._s, self._v, arrival_scv=self._arrival_scv(lam)
            )
        for i in self._other:
            curve = self.nodes[i].curve
            assert curve is not None
            out[i] = _tail_from_quantiles(curve, t, float(rate[i]), self.tail_quantile)
        return out

    def quantile(self, q: float, rate: FloatArray) -> FloatArray:
        """
        The q-quantile of the response time per node at its rate.
        """
        out = np.empty(len(self.nodes))
        if self._st.size:
            lam = rate[self._st]
            out[self._st] = mgc_response_quantile(
                q, lam, self._c, self._s, self._v, arrival_scv=self._arrival_scv(lam)
            )
        for i in self._other:
            curve = self.nodes[i].curve
            assert curve is not None
            out[i] = float(curve.quantile(np.array([rate[i]]), q)[0])
        return out
