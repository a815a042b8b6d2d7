"""``ftprep curve``: staged training on growing subsets -> learning curve, volume estimate.

Exit codes: 0 the curve was fitted; 2 bad usage, unreadable input, no learner, or a failing
training command (finished stages are kept; rerunning resumes).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click
import orjson
from rich.console import Console
from rich.markup import escape

from ftprep.cli_options import json_option, project_option

console = Console(highlight=False)
err = Console(stderr=True, highlight=False)


@click.command("curve")
@project_option
@click.option(
    "--results",
    type=click.Path(path_type=Path, dir_okay=False),
    default=None,
    help="Fit a CSV of points measured elsewhere (columns n, metric[, seed]) instead of running.",
)
@click.option(
    "--out",
    type=click.Path(path_type=Path),
    default=None,
    help="Output directory (default: out/curve).",
)
@click.option(
    "--plateau-delta",
    type=float,
    default=None,
    help="Plateau: doubling the data gains less than this (default: curve.plateau_delta).",
)
@json_option
@click.option("--quiet", "-q", is_flag=True, help="No progress bar.")
def curve(
    project: Path,
    results: Path | None,
    out: Path | None,
    plateau_delta: float | None,
    as_json: bool,
    quiet: bool,
) -> None:
    """Staged training on growing subsets of the build's training split -> learning curve and
    volume estimate: out/curve/curve.json + curve.html.

    Each stage runs curve.command (your fine-tune + eval script) or, for labelled data without
    a command, a proxy learner (logistic regression on prompt embeddings). Finished stages are
    kept in the workspace: an interrupted curve resumes where it stopped.
    """
    from ftprep.cli import _progress_factory
    from ftprep.project import ProjectError
    from ftprep.volume.curve import curve as run_curve

    if plateau_delta is not None and plateau_delta <= 0:
        err.print("[red]error:[/red] --plateau-delta must be positive")
        sys.exit(2)
    try:
        res = run_curve(
            project,
            results=results,
            progress=_progress_factory(quiet or as_json),
            out=out,
            plateau_delta=plateau_delta,
        )
    except (ProjectError, FileNotFoundError, PermissionError) as e:
        err.print(f"[red]error:[/red] {escape(str(e))}", soft_wrap=True)
        sys.exit(2)
    except KeyboardInterrupt:
        err.print("interrupted; finished stages are kept (rerun to resume)")
        sys.exit(130)
    doc = res.doc
    if as_json:
        sys.stdout.write(orjson.dumps(doc, option=orjson.OPT_INDENT_2).decode() + "\n")
        return
    if doc["learner"].get("proxy"):
        console.print(f"[yellow]note:[/yellow] {escape(doc['note'])}")
    p = doc["fit"]["params"]
    console.print(
        f"{len(doc['points'])} points ({res.ran} run now, {res.reused} reused); fit "
        f"{doc['fit']['model']}: a={p['a']:.4g} b={p['b']:.4g} c={p['c']:.4g} "
        f"({doc['fit']['method']})"
    )
    console.print(
        f"metric at {doc['n_train']:,} examples: {doc['metric_at_n_train']:.4f}; asymptote "
        f"{doc['asymptote']['metric']:.4f}; plateau ~{doc['plateau']['n']:,.0f} examples"
    )
    bt = doc.get("backtest")
    if bt:
        console.print(
            f"backtest: fitted up to {bt['fitted_up_to_n']:,.0f}, predicted {bt['predicted']:.4f} "
            f"at {bt['n']:,.0f}, measured {bt['measured']:.4f}"
        )
    console.print(f"[bold]{escape(doc['verdict']['message'])}[/bold]")
    console.print(f"wrote {res.out_dir / 'curve.json'} and {res.out_dir / 'curve.html'}")
