"""What the review app shows: examples, annotations, queues and the labelling standard.

Everything is read from what the audit left behind — the workspace tables (``train``,
``annotations``), the decisions ledger and ``out/audit/artifacts/spec_provenance.json`` — plus the
app's own annotations. Tables are cached in memory and reloaded when their file changes, so a
re-audit shows up without restarting the server.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson
import pyarrow as pa
import pyarrow.compute as pc
import sqlalchemy as sa

from ftprep.checks.base import Action
from ftprep.decisions import Ledger, LedgerEntry, decisions_t, entry_from_row
from ftprep.project import Project
from ftprep.review import db
from ftprep.store import Workspace

APP_TABLE = "review_annotations"
FLAGGED_TTL_S = 10.0  # the open-entry list is re-read at least this often  # workspace table the app exports its annotations to


@dataclass(frozen=True, slots=True)
class Queue:
    """A review queue: the ledger entries whose action is in ``actions`` and whose check name
    starts with one of ``prefixes`` (or, with ``exclude_prefixes``, with none of them)."""

    key: str
    title: str
    permission: str
    actions: frozenset[Action]
    prefixes: tuple[str, ...] = ()
    exclude_prefixes: tuple[str, ...] = ()
    choices: tuple[str, ...] = ()
    help: str = ""

    @property
    def values(self) -> frozenset[str]:
        """The actions as stored in the ledger (strings)."""
        return frozenset(str(a) for a in self.actions)

    def matches_check(self, check: str) -> bool:
        if self.prefixes and not check.startswith(self.prefixes):
            return False
        return not (self.exclude_prefixes and check.startswith(self.exclude_prefixes))

    def matches(self, e: LedgerEntry) -> bool:
        return e.action in self.actions and self.matches_check(e.check)


QUEUES: dict[str, Queue] = {
    q.key: q
    for q in (
        Queue(
            "escalations",
            "Escalations",
            "arbitrate",
            frozenset({Action.ESCALATE}),
            ("labels.",),
            choices=("label", "exclude"),
            help="Annotators disagreed beyond the agreement threshold. Read every label and "
            "reason, then decide the final label, or exclude the example.",
        ),
        Queue(
            "label-errors",
            "Likely label errors",
            "label_errors",
            frozenset({Action.REVIEW}),
            ("labels.",),
            choices=("keep", "relabel", "exclude"),
            help="A model trained on the rest of the data disagrees with this label. Keep it, "
            "correct it, or exclude the example.",
        ),
        Queue(
            "quarantine",
            "Quarantine",
            "quarantine",
            frozenset({Action.QUARANTINE}),
            ("spec.",),
            choices=("accept", "relabel", "reject"),
            help="Collected under a superseded spec version in an area that changed since. "
            "Re-validate it against the current criteria shown beside it.",
        ),
        Queue(
            "other",
            "Other flagged items",
            "other",
            frozenset({Action.REVIEW, Action.ESCALATE, Action.QUARANTINE}),
            exclude_prefixes=("labels.", "spec."),
            choices=("keep", "exclude"),
            help="Items other checks flagged for a person to look at.",
        ),
    )
}

# (queue kind, choice) -> (ledger action, reason code)
OUTCOMES: dict[tuple[str, str], tuple[Action, str]] = {
    ("escalations", "label"): (Action.INCLUDE, "arbitrated"),
    ("escalations", "exclude"): (Action.EXCLUDE, "arbitrated_exclude"),
    ("label-errors", "keep"): (Action.INCLUDE, "label_confirmed"),
    ("label-errors", "relabel"): (Action.INCLUDE, "relabelled"),
    ("label-errors", "exclude"): (Action.EXCLUDE, "label_error_excluded"),
    ("quarantine", "accept"): (Action.INCLUDE, "quarantine_accepted"),
    ("quarantine", "relabel"): (Action.INCLUDE, "quarantine_relabelled"),
    ("quarantine", "reject"): (Action.EXCLUDE, "quarantine_rejected"),
    ("other", "keep"): (Action.INCLUDE, "reviewer_kept"),
    ("other", "exclude"): (Action.EXCLUDE, "reviewer_excluded"),
}


@dataclass(slots=True)
class Vote:
    annotator: str
    label: str | None
    rating: float | None
    text: str | None
    reason: str | None
    timestamp: str | None
    source: str  # "imported" | "app"

    @property
    def value(self) -> str:
        if self.label not in (None, ""):
            return str(self.label)
        if self.rating is not None:
            return f"{self.rating:g}"
        return ""


@dataclass(slots=True)
class ExampleView:
    id: str
    row: dict[str, Any]
    messages: list[dict[str, str]] = field(default_factory=list)

    @property
    def label(self) -> str | None:
        v = self.row.get("label")
        return None if v is None else str(v)

    @property
    def response(self) -> str:
        return str(self.row.get("response") or "")

    @property
    def area(self) -> str | None:
        v = self.row.get("area")
        return None if v in (None, "") else str(v)

    @property
    def spec_version(self) -> str | None:
        v = self.row.get("spec_version")
        return None if v in (None, "") else str(v)


def _content(c: Any) -> str:
    if c is None:
        return ""
    if isinstance(c, str):
        return c
    if isinstance(c, list):
        return "\n".join(str(p.get("text", "")) if isinstance(p, dict) else str(p) for p in c)
    return str(c)


def parse_messages(raw: str | None) -> list[dict[str, str]]:
    if not raw:
        return []
    try:
        msgs = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return [{"role": "?", "content": raw}]
    if not isinstance(msgs, list):
        return []
    return [
        {"role": str(m.get("role", "?")), "content": _content(m.get("content"))}
        for m in msgs
        if isinstance(m, dict)
    ]


class _Cached:
    """A value derived from one file, recomputed when the file's mtime or size changes."""

    def __init__(self, path: Callable[[], Path | None], load: Callable[[Path], Any]) -> None:
        self._path = path
        self._load = load
        self._key: tuple[str, int, int] | None = None
        self._value: Any = None
        self._lock = threading.Lock()

    def get(self) -> Any:
        p = self._path()
        if p is None or not p.exists():
            return None
        st = p.stat()
        key = (str(p), st.st_mtime_ns, st.st_size)
        with self._lock:
            if key != self._key:
                self._value = self._load(p)
                self._key = key
            return self._value


def _read_parquet(p: Path) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(p)


def _read_parquet_columns(p: Path, columns: list[str]) -> pa.Table:
    import pyarrow.parquet as pq

    return pq.read_table(p, columns=columns)


_AREA_RE = re.compile(r"\barea ([^\s;(,]+)")
_VERSION_RE = re.compile(r"collected under spec version ([^\s;(,]+)")


class ReviewData:
    def __init__(self, project: Project, workspace: Workspace, ledger: Ledger) -> None:
        self.project = project
        self.workspace = workspace
        self.ledger = ledger
        self._train = _Cached(lambda: workspace.table_path("train"), _read_parquet)
        self._train_ids = _Cached(
            lambda: workspace.table_path("train"),
            lambda p: _read_parquet_columns(p, ["id"]).column("id").to_pylist(),
        )
        self._imported = _Cached(lambda: workspace.table_path("annotations"), _read_parquet)
        self._imported_index = _Cached(
            lambda: workspace.table_path("annotations"),
            lambda p: _annotator_index(_read_parquet(p)),
        )
        self._prov = _Cached(
            lambda: project.out_dir / "audit" / "artifacts" / "spec_provenance.json",
            lambda p: _index_provenance(orjson.loads(p.read_bytes())),
        )
        self._rubric = _Cached(lambda: project.path(project.rubric), lambda p: p.read_text("utf-8"))
        self._spec = _Cached(lambda: project.path(project.spec), lambda p: p.read_text("utf-8"))
        self._export_lock = threading.Lock()
        self._base_lock = threading.Lock()
        self._local = threading.local()
        self._flagged_key: tuple[int, int, str, int] | None = None
        self._flagged_cache: list[tuple[str, str, str]] = []
        self._flagged_at = 0.0
        self._base_key: tuple[int, int] | None = None
        self._base: Any = None

    @property
    def name(self) -> str:
        return self.project.name

    # ------------------------------------------------------------------ examples
    def train(self) -> pa.Table | None:
        t = self._train.get()
        return t if isinstance(t, pa.Table) else None

    def examples(self, ids: Sequence[str]) -> dict[str, ExampleView]:
        t = self.train()
        if t is None or not ids:
            return {}
        sub = t.filter(pc.is_in(t.column("id"), value_set=pa.array(list(ids), pa.string())))
        prov = self.provenance()
        out: dict[str, ExampleView] = {}
        for row in sub.to_pylist():
            p = prov.get(row["id"]) if prov else None
            if p:
                row.setdefault("area", None)
                if not row.get("area") and p.get("area"):
                    row["area"] = p["area"]
                    row["area_confidence"] = p.get("area_confidence")
                if not row.get("spec_version") and p.get("spec_version"):
                    row["spec_version"] = p["spec_version"]
            out[row["id"]] = ExampleView(row["id"], row, parse_messages(row.get("messages")))
        return out

    def example(self, example_id: str) -> ExampleView | None:
        return self.examples([example_id]).get(example_id)

    def provenance(self) -> dict[str, dict[str, Any]]:
        v = self._prov.get()
        return v if isinstance(v, dict) else {}

    # ------------------------------------------------------------------ annotations
    def imported_annotations(self) -> pa.Table | None:
        t = self._imported.get()
        return t if isinstance(t, pa.Table) else None

    def annotation_config(self) -> dict[str, Any]:
        raw = self.project.annotations or {}
        return dict(raw) if isinstance(raw, dict) else {}

    @property
    def annotation_kind(self) -> str:
        kind = str(self.annotation_config().get("kind", "label"))
        return kind if kind in ("label", "rating", "text") else "label"

    def label_choices(self, limit: int = 200) -> list[str]:
        """The labels an annotator picks from: the configured ``scale``, else every label seen in
        the imported annotations and the dataset (most frequent first)."""
        scale = self.annotation_config().get("scale")
        if isinstance(scale, list) and scale:
            return [str(s) for s in scale][:limit]
        counts: dict[str, int] = {}
        for t, col in ((self.imported_annotations(), "label"), (self.train(), "label")):
            if t is None or col not in t.column_names:
                continue
            vc = pc.value_counts(t.column(col).drop_null()).to_pylist()
            for item in vc:
                v = str(item["values"])
                if v:
                    counts[v] = counts.get(v, 0) + int(item["counts"])
        return [k for k, _ in sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))][:limit]

    def votes(self, example_id: str) -> list[Vote]:
        """Every annotator's label for one example: imported ones, then the app's. When the
        label pipeline merged the app's labels into the imported table, the app's row (the
        current one) replaces the imported copy of the same annotator."""
        app = db.annotations_for(self.workspace.engine, self.name, example_id)
        in_app = {a.annotator for a in app}
        out: list[Vote] = []
        t = self.imported_annotations()
        if t is not None and "example_id" in t.column_names:
            sub = t.filter(pc.equal(t.column("example_id"), example_id))
            for r in sub.to_pylist():
                who = str(r.get("annotator") or "?")
                if who in in_app:
                    continue
                out.append(
                    Vote(
                        who,
                        r.get("label"),
                        r.get("rating"),
                        r.get("text"),
                        r.get("reason"),
                        r.get("timestamp"),
                        "imported",
                    )
                )
        for a in app:
            out.append(Vote(a.annotator, a.label, a.rating, a.text, a.reason, a.timestamp, "app"))
        return out

    def export_annotations(self) -> pa.Table:
        """Write the app's annotations to the workspace table ``review_annotations`` (same
        columns as the imported ``annotations`` table) and return them."""
        with self._export_lock:
            t = db.annotations_table(self.workspace.engine, self.name)
            self.workspace.save_table(APP_TABLE, t)
        return t

    # ------------------------------------------------------------------ queues
    def begin_request(self) -> None:
        """Forget per-request memos (the app calls this before every request and after every
        write, so a page reads the ledger's open entries once)."""
        self._local.flagged = None

    def _flagged(self) -> list[tuple[str, str, str]]:
        """(example, check, action) of every open ledger entry whose example is in this
        project's audited dataset, sorted. Entries about other examples (another project
        sharing the database, data removed since) are never shown."""
        memo = getattr(self._local, "flagged", None)
        if memo is None:
            memo = self._local.flagged = self._load_flagged()
        return memo  # type: ignore[no-any-return]

    def _load_flagged(self) -> list[tuple[str, str, str]]:
        """Reloaded when the open entries changed — a cheap aggregate (count, latest stamp and
        run, sum of versions) tells: every decision bumps a version, every audit writes a new
        run id and stamp — and at least every ``FLAGGED_TTL_S`` seconds regardless."""
        base = self._annotate_base()
        if base is None:
            return []
        pos = base[1]
        t = decisions_t
        flagged = [str(a) for a in (Action.REVIEW, Action.ESCALATE, Action.QUARANTINE)]
        agg = sa.select(
            sa.func.count(),
            sa.func.max(t.c.updated_at),
            sa.func.sum(t.c.version),
            sa.func.max(t.c.run_id),
        ).where(t.c.action.in_(flagged))
        q = (
            sa.select(t.c.example_id, t.c.check_name, t.c.action)
            .where(t.c.action.in_(flagged))
            .order_by(t.c.example_id, t.c.check_name)
        )
        with self.ledger.engine.connect() as conn:
            n, stamp, versions, run = conn.execute(agg).one()
            key = (id(base), int(n or 0), f"{stamp}|{run}", int(versions or 0))
            with self._base_lock:
                fresh = time.monotonic() - self._flagged_at < FLAGGED_TTL_S
                if key == self._flagged_key and fresh:
                    return self._flagged_cache
            rows = [(r[0], r[1], r[2]) for r in conn.execute(q).all() if r[0] in pos]
        with self._base_lock:
            self._flagged_key, self._flagged_cache = key, rows
            self._flagged_at = time.monotonic()
        return rows

    def _groups(self) -> Counter[tuple[str, str]]:
        """Open entries per (check, action) — a handful of groups however long the queues."""
        return Counter((check, action) for _, check, action in self._flagged())

    def in_dataset(self, example_id: str) -> bool:
        base = self._annotate_base()
        return base is not None and example_id in base[1]

    def queue_checks(self, queue: Queue) -> dict[str, int]:
        """Open items of ``queue`` per check."""
        out: Counter[str] = Counter()
        for (check, action), n in self._groups().items():
            if action in queue.values and queue.matches_check(check):
                out[check] += n
        return dict(sorted(out.items()))

    def queue_page(
        self, queue: Queue, checks: Sequence[str], offset: int, limit: int
    ) -> list[LedgerEntry]:
        """One page of ``queue`` restricted to ``checks``, ordered by example id and check."""
        if not checks or limit <= 0:
            return []
        wanted = set(checks)
        keys = [
            (eid, check)
            for eid, check, action in self._flagged()
            if action in queue.values and check in wanted
        ][offset : offset + limit]
        if not keys:
            return []
        t = decisions_t
        q = sa.select(t).where(
            t.c.example_id.in_(sorted({k[0] for k in keys})),
            t.c.check_name.in_(sorted({k[1] for k in keys})),
        )
        with self.ledger.engine.connect() as conn:
            found = {(r.example_id, r.check_name): entry_from_row(r) for r in conn.execute(q)}
        # an entry decided between the two queries drops out of this page
        return [found[k] for k in keys if k in found and found[k].action in queue.actions]

    def queue_counts(self) -> dict[str, int]:
        """Open items per queue."""
        out = dict.fromkeys(QUEUES, 0)
        for (check, action), n in self._groups().items():
            for k, queue in QUEUES.items():
                if action in queue.values and queue.matches_check(check):
                    out[k] += n
        return out

    def to_annotate(self, user: str, per_item: int, limit: int = 50) -> tuple[list[str], int]:
        """Examples that still need labels: fewer than ``per_item`` distinct annotators (imported
        plus app) and none of them ``user``. Escalated examples come first (more labels settle
        them), then those flagged as likely label errors, then the least-labelled. Returns the
        first ``limit`` ids and the total count."""
        base = self._annotate_base()
        if base is None:
            return [], 0
        ids, pos, n_imported, imported = base
        counts = n_imported.copy()
        mine = np.zeros(len(ids), dtype=bool)
        for eid, app_anns in db.annotation_counts(self.workspace.engine, self.name).items():
            k = pos.get(eid)
            if k is None:
                continue
            counts[k] += len(app_anns - imported.get(eid, frozenset()))
            if user in app_anns:
                mine[k] = True
        for eid, anns in imported.items():
            if user in anns and eid in pos:
                mine[pos[eid]] = True
        rank = np.full(len(ids), 2, dtype=np.int8)
        t = decisions_t
        q = sa.select(t.c.example_id, t.c.action).where(
            t.c.action.in_([str(Action.ESCALATE), str(Action.REVIEW)]),
            t.c.check_name.like("labels.%"),
        )
        with self.ledger.engine.connect() as conn:
            for eid, action in conn.execute(q):
                k = pos.get(eid)
                if k is not None:
                    rank[k] = min(rank[k], 0 if action == str(Action.ESCALATE) else 1)
        todo = np.flatnonzero((counts < per_item) & ~mine)
        order = np.lexsort((todo, counts[todo], rank[todo]))  # dataset order breaks ties
        return [ids[int(todo[j])] for j in order[:limit]], len(todo)

    def _annotate_base(
        self,
    ) -> tuple[list[str], dict[str, int], np.ndarray, dict[str, frozenset[str]]] | None:
        """Train ids, id -> position, imported annotators per example (count array and sets);
        recomputed only when the train or annotations table changes."""
        ids = self._train_ids.get()
        if ids is None:
            return None
        imported: dict[str, frozenset[str]] = self._imported_index.get() or {}
        key = (id(ids), id(imported))
        with self._base_lock:
            if self._base_key != key:
                pos = {eid: k for k, eid in enumerate(ids)}
                n_imported = np.zeros(len(ids), dtype=np.int32)
                for eid, anns in imported.items():
                    k = pos.get(eid)
                    if k is not None:
                        n_imported[k] = len(anns)
                self._base = (ids, pos, n_imported, imported)
                self._base_key = key
            return self._base

    # ------------------------------------------------------------------ standard
    def rubric_text(self) -> str | None:
        v = self._rubric.get()
        return v if isinstance(v, str) else None

    def spec_file_text(self) -> str | None:
        v = self._spec.get()
        return v if isinstance(v, str) else None

    def area_text(self, area: str | None, version: str | None = None) -> str | None:
        """Text of ``area`` in the current spec (or in a recorded ``version``), through
        :mod:`ftprep.spec` when it is installed; ``None`` when unknown."""
        if not area or self.project.spec is None:
            return None
        try:
            from ftprep import spec as spec_mod
        except ImportError:
            return None
        fn = getattr(spec_mod, "area_text_at", None)
        if fn is None:
            return None
        try:
            text = fn(self.project, area, version)
        except Exception:  # a broken spec or history must not take the page down
            return None
        return text if isinstance(text, str) else None

    def standard(self, ex: ExampleView | None) -> list[tuple[str, str]]:
        """The labelling standard shown beside an item: the spec's criteria for the example's
        area (the whole spec file when the area is unknown) and the rubric."""
        out: list[tuple[str, str]] = []
        area = ex.area if ex is not None else None
        text = self.area_text(area)
        if text:
            out.append((f"Task spec — area {area} (current)", text))
        else:
            whole = self.spec_file_text()
            if whole:
                out.append(("Task spec", whole))
        rubric = self.rubric_text()
        if rubric:
            out.append(("Rubric", rubric))
        return out

    def quarantine_context(self, ex: ExampleView | None, entry: LedgerEntry) -> dict[str, Any]:
        """Area and spec version of a quarantined example with the criteria then and now."""
        area = ex.area if ex is not None else None
        version = ex.spec_version if ex is not None else None
        if not area:
            m = _AREA_RE.search(entry.detail)
            area = m.group(1) if m else None
        if not version:
            m = _VERSION_RE.search(entry.detail)
            version = m.group(1) if m else None
        current = self.area_text(area)
        old = self.area_text(area, version) if version else None
        return {
            "area": area,
            "version": version,
            "current_text": current,
            "old_text": old,
            "whole_spec": None if current else self.spec_file_text(),
        }


def _annotator_index(t: pa.Table) -> dict[str, frozenset[str]]:
    """example id -> the annotators who labelled it (imported annotations)."""
    if not {"example_id", "annotator"} <= set(t.column_names):
        return {}
    out: dict[str, set[str]] = {}
    ids, anns = t.column("example_id").to_pylist(), t.column("annotator").to_pylist()
    for eid, ann in zip(ids, anns, strict=True):
        out.setdefault(str(eid), set()).add(str(ann))
    return {k: frozenset(v) for k, v in out.items()}


def _index_provenance(doc: Any) -> dict[str, dict[str, Any]]:
    if not isinstance(doc, dict) or not isinstance(doc.get("ids"), list):
        return {}
    ids = doc["ids"]
    out: dict[str, dict[str, Any]] = {}
    cols = {k: doc.get(k) for k in ("area", "spec_version", "area_confidence", "area_source")}
    for i, eid in enumerate(ids):
        rec: dict[str, Any] = {}
        for k, col in cols.items():
            if isinstance(col, list) and i < len(col):
                rec[k] = col[i]
        out[str(eid)] = rec
    return out
