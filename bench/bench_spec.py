"""Benchmark for the task-spec checks (docs/benchmarks.md, section "Task spec").

1. Quarantine with *inferred* areas. Real intent data with real areas: CLINC150 test (10 domains,
   4,500 queries) and HWU64 test (18 scenarios, 1,076 queries). The spec has one area per domain
   (description: its intent names); version 2 changes the criteria of a seeded 30% of the areas;
   each example is collected under version 1 or 2 at random. Truth: version 1 and true area
   changed. Methods, side by side in the same run:
     * baseline "version only": quarantine every example of a superseded version (what a user
       without area scoping does);
     * rules only (keywords = the words of the domain's intent names), unplaced -> quarantined;
     * nearest area description by embeddings, no rules, no seeds;
     * embeddings with k-means refinement, no rules;
     * ftprep default: rules, then embeddings with rule-placed seeds, 3 refinement rounds,
       margin 0.03; and the same with a wider candidate margin (0.08) for recall;
     * areas given as a field (sanity: must be 1.0 / 1.0).
2. Conflicts: planted cross-version pairs whose input was lightly edited (case/punctuation, a
   word added or dropped) and whose output differs, among the other queries (outputs = intent).
   Baseline: exact input match (``df.duplicated(["input"])``); then normalised text; then
   normalised text + embeddings (cosine >= 0.95, ftprep default).

Run: ``PYTHONPATH=src python bench/bench_spec.py`` (about a minute on two cores).
"""

from __future__ import annotations

import json
import os
import platform
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

import ftprep
from _machine import cpu_model
from ftprep import spec as sp
from ftprep.checks.base import Action
from ftprep.project import load_project

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "intents"
STOP = {
    "the",
    "and",
    "for",
    "what",
    "how",
    "are",
    "you",
    "with",
    "from",
    "that",
    "this",
    "change",
    "set",
    "get",
    "query",
    "info",
    "general",
    "request",
    "factoid",
    "other",
    "remove",
}


def clinc() -> tuple[list[tuple[str, str, str]], dict[str, list[str]]]:
    domains = json.loads((DATA / "clinc150" / "domains.json").read_text())
    intent_dom = {i: d for d, ints in domains.items() for i in ints}
    test = json.loads((DATA / "clinc150" / "data_full.json").read_text())["test"]
    return [(q, i, intent_dom[i]) for q, i in test], domains


def hwu() -> tuple[list[tuple[str, str, str]], dict[str, list[str]]]:
    qs = (DATA / "hwu64" / "test.seq.in").read_text().splitlines()
    labels = (DATA / "hwu64" / "test.label").read_text().splitlines()
    rows = [(q, lab, lab.split("_")[0]) for q, lab in zip(qs, labels, strict=True)]
    domains: dict[str, list[str]] = {}
    for _, lab, d in rows:
        if lab not in domains.setdefault(d, []):
            domains[d].append(lab)
    return rows, domains


def spec_text(domains: dict[str, list[str]], version: int, changed: set[str], rules: bool) -> str:
    areas = {}
    for d, ints in domains.items():
        names = [i.replace("_", " ") for i in ints]
        a: dict[str, object] = {
            "description": f"Requests about {d.replace('_', ' ')}: " + ", ".join(names) + ".",
            "criteria": ["Answer with the matching action."],
        }
        if version == 2 and d in changed:
            a["criteria"] = [
                "Answer with the matching action.",
                "Confirm identity first (new policy).",
            ]
        if rules:
            kw = sorted({w for n in names for w in n.split() if len(w) > 3 and w not in STOP})
            a["keywords"] = kw
        areas[d] = a
    return (
        "---\n"
        + yaml.safe_dump({"version": str(version), "areas": areas}, sort_keys=True)
        + "---\n"
    )


def project(
    root: Path,
    rows: list[tuple[str, str, str]],
    domains: dict[str, list[str]],
    changed: set[str],
    rules: bool,
    params: dict[str, object],
    area_field: float,
    versions: list[str],
) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "d.jsonl", "w") as fh:
        for k, (q, intent, dom) in enumerate(rows):
            fh.write(
                json.dumps(
                    {
                        "id": f"e{k}",
                        "v": versions[k],
                        "area": dom if (k * 2654435761) % 1000 < area_field * 1000 else None,
                        "messages": [
                            {"role": "user", "content": q},
                            {"role": "assistant", "content": f"intent: {intent}"},
                        ],
                    }
                )
                + "\n"
            )
    fields = "{id: id, spec_version: v" + (", area: area" if area_field > 0 else "") + "}"
    (root / "ftprep.yaml").write_text(
        f"sources: [{{name: m, path: d.jsonl, fields: {fields}}}]\nspec: spec.md\n"
        + "checks:\n  spec.quarantine: "
        + json.dumps(params)
        + "\n"
    )
    p = load_project(root)
    (root / "spec.md").write_text(spec_text(domains, 1, changed, rules))
    sp.lock(p, effective="2024-01-01", actor="bench")
    (root / "spec.md").write_text(spec_text(domains, 2, changed, rules))
    sp.bump(p, note="policy change", effective="2024-06-01", actor="bench")
    return root


def prf(pred: set[str], truth: set[str]) -> tuple[float, float, float]:
    tp = len(pred & truth)
    p = tp / len(pred) if pred else 1.0
    r = tp / len(truth) if truth else 1.0
    return p, r, (2 * p * r / (p + r) if p + r else 0.0)


def quarantine_bench(
    name: str, rows: list[tuple[str, str, str]], domains: dict[str, list[str]], tmp: Path
) -> list[list[object]]:
    rng = random.Random(7)
    names = sorted(domains)
    changed = set(rng.sample(names, max(1, round(0.3 * len(names)))))
    versions = [rng.choice(["1", "2"]) for _ in rows]
    truth = {f"e{k}" for k, r in enumerate(rows) if versions[k] == "1" and r[2] in changed}
    out: list[list[object]] = []
    baseline = {f"e{k}" for k in range(len(rows)) if versions[k] == "1"}
    out.append(
        [
            name,
            "baseline: every superseded-version example",
            len(baseline),
            *prf(baseline, truth),
            None,
            0.0,
        ]
    )
    configs = [
        ("rules only (keywords)", True, {"area_embeddings": False}, 0.0),
        (
            "embeddings: nearest description",
            False,
            {"area_seeds": False, "area_margin": 0.0, "area_refine": 0},
            0.0,
        ),
        ("embeddings + refine (no rules)", False, {}, 0.0),
        ("ftprep default: rules + embeddings + seeds + refine", True, {}, 0.0),
        ("default, recall-oriented: area_margin 0.08", True, {"area_margin": 0.08}, 0.0),
        ("default, area field on 20% of examples", True, {}, 0.2),
        ("areas given as a field", False, {}, 1.0),
    ]
    for label, rules, params, field in configs:
        root = project(
            tmp / f"{name}-{len(out)}", rows, domains, changed, rules, params, field, versions
        )
        t0 = time.perf_counter()
        res = ftprep.audit(root, only=["spec.quarantine"])
        dt = time.perf_counter() - t0
        r = next(x for x in res.results if x.check == "spec.quarantine")
        pred = {d.example_id for d in r.decisions if d.action == Action.QUARANTINE}
        prov = json.loads(
            (root / "out" / "audit" / "artifacts" / "spec_provenance.json").read_text()
        )
        area_of = {f"e{k}": row[2] for k, row in enumerate(rows)}
        acc = sum(
            1 for i, a in zip(prov["ids"], prov["area"], strict=True) if area_of[i] == a
        ) / len(rows)
        if 0 < field < 1:
            inferred = [
                i == area_of[e]
                for e, i, src in zip(prov["ids"], prov["area"], prov["area_source"], strict=True)
                if src != "field"
            ]
            label += (
                f" (holdout estimate {r.values['area_holdout_agreement']:.3f}; true accuracy of"
                f" the inferred {sum(inferred) / len(inferred):.3f})"
            )
        out.append([name, label, len(pred), *prf(pred, truth), acc, dt])
    return out


def conflicts_bench(rows: list[tuple[str, str, str]], tmp: Path) -> list[list[object]]:
    rng = random.Random(3)
    recs = []
    for k, (q, intent, dom) in enumerate(rows):
        recs.append(
            {
                "id": f"e{k}",
                "v": rng.choice(["1", "2"]),
                "q": q,
                "a": f"intent: {intent}",
                "area": dom,
            }
        )
    planted = set()
    edits = ["case", "punct", "add", "drop"]
    for j, k in enumerate(rng.sample(range(len(rows)), 200)):
        q = rows[k][0]
        kind = edits[j % 4]
        if kind == "case":
            q2 = q.upper()
        elif kind == "punct":
            q2 = q.rstrip("?.!") + "?!"
        elif kind == "add":
            q2 = "please " + q
        else:
            w = q.split()
            q2 = " ".join(w[:-1]) if len(w) > 4 else q + " now"
        recs[k]["v"] = "1"
        recs.append(
            {
                "id": f"p{j}",
                "v": "2",
                "q": q2,
                "a": "Refer the customer to a human agent.",
                "area": rows[k][2],
            }
        )
        planted.add((f"e{k}", f"p{j}"))
    out: list[list[object]] = []
    # baseline: exact input match across versions with different outputs
    by_q: dict[str, list[dict]] = {}
    for r in recs:
        by_q.setdefault(r["q"], []).append(r)
    t0 = time.perf_counter()
    base = {
        (a["id"], b["id"])
        for g in by_q.values()
        for a in g
        for b in g
        if a["v"] == "1" and b["v"] == "2" and a["a"] != b["a"]
    }
    out.append(
        ["baseline: exact input match", len(base), *prf(base, planted), time.perf_counter() - t0]
    )
    root = tmp / "conflicts"
    root.mkdir(parents=True, exist_ok=True)
    with open(root / "d.jsonl", "w") as fh:
        for r in recs:
            fh.write(
                json.dumps(
                    {
                        "id": r["id"],
                        "v": r["v"],
                        "area": r["area"],
                        "messages": [
                            {"role": "user", "content": r["q"]},
                            {"role": "assistant", "content": r["a"]},
                        ],
                    }
                )
                + "\n"
            )
    doms = sorted({r["area"] for r in recs})
    (root / "spec.md").write_text(
        "---\nversion: '1'\nareas:\n" + "".join(f"  {d}: x\n" for d in doms) + "---\n"
    )
    for label, params in (
        ("normalised text", {"embeddings": False}),
        ("normalised text + embeddings (default)", {}),
    ):
        (root / "ftprep.yaml").write_text(
            "sources: [{name: m, path: d.jsonl, fields: {id: id, spec_version: v, area: area}}]\n"
            "spec: spec.md\nchecks:\n  spec.conflicts: " + json.dumps(params) + "\n"
        )
        t0 = time.perf_counter()
        res = ftprep.audit(root, only=["spec.conflicts"], write=False)
        dt = time.perf_counter() - t0
        r = next(x for x in res.results if x.check == "spec.conflicts")
        pairs = {(d.example_id, d.detail.split(" to ")[1].split(" ")[0]) for d in r.decisions}
        out.append([label, len(pairs), *prf(pairs, planted), dt])
    return out


def machine() -> str:
    cpu = cpu_model()
    return (
        f"nproc {os.cpu_count()}, {cpu}, Python {platform.python_version()}, "
        f"{time.strftime('%Y-%m-%d', time.gmtime())}"
    )


def main() -> None:
    with tempfile.TemporaryDirectory() as d:
        tmp = Path(d)
        q_rows: list[list[object]] = []
        for name, loader in (("CLINC150", clinc), ("HWU64", hwu)):
            rows, domains = loader()
            q_rows += quarantine_bench(name, rows, domains, tmp)
        c_rows = conflicts_bench(clinc()[0], tmp)
    print(f"machine: {machine()}")
    print("\n| data | method | quarantined | precision | recall | F1 | area accuracy | seconds |")
    print("|---|---|---:|---:|---:|---:|---:|---:|")
    for r in q_rows:
        acc = "—" if r[6] is None else f"{r[6]:.3f}"
        print(
            f"| {r[0]} | {r[1]} | {r[2]} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.3f} | {acc} | {r[7]:.2f} |"
        )
    print("\n| conflict detection | pairs found | precision | recall | F1 | seconds |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in c_rows:
        print(f"| {r[0]} | {r[1]} | {r[2]:.3f} | {r[3]:.3f} | {r[4]:.3f} | {r[5]:.2f} |")
    rev = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"],
        capture_output=True,
        text=True,
        cwd=Path(__file__).parent,
    ).stdout.strip()
    print(f"\ncommit {rev}", file=sys.stderr)


if __name__ == "__main__":
    main()
