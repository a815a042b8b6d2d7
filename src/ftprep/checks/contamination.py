"""Failure mode 6: evaluation contamination.

* ``contamination.benchmarks`` — training examples that contain a benchmark item: exact (after
  normalisation), near-duplicate (word-shingle containment, 13-gram overlap) or paraphrased
  (embedding candidates + verifier). Leaking examples are excluded from the build.
* ``contamination.splits`` — makes train/validation/test leakage impossible by construction: publishes
  near-duplicate clusters of the training set (MinHash LSH + exact) as ``link_clusters`` for the
  splitter, proves on the seeded split that no cluster straddles two splits, and searches the
  fixed evaluation sets (the production holdout with ``split.eval_from: production``, the
  evaluation source with ``eval_from: source``) for leaked training examples.
* ``contamination.realism`` — with a production sample: does validation/test look like production
  or like training (nearest-neighbour similarity distributions)?

Method, parameters and reason codes: ``docs/contamination.md``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

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
from ftprep.contamination.detect import (
    ClusterParams,
    Leak,
    LeakParams,
    LeakReport,
    RefSet,
    TrainSide,
    duplicate_clusters,
    embed_distinct,
    find_leaks_many,
)
from ftprep.contamination.text import tokenize
from ftprep.context import Context
from ftprep.examples import Dataset
from ftprep.splits import SPLITS, assign_splits, eval_from_pool

Embed = Callable[[list[str]], np.ndarray]
MAX_PAIRS_SHOWN = 60


def _excerpt(text: str, n: int = 600) -> str:
    return text if len(text) <= n else text[:n] + " …"


def _embedder(ctx: Context) -> Embed | None:
    try:
        from ftprep.signals.cache import get_embedder_cached

        emb = get_embedder_cached(ctx.project.embeddings)
    except Exception:
        return None

    def encode(texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, 1), np.float32)
        return np.asarray(emb.encode(texts), dtype=np.float32)

    return encode


def _train_fields(ds: Dataset, fields: tuple[str, ...]) -> dict[str, list[str]]:
    out = {f: ds.texts(f) for f in fields}
    if "prompt" not in out:
        out["prompt"] = ds.texts("prompt")
    return out


class _LeakSearch:
    """Runs :func:`find_leaks` of one training dataset against several fixed reference sets,
    sharing tokens and embeddings of the training side."""

    def __init__(self, ctx: Context, train: Dataset, params: LeakParams) -> None:
        self.ctx, self.train, self.params = ctx, train, params
        self.texts = _train_fields(train, params.fields)
        self.side = TrainSide(self.texts)
        self.embed = _embedder(ctx) if params.semantic else None
        self.train_emb: np.ndarray | None = None
        if self.embed is not None:
            try:
                self.train_emb = ctx.embeddings(train, "prompt")
            except Exception:
                self.train_emb = embed_distinct(self.embed, self.texts["prompt"])

    def reports(self, refs: dict[str, Dataset]) -> tuple[dict[str, LeakReport], dict[str, float]]:
        """Every reference set searched at once (one lexical pass over the training side):
        the report of each set and the seconds of the shared stages."""
        names = sorted(refs)
        sets = []
        for name in names:
            ref = refs[name]
            ref_in, ref_full = ref.texts("prompt"), ref.texts("full")
            ref_emb = None
            if self.embed is not None:
                try:
                    ref_emb = self.ctx.embeddings(ref, "prompt")
                except Exception:
                    ref_emb = self.embed(ref_in)
            sets.append(RefSet(ref_in, ref_full, ref_emb))
        multi = find_leaks_many(
            self.texts,
            sets,
            self.params,
            embed=self.embed,
            train_emb=self.train_emb,
            side=self.side,
        )
        return dict(zip(names, multi.reports, strict=True)), multi.seconds


def _strongest(leaks: list[Leak]) -> dict[int, Leak]:
    order = {"exact": 0, "near": 1, "paraphrase": 2}
    out: dict[int, Leak] = {}
    for lk in leaks:
        cur = out.get(lk.train)
        if cur is None or order[lk.category] < order[cur.category]:
            out[lk.train] = lk
    return out


def _pairs_section(
    title: str,
    leaks: list[Leak],
    train: Dataset,
    ref: Dataset,
    ref_label: str,
    train_texts: list[str],
) -> Section:
    order = {"exact": 0, "near": 1, "paraphrase": 2}
    shown = sorted(leaks, key=lambda x: (order[x.category], -x.score))[:MAX_PAIRS_SHOWN]
    tids, rids = train.ids, ref.ids
    rtexts = ref.texts("prompt")
    pairs = [
        {
            "left": {
                "id": tids[lk.train],
                "title": "training example",
                "text": _excerpt(train_texts[lk.train]),
            },
            "right": {"id": rids[lk.item], "title": ref_label, "text": _excerpt(rtexts[lk.item])},
            "note": f"{lk.method}: {lk.detail}",
        }
        for lk in shown
    ]
    return Section(
        title,
        "pairs",
        {"pairs": pairs},
        note=f"{len(leaks)} leak(s); the strongest {len(pairs)} shown",
    )


def _decisions(
    leaks_by_target: dict[str, list[Leak]], train: Dataset, prefix: str, paraphrase_action: Action
) -> list[Decision]:
    reasons = {
        "exact": f"{prefix}_leak_exact",
        "near": f"{prefix}_leak_near",
        "paraphrase": f"{prefix}_paraphrase",
    }
    ids = train.ids
    best: dict[int, tuple[Leak, str]] = {}
    order = {"exact": 0, "near": 1, "paraphrase": 2}
    for target, leaks in leaks_by_target.items():
        for row, lk in _strongest(leaks).items():
            cur = best.get(row)
            if cur is None or order[lk.category] < order[cur[0].category]:
                best[row] = (lk, target)
    out = []
    for row, (lk, target) in sorted(best.items()):
        action = paraphrase_action if lk.category == "paraphrase" else Action.EXCLUDE
        out.append(
            Decision(
                ids[row],
                action,
                reasons[lk.category],
                f"{target} item #{lk.item}: {lk.method} ({lk.detail})",
            )
        )
    return out


def _counts(leaks: list[Leak], n_items: int) -> dict[str, Any]:
    strongest = _strongest(leaks)
    cats = [lk.category for lk in strongest.values()]
    items = {
        c: len({lk.item for lk in leaks if lk.category == c})
        for c in ("exact", "near", "paraphrase")
    }
    return {
        "exact": cats.count("exact"),
        "near": cats.count("near"),
        "paraphrase": cats.count("paraphrase"),
        "leaking_examples": len(strongest),
        "leaked_items": len({lk.item for lk in leaks}),
        "items": n_items,
        "item_rate": len({lk.item for lk in leaks}) / n_items if n_items else 0.0,
        "paraphrase_item_rate": items["paraphrase"] / n_items if n_items else 0.0,
    }


def _params(check: Check, ctx: Context | None = None) -> LeakParams:
    known = {k: v for k, v in check.params.items() if k not in ("paraphrase_action", "clusters")}
    p = LeakParams.from_dict(known)
    if p.llm_judge.enabled and p.llm_judge.cache_dir is None and ctx is not None:
        # judge answers are cached in the workspace: a re-run never pays twice
        p.llm_judge.cache_dir = str(ctx.workspace.root / "llm_cache")
    return p


def _simulated_splits(ctx: Context) -> dict[str, str] | None:
    links = ctx.artifacts.get("link_clusters") or []
    try:
        return assign_splits(ctx.train, ctx.project.split, links)
    except ValueError:
        return None


@register
class BenchmarkLeakage(Check):
    name = "contamination.benchmarks"
    failure_mode = "contamination"
    description = (
        "Training examples that contain a benchmark item: exact after normalisation, near-duplicate "
        "(shingle containment, 13-gram overlap across the prompt/answer boundary) or paraphrased "
        "(embedding neighbours + verifier). Leaking examples are excluded."
    )
    requires = ("benchmarks",)
    default_conditions = (
        Condition("exact_leaks", ">", 0, Status.FAIL, "benchmark items copied into training data"),
        Condition(
            "near_leaks", ">", 0, Status.FAIL, "near-duplicates of benchmark items in training data"
        ),
        Condition(
            "paraphrase_rate",
            ">",
            0.01,
            Status.WARN,
            "share of benchmark items paraphrased in training data",
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        params = _params(self, ctx)
        search = _LeakSearch(ctx, ctx.train, params)
        by_bench: dict[str, list[Leak]] = {}
        per: dict[str, Any] = {}
        sections: list[Section] = []
        findings: list[Finding] = []
        with ctx.progress("benchmark leakage", len(ctx.benchmarks)) as advance:
            reports, shared_secs = search.reports(dict(ctx.benchmarks))
            for name, ds in sorted(ctx.benchmarks.items()):
                rep = reports[name]
                leaks = rep.leaks
                by_bench[name] = leaks
                per[name] = {
                    **_counts(leaks, len(ds)),
                    "paraphrase_threshold": rep.threshold,
                    "seconds": {k: round(v, 3) for k, v in rep.seconds.items()},
                }
                if rep.judge is not None:
                    per[name]["llm_judge"] = rep.judge
                if leaks:
                    sections.append(
                        _pairs_section(
                            f"Leaks of {name}",
                            leaks,
                            ctx.train,
                            ds,
                            f"benchmark {name}",
                            search.texts["full" if "full" in search.texts else "prompt"],
                        )
                    )
                advance(1)
        tot = {
            k: sum(p[k] for p in per.values())
            for k in ("exact", "near", "paraphrase", "leaked_items", "items")
        }
        para_items = sum(round(p["paraphrase_item_rate"] * p["items"]) for p in per.values())
        values: dict[str, Any] = {
            "exact_leaks": tot["exact"],
            "near_leaks": tot["near"],
            "paraphrase_leaks": tot["paraphrase"],
            "leaked_items": tot["leaked_items"],
            "benchmark_items": tot["items"],
            "paraphrase_rate": para_items / tot["items"] if tot["items"] else 0.0,
            "semantic_stage": search.embed is not None,
            "per_benchmark": per,
            "shared_seconds": {k: round(v, 3) for k, v in shared_secs.items()},
        }
        pa = Action(self.param("paraphrase_action", "exclude"))
        decisions = _decisions(by_bench, ctx.train, "benchmark", pa)
        sections.insert(0, self._matrix(ctx, by_bench, per))
        ids_of = {
            name: sorted({ctx.train.ids[r] for r in _strongest(leaks)})
            for name, leaks in by_bench.items()
        }
        for name, p in per.items():
            if p["exact"] + p["near"]:
                findings.append(
                    Finding(
                        "fail",
                        "benchmark_leak",
                        f"{p['exact'] + p['near']} training example(s) contain items of benchmark "
                        f"{name} ({p['exact']} exact, {p['near']} near-duplicate)",
                        metrics={
                            k: p[k]
                            for k in ("exact", "near", "paraphrase", "leaked_items", "items")
                        },
                        example_ids=ids_of[name],
                        action="excluded from the build (drop from train)",
                    )
                )
            elif p["paraphrase"]:
                findings.append(
                    Finding(
                        "info",
                        "benchmark_paraphrase",
                        f"{p['paraphrase']} training example(s) paraphrase items of benchmark {name}",
                        metrics={"paraphrase_item_rate": p["paraphrase_item_rate"]},
                        example_ids=ids_of[name],
                        action=f"{pa} (reason benchmark_paraphrase)",
                    )
                )
        judged = {n: p["llm_judge"] for n, p in per.items() if "llm_judge" in p}
        if judged:
            total = {
                k: sum(j[k] for j in judged.values())
                for k in ("judged", "confirmed", "rejected", "undecided", "cached", "over_limit")
            }
            by_method = sum(1 for ls in by_bench.values() for lk in ls if lk.method == "llm_judge")
            findings.append(
                Finding(
                    "info",
                    "paraphrase_llm_judge",
                    f"LLM judge ({params.llm_judge.model}) decided {total['judged']} borderline "
                    f"paraphrase pair(s): {total['confirmed']} confirmed, {total['rejected']} "
                    f"cleared, {total['undecided']} left to the verifier ({total['cached']} "
                    "answers from the cache)",
                    metrics={**total, "method": "llm_judge", "leaks_by_llm_judge": by_method},
                )
            )
        if search.embed is None and params.semantic:
            findings.append(
                Finding(
                    "info",
                    "semantic_not_run",
                    "paraphrase search not run: no embedding model available",
                )
            )
        summary = (
            f"{len(decisions)} training example(s) leak {tot['leaked_items']} of "
            f"{tot['items']} benchmark item(s) ({tot['exact']} exact, {tot['near']} near, "
            f"{tot['paraphrase']} paraphrase)"
        )
        return self.result(
            summary=summary,
            values=values,
            findings=findings,
            decisions=decisions,
            sections=sections,
        )

    def _matrix(
        self, ctx: Context, by_bench: dict[str, list[Leak]], per: dict[str, Any]
    ) -> Section:
        names = sorted(by_bench)
        splits = _simulated_splits(ctx)
        ids = ctx.train.ids
        rows = ["train (all)"]
        values: list[list[Any]] = [[len(_strongest(by_bench[n])) for n in names]]
        if splits and ctx.project.split.eval_from == "train":
            for s in SPLITS:
                rows.append(s)
                values.append(
                    [sum(1 for r in _strongest(by_bench[n]) if splits[ids[r]] == s) for n in names]
                )
        rate_row = [f"{per[n]['item_rate']:.2%} of {per[n]['items']} items" for n in names]
        return Section(
            "Leakage matrix: training splits × benchmarks",
            "matrix",
            {"rows": rows, "columns": names, "values": values, "column_notes": rate_row},
            note="leaking training examples per split (seeded split of the build) and benchmark; "
            "column notes give the share of benchmark items leaked",
        )


@register
class SplitLeakage(Check):
    name = "contamination.splits"
    failure_mode = "contamination"
    description = (
        "Keeps near-duplicate clusters inside one split (published as link_clusters for the build), "
        "proves no group or cluster straddles train/validation/test, and finds training examples "
        "leaking into a fixed evaluation set (production holdout or evaluation source)."
    )
    default_conditions = (
        Condition(
            "straddling_clusters", ">", 0, Status.FAIL, "a cluster or group spans two splits"
        ),
        Condition(
            "eval_exact_leaks", ">", 0, Status.FAIL, "evaluation items copied into training data"
        ),
        Condition(
            "eval_near_leaks",
            ">",
            0,
            Status.FAIL,
            "near-duplicates of evaluation items in training data",
        ),
        Condition(
            "eval_paraphrase_rate",
            ">",
            0.01,
            Status.WARN,
            "share of evaluation items paraphrased in training data",
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        params = _params(self, ctx)
        cp = ClusterParams(**self.param("clusters", {}))
        policy = ctx.project.split
        train = ctx.train
        ids = train.ids
        # the conversation without its system prompt and without the template lines its
        # prompts repeat: a system prompt or an instruction shared by every example says nothing
        # about whether two examples are copies of each other (an Alpaca instruction over every
        # CLINC150 query linked 10,458 of 10,500 examples into one cluster: no split possible)
        prompts = ctx.train_texts_without_templates("prompt", self.params)
        responses = ctx.train_texts_without_templates("response", self.params)
        content = [f"{p}\n\n{r}" for p, r in zip(prompts, responses, strict=True)]
        tokens = tokenize(content)
        clusters, info = duplicate_clusters(tokens, cp)
        links = [[ids[i] for i in c] for c in clusters]
        ctx.artifacts["link_clusters"] = links
        splits = assign_splits(train, policy, links)
        straddle = sum(1 for c in links if len({splits[m] for m in c}) > 1)
        groups = dict(zip(ids, train.column("group"), strict=True))
        by_group: dict[str, set[str]] = {}
        for i in ids:
            by_group.setdefault(str(groups[i]), set()).add(splits[i])
        straddle_groups = (
            sum(1 for s in by_group.values() if len(s) > 1) if policy.by == "group" else 0
        )
        # what a row-level random split would have leaked (the baseline this design prevents)
        rng = np.random.default_rng(policy.seed)
        row_split = rng.choice(
            3,
            size=len(ids),
            p=[1 - policy.validation - policy.test, policy.validation, policy.test],
        )
        row_straddle = sum(1 for c in clusters if len({int(row_split[i]) for i in c}) > 1)
        values: dict[str, Any] = {
            "duplicate_clusters": len(clusters),
            "clustered_examples": sum(len(c) for c in clusters),
            "straddling_clusters": straddle + straddle_groups,
            "row_split_straddling_clusters": row_straddle,
            "minhash": info,
        }
        sections = [self._split_matrix(clusters, splits, ids)]
        if clusters:
            shown = sorted(clusters, key=len, reverse=True)[:20]
            items = [
                {
                    "id": ids[c[0]],
                    "title": f"cluster of {len(c)} (split: {splits[ids[c[0]]]})",
                    "fields": {ids[m]: _excerpt(content[m], 300) for m in c[:6]},
                }
                for c in shown
            ]
            sections.append(
                Section(
                    "Near-duplicate clusters kept inside one split",
                    "examples",
                    {"items": items},
                    note=f"{len(clusters)} clusters; largest shown",
                )
            )
        findings: list[Finding] = []
        decisions: list[Decision] = []
        targets = self._eval_targets(ctx)
        if targets:
            train_side = train
            if policy.eval_from == "source":
                src = dict(zip(ids, train.column("source"), strict=True))
                train_side = train.filter_ids({i for i in ids if src[i] != policy.eval_source})
            search = _LeakSearch(ctx, train_side, params)
            by_t: dict[str, list[Leak]] = {}
            n_items = 0
            para_items = 0
            reports, _ = search.reports(targets)
            for tname, tds in targets.items():
                leaks = reports[tname].leaks
                by_t[tname] = leaks
                c = _counts(leaks, len(tds))
                values[f"eval:{tname}"] = c
                n_items += len(tds)
                para_items += round(c["paraphrase_item_rate"] * len(tds))
                if leaks:
                    sections.append(
                        _pairs_section(
                            f"Training examples leaking into {tname}",
                            leaks,
                            train_side,
                            tds,
                            tname,
                            search.texts["prompt"],
                        )
                    )
            decisions = _decisions(
                by_t, train_side, "eval", Action(self.param("paraphrase_action", "exclude"))
            )
            values["eval_exact_leaks"] = sum(values[f"eval:{t}"]["exact"] for t in targets)
            values["eval_near_leaks"] = sum(values[f"eval:{t}"]["near"] for t in targets)
            values["eval_paraphrase_rate"] = para_items / n_items if n_items else 0.0
            if values["eval_exact_leaks"] + values["eval_near_leaks"]:
                findings.append(
                    Finding(
                        "fail",
                        "eval_leak",
                        f"{values['eval_exact_leaks'] + values['eval_near_leaks']} training example(s) "
                        f"duplicate items of the evaluation set ({', '.join(targets)})",
                        example_ids=[
                            d.example_id for d in decisions if d.reason != "eval_paraphrase"
                        ],
                        action="excluded from the build (drop from train)",
                    )
                )
        if straddle:
            findings.append(
                Finding(
                    "fail",
                    "straddling_cluster",
                    f"{straddle} duplicate cluster(s) span two splits",
                    example_ids=[m for c in links if len({splits[x] for x in c}) > 1 for m in c],
                )
            )
        summary = (
            f"{len(clusters)} near-duplicate cluster(s) ({values['clustered_examples']} examples) "
            f"linked into single splits; {straddle} straddle (a row-level split would leave "
            f"{row_straddle})"
        )
        return self.result(
            summary=summary,
            values=values,
            findings=findings,
            decisions=decisions,
            sections=sections,
        )

    def _eval_targets(self, ctx: Context) -> dict[str, Dataset]:
        policy = ctx.project.split
        if (
            policy.eval_from == "production"
            and ctx.production is not None
            and ctx.project.production
        ):
            sel = eval_from_pool(ctx.production, policy, share=ctx.project.production.holdout)
            if not sel:
                return {}
            return {
                f"production holdout {s}": ctx.production.filter_ids(
                    {i for i, v in sel.items() if v == s}
                )
                for s in ("validation", "test")
                if s in sel.values()
            }
        if policy.eval_from == "source" and policy.eval_source:
            src = dict(zip(ctx.train.ids, ctx.train.column("source"), strict=True))
            ev = {i for i, s in src.items() if s == policy.eval_source}
            return {f"source {policy.eval_source}": ctx.train.filter_ids(ev)} if ev else {}
        return {}

    @staticmethod
    def _split_matrix(clusters: list[list[int]], splits: dict[str, str], ids: list[str]) -> Section:
        idx = {s: k for k, s in enumerate(SPLITS)}
        mat = [[0] * len(SPLITS) for _ in SPLITS]
        for c in clusters:
            dests = [idx[splits[ids[m]]] for m in c]
            for a in range(len(dests)):
                for b in range(a + 1, len(dests)):
                    mat[dests[a]][dests[b]] += 1
                    if dests[a] != dests[b]:
                        mat[dests[b]][dests[a]] += 1
        return Section(
            "Leakage matrix: split × split (near-duplicate pairs)",
            "matrix",
            {"rows": list(SPLITS), "columns": list(SPLITS), "values": mat},
            note="off-diagonal cells are pairs of near-duplicates in two different splits; "
            "they are zero by construction (clusters are assigned whole)",
        )


@register
class ValidationRealism(Check):
    name = "contamination.realism"
    failure_mode = "contamination"
    description = (
        "Compares validation/test with production: nearest-neighbour similarity of validation items "
        "to training data versus production's; warns when validation looks like training rather "
        "than like production."
    )
    requires = ("production",)
    default_conditions = (
        Condition(
            "realism_gap",
            ">",
            0.05,
            Status.WARN,
            "validation is closer to training than production is (median nearest-neighbour cosine)",
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        assert ctx.production is not None
        policy = ctx.project.split
        train = ctx.train
        ids = train.ids
        if policy.eval_from == "production" and ctx.project.production:
            sel = eval_from_pool(ctx.production, policy, share=ctx.project.production.holdout)
            eval_ds = ctx.production.filter_ids(set(sel))
            prod = ctx.production.filter_ids(set(ctx.production.ids) - set(sel))
            tr = train
        else:
            splits = assign_splits(train, policy, ctx.artifacts.get("link_clusters") or [])
            eval_ds = train.filter_ids({i for i in ids if splits[i] != "train"})
            tr = train.filter_ids({i for i in ids if splits[i] == "train"})
            prod = ctx.production
        if len(eval_ds) == 0 or len(tr) == 0 or len(prod) == 0:
            return self.result(summary="no validation/test examples to compare", values={})
        from ftprep.distribution.template import TemplateParams, strip_templates

        # compared without the template lines the inputs repeat (an instruction line training
        # prompts carry and production inputs lack would make validation look like training
        # whatever its content: distribution/template.py)
        t_ev = eval_ds.texts("prompt")
        left, right, _ = strip_templates(
            t_ev + tr.texts("prompt"),
            prod.texts("prompt"),
            TemplateParams.from_dict(self.params),
        )
        embed = ctx.text_embeddings
        e_ev, e_tr, e_pr = embed(left[: len(t_ev)]), embed(left[len(t_ev) :]), embed(right)
        ev_tr = _nn(e_ev, e_tr)
        ev_pr = _nn(e_ev, e_pr)
        pr_tr = _nn(e_pr, e_tr)
        gap = float(np.median(ev_tr) - np.median(pr_tr))
        closer = float(np.mean(ev_tr > ev_pr))
        values = {
            "eval_examples": len(eval_ds),
            "eval_nn_train_median": float(np.median(ev_tr)),
            "eval_nn_production_median": float(np.median(ev_pr)),
            "production_nn_train_median": float(np.median(pr_tr)),
            "realism_gap": gap,
            "eval_closer_to_train_share": closer,
        }
        edges = np.linspace(-0.2, 1.0, 25)
        sec = Section(
            "Nearest-neighbour cosine: who looks like whom",
            "lines",
            {
                "x": [round(float(x), 3) for x in (edges[:-1] + edges[1:]) / 2],
                "series": {
                    "validation/test → train": _hist(ev_tr, edges),
                    "validation/test → production": _hist(ev_pr, edges),
                    "production → train": _hist(pr_tr, edges),
                },
                "xlabel": "cosine to nearest neighbour",
            },
            note="validation should sit like production relative to training; a curve shifted right of "
            "'production → train' means validation is easier than production will be",
        )
        findings = []
        if closer > 0.5:
            findings.append(
                Finding(
                    "info",
                    "validation_like_training",
                    f"{closer:.0%} of validation/test items are closer to training than to production",
                    metrics={"eval_closer_to_train_share": closer},
                )
            )
        summary = (
            f"median NN cosine to train: validation/test {values['eval_nn_train_median']:.3f}, "
            f"production {values['production_nn_train_median']:.3f} (gap {gap:+.3f})"
        )
        return self.result(summary=summary, values=values, findings=findings, sections=[sec])


def _nn(q: np.ndarray, ref: np.ndarray, block: int = 4096) -> np.ndarray:
    out = np.empty(len(q), dtype=np.float32)
    rt = np.ascontiguousarray(ref.T)
    for s in range(0, len(q), block):
        out[s : s + block] = (q[s : s + block] @ rt).max(axis=1)
    return out


def _hist(x: np.ndarray, edges: np.ndarray) -> list[float]:
    h, _ = np.histogram(np.clip(x, edges[0], edges[-1]), bins=edges)
    return [round(float(v), 4) for v in h / max(1, len(x))]
