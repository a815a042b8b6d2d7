"""The canonical record, and the columnar dataset that holds many of them.

An :class:`Example` is one training conversation with its provenance. A :class:`Dataset` keeps
many examples as a pyarrow table (one row per example) so that a million records stay small and
checks can work on whole columns; :meth:`Dataset.examples` yields ``Example`` objects when a
check needs them one at a time.

Columns of a dataset table (all strings unless noted):

==============  =============================================================================
id              the source's own id when configured, else ``<source>:<content hash[:16]>``
source          source name from ``ftprep.yaml``
file, line      provenance: file path and 1-based line (row for CSV/Parquet) (``line``: int64)
group           unit that splits keep together (conversation, document, author…); defaults to id
collected_at    ISO-8601 timestamp or date, or null
spec_version    task-spec version the example was collected under, or null
label           class label for classification-style tasks, or null
annotator       annotator id, or null
area            task-spec area, or null
messages        the conversation as JSON: ``[{"role":..., "content":..., ...}]``
prompt          text of the user turns joined by a blank line (the *input*)
response        text of the final assistant turn (the *output*)
system          text of the system turns
n_turns         number of messages (int32)
content_hash    sha1 of the normalised messages (hex)
outcome, meta   JSON objects
==============  =============================================================================
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
import pyarrow as pa

ROLES = ("system", "user", "assistant", "tool", "function", "developer")

SCHEMA = pa.schema(
    [
        ("id", pa.string()),
        ("source", pa.string()),
        ("file", pa.string()),
        ("line", pa.int64()),
        ("group", pa.string()),
        ("collected_at", pa.string()),
        ("spec_version", pa.string()),
        ("label", pa.string()),
        ("annotator", pa.string()),
        ("area", pa.string()),
        ("messages", pa.string()),
        ("prompt", pa.string()),
        ("response", pa.string()),
        ("system", pa.string()),
        ("n_turns", pa.int32()),
        ("content_hash", pa.string()),
        ("outcome", pa.string()),
        ("meta", pa.string()),
    ]
)
COLUMNS = tuple(SCHEMA.names)


@dataclass(slots=True)
class Example:
    """One canonical training example. ``messages`` holds role/content turns (plus any
    ``tool_calls``, ``name`` or ``tool_call_id`` the input carried)."""

    id: str
    messages: list[dict[str, Any]]
    source: str = ""
    group: str | None = None
    collected_at: str | None = None
    spec_version: str | None = None
    label: str | None = None
    annotator: str | None = None
    area: str | None = None
    outcome: dict[str, Any] = field(default_factory=dict)
    meta: dict[str, Any] = field(default_factory=dict)
    file: str = ""
    line: int = 0

    @property
    def prompt(self) -> str:
        return prompt_text(self.messages)

    @property
    def response(self) -> str:
        return response_text(self.messages)

    def to_row(self) -> dict[str, Any]:
        msgs = orjson.dumps(self.messages).decode()
        return {
            "id": self.id,
            "source": self.source,
            "file": self.file,
            "line": self.line,
            "group": self.group if self.group is not None else self.id,
            "collected_at": self.collected_at,
            "spec_version": self.spec_version,
            "label": self.label,
            "annotator": self.annotator,
            "area": self.area,
            "messages": msgs,
            "prompt": prompt_text(self.messages),
            "response": response_text(self.messages),
            "system": system_text(self.messages),
            "n_turns": len(self.messages),
            "content_hash": content_hash(self.messages),
            "outcome": orjson.dumps(self.outcome).decode(),
            "meta": orjson.dumps(self.meta).decode(),
        }


def _content(m: dict[str, Any]) -> str:
    c = m.get("content")
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list):  # OpenAI content parts
        return "\n".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in c)
    return str(c)


def prompt_text(messages: Sequence[dict[str, Any]]) -> str:
    return "\n\n".join(_content(m) for m in messages if m.get("role") == "user")


def response_text(messages: Sequence[dict[str, Any]]) -> str:
    for m in reversed(messages):
        if m.get("role") == "assistant":
            return _content(m)
    return ""


def system_text(messages: Sequence[dict[str, Any]]) -> str:
    return "\n\n".join(_content(m) for m in messages if m.get("role") in ("system", "developer"))


def normalize_column(texts: pa.Array | pa.ChunkedArray | Sequence[str]) -> pa.Array:
    """Normalisation used for exact-duplicate detection, vectorised (Arrow, RE2): Unicode NFKC,
    lower case, every run of characters that are not letters, digits or whitespace becomes a
    space, whitespace collapsed and trimmed."""
    import pyarrow.compute as pc

    arr = (
        texts
        if isinstance(texts, pa.Array | pa.ChunkedArray)
        else pa.array(list(texts), pa.string())
    )
    t = pc.utf8_lower(pc.utf8_normalize(arr, "NFKC"))
    t = pc.replace_substring_regex(t, r"[^\p{L}\p{N}\s]+", " ")
    # collapse whitespace; matching only runs of 2+ or non-space whitespace keeps this fast
    t = pc.replace_substring_regex(t, r"\s\s+|[^\S ]", " ")
    out = pc.utf8_trim_whitespace(t)
    return out.combine_chunks() if isinstance(out, pa.ChunkedArray) else out


def normalize_text(text: str) -> str:
    """:func:`normalize_column` for one string."""
    return str(normalize_column([text])[0].as_py())


def id_rank(seed: int, example_id: str) -> bytes:
    """The seeded 64-bit hash that orders examples reproducibly and independently of file order:
    the production sample keeps the smallest, ``build`` writes splits in this order, replay data
    is drawn in it."""
    return hashlib.blake2b(f"{seed}:{example_id}".encode(), digest_size=8).digest()


def content_hash(messages: Sequence[dict[str, Any]]) -> str:
    """sha1 of the turns joined as ``role\x1fcontent`` with ``\x1e`` between turns, plus the
    canonical JSON of the turns when any carries more than role and content (tool calls…).
    The DuckDB fast path computes the same value in SQL."""
    h = hashlib.sha1(
        "\x1e".join(f"{m['role']}\x1f{m.get('content') or ''}" for m in messages).encode(
            "utf-8", "surrogatepass"
        )
    )
    if any(len(m) != 2 for m in messages):
        h.update(orjson.dumps(list(messages)))
    return h.hexdigest()


def text_hash(text: str) -> str:
    return hashlib.sha1(text.encode("utf-8", "surrogatepass")).hexdigest()


class Dataset:
    """Many examples as a pyarrow table with the columns in :data:`SCHEMA`."""

    def __init__(self, table: pa.Table | None = None, name: str = "train") -> None:
        self.table = table if table is not None else SCHEMA.empty_table()
        self.name = name
        self._index: dict[str, int] | None = None
        self._columns: dict[str, list[Any]] = {}

    @classmethod
    def from_examples(cls, examples: Sequence[Example], name: str = "train") -> Dataset:
        rows = [e.to_row() for e in examples]
        return cls(pa.Table.from_pylist(rows, schema=SCHEMA), name=name)

    def __len__(self) -> int:
        return self.table.num_rows

    def column(self, name: str) -> list[Any]:
        """The column as a Python list (memoised: the table is never modified in place)."""
        if name not in self._columns:
            self._columns[name] = self.table.column(name).to_pylist()
        return self._columns[name]

    @property
    def ids(self) -> list[str]:
        return self.column("id")

    def texts(self, field: str = "prompt") -> list[str]:
        """``prompt`` (user turns), ``response`` (final assistant turn), ``system`` or ``full``
        (every turn's content, in order)."""
        if field == "full":
            p, r = self.column("prompt"), self.column("response")
            s = self.column("system")
            return [
                "\n\n".join(x for x in (si, pi, ri) if x)
                for si, pi, ri in zip(s, p, r, strict=True)
            ]
        return [x or "" for x in self.column(field)]

    def index_of(self, example_id: str) -> int:
        if self._index is None:
            self._index = {k: i for i, k in enumerate(self.ids)}
        return self._index[example_id]

    def example(self, i: int) -> Example:
        row = self.table.slice(i, 1).to_pylist()[0]
        return row_to_example(row)

    def examples(self) -> Iterator[Example]:
        for batch in self.table.to_batches(max_chunksize=4096):
            for row in batch.to_pylist():
                yield row_to_example(row)

    def filter_ids(self, keep: set[str]) -> Dataset:
        import pyarrow.compute as pc

        mask = pc.is_in(self.table.column("id"), value_set=pa.array(sorted(keep), pa.string()))
        return Dataset(self.table.filter(mask), name=self.name)

    def concat(self, other: Dataset) -> Dataset:
        return Dataset(pa.concat_tables([self.table, other.table]), name=self.name)


def row_to_example(row: dict[str, Any]) -> Example:
    return Example(
        id=row["id"],
        messages=orjson.loads(row["messages"]),
        source=row["source"] or "",
        group=row["group"],
        collected_at=row["collected_at"],
        spec_version=row["spec_version"],
        label=row["label"],
        annotator=row["annotator"],
        area=row["area"],
        outcome=orjson.loads(row["outcome"]) if row["outcome"] else {},
        meta=orjson.loads(row["meta"]) if row["meta"] else {},
        file=row["file"] or "",
        line=int(row["line"] or 0),
    )
