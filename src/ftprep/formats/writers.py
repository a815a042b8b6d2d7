"""Write examples in the format a trainer expects: OpenAI chat JSONL (default), ShareGPT,
Alpaca, prompt/completion JSONL, or Parquet (the canonical columns). Returns the sha256 of the
written file; files are written atomically."""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ftprep.examples import SCHEMA, prompt_text, response_text, system_text
from ftprep.store import atomic_path

EXTENSIONS = {
    "openai": ".jsonl",
    "sharegpt": ".jsonl",
    "alpaca": ".jsonl",
    "prompt_completion": ".jsonl",
    "parquet": ".parquet",
}

_TO_SHAREGPT = {
    "user": "human",
    "assistant": "gpt",
    "system": "system",
    "tool": "tool",
    "developer": "system",
    "function": "tool",
}


def to_record(row: dict[str, Any], fmt: str) -> dict[str, Any]:
    msgs = orjson.loads(row["messages"])
    if fmt == "openai":
        return {"messages": msgs}
    if fmt == "sharegpt":
        return {
            "id": row["id"],
            "conversations": [
                {"from": _TO_SHAREGPT.get(m["role"], m["role"]), "value": m.get("content") or ""}
                for m in msgs
            ],
        }
    if fmt == "alpaca":
        rec: dict[str, Any] = {
            "instruction": _last_user(msgs),
            "input": "",
            "output": response_text(msgs),
        }
        sys_t = system_text(msgs)
        if sys_t:
            rec["system"] = sys_t
        hist = _history(msgs)
        if hist:
            rec["history"] = hist
        return rec
    if fmt == "prompt_completion":
        return {"prompt": prompt_text(msgs), "completion": response_text(msgs)}
    raise ValueError(f"unknown output format {fmt!r}")


def _last_user(msgs: Sequence[dict[str, Any]]) -> str:
    for m in reversed(msgs):
        if m.get("role") == "user":
            return str(m.get("content") or "")
    return ""


def _history(msgs: Sequence[dict[str, Any]]) -> list[list[str]]:
    """Earlier (user, assistant) pairs before the last user turn, Alpaca/LLaMA-Factory style."""
    turns = [m for m in msgs if m.get("role") in ("user", "assistant")]
    last_user = max((i for i, m in enumerate(turns) if m["role"] == "user"), default=-1)
    out: list[list[str]] = []
    pending: str | None = None
    for m in turns[:last_user]:
        if m["role"] == "user":
            pending = str(m.get("content") or "")
        elif pending is not None:
            out.append([pending, str(m.get("content") or "")])
            pending = None
    return out


def write_split(rows: Sequence[dict[str, Any]], path: Path, fmt: str) -> str:
    if fmt == "parquet":
        table = pa.Table.from_pylist(
            [{k: r.get(k) for k in SCHEMA.names} for r in rows], schema=SCHEMA
        )
        with atomic_path(path) as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return hashlib.sha256(path.read_bytes()).hexdigest()
    h = hashlib.sha256()
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        for r in rows:
            line = orjson.dumps(to_record(r, fmt)) + b"\n"
            h.update(line)
            fh.write(line)
    return h.hexdigest()
