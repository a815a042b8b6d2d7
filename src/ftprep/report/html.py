"""The self-contained HTML report: one file, inline CSS and SVG plots, no JavaScript, no
network. Jinja2 autoescaping escapes every string from the data; plots escape their labels."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import jinja2
from markupsafe import Markup

from ftprep.checks.base import FAILURE_MODES, Section
from ftprep.report import svg

if TYPE_CHECKING:
    from ftprep.api import AuditResult

_ENV = jinja2.Environment(
    loader=jinja2.PackageLoader("ftprep.report", "templates"),
    autoescape=True,
    trim_blocks=True,
    lstrip_blocks=True,
)


def render_section(s: Section) -> Markup:
    """One report section; a section that cannot be drawn says so instead of breaking the
    report."""
    try:
        return _render_section(s)
    except Exception as e:
        return Markup(
            _ENV.from_string('<p class="muted">could not draw this section: {{ e }}</p>').render(
                e=repr(e)
            )
        )


def _render_section(s: Section) -> Markup:
    d = s.data
    if s.kind == "bars":
        return Markup(
            svg.bars(
                d.get("labels", []),
                d.get("values", []),
                d.get("ylabel", ""),
                d.get("xlabel", ""),
                d.get("series"),
            )
        )
    if s.kind == "histogram":
        if "values" in d and "counts" not in d:
            import numpy as np

            counts, edges = np.histogram(
                np.asarray(d["values"], dtype=float), bins=d.get("bins", 30)
            )
            d = {**d, "counts": counts.tolist(), "edges": edges.tolist()}
        return Markup(
            svg.histogram(
                d.get("counts", []),
                d.get("edges", []),
                d.get("xlabel", ""),
                d.get("marker"),
                log_x=bool(d.get("log_x", "log" in d.get("xlabel", ""))),
            )
        )
    if s.kind == "lines":
        return Markup(
            svg.lines(d.get("x", []), d.get("series", {}), d.get("xlabel", ""), d.get("ylabel", ""))
        )
    if s.kind == "scatter":
        return Markup(
            svg.scatter(
                d.get("points", []),
                d.get("xlabel", ""),
                d.get("ylabel", ""),
                d.get("highlight", []),
                d.get("labels", []),
            )
        )
    tmpl = (
        _ENV.get_template(f"section_{s.kind}.html.j2")
        if s.kind in ("table", "matrix", "examples", "pairs", "text")
        else None
    )
    if tmpl is None:
        return Markup(_ENV.from_string("<pre>{{ data }}</pre>").render(data=repr(d)[:5000]))
    return Markup(tmpl.render(data=d, heat=_heat))


def _heat(v: Any, vmax: float) -> str:
    try:
        x = float(v) / vmax if vmax else 0.0
    except (TypeError, ValueError):
        return ""
    x = max(0.0, min(1.0, x))
    return f"background: rgba(182, 59, 59, {0.08 + 0.6 * x:.2f})" if x > 0 else ""


def render_html(res: AuditResult) -> str:
    by_mode: dict[str, list[Any]] = {}
    for r in res.results:
        by_mode.setdefault(r.failure_mode, []).append(r)
    return _ENV.get_template("report.html.j2").render(
        res=res,
        f=res.findings,
        modes=FAILURE_MODES,
        by_mode=by_mode,
        render_section=render_section,
    )
