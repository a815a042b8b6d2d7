"""The decisions ledger: the single source of truth that ``build`` applies and the review app
edits.

Tables (SQLAlchemy Core, so SQLite and PostgreSQL share one code path):

* ``decisions`` — the current decision per (example, check): action, reason code, detail, who
  (a check name for automatic decisions, a user for reviewers), when, a ``version`` counter
  for optimistic concurrency, and an optional ``patch`` (a reviewer's corrected label/output).
* ``decision_history`` — append-only: every change with the previous action and version.
* ``runs`` — one row per audit/build with its summary.

Rules: an audit replaces the *automatic* decisions of the checks it ran; a *human* decision on
an (example, check) pair is never overwritten by an audit. The effective status of an example
is the most blocking of its decisions (exclude > quarantine > escalate > review > include),
where a human decision on a pair replaces the automatic one for that pair.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ftprep.checks.base import Action, Decision

metadata = sa.MetaData()

decisions_t = sa.Table(
    "decisions",
    metadata,
    sa.Column("example_id", sa.String(512), primary_key=True),
    sa.Column("check_name", sa.String(128), primary_key=True),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("reason", sa.String(128), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("actor_kind", sa.String(8), nullable=False),  # "auto" | "human"
    sa.Column("updated_at", sa.String(40), nullable=False),
    sa.Column("version", sa.Integer, nullable=False, default=1),
    sa.Column("patch", sa.Text, nullable=True),
    sa.Column("run_id", sa.String(40), nullable=True),
)
sa.Index("ix_decisions_check", decisions_t.c.check_name)

history_t = sa.Table(
    "decision_history",
    metadata,
    sa.Column("seq", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("example_id", sa.String(512), nullable=False),
    sa.Column("check_name", sa.String(128), nullable=False),
    sa.Column("action", sa.String(16), nullable=False),
    sa.Column("prev_action", sa.String(16), nullable=True),
    sa.Column("reason", sa.String(128), nullable=False),
    sa.Column("detail", sa.Text, nullable=False, default=""),
    sa.Column("actor", sa.String(128), nullable=False),
    sa.Column("actor_kind", sa.String(8), nullable=False),
    sa.Column("at", sa.String(40), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("patch", sa.Text, nullable=True),
)
sa.Index("ix_history_example", history_t.c.example_id)

runs_t = sa.Table(
    "runs",
    metadata,
    sa.Column("run_id", sa.String(40), primary_key=True),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("started_at", sa.String(40), nullable=False),
    sa.Column("finished_at", sa.String(40), nullable=True),
    sa.Column("status", sa.String(16), nullable=True),
    sa.Column("project_hash", sa.String(64), nullable=True),
    sa.Column("summary", sa.Text, nullable=True),
)

ORDER = {
    Action.INCLUDE: 0,
    Action.REVIEW: 1,
    Action.ESCALATE: 2,
    Action.QUARANTINE: 3,
    Action.EXCLUDE: 4,
}


class ConflictError(Exception):
    """Someone else changed this decision since you loaded it (optimistic concurrency)."""


def now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


@dataclass(slots=True)
class LedgerEntry:
    example_id: str
    check: str
    action: Action
    reason: str
    detail: str
    actor: str
    actor_kind: str
    updated_at: str
    version: int
    patch: dict[str, Any] | None


def entry_from_row(row: Any) -> LedgerEntry:
    """A ``decisions`` table row -> :class:`LedgerEntry`."""
    return LedgerEntry(
        example_id=row.example_id,
        check=row.check_name,
        action=Action(row.action),
        reason=row.reason,
        detail=row.detail or "",
        actor=row.actor,
        actor_kind=row.actor_kind,
        updated_at=row.updated_at,
        version=row.version,
        patch=json.loads(row.patch) if row.patch else None,
    )


class Ledger:
    def __init__(self, engine: sa.Engine) -> None:
        self.engine = engine
        metadata.create_all(engine)

    # ------------------------------------------------------------------ automatic
    def replace_auto(self, check: str, decisions: Sequence[Decision], run_id: str) -> None:
        """Replace the automatic decisions of ``check`` (human ones stay)."""
        t = decisions_t
        stamp = now()
        with self.engine.begin() as conn:
            human = {
                r.example_id
                for r in conn.execute(
                    sa.select(t.c.example_id).where(
                        t.c.check_name == check, t.c.actor_kind == "human"
                    )
                )
            }
            conn.execute(t.delete().where(t.c.check_name == check, t.c.actor_kind == "auto"))
            rows = []
            seen: set[str] = set()
            for d in decisions:
                if d.example_id in human or d.example_id in seen:
                    continue
                seen.add(d.example_id)
                rows.append(
                    {
                        "example_id": d.example_id,
                        "check_name": check,
                        "action": str(d.action),
                        "reason": d.reason,
                        "detail": d.detail[:2000],
                        "actor": check,
                        "actor_kind": "auto",
                        "updated_at": stamp,
                        "version": 1,
                        "patch": None,
                        "run_id": run_id,
                    }
                )
            for i in range(0, len(rows), 5000):
                conn.execute(t.insert(), rows[i : i + 5000])

    # ------------------------------------------------------------------ human
    def decide(
        self,
        example_id: str,
        check: str,
        action: Action | str,
        actor: str,
        *,
        reason: str = "reviewed",
        detail: str = "",
        patch: dict[str, Any] | None = None,
        expected_version: int | None = None,
    ) -> LedgerEntry:
        """Record a reviewer's decision. ``expected_version`` is the version the reviewer saw;
        if the row changed since, :class:`ConflictError` is raised and nothing is written."""
        action = Action(action)
        t = decisions_t
        stamp = now()
        with self.engine.begin() as conn:
            cur = conn.execute(
                sa.select(t).where(t.c.example_id == example_id, t.c.check_name == check)
            ).first()
            cur_version = cur.version if cur is not None else 0
            if expected_version is not None and expected_version != cur_version:
                raise ConflictError(
                    f"{example_id} / {check} was changed by {cur.actor if cur else 'someone'} "
                    f"(version {cur_version}, you had {expected_version})"
                )
            values = {
                "action": str(action),
                "reason": reason,
                "detail": detail[:2000],
                "actor": actor,
                "actor_kind": "human",
                "updated_at": stamp,
                "version": cur_version + 1,
                "patch": json.dumps(patch) if patch else None,
            }
            if cur is None:
                conn.execute(t.insert().values(example_id=example_id, check_name=check, **values))
            else:
                res = conn.execute(
                    t.update()
                    .where(
                        t.c.example_id == example_id,
                        t.c.check_name == check,
                        t.c.version == cur_version,
                    )
                    .values(**values)
                )
                if res.rowcount != 1:
                    raise ConflictError(f"{example_id} / {check} changed while saving; reload")
            conn.execute(
                history_t.insert().values(
                    example_id=example_id,
                    check_name=check,
                    action=str(action),
                    prev_action=cur.action if cur is not None else None,
                    reason=reason,
                    detail=detail[:2000],
                    actor=actor,
                    actor_kind="human",
                    at=stamp,
                    version=cur_version + 1,
                    patch=values["patch"],
                )
            )
            row = conn.execute(
                sa.select(t).where(t.c.example_id == example_id, t.c.check_name == check)
            ).one()
        return entry_from_row(row)

    # ------------------------------------------------------------------ reading
    def entries(
        self,
        *,
        check: str | None = None,
        actions: Iterable[str] | None = None,
        example_ids: Iterable[str] | None = None,
        actor_kind: str | None = None,
    ) -> list[LedgerEntry]:
        t = decisions_t
        q = sa.select(t)
        if check is not None:
            q = q.where(t.c.check_name == check)
        if actor_kind is not None:  # "auto" | "human"
            q = q.where(t.c.actor_kind == actor_kind)
        if actions is not None:
            q = q.where(t.c.action.in_([str(a) for a in actions]))
        if example_ids is not None:
            q = q.where(t.c.example_id.in_(list(example_ids)))
        with self.engine.connect() as conn:
            return [
                entry_from_row(r) for r in conn.execute(q.order_by(t.c.example_id, t.c.check_name))
            ]

    def get(self, example_id: str, check: str) -> LedgerEntry | None:
        rows = self.entries(check=check, example_ids=[example_id])
        return rows[0] if rows else None

    def history(self, example_id: str) -> list[dict[str, Any]]:
        with self.engine.connect() as conn:
            rows = conn.execute(
                sa.select(history_t)
                .where(history_t.c.example_id == example_id)
                .order_by(history_t.c.seq)
            )
            return [dict(r._mapping) for r in rows]

    def effective(self) -> dict[str, tuple[Action, list[LedgerEntry]]]:
        """Per example: the most blocking action and every entry behind it."""
        out: dict[str, tuple[Action, list[LedgerEntry]]] = {}
        for e in self.entries():
            if e.example_id in out:
                act, lst = out[e.example_id]
                lst.append(e)
                if ORDER[e.action] > ORDER[act]:
                    out[e.example_id] = (e.action, lst)
            else:
                out[e.example_id] = (e.action, [e])
        return out

    # ------------------------------------------------------------------ runs
    def start_run(self, run_id: str, kind: str, project_hash: str) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                runs_t.insert().values(
                    run_id=run_id, kind=kind, started_at=now(), project_hash=project_hash
                )
            )

    def finish_run(self, run_id: str, status: str, summary: dict[str, Any]) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                runs_t.update()
                .where(runs_t.c.run_id == run_id)
                .values(finished_at=now(), status=status, summary=json.dumps(summary))
            )
