"""
Where collect connects: inventory settings over ssh_config (with Include and ProxyJump) over
OpenSSH's defaults.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from capplan.collect.ssh import Endpoint, load_ssh_config, resolve_route
from capplan.errors import InputError
from capplan.inventory import Node, SSHSettings


def node(**fields: object) -> Node:
    return Node.model_validate({"name": "web-1", "address": "10.0.0.5:8080", **fields})


def test_include_is_followed_and_scoped(tmp_path: Path) -> None:
    """Include files (globs, sorted) are read; lines after an Include keep their block."""
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "10-web.conf").write_text("Host web-*\n  User deploy\n  Port 2201\n")
    (tmp_path / "conf.d" / "20-db.conf").write_text("Host db\n  User dba\n")
    main = tmp_path / "config"
    main.write_text(
        f"Host web-1\n  HostName 10.9.9.1\n  Include {tmp_path}/conf.d/*.conf\n"
        "  IdentityFile /keys/web\n"
    )
    config = load_ssh_config(main)
    route = resolve_route(node(host="web-1"), SSHSettings(), config)
    assert route.target == Endpoint("web-1", "10.9.9.1", 2201, "deploy", ("/keys/web",))


def test_include_loop_is_an_error(tmp_path: Path) -> None:
    main = tmp_path / "config"
    main.write_text(f"Include {main}\n")
    with pytest.raises(InputError, match="nested more than 16"):
        load_ssh_config(main)


def test_inventory_wins_over_config(tmp_path: Path) -> None:
    config_file = tmp_path / "config"
    config_file.write_text("Host web-1\n  User fromconfig\n  Port 2200\n  HostName 10.1.1.1\n")
    config = load_ssh_config(config_file)
    pool = SSHSettings(user="ops", identity_file="/k/id", known_hosts="/k/kh", timeout_s=2)
    route = resolve_route(node(host="web-1", ssh={"port": 2222}), pool, config)
    assert route.target == Endpoint("web-1", "10.1.1.1", 2222, "ops", ("/k/id",))
    assert route.known_hosts == (Path("/k/kh"),)
    assert route.timeout_s == 2


def test_host_defaults_to_the_address() -> None:
    route = resolve_route(node(), SSHSettings(user="ops"), load_ssh_config(None))
    assert route.target.host == "10.0.0.5"
    assert route.target.port == 22


def test_proxy_jump_chain(tmp_path: Path) -> None:
    """ProxyJump hops are resolved through the config too, outermost first."""
    config_file = tmp_path / "config"
    config_file.write_text(
        "Host inner\n  HostName 10.0.0.9\n  ProxyJump bastion,jump@10.2.2.2:2022\n"
        "Host bastion\n  HostName 203.0.113.1\n  User gate\n"
    )
    route = resolve_route(node(host="inner"), SSHSettings(user="ops"), load_ssh_config(config_file))
    assert [(j.host, j.port, j.user) for j in route.jumps] == [
        ("203.0.113.1", 22, "gate"),
        ("10.2.2.2", 2022, "jump"),
    ]
    assert route.describe().startswith("ops@10.0.0.9:22 via gate@203.0.113.1:22")


def test_proxy_command_is_kept(tmp_path: Path) -> None:
    config_file = tmp_path / "config"
    config_file.write_text("Host web-1\n  ProxyCommand nc -x proxy:1080 %h %p\n")
    route = resolve_route(node(host="web-1"), SSHSettings(), load_ssh_config(config_file))
    assert route.proxy_command is not None
    assert "10.0.0.5" not in route.proxy_command  # %h is the alias, web-1
    assert "web-1 22" in route.proxy_command
