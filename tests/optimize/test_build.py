"""
What optimize takes from the inventory's ``planning:``: the losses the scale-out trigger must
survive.
"""

from __future__ import annotations

import numpy as np
import pytest

from capplan.inventory import effective_slo, load_profile, parse_inventory
from capplan.models.fit import Candidate, NodeFit
from capplan.models.queueing import mgc_mean_response
from capplan.optimize.build import (
    Slots,
    build_plan,
    choose_methods,
    node_slots,
    planning_losses,
)
from capplan.optimize.curves import NodeCurve, PoolCurves
from capplan.optimize.thresholds import NodeThresholdInput, ThresholdInputs, derive_thresholds
from capplan.planfile import Plan

NODES = """nodes:
  - {name: web-1, host: 127.0.0.2, address: 127.0.0.2:8080, zone: a}
  - {name: web-2, host: 127.0.0.3, address: 127.0.0.3:8080, zone: b}
  - {name: web-3, host: 127.0.0.4, address: 127.0.0.4:8080, zone: a}
  - {name: web-4, host: 127.0.0.5, address: 127.0.0.5:8080, zone: c}
"""


def fit(node: str, capacity: float) -> NodeFit:
    return NodeFit(
        node, "mgc", {}, {}, capacity, (capacity, capacity), (), 10, capacity, "", (), True, ""
    )


FITS = [fit("web-1", 100.0), fit("web-2", 400.0), fit("web-3", 300.0), fit("web-4", 400.0)]


def test_no_planning_section_means_n_minus_1() -> None:
    inventory = parse_inventory("cluster: web\n" + NODES, "inv.yaml")
    assert planning_losses(inventory, FITS, [0, 1, 2, 3]) is None


def test_n_plus_and_zones() -> None:
    text = "cluster: web\nzones: [a, b, c, d]\nplanning: {n_plus: 3, survive: zone}\n" + NODES
    inventory = parse_inventory(text, "inv.yaml")
    # web-1 has no usable model: positions count the usable nodes web-2, web-3, web-4 only
    losses = planning_losses(inventory, FITS, [1, 2, 3])
    assert losses is not None
    texts = [(loss.text, loss.removed) for loss in losses]
    assert texts == [
        ("its 3 largest nodes (web-2, web-4 and 1 more)", (0, 1, 2)),
        ("zone a", (1,)),  # web-3; web-1 is not in the pool
        ("zone b", (0,)),
        ("zone c", (2,)),
    ]  # zone d holds no node: no loss


def test_one_largest_node_is_named_with_its_capacity() -> None:
    text = "cluster: web\nplanning: {n_plus: 1}\n" + NODES
    losses = planning_losses(parse_inventory(text, "inv.yaml"), FITS, [0, 1, 2, 3])
    assert losses is not None
    assert [(loss.text, loss.removed) for loss in losses] == [
        ("its largest node (web-2, 400 rps)", (1,))
    ]


def test_planning_without_losses() -> None:
    text = "cluster: web\nplanning: {target_utilization: 0.6}\n" + NODES
    assert planning_losses(parse_inventory(text, "inv.yaml"), FITS, [0, 1, 2, 3]) == ()


def candidate(model: str, capacity: float, servers: float | None = None) -> Candidate:
    params = {"servers": servers, "service_ms": 20.0, "scv": 1.0} if servers else {}
    return Candidate(model, params, {}, 3, 20, 1.0, 0.0, capacity, (capacity, capacity), True, "")


def test_slots_from_the_chosen_station() -> None:
    chosen = NodeFit(
        "web-1",
        "mgc",
        {"servers": 8.0, "service_ms": 20.0, "scv": 0.5},
        {},
        350.0,
        (340.0, 360.0),
        (),
        20,
        300.0,
        "",
        (),
        True,
        "",
    )
    assert Slots(8, "", (8.0, 0.02, 0.5)) == node_slots(chosen)


def test_slots_from_an_agreeing_station_candidate() -> None:
    """
    A USL chosen by a little: the M/G/c candidate, whose capacity agrees within 10%, still
    gives the node's slots (HAProxy's max_active); one that disagrees does not.
    """
    candidates = (candidate("mgc", 375.0, 8.0), candidate("usl", 372.8))
    usl = NodeFit(
        "n4", "usl", {}, {}, 372.8, (362.0, 384.0), (), 24, 367.0, "", candidates, True, ""
    )
    servers, source, station = node_slots(usl)
    assert 8 == servers
    assert "its mgc fit, whose capacity 375 rps agrees with the usl's 372.8" == source
    assert (8.0, 0.02, 1.0) == station
    far = (candidate("mgc", 420.0, 9.0), candidate("usl", 372.8))
    usl = NodeFit("n4", "usl", {}, {}, 372.8, (362.0, 384.0), (), 24, 367.0, "", far, True, "")
    assert Slots(None) == node_slots(usl)


def test_slots_source_in_the_reason() -> None:
    """The max_active reason says where a borrowed slot count comes from."""
    pool = PoolCurves([NodeCurve(station=(8.0, 0.02, 1.0))])
    node = NodeThresholdInput(
        rate_rps=200.0, capacity_rps=350.0, servers=8, name="n4", servers_from="its mgc fit"
    )
    result = derive_thresholds(ThresholdInputs(pool=pool, nodes=(node,)))
    assert 9 == result.limits[0]["max_active"]  # and one waiting at the node
    assert "8 slots (from its mgc fit) + 1 waiting" in result.node_reasons[0]["max_active"]


def _station_fit(
    node: str, servers: float, service_ms: float, capacity: float, scv: float = 1.0
) -> NodeFit:
    params = {"servers": servers, "service_ms": service_ms, "scv": scv}
    return NodeFit(
        node, "mgc", params, {}, capacity, (capacity, capacity), (), 20, capacity, "", (), True, ""
    )


def _plan(text: str, fits: list[NodeFit], profile: str, load_rps: float) -> Plan:
    """
    The plan for the inventory ``text`` and its nodes' ``fits`` (no errors, 40 windows).
    """
    inventory = parse_inventory(text, "inv.yaml")
    prof = load_profile(profile)
    return build_plan(
        inventory=inventory,
        inventory_name="inv.yaml",
        profile=prof,
        slo=effective_slo(None, inventory.slo, prof.slo),
        fits=fits,
        load_rps=load_rps,
        windows=40,
        newest=None,
        error_rates=[0.0] * len(fits),
    ).plan


def test_least_connections_weights_are_the_connections_at_the_split() -> None:
    """
    Least connections keeps each node's open connections in proportion to its weight, so its
    weights are the nodes' numbers in system at the split (λᵢ·Rᵢ, with Rᵢ behind the
    balancer: arrivals of scv λᵢ/Λ); round robin's are the rates.  Two 8-slot nodes, 20 and
    40 ms: the slow one holds more connections per request.
    """
    text = (
        "cluster: web\nslo: {latency_ms: 250, percentile: 99}\n"
        + NODES.split("  - {name: web-3")[0]
    )
    fits = [_station_fit("web-1", 8, 20.0, 350.0), _station_fit("web-2", 8, 40.0, 170.0)]
    plans = {profile: _plan(text, fits, profile, 350.0) for profile in ("balanced", "cost-first")}
    least = plans["balanced"]
    assert least.methods.haproxy == "leastconn"
    rates = [n.rate_rps for n in least.nodes]
    behind = mgc_mean_response(rates, 8.0, [0.02, 0.04], 1.0, arrival_scv=np.array(rates) / 350)
    held = list(np.array(rates) * behind)
    weights = [n.weights.haproxy for n in least.nodes]
    assert weights[0] == 256 or weights[1] == 256
    assert weights[1] / weights[0] == pytest.approx(held[1] / held[0], rel=0.01)
    assert weights[1] / weights[0] > rates[1] / rates[0] * 1.2  # not the rates
    for node in least.nodes:  # the traffic those weights give: the planned share
        assert node.realized_share.haproxy == pytest.approx(node.share, abs=0.005)
    robin = plans["cost-first"]
    assert robin.methods.haproxy == "roundrobin"
    rates = [n.rate_rps for n in robin.nodes]
    weights = [n.weights.haproxy for n in robin.nodes]
    assert weights[1] / weights[0] == pytest.approx(rates[1] / rates[0], rel=0.01)


def _fixed_service_plan(balancers: str) -> Plan:
    """
    The balanced profile's plan for the lab's pool with near-fixed service (c = 2, 4, 8, 8 at
    20 ms, the fitted scv 0.0004) at 700 rps, p99 ≤ 120 ms, for ``balancers`` (inventory text).
    """
    text = "cluster: web\nslo: {latency_ms: 120, percentile: 99}\n" + balancers + NODES
    fits = [
        _station_fit(f"web-{i + 1}", c, 20.0, c / 0.02 * 0.95, scv=0.0004)
        for i, c in enumerate((2, 4, 8, 8))
    ]
    return _plan(text, fits, "balanced", 700.0)


@pytest.mark.parametrize(
    ("balancers", "room"),
    [
        ("", 2),  # every target, HAProxy among them: its roundrobin decides
        ("balancers:\n  - {kind: nginx, name: web_backend}\n", 2),  # nginx's round_robin
        ("balancers:\n  - {kind: haproxy, name: web}\n", 2),
    ],
)
def test_round_robin_room_without_or_with_haproxy(balancers: str, room: int) -> None:
    """max_active leaves round robin room whichever balancers the plan is for."""
    plan = _fixed_service_plan(balancers)
    for node, slots in zip(plan.nodes, (2, 4, 8, 8), strict=True):
        assert node.limits.max_active >= slots + room


def test_the_split_follows_the_balancers_interleaving() -> None:
    """
    The lab's pool with near-fixed service (c = 2, 4, 8, 8 at 20 ms, the fitted scv 0.0004) at
    700 rps: behind a balancer each node's arrivals are as even as its share, so the small node
    queues little and gets about its slots' share (2/22 = 9.1%); a split over Poisson arrivals
    at each node gave it 6%, which costs the pool's p99 on a real balancer (bench.lab.arrivals).
    """
    plan = _fixed_service_plan("")
    shares = [n.share for n in plan.nodes]
    assert shares[0] == pytest.approx(2 / 22, abs=0.006)
    assert shares[1] == pytest.approx(4 / 22, abs=0.006)
    # near-constant service: the balanced profile's auto method is round robin, said why
    assert plan.methods.nginx == "round_robin"
    assert plan.methods.haproxy == "roundrobin"
    assert "near-constant" in plan.pool.reasons["methods"]
    # HAProxy's maxconn leaves room for round robin's turns (not the hand-over buffer of 1)
    assert all(n.limits.max_active >= s + 2 for n, s in zip(plan.nodes, (2, 4, 8, 8), strict=True))
    # round robin's weights are the rates
    weights = [n.weights.haproxy for n in plan.nodes]
    assert weights[3] == 256
    for node, weight in zip(plan.nodes, weights, strict=True):
        assert weight / 256 == pytest.approx(node.share / plan.nodes[3].share, abs=0.01)


AUTO = {"nginx": "auto", "haproxy": "auto", "ipvsadm": "auto", "keepalived": "auto"}


class TestChooseMethods:
    @pytest.mark.parametrize(
        ("scv", "names", "said"),
        [
            # weighted by rate: (100·0 + 300·0.05)/400 = 0.0375 ≤ 0.04
            (0.05, ("round_robin", "roundrobin", "wrr", "wrr"), "scv 0.037"),
            # (100·0 + 300·0.06)/400 = 0.045 > 0.04
            (0.06, ("least_conn", "leastconn", "wlc", "wlc"), "vary (scv 0.045"),
        ],
    )
    def test_by_the_service_times_variability(
        self, scv: float, names: tuple[str, ...], said: str
    ) -> None:
        stations = [(2.0, 0.02, 0.0), (8.0, 0.02, scv)]
        methods, why = choose_methods(AUTO, ["a", "b"], stations, [100.0, 300.0])
        assert methods == dict(zip(AUTO, names, strict=True))
        assert said in why

    def test_unknown_variability_is_least_connections_naming_the_node(self) -> None:
        methods, why = choose_methods(AUTO, ["a", "b"], [(2.0, 0.02, 0.0), None], [100.0, 300.0])
        assert methods["nginx"] == "least_conn"
        assert "unknown for b" in why
        # the longest names a node may have still give one plan reason (≤ 500 characters)
        names = [f"{i}" + "n" * 62 for i in range(5)]
        _, why = choose_methods(AUTO, names, [None] * 5, [1.0] * 5)
        assert "and 2 more" in why
        assert len(why) <= 500

    def test_a_pinned_method_is_kept(self) -> None:
        requested = {"nginx": "least_conn", "haproxy": "auto"}
        methods, why = choose_methods(requested, ["a"], [(2.0, 0.02, 0.0)], [100.0])
        assert methods == {"nginx": "least_conn", "haproxy": "roundrobin"}
        assert "haproxy roundrobin" in why
        assert "nginx" not in why
        assert choose_methods({"nginx": "round_robin"}, ["a"], [None], [1.0]) == (
            {"nginx": "round_robin"},
            "",
        )
