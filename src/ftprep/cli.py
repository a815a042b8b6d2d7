"""The ``ftprep`` command line. Thin: every command calls the Python API.

Exit codes: 0 = every gate passed, 1 = a gate failed, 2 = bad usage or unreadable input.
"""

from __future__ import annotations

import contextlib
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import click
import orjson
from rich.console import Console
from rich.markup import escape
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ftprep import __version__
from ftprep.cli_options import project_option
from ftprep.curve_cli import curve as curve_command
from ftprep.review.cli import review as review_group
from ftprep.spec_cli import spec as spec_group

err = Console(stderr=True)
console = Console()

STATUS_STYLE = {
    "PASS": "green",
    "WARN": "yellow",
    "FAIL": "red",
    "ERROR": "magenta",
    "NOT_RUN": "dim",
}


def _progress_factory(quiet: bool) -> Callable[[str, int | None], Any]:
    if quiet or not err.is_terminal:
        from ftprep.context import no_progress

        return no_progress
    prog = Progress(
        SpinnerColumn(),
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err,
        transient=True,
    )

    depth = [0]  # nested bars share one live display

    @contextlib.contextmanager
    def factory(desc: str, total: int | None) -> Iterator[Callable[[int], None]]:
        if depth[0] == 0:
            prog.start()
        depth[0] += 1
        task = prog.add_task(desc, total=total)

        def advance(n: int = 1) -> None:
            prog.advance(task, n)

        try:
            yield advance
        finally:
            prog.remove_task(task)
            depth[0] -= 1
            if depth[0] == 0:
                prog.stop()

    return factory


def _fail(msg: str) -> None:
    # the message may quote paths, keys or data: never read it as console markup
    err.print(f"[red]error:[/red] {escape(msg)}", markup=True, highlight=False, soft_wrap=True)
    sys.exit(2)


@contextlib.contextmanager
def _errors() -> Iterator[None]:
    """Map expected errors to one clear line and exit code 2 (never a traceback)."""
    import sqlalchemy as sa

    from ftprep.formats.readers import InputError
    from ftprep.project import ProjectError

    try:
        yield
    except (ProjectError, InputError) as e:
        _fail(str(e))
    except OSError as e:  # a path that is a file, a directory, missing or not writable
        _fail(f"{e.filename}: {e.strerror}" if e.filename and e.strerror else str(e))
    except sa.exc.ArgumentError as e:
        _fail(f"bad database URL: {e}")
    except sa.exc.OperationalError as e:
        _fail(f"cannot open the database: {e.orig}")


class _Group(click.Group):
    """Lists commands in the order they were added (the order a user runs them); Ctrl-C in any
    command (also while it imports) exits 130 with one line, not click's "Aborted!" and exit 1,
    which CI would read as a failed gate."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return list(self.commands)

    def invoke(self, ctx: click.Context) -> Any:
        # SIGTERM (docker stop, a CI timeout) unwinds like Ctrl-C, so temporary files are
        # removed; without a handler the process would die with them on disk
        previous = None
        if threading.current_thread() is threading.main_thread():
            previous = signal.signal(signal.SIGTERM, _terminated)
        try:
            return super().invoke(ctx)
        except KeyboardInterrupt:
            err.print("interrupted; nothing half-written was left behind")
            sys.exit(130)
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


def _terminated(signum: int, frame: Any) -> None:
    err.print("terminated; nothing half-written was left behind")
    raise SystemExit(128 + signum)


@click.group(cls=_Group, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", prog_name="ftprep")
def main() -> None:
    """Audit a supervised fine-tuning dataset and build the dataset that should be trained on.

    \b
    Typical session:
      ftprep init my-project      scaffold ftprep.yaml + spec, rubric, capabilities, objectives
      ftprep audit                ingest + every check -> out/audit/report.html, findings.json
      ftprep review serve         experts label, arbitrate escalations, clear quarantine
      ftprep build                -> out/build/{train,validation,test}.jsonl + manifest.json
      ftprep curve                staged training on growing subsets -> learning curve, volume

    Exit codes: 0 all gates pass, 1 a gate failed, 2 bad usage or unreadable input,
    130 interrupted (143 terminated).
    """


@main.command()
@click.argument("directory", type=click.Path(path_type=Path))
@click.option("--force", is_flag=True, help="Overwrite existing files.")
def init(directory: Path, force: bool) -> None:
    """Scaffold a project: a commented ftprep.yaml and templates for the task spec, rubric,
    capability inventory and objectives."""
    src = Path(__file__).parent / "templates"
    written = []
    with _errors():
        directory.mkdir(parents=True, exist_ok=True)
        for f in sorted(src.iterdir()):
            if not f.is_file():
                continue
            target = directory / f.name
            if target.exists() and not force:
                err.print(f"kept existing {target}", markup=False)
                continue
            shutil.copyfile(f, target)
            written.append(target.name)
        (directory / "data").mkdir(exist_ok=True)
    console.print(f"created {directory}: {', '.join(written) or 'nothing new'}", markup=False)
    console.print(
        "next: put your data in data/, list it under `sources:` in ftprep.yaml, then run "
        f"`ftprep audit -p {directory}`",
        markup=False,
    )


def _known_checks(
    ctx: click.Context, param: click.Parameter, value: tuple[str, ...]
) -> tuple[str, ...]:
    """A misspelt ``--check`` would run nothing and pass: refuse it (exit 2)."""
    if not value:
        return value
    from ftprep.checks import registry

    names = registry.load_all()
    for v in value:
        if not any(n == v or n.startswith(v + ".") for n in names):
            prefixes = sorted({n.split(".")[0] for n in names})
            raise click.BadParameter(
                f"no check is named {v!r} or starts with {v + '.'!r} "
                f"(prefixes: {', '.join(prefixes)}; `ftprep checks` lists them all)"
            )
    return value


@main.command()
@project_option
@click.option("--strict", is_flag=True, help="Any rejected record fails the audit.")
@click.option(
    "--fail-on",
    type=click.Choice(["fail", "warn"]),
    default="fail",
    show_default=True,
    help="Exit 1 on FAIL only, or on WARN too.",
)
@click.option(
    "--check",
    "only",
    multiple=True,
    callback=_known_checks,
    help="Run only this check (or check prefix, e.g. format); repeatable.",
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print findings.json to stdout instead of a table."
)
@click.option("--quiet", "-q", is_flag=True, help="No progress bars, no summary table.")
def audit(
    project: Path, strict: bool, fail_on: str, only: tuple[str, ...], as_json: bool, quiet: bool
) -> None:
    """Ingest every source and run every check; write out/audit/report.html and findings.json."""
    from ftprep.api import audit as run_audit

    with _errors():
        res = run_audit(
            project,
            progress=_progress_factory(quiet or as_json),
            strict=strict,
            fail_on=fail_on,
            only=list(only) or None,
        )
    if as_json:
        sys.stdout.write(
            orjson.dumps(res.findings, option=orjson.OPT_INDENT_2, default=str).decode() + "\n"
        )
    elif not quiet:
        _print_summary(res)
    sys.exit(res.exit_code)


def _print_summary(res: Any) -> None:
    t = Table(title=f"ftprep audit — {escape(res.project.name)}", show_lines=False)
    t.add_column("check")
    t.add_column("status")
    t.add_column("summary", overflow="fold")
    for r in res.results:
        s = str(r.status)
        t.add_row(r.check, f"[{STATUS_STYLE[s]}]{s}[/]", escape(r.summary))
    console.print(t)
    f = res.findings
    console.print(
        f"{f['totals']['records']} records → {f['totals']['examples']} examples, "
        f"{f['totals']['rejects']} rejected; decisions: "
        + ", ".join(f"{k} {v}" for k, v in f["decisions"]["counts"].items())
    )
    if res.orphaned_human:
        n = len(res.orphaned_human)
        console.print(
            f"[yellow]{n} reviewer decision(s) match no example in the data[/] (records removed "
            f"or their ids changed; the build cannot apply them): "
            f"{escape(', '.join(res.orphaned_human[:5]))}{' …' if n > 5 else ''} "
            "(decisions.orphaned_human in findings.json)"
        )
    for inp in f["inputs"]:  # production, benchmarks…: their rejects are not in the totals
        if inp["role"] != "train" and inp["rejects"]:
            console.print(
                f"{escape(inp['name'])} ({inp['role']}): {inp['records']} records → "
                f"{inp['examples']} used, {inp['rejects']} rejected (see rejects in findings.json)"
            )
    if res.report_path:
        console.print(f"report: {res.report_path}\nfindings: {res.findings_path}", markup=False)
    s = str(res.status)
    console.print(f"overall: [{STATUS_STYLE[s]}]{s}[/] (exit {res.exit_code})")


@main.command()
@project_option
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output directory (default: build.out).",
)
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["openai", "sharegpt", "alpaca", "prompt_completion", "parquet"]),
    default=None,
    help="Output format (default: build.format, openai chat JSONL).",
)
@click.option(
    "--resample",
    type=click.Choice(["none", "production"]),
    default=None,
    help="production: draw the training split toward production's mix by the last audit's "
    "importance weights (default: build.resample, none).",
)
@click.option("--json", "as_json", is_flag=True, help="Print the manifest summary as JSON.")
@click.option("--quiet", "-q", is_flag=True, help="No progress bars, no summary line.")
def build(
    project: Path,
    out: Path | None,
    fmt: str | None,
    resample: str | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Apply the decisions ledger and write train/validation/test + manifest.json."""
    from ftprep.build import build as run_build

    with _errors():
        res = run_build(
            project,
            progress=_progress_factory(quiet or as_json),
            out=out,
            fmt=fmt,
            resample=resample,
        )
    acc = res.manifest["accounting"]
    if as_json:
        sys.stdout.write(
            orjson.dumps(
                {
                    "out_dir": str(res.out_dir),
                    "counts": res.counts,
                    "accounting": acc,
                    "resampling": res.manifest.get("resampling"),
                    "warnings": res.manifest.get("warnings", []),
                }
            ).decode()
            + "\n"
        )
    elif not quiet:
        console.print(
            f"wrote {res.out_dir}: "
            + ", ".join(f"{k} {v}" for k, v in res.counts.items())
            + f"; excluded {acc['excluded']}, rejected {acc['rejected']} (of {acc['records']} records)"
            + (
                f"; train includes {acc['from_replay']} replay examples"
                if acc.get("from_replay")
                else ""
            )
            + _resampled(res.manifest.get("resampling")),
            markup=False,
        )
        for w in res.manifest.get("warnings", []):
            err.print(f"[yellow]warning:[/yellow] {escape(w)}", highlight=False)


def _resampled(r: dict[str, Any] | None) -> str:
    if not r:
        return ""
    return (
        f"; train resampled toward production ({r['dropped']} examples left out, "
        f"{r['repeated']} repeated; effective sample size {r['ess_fraction']:.0%})"
    )


@main.command("checks")
@click.option("--json", "as_json", is_flag=True, help="Machine-readable list with default gates.")
def list_checks(as_json: bool) -> None:
    """List every check with its failure mode, required inputs and documentation."""
    from ftprep.checks import registry
    from ftprep.checks.base import FAILURE_MODES

    checks = registry.load_all()
    if as_json:
        sys.stdout.write(
            orjson.dumps(
                [
                    {
                        "name": n,
                        "failure_mode": c.failure_mode,
                        "requires": list(c.requires),
                        "description": c.description,
                        "gates": [g.to_dict() for g in c.default_conditions],
                    }
                    for n, c in sorted(checks.items())
                ],
                option=orjson.OPT_INDENT_2,
            ).decode()
            + "\n"
        )
        return
    for mode, title in FAILURE_MODES.items():
        items = [(n, c) for n, c in sorted(checks.items()) if c.failure_mode == mode]
        if not items:
            continue
        console.print(f"\n[bold]{title}[/bold]")
        for n, c in items:
            req = f"  [dim](requires: {', '.join(c.requires)})[/dim]" if c.requires else ""
            console.print(f"  [cyan]{n}[/cyan]{req}")
            console.print(
                f"    {' '.join(c.description.split())}",
                soft_wrap=True,
                highlight=False,
                markup=False,
            )


# Command groups that live with their capability.
main.add_command(spec_group)
main.add_command(review_group)
main.add_command(curve_command)


if __name__ == "__main__":
    main()
