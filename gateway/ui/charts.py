"""Charts drawn on the server as inline SVG: no JavaScript, no chart library.

:func:`line_chart` draws one or more series of ``(x, y)`` points with both axes, their
ticks and labels, and a legend. The SVG is an image with a name (``role="img"``, its
``<title>`` and a ``<desc>`` that summarises each series in words: points, first, last,
lowest), so a screen reader says what the chart shows; pages add the points as a table
(:func:`summary`). Every text is escaped. Long series are thinned to :data:`MAX_POINTS` for
drawing, keeping each bucket's lowest and highest point.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from markupsafe import Markup, escape

MAX_POINTS = 600
# colours with at least 3:1 contrast on white (WCAG 1.4.11), told apart by dash too
COLOURS = ("#0b57d0", "#b3261e", "#1e7d32", "#7a4b00")
DASHES = ("", "6 3", "2 3", "8 3 2 3")


@dataclass(frozen=True)
class Series:
    name: str
    points: Sequence[tuple[float, float]]


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 1000 or abs(value) < 0.001:
        return f"{value:.3g}"
    return f"{value:.4g}"


def ticks(low: float, high: float, count: int = 5) -> list[float]:
    """About ``count`` round values (1, 2, 2.5 or 5 times a power of ten), low to high."""
    if not (math.isfinite(low) and math.isfinite(high)):
        return []
    if high <= low:
        return [low]
    raw = (high - low) / max(count - 1, 1)
    power = 10 ** math.floor(math.log10(raw))
    step = min((m * power for m in (1, 2, 2.5, 5, 10)),
               key=lambda s: abs((high - low) / s - (count - 1)))  # fmt: skip
    first = math.ceil(low / step - 1e-9) * step
    out: list[float] = []
    value = first
    while value <= high + step * 1e-9 and len(out) < 20:
        out.append(round(value, 12))
        value += step
    return out


Points = Sequence[tuple[float, float]]


def thin(points: Points, limit: int = MAX_POINTS) -> list[tuple[float, float]]:
    """At most about ``limit`` points: each bucket's lowest and highest y, in x order."""
    if len(points) <= limit:
        return list(points)
    size = math.ceil(len(points) / (limit // 2))
    out: list[tuple[float, float]] = []
    for start in range(0, len(points), size):
        bucket = points[start : start + size]
        low = min(bucket, key=lambda p: p[1])
        high = max(bucket, key=lambda p: p[1])
        out.extend(sorted({low, high}, key=lambda p: p[0]))
    if out[-1] != points[-1]:
        out.append(points[-1])
    return out


def describe(series: Series) -> str:
    """One sentence about a series, for the chart's ``<desc>``."""
    points = [p for p in series.points if math.isfinite(p[1])]
    if not points:
        return f"{series.name}: no points."
    lowest = min(points, key=lambda p: p[1])
    return (
        f"{series.name}: {len(points)} points from x {_fmt(points[0][0])} to "
        f"{_fmt(points[-1][0])}; first {_fmt(points[0][1])}, last {_fmt(points[-1][1])}, "
        f"lowest {_fmt(lowest[1])} at x {_fmt(lowest[0])}."
    )


def summary(series: Sequence[Series]) -> str:
    return " ".join(describe(s) for s in series)


def line_chart(
    series: Sequence[Series],
    *,
    title: str,
    x_label: str,
    y_label: str,
    chart_id: str = "chart",
    width: int = 720,
    height: int = 320,
) -> Markup:
    """An inline ``<svg>`` line chart of ``series`` (points in x order)."""
    left, right, top, bottom = 64, 16, 16, 48
    legend = 22 if len(series) > 1 else 0
    plot_w, plot_h = width - left - right, height - top - bottom - legend
    finite = [(x, y) for s in series for x, y in s.points if math.isfinite(x) and math.isfinite(y)]
    title_id, desc_id = f"{chart_id}-title", f"{chart_id}-desc"
    out = [
        f'<svg class="chart" id="{escape(chart_id)}" role="img" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" aria-labelledby="{escape(title_id)}" '
        f'aria-describedby="{escape(desc_id)}" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{escape(title_id)}">{escape(title)}</title>',
        f'<desc id="{escape(desc_id)}">{escape(summary(series))}</desc>',
    ]
    if not finite:
        out.append(f'<text x="{width // 2}" y="{height // 2}" text-anchor="middle">no data</text>')
        out.append("</svg>")
        return Markup("".join(out))
    x_lo, x_hi = min(p[0] for p in finite), max(p[0] for p in finite)
    y_lo, y_hi = min(p[1] for p in finite), max(p[1] for p in finite)
    if y_lo == y_hi:
        y_lo, y_hi = y_lo - 1, y_hi + 1
    pad = (y_hi - y_lo) * 0.05
    y_lo, y_hi = y_lo - pad, y_hi + pad
    if x_lo == x_hi:
        x_lo, x_hi = x_lo - 1, x_hi + 1

    def sx(x: float) -> float:
        return left + (x - x_lo) / (x_hi - x_lo) * plot_w

    def sy(y: float) -> float:
        return top + plot_h - (y - y_lo) / (y_hi - y_lo) * plot_h

    axis_y = top + plot_h
    out.append('<g class="axes" aria-hidden="true">')
    out.append(f'<line x1="{left}" y1="{top}" x2="{left}" y2="{axis_y}" stroke="#333"/>')
    out.append(f'<line x1="{left}" y1="{axis_y}" x2="{left + plot_w}" y2="{axis_y}" '
               'stroke="#333"/>')  # fmt: skip
    for value in ticks(y_lo, y_hi):
        y = sy(value)
        out.append(f'<line x1="{left - 4}" y1="{y:.1f}" x2="{left + plot_w}" y2="{y:.1f}" '
                   'stroke="#d0d4da"/>')  # fmt: skip
        out.append(f'<text x="{left - 7}" y="{y + 4:.1f}" text-anchor="end">{_fmt(value)}</text>')
    for value in ticks(x_lo, x_hi):
        x = sx(value)
        out.append(f'<line x1="{x:.1f}" y1="{axis_y}" x2="{x:.1f}" y2="{axis_y + 4}" '
                   'stroke="#333"/>')  # fmt: skip
        out.append(f'<text x="{x:.1f}" y="{axis_y + 18}" text-anchor="middle">{_fmt(value)}</text>')
    out.append(f'<text x="{left + plot_w / 2:.1f}" y="{axis_y + 38}" text-anchor="middle" '
               f'class="axis-label">{escape(x_label)}</text>')  # fmt: skip
    out.append(f'<text transform="translate(14 {top + plot_h / 2:.1f}) rotate(-90)" '
               f'text-anchor="middle" class="axis-label">{escape(y_label)}</text>')  # fmt: skip
    out.append("</g>")
    for index, s in enumerate(series):
        colour, dash = COLOURS[index % len(COLOURS)], DASHES[index % len(DASHES)]
        drawn = thin([p for p in s.points if math.isfinite(p[0]) and math.isfinite(p[1])])
        if not drawn:
            continue
        coords = " ".join(f"{sx(x):.1f},{sy(y):.1f}" for x, y in drawn)
        dashed = f' stroke-dasharray="{dash}"' if dash else ""
        out.append(f'<polyline class="series" data-series="{escape(s.name)}" fill="none" '
                   f'stroke="{colour}" stroke-width="2"{dashed} points="{coords}"/>')  # fmt: skip
        if len(drawn) == 1:
            x, y = drawn[0]
            out.append(f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{colour}"/>')
    if legend:
        out.append('<g class="legend" aria-hidden="true">')
        x = left
        for index, s in enumerate(series):
            colour, dash = COLOURS[index % len(COLOURS)], DASHES[index % len(DASHES)]
            dashed = f' stroke-dasharray="{dash}"' if dash else ""
            y = height - 8
            out.append(f'<line x1="{x}" y1="{y - 4}" x2="{x + 24}" y2="{y - 4}" '
                       f'stroke="{colour}" stroke-width="2"{dashed}/>')  # fmt: skip
            out.append(f'<text x="{x + 30}" y="{y}">{escape(s.name)}</text>')
            x += 40 + 8 * len(s.name)
        out.append("</g>")
    out.append("</svg>")
    return Markup("".join(out))
