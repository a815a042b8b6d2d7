"""Change control: lock, bump, status and the preflight that ``audit`` and ``build`` run."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ftprep.project import Project
from ftprep.spec.document import (
    Spec,
    SpecDiff,
    SpecError,
    diff_specs,
    load_spec,
    normalise_newlines,
    parse_spec,
)
from ftprep.spec.history import (
    Entry,
    History,
    check_anchor,
    default_actor,
    history_path,
    new_entry,
    parse_time,
    version_key,
    write_anchor,
)
from ftprep.store import atomic_write_text


def spec_path(project: Project) -> Path | None:
    return project.path(project.spec)


def _require_spec(project: Project) -> Path:
    p = spec_path(project)
    if p is None:
        raise SpecError("ftprep.yaml has no `spec:` (the task spec file, e.g. spec: spec.md)")
    if not p.exists():
        raise SpecError(f"{p}: task spec not found (ftprep.yaml: spec)")
    return p


def open_history(project: Project) -> tuple[Spec, History]:
    """Load the spec and its verified history (anchor included)."""
    p = _require_spec(project)
    hist = History.load(history_path(p))
    check_anchor(hist, project.workspace_dir)
    return load_spec(p), hist


def _parse_effective(value: str | None) -> dt.datetime:
    if value is None:
        return dt.datetime.now(dt.UTC).replace(microsecond=0)
    t = parse_time(value)
    if t is None:
        raise SpecError(f"--effective: expected an ISO date or timestamp (got {value!r})")
    return t


def _next_version(prev: str) -> str:
    m = re.match(r"^(.*?)(\d+)$", prev)
    if not m:
        return prev + ".1"
    return f"{m.group(1)}{int(m.group(2)) + 1}"


_VERSION_LINE = re.compile(r"^version[ \t]*:.*$")


def set_header_version(text: str, version: str) -> str:
    """``text`` with the header's top-level ``version:`` set to ``version`` (added after the
    opening ``---`` when absent)."""
    lines = normalise_newlines(text).split("\n")
    value = f"version: {json.dumps(str(version))}"
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            break
        if _VERSION_LINE.match(lines[i]):
            lines[i] = value
            return "\n".join(lines)
    return "\n".join([lines[0], value, *lines[1:]])


def _sync_header_version(spec: Spec, version: str) -> Spec:
    """Make the spec file's header say ``version`` (rewriting the file atomically if needed)."""
    if spec.version is not None and version_key(spec.version) == version_key(version):
        return spec
    assert spec.path is not None
    new = parse_spec(set_header_version(spec.raw, version), str(spec.path), spec.path)
    if new.version != str(version):
        raise SpecError(f"{spec.path}: could not set `version: {version}` in the header")
    atomic_write_text(spec.path, new.raw)
    return new


def lock(
    project: Project,
    *,
    effective: str | None = None,
    note: str = "",
    actor: str | None = None,
    version: str | None = None,
) -> Entry:
    """Record the current spec as the first version (``version``, else the header's, else
    ``1``; the header's ``version:`` is set to it)."""
    spec, hist = open_history(project)
    if hist.locked:
        last = hist.latest
        assert last is not None
        raise SpecError(
            f"{hist.path}: the spec is already locked (version {last.version}); record a "
            "change with `ftprep spec bump --note ...`"
        )
    version = version or spec.version or "1"
    spec = _sync_header_version(spec, version)
    e = new_entry(
        spec,
        kind="lock",
        version=version,
        effective=_parse_effective(effective),
        actor=actor or default_actor(),
        note=note or "initial version",
        affected=[],
        computed=[],
    )
    hist.append(e)
    write_anchor(hist, project.workspace_dir)
    return e


def bump(
    project: Project,
    *,
    note: str,
    areas: list[str] | None = None,
    effective: str | None = None,
    version: str | None = None,
    actor: str | None = None,
) -> tuple[Entry, SpecDiff]:
    """Record the edited spec as a new version. ``areas``: the affected areas (``["all"]`` for
    every area, ``["none"]`` for none); default: the areas whose criteria text changed."""
    spec, hist = open_history(project)
    last = hist.latest
    if last is None:
        raise SpecError("the spec is not locked yet: run `ftprep spec lock` first")
    if spec.content_hash == last.content_hash:
        raise SpecError(f"the spec has not changed since version {last.version}: nothing to bump")
    if not note.strip():
        raise SpecError("--note is required: say what changed and why")
    d = diff_specs(last.spec(), spec)
    computed = d.changed_areas
    known = set(spec.areas) | set(last.area_hashes)
    if areas:
        flat = [a.strip() for x in areas for a in x.split(",") if a.strip()]
        if flat == ["all"]:
            affected = sorted(known)
        elif flat == ["none"]:
            affected = []
        else:
            unknown = [a for a in flat if a not in known]
            if unknown:
                raise SpecError(
                    f"--areas: unknown area(s) {', '.join(unknown)} (areas: "
                    f"{', '.join(sorted(known)) or 'none'}; or 'all' / 'none')"
                )
            affected = sorted(set(flat))
    else:
        if not computed and d.general_changed:
            raise SpecError(
                "only the general part of the spec changed (purpose, inputs, outputs or "
                "text outside the area sections); say which areas it affects with "
                "--areas all, --areas NAME[,NAME] or --areas none"
            )
        affected = computed
    if version is None:
        if spec.version is not None and hist.find(spec.version) is None:
            version = spec.version
        else:
            version = _next_version(last.version)
    if hist.find(version) is not None:
        raise SpecError(f"version {version} is already recorded; choose a new version")
    eff = _parse_effective(effective)
    if eff < last.effective_at:
        raise SpecError(
            f"--effective {effective} is before version {last.version}'s effective date "
            f"({last.effective}); effective dates must not go back in time"
        )
    spec = _sync_header_version(spec, version)
    e = new_entry(
        spec,
        kind="bump",
        version=version,
        effective=eff,
        actor=actor or default_actor(),
        note=note.strip(),
        affected=affected,
        computed=computed,
    )
    hist.append(e)
    write_anchor(hist, project.workspace_dir)
    return e, d


@dataclass
class Status:
    spec_path: str
    history_path: str
    locked: bool
    in_sync: bool
    version: str | None  # the recorded version the file matches, else the header version
    latest_version: str | None
    entries: int
    changed_areas: list[str] = field(default_factory=list)
    general_changed: bool = False
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def status(project: Project) -> Status:
    spec, hist = open_history(project)
    p = _require_spec(project)
    last = hist.latest
    if last is None:
        return Status(
            str(p),
            str(hist.path),
            False,
            False,
            spec.version,
            None,
            0,
            message="not locked: run `ftprep spec lock` to put the spec under change control",
        )
    if spec.content_hash == last.content_hash:
        write_anchor(hist, project.workspace_dir)
        return Status(
            str(p),
            str(hist.path),
            True,
            True,
            last.version,
            last.version,
            len(hist.entries),
            message=f"locked at version {last.version}; the spec matches it",
        )
    d = diff_specs(last.spec(), spec)
    changed = ", ".join(d.changed_areas) or "none"
    return Status(
        str(p),
        str(hist.path),
        True,
        False,
        spec.version,
        last.version,
        len(hist.entries),
        d.changed_areas,
        d.general_changed,
        message=f"edited since version {last.version} (areas changed: {changed}"
        f"{'; general part changed' if d.general_changed else ''}): "
        'run `ftprep spec bump --note "what changed" [--effective DATE]`',
    )


def preflight(project: Project, workspace: Any = None) -> None:
    """Called at the start of ``audit`` and ``build``: raises :class:`SpecError` (exit 2) when
    the history was tampered with or a locked spec was edited without ``ftprep spec bump``.
    Does nothing when the project has no spec or the spec is not locked."""
    p = spec_path(project)
    if p is None or not p.exists():
        return
    hist = History.load(history_path(p))
    ws_dir = (
        Path(workspace.root)
        if workspace is not None and hasattr(workspace, "root")
        else project.workspace_dir
    )
    check_anchor(hist, ws_dir)
    last = hist.latest
    if last is None:
        return
    spec = load_spec(p)
    if spec.content_hash != last.content_hash:
        d = diff_specs(last.spec(), spec)
        changed = ", ".join(d.changed_areas) or "none"
        raise SpecError(
            f"{p} was edited after version {last.version} was locked (areas changed: {changed}"
            f"{'; general part changed' if d.general_changed else ''}). Record the change with "
            f'`ftprep spec bump --note "what changed" [--effective DATE] [--areas ...]` '
            f"(see `ftprep spec diff`), or undo the edit; audit and build refuse until then"
        )
    write_anchor(hist, ws_dir)


def current_version(project: Project) -> str | None:
    """The version the project's spec file is at: the latest recorded version when locked,
    else the header's ``version`` (``None`` without a spec)."""
    p = spec_path(project)
    if p is None or not p.exists():
        return None
    try:
        hist = History.load(history_path(p))
        if hist.latest is not None:
            return hist.latest.version
        return load_spec(p).version
    except SpecError:
        return None
