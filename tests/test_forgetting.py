"""Failure mode 5: capability coverage, replay planning and replay mixing in the build."""

from __future__ import annotations

import json
import random
from pathlib import Path

import jsonschema
import pytest
import yaml
from tests.util import make_project, shared, write_jsonl

import ftprep
from ftprep.capabilities import replay_count, replay_plan

PRODUCTS = ["kettle", "lamp", "blender", "jacket", "backpack", "bottle", "grinder", "mat"]


def _support(i: int, rng: random.Random) -> dict:
    p = rng.choice(PRODUCTS)
    q = rng.choice(
        [
            f"Where is my {p}? I ordered it {i % 9 + 2} days ago.",
            f"I want a refund for the {p}, it arrived broken.",
            f"Can I change the delivery address for my {p} order?",
            f"Why was I charged twice for the {p}?",
        ]
    )
    return {
        "id": f"s{i}",
        "thread": f"t{i // 2}",
        "messages": [
            {"role": "user", "content": q},
            {"role": "assistant", "content": f"Sorry about that. I've checked order {1000 + i}."},
        ],
    }


INVENTORY = {
    "capabilities": [
        {
            "name": "support",
            "target": True,
            "probes": [
                "Where is my lamp? I ordered it last week.",
                "I want a refund for the kettle, it is broken.",
                "Can I change the address of my order?",
                "I was charged twice for my order.",
                "My blender has not arrived yet.",
            ],
        },
        {
            "name": "json_output",
            "probes": [
                "Return a JSON object with keys city and population for Paris.",
                "Output JSON only: the fields title and year of a famous film.",
                "Give me JSON with the name and capital of three countries.",
                "Respond with a JSON array of the first five prime numbers.",
                "Format the planets of the solar system as JSON with name and order.",
            ],
        },
        {
            "name": "arithmetic",
            "probes": [
                "What is 17 times 23?",
                "Compute 144 divided by 12 and add 7.",
                "What is the square root of 81 plus 15?",
                "Add 345 and 678, then subtract 100.",
                "How much is 12 percent of 250?",
            ],
        },
    ]
}


def _replay(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out.append(
            {
                "id": f"r{i}",
                "messages": [
                    {
                        "role": "user",
                        "content": f"Return a JSON object with keys item and count for item {i}.",
                    },
                    {"role": "assistant", "content": json.dumps({"item": i, "count": i % 7})},
                ],
            }
        )
    return out


def _replay_project(tmp_path: Path, n_train: int, extra_yaml: str) -> Path:
    """A support project with the capability inventory and a replay source (json_output)."""
    rng = random.Random(0)
    root = make_project(
        tmp_path,
        [_support(i, rng) for i in range(n_train)],
        extra_yaml=(
            "capabilities: capabilities.yaml\n" + extra_yaml + "replay:\n  share: 0.1\n  sources:\n"
            "    - name: json_pool\n      path: data/replay.jsonl\n      fields: {id: id}\n"
            "      capability: json_output\n"
        ),
        fields="{id: id, group: thread}",
    )
    (root / "capabilities.yaml").write_text(yaml.safe_dump(INVENTORY), encoding="utf-8")
    return root


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = _replay_project(tmp_path, 300, "split: {by: group, validation: 0.1, test: 0.1}\n")
    pool = _replay(60)
    # a replay record that repeats a training prompt must not be planned
    pool.append({**_support(3, random.Random(0)), "id": "r-dup"})
    write_jsonl(root / "data" / "replay.jsonl", pool)
    return root


def _check(res: ftprep.AuditResult, name: str) -> dict:
    return next(c for c in res.findings["checks"] if c["check"] == name)


def test_uncovered_capabilities_and_replay(project: Path) -> None:
    res = ftprep.audit(project, only=["forgetting"])
    c = _check(res, "forgetting.capabilities")
    per = {p["name"]: p for p in c["values"]["per_capability"]}
    assert per["json_output"]["covered"] is False
    assert per["arithmetic"]["covered"] is False
    assert per["json_output"]["replay_available"] == 61  # pool size, before the duplicate filter
    # arithmetic has no replay data: the gate fails and names it
    assert c["values"]["uncovered_without_replay"] == 1
    assert c["status"] == "FAIL"
    assert any("arithmetic" in f["message"] for f in c["findings"] if f["severity"] == "fail")
    assert c["values"]["replay_left_out"] == {"duplicates_training": 1}

    b = ftprep.build(project)
    n_train_split = b.counts["train"] - len(b.manifest["replay"]["ids"])
    assert len(b.manifest["replay"]["ids"]) == replay_count(0.1, n_train_split)
    assert "r-dup" not in b.manifest["replay"]["ids"]
    assert set(b.manifest["replay"]["ids"]) <= set(b.manifest["splits"]["train"]["ids"])
    for split in ("validation", "test"):
        assert not set(b.manifest["replay"]["ids"]) & set(b.manifest["splits"][split]["ids"])
    assert b.manifest["accounting"]["from_replay"] == len(b.manifest["replay"]["ids"])
    docs = Path(__file__).resolve().parents[1] / "docs" / "schema"
    jsonschema.validate(b.manifest, json.loads((docs / "manifest.schema.json").read_text()))


def test_replay_plan_round_robin_uncovered_first() -> None:
    from ftprep.capabilities import CapabilityCoverage

    cov = [
        CapabilityCoverage("t", True, 5, 1.0, 10, 1.0, None, covered=True),
        CapabilityCoverage("a", False, 5, 0.8, 10, 0.1, None, covered=True),
        CapabilityCoverage("b", False, 5, 0.0, 0, 0.0, None, covered=False),
    ]
    ids = [f"a{i}" for i in range(3)] + [f"b{i}" for i in range(3)] + ["g0", "x"]
    caps = ["a"] * 3 + ["b"] * 3 + [None, "b"]
    plan = replay_plan(ids, caps, cov, {"x": "matches_benchmark"}, seed=1)
    assert [p["capability"] for p in plan] == ["b", "a", "b", "a", "b", "a", None]
    assert "x" not in {p["id"] for p in plan}
    assert replay_count(0.2, 80) == 20 and replay_count(0.0, 80) == 0


def test_bad_inventory_is_a_clear_error(project: Path) -> None:
    (project / "capabilities.yaml").write_text(
        "capabilities:\n  - name: a\n    patterns: ['(unclosed']\n", encoding="utf-8"
    )
    res = ftprep.audit(project, only=["forgetting"])
    c = _check(res, "forgetting.capabilities")
    assert (
        c["status"] == "ERROR" and "capabilities.yaml:3: capabilities[0].patterns" in c["summary"]
    )


def test_clinc_missing_domains_are_uncovered(tmp_path: Path) -> None:
    """Training = 7 of CLINC150's 10 domains; the inventory lists all 10 with 20 probes each
    (from the validation split): the 3 missing domains are the uncovered ones. (Other domain
    choices and their limits: docs/forgetting.md.)"""
    base = shared("intents", "clinc150")
    data = json.loads((base / "data_full.json").read_text())
    domains = json.loads((base / "domains.json").read_text())
    i2d = {i: d for d, intents in domains.items() for i in intents}
    missing = {"work", "utility", "auto_and_commute"}
    rng = random.Random(0)
    train = [
        {
            "id": f"c{k}",
            "messages": [{"role": "user", "content": q}, {"role": "assistant", "content": i}],
        }
        for k, (q, i) in enumerate(data["train"])
        if i2d[i] not in missing and k % 3 == 0
    ]
    caps = []
    for d in sorted(domains):
        probes = [q for q, i in data["val"] if i2d[i] == d]
        rng.shuffle(probes)
        caps.append({"name": d, "target": d not in missing, "probes": probes[:20]})
    root = make_project(tmp_path, train, extra_yaml="capabilities: capabilities.yaml\n")
    (root / "capabilities.yaml").write_text(yaml.safe_dump({"capabilities": caps}))
    res = ftprep.audit(root, only=["forgetting"])
    per = {p["name"]: p for p in _check(res, "forgetting.capabilities")["values"]["per_capability"]}
    uncovered = {n for n, p in per.items() if p["covered"] is False}
    assert uncovered == missing, per
    covered_share = {n: p["train_share"] for n, p in per.items() if n not in missing}
    assert all(s > 0.02 for s in covered_share.values()), covered_share


def test_replay_that_leaks_a_benchmark_is_left_out(tmp_path: Path) -> None:
    """Replay goes into the training split: a lightly edited benchmark item in the replay pool
    is found by the contamination search and never planned."""
    root = _replay_project(
        tmp_path,
        200,
        "benchmarks:\n  - {name: exam, path: data/exam.jsonl, fields: {input: question}}\n",
    )
    question = (
        "A farmer has 17 sheep and buys 5 more every spring for three years. "
        "How many sheep does the farmer have at the end of the third spring?"
    )
    write_jsonl(root / "data" / "exam.jsonl", [{"question": question}])
    pool = _replay(30)
    edited = question.replace("buys", "byus").replace("How many", "how  many").upper()
    pool.append(
        {
            "id": "r-leak",
            "messages": [
                {"role": "user", "content": edited},
                {"role": "assistant", "content": "32"},
            ],
        }
    )
    write_jsonl(root / "data" / "replay.jsonl", pool)
    res = ftprep.audit(root, only=["forgetting"])
    c = _check(res, "forgetting.capabilities")
    assert c["values"]["replay_left_out"] == {"leaks_benchmark_near": 1}
    b = ftprep.build(root)
    assert "r-leak" not in b.manifest["replay"]["ids"]


def test_a_template_every_training_prompt_repeats_does_not_change_probe_coverage(
    tmp_path: Path,
) -> None:
    """Probes are bare requests; training prompts under a fixed instruction line are compared
    without it (``distribution/template.py``), so the verdicts are those of bare prompts."""
    out = {}
    for name, wrap in (("plain", ""), ("wrapped", "Answer the customer below politely.\n\n")):
        rng = random.Random(0)
        recs = [_support(i, rng) for i in range(300)]
        for r in recs:
            r["messages"][0]["content"] = wrap + r["messages"][0]["content"]
        root = make_project(
            tmp_path / name,
            recs,
            extra_yaml="capabilities: capabilities.yaml\n",
            fields="{id: id, group: thread}",
        )
        (root / "capabilities.yaml").write_text(yaml.safe_dump(INVENTORY), encoding="utf-8")
        c = _check(ftprep.audit(root, only=["forgetting"]), "forgetting.capabilities")
        out[name] = (
            c["values"]["neighbour_radius"],
            [(p["name"], p["probes_covered"], p["covered"]) for p in c["values"]["per_capability"]],
        )
    assert out["wrapped"] == out["plain"]
    assert out["plain"][1][0][2] is True  # support is covered, the others are not


def test_a_template_the_production_sample_repeats_does_not_change_its_attribution(
    tmp_path: Path,
) -> None:
    """A production sample logged inside a wrapper (the same lines around every query) is
    attributed to capabilities as its bare queries are."""
    shares = {}
    for name, wrap in (("plain", ""), ("wrapped", "Ticket from the web form\n\nCustomer wrote: ")):
        rng = random.Random(0)
        root = make_project(
            tmp_path / name,
            [_support(i, rng) for i in range(200)],
            extra_yaml="capabilities: capabilities.yaml\n"
            "production:\n  path: data/prod.jsonl\n  fields: {id: id, input: text}\n",
            fields="{id: id, group: thread}",
        )
        (root / "capabilities.yaml").write_text(yaml.safe_dump(INVENTORY), encoding="utf-8")
        prod = [_support(1000 + i, rng)["messages"][0]["content"] for i in range(60)]
        prod += [r["messages"][0]["content"] for r in _replay(30)]
        write_jsonl(
            root / "data" / "prod.jsonl",
            [{"id": f"p{i}", "text": wrap + q} for i, q in enumerate(prod)],
        )
        c = _check(ftprep.audit(root, only=["forgetting"]), "forgetting.capabilities")
        shares[name] = {p["name"]: p["production_share"] for p in c["values"]["per_capability"]}
    assert shares["wrapped"] == shares["plain"]
    assert shares["plain"]["support"] > 0.5 and shares["plain"]["json_output"] > 0.2
