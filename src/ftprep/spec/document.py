"""The task specification file: Markdown with a small YAML header.

::

    ---
    name: support-bot
    version: "1"
    purpose: Answer customer questions about orders.
    inputs: One customer message, English or German.
    outputs: [a reply, a policy reference]
    areas:
      refunds:
        description: Requests to return an item or get money back.
        criteria:
          - Refunds within 30 days of delivery are approved.
        keywords: [refund, money back]          # assignment rules (optional)
        patterns: ['\\bretur?n(ed|s)?\\b']      # regular expressions (optional)
    ---
    # General guidance (Markdown)
    ## refunds
    Extra criteria for the refunds area: a level-2 heading named like an area belongs to it.

An area's *criteria text* (description + criteria + its Markdown section) is what change control
compares: an edit to it makes the area "changed" in ``ftprep spec bump``. Keywords and patterns
only steer which examples belong to an area, so editing them is not a criteria change. The
*general* part (purpose, inputs, outputs, text outside area sections) is compared separately.
"""

from __future__ import annotations

import difflib
import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ftprep.project import ProjectError

_HEADING = re.compile(r"^(#{1,6})[ \t]+(.+?)[ \t]*#*[ \t]*$")
_WS = re.compile(r"[ \t]+")


class SpecError(ProjectError):
    """The spec, or its history, is unusable or out of step (exit code 2)."""


def normalise_newlines(text: str) -> str:
    return text.replace("\r\n", "\n").replace("\r", "\n")


def canonical(text: str) -> str:
    """Whitespace-insensitive form used to decide whether text *changed*: trailing spaces,
    runs of blanks and blank lines do not count."""
    lines = [_WS.sub(" ", ln).strip() for ln in normalise_newlines(text).split("\n")]
    return "\n".join(ln for ln in lines if ln)


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def _as_list(v: Any, where: str) -> tuple[str, ...]:
    if v is None:
        return ()
    if isinstance(v, str):
        return (v,)
    if isinstance(v, list | tuple) and all(isinstance(x, str | int | float) for x in v):
        return tuple(str(x) for x in v)
    raise SpecError(f"{where}: expected a string or a list of strings")


def _as_text(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, list | tuple):
        return "\n".join(f"- {x}" for x in v)
    if isinstance(v, dict):
        return yaml.safe_dump(v, sort_keys=True, allow_unicode=True).strip()
    return str(v)


@dataclass(frozen=True)
class Area:
    """A named part of the task. ``text`` is its full criteria text (what reviewers see)."""

    name: str
    description: str = ""
    criteria: tuple[str, ...] = ()
    keywords: tuple[str, ...] = ()
    patterns: tuple[str, ...] = ()
    body: str = ""
    _keyword_rx: re.Pattern[str] | None = field(default=None, repr=False, compare=False)
    _pattern_rx: tuple[re.Pattern[str], ...] = field(default=(), repr=False, compare=False)

    @property
    def text(self) -> str:
        parts = [self.description.strip()] if self.description.strip() else []
        parts += [f"- {c.strip()}" for c in self.criteria if c.strip()]
        if self.body.strip():
            parts.append(self.body.strip())
        return "\n".join(parts)

    @property
    def criteria_hash(self) -> str:
        return sha256(canonical(self.text))

    @property
    def profile(self) -> str:
        """Text used to place examples by meaning: name, description and criteria."""
        return "\n".join([self.name.replace("_", " "), self.text])

    def rule_hits(self, text: str) -> int:
        """How many keywords (case-insensitive, whole word) and patterns occur in ``text``."""
        hits = sum(1 for rx in self._pattern_rx if rx.search(text))
        if self._keyword_rx is not None:
            hits += len({m.casefold() for m in self._keyword_rx.findall(text)})
        return hits


@dataclass
class Spec:
    raw: str
    header: dict[str, Any]
    areas: dict[str, Area]
    general_body: str
    path: Path | None = None

    @property
    def name(self) -> str:
        return str(self.header.get("name") or "")

    @property
    def version(self) -> str | None:
        v = self.header.get("version")
        return None if v is None else str(v)

    @property
    def content_hash(self) -> str:
        return sha256(normalise_newlines(self.raw))

    @property
    def general_text(self) -> str:
        h = self.header
        parts = [
            f"name: {_as_text(h.get('name'))}",
            f"purpose: {_as_text(h.get('purpose'))}",
            f"inputs: {_as_text(h.get('inputs'))}",
            f"outputs: {_as_text(h.get('outputs'))}",
        ]
        extra = {
            k: v
            for k, v in h.items()
            if k not in ("name", "version", "purpose", "inputs", "outputs", "areas")
        }
        if extra:
            parts.append(_as_text(extra))
        if self.general_body.strip():
            parts.append(self.general_body.strip())
        return "\n".join(parts)

    @property
    def general_hash(self) -> str:
        return sha256(canonical(self.general_text))

    def area_hashes(self) -> dict[str, str]:
        return {n: a.criteria_hash for n, a in self.areas.items()}

    def area_text(self, name: str) -> str:
        """The current criteria text of one area (``KeyError`` for an unknown area)."""
        return self.areas[name].text


def _split_front_matter(text: str, where: str) -> tuple[str, str, int]:
    lines = text.split("\n")
    if not lines or lines[0].strip() != "---":
        raise SpecError(
            f"{where}: a task spec starts with a YAML header between two '---' lines "
            "(`ftprep init` writes a template)"
        )
    for i in range(1, len(lines)):
        if lines[i].strip() in ("---", "..."):
            return "\n".join(lines[1:i]), "\n".join(lines[i + 1 :]), i + 1
    raise SpecError(f"{where}: the YAML header is not closed by a '---' line")


def _level2_titles(body: str) -> list[str]:
    out: list[str] = []
    in_fence = False
    for line in body.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(line)
        if m and len(m.group(1)) == 2:
            t = re.sub(r"^area\s*:\s*", "", m.group(2).strip(), flags=re.IGNORECASE).strip("`*_ ")
            if t and t.casefold() not in {x.casefold() for x in out}:
                out.append(t)
    return out


def _sections(body: str, names: set[str]) -> tuple[dict[str, str], str]:
    """Split the Markdown body: a level-2 heading equal to an area name (case-insensitive,
    optionally prefixed ``Area:``) starts that area's section, any other heading of level <= 2
    ends it."""
    lookup = {n.casefold(): n for n in names}
    per_area: dict[str, list[str]] = {}
    general: list[str] = []
    current: list[str] = general
    in_fence = False
    for line in body.split("\n"):
        if line.lstrip().startswith(("```", "~~~")):
            in_fence = not in_fence
        m = None if in_fence else _HEADING.match(line)
        if m and len(m.group(1)) <= 2:
            title = m.group(2).strip()
            key = re.sub(r"^area\s*:\s*", "", title, flags=re.IGNORECASE).strip().casefold()
            key = key.strip("`*_ ")
            if len(m.group(1)) == 2 and key in lookup:
                current = per_area.setdefault(lookup[key], [])
                continue
            current = general
        current.append(line)
    return {k: "\n".join(v) for k, v in per_area.items()}, "\n".join(general)


def _compile(
    name: str, keywords: tuple[str, ...], patterns: tuple[str, ...], where: str
) -> tuple[re.Pattern[str] | None, tuple[re.Pattern[str], ...]]:
    """One alternation for all keywords (whole words, longest first), one regex per pattern."""
    kws = sorted({k.strip() for k in keywords if k.strip()}, key=lambda k: (-len(k), k))
    kw_rx = (
        re.compile(r"(?<!\w)(" + "|".join(map(re.escape, kws)) + r")(?!\w)", re.IGNORECASE)
        if kws
        else None
    )
    out = []
    for p in patterns:
        try:
            out.append(re.compile(p, re.IGNORECASE))
        except re.error as e:
            raise SpecError(
                f"{where}: areas.{name}.patterns: invalid regular expression {p!r} ({e})"
            ) from None
    return kw_rx, tuple(out)


def parse_spec(text: str, where: str = "spec", path: Path | None = None) -> Spec:
    text = normalise_newlines(text)
    head, body, _ = _split_front_matter(text, where)
    try:
        header = yaml.safe_load(head) if head.strip() else {}
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = f":{mark.line + 2}" if mark else ""
        raise SpecError(
            f"{where}{line}: invalid YAML in the header ({getattr(e, 'problem', e)})"
        ) from None
    if not isinstance(header, dict):
        raise SpecError(f"{where}: the header must be a mapping (purpose, inputs, outputs, areas)")
    raw_areas = header.get("areas") or {}
    if isinstance(raw_areas, list):  # [{name: x, description: ...}, ...]
        conv: dict[str, Any] = {}
        for i, a in enumerate(raw_areas):
            if not isinstance(a, dict) or not a.get("name"):
                raise SpecError(f"{where}: areas[{i}]: expected a mapping with a 'name'")
            conv[str(a["name"])] = {k: v for k, v in a.items() if k != "name"}
        raw_areas = conv
    if not isinstance(raw_areas, dict):
        raise SpecError(f"{where}: areas: expected a mapping of area name -> description/criteria")
    if not raw_areas:  # no areas in the header: every level-2 heading of the body is one
        raw_areas = {t: {} for t in _level2_titles(body)}
    names = {str(n) for n in raw_areas}
    sections, general = _sections(body, names)
    areas: dict[str, Area] = {}
    for n, a in raw_areas.items():
        name = str(n).strip()
        if not name or name in ("*", "all", "none"):
            raise SpecError(f"{where}: areas: {name!r} is not a usable area name")
        if a is None:
            a = {}
        if isinstance(a, str):
            a = {"description": a}
        if not isinstance(a, dict):
            raise SpecError(f"{where}: areas.{name}: expected a description string or a mapping")
        unknown = set(a) - {"description", "criteria", "keywords", "patterns"}
        if unknown:
            raise SpecError(
                f"{where}: areas.{name}: unknown key(s) {', '.join(sorted(map(str, unknown)))} "
                "(expected description, criteria, keywords, patterns)"
            )
        kw = _as_list(a.get("keywords"), f"{where}: areas.{name}.keywords")
        pats = _as_list(a.get("patterns"), f"{where}: areas.{name}.patterns")
        kw_rx, pat_rx = _compile(name, kw, pats, where)
        areas[name] = Area(
            name=name,
            description=_as_text(a.get("description")),
            criteria=_as_list(a.get("criteria"), f"{where}: areas.{name}.criteria"),
            keywords=kw,
            patterns=pats,
            body=sections.get(name, ""),
            _keyword_rx=kw_rx,
            _pattern_rx=pat_rx,
        )
    return Spec(raw=text, header=header, areas=areas, general_body=general, path=path)


def load_spec(path: str | Path) -> Spec:
    """Read and parse a spec file (raises :class:`SpecError` with the file name on problems)."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except FileNotFoundError:
        raise SpecError(f"{p}: task spec not found (ftprep.yaml: spec)") from None
    except UnicodeDecodeError:
        raise SpecError(f"{p}: not valid UTF-8") from None
    return parse_spec(text, str(p), p)


# ---------------------------------------------------------------------------------- diffing


@dataclass
class AreaChange:
    area: str
    status: str  # added | removed | changed | unchanged
    diff: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {"area": self.area, "status": self.status, "diff": self.diff}


@dataclass
class SpecDiff:
    areas: list[AreaChange]
    general: AreaChange

    @property
    def changed_areas(self) -> list[str]:
        return [a.area for a in self.areas if a.status != "unchanged"]

    @property
    def general_changed(self) -> bool:
        return self.general.status != "unchanged"

    def to_dict(self) -> dict[str, Any]:
        return {
            "areas": [a.to_dict() for a in self.areas],
            "general": self.general.to_dict(),
            "changed_areas": self.changed_areas,
        }


def _udiff(a: str, b: str, name: str) -> list[str]:
    return list(
        difflib.unified_diff(
            a.split("\n"), b.split("\n"), f"{name} (old)", f"{name} (new)", lineterm="", n=1
        )
    )


def diff_specs(old: Spec, new: Spec) -> SpecDiff:
    """Per-area comparison of two specs on their criteria text (whitespace-insensitive)."""
    out: list[AreaChange] = []
    for name in sorted(set(old.areas) | set(new.areas)):
        a, b = old.areas.get(name), new.areas.get(name)
        if a is None and b is not None:
            out.append(AreaChange(name, "added", _udiff("", b.text, name)))
        elif b is None and a is not None:
            out.append(AreaChange(name, "removed", _udiff(a.text, "", name)))
        elif a is not None and b is not None:
            same = a.criteria_hash == b.criteria_hash
            out.append(
                AreaChange(
                    name,
                    "unchanged" if same else "changed",
                    [] if same else _udiff(a.text, b.text, name),
                )
            )
    same = old.general_hash == new.general_hash
    general = AreaChange(
        "(general)",
        "unchanged" if same else "changed",
        [] if same else _udiff(old.general_text, new.general_text, "(general)"),
    )
    return SpecDiff(out, general)
