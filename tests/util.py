from __future__ import annotations

import json
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p}")
    return p


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def chat(i: int, user: str | None = None, answer: str | None = None, **extra: object) -> dict:
    return {
        "id": f"ex{i}",
        "messages": [
            {"role": "system", "content": "You are a support assistant."},
            {"role": "user", "content": user or f"How do I reset the password of account {i}?"},
            {
                "role": "assistant",
                "content": answer or f"Open settings, choose security, then reset (case {i}).",
            },
        ],
        **extra,
    }


def make_project(root: Path, records: list, extra_yaml: str = "", fields: str = "{id: id}") -> Path:
    write_jsonl(root / "data" / "train.jsonl", records)
    (root / "ftprep.yaml").write_text(
        "name: test\nsources:\n  - name: main\n    path: data/train.jsonl\n"
        f"    fields: {fields}\n" + extra_yaml,
        encoding="utf-8",
    )
    return root
