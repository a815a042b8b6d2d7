"""Cached signals: computed once per content hash and kept in the workspace, so re-auditing an
unchanged dataset recomputes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson
import pyarrow as pa

from ftprep.examples import Dataset, text_hash
from ftprep.signals.tokens import count_messages, get_counter
from ftprep.store import Workspace

if TYPE_CHECKING:
    from ftprep.context import ProgressFactory
    from ftprep.project import Project

_EMBEDDERS: dict[str, Any] = {}


def get_embedder_cached(model: str) -> Any:
    from ftprep.signals.embeddings import get_embedder

    if model not in _EMBEDDERS:
        _EMBEDDERS[model] = get_embedder(model)
    return _EMBEDDERS[model]


def cached_embeddings(
    workspace: Workspace | None,
    texts: Sequence[str],
    model: str = "static",
    progress: ProgressFactory | None = None,
) -> np.ndarray:
    emb = get_embedder_cached(model)

    def compute(idx: list[int]) -> np.ndarray:
        sub = [texts[i] for i in idx]
        if progress is None:
            return emb.encode(sub)
        with progress(f"embedding ({emb.name})", len(sub)) as advance:
            return emb.encode(sub, progress=advance)

    if workspace is None:
        return compute(list(range(len(texts)))).astype(np.float32)
    keys = [text_hash(t) for t in texts]
    cache = workspace.signal_cache("embedding", emb.name)
    return cache.get_or_compute(keys, compute).astype(np.float32, copy=False)


def cached_token_counts(
    workspace: Workspace | None,
    project: Project,
    dataset: Dataset,
    progress: ProgressFactory | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    tk = project.tokenizer
    counter = get_counter(tk.kind, project.path(tk.path))
    t = dataset.table

    def compute(idx: list[int]) -> np.ndarray:
        return token_counts_for(counter, t if len(idx) == t.num_rows else t.take(idx))

    if workspace is None:
        both = compute(list(range(len(dataset))))
    else:
        cache = workspace.signal_cache("tokens", counter.name)
        both = cache.get_or_compute(dataset.column("content_hash"), compute)
    if len(both) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return both[:, 0].astype(np.int64), both[:, 1].astype(np.int64)


def token_counts_for(counter: Any, t: Any) -> np.ndarray:
    """(total, assistant) tokens per row of a dataset table. Single-turn rows (optional system
    prompt, one user turn, one assistant turn, nothing else) are counted straight from the
    ``system``/``prompt``/``response`` columns; the rest parse their messages."""
    import pyarrow.compute as pc

    from ftprep.signals.tokens import TOKENS_PER_MESSAGE, TOKENS_PER_REPLY

    n = t.num_rows
    has_sys_all = pc.greater(pc.utf8_length(t.column("system")), 0).to_numpy(zero_copy_only=False)
    n_turns = t.column("n_turns").to_numpy(zero_copy_only=False)
    msgs = t.column("messages")
    extra = pc.or_(
        pc.match_substring(msgs, '"tool_calls"'),
        pc.or_(pc.match_substring(msgs, '"name"'), pc.match_substring(msgs, '"function_call"')),
    )
    simple = (n_turns == 2 + has_sys_all.astype(np.int64)) & ~extra.to_numpy(zero_copy_only=False)
    out = np.zeros((n, 2), dtype=np.float32)
    si = np.flatnonzero(simple)
    if len(si):
        sub = t if len(si) == n else t.take(pa.array(si))
        sys_c = counter.count_batch(sub.column("system").to_pylist())
        p_c = counter.count_batch(sub.column("prompt").to_pylist())
        r_c = counter.count_batch(sub.column("response").to_pylist())
        has_sys = has_sys_all[si]
        total = (
            p_c
            + r_c
            + 2 * TOKENS_PER_MESSAGE
            + np.where(has_sys, sys_c + TOKENS_PER_MESSAGE, 0)
            + TOKENS_PER_REPLY
        )
        out[si, 0] = total
        out[si, 1] = r_c
    ci = np.flatnonzero(~simple)
    if len(ci):
        complex_json = t.take(pa.array(ci)).column("messages").to_pylist()
        total, asst = count_messages(counter, [orjson.loads(m) for m in complex_json])
        out[ci, 0] = total
        out[ci, 1] = asst
    return out
