"""``rubric.yaml``: the written quality rubric, its schema and its loader.

A rubric is a list of named **criteria** plus how they combine:

* every criterion has a plain-language ``definition`` (what a reviewer applies), a ``scale``
  (``[low, high]``, e.g. ``[0, 1]`` or ``[1, 5]``), a ``weight`` in the overall score, an
  optional per-criterion ``minimum`` (on its own scale: below it the example fails that
  criterion whatever its overall score) and a ``kind``:

  - ``deterministic`` — a built-in scorer from :mod:`ftprep.quality.features` (``scorer:`` names
    it, ``params:`` tunes it);
  - ``learned`` — a classifier trained on the calibration ratings of that criterion
    (:mod:`ftprep.quality.learned`);
  - ``judged`` — an LLM judge given the definition as its prompt (:mod:`ftprep.quality.judge`);
    off unless ``judge:`` is configured and ``enabled``.

* the **overall score** is the weighted mean of the criterion scores mapped to ``[0, 1]``;
* ``threshold`` is the inclusion bar; ``tiers`` name the bands: ``gold`` (≥ ``tiers.gold``),
  ``keep`` (≥ ``threshold``), ``review`` (≥ ``tiers.review``) and ``drop`` (below, or any
  criterion under its minimum).

Errors name the key path, like the project file does.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

__all__ = [
    "Calibration",
    "Criterion",
    "JudgeConfig",
    "Rubric",
    "RubricError",
    "Strata",
    "Tiers",
    "load_rubric",
    "parse_rubric",
]

TEMPLATE = Path(__file__).resolve().parent.parent / "templates" / "rubric.yaml"


class RubricError(ValueError):
    """An invalid rubric file."""


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Criterion(_Model):
    name: str
    definition: str
    kind: Literal["deterministic", "learned", "judged"] = "deterministic"
    scorer: str | None = None  # deterministic: a name from features.SCORERS
    params: dict[str, Any] = Field(default_factory=dict)
    scale: tuple[float, float] = (0.0, 1.0)
    weight: float = 1.0
    minimum: float | None = None  # on the criterion's own scale
    code: str | None = None  # reason code when the criterion fails (default: its name)
    field: Literal["response", "prompt", "full"] = "response"

    @field_validator("name")
    @classmethod
    def _name(cls, v: str) -> str:
        if not v or not all(c.isalnum() or c in "_-." for c in v):
            raise ValueError("use letters, digits, '_', '-' or '.' only")
        return v

    @field_validator("weight")
    @classmethod
    def _weight(cls, v: float) -> float:
        if v < 0:
            raise ValueError("weight must be >= 0")
        return v

    @model_validator(mode="after")
    def _check(self) -> Criterion:
        lo, hi = self.scale
        if not hi > lo:
            raise ValueError(f"scale must be [low, high] with high > low (got {list(self.scale)})")
        if self.minimum is not None and not lo <= self.minimum <= hi:
            raise ValueError(f"minimum {self.minimum} is outside the scale {list(self.scale)}")
        if self.kind == "deterministic":
            from ftprep.quality.features import SCORERS

            if not self.scorer:
                raise ValueError(
                    f"a deterministic criterion needs scorer: one of {', '.join(sorted(SCORERS))}"
                )
            if self.scorer not in SCORERS:
                raise ValueError(
                    f"unknown scorer {self.scorer!r} (one of {', '.join(sorted(SCORERS))})"
                )
        if self.kind == "learned":
            from ftprep.quality.learned import scorer_from_params

            scorer_from_params(self.params)  # raises on unknown params, views or prior
        return self

    @property
    def reason_code(self) -> str:
        return self.code or self.name

    def to_unit(self, x: Any) -> Any:
        """Map a value on the criterion's scale to [0, 1]."""
        lo, hi = self.scale
        return (x - lo) / (hi - lo)

    @property
    def unit_minimum(self) -> float | None:
        return None if self.minimum is None else float(self.to_unit(self.minimum))


class Tiers(_Model):
    gold: float = 0.85
    review: float = 0.45  # scores in [review, threshold) go to review; below: drop

    @field_validator("gold", "review")
    @classmethod
    def _unit(cls, v: float) -> float:
        if not 0 <= v <= 1:
            raise ValueError("expected a score in [0, 1]")
        return v


class Calibration(_Model):
    """Calibration ratings: a CSV/TSV/JSONL file in long form (``id, rater, criterion, score``)
    or wide form (``id, rater, <criterion>…``)."""

    ratings: str | None = None
    sample_size: int = 300
    seed: int = 0
    level: Literal["nominal", "ordinal", "interval", "ratio"] = "ordinal"
    alpha_min: float = 0.67
    holdout: float = 0.3  # share of labelled ids held out to measure learned-scorer agreement
    label_threshold: float | None = (
        None  # learned: unit score >= this counts as "good" (default 0.5)
    )


class JudgeConfig(_Model):
    enabled: bool = False
    model: str = "gpt-4o-mini"
    base_url: str | None = None
    api_key_env: str = "OPENAI_API_KEY"
    requests_per_minute: float = 60
    concurrency: int = 4
    max_retries: int = 5
    timeout: float = 120
    max_examples: int | None = None  # judge at most this many (a reproducible sample); None = all
    max_cost_usd: float | None = None  # refuse to start when the estimate is higher
    price_input_per_1k: float = 0.0
    price_output_per_1k: float = 0.0
    max_tokens: int = 16
    seed: int = 0


class Strata(_Model):
    period: str = "quarter"  # day | week | month | quarter | year | <N>d
    min_stratum: int = 20  # strata smaller than this are shown but not tested
    alpha: float = 0.01  # significance level (Holm-corrected) for strata / drift tests
    min_effect: float = 0.05  # |mean difference| in overall score that counts as material

    @field_validator("period")
    @classmethod
    def _period(cls, v: str) -> str:
        import re

        if v not in ("day", "week", "month", "quarter", "year") and not re.fullmatch(r"\d+d", v):
            raise ValueError(f"expected day, week, month, quarter, year or <N>d (got {v!r})")
        return v


class Rubric(_Model):
    version: int = 1
    name: str = "quality rubric"
    threshold: float = 0.6
    tiers: Tiers = Field(default_factory=Tiers)
    on_minimum: Literal["exclude", "review"] = "exclude"
    criteria: list[Criterion]
    calibration: Calibration = Field(default_factory=Calibration)
    judge: JudgeConfig = Field(default_factory=JudgeConfig)
    strata: Strata = Field(default_factory=Strata)

    @field_validator("criteria")
    @classmethod
    def _criteria(cls, v: list[Criterion]) -> list[Criterion]:
        if not v:
            raise ValueError("at least one criterion is needed")
        names = [c.name for c in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"criterion names must be unique (repeated: {', '.join(dup)})")
        if sum(c.weight for c in v) <= 0:
            raise ValueError("at least one criterion needs a weight > 0")
        return v

    @model_validator(mode="after")
    def _bands(self) -> Rubric:
        if not 0 <= self.threshold <= 1:
            raise ValueError("threshold must be in [0, 1]")
        if not self.tiers.review <= self.threshold <= self.tiers.gold:
            raise ValueError(
                f"need tiers.review <= threshold <= tiers.gold (got {self.tiers.review}, "
                f"{self.threshold}, {self.tiers.gold})"
            )
        return self

    def criterion(self, name: str) -> Criterion:
        for c in self.criteria:
            if c.name == name:
                return c
        raise KeyError(name)

    def by_kind(self, kind: str) -> list[Criterion]:
        return [c for c in self.criteria if c.kind == kind]


def _loc(loc: tuple[Any, ...]) -> str:
    out = ""
    for k in loc:
        out += f"[{k}]" if isinstance(k, int) else (f".{k}" if out else str(k))
    return out or "(top level)"


def parse_rubric(data: Any, source: str = "rubric.yaml") -> Rubric:
    if not isinstance(data, dict):
        raise RubricError(f"{source}: expected a mapping with criteria:")
    try:
        return Rubric.model_validate(data)
    except ValidationError as e:
        msgs = [
            f"{source}: {_loc(tuple(err['loc']))}: {err['msg'].removeprefix('Value error, ')}"
            for err in e.errors()
        ]
        raise RubricError("\n".join(msgs)) from None


def load_rubric(path: str | Path | None = None) -> Rubric:
    """Load and validate a rubric file (default: the bundled template)."""
    p = Path(path) if path is not None else TEMPLATE
    try:
        data = yaml.safe_load(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise RubricError(f"{p}: cannot read ({e.strerror})") from None
    except yaml.YAMLError as e:
        raise RubricError(f"{p}: invalid YAML ({e})") from None
    return parse_rubric(data, str(p))
