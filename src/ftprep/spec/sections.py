"""Report sections of the task-spec checks: history, version mix per area over time, how areas
were assigned, and quarantined examples with the criteria then and now."""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any

import numpy as np

from ftprep.checks.base import Section
from ftprep.spec.document import Spec
from ftprep.spec.history import History
from ftprep.spec.provenance import months as month_of


def history_section(hist: History) -> list[Section]:
    rows = [
        [
            e.version,
            e.kind,
            e.effective[:10],
            ", ".join(e.affected_areas) or "—",
            e.actor,
            e.note,
        ]
        for e in hist.entries
    ]
    return [
        Section(
            "Spec history",
            "table",
            {
                "columns": ["version", "kind", "effective", "affected areas", "by", "note"],
                "rows": rows,
            },
        )
    ]


def mix_sections(
    ids: list[str],
    versions: list[str | None],
    area: list[str | None],
    collected_at: list[str | None],
    hist: History,
    quarantined: set[str],
    resolved: set[str] | None = None,
) -> list[Section]:
    resolved = resolved or set()
    order = list(hist.versions) + sorted(
        {str(x) for x in versions if x is not None} - set(hist.versions)
    )
    cols = [*order, "none"]
    per_area: dict[str, Counter[str]] = defaultdict(Counter)
    q_area: Counter[str] = Counter()
    r_area: Counter[str] = Counter()
    months = month_of(collected_at)
    over_time: dict[str, Counter[str]] = defaultdict(Counter)
    area_time: dict[tuple[str, str], Counter[str]] = defaultdict(Counter)
    for i, eid in enumerate(ids):
        a = area[i] or "(unassigned)"
        ver = versions[i] or "none"
        per_area[a][ver] += 1
        if eid in quarantined:
            q_area[a] += 1
            if eid in resolved:
                r_area[a] += 1
        if months[i]:
            over_time[months[i]][ver] += 1  # type: ignore[index]
            area_time[(a, months[i])][ver] += 1  # type: ignore[index]
    rows = [
        [a, sum(c.values()), *[c.get(x, 0) for x in cols], q_area[a], r_area[a]]
        for a, c in sorted(per_area.items())
    ]
    out = [
        Section(
            "Spec version mix per area",
            "table",
            {"columns": ["area", "examples", *cols, "quarantined", "cleared"], "rows": rows},
        )
    ]
    if over_time:
        xs = sorted(over_time)
        out.append(
            Section(
                "Spec version mix over time (examples per month)",
                "lines",
                {
                    "x": xs,
                    "series": {
                        x: [over_time[m].get(x, 0) for m in xs]
                        for x in cols
                        if any(over_time[m].get(x, 0) for m in xs)
                    },
                    "xlabel": "month collected",
                    "ylabel": "examples",
                },
            )
        )
        trows = [[a, m, *[c.get(x, 0) for x in cols]] for (a, m), c in sorted(area_time.items())]
        out.append(
            Section(
                "Spec version mix per area over time",
                "table",
                {"columns": ["area", "month", *cols], "rows": trows[:500]},
                note="" if len(trows) <= 500 else f"first 500 of {len(trows)} rows",
            )
        )
    return out


def area_sections(asrc: list[str], aconf: list[float], prov: dict[str, Any]) -> list[Section]:
    rows = []
    for s, n in sorted(Counter(asrc).items()):
        cs = [c for c, x in zip(aconf, asrc, strict=True) if x == s]
        rows.append([s, n, round(float(np.mean(cs)), 3) if cs and s != "none" else None])
    out = [
        Section(
            "How areas were assigned",
            "table",
            {"columns": ["source", "examples", "mean confidence"], "rows": rows},
            note=""
            if prov["embeddings"]
            else f"embeddings unavailable ({prov['embeddings_unavailable']}): examples that no "
            "field or rule places stay unassigned",
        )
    ]
    inferred = [c for c, x in zip(aconf, asrc, strict=True) if x == "embedding"]
    if inferred:
        out.append(
            Section(
                "Confidence of areas inferred by embeddings",
                "histogram",
                {"values": inferred, "xlabel": "softmax probability of the nearest area"},
            )
        )
    return out


def quarantine_examples(
    prompts: list[str],
    responses: list[str],
    limit: int,
    spec: Spec,
    hist: History,
    prov: dict[str, Any],
    quarantined: dict[str, tuple[int, list[str]]],
    human: dict[str, Any],
) -> list[Section]:
    pending = [q for q in quarantined if q not in human][:limit]
    if not pending:
        return []
    specs: dict[str, Spec] = {}
    items = []
    for q in pending:
        i, hit = quarantined[q]
        ver = prov["spec_version"][i]
        e = hist.find(ver)
        if e is not None and ver not in specs:
            specs[ver] = e.spec()
        a = hit[0]
        then = (
            specs[ver].areas[a].text if ver in specs and a in specs[ver].areas else "(area absent)"
        )
        now = spec.areas[a].text if a in spec.areas else "(area removed)"
        items.append(
            {
                "id": q,
                "title": f"spec {ver} → {prov['current_version']}, area {a} "
                f"({prov['area_source'][i]}, {prov['area_confidence'][i]:.2f})",
                "fields": {
                    "input": prompts[i][:2000],
                    "output": responses[i][:2000],
                    f"criteria in {ver}": then,
                    "criteria now": now,
                },
            }
        )
    return [Section("Quarantined examples (first pending)", "examples", {"items": items})]
