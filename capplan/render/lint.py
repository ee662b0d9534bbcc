"""
capplan's own checks for balancer configs: mistakes the real checkers let through.

``nginx -t``, ``haproxy -c`` and ``keepalived -t`` accept each of these, and each one quietly
does something other than what its author meant:

- HAProxy: ``minconn`` above ``maxconn``; ``slowstart`` or ``observe`` on a server without
  ``check`` (both need health checks to do anything); ``weight`` above 256.
- keepalived: ``lthreshold`` not below ``uthreshold``.
- nginx: ``backup`` servers with the ``hash``, ``ip_hash`` or ``random`` methods; ``max_conns``
  without a ``zone`` (each worker then counts alone, multiplying the limit); ``random two``
  with unequal weights.
- ipvsadm rules: ``-y`` (lower threshold) not below ``-x`` (upper).

Every finding names ``file:line``.  The parsers here are deliberately small: they read the
configs capplan writes and the common hand-written ones, and they never execute anything.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from capplan.errors import InputError
from capplan.planfile import TARGETS

__all__ = ["LintFinding", "lint"]


@dataclass(frozen=True)
class LintFinding:
    """
    One problem found by ``lint``: where it is, which rule, and what is wrong.
    """

    file: str
    line: int
    target: str
    rule: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.message} [{self.rule}]"


def lint(text: str, target: str, *, file: str = "<config>") -> tuple[LintFinding, ...]:
    """
    Check a config for mistakes its real checker lets through.

    Args:
        text: The config text.
        target: ``nginx``, ``haproxy``, ``ipvsadm`` or ``keepalived``.
        file: The name to report.

    Returns:
        The findings, in line order (empty when the config is clean).
    """
    checks = {
        "nginx": _lint_nginx,
        "haproxy": _lint_haproxy,
        "keepalived": _lint_keepalived,
        "ipvsadm": _lint_ipvsadm,
    }
    if target not in checks:
        raise InputError(
            f"{target!r} is not a target", key="target", hint=f"use one of {', '.join(TARGETS)}"
        )
    findings = [
        LintFinding(file, line, target, rule, msg) for line, rule, msg in checks[target](text)
    ]
    return tuple(sorted(findings, key=lambda f: f.line))


Finding = tuple[int, str, str]


# ----------------------------------------------------------------------------- nginx


@dataclass(frozen=True)
class _Statement:
    line: int
    words: tuple[str, ...]
    kind: str  # "simple" (ends with ;), "open" (ends with {) or "close" (a lone })


def _nginx_statements(text: str) -> Iterator[_Statement]:
    """
    nginx's grammar: words, ``'…'`` / ``"…"`` quotes, ``#`` comments, ``;``, ``{`` and ``}``.
    """
    words: list[str] = []
    first_line = 0
    word: list[str] = []
    in_word = False
    quote = ""
    line = 1
    i = 0
    n = len(text)

    def end_word() -> None:
        nonlocal in_word
        if in_word:
            words.append("".join(word))
            word.clear()
            in_word = False

    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\" and i + 1 < n:
                word.append(text[i + 1])
                i += 2
                continue
            if ch == quote:
                quote = ""
            else:
                word.append(ch)
            line += ch == "\n"
            i += 1
            continue
        if ch == "\n":
            end_word()
            line += 1
        elif ch in " \t\r":
            end_word()
        elif ch == "#" and not in_word:
            while i < n and text[i] != "\n":
                i += 1
            continue
        elif ch in "'\"" and not in_word:
            if not words:
                first_line = line
            quote, in_word = ch, True
        elif ch in ";{":
            end_word()
            if words:
                yield _Statement(first_line, tuple(words), "simple" if ch == ";" else "open")
            words = []
        elif ch == "}":
            end_word()
            if words:  # a statement without its ';': keep it, nginx will complain
                yield _Statement(first_line, tuple(words), "simple")
                words = []
            yield _Statement(line, (), "close")
        else:
            if not words and not in_word:
                first_line = line
            word.append(ch)
            in_word = True
        i += 1


@dataclass
class _Upstream:
    line: int
    name: str
    zone: bool = False
    method: str = ""
    method_words: tuple[str, ...] = ()
    method_line: int = 0
    servers: list[_Statement] = field(default_factory=list)


def _server_params(words: tuple[str, ...]) -> dict[str, str]:
    params: dict[str, str] = {}
    for word in words[2:]:
        key, _, value = word.partition("=")
        params[key] = value
    return params


def _check_upstream(up: _Upstream) -> Iterator[Finding]:
    servers = up.servers
    for server in servers:
        params = _server_params(server.words)
        if "backup" in params and up.method in ("hash", "ip_hash", "random"):
            yield (
                server.line,
                "nginx-backup-with-hash",
                f"upstream {up.name}: a backup server with the {up.method} method "
                "(nginx cannot fail over to it; drop 'backup' or use another method)",
            )
        if params.get("max_conns", "0") not in ("", "0") and not up.zone:
            yield (
                server.line,
                "nginx-max-conns-without-zone",
                f"upstream {up.name}: max_conns without a zone (each worker counts its own "
                f"connections, multiplying the limit; add 'zone {up.name} 64k;')",
            )
    if up.method == "random" and "two" in up.method_words:
        weights = {
            _server_params(s.words).get("weight", "1")
            for s in servers
            if not {"backup", "down"} & set(_server_params(s.words))
        }
        if len(weights) > 1:
            yield (
                up.method_line,
                "nginx-random-two-unequal-weights",
                f"upstream {up.name}: 'random two' with unequal weights "
                f"({', '.join(sorted(weights, key=lambda w: (len(w), w)))}) skews the split",
            )


def _lint_nginx(text: str) -> Iterator[Finding]:
    depth = 0
    upstream: _Upstream | None = None
    upstream_depth = -1
    for st in _nginx_statements(text):
        if st.kind == "close":
            depth -= 1
            if upstream is not None and depth == upstream_depth:
                yield from _check_upstream(upstream)
                upstream = None
            continue
        if st.kind == "open":
            if st.words[0] == "upstream" and len(st.words) == 2 and upstream is None:
                upstream = _Upstream(st.line, st.words[1])
                upstream_depth = depth
            depth += 1
            continue
        if upstream is None or depth != upstream_depth + 1:
            continue
        head = st.words[0]
        if head == "zone":
            upstream.zone = True
        elif head == "server":
            upstream.servers.append(st)
        elif head in ("hash", "ip_hash", "random", "least_conn", "least_time", "ntlm", "sticky"):
            upstream.method = head
            upstream.method_words = st.words[1:]
            upstream.method_line = st.line


# ----------------------------------------------------------------------------- HAProxy

_HAPROXY_SECTIONS = frozenset(
    {
        "global",
        "defaults",
        "frontend",
        "backend",
        "listen",
        "peers",
        "resolvers",
        "userlist",
        "mailers",
        "program",
        "http-errors",
        "ring",
        "cache",
        "fcgi-app",
        "log-forward",
    }
)
# server / default-server keywords that take one argument (the rest are flags).
_HAPROXY_ARG_KEYWORDS = frozenset(
    [
        "addr",
        "agent-addr",
        "agent-inter",
        "agent-port",
        "agent-send",
        "alpn",
        "ca-file",
        "check-alpn",
        "check-proto",
        "check-sni",
        "ciphers",
        "ciphersuites",
        "cookie",
        "crl-file",
        "crt",
        "downinter",
        "error-limit",
        "fall",
        "fastinter",
        "hash-key",
        "id",
        "init-addr",
        "inter",
        "log-proto",
        "max-reuse",
        "maxconn",
        "maxqueue",
        "minconn",
        "namespace",
        "npn",
        "observe",
        "on-error",
        "on-marked-down",
        "on-marked-up",
        "pool-low-conn",
        "pool-max-conn",
        "pool-purge-delay",
        "port",
        "proto",
        "proxy-v2-options",
        "redir",
        "resolve-net",
        "resolve-opts",
        "resolve-prefer",
        "resolvers",
        "rise",
        "shard",
        "slowstart",
        "sni",
        "source",
        "ssl-max-ver",
        "ssl-min-ver",
        "tcp-ut",
        "track",
        "usesrc",
        "weight",
        "ws",
        "curves",
        "sigalgs",
        "client-sigalgs",
        "set-proxy-v2-tlv-fmt",
    ]
)


def _haproxy_words(line: str) -> list[str]:
    """
    Split one HAProxy line into words: quotes, backslash escapes, ``#`` comments.
    """
    words: list[str] = []
    word: list[str] = []
    in_word = False
    quote = ""
    i = 0
    while i < len(line):
        ch = line[i]
        if ch == "\\" and i + 1 < len(line) and quote != "'":
            word.append(line[i + 1])
            in_word = True
            i += 2
            continue
        if quote:
            if ch == quote:
                quote = ""
            else:
                word.append(ch)
        elif ch in "'\"":
            quote, in_word = ch, True
        elif ch == "#":
            break
        elif ch in " \t\r":
            if in_word:
                words.append("".join(word))
                word.clear()
                in_word = False
        else:
            word.append(ch)
            in_word = True
        i += 1
    if in_word:
        words.append("".join(word))
    return words


def _haproxy_options(words: list[str]) -> dict[str, str]:
    options: dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word in _HAPROXY_ARG_KEYWORDS and i + 1 < len(words):
            options[word] = words[i + 1]
            i += 2
            continue
        if word == "check":
            options["check"] = "1"
        elif word == "no-check":
            options["check"] = ""
        else:
            options[word] = "1"
        i += 1
    return options


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _check_haproxy_server(line: int, name: str, options: dict[str, str]) -> Iterator[Finding]:
    checked = bool(options.get("check"))
    for keyword in ("slowstart", "observe"):
        if keyword in options and not checked:
            yield (
                line,
                f"haproxy-{keyword}-without-check",
                f"server {name}: {keyword} without 'check' does nothing (it acts on "
                "health-check results; add 'check')",
            )
    minconn, maxconn = _int(options.get("minconn")), _int(options.get("maxconn"))
    if minconn is not None and maxconn and minconn > maxconn:
        yield (
            line,
            "haproxy-minconn-above-maxconn",
            f"server {name}: minconn {minconn} is above maxconn {maxconn}",
        )
    weight = _int(options.get("weight"))
    if weight is not None and weight > 256:
        yield (
            line,
            "haproxy-weight-above-256",
            f"server {name}: weight {weight} is above HAProxy's maximum, 256",
        )


def _lint_haproxy(text: str) -> Iterator[Finding]:
    section = ""
    from_defaults: dict[str, str] = {}
    current: dict[str, str] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        words = _haproxy_words(raw)
        if not words:
            continue
        head = words[0]
        if head in _HAPROXY_SECTIONS:
            section = head
            if head == "defaults":  # a new defaults section starts from scratch
                from_defaults = {}
            current = dict(from_defaults)
            continue
        if head == "default-server":
            current.update(_haproxy_options(words[1:]))
            if section == "defaults":
                from_defaults = dict(current)
        elif head == "server" and len(words) >= 3 and section in ("backend", "listen"):
            options = dict(current)
            options.update(_haproxy_options(words[3:]))
            yield from _check_haproxy_server(number, words[1], options)


# ----------------------------------------------------------------------------- keepalived


def _keepalived_words(line: str) -> list[str]:
    words: list[str] = []
    for word in line.replace("{", " { ").replace("}", " } ").split():
        if word[0] in "#!":
            break
        words.append(word)
    return words


def _lint_keepalived(text: str) -> Iterator[Finding]:
    stack: list[str] = []
    seen: dict[str, tuple[int, int | None]] = {}
    for number, raw in enumerate(text.split("\n"), start=1):
        words = _keepalived_words(raw)
        keyword = ""  # the keyword of the statement being read on this line
        for i, word in enumerate(words):
            if word == "{":
                stack.append(keyword)
                if keyword == "real_server":
                    seen = {}
                keyword = ""
            elif word == "}":
                if stack and stack[-1] == "real_server":
                    yield from _check_thresholds(seen)
                if stack:
                    stack.pop()
                keyword = ""
            elif not keyword:
                keyword = word
                in_real_server = bool(stack) and stack[-1] == "real_server"
                if in_real_server and word in ("uthreshold", "lthreshold") and i + 1 < len(words):
                    seen[word] = (number, _int(words[i + 1]))


def _check_thresholds(seen: dict[str, tuple[int, int | None]]) -> Iterator[Finding]:
    if "lthreshold" not in seen or "uthreshold" not in seen:
        return
    line, low = seen["lthreshold"]
    _, high = seen["uthreshold"]
    if low is None or high is None or low < high:
        return
    if high == 0:
        message = f"lthreshold {low} with uthreshold 0 (no upper threshold): it has no effect"
    else:
        message = (
            f"lthreshold {low} is not below uthreshold {high} (the server would be taken out "
            "and put back at the same load)"
        )
    yield line, "keepalived-lthreshold-not-below-uthreshold", message


# ----------------------------------------------------------------------------- ipvsadm


def _lint_ipvsadm(text: str) -> Iterator[Finding]:
    for number, raw in enumerate(text.split("\n"), start=1):
        if raw.startswith("#"):
            continue
        words = raw.split()
        values: dict[str, int | None] = {}
        for i, word in enumerate(words[:-1]):
            if word in ("-x", "--u-threshold"):
                values["x"] = _int(words[i + 1])
            elif word in ("-y", "--l-threshold"):
                values["y"] = _int(words[i + 1])
        low, high = values.get("y"), values.get("x")
        if low is not None and high and low >= high:
            yield (
                number,
                "ipvsadm-lthreshold-not-below-uthreshold",
                f"-y {low} is not below -x {high}",
            )
