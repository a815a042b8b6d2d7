"""Failure mode 1 — inconsistent quality across sources and time.

``quality.rubric`` scores every training example against the project's written rubric
(``rubric:`` in ``ftprep.yaml``; see :mod:`ftprep.quality.rubric`), reports rater agreement per
criterion, shows quality by source / period / annotator with drift tests, and records a decision
for every example below the bar: ``exclude`` (tier ``drop`` or a criterion under its minimum)
or ``review`` (the borderline band), with the failing criteria as the reason code.

Parameters (``checks: {quality.rubric: {...}}``), all optional:

* ``ratings`` — calibration ratings file (overrides ``calibration.ratings`` in the rubric);
* ``period`` — period window (overrides ``strata.period``);
* ``embeddings`` — use sentence embeddings in learned criteria (default ``true``);
* ``write_sample`` — write the stratified calibration sample CSV (default ``true``);
* ``max_examples_shown`` — best and worst examples per stratum in the report (default 2);
* ``max_strata_shown`` — strata per kind with examples in the report (default 12; flagged first);
* ``min_scorer_auroc`` — a learned/judged criterion whose AUROC against the experts' held-out
  labels is below this counts in ``learned_low_agreement`` (default 0.7).
"""

from __future__ import annotations

import csv
import io
import math
from typing import Any

import numpy as np
import pyarrow as pa

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
from ftprep.context import Context
from ftprep.examples import Dataset
from ftprep.quality.calibration import RatingRow, draw_sample, read_ratings
from ftprep.quality.rubric import Criterion, Rubric, load_rubric
from ftprep.quality.score import RubricScores, describe_failure, score_dataset
from ftprep.quality.strata import compare_strata, drift, period_keys, stratum_table
from ftprep.store import atomic_write_text

TIERS = ("gold", "keep", "review", "drop")


def _r(x: float, nd: int = 4) -> float | None:
    return None if x is None or (isinstance(x, float) and math.isnan(x)) else round(float(x), nd)


@register
class QualityRubric(Check):
    name = "quality.rubric"
    failure_mode = "quality"
    description = (
        "Scores every example against the written rubric (deterministic, learned and judged "
        "criteria), checks that raters agree on each criterion, shows quality by source, period "
        "and annotator with drift tests, and excludes (or sends to review) examples below the "
        "bar with the failing criteria as reasons."
    )
    requires = ("rubric",)
    default_conditions = (
        Condition(
            "criteria_low_agreement",
            ">",
            0,
            Status.WARN,
            "criteria whose raters disagree (Krippendorff's alpha < calibration.alpha_min)",
        ),
        Condition(
            "learned_low_agreement",
            ">",
            0,
            Status.WARN,
            "learned or judged criteria whose AUROC against held-out expert labels is below "
            "min_scorer_auroc (0.7)",
        ),
        Condition(
            "strata_below",
            ">",
            0,
            Status.WARN,
            "sources or periods with significantly lower quality than the rest",
        ),
        Condition(
            "excluded_share", ">", 0.5, Status.FAIL, "more than half the data is below the bar"
        ),
        Condition(
            "excluded_share",
            ">",
            0.2,
            Status.WARN,
            "more than a fifth of the data is below the bar",
        ),
    )

    # ------------------------------------------------------------------ inputs
    def _rubric(self, ctx: Context) -> Rubric:
        path = ctx.resolve(ctx.project.rubric)
        assert path is not None
        rubric = load_rubric(path)
        if self.param("period", None):
            rubric.strata.period = str(self.param("period", "quarter"))
        return rubric

    def _ratings(self, ctx: Context, rubric: Rubric) -> tuple[list[RatingRow], str | None]:
        src = self.param("ratings", None) or rubric.calibration.ratings
        if not src:
            return [], None
        p = ctx.resolve(str(src))
        if p is None or not p.exists():
            # relative to the rubric file as a fallback
            rp = ctx.resolve(ctx.project.rubric)
            alt = rp.parent / str(src) if rp is not None else None
            if alt is None or not alt.exists():
                raise FileNotFoundError(f"calibration ratings file not found: {src}")
            p = alt
        return read_ratings(p, [c.name for c in rubric.criteria]), str(p)

    def _embeddings(
        self, ctx: Context, ds: Dataset, rubric: Rubric, notes: list[str]
    ) -> tuple[np.ndarray, np.ndarray] | None:
        if not rubric.by_kind("learned") or not self.param("embeddings", True):
            return None
        try:
            a = ctx.embeddings(ds, "prompt")
            b = ctx.embeddings(ds, "response")
        except Exception as e:
            notes.append(
                f"embeddings unavailable ({type(e).__name__}: {e}); learned criteria use text features only"
            )
            return None
        return np.asarray(a, dtype=np.float32), np.asarray(b, dtype=np.float32)

    def _judge_runner(self, ctx: Context, rubric: Rubric, findings: list[Finding]) -> Any:
        if not rubric.judge.enabled or not rubric.by_kind("judged"):
            return None
        from ftprep.quality.judge import Judge

        judge = Judge(rubric.judge, ctx.workspace.root / "llm_cache")

        def run(
            criteria: list[Criterion], prompts: list[str], responses: list[str]
        ) -> tuple[dict[str, np.ndarray], dict[str, Any]]:
            est = judge.estimate(criteria, prompts, responses)
            info: dict[str, Any] = {"estimate": est.to_dict(), "model": rubric.judge.model}
            cap = rubric.judge.max_cost_usd
            if cap is not None and est.cost_usd > cap:
                findings.append(
                    Finding(
                        "warn",
                        "judge_over_budget",
                        f"LLM judge not run: estimated ${est.cost_usd:.2f} > max_cost_usd ${cap:.2f} "
                        f"({est.requests - est.cached} uncached requests)",
                        metrics=est.to_dict(),
                        threshold=cap,
                        action="raise judge.max_cost_usd or set judge.max_examples",
                    )
                )
                return {}, info
            with ctx.progress(
                f"LLM judge ({est.requests - est.cached} requests to send)", est.requests
            ) as adv:
                vals, errors = judge.run(criteria, prompts, responses, progress=adv)
            info["stats"] = judge.client.stats.to_dict()
            info["errors"] = errors
            return vals, info

        return run

    # ------------------------------------------------------------------ run
    def run(self, ctx: Context) -> CheckResult:
        rubric = self._rubric(ctx)
        ds = ctx.train
        findings: list[Finding] = []
        notes: list[str] = []
        ratings, ratings_path = self._ratings(ctx, rubric)
        embed = self._embeddings(ctx, ds, rubric, notes)
        res = score_dataset(
            rubric,
            ds,
            ratings=ratings,
            embed=embed,
            judge_run=self._judge_runner(ctx, rubric, findings),
            seed=rubric.calibration.seed,
        )
        notes.extend(res.notes)
        n = len(ds)
        sources = ds.column("source")
        periods = period_keys(ds.column("collected_at"), rubric.strata.period)
        annotators = ds.column("annotator")

        # decisions
        decisions: list[Decision] = []
        for i in range(n):
            t = res.tiers[i]
            if t == "drop" or t == "review":
                reason, detail = describe_failure(res, i, rubric)
                action = Action.EXCLUDE if t == "drop" else Action.REVIEW
                decisions.append(Decision(res.ids[i], action, reason, detail))

        values, sections = self._report(
            ctx, rubric, res, sources, periods, annotators, findings, notes
        )
        values["calibration_ratings"] = ratings_path
        self._write_sample(ctx, rubric, ds, periods)
        ctx.artifacts["quality"] = {
            "values": values,
            "agreement": [a.to_dict() for a in res.agreement],
            "learned": res.learned,
        }
        self._save_scores(ctx, res)
        n_ex = int((res.tiers == "drop").sum())
        summary = (
            f"{n} examples scored on {len(rubric.criteria)} criteria: "
            + ", ".join(f"{int((res.tiers == t).sum())} {t}" for t in TIERS)
            + f"; mean score {values['mean_score_before']:.3f} → {values['mean_score_after']:.3f} "
            f"after excluding {n_ex}"
        )
        return self.result(
            summary=summary,
            values=values,
            findings=findings,
            decisions=decisions,
            sections=sections,
        )

    # ------------------------------------------------------------------ outputs
    def _save_scores(self, ctx: Context, res: RubricScores) -> None:
        cols: dict[str, Any] = {
            "id": pa.array(res.ids, pa.string()),
            "overall": pa.array(res.overall, pa.float64()),
            "tier": pa.array(res.tiers.tolist(), pa.string()),
            "failed": pa.array(["+".join(f) for f in res.failed], pa.string()),
        }
        for j, c in enumerate(res.criteria):
            cols[f"c:{c.name}"] = pa.array(res.unit[:, j], pa.float64())
        ctx.workspace.save_table("quality_scores", pa.table(cols))

    def _write_sample(
        self, ctx: Context, rubric: Rubric, ds: Dataset, periods: list[str | None]
    ) -> None:
        if not self.param("write_sample", True) or len(ds) == 0:
            return
        strata = [f"{s}|{p}" for s, p in zip(ds.column("source"), periods, strict=True)]
        ids = draw_sample(ds.ids, strata, rubric.calibration.sample_size, rubric.calibration.seed)
        buf = io.StringIO()
        w = csv.writer(buf)
        names = [c.name for c in rubric.criteria if c.kind != "deterministic"] or [
            c.name for c in rubric.criteria
        ]
        w.writerow(["id", "rater", *names, "source", "period", "prompt", "response"])
        pos = {x: i for i, x in enumerate(ds.ids)}
        prompts, responses = ds.column("prompt"), ds.column("response")
        for x in ids:
            i = pos[x]
            w.writerow(
                [
                    x,
                    "",
                    *([""] * len(names)),
                    strata[i].split("|")[0],
                    periods[i] or "",
                    (prompts[i] or "")[:2000],
                    (responses[i] or "")[:4000],
                ]
            )
        atomic_write_text(
            ctx.project.out_dir / "audit" / "quality_calibration_sample.csv", buf.getvalue()
        )

    def _examples(
        self, res: RubricScores, rows: np.ndarray, ds: Dataset, k: int, title: str
    ) -> list[dict[str, Any]]:
        items = []
        order = rows[np.argsort(np.nan_to_num(res.overall[rows], nan=1.0))]
        picks = list(order[:k]) + list(order[::-1][:k])
        responses = ds.table.column("response")
        for j, i in enumerate(picks):
            i = int(i)
            items.append(
                {
                    "id": res.ids[i],
                    "title": f"{title} {'worst' if j < k else 'best'}: "
                    f"score {res.overall[i]:.2f} ({res.tiers[i]})",
                    "fields": {
                        "response": str(responses[i].as_py() or "")[:600],
                        "failed": ", ".join(res.failing_codes(i)) or "-",
                    },
                }
            )
        return items

    def _report(
        self,
        ctx: Context,
        rubric: Rubric,
        res: RubricScores,
        sources: list[str],
        periods: list[str | None],
        annotators: list[str | None],
        findings: list[Finding],
        notes: list[str],
    ) -> tuple[dict[str, Any], list[Section]]:
        n = len(res.ids)
        ov = np.nan_to_num(res.overall, nan=1.0)
        kept = res.tiers != "drop"
        values: dict[str, Any] = {
            "n_examples": n,
            "n_kept": int(kept.sum()),
            "n_excluded": int((~kept).sum()),
            "n_review": int((res.tiers == "review").sum()),
            "excluded_share": _r((~kept).mean() if n else 0.0),
            "mean_score_before": _r(ov.mean() if n else float("nan")) or 0.0,
            "mean_score_after": _r(ov[kept].mean() if kept.any() else float("nan")) or 0.0,
            "p10_score_before": _r(np.percentile(ov, 10) if n else float("nan")),
            "p10_score_after": _r(np.percentile(ov[kept], 10) if kept.any() else float("nan")),
            "below_threshold_before": _r((ov < rubric.threshold).mean() if n else 0.0),
            "below_threshold_after": _r(
                (ov[kept] < rubric.threshold).mean() if kept.any() else 0.0
            ),
            "tiers": {t: int((res.tiers == t).sum()) for t in TIERS},
            "threshold": rubric.threshold,
        }
        sections: list[Section] = []
        # criteria table
        agr = {a.criterion: a for a in res.agreement}
        crit_rows = []
        for j, c in enumerate(res.criteria):
            col = res.unit[:, j]
            have = ~np.isnan(col)
            m = c.unit_minimum
            fail = (
                float(((col < m - 1e-12) & have).sum() / max(1, have.sum()))
                if m is not None
                else 0.0
            )
            a = agr.get(c.name)
            ls = res.learned.get(c.name, {})
            crit_rows.append(
                [
                    c.name,
                    c.kind,
                    c.weight,
                    c.minimum,
                    _r(float(np.nanmean(col)) if have.any() else float("nan")),
                    round(fail, 4),
                    int(have.sum()),
                    _r(a.alpha) if a else None,
                    _r(ls.get("auroc", float("nan"))) if ls else None,
                ]
            )
        values["criteria"] = {
            r[0]: {"mean": r[4], "fail_share": r[5], "scored": r[6]} for r in crit_rows
        }
        sections.append(
            Section(
                "Smaller but better",
                "table",
                {
                    "columns": [
                        "",
                        "examples",
                        "mean score",
                        "10th percentile",
                        f"share below {rubric.threshold}",
                    ],
                    "rows": [
                        [
                            "before",
                            n,
                            values["mean_score_before"],
                            values["p10_score_before"],
                            values["below_threshold_before"],
                        ],
                        [
                            "after build",
                            values["n_kept"],
                            values["mean_score_after"],
                            values["p10_score_after"],
                            values["below_threshold_after"],
                        ],
                    ],
                },
                note=f"{values['n_excluded']} excluded, {values['n_review']} kept but sent to review",
            )
        )
        sections.append(
            Section(
                "Rubric criteria",
                "table",
                {
                    "columns": [
                        "criterion",
                        "kind",
                        "weight",
                        "minimum",
                        "mean (0-1)",
                        "fail share",
                        "scored",
                        "rater alpha",
                        "held-out AUROC",
                    ],
                    "rows": crit_rows,
                },
            )
        )
        if n:
            sections.append(
                Section(
                    "Overall score",
                    "histogram",
                    {"values": [float(x) for x in np.round(ov, 3)], "xlabel": "overall score"},
                    note=f"threshold {rubric.threshold}, review from {rubric.tiers.review}, gold from {rubric.tiers.gold}",
                )
            )

        # agreement
        low = [a for a in res.agreement if a.flagged]
        values["criteria_low_agreement"] = len(low)
        values["agreement"] = {
            a.criterion: {"alpha": _r(a.alpha, 6), "kappa": _r(a.kappa, 6), "n_units": a.n_units}
            for a in res.agreement
        }
        if res.agreement:
            sections.append(
                Section(
                    "Rater agreement per criterion",
                    "table",
                    {
                        "columns": [
                            "criterion",
                            "units",
                            "raters",
                            "ratings",
                            "Krippendorff alpha",
                            "mean pairwise kappa",
                            "too vague?",
                        ],
                        "rows": [
                            [
                                a.criterion,
                                a.n_units,
                                a.n_raters,
                                a.n_ratings,
                                _r(a.alpha),
                                _r(a.kappa),
                                "yes" if a.flagged else "no",
                            ]
                            for a in res.agreement
                        ],
                    },
                    note=f"level {rubric.calibration.level}; flagged when alpha < {rubric.calibration.alpha_min}",
                )
            )
        for a in low:
            findings.append(
                Finding(
                    "warn",
                    "criterion_low_agreement",
                    f"raters disagree on {a.criterion!r}: alpha = {a.alpha:.2f} "
                    f"< {rubric.calibration.alpha_min} over {a.n_units} examples",
                    metrics=a.to_dict(),
                    threshold=rubric.calibration.alpha_min,
                    action="rewrite the definition with examples, then re-calibrate",
                )
            )
        min_auc = float(self.param("min_scorer_auroc", 0.7))
        lowl = [k for k, v in res.learned.items() if not (v.get("auroc", 1.0) >= min_auc)]
        values["learned_low_agreement"] = len(lowl)
        values["learned"] = {
            k: {kk: _r(vv) if isinstance(vv, float) else vv for kk, vv in v.items()}
            for k, v in res.learned.items()
        }
        for k in lowl:
            findings.append(
                Finding(
                    "warn",
                    "learned_scorer_disagrees",
                    f"{res.learned[k].get('kind', 'learned')} criterion {k!r} agrees poorly with expert labels "
                    f"(AUROC {res.learned[k].get('auroc', float('nan')):.2f})",
                    metrics=values["learned"][k],
                    threshold=min_auc,
                    action="add calibration labels or lower this criterion's weight",
                )
            )
        if res.judge:
            values["judge"] = res.judge

        # strata
        st = rubric.strata
        below = 0
        k_show = int(self.param("max_examples_shown", 2))
        ds = ctx.train
        strata_values: dict[str, Any] = {}
        for label, keys in (("source", sources), ("period", periods), ("annotator", annotators)):
            present = [x for x in keys if x is not None]
            if len(set(present)) < 2:
                continue
            table = stratum_table(keys, ov, res.tiers.tolist())
            kw_p, tests = compare_strata(
                keys,
                ov,
                min_n=st.min_stratum,
                alpha=st.alpha,
                min_effect=st.min_effect,
                dropped=res.tiers == "drop",
            )
            sig = {t.stratum: t for t in tests}
            for row in table:
                t = sig.get(row["stratum"])
                row["p (vs rest)"] = _r(t.p_value, 6) if t else None
                row["p (drop share)"] = _r(t.drop_p, 6) if t else None
                row["flag"] = f"significantly {t.direction}" if t and t.significant else ""
            sections.append(
                Section(
                    f"Quality by {label}",
                    "table",
                    {"columns": list(table[0].keys()), "rows": [list(r.values()) for r in table]},
                    note=f"Kruskal-Wallis p = {kw_p:.3g}" if not math.isnan(kw_p) else "",
                )
            )
            sections.append(
                Section(
                    f"Mean score by {label}",
                    "bars",
                    {"labels": [r["stratum"] for r in table], "values": [r["mean"] for r in table]},
                )
            )
            # best and worst examples of each stratum (flagged strata first, then the lowest)
            shown = sorted(table, key=lambda r: (not r["flag"], r["mean"]))[
                : int(self.param("max_strata_shown", 12))
            ]
            items: list[dict[str, Any]] = []
            keys_arr = np.asarray([x if x is not None else "(none)" for x in keys], dtype=object)
            for row in shown:
                rows_k = np.flatnonzero(keys_arr == row["stratum"])
                items.extend(self._examples(res, rows_k, ds, k_show, f"{label} {row['stratum']}"))
            sections.append(
                Section(f"Worst and best examples by {label}", "examples", {"items": items})
            )
            lows = [t for t in tests if t.significant and t.direction == "lower"]
            strata_values[label] = {
                "kruskal_p": _r(kw_p, 8),
                "lower": [t.stratum for t in lows],
                "higher": [t.stratum for t in tests if t.significant and t.direction == "higher"],
            }
            for t in lows:
                below += 1
                mask = np.asarray([x == t.stratum for x in keys])
                rows = np.flatnonzero(mask)
                findings.append(
                    Finding(
                        "warn",
                        f"low_quality_{label}",
                        f"{label} {t.stratum!r} scores lower: mean {t.mean:.3f} vs {t.rest_mean:.3f} "
                        f"elsewhere (Holm p = {t.p_value:.2g}), {t.drop_share:.0%} below the bar vs "
                        f"{t.rest_drop_share:.0%} (p = {t.drop_p:.2g}); "
                        f"{int((res.tiers[rows] == 'drop').sum())} of {len(rows)} excluded",
                        metrics={
                            "mean": _r(t.mean),
                            "rest_mean": _r(t.rest_mean),
                            "p": _r(t.p_value, 8),
                            "n": t.n,
                        },
                        example_ids=[res.ids[int(i)] for i in rows[np.argsort(ov[rows])][:200]],
                        action=f"inspect this {label}; fix or drop its examples at the source",
                    )
                )
            if label == "period":
                d = drift(keys, ov, min_n=st.min_stratum)
                strata_values["drift"] = d.to_dict()
                sections.append(
                    Section(
                        "Quality over time",
                        "lines",
                        {"x": d.periods, "series": {"mean score": [round(m, 4) for m in d.means]}},
                        note=(
                            f"Kendall tau {d.tau:.3f} (p = {d.trend_p:.2g}); change point at {d.change_at} "
                            f"(p = {d.change_p:.2g}, {d.before_mean:.3f} → {d.after_mean:.3f})"
                        )
                        if d.change_at
                        else "; ".join(d.notes),
                    )
                )
                if (
                    d.change_at
                    and d.change_p < st.alpha
                    and abs(d.after_mean - d.before_mean) >= st.min_effect
                ):
                    findings.append(
                        Finding(
                            "warn",
                            "quality_drift",
                            f"quality changes at {d.change_at}: mean {d.before_mean:.3f} before, "
                            f"{d.after_mean:.3f} from then on (p = {d.change_p:.2g}); "
                            f"trend tau = {d.tau:.3f} (p = {d.trend_p:.2g})",
                            metrics=d.to_dict(),
                            threshold=st.alpha,
                            action="compare the periods' examples and train on the current standard",
                        )
                    )
        values["strata_below"] = below
        values["strata"] = strata_values
        if notes:
            values["notes"] = notes
            sections.append(Section("Notes", "text", {"text": "\n".join(notes)}))
        return values, sections
