"""
A small text plot of one node's latency against load, for the terminal (pure: figure data in,
lines out).

``o`` the windows, ``*`` the chosen model's curve, ``-`` the SLO's latency, ``|`` the capacity
(``+`` where the two cross), ``^`` windows above the plot's top.  ASCII only, so it reads the
same in any terminal, log or CI output.
"""

from __future__ import annotations

from capplan.report.data import Curve, NodeFigure

__all__ = ["text_plot"]

#: Width of the y axis' labels, in characters.
_LABEL = 7


def _num(value: float) -> str:
    """
    A tick label: 3 significant digits, no exponent for the usual ranges.
    """
    if value == 0:
        return "0"
    if abs(value) >= 1000:
        return f"{value:.0f}"
    return f"{value:.3g}"


def _column(x: float, x_max: float, width: int) -> int:
    return min(max(round(x / x_max * (width - 1)), 0), width - 1)


def _row(y: float, y_max: float, height: int) -> int:
    """
    The row (0 = top) of latency ``y``; -1 when above the plot.
    """
    level = round(y / y_max * (height - 1))
    if level > height - 1:
        return -1
    return height - 1 - max(level, 0)


def _curve_at(curve: Curve, x: float) -> float | None:
    """
    The curve's latency at rate ``x``, linear between its grid points (None past its end).
    """
    rates, values = curve.rate_rps, curve.latency_ms
    for i in range(1, len(rates)):
        if rates[i] >= x:
            a, b = values[i - 1], values[i]
            if a is None or b is None:
                return None
            span = rates[i] - rates[i - 1]
            t = (x - rates[i - 1]) / span if span > 0 else 0.0
            return a + t * (b - a)
    return values[-1] if rates and rates[-1] == x else None


def _draw_curve(grid: list[list[str]], curve: Curve, x_max: float, y_max: float) -> None:
    width, height = len(grid[0]), len(grid)
    previous: int | None = None
    for col in range(width):
        y = _curve_at(curve, col / (width - 1) * x_max)
        if y is None:
            return
        row = _row(y, y_max, height)
        above = row < 0
        row = max(row, 0)
        if previous is not None:  # a steep stretch: join it to the column before
            low, high = sorted((row, previous))
            for r in range(low + 1, high):
                grid[r][col] = "*"
        grid[row][col] = "*"
        if above:
            return
        previous = row


def text_plot(figure: NodeFigure, *, width: int = 60, height: int = 15) -> list[str]:
    """
    The node's latency-versus-load plot as lines of text.

    Args:
        figure: The node's figure data (``capplan.report.data.node_figure``).
        width: Columns of the plot area (the labels add about 8).
        height: Rows of the plot area (a title, an axis and a legend add 4).

    Returns:
        The lines, without line breaks.
    """
    if width < 10 or height < 5:
        raise ValueError(f"width must be >= 10 and height >= 5: {width}x{height}")
    x_max, y_max = figure.x_max, figure.y_max
    grid = [[" "] * width for _ in range(height)]
    slo_row = _row(figure.slo_ms, y_max, height)
    if slo_row >= 0:
        grid[slo_row] = ["-"] * width
    cap_col = None
    if figure.capacity_rps is not None and figure.capacity_rps <= x_max:
        cap_col = _column(figure.capacity_rps, x_max, width)
        for r in range(height):
            grid[r][cap_col] = "+" if r == slo_row else "|"
    for x, y in figure.points:
        col = _column(x, x_max, width)
        row = _row(y, y_max, height)
        grid[row if row >= 0 else 0][col] = "o" if row >= 0 else "^"
    chosen = figure.slo_curve or figure.chosen
    if chosen is not None:
        _draw_curve(grid, chosen, x_max, y_max)

    shown = figure.stat if figure.slo_curve is None else f"{figure.stat}, curve {figure.slo_stat}"
    model = figure.model or "no model"
    lines = [f"{figure.node}: {model}, latency (ms, {shown}) against load (rps)"]
    labels = {0: _num(y_max), height - 1: "0"}
    if slo_row >= 0:
        labels[slo_row] = _num(figure.slo_ms)
    for r, cells in enumerate(grid):
        label = labels.get(r, "")
        lines.append(f"{label:>{_LABEL - 1}} |" + "".join(cells).rstrip())
    lines.append(" " * _LABEL + "+" + "-" * width)
    middle = _num(x_max / 2)
    axis = [" "] * (width + 1)
    for text, at in (("0", 0), (middle, width // 2 - len(middle) // 2)):
        axis[at : at + len(text)] = list(text)
    right = _num(x_max)
    axis[width + 1 - len(right) :] = list(right)
    lines.append(" " * _LABEL + "".join(axis).rstrip())
    line = ""
    for part in _legend(figure, chosen):  # as many parts per line as fit the plot's width
        if line and len(line) + 3 + len(part) > width + 1:
            lines.append(" " * _LABEL + line)
            line = ""
        line = f"{line}   {part}" if line else part
    lines.append(" " * _LABEL + line)
    return lines


def _legend(figure: NodeFigure, chosen: Curve | None) -> list[str]:
    parts: list[str] = [f"o windows ({figure.stat})"]
    if figure.points_above:
        parts.append(f"^ {figure.points_above} above")
    if chosen is not None:
        parts.append(f"* {chosen.model} {chosen.stat}")
    parts.append(f"- SLO {figure.slo_stat} {figure.slo_ms:g} ms")
    if figure.capacity_rps is not None:
        text = f"| capacity {figure.capacity_rps:.4g} rps"
        if figure.capacity_interval is not None:
            low, high = figure.capacity_interval
            text += f" (95%: {low:.4g}-{f'{high:.4g}' if high is not None else 'open'})"
        parts.append(text)
    return parts
