"""``ftprep spec``: lock, bump, log, diff and status of the task spec (see docs/spec.md).

Exit codes: 0 ok; 1 ``status`` found the spec edited without a bump; 2 bad usage, an invalid
spec, or a tampered history.
"""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ftprep.cli_options import json_option, project_option
from ftprep.project import Project, ProjectError, load_project

out = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    try:
        yield
    except ProjectError as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        sys.exit(2)


def _project(path: Path) -> Project:
    return load_project(path)


def _short(ts: str) -> str:
    """``2024-03-01T00:00:00+00:00`` -> ``2024-03-01 00:00`` (times are UTC)."""
    return ts[:16].replace("T", " ")


def _emit(data: Any) -> None:
    sys.stdout.write(orjson.dumps(data, option=orjson.OPT_INDENT_2).decode() + "\n")


@click.group("spec")
def spec() -> None:
    """Task spec under change control: lock it, record each change (bump), inspect the history.

    \b
      ftprep spec lock                      record the current spec as its first version
      ftprep spec status                    is the spec file in step with the history?
      ftprep spec bump --note "..."         record an edited spec as a new version
      ftprep spec log                       every recorded version
      ftprep spec diff 1 2                  what changed, area by area
    """


@spec.command()
@project_option
@click.option(
    "--effective", default=None, help="When the version took effect (ISO date/time; default now)."
)
@click.option("--note", default="", help="Why (default: 'initial version').")
@click.option(
    "--version", "version", default=None, help="The version (default: the spec header's, else 1)."
)
@click.option("--actor", default=None, help="Who (default: $FTPREP_USER or the login name).")
@json_option
def lock(
    project: Path,
    effective: str | None,
    note: str,
    version: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Put the spec under change control: record its version and content hash."""
    from ftprep import spec as sp

    with _errors():
        e = sp.lock(_project(project), effective=effective, note=note, actor=actor, version=version)
    if as_json:
        _emit(e.summary())
        return
    out.print(
        f"locked spec version {escape(e.version)} (effective {e.effective}, hash {e.content_hash[:12]})"
    )
    out.print(
        "commit the spec and its history file together; from now on record edits with "
        "`ftprep spec bump --note ...`"
    )


@spec.command()
@project_option
@click.option("--note", required=True, help="What changed and why.")
@click.option(
    "--areas",
    multiple=True,
    help="Affected areas (comma-separated or repeated; 'all' or 'none'). Default: the areas "
    "whose criteria text changed.",
)
@click.option(
    "--effective",
    default=None,
    help="When the new version takes effect (ISO date/time; default now).",
)
@click.option(
    "--version",
    "version",
    default=None,
    help="The new version (default: the header's if new, else the next number); the header's "
    "`version:` is set to it.",
)
@click.option("--actor", default=None, help="Who (default: $FTPREP_USER or the login name).")
@json_option
def bump(
    project: Path,
    note: str,
    areas: tuple[str, ...],
    effective: str | None,
    version: str | None,
    actor: str | None,
    as_json: bool,
) -> None:
    """Record the edited spec as a new version, with the change note, the affected areas and the
    effective date. Examples of changed areas collected under older versions are quarantined at
    the next audit."""
    from ftprep import spec as sp

    with _errors():
        e, d = sp.bump(
            _project(project),
            note=note,
            areas=list(areas) or None,
            effective=effective,
            version=version,
            actor=actor,
        )
    if as_json:
        _emit({**e.summary(), "diff": d.to_dict()})
        return
    out.print(f"recorded spec version {escape(e.version)} (effective {e.effective})")
    out.print(
        f"affected areas: {escape(', '.join(e.affected_areas) or 'none')}"
        + (
            ""
            if e.affected_areas == e.computed_areas
            else f" (criteria text changed in: {escape(', '.join(e.computed_areas) or 'none')})"
        )
    )
    if e.affected_areas:
        out.print("next: `ftprep audit` quarantines older examples of these areas for review")


@spec.command()
@project_option
@json_option
def log(project: Path, as_json: bool) -> None:
    """Every recorded version: when it took effect, what it changed, who and why."""
    from ftprep import spec as sp

    with _errors():
        _, hist = sp.open_history(_project(project))
    if as_json:
        _emit([e.summary() for e in hist.entries])
        return
    if not hist.entries:
        out.print("the spec is not locked yet (`ftprep spec lock`)")
        return
    t = Table(title=f"spec history ({hist.path.name}, chain verified; times UTC)")
    for c in ("version", "kind", "effective", "affected areas", "recorded", "by", "note"):
        t.add_column(c, overflow="fold")
    for e in hist.entries:
        t.add_row(
            escape(e.version),
            e.kind,
            _short(e.effective),
            escape(", ".join(e.affected_areas) or "—"),
            _short(e.recorded_at),
            escape(e.actor),
            escape(e.note),
        )
    out.print(t)


@spec.command()
@project_option
@click.argument("v1", required=False)
@click.argument("v2", required=False)
@click.option("--all-areas", is_flag=True, help="List unchanged areas too.")
@json_option
def diff(project: Path, v1: str | None, v2: str | None, all_areas: bool, as_json: bool) -> None:
    """What changed between two versions, area by area. Default: the latest recorded version
    against the spec file (V1 alone: V1 against the file). V2 may be 'file'."""
    from ftprep import spec as sp

    with _errors():
        current, hist = sp.open_history(_project(project))

        def pick(v: str | None, default_file: bool) -> tuple[str, sp.Spec]:
            if v is None or v == "file":
                if v is None and not default_file:
                    if hist.latest is None:
                        raise sp.SpecError("the spec is not locked: nothing to compare with")
                    return hist.latest.version, hist.latest.spec()
                return "file", current
            e = hist.find(v)
            if e is None:
                raise sp.SpecError(
                    f"no version {v!r} in the history (recorded: "
                    f"{', '.join(hist.versions) or 'none'})"
                )
            return e.version, e.spec()

        n1, s1 = pick(v1, default_file=False)
        n2, s2 = pick(v2, default_file=True)
        d = sp.diff_specs(s1, s2)
    if as_json:
        _emit({"from": n1, "to": n2, **d.to_dict()})
        return
    out.print(
        f"spec {escape(n1)} → {escape(n2)}: areas changed: "
        f"{escape(', '.join(d.changed_areas) or 'none')}"
        f"{'; general part changed' if d.general_changed else ''}"
    )
    for ch in [*d.areas, d.general]:
        if ch.status == "unchanged" and not all_areas:
            continue
        out.print(f"\n[bold]{escape(ch.area)}[/bold]: {ch.status}")
        for line in ch.diff[2:]:
            style = "green" if line.startswith("+") else "red" if line.startswith("-") else "dim"
            out.print(f"[{style}]{escape(line)}[/{style}]", soft_wrap=True)


@spec.command()
@project_option
@json_option
def status(project: Path, as_json: bool) -> None:
    """Is the spec locked, and does the file match the latest recorded version? Exit 1 when it
    was edited without `ftprep spec bump`."""
    from ftprep import spec as sp

    with _errors():
        st = sp.status(_project(project))
    if as_json:
        _emit(st.to_dict())
    else:
        out.print(escape(st.message))
    sys.exit(0 if st.in_sync or not st.locked else 1)
