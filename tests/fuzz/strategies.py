"""
Hypothesis strategies for the parser fuzz tests: near-valid inputs (real inputs with a field,
a cell, a line or a value corrupted) and raw text or bytes.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

import yaml
from hypothesis import strategies as st

from bench.fuzz.targets import seeds

#: Values that break parsers: empty, signs, non-finite and huge numbers, non-ASCII digits,
#: control characters, line breaks, YAML syntax, dates out of range, long runs.
EVIL: tuple[str, ...] = (
    "",
    " ",
    "-",
    "-1",
    "+1",
    "0",
    "0.0",
    "-0",
    "nan",
    "NaN",
    "inf",
    "-inf",
    "Infinity",
    "1e309",
    "1e-400",
    "1e306",
    "9" * 400,
    "9" * 5000,
    "0x10",
    "0x_",
    "0b",
    "1_000",
    "1:2:3",
    "١٢٣",
    "²",
    "\x00",
    "\r",
    "\r\n",
    "\n",
    "\t",
    "\x0b",
    "\x1c",
    "\x85",
    "\ufeff",
    "\u2028",
    "\ud7ff",
    "\U0001f600",
    "’",
    "null",
    "~",
    "true",
    "[",
    "]",
    "{",
    "}",
    "&a",
    "*a",
    "&a [*a, *a]",
    "? ",
    "<<: 1",
    "!!binary x",
    "!!timestamp x",
    "!!python/object:os.system x",
    "!!int 0x_",
    "'",
    '"',
    '\\"',
    "\\",
    "%",
    "$",
    ",",
    ";",
    ":",
    "#",
    "---",
    "...",
    "9999-12-31T23:59:59-01:00",
    "0001-01-01T00:00:00+01:00",
    "2026-13-45",
    "2026-11-20 25:00:00",
    "31/Feb/2026:00:00:00 +0000",
    "99/Zzz/9999:99:99:99 +9999",
    "[01/Jan/1970:00:00:00.000]",
    "1/2/3/4/5",
    "-1/-1/-1/-1/-1",
    "@capplan:end",
    "@capplan:now",
    "cpu",
    "cpu0",
    "MemTotal:",
    "# pxname,svname",
    "a" * 300,
    "x" * 140_000,  # above the csv module's default field size limit
    "{" * 200,
    "[" * 1200,  # deeper than the Python recursion limit allows a naive recursive parser
)

_CHARS = st.characters(codec="utf-8")


def evil() -> st.SearchStrategy[str]:
    """
    One bad value: from EVIL, a float's repr, a big integer, or short random text.
    """
    return st.one_of(
        st.sampled_from(EVIL),
        st.floats(allow_nan=True, allow_infinity=True).map(repr),
        st.integers(min_value=-(10**30), max_value=10**30).map(str),
        st.text(_CHARS, max_size=12),
    )


@st.composite
def mutated(draw: st.DrawFn, texts: Sequence[str], separators: str = " ,:/") -> str:
    """
    One of ``texts`` with one to four corruptions: a field replaced, a span replaced, a line
    dropped, doubled or swapped, CRLF line ends, a cut, or a BOM.
    """
    text = draw(st.sampled_from(list(texts)))
    for _ in range(draw(st.integers(1, 4))):
        lines = text.split("\n")
        kind = draw(
            st.sampled_from(
                ["field", "field", "field", "span", "drop", "double", "swap", "crlf", "cut", "bom"]
            )
        )
        index = draw(st.integers(0, len(lines) - 1))
        line = lines[index]
        if kind == "field":
            sep = draw(st.sampled_from(separators))
            fields = line.split(sep)
            at = draw(st.integers(0, len(fields) - 1))
            fields[at] = draw(evil())
            lines[index] = sep.join(fields)
        elif kind == "span":
            start = draw(st.integers(0, len(text)))
            end = min(len(text), start + draw(st.integers(0, 16)))
            text = text[:start] + draw(evil()) + text[end:]
            continue
        elif kind == "drop":
            del lines[index]
        elif kind == "double":
            lines.insert(index, line)
        elif kind == "swap":
            other = draw(st.integers(0, len(lines) - 1))
            lines[index], lines[other] = lines[other], lines[index]
        elif kind == "crlf":
            text = text.replace("\n", "\r\n")
            continue
        elif kind == "cut":
            text = text[: draw(st.integers(0, len(text)))]
            continue
        else:
            text = "\ufeff" + text
            continue
        text = "\n".join(lines)
    return text


def text_inputs(name: str, separators: str = " ,:/") -> st.SearchStrategy[str]:
    """
    Inputs for target ``name``: mostly its seeds corrupted, some raw text, some bad values.
    """
    return st.one_of(
        mutated(seeds(name), separators),
        mutated(seeds(name), separators),
        mutated(seeds(name), separators),
        st.text(_CHARS, max_size=400),
        st.lists(evil(), max_size=8).map("\n".join),
    )


def byte_inputs(name: str) -> st.SearchStrategy[bytes]:
    """
    Log bytes for target ``name``: corrupted real lines (as UTF-8, or cut inside a character),
    raw bytes, or bad values one per line.
    """
    near = mutated(seeds(name), ' ,:/[]"')
    return st.one_of(
        near.map(lambda t: t.encode("utf-8", "surrogatepass")),
        near.map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.tuples(near, st.integers(0, 64)).map(lambda p: p[0].encode()[: -p[1] or None]),
        st.binary(max_size=600),
        st.lists(evil(), max_size=8).map(lambda v: ("\n".join(v) + "\n").encode()),
    )


# ----------------------------------------------------------------------------- YAML


def alias_bomb(levels: int, width: int) -> str:
    """
    A "billion laughs" document: each level lists the one below ``width`` times.
    """
    lines = ["l0: &l0 [lol]"]
    for i in range(1, levels):
        refs = ", ".join([f"*l{i - 1}"] * width)
        lines.append(f"l{i}: &l{i} [{refs}]")
    return "\n".join(lines) + "\n"


YAML_TRAPS: tuple[str, ...] = (
    alias_bomb(9, 9),
    alias_bomb(30, 2),
    "a: &a [*a, *a]\n",
    "&a {*a : 1}\n",
    "? &k [*k]\n: 1\n",
    "a: &a {b: *a}\n",
    "[" * 1000 + "]" * 1000,
    "{a: " * 1000 + "1" + "}" * 1000,
    "".join("  " * i + "a:\n" for i in range(300)),
    "? " * 500 + "x\n",
    "- " * 500 + "x\n",
    "a: 1\n---\nb: 2\n",
    "a: 1\n...\n",
    "%YAML 1.1\n---\na: 1\n",
    "%YAML 9.9\n---\na: 1\n",
    "a: &x {b: 1}\nc: {<<: *x}\n",
    "a: !!set {x}\n",
    "a: !!omap [x]\n",
    "a: !!pairs [[1, 2]]\n",
    "a: !!binary '!!'\n",
    "a: !!float x\n",
    "a: !!int 0x_\n",
    "a: 0x_\n",
    "a: 0o\n",
    "a: 2026-13-45\n",
    "a: 9999-12-31 23:59:60\n",
    "a: 2001-12-14t21:59:43.10-99:00\n",
    "a: " + "9" * 5000 + "\n",
    "a: 1" + "0" * 400 + ".0\n",
    "a: .nan\nb: -.inf\n",
    "a: !!python/name:os.system\n",
    "a: \x00\n",
    "a: \x85\n",
    "\ufeffa: 1\n",
    "a:\tb\n",
    "a: 'x\n",
    "? [a, b]\n: 1\n",
    "? {a: 1}\n: 1\n",
    "1: a\n'1': b\n",
    "null: a\n~: b\n",
    "a: |\n x\n  y\n",
)

_SCALARS = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(_CHARS, max_size=20),
    st.sampled_from(EVIL[:60]),
)
_VALUES = st.recursive(
    _SCALARS,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=12,
)


def _dump(data: Any, style: str) -> str:
    if style == "json":
        return json.dumps(data, default=str)  # JSON is YAML; NaN and Infinity are YAML strings
    return yaml.safe_dump(data, default_flow_style=style == "flow", allow_unicode=True)


def _paths(data: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(data, dict):
        for key, value in data.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(data, list):
        for i, value in enumerate(data):
            out += _paths(value, (*prefix, i))
    return out


@st.composite
def retyped(draw: st.DrawFn, name: str) -> str:
    """
    A valid document of target ``name`` with one to three values replaced by any value (a
    wrong type, NaN, a huge number, a nested list...), dumped as block, flow or JSON YAML.
    """
    data = yaml.safe_load(seeds(name)[0])
    for _ in range(draw(st.integers(1, 3))):
        paths = [p for p in _paths(data) if p]
        path = draw(st.sampled_from(paths))
        target = data
        for key in path[:-1]:
            target = target[key]
        if draw(st.booleans()) and isinstance(target, dict):
            del target[path[-1]]
        else:
            target[path[-1]] = draw(_VALUES)
    style = draw(st.sampled_from(["block", "flow", "json"]))
    try:
        return _dump(data, style)
    except (ValueError, TypeError, yaml.YAMLError):
        return _dump(data, "block")


def yaml_inputs(name: str) -> st.SearchStrategy[str]:
    """
    YAML for target ``name``: its seed corrupted as text, traps (alias bombs, recursion, deep
    nesting, tags, bad scalars) alone or spliced into it, or raw text.
    """
    seed = seeds(name)[0]

    @st.composite
    def spliced(draw: st.DrawFn) -> str:
        trap = draw(st.sampled_from(YAML_TRAPS))
        lines = seed.split("\n")
        at = draw(st.integers(0, len(lines)))
        indent = " " * draw(st.sampled_from([0, 2, 4]))
        piece = "\n".join(indent + line for line in trap.split("\n"))
        return "\n".join([*lines[:at], piece, *lines[at:]])

    return st.one_of(
        mutated([seed], " ,:{}[]"),
        mutated([seed], " ,:{}[]"),
        spliced(),
        st.sampled_from(YAML_TRAPS),
        st.text(_CHARS, max_size=300),
    )
