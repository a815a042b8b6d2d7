"""The contamination checks end to end through ``ftprep.audit``: planted benchmark leaks are
excluded with reason codes, near-duplicates inside the training set are linked into one split,
the leakage matrix is reported."""

from __future__ import annotations

from pathlib import Path

from ftprep.contamination.plant import bury, light_edit
from util import chat, make_project, write_jsonl

BENCH = [
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with four. How much does she make selling the rest at $2 each?",
    "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take?",
    "Josh buys a house for $80,000 and puts in $50,000 in repairs. This increased the value of the house by 150%. How much profit did he make?",
    "James decides to run 3 sprints 3 times a week. He runs 60 meters each sprint. How many total meters does he run a week?",
    "Toulouse has twice as many sheep as Charleston. Charleston has 4 times as many sheep as Seattle. How many sheep do they have together if Seattle has 20?",
    "Carla is downloading a 200 GB file. Normally she can download 2 GB/minute, but 40% of the way through the download, Windows forces a restart.",
]
TOPICS = ["printer", "invoice", "refund", "shipping", "login", "router", "battery", "subscription"]


def _records() -> list[dict]:
    recs = [
        chat(
            i,
            user=f"My {TOPICS[i % 8]} stopped working after the update number {i}. What should I do about the {TOPICS[(i * 3) % 8]}?",
            answer=f"Restart the {TOPICS[i % 8]}, then check the {TOPICS[(i * 5) % 8]} settings page (ticket {i}).",
        )
        for i in range(40)
    ]
    recs.append(chat(100, user=BENCH[0].upper()))
    recs.append(chat(101, user=light_edit(BENCH[1], seed=3)))
    recs.append(
        chat(
            102,
            user=bury(
                light_edit(BENCH[2], seed=4),
                "Here is some homework I found.",
                "Please solve it step by step and explain.",
            ),
        )
    )
    # near-duplicates inside the training set (must end up in one split)
    dup = "Please explain how to configure two-factor authentication for the admin console of our billing system, step by step."
    recs.append(chat(103, user=dup))
    recs.append(
        chat(
            104,
            user=dup.replace("Please explain", "please, explain").replace(
                "step by step", "step-by-step"
            ),
        )
    )
    return recs


def test_audit_finds_benchmark_leaks_and_links_duplicates(tmp_path: Path) -> None:
    from ftprep.api import audit

    write_jsonl(tmp_path / "bench" / "gsm.jsonl", [{"question": q, "answer": "42"} for q in BENCH])
    make_project(
        tmp_path,
        _records(),
        extra_yaml=(
            "benchmarks:\n  - name: gsm\n    path: bench/gsm.jsonl\n"
            "    fields: {input: question, output: answer}\n"
            "split: {validation: 0.2, test: 0.2, seed: 1}\n"
        ),
    )
    res = audit(tmp_path, only=["contamination.benchmarks", "contamination.splits"])
    by = {r.check: r for r in res.results}
    bl = by["contamination.benchmarks"]
    assert str(bl.status) == "FAIL", bl.summary + bl.error
    reasons = {d.example_id: d.reason for d in bl.decisions}
    assert reasons.get("ex100") == "benchmark_leak_exact"
    assert reasons.get("ex101") == "benchmark_leak_near"
    assert reasons.get("ex102") == "benchmark_leak_near"
    assert not any(k.startswith("ex") and int(k[2:]) < 40 for k in reasons)
    assert any(s.kind == "matrix" for s in bl.sections)
    assert any(s.kind == "pairs" for s in bl.sections)
    sl = by["contamination.splits"]
    assert sl.values["straddling_clusters"] == 0
    import orjson

    clusters = orjson.loads((tmp_path / ".ftprep" / "link_clusters.json").read_bytes())
    assert any({"ex103", "ex104"} <= set(c) for c in clusters), clusters


def test_production_holdout_leaks_and_validation_realism(tmp_path: Path) -> None:
    from ftprep.api import audit
    from ftprep.examples import Dataset, Example
    from ftprep.project import Split
    from ftprep.splits import eval_from_pool

    prod = [
        {
            "id": f"p{i}",
            "text": f"The {TOPICS[i % 8]} app crashes when I open the {TOPICS[(i * 3) % 8]} tab on day {i}, please help",
        }
        for i in range(60)
    ]
    write_jsonl(tmp_path / "prod.jsonl", prod)
    # which production items the build will hold out (same function, same seed)
    pool = Dataset.from_examples(
        [
            Example(
                id=p["id"], messages=[{"role": "user", "content": p["text"]}], source="production"
            )
            for p in prod
        ]
    )
    policy = Split(eval_from="production", validation=0.5, test=0.5)
    held = sorted(eval_from_pool(pool, policy, share=0.5))
    leaked = next(p for p in prod if p["id"] == held[0])
    recs = _records()
    recs.append(chat(200, user=leaked["text"].replace("please help", "Please help!")))
    make_project(
        tmp_path,
        recs,
        extra_yaml=(
            "production:\n  path: prod.jsonl\n  fields: {id: id, input: text}\n  holdout: 0.5\n"
            "split: {eval_from: production, validation: 0.5, test: 0.5}\n"
        ),
    )
    res = audit(tmp_path, only=["contamination.splits", "contamination.realism"])
    by = {r.check: r for r in res.results}
    sl = by["contamination.splits"]
    assert any(
        d.example_id == "ex200" and d.reason.startswith("eval_leak") for d in sl.decisions
    ), (sl.summary, sl.error, [d.to_dict() for d in sl.decisions])
    vr = by["contamination.realism"]
    assert str(vr.status) in ("PASS", "WARN"), vr.error
    assert "realism_gap" in vr.values and vr.sections[0].kind == "lines"


def test_validation_realism_ignores_a_template_training_prompts_repeat(tmp_path: Path) -> None:
    """Validation drawn from training prompts that all carry an instruction line production
    inputs lack is compared with production without it: the same values as bare prompts."""
    from ftprep.api import audit

    prod = [
        {"id": f"p{i}", "text": f"The {TOPICS[i % 8]} app crashes on day {i}, please help"}
        for i in range(60)
    ]
    values = {}
    for name, wrap in (("plain", ""), ("wrapped", "Answer the user's question below.\n\n")):
        root = tmp_path / name
        recs = _records()
        for r in recs:
            r["messages"][1]["content"] = wrap + r["messages"][1]["content"]
        write_jsonl(root / "prod.jsonl", prod)
        make_project(
            root,
            recs,
            extra_yaml="production:\n  path: prod.jsonl\n  fields: {id: id, input: text}\n",
        )
        res = audit(root, only=["contamination.realism"])
        values[name] = res.results[0].values
    assert values["plain"]["eval_examples"] > 0
    assert values["wrapped"] == values["plain"]


def test_split_clusters_ignore_an_instruction_every_prompt_repeats(tmp_path: Path) -> None:
    """An instruction line over every prompt makes all records look alike; the near-duplicate
    clusters that keep splits apart are those of the bare prompts (before: one cluster of all)."""
    import random

    from ftprep.api import audit

    rng = random.Random(0)
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "su", "ti") for b in "aeiou"]
    queries = [" ".join(rng.choice(vocab) for _ in range(8)) for _ in range(60)]
    instruction = (
        "You are a careful assistant for the support team of our shop; read the customer's "
        "message below and answer it briefly, politely and with the facts you have."
    )
    links = {}
    for name, wrap in (("plain", ""), ("wrapped", instruction + "\n\n")):
        recs = [
            chat(i, user=wrap + q, answer=f"noted {q.split()[0]}") for i, q in enumerate(queries)
        ]
        root = make_project(tmp_path / name, recs)
        res = audit(root, only=["contamination.splits"])
        links[name] = res.results[0].values["clustered_examples"]
    assert links["wrapped"] == links["plain"] == 0
