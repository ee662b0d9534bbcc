"""
Nodes from an Ansible inventory, so a pool is described once (``--ansible-inventory FILE``).

Two ways in, the same result:

- a YAML inventory is read directly (groups with ``hosts``, ``children`` and ``vars``; host
  ranges such as ``web[01:12]`` and ``db-[a:c]``);
- any other inventory (INI, a directory, a dynamic script) goes through
  ``ansible-inventory -i FILE --list`` when Ansible is installed — its JSON, with every
  variable already merged by Ansible itself.  Ansible is GPL: it is run, never imported.

Variables, merged as Ansible does for a plain inventory (``all`` < parent groups < child groups
< the host), become node fields:

======================================  ==================================================
``ansible_host``                        ``host`` (where SSH connects; else the host's name)
``ansible_port`` / ``ansible_user``     ``ssh.port`` / ``ssh.user``
``ansible_ssh_private_key_file``        ``ssh.identity_file``
``capplan_address``                     ``address`` (else ``HOST:capplan_port``)
``capplan_name``                        ``name`` (else the inventory's host name)
``capplan_log_path``, ``_log_format``,  ``log`` (``path``, ``format``, ``log_format``,
``_log_format_string``, ``_log_regex``  ``regex``)
``capplan_workers``, ``_kind``,         the node key of the same name
``_zone``, ``_proc_dir``,
``_haproxy_socket``, ``_labels``
======================================  ==================================================

Everything else (the SLO, balancers, kinds) stays in capplan's own small YAML.  The node
dictionaries built here are validated by the inventory's own model, so a bad value is reported
like any other inventory error, with the Ansible file and line where it is known.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from capplan.errors import InputError
from capplan.files import read_input
from capplan.yamlfile import Located, load_yaml

__all__ = ["expand_pattern", "hosts_from_json", "hosts_from_yaml", "load_ansible_nodes", "to_node"]

_RANGE = re.compile(r"\[([0-9]+|[a-z]):([0-9]+|[a-z])(?::([0-9]+))?\]")
_DIRECT = ("host", "workers", "kind", "zone", "proc_dir", "haproxy_socket", "labels")
_LOG = {"log_path": "path", "log_format": "format", "log_format_string": "log_format",
        "log_regex": "regex"}  # fmt: skip


def expand_pattern(name: str) -> list[str]:
    """
    Ansible's host ranges: ``web[01:03]`` → web01, web02, web03; ``x[a:c]``; ``[0:10:5]``.
    """
    match = _RANGE.search(name)
    if match is None:
        return [name]
    start, end, step_text = match.groups()
    step = int(step_text) if step_text else 1
    head, tail = name[: match.start()], name[match.end() :]
    if start.isdigit() and end.isdigit():
        width = len(start) if start.startswith("0") else 0
        values = [str(i).zfill(width) for i in range(int(start), int(end) + 1, step)]
    elif start.isalpha() and end.isalpha():
        values = [chr(c) for c in range(ord(start), ord(end) + 1, step)]
    else:
        raise ValueError(f"host range {match.group(0)} mixes digits and letters")
    return [n for value in values for n in expand_pattern(head + value + tail)]


def hosts_from_yaml(located: Located, group: str | None) -> dict[str, tuple[dict[str, Any], int]]:
    """
    The hosts of ``group`` (every host when None) with their merged variables and the line
    where each host is declared.
    """
    data = located.data
    if not isinstance(data, dict):
        raise InputError(
            "an Ansible YAML inventory is a mapping of groups",
            file=located.file,
            line=1,
            hint="e.g. all: {children: {web: {hosts: {web-1: {ansible_host: 10.0.0.1}}}}}",
        )
    groups: dict[str, dict[str, Any]] = {}  # name -> {"vars", "hosts": {host: (vars, line)}}
    parents: dict[str, set[str]] = {}

    def walk(name: str, body: Any, path: tuple[str | int, ...]) -> None:
        entry = groups.setdefault(name, {"vars": {}, "hosts": {}, "children": set()})
        if body is None:
            return
        if not isinstance(body, dict):
            raise InputError(
                f"group {name!r} must be a mapping of hosts, children and vars",
                file=located.file,
                line=located.line_of(path),
            )
        unknown = set(body) - {"hosts", "children", "vars"}
        if unknown:
            key = sorted(unknown)[0]
            raise InputError(
                f"unknown key {key!r} in group {name!r}",
                file=located.file,
                line=located.line_of((*path, key)),
                hint="a group has hosts, children and vars",
            )
        entry["vars"].update(_mapping(body.get("vars"), located, (*path, "vars")))
        for host, hvars in _mapping(body.get("hosts"), located, (*path, "hosts")).items():
            line = located.line_of((*path, "hosts", host)) or 0
            try:
                names = expand_pattern(str(host))
            except ValueError as exc:
                raise InputError(str(exc), file=located.file, line=line) from None
            for expanded in names:
                entry["hosts"][expanded] = (
                    _mapping(hvars, located, (*path, "hosts", host)),
                    line,
                )
        for child, child_body in _mapping(
            body.get("children"), located, (*path, "children")
        ).items():
            entry["children"].add(str(child))
            parents.setdefault(str(child), set()).add(name)
            walk(str(child), child_body, (*path, "children", child))

    for name, body in data.items():
        walk(str(name), body, (name,))
    if group is not None and group not in groups:
        raise InputError(
            f"no group {group!r}",
            file=located.file,
            key="--group",
            hint="groups: " + ", ".join(sorted(groups)),
        )

    def depth(name: str, seen: frozenset[str] = frozenset()) -> int:
        ups = parents.get(name, set()) - seen
        return 1 + max((depth(p, seen | {name}) for p in ups), default=0)

    def members(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        out = set(groups[name]["hosts"])
        for child in groups[name]["children"] - seen:
            out |= members(child, seen | {name})
        return out

    chosen = (
        members(group) if group is not None else {h for g in groups.values() for h in g["hosts"]}
    )
    order = sorted(groups, key=lambda g: (g != "all", depth(g), g))  # all first, parents first
    result: dict[str, tuple[dict[str, Any], int]] = {}
    for host in sorted(chosen, key=_natural):
        merged: dict[str, Any] = {}
        line = 0
        for g in order:
            if host in members(g):
                merged.update(groups[g]["vars"])
        for g in order:
            if host in groups[g]["hosts"]:
                hvars, line = groups[g]["hosts"][host]
                merged.update(hvars)
        result[host] = (merged, line)
    return result


def _mapping(value: Any, located: Located, path: tuple[str | int, ...]) -> dict[Any, Any]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise InputError(
            "expected a mapping",
            file=located.file,
            line=located.line_of(path),
            key=".".join(str(p) for p in path),
        )
    return value


def _natural(name: str) -> list[Any]:
    return [int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name)]


def hosts_from_json(
    document: Mapping[str, Any], group: str | None, file: str
) -> dict[str, tuple[dict[str, Any], int]]:
    """
    The hosts of ``group`` from ``ansible-inventory --list`` (variables already merged).
    """
    hostvars = document.get("_meta", {}).get("hostvars", {})

    def members(name: str, seen: frozenset[str] = frozenset()) -> set[str]:
        entry = document.get(name, {})
        out = set(entry.get("hosts", []))
        for child in entry.get("children", []):
            if child not in seen:
                out |= members(child, seen | {name})
        return out

    if group is not None and group not in document:
        groups = sorted(k for k in document if k != "_meta")
        raise InputError(
            f"no group {group!r}", file=file, key="--group", hint="groups: " + ", ".join(groups)
        )
    chosen = members(group or "all") | (set(hostvars) if group is None else set())
    return {h: (dict(hostvars.get(h, {})), 0) for h in sorted(chosen, key=_natural)}


def to_node(
    host: str, variables: Mapping[str, Any], *, file: str, line: int | None
) -> dict[str, Any]:
    """
    One capplan node (a plain dict, validated later) from a host's merged variables.
    """
    name = str(variables.get("capplan_name", host))
    node: dict[str, Any] = {"name": name}
    target = variables.get("ansible_host", host)
    node["host"] = variables.get("capplan_host", target)
    if "capplan_address" in variables:
        node["address"] = variables["capplan_address"]
    elif "capplan_port" in variables:
        address = str(target)
        if ":" in address:
            address = f"[{address}]"
        node["address"] = f"{address}:{variables['capplan_port']}"
    else:
        raise InputError(
            "no capplan_address (where the balancer sends traffic) and no capplan_port",
            file=file,
            line=line or None,
            key=f"host {host}",
            hint="set capplan_address: HOST:PORT, or capplan_port: PORT, in the host's or a "
            "group's vars",
        )
    ssh = {
        key: variables[var]
        for var, key in (
            ("ansible_port", "port"),
            ("ansible_user", "user"),
            ("ansible_ssh_private_key_file", "identity_file"),
        )
        if var in variables
    }
    if ssh:
        node["ssh"] = ssh
    log = {
        key: variables[f"capplan_{var}"]
        for var, key in _LOG.items()
        if f"capplan_{var}" in variables
    }
    if log:
        node["log"] = log
    for key in _DIRECT:
        if key != "host" and f"capplan_{key}" in variables:
            node[key] = variables[f"capplan_{key}"]
    return node


def load_ansible_nodes(
    path: str | Path, group: str | None
) -> list[tuple[dict[str, Any], str, int | None]]:
    """
    The nodes of an Ansible inventory file (see the module's notes): each node's fields, its
    Ansible host name, and the line declaring it (None when read through ansible-inventory).
    """
    file = str(path)
    target = Path(path)
    hosts: dict[str, tuple[dict[str, Any], int]]
    if target.is_file() and target.suffix in (".yml", ".yaml"):
        located = load_yaml(read_input(target, "Ansible inventory"), file)
        hosts = hosts_from_yaml(located, group)
    else:
        if not target.exists():
            raise InputError("no such Ansible inventory", file=file)
        program = shutil.which("ansible-inventory")
        if program is None:
            raise InputError(
                "only YAML inventories (.yml, .yaml) are read without Ansible",
                file=file,
                hint="install Ansible (ansible-inventory), or convert it: "
                "ansible-inventory -i FILE --list -y > inventory.yml",
            )
        try:
            done = subprocess.run(
                [program, "-i", file, "--list"],
                capture_output=True,
                text=True,
                check=False,
                timeout=120,
            )
        except subprocess.TimeoutExpired:
            raise InputError("ansible-inventory took over 120 s", file=file) from None
        if done.returncode != 0:
            message = (done.stderr.strip().splitlines() or ["no message"])[-1][:300]
            raise InputError(f"ansible-inventory failed: {message}", file=file)
        try:
            document = json.loads(done.stdout)
        except json.JSONDecodeError as exc:
            raise InputError(f"ansible-inventory printed no JSON ({exc})", file=file) from None
        hosts = hosts_from_json(document, group, file)
        if not hosts:
            # ansible-inventory succeeds on what it cannot parse, with warnings: say them
            warnings = [
                line.removeprefix("[WARNING]: ").strip()
                for line in done.stderr.splitlines()
                if line.startswith("[WARNING]")
            ]
            if warnings:
                raise InputError(
                    "ansible-inventory found no hosts: " + "; ".join(warnings)[:400], file=file
                )
    if not hosts:
        raise InputError(
            "no hosts" + (f" in group {group!r}" if group else ""),
            file=file,
            hint="check --group and the inventory",
        )
    return [
        (to_node(h, v, file=file, line=line), h, line or None) for h, (v, line) in hosts.items()
    ]
