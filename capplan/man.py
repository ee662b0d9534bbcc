"""
Man pages generated from the command line itself, so they cannot drift from ``--help``.

One page per command (``capplan-plan(1)``, …) and one for ``capplan(1)`` listing them, in the
classic ``man(7)`` macros.  click-man does this for click applications, but Typer 0.29 carries
its own copy of click whose option objects fail click-man's ``isinstance(x, click.Option)``
(its pages came out with no options), so the few lines of roff are written here, from the same
command objects ``--help`` reads.
"""

from __future__ import annotations

import inspect
import re
from typing import Any

__all__ = ["man_pages", "roff_text"]

_SECTION = "1"


def roff_text(text: str) -> str:
    """
    ``text`` made safe for roff: backslashes escaped, hyphens literal, non-ASCII characters
    as ``\\[uXXXX]``, no line starting with a control character (``.`` or ``'``).
    """
    text = text.replace("\\", "\\e").replace("-", "\\-")
    # non-ASCII as roff's Unicode escapes, so any troff reads the page without preconv
    text = "".join(c if ord(c) < 128 else f"\\[u{ord(c):04X}]" for c in text)
    lines = []
    for line in text.splitlines():
        if line.startswith((".", "'")):
            line = "\\&" + line
        lines.append(line)
    return "\n".join(lines)


def _plain(help_text: str | None) -> str:
    """
    A docstring or option help as plain paragraphs (rich markup and backticks dropped).
    """
    text = inspect.cleandoc(help_text or "")
    text = re.sub(r"\[/?[a-z ]+\]", "", text)  # rich markup like [bold]
    return text.replace("``", "").replace("`", "")


def _page(name: str, command: Any, ctx: Any, version: str, date: str, see_also: list[str]) -> str:
    summary = _plain(command.get_short_help_str(limit=200)) or name
    out = [
        f'.TH "{name.upper()}" "{_SECTION}" "{date}" "capplan {version}" "capplan manual"',
        ".SH NAME",
        f"{roff_text(name)} \\- {roff_text(summary)}",
        ".SH SYNOPSIS",
        ".B " + roff_text(ctx.command_path),
        roff_text(" ".join(command.collect_usage_pieces(ctx))),
    ]
    description = _plain(command.help)
    if description:
        out.append(".SH DESCRIPTION")
        for paragraph in re.split(r"\n\s*\n", description):
            out.extend([".PP", roff_text(" ".join(paragraph.split()))])
    options = [p for p in command.params if p.param_type_name == "option" and not p.hidden]
    arguments = [p for p in command.params if p.param_type_name == "argument"]
    if arguments:
        out.append(".SH ARGUMENTS")
        for arg in arguments:
            out.extend([".TP", f".B {roff_text((arg.metavar or arg.name or '').upper())}"])
            out.append(roff_text(_plain(getattr(arg, "help", None)) or "(required)"))
    if options:
        out.append(".SH OPTIONS")
        for option in options:
            record = option.get_help_record(ctx)
            if record is None:
                continue
            names, help_text = record
            out.extend([".TP", f".B {roff_text(names)}", roff_text(_plain(help_text)) or "\\&"])
    commands = getattr(command, "commands", None)
    if commands:
        out.append(".SH COMMANDS")
        for sub_name, sub in commands.items():
            if sub.hidden:
                continue
            out.extend(
                [
                    ".TP",
                    f".B {roff_text(sub_name)}",
                    roff_text(_plain(sub.get_short_help_str(limit=200))),
                    f"See \\fB{roff_text(name)}\\-{roff_text(sub_name)}\\fR({_SECTION}).",
                ]
            )
        out.extend(
            [
                ".SH EXIT STATUS",
                "0 ok; 1 runtime failure; 2 bad input or usage; 3 partial result (some nodes "
                "failed); 4 drift found by \\-\\-check; 5 infeasible (the SLO cannot be met).",
            ]
        )
    if see_also:
        out.append(".SH SEE ALSO")
        out.append(", ".join(f"\\fB{roff_text(s)}\\fR({_SECTION})" for s in see_also))
    return "\n".join(out) + "\n"


def man_pages(root: Any, prog: str, version: str, date: str) -> dict[str, str]:
    """
    Every page: ``{"capplan.1": ..., "capplan-plan.1": ..., ...}``.

    Args:
        root: The click command group (``typer.main.get_command(app)``).
        prog: The program's name.
        version: Printed in the pages' footer.
        date: Printed in the pages' footer (fixed by the caller, so the pages are reproducible).
    """
    root_ctx = root.context_class(root, info_name=prog)
    names = [n for n, c in root.commands.items() if not c.hidden]
    pages = {
        f"{prog}.{_SECTION}": _page(
            prog, root, root_ctx, version, date, [f"{prog}-{n}" for n in names]
        )
    }
    for name in names:
        command = root.commands[name]
        ctx = command.context_class(command, info_name=name, parent=root_ctx)
        pages[f"{prog}-{name}.{_SECTION}"] = _page(
            f"{prog}-{name}", command, ctx, version, date, [prog]
        )
    return pages
