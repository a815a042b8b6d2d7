"""Read a source file of any supported container into a :class:`~ftprep.examples.Dataset`
plus a list of rejects, each pinned to file and line.

Containers: JSONL (``.jsonl``/``.ndjson``), JSON array (``.json``), CSV/TSV, Parquet, and a
Hugging Face ``datasets`` directory saved with ``save_to_disk``. JSONL is parsed line by line
(orjson, in parallel on large files) so that every malformed line is reported with its number.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
import os
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future, ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc

from ftprep.examples import SCHEMA, Dataset, content_hash, id_rank
from ftprep.formats.fastpath import read_fast
from ftprep.formats.records import FieldMap, RejectError, analyse, get_path, to_messages

CONTAINERS = ("jsonl", "json", "csv", "tsv", "parquet", "hf")
PARALLEL_MIN_BYTES = 32 * 1024 * 1024


class InputError(Exception):
    """A source that cannot be read at all (missing file, unknown container). Exit code 2."""


@dataclass(frozen=True, slots=True)
class Reject:
    source: str
    file: str
    line: int
    code: str
    reason: str
    snippet: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(slots=True)
class ReadOptions:
    source: str
    record_format: str = "auto"
    fields: FieldMap = field(default_factory=FieldMap)
    mode: str = "train"  # "train" or "inputs"
    max_record_bytes: int = 1_000_000
    defaults: dict[str, str] = field(default_factory=dict)
    # keep only this many records (0: all): the ones with the smallest seeded hash of their id
    # (of ``source:content hash`` when they have none), read block by block so memory stays
    # bounded by the sample, whatever the file's size
    sample: int = 0
    sample_seed: int = 0


@dataclass(slots=True)
class ReadResult:
    dataset: Dataset
    rejects: list[Reject]
    n_records: int
    formats: dict[str, int]


def detect_container(path: Path) -> str:
    if path.is_dir():
        if any(
            (path / f).exists() for f in ("dataset_info.json", "state.json", "dataset_dict.json")
        ):
            return "hf"
        raise InputError(f"{path}: a directory, but not a Hugging Face dataset saved to disk")
    name = path.name.lower()
    for suffix in (".gz",):
        if name.endswith(suffix):
            name = name[: -len(suffix)]
    ext = name.rsplit(".", 1)[-1] if "." in name else ""
    if ext in ("jsonl", "ndjson"):
        return "jsonl"
    if ext == "json":
        # an array, or one (pretty-printed) object holding the array, is a JSON document; an
        # object that is complete on its first line is JSONL
        with _open_bytes(path) as fh:
            first = fh.readline()
            while first and not first.strip(b"\xef\xbb\xbf \t\r\n"):
                first = fh.readline()
        head = first.lstrip(b"\xef\xbb\xbf \t\r\n")
        if head.startswith(b"["):
            return "json"
        try:
            orjson.loads(head)
        except orjson.JSONDecodeError:
            return "json" if head.startswith(b"{") else "jsonl"
        return "jsonl"
    if ext in ("csv", "tsv", "parquet"):
        return ext
    raise InputError(
        f"{path}: cannot tell the container from the extension {ext!r}; set 'container' "
        f"({', '.join(CONTAINERS)})"
    )


def _open_bytes(path: Path) -> io.BufferedIOBase:
    if path.name.endswith(".gz"):
        import gzip

        return gzip.open(path, "rb")  # type: ignore[return-value]
    return open(path, "rb")


# --------------------------------------------------------------------------- record -> row


class _Rows:
    """Column lists for one chunk of records (cheap to pickle between processes). Only the
    configured provenance fields get per-record lists; the rest are filled at assembly."""

    def __init__(self, opts: ReadOptions) -> None:
        f = opts.fields
        self.picks: list[tuple[str, str]] = [
            (name, key)
            for name, key in (
                ("id", f.id_key()),
                ("group", f.group),
                ("collected_at", f.collected_at),
                ("spec_version", f.spec_version),
                ("label", f.label),
                ("annotator", f.annotator),
                ("area", f.area),
            )
            if key
        ]
        self.cols: dict[str, list[Any]] = {n: [] for n, _ in self.picks}
        for n in (
            "file",
            "line",
            "messages",
            "prompt",
            "response",
            "system",
            "n_turns",
            "content_hash",
        ):
            self.cols[n] = []
        if f.outcome:
            self.cols["outcome"] = []
        if f.meta:
            self.cols["meta"] = []
        self.rejects: list[Reject] = []
        self.formats: dict[str, int] = {}
        self.n = 0


def _str_or_none(v: Any) -> str | None:
    if v is None or v == "":
        return None
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, dict | list):
        return orjson.dumps(v).decode()
    return v if isinstance(v, str) else str(v)


def _add_record(
    rows: _Rows, rec: Any, opts: ReadOptions, file: str, line: int, raw_len: int
) -> None:
    rows.n += 1
    try:
        if raw_len > opts.max_record_bytes:
            raise RejectError(
                "oversized_record", f"record is {raw_len} bytes (limit {opts.max_record_bytes})"
            )
        messages, fmt = to_messages(rec, opts.record_format, opts.fields)
        prompt, response, system = analyse(messages, opts.mode)
    except RejectError as e:
        snippet = rec if isinstance(rec, str) else orjson.dumps(rec, default=str).decode()
        rows.rejects.append(Reject(opts.source, file, line, e.code, e.reason, snippet[:200]))
        return
    rows.formats[fmt] = rows.formats.get(fmt, 0) + 1
    c = rows.cols
    for name, key in rows.picks:
        c[name].append(_str_or_none(rec.get(key) if key in rec else get_path(rec, key)))
    mj = orjson.dumps(messages)
    c["file"].append(file)
    c["line"].append(line)
    c["messages"].append(mj.decode())
    c["prompt"].append(prompt)
    c["response"].append(response)
    c["system"].append(system)
    c["n_turns"].append(len(messages))
    c["content_hash"].append(content_hash(messages))
    f = opts.fields
    if f.outcome:
        c["outcome"].append(
            orjson.dumps({k: get_path(rec, k) for k in f.outcome}, default=str).decode()
        )
    if f.meta:
        c["meta"].append(orjson.dumps({k: get_path(rec, k) for k in f.meta}, default=str).decode())


def _jsonl_chunk(args: tuple[str, int, int, int, ReadOptions]) -> _Rows:
    path, start, end, first_line, opts = args
    with _open_bytes(Path(path)) as fh:
        fh.seek(start)
        data = fh.read() if end < 0 else fh.read(end - start)  # end -1: to the end
    return _jsonl_rows(data, first_line, path, opts)


def _jsonl_rows(data: bytes, first_line: int, path: str, opts: ReadOptions) -> _Rows:
    """The records of a block of whole JSONL lines starting at line ``first_line``."""
    rows = _Rows(opts)
    line_no = first_line - 1
    for raw in data.split(b"\n"):
        line_no += 1
        if line_no == 1 and raw.startswith(b"\xef\xbb\xbf"):
            raw = raw[3:]
        if not raw.strip():
            continue
        _parse_line(rows, raw, opts, path, line_no)
    return rows


def _parse_line(rows: _Rows, raw: bytes, opts: ReadOptions, file: str, line_no: int) -> None:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError as e:
        rows.n += 1
        rows.rejects.append(
            Reject(
                opts.source,
                file,
                line_no,
                "bad_encoding",
                f"not valid UTF-8 ({e.reason} at byte {e.start})",
                raw[:200].decode("utf-8", "replace"),
            )
        )
        return
    try:
        rec = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        rows.n += 1
        rows.rejects.append(
            Reject(
                opts.source,
                file,
                line_no,
                "malformed_json",
                f"invalid JSON: {e}",
                raw[:200].decode("utf-8", "replace"),
            )
        )
        return
    _add_record(rows, rec, opts, file, line_no, len(raw))


def _read_jsonl(path: Path, opts: ReadOptions, workers: int) -> list[_Rows]:
    size = path.stat().st_size
    if path.name.endswith(".gz") or size < PARALLEL_MIN_BYTES or workers <= 1:
        # one chunk; a compressed file's uncompressed size is unknown, so read to the end
        return [_jsonl_chunk((str(path), 0, -1, 1, opts))]
    # split at newline boundaries; count lines before each boundary for exact line numbers
    n_chunks = workers * 4
    bounds = [0]
    with open(path, "rb") as fh:
        for k in range(1, n_chunks):
            fh.seek(size * k // n_chunks)
            fh.readline()
            pos = fh.tell()
            if pos > bounds[-1] and pos < size:
                bounds.append(pos)
        bounds.append(size)
        first_lines = [1]
        for a, b in itertools.pairwise(bounds[:-1]):
            fh.seek(a)
            first_lines.append(first_lines[-1] + fh.read(b - a).count(b"\n"))
    tasks = [
        (str(path), a, b, fl, opts)
        for a, b, fl in zip(bounds[:-1], bounds[1:], first_lines, strict=True)
    ]
    with ProcessPoolExecutor(max_workers=workers) as ex:
        return list(ex.map(_jsonl_chunk, tasks))


def _read_json_array(path: Path, opts: ReadOptions) -> list[_Rows]:
    rows = _Rows(opts)
    with _open_bytes(path) as fh:
        raw = fh.read()
    if raw.startswith(b"\xef\xbb\xbf"):
        raw = raw[3:]
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as e:
        # orjson reports the character position; convert it to a line number
        pos = getattr(e, "pos", 0) or 0
        line = raw[:pos].count(b"\n") + 1
        raise InputError(f"{path}:{line}: invalid JSON ({e})") from None
    depth, which = 1, 0  # the records' array: the document, or one inside a wrapping object
    if isinstance(data, dict):
        inner = _records_array(data, path)
        if inner is None:
            data, depth = [data], 0
        else:
            (data, which), depth = inner, 2
    if not isinstance(data, list):
        raise InputError(f"{path}: expected a JSON array of records")
    # line numbers: the line on which each element of the records' array starts
    starts = _array_element_lines(raw, len(data), depth, which) if depth else [1]
    for i, rec in enumerate(data):
        _add_record(rows, rec, opts, str(path), starts[i], len(orjson.dumps(rec, default=str)))
    return [rows]


def _records_array(doc: dict[str, Any], path: Path) -> tuple[list[Any], int] | None:
    """The array of records inside a wrapping object and its position among the object's
    arrays: its only array, or its only array of objects. Several candidates would mean
    reading one and silently skipping the others."""
    arrays = [(k, v) for k, v in doc.items() if isinstance(v, list)]
    if len(arrays) <= 1:
        return (arrays[0][1], 0) if arrays else None
    of_objects = [i for i, (_, v) in enumerate(arrays) if v and all(isinstance(x, dict) for x in v)]
    if len(of_objects) == 1:
        return arrays[of_objects[0]][1], of_objects[0]
    raise InputError(
        f"{path}: the top-level object holds several arrays ({', '.join(k for k, _ in arrays)}); "
        "save the records you want as a file of their own (one array or JSONL)"
    )


def _array_element_lines(raw: bytes, n: int, depth_of_array: int = 1, which: int = 0) -> list[int]:
    """Line number of the start of each element of the array that opens at nesting depth
    ``depth_of_array`` (1: the document is the array; 2: an array value of the top-level
    object), the ``which``-th such array. A light scanner that tracks strings and nesting."""
    lines: list[int] = []
    depth = 0
    skip = which
    in_str = esc = expecting = active = done = False
    line = 1
    for ch in raw:
        if ch == 0x0A:
            line += 1
        if in_str:
            if esc:
                esc = False
            elif ch == 0x5C:
                esc = True
            elif ch == 0x22:
                in_str = False
            continue
        if expecting and ch not in (0x20, 0x09, 0x0A, 0x0D, 0x5D):
            lines.append(line)
            expecting = False
        if ch == 0x22:
            in_str = True
        elif ch in (0x5B, 0x7B):
            depth += 1
            if ch == 0x5B and depth == depth_of_array and not (active or done):
                if skip:
                    skip -= 1
                else:
                    active = expecting = True
        elif ch in (0x5D, 0x7D):
            if active and depth == depth_of_array:
                active, done, expecting = False, True, False
            depth -= 1
        elif ch == 0x2C and active and depth == depth_of_array:
            expecting = True
    while len(lines) < n:
        lines.append(line)
    return lines[:n]


def _read_csv(path: Path, opts: ReadOptions, delimiter: str) -> list[_Rows]:
    with _open_bytes(path) as fb:
        raw = fb.read()
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = raw[: e.start].count(b"\n") + 1
        raise InputError(
            f"{path}:{line}: not valid UTF-8 ({e.reason}); re-encode the file as UTF-8"
        ) from None
    return list(_csv_parts(io.StringIO(text, newline=""), path, opts, delimiter, 0))


def _csv_parts(
    text: Iterable[str], path: Path, opts: ReadOptions, delimiter: str, block: int
) -> Iterator[_Rows]:
    """The records of CSV text (lines), ``block`` records per part (0: one part)."""
    reader = csv.DictReader(text, delimiter=delimiter)
    if not reader.fieldnames:
        raise InputError(f"{path}: empty CSV (no header row)")
    rows = _Rows(opts)
    prev_line = 1
    for rec in reader:
        line = prev_line + 1
        prev_line = reader.line_num
        if None in rec:
            rows.n += 1
            rows.rejects.append(
                Reject(opts.source, str(path), line, "bad_row", "more fields than the header")
            )
        else:
            size = sum(len(v or "") for v in rec.values())
            _add_record(rows, dict(rec), opts, str(path), line, size)
        if block and rows.n >= block:
            yield rows
            rows = _Rows(opts)
    yield rows


def _json_decoder(t: pa.DataType) -> Callable[[Any], Any] | None:
    """How to turn a value of Arrow type ``t`` into plain Python when it holds JSON text in the
    ``arrow.json`` extension type (``datasets`` stores turns of differing keys that way, e.g.
    ``messages: list<arrow.json>``); ``None`` when nothing in ``t`` needs decoding."""
    if getattr(t, "extension_name", None) == "arrow.json":
        return lambda v: orjson.loads(v) if isinstance(v, str | bytes) else v
    if pa.types.is_list(t) or pa.types.is_large_list(t) or pa.types.is_fixed_size_list(t):
        inner = _json_decoder(t.value_type)
        if inner is None:
            return None
        return lambda v: [inner(x) for x in v] if isinstance(v, list) else v
    if pa.types.is_struct(t):
        fields = {f.name: d for f in t if (d := _json_decoder(f.type)) is not None}
        if not fields:
            return None
        return lambda v: (
            {k: fields[k](x) if k in fields else x for k, x in v.items()}
            if isinstance(v, dict)
            else v
        )
    return None


def _read_table_rows(table: pa.Table, path: Path, opts: ReadOptions, first: int = 1) -> list[_Rows]:
    rows = _Rows(opts)
    decoders = {f.name: d for f in table.schema if (d := _json_decoder(f.type)) is not None}
    i = first - 1
    for batch in table.to_batches(max_chunksize=8192):
        for rec in batch.to_pylist():
            i += 1
            try:
                for name, decode in decoders.items():
                    rec[name] = decode(rec[name])
            except orjson.JSONDecodeError as e:
                rows.n += 1
                rows.rejects.append(
                    Reject(opts.source, str(path), i, "malformed_json", f"invalid JSON: {e}")
                )
                continue
            _add_record(rows, rec, opts, str(path), i, 0)
    return [rows]


def _read_parquet(path: Path, opts: ReadOptions) -> list[_Rows]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:
        raise InputError(f"{path}: unreadable Parquet ({e})") from None
    return _read_table_rows(table, path, opts)


def _read_hf(path: Path, opts: ReadOptions) -> list[_Rows]:
    """A ``datasets`` directory saved with ``save_to_disk``: its Arrow stream files are read
    with pyarrow directly (the ``datasets`` package is not needed). A ``DatasetDict``
    directory (``dataset_dict.json``) reads its ``train`` split unless ``path`` names one."""
    path, files = _hf_files(path)
    batches = [b for f in files for b in _arrow_batches(f)]
    if not batches:  # an empty dataset
        return [_Rows(opts)]
    return _read_table_rows(pa.Table.from_batches(batches), path, opts)


def _hf_files(path: Path) -> tuple[Path, list[Path]]:
    if (path / "dataset_dict.json").exists():
        splits = json.loads((path / "dataset_dict.json").read_text())["splits"]
        path = path / ("train" if "train" in splits else splits[0])
    files = sorted(path.glob("data-*.arrow")) or sorted(path.glob("*.arrow"))
    if not files:
        raise InputError(f"{path}: no .arrow files in this Hugging Face dataset directory")
    return path, files


def _arrow_batches(f: Path) -> Iterator[pa.RecordBatch]:
    """The record batches of an Arrow IPC file, stream format (what ``datasets`` writes) or
    file format."""
    with pa.memory_map(str(f)) as src:
        try:
            stream = pa.ipc.open_stream(src)
        except pa.ArrowInvalid:
            src.seek(0)
            reader = pa.ipc.open_file(src)
            for i in range(reader.num_record_batches):
                yield reader.get_batch(i)
            return
        yield from stream


# --------------------------------------------------------------------------- sampled reading

SAMPLE_BLOCK_BYTES = 16 << 20  # JSONL read this much at a time when sampling
SAMPLE_BLOCK_RECORDS = 65536  # records per block of the other containers


@dataclass(slots=True)
class _Sampled:
    """A block of records reduced to its part of the sample, with its rejects and counts."""

    table: pa.Table  # at most ``sample`` rows, with their ``_key``
    rejects: list[Reject]
    formats: dict[str, int]
    n: int
    nbytes: int = 0  # of the file (JSONL blocks), for progress


def _sample_keys(table: pa.Table, opts: ReadOptions) -> pa.Array:
    """Seeded 64-bit hash of each record's id (``source:content hash`` when it has none: the id
    it will get, before numbering repeats), so the sample does not depend on the file's order."""
    ids = table.column("id").to_pylist()
    hashes = table.column("content_hash").to_pylist()
    keys = []
    for i, h in zip(ids, hashes, strict=True):
        name = i if i is not None else f"{opts.source}:{h[:16]}"
        keys.append(int.from_bytes(id_rank(opts.sample_seed, name), "big"))
    return pa.array(keys, pa.uint64())


def _smallest(table: pa.Table, n: int) -> pa.Table:
    """The ``n`` rows of smallest key (ties, i.e. repeated records, in file order)."""
    if table.num_rows <= n:
        return table
    order = pc.sort_indices(table, sort_keys=[("_key", "ascending"), ("line", "ascending")])
    return table.take(order[:n])


def _reduce(rows: _Rows, opts: ReadOptions) -> _Sampled:
    table = _rows_table([rows], opts)
    table = table.append_column("_key", _sample_keys(table, opts))
    return _Sampled(_smallest(table, opts.sample), rows.rejects, rows.formats, rows.n)


def _jsonl_sampled(args: tuple[bytes, int, str, ReadOptions]) -> _Sampled:
    data, first_line, path, opts = args
    part = _reduce(_jsonl_rows(data, first_line, path, opts), opts)
    part.nbytes = len(data)
    return part


def _jsonl_blocks(path: Path, opts: ReadOptions) -> Iterator[tuple[bytes, int, str, ReadOptions]]:
    """Whole lines of a (possibly gzip'd) JSONL file, about ``SAMPLE_BLOCK_BYTES`` at a time,
    each with the number of its first line."""
    line, carry = 1, b""
    with _open_bytes(path) as fh:
        while buf := fh.read(SAMPLE_BLOCK_BYTES):
            buf = carry + buf
            cut = buf.rfind(b"\n") + 1
            block, carry = buf[:cut], buf[cut:]
            if block:
                yield block, line, str(path), opts
                line += block.count(b"\n")
    if carry:
        yield carry, line, str(path), opts


def _bounded_map(
    fn: Callable[[Any], _Sampled], items: Iterator[Any], workers: int
) -> Iterator[_Sampled]:
    """``map`` over worker processes with at most ``2 * workers`` blocks in flight, so a file
    larger than memory is never held whole."""
    if workers <= 1:
        yield from map(fn, items)
        return
    with ProcessPoolExecutor(max_workers=workers) as ex:
        pending: deque[Future[_Sampled]] = deque()
        for item in items:
            pending.append(ex.submit(fn, item))
            if len(pending) >= 2 * workers:
                yield pending.popleft().result()
        while pending:
            yield pending.popleft().result()


def _parquet_sampled(args: tuple[str, list[int], int, ReadOptions]) -> _Sampled:
    """Some row groups of a Parquet file (first record numbered ``first``), cut to the sample."""
    import pyarrow.parquet as pq

    path, groups, first, opts = args
    batches = pq.ParquetFile(path).iter_batches(SAMPLE_BLOCK_RECORDS, row_groups=groups)
    return _merge(
        (_reduce(r, opts) for r in _table_rows(batches, Path(path), opts, first)), opts.sample
    )


def _parquet_blocks(
    pf: Any, path: Path, opts: ReadOptions
) -> Iterator[tuple[str, list[int], int, ReadOptions]]:
    """Row groups in runs of about ``SAMPLE_BLOCK_RECORDS`` records (one group at least)."""
    first, run, size = 1, [], 0
    for g in range(pf.metadata.num_row_groups):
        run.append(g)
        size += pf.metadata.row_group(g).num_rows
        if size >= SAMPLE_BLOCK_RECORDS:
            yield str(path), run, first, opts
            first, run, size = first + size, [], 0
    if run:
        yield str(path), run, first, opts


def _table_rows(
    batches: Iterator[pa.RecordBatch], path: Path, opts: ReadOptions, first: int = 1
) -> Iterator[_Rows]:
    for batch in batches:
        yield from _read_table_rows(pa.Table.from_batches([batch]), path, opts, first)
        first += batch.num_rows


def _csv_stream(path: Path, opts: ReadOptions, delimiter: str) -> Iterator[_Rows]:
    with _open_bytes(path) as fb:
        yield from _csv_parts(_utf8_lines(fb, path), path, opts, delimiter, SAMPLE_BLOCK_RECORDS)


def _utf8_lines(fb: io.BufferedIOBase, path: Path) -> Iterator[str]:
    """The lines of a UTF-8 file (a BOM dropped), decoded one at a time so that bad bytes are
    reported with their line, as the whole-file read does."""
    for n, raw in enumerate(fb, start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise InputError(
                f"{path}:{n}: not valid UTF-8 ({e.reason}); re-encode the file as UTF-8"
            ) from None
        yield line.removeprefix("\ufeff") if n == 1 else line


def _read_sampled(
    p: Path, kind: str, opts: ReadOptions, w: int, progress: Callable[[int], None] | None
) -> ReadResult:
    """Every record is parsed (so every reject is reported) but only the ``opts.sample`` of
    smallest key are kept, block by block: memory is bounded by the sample and one block.
    ``progress`` is called with the bytes of each JSONL block read (uncompressed)."""
    parts: Iterator[_Sampled]
    if kind == "jsonl":
        parts = _bounded_map(_jsonl_sampled, _jsonl_blocks(p, opts), w)
    elif kind == "parquet":  # row groups in worker processes
        import pyarrow.parquet as pq

        try:
            pf = pq.ParquetFile(p)
        except Exception as e:
            raise InputError(f"{p}: unreadable Parquet ({e})") from None
        parts = _bounded_map(_parquet_sampled, _parquet_blocks(pf, p, opts), w)
    else:
        rows: Iterator[_Rows]
        if kind == "json":  # one JSON document: parsed whole
            rows = iter(_read_json_array(p, opts))
        elif kind in ("csv", "tsv"):
            rows = _csv_stream(p, opts, "\t" if kind == "tsv" else ",")
        else:
            hf_path, files = _hf_files(p)
            rows = _table_rows((b for f in files for b in _arrow_batches(f)), hf_path, opts)
        parts = (_reduce(r, opts) for r in rows)
    total = _merge(parts, opts.sample, progress)
    if total.table.num_rows == 0:
        table = _rows_table([], opts)
    else:
        keep = total.table.drop_columns(["_key"])
        table = keep.take(pc.sort_indices(keep.column("line")))
    return _finish(table, total.rejects, total.n, total.formats, opts)


def _merge(
    parts: Iterable[_Sampled], limit: int, progress: Callable[[int], None] | None = None
) -> _Sampled:
    """The blocks' cuts merged into one: their ``limit`` smallest keys, rejects and counts."""
    out = _Sampled(pa.table({"_key": pa.array([], pa.uint64())}), [], {}, 0)
    for part in parts:
        if progress is not None:
            progress(part.nbytes)
        out.n += _tally(part, out.rejects, out.formats)
        out.nbytes += part.nbytes
        if part.table.num_rows == 0:
            continue
        both = part.table if out.table.num_rows == 0 else pa.concat_tables([out.table, part.table])
        out.table = _smallest(both, limit)
    return out


# --------------------------------------------------------------------------- public


def read_file(
    path: str | os.PathLike[str],
    opts: ReadOptions,
    container: str = "auto",
    workers: int | None = None,
    progress: Callable[[int], None] | None = None,
) -> ReadResult:
    """The records of ``path``. ``progress``: called with the bytes read so far of a sampled
    JSONL read (``opts.sample``), the only read long enough to need it."""
    p = Path(path)
    if not p.exists():
        raise InputError(f"{p}: no such file or directory")
    if p.is_file() and not os.access(p, os.R_OK):
        raise InputError(f"{p}: not readable (permission denied)")
    kind = detect_container(p) if container == "auto" else container
    if kind not in CONTAINERS:
        raise InputError(f"{p}: unknown format {kind!r}; expected one of {', '.join(CONTAINERS)}")
    w = workers if workers is not None else min(2, os.cpu_count() or 1)
    try:
        if kind in ("jsonl", "json", "csv", "tsv"):
            with _open_bytes(p) as fh:
                bom = fh.read(4)
            if bom.startswith((b"\xff\xfe", b"\xfe\xff")):
                raise InputError(f"{p}: the file is UTF-16 encoded; save it as UTF-8")
        if opts.sample > 0:
            return _read_sampled(p, kind, opts, w, progress)
        return _read_kind(p, kind, opts, w)
    except (OSError, EOFError, zlib.error) as e:  # truncated gzip, I/O errors
        raise InputError(f"{p}: unreadable {kind} file ({e})") from None


def _read_kind(p: Path, kind: str, opts: ReadOptions, w: int) -> ReadResult:
    if kind == "jsonl":
        fast = read_fast(p, opts)
        if fast is not None:
            table, bad_lines, starts, ends = fast
            part = _Rows(opts)
            if len(bad_lines):
                with open(p, "rb") as fh:
                    for ln in bad_lines.tolist():
                        fh.seek(int(starts[ln - 1]))
                        raw = fh.read(int(ends[ln - 1] - starts[ln - 1]))
                        _parse_line(part, raw, opts, str(p), ln)
            return _assemble([part], opts, extra=table)
        parts = _read_jsonl(p, opts, w)
    elif kind == "json":
        parts = _read_json_array(p, opts)
    elif kind in ("csv", "tsv"):
        parts = _read_csv(p, opts, "\t" if kind == "tsv" else ",")
    elif kind == "parquet":
        parts = _read_parquet(p, opts)
    else:
        parts = _read_hf(p, opts)
    return _assemble(parts, opts)


def _rows_table(parts: list[_Rows], opts: ReadOptions) -> pa.Table:
    """Column lists of slow-path parts -> a table with every SCHEMA column except ``source``
    (provenance fields that were not configured are null)."""
    cols: dict[str, list[Any]] = {}
    for part in parts:
        for k, v in part.cols.items():
            cols.setdefault(k, []).extend(v)
    size = len(cols.get("line", []))
    arrays = {}
    for name in SCHEMA.names:
        if name == "source":
            continue
        if name in cols:
            arrays[name] = pa.array(cols[name], SCHEMA.field(name).type)
        elif name in ("outcome", "meta"):
            arrays[name] = pa.array(["{}"] * size, pa.string())
        else:
            arrays[name] = pa.nulls(size, SCHEMA.field(name).type)
    return pa.table(arrays)


def _tally(part: _Rows | _Sampled, rejects: list[Reject], formats: dict[str, int]) -> int:
    """Add a part's rejects and record formats to the totals; returns its record count."""
    rejects.extend(part.rejects)
    for k, v in part.formats.items():
        formats[k] = formats.get(k, 0) + v
    return part.n


def _assemble(parts: list[_Rows], opts: ReadOptions, extra: pa.Table | None = None) -> ReadResult:
    rejects: list[Reject] = []
    formats: dict[str, int] = {}
    n = 0
    for part in parts:
        n += _tally(part, rejects, formats)
    table = _rows_table(parts, opts)
    if extra is not None:
        n += extra.num_rows
        formats["openai"] = formats.get("openai", 0) + extra.num_rows
        extra = extra.select([c for c in table.column_names]).cast(table.schema)
        table = pa.concat_tables([extra, table])
        table = table.take(pc.sort_indices(table.column("line")))
    return _finish(table, rejects, n, formats, opts)


def _finish(
    table: pa.Table, rejects: list[Reject], n: int, formats: dict[str, int], opts: ReadOptions
) -> ReadResult:
    """Defaults, source and ids for the records read (``table``: SCHEMA columns but source)."""
    for name, default in opts.defaults.items():
        if name in table.column_names and name != "source":
            i = table.column_names.index(name)
            table = table.set_column(i, name, pc.fill_null(table.column(name), str(default)))
    table = table.append_column("source", pa.array([opts.source] * table.num_rows, pa.string()))
    table = _assign_ids(table, rejects, opts.source, declared=opts.fields.id is not None)
    rejects.sort(key=lambda r: (r.file, r.line))
    return ReadResult(Dataset(table.select(list(SCHEMA.names)).cast(SCHEMA)), rejects, n, formats)


def _assign_ids(
    table: pa.Table, rejects: list[Reject], source: str, declared: bool = True
) -> pa.Table:
    """Fill missing ids with ``source:hash`` (``#k`` for repeated content); reject duplicate
    ids of a ``declared`` id field (the ledger needs unique ids), number those of the
    undeclared ``id`` key like repeated content (``#k``: nothing is lost on a guess). Groups
    default to the id."""
    ids = table.column("id").to_pylist()
    hashes = table.column("content_hash").to_pylist()
    taken: set[str] = set()
    drop: list[int] = []
    for i, v in enumerate(ids):
        if v is not None and v in taken and declared:
            drop.append(i)
            rejects.append(
                Reject(
                    source,
                    table.column("file")[i].as_py(),
                    table.column("line")[i].as_py(),
                    "duplicate_id",
                    f"id {v!r} already used at an earlier record",
                )
            )
            continue
        base = f"{source}:{hashes[i][:16]}" if v is None else v
        name, k = base, 1
        while name in taken:
            k += 1
            name = f"{base}#{k}"
        ids[i] = name
        taken.add(name)
    id_arr = pa.array(ids, pa.string())
    table = table.set_column(table.column_names.index("id"), "id", id_arr)
    gi = table.column_names.index("group")
    table = table.set_column(gi, "group", pc.coalesce(table.column("group"), id_arr))
    if drop:
        mask = np.ones(len(ids), dtype=bool)
        mask[drop] = False
        table = table.filter(pa.array(mask))
    return table
