"""
Access logs (``capplan.collect.logs``): any bytes give a chunk of finite times and latencies or
an InputError naming SOURCE:LINE with a hint, with nginx (default and ``$msec`` formats),
HAProxy and regex parsers, and any ``log_format`` or ``regex`` from an inventory; big inputs
stay within the stated bounds.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from hypothesis import example
from hypothesis import strategies as st

from bench.fuzz.targets import MSEC_FORMAT, TARGETS, USER_REGEX, check, seeds

from .budget import MAX_BYTES
from .fuzzing import assert_bounded, fuzz
from .strategies import EVIL, byte_inputs, evil

FAMILY = "access logs"
SIZE = MAX_BYTES[FAMILY]
NGINX_LINE = seeds("nginx")[0].split("\n", 1)[0] + "\n"
MSEC_LINE = seeds("nginx_msec")[0].split("\n", 1)[0] + "\n"
HAPROXY_LINE = next(line for line in seeds("haproxy")[0].split("\n") if "HTTP/" in line) + "\n"
#: "$scheme://$host$request_uri" made a bad line cost time quadratic in its length.
ADJACENT = '$msec $request_time "$scheme://$host$request_uri" $a$b$c x'
HTTPLOG = (
    "1.2.3.4:5 [23/Nov/2026:07:56:28.123] fe be/srv1 0/0/1/12/{ta} {status} 512 - - ---- "
    '1/1/0/0/0 0/0 "GET / HTTP/1.1"\n'
)


@st.composite
def corrupted_field(draw: st.DrawFn, name: str) -> bytes:
    """A real line with one space-separated field replaced by a bad value."""
    lines = seeds(name)[0].split("\n")[:-1]
    line = draw(st.sampled_from(lines)).split(" ")
    line[draw(st.integers(0, len(line) - 1))] = draw(evil())
    return ("\n".join([*lines[:2], " ".join(line), *lines[2:4]]) + "\n").encode()


def inputs(name: str) -> st.SearchStrategy[bytes]:
    return st.one_of(byte_inputs(name), corrupted_field(name))


@fuzz("nginx", inputs("nginx"))
@example(NGINX_LINE.replace(" 0.030 ", " " + "9" * 306 + " ").encode())  # 1e306 s: inf ms
def test_nginx(data: bytes) -> None:
    """nginx default format: a chunk, or InputError at SOURCE:LINE with a hint."""
    check(TARGETS["nginx"], data)


@fuzz("nginx_msec", inputs("nginx_msec"))
@example(MSEC_LINE.replace(" 0.030 ", " " + "9" * 306 + " ").encode())  # 1e306 s: inf ms
def test_nginx_msec(data: bytes) -> None:
    """nginx ``$msec`` format: a chunk, or InputError at SOURCE:LINE with a hint."""
    check(TARGETS["nginx_msec"], data)


@fuzz("haproxy", inputs("haproxy"))
@example(HTTPLOG.format(ta=13, status="9" * 5000).encode())  # int() of 5000 digits
@example(HTTPLOG.format(ta="9" * 400, status=200).encode())  # a latency of inf ms
def test_haproxy(data: bytes) -> None:
    """HAProxy httplog: a chunk, or InputError at SOURCE:LINE with a hint."""
    check(TARGETS["haproxy"], data)


@fuzz("regex", inputs("regex"))
@example(b"1 " + b"9" * 5000 + b" 1\n")  # a status of 5000 digits: int() raised ValueError
@example(b"1 200 1e306\n")  # 1e306 s is inf ms
def test_regex(data: bytes) -> None:
    """A regex format: a chunk, or InputError at SOURCE:LINE with a hint."""
    check(TARGETS["regex"], data)


@st.composite
def log_configs(draw: st.DrawFn) -> bytes:
    """A log_format (or ``regex:`` and a regex) on the first line, log lines after it."""
    pieces = [
        "$msec",
        "$time_local",
        "$time_iso8601",
        "$request_time",
        "$upstream_response_time",
        "$status",
        "${status}",
        "$remote_addr",
        "$request",
        '"$request"',
        '"$http_user_agent"',
        "$upstream_addr",
        "[$time_local]",
        "-",
        " ",
        '"',
        "'",
        "escape=json ",
        "combined",
        "(?P<time>\\S+)",
        "(?P<latency_ms>[\\d.]+)",
        "(?P<latency_s>\\S*)",
        "(?P<status>\\d+)",
        "(",
        ")",
        "[",
        "\\",
        "*",
        "?",
        "{2}",
        "$",
        "^",
    ]
    config = "".join(draw(st.lists(st.sampled_from(pieces) | evil(), min_size=1, max_size=8)))
    if draw(st.booleans()):
        config = "regex:" + config
    config = config.replace("\n", " ").replace("\r", " ")
    # Short lines: a user's regex may take time polynomial in a line's length (its own
    # choice); the time bounds are for capplan's formats (the other tests).
    short = [v for v in EVIL if len(v) <= 400]
    lines = draw(st.lists(st.sampled_from([*short, *seeds("log_config")[0].split("\n")])))
    return (config + "\n" + "\n".join(lines) + "\n").encode("utf-8", "surrogatepass")


@fuzz("log_config", log_configs())
@example(f'{ADJACENT}\n1 2 "http://{"a" * 20_000}\n'.encode())  # quadratic: minutes
def test_log_config(data: bytes) -> None:
    """Any log_format or regex: a parser and a chunk, or InputError naming node and key."""
    check(TARGETS["log_config"], data)


def _lines(line: str) -> bytes:
    data = line.encode() * (SIZE // len(line.encode()))
    assert len(data) <= SIZE
    return data


BIG: dict[str, tuple[str, Callable[[], bytes]]] = {
    "nginx: one long line": (
        "nginx",
        lambda: NGINX_LINE.encode()[:-1] + b"x" * (SIZE - 400) + b"\n",
    ),
    "nginx: one long line of quotes": ("nginx", lambda: _lines('"\\"' * 1000)[: SIZE - 1] + b"\n"),
    "nginx: tiny lines": ("nginx", lambda: _lines("x\n")),
    "nginx: blank lines": ("nginx", lambda: _lines("\n")),
    "nginx: valid lines": ("nginx", lambda: _lines(NGINX_LINE)),
    "nginx: non-ASCII lines": ("nginx", lambda: _lines(NGINX_LINE.replace("GET", "GÉT"))),
    "nginx_msec: valid lines": ("nginx_msec", lambda: _lines(seeds("nginx_msec")[0])),
    "haproxy: one long line of dates": (
        "haproxy",
        lambda: _lines("[23/Nov/2026:07:56:28.123] " * 1000)[: SIZE - 1] + b"\n",
    ),
    "haproxy: valid lines": ("haproxy", lambda: _lines(HAPROXY_LINE)),
    "regex: valid lines": ("regex", lambda: _lines("1795168800.5 200 0.012\n")),
    "log_config: adjacent variables, one long bad line": (
        "log_config",
        lambda: (
            (ADJACENT + "\n").encode()
            + _lines('1 2 "http://' + "a" * 1000 + "\n")[: SIZE - 200]
            + b"\n"
        ),
    ),
}


@pytest.mark.parametrize("label", list(BIG))
def test_bounds(label: str) -> None:
    """One big adversarial input: the property, within the stated time and memory."""
    target, make = BIG[label]
    assert_bounded(target, label, make())


def test_formats_are_the_fuzzed_ones() -> None:
    """The fuzzed formats are capplan's default, the captured $msec one and a plain regex."""
    assert "$msec" in MSEC_FORMAT
    assert "(?P<time>" in USER_REGEX
