"""Catastrophic forgetting (failure mode 5): does the data cover the capabilities the
application needs beyond the target task, and what replay data should be mixed in?

Method and parameters: ``docs/forgetting.md``; the inventory itself: :mod:`ftprep.capabilities`.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from ftprep.capabilities import (
    CapabilityCoverage,
    Inventory,
    attribute,
    capability_radii,
    load_inventory,
    pattern_hits,
    replay_count,
    replay_plan,
    train_radius,
)
from ftprep.checks.base import Check, CheckResult, Condition, Finding, Section, Status
from ftprep.checks.registry import register
from ftprep.examples import Dataset, normalize_column

if TYPE_CHECKING:
    from ftprep.context import Context


def _probe_coverage(
    train_emb: np.ndarray,
    train_texts: list[str],
    probes: list[str],
    probe_emb: np.ndarray,
    radius: float,
) -> np.ndarray:
    """Per probe: covered by the training inputs (True) or not, with the production coverage
    method (label-free threshold calibrated on held-out training inputs)."""
    from ftprep.distribution.coverage import coverage_scores

    if len(train_emb) < 20 or len(probes) < 5:
        # too small to calibrate: a probe is covered when it is within the training radius
        sims = probe_emb @ train_emb.T if len(train_emb) else np.zeros((len(probes), 0))
        best = sims.max(axis=1) if sims.shape[1] else np.full(len(probes), -1.0)
        return np.asarray((1.0 - best) <= radius)
    scores = coverage_scores(train_emb, probe_emb, train_texts, probes)
    return ~np.asarray(scores.flagged, dtype=bool)


@register
class CapabilityCoverageCheck(Check):
    name = "forgetting.capabilities"
    failure_mode = "forgetting"
    description = (
        "Checks the capability inventory (capabilities.yaml): for every capability the "
        "application needs, whether its probe prompts are covered by the training inputs "
        "(the production-coverage method, threshold calibrated on held-out training data) and "
        "how many training examples (and production inputs) exercise it. Non-target "
        "capabilities left uncovered need replay data: with `replay:` in ftprep.yaml the check "
        "plans which replay examples the build mixes in (uncovered capabilities first). FAIL "
        "when a non-target capability is uncovered and no replay data for it is configured, "
        "or when a target capability is uncovered."
    )
    requires = ("capabilities",)
    default_conditions = (
        Condition(
            "uncovered_without_replay",
            ">",
            0,
            Status.FAIL,
            "non-target capabilities neither covered by the data nor by replay data",
        ),
        Condition(
            "uncovered_target", ">", 0, Status.FAIL, "target capabilities the data does not cover"
        ),
        Condition(
            "unverifiable", ">", 0, Status.WARN, "capabilities without probes or pattern hits"
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        path = ctx.resolve(ctx.project.capabilities)
        assert path is not None
        inv = load_inventory(path)
        from ftprep.distribution.template import TemplateParams, strip_templates, without_templates

        ds = ctx.train
        full = ds.texts("full")
        probes: list[str] = []
        probe_cap: list[int] = []
        for j, cap in enumerate(inv.capabilities):
            probes += cap.probes
            probe_cap += [j] * len(cap.probes)
        # training prompts compared without a template they all repeat (an instruction line):
        # probes are bare requests, as production inputs are (distribution/template.py)
        tp = TemplateParams.from_dict(self.params)
        texts, _, _ = strip_templates(ds.texts("prompt"), probes, tp)
        train_emb = ctx.text_embeddings(texts)
        radius = train_radius(train_emb, seed=int(self.param("seed", 0)))

        probe_emb = (
            ctx.text_embeddings(probes)
            if probes
            else np.zeros((0, train_emb.shape[1] if train_emb.ndim == 2 else 1), np.float32)
        )
        covered_probe = (
            _probe_coverage(train_emb, texts, probes, probe_emb, radius)
            if probes
            else np.zeros(0, bool)
        )
        pcap = np.asarray(probe_cap, dtype=np.int64)
        radii = capability_radii(probe_emb, pcap, len(inv.capabilities), radius)

        def attribute_to(emb: np.ndarray, texts: list[str]) -> np.ndarray:
            return attribute(emb, probe_emb, pcap, radii, pattern_hits(inv, texts))

        a_train = attribute_to(train_emb, full)

        def bare(sample: Dataset) -> np.ndarray:
            """Embeddings of a sample's prompts without a template it repeats (a wrapper around
            every logged query, the fixed instruction of a replay set), as training's are."""
            return ctx.text_embeddings(without_templates(sample.texts("prompt"), tp))

        a_prod = None
        if ctx.production is not None and len(ctx.production):
            prod = ctx.production
            a_prod = attribute_to(bare(prod), prod.texts("prompt"))
        replay_caps: list[str | None] = []
        if ctx.replay is not None and len(ctx.replay):
            a_replay = attribute_to(bare(ctx.replay), ctx.replay.texts("full"))
            replay_caps = self._replay_capabilities(ctx, inv, a_replay)
        coverage: list[CapabilityCoverage] = []
        ids = ds.ids
        for j, cap in enumerate(inv.capabilities):
            mask = pcap == j
            n_probes = int(mask.sum())
            pc = float(covered_probe[mask].mean()) if n_probes else None
            n_ex = int(a_train[:, j].sum())
            share = n_ex / len(ds) if len(ds) else 0.0
            min_share = cap.min_share if cap.min_share is not None else inv.min_share
            if pc is not None:
                covered: bool | None = pc >= inv.min_probe_coverage and (
                    cap.target or share >= min_share
                )
            elif cap.patterns:
                covered = cap.target or share >= min_share
            else:
                covered = None
            sims = None
            order = np.nonzero(a_train[:, j])[0]
            if n_probes and len(order):
                sims = (train_emb[order] @ probe_emb[mask].T).max(axis=1)
                order = order[np.argsort(-sims)]
            coverage.append(
                CapabilityCoverage(
                    name=cap.name,
                    target=cap.target,
                    n_probes=n_probes,
                    probes_covered=pc,
                    train_examples=n_ex,
                    train_share=share,
                    production_share=float(a_prod[:, j].mean()) if a_prod is not None else None,
                    replay_available=sum(1 for c in replay_caps if c == cap.name),
                    covered=covered,
                    evidence_ids=[ids[i] for i in order[:20]],
                    uncovered_probes=[
                        p
                        for p, ok in zip(
                            [probes[i] for i in np.nonzero(mask)[0]],
                            covered_probe[mask],
                            strict=True,
                        )
                        if not ok
                    ],
                )
            )
        return self._result(ctx, coverage, replay_caps, radius)

    # ------------------------------------------------------------------ replay
    def _replay_capabilities(
        self, ctx: Context, inv: Inventory, attributed: np.ndarray
    ) -> list[str | None]:
        """The capability of each replay record: the one its source declares, else the one it
        is attributed to (first by inventory order), else None (general data)."""
        assert ctx.replay is not None
        pool = ctx.replay
        a = attributed
        out: list[str | None] = []
        for i, rid in enumerate(pool.ids):
            declared = ctx.replay_capability.get(rid)
            if declared is not None:
                out.append(declared)
                continue
            hit = np.nonzero(a[i])[0]
            out.append(inv.capabilities[int(hit[0])].name if len(hit) else None)
        return out

    def _blocked_replay(self, ctx: Context) -> dict[str, str]:
        """Replay records left out of the plan: same normalised prompt as a training example
        (a duplicate) or a production input, or a benchmark item in it (exact, near-duplicate or
        paraphrase: :meth:`_leaking_replay`)."""
        pool = ctx.replay
        if pool is None:
            return {}
        seen: dict[str, str] = {}
        for reason, ds in [
            ("duplicates_training", ctx.train),
            ("matches_production", ctx.production),
        ]:
            if ds is None or len(ds) == 0:
                continue
            for t in normalize_column(ds.texts("prompt")).to_pylist():
                if t:
                    seen.setdefault(t, reason)
        blocked = {}
        for rid, t in zip(
            pool.ids, normalize_column(pool.texts("prompt")).to_pylist(), strict=True
        ):
            if t and t in seen:
                blocked[rid] = seen[t]
        blocked.update(
            {rid: r for rid, r in self._leaking_replay(ctx).items() if rid not in blocked}
        )
        return blocked

    @staticmethod
    def _leaking_replay(ctx: Context) -> dict[str, str]:
        """Replay records that contain a benchmark item (exact, lightly edited or paraphrased),
        found by the same search (and the same ``contamination.benchmarks`` parameters) as the
        training data's leaks: replay goes into the training split, so it must be as clean."""
        pool = ctx.replay
        refs = {k: v for k, v in ctx.benchmarks.items() if len(v)}
        if pool is None or len(pool) == 0 or not refs:
            return {}
        from ftprep.checks.contamination import BenchmarkLeakage, _LeakSearch, _params
        from ftprep.contamination.detect import RANK

        params = _params(BenchmarkLeakage(ctx.params("contamination.benchmarks")), ctx)
        reports, _ = _LeakSearch(ctx, pool, params).reports(refs)
        ids = pool.ids
        out: dict[str, str] = {}
        leaks = [lk for rep in reports.values() for lk in rep.leaks]
        for lk in sorted(leaks, key=lambda lk: RANK[lk.category]):  # strongest evidence first
            reason = (
                "matches_benchmark" if lk.category == "exact" else f"leaks_benchmark_{lk.category}"
            )
            out.setdefault(ids[lk.train], reason)
        return out

    # ------------------------------------------------------------------ result
    def _result(
        self,
        ctx: Context,
        coverage: list[CapabilityCoverage],
        replay_caps: list[str | None],
        radius: float,
    ) -> CheckResult:
        rep = ctx.project.replay
        pool = ctx.replay
        findings: list[Finding] = []
        replay_for = {c for c in replay_caps if c is not None}
        uncovered_nt = [c for c in coverage if not c.target and c.covered is False]
        without = [c for c in uncovered_nt if c.name not in replay_for]
        uncovered_t = [c for c in coverage if c.target and c.covered is False]
        unverifiable = [c for c in coverage if c.covered is None]
        for c in uncovered_nt:
            has = c.name in replay_for
            findings.append(
                Finding(
                    "info" if has else "fail",
                    "capability_uncovered",
                    f"non-target capability {c.name!r} is not covered by the training data "
                    f"({_pct(c.probes_covered)} of its probes covered; {c.train_examples} "
                    f"examples = {c.train_share:.1%} lie nearest its probes)"
                    + (
                        f"; {c.replay_available} replay example(s) for it are planned first"
                        if has
                        else "; no replay data for it is configured"
                    ),
                    metrics=c.to_dict(),
                    example_ids=c.evidence_ids,
                    action="mix in replay data for it (ftprep.yaml: replay.sources)"
                    if not has
                    else "",
                )
            )
        for c in uncovered_t:
            findings.append(
                Finding(
                    "fail",
                    "target_uncovered",
                    f"target capability {c.name!r}: only {_pct(c.probes_covered)} of its probes "
                    "are covered by the training data — the data or the probes are off",
                    metrics=c.to_dict(),
                    example_ids=c.evidence_ids,
                    action="check the probes in capabilities.yaml, or collect data for it",
                )
            )
        for c in unverifiable:
            findings.append(
                Finding(
                    "warn",
                    "capability_unverifiable",
                    f"capability {c.name!r} has no probes and no pattern matched: its coverage "
                    "cannot be checked",
                    action="add 5-20 probe prompts that exercise it to capabilities.yaml",
                )
            )

        plan: list[dict[str, Any]] = []
        blocked: dict[str, str] = {}
        planned = 0
        if pool is not None and rep is not None:
            blocked = self._blocked_replay(ctx)
            plan = replay_plan(pool.ids, replay_caps, coverage, blocked, rep.seed)
            planned = min(len(plan), replay_count(rep.share, len(ctx.train)))
            ctx.artifacts["replay_plan"] = {"share": rep.share, "order": plan}
            if planned < replay_count(rep.share, len(ctx.train)):
                findings.append(
                    Finding(
                        "warn",
                        "replay_pool_small",
                        f"replay.share {rep.share:.0%} needs "
                        f"{replay_count(rep.share, len(ctx.train))} replay examples; the pool "
                        f"has {len(plan)} usable",
                    )
                )
        by_reason: dict[str, int] = {}
        for r in blocked.values():
            by_reason[r] = by_reason.get(r, 0) + 1

        values: dict[str, Any] = {
            "capabilities": len(coverage),
            "target": sum(c.target for c in coverage),
            "uncovered_non_target": len(uncovered_nt),
            "uncovered_without_replay": len(without),
            "uncovered_target": len(uncovered_t),
            "unverifiable": len(unverifiable),
            "with_probes": sum(1 for c in coverage if c.n_probes),
            "neighbour_radius": radius,
            "replay_pool": len(pool) if pool is not None else 0,
            "replay_left_out": by_reason,
            "replay_planned": planned,
            "per_capability": [c.to_dict() for c in coverage],
        }
        sections = [self._table(coverage), *self._plots(coverage)]
        if plan:
            counts: dict[str, int] = {}
            for item in plan[:planned]:
                k = item["capability"] or "(general)"
                counts[k] = counts.get(k, 0) + 1
            sections.append(
                Section(
                    f"Replay plan: {planned} examples ({rep.share:.0%} of the training split)"
                    if rep
                    else "Replay plan",
                    "bars",
                    {"labels": list(counts), "values": list(counts.values())},
                    note="Counts at the current training size; build recomputes N from the "
                    "final training split. Left out of the pool: "
                    + (", ".join(f"{k} {v}" for k, v in by_reason.items()) or "none"),
                )
            )
        for c in uncovered_nt + uncovered_t:
            if c.uncovered_probes:
                sections.append(
                    Section(
                        f"{c.name}: probes the training data does not cover",
                        "examples",
                        {
                            "items": [
                                {"id": f"probe {i + 1}", "fields": {"probe": p}}
                                for i, p in enumerate(c.uncovered_probes[:10])
                            ]
                        },
                    )
                )
        summary = (
            f"{len(coverage)} capabilities: {len(uncovered_nt)} non-target uncovered"
            + (f" ({len(without)} without replay data)" if uncovered_nt else "")
            + (f", {len(uncovered_t)} target uncovered" if uncovered_t else "")
            + (f"; replay plan {planned} examples" if pool is not None else "")
        )
        return self.result(summary=summary, values=values, findings=findings, sections=sections)

    def _table(self, coverage: list[CapabilityCoverage]) -> Section:
        rows = [
            [
                c.name,
                "target" if c.target else "non-target",
                f"{c.n_probes}",
                _pct(c.probes_covered),
                f"{c.train_examples} ({c.train_share:.1%})",
                _pct(c.production_share),
                str(c.replay_available),
                {True: "covered", False: "UNCOVERED", None: "unknown"}[c.covered],
            ]
            for c in coverage
        ]
        return Section(
            "Capability coverage",
            "table",
            {
                "columns": [
                    "capability",
                    "kind",
                    "probes",
                    "probes covered",
                    "training examples nearest its probes",
                    "production share",
                    "replay pool",
                    "verdict",
                ],
                "rows": rows,
            },
            note="A probe is covered when the production-coverage method finds training inputs "
            "around it; examples are attributed to the capability of their nearest probe "
            "within the training set's own neighbour radius, or by a matching pattern.",
        )

    def _plots(self, coverage: list[CapabilityCoverage]) -> list[Section]:
        series = {"training share": [c.train_share for c in coverage]}
        if any(c.production_share is not None for c in coverage):
            series["production share"] = [c.production_share or 0.0 for c in coverage]
        return [
            Section(
                "Share of training (and production) that exercises each capability",
                "bars",
                {
                    "labels": [c.name for c in coverage],
                    "values": series["training share"],
                    "series": series,
                },
            )
        ]


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v:.0%}"
