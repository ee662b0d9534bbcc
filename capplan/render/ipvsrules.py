"""
A checker for ``ipvsadm-restore`` rules, for hosts where ipvsadm cannot run.

ipvsadm has no dry-run mode: it talks to the kernel's IPVS, and where there is none (most
containers and CI machines) it cannot even print its help.  So capplan checks the rules itself:
the syntax ``ipvsadm -R`` reads, option ranges from ipvsadm(8), scheduler names, forwarding
methods, and that every real server belongs to a service defined above it (``ipvsadm-restore``
clears the table first).  The kernel never saw them: results say so.
"""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass, field

from capplan.planfile import LVS_SCHEDULERS

__all__ = ["check_ipvs_rules"]

_COMMANDS = {
    "-A": "add-service",
    "--add-service": "add-service",
    "-E": "edit-service",
    "--edit-service": "edit-service",
    "-D": "delete-service",
    "--delete-service": "delete-service",
    "-C": "clear",
    "--clear": "clear",
    "-a": "add-server",
    "--add-server": "add-server",
    "-e": "edit-server",
    "--edit-server": "edit-server",
    "-d": "delete-server",
    "--delete-server": "delete-server",
    "-Z": "zero",
    "--zero": "zero",
}
_WITH_ARG = {
    "-t": "tcp",
    "--tcp-service": "tcp",
    "-u": "udp",
    "--udp-service": "udp",
    "--sctp-service": "sctp",
    "-f": "fwmark",
    "--fwmark-service": "fwmark",
    "-s": "scheduler",
    "--scheduler": "scheduler",
    "-M": "netmask",
    "--netmask": "netmask",
    "-b": "sched-flags",
    "--sched-flags": "sched-flags",
    "--pe": "pe",
    "-r": "real-server",
    "--real-server": "real-server",
    "-w": "weight",
    "--weight": "weight",
    "-x": "u-threshold",
    "--u-threshold": "u-threshold",
    "-y": "l-threshold",
    "--l-threshold": "l-threshold",
    "--tun-type": "tun-type",
    "--tun-port": "tun-port",
}
_FLAGS = {
    "-g": "gatewaying",
    "--gatewaying": "gatewaying",
    "-i": "ipip",
    "--ipip": "ipip",
    "-m": "masquerading",
    "--masquerading": "masquerading",
    "-o": "ops",
    "--ops": "ops",
    "--tun-nocsum": "tun-nocsum",
    "--tun-csum": "tun-csum",
    "--tun-remcsum": "tun-remcsum",
}
_SERVICE_KINDS = ("tcp", "udp", "sctp", "fwmark")
_FORWARDING = ("gatewaying", "ipip", "masquerading")
_SERVICE_ONLY = ("scheduler", "netmask", "sched-flags", "pe", "persistent", "ops")
_SERVER_ONLY = ("weight", "u-threshold", "l-threshold", *_FORWARDING, "tun-type", "tun-port")
_ADDRESS_RE = re.compile(r"\[([0-9A-Fa-f:.]+)\](?::([0-9]{1,5}))?|([0-9.]+)(?::([0-9]{1,5}))?")

#: capplan keeps LVS weights in 0..65535 (ipvsadm itself takes up to 2147483647).
MAX_WEIGHT = 65535


@dataclass
class _Table:
    services: dict[tuple[str, str], int] = field(default_factory=dict)
    servers: dict[tuple[str, str, str], int] = field(default_factory=dict)


def _address(value: str) -> tuple[ipaddress.IPv4Address | ipaddress.IPv6Address, int]:
    m = _ADDRESS_RE.fullmatch(value)
    if not m:
        raise ValueError(f"{value!r} is not IP[:PORT] (IPv6 as [addr]:port; no host names)")
    host = m.group(1) or m.group(3)
    port = int(m.group(2) or m.group(4) or 0)  # no port: 0 (a real server then takes the service's)
    try:
        ip = ipaddress.IPv6Address(host) if m.group(1) else ipaddress.IPv4Address(host)
    except ValueError:
        raise ValueError(f"{value!r}: {host!r} is not an IP address") from None
    if port > 65535:
        raise ValueError(f"{value!r}: port {port} is not in 0..65535")
    return ip, port


def _number(option: str, value: str, low: int, high: int) -> int:
    if not re.fullmatch(r"[0-9]{1,10}", value):
        raise ValueError(f"{option} {value!r} is not a whole number")
    number = int(value)
    if not low <= number <= high:
        raise ValueError(f"{option} {number} is not in {low}..{high}")
    return number


def _parse(words: list[str]) -> dict[str, str]:
    """
    One rule's words → {option name: value}; ``command`` holds the command.
    """
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        value: str | None = None
        if word.startswith("--") and "=" in word:
            word, value = word.split("=", 1)
        if word in _COMMANDS:
            if "command" in options:
                raise ValueError(f"two commands on one line ({options['command']} and {word})")
            options["command"] = _COMMANDS[word]
        elif word in ("-p", "--persistent"):
            options["persistent"] = "300"
            if value is not None:
                options["persistent"] = value
            elif i + 1 < len(words) and words[i + 1].isdigit():
                options["persistent"] = words[i + 1]
                i += 1
        elif word in _WITH_ARG:
            name = _WITH_ARG[word]
            if value is None:
                if i + 1 >= len(words) or (words[i + 1].startswith("-") and name != "fwmark"):
                    raise ValueError(f"{word} needs a value")
                value = words[i + 1]
                i += 1
            if name in options or (name in _SERVICE_KINDS and "service" in options):
                raise ValueError(f"{word} given twice")
            if name in _SERVICE_KINDS:
                options["service"] = name
            options[name] = value
        elif word in _FLAGS:
            options[_FLAGS[word]] = ""
        else:
            raise ValueError(f"unknown or unsupported option {word[:40]!r}")
        i += 1
    if "command" not in options:
        raise ValueError("no command (-A, -a, -E, -e, -D, -d or -C)")
    return options


def _check(options: dict[str, str], line: int, table: _Table) -> list[str]:
    problems: list[str] = []
    command = options["command"]
    if command in ("clear", "zero") and len(options) == 1:
        if command == "clear":
            table.services.clear()
            table.servers.clear()
        return problems
    kind = options.get("service")
    if kind is None:
        return [f"{command} needs a service (-t, -u, --sctp-service or -f)"]
    if kind == "fwmark":
        _number("-f", options["fwmark"], 1, 2**32 - 1)
        family = None
    else:
        ip, port = _address(options[kind])
        family = ip.version
        if port == 0 and "persistent" not in options:
            problems.append("port 0 is only valid for a persistent service (-p)")
    service = (kind, options[kind])
    is_service_cmd = command.endswith("service")
    wrong = _SERVER_ONLY if is_service_cmd else _SERVICE_ONLY
    for name in wrong:
        if name in options:
            problems.append(f"--{name} does not go with --{command}")
    if is_service_cmd:
        if "real-server" in options:
            problems.append(f"-r does not go with --{command}")
        scheduler = options.get("scheduler")
        if scheduler is not None and scheduler not in LVS_SCHEDULERS:
            problems.append(f"scheduler {scheduler!r} is not one of {' '.join(LVS_SCHEDULERS)}")
        if "persistent" in options:
            _number("-p", options["persistent"], 1, 2**31 - 1)
        if command == "add-service":
            if service in table.services:
                problems.append(
                    f"service {options[kind]} is already added on line {table.services[service]}"
                )
            table.services[service] = line
        elif service not in table.services:
            problems.append(f"service {options[kind]} is not defined above")
        return problems
    if service not in table.services:
        problems.append(
            f"service {options[kind]} is not defined above (ipvsadm-restore clears the table "
            "first, so -A must come before its -a lines)"
        )
    real = options.get("real-server")
    if real is None:
        return [*problems, f"--{command} needs a real server (-r IP:PORT)"]
    real_ip, real_port = _address(real)
    if family is not None and real_ip.version != family:
        problems.append(f"real server {real} is IPv{real_ip.version}, the service IPv{family}")
    methods = [m for m in _FORWARDING if m in options]
    if len(methods) > 1:
        problems.append(f"more than one forwarding method ({', '.join(methods)})")
    if kind != "fwmark" and methods != ["masquerading"]:
        service_port = _address(options[kind])[1]
        if real_port not in (0, service_port):
            problems.append(
                f"real server port {real_port} differs from the service port {service_port}: "
                "only NAT (-m) maps ports (direct routing and tunnelling ignore it)"
            )
    if "weight" in options:
        _number("-w", options["weight"], 0, MAX_WEIGHT)
    if "u-threshold" in options:
        _number("-x", options["u-threshold"], 0, 65535)
    if "l-threshold" in options:
        _number("-y", options["l-threshold"], 0, 65535)
    key = (kind, options[kind], real)
    if command == "add-server":
        if key in table.servers:
            problems.append(f"real server {real} is already added on line {table.servers[key]}")
        table.servers[key] = line
    elif key not in table.servers:
        problems.append(f"real server {real} is not defined above")
    return problems


def check_ipvs_rules(text: str, file: str = "<rules>") -> list[str]:
    """
    Check ``ipvsadm-restore`` rules without ipvsadm.

    Args:
        text: The rules, one ipvsadm command per line; ``#`` lines (at column 0) are comments.
        file: The name to report.

    Returns:
        Problems as ``FILE:LINE: problem``; empty when the rules are well-formed.
    """
    problems: list[str] = []
    table = _Table()
    for number, raw in enumerate(text.split("\n"), start=1):
        if raw.startswith("#") or not raw.strip():
            continue
        if raw.lstrip().startswith("#"):
            problems.append(
                f"{file}:{number}: a comment must start at column 0 (ipvsadm-restore only "
                "drops lines that begin with '#')"
            )
            continue
        if not raw.rstrip("\r").replace("\t", " ").isprintable():
            problems.append(f"{file}:{number}: holds a control character")
            continue
        try:
            options = _parse(raw.split())
            found = _check(options, number, table)
        except ValueError as exc:
            found = [str(exc)]
        problems += [f"{file}:{number}: {p}" for p in found]
    return problems
