"""
Checks with the real nginx, HAProxy and keepalived (and capplan's ipvsadm parser), and
writing a config only after it passed.

These tests need the real programs and never skip: see ``conftest.APT_LINE``.  The checks
parse only (``nginx -t``, ``haproxy -c``, ``keepalived -t``): nothing binds or listens.
"""

from __future__ import annotations

import importlib
import os
from pathlib import Path

import pytest

from capplan.errors import MissingToolError
from capplan.planfile import Plan, Thresholds, parse_plan
from capplan.render import TARGETS, detect_target, render, validate, write_validated

from .conftest import GOLDEN
from .test_render import GOLDEN_FILES, IPV6_PLAN

# The package's ``validate`` is the function; the module behind it:
validate_module = importlib.import_module("capplan.render.validate")

REAL = ("nginx", "haproxy", "keepalived")

pytestmark = pytest.mark.usefixtures("checkers")


def _line_of(text: str, needle: str) -> int:
    return next(i for i, ln in enumerate(text.split("\n"), 1) if needle in ln)


class TestAccepted:
    @pytest.mark.parametrize("target", TARGETS)
    def test_generated(self, plan: Plan, target: str) -> None:
        """
        Every config rendered from the fixed plan passes its real checker and the lint.
        """
        result = validate(render(plan, target), target)
        assert (True, ()) == (result.ok, result.messages)
        assert target == result.target

    @pytest.mark.parametrize("target", TARGETS)
    def test_golden_files(self, target: str) -> None:
        """
        The golden files pass too, read from disk.
        """
        result = validate(GOLDEN / GOLDEN_FILES[target], target)
        assert (True, ()) == (result.ok, result.messages)

    @pytest.mark.parametrize("target", TARGETS)
    def test_ipv6(self, target: str) -> None:
        """
        IPv6 pools pass every checker.
        """
        result = validate(render(parse_plan(IPV6_PLAN, "v6"), target), target)
        assert (True, ()) == (result.ok, result.messages)

    @pytest.mark.parametrize("target", TARGETS)
    def test_bare_plan(self, plan: Plan, target: str) -> None:
        """
        A plan without thresholds or limits still renders configs the checkers accept.
        """
        nodes = [n.model_copy(update={"limits": type(n.limits)()}) for n in plan.nodes]
        pool = plan.pool.model_copy(update={"thresholds": Thresholds()})
        bare = plan.model_copy(update={"nodes": nodes, "pool": pool})
        result = validate(render(bare, target), target)
        assert (True, ()) == (result.ok, result.messages)

    @pytest.mark.parametrize(
        ("target", "program"),
        [("nginx", "nginx -t"), ("haproxy", "haproxy -dW -c"), ("keepalived", "keepalived -t")],
    )
    def test_checked_by(self, plan: Plan, target: str, program: str) -> None:
        """
        The result says which program checked the config, and that the lint ran.
        """
        checked_by = validate(render(plan, target), target).checked_by
        assert checked_by.startswith(program)
        assert checked_by.endswith("+ capplan lint")

    def test_ipvsadm_says_the_kernel_did_not_check(self, plan: Plan) -> None:
        """
        ipvsadm rules are checked by capplan's parser, and the result says so plainly.
        """
        result = validate(render(plan, "ipvsadm"), "ipvsadm")
        assert result.ok
        assert "not checked by ipvsadm or the kernel" in result.checked_by


# (target, old, new, expected message part) — each a real mistake the real checker refuses.
BROKEN = [
    (
        "nginx",
        "    least_conn;\n",
        "    least_conn;\n    bogus_directive on;\n",
        'unknown directive "bogus_directive"',
    ),
    ("nginx", "weight=5 ", "weight=0 ", 'invalid parameter "weight=0"'),
    (
        "nginx",
        "fail_timeout=10s;\n    # web-2",
        "fail_timeout=2500ms;\n    # web-2",
        'invalid parameter "fail_timeout=2500ms"',
    ),
    ("nginx", "least_conn;", "ip_hash;", 'does not support parameter "backup"'),
    (
        "nginx",
        "zone web_backend 64k;",
        "zone web_backend 64k 1;",
        'invalid number of arguments in "zone"',
    ),
    ("haproxy", "maxqueue 12", "maxqueu 12", "unknown keyword 'maxqueu'"),
    ("haproxy", "weight 192", "weight 300", "is not within 0 and 256"),
    ("haproxy", "balance leastconn", "balance leastconns", "balance only supports"),
    (
        "haproxy",
        "    balance leastconn\n",
        "    balance leastconn\n    option tcplog\n",
        "[WARNING]",
    ),
    ("keepalived", "weight 6400", "weigth 6400", "Unknown keyword 'weigth'"),
    ("keepalived", "lvs_sched wlc", "lvs_sched bogus", "Invalid lvs_scheduler 'bogus'"),
    ("keepalived", "        uthreshold 34\n", "        uthreshold -4\n", "uthreshold"),
]


class TestRejected:
    @pytest.mark.parametrize(
        ("target", "old", "new", "expected"), BROKEN, ids=[f"{b[0]}-{b[3][:24]}" for b in BROKEN]
    )
    def test_broken(self, plan: Plan, target: str, old: str, new: str, expected: str) -> None:
        """
        A config with a real mistake injected is rejected by the real checker.
        """
        text = render(plan, target)
        assert old in text
        broken = text.replace(old, new, 1)
        result = validate(broken, target, name="out/web.conf", lint=False)
        assert not result.ok
        assert any(expected in m for m in result.messages), result.messages

    @pytest.mark.parametrize(
        ("target", "old", "new", "needle"),
        [
            ("nginx", "    least_conn;\n", "    least_conn;\n    bogus on;\n", "bogus on;"),
            ("haproxy", "maxqueue 12", "maxqueu 12", "maxqueu 12"),
            ("keepalived", "weight 6400", "weigth 6400", "weigth 6400"),
        ],
    )
    def test_messages_point_at_the_file_line(
        self, plan: Plan, target: str, old: str, new: str, needle: str
    ) -> None:
        """
        Messages name the checked file and its line, not the temporary copies.
        """
        broken = render(plan, target).replace(old, new, 1)
        result = validate(broken, target, name="out/web.conf")
        line = _line_of(broken, needle)
        assert result.messages[0].startswith(f"out/web.conf:{line}: "), result.messages
        assert not any("/tmp" in m or "capplan-" in m for m in result.messages)

    def test_keepalived_missing_include(self, plan: Plan) -> None:
        """
        keepalived runs with -e: an included file that does not exist fails the check.
        """
        text = render(plan, "keepalived") + "include /nonexistent/capplan/x.conf\n"
        result = validate(text, "keepalived", name="k.conf")
        assert not result.ok
        assert any("Config files missing" in m for m in result.messages)

    def test_lint_finding_fails(self, plan: Plan) -> None:
        """
        What the real checker lets through, the lint catches: the result is not ok.
        """
        text = render(plan, "haproxy").replace("minconn 4", "minconn 40")
        result = validate(text, "haproxy", name="h.cfg")
        assert not result.ok
        assert [m for m in result.messages if "haproxy-minconn-above-maxconn" in m]
        assert validate(text, "haproxy", lint=False).ok

    def test_nginx_without_upstream(self) -> None:
        """
        An nginx 'fragment' without an upstream block is refused.
        """
        result = validate("# nothing\n", "nginx")
        assert not result.ok
        assert "no upstream block found" in result.messages[0]

    def test_haproxy_without_backend(self) -> None:
        """
        A HAProxy 'fragment' without a backend is refused.
        """
        result = validate("# nothing\n", "haproxy")
        assert not result.ok
        assert "no backend section found" in result.messages[0]


IPVS_BAD = [
    ("-A -t 10.0.0.10:80 -s bogus\n", "scheduler 'bogus'"),
    ("-A -t 10.0.0.10:80 -s wlc\n-a -t 10.0.0.10:80 -r 10.0.0.1:80 -m -w 70000\n", "-w 70000"),
    ("-A -t 10.0.0.10:80 -s wlc\n-a -t 10.0.0.10:80 -r 10.0.0.1:80 -m -x 65536\n", "-x 65536"),
    ("-a -t 10.0.0.10:80 -r 10.0.0.1:80 -m -w 1\n", "not defined above"),
    ("-A -t 10.0.0.10:80 -s wlc\n-A -t 10.0.0.10:80 -s rr\n", "already added on line 1"),
    ("-A -t 10.0.0.10:80 -s wlc\n-a -t 10.0.0.10:80 -r 10.0.0.1:8080 -g\n", "only NAT"),
    ("-A -t 10.0.0.10:80 -s wlc\n-a -t 10.0.0.10:80 -r 10.0.0.1:80 -m -i\n", "more than one"),
    ("-A -t 10.0.0.10:80 -s wlc\n-a -t 10.0.0.10:80 -r [::1]:80 -m\n", "IPv6, the service IPv4"),
    ("-A -t web.example:80 -s wlc\n", "no host names"),
    ("-A -t 10.0.0.10:80 -s wlc -w 3\n", "--weight does not go with --add-service"),
    ("-A -t 10.0.0.10:80 --bogus\n", "unknown or unsupported option"),
    ("-A -t 10.0.0.10:80 -s\n", "-s needs a value"),
    ("-t 10.0.0.10:80\n", "no command"),
    ("  # indented comment\n", "column 0"),
    (
        "-A -t 10.0.0.10:80 -s wlc\n-a -t 10.0.0.10:80 -r 10.0.0.1:80 -m -w 1 -y 9 -x 5\n",
        "ipvsadm-lthreshold-not-below-uthreshold",
    ),
]


class TestIpvsRules:
    @pytest.mark.parametrize(("text", "expected"), IPVS_BAD, ids=[b[1] for b in IPVS_BAD])
    def test_rejected(self, text: str, expected: str) -> None:
        """
        Rules ipvsadm would refuse, or that do not mean what they say, are rejected.
        """
        result = validate(text, "ipvsadm", name="ipvs.rules")
        assert not result.ok
        assert any(expected in m and m.startswith("ipvs.rules:") for m in result.messages), (
            result.messages
        )

    def test_accepted_forms(self) -> None:
        """
        Long options, persistence, fwmark services and blank lines are read.
        """
        text = (
            "# comment\n\n"
            "-A --tcp-service 10.0.0.10:443 --scheduler=sh -p 600\n"
            "-a -t 10.0.0.10:443 -r 10.0.0.1 -g --weight 3\n"
            "-A -f 7 -s rr\n"
            "-a -f 7 -r 10.0.0.2:80 -m -w 0\n"
        )
        result = validate(text, "ipvsadm")
        assert (True, ()) == (result.ok, result.messages)


class TestMissingTool:
    @pytest.mark.parametrize("target", REAL)
    def test_says_what_to_install(
        self, plan: Plan, target: str, monkeypatch: pytest.MonkeyPatch
    ) -> None:
        """
        A missing checker raises MissingToolError naming the Debian package.
        """
        monkeypatch.setenv("PATH", "/nonexistent")
        monkeypatch.setattr(validate_module, "_SBIN", ())
        with pytest.raises(MissingToolError, match=f"apt-get install {target}"):
            validate(render(plan, target), target)


class TestWriteValidated:
    @pytest.mark.parametrize("target", TARGETS)
    def test_writes_a_good_config(self, plan: Plan, target: str, tmp_path: Path) -> None:
        """
        A config that passes is written, whole.
        """
        path = tmp_path / "out" / "web.conf"
        text = render(plan, target)
        assert write_validated(path, text, target).ok
        assert text == path.read_text(encoding="utf-8")

    @pytest.mark.parametrize("target", TARGETS)
    def test_bad_config_leaves_the_old_file(self, plan: Plan, target: str, tmp_path: Path) -> None:
        """
        A config that fails is not written: the old file is untouched, no temp file is left.
        """
        path = tmp_path / "web.conf"
        path.write_text("old\n", encoding="utf-8")
        before = path.stat()
        bad = {
            "nginx": ("least_conn;", "least_conn; bogus on;"),
            "haproxy": ("maxqueue 12", "maxqueu 12"),
            "keepalived": ("weight 6400", "weigth 6400"),
            "ipvsadm": ("-s wlc", "-s bogus"),
        }[target]
        result = write_validated(path, render(plan, target).replace(*bad, 1), target)
        assert not result.ok
        assert "old\n" == path.read_text(encoding="utf-8")
        assert before.st_mtime_ns == path.stat().st_mtime_ns
        assert ["web.conf"] == sorted(os.listdir(tmp_path))

    def test_bad_config_creates_nothing(self, plan: Plan, tmp_path: Path) -> None:
        """
        A failing config for a new path leaves no file at all.
        """
        text = render(plan, "haproxy").replace("minconn 4", "minconn 40")
        assert not write_validated(tmp_path / "h.cfg", text, "haproxy").ok
        assert [] == os.listdir(tmp_path)


class TestDetectTarget:
    @pytest.mark.parametrize("target", TARGETS)
    def test_rendered(self, plan: Plan, target: str) -> None:
        """
        Each rendered config is recognised from its content.
        """
        assert target == detect_target(render(plan, target))

    def test_unknown(self) -> None:
        """
        Text that is no balancer config gives None.
        """
        assert detect_target("hello\n") is None
