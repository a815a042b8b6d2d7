"""Task specification under change control (failure mode 7).

* :mod:`ftprep.spec.document` — the spec file (Markdown + YAML header with named areas) and the
  per-area diff;
* :mod:`ftprep.spec.history` — the append-only, hash-chained ``spec.history.jsonl``;
* :mod:`ftprep.spec.control` — ``lock``, ``bump``, ``status`` and the ``preflight`` that
  ``audit`` and ``build`` call;
* :mod:`ftprep.spec.provenance` — each example's spec version and area;
* :mod:`ftprep.spec.sections` — the report sections of the checks.

The checks live in :mod:`ftprep.checks.spec`, the commands in :mod:`ftprep.spec_cli`.
"""

from __future__ import annotations

from ftprep.spec.control import (
    bump,
    current_version,
    lock,
    open_history,
    preflight,
    spec_path,
    status,
)
from ftprep.spec.document import Area, Spec, SpecDiff, SpecError, diff_specs, load_spec, parse_spec
from ftprep.spec.history import Entry, History, history_path
from ftprep.spec.provenance import assign_areas, derive_spec_versions, resolve_versions


def area_text(spec: Spec, area: str) -> str:
    """The current criteria text of ``area`` (what a reviewer re-validates an example against)."""
    return spec.area_text(area)


def area_text_at(project: object, area: str, version: str | None = None) -> str | None:
    """The text of ``area`` in a recorded ``version`` (default: the current file); ``None`` when
    that version or area does not exist. For side-by-side display of old and current criteria."""
    from ftprep.project import Project

    assert isinstance(project, Project)
    p = spec_path(project)
    if p is None:
        return None
    if version is None:
        s = load_spec(p)
        return s.areas[area].text if area in s.areas else None
    e = History.load(history_path(p)).find(version)
    if e is None:
        return None
    s = e.spec()
    return s.areas[area].text if area in s.areas else None


__all__ = [
    "Area",
    "Entry",
    "History",
    "Spec",
    "SpecDiff",
    "SpecError",
    "area_text",
    "area_text_at",
    "assign_areas",
    "bump",
    "current_version",
    "derive_spec_versions",
    "diff_specs",
    "history_path",
    "load_spec",
    "lock",
    "open_history",
    "parse_spec",
    "preflight",
    "resolve_versions",
    "spec_path",
    "status",
]
