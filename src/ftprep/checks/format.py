"""Format and size checks: at least what OpenAI's fine-tuning data-preparation checks cover
(format/role errors, token counts, examples over the context limit, training tokens per epoch)
plus length outliers and exact duplicates after normalisation."""

from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

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
from ftprep.examples import normalize_column

if TYPE_CHECKING:
    from ftprep.context import Context


def _hist(values: np.ndarray, bins: int = 30, log: bool = False) -> dict[str, list[float]]:
    v = np.asarray(values, dtype=np.float64)
    if len(v) == 0:
        return {"counts": [], "edges": []}
    if log:
        v = np.log10(np.maximum(v, 1))
    counts, edges = np.histogram(v, bins=bins)
    if log:
        edges = 10**edges
    return {"counts": counts.tolist(), "edges": [float(e) for e in edges]}


@register
class Rejects(Check):
    name = "format.rejects"
    failure_mode = "format"
    description = (
        "Records that could not become examples: malformed JSON, wrong encoding, missing or "
        "empty fields, unknown roles, no assistant turn, assistant turn not last, oversized "
        "records. Every reject is listed with file, line and reason in rejects.jsonl. WARN on "
        "any reject; FAIL when more than half of the records were rejected (usually a format "
        "ftprep did not recognise) or with --strict."
    )
    default_conditions = (
        Condition("rejects", ">", 0, Status.WARN, "records were rejected (see rejects.jsonl)"),
        Condition(
            "reject_rate",
            ">",
            0.5,
            Status.FAIL,
            "most records were rejected: check the source's format and fields",
        ),
    )

    def conditions(self, ctx: Context) -> list[Condition]:
        conds = super().conditions(ctx)
        if ctx.strict:
            conds.append(Condition("rejects", ">", 0, Status.FAIL, "--strict: any reject fails"))
        return conds

    def run(self, ctx: Context) -> CheckResult:
        by_code: dict[str, int] = {}
        by_source: dict[str, int] = {}
        for r in ctx.rejects:
            by_code[r.code] = by_code.get(r.code, 0) + 1
            by_source[r.source] = by_source.get(r.source, 0) + 1
        n = len(ctx.rejects)
        # the rate is over the training sources (production and benchmarks are read leniently)
        train_sources = {s.name for s in ctx.project.sources}
        n_train = sum(1 for r in ctx.rejects if r.source in train_sources)
        total = n_train + len(ctx.train)
        res = self.result(
            summary=f"{n} record(s) rejected" if n else "every record parsed",
            values={
                "rejects": n,
                "reject_rate": n_train / total if total else 0.0,
                "by_code": by_code,
            },
        )
        if n:
            res.sections.append(
                Section(
                    "Rejected records by reason",
                    "bars",
                    {"labels": list(by_code), "values": list(by_code.values())},
                )
            )
            res.sections.append(
                Section(
                    "Rejected records (first 50)",
                    "table",
                    {
                        "columns": ["file", "line", "reason code", "reason", "record"],
                        "rows": [
                            [r.file, r.line, r.code, r.reason, r.snippet] for r in ctx.rejects[:50]
                        ],
                    },
                )
            )
        return res


@register
class Tokens(Check):
    name = "format.tokens"
    failure_mode = "format"
    description = (
        "Token counts per example with an offline tokenizer (default cl100k; `tokenizer:` in "
        "ftprep.yaml names another, e.g. your model's tokenizer.json). Examples over "
        "`context_limit` are excluded (the trainer would truncate the answer). Reports the "
        "estimated training tokens per epoch."
    )
    default_conditions = (
        Condition("over_limit", ">", 0, Status.WARN, "examples exceed the context limit"),
    )

    def run(self, ctx: Context) -> CheckResult:
        ds = ctx.train
        total, asst = ctx.token_counts(ds)
        limit = ctx.project.context_limit
        over = np.flatnonzero(total > limit)
        ids = ds.ids
        sources = np.asarray(ds.column("source"), dtype=object)
        per_source = {}
        for s in sorted(set(sources.tolist())):
            m = sources == s
            per_source[s] = {
                "examples": int(m.sum()),
                "tokens": int(total[m].sum()),
                "mean_tokens": float(total[m].mean()) if m.any() else 0.0,
            }
        n = len(total)
        values = {
            "examples": n,
            "tokens_total": int(total.sum()),
            "assistant_tokens_total": int(asst.sum()),
            "tokens_mean": float(total.mean()) if n else 0.0,
            "tokens_p50": float(np.percentile(total, 50)) if n else 0.0,
            "tokens_p95": float(np.percentile(total, 95)) if n else 0.0,
            "tokens_max": int(total.max()) if n else 0,
            "context_limit": limit,
            "over_limit": len(over),
            "est_training_tokens_per_epoch": int(np.minimum(total, limit).sum()),
            "per_source": per_source,
        }
        res = self.result(
            summary=f"{values['tokens_total']:,} tokens; {len(over)} example(s) over the "
            f"{limit}-token limit; ~{values['est_training_tokens_per_epoch']:,} training tokens per epoch",
            values=values,
        )
        res.decisions = [
            Decision(
                ids[i], Action.EXCLUDE, "over_context_limit", f"{int(total[i])} tokens > {limit}"
            )
            for i in over
        ]
        if len(over):
            res.findings.append(
                Finding(
                    "warn",
                    "over_context_limit",
                    f"{len(over)} example(s) exceed {limit} tokens",
                    metrics={"count": len(over)},
                    threshold=limit,
                    example_ids=[ids[i] for i in over],
                    action="excluded from the build; split or shorten them",
                )
            )
        res.sections.append(
            Section(
                "Tokens per example",
                "histogram",
                {**_hist(total, log=True), "xlabel": "tokens (log scale)", "marker": limit},
            )
        )
        res.sections.append(
            Section(
                "Tokens by source",
                "bars",
                {
                    "labels": list(per_source),
                    "values": [v["tokens"] for v in per_source.values()],
                    "ylabel": "tokens",
                },
            )
        )
        return res


@register
class LengthOutliers(Check):
    name = "format.length_outliers"
    failure_mode = "format"
    description = (
        "Examples whose prompt or answer length is extreme for their source (robust z-score of "
        "log length above `z` (default 4), or an empty-looking answer under `min_answer_chars` "
        "(default 2)). They are sent to review, not dropped."
    )
    default_conditions = (
        Condition(
            "outlier_rate", ">", 0.05, Status.WARN, "more than 5% of examples are length outliers"
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        ds = ctx.train
        z_lim = float(self.param("z", 4.0))
        min_chars = int(self.param("min_answer_chars", 2))
        ids = ds.ids
        flagged: dict[int, str] = {}
        for fld in ("prompt", "response"):
            lens = np.log1p(
                np.fromiter((len(t) for t in ds.texts(fld)), dtype=np.float64, count=len(ds))
            )
            sources = np.asarray(ds.column("source"), dtype=object)
            for s in set(sources.tolist()):
                m = np.flatnonzero(sources == s)
                if len(m) < 20:
                    continue
                med = np.median(lens[m])
                # floor: a source of near-identical lengths must not flag small differences
                mad = max(float(np.median(np.abs(lens[m] - med))) * 1.4826, 0.3)
                z = (lens[m] - med) / mad
                for j in np.flatnonzero(np.abs(z) > z_lim):
                    i = int(m[j])
                    flagged.setdefault(i, f"{fld} length z={z[j]:+.1f} within source {s!r}")
        for i, t in enumerate(ds.texts("response")):
            if len(t.strip()) < min_chars:
                flagged.setdefault(i, f"answer has {len(t.strip())} characters")
        n = len(ds)
        res = self.result(
            summary=f"{len(flagged)} length outlier(s)",
            values={"outliers": len(flagged), "outlier_rate": len(flagged) / n if n else 0.0},
        )
        res.decisions = [
            Decision(ids[i], Action.REVIEW, "length_outlier", why)
            for i, why in sorted(flagged.items())
        ]
        if flagged:
            res.findings.append(
                Finding(
                    "info",
                    "length_outlier",
                    f"{len(flagged)} example(s) have extreme lengths",
                    example_ids=[ids[i] for i in sorted(flagged)],
                    action="sent to review",
                )
            )
            res.sections.append(
                Section(
                    "Length outliers (first 20)",
                    "examples",
                    {
                        "items": [
                            {
                                "id": ids[i],
                                "title": why,
                                "fields": {
                                    "prompt": ds.texts("prompt")[i][:2000],
                                    "response": ds.texts("response")[i][:2000],
                                },
                            }
                            for i, why in sorted(flagged.items())[:20]
                        ]
                    },
                )
            )
        return res


@register
class ExactDuplicates(Check):
    name = "format.exact_duplicates"
    failure_mode = "format"
    description = (
        "Exact duplicates after normalisation (Unicode NFKC, case, punctuation and whitespace) "
        "of the whole conversation: the first occurrence is kept, the rest excluded. Also "
        "reports identical prompts with different answers (conflicting targets)."
    )
    default_conditions = (
        Condition(
            "duplicate_rate", ">", 0.05, Status.WARN, "more than 5% of examples are duplicates"
        ),
    )

    def run(self, ctx: Context) -> CheckResult:
        ds = ctx.train
        t = ds.table
        ids = ds.ids
        s = _codes(normalize_column(t.column("system")))
        p = _codes(normalize_column(t.column("prompt")))
        r = _codes(normalize_column(t.column("response")))
        # one code per distinct (system, prompt, response)
        keys = np.stack([s, p, r], axis=1) if len(s) else np.zeros((0, 3), dtype=np.int64)
        _, first_idx, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
        inverse = inverse.reshape(-1)
        firsts = first_idx[inverse]  # for each row, the row of the first copy
        dup_rows = np.flatnonzero(firsts != np.arange(len(s)))
        dups = [
            Decision(ids[i], Action.EXCLUDE, "exact_duplicate", f"duplicate of {ids[firsts[i]]}")
            for i in dup_rows
        ]
        clusters: dict[int, list[int]] = {}
        for i in dup_rows:
            clusters.setdefault(int(firsts[i]), [int(firsts[i])]).append(int(i))
        # identical prompts with different answers
        pairs = np.unique(p.astype(np.int64) * (int(r.max(initial=0)) + 1) + r)
        per_prompt = (
            np.bincount(pairs // (int(r.max(initial=0)) + 1)) if len(pairs) else np.zeros(0)
        )
        conflicting = int((per_prompt > 1).sum())
        n = len(ds)
        res = self.result(
            summary=f"{len(dups)} exact duplicate(s) in {len(clusters)} cluster(s); {conflicting} prompt(s) with conflicting answers",
            values={
                "duplicates": len(dups),
                "duplicate_rate": len(dups) / n if n else 0.0,
                "duplicate_clusters": len(clusters),
                "conflicting_prompts": conflicting,
            },
            decisions=dups,
        )
        if dups:
            texts = ds.texts("full")
            res.findings.append(
                Finding(
                    "info",
                    "exact_duplicate",
                    f"{len(dups)} duplicate example(s) excluded",
                    example_ids=[d.example_id for d in dups],
                    action="excluded (first copy kept)",
                )
            )
            res.sections.append(
                Section(
                    "Duplicate clusters (first 10)",
                    "examples",
                    {
                        "items": [
                            {
                                "id": ids[j],
                                "title": f"{len(members)} copies: "
                                + ", ".join(ids[m] for m in members[:6]),
                                "fields": {"conversation": texts[j][:1500]},
                            }
                            for j, members in list(clusters.items())[:10]
                        ]
                    },
                )
            )
        # clusters must stay inside one split
        ctx.artifacts.setdefault("link_clusters", []).extend(
            [[ids[m] for m in members] for members in clusters.values()]
        )
        return res


def _codes(arr: pa.Array) -> np.ndarray:
    """Dense integer code per distinct string."""
    enc = pc.dictionary_encode(arr)
    return enc.indices.to_numpy(zero_copy_only=False)


@register
class Structure(Check):
    name = "format.structure"
    failure_mode = "format"
    description = (
        "Conversation structure per source: turns per example, share with a system prompt, "
        "multi-turn share, tool calls, and record formats detected. Informational."
    )

    def run(self, ctx: Context) -> CheckResult:
        ds = ctx.train
        turns = np.asarray(ds.column("n_turns"), dtype=np.int64)
        has_system = np.fromiter((bool(s) for s in ds.texts("system")), dtype=bool, count=len(ds))
        tool = np.fromiter(
            ("tool_calls" in m for m in ds.column("messages")), dtype=bool, count=len(ds)
        )
        n = len(ds)
        sources = np.asarray(ds.column("source"), dtype=object)
        rows = []
        for s in sorted(set(sources.tolist())):
            m = sources == s
            rows.append(
                [
                    s,
                    int(m.sum()),
                    round(float(turns[m].mean()), 2),
                    f"{has_system[m].mean():.0%}",
                    f"{(turns[m] > 3).mean():.0%}",
                    int(tool[m].sum()),
                ]
            )
        res = self.result(
            summary=f"{n} examples, {turns.mean() if n else 0:.1f} turns on average",
            values={
                "examples": n,
                "mean_turns": float(turns.mean()) if n else 0.0,
                "with_system": int(has_system.sum()),
                "multi_turn": int((turns > 3).sum()),
                "with_tool_calls": int(tool.sum()),
                "without_system": int((~has_system).sum()),
            },
        )
        res.sections.append(
            Section(
                "Per source",
                "table",
                {
                    "columns": [
                        "source",
                        "examples",
                        "mean turns",
                        "with system prompt",
                        "multi-turn",
                        "tool calls",
                    ],
                    "rows": rows,
                },
            )
        )
        return res
