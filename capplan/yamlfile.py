"""
YAML loading that remembers where every key and item came from, for ``FILE:LINE`` errors.

PyYAML's ``safe_load`` forgets positions and silently keeps the last of two equal keys; here a
document is composed first, each mapping key and sequence item gets its line, and a duplicated
key is refused.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import yaml

from capplan.errors import InputError

__all__ = ["Located", "load_yaml"]

Path = tuple[str | int, ...]


@dataclass(frozen=True)
class Located:
    """
    A loaded YAML document and the line (1-based) of each path in it.
    """

    data: Any
    lines: dict[Path, int]
    file: str

    def line_of(self, path: Sequence[str | int]) -> int | None:
        """
        The line of ``path``, or of its nearest ancestor that has one.
        """
        key = tuple(path)
        while key:
            if key in self.lines:
                return self.lines[key]
            key = key[:-1]
        return self.lines.get((), None)


_MAX_DEPTH = 64


def _build(node: yaml.Node, path: Path, lines: dict[Path, int], file: str) -> Any:
    if len(path) > _MAX_DEPTH:
        raise InputError(
            f"nested more than {_MAX_DEPTH} levels deep (a recursive alias?)",
            file=file,
            line=node.start_mark.line + 1,
        )
    lines.setdefault(path, node.start_mark.line + 1)
    if isinstance(node, yaml.MappingNode):
        out: dict[Any, Any] = {}
        for key_node, value_node in node.value:
            key = _build(key_node, (), {}, file)
            if not isinstance(key, str | int | float | bool) and key is not None:
                raise InputError(
                    "a key must be a plain value", file=file, line=key_node.start_mark.line + 1
                )
            name = str(key)
            if name in out:
                raise InputError(
                    f"key {name!r} appears twice in one mapping",
                    file=file,
                    line=key_node.start_mark.line + 1,
                    key=".".join(str(p) for p in (*path, name)),
                    hint="keep one of them",
                )
            lines[(*path, name)] = key_node.start_mark.line + 1
            out[name] = _build(value_node, (*path, name), lines, file)
        return out
    if isinstance(node, yaml.SequenceNode):
        return [_build(item, (*path, i), lines, file) for i, item in enumerate(node.value)]
    return yaml.SafeLoader("").construct_object(node, deep=True)  # scalar


def load_yaml(text: str, file: str) -> Located:
    """
    Parse one YAML document (safe types only), recording the line of every key and item.

    Args:
        text: The document.
        file: Its name, for messages.

    Returns:
        The data with its lines.

    Raises:
        InputError: on a syntax error, a duplicated key or more than one document.
    """
    try:
        nodes = list(yaml.compose_all(text, Loader=yaml.SafeLoader))
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        line = mark.line + 1 if mark is not None else None
        raise InputError(
            f"not valid YAML: {exc.problem or exc.context}", file=file, line=line
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", file=file) from None
    if len(nodes) > 1:
        raise InputError("more than one YAML document", file=file, hint="keep one")
    lines: dict[Path, int] = {}
    if not nodes or nodes[0] is None:
        return Located(None, {(): 1}, file)
    try:
        data = _build(nodes[0], (), lines, file)
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", file=file) from None
    return Located(data, lines, file)
