"""
Nodes from Ansible inventories: read directly (YAML) and through the real `ansible-inventory`
(INI and YAML), which must agree; variables mapped and merged as Ansible does; errors that
name the file, line and host.
"""

from __future__ import annotations

import os
import shutil
import sys
import textwrap
from pathlib import Path

import pytest

from capplan.ansible import expand_pattern, load_ansible_nodes
from capplan.errors import InputError
from capplan.inventory import load_inventory
from capplan.status import ExitStatus
from tests.conftest import CLI, EXAMPLES

HOSTS_YAML = """\
all:
  vars:
    capplan_port: 8080
    ansible_user: ops
    capplan_log_path: /var/log/nginx/access.log
  children:
    web:
      vars:
        capplan_kind: medium
        capplan_zone: a
      hosts:
        web-1: {ansible_host: 127.0.0.2, capplan_kind: small}
        web-2: {ansible_host: 127.0.0.3, capplan_zone: b}
      children:
        web_big:
          vars: {capplan_kind: large, capplan_workers: 8}
          hosts:
            web-3: {ansible_host: 127.0.0.4}
            web-4: {ansible_host: 127.0.0.5, capplan_zone: b, ansible_port: 2222}
    db:
      hosts:
        db[01:02]: {capplan_address: "127.0.0.9:5432"}
"""

HOSTS_INI = """\
[all:vars]
capplan_port=8080
ansible_user=ops
capplan_log_path=/var/log/nginx/access.log

[web]
web-1 ansible_host=127.0.0.2 capplan_kind=small
web-2 ansible_host=127.0.0.3 capplan_zone=b

[web:vars]
capplan_kind=medium
capplan_zone=a

[web_big]
web-3 ansible_host=127.0.0.4
web-4 ansible_host=127.0.0.5 capplan_zone=b ansible_port=2222

[web_big:vars]
capplan_kind=large
capplan_workers=8

[web:children]
web_big

[db]
db[01:02] capplan_address=127.0.0.9:5432
"""

EXPECTED_WEB = [
    {
        "name": "web-1",
        "host": "127.0.0.2",
        "address": "127.0.0.2:8080",
        "ssh": {"user": "ops"},
        "log": {"path": "/var/log/nginx/access.log"},
        "kind": "small",
        "zone": "a",
    },
    {
        "name": "web-2",
        "host": "127.0.0.3",
        "address": "127.0.0.3:8080",
        "ssh": {"user": "ops"},
        "log": {"path": "/var/log/nginx/access.log"},
        "kind": "medium",
        "zone": "b",
    },
    {
        "name": "web-3",
        "host": "127.0.0.4",
        "address": "127.0.0.4:8080",
        "ssh": {"user": "ops"},
        "log": {"path": "/var/log/nginx/access.log"},
        "kind": "large",
        "zone": "a",
        "workers": 8,
    },
    {
        "name": "web-4",
        "host": "127.0.0.5",
        "address": "127.0.0.5:8080",
        "ssh": {"user": "ops", "port": 2222},
        "log": {"path": "/var/log/nginx/access.log"},
        "kind": "large",
        "zone": "b",
        "workers": 8,
    },
]


def nodes(path: Path, group: str | None) -> list[dict]:
    return [fields for fields, _host, _line in load_ansible_nodes(path, group)]


def normal(found: list[dict]) -> list[dict]:
    """Numbers as numbers (INI gives strings for some, as Ansible itself does)."""
    out = []
    for node in found:
        node = dict(node)
        if "workers" in node:
            node["workers"] = int(node["workers"])
        if "ssh" in node and "port" in node["ssh"]:
            node["ssh"] = {**node["ssh"], "port": int(node["ssh"]["port"])}
        out.append(node)
    return out


@pytest.fixture
def hosts_yaml(tmp_path: Path) -> Path:
    path = tmp_path / "hosts.yml"
    path.write_text(HOSTS_YAML)
    return path


class TestPatterns:
    @pytest.mark.parametrize(
        ("pattern", "expected"),
        [
            ("web", ["web"]),
            ("web[01:03]", ["web01", "web02", "web03"]),
            ("web[1:3]", ["web1", "web2", "web3"]),
            ("db-[a:c]", ["db-a", "db-b", "db-c"]),
            ("n[0:10:5]", ["n0", "n5", "n10"]),
            ("r[1:2]-[a:b]", ["r1-a", "r1-b", "r2-a", "r2-b"]),
        ],
    )
    def test_ranges(self, pattern: str, expected: list[str]) -> None:
        assert expected == expand_pattern(pattern)


class TestDirect:
    def test_group_with_children_and_precedence(self, hosts_yaml: Path) -> None:
        """all < parent group < child group < host, as Ansible merges them."""
        assert EXPECTED_WEB == nodes(hosts_yaml, "web")

    def test_every_host_without_group(self, hosts_yaml: Path) -> None:
        found = nodes(hosts_yaml, None)
        assert ["db01", "db02", "web-1", "web-2", "web-3", "web-4"] == [n["name"] for n in found]
        assert "127.0.0.9:5432" == found[0]["address"]
        assert "db01" == found[0]["host"]

    def test_unknown_group(self, hosts_yaml: Path) -> None:
        with pytest.raises(InputError, match=r"no group 'api'.*groups: all, db, web, web_big"):
            nodes(hosts_yaml, "api")

    def test_host_without_address_names_file_line_and_host(self, tmp_path: Path) -> None:
        path = tmp_path / "hosts.yaml"
        path.write_text("web:\n  hosts:\n    web-1:\n      ansible_host: 10.0.0.1\n")
        with pytest.raises(InputError) as info:
            nodes(path, None)
        assert str(info.value).startswith(f"{path}:3: host web-1: no capplan_address")

    def test_bad_value_is_an_inventory_error(self, tmp_path: Path, hosts_yaml: Path) -> None:
        """A capplan_* value the inventory refuses is reported at the host's line."""
        hosts_yaml.write_text(HOSTS_YAML.replace("capplan_workers: 8", "capplan_workers: -1"))
        small = tmp_path / "pool.yaml"
        small.write_text("cluster: web\n")
        with pytest.raises(InputError) as info:
            load_inventory(small, ansible=hosts_yaml, group="web")
        message = str(info.value)
        assert message.startswith(f"{hosts_yaml}:18: host web-3: workers:"), message


# the test extras install ansible-core beside the interpreter running the tests
ansible_inventory = shutil.which("ansible-inventory") or str(
    Path(sys.executable).parent / "ansible-inventory"
)


class TestThroughAnsible:
    """The real ansible-inventory (installed with the test extras) reads INI and YAML."""

    @pytest.fixture(autouse=True)
    def _on_path(self, monkeypatch: pytest.MonkeyPatch) -> None:
        assert Path(ansible_inventory).exists(), "ansible-core is in the test extras"
        folder = str(Path(ansible_inventory).parent)
        monkeypatch.setenv("PATH", folder + ":" + os.environ["PATH"])
        monkeypatch.setenv("ANSIBLE_LOCAL_TEMP", "/tmp")
        monkeypatch.setenv("ANSIBLE_HOME", "/tmp/capplan-ansible-home")

    def test_ini_agrees_with_direct_yaml(self, tmp_path: Path, hosts_yaml: Path) -> None:
        ini = tmp_path / "hosts.ini"
        ini.write_text(HOSTS_INI)
        assert EXPECTED_WEB == normal(nodes(ini, "web"))
        assert nodes(hosts_yaml, None) == normal(nodes(ini, None))

    def test_yaml_through_ansible_agrees(self, tmp_path: Path, hosts_yaml: Path) -> None:
        """The same YAML given without its suffix goes through ansible-inventory."""
        plain = tmp_path / "hosts"
        plain.write_text(HOSTS_YAML)
        assert EXPECTED_WEB == nodes(plain, "web")

    def test_ansible_failure_is_reported(self, tmp_path: Path) -> None:
        broken = tmp_path / "hosts"
        broken.write_text("[web\nweb-1\n")
        with pytest.raises(InputError, match=r"found no hosts: .*Unable to parse"):
            nodes(broken, None)


def test_fit_from_ansible_nodes(cli: CLI, tmp_path: Path, hosts_yaml: Path) -> None:
    """`capplan fit -i SMALL --ansible-inventory H --group web` fits the Ansible nodes."""
    db = tmp_path / "capplan.db"
    assert ExitStatus.OK == cli("import", EXAMPLES / "web" / "samples.csv", "--db", db).status
    small = tmp_path / "pool.yaml"
    small.write_text(
        textwrap.dedent(
            """\
            cluster: web
            slo: {percentile: 99, latency_ms: 150}
            """
        )
    )
    result = cli(
        "fit", "-i", small, "--ansible-inventory", hosts_yaml, "--group", "web", "--db", db,
        "--json",
    )  # fmt: skip
    assert ExitStatus.OK == result.status, result.stderr
    assert ["web-1", "web-2", "web-3", "web-4"] == [n["node"] for n in result.json["nodes"]]
    assert all(n["capacity_rps"] > 0 for n in result.json["nodes"])


def test_ansible_needs_the_small_inventory(cli: CLI, hosts_yaml: Path, tmp_path: Path) -> None:
    result = cli("fit", "--ansible-inventory", hosts_yaml, "--db", tmp_path / "x.db")
    assert ExitStatus.BAD_INPUT == result.status
    assert "--ansible-inventory adds nodes to an inventory" in result.stderr
