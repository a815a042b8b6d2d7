"""Token counts per example with an offline tokenizer.

Default: OpenAI's ``cl100k_base`` through ``quicktok`` (exact, bundled vocab, parallel C++).
Also ``o200k`` (GPT-4o family), ``hf`` (any Hugging Face ``tokenizer.json`` the user points at:
their model's own tokenizer) and ``chars4`` (characters / 4, when no tokenizer fits).
Counts follow the OpenAI cookbook convention for chat: per message 3 tokens of framing plus
the content (and the name), plus 3 tokens priming the reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Protocol

import numpy as np

TOKENS_PER_MESSAGE = 3
TOKENS_PER_REPLY = 3


class TokenCounter(Protocol):
    name: str

    def count_batch(self, texts: Sequence[str]) -> np.ndarray: ...


class _Quicktok:
    def __init__(self, encoding: str) -> None:
        import quicktok

        self._enc = quicktok.get_encoding(encoding)
        self.name = f"quicktok:{encoding}"

    def count_batch(self, texts: Sequence[str]) -> np.ndarray:
        if not texts:
            return np.zeros(0, dtype=np.int64)
        _tokens, offsets = self._enc.encode_batch(list(texts))
        return np.diff(np.asarray(offsets, dtype=np.int64))


class _HF:
    def __init__(self, path: Path) -> None:
        from tokenizers import Tokenizer

        if not path.exists():
            raise FileNotFoundError(f"tokenizer file {path} not found")
        self._tok = Tokenizer.from_file(str(path))
        self._tok.no_truncation()
        self._tok.no_padding()
        self.name = f"hf:{path.name}"

    def count_batch(self, texts: Sequence[str]) -> np.ndarray:
        encs = self._tok.encode_batch(list(texts), add_special_tokens=False)
        return np.fromiter((len(e.ids) for e in encs), dtype=np.int64, count=len(texts))


class _Chars4:
    name = "chars4"

    def count_batch(self, texts: Sequence[str]) -> np.ndarray:
        return np.fromiter(((len(t) + 3) // 4 for t in texts), dtype=np.int64, count=len(texts))


def get_counter(kind: str = "cl100k", path: Path | None = None) -> TokenCounter:
    if kind in ("cl100k", "cl100k_base"):
        return _Quicktok("cl100k_base")
    if kind in ("o200k", "o200k_base"):
        return _Quicktok("o200k_base")
    if kind == "hf":
        if path is None:
            raise ValueError("tokenizer kind 'hf' needs 'path' to a tokenizer.json file")
        return _HF(path)
    if kind == "chars4":
        return _Chars4()
    raise ValueError(f"unknown tokenizer kind {kind!r} (cl100k, o200k, hf, chars4)")


def count_messages(
    counter: TokenCounter, messages_per_example: Sequence[Sequence[dict]]
) -> tuple[np.ndarray, np.ndarray]:
    """Returns (total tokens per example, assistant tokens per example)."""
    flat: list[str] = []
    owner: list[int] = []
    is_asst: list[bool] = []
    for i, msgs in enumerate(messages_per_example):
        for m in msgs:
            flat.append(
                str(m.get("content") or "") + (str(m["tool_calls"]) if m.get("tool_calls") else "")
            )
            owner.append(i)
            is_asst.append(m.get("role") == "assistant")
    counts = counter.count_batch(flat) if flat else np.zeros(0, dtype=np.int64)
    own = np.asarray(owner, dtype=np.int64)
    n = len(messages_per_example)
    total = np.bincount(own, weights=counts + TOKENS_PER_MESSAGE, minlength=n).astype(np.int64)
    total += TOKENS_PER_REPLY
    asst = np.bincount(
        own, weights=counts * np.asarray(is_asst, dtype=np.int64), minlength=n
    ).astype(np.int64)
    return total, asst
