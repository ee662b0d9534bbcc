"""
plan.yaml: validation with FILE:LINE: key errors, hostile values refused, deterministic dumps.
"""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st

from capplan.errors import InputError
from capplan.planfile import HEADER, Plan, dump_plan, load_plan, parse_plan

from .conftest import GOLDEN, PLAN_FILE, compare_golden


def _edit(path: list[str | int], value: Any) -> str:
    """
    The fixed plan with one value replaced, as YAML text (values written as JSON).
    """
    data = yaml.safe_load(PLAN_FILE.read_text(encoding="utf-8"))
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return yaml.safe_dump(data, sort_keys=False, allow_unicode=True)


def _error(text: str) -> InputError:
    with pytest.raises(InputError) as info:
        parse_plan(text, "plan.yaml")
    return info.value


class TestParsePlan:
    def test_fixed_plan(self, plan: Plan) -> None:
        """
        The fixed plan loads, with ints read as floats and the timestamp in UTC.
        """
        assert "web" == plan.cluster
        assert 1800.0 == plan.inputs.load_rps
        assert datetime(2026, 11, 20, 10, tzinfo=UTC) == plan.inputs.newest
        assert ["active", "active", "backup", "down"] == [n.state for n in plan.nodes]
        assert 34 == plan.nodes[0].limits.max_conns

    def test_newest_as_a_string(self) -> None:
        """
        A quoted timestamp with an offset is read and kept in UTC.
        """
        plan = parse_plan(_edit(["inputs", "newest"], "2026-11-20T12:00:00+02:00"), "p")
        assert datetime(2026, 11, 20, 10, tzinfo=UTC) == plan.inputs.newest

    def test_missing_file(self, tmp_path: Path) -> None:
        """
        A missing plan file is an InputError naming the file.
        """
        with pytest.raises(InputError, match="no such plan file"):
            load_plan(tmp_path / "nope.yaml")

    @pytest.mark.parametrize(
        ("path", "value", "key", "match"),
        [
            (["version"], 2, "version", "unsupported plan version 2"),
            (["inputs", "load_rps"], "1800", "inputs.load_rps", "valid number"),
            (["inputs", "windows"], 3.0, "inputs.windows", "valid integer"),
            (["nodes", 0, "weights", "haproxy"], 300, "nodes.0.weights.haproxy", "256"),
            (["nodes", 0, "weights", "ipvsadm"], 70000, "nodes.0.weights.ipvsadm", "65535"),
            (["nodes", 0, "weights", "nginx"], 0, "nodes.0.weights.nginx", "at least 1"),
            (["nodes", 3, "weights", "ipvsadm"], 5, "nodes.3.weights.ipvsadm", "weight 0"),
            (["nodes", 1, "node"], "web-1", "nodes.1.node", "already the node of nodes.0"),
            (["nodes", 0, "share"], 1.5, "nodes.0.share", "less than or equal to 1"),
            (["nodes", 0, "state"], "standby", "nodes.0.state", "active"),
            (["nodes", 0, "limits", "min_conns"], 40, "nodes.0.limits", "min_conns 40"),
            (["nodes", 0, "limits", "lthreshold"], 34, "nodes.0.limits", "lthreshold 34"),
            (["nodes", 0, "address"], "web1.example:8080", "nodes.0.address", "host names"),
            (["nodes", 0, "limits", "bogus"], 1, "nodes.0.limits.bogus", "unknown key"),
            (["methods", "haproxy"], "leastconns", "methods.haproxy", "leastconn"),
            (["methods", "ipvsadm"], "wlcx", "methods.ipvsadm", "not an LVS scheduler"),
            (["methods", "nginx"], "ip_hash", "nodes.2.state", "backup"),
            (["methods", "nginx"], "random two", "nodes.2.state", "cannot have backup"),
            (["methods", "nginx"], "hash $remote_addr;x", "methods.nginx", "balancing method"),
            (["pool", "thresholds", "fall"], 0, "pool.thresholds.fall", "greater than"),
            (["pool", "predicted", "p99"], 1.0, "pool.predicted.p99", "p<N>_ms"),
            (["pool", "thresholds", "check_interval_s"], float("nan"), None, "finite number"),
        ],
    )
    def test_bad_values(
        self, path: list[str | int], value: Any, key: str | None, match: str
    ) -> None:
        """
        A bad value is refused with FILE:LINE: key: problem, the line holding that key.
        """
        key = key or ".".join(map(str, path))
        error = _error(_edit(path, value))
        assert "plan.yaml" == error.file
        assert key == error.key
        assert match in error.problem
        assert error.line is not None
        line = _edit(path, value).split("\n")[error.line - 1]
        assert key.split(".")[-1] in line

    def test_error_points_at_the_line(self) -> None:
        """
        The line is the one holding the bad value.
        """
        text = PLAN_FILE.read_text(encoding="utf-8").replace("haproxy: 192", "haproxy: 999")
        error = _error(text)
        expected = next(i for i, ln in enumerate(text.split("\n"), 1) if "haproxy: 999" in ln)
        assert expected == error.line
        assert str(error).startswith(f"plan.yaml:{expected}: nodes.1.weights.haproxy: ")

    def test_random_two_with_unequal_weights(self) -> None:
        """
        nginx 'random two' is refused when active nodes have unequal weights.
        """
        text = PLAN_FILE.read_text(encoding="utf-8").replace(
            "nginx: least_conn", "nginx: random two"
        )
        text = text.replace("state: backup", "state: active")
        error = _error(text)
        assert "methods.nginx" == error.key
        assert "unequal weights (1, 5, 15)" in error.problem

    def test_missing_method_for_a_balancer(self) -> None:
        """
        A balancer whose target has no method is refused.
        """
        data = yaml.safe_load(PLAN_FILE.read_text(encoding="utf-8"))
        del data["methods"]["keepalived"]
        error = _error(yaml.safe_dump(data, sort_keys=False, allow_unicode=True))
        assert "methods.keepalived" == error.key
        assert "required by the keepalived balancer" in error.problem

    def test_not_a_mapping(self) -> None:
        """
        A document that is not a mapping is refused on line 1.
        """
        assert 1 == _error("- 1\n- 2\n").line

    def test_no_active_node(self) -> None:
        """
        A plan where no node takes traffic is refused.
        """
        text = PLAN_FILE.read_text(encoding="utf-8").replace("state: active", "state: backup")
        text = text.replace("nginx: least_conn", "nginx: round_robin")
        assert "no node is active" in _error(text).problem


HOSTILE = {
    "newline": "web\nx",
    "semicolon": "web;x",
    "open brace": "web{x",
    "close brace": "web}x",
    "hash": "web#x",
    "double quote": 'web"x',
    "single quote": "web'x",
    "NUL": "web\x00x",
    "10 kB": "w" * 10_000,
}

HOSTILE_PLACES: list[list[str | int]] = [
    ["cluster"],
    ["nodes", 0, "node"],
    ["nodes", 0, "address"],
    ["balancers", 0, "name"],
    ["balancers", 1, "name"],
    ["balancers", 2, "name"],
    ["balancers", 3, "name"],
    ["balancers", 0, "output"],
    ["inputs", "inventory"],
    ["inputs", "profile"],
]


class TestHostileValues:
    @pytest.mark.parametrize("place", HOSTILE_PLACES, ids=lambda p: ".".join(map(str, p)))
    @pytest.mark.parametrize("value", list(HOSTILE.values()), ids=list(HOSTILE))
    def test_refused(self, place: list[str | int], value: str) -> None:
        """
        Characters that could break out of a config line are refused, with a short message.
        """
        data = yaml.safe_load(PLAN_FILE.read_text(encoding="utf-8"))
        target = data
        for key in place[:-1]:
            target = target[key]
        if place[-1] == "address":
            value = value.replace("web", "203.0.113.11:80")
        elif place[0] == "balancers" and place[-1] == "name" and place[1] in (2, 3):
            value = value.replace("web", "198.51.100.10:80")
        target[place[-1]] = value
        text = json.dumps(data, default=str)  # JSON is YAML: every character can be written
        error = _error(text)
        assert ".".join(map(str, place)) == error.key
        assert error.line is not None
        assert len(str(error)) < 400

    def test_trailing_newline_is_not_stripped(self) -> None:
        """
        A name with a trailing newline is refused, not silently stripped.
        """
        assert "cluster" == _error(_edit(["cluster"], "web\n")).key


class TestDumpPlan:
    def test_round_trip(self, plan: Plan) -> None:
        """
        parse_plan(dump_plan(p)) == p, and the dump of that is the same bytes.
        """
        text = dump_plan(plan)
        again = parse_plan(text, "dump")
        assert plan == again
        assert text == dump_plan(again)

    def test_capacity_section_round_trip(self, plan: Plan) -> None:
        """
        A capacity section (with and without a fleet) and ``load_from`` dump and parse back to
        the same plan, and the same bytes; a month is one flow line.
        """
        from capplan.planfile import Band, CapacityMonth, Dates, PlanCapacity

        when = datetime(2026, 11, 23, tzinfo=UTC)
        capacity = PlanCapacity(
            made=when,
            plan_for="high",
            forecast="ets",
            exhaustion=Dates(early=when, median=None, late=None),
            order_by=None,
            months=[
                CapacityMonth(
                    month=1,
                    start=when,
                    load_rps=Band(low=590.5, median=600.0, high=648.25),
                    nodes={"large": {"a": 1, "b": 2}},
                    cost_per_month=503.31,
                    binding="loss of zone a",
                ),
                CapacityMonth(month=2, start=when, load_rps=Band(low=1.0, median=2.0, high=3.0)),
            ],
        )
        inputs = plan.inputs.model_copy(update={"load_from": "observed peak"})
        full = plan.model_copy(update={"capacity": capacity, "inputs": inputs})
        text = dump_plan(full)
        assert full == parse_plan(text, "dump")
        assert text == dump_plan(parse_plan(text, "dump"))
        assert '  load_from: "observed peak"\n' in text
        assert (
            "    - {month: 1, start: 2026-11-23T00:00:00Z, load_rps: {low: 590.5, median: 600.0, "
            "high: 648.25}, nodes: {large: {a: 1, b: 2}}, cost_per_month: 503.31, "
            'binding: "loss of zone a"}\n'
        ) in text
        assert text.startswith(
            dump_plan(plan)
            .split("capacity:")[0]
            .replace("  load_rps: 1800.0\n", '  load_rps: 1800.0\n  load_from: "observed peak"\n')
        )

    def test_golden(self, plan: Plan) -> None:
        """
        The dump of the fixed plan is the golden plan.yaml (fixed key order, floats by repr).
        """
        text = dump_plan(plan)
        golden = GOLDEN / "plan.yaml"
        compare_golden(golden, text)
        assert text.startswith(HEADER + "\n")

    def test_floats_round_trip(self, plan: Plan) -> None:
        """
        Floats that need many digits, or an exponent, come back exactly.
        """
        node = plan.nodes[0].model_copy(update={"rate_rps": 0.1 + 0.2, "capacity_rps": 1e17})
        odd = Plan.model_validate(
            plan.model_copy(update={"nodes": [node, *plan.nodes[1:]]}).model_dump()
        )
        again = parse_plan(dump_plan(odd), "dump")
        assert 0.1 + 0.2 == again.nodes[0].rate_rps
        assert 1e17 == again.nodes[0].capacity_rps

    def test_strings_that_look_like_other_things_are_quoted(self, plan: Plan) -> None:
        """
        Strings YAML would read as numbers, booleans or sexagesimals are quoted.
        """
        inputs = plan.inputs.model_copy(update={"inventory": "1:30", "profile": "yes"})
        odd = Plan.model_validate(plan.model_copy(update={"inputs": inputs}).model_dump())
        text = dump_plan(odd)
        assert 'inventory: "1:30"' in text
        assert 'profile: "yes"' in text
        assert odd == parse_plan(text, "dump")


# ----------------------------------------------------------------------------- property

_floats = st.floats(min_value=0, max_value=1e9, allow_nan=False, allow_infinity=False)
_shares = st.floats(min_value=0, max_value=1, allow_nan=False)
_reason = st.text(
    alphabet=st.characters(codec="utf-8", categories=["L", "N", "P", "S", "Zs"]),
    min_size=1,
    max_size=40,
).filter(str.isprintable)


@st.composite
def plans(draw: st.DrawFn) -> Plan:
    """
    Random valid plans.
    """
    count = draw(st.integers(1, 5))
    nodes = []
    for i in range(count):
        state = "active" if i == 0 else draw(st.sampled_from(["active", "backup", "down"]))
        cap = draw(st.none() | st.integers(2, 65535))
        limits: dict[str, Any] = {}
        if cap is not None:
            limits["max_conns"] = cap
            if draw(st.booleans()):
                limits["lthreshold"] = draw(st.integers(1, cap - 1))
            if draw(st.booleans()):
                limits["min_conns"] = draw(st.integers(1, cap))
        if draw(st.booleans()):
            limits["slowstart_s"] = draw(st.integers(1, 3600))
        lvs = 0 if state == "down" else draw(st.integers(0, 65535))
        nodes.append(
            {
                "node": f"n{i}-{draw(st.from_regex(r'[a-z0-9._-]{0,8}', fullmatch=True))}",
                "address": f"10.0.{i}.{draw(st.integers(1, 254))}:{draw(st.integers(1, 65535))}",
                "share": draw(_shares),
                "rate_rps": draw(_floats),
                "capacity_rps": draw(_floats),
                "weights": {
                    "nginx": draw(st.integers(1, 65535)),
                    "haproxy": draw(st.integers(0, 256)),
                    "ipvsadm": lvs,
                    "keepalived": lvs,
                },
                "realized_share": {"nginx": draw(_shares)},
                "state": state,
                "limits": limits,
                "reasons": draw(
                    st.dictionaries(st.sampled_from(["a", "b_c"]), _reason, max_size=2)
                ),
            }
        )
    thresholds = draw(
        st.fixed_dictionaries(
            {},
            optional={
                "check_interval_s": st.floats(0.001, 600),
                "fall": st.integers(1, 10),
                "fail_timeout_s": st.floats(0.001, 600),
                "queue_timeout_ms": st.integers(1, 10**6),
                "alert_load_rps": st.floats(0.001, 1e9),
            },
        )
    )
    data = {
        "version": 1,
        "cluster": "c1",
        "inputs": {
            "inventory": draw(st.sampled_from(["inventory.yaml", "a b/inv.yaml", "ü.yaml"])),
            "profile": "balanced",
            "load_rps": draw(st.floats(0.001, 1e9)),
            "slo": {
                "percentile": draw(st.floats(0.1, 99.99)),
                "latency_ms": 250.0,
                "max_error_rate": draw(_shares),
            },
            "windows": draw(st.integers(0, 10**6)),
            "newest": draw(st.none() | st.datetimes(timezones=st.just(UTC))),
        },
        "methods": {
            "nginx": "least_conn",
            "haproxy": "roundrobin",
            "ipvsadm": "wrr",
            "keepalived": "wlc",
        },
        "nodes": nodes,
        "pool": {
            "thresholds": thresholds,
            "predicted": {"mean_ms": draw(_floats), "p99.9_ms": draw(_floats)},
        },
        "not_expressible": {"nginx": ["slowstart_s"]},
        "balancers": [{"kind": "nginx", "name": "up"}, {"kind": "ipvsadm", "name": "[::1]:80"}],
    }
    if data["inputs"]["newest"] is None:
        del data["inputs"]["newest"]
    return Plan.model_validate(data)


class TestRoundTripProperty:
    @settings(max_examples=60, deadline=None)
    @given(plans())
    def test_parse_of_dump_is_identity(self, plan: Plan) -> None:
        """
        For any valid plan, parse_plan(dump_plan(p)) == p and dumping is deterministic.
        """
        text = dump_plan(plan)
        again = parse_plan(text, "dump")
        assert plan == again
        assert text == dump_plan(again)
