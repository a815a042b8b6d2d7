"""Write examples in the format a trainer expects: OpenAI chat JSONL (default), ShareGPT,
Alpaca, prompt/completion JSONL, or Parquet (the canonical columns). Returns the sha256 of the
written file; files are written atomically."""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
import pyarrow.parquet as pq

from ftprep.examples import SCHEMA, prompt_text, response_text, system_text
from ftprep.formats.records import MESSAGE_EXTRAS
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


def to_record(
    row: dict[str, Any], fmt: str, msgs: list[dict[str, Any]] | None = None
) -> dict[str, Any]:
    """One canonical row as a record of ``fmt`` (``msgs``: its messages, already parsed)."""
    if msgs is None:
        msgs = orjson.loads(row["messages"])
    if fmt == "openai":
        return {"messages": msgs}
    if fmt == "sharegpt":
        return {
            "id": row["id"],
            "conversations": [
                {
                    "from": _TO_SHAREGPT.get(m["role"], m["role"]),
                    "value": m.get("content") or "",
                    **{k: m[k] for k in MESSAGE_EXTRAS if m.get(k) is not None},
                }
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


LOSSLESS = ("openai", "parquet")
_SINGLE = ["system", "user", "assistant"]


def _has_tools(msgs: Sequence[dict[str, Any]]) -> bool:
    return any(m["role"] == "tool" or m.get("tool_calls") or m.get("function_call") for m in msgs)


def loss(msgs: list[dict[str, Any]], record: dict[str, Any], fmt: str) -> list[str]:
    """What a written record no longer holds of the conversation it came from (empty when
    reading it back gives the same turns). Alpaca and prompt/completion hold one exchange plus
    history; only OpenAI chat and Parquet hold everything."""
    from ftprep.formats.records import FieldMap, RejectError, to_messages

    roles = [m["role"] for m in msgs]
    if all(len(m) == 2 for m in msgs) and (  # the common shapes every format holds as they are
        roles == ["user", "assistant"] or (fmt != "prompt_completion" and roles == _SINGLE)
    ):
        return []
    try:
        back, _ = to_messages(record, fmt, FieldMap())
    except RejectError:
        return ["not readable back"]
    if roles and roles[-1] != "assistant" and back[-1:] == [{"role": "assistant", "content": ""}]:
        back = back[:-1]  # an input without an answer (production data in validation/test)
    if back == msgs:
        return []
    out = []
    if _has_tools(msgs) and not _has_tools(back):
        out.append("tool calls and results dropped")
    if system_text(msgs) and not system_text(back):
        out.append("system prompt dropped")
    dialogue = [m["role"] for m in msgs if m["role"] in ("user", "assistant")]
    if len(dialogue) > 2 and dialogue != [m["role"] for m in back if m["role"] in dialogue]:
        out.append("multi-turn flattened")
    if (
        not out
        and len(back) == len(msgs)
        and [m.get("content") for m in msgs] == [m.get("content") for m in back]
    ):
        renamed = sorted(
            {f"{a}->{b['role']}" for a, b in zip(roles, back, strict=True) if a != b["role"]}
        )
        out.append(f"roles renamed ({', '.join(renamed)})")
    return out or ["turns rewritten"]


def write_split(
    rows: Sequence[dict[str, Any]],
    path: Path,
    fmt: str,
    losses: dict[str, int] | None = None,
    atomic: bool = True,
) -> str:
    """Write one split; with ``losses``, count (by :func:`loss` reason) the examples that the
    format cannot hold completely. ``atomic=False`` writes ``path`` in place (for a path that
    is itself a staged temporary, see :func:`ftprep.store.atomic_file_set`)."""
    target = atomic_path(path) if atomic else contextlib.nullcontext(path)
    if fmt == "parquet":
        table = pa.Table.from_pylist(
            [{k: r.get(k) for k in SCHEMA.names} for r in rows], schema=SCHEMA
        )
        with target as tmp:
            pq.write_table(table, tmp, compression="zstd")
        return hashlib.sha256(path.read_bytes()).hexdigest()
    h = hashlib.sha256()
    with target as tmp, open(tmp, "wb") as fh:
        lost = losses if losses is not None and fmt not in LOSSLESS else None
        for r in rows:
            msgs = orjson.loads(r["messages"])
            rec = to_record(r, fmt, msgs)
            if lost is not None:
                for why in loss(msgs, rec, fmt):
                    lost[why] = lost.get(why, 0) + 1
            line = orjson.dumps(rec) + b"\n"
            h.update(line)
            fh.write(line)
    return h.hexdigest()
