"""
Inventory and profile loading: validation with FILE:LINE: key in every error.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from capplan.errors import InputError
from capplan.inventory import (
    SLOSpec,
    builtin_profiles,
    effective_slo,
    load_inventory,
    load_profile,
    parse_inventory,
)

GOOD = """\
cluster: web
profile: balanced
load_rps: 1800
slo: {percentile: 99, latency_ms: 250, max_error_rate: 0.001}
ssh: {user: ops, port: 22, timeout_s: 5}
nodes:
  - name: web-1
    host: 127.0.0.2
    address: 127.0.0.2:8080
    workers: 8
    kind: c6i.large
    zone: a
    labels: {team: web}
  - name: web-2
    host: local
    address: "[::1]:8080"
    log: {path: /var/log/nginx/access.log, format: nginx}
balancers:
  - {kind: nginx, name: web_backend, output: out/nginx-web.conf}
"""


def error_of(text: str) -> str:
    with pytest.raises(InputError) as info:
        parse_inventory(text, "inv.yaml")
    return str(info.value)


class TestInventory:
    def test_good(self) -> None:
        """A full inventory is read with its nodes and balancers."""
        inv = parse_inventory(GOOD, "inv.yaml")
        assert ["web-1", "web-2"] == [n.name for n in inv.nodes]
        assert 8 == inv.node("web-1").workers
        assert "local" == inv.node("web-2").host
        assert "nginx" == inv.balancers[0].kind

    def test_arrivals(self) -> None:
        """arrivals: poisson unless measured behind round robin or least connections."""
        unsaid = parse_inventory(GOOD, "inv.yaml")
        assert unsaid.arrivals is None  # read as poisson, with a note from the fitting commands
        assert "poisson" == unsaid.arrival_model
        for value in ("round_robin", "least_connections", "shortest_expected_delay"):
            text = GOOD.replace("load_rps: 1800\n", f"load_rps: 1800\narrivals: {value}\n")
            text = text.replace("    host: local\n", "    host: local\n    workers: 4\n")
            assert value == parse_inventory(text, "inv.yaml").arrivals
        bad = error_of(GOOD.replace("load_rps: 1800\n", "load_rps: 1800\narrivals: lc\n"))
        assert bad.startswith("inv.yaml:4: arrivals:")
        assert "'least_connections'" in bad

    @pytest.mark.parametrize("value", ["least_connections", "shortest_expected_delay"])
    def test_least_connections_needs_every_nodes_workers(self, value: str) -> None:
        """Behind least connections a node's slots cannot be fitted: its workers are required."""
        text = GOOD.replace("load_rps: 1800\n", f"load_rps: 1800\narrivals: {value}\n")
        bad = error_of(text)
        assert bad.startswith(
            f"inv.yaml:15: nodes.1: node 'web-2' has no workers, which arrivals: {value}"
        )
        assert "round_robin" in bad

    def test_duplicated_node_name(self) -> None:
        """A duplicated node name points at the second one and names the first's line."""
        text = GOOD.replace("name: web-2", "name: web-1")
        assert error_of(text) == (
            "inv.yaml:14: nodes.1.name: 'web-1' is already the name of the node on line 7 "
            "(every node needs its own name)"
        )

    def test_bad_address(self) -> None:
        """An address without a port is refused with its line and key."""
        text = GOOD.replace("address: 127.0.0.2:8080", "address: 127.0.0.2")
        assert error_of(text) == (
            "inv.yaml:9: nodes.0.address: '127.0.0.2' is not HOST:PORT (write IPv6 as [addr]:port)"
        )

    def test_port_out_of_range(self) -> None:
        """A port above 65535 is refused."""
        text = GOOD.replace("127.0.0.2:8080", "127.0.0.2:80800")
        assert "port 80800 is not in 1..65535" in error_of(text)

    def test_hostile_name(self) -> None:
        """A name with config syntax in it is refused."""
        text = GOOD.replace("name: web-1", 'name: "web-1; server evil:80"')
        assert error_of(text).startswith("inv.yaml:7: nodes.0.name: 'web-1; server evil:80' is not")

    def test_unknown_key(self) -> None:
        """A misspelled key is refused, not ignored."""
        text = GOOD.replace("load_rps:", "lod_rps:")
        assert "inv.yaml:3: lod_rps: unknown key" in error_of(text)

    def test_duplicated_key(self) -> None:
        """The same key twice in one mapping is refused (PyYAML would keep the last)."""
        text = GOOD.replace("    workers: 8\n", "    workers: 8\n    workers: 9\n")
        assert error_of(text).startswith(
            "inv.yaml:11: nodes.0.workers: key 'workers' appears twice"
        )

    def test_yaml_syntax_error(self) -> None:
        """A YAML syntax error names its line."""
        assert error_of("cluster: web\nnodes: [\n").startswith("inv.yaml:3: not valid YAML")

    def test_missing_nodes(self) -> None:
        """An inventory without nodes says the key is missing."""
        assert error_of("cluster: web\n") == (
            "inv.yaml:1: nodes: required, but missing "
            "(add it; the README's inventory section shows every key)"
        )

    def test_bad_percentile(self) -> None:
        """An SLO percentile of 100 or more is refused."""
        text = GOOD.replace("percentile: 99,", "percentile: 100,")
        assert error_of(text).startswith("inv.yaml:4: slo.percentile:")

    def test_not_a_mapping(self) -> None:
        """A list at the top is refused with what an inventory is."""
        assert error_of("- a\n").startswith("inv.yaml:1: an inventory is a mapping")

    def test_missing_file(self, tmp_path: Path) -> None:
        """A missing file is named."""
        with pytest.raises(InputError, match=r"none.yaml: no such inventory file"):
            load_inventory(tmp_path / "none.yaml")


class TestProfiles:
    def test_builtins_load(self) -> None:
        """Every built-in profile validates, balanced among them."""
        names = list(builtin_profiles())
        assert "balanced" in names
        for name in names:
            assert name == load_profile(name).name

    def test_profile_by_path(self, tmp_path: Path) -> None:
        """A profile file next to the inventory is found by relative path."""
        (tmp_path / "mine.yaml").write_text("slo: {latency_ms: 80}\nheadroom: 0.3\n")
        profile = load_profile("mine.yaml", relative_to=tmp_path)
        assert ("mine", 80.0, 0.3) == (profile.name, profile.slo.latency_ms, profile.headroom)

    def test_unknown_profile(self) -> None:
        """An unknown profile lists the built-in ones."""
        with pytest.raises(
            InputError, match=r"no profile 'nope' \(use a built-in one \(.*balanced"
        ):
            load_profile("nope")

    def test_slo_merge_order(self) -> None:
        """The first spec that sets a key wins; unset keys fall back to the defaults."""
        slo = effective_slo(SLOSpec(latency_ms=100), SLOSpec(percentile=95, latency_ms=300), None)
        assert (95.0, 100.0, 0.001) == (slo.percentile, slo.latency_ms, slo.max_error_rate)


class TestBalancers:
    def test_hostile_upstream_name_refused(self) -> None:
        """An nginx upstream name with config syntax is refused at load, with its line."""
        text = GOOD.replace("name: web_backend", 'name: "web; evil"')
        assert error_of(text).startswith(
            "inv.yaml:19: balancers.0: 'web; evil' is not a valid name for an nginx upstream"
        )

    def test_lvs_balancer_is_named_by_its_virtual_service(self) -> None:
        """An LVS balancer's name must be IP:PORT."""
        text = GOOD + "  - {kind: keepalived, name: not-an-address}\n"
        assert "balancers.1" in error_of(text)

    @pytest.mark.parametrize(
        ("output", "problem"),
        [
            ("/etc/cron.d/capplan", "is not relative"),
            ("~/nginx.conf", "is not relative"),
            ("out/../../etc/passwd", "climbs out with '..'"),
            ("out/#x.conf", "holds #"),
        ],
    )
    def test_output_stays_beside_the_inventory(self, output: str, problem: str) -> None:
        """A balancer's output is a plain relative path: the inventory cannot aim elsewhere."""
        text = GOOD.replace("output: out/nginx-web.conf", f"output: {output!r}")
        message = error_of(text)
        assert message.startswith("inv.yaml:19: balancers.0.output: "), message
        assert problem in message

    def test_lvs_needs_ip_real_servers(self) -> None:
        """With an LVS balancer, a node addressed by host name is refused at its line."""
        text = GOOD.replace("address: 127.0.0.2:8080", "address: web-1.example:8080")
        text += '  - {kind: ipvsadm, name: "10.0.0.1:80"}\n'
        assert error_of(text).startswith(
            "inv.yaml:9: nodes.0.address: 'web-1.example:8080': LVS (ipvsadm, keepalived) needs "
            "IP:PORT real servers"
        )
