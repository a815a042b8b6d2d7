"""The check framework: what a check declares, what it returns, and how gates judge it.

A check is one class per concern. It declares ``name``, ``failure_mode``, ``description``, the
inputs it ``requires`` and its default ``conditions``; ``run(ctx)`` computes machine-readable
``values``, ``findings`` (with evidence ids), per-example ``decisions`` and report ``sections``.
Conditions (gates) are kept apart from computation and can be overridden in ``ftprep.yaml``.
"""

from __future__ import annotations

import enum
import operator
import traceback
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

if TYPE_CHECKING:
    from ftprep.context import Context

FAILURE_MODES: dict[str, str] = {
    "format": "Format and size: records a trainer would reject or truncate",
    "quality": "1. Inconsistent quality across sources and time",
    "distribution": "2. Training inputs differ from production inputs",
    "volume": "3. Too little data for the objective",
    "labels": "4. Label noise",
    "forgetting": "5. Catastrophic forgetting",
    "contamination": "6. Evaluation contamination",
    "spec": "7. Task definition drift during collection",
    "objectives": "8. Optimising the wrong objective",
}

# inputs a check may require -> human description used in "not run: missing X"
REQUIREMENTS: dict[str, str] = {
    "production": "a production sample (ftprep.yaml: production)",
    "benchmarks": "benchmark files (ftprep.yaml: benchmarks)",
    "annotations": "per-annotator labels (ftprep.yaml: annotations)",
    "spec": "a task spec (ftprep.yaml: spec)",
    "rubric": "a rubric (ftprep.yaml: rubric)",
    "capabilities": "a capability inventory (ftprep.yaml: capabilities)",
    "objectives": "objectives (ftprep.yaml: objectives)",
    "labels": "a label field on the sources (fields.label)",
    "collected_at": "a collected_at field on the sources",
    "curve": "a learning curve (run `ftprep curve`)",
}


class Status(enum.IntEnum):
    PASS = 0
    NOT_RUN = 1
    WARN = 2
    FAIL = 3
    ERROR = 4

    def __str__(self) -> str:
        return self.name


class Action(enum.StrEnum):
    """Per-example decision. ``exclude``, ``quarantine`` and ``escalate`` keep an example out of
    the build (the last two until a reviewer resolves them); ``review`` flags it for a reviewer
    but keeps it in; ``include`` is an explicit keep (typically a reviewer's)."""

    INCLUDE = "include"
    REVIEW = "review"
    ESCALATE = "escalate"
    QUARANTINE = "quarantine"
    EXCLUDE = "exclude"

    @property
    def blocks_build(self) -> bool:
        return self in (Action.EXCLUDE, Action.QUARANTINE, Action.ESCALATE)


@dataclass(slots=True)
class Decision:
    example_id: str
    action: Action
    reason: str  # stable reason code, e.g. "exact_duplicate", "below_quality_threshold"
    detail: str = ""
    check: str = ""  # filled in by the runner

    def to_dict(self) -> dict[str, Any]:
        return {
            "example_id": self.example_id,
            "action": str(self.action),
            "reason": self.reason,
            "detail": self.detail,
            "check": self.check,
        }


@dataclass(slots=True)
class Finding:
    severity: str  # "info" | "warn" | "fail"
    code: str
    message: str
    metrics: dict[str, Any] = field(default_factory=dict)
    threshold: Any = None
    example_ids: list[str] = field(default_factory=list)
    action: str = ""  # recommended action in plain words
    check: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["example_ids"] = self.example_ids[:200]
        d["n_examples"] = len(self.example_ids)
        return d


@dataclass(slots=True)
class Section:
    """Something for the report to show. ``kind`` is one of: ``text``, ``table`` (data: {columns,
    rows}), ``bars`` (data: {labels, values, [series]}), ``histogram`` (data: {values|counts+edges,
    [xlabel]}), ``lines`` (data: {x, series: {name: ys}}), ``scatter`` (data: {points: [[x, y,
    group]], [highlight]}), ``matrix`` (data: {rows, columns, values}), ``examples`` (data:
    {items: [{id, title?, fields: {name: text}}]}), ``pairs`` (data: {pairs: [{left, right,
    note}]}). Values are plain JSON; the HTML renderer escapes every string."""

    title: str
    kind: str
    data: dict[str, Any]
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_OPS: dict[str, Callable[[Any, Any], bool]] = {
    ">": operator.gt,
    ">=": operator.ge,
    "<": operator.lt,
    "<=": operator.le,
    "==": operator.eq,
    "!=": operator.ne,
}


@dataclass(slots=True)
class Condition:
    """A gate on one metric: the check's status becomes ``severity`` when ``value op threshold``
    holds. ``ftprep.yaml`` ``gates: {check: {metric: {warn: x, fail: y}}}`` overrides it."""

    metric: str
    op: str
    threshold: float
    severity: Status = Status.FAIL
    description: str = ""

    def evaluate(self, values: dict[str, Any]) -> tuple[Status, str] | None:
        v = values.get(self.metric)
        if v is None:
            return None
        if _OPS[self.op](v, self.threshold):
            return self.severity, f"{self.metric} = {_fmt(v)} {self.op} {_fmt(self.threshold)}"
        return None

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "op": self.op,
            "threshold": self.threshold,
            "severity": str(self.severity),
            "description": self.description,
        }


def _fmt(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


@dataclass(slots=True)
class CheckResult:
    check: str
    failure_mode: str
    status: Status = Status.PASS
    summary: str = ""
    values: dict[str, Any] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    decisions: list[Decision] = field(default_factory=list)
    sections: list[Section] = field(default_factory=list)
    gate_messages: list[str] = field(default_factory=list)
    conditions: list[Condition] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    error: str = ""
    seconds: float = 0.0

    def to_dict(self, *, with_sections: bool = False) -> dict[str, Any]:
        d: dict[str, Any] = {
            "check": self.check,
            "failure_mode": self.failure_mode,
            "status": str(self.status),
            "summary": self.summary,
            "values": self.values,
            "gates": [c.to_dict() for c in self.conditions],
            "gate_messages": self.gate_messages,
            "findings": [f.to_dict() for f in self.findings],
            "decision_counts": _count_decisions(self.decisions),
            "missing": self.missing,
            "error": self.error,
            "seconds": round(self.seconds, 3),
        }
        if with_sections:
            d["sections"] = [s.to_dict() for s in self.sections]
        return d


def _count_decisions(decisions: list[Decision]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in decisions:
        out[str(d.action)] = out.get(str(d.action), 0) + 1
    return out


class Check:
    """Base class. Subclasses set the class attributes and implement :meth:`run`."""

    name: ClassVar[str]
    failure_mode: ClassVar[str]
    description: ClassVar[str]
    requires: ClassVar[tuple[str, ...]] = ()
    # checks whose results (ctx.artifacts) this one reads: they run first when enabled
    after: ClassVar[tuple[str, ...]] = ()
    default_conditions: ClassVar[tuple[Condition, ...]] = ()
    # conditions used instead when a production sample is present (None: same as default)
    reference_conditions: ClassVar[tuple[Condition, ...] | None] = None

    def __init__(self, params: dict[str, Any] | None = None) -> None:
        self.params = params or {}

    def param(self, key: str, default: Any) -> Any:
        return self.params.get(key, default)

    def run(self, ctx: Context) -> CheckResult:  # pragma: no cover - interface
        raise NotImplementedError

    def result(self, **kw: Any) -> CheckResult:
        return CheckResult(check=self.name, failure_mode=self.failure_mode, **kw)

    def conditions(self, ctx: Context) -> list[Condition]:
        base = self.default_conditions
        if ctx.production is not None and self.reference_conditions is not None:
            base = self.reference_conditions
        conds = [Condition(c.metric, c.op, c.threshold, c.severity, c.description) for c in base]
        return apply_gate_overrides(conds, ctx.gate_overrides(self.name))


def apply_gate_overrides(
    conds: list[Condition], overrides: dict[str, dict[str, Any]]
) -> list[Condition]:
    """``overrides``: ``{metric: {"warn": x, "fail": y, "op": ">"}}``; ``null`` disables."""
    if not overrides:
        return conds
    out = [c for c in conds if c.metric not in overrides]
    for metric, spec in overrides.items():
        if spec is None:
            continue
        template = next((c for c in conds if c.metric == metric), None)
        op = spec.get("op") or (template.op if template else ">")
        desc = template.description if template else ""
        if spec.get("warn") is not None:
            out.append(Condition(metric, op, float(spec["warn"]), Status.WARN, desc))
        if spec.get("fail") is not None:
            out.append(Condition(metric, op, float(spec["fail"]), Status.FAIL, desc))
    return out


def judge(result: CheckResult, conditions: list[Condition]) -> None:
    """Apply gates to a finished result: status = worst triggered condition. A condition that
    raises makes the check ERROR (it never crashes the audit)."""
    result.conditions = conditions
    worst = Status.PASS
    for c in conditions:
        try:
            hit = c.evaluate(result.values)
        except Exception as e:
            result.gate_messages.append(f"condition on {c.metric} failed: {e}")
            worst = max(worst, Status.ERROR)
            continue
        if hit:
            sev, msg = hit
            result.gate_messages.append(
                f"{sev}: {msg}" + (f" ({c.description})" if c.description else "")
            )
            worst = max(worst, sev)
    for f in result.findings:
        if f.severity == "fail":
            worst = max(worst, Status.FAIL)
        elif f.severity == "warn":
            worst = max(worst, Status.WARN)
    result.status = worst


class NotRun(Exception):
    """Raised by ``Check.run`` when its inputs are there but cannot support it (too few
    examples): the check is reported as NOT_RUN with this message, not as an ERROR."""


def error_result(check: Check, exc: BaseException) -> CheckResult:
    tb = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__, limit=-3))
    return CheckResult(
        check=check.name,
        failure_mode=check.failure_mode,
        status=Status.ERROR,
        summary=f"error: {type(exc).__name__}: {exc}",
        error=tb,
    )
