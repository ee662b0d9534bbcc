"""
A HAProxy ``backend`` section from a plan (HAProxy 2.6 and later).

Health checks are always on (``default-server check``): slow start, ``observe`` and the
rise/fall counts only work with them.
"""

from __future__ import annotations

from capplan.planfile import Plan, PlanBalancer
from capplan.render._common import (
    TARGET_TITLES,
    check_balancer,
    connection_cap,
    header_lines,
    inexpressible,
    node_comment,
    render_template,
    weight_of,
)

__all__ = ["render_haproxy"]


def _time_ms(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def render_haproxy(plan: Plan, balancer: PlanBalancer) -> str:
    """
    Render the plan's nodes as the HAProxy backend named by ``balancer``.

    A server's ``maxconn`` is the node's ``max_active`` (its slots) when the plan has it: the
    rest wait in the backend's one queue for the first slot free anywhere, at most ``timeout
    queue``; else its ``max_conns``.

    ``max_fails`` becomes ``observe layer4 error-limit N on-error mark-down`` (the server is
    marked down after N consecutive connection errors and comes back after ``rise`` good
    checks).  When a server has ``minconn``, the backend's ``fullconn`` is set to the sum of
    the active servers' ``maxconn``: the load at which every server may use its full maxconn.

    Args:
        plan: A validated plan.
        balancer: Its HAProxy balancer (the backend's name).

    Returns:
        The backend section with a header comment, ending with a newline.
    """
    check_balancer(balancer, "haproxy")
    thresholds = plan.pool.thresholds
    notes = []
    missing = inexpressible(plan, "haproxy")
    if missing:
        notes.append(f"not expressible in {TARGET_TITLES['haproxy']}: {', '.join(missing)}")
    settings = []
    for key, directive in (
        ("queue_timeout_ms", "timeout queue"),
        ("connect_timeout_ms", "timeout connect"),
        ("server_timeout_ms", "timeout server"),
    ):
        value = getattr(thresholds, key)
        if value is not None:
            settings.append(f"{directive} {_time_ms(value)}")
    active = [n for n in plan.nodes if n.state == "active"]
    if any(n.limits.min_conns is not None for n in plan.nodes):
        caps = [connection_cap(n, "haproxy") for n in active]
        fullconn = sum(c for c in caps if c is not None)
        if fullconn:
            notes.append("fullconn: the load at which minconn has grown to maxconn")
            settings.append(f"fullconn {fullconn}")
    defaults = ["check"]
    if thresholds.check_interval_s is not None:
        defaults.append(f"inter {_time_ms(max(1, round(thresholds.check_interval_s * 1000)))}")
    if thresholds.fall is not None:
        defaults.append(f"fall {thresholds.fall}")
    if thresholds.rise is not None:
        defaults.append(f"rise {thresholds.rise}")
    if thresholds.max_fails:
        defaults.append(f"observe layer4 error-limit {thresholds.max_fails} on-error mark-down")
    servers = []
    for node in plan.nodes:
        params = [f"weight {weight_of(node, 'haproxy')}"]
        cap = connection_cap(node, "haproxy")
        if cap is not None:
            params.append(f"maxconn {cap}")
        if node.limits.maxqueue is not None:
            params.append(f"maxqueue {node.limits.maxqueue}")
        if node.limits.min_conns is not None:
            params.append(f"minconn {node.limits.min_conns}")
        if node.limits.slowstart_s is not None:
            params.append(f"slowstart {node.limits.slowstart_s}s")
        if node.state == "backup":
            params.append("backup")
        elif node.state == "down":
            params.append("disabled")
        servers.append(
            {
                "comment": node_comment(node, "haproxy"),
                "name": node.node,
                "address": node.address,
                "params": params,
            }
        )
    return render_template(
        "haproxy.cfg.j2",
        header=header_lines(plan, "haproxy"),
        name=balancer.name,
        notes=notes,
        method=plan.methods.haproxy or "roundrobin",
        settings=settings,
        defaults=defaults,
        servers=servers,
    )
