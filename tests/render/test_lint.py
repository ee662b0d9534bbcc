"""
capplan lint: a seeded bug per rule is caught at its line; clean configs pass.
"""

from __future__ import annotations

import pytest

from capplan.errors import InputError
from capplan.planfile import Plan
from capplan.render import TARGETS, lint, render

NGINX = """\
upstream web {
    zone web 64k;
    least_conn;
    server 10.0.0.1:80 weight=2 max_conns=10;
    server 10.0.0.2:80 weight=1 backup;
}
"""

HAPROXY = """\
defaults
    default-server check inter 2s
backend web
    balance leastconn
    server a 10.0.0.1:80 weight 10 maxconn 20 minconn 5 slowstart 30s
    server b 10.0.0.2:80 weight 20 maxconn 40 observe layer4
"""

KEEPALIVED = """\
virtual_server 10.0.0.10 80 {
    lvs_sched wlc
    real_server 10.0.0.1 80 {
        weight 5
        uthreshold 30
        lthreshold 20
    }
}
"""

IPVSADM = """\
-A -t 10.0.0.10:80 -s wlc
-a -t 10.0.0.10:80 -r 10.0.0.1:80 -m -w 5 -x 30 -y 20
"""

CLEAN = {"nginx": NGINX, "haproxy": HAPROXY, "keepalived": KEEPALIVED, "ipvsadm": IPVSADM}

# (target, text, [(line, rule), ...])
SEEDED = [
    (
        "haproxy",
        HAPROXY.replace("minconn 5", "minconn 50"),
        [(5, "haproxy-minconn-above-maxconn")],
    ),
    (
        "haproxy",
        HAPROXY.replace("default-server check inter 2s", "default-server inter 2s"),
        [(5, "haproxy-slowstart-without-check"), (6, "haproxy-observe-without-check")],
    ),
    (
        "haproxy",
        HAPROXY.replace("maxconn 40 observe", "maxconn 40 no-check observe"),
        [(6, "haproxy-observe-without-check")],
    ),
    ("haproxy", HAPROXY.replace("weight 20", "weight 300"), [(6, "haproxy-weight-above-256")]),
    (
        "haproxy",
        HAPROXY.replace("backend web\n", "backend web\n    default-server minconn 99\n"),
        [(7, "haproxy-minconn-above-maxconn")],
    ),
    (
        "keepalived",
        KEEPALIVED.replace("lthreshold 20", "lthreshold 30"),
        [(6, "keepalived-lthreshold-not-below-uthreshold")],
    ),
    (
        "keepalived",
        KEEPALIVED.replace("uthreshold 30", "uthreshold 0"),
        [(6, "keepalived-lthreshold-not-below-uthreshold")],
    ),
    ("nginx", NGINX.replace("least_conn", "ip_hash"), [(5, "nginx-backup-with-hash")]),
    (
        "nginx",
        NGINX.replace("least_conn", "hash $remote_addr consistent"),
        [(5, "nginx-backup-with-hash")],
    ),
    ("nginx", NGINX.replace("least_conn", "random two"), [(5, "nginx-backup-with-hash")]),
    (
        "nginx",
        NGINX.replace("    zone web 64k;\n", ""),
        [(3, "nginx-max-conns-without-zone")],
    ),
    (
        "nginx",
        NGINX.replace("least_conn", "random two").replace("backup", "max_fails=1"),
        [(3, "nginx-random-two-unequal-weights")],
    ),
    (
        "ipvsadm",
        IPVSADM.replace("-y 20", "-y 30"),
        [(2, "ipvsadm-lthreshold-not-below-uthreshold")],
    ),
]


class TestSeededBugs:
    @pytest.mark.parametrize(
        ("target", "text", "expected"), SEEDED, ids=[f"{s[0]}-{s[2][0][1]}" for s in SEEDED]
    )
    def test_caught(self, target: str, text: str, expected: list[tuple[int, str]]) -> None:
        """
        Each seeded bug is found, at its line, under its rule, and nothing else is.
        """
        findings = lint(text, target, file="seeded.conf")
        assert expected == [(f.line, f.rule) for f in findings]
        assert str(findings[0]).startswith(f"seeded.conf:{expected[0][0]}: ")

    @pytest.mark.parametrize("target", TARGETS)
    def test_clean_passes(self, target: str) -> None:
        """
        The clean hand-written config of each target has no finding.
        """
        assert () == lint(CLEAN[target], target)

    @pytest.mark.parametrize("target", TARGETS)
    def test_rendered_configs_pass(self, plan: Plan, target: str) -> None:
        """
        Every config capplan renders from the fixed plan is lint-clean.
        """
        assert () == lint(render(plan, target), target)


class TestParsing:
    def test_nginx_comments_and_quotes(self) -> None:
        """
        Braces and semicolons inside comments and quotes do not confuse the nginx reader.
        """
        text = (
            "# upstream fake { server 1.2.3.4 max_conns=3; }\n"
            'map $x $y { "a;b}" 1; }\n'
            "upstream web { # zone here? no\n"
            "    server 10.0.0.1:80 max_conns=3;\n"
            "}\n"
        )
        findings = lint(text, "nginx")
        assert [(4, "nginx-max-conns-without-zone")] == [(f.line, f.rule) for f in findings]

    def test_haproxy_sections_reset_defaults(self) -> None:
        """
        A new defaults section resets inherited default-server options.
        """
        text = (
            "defaults\n    default-server check\n"
            "defaults\n    mode http\n"
            "backend b\n    server a 10.0.0.1:80 slowstart 10s\n"
        )
        assert [6] == [f.line for f in lint(text, "haproxy")]

    def test_keepalived_inline_braces(self) -> None:
        """
        keepalived blocks opened and closed on one line are read.
        """
        text = (
            "virtual_server 10.0.0.10 80 {\n"
            " real_server 10.0.0.1 80 { uthreshold 5\n"
            " lthreshold 9 }\n"
            "}\n"
        )
        assert [3] == [f.line for f in lint(text, "keepalived")]

    def test_unknown_target(self) -> None:
        """
        lint() refuses an unknown target.
        """
        with pytest.raises(InputError, match="not a target"):
            lint("", "envoy")
