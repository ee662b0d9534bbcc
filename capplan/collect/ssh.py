"""
SSH to the nodes with paramiko: where to connect (the inventory, then ``ssh_config`` with its
``Include`` and ``ProxyJump``), verified host keys, public-key authentication (key files and
the ssh-agent; passwords are never asked for nor stored), and remote commands whose output is
capped in bytes and time.

This is an edge module.  Everything it refuses is a :class:`NodeError` naming the node, the
stage that failed and what to do.
"""

from __future__ import annotations

import base64
import contextlib
import getpass
import glob
import hashlib
import logging
import os
import re
import select
import shlex
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

import paramiko

from capplan.errors import CapplanError, InputError
from capplan.inventory import Node, SSHSettings

__all__ = [
    "Cancel",
    "CommandResult",
    "Connection",
    "Endpoint",
    "KeyRing",
    "KnownHosts",
    "NodeError",
    "Route",
    "connect",
    "fingerprint",
    "load_ssh_config",
    "resolve_route",
]

DEFAULT_TIMEOUT_S = 5.0
# paramiko logs each failed handshake with a traceback; our NodeError says it in one line.
logging.getLogger("paramiko").addHandler(logging.NullHandler())
logging.getLogger("paramiko").propagate = False
_INCLUDE_DEPTH = 16  # OpenSSH's own limit
_DEFAULT_KEYS = ("id_ed25519", "id_ecdsa", "id_rsa")


class NodeError(CapplanError):
    """
    One node could not be collected: the ``stage`` that failed and why (with what to do).
    """

    def __init__(self, node: str, stage: str, reason: str) -> None:
        self.node = node
        self.stage = stage
        self.reason = reason
        super().__init__(f"{node}: {stage}: {reason}")


# --- where to connect ------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    """
    One SSH server to reach: the name the user wrote and what it resolved to.
    """

    alias: str
    host: str
    port: int
    user: str
    identity_files: tuple[str, ...] = ()

    @property
    def known_hosts_name(self) -> str:
        """
        The host's name in known_hosts: ``host``, or ``[host]:port`` off port 22 (as OpenSSH).
        """
        return self.host if self.port == 22 else f"[{self.host}]:{self.port}"

    def __str__(self) -> str:
        return f"{self.user}@{self.host}:{self.port}"


@dataclass(frozen=True)
class Route:
    """
    How to reach one node: through zero or more jump hosts, or a ProxyCommand, to the target.
    """

    node: str
    target: Endpoint
    jumps: tuple[Endpoint, ...] = ()
    proxy_command: str | None = None
    known_hosts: tuple[Path, ...] = ()
    timeout_s: float = DEFAULT_TIMEOUT_S

    def describe(self) -> str:
        """
        ``ops@10.0.0.5:22 via ops@bastion:22``: for messages and ``--dry-run``.
        """
        text = str(self.target)
        if self.jumps:
            text += " via " + " → ".join(str(j) for j in self.jumps)
        if self.proxy_command:
            text += f" via ProxyCommand {self.proxy_command!r}"
        return text


_INCLUDE = re.compile(r"^\s*include(?:\s*=\s*|\s+)(.+?)\s*$", re.IGNORECASE)
_BLOCK = re.compile(r"^\s*(host|match)(\s*=\s*|\s+)", re.IGNORECASE)


def _expand_includes(path: Path, depth: int) -> list[str]:
    """
    The lines of an ssh_config with every ``Include`` replaced by the files it names.

    Relative names are under ``~/.ssh`` (as OpenSSH reads a user's config); globs expand in
    sorted order.  After an included file that opened its own ``Host``/``Match`` block, the
    including block's header is repeated, so the lines after the ``Include`` keep their scope.
    """
    if depth > _INCLUDE_DEPTH:
        raise InputError(
            f"Include nested more than {_INCLUDE_DEPTH} deep", file=str(path), hint="a loop?"
        )
    try:
        text = path.read_text(encoding="utf-8", errors="replace")
    except OSError as exc:
        raise InputError(f"cannot read the ssh config: {exc.strerror}", file=str(path)) from None
    out: list[str] = []
    block: str | None = None
    for number, line in enumerate(text.splitlines(), 1):
        if _BLOCK.match(line):
            block = line
        found = _INCLUDE.match(line)
        if found is None:
            out.append(line)
            continue
        try:
            patterns = shlex.split(found.group(1))
        except ValueError as exc:
            raise InputError(f"bad Include: {exc}", file=str(path), line=number) from None
        for pattern in patterns:
            pattern = os.path.expanduser(pattern)
            if not os.path.isabs(pattern):
                pattern = os.path.join(os.path.expanduser("~/.ssh"), pattern)
            for name in sorted(glob.glob(pattern)):
                included = _expand_includes(Path(name), depth + 1)
                out.extend(included)
                if block is not None and any(_BLOCK.match(x) for x in included):
                    out.append(block)
                elif block is None and any(_BLOCK.match(x) for x in included):
                    out.append("Host *")
    return out


def load_ssh_config(path: str | Path | None) -> paramiko.SSHConfig:
    """
    The ssh_config at ``path`` (default ``~/.ssh/config`` when it exists), Includes followed.
    """
    if path is None:
        default = Path("~/.ssh/config").expanduser()
        if not default.exists():
            return paramiko.SSHConfig()
        path = default
    path = Path(path).expanduser()
    return paramiko.SSHConfig.from_text("\n".join(_expand_includes(path, 0)))


def _merge(*layers: SSHSettings | None) -> SSHSettings:
    """
    Settings with each key from the first layer that sets it.
    """
    values: dict[str, object] = {}
    for layer in layers:
        if layer is None:
            continue
        for key, value in layer.model_dump(exclude_none=True).items():
            values.setdefault(key, value)
    return SSHSettings.model_validate(values)


_HOP = re.compile(
    r"^(?:ssh://)?(?:(?P<user>[^@/\s]+)@)?(?P<host>\[[^\]]+\]|[^:/\s]+)(?::(?P<port>\d+))?/?$"
)


def _endpoint(
    alias: str,
    config: paramiko.SSHConfig,
    *,
    user: str | None,
    port: int | None,
    identity: str | None,
    where: str,
) -> tuple[Endpoint, dict[str, object]]:
    found = config.lookup(alias)
    try:
        resolved_port = port or int(str(found.get("port", 22)))
    except ValueError:
        raise InputError(f"bad Port {found.get('port')!r} in the ssh config", key=where) from None
    identities = [identity] if identity else list(found.get("identityfile", []))
    if not identities:
        home = Path("~/.ssh").expanduser()
        identities = [str(home / n) for n in _DEFAULT_KEYS if (home / n).exists()]
    endpoint = Endpoint(
        alias=alias,
        host=str(found.get("hostname", alias)),
        port=resolved_port,
        user=user or str(found.get("user") or getpass.getuser()),
        identity_files=tuple(os.path.expanduser(str(i)) for i in identities),
    )
    return endpoint, dict(found)


def _jumps(spec: str, config: paramiko.SSHConfig, pool: SSHSettings, node: str) -> list[Endpoint]:
    hops: list[Endpoint] = []
    for raw in spec.split(","):
        hop = _HOP.match(raw.strip())
        if hop is None:
            raise NodeError(node, "config", f"cannot read ProxyJump hop {raw.strip()!r}")
        alias = hop["host"].strip("[]")
        endpoint, found = _endpoint(
            alias,
            config,
            user=hop["user"] or None,
            port=int(hop["port"]) if hop["port"] else None,
            identity=pool.identity_file,
            where="ProxyJump",
        )
        inner = found.get("proxyjump")
        if inner and str(inner).lower() != "none":
            if len(hops) > _INCLUDE_DEPTH:
                raise NodeError(node, "config", "ProxyJump chain too long (a loop?)")
            hops.extend(_jumps(str(inner), config, pool, node))
        hops.append(endpoint)
    return hops


def resolve_route(node: Node, pool: SSHSettings, config: paramiko.SSHConfig) -> Route:
    """
    How to reach ``node``: the inventory's settings (the node's, then the pool's) win over the
    ssh_config's, which win over OpenSSH's defaults; the host defaults to the address's host.
    """
    settings = _merge(node.ssh, pool)
    alias = node.host or node.address.rsplit(":", 1)[0].strip("[]")
    target, found = _endpoint(
        alias,
        config,
        user=settings.user,
        port=settings.port,
        identity=settings.identity_file,
        where=f"nodes.{node.name}.ssh",
    )
    jump = found.get("proxyjump")
    jumps = _jumps(str(jump), config, settings, node.name) if jump and jump != "none" else []
    command = found.get("proxycommand")
    proxy = str(command) if command and str(command).lower() != "none" and not jumps else None
    if settings.known_hosts:
        known = [settings.known_hosts]
    elif found.get("userknownhostsfile"):
        known = str(found["userknownhostsfile"]).split()
    else:
        known = ["~/.ssh/known_hosts"]
    return Route(
        node=node.name,
        target=target,
        jumps=tuple(jumps),
        proxy_command=proxy,
        known_hosts=tuple(Path(k).expanduser() for k in known),
        timeout_s=settings.timeout_s or DEFAULT_TIMEOUT_S,
    )


# --- host keys -------------------------------------------------------------------------------


def fingerprint(key: paramiko.PKey) -> str:
    """
    ``SHA256:…`` as ``ssh-keygen -l`` prints it.
    """
    digest = hashlib.sha256(key.asbytes()).digest()
    return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")


def _key_label(key: paramiko.PKey) -> str:
    name = key.get_name()
    label = name.removeprefix("ssh-").removeprefix("ecdsa-sha2-").upper()
    return f"{label} {fingerprint(key)}"


class KnownHosts:
    """
    The known_hosts files, read once and shared by every connection of a run.

    New keys (with ``--accept-new``) are appended to the first file, one line each, under a
    lock; a changed key is never written.
    """

    def __init__(self, files: Sequence[Path]) -> None:
        self.files = tuple(files)
        self._keys = paramiko.HostKeys()
        self._lock = threading.Lock()
        for path in self.files:
            if path.exists():
                try:
                    self._keys.load(str(path))
                except (OSError, paramiko.SSHException) as exc:
                    raise InputError(f"cannot read known_hosts: {exc}", file=str(path)) from None

    def types(self, name: str) -> list[str]:
        """
        The key types known for ``name``.
        """
        with self._lock:
            found = self._keys.lookup(name)
            return list(found.keys()) if found else []

    def check(self, node: str, name: str, key: paramiko.PKey, *, accept_new: bool) -> bool:
        """
        Verify ``key`` for ``name``; True when it was new and has just been added.

        Raises:
            NodeError: the key changed, or is unknown without ``accept_new``.
        """
        where = str(self.files[0]) if self.files else "~/.ssh/known_hosts"
        with self._lock:
            found = self._keys.lookup(name)
            known = found.get(key.get_name()) if found else None
            if known is not None:
                if known.asbytes() == key.asbytes():
                    return False
                raise NodeError(
                    node,
                    "hostkey",
                    f"the host key of {name} CHANGED: it offers {_key_label(key)}, {where} "
                    f"has {_key_label(known)}; refused (it may be an attack). If the change is "
                    f"expected, remove the old key: ssh-keygen -R '{name}' -f {where}",
                )
            if found:
                # Known under another key type that was not negotiated: OpenSSH refuses too.
                raise NodeError(
                    node,
                    "hostkey",
                    f"{name} offers {_key_label(key)} but {where} knows it with "
                    f"{', '.join(found.keys())} only; refused. Check the key and add it to {where}",
                )
            if not accept_new:
                raise NodeError(
                    node,
                    "hostkey",
                    f"unknown host key for {name}: {_key_label(key)} is not in {where}; "
                    f"check the fingerprint and add it (e.g. `ssh-keyscan -p PORT HOST >> "
                    f"{where}` after comparing), or run with --accept-new",
                )
            self._keys.add(name, key.get_name(), key)
            path = Path(where).expanduser()
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            line = f"{name} {key.get_name()} {key.get_base64()}\n"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            try:
                os.write(fd, line.encode())
            finally:
                os.close(fd)
            return True


# --- connections -----------------------------------------------------------------------------


class _Closable(Protocol):
    def close(self) -> None: ...


@dataclass
class Cancel:
    """
    A run's deadline: ``cancel()`` closes every socket and transport registered so far (and
    any registered later), which wakes up whatever thread is blocked on them.
    """

    cancelled: bool = False
    _open: list[_Closable] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def register(self, thing: _Closable) -> None:
        with self._lock:
            if not self.cancelled:
                self._open.append(thing)
                return
        thing.close()

    def cancel(self) -> None:
        with self._lock:
            self.cancelled = True
            things, self._open = self._open, []
        for thing in things:
            with contextlib.suppress(Exception):  # closing is best effort
                thing.close()


@dataclass(frozen=True)
class CommandResult:
    """
    What one remote command gave: its output (capped), exit status and whether it was cut.
    """

    stdout: bytes
    stderr: bytes
    status: int | None
    truncated: bool


class KeyRing:
    """
    Private keys, each file loaded once per run (a key shared by all nodes is read once).
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._keys: dict[str, paramiko.PKey | str] = {}

    def get(self, path: str) -> paramiko.PKey | str:
        """
        The key at ``path``, or why it cannot be used.
        """
        with self._lock:
            if path not in self._keys:
                try:
                    self._keys[path] = paramiko.PKey.from_path(path)
                except paramiko.PasswordRequiredException:
                    self._keys[path] = f"{path} is encrypted (load it into ssh-agent)"
                except TypeError as exc:  # cryptography's word for an encrypted key
                    encrypted = "password" in str(exc).lower()
                    self._keys[path] = (
                        f"{path} is encrypted (load it into ssh-agent)"
                        if encrypted
                        else f"{path}: {exc}"
                    )
                except (OSError, paramiko.SSHException, ValueError) as exc:
                    self._keys[path] = (
                        f"{path}: {exc.strerror if isinstance(exc, OSError) else exc}"
                    )
            return self._keys[path]


def _authenticate(
    transport: paramiko.Transport, endpoint: Endpoint, node: str, keys: KeyRing
) -> None:
    tried: list[str] = []
    agent = paramiko.Agent()
    try:
        candidates: list[tuple[str, paramiko.PKey]] = [
            (f"agent key {fingerprint(k)}", k) for k in agent.get_keys()
        ]
        for path in endpoint.identity_files:
            key = keys.get(path)
            if isinstance(key, str):
                tried.append(key)
            else:
                candidates.append((path, key))
        for label, key in candidates:
            try:
                transport.auth_publickey(endpoint.user, key)
            except paramiko.BadAuthenticationType as exc:
                raise NodeError(
                    node,
                    "auth",
                    f"{endpoint} does not accept public keys (it allows {exc.allowed_types}); "
                    "capplan never uses passwords",
                ) from None
            except paramiko.AuthenticationException:
                tried.append(f"{label} refused")
                continue
            if transport.is_authenticated():
                return
    finally:
        agent.close()
    raise NodeError(
        node,
        "auth",
        f"no key was accepted for {endpoint} (tried: {'; '.join(tried) or 'no key found'}); "
        "set ssh.identity_file in the inventory, IdentityFile in the ssh config, or load the "
        "key into ssh-agent",
    )


def _preferred_key_types(transport: paramiko.Transport, known: list[str]) -> None:
    """
    Ask first for the host key types known_hosts has, as OpenSSH does, so a host known by its
    RSA key is not reported unknown because it also has an Ed25519 one.
    """
    if not known:
        return
    wanted: list[str] = []
    for name in known:
        wanted.extend(["rsa-sha2-512", "rsa-sha2-256", name] if name == "ssh-rsa" else [name])
    options = transport.get_security_options()
    available = list(options.key_types)
    first = [k for k in wanted if k in available]
    options.key_types = tuple(first + [k for k in available if k not in first])


#: AES-GCM first: an AEAD cipher, one pass over each packet where AES-CTR needs a separate HMAC
#: (paramiko's default order puts CTR first); a client CPU second per ~800 MB read, at 2/3 of
#: CTR with HMAC-SHA2-256 here.  Servers without it fall back to paramiko's other ciphers.
_FAST_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


def _preferred_ciphers(transport: paramiko.Transport) -> None:
    options = transport.get_security_options()
    available = list(options.ciphers)
    first = [c for c in _FAST_CIPHERS if c in available]
    options.ciphers = tuple(first + [c for c in available if c not in first])


def _open_transport(
    sock: socket.socket | paramiko.Channel | paramiko.ProxyCommand,
    endpoint: Endpoint,
    route: Route,
    hosts: KnownHosts,
    *,
    accept_new: bool,
    cancel: Cancel,
    keys: KeyRing,
) -> tuple[paramiko.Transport, bool]:
    transport = paramiko.Transport(sock)
    cancel.register(transport)
    transport.banner_timeout = route.timeout_s
    transport.handshake_timeout = route.timeout_s
    transport.auth_timeout = route.timeout_s
    name = endpoint.known_hosts_name
    _preferred_key_types(transport, hosts.types(name))
    _preferred_ciphers(transport)
    try:
        transport.start_client(timeout=route.timeout_s)
        key = transport.get_remote_server_key()
    except (paramiko.SSHException, EOFError, OSError) as exc:
        transport.close()
        raise NodeError(
            route.node,
            "connect",
            f"no SSH handshake with {endpoint} within {route.timeout_s:g} s "
            f"({exc or type(exc).__name__}); is it an SSH server?",
        ) from None
    added = hosts.check(route.node, name, key, accept_new=accept_new)
    _authenticate(transport, endpoint, route.node, keys)
    return transport, added


def _tcp(endpoint: Endpoint, route: Route, cancel: Cancel) -> socket.socket:
    try:
        sock = socket.create_connection((endpoint.host, endpoint.port), timeout=route.timeout_s)
    except OSError as exc:
        reason = "timed out" if isinstance(exc, TimeoutError) else exc.strerror or str(exc)
        raise NodeError(
            route.node, "connect", f"cannot reach {endpoint.host}:{endpoint.port}: {reason}"
        ) from None
    cancel.register(sock)
    return sock


class Connection:
    """
    One authenticated SSH connection to a node, reused for every command of a run.
    """

    def __init__(self, route: Route, transports: list[paramiko.Transport], added: list[str]):
        self.route = route
        self._transports = transports
        #: Hosts whose keys were added to known_hosts (``--accept-new``) by this connection.
        self.added_keys = added

    def run(
        self,
        command: str,
        *,
        max_bytes: int,
        deadline: float,
        stage: str,
        max_stderr: int = 65_536,
    ) -> CommandResult:
        """
        Run ``command`` and return its output, cut at ``max_bytes``; a command silent for the
        route's timeout, or still running at ``deadline`` (``time.monotonic()``), fails.
        """
        node, timeout = self.route.node, self.route.timeout_s
        transport = self._transports[-1]
        try:
            channel = transport.open_session(timeout=timeout)
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise NodeError(node, stage, f"cannot open a session: {exc}") from None
        out, err = bytearray(), bytearray()
        truncated = False
        try:
            channel.exec_command(command)
            last = time.monotonic()
            while True:
                now = time.monotonic()
                if now >= deadline:
                    # stage "deadline", as the run reports a node it stops waiting for: which
                    # of the two notices first must not change what is reported
                    raise NodeError(
                        node, "deadline", f"the run's deadline passed during the {stage} command"
                    )
                if now - last > timeout:
                    raise NodeError(node, stage, f"the command was silent for {timeout:g} s")
                select.select([channel], [], [], min(0.25, deadline - now, timeout))
                busy = False
                while channel.recv_ready():
                    out += channel.recv(65_536)
                    busy = True
                while channel.recv_stderr_ready():
                    chunk = channel.recv_stderr(65_536)
                    err += chunk[: max(0, max_stderr - len(err))]
                    busy = True
                if len(out) > max_bytes:
                    del out[max_bytes:]
                    truncated = True
                    break
                if busy:
                    last = time.monotonic()
                    continue
                if channel.exit_status_ready() or channel.closed or transport.is_active() is False:
                    break
            if not truncated:
                # What came in with the exit status, after the last pass found nothing.
                while channel.recv_ready() and len(out) <= max_bytes:
                    out += channel.recv(65_536)
                if len(out) > max_bytes:
                    del out[max_bytes:]
                    truncated = True
            # paramiko marks a channel closed by a broken connection "exit status ready" with
            # status -1; a real exit status (an unsigned int from the server) is never negative.
            status = None if truncated or channel.exit_status < 0 else channel.exit_status
        except (paramiko.SSHException, EOFError, OSError) as exc:
            raise NodeError(
                node, stage, f"the connection broke: {exc or type(exc).__name__}"
            ) from None
        finally:
            channel.close()
        if not truncated and status is None:
            raise NodeError(node, stage, "the connection closed before the command finished")
        return CommandResult(bytes(out), bytes(err), status, truncated)

    def close(self) -> None:
        """
        Close the connection (and the jump connections under it).
        """
        for transport in reversed(self._transports):
            transport.close()


def connect(
    route: Route, hosts: KnownHosts, keys: KeyRing, *, accept_new: bool, cancel: Cancel
) -> Connection:
    """
    Connect and authenticate to ``route``'s target, through its jump hosts or ProxyCommand,
    verifying every host key on the way.

    Raises:
        NodeError: at stage ``connect``, ``hostkey`` or ``auth``.
    """
    transports: list[paramiko.Transport] = []
    added: list[str] = []
    try:
        hops = [*route.jumps, route.target]
        sock: socket.socket | paramiko.Channel | paramiko.ProxyCommand
        if route.proxy_command:
            try:
                sock = paramiko.ProxyCommand(route.proxy_command)
            except (paramiko.SSHException, OSError) as exc:
                raise NodeError(route.node, "connect", f"ProxyCommand failed: {exc}") from None
            cancel.register(sock)
        else:
            sock = _tcp(hops[0], route, cancel)
        for index, hop in enumerate(hops):
            if index > 0:
                try:
                    sock = transports[-1].open_channel(
                        "direct-tcpip",
                        (hop.host, hop.port),
                        ("127.0.0.1", 0),
                        timeout=route.timeout_s,
                    )
                except (paramiko.SSHException, EOFError, OSError) as exc:
                    raise NodeError(
                        route.node,
                        "connect",
                        f"jump host {hops[index - 1]} could not reach {hop.host}:{hop.port}: "
                        f"{exc or type(exc).__name__}",
                    ) from None
            transport, was_added = _open_transport(
                sock, hop, route, hosts, accept_new=accept_new, cancel=cancel, keys=keys
            )
            transports.append(transport)
            if was_added:
                added.append(hop.known_hosts_name)
    except BaseException:
        for transport in reversed(transports):
            transport.close()
        raise
    return Connection(route, transports, added)
