"""Cached signals: computed once per content hash and kept in the workspace, so re-auditing an
unchanged dataset recomputes nothing."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import orjson

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


def cached_embeddings(workspace: Workspace | None, texts: Sequence[str], model: str = "static",
                      progress: ProgressFactory | None = None) -> np.ndarray:
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


def cached_token_counts(workspace: Workspace | None, project: Project, dataset: Dataset,
                        progress: ProgressFactory | None = None) -> tuple[np.ndarray, np.ndarray]:
    tk = project.tokenizer
    counter = get_counter(tk.kind, project.path(tk.path))
    msgs_json = dataset.column("messages")

    def compute(idx: list[int]) -> np.ndarray:
        msgs = [orjson.loads(msgs_json[i]) for i in idx]
        total, asst = count_messages(counter, msgs)
        return np.stack([total, asst], axis=1).astype(np.float32)

    if workspace is None:
        both = compute(list(range(len(dataset))))
    else:
        cache = workspace.signal_cache("tokens", counter.name)
        both = cache.get_or_compute(dataset.column("content_hash"), compute)
    if len(both) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    return both[:, 0].astype(np.int64), both[:, 1].astype(np.int64)
