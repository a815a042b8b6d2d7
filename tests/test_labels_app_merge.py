"""Labels entered in the review app join the imported annotations."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pyarrow as pa

from ftprep.checks.labels import _with_app_labels
from ftprep.store import Workspace

COLS = ["example_id", "annotator", "label", "rating", "text", "timestamp", "reason"]


def _table(rows: list[tuple]) -> pa.Table:
    data = {c: [r[i] if i < len(r) else None for r in rows] for i, c in enumerate(COLS)}
    return pa.table(
        {c: pa.array(v, pa.float64() if c == "rating" else pa.string()) for c, v in data.items()}
    )


def test_app_label_replaces_same_annotator_and_adds_new(tmp_path: Path) -> None:
    ws = Workspace(tmp_path / ".ftprep")
    imported = _table([("e1", "a1", "x"), ("e1", "a2", "y"), ("e2", "a1", "x")])
    ctx = SimpleNamespace(workspace=ws)
    assert _with_app_labels(ctx, imported).num_rows == 3  # no app labels yet
    ws.save_table("review_annotations", _table([("e1", "a2", "x"), ("e2", "bob", "z")]))
    merged = _with_app_labels(ctx, imported)
    got = sorted(
        zip(
            merged["example_id"].to_pylist(),
            merged["annotator"].to_pylist(),
            merged["label"].to_pylist(),
            strict=True,
        )
    )
    assert got == [("e1", "a1", "x"), ("e1", "a2", "x"), ("e2", "a1", "x"), ("e2", "bob", "z")]
