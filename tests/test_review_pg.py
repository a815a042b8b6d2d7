"""The review app against a real PostgreSQL server (``FTPREP_TEST_PG_URL``; CI starts one with
``.ci/setup_postgres.sh``). Each test module works in a fresh schema that it drops at the end."""

from __future__ import annotations

import os
import re
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
import sqlalchemy as sa

from ftprep.checks.base import Action
from ftprep.decisions import Ledger
from ftprep.project import Project
from ftprep.review import db
from ftprep.review.app import create_app
from ftprep.review.demo import build_demo
from ftprep.store import make_engine

PG_URL = os.environ.get("FTPREP_TEST_PG_URL")
pytestmark = [
    pytest.mark.postgres,
    pytest.mark.skipif(not PG_URL, reason="FTPREP_TEST_PG_URL not set (see .ci/setup_postgres.sh)"),
]
PW = "correct-horse-battery"


@pytest.fixture(scope="module")
def schema_url() -> Iterator[str]:
    assert PG_URL is not None
    schema = f"ftprep_review_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_URL)
    with admin.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    sep = "&" if "?" in PG_URL else "?"
    yield f"{PG_URL}{sep}options={quote(f'-csearch_path={schema}')}"
    with admin.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    admin.dispose()


@pytest.fixture(scope="module")
def project(schema_url: str, tmp_path_factory: Any) -> Project:
    root: Path = tmp_path_factory.mktemp("pg") / "proj"
    project = build_demo(root, database_url=schema_url)
    engine = make_engine(schema_url)
    db.init_db(engine)
    for name, role in (("ann", "annotator"), ("sen", "senior"), ("sen2", "senior")):
        db.add_user(engine, project.name, name, role, PW)
    engine.dispose()
    return project


@pytest.fixture(scope="module")
def app(project: Project, schema_url: str) -> Any:
    return create_app(project, database_url=schema_url)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m
    return m.group(1)


def version_of(html: str) -> str:
    m = re.search(r'name="version" value="(\d+)"', html)
    assert m
    return m.group(1)


def login(app: Any, user: str) -> Any:
    c = app.test_client()
    r = c.post(
        "/login",
        data={"username": user, "password": PW, "csrf_token": csrf_of(c.get("/login").text)},
    )
    assert r.status_code == 302, r.text
    return c


def test_tables_live_in_postgres(app: Any, schema_url: str) -> None:
    engine = make_engine(schema_url)
    assert engine.dialect.name == "postgresql"
    names = set(sa.inspect(engine).get_table_names())
    assert {
        "decisions",
        "decision_history",
        "review_users",
        "review_sessions",
        "review_annotations",
    } <= names
    engine.dispose()


def test_arbitration_and_simultaneous_reviewers(app: Any, schema_url: str) -> None:
    clients = [login(app, "sen"), login(app, "sen2")]
    url = "/queue/escalations/item?id=t09&check=labels.agreement"
    pages = [c.get(url) for c in clients]
    assert all(p.status_code == 200 and "ann_a" in p.text for p in pages)
    barrier = threading.Barrier(2)
    codes = [0, 0]

    def post(i: int) -> None:
        barrier.wait()
        codes[i] = (
            clients[i]
            .post(
                "/queue/escalations/item",
                data={
                    "csrf_token": csrf_of(pages[i].text),
                    "id": "t09",
                    "check": "labels.agreement",
                    "version": version_of(pages[i].text),
                    "choice": "label",
                    "label": ["shipping", "refund"][i],
                    "note": f"r{i}",
                },
            )
            .status_code
        )

    threads = [threading.Thread(target=post, args=(i,)) for i in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [302, 409]
    lg = Ledger(make_engine(schema_url))
    e = lg.get("t09", "labels.agreement")
    assert e is not None and e.action == Action.INCLUDE and e.version == 2
    winner = codes.index(302)
    assert e.patch == {"label": ["shipping", "refund"][winner]}
    hist = [h for h in lg.history("t09") if h["actor_kind"] == "human"]
    assert len(hist) == 1 and hist[0]["prev_action"] == "escalate"
    lg.engine.dispose()


def test_first_annotation_race_is_a_conflict_not_an_error(
    app: Any, project: Project, schema_url: str
) -> None:
    a, b = login(app, "ann"), login(app, "ann")
    pa_, pb = a.get("/annotate/item?id=t06"), b.get("/annotate/item?id=t06")
    barrier = threading.Barrier(2)
    codes = [0, 0]

    def post(i: int, c: Any, page: Any, label: str) -> None:
        barrier.wait()
        codes[i] = c.post(
            "/annotate/item",
            data={"csrf_token": csrf_of(page.text), "id": "t06", "version": "0", "label": label},
        ).status_code

    ts = [
        threading.Thread(target=post, args=(0, a, pa_, "account")),
        threading.Thread(target=post, args=(1, b, pb, "refund")),
    ]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    assert sorted(codes) == [302, 409]
    engine = make_engine(schema_url)
    got = db.get_annotation(engine, project.name, "t06", "ann")
    assert got is not None and got.version == 1
    assert got.label == ["account", "refund"][codes.index(302)]
    engine.dispose()


def test_quarantine_decision_and_project_isolation(
    app: Any, project: Project, schema_url: str
) -> None:
    engine = make_engine(schema_url)
    db.add_user(engine, "someone-else", "eve", "admin", PW)
    c = app.test_client()
    r = c.post(
        "/login",
        data={"username": "eve", "password": PW, "csrf_token": csrf_of(c.get("/login").text)},
    )
    assert r.status_code == 401
    c = login(app, "sen")
    page = c.get("/queue/quarantine/item?id=t10&check=spec.quarantine")
    assert "Current spec — area refunds" in page.text
    r = c.post(
        "/queue/quarantine/item",
        data={
            "csrf_token": csrf_of(page.text),
            "id": "t10",
            "check": "spec.quarantine",
            "version": version_of(page.text),
            "choice": "accept",
        },
    )
    assert r.status_code == 302
    e = Ledger(engine).get("t10", "spec.quarantine")
    assert e is not None and e.action == Action.INCLUDE and e.reason == "quarantine_accepted"
    engine.dispose()
