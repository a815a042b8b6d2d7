"""Task spec under change control: parsing, per-area diff, lock/bump/log/diff/status, the
tamper-evident history, preflight refusal, provenance, quarantine, conflicts, build."""

from __future__ import annotations

import json
import random
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

import ftprep
from ftprep import spec as sp
from ftprep.checks.base import Action
from ftprep.cli import main
from ftprep.project import load_project
from ftprep.spec.history import History, history_path, parse_time
from util import write_jsonl

SPEC_V1 = """---
name: support
version: "1"
purpose: Answer customer questions.
inputs: one message
outputs: [a reply]
areas:
  refunds:
    description: Returning items and getting money back.
    criteria:
      - Refunds are approved within 30 days of delivery.
    keywords: [refund]
  shipping:
    description: Delivery times and tracking.
    criteria: [Give the tracking link.]
    keywords: [parcel, delivery]
  account:
    description: Passwords and logins.
    criteria: [Send the reset link.]
    patterns: ['pass(word)?']
---
# Guidance
Be brief.

## refunds
Escalate disputes.
"""


def _v2(text: str = SPEC_V1) -> str:
    return text.replace('version: "1"', 'version: "2"').replace("within 30 days", "within 14 days")


AREA_Q = {
    "refunds": "Can I get a refund for order {i}?",
    "shipping": "Where is my parcel {i}? The delivery is late.",
    "account": "I forgot my password for account {i}.",
}


def _records(n_per: int = 10) -> list[dict]:
    recs = []
    k = 0
    for area, q in AREA_Q.items():
        for ver, date in (("1", "2024-01-{:02d}"), ("2", "2024-03-{:02d}")):
            for j in range(n_per):
                k += 1
                recs.append(
                    {
                        "id": f"{area}-{ver}-{j}",
                        "messages": [
                            {"role": "user", "content": q.format(i=k)},
                            {
                                "role": "assistant",
                                "content": f"Answer {k} for {area} under v{ver}.",
                            },
                        ],
                        "v": ver,
                        "area": area,
                        "at": date.format(j + 1),
                    }
                )
    return recs


def make(
    root: Path,
    records: list[dict],
    fields: str = "{id: id, spec_version: v, area: area, collected_at: at}",
    extra: str = "",
) -> Path:
    write_jsonl(root / "data" / "train.jsonl", records)
    (root / "spec.md").write_text(SPEC_V1, encoding="utf-8")
    (root / "ftprep.yaml").write_text(
        "name: t\nsources:\n  - name: main\n    path: data/train.jsonl\n"
        f"    fields: {fields}\n{extra}spec: spec.md\n",
        encoding="utf-8",
    )
    return root


def _lock_and_bump(root: Path) -> None:
    p = load_project(root)
    sp.lock(p, effective="2024-01-01", actor="t")
    (root / "spec.md").write_text(_v2(), encoding="utf-8")
    sp.bump(p, note="refund window shortened", effective="2024-02-15", actor="t")


def _quarantined(res: ftprep.api.AuditResult) -> set[str]:
    return {
        d.example_id
        for r in res.results
        if r.check == "spec.quarantine"
        for d in r.decisions
        if d.action == Action.QUARANTINE
    }


# ------------------------------------------------------------------ document & diff


def test_parse_areas_sections_and_rules() -> None:
    s = sp.parse_spec(SPEC_V1)
    assert s.version == "1" and list(s.areas) == ["refunds", "shipping", "account"]
    assert "Escalate disputes." in sp.area_text(s, "refunds")
    assert "Escalate" not in s.general_text and "Be brief." in s.general_text
    assert s.areas["account"].rule_hits("my PASSWORD") == 1
    assert s.areas["refunds"].rule_hits("refundable") == 0  # whole words only


@pytest.mark.parametrize(
    "bad, msg",
    [
        ("no header", "YAML header"),
        ("---\nareas: [1]\n", "not closed"),
        ("---\nareas:\n  a: {criteria: x, colour: red}\n---\n", "unknown key"),
        ("---\nareas:\n  a: {patterns: ['(']}\n---\n", "invalid regular expression"),
        ("---\n: [\n---\n", "invalid YAML"),
    ],
)
def test_parse_errors_are_clear(bad: str, msg: str) -> None:
    with pytest.raises(sp.SpecError, match=msg):
        sp.parse_spec(bad)


def test_diff_is_per_area_and_whitespace_insensitive() -> None:
    a = sp.parse_spec(SPEC_V1)
    d = sp.diff_specs(a, sp.parse_spec(_v2()))
    assert d.changed_areas == ["refunds"] and not d.general_changed
    assert any("14 days" in ln for ln in d.areas[1].diff)
    reformatted = SPEC_V1.replace("Escalate disputes.", "Escalate   disputes.\n\n")
    assert sp.diff_specs(a, sp.parse_spec(reformatted)).changed_areas == []
    rules_only = SPEC_V1.replace("keywords: [refund]", "keywords: [refund, money back]")
    assert sp.diff_specs(a, sp.parse_spec(rules_only)).changed_areas == []
    added = SPEC_V1.replace("  account:", "  billing: {description: Invoices.}\n  account:")
    d2 = sp.diff_specs(a, sp.parse_spec(added))
    assert d2.changed_areas == ["billing"] and d2.areas[1].status == "added"


@settings(max_examples=40, deadline=None)
@given(st.lists(st.text(alphabet="abc xyz.\n", min_size=1, max_size=30), min_size=1, max_size=4))
def test_diff_flags_exactly_the_edited_areas(criteria: list[str]) -> None:
    """Invariant: editing the criteria of one area changes that area and no other."""
    base = sp.parse_spec(SPEC_V1)
    edited = SPEC_V1.replace(
        "[Give the tracking link.]", json.dumps(["Give the tracking link.", *criteria])
    )
    new = sp.parse_spec(edited)
    changed = sp.diff_specs(base, new).changed_areas
    if any(c.strip() for c in criteria):
        assert changed == ["shipping"]
    else:
        assert changed == []


# ------------------------------------------------------------------ history & control


def test_lock_bump_history_chain(tmp_path: Path) -> None:
    root = make(tmp_path, _records(2))
    _lock_and_bump(root)
    h = History.load(history_path(root / "spec.md"))
    assert h.versions == ["1", "2"]
    assert h.entries[1].affected_areas == ["refunds"] and h.entries[1].prev == h.entries[0].hash
    assert h.version_at(parse_time("2024-02-14T23:59:59Z")) == "1"  # type: ignore[arg-type]
    assert h.version_at(parse_time("2024-02-15")) == "2"  # type: ignore[arg-type]
    assert h.version_at(parse_time("2023-01-01")) == "1"  # type: ignore[arg-type]
    assert h.changed_since("1") == {"refunds": "2"} and h.changed_since("v2") == {}
    assert sp.current_version(load_project(root)) == "2"
    assert sp.area_text_at(load_project(root), "refunds", "1") != sp.area_text_at(
        load_project(root), "refunds"
    )


def test_bump_rules(tmp_path: Path) -> None:
    root = make(tmp_path, _records(1))
    p = load_project(root)
    with pytest.raises(sp.SpecError, match="not locked"):
        sp.bump(p, note="x")
    sp.lock(p, effective="2024-01-01")
    with pytest.raises(sp.SpecError, match="already locked"):
        sp.lock(p)
    with pytest.raises(sp.SpecError, match="nothing to bump"):
        sp.bump(p, note="x")
    (root / "spec.md").write_text(_v2(), encoding="utf-8")
    with pytest.raises(sp.SpecError, match="effective"):
        sp.bump(p, note="x", effective="2023-01-01")
    with pytest.raises(sp.SpecError, match="unknown area"):
        sp.bump(p, note="x", areas=["refundz"])
    e, _ = sp.bump(p, note="widen", areas=["refunds,shipping"], effective="2024-05-01")
    assert e.affected_areas == ["refunds", "shipping"] and e.computed_areas == ["refunds"]
    # a general-only change must say which areas it affects
    (root / "spec.md").write_text(
        _v2().replace('version: "2"', 'version: "3"').replace("Be brief.", "Be kind.")
    )
    with pytest.raises(sp.SpecError, match="--areas all"):
        sp.bump(p, note="tone")
    e3, _ = sp.bump(p, note="tone", areas=["all"])
    assert e3.affected_areas == ["account", "refunds", "shipping"]


def test_edit_without_bump_makes_audit_and_build_exit_2(tmp_path: Path) -> None:
    root = make(tmp_path, _records(2))
    runner = CliRunner()
    r = runner.invoke(main, ["spec", "lock", "-p", str(root), "--effective", "2024-01-01"])
    assert r.exit_code == 0, r.output
    assert runner.invoke(main, ["audit", "-p", str(root), "-q", "--check", "spec"]).exit_code in (
        0,
        1,
    )
    (root / "spec.md").write_text(_v2(), encoding="utf-8")
    for cmd in (["audit", "-p", str(root), "-q"], ["build", "-p", str(root), "-q"]):
        r = runner.invoke(main, cmd)
        assert r.exit_code == 2, (cmd, r.output)
        assert "ftprep spec bump" in r.output and "refunds" in r.output
    st_ = runner.invoke(main, ["spec", "status", "-p", str(root)])
    assert st_.exit_code == 1 and "bump" in st_.output
    d = runner.invoke(main, ["spec", "diff", "-p", str(root), "--json"])
    assert json.loads(d.output)["changed_areas"] == ["refunds"]
    r = runner.invoke(
        main, ["spec", "bump", "-p", str(root), "--note", "14 days", "--effective", "2024-02-15"]
    )
    assert r.exit_code == 0, r.output
    assert runner.invoke(main, ["spec", "status", "-p", str(root)]).exit_code == 0
    log = json.loads(runner.invoke(main, ["spec", "log", "-p", str(root), "--json"]).output)
    assert [e["version"] for e in log] == ["1", "2"] and log[1]["affected_areas"] == ["refunds"]
    d12 = json.loads(
        runner.invoke(main, ["spec", "diff", "1", "2", "-p", str(root), "--json"]).output
    )
    assert d12["changed_areas"] == ["refunds"]
    assert runner.invoke(main, ["audit", "-p", str(root), "-q", "--check", "spec"]).exit_code in (
        0,
        1,
    )


@pytest.mark.parametrize(
    "tamper", ["edit_note", "edit_snapshot", "drop_first", "reorder", "garbage"]
)
def test_tampering_is_detected(tmp_path: Path, tamper: str) -> None:
    root = make(tmp_path, _records(1))
    _lock_and_bump(root)
    hp = history_path(root / "spec.md")
    lines = hp.read_text().splitlines()
    if tamper == "edit_note":
        lines[0] = lines[0].replace("initial version", "initial versioN")
    elif tamper == "edit_snapshot":
        lines[0] = lines[0].replace("within 30 days", "within 90 days")
    elif tamper == "drop_first":
        lines = lines[1:]
    elif tamper == "reorder":
        lines = lines[::-1]
    else:
        lines.append("{not json")
    hp.write_text("\n".join(lines) + "\n")
    with pytest.raises(sp.SpecError, match=r"tampered|corrupt"):
        sp.preflight(load_project(root))
    r = CliRunner().invoke(main, ["audit", "-p", str(root), "-q", "--check", "spec"])
    assert r.exit_code == 2 and "history" in r.output


def test_rewritten_chain_is_caught_by_the_workspace_anchor(tmp_path: Path) -> None:
    """A history recomputed from scratch verifies on its own; the anchor still catches it."""
    root = make(tmp_path, _records(1))
    _lock_and_bump(root)
    p = load_project(root)
    sp.preflight(p)  # anchors entry 1
    hp = history_path(root / "spec.md")
    h = History.load(hp)
    hp.unlink()
    forged = History(hp)
    for e in h.entries:
        e.note = "forged"
        forged.append(e)
    assert History.load(hp).entries[1].note == "forged"  # chain itself is consistent
    with pytest.raises(sp.SpecError, match="rewritten or truncated"):
        sp.preflight(p)
    hp.write_text(hp.read_text().splitlines()[0] + "\n")  # truncation
    with pytest.raises(sp.SpecError, match="rewritten or truncated"):
        sp.preflight(p)


# ------------------------------------------------------------------ quarantine


def test_quarantine_precision_recall_with_fields(tmp_path: Path) -> None:
    recs = _records(10)
    root = make(tmp_path, recs)
    _lock_and_bump(root)
    res = ftprep.audit(root)
    q = _quarantined(res)
    truth = {r["id"] for r in recs if r["area"] == "refunds" and r["v"] == "1"}
    assert q == truth  # precision and recall 1.0
    r = next(r for r in res.results if r.check == "spec.quarantine")
    assert str(r.status) == "FAIL" and r.values["unresolved_quarantine"] == 10
    d = next(d for d in r.decisions if d.example_id == "refunds-1-0")
    assert d.reason == "superseded_spec_area" and "version 1" in d.detail
    kinds = {s.kind for s in r.sections}
    assert {"table", "lines", "examples"} <= kinds
    assert res.exit_code == 1


def test_versions_from_collected_at_and_source_default(tmp_path: Path) -> None:
    recs = _records(6)
    root = make(tmp_path, recs, fields="{id: id, collected_at: at, area: area}")
    _lock_and_bump(root)
    res = ftprep.audit(root, only=["spec"])
    truth = {r["id"] for r in recs if r["area"] == "refunds" and r["at"] < "2024-02-15"}
    assert _quarantined(res) == truth
    m = ftprep.build(root).manifest  # derived versions reach the manifest
    expect = {r["id"]: ("1" if r["at"] < "2024-02-15" else "2") for r in recs}
    for split in m["splits"].values():
        assert split["spec_versions"] == [expect[i] for i in split["ids"]]
    # no field, no date: the source default decides
    root2 = make(
        tmp_path / "b",
        recs,
        fields="{id: id, area: area}",
        extra="    defaults: {spec_version: '1'}\n",
    )
    _lock_and_bump(root2)
    res2 = ftprep.audit(root2)
    assert _quarantined(res2) == {r["id"] for r in recs if r["area"] == "refunds"}
    r = next(r for r in res2.results if r.check == "spec.quarantine")
    assert r.values["version_sources"] == {"default": len(recs)}


def test_areas_from_spec_rules(tmp_path: Path) -> None:
    recs = _records(5)
    root = make(tmp_path, recs, fields="{id: id, spec_version: v}")
    _lock_and_bump(root)
    res = ftprep.audit(root, only=["spec"])
    assert _quarantined(res) == {r["id"] for r in recs if r["area"] == "refunds" and r["v"] == "1"}
    r = next(r for r in res.results if r.check == "spec.quarantine")
    assert r.values["area_sources"] == {"rules": len(recs)}


def test_unknown_and_missing_versions_warn(tmp_path: Path) -> None:
    recs = _records(2)
    recs[0]["v"] = "7"
    del recs[1]["v"], recs[1]["at"]
    root = make(tmp_path, recs)
    _lock_and_bump(root)
    r = next(r for r in ftprep.audit(root, only=["spec"]).results if r.check == "spec.quarantine")
    assert r.values["unknown_version"] == 1 and r.values["missing_version"] == 1
    codes = {f.code for f in r.findings}
    assert {"unknown_spec_version", "missing_spec_version"} <= codes
    assert recs[0]["id"] not in {d.example_id for d in r.decisions}


def test_not_locked_spec_warns(tmp_path: Path) -> None:
    root = make(tmp_path, _records(1))
    r = next(r for r in ftprep.audit(root, only=["spec"]).results if r.check == "spec.quarantine")
    assert r.values["locked"] == 0 and str(r.status) == "WARN"
    assert r.findings[0].code == "spec_not_locked"


def test_review_clearance_changes_build_and_manifest_versions(tmp_path: Path) -> None:
    recs = _records(4)
    root = make(tmp_path, recs)
    _lock_and_bump(root)
    ftprep.audit(root, only=["spec"])
    b1 = ftprep.build(root)
    built1 = {i for s in b1.manifest["splits"].values() for i in s["ids"]}
    q = {
        e["id"]
        for e in b1.manifest["excluded"]
        if any(x["reason"] == "superseded_spec_area" for x in e["reasons"])
    }
    assert q == {r["id"] for r in recs if r["area"] == "refunds" and r["v"] == "1"}
    assert q.isdisjoint(built1)
    _ws, ledger = ftprep.api.open_workspace(load_project(root))
    ledger.decide(
        "refunds-1-0",
        "spec.quarantine",
        "include",
        "reviewer",
        patch={"response": "Within 14 days: yes."},
    )
    ledger.decide("refunds-1-1", "spec.quarantine", "exclude", "reviewer")
    res = ftprep.audit(root, only=["spec"])
    r = next(r for r in res.results if r.check == "spec.quarantine")
    assert r.values["resolved"] == 2 and r.values["unresolved_quarantine"] == 2
    b2 = ftprep.build(root)
    built2 = {i for s in b2.manifest["splits"].values() for i in s["ids"]}
    assert built2 - built1 == {"refunds-1-0"} and "refunds-1-1" not in built2
    for s in b2.manifest["splits"].values():
        assert len(s["spec_versions"]) == len(s["ids"]) and None not in s["spec_versions"]
    assert b2.manifest["spec_version"] == "2"


# ------------------------------------------------------------------ conflicts


def test_conflicts_across_versions_are_found(tmp_path: Path) -> None:
    recs = _records(3)
    same_q = "Can I still return a jacket bought 20 days ago for a refund?"
    recs += [
        {
            "id": "c-old",
            "v": "1",
            "area": "refunds",
            "messages": [
                {"role": "user", "content": same_q},
                {"role": "assistant", "content": "Yes, you are within the window."},
            ],
        },
        {
            "id": "c-new",
            "v": "2",
            "area": "refunds",
            "messages": [
                {"role": "user", "content": same_q + "  "},
                {"role": "assistant", "content": "No, the window is 14 days."},
            ],
        },
        {
            "id": "same-old",
            "v": "1",
            "area": "shipping",
            "messages": [
                {"role": "user", "content": "Where is parcel X?"},
                {"role": "assistant", "content": "Here is the tracking link."},
            ],
        },
        {
            "id": "same-new",
            "v": "2",
            "area": "shipping",
            "messages": [
                {"role": "user", "content": "where is parcel x"},
                {"role": "assistant", "content": "Here is the tracking link!"},
            ],
        },
    ]
    root = make(tmp_path, recs)
    _lock_and_bump(root)
    res = ftprep.audit(root, only=["spec"])
    r = next(r for r in res.results if r.check == "spec.conflicts")
    assert r.values["conflicts"] >= 1
    flagged = {(d.example_id, d.reason) for d in r.decisions}
    assert ("c-old", "mixed_criteria_conflict") in flagged
    assert all(d.example_id not in ("same-old", "same-new", "c-new") for d in r.decisions)
    assert (
        r.values["same_input_disagreement_across_versions"] == 0.5
    )  # c-old/c-new differ, same-* agree
    assert r.values["same_input_pairs_within_version"] == 0
    sec = next(s for s in r.sections if s.kind == "pairs")
    assert "No, the window is 14 days." in json.dumps(sec.data)


# ------------------------------------------------------------------ real data


def _promptsource_spec(path: Path, version: int) -> str:
    """A promptsource template file as a spec: one area per template (criteria: its prompt)."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    Loader.add_multi_constructor(
        "!", lambda loader, suffix, node: loader.construct_mapping(node, deep=True)
    )
    data = yaml.load(path.read_text(encoding="utf-8"), Loader=Loader)
    areas = {}
    for t in data["templates"].values():
        choices = t.get("answer_choices")
        if isinstance(choices, list):
            choices = " ||| ".join(choices)
        areas[t["name"]] = {
            "description": t.get("jinja", ""),
            "criteria": [f"answer choices: {choices}"] if choices else [],
        }
    header = {
        "name": data.get("dataset"),
        "version": str(version),
        "purpose": "prompted classification",
        "areas": areas,
    }
    return "---\n" + yaml.safe_dump(header, sort_keys=True) + "---\n"


def test_real_promptsource_history_versions_and_diffs(tmp_path: Path) -> None:
    from util import shared

    hist_dir = shared("task_specs", "promptsource_templates", "history")
    checked = 0
    for ds_dir in sorted(p for p in hist_dir.iterdir() if p.is_dir()):
        files = sorted(ds_dir.glob("v*.yaml"))
        root = tmp_path / ds_dir.name
        root.mkdir()
        (root / "ftprep.yaml").write_text("sources: [{name: m, path: d.jsonl}]\nspec: spec.md\n")
        (root / "spec.md").write_text(_promptsource_spec(files[0], 1))
        p = load_project(root)
        prev_spec = None
        for k, f in enumerate(files):
            text = _promptsource_spec(f, k + 1)
            (root / "spec.md").write_text(text)
            date = f.name.split("_")[1]
            cur = sp.parse_spec(text)
            if k == 0:
                sp.lock(p, effective=date, actor="promptsource")
            else:
                assert prev_spec is not None
                d = sp.diff_specs(prev_spec, cur)
                expected = sorted(
                    n
                    for n in set(cur.areas) | set(prev_spec.areas)
                    if (n in cur.areas) != (n in prev_spec.areas)
                    or cur.areas[n].criteria_hash != prev_spec.areas[n].criteria_hash
                )
                assert d.changed_areas == expected
                general_only = not expected and d.general_changed
                e, _ = sp.bump(
                    p, note=f.name, effective=date, areas=["none"] if general_only else None
                )
                assert e.version == str(k + 1) and e.affected_areas == expected
            prev_spec = cur
        h = History.load(history_path(root / "spec.md"))
        assert len(h.entries) >= 2
        last_date = files[-1].name.split("_")[1]
        assert h.version_at(parse_time(last_date)) == h.entries[-1].version  # type: ignore[arg-type]
        sp.preflight(p)
        checked += 1
    assert checked == 6


def test_real_awesome_prompts_dated_collections(tmp_path: Path) -> None:
    """Areas = roles ("act"); each dated CSV is a spec version; examples = role prompts first seen
    at a date. Roles whose prompt text changed between versions are the changed areas."""
    import csv

    from util import shared

    d = shared("paraphrase_drift", "awesome_chatgpt_prompts_versions")
    versions = ["2022-12-14", "2023-06-24", "2025-01-03"]
    tables = []
    for v in versions:
        with open(d / f"prompts_{v}.csv", encoding="utf-8") as fh:
            tables.append(
                {r["act"].strip(): r["prompt"] for r in csv.DictReader(fh) if r.get("act")}
            )
    acts = sorted(set(tables[0]) & set(tables[1]) & set(tables[2]))[:60]

    def spec_text(k: int) -> str:
        import yaml

        return (
            "---\n"
            + yaml.safe_dump(
                {
                    "version": str(k + 1),
                    "areas": {a.replace(" ", "_"): {"description": tables[k][a]} for a in acts},
                }
            )
            + "---\n"
        )

    rng = random.Random(0)
    recs = []
    for k, v in enumerate(versions):
        for a in acts:
            recs.append(
                {
                    "id": f"{a}|{v}",
                    "area": a.replace(" ", "_"),
                    "at": v,
                    "messages": [
                        {"role": "user", "content": tables[k][a]},
                        {"role": "assistant", "content": f"ok {rng.random()}"},
                    ],
                }
            )
    root = tmp_path
    write_jsonl(root / "d.jsonl", recs)
    (root / "ftprep.yaml").write_text(
        "sources: [{name: m, path: d.jsonl, fields: {id: id, area: area, collected_at: at}}]\nspec: spec.md\n"
        "checks: {spec.quarantine: {area_embeddings: false}}\n"
    )
    (root / "spec.md").write_text(spec_text(0))
    p = load_project(root)
    for k, v in enumerate(versions):
        (root / "spec.md").write_text(spec_text(k))
        if k == 0:
            sp.lock(p, effective=v)
        else:
            try:
                sp.bump(p, note=f"snapshot {v}", effective=v)
            except sp.SpecError as e:
                assert "nothing to bump" in str(e)
    h = History.load(history_path(root / "spec.md"))
    res = ftprep.audit(root, only=["spec"])
    q = _quarantined(res)
    truth = set()
    for r in recs:
        ver = h.version_at(parse_time(r["at"]))  # type: ignore[arg-type]
        if r["area"] in h.changed_since(ver):  # type: ignore[arg-type]
            truth.add(r["id"])
    changed_any = {a for e in h.entries for a in e.affected_areas}
    assert truth and q == truth
    assert all(r["area"] in changed_any for r in recs if r["id"] in q)


@pytest.fixture(scope="module")
def locked_history(tmp_path_factory: pytest.TempPathFactory) -> bytes:
    root = make(tmp_path_factory.mktemp("hist"), _records(1))
    _lock_and_bump(root)
    return history_path(root / "spec.md").read_bytes()


@settings(max_examples=60, deadline=None)
@given(data=st.data())
def test_any_single_character_edit_of_the_history_is_detected(
    locked_history: bytes, data: st.DataObject, tmp_path_factory: pytest.TempPathFactory
) -> None:
    text = locked_history.decode()
    pos = data.draw(st.integers(0, len(text) - 2))  # the final newline is not content
    new = data.draw(st.characters(codec="utf-8").filter(lambda c: c != text[pos]))
    target = tmp_path_factory.mktemp("t") / "spec.history.jsonl"
    target.write_text(text[:pos] + new + text[pos + 1 :], encoding="utf-8")
    with pytest.raises(sp.SpecError):
        History.load(target)


def test_init_template_locks_and_bumps(tmp_path: Path) -> None:
    runner = CliRunner()
    assert runner.invoke(main, ["init", str(tmp_path / "p")]).exit_code == 0
    root = tmp_path / "p"
    s = sp.load_spec(root / "spec.md")
    assert s.areas and all(sp.area_text(s, a) for a in s.areas)
    r = runner.invoke(main, ["spec", "lock", "-p", str(root)])
    assert r.exit_code == 0, r.output
    text = (root / "spec.md").read_text().replace('version: "1"', 'version: "2"')
    (root / "spec.md").write_text(text.replace("within 30 days", "within 60 days"))
    r = runner.invoke(main, ["spec", "bump", "-p", str(root), "--note", "longer window", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output)["affected_areas"] == ["refunds"]
    assert runner.invoke(main, ["spec", "log", "-p", str(root)]).exit_code == 0


def test_nearest_area_confidence_and_candidates() -> None:
    import numpy as np

    from ftprep.spec.provenance import nearest_area

    areas = np.eye(3, dtype=np.float32)
    ex = np.array([[1, 0, 0], [0.7, 0.7, 0.1], [0, 0.2, 0.98]], dtype=np.float32)
    ex /= np.linalg.norm(ex, axis=1, keepdims=True)
    best, conf, cands = nearest_area(ex, areas, temperature=0.05, margin=0.03)
    assert best.tolist() == [0, 0, 2]
    assert conf[0] > 0.99 and 0.4 < conf[1] < 0.6
    assert cands == [(0,), (0, 1), (2,)]


def test_inferred_areas_by_embeddings_quarantine(tmp_path: Path) -> None:
    """Areas without rules: the static embedder places examples by meaning."""
    pytest.importorskip("ftprep.signals.embeddings")
    from ftprep.signals.cache import get_embedder_cached

    try:
        get_embedder_cached("static")
    except (OSError, ValueError, RuntimeError) as e:
        pytest.skip(f"static embedder unavailable: {e}")
    spec_text = """---
version: "1"
areas:
  refunds: {description: "Refunds: customers asking to return a purchase and get their money back."}
  shipping: {description: "Shipping: where is my parcel, delivery delays, tracking numbers."}
  account: {description: "Account access: forgotten password, cannot log in, reset credentials."}
---
"""
    qs = {
        "refunds": [
            "I want my money back for this broken toaster",
            "How do I return these shoes for a refund?",
            "Please refund my purchase, it arrived damaged",
            "Can I send the jacket back and get reimbursed?",
        ],
        "shipping": [
            "Where is my parcel? It has not arrived",
            "My delivery is three days late",
            "What is the tracking number of my package?",
            "The courier never delivered my order",
        ],
        "account": [
            "I forgot my password",
            "I cannot log in to my account",
            "How do I reset my login credentials?",
            "My account is locked after failed sign-ins",
        ],
    }
    recs = []
    for area, texts in qs.items():
        for v in ("1", "2"):
            for j, q in enumerate(texts):
                recs.append(
                    {
                        "id": f"{area}-{v}-{j}",
                        "v": v,
                        "area_truth": area,
                        "messages": [
                            {"role": "user", "content": q},
                            {"role": "assistant", "content": f"ok {j}"},
                        ],
                    }
                )
    root = make(tmp_path, recs, fields="{id: id, spec_version: v}")
    (root / "spec.md").write_text(spec_text)
    p = load_project(root)
    sp.lock(p, effective="2024-01-01")
    (root / "spec.md").write_text(
        spec_text.replace('"1"', '"2"').replace("get their money back.", "get store credit.")
    )
    sp.bump(p, note="store credit", effective="2024-02-01")
    res = ftprep.audit(root, only=["spec"])
    r = next(r for r in res.results if r.check == "spec.quarantine")
    assert r.values["area_sources"] == {"embedding": len(recs)}
    assert 0 < r.values["inferred_area_mean_confidence"] <= 1
    truth = {x["id"] for x in recs if x["area_truth"] == "refunds" and x["v"] == "1"}
    q = _quarantined(res)
    assert len(q & truth) >= 3 and len(q - truth) <= 1  # inferred: figures, not a guarantee


def test_area_holdout_agreement_is_reported(tmp_path: Path) -> None:
    recs = _records(4)
    for r in recs[::2]:
        del r["area"]  # half inferred by rules, half given
    root = make(tmp_path, recs)
    _lock_and_bump(root)
    r = next(r for r in ftprep.audit(root, only=["spec"]).results if r.check == "spec.quarantine")
    assert r.values["area_holdout_n"] == len(recs) // 2
    assert (
        r.values["area_holdout_agreement"] == 1.0
    )  # the keyword rules place every given one right
    assert r.values["area_sources"] == {"field": len(recs) // 2, "rules": len(recs) // 2}


def test_bump_without_header_edit_numbers_the_version_and_updates_the_header(
    tmp_path: Path,
) -> None:
    root = make(tmp_path, _records(1))
    p = load_project(root)
    no_version = SPEC_V1.replace('version: "1"\n', "")
    (root / "spec.md").write_text(no_version, encoding="utf-8")
    e1 = sp.lock(p, effective="2024-01-01")
    assert e1.version == "1" and sp.load_spec(root / "spec.md").version == "1"
    text = (root / "spec.md").read_text().replace("within 30 days", "within 7 days")
    (root / "spec.md").write_text(text, encoding="utf-8")
    e2, d = sp.bump(p, note="7 days", effective="2024-02-01")
    assert (e2.version, e2.affected_areas, d.changed_areas) == ("2", ["refunds"], ["refunds"])
    assert sp.load_spec(root / "spec.md").version == "2"
    sp.preflight(p)  # the rewritten file is the recorded one
    (root / "spec.md").write_text(
        (root / "spec.md").read_text().replace("Send the reset link.", "Call the user."),
        encoding="utf-8",
    )
    e3, _ = sp.bump(p, note="calls", version="2025.1")
    assert e3.version == "2025.1" and sp.load_spec(root / "spec.md").version == "2025.1"
    assert History.load(history_path(root / "spec.md")).versions == ["1", "2", "2025.1"]


def test_clearance_before_a_further_change_is_stale(tmp_path: Path) -> None:
    recs = _records(2)
    root = make(tmp_path, recs)
    _lock_and_bump(root)
    ftprep.audit(root, only=["spec"])
    _ws, ledger = ftprep.api.open_workspace(load_project(root))
    ledger.decide("refunds-1-0", "spec.quarantine", "include", "reviewer")
    (root / "spec.md").write_text(
        _v2().replace('version: "2"', 'version: "3"').replace("14 days", "10 days")
    )
    sp.bump(load_project(root), note="10 days", effective="2024-04-01")
    r = next(r for r in ftprep.audit(root, only=["spec"]).results if r.check == "spec.quarantine")
    assert r.values["stale_clearances"] == 1
    assert "stale_spec_clearance" in {f.code for f in r.findings}
    # version-2 refunds examples are now superseded too
    assert {d.example_id for d in r.decisions} >= {"refunds-2-0", "refunds-2-1", "refunds-1-1"}


def test_areas_from_body_headings_when_the_header_has_none() -> None:
    s = sp.parse_spec(
        "---\npurpose: p\n---\nIntro.\n\n## Refunds\nWithin 30 days.\n### Detail\nkept\n"
        "```\n## not a heading\n```\n## Area: Shipping\nTracking link.\n"
    )
    assert list(s.areas) == ["Refunds", "Shipping"]
    assert "Within 30 days." in s.area_text("Refunds") and "kept" in s.area_text("Refunds")
    assert "not a heading" in s.area_text("Refunds")
    assert s.area_text("Shipping") == "Tracking link." and "Intro." in s.general_text


@pytest.mark.parametrize(
    "a, b, same",
    [
        ("v2", "2", True),
        ("V2", "2.0", True),
        ("2.0.0", "2", True),
        ("1.10", "1.1", False),
        ("2024-01", "2024-01", True),
        ("10.0", "1", False),
        ("draft", "Draft", True),
    ],
)
def test_version_values_match_recorded_versions(a: str, b: str, same: bool) -> None:
    from ftprep.spec.history import version_key

    assert (version_key(a) == version_key(b)) is same
