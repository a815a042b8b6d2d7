"""Per-annotator labels: the ``annotations:`` section of ``ftprep.yaml``, import and storage.

Three kinds of annotation, two layouts:

* ``kind: label`` — a class label per (example, annotator); ``kind: rating`` — an ordinal or
  numeric rating; ``kind: text`` — a review of a generated output: ``accept`` / ``reject`` /
  ``corrected`` plus the corrected text.
* ``format: long`` — one row per (example, annotator); ``format: wide`` — one row per example with
  one value column per annotator (optionally with a parallel column naming the annotator of each
  value, as in crowd exports ``Score1..5`` + ``WorkerId1..5``).

Imported annotations become the workspace table ``annotations`` with the columns
``example_id, annotator, label, rating, text, timestamp, reason`` (see :data:`SCHEMA`).
Data text is untrusted: values are read as plain strings and never interpreted.
"""

from __future__ import annotations

import csv
import fnmatch
import io
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa

from ftprep.project import Project, ProjectError

SCHEMA = pa.schema(
    [
        ("example_id", pa.string()),
        ("annotator", pa.string()),
        ("label", pa.string()),
        ("rating", pa.float64()),
        ("text", pa.string()),
        ("timestamp", pa.string()),
        ("reason", pa.string()),
    ]
)
TABLE_NAME = "annotations"

KINDS = ("label", "rating", "text")
FORMATS = ("long", "wide")
LEVELS = ("nominal", "ordinal", "interval", "ratio")
TEXT_DECISIONS = ("accept", "reject", "corrected")
FILE_TYPES = ("auto", "csv", "tsv", "jsonl", "json", "parquet")

# key -> (type description, default)
_KEYS: dict[str, str] = {
    "path": "file with the annotations (csv, tsv, jsonl, json or parquet)",
    "format": "long | wide",
    "kind": "label | rating | text",
    "file_type": "auto | csv | tsv | jsonl | json | parquet",
    "id_field": "column with the example id (matches the dataset id)",
    "annotator_field": "long: column with the annotator id",
    "value_field": "long: column with the label / rating / decision",
    "text_field": "kind text: column with the corrected output",
    "timestamp_field": "column with the annotation time",
    "reason_field": "column with the annotator's reason",
    "value_columns": "wide: list of columns (or one glob pattern) holding one annotator's value each",
    "annotator_columns": "wide: parallel list (or glob) naming the annotator of each value column",
    "text_columns": "wide, kind text: parallel list (or glob) with corrected outputs",
    "gold": "list of annotator ids whose labels are expert gold",
    "scale": "ordered list of values (ordinal labels, or the rating scale)",
    "level": "nominal | ordinal | interval | ratio (measurement level for α)",
    "accept_values": "kind text: values meaning accept (default accept, yes, ok, 1, true)",
    "reject_values": "kind text: values meaning reject (default reject, no, 0, false)",
}


@dataclass(slots=True)
class AnnotationsConfig:
    path: str
    format: str = "long"
    kind: str = "label"
    file_type: str = "auto"
    id_field: str = "example_id"
    annotator_field: str = "annotator"
    value_field: str | None = None
    text_field: str | None = None
    timestamp_field: str | None = "timestamp"
    reason_field: str | None = "reason"
    value_columns: list[str] | str | None = None
    annotator_columns: list[str] | str | None = None
    text_columns: list[str] | str | None = None
    gold: list[str] = field(default_factory=list)
    scale: list[str] | None = None
    level: str = "nominal"
    accept_values: list[str] = field(
        default_factory=lambda: ["accept", "accepted", "yes", "ok", "1", "true"]
    )
    reject_values: list[str] = field(
        default_factory=lambda: ["reject", "rejected", "no", "0", "false"]
    )

    @property
    def resolved_value_field(self) -> str:
        if self.value_field:
            return self.value_field
        return {"label": "label", "rating": "rating", "text": "decision"}[self.kind]


def _err(key: str, msg: str) -> ProjectError:
    return ProjectError(
        f"ftprep.yaml: annotations.{key}: {msg}" if key else f"ftprep.yaml: annotations: {msg}"
    )


def _str_list(key: str, v: Any, *, allow_glob: bool = False) -> list[str] | str:
    if allow_glob and isinstance(v, str):
        return v
    if not isinstance(v, list) or not all(isinstance(x, str | int | float) for x in v):
        raise _err(
            key, "expected a list of strings" + (" or one glob pattern" if allow_glob else "")
        )
    return [str(x) for x in v]


def parse_config(raw: dict[str, Any] | None) -> AnnotationsConfig:
    """Validate the ``annotations:`` mapping; errors name the key path."""
    if raw is None:
        raise _err("", "missing")
    if not isinstance(raw, dict):
        raise _err("", "expected a mapping with at least `path`")
    unknown = sorted(set(raw) - set(_KEYS))
    if unknown:
        raise _err(unknown[0], f"unknown key (known keys: {', '.join(_KEYS)})")
    if not isinstance(raw.get("path"), str) or not raw["path"].strip():
        raise _err("path", "required: the annotations file")
    cfg = AnnotationsConfig(path=raw["path"])
    for key, allowed in (
        ("format", FORMATS),
        ("kind", KINDS),
        ("level", LEVELS),
        ("file_type", FILE_TYPES),
    ):
        if key in raw:
            v = raw[key]
            if v not in allowed:
                raise _err(key, f"expected one of {', '.join(allowed)} (got {v!r})")
            setattr(cfg, key, v)
    if "level" not in raw:
        cfg.level = "ordinal" if cfg.kind == "rating" else "nominal"
    for key in (
        "id_field",
        "annotator_field",
        "value_field",
        "text_field",
        "timestamp_field",
        "reason_field",
    ):
        if key in raw:
            v = raw[key]
            if v is not None and not (isinstance(v, str) and v):
                raise _err(key, f"expected a column name (got {v!r})")
            setattr(cfg, key, v)
    for key in ("value_columns", "annotator_columns", "text_columns"):
        if key in raw and raw[key] is not None:
            setattr(cfg, key, _str_list(key, raw[key], allow_glob=True))
    for key in ("gold", "accept_values", "reject_values"):
        if key in raw and raw[key] is not None:
            v = _str_list(key, raw[key])
            assert isinstance(v, list)
            setattr(cfg, key, [x.lower() for x in v] if key != "gold" else v)
    if "scale" in raw and raw["scale"] is not None:
        v = _str_list("scale", raw["scale"])
        assert isinstance(v, list)
        if len(set(v)) != len(v):
            raise _err("scale", "values must be distinct")
        cfg.scale = v
    if cfg.format == "wide" and not cfg.value_columns:
        raise _err(
            "value_columns",
            "required with format: wide (list of columns, or a glob such as 'Score*')",
        )
    if cfg.format == "long" and (cfg.value_columns or cfg.annotator_columns):
        raise _err("value_columns", "only used with format: wide")
    if cfg.kind != "text" and cfg.text_columns:
        raise _err("text_columns", "only used with kind: text")
    if cfg.level in ("interval", "ratio") and cfg.kind == "label" and not cfg.scale:
        raise _err("level", f"{cfg.level} needs numeric values: use kind: rating or give a scale")
    return cfg


# ----------------------------------------------------------------------------- reading
def _read_rows(path: Path, file_type: str) -> list[dict[str, Any]]:
    ft = file_type
    if ft == "auto":
        suf = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
        ft = {
            ".csv": "csv",
            ".tsv": "tsv",
            ".jsonl": "jsonl",
            ".ndjson": "jsonl",
            ".json": "json",
            ".parquet": "parquet",
            ".jsonl.gz": "jsonl",
            ".csv.gz": "csv",
        }.get(suf, "")
        if not ft:
            raise _err("file_type", f"cannot tell the type of {path.name}; set file_type")
    if ft == "parquet":
        import pyarrow.parquet as pq

        return pq.read_table(path).to_pylist()  # type: ignore[no-any-return]
    raw = path.read_bytes()
    if path.suffix == ".gz":
        import gzip

        raw = gzip.decompress(raw)
    if ft in ("csv", "tsv"):
        text = raw.decode("utf-8-sig")
        return list(
            csv.DictReader(io.StringIO(text, newline=""), delimiter="\t" if ft == "tsv" else ",")
        )
    if ft == "jsonl":
        rows = []
        for i, line in enumerate(raw.splitlines(), 1):
            if not line.strip():
                continue
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError as e:
                raise ProjectError(
                    f"{path}:{i}: invalid JSON in the annotations file ({e})"
                ) from None
            if not isinstance(obj, dict):
                raise ProjectError(f"{path}:{i}: expected a JSON object per line")
            rows.append(obj)
        return rows
    obj = orjson.loads(raw)
    if isinstance(obj, dict):  # {id: record} (e.g. LeWiDi) or {"data": [...]}
        if all(isinstance(v, dict) for v in obj.values()):
            return [{"__key__": k, **v} for k, v in obj.items()]
        obj = obj.get("data", obj.get("rows"))
    if not isinstance(obj, list):
        raise ProjectError(f"{path}: expected a JSON list of records")
    return [r for r in obj if isinstance(r, dict)]


def _get(row: dict[str, Any], key: str | None) -> Any:
    if not key:
        return None
    if key in row:
        return row[key]
    cur: Any = row
    for part in key.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def _s(v: Any) -> str | None:
    if v is None:
        return None
    if isinstance(v, float):
        if math.isnan(v):
            return None
        if v == int(v):
            return str(int(v))
    s = str(v).strip()
    return s or None


def _columns(spec: list[str] | str | None, header: list[str], key: str) -> list[str]:
    if spec is None:
        return []
    if isinstance(spec, str):
        cols = [h for h in header if fnmatch.fnmatchcase(h, spec)]
        if not cols:
            raise _err(key, f"pattern {spec!r} matches no column")
        return sorted(cols, key=_natural)
    missing = [c for c in spec if c not in header]
    if missing:
        raise _err(key, f"column {missing[0]!r} is not in the file")
    return list(spec)


def _natural(s: str) -> tuple[Any, ...]:
    import re

    return tuple(int(t) if t.isdigit() else t for t in re.split(r"(\d+)", s))


def _rating(v: Any, cfg: AnnotationsConfig) -> tuple[str | None, float | None]:
    s = _s(v)
    if s is None:
        return None, None
    if cfg.scale:
        if s not in cfg.scale:
            try:  # numeric value that matches a numeric scale entry
                f = float(s)
                match = [x for x in cfg.scale if _is_float(x) and float(x) == f]
                if match:
                    s = match[0]
            except ValueError:
                pass
        if s not in cfg.scale:
            raise ValueError(f"rating {s!r} is not on the scale {cfg.scale}")
        num = (
            float(s)
            if _is_float(s) and all(_is_float(x) for x in cfg.scale)
            else float(cfg.scale.index(s))
        )
        return s, num
    try:
        return s, float(s)
    except ValueError:
        raise ValueError(
            f"rating {s!r} is not a number (give `scale:` for named ratings)"
        ) from None


def _is_float(s: str) -> bool:
    try:
        float(s)
    except ValueError:
        return False
    return True


def _decision(v: Any, corrected: str | None, cfg: AnnotationsConfig) -> str | None:
    s = _s(v)
    if s is None:
        return "corrected" if corrected else None
    low = s.lower()
    if low in ("corrected", "correct", "edit", "edited", "fix", "fixed"):
        return "corrected"
    if low in cfg.accept_values:
        return "corrected" if corrected else "accept"
    if low in cfg.reject_values:
        return "reject"
    raise ValueError(
        f"decision {s!r} is not accept/reject/corrected "
        f"(accept_values: {cfg.accept_values}, reject_values: {cfg.reject_values})"
    )


def _record(
    cfg: AnnotationsConfig, ex_id: str, annotator: str, value: Any, text: Any, ts: Any, reason: Any
) -> dict[str, Any] | None:
    row: dict[str, Any] = {
        "example_id": ex_id,
        "annotator": annotator,
        "label": None,
        "rating": None,
        "text": None,
        "timestamp": _s(ts),
        "reason": _s(reason),
    }
    if cfg.kind == "label":
        row["label"] = _s(value)
        if row["label"] is None:
            return None
        if cfg.scale and row["label"] not in cfg.scale:
            raise ValueError(f"label {row['label']!r} is not in scale {cfg.scale}")
    elif cfg.kind == "rating":
        row["label"], row["rating"] = _rating(value, cfg)
        if row["label"] is None:
            return None
    else:
        corrected = text if isinstance(text, str) and text.strip() else None
        row["label"] = _decision(value, corrected, cfg)
        if row["label"] is None:
            return None
        row["text"] = corrected if row["label"] == "corrected" else None
    return row


def read_annotations(cfg: AnnotationsConfig, root: Path | None = None) -> pa.Table:
    """Read the annotations file into a table with :data:`SCHEMA`. Errors name the row."""
    path = Path(cfg.path)
    if not path.is_absolute() and root is not None:
        path = root / path
    if not path.exists():
        raise _err("path", f"file not found: {path}")
    rows = _read_rows(path, cfg.file_type)
    out: list[dict[str, Any]] = []
    header = list(rows[0].keys()) if rows else []
    id_field = (
        cfg.id_field
        if not (rows and cfg.id_field not in header and "__key__" in header)
        else "__key__"
    )
    if rows and _get(rows[0], id_field) is None and id_field not in header:
        raise _err(
            "id_field",
            f"column {cfg.id_field!r} is not in {path.name} (columns: {', '.join(header[:20])})",
        )
    if cfg.format == "long":
        vf = cfg.resolved_value_field
        if rows and vf not in header and _get(rows[0], vf) is None:
            raise _err(
                "value_field",
                f"column {vf!r} is not in {path.name} (columns: {', '.join(header[:20])})",
            )
        if rows and cfg.annotator_field not in header:
            raise _err("annotator_field", f"column {cfg.annotator_field!r} is not in {path.name}")
        for i, r in enumerate(rows, 1):
            ex = _s(_get(r, id_field))
            ann = _s(_get(r, cfg.annotator_field))
            if ex is None or ann is None:
                continue
            try:
                rec = _record(
                    cfg,
                    ex,
                    ann,
                    _get(r, vf),
                    _get(r, cfg.text_field or "text"),
                    _get(r, cfg.timestamp_field),
                    _get(r, cfg.reason_field),
                )
            except ValueError as e:
                raise ProjectError(f"{path}: row {i}: {e}") from None
            if rec is not None:
                out.append(rec)
    else:
        vcols = _columns(cfg.value_columns, header, "value_columns")
        acols = _columns(cfg.annotator_columns, header, "annotator_columns")
        tcols = _columns(cfg.text_columns, header, "text_columns")
        if acols and len(acols) != len(vcols):
            raise _err("annotator_columns", f"{len(acols)} columns for {len(vcols)} value columns")
        if tcols and len(tcols) != len(vcols):
            raise _err("text_columns", f"{len(tcols)} columns for {len(vcols)} value columns")
        for i, r in enumerate(rows, 1):
            ex = _s(_get(r, id_field))
            if ex is None:
                continue
            for j, col in enumerate(vcols):
                ann = _s(r.get(acols[j])) if acols else col
                if ann is None:
                    continue
                try:
                    rec = _record(
                        cfg,
                        ex,
                        ann,
                        r.get(col),
                        r.get(tcols[j]) if tcols else None,
                        _get(r, cfg.timestamp_field),
                        _get(r, cfg.reason_field),
                    )
                except ValueError as e:
                    raise ProjectError(f"{path}: row {i}, column {col}: {e}") from None
                if rec is not None:
                    out.append(rec)
    return pa.Table.from_pylist(out, schema=SCHEMA)


def load_for_project(project: Project) -> tuple[AnnotationsConfig, pa.Table]:
    cfg = parse_config(project.annotations)
    return cfg, read_annotations(cfg, project.root)
