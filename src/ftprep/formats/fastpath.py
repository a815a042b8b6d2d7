"""The fast path for OpenAI-chat JSONL: DuckDB parses the file (multi-threaded) and every
validation rule is evaluated as a column expression. Rows that fail any rule, or that carry
anything the vectorised path does not model (tool calls, names, content parts), are handed to
the line-by-line slow path by line number, so they get exactly the same reject reasons and
canonical form as if the whole file had gone the slow way.

The fast path is skipped (returns ``None``) whenever its assumptions don't hold: compressed
files, a BOM, blank lines (row *i* must be line *i + 1*), DuckDB failing to parse the file (a
malformed line anywhere), or no ``messages`` column of role/content structs.
"""

from __future__ import annotations

import mmap
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa

from ftprep.examples import ROLES
from ftprep.formats.records import MESSAGE_EXTRAS

# below this size the line-by-line path is faster than starting DuckDB
FAST_MIN_BYTES = 1 << 20
_NO_MATCH = "%Y-%m-%d%%ftprep-keeps-strings"
_FIELDS = ("id", "group", "collected_at", "spec_version", "label", "annotator", "area")


def line_bounds(mm: mmap.mmap | bytes) -> tuple[np.ndarray, np.ndarray]:
    """(start, end) byte offsets of every line (end excludes the newline)."""
    buf = np.frombuffer(mm, dtype=np.uint8)
    chunks = []
    step = 64 << 20
    for off in range(0, len(buf), step):
        chunks.append(np.flatnonzero(buf[off : off + step] == 10) + off)
    nl = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int64)
    ends = nl
    if len(buf) and (len(nl) == 0 or nl[-1] != len(buf) - 1):
        ends = np.append(nl, len(buf))
    starts = np.concatenate([[0], ends[:-1] + 1]) if len(ends) else np.zeros(0, dtype=np.int64)
    return starts.astype(np.int64), ends.astype(np.int64)


def _field_sql(col: str | None, types: dict[str, str], alias: str) -> str:
    if col is None or col not in types:
        return f"NULL::VARCHAR AS {alias}"
    q = '"' + col.replace('"', '""') + '"'
    t = types[col]
    if t == "JSON":
        return f"({q}->>'$') AS {alias}"
    if t == "BOOLEAN":
        return f"CASE WHEN {q} THEN 'true' WHEN NOT {q} THEN 'false' END AS {alias}"
    if t.startswith(("STRUCT", "MAP")) or t.endswith("]"):
        return f"to_json({q})::VARCHAR AS {alias}"
    return f"NULLIF({q}::VARCHAR, '') AS {alias}"


def read_fast(path: Path, opts: Any) -> tuple[pa.Table, np.ndarray, np.ndarray, np.ndarray] | None:
    """Returns ``(table, bad_lines, starts, ends)``: the accepted rows (columns of
    :data:`~ftprep.examples.SCHEMA` except id/group defaults and source), the 1-based line
    numbers the slow path must handle, and the byte bounds of every line — or ``None``."""
    if (
        opts.record_format not in ("auto", "openai")
        or opts.mode != "train"
        or path.name.endswith(".gz")
    ):
        return None
    f = opts.fields
    if any(
        k and "." in k
        for k in (
            f.id,
            f.group,
            f.collected_at,
            f.spec_version,
            f.label,
            f.annotator,
            f.area,
            *f.outcome,
            *f.meta,
        )
    ):
        return None
    import duckdb

    if path.stat().st_size < FAST_MIN_BYTES:
        return None
    with open(path, "rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as mm:
        if mm[:3] == b"\xef\xbb\xbf":
            return None
        starts, ends = line_bounds(mm)
    lengths = ends - starts
    if (lengths == 0).any() or (lengths == 1).any():
        return None  # blank lines break the row -> line mapping
    con = duckdb.connect()
    try:
        con.execute("SET preserve_insertion_order = true")
        # formats no value can match: DuckDB would otherwise turn date-like strings into
        # DATE/TIMESTAMP and print them back differently ("2024-01-01T10:00:00Z" ->
        # "2024-01-01 10:00:00+00"); the slow path keeps the text as it is
        rel = con.read_json(
            str(path),
            format="newline_delimited",
            date_format=_NO_MATCH,
            timestamp_format=_NO_MATCH,
        )
        types = {n: str(t) for n, t in zip(rel.columns, rel.types, strict=True)}
        mt = types.get("messages", "")
        if not (
            mt.startswith("STRUCT(")
            and mt.endswith("[]")
            and '"role" VARCHAR' in mt
            and '"content" VARCHAR' in mt
        ):
            return None
        extras = [k for k in MESSAGE_EXTRAS if f"{k} " in mt or f'"{k}" ' in mt]
        roles = ", ".join(f"'{r}'" for r in ROLES)
        nonempty = "length(trim(coalesce(m.content, ''), E' \\t\\n\\r\\f\\v')) > 0"
        extra_sql = " OR ".join(f"m.{k} IS NOT NULL" for k in extras) or "false"
        fields_sql = ",\n".join(
            _field_sql(f.id_key() if name == "id" else getattr(f, name), types, name)
            for name in _FIELDS
        )
        outcome_sql = (
            (
                "to_json({"
                + ", ".join(f"'{k}': " + (f'"{k}"' if k in types else "NULL") for k in f.outcome)
                + "})::VARCHAR"
            )
            if f.outcome
            else "'{}'"
        )
        meta_sql = (
            (
                "to_json({"
                + ", ".join(f"'{k}': " + (f'"{k}"' if k in types else "NULL") for k in f.meta)
                + "})::VARCHAR"
            )
            if f.meta
            else "'{}'"
        )
        sql = f"""
        SELECT
          coalesce(len(messages), 0) > 0
            AND list_bool_and(list_transform(messages, lambda m: m.role IN ({roles})))
            AND list_bool_and(list_transform(messages, lambda m: {nonempty}))
            AND NOT coalesce(list_bool_or(list_transform(messages, lambda m: {extra_sql})), false)
            AND list_bool_or(list_transform(messages, lambda m: m.role = 'user' AND {nonempty}))
            AND messages[-1].role = 'assistant' AS ok,
          to_json(list_transform(messages, lambda m: {{'role': m.role, 'content': m.content}}))::VARCHAR AS messages,
          array_to_string(list_transform(list_filter(messages, lambda m: m.role = 'user'), lambda m: m.content), chr(10) || chr(10)) AS prompt,
          messages[-1].content AS response,
          array_to_string(list_transform(list_filter(messages, lambda m: m.role IN ('system', 'developer')), lambda m: m.content), chr(10) || chr(10)) AS system,
          len(messages)::INTEGER AS n_turns,
          sha1(array_to_string(list_transform(messages, lambda m: m.role || chr(31) || coalesce(m.content, '')), chr(30))) AS content_hash,
          {outcome_sql} AS outcome,
          {meta_sql} AS meta,
          {fields_sql}
        FROM rel
        """
        res = con.sql(sql)
        table = res.to_arrow_table() if hasattr(res, "to_arrow_table") else res.fetch_arrow_table()
    except (duckdb.Error, RuntimeError) as e:
        # Ctrl-C while DuckDB runs surfaces as its InterruptException or a RuntimeError
        # "Query interrupted", depending on the version: it must stop the command, not fall
        # back to the slow path (or escape as a traceback)
        if (
            isinstance(e, getattr(duckdb, "InterruptException", ()))
            or "interrupt" in str(e).lower()
        ):
            raise KeyboardInterrupt from None
        return None
    finally:
        con.close()
    if table.num_rows != len(starts):
        return None
    ok = table.column("ok").to_numpy(zero_copy_only=False)
    ok = np.where(pd_isnull(ok), False, ok).astype(bool)
    ok &= lengths <= opts.max_record_bytes
    lines = np.arange(1, len(starts) + 1, dtype=np.int64)
    bad_lines = lines[~ok]
    keep = pa.array(ok)
    table = table.filter(keep).drop_columns(["ok"])
    table = table.append_column("line", pa.array(lines[ok]))
    table = table.append_column("file", pa.array([str(path)] * table.num_rows, pa.string()))
    return table, bad_lines, starts, ends


def pd_isnull(a: np.ndarray) -> np.ndarray:
    if a.dtype == object:
        return np.fromiter((x is None for x in a), dtype=bool, count=len(a))
    return np.zeros(len(a), dtype=bool)
