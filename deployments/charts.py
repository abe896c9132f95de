"""Inline SVG charts rendered on the server: sparklines and small time-series charts.

No JavaScript and no CDN; the markup is built from numbers only (labels are escaped), so it can
be marked safe.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from datetime import datetime

from django.utils.html import escape, format_html
from django.utils.safestring import SafeString, mark_safe

Point = tuple[float, float]
COLOURS = {"blue": "#2563eb", "green": "#16a34a"}
FALLBACK_COLOURS = ("#7c3aed", "#ea580c", "#0891b2", "#be123c")


def _scale(
    series: Sequence[Sequence[Point]], width: float, height: float, pad: float
) -> tuple[float, float, float, float]:
    times = [t for points in series for t, _ in points]
    values = [v for points in series for _, v in points]
    t0, t1 = min(times), max(times)
    top = max(values)
    top = top if top > 0 else 1.0
    return t0, (t1 - t0) or 1.0, top, height - 2 * pad


def _polyline(
    points: Sequence[Point], t0: float, span: float, top: float, width: float, height: float
) -> str:
    inner = height
    return " ".join(
        f"{(t - t0) / span * width:.1f},{inner - (v / top) * inner:.1f}" for t, v in points
    )


def sparkline(
    points: Sequence[Point], *, width: int = 90, height: int = 24, colour: str = "#2563eb"
) -> SafeString:
    """A line of the values over time; an empty string without points."""
    points = [(t, v) for t, v in points if math.isfinite(v)]
    if not points:
        return mark_safe("")
    t0, span, top, _ = _scale([points], width, height, 0)
    line = _polyline(points, t0, span, top, width, height - 2)
    last = points[-1][1]
    return format_html(
        '<svg class="sparkline" viewBox="0 -1 {} {}" width="{}" height="{}" role="img" '
        'aria-label="trend, latest {}"><polyline fill="none" stroke="{}" stroke-width="1.5" '
        'points="{}"/></svg>',
        width,
        height,
        width,
        height,
        f"{last:.3g}",
        colour,
        line,
    )


def timeseries(
    series: Mapping[str, Sequence[Point]],
    *,
    title: str,
    unit: str,
    width: int = 360,
    height: int = 120,
) -> SafeString:
    """Lines for each named series (e.g. per colour) with a y-axis maximum and the time span."""
    cleaned = {
        name: [(t, v) for t, v in points if math.isfinite(v)] for name, points in series.items()
    }
    cleaned = {name: points for name, points in cleaned.items() if points}
    if not cleaned:
        return format_html('<p class="muted small empty-chart">{}: no data yet</p>', title)
    left, bottom, top_pad = 44, 18, 6
    plot_w, plot_h = width - left - 4, height - bottom - top_pad
    t0, span, top, _ = _scale(list(cleaned.values()), plot_w, plot_h, 0)
    lines = []
    for index, (name, points) in enumerate(sorted(cleaned.items())):
        colour = COLOURS.get(name, FALLBACK_COLOURS[index % len(FALLBACK_COLOURS)])
        coords = _polyline(points, t0, span, top, plot_w, plot_h)
        lines.append(
            f'<polyline fill="none" stroke="{colour}" stroke-width="1.6" points="{coords}">'
            f"<title>{escape(name)}</title></polyline>"
        )
    start = datetime.fromtimestamp(t0).astimezone().strftime("%H:%M")
    end = datetime.fromtimestamp(t0 + span).astimezone().strftime("%H:%M")
    legend = " ".join(
        f'<tspan fill="{COLOURS.get(n, "#555")}">■ {escape(n)}</tspan>' for n in sorted(cleaned)
    )
    svg = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="{escape(title)}">'
        f'<g transform="translate({left},{top_pad})">'
        f'<line x1="0" y1="{plot_h}" x2="{plot_w}" y2="{plot_h}" stroke="#ccc"/>'
        f'<line x1="0" y1="0" x2="0" y2="{plot_h}" stroke="#ccc"/>'
        f"{''.join(lines)}</g>"
        f'<text x="{left - 4}" y="{top_pad + 8}" text-anchor="end" class="axis">'
        f"{top:.3g}</text>"
        f'<text x="{left - 4}" y="{top_pad + plot_h}" text-anchor="end" class="axis">0</text>'
        f'<text x="{left}" y="{height - 4}" class="axis">{start}</text>'
        f'<text x="{width - 4}" y="{height - 4}" text-anchor="end" class="axis">{end}</text>'
        f'<text x="{left + plot_w / 2}" y="{height - 4}" text-anchor="middle" class="axis">'
        f"{escape(unit)} {legend}</text></svg>"
    )
    return mark_safe(svg)  # noqa: S308 - numbers and escaped labels only


def bars(buckets: Sequence[tuple[str, float]], *, width: int = 360, height: int = 90) -> SafeString:
    """A histogram from (label, count) pairs (e.g. input length buckets)."""
    if not buckets or not any(count for _, count in buckets):
        return format_html('<p class="muted small empty-chart">{}</p>', "no requests in window")
    top = max(count for _, count in buckets) or 1.0
    slot = width / len(buckets)
    plot_h = height - 16
    parts = []
    for index, (label, count) in enumerate(buckets):
        h = count / top * plot_h
        x = index * slot
        parts.append(
            f'<rect x="{x + 2:.1f}" y="{plot_h - h:.1f}" width="{slot - 4:.1f}" height="{h:.1f}" '
            f'fill="#2563eb"><title>≤ {escape(label)}: {count:.0f}</title></rect>'
            f'<text x="{x + slot / 2:.1f}" y="{height - 3}" text-anchor="middle" class="axis">'
            f"{escape(label)}</text>"
        )
    svg = (
        f'<svg class="chart" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
        f'role="img" aria-label="input length distribution">{"".join(parts)}</svg>'
    )
    return mark_safe(svg)  # noqa: S308 - numbers and escaped labels only
