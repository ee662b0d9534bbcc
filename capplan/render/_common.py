"""
What every renderer shares: the Jinja2 environment, the header, number and time spellings, and
the table of which plan values each target can express.

A value a target cannot express is never dropped silently: ``inexpressible`` lists it, with its
values, for the comment at the top of the rendered block.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from functools import cache
from typing import Any

import jinja2

from capplan.errors import InputError
from capplan.planfile import LIMIT_KEYS, TARGETS, THRESHOLD_KEYS, NodePlan, Plan, PlanBalancer

__all__ = [
    "EXPRESSIBLE",
    "MAX_COMMENT_BYTES",
    "TARGET_TITLES",
    "comment_lines",
    "connection_cap",
    "header_lines",
    "inexpressible",
    "inexpressible_keys",
    "node_comment",
    "num",
    "render_template",
    "split_address",
    "weight_of",
]

#: How a target is called in comments.
TARGET_TITLES = {
    "nginx": "nginx open source",
    "haproxy": "HAProxy",
    "ipvsadm": "ipvsadm rules",
    "keepalived": "keepalived",
}

#: Plan keys each target writes.  ``max_conns`` and ``uthreshold`` are one connection cap
#: (``connection_cap``); the alert and scale-out loads are for monitoring, not for balancers;
#: nginx's connect and server timeouts belong to the proxying location (a comment says how).
EXPRESSIBLE: dict[str, frozenset[str]] = {
    "nginx": frozenset(
        {
            "max_conns",
            "uthreshold",
            "max_fails",
            "fail_timeout_s",
            "connect_timeout_ms",
            "server_timeout_ms",
        }
    ),
    "haproxy": frozenset(
        {
            "max_conns",
            "max_active",
            "uthreshold",
            "maxqueue",
            "min_conns",
            "slowstart_s",
            "check_interval_s",
            "fall",
            "rise",
            "max_fails",
            "queue_timeout_ms",
            "connect_timeout_ms",
            "server_timeout_ms",
        }
    ),
    "ipvsadm": frozenset({"max_conns", "uthreshold", "lthreshold"}),
    "keepalived": frozenset(
        {"max_conns", "uthreshold", "lthreshold", "check_interval_s", "fall", "connect_timeout_ms"}
    ),
}
_MONITORING = frozenset({"alert_load_rps", "scale_out_load_rps"})

_LABELS = {
    "max_conns": "connection limit",
    "max_active": "requests at once",
    "maxqueue": "queue",
    "min_conns": "minimum connections",
    "slowstart_s": "slow start",
    "lthreshold": "low connection threshold",
    "uthreshold": "connection threshold",
    "check_interval_s": "health-check interval",
    "fall": "fall",
    "rise": "rise",
    "max_fails": "max fails",
    "fail_timeout_s": "fail timeout",
    "queue_timeout_ms": "queue timeout",
    "connect_timeout_ms": "connect timeout",
    "server_timeout_ms": "server timeout",
}


#: The longest comment text (after ``# ``) on one line, in UTF-8 bytes.  keepalived reads its
#: config with ``fgets`` into a 1024-byte buffer and parses the rest of a longer line as a line
#: of its own (so a long comment could carry ``include FILE``); nginx refuses a comment of more
#: than 4096 bytes.  Longer comments are wrapped.
MAX_COMMENT_BYTES = 500


def _prefix_within(word: str, limit: int) -> int:
    # The length of the longest prefix of ``word`` that fits in ``limit`` UTF-8 bytes (>= 1).
    size = 0
    for i, ch in enumerate(word):
        size += len(ch.encode("utf-8"))
        if size > limit:
            return max(i, 1)
    return len(word)


def comment_lines(lines: Iterable[str]) -> list[str]:
    """
    Comment lines wrapped to at most ``MAX_COMMENT_BYTES`` each, at spaces where possible.

    Every comment a template writes goes through this (the ``comment_lines`` filter).
    """
    out: list[str] = []
    for line in lines:
        current = ""
        wrapped: list[str] = []
        for word in line.split(" "):
            candidate = f"{current} {word}" if current else word
            if len(candidate.encode("utf-8")) <= MAX_COMMENT_BYTES:
                current = candidate
                continue
            if current:
                wrapped.append(current)
            while len(word.encode("utf-8")) > MAX_COMMENT_BYTES:
                cut = _prefix_within(word, MAX_COMMENT_BYTES)
                wrapped.append(word[:cut])
                word = word[cut:]
            current = word
        if current or not wrapped:
            wrapped.append(current)
        out += wrapped
    return out


def num(value: float) -> str:
    """
    A number as a config or comment writes it: ``30``, ``2.5``, ``0.001`` (never ``30.0``).
    """
    if isinstance(value, int):
        return str(value)
    if math.isfinite(value) and value == int(value) and abs(value) < 1e15:
        return str(int(value))
    return repr(value)


def _with_unit(key: str, value: float) -> str:
    if key.endswith("_ms"):
        return f"{num(value)} ms"
    if key.endswith("_s"):
        return f"{num(value)} s"
    return num(value)


def split_address(address: str) -> tuple[str, str]:
    """
    Host and port: ``[2001:db8::1]:80`` → (``2001:db8::1``, ``80``).
    """
    host, port = address.rsplit(":", 1)
    return host.strip("[]"), port


def connection_cap(node: NodePlan, target: str) -> int | None:
    """
    The node's connection cap as ``target`` spells it.

    nginx uses ``max_conns`` (else ``uthreshold``); HAProxy ``max_active`` (its ``maxconn``
    holds the rest in its queue), else the same; LVS ``uthreshold`` (else ``max_conns``).
    """
    limits = node.limits
    if target in ("ipvsadm", "keepalived"):
        return limits.uthreshold if limits.uthreshold is not None else limits.max_conns
    if target == "haproxy" and limits.max_active is not None:
        return limits.max_active
    return limits.max_conns if limits.max_conns is not None else limits.uthreshold


def inexpressible_keys(plan: Plan, target: str) -> list[str]:
    """
    The plan keys that have a value in ``plan`` but that ``target`` cannot express.

    This is what the optimizer records as ``not_expressible`` for the target.

    Args:
        plan: The plan.
        target: ``nginx``, ``haproxy``, ``ipvsadm`` or ``keepalived``.

    Returns:
        Keys in plan.yaml order.
    """
    if target not in TARGETS:
        raise InputError(f"{target!r} is not a target", hint=f"use one of {', '.join(TARGETS)}")
    can = set(EXPRESSIBLE[target])
    # One cap is written; the other spelling is lost only where a node gives both, unequal.
    other = "max_conns" if target in ("ipvsadm", "keepalived") else "uthreshold"
    if any(
        n.limits.max_conns is not None
        and n.limits.uthreshold is not None
        and n.limits.max_conns != n.limits.uthreshold
        for n in plan.nodes
    ):
        can.discard(other)
    if target == "haproxy" and all(
        n.limits.max_active is not None
        for n in plan.nodes
        if n.limits.max_conns is not None or n.limits.uthreshold is not None
    ):
        # HAProxy holds what is above max_active in its queue: it refuses at no count
        can.discard("max_conns")
    used = [k for k in LIMIT_KEYS if any(getattr(n.limits, k) is not None for n in plan.nodes)]
    used += [k for k in THRESHOLD_KEYS if getattr(plan.pool.thresholds, k) is not None]
    return [k for k in used if k not in can and k not in _MONITORING]


def inexpressible(plan: Plan, target: str) -> list[str]:
    """
    The values ``target`` cannot express, each as ``label (value)``, for a comment.

    A per-node value reads ``slow start (30 s)`` when every node has it, ``slow start (30 s:
    web-1, web-2)`` when some have it, and ``slow start (web-1 30 s, web-2 45 s)`` when it
    differs.
    LVS has no backup role: backup nodes are listed too.
    """
    items: list[str] = []
    for key in inexpressible_keys(plan, target):
        if key in LIMIT_KEYS:
            pairs = [
                (n.node, getattr(n.limits, key))
                for n in plan.nodes
                if getattr(n.limits, key) is not None
            ]
            values = {v for _, v in pairs}
            if len(values) == 1 and len(pairs) == len(plan.nodes):
                text = _with_unit(key, pairs[0][1])
            elif len(values) == 1:
                text = f"{_with_unit(key, pairs[0][1])}: {', '.join(name for name, _ in pairs)}"
            else:
                text = ", ".join(f"{name} {_with_unit(key, v)}" for name, v in pairs)
        else:
            text = _with_unit(key, getattr(plan.pool.thresholds, key))
        items.append(f"{_LABELS[key]} ({text})")
    if target in ("ipvsadm", "keepalived"):
        backups = [n.node for n in plan.nodes if n.state == "backup"]
        if backups:
            items.append(f"backup role ({', '.join(backups)})")
    return items


def header_lines(plan: Plan, target: str) -> list[str]:
    """
    The comment lines (without ``#``) that open every rendered file: generator and inputs.
    """
    inputs = plan.inputs
    slo = inputs.slo
    lines = [
        f"generated by capplan for cluster {plan.cluster}; do not edit: regenerate with "
        f"capplan render PLAN --target {target}",
    ]
    parts = [
        f"inventory {inputs.inventory}",
        f"profile {inputs.profile}",
        f"load {num(inputs.load_rps)} rps",
        f"SLO p{num(slo.percentile)} <= {num(slo.latency_ms)} ms, errors <= "
        f"{num(slo.max_error_rate)}",
        f"{inputs.windows} windows",
    ]
    if inputs.newest is not None:
        parts.append("newest " + inputs.newest.isoformat().replace("+00:00", "Z"))
    lines.append("inputs: " + ", ".join(parts))
    predicted = [f"{k.removesuffix('_ms')} {num(v)} ms" for k, v in _predicted(plan)]
    thresholds = plan.pool.thresholds
    watch = []
    if thresholds.alert_load_rps is not None:
        watch.append(f"alert at {num(thresholds.alert_load_rps)} rps")
    if thresholds.scale_out_load_rps is not None:
        watch.append(f"scale out at {num(thresholds.scale_out_load_rps)} rps")
    if predicted or watch:
        text = "predicted: " + ", ".join(predicted) if predicted else ""
        lines.append("; ".join(t for t in (text, ", ".join(watch)) if t))
    return lines


def _predicted(plan: Plan) -> list[tuple[str, float]]:
    def order(key: str) -> tuple[int, float]:
        return (0, 0.0) if key == "mean_ms" else (1, float(key[1:].removesuffix("_ms")))

    return sorted(plan.pool.predicted.items(), key=lambda kv: order(kv[0]))


def node_comment(node: NodePlan, target: str) -> str:
    """
    The one-line comment above a node's entry: name, share, rates and state.
    """
    text = f"{node.node}: share {num(node.share)}"
    realized = getattr(node.realized_share, target)
    if realized is not None:
        text += f" (realized {num(realized)})"
    text += f", {num(node.rate_rps)} rps of {num(node.capacity_rps)} capacity"
    if node.state != "active":
        text += f", {node.state}"
    return text


def check_balancer(balancer: PlanBalancer, target: str) -> None:
    """
    Refuse a balancer of another kind.
    """
    if balancer.kind != target:
        raise InputError(
            f"cannot render the {balancer.kind} balancer {balancer.name!r} as {target}",
            key="balancers",
        )


@cache
def _environment() -> jinja2.Environment:
    # Built once; a Jinja2 Environment is not changed after this.
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("capplan.render", "templates"),
        autoescape=False,
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
    )
    env.filters["comment_lines"] = comment_lines
    return env


def render_template(template: str, /, **context: Any) -> str:
    """
    Render ``templates/TEMPLATE`` with ``context``.
    """
    return _environment().get_template(template).render(**context)


def weight_of(node: NodePlan, target: str) -> int:
    """
    The node's integer weight for ``target``.

    Raises:
        InputError: when the plan has no weight for that target.
    """
    weight = getattr(node.weights, target)
    if weight is None:
        raise InputError(
            f"node {node.node} has no {target} weight",
            key="nodes.weights",
            hint=f"add a {target} balancer to the inventory and optimize again",
        )
    return int(weight)
