"""``ftprep review``: serve the review web app and manage its accounts (see docs/review.md).

Exit codes: 0 ok; 2 bad usage (unknown role, short password, no project file, bad database URL).
"""

from __future__ import annotations

import contextlib
import getpass
import sys
from collections.abc import Iterator
from pathlib import Path

import click
import sqlalchemy as sa
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ftprep.cli_options import project_option
from ftprep.project import Project, ProjectError, load_project
from ftprep.review import db

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)

database_option = click.option(
    "--database-url",
    default=None,
    help="SQLAlchemy URL of the database (e.g. postgresql://user:pw@host/db). Default: the "
    "project's workspace.database_url, else $FTPREP_DATABASE_URL, else SQLite in the workspace "
    "(the same order `ftprep audit` and `build` use, so all of them share one ledger).",
)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except (ProjectError, db.ReviewError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        sys.exit(2)
    except sa.exc.ArgumentError as e:
        err.print(f"[red]error:[/red] bad database URL: {escape(str(e))}", soft_wrap=True)
        sys.exit(2)
    except sa.exc.OperationalError as e:
        err.print(
            f"[red]error:[/red] cannot open the database: {escape(str(e.orig))}", soft_wrap=True
        )
        sys.exit(2)


def _engine(project: Project, database_url: str | None) -> sa.Engine:
    from ftprep.store import Workspace

    ws = Workspace(project.workspace_dir, database_url or project.workspace.database_url)
    db.init_db(ws.engine)
    return ws.engine


@click.group()
def review() -> None:
    """The review web app: experts label, arbitrate escalations, clear quarantine."""


@review.command()
@project_option
@database_option
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8765, show_default=True, type=int)
@click.option(
    "--per-item",
    default=3,
    show_default=True,
    type=click.IntRange(1, 1000),
    help="An example leaves the annotate queue once this many people labelled it.",
)
@click.option(
    "--session-hours",
    default=12.0,
    show_default=True,
    type=click.FloatRange(0.01, 24 * 30),
    help="Sessions expire this long after sign-in.",
)
@click.option(
    "--secure-cookies",
    is_flag=True,
    help="Mark cookies Secure (set this when serving behind HTTPS).",
)
@click.option(
    "--threads",
    default=8,
    show_default=True,
    type=click.IntRange(1, 64),
    help="Worker threads (waitress).",
)
def serve(
    project: Path,
    database_url: str | None,
    host: str,
    port: int,
    per_item: int,
    session_hours: float,
    secure_cookies: bool,
    threads: int,
) -> None:
    """Serve the review app for the project (waitress when installed, else werkzeug)."""
    try:
        from ftprep.review.app import ReviewConfig, create_app
    except ImportError as e:
        err.print(
            f"[red]error:[/red] the review app needs Flask ({escape(str(e))}): "
            "pip install flask waitress",
            soft_wrap=True,
        )
        sys.exit(2)

    with _errors():
        proj = load_project(project)
        app = create_app(
            proj,
            database_url=database_url,
            config=ReviewConfig(
                annotations_per_item=per_item,
                session_hours=session_hours,
                secure_cookies=secure_cookies,
            ),
        )
        if not db.list_users(app.extensions["ftprep_review"]["workspace"].engine, proj.name):
            err.print(
                f"[yellow]no accounts yet:[/yellow] create one with `ftprep review add-user "
                f"NAME --role admin -p {escape(str(project))}`"
            )
    err.print(f"ftprep review: project [bold]{escape(proj.name)}[/bold] on http://{host}:{port}/")
    try:
        import waitress
    except ImportError:
        from werkzeug.serving import run_simple

        run_simple(host, port, app, threaded=True)
    else:
        waitress.serve(app, host=host, port=port, threads=threads, ident="ftprep-review")


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    pw = getpass.getpass("Password: ")
    if pw != getpass.getpass("Repeat: "):
        raise db.ReviewError("the passwords differ")
    return pw


@review.command("add-user")
@click.argument("name")
@click.option(
    "--role",
    type=click.Choice(db.ROLES),
    required=True,
    help="annotator: labels items; senior: also arbitrates escalations, label errors and "
    "quarantine; admin: also manages users.",
)
@click.option(
    "--password-stdin", is_flag=True, help="Read the password from the first line of stdin."
)
@click.option("--replace", is_flag=True, help="Reset the role and password of an existing user.")
@project_option
@database_option
def add_user(
    name: str,
    role: str,
    password_stdin: bool,
    replace: bool,
    project: Path,
    database_url: str | None,
) -> None:
    """Create an account of this project (the password is asked for, or read with --password-stdin)."""
    with _errors():
        proj = load_project(project)
        engine = _engine(proj, database_url)
        user = db.add_user(
            engine, proj.name, name, role, _read_password(password_stdin), replace=replace
        )
    out.print(
        f"{'updated' if replace else 'added'} {escape(user.username)} ({user.role}) "
        f"in project {escape(proj.name)}"
    )


@review.command("users")
@project_option
@database_option
def list_users(project: Path, database_url: str | None) -> None:
    """List the accounts of this project."""
    with _errors():
        proj = load_project(project)
        users = db.list_users(_engine(proj, database_url), proj.name)
    t = Table("user", "role", "status", "created")
    for u in users:
        t.add_row(escape(u.username), u.role, "active" if u.active else "disabled", u.created_at)
    out.print(t)


@review.command("set-user")
@click.argument("name")
@click.option("--role", type=click.Choice(db.ROLES), default=None)
@click.option(
    "--disable/--enable", "disable", default=None, help="Disable or re-enable the account."
)
@project_option
@database_option
def set_user(
    name: str, role: str | None, disable: bool | None, project: Path, database_url: str | None
) -> None:
    """Change a user's role or disable the account (ends their sessions)."""
    with _errors():
        proj = load_project(project)
        user = db.update_user(
            _engine(proj, database_url),
            proj.name,
            name,
            role=role,
            active=None if disable is None else not disable,
        )
    out.print(f"{escape(user.username)}: {user.role}, {'active' if user.active else 'disabled'}")


@review.command("export-annotations")
@project_option
@database_option
@click.option(
    "--out",
    "out_path",
    type=click.Path(path_type=Path),
    default=None,
    help="Also write them to this file (.csv, .jsonl or .parquet).",
)
def export_annotations(project: Path, database_url: str | None, out_path: Path | None) -> None:
    """Write the labels entered in the app to the workspace table ``review_annotations`` (same
    columns as the imported annotations) and optionally to a file."""
    import orjson
    import pyarrow.csv as pacsv
    import pyarrow.parquet as pq

    from ftprep.decisions import Ledger
    from ftprep.review.data import ReviewData
    from ftprep.store import Workspace, atomic_path, atomic_write_bytes

    with _errors():
        proj = load_project(project)
        ws = Workspace(proj.workspace_dir, database_url or proj.workspace.database_url)
        db.init_db(ws.engine)
        table = ReviewData(proj, ws, Ledger(ws.engine)).export_annotations()
        if out_path is not None:
            suffix = out_path.suffix.lower()
            if suffix == ".parquet":
                with atomic_path(out_path) as tmp:
                    pq.write_table(table, tmp)
            elif suffix == ".csv":
                with atomic_path(out_path) as tmp:
                    pacsv.write_csv(table, tmp)
            elif suffix in (".jsonl", ".ndjson"):
                atomic_write_bytes(
                    out_path, b"".join(orjson.dumps(r) + b"\n" for r in table.to_pylist())
                )
            else:
                raise db.ReviewError(
                    f"--out: expected a .csv, .jsonl or .parquet file (got {out_path})"
                )
    out.print(
        f"{table.num_rows} annotation(s) exported to {escape(str(ws.table_path('review_annotations')))}"
        + (f" and {escape(str(out_path))}" if out_path else "")
    )


@review.command("demo")
@click.argument("directory", type=click.Path(path_type=Path))
@click.option(
    "--password-stdin",
    is_flag=True,
    help="Also create the users admin, senior and annotator with the password on stdin.",
)
def demo(directory: Path, password_stdin: bool) -> None:
    """Write a small demo project (a dataset with items in every queue) to try the app."""
    from ftprep.review.demo import build_demo

    with _errors():
        if (directory / "ftprep.yaml").exists():
            raise db.ReviewError(f"{directory}: a project already exists here")
        proj = build_demo(directory)
        if password_stdin:
            pw = _read_password(True)
            engine = _engine(proj, None)
            for role in db.ROLES:
                db.add_user(engine, proj.name, role, role, pw)
    out.print(
        f"demo project written to {escape(str(directory))}; next:\n"
        + (
            ""
            if password_stdin
            else f"  ftprep review add-user alice --role admin -p {escape(str(directory))}\n"
        )
        + f"  ftprep review serve -p {escape(str(directory))}"
    )
