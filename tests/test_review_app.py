"""The review web app through Flask's test client: auth, roles, CSRF, escaping, queues, the ledger
writes of every decision and optimistic concurrency (see docs/review.md)."""

from __future__ import annotations

import re
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftprep.checks.base import Action, Decision
from ftprep.decisions import Ledger
from ftprep.examples import Example
from ftprep.project import Project, load_project
from ftprep.review import db
from ftprep.review.app import ReviewConfig, create_app
from ftprep.review.cli import review
from ftprep.review.demo import build_demo, demo_examples
from ftprep.store import Workspace

PW = "correct-horse-battery"
XSS = '<script>alert("x")</script><img src=x onerror="alert(1)">'


USERS = (
    ("ann", "annotator"),
    ("ann2", "annotator"),
    ("sen", "senior"),
    ("sen2", "senior"),
    ("boss", "admin"),
)


def _project(tmp: Path, users: tuple[tuple[str, str], ...] = USERS, **kw: Any) -> Project:
    project = build_demo(tmp / "proj", **kw)
    ws = Workspace(project.workspace_dir)
    db.init_db(ws.engine)
    for name, role in users:
        db.add_user(ws.engine, project.name, name, role, PW)
    ws.engine.dispose()
    return project


@pytest.fixture(scope="module", autouse=True)
def _cheap_hashing() -> Any:
    """Salted scrypt with a smaller work factor: the tests sign in ~60 times."""
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(db, "PASSWORD_METHOD", "scrypt:1024:8:1")
        yield


@pytest.fixture(scope="module")
def template(tmp_path_factory: Any, _cheap_hashing: Any) -> Path:
    """One demo project with accounts (scrypt hashing is slow on purpose: build it once)."""
    return _project(tmp_path_factory.mktemp("template")).root


@pytest.fixture
def project(template: Path, tmp_path: Path) -> Project:
    shutil.copytree(template, tmp_path / "proj")
    return load_project(tmp_path / "proj")


@pytest.fixture
def app(project: Project) -> Any:
    return create_app(project)


def csrf_of(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m, "page has no CSRF token"
    return m.group(1)


def version_of(html: str) -> str:
    m = re.search(r'name="version" value="(\d+)"', html)
    assert m
    return m.group(1)


def login(app: Any, user: str, password: str = PW) -> Any:
    c = app.test_client()
    r = c.get("/login")
    r = c.post(
        "/login", data={"username": user, "password": password, "csrf_token": csrf_of(r.text)}
    )
    assert r.status_code == 302, r.text
    return c


def ledger(project: Project) -> Ledger:
    return Ledger(Workspace(project.workspace_dir).engine)


def decide_form(c: Any, key: str, ex_id: str, check: str, **fields: str) -> Any:
    page = c.get(f"/queue/{key}/item", query_string={"id": ex_id, "check": check})
    assert page.status_code == 200, page.text
    data = {
        "csrf_token": csrf_of(page.text),
        "id": ex_id,
        "check": check,
        "version": version_of(page.text),
        **fields,
    }
    return c.post(f"/queue/{key}/item", data=data)


# ---------------------------------------------------------------------------- auth
def test_login_required_and_security_headers(app: Any) -> None:
    c = app.test_client()
    r = c.get("/queue/escalations")
    assert r.status_code == 302 and r.headers["Location"].startswith("/login")
    r = c.get("/login")
    csp = r.headers["Content-Security-Policy"]
    assert "default-src 'none'" in csp and "script-src" not in csp  # no script may run at all
    assert r.headers["X-Frame-Options"] == "DENY"
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert "style=" not in r.text and "<script" not in r.text
    assert c.post("/annotate/item", data={"id": "t01"}).status_code == 401


def test_wrong_password_csrf_and_throttle(app: Any) -> None:
    c = app.test_client()
    page = c.get("/login")
    tok = csrf_of(page.text)
    r = c.post("/login", data={"username": "sen", "password": "nope-nope", "csrf_token": tok})
    assert r.status_code == 401 and "wrong password" in r.text
    assert "ftprep_session" not in r.headers.get("Set-Cookie", "")
    # no CSRF token / a token that is not this browser's
    assert c.post("/login", data={"username": "sen", "password": PW}).status_code == 400
    assert (
        c.post(
            "/login", data={"username": "sen", "password": PW, "csrf_token": "forged"}
        ).status_code
        == 400
    )
    for _ in range(4):
        c.post(
            "/login",
            data={
                "username": "sen",
                "password": "bad-bad-bad",
                "csrf_token": csrf_of(c.get("/login").text),
            },
        )
    r = c.post(
        "/login",
        data={"username": "sen", "password": PW, "csrf_token": csrf_of(c.get("/login").text)},
    )
    assert r.status_code == 429  # five failures lock the name for the window
    login(app, "sen2")  # others are unaffected


def test_login_redirect_stays_on_this_site(app: Any) -> None:
    for target, expected in (
        ("/queue/quarantine", "/queue/quarantine"),
        ("//evil.example/x", "/"),
        ("https://evil.example/", "/"),
        ("/\\evil.example", "/"),
    ):
        c = app.test_client()
        r = c.post(
            "/login",
            data={
                "username": "ann",
                "password": PW,
                "next": target,
                "csrf_token": csrf_of(c.get("/login").text),
            },
        )
        assert r.status_code == 302 and r.headers["Location"] == expected, target


def test_password_hashes_are_salted_scrypt(project: Project) -> None:
    import sqlalchemy as sa

    engine = Workspace(project.workspace_dir).engine
    with engine.connect() as conn:
        hashes = [r.password_hash for r in conn.execute(sa.select(db.users_t))]
    assert all(h.startswith("scrypt:") and PW not in h for h in hashes)
    assert len(set(hashes)) == len(hashes)  # same password, different salts


def test_post_without_or_with_wrong_csrf_token_is_rejected(app: Any, project: Project) -> None:
    c = login(app, "sen")
    form = {"id": "t07", "check": "labels.agreement", "version": "1", "choice": "exclude"}
    assert c.post("/queue/escalations/item", data=form).status_code == 400
    assert (
        c.post("/queue/escalations/item", data={**form, "csrf_token": "x" * 43}).status_code == 400
    )
    other = login(app, "sen2")  # another session's valid token is not this session's
    tok = csrf_of(other.get("/").text)
    assert c.post("/queue/escalations/item", data={**form, "csrf_token": tok}).status_code == 400
    assert ledger(project).get("t07", "labels.agreement").actor_kind == "auto"  # type: ignore[union-attr]


def test_logout_ends_the_session_server_side(app: Any) -> None:
    c = login(app, "ann")
    token = c.get_cookie("ftprep_session").value
    assert c.post("/logout", data={"csrf_token": csrf_of(c.get("/").text)}).status_code == 302
    c2 = app.test_client()
    c2.set_cookie("ftprep_session", token)  # replaying the old cookie
    assert c2.get("/annotate").status_code == 302


def test_session_expires(project: Project) -> None:
    app = create_app(project, config=ReviewConfig(session_hours=1.0 / 3600))
    c = login(app, "ann")
    assert c.get("/annotate").status_code == 200
    time.sleep(1.3)
    assert c.get("/annotate").status_code == 302


def test_role_change_and_disable_take_effect_at_once(app: Any, project: Project) -> None:
    engine = Workspace(project.workspace_dir).engine
    c = login(app, "sen")
    assert c.get("/queue/escalations").status_code == 200
    db.update_user(engine, project.name, "sen", role="annotator")
    assert c.get("/queue/escalations").status_code == 302  # sessions ended: sign in again
    c = login(app, "sen")
    assert c.get("/queue/escalations").status_code == 403
    db.update_user(engine, project.name, "sen", active=False)
    r = app.test_client().get("/login")
    r2 = app.test_client().post(
        "/login", data={"username": "sen", "password": PW, "csrf_token": csrf_of(r.text)}
    )
    assert r2.status_code in (400, 401)


# ---------------------------------------------------------------------------- roles, projects
@pytest.mark.parametrize(
    "path",
    [
        "/queue/escalations",
        "/queue/label-errors",
        "/queue/quarantine",
        "/queue/other",
        "/admin/users",
        "/queue/escalations/item?id=t07&check=labels.agreement",
    ],
)
def test_annotator_gets_403_on_senior_pages(app: Any, path: str) -> None:
    c = login(app, "ann")
    assert c.get(path).status_code == 403


def test_annotator_cannot_arbitrate(app: Any, project: Project) -> None:
    c = login(app, "ann")
    tok = csrf_of(c.get("/annotate").text)
    r = c.post(
        "/queue/escalations/item",
        data={
            "csrf_token": tok,
            "id": "t07",
            "check": "labels.agreement",
            "version": "1",
            "choice": "label",
            "label": "refund",
        },
    )
    assert r.status_code == 403
    e = ledger(project).get("t07", "labels.agreement")
    assert e is not None and e.action == Action.ESCALATE and e.actor_kind == "auto"
    assert "Escalations" not in c.get("/").text.split("<main>")[0]  # not even in the menu


def test_users_of_another_project_cannot_sign_in_or_reuse_a_session(project: Project) -> None:
    engine = Workspace(project.workspace_dir).engine
    db.add_user(engine, "other-project", "mallory", "admin", PW)
    app = create_app(project)
    c = app.test_client()
    r = c.post(
        "/login",
        data={"username": "mallory", "password": PW, "csrf_token": csrf_of(c.get("/login").text)},
    )
    assert r.status_code == 401
    mallory = db.authenticate(engine, "other-project", "mallory", PW)
    assert mallory is not None
    token, _ = db.create_session(engine, mallory, 1.0)
    c.set_cookie("ftprep_session", token)
    assert c.get("/queue/escalations").status_code == 302
    # annotations are kept per project: the other project's never show up here
    db.save_annotation(
        engine,
        "other-project",
        "t02",
        "mallory",
        label="secret",
        rating=None,
        text=None,
        reason="other project",
        expected_version=0,
    )
    c = login(app, "sen")
    page = c.get("/queue/escalations/item", query_string={"id": "t07", "check": "labels.agreement"})
    assert "secret" not in page.text
    assert db.annotations_table(engine, project.name).num_rows == 0
    # ledger rows about examples outside this project's dataset (another project sharing the
    # database) are neither listed, nor counted, nor openable
    ledger(project).replace_auto(
        "labels.agreement",
        [
            Decision("t07", Action.ESCALATE, "low_agreement"),
            Decision("t09", Action.ESCALATE, "low_agreement"),
            Decision("foreign-42", Action.ESCALATE, "low_agreement", "foreign detail"),
        ],
        run_id="x",
    )
    listing = c.get("/queue/escalations")
    assert "foreign" not in listing.text and "2 open item(s)" in listing.text
    assert 'id="count-escalations">2<' in c.get("/").text
    assert c.get("/queue/escalations/item?id=foreign-42&check=labels.agreement").status_code == 404


def test_admin_manages_users_in_the_app(app: Any, project: Project) -> None:
    c = login(app, "boss")
    tok = csrf_of(c.get("/admin/users").text)
    r = c.post(
        "/admin/users",
        data={
            "csrf_token": tok,
            "op": "add",
            "username": "newbie",
            "role": "annotator",
            "password": "short",
        },
    )
    assert r.status_code == 400 and "at least 8" in r.text
    r = c.post(
        "/admin/users",
        data={
            "csrf_token": tok,
            "op": "add",
            "username": "newbie",
            "role": "annotator",
            "password": PW,
        },
    )
    assert r.status_code == 200 and "Added newbie" in r.text
    r = c.post(
        "/admin/users",
        data={"csrf_token": tok, "op": "role", "username": "newbie", "role": "senior"},
    )
    assert "newbie is now senior" in r.text
    login(app, "newbie")
    assert (
        db.get_user(Workspace(project.workspace_dir).engine, project.name, "newbie").role
        == "senior"
    )  # type: ignore[union-attr]


# ---------------------------------------------------------------------------- escaping
def test_dataset_strings_are_escaped_everywhere(tmp_path: Path) -> None:
    exs = demo_examples()
    exs[6] = Example(
        id="t07",
        messages=[{"role": "user", "content": XSS}, {"role": "assistant", "content": XSS}],
        source="tickets",
        label=XSS,
        area=XSS,
        spec_version=XSS,
    )
    project = _project(
        tmp_path,
        users=(("boss", "admin"),),
        examples=exs,
        votes=[("t07", XSS, XSS, XSS), ("t07", "ann_b", "refund", "")],
        decisions=[
            ("labels.agreement", Decision("t07", Action.ESCALATE, XSS, XSS)),
            ("spec.quarantine", Decision("t07", Action.QUARANTINE, "q", XSS)),
            ("labels.errors", Decision("t07", Action.REVIEW, "e", XSS)),
        ],
    )
    app = create_app(project)
    c = login(app, "boss")
    pages = [
        c.get(p).text
        for p in (
            "/annotate",
            "/annotate/item?id=t07",
            "/queue/escalations",
            "/queue/quarantine",
            "/queue/label-errors",
            "/queue/escalations/item?id=t07&check=labels.agreement",
            "/queue/quarantine/item?id=t07&check=spec.quarantine",
            "/queue/label-errors/item?id=t07&check=labels.errors",
        )
    ]
    for html in pages:
        assert "<script>alert" not in html and "<img src=x" not in html
        assert "<script" not in html  # the app itself ships no script either
    assert any("&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in h for h in pages)


# ---------------------------------------------------------------------------- annotate
def test_annotate_queue_saves_exports_and_shows_the_standard(app: Any, project: Project) -> None:
    c = login(app, "ann")
    lst = c.get("/annotate")
    ids = re.findall(r'class="mono item-link" href="/annotate/item\?id=([^"]+)"', lst.text)
    assert ids[:2] == ["t04", "t11"]  # flagged as likely label errors: first
    assert "t01" in ids  # two labels so far, three wanted
    assert "t07" not in ids  # three labels already: it waits for a senior expert, not for more
    page = c.get("/annotate/item?id=t04")
    assert "Labelling standard" in page.text and "Rubric" in page.text
    assert "area refunds" in page.text and "14 days" in page.text  # the area's criteria
    r = c.post(
        "/annotate/item",
        data={
            "csrf_token": csrf_of(page.text),
            "id": "t04",
            "version": "0",
            "label": "shipping",
            "reason": "asks about size",
        },
    )
    assert r.status_code == 302 and "saved=t04" in r.headers["Location"]
    a = db.get_annotation(Workspace(project.workspace_dir).engine, project.name, "t04", "ann")
    assert a is not None and a.label == "shipping" and a.version == 1
    exported = Workspace(project.workspace_dir).load_table("review_annotations")
    assert exported is not None
    assert exported.column_names == [
        "example_id",
        "annotator",
        "label",
        "rating",
        "text",
        "timestamp",
        "reason",
    ]
    assert exported.to_pylist()[0]["label"] == "shipping"
    assert "t04" not in c.get("/annotate").text  # done by this annotator
    # a label typed in "other" is accepted; an empty submission is not
    page = c.get("/annotate/item?id=t05")
    r = c.post(
        "/annotate/item", data={"csrf_token": csrf_of(page.text), "id": "t05", "version": "0"}
    )
    assert r.status_code == 400 and "Choose or type a label" in r.text


@pytest.mark.parametrize("kind", ["rating", "text"])
def test_rating_and_text_annotations(project: Project, kind: str) -> None:
    y = project.root / "ftprep.yaml"
    y.write_text(y.read_text().replace("kind: label", f"kind: {kind}"))
    app = create_app(load_project(project.root))
    c = login(app, "ann")
    page = c.get("/annotate/item?id=t05")
    tok = csrf_of(page.text)
    engine = Workspace(project.workspace_dir).engine
    if kind == "rating":
        assert 'name="rating"' in page.text
        bad = c.post(
            "/annotate/item", data={"csrf_token": tok, "id": "t05", "version": "0", "rating": "nan"}
        )
        assert bad.status_code == 400 and "number" in bad.text
        ok = c.post(
            "/annotate/item", data={"csrf_token": tok, "id": "t05", "version": "0", "rating": "4"}
        )
        assert ok.status_code == 302
        got = db.get_annotation(engine, project.name, "t05", "ann")
        assert got is not None and got.rating == 4.0 and got.label is None
    else:
        assert 'value="corrected"' in page.text and "Corrected output" in page.text
        bad = c.post(
            "/annotate/item",
            data={"csrf_token": tok, "id": "t05", "version": "0", "label": "corrected", "text": ""},
        )
        assert bad.status_code == 400 and "corrected output" in bad.text
        ok = c.post(
            "/annotate/item",
            data={
                "csrf_token": tok,
                "id": "t05",
                "version": "0",
                "label": "corrected",
                "text": "shipping",
            },
        )
        assert ok.status_code == 302
        got = db.get_annotation(engine, project.name, "t05", "ann")
        assert got is not None and got.label == "corrected" and got.text == "shipping"


def test_annotation_edit_conflict_between_two_sessions(app: Any, project: Project) -> None:
    a1, a2 = login(app, "ann"), login(app, "ann")
    p1 = a1.get("/annotate/item?id=t03")
    p2 = a2.get("/annotate/item?id=t03")
    r1 = a1.post(
        "/annotate/item",
        data={
            "csrf_token": csrf_of(p1.text),
            "id": "t03",
            "version": version_of(p1.text),
            "label": "account",
        },
    )
    assert r1.status_code == 302
    r2 = a2.post(
        "/annotate/item",
        data={
            "csrf_token": csrf_of(p2.text),
            "id": "t03",
            "version": version_of(p2.text),
            "label": "refund",
        },
    )
    assert r2.status_code == 409 and "changed elsewhere" in r2.text and "account" in r2.text
    engine = Workspace(project.workspace_dir).engine
    assert db.get_annotation(engine, project.name, "t03", "ann").label == "account"  # type: ignore[union-attr]


def test_export_annotations_cli(app: Any, project: Project, tmp_path: Path) -> None:
    c = login(app, "ann")
    page = c.get("/annotate/item?id=t02")
    c.post(
        "/annotate/item",
        data={"csrf_token": csrf_of(page.text), "id": "t02", "version": "0", "label": "shipping"},
    )
    out = tmp_path / "app_labels.jsonl"
    r = CliRunner().invoke(
        review, ["export-annotations", "-p", str(project.root), "--out", str(out)]
    )
    assert r.exit_code == 0, r.output
    import json

    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [
        {
            "example_id": "t02",
            "annotator": "ann",
            "label": "shipping",
            "rating": None,
            "text": None,
            "timestamp": rows[0]["timestamp"],
            "reason": None,
        }
    ]


# ---------------------------------------------------------------------------- decisions
def test_arbitration_shows_every_vote_and_writes_the_ledger(app: Any, project: Project) -> None:
    c = login(app, "sen")
    page = c.get("/queue/escalations/item?id=t07&check=labels.agreement")
    assert page.status_code == 200
    for who, why in (
        ("ann_a", "asks for a refund"),
        ("ann_b", "damage in transit"),
        ("ann_c", "refund or replacement"),
    ):
        assert who in page.text and why in page.text
    assert "refund × 2" in page.text and "shipping × 1" in page.text
    r = decide_form(
        c,
        "escalations",
        "t07",
        "labels.agreement",
        choice="label",
        label="shipping",
        note="damage in transit is shipping",
    )
    assert r.status_code == 302
    e = ledger(project).get("t07", "labels.agreement")
    assert e is not None and e.action == Action.INCLUDE and e.actor == "sen"
    assert e.actor_kind == "human" and e.patch == {"label": "shipping"} and e.reason == "arbitrated"
    hist = ledger(project).history("t07")
    assert hist[-1]["prev_action"] == "escalate" and hist[-1]["actor"] == "sen"
    assert "t07" not in c.get("/queue/escalations").text  # resolved
    # a final label is required
    r = decide_form(c, "escalations", "t09", "labels.agreement", choice="label")
    assert r.status_code == 400 and "final label" in r.text


def test_app_label_replaces_the_imported_copy_of_the_same_annotator(
    app: Any, project: Project
) -> None:
    engine = Workspace(project.workspace_dir).engine
    db.save_annotation(
        engine,
        project.name,
        "t07",
        "ann_a",
        label="account",
        rating=None,
        text=None,
        reason="changed my mind",
        expected_version=0,
    )
    page = login(app, "sen").get("/queue/escalations/item?id=t07&check=labels.agreement")
    rows = re.findall(
        r'<tr class="vote"><td class="mono">([^<]*)</td><td class="mono vote-label">([^<]*)</td>',
        page.text,
    )
    assert sorted(rows) == [("ann_a", "account"), ("ann_b", "shipping"), ("ann_c", "refund")]


def test_arbitrating_conflicting_corrections_sets_the_output(app: Any, project: Project) -> None:
    c = login(app, "sen")
    r = decide_form(
        c,
        "escalations",
        "t09",
        "labels.agreement",
        choice="label",
        response="shipping (late delivery)",
    )
    assert r.status_code == 302
    e = ledger(project).get("t09", "labels.agreement")
    assert e is not None and e.patch == {"response": "shipping (late delivery)"}


def test_label_error_and_quarantine_decisions(app: Any, project: Project) -> None:
    c = login(app, "sen")
    assert (
        decide_form(
            c, "label-errors", "t04", "labels.errors", choice="relabel", label="shipping"
        ).status_code
        == 302
    )
    assert (
        decide_form(c, "label-errors", "t11", "labels.errors", choice="exclude").status_code == 302
    )
    page = c.get("/queue/quarantine/item?id=t01&check=spec.quarantine")
    assert "Current spec — area refunds" in page.text and "14 days" in page.text
    assert (
        decide_form(
            c,
            "quarantine",
            "t01",
            "spec.quarantine",
            choice="relabel",
            response="refund (approved: within 14 days)",
        ).status_code
        == 302
    )
    assert (
        decide_form(c, "quarantine", "t10", "spec.quarantine", choice="reject").status_code == 302
    )
    r = decide_form(c, "quarantine", "t10", "spec.quarantine", choice="relabel")
    assert r.status_code == 400  # nothing changed
    lg = ledger(project)
    got = {
        (e.example_id, e.check): (e.action, e.reason, e.patch)
        for e in lg.entries()
        if e.actor_kind == "human"
    }
    assert got == {
        ("t04", "labels.errors"): (Action.INCLUDE, "relabelled", {"label": "shipping"}),
        ("t11", "labels.errors"): (Action.EXCLUDE, "label_error_excluded", None),
        ("t01", "spec.quarantine"): (
            Action.INCLUDE,
            "quarantine_relabelled",
            {"response": "refund (approved: within 14 days)"},
        ),
        ("t10", "spec.quarantine"): (Action.EXCLUDE, "quarantine_rejected", None),
    }


def test_quarantine_shows_the_criteria_then_and_now(project: Project) -> None:
    spec_mod = pytest.importorskip("ftprep.spec")
    spec_mod.lock(project, note="first locked version")
    spec_file = project.root / "spec.md"
    spec_file.write_text(spec_file.read_text().replace("within 14 days", "within 7 days"))
    spec_mod.bump(project, note="refund window shortened", areas=["refunds"])
    app = create_app(load_project(project.root))
    page = login(app, "sen").get("/queue/quarantine/item?id=t10&check=spec.quarantine")
    assert page.status_code == 200
    current = page.text.split('id="current-area-text">')[1].split("</div>")[0]
    old = page.text.split('id="old-area-text">')[1].split("</div>")[0]
    assert "within 7 days" in current and "within 14 days" in old  # t10 was collected under v2
    assert "As collected — version 2" in page.text


def test_queue_follows_a_new_audit_immediately(app: Any, project: Project) -> None:
    c = login(app, "sen")
    assert "t07" in c.get("/queue/escalations").text
    # a re-audit swaps one escalation for another: same count, same versions, same second
    ledger(project).replace_auto(
        "labels.agreement",
        [
            Decision("t05", Action.ESCALATE, "low_agreement"),
            Decision("t09", Action.ESCALATE, "low_agreement"),
        ],
        run_id="20991231T000000-abcdef",
    )
    listing = c.get("/queue/escalations").text
    assert "t05" in listing and "t07" not in listing


def test_an_item_is_only_decided_through_its_own_queue(app: Any, project: Project) -> None:
    c = login(app, "sen")
    # a quarantined example cannot be "arbitrated" with a label through the escalation queue
    assert c.get("/queue/escalations/item?id=t01&check=spec.quarantine").status_code == 404
    tok = csrf_of(c.get("/").text)
    r = c.post(
        "/queue/escalations/item",
        data={
            "csrf_token": tok,
            "id": "t01",
            "check": "spec.quarantine",
            "version": "1",
            "choice": "label",
            "label": "x",
        },
    )
    assert r.status_code == 404
    assert ledger(project).get("t01", "spec.quarantine").actor_kind == "auto"  # type: ignore[union-attr]
    assert c.get("/queue/nope").status_code == 404


def test_concurrent_reviewers_never_lose_an_update(app: Any, project: Project) -> None:
    """Two seniors open the same escalation; the second save is refused with the first one's
    decision shown, and nothing is overwritten until the second resubmits knowingly."""
    a, b = login(app, "sen"), login(app, "sen2")
    url = "/queue/escalations/item?id=t09&check=labels.agreement"
    pa_, pb = a.get(url), b.get(url)
    ra = a.post(
        "/queue/escalations/item",
        data={
            "csrf_token": csrf_of(pa_.text),
            "id": "t09",
            "check": "labels.agreement",
            "version": version_of(pa_.text),
            "choice": "label",
            "label": "shipping",
            "note": "A",
        },
    )
    assert ra.status_code == 302
    rb = b.post(
        "/queue/escalations/item",
        data={
            "csrf_token": csrf_of(pb.text),
            "id": "t09",
            "check": "labels.agreement",
            "version": version_of(pb.text),
            "choice": "label",
            "label": "refund",
            "note": "B",
        },
    )
    assert rb.status_code == 409
    assert "Someone else changed this item" in rb.text and "sen" in rb.text
    assert "shipping" in rb.text  # the new value is shown
    assert 'value="refund" checked' in rb.text  # B's input is kept
    e = ledger(project).get("t09", "labels.agreement")
    assert e is not None and e.patch == {"label": "shipping"} and e.actor == "sen"
    # B resubmits deliberately on top of the version now shown: both decisions stay in history
    rb2 = b.post(
        "/queue/escalations/item",
        data={
            "csrf_token": csrf_of(rb.text),
            "id": "t09",
            "check": "labels.agreement",
            "version": version_of(rb.text),
            "choice": "label",
            "label": "refund",
            "note": "B2",
        },
    )
    assert rb2.status_code == 302
    hist = [h for h in ledger(project).history("t09") if h["actor_kind"] == "human"]
    assert [(h["actor"], h["detail"]) for h in hist] == [("sen", "A"), ("sen2", "B2")]


def test_simultaneous_saves_exactly_one_wins(app: Any, project: Project) -> None:
    clients = [login(app, n) for n in ("sen", "sen2", "boss")]
    pages = [c.get("/queue/quarantine/item?id=t01&check=spec.quarantine") for c in clients]
    barrier = threading.Barrier(len(clients))
    codes: list[int] = [0] * len(clients)

    def post(i: int) -> None:
        barrier.wait()
        codes[i] = (
            clients[i]
            .post(
                "/queue/quarantine/item",
                data={
                    "csrf_token": csrf_of(pages[i].text),
                    "id": "t01",
                    "check": "spec.quarantine",
                    "version": version_of(pages[i].text),
                    "choice": "accept",
                    "note": f"r{i}",
                },
            )
            .status_code
        )

    threads = [threading.Thread(target=post, args=(i,)) for i in range(len(clients))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(codes) == [302, 409, 409]
    hist = [h for h in ledger(project).history("t01") if h["actor_kind"] == "human"]
    assert len(hist) == 1
    e = ledger(project).get("t01", "spec.quarantine")
    assert e is not None and e.version == 2 and e.detail == hist[0]["detail"]


_INV: dict[str, Any] = {}


def _reset_t12(project: Project) -> None:
    from ftprep.decisions import decisions_t, history_t

    lg = ledger(project)
    with lg.engine.begin() as conn:
        conn.execute(decisions_t.delete().where(decisions_t.c.example_id == "t12"))
        conn.execute(history_t.delete().where(history_t.c.example_id == "t12"))
    lg.replace_auto(
        "format.length", [Decision("t12", Action.REVIEW, "very_short_output", "auto")], run_id="r"
    )


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    st.lists(
        st.tuples(st.integers(0, 1), st.booleans(), st.sampled_from(["keep", "exclude"])),
        min_size=1,
        max_size=6,
    )
)
def test_interleaved_reviewers_invariant(
    project: Project, steps: list[tuple[int, bool, str]]
) -> None:
    """Any interleaving of two reviewers who sometimes reload: a save succeeds exactly when the
    reviewer saw the current version, every success is in the history, and the ledger holds the
    last success."""
    if _INV.get("root") != project.root:  # one app and two sessions for all generated cases
        app = create_app(project)
        _INV.update(root=project.root, clients=[login(app, "sen"), login(app, "sen2")])
    clients = _INV["clients"]
    _reset_t12(project)
    url = "/queue/other/item?id=t12&check=format.length"
    seen = [version_of(c.get(url).text) for c in clients]
    tokens = [csrf_of(c.get("/").text) for c in clients]
    successes: list[str] = []
    for n, (who, reload_first, choice) in enumerate(steps):
        if reload_first:
            seen[who] = version_of(clients[who].get(url).text)
        current = ledger(project).get("t12", "format.length")
        assert current is not None
        r = clients[who].post(
            "/queue/other/item",
            data={
                "csrf_token": tokens[who],
                "id": "t12",
                "check": "format.length",
                "version": seen[who],
                "choice": choice,
                "note": f"step{n}",
            },
        )
        if int(seen[who]) == current.version:
            assert r.status_code == 302
            successes.append(f"step{n}")
            seen[who] = str(current.version + 1)
        else:
            assert r.status_code == 409
            seen[who] = version_of(r.text)  # the conflict page shows the current version
    hist = [h["detail"] for h in ledger(project).history("t12") if h["actor_kind"] == "human"]
    assert hist == successes
    final = ledger(project).get("t12", "format.length")
    assert final is not None
    assert final.detail == (successes[-1] if successes else "auto")


# ---------------------------------------------------------------------------- build
def test_clearing_quarantine_in_the_app_changes_what_build_writes(project: Project) -> None:
    from ftprep import api
    from ftprep.build import build

    api.audit(project, only=["format"])  # the build needs an audit; which checks ran is moot
    # the audit replaced the demo's automatic decisions; put the queue items back as a
    # spec.quarantine / labels.agreement run would
    lg = ledger(project)
    lg.replace_auto(
        "spec.quarantine",
        [
            Decision("t01", Action.QUARANTINE, "superseded_spec_area"),
            Decision("t10", Action.QUARANTINE, "superseded_spec_area"),
        ],
        run_id="r",
    )
    lg.replace_auto(
        "labels.agreement", [Decision("t07", Action.ESCALATE, "low_agreement")], run_id="r"
    )

    def built() -> tuple[set[str], str]:
        res = build(project)
        ids = {i for split in res.manifest["splits"].values() for i in split["ids"]}
        text = "".join(
            (res.out_dir / f"{s}.jsonl").read_text() for s in ("train", "validation", "test")
        )
        return ids, text

    before, _ = built()
    assert not {"t01", "t10", "t07"} & before
    app = create_app(project)
    c = login(app, "sen")
    assert (
        decide_form(
            c, "quarantine", "t01", "spec.quarantine", choice="relabel", response="refund approved"
        ).status_code
        == 302
    )
    assert (
        decide_form(c, "quarantine", "t10", "spec.quarantine", choice="reject").status_code == 302
    )
    assert (
        decide_form(
            c, "escalations", "t07", "labels.agreement", choice="label", label="shipping"
        ).status_code
        == 302
    )
    after, text = built()
    assert after == before | {"t01", "t07"}
    assert "refund approved" in text  # the edited output is what build writes


# ---------------------------------------------------------------------------- CLI
def test_add_user_cli(project: Project) -> None:
    runner = CliRunner()
    r = runner.invoke(
        review,
        ["add-user", "carol", "--role", "senior", "--password-stdin", "-p", str(project.root)],
        input=PW + "\n",
    )
    assert r.exit_code == 0, r.output
    engine = Workspace(project.workspace_dir).engine
    assert db.authenticate(engine, project.name, "carol", PW) is not None
    assert db.authenticate(engine, project.name, "carol", PW + "x") is None
    r = runner.invoke(
        review,
        ["add-user", "carol", "--role", "senior", "--password-stdin", "-p", str(project.root)],
        input=PW + "\n",
    )
    assert r.exit_code == 2 and "already exists" in r.output
    r = runner.invoke(
        review,
        ["add-user", "dave", "--role", "boss", "--password-stdin", "-p", str(project.root)],
        input=PW + "\n",
    )
    assert r.exit_code == 2
    r = runner.invoke(
        review,
        ["add-user", "dave", "--role", "annotator", "--password-stdin", "-p", str(project.root)],
        input="short\n",
    )
    assert r.exit_code == 2 and "at least 8" in r.output
    r = runner.invoke(review, ["set-user", "carol", "--disable", "-p", str(project.root)])
    assert r.exit_code == 0 and db.authenticate(engine, project.name, "carol", PW) is None
    r = runner.invoke(review, ["users", "-p", str(project.root)])
    assert "carol" in r.output and "disabled" in r.output
