"""``ftprep.yaml``: the project file, its schema and its validation.

Errors name the key path and the line in the file, and say what was expected::

    ftprep.yaml:14: sources[0].format: expected one of auto, openai, ... (got 'chatml')
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from ftprep.formats.records import FieldMap

PROJECT_FILE = "ftprep.yaml"
SOURCE_FORMATS = (
    "auto",
    "openai",
    "sharegpt",
    "alpaca",
    "prompt_completion",
    "text",
    "jsonl",
    "json",
    "csv",
    "tsv",
    "parquet",
    "hf",
)


M = TypeVar("M", bound=BaseModel)


class ProjectError(Exception):
    """An invalid or unreadable project file (exit code 2)."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Fields(_Model):
    """Which record fields carry the canonical attributes (dotted paths allowed)."""

    id: str | None = None
    group: str | None = None
    collected_at: str | None = None
    spec_version: str | None = None
    label: str | None = None
    annotator: str | None = None
    area: str | None = None
    outcome: list[str] = Field(default_factory=list)
    meta: list[str] = Field(default_factory=list)
    input: str | None = None
    output: str | None = None
    system: str | None = None

    def to_fieldmap(self) -> FieldMap:
        return FieldMap(
            id=self.id,
            group=self.group,
            collected_at=self.collected_at,
            spec_version=self.spec_version,
            label=self.label,
            annotator=self.annotator,
            area=self.area,
            outcome=tuple(self.outcome),
            meta=tuple(self.meta),
            input=self.input,
            output=self.output,
            system=self.system,
        )


class Source(_Model):
    name: str
    path: str
    format: str = "auto"  # a record format or a container (see SOURCE_FORMATS)
    container: str = "auto"
    fields: Fields = Field(default_factory=Fields)
    defaults: dict[str, str] = Field(default_factory=dict)
    max_record_bytes: int = 1_000_000

    @field_validator("format")
    @classmethod
    def _fmt(cls, v: str) -> str:
        if v not in SOURCE_FORMATS:
            raise ValueError(f"expected one of {', '.join(SOURCE_FORMATS)} (got {v!r})")
        return v

    def record_format(self) -> str:
        return (
            self.format
            if self.format in ("auto", "openai", "sharegpt", "alpaca", "prompt_completion", "text")
            else "auto"
        )

    def container_kind(self) -> str:
        if self.container != "auto":
            return self.container
        return (
            self.format
            if self.format in ("jsonl", "json", "csv", "tsv", "parquet", "hf")
            else "auto"
        )


class Production(Source):
    """A sample of real production inputs (user turns only is fine)."""

    name: str = "production"
    # keep this many records, streamed (the smallest seeded hash of their ids; see docs/formats.md)
    sample: int | None = Field(default=None, ge=1)
    seed: int = 0
    # the share of the sample that becomes validation/test with split.eval_from: production
    holdout: float = Field(default=0.0, ge=0, le=1)


class Benchmark(Source):
    pass


class ReplaySource(Source):
    """General-purpose data mixed into the training split to keep non-target capabilities
    (failure mode 5). ``capability`` names the inventory capability it exercises (optional:
    inferred from the inventory when absent)."""

    capability: str | None = None


class Replay(_Model):
    """Replay mixing: ``share`` of the final training split drawn from ``sources``, preferring
    the capabilities the training data leaves uncovered (see docs/forgetting.md)."""

    share: float = 0.1
    seed: int = 0
    sources: list[ReplaySource] = Field(default_factory=list)

    @field_validator("share")
    @classmethod
    def _share(cls, v: float) -> float:
        if not 0 <= v < 1:
            raise ValueError("expected a fraction in [0, 1)")
        return v


class Curve(_Model):
    """``ftprep curve``: staged training on growing subsets (see docs/volume.md)."""

    # run per stage; placeholders {train} {validation} {out} {n} {stage} {seed}
    command: str | None = None
    metric: str = "metric"  # key (dotted path) of the JSON object the command prints or writes
    higher_is_better: bool = True
    fractions: list[float] = Field(default_factory=lambda: [0.125, 0.25, 0.5, 1.0])
    repeats: int = Field(default=1, ge=1)
    target: float | None = None
    timeout_s: float | None = None
    # plateau: doubling the data gains less than this (absolute)
    plateau_delta: float = Field(default=0.005, gt=0)
    bootstrap: int = Field(default=200, ge=0)  # bootstrap refits for the uncertainty band (0: none)

    @field_validator("fractions")
    @classmethod
    def _fractions(cls, v: list[float]) -> list[float]:
        if len(set(v)) < 3 or any(not 0 < f <= 1 for f in v):
            raise ValueError("expected at least 3 distinct fractions in (0, 1]")
        return sorted(set(v))


class Tokenizer(_Model):
    """``kind``: ``cl100k`` / ``o200k`` (offline tiktoken encodings, default cl100k), ``hf`` (a
    ``tokenizer.json`` file given by ``path``), or ``chars4`` (characters / 4, no tokenizer)."""

    kind: str = "cl100k"
    path: str | None = None


class Split(_Model):
    by: str = "group"  # group | source | id-free field name (never by row)
    validation: float = 0.1
    test: float = 0.1
    seed: int = 0
    stratify: str | None = None
    eval_from: Literal["train", "production", "source"] = "train"
    eval_source: str | None = None  # with eval_from: source

    @field_validator("validation", "test")
    @classmethod
    def _frac(cls, v: float) -> float:
        if not 0 <= v < 1:
            raise ValueError("expected a fraction in [0, 1)")
        return v


class BuildConfig(_Model):
    format: Literal["openai", "sharegpt", "alpaca", "prompt_completion", "parquet"] = "openai"
    out: str = "out/build"
    # "production": draw the training split in proportion to the last audit's importance weights
    # (distribution.coverage), so its mix follows production's; "none": every example once
    resample: Literal["none", "production"] = "none"


class Workspace(_Model):
    dir: str = ".ftprep"
    database_url: str | None = None  # default: sqlite in the workspace dir


class Project(_Model):
    version: int = 1
    name: str = "ftprep-project"
    sources: list[Source]
    production: Production | None = None
    benchmarks: list[Benchmark] = Field(default_factory=list)
    annotations: dict[str, Any] | None = None
    spec: str | None = None
    rubric: str | None = None
    capabilities: str | None = None
    objectives: str | None = None
    replay: Replay | None = None
    curve: Curve = Field(default_factory=Curve)
    tokenizer: Tokenizer = Field(default_factory=Tokenizer)
    context_limit: int = 4096
    embeddings: str = "static"
    split: Split = Field(default_factory=Split)
    build: BuildConfig = Field(default_factory=BuildConfig)
    workspace: Workspace = Field(default_factory=Workspace)
    gates: dict[str, dict[str, dict[str, Any] | None]] = Field(default_factory=dict)
    checks: dict[str, dict[str, Any]] = Field(default_factory=dict)
    disabled_checks: list[str] = Field(default_factory=list)
    out: str = "out"

    # set after loading
    root: Path = Field(default=Path("."), exclude=True)
    file_hash: str = Field(default="", exclude=True)

    @field_validator("sources")
    @classmethod
    def _unique(cls, v: list[Source]) -> list[Source]:
        names = [s.name for s in v]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"source names must be unique (repeated: {', '.join(sorted(dup))})")
        if not v:
            raise ValueError("at least one source is needed")
        return v

    def path(self, p: str | None) -> Path | None:
        if p is None:
            return None
        q = Path(p)
        return q if q.is_absolute() else self.root / q

    @property
    def workspace_dir(self) -> Path:
        d = self.path(self.workspace.dir)
        assert d is not None
        return d

    @property
    def out_dir(self) -> Path:
        d = self.path(self.out)
        assert d is not None
        return d


def _line_of(node: yaml.Node | None, loc: tuple[Any, ...]) -> int | None:
    """Walk the composed YAML node tree along a pydantic error location."""
    cur = node
    best = cur.start_mark.line + 1 if cur is not None else None
    for key in loc:
        if isinstance(cur, yaml.MappingNode):
            nxt = None
            for k, v in cur.value:
                if k.value == key:
                    nxt = v
                    best = k.start_mark.line + 1
                    break
            cur = nxt
        elif isinstance(cur, yaml.SequenceNode) and isinstance(key, int) and key < len(cur.value):
            cur = cur.value[key]
            best = cur.start_mark.line + 1
        else:
            break
        if cur is None:
            break
    return best


def _loc_str(loc: tuple[Any, ...]) -> str:
    out = ""
    for k in loc:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out or "(top level)"


def _read_yaml(p: Path, text: bytes) -> tuple[yaml.Node | None, Any]:
    try:
        return yaml.compose(text.decode("utf-8")), yaml.safe_load(text)
    except UnicodeDecodeError:
        raise ProjectError(f"{p}: not valid UTF-8") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f":{mark.line + 1}" if mark else ""
        raise ProjectError(f"{p}{where}: invalid YAML ({getattr(e, 'problem', e)})") from None


def _validate(p: Path, node: yaml.Node | None, data: Any, model: type[M]) -> M:
    """``model`` from ``data``; every error names the file, line and key path."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        msgs = []
        for err in e.errors():
            loc = tuple(
                x for x in err["loc"] if not (isinstance(x, str) and x.startswith("function-"))
            )
            line = _line_of(node, loc)
            got = err.get("input")
            got_s = "" if isinstance(got, dict | list) or got is None else f" (got {got!r})"
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = "unknown key (check the spelling; `ftprep init` writes a commented example)"
                got_s = ""
            msgs.append(f"{p}:{line}: {_loc_str(loc)}: {msg}{got_s}")
        raise ProjectError("\n".join(msgs)) from None


def load_yaml_model(path: str | Path, model: type[M], what: str) -> M:
    """Read a YAML side file of the project (capability inventory, objectives...) into
    ``model``, with the same file:line: key-path errors as ``ftprep.yaml``."""
    p = Path(path)
    try:
        text = p.read_bytes()
    except OSError as e:
        raise ProjectError(f"{p}: cannot read the {what} ({e.strerror})") from None
    node, data = _read_yaml(p, text)
    return _validate(p, node, data if data is not None else {}, model)


# the project's side files: the checks that read them do not run without them
SIDE_FILES = ("spec", "rubric", "capabilities", "objectives")


def cross_field_problems(project: Project) -> list[tuple[tuple[str, ...], str]]:
    """Settings that are valid alone but not together, as (key path, message): checked when
    the project is loaded and again when ``build`` overrides a setting."""
    out: list[tuple[tuple[str, ...], str]] = []
    # validation/test drawn from production need a production sample and a share of it: without
    # them the evaluation splits would silently come out empty
    if project.split.eval_from == "production":
        if project.production is None:
            out.append(
                (
                    ("split", "eval_from"),
                    "split.eval_from: production needs a production sample (the `production:` "
                    "section)",
                )
            )
        elif project.production.holdout <= 0:
            out.append(
                (
                    ("production",),
                    "production.holdout: split.eval_from: production draws validation and test "
                    "from this share of the production sample; set it, e.g. `holdout: 0.2`",
                )
            )
    if project.build.resample == "production" and project.production is None:
        out.append(
            (
                ("build", "resample"),
                "build.resample: production needs a production sample (the `production:` section)",
            )
        )
    return out


def load_project(path: str | Path = PROJECT_FILE) -> Project:
    p = Path(path)
    if p.is_dir():
        p = p / PROJECT_FILE
    if not p.exists():
        raise ProjectError(f"{p}: no project file here (run `ftprep init DIR` to create one)")
    text = p.read_bytes()
    node, data = _read_yaml(p, text)
    if not isinstance(data, dict):
        raise ProjectError(f"{p}: expected a mapping of settings at the top level")
    project = _validate(p, node, data, Project)
    project.root = p.parent.resolve()
    project.file_hash = hashlib.sha256(text).hexdigest()
    problems = cross_field_problems(project)
    if problems:
        loc, msg = problems[0]
        raise ProjectError(f"{p}:{_line_of(node, loc)}: {msg}")
    # a side file that is named but missing would switch its checks off without a word
    for key in SIDE_FILES:
        side = project.path(getattr(project, key))
        if side is not None and not side.is_file():
            line = _line_of(node, (key,))
            raise ProjectError(
                f"{p}:{line}: {key}: {side} does not exist"
                + (" (it is a directory)" if side.is_dir() else "")
                + f" — fix the path, or remove {key!r} to run without it"
            )
    return project
