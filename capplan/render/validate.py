"""
Checking configs with the real programs, and writing them only once they pass.

- nginx: the upstream fragment is included in a minimal ``nginx.conf`` in a temporary folder
  (its pid, error log and temp paths inside that folder, one ``server`` on 127.0.0.1 that
  proxies to each upstream) and checked with ``nginx -t``, which parses but never binds.
- HAProxy: the backend is loaded after a minimal global/defaults/frontend (bound to 127.0.0.1)
  and checked with ``haproxy -dW -c``: warnings fail too.
- keepalived: ``keepalived -t -e -f FILE`` (``-e``: a missing included file fails).
- ipvsadm: it has no check mode and needs the kernel's IPVS, so capplan's own parser checks
  the rules (``capplan.render.ipvsrules``); the result says the kernel did not see them.

Every config is also run through ``capplan.render.lint``.  Messages point at the checked
file's own lines (``NAME:LINE: ...``), never at the temporary copies.  Nothing here prints.
"""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from capplan.errors import InputError, MissingToolError
from capplan.files import write_atomic
from capplan.planfile import TARGETS
from capplan.render.ipvsrules import check_ipvs_rules
from capplan.render.lint import lint as run_lint

__all__ = [
    "PACKAGES",
    "ValidationResult",
    "detect_target",
    "find_tool",
    "validate",
    "write_validated",
]

#: The Debian package that provides each checker.
PACKAGES = {
    "nginx": "nginx",
    "haproxy": "haproxy",
    "keepalived": "keepalived",
    "promtool": "prometheus",
}

_SBIN = ("/usr/local/sbin", "/usr/sbin", "/sbin")
_IPVS_CHECKER = (
    "capplan's ipvsadm-restore parser; not checked by ipvsadm or the kernel (ipvsadm has no "
    "check mode and needs IPVS in the kernel)"
)


@dataclass(frozen=True)
class ValidationResult:
    """
    What checking one config found.

    Attributes:
        target: ``nginx``, ``haproxy``, ``ipvsadm`` or ``keepalived``.
        ok: True when the checker and capplan's lint found nothing.
        messages: Problems, each ``NAME:LINE: ...`` where the line is known.
        checked_by: What checked it, e.g. ``nginx -t (/usr/sbin/nginx) + capplan lint``.
    """

    target: str
    ok: bool
    messages: tuple[str, ...]
    checked_by: str


def find_tool(program: str) -> str:
    """
    The path of ``program`` (also looked for in the sbin folders a user's PATH may lack).

    Raises:
        MissingToolError: saying which Debian package to install.
    """
    path = os.environ.get("PATH", "")
    found = shutil.which(program, path=os.pathsep.join([path, *_SBIN]))
    if found is None:
        package = PACKAGES.get(program, program)
        raise MissingToolError(
            f"{program} is not installed; capplan needs it to check {program} configs "
            f"(Debian/Ubuntu: apt-get install {package})"
        )
    return found


def detect_target(text: str) -> str | None:
    """
    Guess which balancer a config is for, from its content; None when it cannot tell.
    """
    lines = [ln.strip() for ln in text.split("\n")]
    code = [ln for ln in lines if ln and not ln.startswith(("#", "!"))]
    if code and code[0].startswith(("-A ", "-a ", "--add-service", "-C")):
        return "ipvsadm"
    if any(
        re.match(r"(virtual_server|vrrp_instance|global_defs|vrrp_script)\b", ln) for ln in code
    ):
        return "keepalived"
    if any(re.match(r"(backend|frontend|listen|defaults|global)(\s|$)", ln) for ln in code):
        return "haproxy"
    if any(re.match(r"(upstream\s+\S+|http|events)\s*\{", ln) for ln in code):
        return "nginx"
    return None


def _run(argv: list[str], timeout_s: float) -> tuple[int, list[str]]:
    env = dict(os.environ, LC_ALL="C", LANG="C")
    try:
        proc = subprocess.run(
            argv,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            errors="replace",
            timeout=timeout_s,
            env=env,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return -1, [f"{Path(argv[0]).name} did not finish within {timeout_s:g} s"]
    lines = [ln.rstrip() for ln in (proc.stdout + "\n" + proc.stderr).split("\n")]
    return proc.returncode, [ln for ln in lines if ln]


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# ----------------------------------------------------------------------------- nginx

_NGINX_LOG_RE = re.compile(
    r"^(?:\d{4}/\d\d/\d\d \d\d:\d\d:\d\d |nginx: )\[(\w+)\] (?:\d+#\d+: )?(.*)$"
)


def _nginx_message(line: str, fragment: Path, wrapper: Path, name: str) -> str | None:
    m = _NGINX_LOG_RE.match(line)
    if not m:
        if line.startswith("nginx: configuration file"):
            return None  # "... syntax is ok" / "... test failed": the status says it
        return line.replace(str(fragment), name)
    level, text = m.groups()
    where = re.search(r" in (\S+):(\d+)$", text)
    if where and where.group(1) == str(fragment):
        return f"{name}:{where.group(2)}: [{level}] {text[: where.start()]}"
    if where and where.group(1) == str(wrapper):
        return f"capplan's check wrapper:{where.group(2)}: [{level}] {text[: where.start()]}"
    return f"[{level}] {text.replace(str(fragment), name)}"


def _check_nginx(text: str, name: str, timeout_s: float) -> tuple[bool, list[str], str]:
    nginx = find_tool("nginx")
    full = re.search(r"^\s*(events|http)\s*\{", text, re.MULTILINE) is not None
    upstreams = re.findall(r"^\s*upstream\s+([A-Za-z0-9_.-]+)\s*\{", text, re.MULTILINE)
    if not full and not upstreams:
        return False, [f"{name}: no upstream block found"], f"{nginx} -t"
    with tempfile.TemporaryDirectory(prefix="capplan-nginx-") as tmp:
        folder = Path(tmp)
        fragment = folder / "fragment.conf"
        fragment.write_text(text, encoding="utf-8")
        conf = fragment
        if not full:
            conf = folder / "nginx.conf"
            locations = "\n".join(
                f"            location /{i} {{ proxy_pass http://{up}; }}"
                for i, up in enumerate(upstreams)
            )
            conf.write_text(
                f"""pid {folder}/nginx.pid;
error_log {folder}/error.log;
worker_processes 1;
events {{ worker_connections 64; }}
http {{
    access_log off;
    client_body_temp_path {folder}/client_body;
    proxy_temp_path {folder}/proxy;
    fastcgi_temp_path {folder}/fastcgi;
    uwsgi_temp_path {folder}/uwsgi;
    scgi_temp_path {folder}/scgi;
    include {fragment};
    server {{
        listen 127.0.0.1:{_free_port()};
{locations}
    }}
}}
""",
                encoding="utf-8",
            )
        rc, out = _run(
            [nginx, "-t", "-q", "-e", "stderr", "-p", f"{folder}/", "-c", str(conf)], timeout_s
        )
    wrapper = Path(tmp) / "nginx.conf"
    messages = [m for m in (_nginx_message(ln, fragment, wrapper, name) for ln in out) if m]
    return rc == 0 and not messages, messages, f"nginx -t ({nginx})"


# ----------------------------------------------------------------------------- HAProxy

_HAPROXY_RE = re.compile(r"^\[(\w+)\]\s+\(\d+\) : (?:config : )?(.*)$")


def _haproxy_message(line: str, fragment: Path, wrapper: Path, name: str) -> str | None:
    if line.strip() == "Configuration file is valid":
        return None
    m = _HAPROXY_RE.match(line)
    if not m:
        return line.replace(str(fragment), name)
    level, text = m.groups()
    if level == "NOTICE":
        return None
    where = re.match(r"(?:parsing )?\[([^\]:]+):(\d+)\]\s*:?\s*(.*)$", text)
    if where and where.group(1) == str(fragment):
        return f"{name}:{where.group(2)}: [{level}] {where.group(3)}"
    if where and where.group(1) == str(wrapper):
        return f"capplan's check wrapper:{where.group(2)}: [{level}] {where.group(3)}"
    return f"[{level}] {text.replace(str(fragment), name)}"


def _check_haproxy(text: str, name: str, timeout_s: float) -> tuple[bool, list[str], str]:
    haproxy = find_tool("haproxy")
    full = re.search(r"^\s*(frontend|listen)\s", text, re.MULTILINE) is not None
    backends = re.findall(r"^\s*backend\s+(\S+)", text, re.MULTILINE)
    if not full and not backends:
        return False, [f"{name}: no backend section found"], f"haproxy -c ({haproxy})"
    with tempfile.TemporaryDirectory(prefix="capplan-haproxy-") as tmp:
        folder = Path(tmp)
        fragment = folder / "fragment.cfg"
        wrapper = folder / "wrapper.cfg"
        fragment.write_text(text, encoding="utf-8")
        files = ["-f", str(fragment)]
        if not full:
            wrapper.write_text(
                f"""global
    maxconn 1024
defaults
    mode http
    timeout connect 5s
    timeout client 30s
    timeout server 30s
frontend capplan_check
    bind 127.0.0.1:{_free_port()}
    default_backend {backends[0]}
""",
                encoding="utf-8",
            )
            files = ["-f", str(wrapper), *files]
        rc, out = _run([haproxy, "-dW", "-c", *files], timeout_s)
    messages = [m for m in (_haproxy_message(ln, fragment, wrapper, name) for ln in out) if m]
    return rc == 0 and not messages, messages, f"haproxy -dW -c ({haproxy})"


# ----------------------------------------------------------------------------- keepalived

_KEEPALIVED_RE = re.compile(r"^\((?:([^:]+): )?Line (\d+)\) (.*)$")


def _check_keepalived(text: str, name: str, timeout_s: float) -> tuple[bool, list[str], str]:
    keepalived = find_tool("keepalived")
    with tempfile.TemporaryDirectory(prefix="capplan-keepalived-") as tmp:
        fragment = Path(tmp) / "keepalived.conf"
        fragment.write_text(text, encoding="utf-8")
        rc, out = _run([keepalived, "-t", "-e", "-f", str(fragment)], timeout_s)
    messages = []
    for line in out:
        m = _KEEPALIVED_RE.match(line)
        if m and m.group(1) in (None, fragment.name, str(fragment)):
            messages.append(f"{name}:{m.group(2)}: {m.group(3)}")
        else:
            messages.append(line.replace(str(fragment), name))
    return rc == 0 and not messages, messages, f"keepalived -t ({keepalived})"


# ----------------------------------------------------------------------------- public


def validate(
    source: str | Path,
    target: str,
    *,
    name: str | None = None,
    lint: bool = True,
    timeout_s: float = 30.0,
) -> ValidationResult:
    """
    Check a config with its real checker (ipvsadm: capplan's parser) and capplan's lint.

    Args:
        source: A ``Path`` is read; a ``str`` is the config text itself.
        target: ``nginx``, ``haproxy``, ``ipvsadm`` or ``keepalived``.
        name: The file name messages show (default: the path, or ``<TARGET config>``).
        lint: Also run ``capplan.render.lint`` (a finding fails the check).
        timeout_s: How long a checker may run.

    Returns:
        The result; ``ok`` is False when anything was found.

    Raises:
        InputError: for an unknown target or an unreadable file.
        MissingToolError: when the checker is not installed (with the package to install).
    """
    if target not in TARGETS:
        raise InputError(
            f"{target!r} is not a target", key="target", hint=f"use one of {', '.join(TARGETS)}"
        )
    if isinstance(source, Path):
        try:
            text = source.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise InputError(f"cannot read the config: {exc}", file=str(source)) from None
        shown = name or str(source)
    else:
        text = source
        shown = name or f"<{target} config>"
    if target == "ipvsadm":
        messages = check_ipvs_rules(text, shown)
        ok, checked_by = not messages, _IPVS_CHECKER
    else:
        check = {"nginx": _check_nginx, "haproxy": _check_haproxy, "keepalived": _check_keepalived}
        ok, messages, checked_by = check[target](text, shown, timeout_s)
    if lint:
        findings = run_lint(text, target, file=shown)
        messages = [*messages, *(str(f) for f in findings)]
        ok = ok and not findings
        checked_by += " + capplan lint"
    return ValidationResult(target, ok, tuple(messages), checked_by)


def write_validated(
    path: str | Path, text: str, target: str, *, timeout_s: float = 30.0
) -> ValidationResult:
    """
    Check ``text`` and, only if it passes, write it to ``path`` atomically.

    The check runs on temporary copies; when it fails, ``path`` is left as it was and no
    partial or temporary file is left behind.

    Args:
        path: The config file to write.
        text: Its new content.
        target: ``nginx``, ``haproxy``, ``ipvsadm`` or ``keepalived``.
        timeout_s: How long the checker may run.

    Returns:
        The check's result: the file was written exactly when ``ok`` is True.
    """
    result = validate(text, target, name=str(path), timeout_s=timeout_s)
    if result.ok:
        write_atomic(path, text)
    return result
