"""
Balancer configs from a plan, and their checks.

Renderers are pure functions of a plan (``render_nginx``, ``render_haproxy``,
``render_ipvsadm``, ``render_keepalived``, or ``render`` by target name); ``validate`` runs the
real nginx / haproxy / keepalived checkers (and capplan's own ipvsadm parser) plus ``lint``;
``write_validated`` writes a config only once it passed.
"""

from __future__ import annotations

from capplan.errors import InputError
from capplan.planfile import TARGETS, Plan
from capplan.render._common import EXPRESSIBLE, inexpressible, inexpressible_keys
from capplan.render.haproxy import render_haproxy
from capplan.render.lint import LintFinding, lint
from capplan.render.lvs import render_ipvsadm, render_keepalived
from capplan.render.nginx import render_nginx
from capplan.render.validate import ValidationResult, detect_target, validate, write_validated

__all__ = [
    "EXPRESSIBLE",
    "TARGETS",
    "LintFinding",
    "ValidationResult",
    "detect_target",
    "inexpressible",
    "inexpressible_keys",
    "lint",
    "render",
    "render_haproxy",
    "render_ipvsadm",
    "render_keepalived",
    "render_nginx",
    "validate",
    "write_validated",
]

_RENDERERS = {
    "nginx": render_nginx,
    "haproxy": render_haproxy,
    "ipvsadm": render_ipvsadm,
    "keepalived": render_keepalived,
}


def render(plan: Plan, target: str, balancer_name: str | None = None) -> str:
    """
    Render the plan for one balancer.

    Args:
        plan: A validated plan.
        target: ``nginx``, ``haproxy``, ``ipvsadm`` or ``keepalived``.
        balancer_name: Which balancer of that kind; may be left out when the plan has one.

    Returns:
        The config text.

    Raises:
        InputError: for an unknown target, or a balancer the plan does not have.
    """
    if target not in _RENDERERS:
        raise InputError(
            f"{target!r} is not a target", key="target", hint=f"use one of {', '.join(TARGETS)}"
        )
    return _RENDERERS[target](plan, plan.balancer(target, balancer_name))
