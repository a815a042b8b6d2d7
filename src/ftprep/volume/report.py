"""Report sections for a learning curve (shared by ``curve.html`` and the ``volume.curve``
check) and the standalone ``curve.html`` page. Every string reaches the page through Jinja2
autoescaping or the report renderer (:func:`ftprep.report.html.render_section`)."""

from __future__ import annotations

from typing import Any

import jinja2

from ftprep.checks.base import Section
from ftprep.report.html import render_section


def _n(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if x < 1e9 else f"{x:.2g}"


def _interval(iv: list[float | None], fmt: str = "n") -> str:
    if not iv or (iv[0] is None and iv[1] is None):
        return ""
    f = _n if fmt == "n" else (lambda v: "∞" if v is None else f"{v:.4g}")
    return f"{f(iv[0])} – {'∞' if iv[1] is None else f(iv[1])}"


def sections(doc: dict[str, Any]) -> list[Section]:
    grid = doc["curve"]["n"]
    # plotted as the error the power law models (1 - metric when higher is better): the plot's
    # y axis starts at 0, where the error curve's approach to its asymptote stays visible
    higher = doc["fit"]["higher_is_better"]

    def err(v: float | None) -> float | None:
        return None if v is None else (1 - v if higher else v)

    measured: dict[float, list[float]] = {}
    for p in doc["points"]:
        measured.setdefault(float(p["n"]), []).append(float(p["metric"]))
    mean = {k: sum(v) / len(v) for k, v in measured.items()}
    band = f"{doc['fit']['level']:.0%} band"
    series: dict[str, list[float | None]] = {
        "measured (mean)": [err(mean.get(float(x))) for x in grid],
        "fitted": [err(v) for v in doc["curve"]["metric"]],
        f"{band} (more data helps less)": [
            err(v) for v in doc["curve"]["low" if higher else "high"]
        ],
        f"{band} (more data helps more)": [
            err(v) for v in doc["curve"]["high" if higher else "low"]
        ],
    }
    rows = [["metric now (fitted)", f"{doc['metric_at_n_train']:.4f}", ""]]
    rows.append(["gain if the data doubled", f"{doc['gain_if_doubled']:+.4f}", ""])
    rows.append(
        [
            "asymptote (best this kind of data reaches)",
            f"{doc['asymptote']['metric']:.4f}",
            _interval(doc["asymptote"]["interval"], "v"),
        ]
    )
    pl = doc["plateau"]
    rows.append(
        [
            f"plateau (doubling gains < {pl['delta']:g})",
            f"{_n(pl['n'])} examples"
            + (f" (metric there {pl['metric']:.4f})" if "metric" in pl else ""),
            _interval(pl["interval"]),
        ]
    )
    tgt = doc.get("target")
    if tgt:
        rows.append(
            [
                f"examples to reach the target {tgt['value']:g}",
                _n(tgt["n_needed"]) if tgt["reachable"] else "not reachable (asymptote short)",
                _interval(tgt["interval"]),
            ]
        )
    bt = doc.get("backtest")
    if bt:
        rows.append(
            [
                f"backtest: fit up to {_n(bt['fitted_up_to_n'])}, predict {_n(bt['n'])}",
                f"predicted {bt['predicted']:.4f}, measured {bt['measured']:.4f}",
                f"|error| {bt['abs_error']:.4f}",
            ]
        )
    p = doc["fit"]["params"]
    note = (
        f"{doc['fit']['model']} with err = {doc['fit']['err']}; a = {p['a']:.4g}, "
        f"b = {p['b']:.4g}, c = {p['c']:.4g} ({doc['fit']['method']}, rmse {doc['fit']['rmse']:.3g}, "
        f"{doc['fit']['bootstrap']} bootstrap refits). The plot shows the error err(n)."
    )
    for w in doc["fit"].get("warnings", []):
        note += " Warning: " + w + "."
    learner = doc.get("learner", {})
    out = [
        Section("Verdict", "text", {"text": doc["verdict"]["message"]}, note=doc.get("note", "")),
        Section(
            "Learning curve",
            "lines",
            {
                "x": [_n(x) for x in grid],
                "series": series,
                "xlabel": "training examples (log scale)",
                "ylabel": ("1 - " if higher else "") + str(learner.get("metric", "metric")),
            },
            note=note,
        ),
        Section("Estimates", "table", {"columns": ["quantity", "value", "interval"], "rows": rows}),
        Section(
            "Measured points",
            "table",
            {
                "columns": ["n", "seed", "metric", "stage"],
                "rows": [
                    [_n(q["n"]), q.get("seed"), f"{q['metric']:.4f}", q.get("stage") or ""]
                    for q in doc["points"]
                ],
            },
        ),
    ]
    return out


_PAGE = jinja2.Environment(autoescape=True).from_string(
    """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<title>ftprep curve — {{ doc.project.name }}</title>
<style>
body { font: 14px/1.45 system-ui, sans-serif; margin: 0; color: #1d2330; background: #f6f7f9; }
header { background: #1d2330; color: #fff; padding: 18px 28px; } header h1 { margin: 0; font-size: 20px; }
main { padding: 16px 28px 60px; max-width: 1100px; }
section.card { background: #fff; border: 1px solid #dde1e7; border-radius: 8px; padding: 14px 18px; margin: 14px 0; }
table { border-collapse: collapse; font-size: 13px; } td, th { border: 1px solid #dde1e7; padding: 4px 8px; text-align: left; }
th { background: #eef1f5; } .muted { color: #6b7280; } .small { font-size: 12px; }
svg.plot { max-width: 100%; height: auto; background: #fff; }
svg .grid { stroke: #e5e7eb; } svg .tick, svg .axis { font-size: 10px; fill: #4b5563; }
</style></head><body>
<header><h1>ftprep curve — {{ doc.project.name }}</h1>
<div class="small">{{ doc.created_at }} · ftprep {{ doc.ftprep_version }} · {{ doc.n_train }} training examples
{% if doc.n_validation %}· validation {{ doc.n_validation }}{% endif %} · learner: {{ doc.learner.kind }}</div></header>
<main>{% for s in sections %}<section class="card"><h3>{{ s.title }}</h3>{{ render(s) }}
{% if s.note %}<div class="muted small">{{ s.note }}</div>{% endif %}</section>{% endfor %}</main>
</body></html>
"""
)


def render_page(doc: dict[str, Any]) -> str:
    return _PAGE.render(doc=doc, sections=sections(doc), render=render_section)
