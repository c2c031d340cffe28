"""Charts as inline SVG, drawn on the server: grouped bars (weeks or bins along the bottom) and
horizontal bars (long labels such as rules). No script, no inline style (the dashboard's
Content-Security-Policy forbids both): colours are SVG presentation attributes.

Each chart is an image with a title (role="img", aria-labelledby); the page puts a table with
the same numbers beside it as its text alternative. Colours differ in lightness as well as hue
and every series is named in a legend, so the chart does not depend on colour alone.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from markupsafe import Markup, escape

# Dark blue, orange, green, purple, red: each at least 4.5:1 against white.
PALETTE = ("#1f4e79", "#a34700", "#2e6b30", "#6a1b9a", "#b71c1c")
INK = "#1a1a1a"
GRID = "#b0b0b0"
FONT = 'font-family="system-ui, sans-serif" font-size="12"'


def nice_ceiling(value: float) -> float:
    """A round number at or above `value` for the top of the axis (1, 2, 2.5, 5 times a power of ten)."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (1, 2, 2.5, 5, 10):
        if value <= step * power:
            return step * power
    return 10 * power


LEGEND_ROW = 20


def _legend_places(names: Sequence[str], left: int, right: int) -> list[tuple[int, int]]:
    """Where each legend entry goes (x, row): left to right, wrapping before the right edge."""
    places, x, row = [], left, 0
    for name in names:
        needed = 24 + 7 * len(name)  # swatch, gap and a generous width per character
        if x > left and x + needed > right:
            x, row = left, row + 1
        places.append((x, row))
        x += needed + 12
    return places


def _number(value: float) -> str:
    return f"{value:.0f}" if float(value).is_integer() else f"{value:.1f}"


def grouped_bars(
    chart_id: str,
    title: str,
    categories: Sequence[str],
    series: Sequence[tuple[str, Sequence[float | None]]],
    *,
    whole_numbers: bool = True,
    width: int = 720,
    height: int = 280,
) -> Markup:
    """Bars per category, one per series, side by side; a missing value (None) draws no bar.
    With `whole_numbers` (counts) the axis steps are whole numbers too."""
    left, right, top, bottom = 48, 12, 16, 64
    plot_w, plot_h = width - left - right, height - top - bottom
    legend = _legend_places([name for name, _ in series], left, width - right)
    height += LEGEND_ROW * max((line for _, line in legend), default=0)  # extra legend rows below
    values = [v for _, row in series for v in row if v is not None]
    ceiling = nice_ceiling(max(values, default=0.0))
    if whole_numbers:
        ceiling = max(4, math.ceil(ceiling / 4) * 4)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title" viewBox="0 0 {width} {height}" width="100%" {FONT}>',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
    ]
    for step in range(5):  # horizontal grid lines with their values
        tick = ceiling * step / 4
        y = top + plot_h - plot_h * step / 4
        parts.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="{GRID}"/>')
        parts.append(
            f'<text x="{left - 6}" y="{y + 4:.1f}" text-anchor="end" fill="{INK}">{escape(_number(tick))}</text>'
        )
    slot = plot_w / max(1, len(categories))
    bar = slot * 0.8 / max(1, len(series))
    for index, category in enumerate(categories):
        x0 = left + slot * index + slot * 0.1
        for position, (_name, row) in enumerate(series):
            value = row[index] if index < len(row) else None
            if value is None:
                continue
            bar_h = plot_h * value / ceiling
            x = x0 + bar * position
            parts.append(
                f'<rect x="{x:.1f}" y="{top + plot_h - bar_h:.1f}" width="{max(bar - 1, 1):.1f}" '
                f'height="{bar_h:.1f}" fill="{PALETTE[position % len(PALETTE)]}"/>'
            )
        parts.append(
            f'<text x="{left + slot * (index + 0.5):.1f}" y="{top + plot_h + 16}" text-anchor="middle" '
            f'fill="{INK}">{escape(category)}</text>'
        )
    for (x, line), (position, name) in zip(legend, enumerate(name for name, _ in series), strict=True):
        y = top + plot_h + 40 + LEGEND_ROW * line
        parts.append(f'<rect x="{x}" y="{y - 10}" width="12" height="12" fill="{PALETTE[position % len(PALETTE)]}"/>')
        parts.append(f'<text x="{x + 18}" y="{y}" fill="{INK}">{escape(name)}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))


def horizontal_bars(
    chart_id: str, title: str, rows: Sequence[tuple[str, float]], *, width: int = 720, row_height: int = 28
) -> Markup:
    """One bar per row, label on the left, value at the end of the bar."""
    label_w, right, top = 300, 48, 8
    height = top * 2 + row_height * max(1, len(rows))
    ceiling = nice_ceiling(max((value for _, value in rows), default=0.0))
    plot_w = width - label_w - right
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" id="{escape(chart_id)}" role="img" '
        f'aria-labelledby="{escape(chart_id)}-title" viewBox="0 0 {width} {height}" width="100%" {FONT}>',
        f'<title id="{escape(chart_id)}-title">{escape(title)}</title>',
    ]
    for index, (label, value) in enumerate(rows):
        y = top + row_height * index
        bar_w = plot_w * value / ceiling
        parts.append(
            f'<text x="{label_w - 8}" y="{y + row_height * 0.65:.1f}" text-anchor="end" fill="{INK}">'
            f"{escape(label)}</text>"
        )
        parts.append(
            f'<rect x="{label_w}" y="{y + 4}" width="{max(bar_w, 1):.1f}" height="{row_height - 8}" '
            f'fill="{PALETTE[0]}"/>'
        )
        parts.append(
            f'<text x="{label_w + bar_w + 6:.1f}" y="{y + row_height * 0.65:.1f}" fill="{INK}">'
            f"{escape(_number(value))}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))
