"""The review app's own tables (SQLAlchemy Core: SQLite in WAL mode or PostgreSQL).

* ``review_users`` — accounts: ``(project, username)`` with a role and a salted scrypt hash of
  the password. The project name is part of the key: an account belongs to exactly one project
  and the app only ever loads accounts of the project it was started for.
* ``review_sessions`` — server-side sessions: the SHA-256 of the random cookie token (the token
  itself is never stored), the user, the project, a per-session CSRF token and an expiry.
* ``review_annotations`` — labels entered in the app, one row per (project, example, annotator),
  with a ``version`` counter for optimistic concurrency. Exported in the layout of the imported
  annotations (:data:`ftprep.labels.annotations.SCHEMA`) so the label pipeline reads both.

Decisions (arbitration, label errors, quarantine) are *not* kept here: they go to the decisions
ledger (:mod:`ftprep.decisions`), the single source of truth that ``build`` applies.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import random
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TypeVar

import pyarrow as pa
import sqlalchemy as sa

ROLES = ("annotator", "senior", "admin")
MIN_PASSWORD = 8
# werkzeug's scrypt (N=2**15, r=8, p=1: ~0.1-0.5 s per hash here). Tests lower N to stay fast;
# the parameters are stored with each hash, so verification follows whatever made it.
PASSWORD_METHOD = "scrypt:32768:8:1"

metadata = sa.MetaData()

users_t = sa.Table(
    "review_users",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("username", sa.String(128), primary_key=True),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("password_hash", sa.String(255), nullable=False),
    sa.Column("active", sa.Boolean, nullable=False, default=True),
    sa.Column("created_at", sa.String(40), nullable=False),
)

sessions_t = sa.Table(
    "review_sessions",
    metadata,
    sa.Column("token_hash", sa.String(64), primary_key=True),
    sa.Column("project", sa.String(200), nullable=False),
    sa.Column("username", sa.String(128), nullable=False),
    sa.Column("csrf", sa.String(64), nullable=False),
    sa.Column("created_at", sa.Float, nullable=False),
    sa.Column("expires_at", sa.Float, nullable=False),
)

annotations_t = sa.Table(
    "review_annotations",
    metadata,
    sa.Column("project", sa.String(200), primary_key=True),
    sa.Column("example_id", sa.String(512), primary_key=True),
    sa.Column("annotator", sa.String(128), primary_key=True),
    sa.Column("label", sa.Text, nullable=True),
    sa.Column("rating", sa.Float, nullable=True),
    sa.Column("text", sa.Text, nullable=True),
    sa.Column("reason", sa.Text, nullable=True),
    sa.Column("timestamp", sa.String(40), nullable=False),
    sa.Column("version", sa.Integer, nullable=False),
)
sa.Index("ix_review_annotations_example", annotations_t.c.project, annotations_t.c.example_id)


class ReviewError(Exception):
    """Bad input to a review-store operation (unknown role, short password, unknown user)."""


class AnnotationConflict(Exception):
    """The annotation changed since the annotator loaded it (another tab or session)."""

    def __init__(self, current: Annotation | None) -> None:
        super().__init__("the annotation was changed elsewhere; reload")
        self.current = current


def now_iso() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


def init_db(engine: sa.Engine) -> None:
    metadata.create_all(engine)


T = TypeVar("T")


def retry_busy(fn: Callable[[], T], attempts: int = 8) -> T:
    """Run a write, retrying when SQLite reports the database busy or locked (two writers in WAL
    mode: the later one may fail at once instead of waiting). The retried write re-reads the
    row, so an optimistic-concurrency check still sees the other writer's change."""
    for i in range(attempts):
        try:
            return fn()
        except sa.exc.OperationalError as e:
            msg = str(e.orig).lower()
            if i == attempts - 1 or ("locked" not in msg and "busy" not in msg):
                raise
            time.sleep(0.02 * (2**i) * (0.5 + random.random()))
    raise AssertionError("unreachable")


# ---------------------------------------------------------------------------- users
@dataclass(slots=True)
class User:
    project: str
    username: str
    role: str
    active: bool
    created_at: str

    def can(self, permission: str) -> bool:
        return self.role in PERMISSIONS[permission]


# which roles may do what (admin may do everything)
PERMISSIONS: dict[str, frozenset[str]] = {
    "annotate": frozenset(ROLES),
    "arbitrate": frozenset({"senior", "admin"}),
    "label_errors": frozenset({"senior", "admin"}),
    "quarantine": frozenset({"senior", "admin"}),
    "other": frozenset({"senior", "admin"}),
    "users": frozenset({"admin"}),
}


def _user(row: Any) -> User:
    return User(row.project, row.username, row.role, bool(row.active), row.created_at)


def _check_username(name: str) -> str:
    name = name.strip()
    if not name or len(name) > 128 or any(c.isspace() or not c.isprintable() for c in name):
        raise ReviewError("a user name is 1-128 printable characters without spaces")
    return name


def _check_role(role: str) -> str:
    if role not in ROLES:
        raise ReviewError(f"unknown role {role!r} (expected one of {', '.join(ROLES)})")
    return role


def _werkzeug_security() -> Any:
    try:
        from werkzeug import security
    except ImportError:  # pragma: no cover - flask (and werkzeug) are dependencies
        raise ReviewError("the review app needs Flask: pip install flask waitress") from None
    return security


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD:
        raise ReviewError(f"a password needs at least {MIN_PASSWORD} characters")
    return str(_werkzeug_security().generate_password_hash(password, method=PASSWORD_METHOD))


def add_user(
    engine: sa.Engine,
    project: str,
    username: str,
    role: str,
    password: str,
    *,
    replace: bool = False,
) -> User:
    """Create an account (or, with ``replace``, reset its role and password)."""
    username = _check_username(username)
    _check_role(role)
    values = {"role": role, "password_hash": hash_password(password), "active": True}
    with engine.begin() as conn:
        cur = conn.execute(
            sa.select(users_t.c.username).where(
                users_t.c.project == project, users_t.c.username == username
            )
        ).first()
        if cur is not None and not replace:
            raise ReviewError(f"user {username!r} already exists in project {project!r}")
        if cur is None:
            conn.execute(
                users_t.insert().values(
                    project=project, username=username, created_at=now_iso(), **values
                )
            )
        else:
            conn.execute(
                users_t.update()
                .where(users_t.c.project == project, users_t.c.username == username)
                .values(**values)
            )
            conn.execute(
                sessions_t.delete().where(
                    sessions_t.c.project == project, sessions_t.c.username == username
                )
            )
    user = get_user(engine, project, username)
    assert user is not None
    return user


def get_user(engine: sa.Engine, project: str, username: str) -> User | None:
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(users_t).where(users_t.c.project == project, users_t.c.username == username)
        ).first()
    return _user(row) if row is not None else None


def list_users(engine: sa.Engine, project: str) -> list[User]:
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(users_t).where(users_t.c.project == project).order_by(users_t.c.username)
        )
        return [_user(r) for r in rows]


def update_user(
    engine: sa.Engine,
    project: str,
    username: str,
    *,
    role: str | None = None,
    active: bool | None = None,
) -> User:
    values: dict[str, Any] = {}
    if role is not None:
        values["role"] = _check_role(role)
    if active is not None:
        values["active"] = active
    with engine.begin() as conn:
        res = conn.execute(
            users_t.update()
            .where(users_t.c.project == project, users_t.c.username == username)
            .values(**values)
        )
        if res.rowcount != 1:
            raise ReviewError(f"no user {username!r} in project {project!r}")
        # a changed role or a disabled account takes effect at once: end its sessions
        conn.execute(
            sessions_t.delete().where(
                sessions_t.c.project == project, sessions_t.c.username == username
            )
        )
    user = get_user(engine, project, username)
    assert user is not None
    return user


_DUMMY_HASH: dict[str, str] = {}  # method -> a hash to check against when the user is unknown


def authenticate(engine: sa.Engine, project: str, username: str, password: str) -> User | None:
    """The user when the name, password and project match and the account is active. Costs one
    scrypt evaluation whether or not the user exists (no user enumeration by timing)."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(users_t).where(users_t.c.project == project, users_t.c.username == username)
        ).first()
    sec = _werkzeug_security()
    if row is None:
        dummy = _DUMMY_HASH.get(PASSWORD_METHOD)
        if dummy is None:
            dummy = _DUMMY_HASH[PASSWORD_METHOD] = sec.generate_password_hash(
                "not-a-real-password", method=PASSWORD_METHOD
            )
        sec.check_password_hash(dummy, password)
        return None
    if not sec.check_password_hash(row.password_hash, password) or not row.active:
        return None
    return _user(row)


# ---------------------------------------------------------------------------- sessions
def _token_hash(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def create_session(engine: sa.Engine, user: User, hours: float) -> tuple[str, str]:
    """A new session: returns (cookie token, CSRF token). Expired sessions are purged."""
    token = secrets.token_urlsafe(32)
    csrf = secrets.token_urlsafe(32)
    t = time.time()
    with engine.begin() as conn:
        conn.execute(sessions_t.delete().where(sessions_t.c.expires_at < t))
        conn.execute(
            sessions_t.insert().values(
                token_hash=_token_hash(token),
                project=user.project,
                username=user.username,
                csrf=csrf,
                created_at=t,
                expires_at=t + hours * 3600.0,
            )
        )
    return token, csrf


def load_session(engine: sa.Engine, project: str, token: str) -> tuple[User, str] | None:
    """(user, CSRF token) for a valid, unexpired session of an active user of ``project``."""
    if not token or len(token) > 200:
        return None
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(sessions_t).where(sessions_t.c.token_hash == _token_hash(token))
        ).first()
        if row is None or row.project != project or row.expires_at < time.time():
            return None
        urow = conn.execute(
            sa.select(users_t).where(
                users_t.c.project == project, users_t.c.username == row.username
            )
        ).first()
    if urow is None or not urow.active:
        return None
    return _user(urow), row.csrf


def end_session(engine: sa.Engine, token: str) -> None:
    with engine.begin() as conn:
        conn.execute(sessions_t.delete().where(sessions_t.c.token_hash == _token_hash(token)))


# ---------------------------------------------------------------------------- annotations
@dataclass(slots=True)
class Annotation:
    example_id: str
    annotator: str
    label: str | None
    rating: float | None
    text: str | None
    reason: str | None
    timestamp: str
    version: int


def _annotation(row: Any) -> Annotation:
    return Annotation(
        row.example_id,
        row.annotator,
        row.label,
        row.rating,
        row.text,
        row.reason,
        row.timestamp,
        row.version,
    )


def save_annotation(
    engine: sa.Engine,
    project: str,
    example_id: str,
    annotator: str,
    *,
    label: str | None,
    rating: float | None,
    text: str | None,
    reason: str | None,
    expected_version: int,
) -> Annotation:
    """Insert (``expected_version`` 0) or update the annotator's annotation of an example;
    :class:`AnnotationConflict` when it changed since it was loaded."""
    a = annotations_t
    key = (a.c.project == project) & (a.c.example_id == example_id) & (a.c.annotator == annotator)
    values = {
        "label": label,
        "rating": rating,
        "text": text,
        "reason": reason,
        "timestamp": now_iso(),
        "version": expected_version + 1,
    }

    def write() -> None:
        with engine.begin() as conn:
            if expected_version == 0:
                conn.execute(
                    a.insert().values(
                        project=project, example_id=example_id, annotator=annotator, **values
                    )
                )
            else:
                res = conn.execute(
                    a.update().where(key & (a.c.version == expected_version)).values(**values)
                )
                if res.rowcount != 1:
                    raise AnnotationConflict(None)

    try:
        retry_busy(write)
    except (sa.exc.IntegrityError, AnnotationConflict):
        raise AnnotationConflict(get_annotation(engine, project, example_id, annotator)) from None
    got = get_annotation(engine, project, example_id, annotator)
    assert got is not None
    return got


def get_annotation(
    engine: sa.Engine, project: str, example_id: str, annotator: str
) -> Annotation | None:
    a = annotations_t
    with engine.connect() as conn:
        row = conn.execute(
            sa.select(a).where(
                a.c.project == project, a.c.example_id == example_id, a.c.annotator == annotator
            )
        ).first()
    return _annotation(row) if row is not None else None


def annotations_for(engine: sa.Engine, project: str, example_id: str) -> list[Annotation]:
    a = annotations_t
    with engine.connect() as conn:
        rows = conn.execute(
            sa.select(a)
            .where(a.c.project == project, a.c.example_id == example_id)
            .order_by(a.c.annotator)
        )
        return [_annotation(r) for r in rows]


def annotation_counts(engine: sa.Engine, project: str) -> dict[str, set[str]]:
    """example id -> annotators who labelled it in the app."""
    a = annotations_t
    out: dict[str, set[str]] = {}
    with engine.connect() as conn:
        for r in conn.execute(
            sa.select(a.c.example_id, a.c.annotator).where(a.c.project == project)
        ):
            out.setdefault(r.example_id, set()).add(r.annotator)
    return out


ANNOTATION_SCHEMA = pa.schema(
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


def annotations_table(engine: sa.Engine, project: str) -> pa.Table:
    """Every annotation entered in the app for ``project`` in the layout of the imported
    annotations table (``example_id, annotator, label, rating, text, timestamp, reason``)."""
    a = annotations_t
    cols: dict[str, list[Any]] = {n: [] for n in ANNOTATION_SCHEMA.names}
    with engine.connect() as conn:
        for r in conn.execute(
            sa.select(a).where(a.c.project == project).order_by(a.c.example_id, a.c.annotator)
        ):
            for n in ANNOTATION_SCHEMA.names:
                cols[n].append(getattr(r, n))
    return pa.table(cols, schema=ANNOTATION_SCHEMA)
