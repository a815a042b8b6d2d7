"""Tiny inline-SVG plots for the self-contained report (no JavaScript, no external assets).
Every label passes through :func:`html.escape`."""

from __future__ import annotations

import math
from collections.abc import Sequence
from html import escape
from typing import Any

W, H = 640, 260
PAD_L, PAD_R, PAD_T, PAD_B = 56, 16, 12, 48
PALETTE = ["#3b6fb6", "#d9822b", "#3a9a5b", "#b63b3b", "#7b5ea7", "#8c6d31", "#c04f8f", "#5f7a8a"]


def _legend(k: int, name: str, color: str, step: int = 14) -> str:
    """Legend entry ``k``: a colour swatch and the (escaped) name, right-aligned at the top. The
    swatch carries the colour: the stylesheet sets every ``.tick`` text's fill."""
    y = PAD_T + step * (k + 1)
    return (
        f'<circle cx="{W - PAD_R - 4}" cy="{y - 3.5}" r="3.5" fill="{color}"/>'
        f'<text x="{W - PAD_R - 12}" y="{y}" text-anchor="end" class="tick">{escape(name)}</text>'
    )


def _fmt(v: float) -> str:
    if v == 0:
        return "0"
    a = abs(v)
    if a >= 1e6:
        return f"{v / 1e6:.1f}M"
    if a >= 1e4:
        return f"{v / 1e3:.0f}k"
    if a >= 100:
        return f"{v:.0f}"
    if a >= 1:
        return f"{v:.1f}"
    return f"{v:.2g}"


def _frame(inner: str, xlabel: str = "", ylabel: str = "", h: int = H) -> str:
    return (
        f'<svg class="plot" viewBox="0 0 {W} {h}" width="{W}" height="{h}" role="img" '
        f'xmlns="http://www.w3.org/2000/svg">{inner}'
        f'<text x="{(W + PAD_L) / 2}" y="{h - 6}" text-anchor="middle" class="axis">{escape(xlabel)}</text>'
        f'<text x="12" y="{h / 2}" transform="rotate(-90 12 {h / 2})" text-anchor="middle" class="axis">{escape(ylabel)}</text>'
        "</svg>"
    )


def _yaxis(ymax: float, ymin: float = 0.0, h: int = H) -> str:
    out = []
    for k in range(5):
        v = ymin + (ymax - ymin) * k / 4
        y = h - PAD_B - (h - PAD_T - PAD_B) * k / 4
        out.append(
            f'<line x1="{PAD_L}" x2="{W - PAD_R}" y1="{y:.1f}" y2="{y:.1f}" class="grid"/>'
            f'<text x="{PAD_L - 4}" y="{y + 4:.1f}" text-anchor="end" class="tick">{_fmt(v)}</text>'
        )
    return "".join(out)


def bars(
    labels: Sequence[Any],
    values: Sequence[float],
    ylabel: str = "",
    xlabel: str = "",
    series: dict[str, Sequence[float]] | None = None,
) -> str:
    """One bar per label; with ``series`` ({name: values}) a group of side-by-side bars per
    label and a legend."""
    groups = dict(series) if series else {"": values}
    n = max(len(labels), max((len(v) for v in groups.values()), default=0), 1)
    vmax = max([float(v) for vs in groups.values() for v in vs] + [1e-12])
    pw = W - PAD_L - PAD_R
    ph = H - PAD_T - PAD_B
    bw = pw / n
    k = len(groups)
    parts = [_yaxis(vmax)]
    for g, (name, vs) in enumerate(groups.items()):
        color = PALETTE[g % len(PALETTE)]
        for i, (lab, v) in enumerate(zip(labels, vs, strict=False)):
            bh = ph * float(v) / vmax
            x = PAD_L + i * bw + bw * 0.1 + g * bw * 0.8 / k
            tip = f"{lab} ({name})" if name else str(lab)
            parts.append(
                f'<rect x="{x:.1f}" y="{H - PAD_B - bh:.1f}" width="{bw * 0.8 / k:.1f}" height="{bh:.1f}" '
                f'fill="{color}"><title>{escape(tip)}: {escape(_fmt(float(v)))}</title></rect>'
            )
        if name:
            parts.append(_legend(g, str(name), color))
    h = H
    if n <= 30:
        cut = [str(lab)[:20] for lab in labels]
        # the labels slope down to the left (-30°): ~6.4 px a character, half of it downward;
        # the frame grows so that the longest is not cut at its bottom edge
        drop = 14 + 3.2 * max((len(c) for c in cut), default=0) + 6 + (14 if xlabel else 0)
        h = max(H, round(H - PAD_B + drop))
        for i, c in enumerate(cut):
            x = PAD_L + i * bw
            parts.append(
                f'<text x="{x + bw / 2:.1f}" y="{H - PAD_B + 14}" text-anchor="end" class="tick" '
                f'transform="rotate(-30 {x + bw / 2:.1f} {H - PAD_B + 14})">{escape(c)}</text>'
            )
    return _frame("".join(parts), xlabel, ylabel, h=h)


def histogram(
    counts: Sequence[float],
    edges: Sequence[float],
    xlabel: str = "",
    marker: float | None = None,
    log_x: bool = False,
) -> str:
    if not counts:
        return ""
    cmax = max(max(counts), 1)
    pw = W - PAD_L - PAD_R
    ph = H - PAD_T - PAD_B

    def tx(e: float) -> float:
        lo, hi = edges[0], edges[-1]
        if log_x:
            lo, hi, e = (
                math.log10(max(lo, 1e-9)),
                math.log10(max(hi, 1e-9)),
                math.log10(max(e, 1e-9)),
            )
        return PAD_L + pw * (e - lo) / ((hi - lo) or 1)

    parts = [_yaxis(cmax)]
    for c, a, b in zip(counts, edges[:-1], edges[1:], strict=False):
        x0, x1 = tx(a), tx(b)
        bh = ph * c / cmax
        parts.append(
            f'<rect x="{x0:.1f}" y="{H - PAD_B - bh:.1f}" width="{max(x1 - x0 - 1, 0.5):.1f}" '
            f'height="{bh:.1f}" fill="{PALETTE[0]}"><title>{_fmt(a)}–{_fmt(b)}: {int(c)}</title></rect>'
        )
    for k in range(5):
        e = edges[0] + (edges[-1] - edges[0]) * k / 4
        if log_x:
            e = 10 ** (
                math.log10(max(edges[0], 1e-9))
                + (math.log10(edges[-1]) - math.log10(max(edges[0], 1e-9))) * k / 4
            )
        parts.append(
            f'<text x="{tx(e):.1f}" y="{H - PAD_B + 14}" text-anchor="middle" class="tick">{_fmt(e)}</text>'
        )
    if marker is not None and edges[0] <= marker <= edges[-1]:
        x = tx(marker)
        parts.append(
            f'<line x1="{x:.1f}" x2="{x:.1f}" y1="{PAD_T}" y2="{H - PAD_B}" class="marker"/>'
        )
    return _frame("".join(parts), xlabel, "count")


def lines(
    x: Sequence[Any], series: dict[str, Sequence[float]], xlabel: str = "", ylabel: str = ""
) -> str:
    ys = [
        float(v) for s in series.values() for v in s if v is not None and not math.isnan(float(v))
    ]
    if not ys or not x:
        return ""
    ymin, ymax = min(0.0, min(ys)), max(ys) or 1.0
    pw = W - PAD_L - PAD_R
    ph = H - PAD_T - PAD_B
    n = len(x)
    parts = [_yaxis(ymax, ymin)]
    for k, (name, s) in enumerate(series.items()):
        pts = []
        for i, v in enumerate(s):
            if v is None or math.isnan(float(v)):
                continue
            px = PAD_L + pw * (i / max(n - 1, 1))
            py = H - PAD_B - ph * (float(v) - ymin) / ((ymax - ymin) or 1)
            pts.append(f"{px:.1f},{py:.1f}")
        color = PALETTE[k % len(PALETTE)]
        parts.append(
            f'<polyline points="{" ".join(pts)}" fill="none" stroke="{color}" stroke-width="2"/>'
        )
        parts.append(_legend(k, str(name), color))
    step = max(1, n // 8)
    for i in range(0, n, step):
        px = PAD_L + pw * (i / max(n - 1, 1))
        parts.append(
            f'<text x="{px:.1f}" y="{H - PAD_B + 14}" text-anchor="middle" class="tick">{escape(str(x[i])[:12])}</text>'
        )
    return _frame("".join(parts), xlabel, ylabel)


def scatter(
    points: Sequence[Sequence[Any]],
    xlabel: str = "",
    ylabel: str = "",
    highlight: Sequence[Any] = (),
    labels: Sequence[Sequence[Any]] = (),
) -> str:
    """points: [x, y, group] (group optional). Groups in ``highlight`` are drawn larger, on top.
    labels: [x, y, text] written at those coordinates (escaped, cut to 32 characters)."""
    if not points:
        return ""
    xs = [float(p[0]) for p in points]
    ys = [float(p[1]) for p in points]
    x0, x1, y0, y1 = min(xs), max(xs), min(ys), max(ys)
    h = 360
    pw = W - PAD_L - PAD_R
    ph = h - PAD_T - PAD_B
    groups: list[str] = []
    for p in points:
        g = str(p[2]) if len(p) > 2 else ""
        if g not in groups:
            groups.append(g)
    hl = {str(g) for g in highlight}
    parts = []
    ordered = sorted(points, key=lambda p: (str(p[2]) if len(p) > 2 else "") in hl)
    for p in ordered:
        g = str(p[2]) if len(p) > 2 else ""
        color = PALETTE[groups.index(g) % len(PALETTE)]
        px = PAD_L + pw * (float(p[0]) - x0) / ((x1 - x0) or 1)
        py = h - PAD_B - ph * (float(p[1]) - y0) / ((y1 - y0) or 1)
        r = 3.5 if g in hl else 1.8
        parts.append(
            f'<circle cx="{px:.1f}" cy="{py:.1f}" r="{r}" fill="{color}" fill-opacity="0.7"/>'
        )
    placed: list[tuple[float, float, float]] = []  # (x, y, half width) of labels written
    for lx, ly, text in labels:
        label = str(text)[:32]
        half = 3.5 * len(label)  # ~7 px a character at 11 px, bold
        px = PAD_L + pw * (float(lx) - x0) / ((x1 - x0) or 1)
        px = min(max(px, half + 2), W - half - 2)  # whole inside the frame, not cut at its edge
        py = h - PAD_B - ph * (float(ly) - y0) / ((y1 - y0) or 1)
        for _ in range(4):  # moved down a line while it would overlap one already written
            if not any(abs(px - a) < half + w and abs(py - b) < 12 for a, b, w in placed):
                break
            py += 12
        else:
            continue  # no room near its inputs: left out rather than written over another
        placed.append((px, py, half))
        parts.append(
            f'<text x="{px:.1f}" y="{py:.1f}" text-anchor="middle" class="tick maplabel">'
            f"{escape(label)}</text>"
        )
    for k, g in enumerate(groups[:12]):
        parts.append(_legend(k, g[:30], PALETTE[k % len(PALETTE)], step=12))
    return _frame("".join(parts), xlabel, ylabel, h=h)
