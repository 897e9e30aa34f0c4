"""Server-side SVG charts: no JavaScript library, no outside network, prints well."""
from __future__ import annotations

from datetime import date
from decimal import Decimal

from django.utils.html import escape
from django.utils.safestring import mark_safe

from ..money import usd_text

PALETTE = ["#4f46e5", "#0891b2", "#16a34a", "#d97706", "#db2777", "#7c3aed", "#64748b"]
MAX_SERIES = 6


def _nice_max(value: Decimal) -> Decimal:
    if value <= 0:
        return Decimal(1)
    exp = value.adjusted()
    for mult in (1, 2, Decimal("2.5"), 5, 10):
        candidate = Decimal(mult) * Decimal(10) ** exp
        if candidate >= value:
            return candidate
    return Decimal(10) ** (exp + 1)


def _money(value: Decimal) -> str:
    if value >= 100:
        return f"${value:,.0f}"
    if value >= 1:
        return f"${value:,.2f}"
    return f"${value.normalize():f}" if value else "$0"


def stacked_bars(days: list[date], series: list[dict], *, width: int = 900, height: int = 260,
                 key: str = "model") -> dict:
    """Daily stacked bars, one colour per series (a model, or a team with key="team": the
    rects carry data-model / data-team). Returns {"svg", "legend"}."""
    if len(series) > MAX_SERIES:
        rest = series[MAX_SERIES - 1:]
        other = [sum(vals, Decimal(0)) for vals in zip(*(s["values"] for s in rest), strict=True)]
        series = [*series[:MAX_SERIES - 1], {key: "other", "values": other, "total": sum(other, Decimal(0))}]
    colored = [{**s, "color": PALETTE[i % len(PALETTE)]} for i, s in enumerate(series)]
    totals = [sum((s["values"][i] for s in series), Decimal(0)) for i in range(len(days))]
    top = _nice_max(max(totals, default=Decimal(0)))
    labels = [_money(top * i / 4) for i in range(5)]
    left = max(58, 7 * max(len(label) for label in labels) + 10)  # room for the longest y label
    right, top_pad, bottom = 8, 10, 26
    plot_w, plot_h = width - left - right, height - top_pad - bottom
    slot = plot_w / max(len(days), 1)
    bar_w = max(slot * 0.72, 1)
    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {width} {height}" class="chart" role="img" '
             f'aria-label="Daily spend by {key}, last {len(days)} days">']
    for i, label in enumerate(labels):  # grid and y labels
        y = top_pad + plot_h - plot_h * i / 4
        parts.append(f'<line x1="{left}" y1="{y:.1f}" x2="{width - right}" y2="{y:.1f}" class="grid"/>')
        parts.append(f'<text x="{left - 6}" y="{y + 4:.1f}" class="axis" text-anchor="end">{label}</text>')
    for i, day in enumerate(days):
        x = left + slot * i + (slot - bar_w) / 2
        base = top_pad + plot_h
        for s in colored:
            value = s["values"][i]
            if value <= 0:
                continue
            h = float(value / top) * plot_h
            base -= h
            parts.append(
                f'<rect x="{x:.1f}" y="{base:.1f}" width="{bar_w:.1f}" height="{max(h, 0.5):.1f}" '
                f'fill="{s["color"]}" data-{key}="{escape(s[key])}" data-day="{day.isoformat()}">'
                f'<title>{day:%b %d} · {escape(s[key])}: {usd_text(value)} (exact {value.normalize():f})</title></rect>')
        if i % 5 == (len(days) - 1) % 5:
            parts.append(f'<text x="{x + bar_w / 2:.1f}" y="{height - 8}" class="axis" text-anchor="middle">'
                         f'{day:%b} {day.day}</text>')
    parts.append("</svg>")
    legend = [{"model": s[key], "name": s[key], "color": s["color"], "total": s["total"]} for s in colored]
    return {"svg": mark_safe("".join(parts)), "legend": legend}
