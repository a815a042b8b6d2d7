"""Options shared by every command group (``ftprep``, ``ftprep spec``, ``ftprep review``)."""

from __future__ import annotations

from pathlib import Path

import click

project_option = click.option(
    "--project",
    "-p",
    default=".",
    show_default=True,
    type=click.Path(path_type=Path),
    help="Project directory or ftprep.yaml.",
)
json_option = click.option("--json", "as_json", is_flag=True, help="Machine-readable output.")
