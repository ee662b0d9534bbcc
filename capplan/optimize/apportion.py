"""
Integer weights from ideal shares: an apportionment problem per balancer range (pure).

A balancer splits traffic in proportion to integer weights, so the optimizer's shares must be
rounded to integers whose ratios are as close as the balancer's range allows.  That is the
apportionment problem of seats to parties: the *house size* is the sum of the weights.

The method is **Webster's (Sainte-Laguë) divisor method, bounded**: every node with a positive
share starts at ``minimum`` weight, and each further unit of weight goes, one at a time, to
the node with the highest priority ``share / (weight + 0.5)`` among those below ``maximum``
(equal priorities: the earlier node first).  Equivalently, for some divisor ``d`` every weight
is ``share / d`` rounded to the nearest integer, then clamped to ``[minimum, maximum]``.  Why
this method:

- it is exactly "scale and round": with a fixed divisor each weight is the nearest integer to
  its exact scaled value, so each node's weight is off by at most half a unit;
- it is house-monotone (no Alabama paradox: a larger house never takes weight from a node) and
  share-monotone (a larger share never gets a smaller weight), so weights do not jump about
  when the house size or the shares change a little;
- among divisor methods it is the unbiased one: D'Hondt (rounding down) favours large shares
  and Adams (rounding up) small ones.  Largest remainder (Hamilton) has a slightly smaller
  worst absolute error at a fixed house size but suffers the Alabama paradox, and we choose
  the house size per target anyway (below), which matters far more.

A node with share 0 always gets weight 0 (``minimum`` applies only to nodes with traffic).
nginx has no weight 0: the caller marks such a node ``down`` or ``backup``.

House sizes per target (``weights_for``):

- **nginx** (weights ≥ 1; small numbers read best and give nginx's smooth weighted round robin
  a short cycle): the smallest house size from the number of active nodes up to
  ``NGINX_MAX_HOUSE`` (100, or 25 per active node for pools of more than 4) whose realized
  shares are all within ``NGINX_TOLERANCE`` (0.01) of the ideal *and* within
  ``NGINX_REL_TOLERANCE`` (5%) of it relative to the share: the absolute bound alone lets a
  small node in a large pool get twice its share, and a node's rate is off by exactly its
  relative error, which 5% keeps well inside every shipped profile's headroom (10–35%).  When
  no house in the range meets both (a tiny share next to large ones), the nearest: the
  absolute bound first, then the smallest relative error (``nginx_score``).
- **haproxy** (0–256): the full range: the divisor is chosen so the largest share gets 256,
  every other weight is its exact scaled value ``256 · share / largest share`` rounded to the
  nearest integer (at least 1).
- **ipvsadm**, **keepalived** (LVS, 0–65535): the same with the largest share at 10000 —
  four significant digits, far finer than any capacity estimate, easy to read, and well below
  65535.
"""

from __future__ import annotations

import heapq
import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

__all__ = [
    "HOUSE_TOP",
    "NGINX_HOUSE_PER_NODE",
    "NGINX_MAX_HOUSE",
    "NGINX_REL_TOLERANCE",
    "NGINX_TOLERANCE",
    "Apportionment",
    "apportion",
    "nginx_score",
    "weights_for",
]

FloatArray = npt.NDArray[np.float64]

#: Per fixed-divisor target, the weight the largest share gets.
HOUSE_TOP: dict[str, int] = {"haproxy": 256, "ipvsadm": 10_000, "keepalived": 10_000}

#: The largest nginx house size searched: 100, or NGINX_HOUSE_PER_NODE per active node when
#: that is more.
NGINX_MAX_HOUSE = 100
NGINX_HOUSE_PER_NODE = 25

#: The worst |realized − ideal| share nginx's house size search accepts.
NGINX_TOLERANCE = 0.01

#: The worst |realized / ideal − 1| nginx's house size search accepts.
NGINX_REL_TOLERANCE = 0.05

#: The largest weight each target accepts.
_TARGET_MAX: dict[str, int] = {
    "nginx": 65535,
    "haproxy": 256,
    "ipvsadm": 65535,
    "keepalived": 65535,
}


@dataclass(frozen=True)
class Apportionment:
    """
    Integer weights for a set of shares, and how far their ratios are from the ideal.

    ``ideal`` are the shares normalised to sum 1, ``realized`` the weights' own shares
    (``weight / total``); ``max_abs_error`` is the worst ``|realized − ideal|`` and
    ``max_rel_error`` the worst ``|realized / ideal − 1|`` over the nodes with a positive share.
    """

    weights: tuple[int, ...]
    ideal: tuple[float, ...]
    realized: tuple[float, ...]
    total: int
    max_abs_error: float
    max_rel_error: float
    method: str


def _normalised(shares: Sequence[float]) -> tuple[tuple[float, ...], tuple[float, ...]]:
    """
    The shares as given and divided by their sum, after checking each is a finite number ≥ 0.

    Priorities are compared on the shares as given: dividing by the sum can round two
    different shares to the same number, and the larger must not lose the tie.
    """
    values = tuple(float(s) for s in shares)
    if not values:
        raise ValueError("shares must not be empty")
    for i, s in enumerate(values):
        if not (math.isfinite(s) and s >= 0):
            raise ValueError(f"shares[{i}] must be a finite number >= 0: {s!r}")
    total = math.fsum(values)
    if total <= 0:
        raise ValueError("shares must have at least one positive value")
    return values, tuple(s / total for s in values)


def _errors(
    ideal: Sequence[float], weights: Sequence[int]
) -> tuple[tuple[float, ...], float, float]:
    """
    The realized shares and the worst absolute and relative share errors.
    """
    house = sum(weights)
    realized = tuple(w / house for w in weights)
    abs_err = max(abs(r - s) for r, s in zip(realized, ideal, strict=True))
    rel_err = max(abs(r / s - 1.0) for r, s in zip(realized, ideal, strict=True) if s > 0)
    return realized, abs_err, rel_err


def _check_bounds(minimum: int, maximum: int | None) -> None:
    """
    Refuse a negative minimum, or a maximum below max(minimum, 1).
    """
    if minimum < 0:
        raise ValueError(f"minimum must be >= 0: {minimum!r}")
    if maximum is not None and maximum < max(minimum, 1):
        raise ValueError(f"maximum must be >= max(minimum, 1): {maximum!r}")


def _priority(share: float, weight: int) -> float:
    """
    Webster's priority for a node's next unit of weight.
    """
    return share / (weight + 0.5)


def apportion(
    shares: Sequence[float], total: int, *, minimum: int = 0, maximum: int | None = None
) -> Apportionment:
    """
    Integer weights summing to ``total`` in proportion to ``shares`` (bounded Webster).

    Each node with a positive share gets at least ``minimum`` and at most ``maximum``; a node
    with share 0 gets 0.  The result is the bounded Webster apportionment: the ``total`` units
    go to the highest priorities ``share / (k − 0.5)`` (k = 1, 2, … per node), the earlier node
    first among equal priorities.

    Args:
        shares: The ideal shares, one per node, each ≥ 0 (normalised to sum 1 here).
        total: The house size: the sum of the weights.
        minimum: The least weight of a node with a positive share.
        maximum: The largest weight of any node (None: no limit).

    Returns:
        The weights, realized shares and errors.

    Raises:
        ValueError: for a negative or non-finite share, all shares 0, bad bounds, or a total
            the bounds cannot reach.
    """
    raw, ideal = _normalised(shares)
    _check_bounds(minimum, maximum)
    active = [i for i, s in enumerate(ideal) if s > 0]
    least = minimum * len(active)
    most = math.inf if maximum is None else maximum * len(active)
    if not (least <= total <= most) or total < 1:
        raise ValueError(
            f"total must be between {max(least, 1)} and {most} for {len(active)} nodes with "
            f"traffic and weights in [{minimum}, {maximum}]: {total!r}"
        )
    top = math.inf if maximum is None else maximum
    bounds = f"[{minimum}, {maximum}]" if maximum is not None else f">= {minimum}"
    # Start at the divisor 1/total (each weight its rounded quota, clamped), then move single
    # units by priority until the sum is right: the same set of units as adding them one by
    # one from the minimum, because a node's units have falling priorities.
    weights = [0] * len(ideal)
    scale = total / math.fsum(raw)
    for i in active:
        quota = raw[i] * scale
        weights[i] = int(min(max(math.floor(quota + 0.5), minimum), top))
    missing = total - sum(weights)
    if missing > 0:
        heap = [(-_priority(raw[i], weights[i]), i) for i in active if weights[i] < top]
        heapq.heapify(heap)
        for _ in range(missing):
            _, i = heapq.heappop(heap)
            weights[i] += 1
            if weights[i] < top:
                heapq.heappush(heap, (-_priority(raw[i], weights[i]), i))
    elif missing < 0:
        # the unit a node would give back is its last: priority share / (weight − 0.5);
        # the lowest goes first, the later node first among equal priorities
        heap = [(raw[i] / (weights[i] - 0.5), -i) for i in active if weights[i] > minimum]
        heapq.heapify(heap)
        for _ in range(-missing):
            _, j = heapq.heappop(heap)
            i = -j
            weights[i] -= 1
            if weights[i] > minimum:
                heapq.heappush(heap, (raw[i] / (weights[i] - 0.5), -i))
    realized, abs_err, rel_err = _errors(ideal, weights)
    return Apportionment(
        weights=tuple(weights),
        ideal=ideal,
        realized=realized,
        total=total,
        max_abs_error=abs_err,
        max_rel_error=rel_err,
        method=f"webster, house {total}, weights {bounds}",
    )


def nginx_score(apportionment: Apportionment) -> tuple[float, float]:
    """
    How far an nginx apportionment is from acceptable, absolute bound first.

    Args:
        apportionment: Weights for the active nodes.

    Returns:
        (max(1, max_abs_error / NGINX_TOLERANCE), max(1, max_rel_error / NGINX_REL_TOLERANCE)):
        (1, 1) is within both tolerances; smaller (compared as tuples) is nearer.
    """
    return _score_of(apportionment.max_abs_error, apportionment.max_rel_error)


def _score_of(abs_err: float, rel_err: float) -> tuple[float, float]:
    """
    ``nginx_score`` from the two worst errors.
    """
    return (max(1.0, abs_err / NGINX_TOLERANCE), max(1.0, rel_err / NGINX_REL_TOLERANCE))


def _score(ideal: FloatArray, weights: FloatArray, house: int) -> tuple[float, float]:
    """
    ``nginx_score`` of the active nodes' weights (numpy: the search calls it per house size).
    """
    realized = weights / house
    abs_err = float(np.max(np.abs(realized - ideal)))
    rel_err = float(np.max(np.abs(realized / ideal - 1.0)))
    return _score_of(abs_err, rel_err)


def _nginx(raw: tuple[float, ...], ideal: tuple[float, ...]) -> Apportionment:
    """
    The smallest nginx house size within both tolerances, else the one nearest to them.

    One pass: Webster is house-monotone, so the apportionment for house h + 1 is the one for
    h plus the highest-priority unit.
    """
    active = [i for i, s in enumerate(ideal) if s > 0]
    house = len(active)
    cap = max(NGINX_MAX_HOUSE, NGINX_HOUSE_PER_NODE * house)
    target = np.array([ideal[i] for i in active])
    weights = np.ones(len(active))  # the active nodes' weights, in their order
    heap = [(-_priority(raw[i], 1), k) for k, i in enumerate(active)]
    heapq.heapify(heap)
    best_house, best = house, _score(target, weights, house)
    while best > (1.0, 1.0) and house < cap:
        _, k = heapq.heappop(heap)
        weights[k] += 1
        heapq.heappush(heap, (-_priority(raw[active[k]], int(weights[k])), k))
        house += 1
        score = _score(target, weights, house)
        if score < best:
            best_house, best = house, score
    result = apportion(raw, best_house, minimum=1)
    within = f"every share within {NGINX_TOLERANCE:g} and {NGINX_REL_TOLERANCE:.0%} of its ideal"
    if nginx_score(result) == (1.0, 1.0):
        why = f"the smallest house with {within}"
    else:
        why = f"no house up to {cap} has {within}; the nearest"
    return replace(result, method=f"webster, house {result.total} ({why}), weights >= 1")


def weights_for(target: str, shares: Sequence[float]) -> Apportionment:
    """
    The integer weights for one balancer target, with the house size documented above.

    Args:
        target: ``nginx``, ``haproxy``, ``ipvsadm`` or ``keepalived``.
        shares: The ideal shares, one per node, each ≥ 0 (normalised to sum 1).  A node with
            share 0 gets weight 0; for nginx the caller must mark it ``down`` or ``backup``.

    Returns:
        The weights, realized shares and errors; ``method`` names the house size and why.

    Raises:
        ValueError: for an unknown target or bad shares.
    """
    if target not in _TARGET_MAX:
        raise ValueError(f"target must be one of {', '.join(_TARGET_MAX)}: {target!r}")
    raw, ideal = _normalised(shares)
    if target == "nginx":
        return _nginx(raw, ideal)
    top = HOUSE_TOP[target]
    largest = max(raw)
    house = sum(max(1, math.floor(s / largest * top + 0.5)) for s in raw if s > 0)
    result = apportion(raw, house, minimum=1, maximum=top)
    return replace(
        result, method=f"webster, largest share at {top} (house {house}), weights in [1, {top}]"
    )
