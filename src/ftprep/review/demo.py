"""A small, self-contained demo project for the review app (``ftprep review demo DIR``).

It writes what an audit of a support-ticket intent dataset would leave behind — the project file,
a task spec with areas, a rubric, the canonical ``train`` table, imported annotations with
disagreements, and ledger decisions in every queue — so the app can be tried (and tested) without
running the checks. The data is synthetic and small; every queue has a few items.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pyarrow as pa

from ftprep.checks.base import Action, Decision
from ftprep.decisions import Ledger
from ftprep.examples import Dataset, Example
from ftprep.project import Project, load_project
from ftprep.store import Workspace

SPEC = """---
name: {name}
version: "2"
purpose: Classify a customer message into the intent that routes it.
inputs: One customer message.
outputs:
  - The intent label (refund, shipping or account).
areas:
  refunds:
    description: Requests to return an item or to get money back.
    criteria:
      - Refunds are approved within 14 days of delivery (changed from 30 days in version 2).
    keywords: [refund, money back, return]
  shipping:
    description: Delivery times, tracking and lost parcels.
    criteria:
      - Give the tracking link when an order number is present.
    keywords: [shipping, delivery, tracking, parcel]
  account:
    description: Logging in, passwords and account settings.
    criteria:
      - Never ask for the password; send the reset link instead.
    keywords: [password, login, account]
---
# Intent routing

Label the intent the customer needs handled, not the words they use.
"""

RUBRIC = """Labels
- refund: the customer wants money back or to return an item.
- shipping: the customer asks where an order is, when it arrives, or reports it lost.
- account: the customer cannot log in, or wants to change account settings.
When two intents appear, label the one the customer asks to be handled first.
"""

TICKETS: list[tuple[str, str, str]] = [
    ("I want my money back for the broken kettle.", "refund", "refunds"),
    ("Where is my parcel? Order 1182 was due on Monday.", "shipping", "shipping"),
    ("I forgot my password and the reset mail never comes.", "account", "account"),
    ("Can I return the shoes? They are too small.", "refund", "refunds"),
    ("The tracking page says delivered but nothing arrived.", "shipping", "shipping"),
    ("How do I change the e-mail address on my account?", "account", "account"),
    ("My order arrived damaged, I want a refund or a new one.", "shipping", "refunds"),
    ("Login fails with an error since yesterday.", "account", "account"),
    ("Delivery is late again, please refund the shipping fee.", "refund", "shipping"),
    ("Please cancel and refund order 2291.", "refund", "refunds"),
    ("Is there express delivery to Norway?", "shipping", "shipping"),
    ("Two-factor codes never reach my phone.", "account", "account"),
]


def demo_examples(name: str = "tickets") -> list[Example]:
    out = []
    for i, (text, label, area) in enumerate(TICKETS, start=1):
        out.append(
            Example(
                id=f"t{i:02d}",
                messages=[
                    {"role": "user", "content": text},
                    {"role": "assistant", "content": label},
                ],
                source=name,
                label=label,
                area=area,
                spec_version="1" if i % 2 else "2",
                collected_at=f"2026-0{1 + i % 6}-1{i % 9}",
                file="data/train.jsonl",
                line=i,
            )
        )
    return out


# (example, annotator, label, reason)
VOTES: list[tuple[str, str, str, str]] = [
    ("t07", "ann_a", "refund", "asks for a refund"),
    ("t07", "ann_b", "shipping", "damage in transit is a shipping problem"),
    ("t07", "ann_c", "refund", "refund or replacement"),
    ("t09", "ann_a", "shipping", "the complaint is the late delivery"),
    ("t09", "ann_b", "refund", "wants the fee back"),
    ("t09", "ann_c", "account", ""),
    ("t01", "ann_a", "refund", ""),
    ("t01", "ann_b", "refund", ""),
]


def build_demo(
    root: Path,
    *,
    name: str = "demo",
    examples: Sequence[Example] | None = None,
    decisions: Sequence[tuple[str, Decision]] | None = None,
    votes: Sequence[tuple[str, str, str, str]] | None = None,
    database_url: str | None = None,
) -> Project:
    """Write a demo project into ``root`` and return it. ``examples``, ``decisions`` (pairs of
    check name and decision) and ``votes`` replace the built-in ones when given; the ledger goes
    to ``database_url`` when given (else the project's database)."""
    root.mkdir(parents=True, exist_ok=True)
    exs = list(examples) if examples is not None else demo_examples()
    (root / "data").mkdir(exist_ok=True)
    with open(root / "data" / "train.jsonl", "w", encoding="utf-8") as fh:
        for e in exs:
            fh.write(
                json.dumps(
                    {
                        "id": e.id,
                        "messages": e.messages,
                        "label": e.label,
                        "area": e.area,
                        "spec_version": e.spec_version,
                    }
                )
                + "\n"
            )
    vs = list(votes) if votes is not None else VOTES
    with open(root / "data" / "annotations.jsonl", "w", encoding="utf-8") as fh:
        for ex_id, ann, label, reason in vs:
            fh.write(
                json.dumps(
                    {"example_id": ex_id, "annotator": ann, "label": label, "reason": reason}
                )
                + "\n"
            )
    (root / "spec.md").write_text(SPEC.format(name=name), encoding="utf-8")
    (root / "rubric.md").write_text(RUBRIC, encoding="utf-8")
    (root / "ftprep.yaml").write_text(
        f"name: {json.dumps(name)}\n"
        "sources:\n"
        "  - name: tickets\n"
        "    path: data/train.jsonl\n"
        "    fields: {id: id, label: label, area: area, spec_version: spec_version}\n"
        "spec: spec.md\n"
        "rubric: rubric.md\n"
        "annotations:\n"
        "  path: data/annotations.jsonl\n"
        "  format: long\n"
        "  kind: label\n"
        "  id_field: example_id\n"
        "  annotator_field: annotator\n"
        "  value_field: label\n"
        "  reason_field: reason\n",
        encoding="utf-8",
    )
    project = load_project(root)
    ws = Workspace(project.workspace_dir, database_url or project.workspace.database_url)
    ws.save_table("train", Dataset.from_examples(exs).table)
    cols: dict[str, list[Any]] = {
        k: [] for k in ("example_id", "annotator", "label", "rating", "text", "timestamp", "reason")
    }
    for ex_id, ann, label, reason in vs:
        for k, v in (
            ("example_id", ex_id),
            ("annotator", ann),
            ("label", label),
            ("rating", None),
            ("text", None),
            ("timestamp", "2026-03-01T10:00:00+00:00"),
            ("reason", reason or None),
        ):
            cols[k].append(v)
    ws.save_table(
        "annotations",
        pa.table(
            cols,
            schema=pa.schema(
                [
                    ("example_id", pa.string()),
                    ("annotator", pa.string()),
                    ("label", pa.string()),
                    ("rating", pa.float64()),
                    ("text", pa.string()),
                    ("timestamp", pa.string()),
                    ("reason", pa.string()),
                ]
            ),
        ),
    )
    ledger = Ledger(ws.engine)
    if decisions is None:
        decisions = [
            (
                "labels.agreement",
                Decision(
                    "t07",
                    Action.ESCALATE,
                    "low_agreement",
                    "2 of 3 annotators agree (alpha 0.31 < 0.67)",
                ),
            ),
            (
                "labels.agreement",
                Decision(
                    "t09", Action.ESCALATE, "low_agreement", "3 annotators, 3 different labels"
                ),
            ),
            (
                "labels.errors",
                Decision(
                    "t04",
                    Action.REVIEW,
                    "likely_label_error",
                    "given refund; out-of-fold model says shipping (p=0.81)",
                ),
            ),
            (
                "labels.errors",
                Decision(
                    "t11",
                    Action.REVIEW,
                    "likely_label_error",
                    "given shipping; out-of-fold model says refund (p=0.74)",
                ),
            ),
            (
                "spec.quarantine",
                Decision(
                    "t01",
                    Action.QUARANTINE,
                    "superseded_spec_area",
                    "collected under spec version 1; area refunds; changed in version 2",
                ),
            ),
            (
                "spec.quarantine",
                Decision(
                    "t10",
                    Action.QUARANTINE,
                    "superseded_spec_area",
                    "collected under spec version 1; area refunds; changed in version 2",
                ),
            ),
            (
                "format.length",
                Decision("t12", Action.REVIEW, "very_short_output", "the output has one word"),
            ),
        ]
    by_check: dict[str, list[Decision]] = {}
    for check, d in decisions:
        d.check = check
        by_check.setdefault(check, []).append(d)
    for check, ds in by_check.items():
        ledger.replace_auto(check, ds, run_id="demo")
    return project
