"""
An nginx ``upstream`` block from a plan (nginx open source, 1.22 and later).

The fragment goes in the ``http`` context.  It always declares a shared-memory ``zone`` so that
``max_conns`` and the failure counts are shared by all worker processes.
"""

from __future__ import annotations

import math

from capplan.errors import InputError
from capplan.planfile import Plan, PlanBalancer
from capplan.render._common import (
    TARGET_TITLES,
    check_balancer,
    connection_cap,
    header_lines,
    inexpressible,
    node_comment,
    num,
    render_template,
    weight_of,
)

__all__ = ["ZONE_SIZE", "render_nginx"]

#: Shared memory for the upstream's state: enough for hundreds of servers.
ZONE_SIZE = "64k"


def _time_ms(ms: int) -> str:
    return f"{ms // 1000}s" if ms % 1000 == 0 else f"{ms}ms"


def render_nginx(plan: Plan, balancer: PlanBalancer) -> str:
    """
    Render the plan's nodes as the nginx upstream named by ``balancer``.

    Args:
        plan: A validated plan.
        balancer: Its nginx balancer (the upstream's name).

    Returns:
        The upstream block with a header comment, ending with a newline.

    Raises:
        InputError: when the plan asks for something nginx would reject.
    """
    check_balancer(balancer, "nginx")
    method = plan.methods.nginx or "round_robin"
    active = {weight_of(n, "nginx") for n in plan.nodes if n.state == "active"}
    if method.startswith("random two") and len(active) > 1:
        raise InputError(
            f"nginx {method!r} with unequal weights skews the split", key="methods.nginx"
        )
    thresholds = plan.pool.thresholds
    notes = []
    missing = inexpressible(plan, "nginx")
    if missing:
        notes.append(f"not expressible in {TARGET_TITLES['nginx']}: {', '.join(missing)}")
    fail_timeout = None
    if thresholds.fail_timeout_s is not None:
        seconds = max(1, math.ceil(thresholds.fail_timeout_s))
        fail_timeout = f"{seconds}s"
        if seconds != thresholds.fail_timeout_s:
            notes.append(
                f"fail timeout {num(thresholds.fail_timeout_s)} s written as {fail_timeout}: "
                "nginx takes whole seconds"
            )
    location = []
    if thresholds.connect_timeout_ms is not None:
        location.append(f"proxy_connect_timeout {_time_ms(thresholds.connect_timeout_ms)};")
    if thresholds.server_timeout_ms is not None:
        location.append(f"proxy_read_timeout {_time_ms(thresholds.server_timeout_ms)};")
    if location:
        notes.append(f"in the location that proxies to {balancer.name}: {' '.join(location)}")
    servers = []
    for node in plan.nodes:
        params = []
        weight = weight_of(node, "nginx")
        if weight >= 1:  # 0 only on a backup or down node: nginx's default 1 applies
            params.append(f"weight={weight}")
        cap = connection_cap(node, "nginx")
        if cap is not None:
            params.append(f"max_conns={cap}")
        if thresholds.max_fails is not None:
            params.append(f"max_fails={thresholds.max_fails}")
        if fail_timeout is not None:
            params.append(f"fail_timeout={fail_timeout}")
        if node.state != "active":
            params.append(node.state)  # backup | down
        servers.append(
            {"comment": node_comment(node, "nginx"), "address": node.address, "params": params}
        )
    return render_template(
        "nginx.conf.j2",
        header=header_lines(plan, "nginx"),
        name=balancer.name,
        zone_size=ZONE_SIZE,
        notes=notes,
        method=None if method == "round_robin" else method,
        servers=servers,
    )
