"""Failure mode 4 — label noise: annotator agreement, escalation, automatic label-error detection.

* ``labels.agreement`` (needs ``annotations:``): imports per-annotator labels into the workspace
  table ``annotations``, measures agreement (Krippendorff's α, Fleiss' κ, Cohen's κ per pair,
  per-category α), each annotator's reliability (κ vs leave-one-out consensus and vs expert gold),
  builds a consensus with a confidence (guarded Dawid–Skene) and escalates low-agreement examples
  to a senior expert instead of averaging them.
* ``labels.errors`` (needs a label field): out-of-fold probabilities from TF-IDF word + char
  n-grams (+ embeddings) with logistic regression, confident-learning ranking of likely label
  errors → ``review``.
* ``labels.consistency``: near-identical inputs whose outputs (or labels) conflict → ``review``.

See docs/labels.md for the method, parameters, gates and reason codes.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING, Any

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

if TYPE_CHECKING:
    from ftprep.agreement import Ratings, Weights
    from ftprep.context import Context
    from ftprep.labels.annotations import AnnotationsConfig

ESCALATIONS_TABLE = "labels_escalated"


def _r(x: float, nd: int = 4) -> float | None:
    return None if x is None or not np.isfinite(x) else round(float(x), nd)


def _snip(s: str | None, n: int = 400) -> str:
    s = s or ""
    return s if len(s) <= n else s[: n - 1] + "…"


def _float(params: dict[str, Any], key: str, default: float) -> float:
    v = params.get(key, default)
    try:
        return float(v)
    except (TypeError, ValueError):
        raise ValueError(f"checks.{key}: expected a number (got {v!r})") from None


# ============================================================================ labels.agreement
@register
class LabelAgreement(Check):
    name = "labels.agreement"
    failure_mode = "labels"
    description = (
        "Agreement between annotators (Krippendorff's α, Fleiss' κ, Cohen's κ per pair, α per "
        "label), each annotator's reliability against the leave-one-out consensus and expert "
        "gold (chance-corrected, flags annotators whose standard differs), and a per-example "
        "consensus with a confidence (majority + guarded Dawid–Skene). Examples below the "
        "agreement threshold are escalated to a senior expert (kept out of the build until "
        "arbitrated), not averaged; examples that stay below it are excluded."
    )
    requires = ("annotations",)
    default_conditions = (
        Condition(
            "alpha",
            "<",
            0.667,
            Status.WARN,
            "Krippendorff: below 0.667 even tentative conclusions are unreliable",
        ),
        Condition("alpha", "<", 0.4, Status.FAIL, "annotators barely agree beyond chance"),
        Condition(
            "escalated_share",
            ">",
            0.3,
            Status.WARN,
            "more than 30% of annotated examples need a senior expert",
        ),
        Condition(
            "flagged_annotators",
            ">",
            0,
            Status.WARN,
            "some annotators' labels differ from the others' standard",
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        from ftprep.agreement import (
            alpha_per_category,
            fleiss_kappa,
            krippendorff_alpha,
            observed_agreement,
            pair_stats,
            ratings_from_long,
        )
        from ftprep.labels.aggregate import _chance_corrected_accuracy, aggregate
        from ftprep.labels.annotations import TABLE_NAME, load_for_project
        from ftprep.labels.escalation import EscalationParams, decide, rating_agreement
        from ftprep.labels.reliability import annotator_stats

        p = self.params
        cfg, table = load_for_project(ctx.project)
        ctx.workspace.save_table(TABLE_NAME, table)
        table = _with_app_labels(ctx, table)
        budget = p.get("escalate_budget")
        esc = EscalationParams(
            # ratings: share of ratings near the median (4 of 5 within tolerance passes); with a
            # budget and no explicit threshold the budget alone decides
            escalate_below=_float(
                p,
                "escalate_below",
                float("inf") if budget is not None else 0.7 if cfg.kind == "rating" else 0.8,
            ),
            exclude_below=_float(p, "exclude_below", 0.5),
            exclude_min_labels=int(p.get("exclude_min_labels", 7)),
            min_labels=int(p.get("min_labels", 2)),
            escalate_budget=None if budget is None else float(budget),
        )
        ordinal = cfg.kind == "rating" or cfg.level in ("ordinal", "interval", "ratio")
        rows = table.to_pylist()
        train_ids = set(ctx.train.ids)
        unmatched = sorted({r["example_id"] for r in rows} - train_ids)
        res = self.result()
        if not rows:
            res.summary = "the annotations file has no labels"
            res.values = {"labels": 0}
            res.findings.append(
                Finding(
                    "warn",
                    "annotations_empty",
                    "no annotations were read",
                    action="check annotations.path and the column names",
                )
            )
            return res

        gold_set = set(cfg.gold)
        crowd = [r for r in rows if r["annotator"] not in gold_set]
        gold_rows = [r for r in rows if r["annotator"] in gold_set]
        if not crowd:
            raise ValueError("every annotation comes from a gold annotator; agreement needs others")
        value_key = "label"
        domain = cfg.scale
        if cfg.kind == "rating" and not cfg.scale:
            value_key = "rating"
        r = ratings_from_long(
            [x["example_id"] for x in crowd],
            [x["annotator"] for x in crowd],
            [x[value_key] for x in crowd],
            domain=domain,
        )
        counts = r.counts()
        unit_index = {u: i for i, u in enumerate(r.units)}

        # ---- gold: expert label per unit (majority among gold annotators)
        gold_code = np.full(r.n_units, -1, dtype=np.int64)
        if gold_rows:
            dom_lookup = {str(v): i for i, v in enumerate(r.domain.tolist())}
            if value_key == "rating":
                dom_lookup.update({str(float(v)): i for i, v in enumerate(r.domain.tolist())})
            votes: dict[int, Counter[int]] = {}
            for g in gold_rows:
                u = unit_index.get(g["example_id"])
                key = str(g[value_key]) if value_key == "label" else str(float(g["rating"]))
                if u is None or key not in dom_lookup:
                    continue
                votes.setdefault(u, Counter())[dom_lookup[key]] += 1
            for u, c in votes.items():
                gold_code[u] = c.most_common(1)[0][0]

        # ---- agreement statistics
        level = cfg.level
        if (
            level in ("interval", "ratio")
            and not np.issubdtype(r.domain.dtype, np.number)
            and cfg.scale
        ):
            level = "ordinal"  # named scale: ranks only
        alpha = krippendorff_alpha(r, level=level)
        alpha_nominal = krippendorff_alpha(r, level="nominal") if level != "nominal" else alpha
        fk = fleiss_kappa(counts)
        obs = observed_agreement(counts)
        weights: Weights = "quadratic" if ordinal else None
        ps = pair_stats(
            r,
            weights=weights,
            min_overlap=int(p.get("min_pair_overlap", 10)),
            max_pairs=int(p.get("max_pairs", 5000)),
        )
        mean_pair = (
            float(
                np.average(
                    ps.kappa[np.isfinite(ps.kappa)], weights=ps.overlap[np.isfinite(ps.kappa)]
                )
            )
            if np.isfinite(ps.kappa).any()
            else float("nan")
        )
        per_cat = alpha_per_category(r) if cfg.kind != "rating" else {}

        # ---- consensus
        method = str(p.get("method", "auto"))
        if cfg.kind == "rating":
            agreement_item, cons_code = rating_agreement(counts, _float(p, "rating_tolerance", 1.0))
            cons_code = np.where(counts.sum(axis=1) > 0, cons_code, -1)
            confidence = agreement_item
            model_rel = None
            cons_method = "median"
            notes: list[str] = []
        else:
            cons = aggregate(
                r,
                method=method,
                min_annotator_labels=int(p.get("min_annotator_labels", 30)),
                prior_strength=_float(p, "prior_strength", 10.0),
                model_weight=_float(p, "model_weight", 0.5),
            )
            cons_code = cons.label
            rows_idx = np.arange(r.n_units)
            confidence = np.where(
                cons_code >= 0, cons.posterior[rows_idx, np.maximum(cons_code, 0)], 0.0
            )
            # item agreement: crowd stability (P(a large crowd keeps the consensus label))
            agreement_item = confidence if cons.stability is None else cons.stability
            cons_method = cons.method
            notes = list(cons.notes)
            if p.get("item_prior", False):
                prior = _item_prior_agreement(ctx, r.units, counts, cons.label, p, notes)
                if prior is not None:
                    # exchangeable annotators: the prior's posterior replaces the votes-only one;
                    # with per-annotator reliabilities (Dawid–Skene) the two are averaged
                    w = 0.5 if cons.method == "dawid_skene" else 1.0
                    agreement_item = np.where(
                        np.isnan(prior), agreement_item, w * prior + (1.0 - w) * agreement_item
                    )
            model_rel = None
            if (
                cons.method == "dawid_skene"
                and cons.rater_confusion is not None
                and cons.class_prior is not None
            ):
                model_rel = _chance_corrected_accuracy(cons.rater_confusion, cons.class_prior)
                if cons.rater_supported is not None:
                    model_rel = np.where(cons.rater_supported, model_rel, np.nan)
        has_gold = gold_code >= 0
        final_code = np.where(has_gold, gold_code, cons_code)

        # ---- annotators
        stats = annotator_stats(
            r,
            gold=gold_code if has_gold.any() else None,
            ordinal=ordinal,
            model_reliability=model_rel,
            min_items=int(p.get("min_annotator_items", 20)),
            min_kappa=_float(p, "min_annotator_kappa", 0.2),
            z_threshold=_float(p, "annotator_z", 2.5),
        )
        flagged = [s for s in stats if s.flagged]

        # ---- escalation / exclusion
        prev_tab = ctx.workspace.load_table(ESCALATIONS_TABLE)
        prev: dict[str, int] = {}
        if prev_tab is not None:
            for row in prev_tab.to_pylist():
                prev[row["example_id"]] = int(row["n_labels"])
        prev_arr = np.array([prev.get(u, 0) for u in r.units], dtype=int)
        n_labels = counts.sum(axis=1)
        verdicts = decide(
            agreement_item, n_labels, params=esc, has_gold=has_gold, previous_labels=prev_arr
        )
        names = [str(v) for v in r.domain.tolist()]
        per_unit_rows: dict[str, list[dict[str, Any]]] = {}
        for x in crowd:
            per_unit_rows.setdefault(x["example_id"], []).append(x)
        in_train = np.array([u in train_ids for u in r.units])

        def _votes(u: int) -> str:
            return ", ".join(f"{names[k]}×{int(c)}" for k, c in enumerate(counts[u]) if c)

        decisions: list[Decision] = []
        escalated_now: dict[str, int] = {}
        for v in verdicts:
            uid = r.units[v.unit]
            best = names[cons_code[v.unit]] if cons_code[v.unit] >= 0 else "-"
            detail = (
                f"agreement {v.agreement:.2f} {_below(esc)} ({int(n_labels[v.unit])} labels: "
                f"{_votes(v.unit)}; consensus {best})"
            )
            if v.action == Action.ESCALATE:
                escalated_now[uid] = int(prev.get(uid) or n_labels[v.unit])
                detail += "; waiting for a senior expert's arbitration"
            elif v.reason == "unresolved_disagreement":
                detail += f"; still below after re-annotation (was escalated with {prev_arr[v.unit]} labels)"
            else:
                detail += f"; below {esc.exclude_below:g} with ≥ {esc.exclude_min_labels} labels"
            decisions.append(Decision(uid, v.action, v.reason, detail))
        decided = {d.example_id for d in decisions}

        # text reviews: consensus reject excludes; conflicting corrections escalate
        if cfg.kind == "text":
            for u, uid in enumerate(r.units):
                if uid in decided or final_code[u] < 0:
                    continue
                lab = names[final_code[u]]
                if lab == "reject":
                    decisions.append(
                        Decision(
                            uid,
                            Action.EXCLUDE,
                            "rejected_by_annotators",
                            f"annotators rejected the output ({_votes(u)})",
                        )
                    )
                elif lab == "corrected":
                    texts = {
                        " ".join((x.get("text") or "").split())
                        for x in per_unit_rows.get(uid, [])
                        if x["label"] == "corrected"
                    }
                    texts.discard("")
                    if len(texts) > 1:
                        decisions.append(
                            Decision(
                                uid,
                                Action.ESCALATE,
                                "conflicting_corrections",
                                f"{len(texts)} different corrected outputs; a senior expert picks one",
                            )
                        )
                    else:
                        decisions.append(
                            Decision(
                                uid,
                                Action.REVIEW,
                                "corrected_output",
                                "annotators corrected the output; confirm to apply the correction",
                            )
                        )
                decided.add(uid)
        # dataset label vs a confident consensus
        elif cfg.kind == "label":
            idx = {eid: i for i, eid in enumerate(ctx.train.ids)}
            train_labels = ctx.train.column("label")
            for u, uid in enumerate(r.units):
                if uid in decided or final_code[u] < 0 or uid not in idx:
                    continue
                given = train_labels[idx[uid]]
                if given is None or str(given) == names[final_code[u]]:
                    continue
                src = (
                    "expert gold"
                    if has_gold[u]
                    else f"annotators' consensus (confidence {confidence[u]:.2f})"
                )
                decisions.append(
                    Decision(
                        uid,
                        Action.REVIEW,
                        "label_disagrees_with_consensus",
                        f"dataset label {given!s} but {src} is {names[final_code[u]]} ({_votes(u)})",
                    )
                )

        # remember escalations across audits (for the "stays below threshold" rule)
        keep_prev = {k: v for k, v in prev.items() if k not in escalated_now}
        merged = {**keep_prev, **escalated_now}
        ctx.workspace.save_table(
            ESCALATIONS_TABLE,
            pa.table(
                {
                    "example_id": pa.array(list(merged), pa.string()),
                    "n_labels": pa.array(list(merged.values()), pa.int64()),
                }
            ),
        )
        ctx.artifacts["label_consensus"] = {
            r.units[u]: {
                "label": names[final_code[u]],
                "confidence": _r(float(confidence[u]), 3),
                "n_labels": int(n_labels[u]),
                "gold": bool(has_gold[u]),
            }
            for u in range(r.n_units)
            if final_code[u] >= 0
        }

        n_items = int((n_labels > 0).sum())
        judged = int(((n_labels >= esc.min_labels) & ~has_gold).sum())
        act_counts = Counter((str(d.action), d.reason) for d in decisions)
        n_esc = sum(c for (a, _), c in act_counts.items() if a == "escalate")
        n_exc = sum(c for (a, _), c in act_counts.items() if a == "exclude")
        res.values = {
            "labels": r.n_labels,
            "annotators": r.n_raters,
            "annotated_examples": n_items,
            "gold_labels": len(gold_rows),
            "level": level,
            "alpha": _r(alpha),
            "alpha_nominal": _r(alpha_nominal),
            "fleiss_kappa": _r(fk),
            "mean_pairwise_kappa": _r(mean_pair),
            "observed_agreement": _r(obs),
            "alpha_per_label": {k: _r(v) for k, v in per_cat.items()},
            "consensus_method": cons_method,
            "escalated": n_esc,
            "excluded": n_exc,
            "escalated_share": _r(n_esc / judged) if judged else 0.0,
            "excluded_share": _r(n_exc / judged) if judged else 0.0,
            "flagged_annotators": len(flagged),
            "unmatched_annotation_ids": len(unmatched),
            "examples_in_train": int(in_train.sum()),
        }
        res.decisions = decisions
        res.summary = (
            f"α = {alpha:.3f} ({level}) over {r.n_labels} labels by {r.n_raters} annotators on "
            f"{n_items} examples; {n_esc} escalated, {n_exc} excluded, "
            f"{len(flagged)} annotator(s) flagged"
        )
        for note in notes:
            res.findings.append(Finding("info", "consensus_model", note))
        if flagged:
            res.findings.append(
                Finding(
                    "warn",
                    "annotator_standard_differs",
                    f"{len(flagged)} annotator(s) label to a different standard: "
                    + "; ".join(f"{s.annotator} ({s.flag_reason})" for s in flagged[:10]),
                    metrics={"annotators": [s.to_row() for s in flagged[:50]]},
                    example_ids=sorted(
                        {
                            x["example_id"]
                            for x in crowd
                            if x["annotator"] in {s.annotator for s in flagged}
                        }
                    )[:1000],
                    action="retrain or re-brief these annotators; review the examples they labelled",
                )
            )
        if unmatched:
            res.findings.append(
                Finding(
                    "warn",
                    "annotations_unmatched",
                    f"{len(unmatched)} annotated example id(s) are not in the training data",
                    example_ids=unmatched[:200],
                    action="check that annotations.id_field matches the sources' id field (fields.id)",
                )
            )
        if n_esc:
            res.findings.append(
                Finding(
                    "warn" if judged and n_esc / judged > esc_share_warn(p) else "info",
                    "escalated",
                    f"{n_esc} example(s) escalated to a senior expert (agreement {_below(esc)})",
                    example_ids=[d.example_id for d in decisions if d.action == Action.ESCALATE],
                    action="arbitrate them in the review app (`ftprep review serve`); they stay out of the build",
                )
            )
        res.sections = self._sections(
            r, ps, stats, per_cat, res.values, act_counts, decisions, per_unit_rows, cfg, ctx
        )
        return res

    def _sections(
        self,
        r: Ratings,
        ps: Any,
        stats: list[Any],
        per_cat: dict[str, float],
        values: dict[str, Any],
        act_counts: Counter[tuple[str, str]],
        decisions: list[Decision],
        per_unit_rows: dict[str, list[dict[str, Any]]],
        cfg: AnnotationsConfig,
        ctx: Context,
    ) -> list[Section]:
        out: list[Section] = []
        out.append(
            Section(
                "Agreement",
                "table",
                {
                    "columns": ["measure", "value", "note"],
                    "rows": [
                        [
                            f"Krippendorff's α ({values['level']})",
                            values["alpha"],
                            "≥ 0.8 reliable, ≥ 0.667 tentative",
                        ],
                        ["Krippendorff's α (nominal)", values["alpha_nominal"], ""],
                        ["Fleiss' κ", values["fleiss_kappa"], "units with ≥ 2 labels"],
                        [
                            "mean Cohen's κ over annotator pairs",
                            values["mean_pairwise_kappa"],
                            "weighted by overlap",
                        ],
                        [
                            "observed agreement",
                            values["observed_agreement"],
                            "share of agreeing label pairs (not chance-corrected)",
                        ],
                        [
                            "labels / annotators / examples",
                            f"{values['labels']} / {values['annotators']} / "
                            f"{values['annotated_examples']}",
                            f"{values['gold_labels']} gold labels",
                        ],
                        ["consensus", values["consensus_method"], ""],
                    ],
                },
            )
        )
        if per_cat:
            cats = sorted(per_cat.items(), key=lambda kv: (np.nan_to_num(kv[1], nan=-2.0), kv[0]))[
                :60
            ]
            cats = [(k, v) for k, v in cats if np.isfinite(v)]
            out.append(
                Section(
                    "Krippendorff's α per label (label vs rest)",
                    "bars",
                    {
                        "labels": [k for k, _ in cats],
                        "values": [max(0.0, _r(v) or 0.0) for _, v in cats],
                    },
                    note="low values: annotators do not recognise this label consistently",
                )
            )
        shown = [s for s in stats if np.isfinite(s.loo_kappa)][:40]
        out.append(
            Section(
                "Annotator reliability: κ vs leave-one-out consensus (least reliable first)",
                "bars",
                {
                    "labels": [s.annotator for s in shown],
                    "values": [max(0.0, _r(s.loo_kappa) or 0.0) for s in shown],
                },
                note="chance-corrected: a constant or random annotator scores ≈ 0 (negative values shown as 0; "
                "exact values in the table)",
            )
        )
        out.append(
            Section(
                "Annotators",
                "table",
                {
                    "columns": [
                        "annotator",
                        "labels",
                        "κ vs consensus",
                        "agreement vs consensus",
                        "gold items",
                        "κ vs gold",
                        "model reliability",
                        "top label share",
                        "flagged",
                    ],
                    "rows": [
                        [
                            s.annotator,
                            s.n_labels,
                            _r(s.loo_kappa),
                            _r(s.loo_agreement),
                            s.gold_n,
                            _r(s.gold_kappa),
                            _r(s.model_reliability),
                            _r(s.top_label_share),
                            s.flag_reason or "",
                        ]
                        for s in stats[:200]
                    ],
                },
            )
        )
        if len(ps.kappa):
            top = np.argsort(-ps.overlap, kind="stable")[:30]
            out.append(
                Section(
                    "Cohen's κ per annotator pair (largest overlaps)",
                    "table",
                    {
                        "columns": [
                            "annotator A",
                            "annotator B",
                            "shared examples",
                            "Cohen's κ",
                            "raw agreement",
                        ],
                        "rows": [
                            [
                                r.raters[ps.a[i]],
                                r.raters[ps.b[i]],
                                int(ps.overlap[i]),
                                _r(ps.kappa[i]),
                                _r(ps.agreement[i]),
                            ]
                            for i in top
                        ],
                    },
                )
            )
            # pair κ matrix for the busiest annotators
            busiest = np.argsort(-(r.codes >= 0).sum(axis=1), kind="stable")[:15]
            pos = {int(a): i for i, a in enumerate(busiest)}
            mat: list[list[float | None]] = [[None] * len(busiest) for _ in busiest]
            for i in range(len(busiest)):
                mat[i][i] = 1.0
            for a, b, k in zip(ps.a, ps.b, ps.kappa, strict=True):
                if int(a) in pos and int(b) in pos:
                    mat[pos[int(a)]][pos[int(b)]] = mat[pos[int(b)]][pos[int(a)]] = _r(k, 3)
            names = [r.raters[i] for i in busiest]
            if len(names) >= 2 and all(v is not None for row in mat for v in row):
                out.append(
                    Section(
                        "Cohen's κ matrix (busiest annotators)",
                        "matrix",
                        {"rows": names, "columns": names, "values": mat},
                    )
                )
            labels = [str(v) for v in r.domain.tolist()]
            if len(labels) <= 20:
                for i in top[:3]:
                    a, b = r.raters[ps.a[i]], r.raters[ps.b[i]]
                    out.append(
                        Section(
                            f"Confusion: {a} (rows) vs {b} (columns)",
                            "matrix",
                            {
                                "rows": labels,
                                "columns": labels,
                                "values": ps.tables[i].astype(int).tolist(),
                            },
                            note=f"{int(ps.overlap[i])} shared examples, κ = {_r(ps.kappa[i])}",
                        )
                    )
        out.append(
            Section(
                "Escalation and exclusion",
                "table",
                {
                    "columns": ["action", "reason", "examples"],
                    "rows": [[a, rs, c] for (a, rs), c in sorted(act_counts.items())]
                    or [["-", "-", 0]],
                },
            )
        )
        shown_d = [d for d in decisions if d.action in (Action.ESCALATE, Action.EXCLUDE)][:25]
        if shown_d:
            idx = {eid: i for i, eid in enumerate(ctx.train.ids)}
            prompts = ctx.train.column("prompt")
            items = []
            for d in shown_d:
                fields: dict[str, str] = {}
                if d.example_id in idx:
                    fields["input"] = _snip(prompts[idx[d.example_id]])
                for x in per_unit_rows.get(d.example_id, [])[:12]:
                    v = x["label"] if x["label"] is not None else x["rating"]
                    extra = f" — {x['reason']}" if x.get("reason") else ""
                    fields[f"annotator {x['annotator']}"] = _snip(f"{v}{extra}", 300)
                fields["decision"] = f"{d.action}: {d.reason} — {d.detail}"
                items.append({"id": d.example_id, "title": d.reason, "fields": fields})
            out.append(Section("Escalated / excluded examples", "examples", {"items": items}))
        return out


def _exact_input_conflicts(
    ctx: Context, ds: Any, outputs: list[str], use_labels: bool, out_sim: float
) -> list[tuple[int, int, float, float]]:
    """Pairs of examples with identical normalised inputs whose labels differ (or whose outputs'
    embedding cosine is below ``out_sim``)."""
    from ftprep.examples import Dataset

    groups: dict[str, list[int]] = {}
    for i, t in enumerate(ds.texts("prompt")):
        groups.setdefault(" ".join(t.lower().split()), []).append(i)
    cand = [g[:20] for g in groups.values() if len(g) > 1]
    if not cand:
        return []
    emb: dict[int, np.ndarray] = {}
    if not use_labels:
        idx = sorted({i for g in cand for i in g})
        sub = Dataset(ds.table.take(pa.array(idx, pa.int64())), name=ds.name)
        vecs = ctx.embeddings(sub, "response")
        emb = {i: vecs[k] for k, i in enumerate(idx)}
    pairs: list[tuple[int, int, float, float]] = []
    for g in cand:
        for x in range(len(g)):
            for y in range(x + 1, len(g)):
                a, b = g[x], g[y]
                if outputs[a].strip() == outputs[b].strip():
                    continue
                sim = 0.0 if use_labels else float(emb[a] @ emb[b])
                if sim < out_sim:
                    pairs.append((a, b, 1.0, sim))
    return pairs


def _item_prior_agreement(
    ctx: Context,
    units: list[str],
    counts: np.ndarray,
    label: np.ndarray,
    p: dict[str, Any],
    notes: list[str],
) -> np.ndarray | None:
    """Crowd stability with a per-example prior from the example's text (``item_prior``): the
    embeddings of ``item_prior_field``, reduced to ``item_prior_components`` principal components,
    feed an out-of-fold Dirichlet-multinomial regression of the votes (see
    :func:`ftprep.labels.aggregate.item_prior_stability`). ``None`` (with a note) when too few
    annotated examples have text."""
    from ftprep.labels.aggregate import item_prior_stability

    field = str(p.get("item_prior_field", "prompt"))
    ds = ctx.train.filter_ids(set(units))
    pos = {i: k for k, i in enumerate(ds.ids)}
    rows = [pos.get(u, -1) for u in units]
    have = np.array([k >= 0 for k in rows]) & (label >= 0)
    min_items = int(p.get("item_prior_min_examples", 200))
    if have.sum() < min_items:
        notes.append(
            f"item_prior: only {int(have.sum())} annotated examples with text "
            f"(< item_prior_min_examples {min_items}): votes only"
        )
        return None
    emb = np.asarray(ctx.embeddings(ds, field), dtype=float)[[k for k in rows if k >= 0]]
    z = emb - emb.mean(axis=0)
    u, sv, _ = np.linalg.svd(z, full_matrices=False)
    nc = min(int(p.get("item_prior_components", 64)), u.shape[1])
    x = u[:, :nc] * sv[:nc]
    x = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    idx = np.flatnonzero(np.array([k >= 0 for k in rows]))
    keep = have[idx]
    out = np.full(len(units), np.nan)
    out[idx[keep]] = item_prior_stability(
        x[keep],
        counts[idx[keep]],
        label[idx[keep]],
        l2=_float(p, "item_prior_l2", 300.0),
        folds=int(p.get("item_prior_folds", 5)),
    )
    notes.append(
        f"item_prior: per-example Dirichlet prior from the {field} text ({nc} components, "
        f"out of fold) on {int(keep.sum())} examples"
    )
    return out


def _below(esc: Any) -> str:
    """How an escalated example's agreement compares: threshold and/or budget."""
    parts = [f"< {esc.escalate_below:g}"] if np.isfinite(esc.escalate_below) else []
    if esc.escalate_budget is not None:
        parts.append(f"among the lowest {esc.escalate_budget:.0%}")
    return ", ".join(parts)


def esc_share_warn(params: dict[str, Any]) -> float:
    return float(params.get("escalated_share_warn", 0.3))


# ============================================================================ labels.errors
@register
class LabelErrors(Check):
    name = "labels.errors"
    failure_mode = "labels"
    description = (
        "Likely label errors in single-annotated classification data: out-of-fold probabilities "
        "from logistic regression over TF-IDF word + character n-grams and the offline "
        "embeddings, ranked by confident learning. Likely errors go to review (never dropped)."
    )
    requires = ("labels",)
    default_conditions = (
        Condition(
            "estimated_error_rate", ">", 0.05, Status.WARN, "more than 5% of labels look wrong"
        ),
        Condition(
            "estimated_error_rate", ">", 0.15, Status.FAIL, "more than 15% of labels look wrong"
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        from ftprep.labels.errors import DEFAULT_C, FeatureSpec, find_label_errors

        p = self.params
        ds = ctx.train
        field = str(p.get("field", "prompt"))
        texts = ds.texts(field)
        labels = ds.column("label")
        res = self.result()
        present = [x for x in labels if x is not None and x != ""]
        counts = Counter(present)
        min_per_class = int(p.get("min_per_class", 5))
        usable = {k for k, c in counts.items() if c >= min_per_class}
        if len(usable) < 2 or len(present) < int(p.get("min_examples", 50)):
            res.summary = f"not enough labelled data ({len(present)} labels, {len(usable)} classes with ≥ {min_per_class})"
            res.values = {"labelled": len(present), "classes": len(counts)}
            return res
        lab_used = [x if x in usable else None for x in labels]
        emb = None
        notes: list[str] = []
        if p.get("embeddings", True):
            try:
                emb = ctx.embeddings(ds, field)
            except Exception as e:  # embeddings are optional features
                notes.append(f"embeddings unavailable ({type(e).__name__}: {e}); TF-IDF only")
        spec = FeatureSpec(
            max_word_features=int(p.get("max_word_features", 200_000)),
            max_char_features=int(p.get("max_char_features", 300_000)),
            short_text_chars=int(p.get("short_text_chars", 600)),
            embedding_ensemble=_float(p, "embedding_ensemble", 0.5),
            embedding_weight=_float(p, "embedding_weight", 1.0),
        )
        with ctx.progress("label errors: out-of-fold model", None):
            ranking, probs, classes, mask = find_label_errors(
                texts,
                lab_used,
                embeddings=emb,
                n_folds=int(p.get("folds", 5)),
                c=_float(p, "C", DEFAULT_C),
                features=spec,
                seed=int(p.get("seed", 0)),
                max_share=_float(p, "max_share", 0.5),
            )
        ids = [i for i, m in zip(ds.ids, mask, strict=True) if m]
        sub_texts = [t for t, m in zip(texts, mask, strict=True) if m]
        y = np.array([classes.index(str(x)) for x, m in zip(lab_used, mask, strict=True) if m])
        max_review = int(p.get("max_review", 5000))
        order = np.argsort(-ranking.score, kind="stable")
        flagged_order = [i for i in order if ranking.flagged[i]][:max_review]
        decisions = [
            Decision(
                ids[i],
                Action.REVIEW,
                "likely_label_error",
                f"label {classes[y[i]]} (p={ranking.p_given[i]:.2f}) but the out-of-fold model predicts "
                f"{classes[ranking.predicted[i]]} (p={ranking.p_predicted[i]:.2f})",
            )
            for i in flagged_order
        ]
        n = len(ids)
        acc = float((probs.argmax(axis=1) == y).mean())
        res.decisions = decisions
        res.values = {
            "labelled": n,
            "classes": len(classes),
            "oof_accuracy": _r(acc),
            "estimated_errors": ranking.estimated_errors,
            "estimated_error_rate": _r(ranking.estimated_errors / n) if n else 0.0,
            "flagged": int(ranking.flagged.sum()),
            "sent_to_review": len(decisions),
            "embeddings": emb is not None,
        }
        res.summary = (
            f"{ranking.estimated_errors} likely label errors among {n} labelled examples "
            f"({ranking.estimated_errors / max(n, 1):.1%}); out-of-fold accuracy {acc:.3f}"
        )
        for note in notes:
            res.findings.append(Finding("info", "features", note))
        if decisions:
            res.findings.append(
                Finding(
                    "warn",
                    "likely_label_errors",
                    f"{len(decisions)} example(s) sent to review as likely label errors",
                    example_ids=[d.example_id for d in decisions],
                    metrics={"estimated_errors": ranking.estimated_errors},
                    action="review them in the review app; correct or confirm each label",
                )
            )
        per_class = Counter(classes[y[i]] for i in np.flatnonzero(ranking.flagged))
        top_cls = per_class.most_common(40)
        res.sections.append(
            Section(
                "Likely label errors per given label",
                "bars",
                {"labels": [k for k, _ in top_cls], "values": [v for _, v in top_cls]},
            )
        )
        if len(classes) <= 20:
            res.sections.append(
                Section(
                    "Confident joint (rows: given label, columns: likely true label)",
                    "matrix",
                    {
                        "rows": classes,
                        "columns": classes,
                        "values": np.round(ranking.joint, 1).tolist(),
                    },
                )
            )
        res.sections.append(
            Section(
                "Top likely label errors",
                "examples",
                {
                    "items": [
                        {
                            "id": ids[i],
                            "title": f"{classes[y[i]]} → {classes[ranking.predicted[i]]}",
                            "fields": {
                                "text": _snip(sub_texts[i], 600),
                                "given label": classes[y[i]],
                                "model suggests": classes[ranking.predicted[i]],
                                "evidence": f"p(given)={ranking.p_given[i]:.3f}, p(suggested)={ranking.p_predicted[i]:.3f}, "
                                f"score={ranking.score[i]:.3f}",
                            },
                        }
                        for i in order[:30]
                    ]
                },
            )
        )
        ctx.artifacts["label_error_scores"] = {
            ids[i]: _r(float(ranking.score[i]), 4) for i in flagged_order
        }
        return res


# ============================================================================ labels.consistency
@register
class LabelConsistency(Check):
    name = "labels.consistency"
    failure_mode = "labels"
    description = (
        "kNN inconsistency: near-identical inputs (embedding cosine ≥ input_similarity) whose "
        "outputs conflict (output cosine < output_similarity, or different labels) — the same "
        "task labelled two ways. Both examples go to review."
    )
    default_conditions = (
        Condition(
            "inconsistent_share",
            ">",
            0.02,
            Status.WARN,
            "more than 2% of examples have a near-identical input with a conflicting output",
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        from ftprep.labels.errors import knn_inconsistency

        p = self.params
        ds = ctx.train
        res = self.result()
        n = len(ds)
        max_n = int(p.get("max_examples", 30_000))
        if n < 2:
            res.summary = "fewer than two examples"
            res.values = {"pairs": 0, "inconsistent_share": 0.0}
            return res
        labels = ds.column("label")
        use_labels = sum(x is not None for x in labels) >= 0.5 * n
        outputs = (
            [str(x) if x is not None else "" for x in labels]
            if use_labels
            else ds.texts("response")
        )
        in_sim = _float(p, "input_similarity", 0.95)
        out_sim = 0.5 if use_labels else _float(p, "output_similarity", 0.6)
        exact_only = n > max_n
        if exact_only:
            # too many for the nearest-neighbour search: identical inputs (after normalising case
            # and whitespace) only, O(n)
            pairs = _exact_input_conflicts(ctx, ds, outputs, use_labels, out_sim)
        else:
            # compared without the template lines they repeat: an instruction over every prompt
            # makes every pair of inputs look near-identical (CLINC150 as Alpaca records: 1,287
            # examples sent to review instead of 12)
            x_in = ctx.text_embeddings(ctx.train_texts_without_templates("prompt", p))
            if use_labels:
                uniq = {v: i for i, v in enumerate(sorted(set(outputs)))}
                x_out = np.zeros((n, len(uniq)), dtype=np.float32)
                x_out[np.arange(n), [uniq[v] for v in outputs]] = 1.0
            else:
                x_out = ctx.text_embeddings(ctx.train_texts_without_templates("response", p))
            pairs = knn_inconsistency(
                x_in,
                x_out,
                input_similarity=in_sim,
                output_similarity=out_sim,
                k=int(p.get("k", 5)),
                outputs=outputs,
            )
        ids = ds.ids
        prompts = ds.texts("prompt")
        what = "label" if use_labels else "output"
        decisions: dict[str, Decision] = {}
        for a, b, si, so in pairs:
            for i, j in ((a, b), (b, a)):
                if ids[i] not in decisions:
                    decisions[ids[i]] = Decision(
                        ids[i],
                        Action.REVIEW,
                        f"inconsistent_{what}",
                        f"input nearly identical to {ids[j]} (cosine {si:.3f}) but the {what}s differ "
                        f"(similarity {so:.2f})",
                    )
        share = len(decisions) / n
        res.decisions = list(decisions.values())
        res.values = {
            "pairs": len(pairs),
            "examples": len(decisions),
            "inconsistent_share": _r(share),
            "compared": what,
            "mode": "identical inputs only" if exact_only else "nearest neighbours",
        }
        res.summary = f"{len(pairs)} near-identical input pair(s) with conflicting {what}s ({len(decisions)} examples)"
        if pairs:
            res.findings.append(
                Finding(
                    "warn" if share > 0.02 else "info",
                    f"inconsistent_{what}s",
                    f"{len(decisions)} example(s) have a near-identical input with a different {what}",
                    example_ids=list(decisions)[:1000],
                    action="decide which version is right in the review app",
                )
            )
            res.sections.append(
                Section(
                    f"Near-identical inputs with conflicting {what}s",
                    "pairs",
                    {
                        "pairs": [
                            {
                                "left": f"[{ids[a]}] {_snip(prompts[a], 300)}\n→ {_snip(outputs[a], 300)}",
                                "right": f"[{ids[b]}] {_snip(prompts[b], 300)}\n→ {_snip(outputs[b], 300)}",
                                "note": f"input cosine {si:.3f}, {what} similarity {so:.2f}",
                            }
                            for a, b, si, so in pairs[:30]
                        ]
                    },
                )
            )
        return res


def _with_app_labels(ctx: Context, table: pa.Table) -> pa.Table:
    """Labels entered in the review app (workspace table ``review_annotations``, same columns)
    join the imported ones; an app label replaces the imported label of the same annotator on
    the same example."""
    app = ctx.workspace.load_table("review_annotations")
    if app is None or app.num_rows == 0:
        return table
    mine = set(zip(app["example_id"].to_pylist(), app["annotator"].to_pylist(), strict=True))
    keep = [
        (e, a) not in mine
        for e, a in zip(
            table["example_id"].to_pylist(), table["annotator"].to_pylist(), strict=True
        )
    ]
    return pa.concat_tables(
        [table.filter(pa.array(keep)), app.select(table.column_names).cast(table.schema)]
    )
