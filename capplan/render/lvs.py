"""
LVS from a plan: ``ipvsadm-restore`` rules and a keepalived ``virtual_server`` block.

Both forward by NAT (masquerading): real servers may listen on another port than the virtual
service.  LVS has no backup role; a down node gets weight 0 (quiesced: no new connections).
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
    num,
    render_template,
    split_address,
    weight_of,
)

__all__ = ["render_ipvsadm", "render_keepalived"]


def _notes(plan: Plan, target: str) -> list[str]:
    missing = inexpressible(plan, target)
    if not missing:
        return []
    return [f"not expressible in {TARGET_TITLES[target]}: {', '.join(missing)}"]


def render_ipvsadm(plan: Plan, balancer: PlanBalancer) -> str:
    """
    Render the plan as ``ipvsadm-restore`` rules for the virtual service named by ``balancer``.

    Load them with ``ipvsadm-restore < FILE`` (it drops the ``#`` comment lines and clears the
    table first).  Each real server gets ``-m -w WEIGHT`` and, when the plan has them, ``-x``
    (upper connection threshold) and ``-y`` (lower).

    Args:
        plan: A validated plan.
        balancer: Its ipvsadm balancer (``VIP:PORT``).

    Returns:
        The rules with a header comment, ending with a newline.
    """
    check_balancer(balancer, "ipvsadm")
    servers = []
    for node in plan.nodes:
        rule = f"-a -t {balancer.name} -r {node.address} -m -w {weight_of(node, 'ipvsadm')}"
        cap = connection_cap(node, "ipvsadm")
        if cap is not None:
            rule += f" -x {cap}"
        if node.limits.lthreshold is not None:
            rule += f" -y {node.limits.lthreshold}"
        servers.append({"comment": node_comment(node, "ipvsadm"), "rule": rule})
    return render_template(
        "ipvsadm.rules.j2",
        header=header_lines(plan, "ipvsadm"),
        notes=_notes(plan, "ipvsadm"),
        service=f"-A -t {balancer.name} -s {plan.methods.ipvsadm or 'wlc'}",
        servers=servers,
    )


def render_keepalived(plan: Plan, balancer: PlanBalancer) -> str:
    """
    Render the plan as a keepalived ``virtual_server`` block (keepalived 2.2 and later).

    Health checks are ``TCP_CHECK`` on each real server: ``delay_loop`` and
    ``delay_before_retry`` from the check interval, ``retry`` = fall - 1 (keepalived retries
    that many times after a first failure), ``connect_timeout`` from the connect timeout.

    Args:
        plan: A validated plan.
        balancer: Its keepalived balancer (``VIP:PORT``).

    Returns:
        The block with a header comment, ending with a newline.
    """
    check_balancer(balancer, "keepalived")
    thresholds = plan.pool.thresholds
    vip, vport = split_address(balancer.name)
    service = []
    if thresholds.check_interval_s is not None:
        service.append(f"delay_loop {num(thresholds.check_interval_s)}")
    service += [f"lvs_sched {plan.methods.keepalived or 'wlc'}", "lvs_method NAT", "protocol TCP"]
    check = []
    if thresholds.connect_timeout_ms is not None:
        check.append(f"connect_timeout {num(thresholds.connect_timeout_ms / 1000)}")
    if thresholds.fall is not None:
        check.append(f"retry {thresholds.fall - 1}")
    if thresholds.check_interval_s is not None:
        check.append(f"delay_before_retry {num(thresholds.check_interval_s)}")
    servers = []
    for node in plan.nodes:
        host, port = split_address(node.address)
        settings = [f"weight {weight_of(node, 'keepalived')}"]
        cap = connection_cap(node, "keepalived")
        if cap is not None:
            settings.append(f"uthreshold {cap}")
        if node.limits.lthreshold is not None:
            settings.append(f"lthreshold {node.limits.lthreshold}")
        servers.append(
            {
                "comment": node_comment(node, "keepalived"),
                "host": host,
                "port": port,
                "settings": settings,
            }
        )
    return render_template(
        "keepalived.conf.j2",
        header=header_lines(plan, "keepalived"),
        notes=_notes(plan, "keepalived"),
        vip=vip,
        vport=vport,
        service=service,
        check=check,
        servers=servers,
    )
