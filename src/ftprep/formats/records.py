"""One raw record (a parsed JSON object or table row) -> canonical messages, or a reject.

Every supported record shape is recognised here:

* OpenAI chat: ``{"messages": [{"role", "content", "tool_calls"?...}]}``
* ShareGPT: ``{"conversations": [{"from": "human"|"gpt"|"system"|..., "value"}]}``
* Alpaca: ``{"instruction", "input"?, "output", "system"?, "history"?}``
* prompt/completion: ``{"prompt", "completion"}``
* text: any record with a configured ``input`` field (and an ``output`` or ``label`` field)
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson

from ftprep.examples import ROLES

_ROLESET = frozenset(ROLES)
# the fields a ``text`` record's input is taken from when ``fields.input`` is not set
_TEXT_INPUTS = ("text", "question", "query", "input", "utterance", "prompt")
# per-turn keys kept besides role and content (tool calls and their results, names, weights);
# ShareGPT turns carry them under the same names
MESSAGE_EXTRAS = ("name", "tool_calls", "tool_call_id", "function_call", "weight")
RECORD_FORMATS = ("openai", "sharegpt", "alpaca", "prompt_completion", "text")

SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "model": "assistant",
    "system": "system",
    "developer": "developer",
    "tool": "tool",
    "observation": "tool",
    "function": "tool",
    "function_call": "assistant",
}


class RejectError(Exception):
    """A record that cannot become an example. ``code`` is a stable reason code."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason


@dataclass(frozen=True, slots=True)
class FieldMap:
    """Which record fields carry what. ``input``/``output`` are for the ``text`` shape."""

    id: str | None = None
    group: str | None = None
    collected_at: str | None = None
    spec_version: str | None = None
    label: str | None = None
    annotator: str | None = None
    area: str | None = None
    outcome: tuple[str, ...] = ()
    meta: tuple[str, ...] = ()
    input: str | None = None
    output: str | None = None
    system: str | None = None

    def id_key(self) -> str:
        """The field the example id is read from: the declared one, else a top-level ``id``
        (ShareGPT dumps, Hugging Face exports and most logs carry one; records without it get
        a content-hash id). Repeats of an undeclared ``id`` are numbered, not rejected."""
        return self.id or "id"


def get_path(rec: dict[str, Any], path: str) -> Any:
    """``a.b`` looks up nested keys; a plain key is a plain lookup."""
    if path in rec:
        return rec[path]
    cur: Any = rec
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def detect_record_format(rec: dict[str, Any], fields: FieldMap) -> str:
    if "messages" in rec:
        return "openai"
    if "conversations" in rec or "conversation" in rec:
        return "sharegpt"
    if "instruction" in rec:
        return "alpaca"
    if "prompt" in rec and ("completion" in rec or "response" in rec):
        return "prompt_completion"
    if fields.input:
        return "text"
    for k in _TEXT_INPUTS:
        if k in rec:
            return "text"
    raise RejectError(
        "unknown_format",
        "record has none of messages / conversations / instruction / prompt+completion; "
        f"keys: {sorted(rec)[:8]}",
    )


def _as_text(v: Any, what: str) -> str:
    if v is None:
        return ""
    if isinstance(v, str):
        return v
    if isinstance(v, int | float | bool):
        return str(v)
    raise RejectError("bad_type", f"{what} must be a string, got {type(v).__name__}")


def _openai(rec: dict[str, Any]) -> list[dict[str, Any]]:
    msgs = rec.get("messages")
    if isinstance(msgs, str):
        # a table column holding the conversation as JSON text (ftprep's own Parquet output,
        # many exported datasets)
        try:
            msgs = orjson.loads(msgs)
        except orjson.JSONDecodeError as e:
            raise RejectError("bad_type", f"'messages' is a string but not JSON ({e})") from None
    if not isinstance(msgs, list):
        raise RejectError("bad_type", "'messages' must be a list")
    # fast path: plain {"role", "content": str} turns are already canonical
    for m in msgs:
        if not (
            type(m) is dict
            and len(m) == 2
            and type(m.get("content")) is str
            and m.get("role") in _ROLESET
        ):
            break
    else:
        return msgs
    out: list[dict[str, Any]] = []
    for i, m in enumerate(msgs):
        if not isinstance(m, dict):
            raise RejectError("bad_type", f"message {i} is not an object")
        role = m.get("role")
        if role not in ROLES:
            raise RejectError("unknown_role", f"message {i} has unknown role {role!r}")
        c = m.get("content")
        if c is not None and not isinstance(c, str | list):
            raise RejectError("bad_type", f"message {i} content must be a string or list")
        if isinstance(c, list):
            parts = []
            for p in c:
                if isinstance(p, dict) and p.get("type", "text") == "text":
                    # {"type": "text", "text": …}; LLaMA-Factory's v1 files say "value"
                    parts.append(str(p.get("text", p.get("value", ""))))
                elif isinstance(p, str):
                    parts.append(p)
            c = "\n".join(parts)
        msg: dict[str, Any] = {"role": role, "content": c if c is not None else ""}
        out.append(_with_extras(msg, m))
    return out


def _with_extras(msg: dict[str, Any], turn: dict[str, Any]) -> dict[str, Any]:
    for k in MESSAGE_EXTRAS:
        if turn.get(k) is not None:
            msg[k] = turn[k]
    return msg


def _sharegpt(rec: dict[str, Any]) -> list[dict[str, Any]]:
    conv = rec.get("conversations", rec.get("conversation"))
    if not isinstance(conv, list):
        raise RejectError("bad_type", "'conversations' must be a list")
    out: list[dict[str, Any]] = []
    if isinstance(rec.get("system"), str) and rec["system"]:
        out.append({"role": "system", "content": rec["system"]})
    for i, t in enumerate(conv):
        if not isinstance(t, dict):
            raise RejectError("bad_type", f"turn {i} is not an object")
        who = t.get("from", t.get("role"))
        role = SHAREGPT_ROLES.get(str(who).lower()) if who is not None else None
        if role is None:
            raise RejectError("unknown_role", f"turn {i} has unknown speaker {who!r}")
        content = _as_text(t.get("value", t.get("content")), f"turn {i} value")
        out.append(_with_extras({"role": role, "content": content}, t))
    return out


def _alpaca(rec: dict[str, Any]) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if rec.get("system"):
        out.append({"role": "system", "content": _as_text(rec["system"], "system")})
    hist = rec.get("history") or []
    if not isinstance(hist, list):
        raise RejectError("bad_type", "'history' must be a list of [instruction, output] pairs")
    for pair in hist:
        if not (isinstance(pair, list | tuple) and len(pair) == 2):
            raise RejectError("bad_type", "'history' items must be [instruction, output] pairs")
        out.append({"role": "user", "content": _as_text(pair[0], "history instruction")})
        out.append({"role": "assistant", "content": _as_text(pair[1], "history output")})
    instr = _as_text(rec.get("instruction"), "instruction")
    inp = _as_text(rec.get("input"), "input")
    user = f"{instr}\n\n{inp}" if inp.strip() else instr
    out.append({"role": "user", "content": user})
    if "output" in rec:
        out.append({"role": "assistant", "content": _as_text(rec.get("output"), "output")})
    return out


def _prompt_completion(rec: dict[str, Any]) -> list[dict[str, Any]]:
    p = _as_text(rec.get("prompt"), "prompt")
    c = _as_text(rec.get("completion", rec.get("response")), "completion")
    return [{"role": "user", "content": p}, {"role": "assistant", "content": c}]


def _text(rec: dict[str, Any], fields: FieldMap) -> list[dict[str, Any]]:
    key = fields.input
    if key is None:
        key = next((k for k in _TEXT_INPUTS if k in rec), None)
        if key is None:
            raise RejectError(
                "unknown_format",
                f"format text: the record has none of {', '.join(_TEXT_INPUTS)} and no "
                f"fields.input is set (keys: {sorted(rec)[:8]})",
            )
    out: list[dict[str, Any]] = []
    if fields.system and get_path(rec, fields.system):
        out.append({"role": "system", "content": _as_text(get_path(rec, fields.system), "system")})
    out.append({"role": "user", "content": _as_text(get_path(rec, key), key)})
    out_key = fields.output
    if out_key is None:
        for k in ("output", "answer", "response", "target"):
            if k in rec:
                out_key = k
                break
    if out_key is not None and get_path(rec, out_key) is not None:
        out.append({"role": "assistant", "content": _as_text(get_path(rec, out_key), out_key)})
    elif fields.label and get_path(rec, fields.label) is not None:
        out.append({"role": "assistant", "content": _as_text(get_path(rec, fields.label), "label")})
    return out


# the key a record forced into a format must have (auto-detection already looked for them)
_REQUIRED_KEYS = {
    "openai": ("messages",),
    "sharegpt": ("conversations", "conversation"),
    "alpaca": ("instruction",),
    "prompt_completion": ("prompt",),
}


def to_messages(rec: Any, fmt: str, fields: FieldMap) -> tuple[list[dict[str, Any]], str]:
    """Normalise one record; returns ``(messages, detected_format)``."""
    if not isinstance(rec, dict):
        raise RejectError("not_an_object", f"record is a {type(rec).__name__}, not an object")
    f = detect_record_format(rec, fields) if fmt == "auto" else fmt
    need = _REQUIRED_KEYS.get(f, ())
    if need and not any(k in rec for k in need):
        raise RejectError(
            "unknown_format",
            f"format {f}: the record has no {' / '.join(repr(k) for k in need)} "
            f"(keys: {sorted(rec)[:8]}); is `format:` right for this source?",
        )
    if f == "openai":
        return _openai(rec), f
    if f == "sharegpt":
        return _sharegpt(rec), f
    if f == "alpaca":
        return _alpaca(rec), f
    if f == "prompt_completion":
        return _prompt_completion(rec), f
    if f == "text":
        return _text(rec, fields), f
    raise RejectError("unknown_format", f"unknown record format {fmt!r}")


def analyse(messages: list[dict[str, Any]], mode: str) -> tuple[str, str, str]:
    """Validate a normalised conversation and return ``(prompt, response, system)`` texts in
    one pass. ``mode='train'``: a full training conversation (a non-empty user turn, the final
    turn by the assistant, no empty turns). ``mode='inputs'``: production/benchmark inputs,
    which only need some non-empty user text."""
    if not messages:
        raise RejectError("empty_messages", "no messages")
    users: list[str] = []
    systems: list[str] = []
    response = ""
    has_user = has_assistant = False
    train = mode == "train"
    for i, m in enumerate(messages):
        role = m["role"]
        content = m.get("content") or ""
        if (
            not content.strip()
            and train
            and not (role == "assistant" and (m.get("tool_calls") or m.get("function_call")))
        ):
            raise RejectError("empty_content", f"message {i} ({role}) has empty content")
        if role == "user":
            users.append(content)
            has_user = has_user or bool(content.strip())
        elif role == "assistant":
            has_assistant = True
            response = content
        elif role in ("system", "developer"):
            systems.append(content)
    if not has_user:
        raise RejectError("no_user_turn", "no non-empty user turn")
    if train:
        if not has_assistant:
            raise RejectError("no_assistant_turn", "no assistant turn to train on")
        if messages[-1]["role"] != "assistant":
            raise RejectError(
                "assistant_not_last",
                f"last message is from {messages[-1]['role']!r}, not the assistant",
            )
    return "\n\n".join(users), response, "\n\n".join(systems)
