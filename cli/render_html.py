"""Self-contained HTML reports: one file, inline SVG plots, no script, no network.

Every plot is drawn here as SVG (no plotting library: the file stays small, opens offline, and reads
with JavaScript off; hovering a mark shows its figures through SVG ``<title>`` tooltips). Each plot
has a title, axis labels with units and a caption naming the kind of its figures (counted, estimated,
measured). Headline figures are plain HTML text above the plots.
"""

from __future__ import annotations

import html
import math
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = [
    "Chart",
    "Section",
    "bar_chart",
    "grouped_bars",
    "html_page",
    "line_chart",
    "stacked_bars",
    "treemap",
]

_PALETTE = (
    "#4e79a7",
    "#f28e2b",
    "#59a14f",
    "#e15759",
    "#76b7b2",
    "#edc948",
    "#b07aa1",
    "#ff9da7",
    "#9c755f",
    "#bab0ac",
)
_W, _H = 760, 370
_M = {"left": 86, "right": 20, "top": 36, "bottom": 96}


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _color(index: int) -> str:
    return _PALETTE[index % len(_PALETTE)]


def _nice_max(value: float) -> float:
    if value <= 0:
        return 1.0
    exponent = math.floor(math.log10(value))
    fraction = value / 10**exponent
    for step in (1.0, 2.0, 2.5, 5.0, 10.0):
        if fraction <= step:
            return float(step * 10.0**exponent)
    return float(10.0 ** (exponent + 1))


def _fmt(value: float) -> str:
    if value == 0:
        return "0"
    if abs(value) >= 100:
        return f"{value:,.0f}"
    if abs(value) >= 1:
        return f"{value:.3g}"
    return f"{value:.2g}"


@dataclass(frozen=True)
class Chart:
    """One plot: its SVG and the caption under it (what the figures are and how they were obtained)."""

    svg: str
    caption: str


def _frame(title: str, x_label: str, y_label: str, y_max: float, body: str) -> str:
    plot_h = _H - _M["top"] - _M["bottom"]
    ticks = []
    for i in range(5):
        value = y_max * i / 4
        y = _M["top"] + plot_h - plot_h * i / 4
        ticks.append(
            f'<line x1="{_M["left"]}" x2="{_W - _M["right"]}" y1="{y:.1f}" y2="{y:.1f}" '
            f'stroke="#ddd"/><text x="{_M["left"] - 6}" y="{y + 4:.1f}" text-anchor="end" '
            f'font-size="11">{_e(_fmt(value))}</text>'
        )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" '
        f'height="{_H}" role="img" aria-label="{_e(title)}" font-family="sans-serif">'
        f'<text x="{_W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">'
        f"{_e(title)}</text>{''.join(ticks)}"
        f'<text x="16" y="{_M["top"] + plot_h / 2}" text-anchor="middle" font-size="12" '
        f'transform="rotate(-90 16 {_M["top"] + plot_h / 2})">{_e(y_label)}</text>'
        f'<text x="{(_M["left"] + _W - _M["right"]) / 2}" y="{_H - 40}" text-anchor="middle" '
        f'font-size="12">{_e(x_label)}</text>{body}</svg>'
    )


def _legend(names: Sequence[str], y: float) -> str:
    """Legend entries left to right, wrapping into rows that end at ``y``."""
    rows: list[list[tuple[int, str, float]]] = [[]]
    x = float(_M["left"])
    for index, name in enumerate(names):
        width = 22 + 6.2 * len(name)
        if x + width > _W - _M["right"] and rows[-1]:
            rows.append([])
            x = float(_M["left"])
        rows[-1].append((index, name, x))
        x += width
    parts = []
    for r, row in enumerate(rows):
        row_y = y - 14 * (len(rows) - 1 - r)
        for index, name, x0 in row:
            parts.append(
                f'<rect x="{x0:.1f}" y="{row_y - 9:.1f}" width="10" height="10" fill="{_color(index)}"/>'
                f'<text x="{x0 + 14:.1f}" y="{row_y:.1f}" font-size="11">{_e(name)}</text>'
            )
    return "".join(parts)


def bar_chart(
    title: str,
    x_label: str,
    y_label: str,
    items: Sequence[tuple[str, float, str]],
    caption: str,
) -> Chart:
    """Vertical bars: ``(label, value, tooltip)`` each."""
    return grouped_bars(
        title,
        x_label,
        y_label,
        [i[0] for i in items],
        [("", [i[1] for i in items])],
        caption,
        tooltips=[[i[2]] for i in items],
    )


def grouped_bars(
    title: str,
    x_label: str,
    y_label: str,
    groups: Sequence[str],
    series: Sequence[tuple[str, Sequence[float]]],
    caption: str,
    *,
    tooltips: Sequence[Sequence[str]] | None = None,
) -> Chart:
    """Bars grouped by ``groups``, one bar per series in each group (values in the y unit)."""
    plot_w = _W - _M["left"] - _M["right"]
    plot_h = _H - _M["top"] - _M["bottom"]
    y_max = _nice_max(max((v for _, values in series for v in values), default=0.0))
    group_w = plot_w / max(1, len(groups))
    bar_w = max(2.0, group_w * 0.8 / max(1, len(series)))
    body = []
    for g, group in enumerate(groups):
        x0 = _M["left"] + g * group_w + group_w * 0.1
        for s, (name, values) in enumerate(series):
            value = values[g] if g < len(values) else 0.0
            h = plot_h * (value / y_max) if y_max else 0.0
            x = x0 + s * bar_w
            y = _M["top"] + plot_h - h
            tip = (
                tooltips[g][s]
                if tooltips and s < len(tooltips[g])
                else f"{group} {name}: {_fmt(value)}"
            )
            body.append(
                f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{bar_w - 1:.1f}" '
                f'height="{max(h, 0.5):.1f}" fill="{_color(s)}"><title>{_e(tip)}</title></rect>'
            )
        label = group if len(group) <= 14 else group[:13] + "…"
        lx = x0 + group_w * 0.4
        ly = _M["top"] + plot_h + 12
        body.append(
            f'<text x="{lx:.1f}" y="{ly:.1f}" font-size="10" text-anchor="end" '
            f'transform="rotate(-35 {lx:.1f} {ly:.1f})">{_e(label)}<title>{_e(group)}</title></text>'
        )
    if len(series) > 1 or series[0][0]:
        body.append(_legend([name for name, _ in series], _H - 8))
    return Chart(_frame(title, x_label, y_label, y_max, "".join(body)), caption)


def stacked_bars(
    title: str,
    x_label: str,
    y_label: str,
    bars: Sequence[tuple[str, Sequence[tuple[str, float]]]],
    caption: str,
) -> Chart:
    """One bar per ``(label, parts)``, its parts stacked; parts with the same name share a colour."""
    plot_w = _W - _M["left"] - _M["right"]
    plot_h = _H - _M["top"] - _M["bottom"]
    y_max = _nice_max(max((sum(v for _, v in parts) for _, parts in bars), default=0.0))
    names: list[str] = []
    for _, parts in bars:
        for name, _v in parts:
            if name not in names:
                names.append(name)
    bar_w = plot_w / max(1, len(bars))
    body = []
    for b, (label, parts) in enumerate(bars):
        x = _M["left"] + b * bar_w + bar_w * 0.2
        base = 0.0
        for name, value in parts:
            h = plot_h * value / y_max if y_max else 0.0
            y = _M["top"] + plot_h - plot_h * base / y_max - h
            body.append(
                f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{bar_w * 0.6:.1f}" '
                f'height="{max(h, 0.0):.1f}" fill="{_color(names.index(name))}">'
                f"<title>{_e(f'{label}: {name} {_fmt(value)} {y_label}')}</title></rect>"
            )
            base += value
        body.append(
            f'<text x="{x + bar_w * 0.3:.1f}" y="{_M["top"] + plot_h + 16}" font-size="11" '
            f'text-anchor="middle">{_e(label)}</text>'
        )
    body.append(_legend(names, _H - 8))
    return Chart(_frame(title, x_label, y_label, y_max, "".join(body)), caption)


@dataclass(frozen=True)
class Series:
    """A line: name and ``(x, y)`` points."""

    name: str
    points: Sequence[tuple[float, float]]
    dashed: bool = False


@dataclass(frozen=True)
class Marker:
    """A point marked on a line chart with a label."""

    x: float
    y: float
    label: str


def line_chart(
    title: str,
    x_label: str,
    y_label: str,
    series: Sequence[Series],
    caption: str,
    *,
    hlines: Sequence[tuple[str, float]] = (),
    band: tuple[str, float] | None = None,
    markers: Sequence[Marker] = (),
    log_x: bool = False,
) -> Chart:
    """Lines over x; ``hlines`` (a budget, a measured peak) across; ``band`` filled from 0 (weights)."""
    plot_w = _W - _M["left"] - _M["right"]
    plot_h = _H - _M["top"] - _M["bottom"]
    xs = [x for s in series for x, _ in s.points] or [0.0, 1.0]
    ys = [y for s in series for _, y in s.points] + [v for _, v in hlines]
    if band:
        ys.append(band[1])
    y_max = _nice_max(max(ys, default=0.0) * 1.05)

    def fx(x: float) -> float:
        lo, hi = min(xs), max(xs)
        if log_x and lo > 0:
            lo, hi, x = math.log(lo), math.log(hi), math.log(max(x, lo))
        return _M["left"] + (plot_w * (x - lo) / (hi - lo) if hi > lo else plot_w / 2)

    def fy(y: float) -> float:
        return _M["top"] + plot_h - plot_h * y / y_max

    body = []
    if band:
        body.append(
            f'<rect x="{_M["left"]}" y="{fy(band[1]):.1f}" width="{plot_w}" '
            f'height="{plot_h - (fy(band[1]) - _M["top"]):.1f}" fill="#cfd8e3">'
            f"<title>{_e(f'{band[0]}: {_fmt(band[1])} {y_label}')}</title></rect>"
        )
    for index, s in enumerate(series):
        if not s.points:
            continue
        path = " ".join(f"{fx(x):.1f},{fy(y):.1f}" for x, y in s.points)
        dash = ' stroke-dasharray="6 4"' if s.dashed else ""
        body.append(
            f'<polyline class="mark" points="{path}" fill="none" stroke="{_color(index)}" '
            f'stroke-width="2"{dash}><title>{_e(s.name)}</title></polyline>'
        )
        if len(s.points) <= 64:
            for x, y in s.points:
                body.append(
                    f'<circle cx="{fx(x):.1f}" cy="{fy(y):.1f}" r="3" fill="{_color(index)}">'
                    f"<title>{_e(f'{s.name}: x={_fmt(x)}, {_fmt(y)} {y_label}')}</title></circle>"
                )
    for index, (name, value) in enumerate(hlines):
        color = "#c00" if index == 0 else "#333"
        body.append(
            f'<line x1="{_M["left"]}" x2="{_W - _M["right"]}" y1="{fy(value):.1f}" '
            f'y2="{fy(value):.1f}" stroke="{color}" stroke-dasharray="4 3"/>'
            f'<text x="{_M["left"] + 4}" y="{fy(value) - 4:.1f}" text-anchor="start" '
            f'font-size="11" fill="{color}">{_e(name)}</text>'
        )
    for index, m in enumerate(markers):
        right = fx(m.x) > _W * 0.6
        tx = fx(m.x) - 9 if right else fx(m.x) + 9
        ty = fy(m.y) + 16 + 13 * index if fy(m.y) < _M["top"] + 40 else fy(m.y) - 8 - 13 * index
        body.append(
            f'<circle cx="{fx(m.x):.1f}" cy="{fy(m.y):.1f}" r="5" fill="none" stroke="#c00" '
            f'stroke-width="2"><title>{_e(m.label)}</title></circle>'
            f'<text x="{tx:.1f}" y="{ty:.1f}" font-size="11" '
            f'text-anchor="{"end" if right else "start"}">{_e(m.label[:60])}</text>'
        )
    lo, hi = min(xs), max(xs)
    body.append(
        f'<text x="{_M["left"]}" y="{_M["top"] + plot_h + 16}" font-size="11">{_e(_fmt(lo))}</text>'
        f'<text x="{_W - _M["right"]}" y="{_M["top"] + plot_h + 16}" font-size="11" '
        f'text-anchor="end">{_e(_fmt(hi))}</text>'
    )
    body.append(_legend([s.name for s in series], _H - 8))
    return Chart(_frame(title, x_label, y_label, y_max, "".join(body)), caption)


@dataclass(frozen=True)
class Tile:
    """One treemap tile: a name, its area value, a colour key, and whether it is marked."""

    name: str
    value: float
    key: str
    marked: bool = False
    tooltip: str = ""


def _squarify(
    tiles: Sequence[Tile], x: float, y: float, w: float, h: float
) -> list[tuple[Tile, float, float, float, float]]:
    """Slice-and-dice by rows, largest first: a simple, deterministic treemap layout."""
    items = sorted((t for t in tiles if t.value > 0), key=lambda t: -t.value)
    total = sum(t.value for t in items)
    out: list[tuple[Tile, float, float, float, float]] = []
    while items and w > 0 and h > 0:
        horizontal = w >= h
        side = h if horizontal else w
        row: list[Tile] = []
        best = math.inf
        for tile in items:
            trial = [*row, tile]
            share = sum(t.value for t in trial) / total
            thickness = (w if horizontal else h) * share
            worst = max(
                max(
                    thickness / max(side * t.value / sum(v.value for v in trial), 1e-9),
                    max(side * t.value / sum(v.value for v in trial), 1e-9) / max(thickness, 1e-9),
                )
                for t in trial
            )
            if worst > best and row:
                break
            best, row = worst, trial
        share = sum(t.value for t in row) / total
        thickness = (w if horizontal else h) * share
        offset = 0.0
        row_total = sum(t.value for t in row)
        for tile in row:
            length = side * tile.value / row_total
            if horizontal:
                out.append((tile, x, y + offset, thickness, length))
            else:
                out.append((tile, x + offset, y, length, thickness))
            offset += length
        total -= row_total
        items = items[len(row) :]
        if horizontal:
            x, w = x + thickness, w - thickness
        else:
            y, h = y + thickness, h - thickness
    return out


def treemap(title: str, tiles: Sequence[Tile], caption: str, *, unit: str) -> Chart:
    """Tiles with area proportional to their value, coloured by their key; marked tiles outlined."""
    top = 30
    keys: list[str] = []
    for tile in tiles:
        if tile.key not in keys:
            keys.append(tile.key)
    body = []
    for tile, x, y, w, h in _squarify(tiles, 4, top, _W - 8, _H - top - 40):
        stroke = ' stroke="#c00" stroke-width="3"' if tile.marked else ' stroke="#fff"'
        tip = tile.tooltip or f"{tile.name}: {_fmt(tile.value)} {unit}"
        body.append(
            f'<rect class="mark" x="{x:.1f}" y="{y:.1f}" width="{w:.1f}" height="{h:.1f}" '
            f'fill="{_color(keys.index(tile.key))}"{stroke}><title>{_e(tip)}</title></rect>'
        )
        if w > 60 and h > 16:
            label = (
                tile.name
                if len(tile.name) * 6.5 < w
                else tile.name[: max(1, int(w / 6.5) - 1)] + "…"
            )
            body.append(
                f'<text x="{x + 4:.1f}" y="{y + 13:.1f}" font-size="11" fill="#fff">{_e(label)}</text>'
            )
    body.append(_legend(keys, _H))
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" width="{_W}" '
        f'height="{_H}" role="img" aria-label="{_e(title)}" font-family="sans-serif">'
        f'<text x="{_W / 2}" y="20" text-anchor="middle" font-size="14" font-weight="bold">'
        f"{_e(title)}</text>{''.join(body)}</svg>"
    )
    return Chart(svg, caption)


@dataclass(frozen=True)
class Section:
    """A part of a report: a heading, headline facts, plots and tables (rows of cells)."""

    heading: str
    facts: Sequence[tuple[str, str]] = ()
    charts: Sequence[Chart] = ()
    tables: Sequence[tuple[str, Sequence[str], Sequence[Sequence[str]]]] = field(default=())


_STYLE = """
body{font-family:sans-serif;max-width:980px;margin:24px auto;padding:0 16px;color:#222}
h1{font-size:22px}h2{font-size:18px;border-bottom:1px solid #ccc;padding-bottom:4px;margin-top:32px}
dl.facts{display:grid;grid-template-columns:max-content auto;gap:4px 16px}dt{font-weight:bold}
figure{margin:16px 0}figcaption{font-size:12px;color:#555;max-width:760px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}td,th{border:1px solid #ddd;padding:3px 6px}
td.n{text-align:right}footer{margin-top:32px;font-size:11px;color:#777}
svg .mark:hover{opacity:.75}
"""


def html_page(title: str, sections: Sequence[Section], *, generator: str = "modelsize") -> str:
    """The whole report: one HTML document with everything inline."""
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        '<meta http-equiv="Content-Security-Policy" content="default-src \'none\'; '
        "style-src 'unsafe-inline'; img-src data:\">",
        f"<title>{_e(title)}</title><style>{_STYLE}</style></head><body>",
        f"<h1>{_e(title)}</h1>",
    ]
    for section in sections:
        parts.append(f"<section><h2>{_e(section.heading)}</h2>")
        if section.facts:
            parts.append('<dl class="facts">')
            parts += [f"<dt>{_e(k)}</dt><dd>{_e(v)}</dd>" for k, v in section.facts]
            parts.append("</dl>")
        for chart in section.charts:
            parts.append(
                f"<figure>{chart.svg}<figcaption>{_e(chart.caption)}</figcaption></figure>"
            )
        for caption, headers, rows in section.tables:
            parts.append(f"<table><caption>{_e(caption)}</caption><thead><tr>")
            parts += [f"<th>{_e(h)}</th>" for h in headers]
            parts.append("</tr></thead><tbody>")
            for row in rows:
                cells = "".join(
                    f'<td class="n">{_e(c)}</td>' if c[:1].isdigit() else f"<td>{_e(c)}</td>"
                    for c in row
                )
                parts.append(f"<tr>{cells}</tr>")
            parts.append("</tbody></table>")
        parts.append("</section>")
    parts.append(
        f"<footer>Written by {_e(generator)}. Self-contained: no scripts, no network.</footer>"
    )
    parts.append("</body></html>")
    return "\n".join(parts)
