"""Failure mode 2: training inputs differ from production inputs.

``distribution.coverage``: which production regions (including small tail ones) the training
inputs do not cover or cover too thinly, the share of production traffic there, importance
weights and a resampling plan toward production proportions (with the effective sample size it
costs) and a data-collection list. ``distribution.shift``: a classifier two-sample test with its
effect size over a training-vs-training baseline, per-item shift scores and the surface features
and words that explain the shift. Method and parameters: ``docs/distribution.md``.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Iterator
from dataclasses import astuple, dataclass
from itertools import islice
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

from ftprep.checks.base import (
    Check,
    CheckResult,
    Condition,
    Finding,
    NotRun,
    Section,
    Status,
)
from ftprep.checks.registry import register
from ftprep.distribution.coverage import MIN_PROD, MIN_TRAIN, CoverageParams
from ftprep.distribution.estimate import estimate_coverage
from ftprep.distribution.labelshift import LabelShiftParams, is_label_set
from ftprep.distribution.regions import RegionParams, examples_needed
from ftprep.distribution.shift import MIN_PER_SIDE, ShiftParams, classifier_test
from ftprep.distribution.template import TemplateLine, TemplateParams, strip_templates
from ftprep.distribution.text import drop_long_numbers
from ftprep.distribution.weights import (
    WeightParams,
    effective_sample_size,
    resampling_plan,
)

if TYPE_CHECKING:
    from ftprep.context import Context
    from ftprep.examples import Dataset

ARTIFACT = "distribution"
ARTIFACT_VERSION = 1
TRAINING_LABELS_SHOWN = 3  # labels of a region's training inputs in the artifact and the report
LARGE_PRODUCTION = 100_000  # more production inputs than this, read whole: suggest a sample


def _require(n_train: int, n_prod: int, min_train: int, min_prod: int, what: str) -> None:
    if n_train < min_train or n_prod < min_prod:
        raise NotRun(
            f"{what} needs at least {min_train} training and {min_prod} production inputs "
            f"(got {n_train} and {n_prod})"
        )


@dataclass(slots=True)
class _Inputs:
    """Training and production inputs as the distribution checks compare them: template lines
    taken out (``template.py``; ``*_cmp``, what the shift test reads), and long numbers too
    (``*_cov``, what the coverage estimate reads and both embed: ``xt``, ``xp``); ``train`` /
    ``prod`` keep the texts as they are, for display."""

    train: list[str]
    prod: list[str]
    train_cmp: list[str]
    prod_cmp: list[str]
    train_cov: list[str]
    prod_cov: list[str]
    xt: np.ndarray
    xp: np.ndarray
    templates: list[TemplateLine]
    template_params: TemplateParams


def _inputs(ctx: Context, params: dict[str, Any], model: str | None) -> _Inputs:
    """Once per run for both distribution checks (same template settings, number masking and
    model)."""
    tp = TemplateParams.from_dict(params)
    drop = bool(params.get("drop_long_numbers", True))

    def compute() -> _Inputs:
        assert ctx.production is not None
        train, prod = ctx.train.texts("prompt"), ctx.production.texts("prompt")
        t_cmp, p_cmp, found = strip_templates(train, prod, tp)
        # order and ticket numbers: what they are says nothing about coverage
        t_cov = drop_long_numbers(t_cmp) if drop else t_cmp
        p_cov = drop_long_numbers(p_cmp) if drop else p_cmp
        xt, xp = ctx.text_embeddings(t_cov, model), ctx.text_embeddings(p_cov, model)
        return _Inputs(train, prod, t_cmp, p_cmp, t_cov, p_cov, xt, xp, found, tp)

    return ctx.memo(("distribution inputs", astuple(tp), drop, model), compute)


AUTO_LABEL_FIELDS = (
    "label",
    "response",
    "meta.label",
    "meta.intent",
    "meta.category",
    "meta.class",
    "meta.topic",
    "meta.domain",
    "meta.scenario",
    "meta.subject",
    "meta.task",
    # last, the most heuristic: the final answers with every number masked (templated answers
    # that carry the class and a running number, "Routing your refund request (case 48213).")
    "response#",
)


_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")


def _label_values(ds: Dataset, field: str) -> list[str]:
    """The values of ``field`` per training example; ``<field>#``: with every number masked."""
    if field.endswith("#"):
        return [_NUMBER.sub("#", v) for v in _label_values(ds, field[:-1])]
    if field in ("label", "response", "source", "area"):
        return [str(v or "").strip() for v in ds.column(field)]
    if field.startswith("meta."):
        key = field[len("meta.") :]
        out = []
        for m in ds.column("meta"):
            v = orjson.loads(m).get(key) if m else None
            out.append("" if v is None else str(v).strip())
        return out
    raise ValueError(
        "labels: expected auto, none, label, response, source, area or meta.<key> (a # after "
        f"any of them masks numbers), not {field!r}"
    )


def training_labels(
    ds: Dataset, spec: str, lp: LabelShiftParams
) -> tuple[str | None, list[str] | None, str]:
    """(field, labels, note): the training labels the label-shift estimate uses. ``auto`` takes
    the first of the declared ``label`` field, the final answer and the usual ``meta`` keys whose
    values form a closed label set (classification-style data, e.g. intent names); a named field is used as given."""
    if spec in ("none", "off"):
        return None, None, "label-shift estimate off (labels: none)"
    if spec != "auto":
        vals = _label_values(ds, spec)
        missing = sum(1 for v in vals if not v)
        if missing or len(set(vals)) < 2:
            return (
                None,
                None,
                (
                    f"labels: {spec}: {missing} training example(s) without a value, "
                    f"{len(set(vals))} distinct value(s); label-shift estimate not run"
                ),
            )
        return spec, vals, f"labels from {spec} ({len(set(vals))} labels)"
    for field, vals in auto_label_candidates(ds, lp):
        return field, vals, f"labels from {field} ({len(set(vals))} labels, detected)"
    return None, None, "no closed label set among " + ", ".join(AUTO_LABEL_FIELDS)


def auto_label_candidates(ds: Dataset, lp: LabelShiftParams) -> Iterator[tuple[str, list[str]]]:
    """Each field of ``AUTO_LABEL_FIELDS`` whose values form a closed label set, in that order,
    read only when asked for (``labels: auto`` takes the first the inputs predict); a field with
    the same values as one before it (``response#`` of answers without numbers) is left out."""
    seen: list[list[str]] = []
    for field in AUTO_LABEL_FIELDS:
        vals = _label_values(ds, field)
        if is_label_set(vals, lp) and vals not in seen:
            seen.append(vals)
            yield field, vals


def _training_near(d: dict[str, Any]) -> str:
    """The report's cell for a region's training inputs: count, mean importance weight and,
    with labels, the most common ones."""
    if not d["n_training"]:
        return "none"
    cell = f"{d['n_training']}, weight ×{d['weighted_ratio']:.2f}"
    top = d.get("training_labels") or []
    if top:
        cell += ": " + ", ".join(f"{t['label']} {t['count']}" for t in top)
    return cell


def _parents_first(regions: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The regions in their order, each sub-region moved right after the cluster it lies in."""
    subs: dict[str, list[dict[str, Any]]] = {}
    for d in regions:
        if d["within"]:  # build_regions sets it only to a cluster it returns
            subs.setdefault(d["within"], []).append(d)
    out = []
    for d in regions:
        if not d["within"]:
            out.append(d)
            out.extend(subs.get(d["id"], []))
    return out


def _pca2(x: np.ndarray) -> np.ndarray:
    c = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(c, full_matrices=False)
    return c @ vt[:2].T


MAPS = {"tsne": "t-SNE", "pca": "PCA"}


def _map2(x: np.ndarray, method: str, seed: int) -> np.ndarray:
    """2-D layout of the (centred, unit) embeddings for the report's map. ``tsne`` (default):
    neighbours stay together, so topics form islands and a missing topic shows as an island of
    production only (3.4 s for the 3,000 points shown on 2 cores; PCA 0.1 s); ``pca``: the two directions of
    largest variance, faster, but topics overlap in one cloud. Fewer than 50 points: PCA."""
    if method not in MAPS:
        raise ValueError(f"map: expected one of {', '.join(MAPS)}, not {method!r}")
    if method == "pca" or len(x) < 50:
        return _pca2(x)
    from sklearn.manifold import TSNE

    c = x - x.mean(axis=0)
    c = c / np.maximum(np.linalg.norm(c, axis=1, keepdims=True), 1e-12)
    tsne = TSNE(2, init="pca", perplexity=30.0, max_iter=500, random_state=seed)
    return np.asarray(tsne.fit_transform(c.astype(np.float32)))


def _artifact(ctx: Context) -> dict[str, Any]:
    art = ctx.artifacts.setdefault(ARTIFACT, {"version": ARTIFACT_VERSION})
    assert isinstance(art, dict)
    return art


@register
class Coverage(Check):
    name = "distribution.coverage"
    failure_mode = "distribution"
    description = (
        "Coverage of production inputs by training inputs: per-item uncovered flags calibrated "
        "on a held-out slice of training (nearest-neighbour distance, kNN density ratio, "
        "production-only vocabulary, lexical distance to the semantic neighbours, and the "
        "confidence of a classifier of the training labels, or of k-means clusters of training "
        "where it has none), production regions with their "
        "production vs training share, uncovered, under-covered and tail regions with labels and "
        "examples, importance weights toward production proportions (kNN density ratio; a calibrated "
        "label-shift estimate when training carries labels) with their effective sample "
        "size, per-label production share estimates, and a data-collection list. FAIL when more "
        "than 5% of production falls in uncovered regions; WARN above 1%, or when more than 10% "
        "falls in under-covered ones."
    )
    requires = ("production",)
    default_conditions = (
        Condition(
            "uncovered_region_share",
            ">",
            0.01,
            Status.WARN,
            "share of production inputs in regions the training data does not cover",
        ),
        Condition(
            "uncovered_region_share",
            ">",
            0.05,
            Status.FAIL,
            "share of production inputs in regions the training data does not cover",
        ),
        Condition(
            "under_covered_share",
            ">",
            0.10,
            Status.WARN,
            "share of production inputs in regions training covers too thinly",
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        assert ctx.production is not None
        model = self.param("embeddings", None)
        cp = CoverageParams.from_dict(self.params)
        rp = RegionParams.from_dict(self.params)
        wp = WeightParams.from_dict(
            {k[len("weight_") :]: v for k, v in self.params.items() if k.startswith("weight_")}
            | {"seed": cp.seed}
        )
        train, prod = ctx.train, ctx.production
        _require(len(train), len(prod), MIN_TRAIN, MIN_PROD, "the coverage estimate")
        inp = _inputs(ctx, self.params, model)
        t_texts, p_texts, xt, xp = inp.train, inp.prod, inp.xt, inp.xp
        with ctx.progress("distribution: coverage", None):
            lp = LabelShiftParams.from_dict(
                {
                    k[len("label_shift_") :]: v
                    for k, v in self.params.items()
                    if k.startswith("label_shift_")
                }
                | {"seed": cp.seed}
            )
            spec = str(self.param("labels", "auto"))
            label_field, labels, label_note = training_labels(train, spec, lp)
            est = estimate_coverage(xt, xp, inp.train_cov, inp.prod_cov, labels, cp, rp, wp, lp)
            # auto: a closed set the inputs do not predict (multiple-choice letters, yes/no
            # answers) gives way to the next detected field, e.g. a declared meta.subject
            ls = est.label_shift
            if spec == "auto" and ls is not None and not ls.usable:
                skipped: list[str] = []
                for field, vals in islice(auto_label_candidates(train, lp), 1, None):
                    skipped.append(
                        f"{label_field} not predictable from the inputs "
                        f"({ls.information:.1%} of their entropy explained)"
                    )
                    label_field, labels = field, vals
                    label_note = (
                        f"labels from {field} ({len(set(vals))} labels, detected; "
                        + "; ".join(skipped)
                        + ")"
                    )
                    est = estimate_coverage(
                        xt, xp, inp.train_cov, inp.prod_cov, labels, cp, rp, wp, lp
                    )
                    ls = est.label_shift
                    if ls is None or ls.usable:
                        break
        cov, regions, weights, ls = est.cov, est.regions, est.weights, est.label_shift
        shift = ls if ls is not None and ls.usable else None  # the estimate, when it was made
        p_ids, t_ids = prod.ids, train.ids
        n_p = len(p_ids)
        unc_regions = [r for r in regions if r.status == "uncovered"]
        unc_top = [r for r in unc_regions if not r.within]  # sub-regions lie inside these
        subs = Counter(r.within for r in unc_regions if r.within)  # sub-regions per cluster
        n_subs = sum(subs.values())
        under = [r for r in regions if r.status == "under-covered"]
        in_unc = np.zeros(n_p, dtype=bool)
        for r in unc_regions:  # flagged items of uncovered regions (a mixed region's covered
            in_unc[r.prod_items[cov.flagged[r.prod_items]]] = True  # members do not count)
        ess = effective_sample_size(weights)
        plan = resampling_plan(weights, seed=cp.seed)
        values = {
            "uncovered_region_share": float(in_unc.mean()),
            "uncovered_item_share": float(cov.flagged.mean()),
            "uncovered_regions": len(unc_top),
            # tails inside uncovered clusters (a small missing topic among others)
            "uncovered_subregions": n_subs,
            "tail_regions": sum(1 for r in unc_top if r.kind == "tail"),
            "under_covered_regions": len(under),
            # the union: a tail region can lie inside an under-covered cluster
            "under_covered_share": float(
                len(set().union(*(r.prod_items.tolist() for r in under))) / max(n_p, 1)
            ),
            "regions": len(regions),
            "score_threshold": cov.threshold,
            "target_fpr": cp.fpr,
            # how far production's low scores sit above the held-out slice's (batch difference),
            # added to the held-out threshold (batch_quantile)
            "batch_shift": cov.batch_shift,
            # the same correction of the nearest-training distances, for thin-vs-missing
            "nn_batch_shift": cov.nn_batch_shift,
            "holdout_size": cov.holdout_size,
            "evidence": cov.combined,
            "pseudo_labels": cov.pseudo_labels,  # k-means stand-ins for absent labels (0: none)
            # with labels: the share of their entropy a classifier explains on held-out training
            # (below label_shift_min_information they are replaced by the stand-ins)
            "label_information": None
            if math.isnan(cov.label_information)
            else round(cov.label_information, 4),
            "nn_distance_median": float(np.median(cov.nn_distance)),
            "holdout_nn_distance": cov.holdout_nn_distance_q,
            "effective_sample_size": ess,
            "ess_fraction": ess / max(len(weights), 1),
            # kNN weights: the same estimate's ESS share between two random parts of training
            # (no shift: its noise alone); None for label-shift weights
            "ess_fraction_no_shift": None
            if math.isnan(est.ess_no_shift)
            else round(est.ess_no_shift, 4),
            "max_weight": float(weights.max()) if len(weights) else 0.0,
            # a sub-region's examples are counted in its cluster
            "examples_needed": int(sum(r.needed for r in regions if not r.within)),
            "n_training": len(t_ids),
            "n_production": n_p,
            # lines repeated verbatim by many inputs, compared without (template.py)
            "template_lines": len(inp.templates),
            "embeddings": model or ctx.project.embeddings,
            "label_field": label_field,
            "n_labels": len(ls.labels) if ls is not None else 0,
            "weights": "calibrated label shift"
            if est.calibrated
            else "knn density ratio + label shift"
            if shift is not None
            else "knn density ratio",
        }
        label_rows = shift.table() if shift is not None else []
        n_t = len(t_ids)
        for row in label_rows:  # the regions' rule, per label
            n_have = round(row["training_share"] * n_t)
            row["needed_examples"] = examples_needed(
                row["production_share"], n_have, n_t, rp.target_coverage
            )
        under_labels = [
            r for r in label_rows if r["ratio"] >= rp.under_ratio and r["production_share"] >= 0.001
        ]
        values["under_represented_labels"] = len(under_labels)
        noise = (
            ""
            if values["ess_fraction_no_shift"] is None
            else f" ({values['ess_fraction_no_shift']:.0%} with no shift: estimator noise)"
        )
        res = self.result(
            values=values,
            summary=(
                f"{values['uncovered_region_share']:.1%} of production in {len(unc_top)} uncovered "
                f"region(s){f' (+{n_subs} sub-regions)' if n_subs else ''}; "
                f"{len(under)} under-covered region(s); "
                + (
                    f"{len(under_labels)} label(s) under-represented ({label_field}); "
                    if shift is not None
                    else ""
                )
                + f"reweighting keeps {values['ess_fraction']:.0%} effective sample size{noise}"
            ),
        )
        labels_arr = np.asarray(labels, dtype=object) if labels is not None else None
        # the labels of the training inputs nearest each region: the region's own topic says
        # "too thin", another topic says "absent" (credit-card questions whose nearest training
        # inputs are labelled as bank transfers); only labels the inputs predict say so
        near_labels = {
            r.id: Counter(labels_arr[r.train_items].tolist()).most_common(TRAINING_LABELS_SHOWN)
            for r in regions
            if labels_arr is not None and shift is not None
        }
        for r in unc_top + under:
            inside = (
                f"; {subs[r.id]} sub-region(s) in the artifact's regions" if r.id in subs else ""
            )
            if near_labels.get(r.id):
                inside += "; its training inputs are labelled " + ", ".join(
                    f"{k} ({c})" for k, c in near_labels[r.id]
                )
            res.findings.append(
                Finding(
                    severity="info",
                    code="uncovered_region" if r.status == "uncovered" else "under_covered_region",
                    message=(
                        f"{r.status} {r.kind} region '{r.label}': {r.prod_share:.1%} of production, "
                        f"{r.train_share:.1%} of training ({r.basis}{inside})"
                    ),
                    metrics={
                        "production_share": r.prod_share,
                        "training_share": r.train_share,
                        "uncovered_fraction": r.uncovered_frac,
                        "needed_examples": r.needed,
                    },
                    threshold=rp.uncovered_share if r.status == "uncovered" else rp.under_ratio,
                    example_ids=[p_ids[i] for i in r.prod_items],
                    action=f"collect about {r.needed} training examples like these",
                )
            )
        prod_cfg = ctx.project.production
        if n_p > LARGE_PRODUCTION and prod_cfg is not None and prod_cfg.sample is None:
            res.findings.append(
                Finding(
                    severity="info",
                    code="production_not_sampled",
                    message=(
                        f"the production file was read whole ({n_p:,} inputs): reading, embedding "
                        "and the neighbour searches grow with it; production.sample streams a "
                        "reproducible sample of the size you set instead"
                    ),
                    metrics={"n_production": n_p},
                    threshold=LARGE_PRODUCTION,
                    action=f"set production.sample (e.g. {LARGE_PRODUCTION // 5}) in ftprep.yaml",
                )
            )
        if ls is not None and not ls.usable:
            res.findings.append(
                Finding(
                    severity="info",
                    code="labels_not_predictable",
                    message=(
                        f"training labels ({label_field}) are not predictable from the inputs "
                        f"(a classifier explains {ls.information:.1%} of their entropy on "
                        f"examples it was not fitted on): no label-shift estimate, kNN density-ratio weights instead, "
                        f"k-means stand-ins for the label evidence of the uncovered score"
                    ),
                    metrics={"information": ls.information},
                    threshold=lp.min_information,
                    action="declare another label field (labels: meta.<field>) or labels: none",
                )
            )
        for row in under_labels:
            assert labels_arr is not None
            res.findings.append(
                Finding(
                    severity="info",
                    code="under_represented_label",
                    message=(
                        f"label '{row['label']}' ({label_field}): about {row['production_share']:.1%} "
                        f"of production (label-shift estimate), {row['training_share']:.1%} of "
                        f"training (x{row['ratio']:.1f})"
                    ),
                    metrics={k: row[k] for k in ("production_share", "training_share", "ratio")},
                    threshold=rp.under_ratio,
                    example_ids=[t_ids[i] for i in np.nonzero(labels_arr == row["label"])[0][:20]],
                    action=(
                        f"collect about {row['needed_examples']} more examples of this label "
                        "(or up-weight it: build.resample: production)"
                    ),
                )
            )
        region_dicts = [r.to_dict(p_ids, p_texts) for r in regions]
        for r, d in zip(regions, region_dicts, strict=True):
            if r.id in near_labels:
                d["training_labels"] = [{"label": str(k), "count": c} for k, c in near_labels[r.id]]
        art = _artifact(ctx)
        art["label_shift"] = {
            "field": label_field,
            "note": label_note,
            "production_inputs_used": ls.n_production if ls is not None else 0,
            # flagged uncovered inputs no training label claims (label_shift_open_min_confidence)
            "production_inputs_unassigned": ls.n_unassigned if ls is not None else 0,
            "em_iterations": ls.iterations if ls is not None else 0,
            # share of the labels' entropy the classifier explains out of fold (None: not
            # measured); the estimate is used only when it reaches label_shift_min_information
            "information": None
            if ls is None or math.isnan(ls.information)
            else round(ls.information, 4),
            "used": shift is not None,
            "labels": label_rows,
        }
        art["coverage"] = {k: v for k, v in values.items()}
        art["template_lines"] = [t.to_dict() for t in inp.templates]
        art["regions"] = region_dicts
        art["collection_list"] = [
            {
                "region": d["id"],
                "status": d["status"],
                "label": d["label"],
                "needed_examples": d["needed_examples"],
                "production_share": d["production_share"],
                "within": d["within"],  # a sub-region of this cluster, whose count includes it
                "examples": d["examples"],
            }
            for d in region_dicts
            if d["needed_examples"] > 0
        ]
        art["importance_weights"] = {
            i: round(float(w), 5) for i, w in zip(t_ids, weights, strict=True)
        }
        art["resampling_plan"] = {
            "n_target": int(plan.sum()),
            "effective_sample_size": ess,
            "counts": {i: int(c) for i, c in zip(t_ids, plan, strict=True) if c != 1},
        }
        art["uncovered_production_ids"] = [p_ids[i] for i in np.nonzero(cov.flagged)[0]]
        # every production input's uncovered score (flagged above ``score_threshold``), so a
        # user can rank inputs or choose another operating point without re-running
        art["uncovered_scores"] = {i: float(v) for i, v in zip(p_ids, cov.score, strict=True)}
        # each production input's nearest training input and its cosine distance (centred
        # embeddings; compare with coverage.holdout_nn_distance, the held-out slice's quantiles)
        art["nearest_training"] = {
            i: {"id": t_ids[int(j)], "distance": round(float(d), 5)}
            for i, j, d in zip(p_ids, cov.nn_index, cov.nn_distance, strict=True)
        }
        in_report = {
            e["id"] for d in region_dicts if d["status"] != "covered" for e in d["examples"]
        }
        nearest = {  # the nearest training input of each example the report shows
            i: (t_texts[int(cov.nn_index[k])], float(cov.nn_distance[k]))
            for k, i in enumerate(p_ids)
            if i in in_report
        }
        res.sections.extend(
            self._sections(cov, xt, xp, regions, region_dicts, values, cp.seed, nearest)
        )
        if label_rows:
            res.sections.append(
                Section(
                    f"Production vs training share per label ({label_field})",
                    "table",
                    {
                        "columns": [
                            "label",
                            "training share",
                            "production share (est.)",
                            "ratio",
                            "examples to collect",
                        ],
                        "rows": [
                            [
                                r["label"],
                                f"{r['training_share']:.2%}",
                                f"{r['production_share']:.2%}",
                                f"{r['ratio']:.2f}",
                                r["needed_examples"],
                            ]
                            for r in label_rows[:40]
                        ],
                    },
                    note=(
                        f"{label_note}. Production shares estimated without production labels "
                        "(label-shift EM over a classifier of the training labels) over "
                        f"{shift.n_production if shift is not None else 0} production inputs; "
                        f"{shift.n_unassigned if shift is not None else 0} inputs flagged as "
                        "uncovered that no training label claims were left out, with those of "
                        "regions without any training input. Sorted by ratio, top 40."
                    ),
                )
            )
        return res

    def _sections(
        self,
        cov: Any,
        xt: np.ndarray,
        xp: np.ndarray,
        regions: list[Any],
        region_dicts: list[dict[str, Any]],
        values: dict[str, Any],
        seed: int,
        nearest: dict[str, tuple[str, float]],
    ) -> list[Section]:
        rng = np.random.default_rng(seed)
        n_map = int(self.param("map_points", 1500))
        ti = np.sort(rng.choice(len(xt), size=min(n_map, len(xt)), replace=False))
        pi = np.sort(rng.choice(len(xp), size=min(n_map, len(xp)), replace=False))
        method = str(self.param("map", "tsne"))
        xy = _map2(np.concatenate([xt[ti], xp[pi]]), method, seed)
        unc = np.zeros(len(xp), dtype=bool)
        for r in regions:
            if r.status == "uncovered":
                unc[r.prod_items] = True
        groups = ["training"] * len(ti) + [
            "production (uncovered region)" if unc[i] else "production" for i in pi
        ]
        points = [
            [round(float(a), 4), round(float(b), 4), g]
            for (a, b), g in zip(xy, groups, strict=True)
        ]
        # the largest uncovered clusters named where their shown inputs lie (median position)
        at = {int(i): k for k, i in enumerate(pi)}
        names = []
        top = [r for r in regions if r.status == "uncovered" and r.kind == "cluster"]
        for r in sorted(top, key=lambda r: -len(r.prod_items))[: int(self.param("map_labels", 8))]:
            rows = [len(ti) + at[int(i)] for i in r.prod_items if int(i) in at]
            if len(rows) >= 3:
                mx, my = np.median(xy[rows], axis=0)
                names.append([round(float(mx), 4), round(float(my), 4), r.label])
        shown = [d for d in region_dicts if d["status"] != "covered"][:12]
        name = MAPS[method]
        sections = [
            Section(
                f"Production vs training inputs ({name} of embeddings)",
                "scatter",
                {
                    "points": points,
                    "highlight": ["production (uncovered region)"],
                    "labels": names,
                    "xlabel": f"{name} 1",
                    "ylabel": f"{name} 2",
                },
                note=(
                    "Highlighted: production inputs in regions the training data does not "
                    "cover; the largest such regions are named by their distinguishing words. "
                    + (
                        "t-SNE keeps neighbours together: islands are topics, distances between "
                        "islands mean little (map: pca for the linear projection)."
                        if method == "tsne"
                        else ""
                    )
                ),
            ),
            Section(
                "Coverage per production region",
                "table",
                {
                    "columns": [
                        "region",
                        "status",
                        "label",
                        "production share",
                        "training share",
                        "production/training",
                        "training inputs near it",
                        "uncovered items",
                        "examples needed",
                        "why",
                    ],
                    "rows": [
                        [
                            d["id"] if not d["within"] else f"↳ {d['id']} (in {d['within']})",
                            d["status"],
                            d["label"],
                            f"{d['production_share']:.2%}",
                            f"{d['training_share']:.2%}",
                            "∞" if d["ratio"] is None else f"{d['ratio']:.2f}",
                            _training_near(d),
                            f"{d['uncovered_fraction']:.0%}",
                            d["needed_examples"],
                            d["basis"],
                        ]
                        for d in _parents_first(region_dicts)
                    ],
                },
                note=(
                    f"Per-item threshold calibrated so {values['target_fpr']:.0%} of a held-out "
                    f"training slice ({values['holdout_size']} inputs) is flagged. A region mostly "
                    "flagged is uncovered when no training inputs lie near its inputs, "
                    "under-covered when training has inputs like them (nearest-training distance "
                    "typical of covered inputs) but too few. Training inputs near it: those nearer "
                    "its centre than any other region's, with their mean importance weight (the "
                    "estimated production/training ratio where they lie) and, with labels, their "
                    "most common labels: the region's own topic reads as too thin, another topic "
                    "as absent."
                ),
            ),
        ]
        if shown:
            sections.append(
                Section(
                    "Uncovered and under-covered regions: representative production inputs",
                    "examples",
                    {
                        "items": [
                            {
                                "id": e["id"],
                                "title": f"{d['id']} ({d['status']}): {d['label']}",
                                "fields": {
                                    "input": e["text"],
                                    "nearest training input": (
                                        f"{nearest[e['id']][0][:300]} "
                                        f"(cosine distance {nearest[e['id']][1]:.3f})"
                                    ),
                                },
                            }
                            for d in shown
                            for e in d["examples"][:3]
                        ]
                    },
                )
            )
        sections.append(
            Section(
                "Reweighting toward production proportions",
                "text",
                {
                    "text": (
                        f"Importance weights ({values['weights']}, mean 1, max {values['max_weight']:.2f}) keep an "
                        f"effective sample size of {values['effective_sample_size']:.0f} "
                        f"({values['ess_fraction']:.0%} of training"
                        + (
                            ""
                            if values["ess_fraction_no_shift"] is None
                            else f"; the same estimate keeps {values['ess_fraction_no_shift']:.0%} "
                            "between two random parts of training, its noise with no shift"
                        )
                        + "). Uncovered regions cannot be reweighted: "
                        f"collect about {values['examples_needed']} examples (artifact distribution.json: "
                        "collection_list, importance_weights, resampling_plan)."
                    )
                },
            )
        )
        return sections


@register
class Shift(Check):
    name = "distribution.shift"
    failure_mode = "distribution"
    description = (
        "Classifier two-sample test between training and production inputs (embeddings, words, "
        "surface features): out-of-fold AUC with a permutation p-value, compared with the same "
        "test between two halves of training; per-item shift scores; the surface features "
        "(length, bracketed alternatives, placeholders, conditionals, questions, language, "
        "code) and words that explain it, with effect sizes and a prevalence floor. Lines "
        "repeated verbatim by many inputs (a prompt template) are compared without and "
        "reported. WARN when the AUC exceeds the training baseline by more than 0.15 "
        "(p <= 0.05), or when one side carries a template line the other lacks."
    )
    requires = ("production",)
    default_conditions = (
        Condition(
            "shift_effect",
            ">",
            0.15,
            Status.WARN,
            "AUC above the training-vs-training baseline (0 unless p <= alpha)",
        ),
        Condition(
            "template_lines_differing",
            ">",
            0,
            Status.WARN,
            "lines repeated verbatim by many inputs of one side and not the other (a template)",
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        assert ctx.production is not None
        model = self.param("embeddings", None)
        sp_ = ShiftParams.from_dict(self.params)
        alpha = float(self.param("alpha", 0.05))
        train, prod = ctx.train, ctx.production
        _require(len(train), len(prod), MIN_PER_SIDE, MIN_PER_SIDE, "the shift test")
        inp = _inputs(ctx, self.params, model)
        with ctx.progress("distribution: shift test", None):
            r = classifier_test(inp.train_cmp, inp.xt, inp.prod_cmp, inp.xp, sp_)
        # a template one side carries and the other lacks (a wrapper both share is no difference)
        tp = inp.template_params
        differing = [t for t in inp.templates if t.differs(tp.min_share)]
        explains = [f for f in r.features if f["explains"]]
        values = {
            "auc": r.auc,
            "null_auc": r.null_auc,
            "excess_auc": r.excess_auc,
            "p_value": r.p_value,
            "shift_effect": r.excess_auc if r.p_value <= alpha else 0.0,
            "explaining_features": [f["feature"] for f in explains],
            "n_training": r.n_train,
            "n_production": r.n_production,
            "template_lines": [t.to_dict() for t in inp.templates],
            "template_lines_differing": len(differing),
        }
        res = self.result(
            values=values,
            summary=(
                f"train vs production AUC {r.auc:.3f} (training halves {r.null_auc:.3f}, p={r.p_value:.3g})"
                + (
                    f"; explained by {', '.join(f['feature'] for f in explains[:4])}"
                    if explains
                    else ""
                )
                + (
                    f"; compared without {len(differing)} template line(s) one side lacks"
                    if differing
                    else ""
                )
            ),
        )
        for t in differing:
            side = "training" if t.training_share > t.production_share else "production"
            res.findings.append(
                Finding(
                    severity="info",
                    code="template_line",
                    message=(
                        f"{'a line' if t.kind == 'line' else 'a label opening lines'} "
                        f"repeated verbatim by {t.training_share:.0%} of training and "
                        f"{t.production_share:.0%} of production inputs: {t.line[:120]!r}; a "
                        f"template (or text many inputs share) {side} carries and the other "
                        "side does not, so both distribution checks compare the inputs without "
                        "it (strip_templates: false to keep it)"
                    ),
                    metrics={
                        "training_share": t.training_share,
                        "production_share": t.production_share,
                    },
                    threshold=tp.min_share,
                    example_ids=(
                        [train.ids[i] for i in t.training_items]
                        if side == "training"
                        else [prod.ids[i] for i in t.production_items]
                    ),
                    action=(
                        "fine-tune on the inputs production sends: drop the template from the "
                        "training prompts, or make sure production wraps inputs the same way"
                    ),
                )
            )
        p_ids = prod.ids
        order = np.argsort(-r.prod_scores, kind="stable")
        top = [int(r.prod_items[j]) for j in order[: min(200, len(order))]]
        for f in explains:
            res.findings.append(
                Finding(
                    severity="info",
                    code="shift_feature",
                    message=(
                        f"{f['feature']} ({f['description']}): training {f['training']}, "
                        f"production {f['production']} ({f['effect_size']} {f['effect']:+.2f})"
                    ),
                    metrics={k: f[k] for k in ("training", "production", "effect")},
                    threshold=sp_.min_effect,
                    action="collect or synthesise training inputs with this form",
                )
            )
        art = _artifact(ctx)
        art["shift"] = {
            **values,
            "features": r.features,
            "words": r.words,
            "most_shifted_production_ids": [p_ids[i] for i in top],
            # every sampled production input's out-of-fold log odds of being production (classes
            # balanced): where the shift lies
            "production_scores": {
                p_ids[int(i)]: round(float(v), 4)
                for i, v in zip(r.prod_items, r.prod_scores, strict=True)
            },
        }
        res.sections.extend(
            [
                Section(
                    "Shift test: training vs production classifier",
                    "table",
                    {
                        "columns": ["comparison", "out-of-fold AUC", "p-value"],
                        "rows": [
                            ["training vs production", f"{r.auc:.3f}", f"{r.p_value:.3g}"],
                            ["training half vs training half (baseline)", f"{r.null_auc:.3f}", ""],
                        ],
                    },
                ),
                Section(
                    "Surface features that explain the shift",
                    "table",
                    {
                        "columns": ["feature", "training", "production", "effect", "explains"],
                        "rows": [
                            [
                                f["feature"],
                                f["training"],
                                f["production"],
                                f"{f['effect']:+.2f} ({f['effect_size']})",
                                "yes" if f["explains"] else "",
                            ]
                            for f in r.features
                        ],
                    },
                    note=f"Explains: |effect| >= {sp_.min_effect} and present in >= {sp_.min_prevalence:.0%} of one side.",
                ),
                Section(
                    "Words whose prevalence differs most",
                    "table",
                    {
                        "columns": ["word", "training", "production", "Cohen's h"],
                        "rows": [
                            [
                                w["word"],
                                f"{w['training']:.1%}",
                                f"{w['production']:.1%}",
                                f"{w['effect']:+.2f}",
                            ]
                            for w in r.words
                        ],
                    },
                ),
                Section(
                    "Most production-like inputs (per-item shift score)",
                    "examples",
                    {
                        "items": [
                            {"id": p_ids[i], "fields": {"input": inp.prod[i][:300]}}
                            for i in top[:8]
                        ]
                    },
                ),
            ]
        )
        return res
