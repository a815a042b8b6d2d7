"""Objectives (failure mode 8): success defined as real outcomes, and whether the proxy metrics
a team optimises actually track them.

``objectives.yaml`` names the **outcomes** (fields recorded on examples, e.g. ``resolved``,
``escalated``, ``csat``), the **proxies** (metrics computed per example — built-in ones such as
response length, the quality-rubric score or a regular expression, or a field measured
elsewhere) with the direction in which each is expected to move with success, and the
evaluation **layers**. :func:`associate` measures each proxy against each outcome with a rank
correlation (Spearman, Fisher-z confidence interval), the AUROC for binary outcomes, and the
same within every source so that a relation that only exists between sources (Simpson's
paradox) does not pass as real.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator
from scipy import stats

from ftprep.project import load_yaml_model

BUILTIN_METRICS = {
    "response_words": "words in the final assistant turn",
    "response_chars": "characters in the final assistant turn",
    "prompt_words": "words in the user turns",
    "turns": "number of turns",
    "quality_score": "overall quality-rubric score (needs the quality.rubric check)",
}


class Outcome(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    field: str  # outcome field on examples (sources[].fields.outcome)
    description: str = ""
    success: list[Any] | None = None  # values meaning success (default: truthy / higher)


class Proxy(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    description: str = ""
    metric: str | None = None  # a built-in metric (BUILTIN_METRICS) or quality:<criterion>
    field: str | None = None  # an outcome/meta field measured elsewhere
    pattern: str | None = None  # 1 when the final answer matches this regular expression
    max: float | None = None  # turn the metric into pass/fail: pass when value <= max
    min: float | None = None  # ... or >= min
    expect: Literal["higher", "lower"] = "higher"  # which direction should go with success

    @model_validator(mode="after")
    def _one_source(self) -> Proxy:
        given = [k for k in ("metric", "field", "pattern") if getattr(self, k) is not None]
        if len(given) != 1:
            raise ValueError("give exactly one of metric, field or pattern")
        if self.metric is not None and not (
            self.metric in BUILTIN_METRICS or self.metric.startswith("quality:")
        ):
            raise ValueError(
                f"unknown metric {self.metric!r}; built-in: {', '.join(BUILTIN_METRICS)} or "
                "quality:<criterion>"
            )
        if self.pattern is not None:
            try:
                re.compile(self.pattern)
            except re.error as e:
                raise ValueError(f"invalid regular expression: {e}") from None
        return self


class Objectives(BaseModel):
    model_config = ConfigDict(extra="forbid")

    outcomes: list[Outcome] = Field(default_factory=list)
    proxies: list[Proxy] = Field(default_factory=list)
    layers: list[dict[str, str]] = Field(default_factory=list)
    min_correlation: float = 0.1  # |rho| a proxy needs to count as tracking an outcome
    confidence: float = 0.95


def load_objectives(path: str | Path) -> Objectives:
    return load_yaml_model(path, Objectives, "objectives")


def outcome_values(o: Outcome, records: list[dict[str, Any]]) -> np.ndarray:
    """Success per example as a float (1/0 for binary outcomes, the number otherwise); NaN when
    the example does not record the outcome."""
    out = np.full(len(records), np.nan)
    for i, rec in enumerate(records):
        v = rec.get(o.field)
        if v is None or v == "":
            continue
        if o.success is not None:
            out[i] = 1.0 if v in o.success or str(v) in {str(s) for s in o.success} else 0.0
        elif isinstance(v, (bool, int | float)):
            out[i] = float(v)
        elif str(v).strip().lower() in ("true", "yes", "1", "resolved", "success"):
            out[i] = 1.0
        elif str(v).strip().lower() in ("false", "no", "0", "failed", "failure"):
            out[i] = 0.0
        else:
            try:
                out[i] = float(v)
            except ValueError:
                continue
    return out


@dataclass
class Association:
    proxy: str
    outcome: str
    n: int
    rho: float
    low: float
    high: float
    auroc: float | None
    expected_sign: int
    verdict: str  # tracks | opposite | no_evidence | too_few
    per_source: dict[str, float] = field(default_factory=dict)
    sign_flips: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "proxy": self.proxy,
            "outcome": self.outcome,
            "n": self.n,
            "spearman": _r(self.rho),
            "ci": [_r(self.low), _r(self.high)],
            "auroc": _r(self.auroc),
            "expected": "positive" if self.expected_sign > 0 else "negative",
            "verdict": self.verdict,
            "per_source": {k: _r(v) for k, v in self.per_source.items()},
            "sign_flips": self.sign_flips,
        }


def _r(v: float | None) -> float | None:
    return None if v is None or not math.isfinite(v) else round(float(v), 4)


def spearman_ci(x: np.ndarray, y: np.ndarray, confidence: float) -> tuple[float, float, float]:
    """Spearman's rho with a Fisher-z interval (standard error 1.06 / sqrt(n - 3), Fieller et
    al. 1957)."""
    n = len(x)
    if n < 4 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan"), float("nan"), float("nan")
    rho = float(stats.spearmanr(x, y).statistic)
    z = math.atanh(max(-0.999999, min(0.999999, rho)))
    half = stats.norm.ppf(0.5 + confidence / 2) * 1.06 / math.sqrt(n - 3)
    return rho, min(rho, math.tanh(z - half)), max(rho, math.tanh(z + half))


def auroc(scores: np.ndarray, labels: np.ndarray) -> float | None:
    """P(score of a success > score of a failure), ties counted half (Mann-Whitney)."""
    pos, neg = scores[labels == 1], scores[labels == 0]
    if len(pos) == 0 or len(neg) == 0:
        return None
    ranks = stats.rankdata(np.concatenate([pos, neg]))
    return float((ranks[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def associate(
    proxy: Proxy,
    values: np.ndarray,
    outcome: Outcome,
    success: np.ndarray,
    sources: list[str],
    obj: Objectives,
    min_n: int = 20,
) -> Association:
    ok = np.isfinite(values) & np.isfinite(success)
    x, y = values[ok], success[ok]
    sign = 1 if proxy.expect == "higher" else -1
    rho, low, high = spearman_ci(x, y, obj.confidence)
    binary = bool(len(y)) and set(np.unique(y)) <= {0.0, 1.0}
    auc = auroc(x, y) if binary else None
    per_source: dict[str, float] = {}
    src = np.asarray(sources, dtype=object)[ok]
    for s in sorted(set(src)):
        m = src == s
        if m.sum() >= min_n:
            r, _, _ = spearman_ci(x[m], y[m], obj.confidence)
            if math.isfinite(r):
                per_source[str(s)] = r
    # a proxy that (nearly) never varies cannot be tested: count examples off its mode
    if len(x):
        _, counts = np.unique(x, return_counts=True)
        varying = int(len(x) - counts.max())
    else:
        varying = 0
    if len(x) < min_n or varying < min(min_n, len(x) // 10 + 1) or not math.isfinite(rho):
        verdict = "too_few"
    elif sign * low > 0 and sign * rho >= obj.min_correlation:
        verdict = "tracks"
    elif sign * high < 0:
        verdict = "opposite"
    else:
        verdict = "no_evidence"
    # a pooled relation whose sign flips inside sources (Simpson's paradox)
    flips = [
        s for s, r in per_source.items() if math.isfinite(rho) and r * rho < 0 and abs(r) >= 0.1
    ]
    return Association(
        proxy.name, outcome.name, len(x), rho, low, high, auc, sign, verdict, per_source, flips
    )
