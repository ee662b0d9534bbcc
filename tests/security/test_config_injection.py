"""
Config injection is impossible: hostile values are refused, or rendered inert (issue 9, item 2).

Every outside value that reaches a rendered config is checked on entry against an allow-list
grammar (``capplan.names``, ``capplan.planfile``).  These property tests put random hostile
strings into each entry point: line breaks of every kind (``\\n``, ``\\r``, ``\\u2028``,
``\\u0085``, ...), ``;`` ``{`` ``}`` ``#`` ``!``, quotes, backslashes, NUL, spaces and tabs,
Unicode lookalikes (fullwidth ``；``, Cyrillic ``а``, Arabic-Indic digits), values of 1 to 10 kB,
config fragments, and valid values with one of these inserted.  Each one is either

- refused, with capplan's ``InputError`` naming the field (and its line), or
- accepted and rendered inert: the config, read back the way its program reads it, holds
  exactly the intended statements and servers.

Entry points: how an outside value reaches a config
----------------------------------------------------

``capplan render`` renders only a plan (``parse_plan`` checks all of it); ``capplan optimize``
builds that plan from the inventory, the profile and the command line, and the plan's models
check every value again.  So the plan fields are the entry points, and the inventory fields are
checked to refuse what the plan would refuse.

=============================== ============================================ ================
plan.yaml field                 rendered as                                  grammar
=============================== ============================================ ================
``cluster``                     header comment (all targets)                 name
``inputs.inventory``            header comment (the inventory's path)        text
``inputs.profile``              header comment                               text
``inputs.newest``               header comment (re-spelled ISO 8601)         timestamp
``pool.predicted`` keys         header comment                               ``mean_ms|pN_ms``
``nodes[].node``                node comments, "not expressible" comments;   name
                                HAProxy ``server NAME``
``nodes[].address``             nginx ``server``, HAProxy ``server``,        HOST:PORT
                                ipvsadm ``-r``, keepalived ``real_server``
``balancers[].name``            nginx ``upstream``/``zone``, HAProxy         upstream name /
                                ``backend``, ipvsadm ``-t``, keepalived      IP:PORT
                                ``virtual_server``
``methods.*``                   ``least_conn;`` / ``balance`` / ``-s`` /      allow-list
                                ``lvs_sched``
numbers and enums (weights,     server parameters, timeouts, comments        strict types
limits, thresholds, shares,
rates, SLO, ``state``,
``kind``, ``version``)
``balancers[].output``          never rendered (where the CLI writes)        text
``nodes[].reasons``,            never rendered                               key / one line
``pool.reasons``,
``not_expressible``
=============================== ============================================ ================

Inventory fields that reach the plan: ``cluster``, ``nodes[].name``, ``nodes[].address``,
``balancers[].name`` (checked with the plan's own grammars), ``balancers[].output`` (not checked
by the inventory: the plan refuses it) and the profile's name (a name).  Never rendered:
``nodes[].host`` (SSH; ``names.check_host``), ``labels`` (free text), ``kinds``, ``zones``,
``ssh.*``, ``log.*``, ``proc_dir``, ``haproxy_socket``.  The command line: ``optimize -i PATH``
becomes ``inputs.inventory`` (text); ``-o``/``--out-dir`` are output paths, never rendered.
``test_every_plan_string_is_an_entry_point`` fails when the plan gets a string field that is
not listed here.

How "exactly the intended structure" is known
---------------------------------------------

The slot is first filled with a valid *sentinel* (``sentinel-node``, ``192.0.2.99:9999``,
...) and the render read back: that is the clean structure.  The intended structure for an
accepted value is the clean one with the sentinel's tokens replaced by the value's intended
tokens, which are computed from what the value means, not from how the renderer spells it
(``10.0.0.1:٨٠`` means port 80, so the intended token is ``10.0.0.1:80``).  Values rendered only
in comments must leave the structure exactly as clean; values never rendered must leave the
bytes unchanged.

The readers (each reads as its program does, and where unsure splits more, so that a value
holding a doubtful character never matches the intended token):

- nginx: crossplane (strict) on the fragment included from an ``http`` block, plus nginx's
  4096-byte limit on one token or comment.
- HAProxy: one statement per line, words by capplan's lint reader (quotes, backslash escapes,
  ``#`` comments), sections by keyword; a line with a non-printable character is an error.
- keepalived: lines as keepalived's ``fgets`` into 1024 bytes reads them (a longer line is read
  as several), ``#`` and ``!`` start a comment anywhere, ``{`` ``}`` blocks; ``"`` ``$`` ``\\``
  ``@`` ``~`` (quoting, definitions, continuations, conditionals) are words of their own;
  ``include`` is an ordinary statement, never intended.
- ipvsadm: ``ipvsadm-restore`` drops lines starting with ``#`` (``grep -v '^#'``) and
  ``ipvsadm -R`` splits the rest at space, tab and CR; each rule goes through capplan's own
  rules parser (``capplan.render.ipvsrules``).

A sample of accepted hostile renders also goes through the real checkers (``nginx -t``,
``haproxy -dW -c``, ``keepalived -t -e``; capplan's parser for ipvsadm), 20 per target.

Holes these tests found, now fixed (each failing input is kept as an ``@example``):

- keepalived reads a line of more than 1023 bytes as several lines, so a long text in a comment
  (an inventory path of 1 kB ending in ``include /some/file``) became a live ``include``
  (seen with keepalived 2.2.7); nginx refuses a comment of more than 4096 bytes.  Every comment
  is now wrapped to at most ``MAX_COMMENT_BYTES`` per line (``render._common.comment_lines``).
- ``names.check_address`` took any Unicode digit in the port (``10.0.0.1:٨٠`` was rendered as
  is, not as port 80).  Ports are now ASCII digits, and without a leading zero (one spelling
  per port: some ipvsadm versions read ``010`` as 8).
- ``names.check_host`` took any text as an IPv6 zone (``fe80::1%eth0;\n}``, NUL included); it
  reaches SSH and known_hosts lookups, not configs.  A zone is now an interface name or index.

``python -m tests.security.test_config_injection`` prints the table of entry points and cases
for the README.
"""

from __future__ import annotations

import copy
import re
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, timezone
from functools import cache
from pathlib import Path
from typing import Any, Literal, get_args, get_origin

import crossplane
import pytest
import yaml
from hypothesis import event, example, given, settings
from hypothesis import strategies as st
from pydantic import BaseModel

from capplan.errors import InputError
from capplan.inventory import parse_inventory
from capplan.names import NAME_RE, check_address, check_host, check_name
from capplan.planfile import (
    HAPROXY_METHODS,
    LVS_SCHEDULERS,
    TARGETS,
    Plan,
    check_balancer_name,
    parse_plan,
)
from capplan.render import render, validate
from capplan.render._common import MAX_COMMENT_BYTES, comment_lines
from capplan.render.ipvsrules import _parse as parse_ipvs_rule
from capplan.render.ipvsrules import check_ipvs_rules
from capplan.render.lint import _HAPROXY_SECTIONS, _haproxy_words

PLAN_FILE = Path(__file__).resolve().parents[1] / "render" / "data" / "plan.yaml"

# ----------------------------------------------------------------------------- cases per CI run

#: Hypothesis examples per entry point and CI run (derandomized: the same cases every run).
CASES = {
    "cluster": 100,
    "text": 150,
    "node_name": 200,
    "address": 200,
    "balancer_name": 200,
    "method": 100,
    "comment_only": 100,
    "never_rendered": 150,
    "capacity": 100,
    "typed": 150,
    "inventory": 300,
    "grammar": 400,
}
#: Accepted hostile renders run through each real checker per CI run.
REAL_CHECKS = 20


def _property(name: str) -> Any:
    return settings(
        derandomize=True, deadline=None, database=None, max_examples=CASES[name], print_blob=True
    )


# ----------------------------------------------------------------------------- hostile strings

#: Characters and sequences that end a line or a statement somewhere, or look like they do.
BREAKERS = [
    "\n",
    "\r",
    "\r\n",
    "\u2028",
    "\u2029",
    "\u0085",
    "\x0b",
    "\x0c",
    "\x00",
    "\t",
    " ",
    "\u00a0",
    "\u200b",
    "\ufeff",
    "\x1c",
    "\x7f",
    "\x1b[2J",
    "\u202e",
]
#: Config syntax of the four targets (and of shells and YAML, for good measure).
SYNTAX = [";", "{", "}", "#", "!", '"', "'", "`", "\\", "$", "${X}", "@", "~", "%", "&", "|"]
SYNTAX += ["<", ">", "*", "?", "(", ")", ",", "=", ":", "[", "]", "/", ".", "-", "_", "\\\n"]
#: Unicode lookalikes of syntax, letters and digits.
LOOKALIKES = ["；", "｛", "｝", "＃", "！", "＂", "＇", "＼", "а", "е", "о", "р", "ѕ", "ı", "ｗ"]
LOOKALIKES += ["٨", "８", "𝟖", "ﬁ", "\u0301", "ℓ", "⁄", "∶", "︔"]
#: Whole fragments that would add a server, a directive or an include if they got through.
PAYLOADS = [
    "\n}\nupstream evil {\n    server 192.0.2.66:80;\n}\n",
    "; server 192.0.2.66:80",
    " backup",
    " weight=100",
    "\n    server evil 192.0.2.66:80\n",
    "\nbackend evil\n",
    "\ninclude /etc/passwd\n",
    " include /etc/passwd",
    "\n-a -t 198.51.100.10:80 -r 192.0.2.66:80 -m -w 100\n",
    " } real_server 192.0.2.66 80 { weight 100 } ",
    '"\n"',
    "\\\nserver 192.0.2.66:80;",
]
PIECES = BREAKERS + SYNTAX + LOOKALIKES + PAYLOADS
#: Lengths of long values: around keepalived's 1023-byte line, nginx's 4096-byte token, 10 kB.
LONG = [64, 254, 300, 1000, 1003, 1021, 1022, 1023, 1024, 4095, 4096, 4097, 10_000, 10_240]


def _insert(value: str, piece: str, at: int) -> str:
    at %= len(value) + 1
    return value[:at] + piece + value[at:]


def _long(value: str, piece: str, size: int, at: int) -> str:
    body = (value * (size // max(1, len(value)) + 1))[:size]
    return _insert(body, piece, at)


def hostile(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """
    Hostile strings built around valid values of one entry point.
    """
    piece = st.sampled_from(PIECES)
    at = st.integers(0, 20_000)
    return st.one_of(
        st.builds(_insert, valid, piece, at),  # one hostile character or fragment inserted
        st.builds(_insert, valid, st.text(min_size=1, max_size=3), at),  # any character
        st.tuples(valid, st.lists(piece, min_size=2, max_size=6)).map(
            lambda t: t[0] + "".join(t[1])
        ),
        piece,
        st.text(max_size=24),
        st.builds(_long, valid, piece | st.just(""), st.sampled_from(LONG), at),
    )


def mixed(valid: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    """
    Half valid values (so the accepted, rendered path is well exercised), half hostile ones.
    """
    return st.booleans().flatmap(lambda ok: valid if ok else hostile(valid))


_TEXT_ALPHABET = st.characters(
    codec="utf-8",
    categories=["L", "M", "N", "P", "S"],
    include_characters=" ",
    exclude_characters="{};#\"'\\$`",
)
NAMES = st.from_regex(NAME_RE, fullmatch=True)
UPSTREAMS = st.from_regex(re.compile(r"[A-Za-z0-9_.-]{1,63}"), fullmatch=True)
#: Printable text the plan's text grammar accepts (lookalikes, spaces, long lines included).
TEXTS = st.one_of(
    st.text(_TEXT_ALPHABET, min_size=1, max_size=40),
    st.builds(
        _long,
        st.text(_TEXT_ALPHABET, min_size=1, max_size=12),
        st.sampled_from(["", " include /etc/passwd", " real_server 192.0.2.66 80", "！ ； ｛"]),
        st.sampled_from([x for x in LONG if x <= 4000]),
        st.integers(0, 5000),
    ),
)
PORTS = st.integers(1, 65535).map(str)
IPV4 = st.ip_addresses(v=4).map(str)
IPV6 = st.ip_addresses(v=6).map(str)
HOSTNAMES = st.from_regex(
    re.compile(r"[a-z0-9]([a-z0-9-]{0,20}[a-z0-9])?(\.[a-z]([a-z0-9-]{0,10}[a-z0-9])?){0,3}"),
    fullmatch=True,
)
ADDRESSES = st.one_of(
    st.builds("{}:{}".format, IPV4, PORTS),
    st.builds("[{}]:{}".format, IPV6, PORTS),
    st.builds("{}:{}".format, HOSTNAMES, PORTS),
)
VIPS = st.one_of(st.builds("{}:{}".format, IPV4, PORTS), st.builds("[{}]:{}".format, IPV6, PORTS))
ZONES = [UTC, timezone(timedelta(hours=5, minutes=30)), timezone(timedelta(hours=-8))]
NGINX_METHODS = st.one_of(
    st.sampled_from(["round_robin", "least_conn", "ip_hash", "random", "random two"]),
    st.from_regex(re.compile(r"hash (\$[a-z_][a-z0-9_]{0,8}){1,3}( consistent)?"), fullmatch=True),
)


# ----------------------------------------------------------------------------- readers

Read = tuple[tuple[str, ...], Any]  # (errors, structure)


def _nginx_tree(statements: list[dict[str, Any]]) -> tuple[Any, ...]:
    return tuple(
        (s["directive"], tuple(s["args"]), _nginx_tree(s["block"]) if "block" in s else None)
        for s in statements
    )


def read_nginx(text: str) -> Read:
    """
    The nginx fragment as nginx reads it: crossplane, strict, inside an ``http`` block.
    """
    errors = []
    for number, line in enumerate(text.split("\n"), start=1):
        if len(line.encode("utf-8")) >= 4096:  # NGX_CONF_BUFFER: "too long parameter"
            errors.append(f"line {number}: longer than nginx's 4096-byte buffer")
    with tempfile.TemporaryDirectory(prefix="capplan-inject-") as tmp:
        folder = Path(tmp)
        (folder / "upstream.conf").write_text(text, encoding="utf-8", newline="")
        (folder / "nginx.conf").write_text("events {}\nhttp {\n    include upstream.conf;\n}\n")
        payload = crossplane.parse(str(folder / "nginx.conf"), combine=True, strict=True)
        errors += [str(e["error"]).replace(tmp, "") for e in payload["errors"]]
    parsed = payload["config"][0]["parsed"] if payload["config"] else []
    return tuple(errors), _nginx_tree(parsed)


def read_haproxy(text: str) -> Read:
    """
    The HAProxy config as HAProxy reads it: sections, each a list of one-line statements.
    """
    errors: list[str] = []
    sections: list[tuple[tuple[str, ...], list[tuple[str, ...]]]] = [((), [])]
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.replace("\t", " ").isprintable():
            errors.append(f"line {number}: holds a non-printable character")
            continue
        words = tuple(_haproxy_words(line))
        if not words:
            continue
        if words[0] in _HAPROXY_SECTIONS:
            sections.append((words, []))
        else:
            sections[-1][1].append(words)
    return tuple(errors), tuple((head, tuple(body)) for head, body in sections)


_KEEPALIVED_BUFFER = 1024  # MAXBUF: fgets(buf, MAXBUF, file) reads at most 1023 bytes
_KEEPALIVED_SPACE = " \t\n\v\f\r"
_KEEPALIVED_OWN_WORDS = '{}"$\\@~'


def _keepalived_lines(text: str) -> Iterator[str]:
    for raw in text.encode("utf-8").split(b"\n"):
        while len(raw) >= _KEEPALIVED_BUFFER - 1:
            yield raw[: _KEEPALIVED_BUFFER - 1].decode("utf-8", errors="replace")
            raw = raw[_KEEPALIVED_BUFFER - 1 :]
        yield raw.decode("utf-8", errors="replace")


def _keepalived_words(line: str) -> list[str]:
    words: list[str] = []
    word = ""
    for ch in line:
        if ch in "#!":
            break
        if ch in _KEEPALIVED_SPACE or ch in _KEEPALIVED_OWN_WORDS:
            if word:
                words.append(word)
            word = ""
            if ch in _KEEPALIVED_OWN_WORDS:
                words.append(ch)
        else:
            word += ch
    if word:
        words.append(word)
    return words


def read_keepalived(text: str) -> Read:
    """
    The keepalived config as keepalived reads it: a tree of one-line statements and blocks.
    """
    errors: list[str] = []
    root: list[Any] = []
    stack = [root]
    for number, line in enumerate(_keepalived_lines(text), start=1):
        if not line.replace("\t", " ").isprintable():
            errors.append(f"read {number}: holds a non-printable character")
            continue
        statement: list[str] = []
        for word in _keepalived_words(line):
            if word == "{":
                block: list[Any] = []
                stack[-1].append((tuple(statement), block))
                stack.append(block)
                statement = []
            elif word == "}":
                if statement:
                    stack[-1].append((tuple(statement), None))
                statement = []
                if len(stack) == 1:
                    errors.append(f"read {number}: '}}' without a block")
                else:
                    stack.pop()
            else:
                statement.append(word)
        if statement:
            stack[-1].append((tuple(statement), None))
    if len(stack) > 1:
        errors.append("a block is not closed")
    return tuple(errors), _freeze(root)


def _freeze(tree: Any) -> Any:
    if isinstance(tree, list | tuple):
        return tuple(_freeze(t) for t in tree)
    return tree


def read_ipvsadm(text: str) -> Read:
    """
    The rules as ``ipvsadm-restore`` reads them, each through capplan's rules parser.

    Only syntax counts as an error here; ``check_ipvs_rules``' other findings (an IPv6 real
    server under an IPv4 service, say) are about meaning, not about what the rules are.
    """
    errors: list[str] = []
    rules: list[Any] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if line.startswith("#"):  # ipvsadm-restore: grep -v '^#'
            continue
        if not line.replace("\t", " ").replace("\r", " ").isprintable():
            errors.append(f"line {number}: holds a non-printable character")
            continue
        words = [w for w in re.split(r"[ \t\r]+", line) if w and w != "ipvsadm"]
        if not words:
            continue
        try:
            rules.append(tuple(sorted(parse_ipvs_rule(words).items())))
        except ValueError as exc:
            errors.append(f"line {number}: {exc}")
            rules.append(("unparsable", tuple(words)))
    syntax = [p for p in check_ipvs_rules(text) if "holds a control character" in p]
    return tuple(errors + syntax), tuple(rules)


READERS: dict[str, Callable[[str], Read]] = {
    "nginx": read_nginx,
    "haproxy": read_haproxy,
    "keepalived": read_keepalived,
    "ipvsadm": read_ipvsadm,
}


def _substitute(tree: Any, tokens: dict[str, str]) -> Any:
    if isinstance(tree, str):
        return tokens.get(tree, tree)
    if isinstance(tree, tuple):
        return tuple(_substitute(t, tokens) for t in tree)
    return tree


# ----------------------------------------------------------------------------- plans


@cache
def _base(base: str) -> dict[str, Any]:
    data: dict[str, Any] = yaml.safe_load(PLAN_FILE.read_text(encoding="utf-8"))
    if base == "proxies":
        data["balancers"] = [b for b in data["balancers"] if b["kind"] in ("nginx", "haproxy")]
    elif base == "no-backup":  # nginx's hash, ip_hash and random methods take no backup
        data["nodes"][2]["state"] = "down"
    return data


def base_data(base: str) -> dict[str, Any]:
    """
    The fixed plan of the render tests as data: ``full`` (all four balancers), ``proxies``
    (nginx and HAProxy only, so node addresses may be host names) or ``no-backup``.
    """
    return copy.deepcopy(_base(base))


def dump(data: Any) -> str:
    """
    YAML for ``data`` with every string escaped as needed (libyaml's emitter: fast).
    """
    return yaml.dump(
        data, Dumper=yaml.CSafeDumper, sort_keys=False, allow_unicode=False, width=10**9
    )


def edited(base: str, path: tuple[str | int, ...], value: Any) -> str:
    """
    The plan text with the value at ``path`` replaced.
    """
    data = base_data(base)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    return dump(data)


def value_at(plan: BaseModel, path: tuple[str | int, ...]) -> Any:
    """
    The value a parsed plan holds at ``path`` (to show the accepted value arrived unchanged).
    """
    here: Any = plan
    for key in path:
        here = here[key] if isinstance(key, int) or isinstance(here, dict) else getattr(here, key)
    return here


@cache
def base_plan(base: str) -> Plan:
    return parse_plan(edited(base, ("cluster",), "web"), "plan.yaml")


def plan_targets(plan: Plan) -> list[str]:
    return [t for t in TARGETS if any(b.kind == t for b in plan.balancers)]


# ----------------------------------------------------------------------------- entry points


def _host_port(address: str) -> tuple[str, str]:
    # What an address means: its host and its port as a number (int() reads any digit).
    host, _, port = address.rpartition(":")
    return host, str(int(port))


def _address_tokens(sentinel: str, value: str, target: str) -> dict[str, str]:
    host, port = _host_port(value)
    if target == "keepalived":
        s_host, s_port = _host_port(sentinel)
        return {s_host.strip("[]"): host.strip("[]"), s_port: port}
    return {sentinel: f"{host}:{port}"}


@dataclass(frozen=True)
class Slot:
    """
    One entry point: where the value goes in plan.yaml and what it becomes in each target.
    """

    name: str
    paths: tuple[tuple[str | int, ...], ...]
    sentinel: str
    base: str = "full"
    #: target, value → {sentinel token: intended token}; None: the value is only in comments
    tokens: Callable[[str, str], dict[str, str]] | None = None
    #: other keys a refusal may name (a cross-field rule that blames the other field)
    also: tuple[str, ...] = ()
    kind: str = "rendered"  # or "never rendered"


NODE_PATHS = tuple(("nodes", i) for i in range(4))  # active, active, backup, down


def _node_slot(name: str, key: str, sentinel: str, **kw: Any) -> Slot:
    return Slot(name, tuple((*p, key) for p in NODE_PATHS), sentinel, **kw)


SLOTS = {
    "cluster": Slot("cluster", (("cluster",),), "sentinel-cluster"),
    "inventory": Slot("inputs.inventory", (("inputs", "inventory"),), "sentinel inventory"),
    "profile": Slot("inputs.profile", (("inputs", "profile"),), "sentinel profile"),
    "newest": Slot("inputs.newest", (("inputs", "newest"),), "2026-11-20T10:00:00Z"),
    "node": _node_slot(
        "nodes[].node", "node", "sentinel-node", tokens=lambda t, v: {"sentinel-node": v}
    ),
    "address": _node_slot(
        "nodes[].address",
        "address",
        "192.0.2.99:9999",
        tokens=lambda t, v: _address_tokens("192.0.2.99:9999", v, t),
    ),
    "address_proxies": _node_slot(
        "nodes[].address",
        "address",
        "192.0.2.99:9999",
        base="proxies",
        tokens=lambda t, v: _address_tokens("192.0.2.99:9999", v, t),
    ),
    "nginx_name": Slot(
        "balancers[].name",
        (("balancers", 0, "name"),),
        "sentinel_up",
        tokens=lambda t, v: {"sentinel_up": v} if t == "nginx" else {},
    ),
    "haproxy_name": Slot(
        "balancers[].name",
        (("balancers", 1, "name"),),
        "sentinel_be",
        tokens=lambda t, v: {"sentinel_be": v} if t == "haproxy" else {},
    ),
    "keepalived_name": Slot(
        "balancers[].name",
        (("balancers", 2, "name"),),
        "198.51.100.99:9998",
        tokens=lambda t, v: (
            _address_tokens("198.51.100.99:9998", v, t) if t == "keepalived" else {}
        ),
    ),
    "ipvsadm_name": Slot(
        "balancers[].name",
        (("balancers", 3, "name"),),
        "198.51.100.98:9997",
        tokens=lambda t, v: _address_tokens("198.51.100.98:9997", v, t) if t == "ipvsadm" else {},
    ),
    # nginx's method is a directive with arguments: _expected handles it
    "nginx_method": Slot(
        "methods.*",
        (("methods", "nginx"),),
        "least_conn",
        base="no-backup",
        tokens=lambda t, v: {},
        also=("nodes",),
    ),
    "haproxy_method": Slot(
        "methods.*",
        (("methods", "haproxy"),),
        "static-rr",
        tokens=lambda t, v: {"static-rr": v} if t == "haproxy" else {},
    ),
    "keepalived_method": Slot(
        "methods.*",
        (("methods", "keepalived"),),
        "lblcr",
        tokens=lambda t, v: {"lblcr": v} if t == "keepalived" else {},
    ),
    "ipvsadm_method": Slot(
        "methods.*",
        (("methods", "ipvsadm"),),
        "lblc",
        tokens=lambda t, v: {"lblc": v} if t == "ipvsadm" else {},
    ),
    "output": Slot(
        "balancers[].output",
        tuple(("balancers", j, "output") for j in range(4)),
        "out/sentinel.conf",
        kind="never rendered",
    ),
}


@cache
def clean(slot_key: str, path: tuple[str | int, ...], target: str) -> Read:
    """
    The structure of the render with the slot's sentinel at ``path``.
    """
    slot = SLOTS[slot_key]
    plan = parse_plan(edited(slot.base, path, slot.sentinel), "plan.yaml")
    read = READERS[target](render(plan, target))
    assert () == read[0], read[0]
    return read


def _replace_statement(tree: Any, old: Any, new: list[Any]) -> Any:
    if not isinstance(tree, tuple):
        return tree
    out: list[Any] = []
    for item in tree:
        if item == old:
            out += new
        else:
            out.append(_replace_statement(item, old, new))
    return tuple(out)


def expected(slot_key: str, path: tuple[str | int, ...], target: str, value: str) -> Read:
    """
    The structure the render must have once ``value`` is accepted at ``path``.
    """
    slot = SLOTS[slot_key]
    errors, tree = clean(slot_key, path, target)
    if slot_key == "nginx_method" and target == "nginx":
        words = value.split(" ")
        new = [] if value == "round_robin" else [(words[0], tuple(words[1:]), None)]
        return errors, _replace_statement(tree, ("least_conn", (), None), new)
    if slot.tokens is None:
        return errors, tree
    return errors, _substitute(tree, slot.tokens(target, value))


def assert_refused(error: InputError, path: tuple[str | int, ...], also: tuple[str, ...]) -> None:
    """
    A refusal names the field (or, for a cross-field rule, the other field) and its line,
    in a message that does not echo a 10 kB value.
    """
    key = ".".join(map(str, path))
    assert error.key is not None, str(error)
    assert error.key == key or error.key.startswith((f"{key}.", *also)), (key, str(error)[:300])
    assert error.line is not None, str(error)[:300]
    if path != ("version",):  # planfile's version check echoes the whole value: reported
        assert len(str(error)) < 400, str(error)[:300]


def assert_names_key(error: InputError, key: str) -> None:
    """
    A refusal of a mapping key or list item: its key starts with the field's, and has a line.
    """
    assert error.key is not None, str(error)[:300]
    assert error.key.startswith(key), (key, str(error)[:300])
    assert error.line is not None, str(error)[:300]


def check_slot(slot_key: str, path: tuple[str | int, ...], value: str) -> str:
    """
    Put ``value`` at ``path``: refused with the field named, or every target inert.

    Returns:
        ``refused`` or ``inert``.
    """
    slot = SLOTS[slot_key]
    try:
        plan = parse_plan(edited(slot.base, path, value), "plan.yaml")
    except InputError as exc:
        assert_refused(exc, path, slot.also)
        return "refused"
    if slot_key != "newest":  # a timestamp is read into a datetime
        assert value == value_at(plan, path)
    for target in plan_targets(plan):
        text = render(plan, target)
        if slot.kind == "never rendered":
            assert render(base_plan(slot.base), target) == text, (target, value[:80])
            continue
        assert expected(slot_key, path, target, value) == READERS[target](text), (
            target,
            value[:200],
        )
    return "inert"


# ----------------------------------------------------------------------------- the readers


class TestReaders:
    """
    The readers are the oracle: they must see each injection that gets into a render.
    """

    def test_dump_carries_every_piece(self) -> None:
        """
        The YAML the tests write reads back as the very hostile string they put in.
        """
        for piece in [*PIECES, "x" * 10_240, "\U0001f600", "𝟖"]:
            for value in (piece, f"web{piece}1", {piece: piece}):
                assert {"k": value} == yaml.safe_load(dump({"k": value})), repr(piece)

    @pytest.mark.parametrize("target", TARGETS)
    def test_clean_render(self, target: str) -> None:
        """
        The fixed plan reads back without errors, with its four servers.
        """
        errors, tree = READERS[target](render(base_plan("full"), target))
        assert () == errors
        assert 4 == repr(tree).count("203.0.113.1")

    @pytest.mark.parametrize(
        ("target", "old", "new"),
        [
            ("nginx", "# web-1:", "# web-1:\n    server 192.0.2.66:80;\n    #"),
            ("nginx", "    least_conn;", "    least_conn; server 192.0.2.66:80;"),
            ("nginx", "# web-1", "#" + "x" * 5000),
            ("haproxy", "# web-1:", "# web-1:\n    server evil 192.0.2.66:80\n    #"),
            ("haproxy", "    balance", "    # \x00\n    balance"),
            ("haproxy", "    # web-1:", "backend evil\n    # web-1:"),
            ("keepalived", "# web-1:", "# web-1:\n    include /etc/passwd\n    #"),
            ("keepalived", "# web-1:", "#" + "x" * 1021 + " include /etc/passwd"),
            ("keepalived", "    lvs_sched wlc", '    lvs_sched "wlc rr"'),
            ("keepalived", "# web-1:", "# web-1:\n    }\n#"),
            ("ipvsadm", "# web-1:", "# web-1:\n-a -t 198.51.100.10:80 -r 192.0.2.66:80 -m\n#"),
            ("ipvsadm", "# web-1:", " # web-1:"),
        ],
    )
    def test_sees_injection(self, target: str, old: str, new: str) -> None:
        """
        An injected statement, block, include, section or overlong line changes what is read.
        """
        text = render(base_plan("full"), target)
        assert old in text
        assert READERS[target](text) != READERS[target](text.replace(old, new, 1))


class TestCommentWrapping:
    @settings(derandomize=True, deadline=None, database=None, max_examples=200)
    @given(st.lists(TEXTS | st.text(), max_size=3))
    @example(["x" * 1003 + "include /etc/passwd"])
    @example(["𝟖" * 300 + " " + "a" * 600])
    def test_lines_fit_and_keep_every_word(self, lines: list[str]) -> None:
        """
        Wrapped comments fit keepalived's and nginx's buffers and lose no character but the
        spaces they were wrapped at.
        """
        wrapped = comment_lines(lines)
        assert all(len(w.encode("utf-8")) <= MAX_COMMENT_BYTES for w in wrapped)
        assert "".join(lines).replace(" ", "") == "".join(wrapped).replace(" ", "")
        assert len(wrapped) >= len(lines)


# ----------------------------------------------------------------------------- properties


def _pick(slot_key: str) -> st.SearchStrategy[tuple[str, tuple[str | int, ...]]]:
    return st.sampled_from(SLOTS[slot_key].paths).map(lambda p: (slot_key, p))


def _run(choice: tuple[str, tuple[str | int, ...]], value: str) -> None:
    event(f"{choice[0]}: {check_slot(choice[0], choice[1], value)}")


class TestPlanEntryPoints:
    @_property("cluster")
    @given(_pick("cluster"), mixed(NAMES))
    @example(("cluster", ("cluster",)), "web\n}\nupstream evil {")
    def test_cluster(self, choice: tuple[str, Any], value: str) -> None:
        """
        ``cluster`` (header comment): refused, or a comment that leaves the structure as is.
        """
        _run(choice, value)

    @_property("text")
    @given(_pick("inventory") | _pick("profile"), mixed(TEXTS))
    @example(("inventory", ("inputs", "inventory")), "x" * 1003 + "include /etc/passwd")
    @example(("inventory", ("inputs", "inventory")), "x" * 1000 + " include /etc/passwd")
    @example(("profile", ("inputs", "profile")), "ｐｒｏｆｉｌｅ； ｛ｅｖｉｌ｝ ！ ＃")
    @example(("inventory", ("inputs", "inventory")), "inv.yaml\u2028server 192.0.2.66:80;")
    def test_inventory_and_profile_text(self, choice: tuple[str, Any], value: str) -> None:
        """
        ``inputs.inventory`` and ``inputs.profile`` (free text in the header comment):
        refused, or wrapped comment lines that no reader sees as anything but comments.
        """
        _run(choice, value)

    @_property("node_name")
    @given(_pick("node"), mixed(NAMES))
    @example(("node", ("nodes", 0, "node")), "web-1 203.0.113.99:80 weight 100\n    server x")
    def test_node_name(self, choice: tuple[str, Any], value: str) -> None:
        """
        ``nodes[].node``: refused, or exactly one HAProxy ``server`` of that name.
        """
        _run(choice, value)

    @_property("address")
    @given(_pick("address") | _pick("address_proxies"), mixed(ADDRESSES))
    @example(("address", ("nodes", 0, "address")), "203.0.113.11:٨٠")
    @example(("address_proxies", ("nodes", 0, "address")), "web.example:８０")
    @example(("address", ("nodes", 1, "address")), "203.0.113.11:080")
    @example(("address", ("nodes", 0, "address")), "203.0.113.11:80; server 192.0.2.66:80")
    def test_node_address(self, choice: tuple[str, Any], value: str) -> None:
        """
        ``nodes[].address``: refused, or exactly the intended server, port as a number.
        """
        _run(choice, value)

    @_property("balancer_name")
    @given(
        st.one_of(
            st.tuples(_pick("nginx_name") | _pick("haproxy_name"), mixed(UPSTREAMS)),
            st.tuples(_pick("keepalived_name") | _pick("ipvsadm_name"), mixed(VIPS)),
        )
    )
    @example((("nginx_name", ("balancers", 0, "name")), "web { server 192.0.2.66:80; }"))
    @example((("keepalived_name", ("balancers", 2, "name")), "198.51.100.10:٨٠"))
    def test_balancer_name(self, case: tuple[tuple[str, Any], str]) -> None:
        """
        ``balancers[].name``: refused, or exactly the intended upstream, backend or service.
        """
        _run(*case)

    @_property("method")
    @given(
        st.one_of(
            st.tuples(_pick("nginx_method"), mixed(NGINX_METHODS)),
            st.tuples(
                _pick("haproxy_method"),
                mixed(st.sampled_from(HAPROXY_METHODS)),
            ),
            st.tuples(
                _pick("keepalived_method") | _pick("ipvsadm_method"),
                mixed(st.sampled_from(LVS_SCHEDULERS)),
            ),
        )
    )
    @example((("nginx_method", ("methods", "nginx")), "hash $x; server 192.0.2.66:80"))
    def test_methods(self, case: tuple[tuple[str, Any], str]) -> None:
        """
        ``methods.*``: refused, or exactly the chosen method's directive.
        """
        _run(*case)

    @_property("comment_only")
    @given(
        st.one_of(
            st.tuples(
                _pick("newest"),
                mixed(st.datetimes(timezones=st.sampled_from(ZONES)).map(datetime.isoformat)),
            ),
            st.tuples(
                st.just(("predicted", ("pool", "predicted"))),
                hostile(st.sampled_from(["mean_ms", "p99_ms", "p99.9_ms"])),
            ),
        )
    )
    @example((("newest", ("inputs", "newest")), "2026-11-20T10:00:00Z\n}\ninclude /x"))
    def test_comment_only_values(self, case: tuple[tuple[str, Any], str]) -> None:
        """
        ``inputs.newest`` and ``pool.predicted`` keys: refused, or the structure as clean.
        """
        (slot_key, path), value = case
        if slot_key == "predicted":  # a key: the whole mapping is the value
            try:
                plan = parse_plan(edited("full", path, {value: 1.0}), "plan.yaml")
            except InputError as exc:
                assert_names_key(exc, "pool.predicted")
                return
            for target in TARGETS:
                before = READERS[target](render(base_plan("full"), target))
                assert before == READERS[target](render(plan, target)), target
            return
        _run((slot_key, path), value)

    @_property("never_rendered")
    @given(
        st.one_of(
            st.tuples(_pick("output"), mixed(TEXTS)),
            st.tuples(
                st.sampled_from(
                    [("nodes", i, "reasons") for i in range(4)] + [("pool", "reasons")]
                ),
                mixed(TEXTS),
                st.sampled_from(["key", "value"]),
            ),
            st.tuples(
                st.sampled_from([("not_expressible", t) for t in TARGETS]),
                hostile(NAMES),
                st.just("list"),
            ),
        )
    )
    @example((("output", ("balancers", 0, "output")), "../../etc/nginx/nginx.conf"))
    @example((("nodes", 0, "reasons"), "}\nserver 192.0.2.66:80;", "value"))
    def test_never_rendered(self, case: tuple[Any, ...]) -> None:
        """
        ``balancers[].output``, ``reasons`` and ``not_expressible``: refused, or the render
        byte for byte as without them.
        """
        if len(case) == 2:
            _run(case[0], case[1])
            return
        path, value, how = case
        content: Any = {"list": [value], "key": {value: "x"}, "value": {"max_conns": value}}[how]
        try:
            plan = parse_plan(edited("full", path, content), "plan.yaml")
        except InputError as exc:
            assert_names_key(exc, ".".join(map(str, path)))
            return
        for target in TARGETS:
            assert render(base_plan("full"), target) == render(plan, target), target

    @_property("capacity")
    @given(
        st.one_of(
            st.tuples(
                st.sampled_from(
                    [
                        ("inputs", "load_from"),
                        ("capacity", "forecast"),
                        ("capacity", "plan_for"),
                        ("capacity", "months", 0, "binding"),
                    ]
                ),
                mixed(TEXTS),
                st.just("value"),
            ),
            st.tuples(
                st.sampled_from([("capacity", "months", 0, "nodes")]),
                hostile(NAMES),
                st.sampled_from(["kind", "zone"]),
            ),
        )
    )
    @example((("inputs", "load_from"), "observed peak\n}\nserver 192.0.2.66:80;", "value"))
    @example((("capacity", "months", 0, "nodes"), "a: {b: 1}} include /x", "kind"))
    def test_capacity_plan_is_never_rendered(self, case: tuple[Any, ...]) -> None:
        """
        ``inputs.load_from`` and the capacity section (``capplan plan --out``): refused at
        their key, or the render byte for byte as without them.
        """
        path, value, how = case
        data = base_data("full")
        data["capacity"] = {
            "made": "2026-11-23T00:00:00Z",
            "plan_for": "high",
            "forecast": "growth",
            "months": [
                {
                    "month": 1,
                    "start": "2026-11-23T00:00:00Z",
                    "load_rps": {"low": 1.0, "median": 2.0, "high": 3.0},
                    "nodes": {"large": {"a": 1}},
                    "binding": "loss of zone a",
                }
            ],
        }
        content: Any = {"value": value, "kind": {value: {"a": 1}}, "zone": {"large": {value: 1}}}
        here = data
        for key in path[:-1]:
            here = here[key]
        here[path[-1]] = content[how]
        try:
            plan = parse_plan(dump(data), "plan.yaml")
        except InputError as exc:
            assert_names_key(exc, ".".join(map(str, path)))
            return
        for target in TARGETS:
            assert render(base_plan("full"), target) == render(plan, target), target

    @_property("typed")
    @given(
        st.sampled_from(
            [
                ("version",),
                ("inputs", "load_rps"),
                ("inputs", "windows"),
                ("inputs", "slo", "percentile"),
                ("nodes", 0, "share"),
                ("nodes", 1, "rate_rps"),
                ("nodes", 2, "capacity_rps"),
                ("nodes", 0, "weights", "nginx"),
                ("nodes", 1, "weights", "haproxy"),
                ("nodes", 0, "realized_share", "keepalived"),
                ("nodes", 1, "limits", "max_conns"),
                ("nodes", 0, "limits", "slowstart_s"),
                ("nodes", 2, "state"),
                ("pool", "thresholds", "check_interval_s"),
                ("pool", "thresholds", "connect_timeout_ms"),
                ("pool", "predicted", "mean_ms"),
                ("balancers", 0, "kind"),
            ]
        ),
        hostile(st.sampled_from(["1", "30", "0.25", "1e3", "active", "backup", "nginx"])),
    )
    @example(("nodes", 2, "state"), "backup\n    server 192.0.2.66:80")
    @example(("nodes", 0, "weights", "nginx"), "5 max_conns=1")
    def test_numbers_and_enums(self, path: tuple[str | int, ...], value: str) -> None:
        """
        A string where a number or an enum goes is refused (plan.yaml is strictly typed),
        unless it is one of the enum's own words.
        """
        try:
            plan = parse_plan(edited("full", path, value), "plan.yaml")
        except InputError as exc:
            assert_refused(exc, path, ("balancers", "methods", "nodes"))
            return
        allowed = {"state": ("active", "backup", "down"), "kind": TARGETS}
        assert value in allowed.get(str(path[-1]), ()), (path, value)
        assert isinstance(plan, Plan)


# ----------------------------------------------------------------------------- inventory

INVENTORY = """\
cluster: web
nodes:
  - {name: web-1, address: "203.0.113.11:8080", host: 203.0.113.11}
  - {name: web-2, address: "203.0.113.12:8080", labels: {rack: r1}}
balancers:
  - {kind: nginx, name: web_backend, output: out/nginx.conf}
  - {kind: haproxy, name: web}
  - {kind: keepalived, name: "198.51.100.10:80"}
  - {kind: ipvsadm, name: "198.51.100.10:80"}
zones: [a]
"""

#: inventory field → (the plan's check for it, or None when it is never rendered)
INVENTORY_SLOTS: dict[tuple[str | int, ...], Callable[[str], object] | None] = {
    ("cluster",): check_name,
    ("nodes", 0, "name"): check_name,
    ("nodes", 0, "address"): check_address,
    ("nodes", 0, "host"): lambda v: v == "local" or check_host(v),
    ("balancers", 0, "name"): lambda v: check_balancer_name("nginx", v),
    ("balancers", 1, "name"): lambda v: check_balancer_name("haproxy", v),
    ("balancers", 2, "name"): lambda v: check_balancer_name("keepalived", v),
    ("balancers", 3, "name"): lambda v: check_balancer_name("ipvsadm", v),
    ("zones", 0): check_name,
    ("nodes", 1, "labels", "rack"): None,
}


class TestInventoryEntryPoints:
    @_property("inventory")
    @given(
        st.sampled_from(sorted(INVENTORY_SLOTS, key=repr)),
        mixed(NAMES | ADDRESSES | VIPS),
    )
    @example(("nodes", 0, "host"), "fe80::1%eth0;\n}")
    @example(("nodes", 0, "address"), "203.0.113.11:٨٠")
    @example(("nodes", 0, "name"), " web-1\n")
    def test_refused_or_valid_for_the_plan(self, path: tuple[str | int, ...], value: str) -> None:
        """
        An inventory value is refused naming its key, or (stripped of surrounding whitespace,
        as the inventory does) passes the plan's own check for where it goes.
        """
        data = yaml.safe_load(INVENTORY)
        target = data
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value
        try:
            inventory = parse_inventory(dump(data), "inventory.yaml")
        except InputError as exc:
            # a balancer's name is checked by the balancer's validator: the key is the balancer
            key = path[:2] if path[0] == "balancers" else path
            assert_names_key(exc, ".".join(map(str, key)))
            return
        stored: Any = inventory.model_dump()
        for key in path:
            stored = stored[key]
        check = INVENTORY_SLOTS[path]
        if check is not None:
            check(stored)  # raises ValueError if the plan would refuse it

    def test_never_rendered_inventory_fields_do_not_reach_the_plan(self) -> None:
        """
        Labels, hosts, SSH settings, log paths, kinds and zones have no field in the plan.
        """
        fields = set(_string_fields(Plan))
        for name in ("labels", "host", "ssh", "log", "proc_dir", "haproxy_socket", "zone"):
            assert not any(name in path.split(".") for path in fields), name


# ----------------------------------------------------------------------------- grammars


class TestGrammars:
    @_property("grammar")
    @given(
        st.sampled_from(["name", "host", "address"]),
        hostile(NAMES | ADDRESSES | IPV6.map(lambda a: a + "%eth0")),
    )
    @example("address", "10.0.0.1:٨٠")
    @example("address", "10.0.0.1:0080")
    @example("host", "fe80::1%eth0;\n}")
    @example("host", "fe80::1%\x00")
    def test_accepted_values_are_plain(self, grammar: str, value: str) -> None:
        """
        Whatever a names.py grammar accepts is short, ASCII, and free of syntax.
        """
        check = {"name": check_name, "host": check_host, "address": check_address}[grammar]
        try:
            check(value)
        except ValueError as exc:
            message = str(exc)
        else:
            message = ""
        if message:
            assert len(message) < 300, message[:300]
            return
        assert re.fullmatch(r"[A-Za-z0-9._:\[\]%-]{1,270}", value), value
        if ":" in value and grammar == "address":
            assert re.fullmatch(r"[1-9][0-9]{0,4}", value.rpartition(":")[2]), value


# ----------------------------------------------------------------------------- completeness


def _string_fields(model: type[BaseModel], prefix: str = "") -> Iterator[str]:
    for name, info in model.model_fields.items():
        path = f"{prefix}{name}"
        annotation = info.annotation
        stack = [annotation]
        while stack:
            tp = stack.pop()
            if isinstance(tp, type) and issubclass(tp, BaseModel):
                yield from _string_fields(tp, f"{path}.")
            elif tp is str or (
                get_origin(tp) is Literal and any(isinstance(a, str) for a in get_args(tp))
            ):
                yield path
                break
            else:
                stack += [a for a in get_args(tp) if a is not type(None)]


#: Every string-valued plan field and the test that covers it.
COVERED = {
    "cluster": "test_cluster",
    "inputs.inventory": "test_inventory_and_profile_text",
    "inputs.profile": "test_inventory_and_profile_text",
    "methods.nginx": "test_methods",
    "methods.haproxy": "test_methods",
    "methods.ipvsadm": "test_methods",
    "methods.keepalived": "test_methods",
    "nodes.node": "test_node_name",
    "nodes.address": "test_node_address",
    "nodes.state": "test_numbers_and_enums",
    "nodes.reasons": "test_never_rendered",
    "pool.reasons": "test_never_rendered",
    "pool.predicted": "test_comment_only_values",
    "not_expressible.nginx": "test_never_rendered",
    "not_expressible.haproxy": "test_never_rendered",
    "not_expressible.ipvsadm": "test_never_rendered",
    "not_expressible.keepalived": "test_never_rendered",
    "balancers.kind": "test_numbers_and_enums",
    "balancers.name": "test_balancer_name",
    "balancers.output": "test_never_rendered",
    "inputs.load_from": "test_capacity_plan_is_never_rendered",
    "capacity.forecast": "test_capacity_plan_is_never_rendered",
    "capacity.plan_for": "test_capacity_plan_is_never_rendered",
    "capacity.months.binding": "test_capacity_plan_is_never_rendered",
    "capacity.months.nodes": "test_capacity_plan_is_never_rendered",
}


def test_every_plan_string_is_an_entry_point() -> None:
    """
    Every string field of the plan is an entry point these tests cover (a new one fails here
    until it is added).
    """
    assert set(COVERED) == set(_string_fields(Plan))


# ----------------------------------------------------------------------------- real checkers


#: One-line reasons full of syntax: accepted, never rendered.
REASONS = ["} server 192.0.2.66:80; {", "\"'`$\\#! include /etc/passwd", "ｓｅｒｖｅｒ；｛"]


def _flat(tree: Any) -> list[str]:
    if isinstance(tree, str):
        return [tree]
    if isinstance(tree, tuple):
        return [token for item in tree for token in _flat(item)]
    return []


@st.composite
def accepted_plans(draw: st.DrawFn) -> Plan:
    """
    A plan full of accepted but unusual values: random names, addresses of one family,
    lookalike and long texts (over keepalived's line buffer), hostile reasons.
    """
    data = base_data("full")
    data["cluster"] = draw(NAMES)
    data["inputs"]["inventory"] = draw(TEXTS)
    data["inputs"]["profile"] = draw(TEXTS)
    names = draw(st.lists(NAMES, min_size=4, max_size=4, unique_by=str.lower))
    v6 = draw(st.booleans())
    hosts = draw(st.lists(IPV6 if v6 else IPV4, min_size=5, max_size=5, unique=True))
    ports = draw(st.lists(PORTS, min_size=5, max_size=5))
    spell = "[{}]:{}".format if v6 else "{}:{}".format
    for node, name, host, port in zip(data["nodes"], names, hosts, ports, strict=False):
        node["node"] = name
        node["address"] = spell(host, port)
        node["reasons"] = {"x": draw(st.sampled_from(REASONS))}
    data["balancers"][0]["name"] = draw(UPSTREAMS)
    data["balancers"][1]["name"] = draw(UPSTREAMS.filter(lambda n: n != "capplan_check"))
    data["balancers"][2]["name"] = data["balancers"][3]["name"] = spell(hosts[4], ports[4])
    data["methods"]["haproxy"] = draw(st.sampled_from(HAPROXY_METHODS))
    data["methods"]["ipvsadm"] = draw(st.sampled_from(LVS_SCHEDULERS))
    data["methods"]["keepalived"] = draw(st.sampled_from(LVS_SCHEDULERS))
    return parse_plan(dump(data), "plan.yaml")


REAL = settings(derandomize=True, deadline=None, database=None, max_examples=REAL_CHECKS)


class TestRealCheckers:
    @pytest.mark.parametrize("target", TARGETS)
    def test_accepted_hostile_renders_pass(self, target: str) -> None:
        """
        nginx -t, haproxy -c and keepalived -t (capplan's parser for ipvsadm) accept renders
        of accepted hostile values, and read exactly their nodes.
        """

        @REAL
        @given(accepted_plans())
        def check(plan: Plan) -> None:
            text = render(plan, target)
            result = validate(text, target)
            assert result.ok, result.messages
            assert () == READERS[target](text)[0]
            tokens = _flat(READERS[target](text)[1])
            for node in plan.nodes:
                host = node.address.rpartition(":")[0].strip("[]")
                wanted = host if target == "keepalived" else node.address
                assert 1 == tokens.count(wanted), (target, wanted)

        check()


# ----------------------------------------------------------------------------- the README table

#: (entry point, cases key, what a hostile value becomes)
TABLE = [
    ("plan `cluster`", "cluster", "refused, or inert in comments"),
    ("plan `inputs.inventory`, `inputs.profile`", "text", "refused, or inert wrapped comments"),
    ("plan `nodes[].node`", "node_name", "refused, or exactly one HAProxy server"),
    ("plan `nodes[].address`", "address", "refused, or exactly the intended server"),
    ("plan `balancers[].name`", "balancer_name", "refused, or exactly the intended block"),
    ("plan `methods.*`", "method", "refused, or exactly the method's directive"),
    ("plan `inputs.newest`, `pool.predicted` keys", "comment_only", "refused, or inert"),
    ("plan `output`, `reasons`, `not_expressible`", "never_rendered", "refused, or not rendered"),
    ("plan numbers and enums", "typed", "refused (strict types)"),
    ("inventory names, addresses, host, zones, labels", "inventory", "refused, or plan-valid"),
    ("`names.py` grammars", "grammar", "refused, or plain ASCII"),
]


def markdown_table() -> str:
    """
    The README's table: entry point, cases per CI run, result.
    """
    lines = ["| entry point | cases per CI run | result |", "|---|---:|---|"]
    lines += [f"| {entry} | {CASES[key]} | {result} |" for entry, key, result in TABLE]
    lines.append(
        f"| real checkers (nginx -t, haproxy -c, keepalived -t; ipvsadm: capplan's parser) "
        f"| {REAL_CHECKS} per target | accepted |"
    )
    lines.append(f"\nComments are wrapped at {MAX_COMMENT_BYTES} bytes per line.")
    return "\n".join(lines)


if __name__ == "__main__":
    print(markdown_table())
