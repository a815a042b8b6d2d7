"""Optimising the wrong objective (failure mode 8): is success defined as real outcomes, and do
the proxy metrics track them? Method: :mod:`ftprep.objectives`; docs: ``docs/objectives.md``."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from ftprep.checks.base import (
    Action,
    Check,
    CheckResult,
    Condition,
    Decision,
    Finding,
    Section,
    Status,
)
from ftprep.checks.registry import register
from ftprep.objectives import (
    Association,
    Objectives,
    Proxy,
    associate,
    load_objectives,
    outcome_values,
)

if TYPE_CHECKING:
    from ftprep.context import Context
    from ftprep.examples import Dataset


def _records(ds: Dataset, column: str) -> list[dict[str, Any]]:
    return [orjson.loads(v) if v else {} for v in ds.column(column)]


def proxy_values(ctx: Context, proxy: Proxy, records: list[dict[str, Any]]) -> np.ndarray:
    """The proxy's value per training example (NaN where it is not defined)."""
    ds = ctx.train
    n = len(ds)
    if proxy.pattern is not None:
        rx = re.compile(proxy.pattern, re.IGNORECASE)
        v = np.array([1.0 if rx.search(t) else 0.0 for t in ds.texts("response")])
    elif proxy.field is not None:
        v = np.full(n, np.nan)
        for i, rec in enumerate(records):
            x = rec.get(proxy.field)
            if isinstance(x, (bool, int | float)):
                v[i] = float(x)
            elif isinstance(x, str):
                try:
                    v[i] = float(x)
                except ValueError:
                    continue
    else:
        metric = proxy.metric or ""
        if metric == "response_words":
            v = np.array([len(t.split()) for t in ds.texts("response")], dtype=float)
        elif metric == "response_chars":
            v = np.array([len(t) for t in ds.texts("response")], dtype=float)
        elif metric == "prompt_words":
            v = np.array([len(t.split()) for t in ds.texts("prompt")], dtype=float)
        elif metric == "turns":
            v = np.asarray(ds.column("n_turns"), dtype=float)
        else:
            v = _quality_column(ctx, "overall" if metric == "quality_score" else f"c:{metric[8:]}")
    if proxy.max is not None:
        v = np.where(np.isfinite(v), (v <= proxy.max).astype(float), np.nan)
    elif proxy.min is not None:
        v = np.where(np.isfinite(v), (v >= proxy.min).astype(float), np.nan)
    return v


def _quality_column(ctx: Context, column: str) -> np.ndarray:
    if "quality" not in ctx.artifacts:
        raise ValueError("quality metrics need the quality.rubric check (ftprep.yaml: rubric)")
    table = ctx.workspace.load_table("quality_scores")
    if table is None or column not in table.column_names:
        raise ValueError(f"the quality scores have no column {column!r}")
    by_id = dict(zip(table.column("id").to_pylist(), table.column(column).to_pylist(), strict=True))
    return np.array([by_id.get(i, np.nan) for i in ctx.train.ids], dtype=float)


@register
class ProxyOutcomeCheck(Check):
    name = "objectives.proxies"
    failure_mode = "objectives"
    description = (
        "Success must be defined as real outcomes (objectives.yaml: outcomes, recorded on the "
        "examples as outcome fields), and every proxy metric the team optimises must track "
        "them. For each proxy x outcome: Spearman's rho with a 95% Fisher-z interval, the "
        "AUROC for binary outcomes and the same per source (a relation whose sign flips inside "
        "sources is flagged as Simpson's paradox). FAIL when no outcome is defined or a proxy "
        "moves against an outcome; WARN when a proxy shows no evidence of tracking one. With "
        "`exclude_unsuccessful: [outcome, ...]` examples whose binary outcome failed are "
        "excluded from the build (do not imitate unresolved conversations)."
    )
    requires = ("objectives",)
    after = ("quality.rubric",)
    default_conditions = (
        Condition("outcomes_defined", "<", 1, Status.FAIL, "success is not defined as outcomes"),
        Condition("outcomes_recorded", "<", 1, Status.WARN, "no example records any outcome value"),
        Condition("proxies_opposite", ">", 0, Status.FAIL, "proxies that move against outcomes"),
        Condition(
            "proxies_without_evidence", ">", 0, Status.WARN, "proxies not shown to track outcomes"
        ),
        Condition("simpson_flips", ">", 0, Status.WARN, "relations that reverse inside sources"),
    )

    def run(self, ctx: Context) -> CheckResult:
        path = ctx.resolve(ctx.project.objectives)
        assert path is not None
        obj = load_objectives(path)
        ds = ctx.train
        outcomes = _records(ds, "outcome")
        merged = [{**m, **o} for m, o in zip(_records(ds, "meta"), outcomes, strict=True)]
        sources = [str(s) for s in ds.column("source")]
        success = {o.name: outcome_values(o, outcomes) for o in obj.outcomes}
        recorded = {k: int(np.isfinite(v).sum()) for k, v in success.items()}
        findings: list[Finding] = []
        assoc: list[Association] = []
        errors: dict[str, str] = {}
        min_n = int(self.param("min_examples", 20))
        for proxy in obj.proxies:
            try:
                pv = proxy_values(ctx, proxy, merged)
            except ValueError as e:
                errors[proxy.name] = str(e)
                continue
            for o in obj.outcomes:
                if recorded[o.name] == 0:
                    continue
                assoc.append(associate(proxy, pv, o, success[o.name], sources, obj, min_n))
        if not obj.outcomes:
            findings.append(
                Finding(
                    "fail",
                    "no_outcomes",
                    "objectives.yaml defines no outcome: success is not tied to anything real",
                    action="name the outcomes that define success (resolved, escalated, "
                    "accepted, revenue...) and record them on the examples",
                )
            )
        for name, n in recorded.items():
            if n == 0:
                o = next(x for x in obj.outcomes if x.name == name)
                findings.append(
                    Finding(
                        "warn",
                        "outcome_not_recorded",
                        f"no example records outcome {name!r} (field {o.field!r})",
                        action="map the field in ftprep.yaml: sources[].fields.outcome",
                    )
                )
        for name, msg in errors.items():
            findings.append(Finding("warn", "proxy_unavailable", f"proxy {name!r}: {msg}"))
        for a in assoc:
            if a.verdict == "too_few":
                findings.append(
                    Finding(
                        "info",
                        "proxy_untestable",
                        f"proxy {a.proxy!r} vs outcome {a.outcome!r}: too few examples, or the "
                        "proxy barely varies, to tell whether it tracks the outcome",
                        metrics=a.to_dict(),
                    )
                )
            elif a.verdict != "tracks":
                findings.append(
                    Finding(
                        "fail" if a.verdict == "opposite" else "warn",
                        f"proxy_{a.verdict}",
                        f"proxy {a.proxy!r} vs outcome {a.outcome!r}: Spearman "
                        f"{a.rho:+.3f} [{a.low:+.3f}, {a.high:+.3f}] over {a.n} examples, "
                        f"expected {'positive' if a.expected_sign > 0 else 'negative'}"
                        + (f", AUROC {a.auroc:.3f}" if a.auroc is not None else "")
                        + (" — it moves AGAINST the outcome" if a.verdict == "opposite" else ""),
                        metrics=a.to_dict(),
                        action="do not optimise this proxy; find one that tracks the outcome",
                    )
                )
            if a.sign_flips:
                findings.append(
                    Finding(
                        "warn",
                        "simpson_flip",
                        f"proxy {a.proxy!r} vs {a.outcome!r}: pooled Spearman {a.rho:+.3f}, but "
                        f"the sign reverses inside source(s) {', '.join(a.sign_flips)}",
                        metrics=a.to_dict(),
                    )
                )
        if not obj.layers:
            findings.append(
                Finding(
                    "warn",
                    "no_layers",
                    "objectives.yaml lists no evaluation layers (unit / offline / online)",
                )
            )
        decisions = self._exclusions(ds.ids, success, obj)
        values = {
            "outcomes_defined": len(obj.outcomes),
            "outcomes_recorded": sum(1 for n in recorded.values() if n > 0),
            "outcome_coverage": {k: n / len(ds) if len(ds) else 0.0 for k, n in recorded.items()},
            "success_rate": {
                k: float(np.nanmean(v)) if np.isfinite(v).any() else None
                for k, v in success.items()
            },
            "proxies": len(obj.proxies),
            "proxies_tracking": sum(a.verdict == "tracks" for a in assoc),
            "proxies_without_evidence": sum(a.verdict == "no_evidence" for a in assoc),
            "proxies_opposite": sum(a.verdict == "opposite" for a in assoc),
            "simpson_flips": sum(bool(a.sign_flips) for a in assoc),
            "associations": [a.to_dict() for a in assoc],
            "excluded_unsuccessful": len(decisions),
        }
        sections = self._sections(obj, assoc, success, sources)
        summary = (
            f"{len(obj.outcomes)} outcome(s), {len(obj.proxies)} prox(y/ies): "
            f"{values['proxies_tracking']} tracking, {values['proxies_without_evidence']} "
            f"without evidence, {values['proxies_opposite']} opposite"
        )
        return self.result(
            summary=summary,
            values=values,
            findings=findings,
            decisions=decisions,
            sections=sections,
        )

    def _exclusions(
        self, ids: list[str], success: dict[str, np.ndarray], obj: Objectives
    ) -> list[Decision]:
        names = list(self.param("exclude_unsuccessful", []) or [])
        unknown = [n for n in names if n not in success]
        if unknown:
            raise ValueError(f"exclude_unsuccessful names unknown outcome(s): {unknown}")
        out = []
        for name in names:
            v = success[name]
            for i in np.nonzero(v == 0.0)[0]:
                out.append(
                    Decision(ids[i], Action.EXCLUDE, "outcome_failed", f"{name} was not achieved")
                )
        return out

    def _sections(
        self,
        obj: Objectives,
        assoc: list[Association],
        success: dict[str, np.ndarray],
        sources: list[str],
    ) -> list[Section]:
        out = [
            Section(
                "Do the proxies track the outcomes?",
                "table",
                {
                    "columns": [
                        "proxy",
                        "outcome",
                        "n",
                        "Spearman [95% CI]",
                        "AUROC",
                        "expected",
                        "verdict",
                        "per source",
                    ],
                    "rows": [
                        [
                            a.proxy,
                            a.outcome,
                            a.n,
                            f"{a.rho:+.3f} [{a.low:+.3f}, {a.high:+.3f}]",
                            "–" if a.auroc is None else f"{a.auroc:.3f}",
                            "positive" if a.expected_sign > 0 else "negative",
                            a.verdict,
                            ", ".join(f"{k} {v:+.2f}" for k, v in a.per_source.items()),
                        ]
                        for a in assoc
                    ],
                },
                note="AUROC: probability that a successful example has a higher proxy value "
                "than an unsuccessful one (0.5 = no relation).",
            )
        ]
        src = np.asarray(sources, dtype=object)
        for name, v in success.items():
            labels = sorted({s for s, ok in zip(sources, np.isfinite(v), strict=True) if ok})
            rates = [float(v[(src == s) & np.isfinite(v)].mean()) for s in labels]
            if labels:
                out.append(
                    Section(
                        f"Outcome {name!r} by source", "bars", {"labels": labels, "values": rates}
                    )
                )
        if obj.layers:
            out.append(
                Section(
                    "Evaluation layers",
                    "table",
                    {
                        "columns": ["layer", "what is measured"],
                        "rows": [[k, v] for layer in obj.layers for k, v in layer.items()],
                    },
                )
            )
        return out
