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
    """Stacked bars, one per bucket, one colour per series (in the order given, so the
    legend matches); `title` names it for assistive technology. The bars stretch to the
    width of the page; the labels are HTML beside them, so they never stretch."""
    n = max(1, len(buckets))
    totals = [sum(values[i] for _, values in series) for i in range(len(buckets))]
    top = max([1, *totals])
    step = WIDTH / n
    gap = step * 0.15 if step > 3 else 0
    parts = [
        '<figure class="bars">',
        f'<svg class="chart" viewBox="0 0 {WIDTH} {height}" preserveAspectRatio="none" '
        f'role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>',
        f'<line x1="0" y1="{height}" x2="{WIDTH}" y2="{height}" class="axis"/>',
    ]
    for i, bucket in enumerate(buckets):
        y = float(height)
        for k, (name, values) in enumerate(series):
            value = values[i]
            if not value:
                continue
            h = value / top * (height - 2)
            y -= h
            parts.append(
                f'<rect x="{i * step:.2f}" y="{y:.2f}" width="{max(step - gap, 0.5):.2f}" '
                f'height="{h:.2f}" fill="{color(k)}"><title>{escape(name)} '
                f"{bucket:%Y-%m-%d %H:%M}: {value}</title></rect>"
            )
    parts.append("</svg>")
    if buckets:
        parts.append(
            f"<figcaption><span>{buckets[0]:%m-%d %H:%M}</span><span>highest bar {top}</span>"
            f"<span>{buckets[-1]:%m-%d %H:%M}</span></figcaption>"
        )
    parts.append("</figure>")
    return Markup("".join(parts))  # noqa: S704 (every text in it is escaped above)


def line(
    points: Sequence[tuple[datetime, float]], *, title: str, unit: str, height: int = HEIGHT
) -> Markup:
    """A line over time (a session's power or energy), labelled like `bars`."""
    if len(points) < 2:
        return Markup("")
    t0 = points[0][0].timestamp()
    span = max(points[-1][0].timestamp() - t0, 1.0)
    top = max([1e-9, *(v for _, v in points)])
    coords = " ".join(
        f"{(t.timestamp() - t0) / span * WIDTH:.2f},{height - v / top * (height - 2):.2f}"
        for t, v in points
    )
    return Markup(  # noqa: S704 (every text in it is escaped)
        f'<figure class="bars"><svg class="chart" viewBox="0 0 {WIDTH} {height}" '
        f'preserveAspectRatio="none" role="img" aria-label="{escape(title)}">'
        f"<title>{escape(title)}</title>"
        f'<polyline points="{coords}" fill="none" stroke="{PALETTE[0]}" stroke-width="2" '
        f'vector-effect="non-scaling-stroke"/></svg>'
        f"<figcaption><span>{points[0][0]:%H:%M}</span><span>{escape(title)}, highest "
        f"{top:g} {escape(unit)}</span><span>{points[-1][0]:%H:%M}</span></figcaption></figure>"
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
