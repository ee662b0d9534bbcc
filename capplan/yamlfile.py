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
#: The most nodes aliases may add to a document by repeating anchored ones.  A few lines of
#: aliases of aliases can stand for billions of nodes ("billion laughs"): such a document is
#: refused, not expanded.  (Each node written out in the text is free; only repeats count.)
_MAX_ALIAS_NODES = 100_000
_SYNTAX_HINT = "fix the YAML there: indentation, quotes, brackets and ':' after each key"
_MERGE_TAG = "tag:yaml.org,2002:merge"


def _line(node: yaml.Node) -> int:
    return int(node.start_mark.line) + 1


class _Loader(yaml.SafeLoader):
    """
    PyYAML's safe loader, refusing nesting deeper than ``_MAX_DEPTH`` while composing (its
    composer recurses once per level: 1000 ``[`` would raise RecursionError).
    """

    def __init__(self, text: str, file: str) -> None:
        super().__init__(text)
        self._file = file
        self._depth = 0

    def compose_node(self, parent: yaml.Node | None, index: Any) -> yaml.Node | None:
        if self._depth >= _MAX_DEPTH:
            raise InputError(
                f"nested more than {_MAX_DEPTH} levels deep",
                file=self._file,
                line=int(self.peek_event().start_mark.line) + 1,  # type: ignore[no-untyped-call]
                hint="flatten the data: capplan's files are a few levels deep",
            )
        self._depth += 1
        try:
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1


class _Builder:
    """
    Builds plain data from composed nodes, recording the line of every path, counting the
    nodes that aliases repeat.
    """

    def __init__(self, file: str) -> None:
        self.file = file
        self.lines: dict[Path, int] = {}
        self._seen: set[int] = set()
        self._repeated = 0
        self._scalars = yaml.SafeLoader("")  # one constructor for every scalar

    def _count(self, node: yaml.Node) -> None:
        if id(node) not in self._seen:
            self._seen.add(id(node))
            return
        self._repeated += 1
        if self._repeated > _MAX_ALIAS_NODES:
            raise InputError(
                f"aliases repeat more than {_MAX_ALIAS_NODES} nodes (a 'billion laughs' document?)",
                file=self.file,
                line=_line(node),
                hint="write the repeated parts out, or use fewer aliases of aliases",
            )

    def scalar(self, node: yaml.Node) -> Any:
        try:
            return self._scalars.construct_object(node, deep=True)
        except yaml.MarkedYAMLError as exc:
            problem = exc.problem or exc.context or "a value YAML cannot read"
            raise InputError(
                f"not valid YAML: {problem}", file=self.file, line=_line(node), hint=_SYNTAX_HINT
            ) from None
        except (ValueError, OverflowError):  # 2026-13-45, 0x_, an int of 5000 digits
            kind = str(node.tag).rsplit(":", 1)[-1]
            shown = repr(node.value[:40]) + ("..." if len(node.value) > 40 else "")
            raise InputError(
                f"{shown} is not a valid {kind}",
                file=self.file,
                line=_line(node),
                hint="quote it to keep it as text",
            ) from None

    def key(self, node: yaml.Node) -> str | int | float | bool | None:
        key = self.scalar(node) if isinstance(node, yaml.ScalarNode) else ...
        if not isinstance(key, str | int | float | bool) and key is not None:
            raise InputError(
                "a key must be a plain value",
                file=self.file,
                line=_line(node),
                hint="write the key as text, e.g. 'name:'",
            )
        return key

    def build(self, node: yaml.Node, path: Path) -> Any:
        if len(path) > _MAX_DEPTH:
            raise InputError(
                f"nested more than {_MAX_DEPTH} levels deep (a recursive alias?)",
                file=self.file,
                line=_line(node),
                hint="do not alias a node inside itself",
            )
        self._count(node)
        self.lines.setdefault(path, _line(node))
        if isinstance(node, yaml.MappingNode):
            out: dict[Any, Any] = {}
            for key_node, value_node in node.value:
                if key_node.tag == _MERGE_TAG:
                    raise InputError(
                        "merge keys ('<<') are not supported",
                        file=self.file,
                        line=_line(key_node),
                        hint="write the keys out",
                    )
                name = str(self.key(key_node))
                if name in out:
                    raise InputError(
                        f"key {name[:80]!r} appears twice in one mapping",
                        file=self.file,
                        line=_line(key_node),
                        key=".".join(str(p) for p in (*path, name)),
                        hint="keep one of them",
                    )
                self.lines[(*path, name)] = _line(key_node)
                out[name] = self.build(value_node, (*path, name))
            return out
        if isinstance(node, yaml.SequenceNode):
            return [self.build(item, (*path, i)) for i, item in enumerate(node.value)]
        return self.scalar(node)


def _code(character: object) -> str:
    if isinstance(character, str) and len(character) == 1:
        character = ord(character)
    return f"#x{character:04x}" if isinstance(character, int) else repr(character)


def _line_at(text: str, position: int) -> int:
    return text.count("\n", 0, max(0, position)) + 1


def load_yaml(text: str, file: str) -> Located:
    """
    Parse one YAML document (safe types only), recording the line of every key and item.

    Args:
        text: The document.
        file: Its name, for messages.

    Returns:
        The data with its lines.

    Raises:
        InputError: on a syntax error, a duplicated key, more than one document, nesting
            deeper than 64 levels, or aliases that repeat more than 100000 nodes.
    """
    loader: _Loader | None = None
    try:
        loader = _Loader(text, file)  # (checks that every character is allowed)
        root = loader.get_node() if loader.check_node() else None
        if loader.check_node():
            event = loader.peek_event()  # type: ignore[no-untyped-call]
            raise InputError(
                "more than one YAML document",
                file=file,
                line=int(event.start_mark.line) + 1,
                hint="keep one",
            )
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise InputError(
            f"not valid YAML: {exc.problem or exc.context}",
            file=file,
            line=mark.line + 1 if mark is not None else 1,
            hint=_SYNTAX_HINT,
        ) from None
    except yaml.reader.ReaderError as exc:  # a character YAML does not allow
        raise InputError(
            f"not valid YAML: the character {_code(exc.character)} is not allowed",
            file=file,
            line=_line_at(text, exc.position),
            hint="remove the control character: YAML allows printable text only",
        ) from None
    except yaml.YAMLError as exc:
        raise InputError(f"not valid YAML: {exc}", file=file, line=1, hint=_SYNTAX_HINT) from None
    finally:
        if loader is not None:
            loader.dispose()
    if root is None:
        return Located(None, {(): 1}, file)
    builder = _Builder(file)
    data = builder.build(root, ())
    return Located(data, builder.lines, file)
