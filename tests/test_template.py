"""Template lines (``ftprep.distribution.template``): lines many inputs repeat verbatim are taken
out before training and production inputs are compared, and reported."""

from __future__ import annotations

import json
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ftprep.distribution.template import TemplateParams, strip_templates

INSTRUCTION = "Classify the customer's request and answer with the intent name."


def test_a_training_only_instruction_is_found_and_removed() -> None:
    queries = [f"please track parcel {i}" for i in range(50)]
    train = [f"{INSTRUCTION}\n\n{q}" for q in queries]
    prod = [f"where is order {i}" for i in range(40)]
    t, p, found = strip_templates(train, prod)
    assert t == queries
    assert p == prod  # nothing of production's is a template
    assert [(x.line, x.training_share, x.production_share) for x in found] == [
        (INSTRUCTION, 1.0, 0.0)
    ]
    assert found[0].training_items == list(range(20)) and found[0].production_items == []
    assert found[0].differs(0.2)


def test_frequent_one_line_inputs_are_content_not_templates() -> None:
    # "yes" is a quarter of the inputs, but each is a whole input: nothing to strip
    texts = ["yes"] * 30 + [f"cancel order {i}" for i in range(90)]
    t, p, found = strip_templates(texts, texts)
    assert found == [] and t == texts and p == texts


def test_a_shared_wrapper_is_stripped_on_both_sides_and_does_not_differ() -> None:
    wrap = "Customer message follows."
    train = [f"{wrap}\nrefund item {i}" for i in range(40)]
    prod = [f"{wrap}\nreturn item {i}" for i in range(40)]
    t, p, found = strip_templates(train, prod)
    assert t[0] == "refund item 0" and p[0] == "return item 0"
    assert len(found) == 1 and not found[0].differs(0.2)


def test_below_the_share_or_switched_off_nothing_changes() -> None:
    train = [f"{INSTRUCTION}\nq{i}" for i in range(10)] + [f"q{i}" for i in range(90)]
    assert strip_templates(train, train)[2] == []  # 10 % < min_share 0.2
    found = strip_templates(train, train, TemplateParams(min_share=0.05))[2]
    assert [x.line for x in found] == [INSTRUCTION]
    off = TemplateParams.from_dict({"strip_templates": False})
    assert strip_templates(train, train, off) == (train, train, [])


@settings(max_examples=80, deadline=None)
@given(
    st.lists(
        st.lists(
            st.sampled_from(
                [
                    "a",
                    "b",
                    "",
                    "  a ",
                    "hello there",
                    "x y",
                    "Query: a",
                    "Query: b c",
                    "Q:",
                    "10:30 ok",
                ]
            ),
            max_size=4,
        ),
        min_size=1,
        max_size=40,
    ),
    st.floats(0.01, 1.0),
)
def test_stripping_keeps_every_input_and_only_removes_template_lines(
    docs: list[list[str]], share: float
) -> None:
    texts = ["\n".join(d) for d in docs]
    t, p, found = strip_templates(texts, texts[::-1], TemplateParams(min_share=share, min_count=1))
    whole = {x.line for x in found if x.kind == "line"}
    labels = {x.line for x in found if x.kind == "prefix"}
    assert "10:30" not in labels and "Q:" not in labels  # no content after it: not a label
    assert len(t) == len(texts) and len(p) == len(texts)
    for before, after in zip(texts, t, strict=True):
        if after == before:
            continue
        # what is left is the non-template lines, in order, less their label, and never nothing
        kept = [s.strip() for s in before.splitlines() if s.strip() and s.strip() not in whole]
        expect = [
            next((s[len(lab) :].strip() for lab in labels if s.startswith(lab + " ")), s)
            for s in kept
        ]
        assert after.splitlines() == expect
        assert after.strip()


def test_a_field_label_opening_the_line_is_a_template_too() -> None:
    queries = [f"where is parcel {i}" for i in range(50)]
    train = [f"Query: {q}\nIntent:" for q in queries]
    t, p, found = strip_templates(train, queries)
    assert t == queries and p == queries
    assert {(x.line, x.kind, x.training_share, x.production_share) for x in found} == {
        ("Intent:", "line", 1.0, 0.0),
        ("Query:", "prefix", 1.0, 0.0),
    }


def test_a_one_line_instruction_ending_in_a_colon_is_a_label() -> None:
    queries = [f"where is parcel {i}, it was due {i % 7} days ago" for i in range(50)]
    lead = "Classify the intent of the following customer request, then answer briefly:"
    t, p, found = strip_templates([f"{lead} {q}" for q in queries], queries)
    assert t == queries and p == queries
    assert [(x.line, x.kind, x.training_share) for x in found] == [(lead, "prefix", 1.0)]
    # a colon inside content, times and addresses are not labels; a lead few inputs share stays
    mixed = [f"at 10:{i:02d} see http://x.org/{i}: {q}" for i, q in enumerate(queries)]
    assert strip_templates(mixed, queries) == (mixed, queries, [])
    notes = [f"Note {i}: {q}" for i, q in enumerate(queries)]
    assert strip_templates(notes, queries)[2] == []


def test_audit_compares_inputs_without_a_training_only_instruction(tmp_path: Path) -> None:
    """The same training queries with and without an Alpaca instruction give the same coverage
    flags and shift test; the wrapped run names the template and warns."""
    import ftprep
    from test_distribution import audit_inputs

    queries, prod = audit_inputs()
    out = {}
    for name, instruction in (("plain", ""), ("wrapped", INSTRUCTION)):
        root = tmp_path / name
        (root / "data").mkdir(parents=True)
        with open(root / "data/train.jsonl", "w", encoding="utf-8") as f:
            for i, q in enumerate(queries):
                rec = {"id": f"t{i}", "instruction": instruction or q, "output": "done"}
                if instruction:
                    rec["input"] = q
                f.write(json.dumps(rec) + "\n")
        with open(root / "data/prod.jsonl", "w", encoding="utf-8") as f:
            for i, q in enumerate(prod):
                f.write(json.dumps({"id": f"p{i}", "text": q}) + "\n")
        (root / "ftprep.yaml").write_text(
            "name: t\nsources:\n  - name: main\n    path: data/train.jsonl\n"
            "production:\n  path: data/prod.jsonl\n  fields: {input: text}\n"
            "checks:\n  distribution.shift: {permutations: 19, folds: 3}\n",
            encoding="utf-8",
        )
        ftprep.audit(root, only=["distribution"])
        art = json.loads((root / "out/audit/artifacts/distribution.json").read_text())
        checks = {
            c["check"]: c
            for c in json.loads((root / "out/audit/findings.json").read_text())["checks"]
        }
        out[name] = (art, checks)
    (a0, c0), (a1, c1) = out["plain"], out["wrapped"]
    assert a1["uncovered_production_ids"] == a0["uncovered_production_ids"] != []
    assert a1["shift"]["auc"] == a0["shift"]["auc"]
    assert a0["template_lines"] == [] and c0["distribution.shift"]["status"] != "WARN"
    assert [t["line"] for t in a1["template_lines"]] == [INSTRUCTION]
    shift = c1["distribution.shift"]
    assert shift["status"] == "WARN" and shift["values"]["template_lines_differing"] == 1
    assert shift["findings"][0]["example_ids"] == [f"t{i}" for i in range(20)]
    plain = [f["code"] for f in c0["distribution.shift"]["findings"]]
    assert [f["code"] for f in shift["findings"]] == ["template_line", *plain]


def test_a_repeated_slot_or_alternatives_line_is_a_surface_change_not_a_template() -> None:
    # production drafts carrying "[Client Name]" / "[shall/may]" on a line of their own: the shift
    # test must see them, so they are never stripped as a wrapper
    prod = [f"renew contract {i}\n[Client Name]" for i in range(20)]
    prod += [f"sign lease {i}\n[shall/may] apply" for i in range(20)] + ["plain"] * 20
    train = [f"renew contract {i}" for i in range(40)]
    _, p, found = strip_templates(train, prod)
    assert found == [] and p == prod
