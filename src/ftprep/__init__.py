"""ftprep: audit a supervised fine-tuning dataset against the eight ways such data fails, and
build the dataset that should actually be trained on, with the evidence for every decision.

Python API::

    import ftprep
    result = ftprep.audit("path/to/project")      # -> AuditResult (.status, .exit_code, .findings)
    built = ftprep.build("path/to/project")       # -> BuildResult (.manifest, .out_dir)
"""

from __future__ import annotations

__version__ = "0.1.0"

from ftprep.api import AuditResult, audit, ingest
from ftprep.build import BuildResult, build
from ftprep.examples import Dataset, Example
from ftprep.project import Project, ProjectError, load_project
from ftprep.volume.curve import curve

__all__ = [
    "AuditResult",
    "BuildResult",
    "Dataset",
    "Example",
    "Project",
    "ProjectError",
    "__version__",
    "audit",
    "build",
    "curve",
    "ingest",
    "load_project",
]
