"""Inline SVG charts, drawn server-side so pages and the shared report need no script and no network.

Every label may be model or dataset text: it is escaped with markupsafe before it enters the SVG, and the
result is returned as `Markup` so Jinja inserts it as-is.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

# Colour-blind-friendly palette (Okabe-Ito), cycled for series.
PALETTE = ["#0072B2", "#E69F00", "#009E73", "#D55E00", "#CC79A7", "#56B4E9", "#F0E442", "#000000"]


@dataclass
class Series:
    label: str
    points: list[tuple[float, float]]  # (x, y), x sorted ascending
    color: str | None = None


@dataclass
class Bar:
    label: str
    value: float
    note: str = ""  # shown after the value, e.g. "83%" or a source name
    href: str | None = None
    title: str = ""  # full text for the hover tooltip (labels are truncated)


@dataclass
class Band:
    """A horizontal reference line (e.g. the violation threshold at 50)."""

    y: float
    label: str
    color: str = "#b00020"
    dashed: bool = True


def _fmt(v: float) -> str:
    if v == int(v):
        return str(int(v))
    return f"{v:.3g}"


def _nice_ticks(lo: float, hi: float, n: int = 5) -> list[float]:
    if hi <= lo:
        hi = lo + 1
    raw = (hi - lo) / max(1, n)
    mag = 10 ** math.floor(math.log10(raw))
    step = next(m * mag for m in (1, 2, 2.5, 5, 10) if m * mag >= raw)
    start = math.ceil(lo / step) * step
    ticks = []
    t = start
    while t <= hi + 1e-9:
        ticks.append(round(t, 10))
        t += step
    return ticks


def _truncate(text: str, n: int) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def line_chart(
    series: Sequence[Series],
    *,
    title: str = "",
    x_label: str = "",
    y_label: str = "",
    y_range: tuple[float, float] | None = None,
    bands: Sequence[Band] = (),
    width: int = 640,
    height: int = 300,
    css_class: str = "chart line-chart",
) -> Markup:
    """A multi-series line plot with markers, axes, a legend and per-point tooltips."""
    ml, mr, mt, mb = 52, 16, 28 if title else 12, 44
    legend_rows = math.ceil(len(series) / 4) if len(series) > 1 else 0
    height_total = height + legend_rows * 18 + (8 if legend_rows else 0)
    pw, ph = width - ml - mr, height - mt - mb
    xs = [x for s in series for x, _ in s.points]
    ys = [y for s in series for _, y in s.points]
    x_lo, x_hi = (min(xs), max(xs)) if xs else (0.0, 1.0)
    if x_hi == x_lo:
        x_lo, x_hi = x_lo - 0.5, x_hi + 0.5
    if y_range is not None:
        y_lo, y_hi = y_range
    else:
        y_lo, y_hi = (min(ys), max(ys)) if ys else (0.0, 1.0)
        if y_hi == y_lo:
            y_lo, y_hi = y_lo - 1, y_hi + 1

    def sx(x: float) -> float:
        return ml + (x - x_lo) / (x_hi - x_lo) * pw

    def sy(y: float) -> float:
        return mt + ph - (y - y_lo) / (y_hi - y_lo) * ph

    out: list[str] = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{escape(css_class)}" viewBox="0 0 {width} {height_total}" '
        f'width="{width}" height="{height_total}" role="img" aria-label="{escape(title or y_label)}">'
    ]
    if title:
        out.append(f'<text x="{ml}" y="16" class="chart-title">{escape(title)}</text>')
    # grid + y ticks
    for t in _nice_ticks(y_lo, y_hi):
        y = sy(t)
        out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>')
        out.append(f'<text x="{ml - 6}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(t)}</text>')
    # x ticks: integers when the data are integers (iterations)
    integer_x = all(float(x).is_integer() for x in xs) if xs else True
    xt = _nice_ticks(x_lo, x_hi, min(10, max(1, int(x_hi - x_lo)) if integer_x else 6))
    if integer_x:
        xt = sorted({int(round(t)) for t in xt if x_lo <= round(t) <= x_hi})
    for t in xt:
        x = sx(t)
        out.append(f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{mt + ph}" y2="{mt + ph + 4}" class="axis"/>')
        out.append(f'<text x="{x:.1f}" y="{mt + ph + 17}" text-anchor="middle" class="tick">{_fmt(t)}</text>')
    out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{mt + ph}" y2="{mt + ph}" class="axis"/>')
    out.append(f'<line x1="{ml}" x2="{ml}" y1="{mt}" y2="{mt + ph}" class="axis"/>')
    if x_label:
        out.append(f'<text x="{ml + pw / 2:.1f}" y="{mt + ph + 36}" text-anchor="middle" class="axis-label">{escape(x_label)}</text>')
    if y_label:
        out.append(
            f'<text transform="translate(14,{mt + ph / 2:.1f}) rotate(-90)" text-anchor="middle" class="axis-label">{escape(y_label)}</text>'
        )
    for b in bands:
        if y_lo <= b.y <= y_hi:
            y = sy(b.y)
            dash = ' stroke-dasharray="5,4"' if b.dashed else ""
            out.append(f'<line x1="{ml}" x2="{ml + pw}" y1="{y:.1f}" y2="{y:.1f}" stroke="{escape(b.color)}"{dash} class="band"/>')
            out.append(f'<text x="{ml + pw - 4}" y="{y - 4:.1f}" text-anchor="end" class="band-label" fill="{escape(b.color)}">{escape(b.label)}</text>')
    for i, s in enumerate(series):
        color = s.color or PALETTE[i % len(PALETTE)]
        if not s.points:
            continue
        path = " ".join(f"{'M' if j == 0 else 'L'}{sx(x):.1f},{sy(y):.1f}" for j, (x, y) in enumerate(s.points))
        out.append(f'<g class="series" data-series="{escape(s.label)}">')
        out.append(f'<path d="{path}" fill="none" stroke="{escape(color)}" stroke-width="2"/>')
        for x, y in s.points:
            out.append(
                f'<circle cx="{sx(x):.1f}" cy="{sy(y):.1f}" r="3" fill="{escape(color)}">'
                f"<title>{escape(s.label)}: {_fmt(x)} → {_fmt(y)}</title></circle>"
            )
        out.append("</g>")
    if legend_rows:
        for i, s in enumerate(series):
            color = s.color or PALETTE[i % len(PALETTE)]
            lx = ml + (i % 4) * (pw / 4)
            ly = height + 8 + (i // 4) * 18
            out.append(f'<rect x="{lx:.1f}" y="{ly - 9}" width="12" height="4" fill="{escape(color)}"/>')
            out.append(f'<text x="{lx + 16:.1f}" y="{ly - 4}" class="legend">{escape(_truncate(s.label, 28))}</text>')
    if not xs:
        out.append(f'<text x="{ml + pw / 2:.1f}" y="{mt + ph / 2:.1f}" text-anchor="middle" class="empty">no data yet</text>')
    out.append("</svg>")
    return Markup("".join(out))


def bar_chart(
    bars: Sequence[Bar],
    *,
    title: str = "",
    max_value: float | None = None,
    width: int = 640,
    label_width: int = 300,
    bar_height: int = 20,
    color: str = PALETTE[0],
    css_class: str = "chart bar-chart",
    value_width: int = 230,
) -> Markup:
    """Horizontal bars with a text label on the left and the value on the right (optionally linked)."""
    mt = 24 if title else 4
    gap = 6
    height = mt + max(1, len(bars)) * (bar_height + gap) + 4
    vmax = max_value if max_value is not None else max((b.value for b in bars), default=0.0)
    vmax = vmax or 1.0
    # ~6.3 px per character at the label font size; longer labels are cut (full text in the tooltip)
    label_chars = max(8, int((label_width - 12) / 6.3))
    bw_max = max(40, width - label_width - value_width - 8)
    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="{escape(css_class)}" viewBox="0 0 {width} {max(height, 30)}" '
        f'width="{width}" height="{max(height, 30)}" role="img" aria-label="{escape(title)}">'
    ]
    if title:
        out.append(f'<text x="0" y="15" class="chart-title">{escape(title)}</text>')
    for i, b in enumerate(bars):
        y = mt + i * (bar_height + gap)
        w = max(0.0, min(1.0, b.value / vmax)) * bw_max
        tip = escape(b.title or b.label)
        label = f'<text x="{label_width - 8}" y="{y + bar_height * 0.7:.1f}" text-anchor="end" class="bar-label">{escape(_truncate(b.label, label_chars))}<title>{tip}</title></text>'
        if b.href:
            label = f'<a href="{escape(b.href)}">{label}</a>'
        out.append(f'<g class="bar">{label}')
        out.append(
            f'<rect x="{label_width}" y="{y}" width="{w:.1f}" height="{bar_height}" fill="{escape(color)}" rx="2"><title>{tip}: {_fmt(b.value)}</title></rect>'
        )
        note = f" {b.note}" if b.note else ""
        out.append(
            f'<text x="{label_width + w + 6:.1f}" y="{y + bar_height * 0.7:.1f}" class="bar-value">{_fmt(b.value)}{escape(note)}</text></g>'
        )
    if not bars:
        out.append(f'<text x="8" y="{mt + 14}" class="empty">no data</text>')
    out.append("</svg>")
    return Markup("".join(out))


@dataclass
class HeatCell:
    value: float
    share: float  # 0..1, drives the shade


@dataclass
class Heatmap:
    """Rows × columns of values rendered as an HTML table with shaded cells (long row labels wrap)."""

    columns: list[str]
    rows: list[tuple[str, list[HeatCell | None]]] = field(default_factory=list)


def heat_style(cell: HeatCell | None) -> str:
    if cell is None:
        return ""
    a = max(0.0, min(1.0, cell.share))
    # Dark text on light cells, white on dark ones.
    fg = "#fff" if a > 0.55 else "#111"
    return f"background: rgba(0, 114, 178, {0.08 + 0.92 * a:.3f}); color: {fg}"
