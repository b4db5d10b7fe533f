"""Charts drawn on the server as inline SVG: no chart library, no JavaScript, nothing to
fetch, and a table of the same numbers beside each one for screen readers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from html import escape

from markupsafe import Markup

WIDTH = 600
HEIGHT = 120
PALETTE = ("#2563eb", "#d97706", "#059669", "#db2777", "#7c3aed", "#0891b2", "#65a30d")


def color(index: int) -> str:
    return PALETTE[index % len(PALETTE)]


def bars(
    buckets: Sequence[datetime],
    series: Sequence[tuple[str, Sequence[int]]],
    *,
    title: str,
    height: int = HEIGHT,
) -> Markup:
    """Stacked bars, one per bucket, one colour per series; `title` names it for
    assistive technology."""
    n = max(1, len(buckets))
    totals = [sum(values[i] for _, values in series) for i in range(len(buckets))]
    top = max([1, *totals])
    step = WIDTH / n
    gap = 1 if step > 3 else 0
    parts = [
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height + 16}" role="img" '
        f'aria-label="{escape(title)}">',
        f"<title>{escape(title)}</title>",
        f'<line x1="0" y1="{height}" x2="{WIDTH}" y2="{height}" class="axis"/>',
    ]
    for i, bucket in enumerate(buckets):
        y = float(height)
        for k, (name, values) in enumerate(series):
            value = values[i]
            if not value:
                continue
            h = value / top * (height - 4)
            y -= h
            parts.append(
                f'<rect x="{i * step:.1f}" y="{y:.1f}" width="{max(step - gap, 0.5):.1f}" '
                f'height="{h:.1f}" fill="{color(k)}"><title>{escape(name)} '
                f"{bucket:%Y-%m-%d %H:%M}: {value}</title></rect>"
            )
    if buckets:
        parts.append(
            f'<text x="0" y="{height + 13}" class="tick">{buckets[0]:%m-%d %H:%M}</text>'
            f'<text x="{WIDTH}" y="{height + 13}" class="tick" text-anchor="end">'
            f"{buckets[-1]:%m-%d %H:%M}</text>"
        )
    parts.append(f'<text x="2" y="10" class="tick">max {top}</text>')
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text in it is escaped above)


def line(
    points: Sequence[tuple[datetime, float]], *, title: str, unit: str, height: int = HEIGHT
) -> Markup:
    """A line over time (a session's power or energy)."""
    if len(points) < 2:
        return Markup("")
    t0 = points[0][0].timestamp()
    span = max(points[-1][0].timestamp() - t0, 1.0)
    top = max([1e-9, *(v for _, v in points)])
    coords = " ".join(
        f"{(t.timestamp() - t0) / span * WIDTH:.1f},{height - v / top * (height - 4):.1f}"
        for t, v in points
    )
    return Markup(  # noqa: S704 (every text in it is escaped)
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height + 16}" role="img" '
        f'aria-label="{escape(title)}"><title>{escape(title)}</title>'
        f'<line x1="0" y1="{height}" x2="{WIDTH}" y2="{height}" class="axis"/>'
        f'<polyline points="{coords}" fill="none" stroke="{PALETTE[0]}" stroke-width="2"/>'
        f'<text x="{WIDTH}" y="10" class="tick" text-anchor="end">max {top:g} {escape(unit)}</text>'
        f'<text x="0" y="{height + 13}" class="tick">{points[0][0]:%H:%M}</text>'
        f'<text x="{WIDTH}" y="{height + 13}" class="tick" text-anchor="end">'
        f"{points[-1][0]:%H:%M}</text></svg>"
    )


def hbars(rows: Sequence[tuple[str, float]], *, title: str, unit: str = "") -> Markup:
    """Horizontal bars, one per labelled value (totals per vehicle)."""
    if not rows:
        return Markup("")
    top = max([1e-9, *(v for _, v in rows)])
    row_h = 22
    label_w = 160
    height = row_h * len(rows) + 4
    parts = [
        f'<svg class="chart hchart" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-label="{escape(title)}" style="height:auto"><title>{escape(title)}</title>'
    ]
    for i, (label, value) in enumerate(rows):
        y = i * row_h + 2
        w = value / top * (WIDTH - label_w - 90)
        parts.append(
            f'<text x="0" y="{y + 15}" class="tick">{escape(label[:24])}</text>'
            f'<rect x="{label_w}" y="{y + 3}" width="{max(w, 1):.1f}" height="{row_h - 6}" '
            f'fill="{color(i)}"/><text x="{label_w + w + 6:.1f}" y="{y + 15}" class="tick">'
            f"{value:,.2f} {escape(unit)}</text>"
        )
    parts.append("</svg>")
    return Markup("".join(parts))  # noqa: S704 (every text in it is escaped above)
