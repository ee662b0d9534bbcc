"""
Allow-list grammars for every name and address that may reach a config file or a remote command.

A value outside these grammars is refused on entry, so nothing unvalidated can be rendered.
"""

from __future__ import annotations

import ipaddress
import re

__all__ = ["NAME_RE", "check_address", "check_host", "check_name", "check_remote_path"]

#: Node, cluster, kind and zone names: letters, digits, ``.``, ``_``, ``-``; 1–63 characters;
#: starting with a letter or digit.
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,62}")
_LABEL_RE = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)")
#: An IPv6 zone (``fe80::1%eth0``): an interface name or index.  Python's ipaddress takes any
#: text after the ``%``, newlines and ``;`` included.
_ZONE_RE = re.compile(r"[A-Za-z0-9_.-]{1,15}")
#: ``HOST:PORT`` / ``[IPv6]:PORT``; ASCII digits only (``\d`` would take ``٨٠`` or ``８０``).
_ADDRESS_RE = re.compile(r"\[([0-9A-Fa-f:.]+)\]:([0-9]{1,5})|([^:\[\]]+):([0-9]{1,5})")


def check_name(value: str) -> str:
    """
    Return ``value`` if it is a valid name, else raise ValueError saying what is allowed.

    Args:
        value: A node, cluster, kind or zone name.

    Returns:
        The same name.
    """
    if not NAME_RE.fullmatch(value):
        raise ValueError(
            f"{value[:80]!r} is not a valid name: use 1-63 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit"
        )
    return value


def check_host(value: str) -> str:
    """
    Return ``value`` if it is an IP address or a DNS host name, else raise ValueError.

    Args:
        value: An IPv4/IPv6 address or a host name (no port).

    Returns:
        The same host.
    """
    try:
        ipaddress.ip_address(value)
    except ValueError:
        pass
    else:
        zone = value.partition("%")[2]
        if zone and not _ZONE_RE.fullmatch(zone):
            raise ValueError(f"{value[:80]!r}: the IPv6 zone is not an interface name or index")
        return value
    labels = value.rstrip(".").split(".")
    if len(value) > 253 or not value or not all(_LABEL_RE.fullmatch(lb) for lb in labels):
        raise ValueError(f"{value[:80]!r} is not an IP address or a host name")
    if labels[-1].isdigit():
        raise ValueError(f"{value[:80]!r} is not a valid IPv4 address")
    return value


def check_address(value: str) -> str:
    """
    Return ``value`` if it is ``HOST:PORT`` (``[IPv6]:PORT`` for IPv6), else raise ValueError.

    Args:
        value: The address a balancer sends traffic to.

    Returns:
        The same address.
    """
    m = _ADDRESS_RE.fullmatch(value)
    if not m:
        raise ValueError(f"{value[:80]!r} is not HOST:PORT (write IPv6 as [addr]:port)")
    host = m.group(1) or m.group(3)
    digits = m.group(2) or m.group(4)
    port = int(digits)
    if m.group(1):
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{value[:80]!r}: {host!r} is not an IPv6 address") from None
    else:
        check_host(host)
    if not 1 <= port <= 65535:
        raise ValueError(f"{value[:80]!r}: port {port} is not in 1..65535")
    if digits.startswith("0"):  # 010: 10 to nginx, 8 to a strtol(..., 0) reader
        raise ValueError(f"{value[:80]!r}: write the port without leading zeros")
    return value


def check_remote_path(value: str) -> str:
    """
    Return ``value`` if it is an absolute path without control characters, else raise
    ValueError.  (Such a path reaches a remote shell only quoted; this refuses the rest.)

    Args:
        value: A file or directory path on a node (a log, /proc, a socket).

    Returns:
        The same path.
    """
    if not value.startswith("/"):
        raise ValueError(f"{value!r} is not an absolute path")
    if len(value) > 4096 or any(ord(ch) < 32 or ord(ch) == 127 for ch in value):
        raise ValueError(f"{value[:80]!r} has control characters or is too long")
    return value
