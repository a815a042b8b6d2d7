"""End-to-end browser tests of the review app: Playwright drives Debian's Chromium
(``/usr/bin/chromium``; install with ``.ci/setup_browser.sh``, never ``playwright install``).

Covers sign-in, labelling, escalation and arbitration, roles (403), concurrent reviewers and
that a ``<script>`` in the data never executes."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

CHROMIUM = Path("/usr/bin/chromium")
if not CHROMIUM.exists():
    pytest.skip("Debian chromium is not installed (.ci/setup_browser.sh)", allow_module_level=True)
sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed")

from werkzeug.serving import make_server  # noqa: E402

from ftprep.checks.base import Action, Decision  # noqa: E402
from ftprep.decisions import Ledger  # noqa: E402
from ftprep.examples import Example  # noqa: E402
from ftprep.review import db  # noqa: E402
from ftprep.review.app import create_app  # noqa: E402
from ftprep.review.demo import VOTES, build_demo, demo_examples  # noqa: E402
from ftprep.store import Workspace  # noqa: E402

pytestmark = pytest.mark.browser
PW = "correct-horse-battery"
XSS = '<script>window.__xss = 1; alert("xss")</script><img src=x onerror="window.__xss = 2; alert(2)">'
LAUNCH_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def server(tmp_path_factory: Any) -> Iterator[dict[str, Any]]:
    mp = pytest.MonkeyPatch()
    mp.setattr(db, "PASSWORD_METHOD", "scrypt:1024:8:1")  # salted scrypt, smaller work factor
    exs = demo_examples()
    exs[11] = Example(
        id="t12",
        messages=[
            {"role": "user", "content": "Say hi " + XSS},
            {"role": "assistant", "content": XSS},
        ],
        source="tickets",
        label=XSS,
        area="account",
        file="x",
        line=12,
    )
    # t09 and t12 are escalated with fewer than three labels: they head the annotate queue
    votes = [v for v in VOTES if not (v[0] == "t09" and v[1] == "ann_c")]
    votes.append(("t12", "ann_x", XSS, XSS))
    decisions = [
        ("labels.agreement", Decision("t07", Action.ESCALATE, "low_agreement", "2 of 3 agree")),
        ("labels.agreement", Decision("t09", Action.ESCALATE, "low_agreement", "1 of 2 agree")),
        ("labels.agreement", Decision("t12", Action.ESCALATE, "low_agreement", XSS)),
        (
            "spec.quarantine",
            Decision(
                "t01",
                Action.QUARANTINE,
                "superseded_spec_area",
                "collected under spec version 1; area refunds",
            ),
        ),
    ]
    project = build_demo(
        tmp_path_factory.mktemp("browser") / "proj", votes=votes, examples=exs, decisions=decisions
    )
    engine = Workspace(project.workspace_dir).engine
    db.init_db(engine)
    for name, role in (("ann", "annotator"), ("sen", "senior"), ("sen2", "senior")):
        db.add_user(engine, project.name, name, role, PW)
    app = create_app(project)
    srv = make_server("127.0.0.1", 0, app, threaded=True)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    yield {
        "url": f"http://127.0.0.1:{srv.server_port}",
        "project": project,
        "ledger": Ledger(engine),
        "engine": engine,
    }
    srv.shutdown()
    thread.join(timeout=10)
    mp.undo()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=str(CHROMIUM), args=LAUNCH_ARGS)
        yield b
        b.close()


@pytest.fixture
def new_page(browser: Any) -> Iterator[Any]:
    contexts: list[Any] = []

    def make() -> Any:
        ctx = browser.new_context()
        contexts.append(ctx)
        page = ctx.new_page()
        page.set_default_timeout(15000)
        dialogs: list[str] = []
        page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
        page.dialogs = dialogs  # type: ignore[attr-defined]
        return page

    yield make
    for ctx in contexts:
        ctx.close()


def sign_in(page: Any, base: str, user: str, password: str = PW) -> None:
    page.goto(base + "/")
    assert "/login" in page.url
    page.fill("#username", user)
    page.fill("#password", password)
    page.click("#signin")
    page.wait_for_selector("#whoami")
    assert user in page.inner_text("#whoami")


def test_login_rejects_a_wrong_password(server: dict[str, Any], new_page: Any) -> None:
    page = new_page()
    page.goto(server["url"] + "/login")
    page.fill("#username", "sen")
    page.fill("#password", "not-the-password")
    page.click("#signin")
    assert "wrong password" in page.inner_text("#login-error")
    assert page.query_selector("#whoami") is None


def test_label_then_escalate_then_arbitrate(server: dict[str, Any], new_page: Any) -> None:
    base, lg = server["url"], server["ledger"]
    # 1. an annotator labels the escalated item, with the standard beside it
    ann = new_page()
    sign_in(ann, base, "ann")
    ann.click("text=Annotate")
    links = ann.locator("a.item-link").all_inner_texts()
    assert set(links[:2]) == {"t09", "t12"}  # escalated items with too few labels come first
    ann.click("a.item-link:has-text('t09')")
    assert "t09" in ann.inner_text("#example-id")
    assert "Rubric" in ann.inner_text("#standard")
    ann.check("input[name=label][value=shipping]")
    ann.fill("#reason", "the delivery is the complaint")
    ann.click("#save")
    ann.wait_for_selector("#saved")
    assert "t09" in ann.inner_text("#saved")
    # an annotator cannot open the escalation queue
    resp = ann.goto(base + "/queue/escalations")
    assert resp is not None and resp.status == 403
    assert "Forbidden" in ann.inner_text("#error-title")
    # 2. a senior expert sees every label and reason side by side, the app's included
    sen = new_page()
    sign_in(sen, base, "sen")
    sen.click("header >> text=Escalations")
    sen.click("a.item-link:has-text('t09')")
    votes = sen.inner_text("#votes")
    for who, why in (
        ("ann_a", "the complaint is the late delivery"),
        ("ann_b", "wants the fee back"),
        ("ann", "the delivery is the complaint"),
    ):
        assert who in votes and why in votes
    # 3. arbitration writes the ledger with who and the previous value
    sen.check("#choice-label")
    sen.check("input[name=label][value=shipping]")
    sen.fill("#note", "late delivery is a shipping issue")
    sen.click("#decide")
    sen.wait_for_selector("#saved")
    e = lg.get("t09", "labels.agreement")
    assert e is not None and e.action == Action.INCLUDE and e.actor == "sen"
    assert e.patch == {"label": "shipping"} and e.detail == "late delivery is a shipping issue"
    assert lg.history("t09")[-1]["prev_action"] == "escalate"
    sen.goto(base + "/queue/escalations")
    assert "t09" not in sen.inner_text("main")


def test_two_reviewers_conflict_in_the_browser(server: dict[str, Any], new_page: Any) -> None:
    base, lg = server["url"], server["ledger"]
    a, b = new_page(), new_page()
    sign_in(a, base, "sen")
    sign_in(b, base, "sen2")
    url = base + "/queue/escalations/item?id=t07&check=labels.agreement"
    a.goto(url)
    b.goto(url)
    a.check("#choice-label")
    a.check("input[name=label][value=refund]")
    a.click("#decide")
    a.wait_for_selector("#saved")
    b.check("#choice-exclude")
    b.fill("#note", "unclear")
    b.click("#decide")
    b.wait_for_selector("#conflict")
    text = b.inner_text("#conflict")
    assert "Someone else changed this item" in text and "sen" in text and "refund" in text
    e = lg.get("t07", "labels.agreement")
    assert e is not None and e.action == Action.INCLUDE and e.patch == {"label": "refund"}
    assert b.is_checked("#choice-exclude")  # the second reviewer's input is kept


def test_script_in_the_data_never_executes(server: dict[str, Any], new_page: Any) -> None:
    base = server["url"]
    page = new_page()
    sign_in(page, base, "sen")
    for path in (
        "/annotate",
        "/annotate/item?id=t12",
        "/queue/escalations",
        "/queue/escalations/item?id=t12&check=labels.agreement",
    ):
        page.goto(base + path)
        page.wait_for_load_state("load")
        assert page.evaluate("typeof window.__xss") == "undefined", path
        assert page.query_selector("main script") is None
        assert page.query_selector("main img") is None
    assert page.dialogs == []  # type: ignore[attr-defined]
    # the payload is shown as text, exactly as the data has it
    assert "<script>window.__xss = 1" in page.inner_text("#example")
    assert "<script>window.__xss = 1" in page.inner_text("#entry-detail")


def test_quarantine_shows_the_current_spec_and_accepts(
    server: dict[str, Any], new_page: Any
) -> None:
    base, lg = server["url"], server["ledger"]
    page = new_page()
    sign_in(page, base, "sen2")
    page.goto(base + "/queue/quarantine")
    page.click("a.item-link:has-text('t01')")
    assert "14 days" in page.inner_text("#current-area-text")
    page.check("#choice-accept")
    page.click("#decide")
    page.wait_for_selector("#saved")
    e = lg.get("t01", "spec.quarantine")
    assert e is not None and e.action == Action.INCLUDE and e.reason == "quarantine_accepted"
    # sign out ends the session
    page.click("text=Sign out")
    page.goto(base + "/queue/quarantine")
    assert "/login" in page.url
