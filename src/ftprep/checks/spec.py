"""Failure mode 7: the task definition drifted during collection.

* ``spec.quarantine`` — every example's spec version and area (see :mod:`ftprep.spec.provenance`);
  examples collected under a superseded version in an area whose criteria changed since are
  quarantined (reason ``superseded_spec_area``) until a reviewer re-validates them.
* ``spec.conflicts`` — near-identical inputs whose outputs differ across spec versions: the
  symptom of blended criteria. The older side is flagged for review (``mixed_criteria_conflict``).

Both publish to ``ctx.artifacts["spec_provenance"]`` (written to ``out/audit/artifacts/``).
"""

from __future__ import annotations

from collections import Counter, defaultdict
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
from ftprep.context import Context
from ftprep.examples import normalize_column
from ftprep.spec import sections
from ftprep.spec.control import spec_path
from ftprep.spec.document import Spec, load_spec
from ftprep.spec.history import History, check_anchor, history_path
from ftprep.spec.provenance import assign_areas, resolve_versions

ARTIFACT = "spec_provenance"
QUARANTINE_REASON = "superseded_spec_area"
CONFLICT_REASON = "mixed_criteria_conflict"


def _embedders(ctx: Context, text_field: str, params: dict[str, Any]) -> tuple[Any, Any, str]:
    """(embed examples, embed texts, why unavailable). A project without a usable embedding
    model still gets areas from fields and rules. ``params``: the check's (template lines)."""
    try:
        from ftprep.signals.cache import cached_embeddings, get_embedder_cached

        get_embedder_cached(ctx.project.embeddings)
    except (ImportError, OSError, ValueError, RuntimeError, KeyError) as e:
        return None, None, f"{type(e).__name__}: {e}"

    def ex() -> np.ndarray:
        # without the template lines every input repeats (an instruction over every prompt
        # would make all inputs near-identical and every area equally near)
        return ctx.text_embeddings(ctx.train_texts_without_templates(text_field, params))

    def texts(t: list[str]) -> np.ndarray:
        return cached_embeddings(None, t, ctx.project.embeddings)

    return ex, texts, ""


def provenance(ctx: Context) -> dict[str, Any]:
    """Versions and areas of ``ctx.train`` (computed once per run; params from
    ``checks: spec.quarantine``)."""
    if ARTIFACT in ctx.artifacts:
        return ctx.artifacts[ARTIFACT]  # type: ignore[no-any-return]
    params = ctx.params("spec.quarantine")
    p = spec_path(ctx.project)
    assert p is not None
    spec = load_spec(p)
    hist = History.load(history_path(p))
    check_anchor(hist, ctx.workspace.root)
    text_field = str(params.get("area_text", "prompt"))
    ex, tx, why = (
        (None, None, "disabled (area_embeddings: false)")
        if not params.get("area_embeddings", True)
        else _embedders(ctx, text_field, params)
    )
    vers = resolve_versions(ctx.project, ctx.train, hist)
    areas = assign_areas(
        spec,
        ctx.train,
        text_field=text_field,
        embed_examples=ex,
        embed_texts=tx,
        use_seeds=bool(params.get("area_seeds", True)),
        temperature=float(params.get("area_temperature", 0.05)),
        margin=float(params.get("area_margin", 0.03)),
        refine=int(params.get("area_refine", 3)),
    )
    out = {
        "current_version": hist.latest.version if hist.latest else spec.version,
        "locked": hist.locked,
        "embeddings": ex is not None,
        "embeddings_unavailable": why,
        "ids": ctx.train.ids,
        "spec_version": vers.values,
        "version_source": vers.sources,
        "unknown_version": [ctx.train.ids[i] for i in vers.unknown],
        "unparseable_dates": vers.unparseable_dates,
        "area": areas.values,
        "area_source": areas.sources,
        "area_confidence": [round(float(c), 4) for c in areas.confidence],
        "area_candidates": [list(c) for c in areas.candidates],
        "unknown_area_values": areas.unknown_field_values,
        "area_holdout_agreement": areas.holdout_agreement,
        "area_holdout_n": areas.holdout_n,
    }
    ctx.artifacts[ARTIFACT] = out
    return out


def _load(ctx: Context) -> tuple[Spec, History]:
    p = spec_path(ctx.project)
    assert p is not None
    return load_spec(p), History.load(history_path(p))


@register
class SpecQuarantine(Check):
    name = "spec.quarantine"
    failure_mode = "spec"
    description = (
        "Records every example's task-spec version (field, collected_at against the effective "
        "dates, or the source default) and area (field, keyword/pattern rules in the spec, or the "
        "nearest area description by embeddings, with its confidence), and quarantines examples "
        "collected under a superseded version in an area whose criteria changed since. Reports "
        "the version mix per area over time. Params: area_text (prompt|response|full), "
        "area_embeddings, area_seeds, area_refine, area_temperature, area_margin, unassigned "
        "(quarantine|pass), max_examples_shown."
    )
    requires = ("spec",)
    default_conditions = (
        Condition(
            "unresolved_quarantine",
            ">",
            0,
            Status.FAIL,
            "examples of a superseded spec version in a changed area await review; build "
            "excludes them until a reviewer clears them",
        ),
        Condition(
            "stale_clearances",
            ">",
            0,
            Status.WARN,
            "a reviewer cleared these before their area changed again",
        ),
        Condition("unknown_version", ">", 0, Status.WARN, "spec versions not in the history"),
        Condition(
            "missing_version",
            ">",
            0,
            Status.WARN,
            "examples with no spec version (no field, no collected_at, no source default)",
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        spec, hist = _load(ctx)
        prov = provenance(ctx)
        ids: list[str] = prov["ids"]
        versions: list[str | None] = prov["spec_version"]
        area: list[str | None] = prov["area"]
        asrc: list[str] = prov["area_source"]
        aconf: list[float] = prov["area_confidence"]
        cands: list[list[str]] = prov["area_candidates"]
        unknown = set(prov["unknown_version"])
        res = self.result()
        v = res.values
        v.update(
            examples=len(ids),
            locked=int(hist.locked),
            current_version=prov["current_version"],
            versions_recorded=len(hist.entries),
            version_sources=dict(Counter(prov["version_source"])),
            area_sources=dict(Counter(asrc)),
            unknown_version=len(unknown),
            missing_version=sum(1 for x in versions if x is None),
            unparseable_dates=prov["unparseable_dates"],
            unassigned_area=sum(1 for a in area if a is None),
        )
        inferred = [c for c, s in zip(aconf, asrc, strict=True) if s == "embedding"]
        v["area_holdout_agreement"] = prov["area_holdout_agreement"]
        v["area_holdout_n"] = prov["area_holdout_n"]
        v["inferred_area_mean_confidence"] = (
            round(float(np.mean(inferred)), 4) if inferred else None
        )
        if not hist.locked:
            res.findings.append(
                Finding(
                    "warn",
                    "spec_not_locked",
                    "the task spec is not under change control, so no version can be superseded",
                    action="run `ftprep spec lock` before collecting data",
                )
            )
            v.update(quarantined=0, resolved=0, unresolved_quarantine=0, stale_clearances=0)
            res.sections += sections.mix_sections(
                ids, versions, area, ctx.train.column("collected_at"), hist, set()
            )
            res.summary = "spec not locked: nothing can be superseded yet"
            return res

        unassigned = str(self.param("unassigned", "quarantine"))
        changed_memo: dict[str, dict[str, str]] = {}
        quarantined: dict[str, tuple[int, list[str]]] = {}
        for i, ver in enumerate(versions):
            if ver is None or ids[i] in unknown:
                continue
            if ver not in changed_memo:
                changed_memo[ver] = hist.changed_since(ver)
            changed = changed_memo[ver]
            if not changed:
                continue
            a_i = area[i]
            cand = cands[i] or ([a_i] if a_i is not None else [])
            if not cand:
                hit = sorted(changed) if unassigned == "quarantine" else []
            else:
                hit = [a for a in cand if a in changed]
            if not hit:
                continue
            quarantined[ids[i]] = (i, hit)
            where = (
                f"area {area[i]} ({asrc[i]}, confidence {aconf[i]:.2f})"
                if area[i]
                else "area unknown"
            )
            if area[i] and hit != [area[i]]:
                where += f"; candidate areas changed: {', '.join(hit)}"
            res.decisions.append(
                Decision(
                    ids[i],
                    Action.QUARANTINE,
                    QUARANTINE_REASON,
                    f"collected under spec version {ver} ({prov['version_source'][i]}); {where}; "
                    f"changed in version {', '.join(sorted({changed[a] for a in hit}))}; current version "
                    f"{hist.latest.version if hist.latest else '?'}: re-validate against the current criteria",
                )
            )

        human = {
            e.example_id: e for e in ctx.ledger.entries(check=self.name) if e.actor_kind == "human"
        }
        resolved = [q for q in quarantined if q in human]
        latest_change: dict[str, str] = {}  # area -> when its criteria last changed
        for e in hist.entries:
            for a in e.affected_areas:
                latest_change[a] = e.recorded_at
        stale = []
        for q in resolved:
            _, hit = quarantined[q]
            # cleared before (or in the same second as) the area's latest change: review again
            if human[q].updated_at <= max(latest_change[a] for a in hit):
                stale.append(q)
        unresolved = [q for q in quarantined if q not in human]
        v.update(
            quarantined=len(quarantined),
            resolved=len(resolved),
            unresolved_quarantine=len(unresolved),
            stale_clearances=len(stale),
            changed_areas=sorted({a for c in changed_memo.values() for a in c}),
        )
        if unresolved:
            res.findings.append(
                Finding(
                    "warn",
                    "superseded_spec_area",
                    f"{len(unresolved)} examples were collected under a superseded spec version in an area "
                    "whose criteria changed since; they are quarantined and build leaves them out",
                    metrics={"unresolved": len(unresolved), "resolved": len(resolved)},
                    example_ids=unresolved,
                    action="re-validate them against the current spec in the review app (quarantine queue)",
                )
            )
        if stale:
            res.findings.append(
                Finding(
                    "warn",
                    "stale_spec_clearance",
                    f"{len(stale)} quarantined examples were cleared before their area changed again",
                    example_ids=stale,
                    action="review them again against the current criteria",
                )
            )
        if unknown:
            res.findings.append(
                Finding(
                    "warn",
                    "unknown_spec_version",
                    f"{len(unknown)} examples name a spec version that is not in the history "
                    f"({', '.join(sorted({str(versions[i]) for i in range(len(ids)) if ids[i] in unknown})[:10])})",
                    example_ids=sorted(unknown),
                    action="fix the version field or record the version",
                )
            )
        if v["missing_version"]:
            res.findings.append(
                Finding(
                    "warn",
                    "missing_spec_version",
                    f"{v['missing_version']} examples have no spec version",
                    example_ids=[ids[i] for i, x in enumerate(versions) if x is None],
                    action="map a spec_version or collected_at field, or set defaults: {spec_version: ...} "
                    "on the source",
                )
            )
        if prov["unknown_area_values"]:
            res.findings.append(
                Finding(
                    "warn",
                    "unknown_spec_area",
                    "area values that are not areas of the spec: "
                    + ", ".join(
                        f"{k} ({n})" for k, n in sorted(prov["unknown_area_values"].items())[:10]
                    ),
                    action="rename them to an area of the spec, or add the area",
                )
            )
        res.sections += sections.history_section(hist)
        res.sections += sections.mix_sections(
            ids,
            versions,
            area,
            ctx.train.column("collected_at"),
            hist,
            set(quarantined),
            set(resolved),
        )
        res.sections += sections.area_sections(asrc, aconf, prov)
        res.sections += sections.quarantine_examples(
            ctx.train.texts("prompt"),
            ctx.train.texts("response"),
            int(self.param("max_examples_shown", 30)),
            spec,
            hist,
            prov,
            quarantined,
            human,
        )
        res.summary = (
            f"spec {v['current_version']}: {len(quarantined)} quarantined "
            f"({len(unresolved)} unresolved), changed areas: "
            f"{', '.join(v['changed_areas']) or 'none'}"
        )
        return res


def _jaccard(a: str, b: str) -> float:
    sa, sb = set(a.split()), set(b.split())
    if not sa and not sb:
        return 1.0
    return len(sa & sb) / len(sa | sb)


@register
class SpecConflicts(Check):
    name = "spec.conflicts"
    failure_mode = "spec"
    description = (
        "Mixed criteria: near-identical inputs (same normalised text, or embedding cosine >= "
        "`similarity`) whose outputs differ (token Jaccard < `output_jaccard`) across spec "
        "versions. Each conflict is shown with both sides; the older side is flagged for review. "
        "Params: similarity (0.95), output_jaccard (0.9), text (prompt), embeddings (true), "
        "max_comparisons (4e8 cosine pairs), max_pairs_shown (50)."
    )
    requires = ("spec",)
    default_conditions = (
        Condition(
            "conflicts",
            ">",
            0,
            Status.WARN,
            "near-identical inputs answered differently under different spec versions",
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        prov = provenance(ctx)
        _, hist = _load(ctx)
        versions: list[str | None] = prov["spec_version"]
        ids: list[str] = prov["ids"]
        order = {v: k for k, v in enumerate(hist.versions)}
        for x in sorted({x for x in versions if x is not None and x not in order}):
            order[x] = len(order)
        res = self.result()
        idx = [i for i, x in enumerate(versions) if x is not None]
        distinct = {versions[i] for i in idx}
        res.values.update(versions_in_data=len(distinct))
        if len(distinct) < 2:
            res.values.update(conflicts=0, conflict_examples=0, candidate_pairs=0)
            res.summary = "fewer than two spec versions in the data: nothing to compare"
            return res
        text_field = str(self.param("text", "prompt"))
        prompts = ctx.train.texts(text_field)
        outs = normalize_column(ctx.train.texts("response")).to_pylist()
        keys = normalize_column(prompts).to_pylist()
        labels = ctx.train.column("label")
        pairs: dict[tuple[int, int], float] = {}
        # 1. same normalised input
        groups: dict[str, list[int]] = defaultdict(list)
        for i in idx:
            key = keys[i]
            if key:
                groups[key].append(i)
        for members in groups.values():
            if len(members) > 1:
                self._pairs_in(members, versions, pairs, 1.0)
        # 2. near-identical by embeddings, across versions only
        sim_t = float(self.param("similarity", 0.95))
        n_cmp = 0
        emb_used = False
        if self.param("embeddings", True):
            ex, _, _ = _embedders(ctx, text_field, self.params)
            by_v: dict[str, list[int]] = defaultdict(list)
            for i in idx:
                by_v[versions[i]].append(i)  # type: ignore[index]
            vs = sorted(by_v, key=lambda x: order[x])
            n_cmp = sum(len(by_v[a]) * len(by_v[b]) for k, a in enumerate(vs) for b in vs[k + 1 :])
            if ex is not None and n_cmp <= float(self.param("max_comparisons", 4e8)):
                emb = ex()
                emb_used = True
                for k, a in enumerate(vs):
                    for b in vs[k + 1 :]:
                        self._near(emb, by_v[a], by_v[b], sim_t, pairs)
        thr = float(self.param("output_jaccard", 0.9))

        def differs(i: int, j: int) -> bool:
            if labels[i] is not None and labels[j] is not None and labels[i] != labels[j]:
                return True
            return _jaccard(outs[i], outs[j]) < thr

        # how often identical inputs get different outputs within one version vs across versions:
        # a cross-version rate well above the within-version rate is the blended-criteria signal
        within = [0, 0]
        across = [0, 0]
        for members in groups.values():
            for pos, m1 in enumerate(members[:30]):
                for m2 in members[pos + 1 : 30]:
                    tally = within if versions[m1] == versions[m2] else across
                    tally[0] += 1
                    tally[1] += differs(m1, m2)
        conflicts = []
        for (i, j), sim in pairs.items():
            vi, vj = versions[i], versions[j]
            if vi == vj:
                continue
            old, new = (i, j) if order[vi] < order[vj] else (j, i)  # type: ignore[index]
            jac = _jaccard(outs[i], outs[j])
            if differs(i, j):
                conflicts.append((old, new, sim, jac))
        conflicts.sort(key=lambda c: (-c[2], c[3], ids[c[0]], ids[c[1]]))
        # one conflict per older example: its most similar newer counterpart
        firsts: dict[int, tuple[int, int, float, float]] = {}
        for c in conflicts:
            firsts.setdefault(c[0], c)
        conflicts = list(firsts.values())
        involved = sorted({ids[c[0]] for c in conflicts} | {ids[c[1]] for c in conflicts})
        area = prov["area"]
        changed_all = {a for ver in distinct if ver is not None for a in hist.changed_since(ver)}
        res.values.update(
            conflicts=len(conflicts),
            conflict_examples=len(involved),
            candidate_pairs=len(pairs),
            embedding_comparisons=n_cmp if emb_used else 0,
            same_input_pairs_within_version=within[0],
            same_input_disagreement_within_version=round(within[1] / within[0], 4)
            if within[0]
            else None,
            same_input_pairs_across_versions=across[0],
            same_input_disagreement_across_versions=round(across[1] / across[0], 4)
            if across[0]
            else None,
            conflicts_outside_changed_areas=sum(
                1 for c in conflicts if area[c[0]] not in changed_all
            ),
        )
        for old, new, sim, jac in conflicts:
            res.decisions.append(
                Decision(
                    ids[old],
                    Action.REVIEW,
                    CONFLICT_REASON,
                    f"input near-identical (similarity {sim:.3f}) to {ids[new]} (spec {versions[new]}), "
                    f"output differs (token overlap {jac:.2f}); this one is spec {versions[old]}",
                )
            )
        if conflicts:
            res.findings.append(
                Finding(
                    "warn",
                    CONFLICT_REASON,
                    f"{len(conflicts)} pairs of near-identical inputs are answered differently under "
                    "different spec versions (blended criteria)",
                    metrics={"conflicts": len(conflicts)},
                    threshold=sim_t,
                    example_ids=involved,
                    action="re-validate the older side against the current spec; if the area's criteria "
                    "changed, record it with `ftprep spec bump --areas AREA`",
                )
            )
            limit = int(self.param("max_pairs_shown", 50))
            items = [
                {
                    "left_title": f"{ids[o]} — spec {versions[o]}, area {area[o] or '?'}",
                    "left": f"INPUT:\n{prompts[o][:1500]}\n\nOUTPUT:\n{ctx.train.texts('response')[o][:1500]}",
                    "right_title": f"{ids[n]} — spec {versions[n]}, area {area[n] or '?'}",
                    "right": f"INPUT:\n{prompts[n][:1500]}\n\nOUTPUT:\n{ctx.train.texts('response')[n][:1500]}",
                    "note": f"input similarity {s:.3f}, output token overlap {j:.2f}",
                }
                for o, n, s, j in conflicts[:limit]
            ]
            res.sections.append(
                Section(
                    "Mixed criteria: same input, different answer across spec versions",
                    "pairs",
                    {"pairs": items},
                    note=(
                        f"Identical inputs are answered differently {across[1] / across[0]:.0%} of "
                        f"the time across versions and {within[1] / within[0]:.0%} within a "
                        "version; close rates mean normal answer variety, a higher cross-version "
                        "rate means blended criteria."
                    )
                    if within[0] and across[0]
                    else "",
                )
            )
        ctx.artifacts["spec_conflicts"] = [
            {
                "old": ids[o],
                "new": ids[n],
                "old_version": versions[o],
                "new_version": versions[n],
                "input_similarity": round(s, 4),
                "output_overlap": round(j, 4),
            }
            for o, n, s, j in conflicts
        ]
        res.summary = (
            f"{len(conflicts)} cross-version conflicts among {len(pairs)} near-identical "
            f"input pairs ({len(distinct)} versions{', embeddings' if emb_used else ''})"
        )
        if within[0] and across[0]:
            res.summary += (
                f"; identical inputs answered differently {across[1] / across[0]:.0%} of the time "
                f"across versions vs {within[1] / within[0]:.0%} within a version"
            )
        return res

    @staticmethod
    def _pairs_in(
        members: list[int],
        versions: list[str | None],
        pairs: dict[tuple[int, int], float],
        sim: float,
    ) -> None:
        by_v: dict[str | None, list[int]] = defaultdict(list)
        for m in members:
            by_v[versions[m]].append(m)
        vs = list(by_v)
        for k, a in enumerate(vs):
            for b in vs[k + 1 :]:
                for i in by_v[a][:20]:
                    for j in by_v[b][:20]:
                        pairs[(min(i, j), max(i, j))] = sim

    @staticmethod
    def _near(
        emb: np.ndarray,
        a: list[int],
        b: list[int],
        thr: float,
        pairs: dict[tuple[int, int], float],
        block: int = 2048,
    ) -> None:
        eb = emb[b]
        for s in range(0, len(a), block):
            rows = a[s : s + block]
            sims = emb[rows] @ eb.T
            r, c = np.nonzero(sims >= thr)
            for x, y in zip(r.tolist(), c.tolist(), strict=True):
                i, j = rows[x], b[y]
                key = (min(i, j), max(i, j))
                if key not in pairs:
                    pairs[key] = float(sims[x, y])
