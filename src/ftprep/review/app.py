"""The review web app: a server-rendered Flask application (Jinja2 autoescaping, no JavaScript).

``create_app(project)`` serves one project. Routes:

==========================  ======================================================  ===========
``/login`` ``/logout``      sign in / out (server-side sessions, CSRF on every POST)  everyone
``/``                       queue overview                                          signed in
``/annotate``               items to annotate, the labelling standard beside each   annotate
``/queue/<key>``            escalations, label-errors, quarantine, other            see QUEUES
``/queue/<key>/item``       one item: evidence, history, decision form              see QUEUES
``/admin/users``            accounts of this project                                admin
==========================  ======================================================  ===========

Every decision is ``Ledger.decide(..., expected_version=<version shown on the page>)``; when
someone else decided first the page answers 409, says who changed what, shows the new value and
keeps the reviewer's input for a deliberate resubmit. Nothing is overwritten silently.
"""

from __future__ import annotations

import hmac
import math
import re
import secrets
import threading
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import sqlalchemy as sa
from flask import Flask, abort, g, redirect, render_template, request, url_for
from werkzeug.wrappers import Response

from ftprep.checks.base import Action
from ftprep.decisions import ConflictError, Ledger
from ftprep.project import Project
from ftprep.review import db
from ftprep.review.data import OUTCOMES, QUEUES, ReviewData
from ftprep.store import Workspace

SESSION_COOKIE = "ftprep_session"
PRELOGIN_COOKIE = "ftprep_login"
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'"
)
MAX_FIELD = 100_000  # characters accepted in one form field


@dataclass
class ReviewConfig:
    """Server settings (``ftprep review serve`` options)."""

    annotations_per_item: int = 3  # an example leaves the annotate queue with this many labels
    session_hours: float = 12.0  # a session expires this long after sign-in
    secure_cookies: bool = False  # set the Secure flag (serve behind HTTPS)
    login_attempts: int = 5  # failed sign-ins per user name and address ...
    login_window_s: float = 600.0  # ... within this window before sign-in is refused
    page_size: int = 50


class _Throttle:
    """Failed sign-ins per (user name, address) in a sliding window, in memory."""

    def __init__(self, attempts: int, window: float) -> None:
        self.attempts, self.window = attempts, window
        self._fails: dict[tuple[str, str], list[float]] = {}
        self._lock = threading.Lock()

    def blocked(self, key: tuple[str, str]) -> bool:
        with self._lock:
            t = time.time()
            recent = [x for x in self._fails.get(key, []) if t - x < self.window]
            self._fails[key] = recent
            return len(recent) >= self.attempts

    def fail(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._fails.setdefault(key, []).append(time.time())

    def clear(self, key: tuple[str, str]) -> None:
        with self._lock:
            self._fails.pop(key, None)


def _field(name: str, default: str = "") -> str:
    v = request.form.get(name, default)
    if len(v) > MAX_FIELD:
        abort(413)
    return v


def _int(v: str | None, default: int = 0) -> int:
    try:
        return int(v) if v not in (None, "") else default
    except ValueError:
        abort(400)


def create_app(
    project: Project, *, database_url: str | None = None, config: ReviewConfig | None = None
) -> Flask:
    """The review app for ``project`` (its workspace DB unless ``database_url`` is given)."""
    cfg = config or ReviewConfig()
    ws = Workspace(project.workspace_dir, database_url or project.workspace.database_url)
    ledger = Ledger(ws.engine)
    db.init_db(ws.engine)
    data = ReviewData(project, ws, ledger)
    throttle = _Throttle(cfg.login_attempts, cfg.login_window_s)
    engine = ws.engine
    pname = project.name

    here = Path(__file__).parent
    app = Flask(
        __name__, template_folder=str(here / "templates"), static_folder=str(here / "static")
    )
    app.config.update(MAX_CONTENT_LENGTH=4 * 1024 * 1024, TEMPLATES_AUTO_RELOAD=False)
    app.jinja_env.autoescape = True  # every template, whatever its extension
    app.extensions["ftprep_review"] = {
        "data": data,
        "ledger": ledger,
        "workspace": ws,
        "config": cfg,
    }

    # ------------------------------------------------------------------ plumbing
    @app.before_request
    def _load_user() -> Response | None:
        data.begin_request()
        g.user = None
        g.csrf = ""
        token = request.cookies.get(SESSION_COOKIE, "")
        if token:
            got = db.load_session(engine, pname, token)
            if got is not None:
                g.user, g.csrf = got
        if request.endpoint in ("login", "static", "healthz", "favicon"):
            return None
        if g.user is None:
            if request.method == "GET":
                return redirect(url_for("login", next=request.full_path.rstrip("?")))
            abort(401)
        if request.method == "POST":
            sent = request.form.get("csrf_token", "")
            if not sent or not hmac.compare_digest(sent, g.csrf):
                abort(400, "missing or invalid CSRF token: reload the page and try again")
        return None

    @app.after_request
    def _headers(resp: Response) -> Response:
        h = resp.headers
        h["Content-Security-Policy"] = CSP
        h["X-Frame-Options"] = "DENY"
        h["X-Content-Type-Options"] = "nosniff"
        h["Referrer-Policy"] = "same-origin"
        h["Cross-Origin-Opener-Policy"] = "same-origin"
        if request.endpoint != "static":
            h["Cache-Control"] = "no-store"
        return resp

    @app.context_processor
    def _globals() -> dict[str, Any]:
        counts: dict[str, int] = {}
        if g.get("user") is not None:
            counts = data.queue_counts()
        return {
            "user": g.get("user"),
            "csrf_token": g.get("csrf", ""),
            "project_name": pname,
            "queues": QUEUES,
            "queue_counts": counts,
        }

    def need(permission: str) -> db.User:
        user: db.User = g.user
        if not user.can(permission):
            abort(403)
        return user

    for code, title in (
        (400, "Bad request"),
        (401, "Sign-in required"),
        (403, "Forbidden"),
        (404, "Not found"),
        (413, "Too large"),
        (429, "Too many attempts"),
    ):

        def handler(e: Any, code: int = code, title: str = title) -> tuple[str, int]:
            desc = getattr(e, "description", "") or ""
            return render_template("error.html", code=code, title=title, message=desc), code

        app.register_error_handler(code, handler)

    # ------------------------------------------------------------------ auth
    @app.get("/favicon.ico")
    def favicon() -> Response:
        return Response(status=204)

    @app.get("/healthz")
    def healthz() -> dict[str, str]:
        return {"status": "ok", "project": pname}

    def _safe_next(target: str | None) -> str:
        if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
            return target
        return url_for("home")

    @app.route("/login", methods=["GET", "POST"])
    def login() -> Any:
        error = ""
        status = 200
        nxt = _safe_next(request.values.get("next"))
        if request.method == "POST":
            pre = request.cookies.get(PRELOGIN_COOKIE, "")
            sent = request.form.get("csrf_token", "")
            username = _field("username").strip()
            key = (username, request.remote_addr or "")
            if not pre or not sent or not hmac.compare_digest(pre, sent):
                abort(400, "missing or invalid CSRF token: reload the page and try again")
            if throttle.blocked(key):
                error, status = "Too many failed attempts; wait a few minutes.", 429
            else:
                user = db.authenticate(engine, pname, username, _field("password"))
                if user is None:
                    throttle.fail(key)
                    error, status = "Unknown user name or wrong password for this project.", 401
                else:
                    throttle.clear(key)
                    token, _ = db.create_session(engine, user, cfg.session_hours)
                    resp = redirect(nxt)
                    resp.set_cookie(
                        SESSION_COOKIE,
                        token,
                        max_age=max(1, round(cfg.session_hours * 3600)),
                        httponly=True,
                        samesite="Lax",
                        secure=cfg.secure_cookies,
                    )
                    resp.delete_cookie(PRELOGIN_COOKIE)
                    return resp
        # one pre-login token per browser, reused across GETs: a second tab or a background
        # request (favicon) must not invalidate the form already on screen
        pre = request.cookies.get(PRELOGIN_COOKIE, "")
        if not re.fullmatch(r"[A-Za-z0-9_-]{32}", pre):
            pre = secrets.token_urlsafe(24)
        body = render_template("login.html", error=error, next=nxt, login_csrf=pre)
        resp = app.make_response((body, status))
        resp.set_cookie(
            PRELOGIN_COOKIE,
            pre,
            max_age=3600,
            httponly=True,
            samesite="Strict",
            secure=cfg.secure_cookies,
        )
        return resp

    @app.post("/logout")
    def logout() -> Response:
        db.end_session(engine, request.cookies.get(SESSION_COOKIE, ""))
        resp = redirect(url_for("login"))
        resp.delete_cookie(SESSION_COOKIE)
        return resp

    # ------------------------------------------------------------------ overview
    @app.get("/")
    def home() -> str:
        _, todo = data.to_annotate(g.user.username, cfg.annotations_per_item, limit=0)
        return render_template("home.html", todo=todo, train_loaded=data.train() is not None)

    # ------------------------------------------------------------------ annotate
    @app.get("/annotate")
    def annotate_list() -> str:
        user = need("annotate")
        ids, total = data.to_annotate(user.username, cfg.annotations_per_item, cfg.page_size)
        exs = data.examples(ids)
        return render_template(
            "annotate_list.html",
            items=[exs[i] for i in ids if i in exs],
            total=total,
            per_item=cfg.annotations_per_item,
            saved=request.args.get("saved", ""),
        )

    @app.route("/annotate/item", methods=["GET", "POST"])
    def annotate_item() -> Any:
        user = need("annotate")
        example_id = request.values.get("id", "")
        ex = data.example(example_id)
        if ex is None:
            abort(404, "no such example in the audited dataset")
        mine = db.get_annotation(engine, pname, example_id, user.username)
        kind = data.annotation_kind
        form: dict[str, Any] = {
            "label": mine.label if mine else "",
            "rating": "" if mine is None or mine.rating is None else f"{mine.rating:g}",
            "text": (mine.text if mine else None) or "",
            "reason": (mine.reason if mine else None) or "",
            "version": mine.version if mine else 0,
        }
        error, conflict, status = "", None, 200
        if request.method == "POST":
            form = {
                "label": _field("label").strip() or _field("label_other").strip(),
                "rating": _field("rating").strip(),
                "text": _field("text"),
                "reason": _field("reason").strip(),
                "version": _int(request.form.get("version")),
            }
            label: str | None = form["label"] or None
            rating: float | None = None
            text: str | None = form["text"] or None
            if form["rating"]:
                try:
                    rating = float(form["rating"])
                except ValueError:
                    rating = math.nan
                if not math.isfinite(rating):
                    error = "A rating must be a number."
            if kind == "rating" and rating is None and not error:
                error = "Give a rating."
            elif kind == "label" and label is None:
                error = "Choose or type a label."
            elif kind == "text" and label not in ("accept", "reject", "corrected"):
                error = "Choose accept, reject or corrected."
            elif kind == "text" and label == "corrected" and not text:
                error = "A correction needs the corrected output."
            if error:
                status = 400
            else:
                try:
                    db.save_annotation(
                        engine,
                        pname,
                        example_id,
                        user.username,
                        label=label,
                        rating=rating,
                        text=text if kind == "text" else None,
                        reason=form["reason"] or None,
                        expected_version=int(form["version"]),
                    )
                except db.AnnotationConflict as e:
                    conflict, status = e.current, 409
                    form["version"] = e.current.version if e.current else 0
                else:
                    data.export_annotations()
                    nxt, _ = data.to_annotate(user.username, cfg.annotations_per_item, limit=1)
                    if nxt:
                        return redirect(url_for("annotate_item", id=nxt[0], saved=example_id))
                    return redirect(url_for("annotate_list", saved=example_id))
        body = render_template(
            "annotate_item.html",
            ex=ex,
            kind=kind,
            form=form,
            error=error,
            conflict=conflict,
            choices=data.label_choices(),
            standard=data.standard(ex),
            saved=request.args.get("saved", ""),
        )
        return body, status

    # ------------------------------------------------------------------ ledger queues
    def _queue(key: str) -> Any:
        q = QUEUES.get(key)
        if q is None:
            abort(404)
        return q

    @app.get("/queue/<key>")
    def queue_list(key: str) -> str:
        q = _queue(key)
        need(q.permission)
        check = request.args.get("check", "")
        checks = data.queue_checks(q)
        chosen = [check] if check in checks else list(checks)
        total = sum(checks[c] for c in chosen)
        page = max(1, _int(request.args.get("page"), 1))
        n_pages = max(1, math.ceil(total / cfg.page_size))
        shown = data.queue_page(q, chosen, (page - 1) * cfg.page_size, cfg.page_size)
        exs = data.examples([e.example_id for e in shown])
        return render_template(
            "queue.html",
            q=q,
            entries=shown,
            exs=exs,
            total=total,
            checks=sorted(checks.items()),
            check=check,
            page=page,
            n_pages=n_pages,
            saved=request.args.get("saved", ""),
        )

    def _patch_from_form(
        key: str, choice: str, ex: Any, form: dict[str, Any]
    ) -> dict[str, Any] | str:
        """The patch a decision carries, or an error message."""
        if choice not in ("label", "relabel"):
            return {}
        patch: dict[str, Any] = {}
        if form["label"] and (choice == "label" or form["label"] != (ex.label if ex else None)):
            patch["label"] = form["label"]  # an arbitrated label is recorded even if unchanged
        if form["response"] and ex is not None and form["response"] != ex.response:
            patch["response"] = form["response"]  # e.g. the chosen one of conflicting corrections
        if patch:
            return patch
        if choice == "label":
            return "Choose or type the final label (or edit the output)."
        return "Relabel needs a new label or an edited output."

    @app.route("/queue/<key>/item", methods=["GET", "POST"])
    def queue_item(key: str) -> Any:
        q = _queue(key)
        user = need(q.permission)
        example_id = request.values.get("id", "")
        check = request.values.get("check", "")
        entry = None
        if q.matches_check(check) and data.in_dataset(example_id):
            entry = data.ledger.get(example_id, check)
        if entry is None:
            abort(404, "no decision for this example and check in this queue")
        ex = data.example(example_id)
        form: dict[str, Any] = {
            "choice": "",
            "label": "",
            "response": ex.response if ex else "",
            "note": "",
            "version": entry.version,
        }
        error, conflict, status = "", None, 200
        if request.method == "POST":
            form = {
                "choice": _field("choice"),
                "label": _field("label").strip() or _field("label_other").strip(),
                "response": _field("response"),
                "note": _field("note").strip(),
                "version": _int(request.form.get("version")),
            }
            if form["choice"] not in q.choices:
                error = "Choose one of the decisions."
            else:
                patch = _patch_from_form(key, form["choice"], ex, form)
                if isinstance(patch, str):
                    error = patch
                else:
                    action, reason = OUTCOMES[(key, form["choice"])]
                    try:
                        _decide(
                            example_id,
                            check,
                            action,
                            user.username,
                            reason=reason,
                            detail=form["note"],
                            patch=patch or None,
                            expected_version=int(form["version"]),
                        )
                    except ConflictError:
                        conflict = data.ledger.get(example_id, check)
                        entry = conflict or entry
                        form["version"] = entry.version
                        status = 409
                    else:
                        return redirect(_next_url(key, q, example_id))
            if error:
                status = 400
        votes = data.votes(example_id)
        tally = Counter(v.value for v in votes if v.value)
        options = [k for k, _ in tally.most_common()]
        for c in data.label_choices():
            if c not in options:
                options.append(c)
        body = render_template(
            "queue_item.html",
            q=q,
            entry=entry,
            ex=ex,
            votes=votes,
            tally=tally.most_common(),
            options=options,
            form=form,
            error=error,
            conflict=conflict,
            history=data.ledger.history(example_id),
            standard=data.standard(ex),
            quarantine=data.quarantine_context(ex, entry) if key == "quarantine" else None,
            others=[e for e in data.ledger.entries(example_ids=[example_id]) if e.check != check],
            resolved=entry.action not in q.actions,
        )
        return body, status

    def _decide(example_id: str, check: str, action: Action, actor: str, **kw: Any) -> None:
        """``Ledger.decide`` that retries a busy SQLite database and reports a concurrent first
        insert of the same (example, check) as the conflict it is."""
        try:
            db.retry_busy(lambda: data.ledger.decide(example_id, check, action, actor, **kw))
        except sa.exc.IntegrityError as e:
            raise ConflictError(f"{example_id} / {check} was decided concurrently") from e
        finally:
            data.begin_request()  # the open entries changed (or someone else's did)

    def _next_url(key: str, q: Any, done: str) -> str:
        for e in data.queue_page(q, list(data.queue_checks(q)), 0, 1):
            return url_for("queue_item", key=key, id=e.example_id, check=e.check, saved=done)
        return url_for("queue_list", key=key) + "?" + urlencode({"saved": done})

    # ------------------------------------------------------------------ users
    @app.route("/admin/users", methods=["GET", "POST"])
    def users() -> Any:
        need("users")
        message, error, status = "", "", 200
        if request.method == "POST":
            op = _field("op")
            name = _field("username").strip()
            try:
                if op == "add":
                    db.add_user(engine, pname, name, _field("role"), _field("password"))
                    message = f"Added {name}."
                elif op == "role":
                    db.update_user(engine, pname, name, role=_field("role"))
                    message = f"{name} is now {_field('role')}."
                elif op in ("disable", "enable"):
                    if name == g.user.username:
                        raise db.ReviewError("you cannot disable your own account")
                    db.update_user(engine, pname, name, active=op == "enable")
                    message = f"{name} {op}d."
                else:
                    abort(400)
            except db.ReviewError as e:
                error, status = str(e), 400
        return render_template(
            "users.html",
            users=db.list_users(engine, pname),
            roles=db.ROLES,
            message=message,
            error=error,
        ), status

    @app.template_filter("action_class")
    def _action_class(a: Action | str) -> str:
        return f"action-{Action(a).value}"

    @app.template_filter("short")
    def _short(text: Any, n: int = 160) -> str:
        s = " ".join(str(text or "").split())
        return s if len(s) <= n else s[: n - 1] + "…"

    @app.template_filter("patch_items")
    def _patch_items(patch: dict[str, Any] | str | None) -> list[tuple[str, str]]:
        if not patch:
            return []
        if isinstance(patch, str):
            import orjson

            raw = patch
            try:
                patch = orjson.loads(raw)
            except orjson.JSONDecodeError:
                return [("patch", raw)]
        if not isinstance(patch, dict):
            return [("patch", repr(patch))]
        return [(str(k), str(v) if isinstance(v, str) else repr(v)) for k, v in patch.items()]

    return app
