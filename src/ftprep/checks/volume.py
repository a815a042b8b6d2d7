"""Failure mode 3 — too little data for the objective.

``volume.curve`` reports the learning curve ``ftprep curve`` measured last (staged training on
growing subsets, power-law fit, plateau and volume estimate; see docs/volume.md). Without a
curve it is *not run: missing a learning curve (run `ftprep curve`)*.
"""

from __future__ import annotations

from typing import Any

import orjson

from ftprep.checks.base import Check, CheckResult, Condition, Finding, Status
from ftprep.checks.registry import register
from ftprep.context import Context


@register
class VolumeCurve(Check):
    name = "volume.curve"
    failure_mode = "volume"
    description = (
        "Is there enough data for the objective? Reads the last learning curve from `ftprep "
        "curve` (a fine-tune per growing subset of the training split, or a proxy learner for "
        "labelled data), fitted as err(n) = a*n^-b + c: the asymptote, the plateau (where "
        "doubling the data gains less than curve.plateau_delta) and the examples needed for "
        "curve.target. Warns when the data is before the plateau, when the target needs more "
        "data than there is, or when the target is above the asymptote (more data of this kind "
        "won't reach it). Flags a curve computed on inputs that changed since."
    )
    requires = ("curve",)
    default_conditions = (
        Condition(
            "before_plateau",
            ">",
            0.5,
            Status.WARN,
            "doubling the training data would still gain more than curve.plateau_delta",
        ),
        Condition(
            "target_shortfall",
            ">",
            1.0,
            Status.WARN,
            "reaching curve.target needs more examples than the training split holds (ratio)",
        ),
        Condition(
            "target_unreachable",
            ">",
            0.5,
            Status.WARN,
            "curve.target lies beyond the curve's asymptote",
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        from ftprep.volume.curve import latest_path
        from ftprep.volume.report import sections

        doc: dict[str, Any] = orjson.loads(latest_path(ctx.project).read_bytes())
        n = doc["n_train"]
        tgt = doc.get("target")
        values: dict[str, Any] = {
            "n_train": n,
            "metric_at_n_train": doc["metric_at_n_train"],
            "gain_if_doubled": doc["gain_if_doubled"],
            "asymptote": doc["asymptote"]["metric"],
            "plateau_n": doc["plateau"]["n"],
            "before_plateau": int(not doc["plateau"]["past"]),
            "proxy_learner": int(bool(doc.get("learner", {}).get("proxy"))),
            "curve_created_at": doc.get("created_at"),
        }
        if doc.get("backtest"):
            values["backtest_abs_error"] = doc["backtest"]["abs_error"]
        if tgt:
            values["target"] = tgt["value"]
            values["target_unreachable"] = int(not tgt["reachable"])
            if tgt["reachable"]:
                values["n_needed"] = tgt["n_needed"]
                values["target_shortfall"] = tgt["n_needed"] / max(n, 1)
        findings = []
        stale = _changed_inputs(ctx, doc.get("inputs"))
        values["stale"] = int(bool(stale))
        if stale:
            findings.append(
                Finding(
                    "warn",
                    "curve_stale",
                    f"the learning curve was measured before these inputs changed: "
                    f"{', '.join(stale)}; rerun `ftprep curve`",
                    action="rerun `ftprep curve`",
                )
            )
        code = doc["verdict"]["code"]
        if code in ("collect_for_target", "before_plateau"):
            action = "collect more data of this kind (see the estimate)"
        elif code == "target_unreachable" or code == "past_plateau":
            action = "improve quality/coverage; more data of this kind won't help"
        else:
            action = ""
        findings.append(
            Finding("info", code, doc["verdict"]["message"], metrics=dict(values), action=action)
        )
        summary = doc["verdict"]["message"]
        if doc.get("learner", {}).get("proxy"):
            summary += " (proxy learner, not a fine-tune)"
        return self.result(
            summary=summary, values=values, findings=findings, sections=sections(doc)
        )


def _changed_inputs(ctx: Context, inputs: dict[str, str] | None) -> list[str]:
    """Sources whose fingerprint differs from the one the curve was built from."""
    if not inputs:
        return []
    from ftprep.api import fingerprint

    out = []
    for src in ctx.project.sources:
        path = ctx.project.path(src.path)
        if path is None or not path.exists():
            continue
        if inputs.get(src.name) != fingerprint(path):
            out.append(src.name)
    return out
