"""Rubric consistency: the calibration sample, importing raters' scores, agreement per criterion.

**Sample.** :func:`draw_sample` picks ``n`` examples stratified by (source, period): every
stratum gets its proportional share (largest remainder, at least one when there is room), so a
small source or an old period is not missed. The check writes it to
``out/audit/quality_calibration_sample.csv`` with one empty column per criterion for raters.

**Ratings file** (``calibration.ratings`` in ``rubric.yaml``): CSV, TSV or JSONL, either

* *long*: ``id, rater, criterion, score`` — one row per score, or
* *wide*: ``id, rater, <criterion name>…`` — one row per (example, rater).

Blank scores are missing. A judge run twice is just two more raters.

**Agreement.** :func:`agreement` reports, per criterion, Krippendorff's α at the rubric's
``level`` (from :mod:`ftprep.agreement`, which matches the ``krippendorff`` package) and the
mean pairwise Cohen's κ (quadratic weights for ordinal/interval scales); a criterion whose α is
below ``alpha_min`` (default 0.67) is flagged as too vague to apply consistently.
"""

from __future__ import annotations

import csv
import io
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
import orjson

from ftprep.agreement import krippendorff_alpha, pair_stats, ratings_from_long
from ftprep.quality.rubric import Rubric

__all__ = [
    "CriterionAgreement",
    "RatingRow",
    "agreement",
    "consensus",
    "draw_sample",
    "read_ratings",
]

ID_KEYS = ("id", "example_id", "unit")
RATER_KEYS = ("rater", "annotator", "judge", "coder")


@dataclass(slots=True)
class RatingRow:
    id: str
    rater: str
    criterion: str
    score: float


@dataclass(slots=True)
class CriterionAgreement:
    criterion: str
    n_units: int  # units rated by at least two raters
    n_raters: int
    n_ratings: int
    alpha: float
    kappa: float  # mean pairwise Cohen's κ (weighted for ordered scales)
    flagged: bool

    def to_dict(self) -> dict[str, Any]:
        def r(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return {
            "criterion": self.criterion,
            "n_units": self.n_units,
            "n_raters": self.n_raters,
            "n_ratings": self.n_ratings,
            "alpha": r(self.alpha),
            "kappa": r(self.kappa),
            "flagged": self.flagged,
        }


def draw_sample(ids: Sequence[str], strata: Sequence[str], n: int, seed: int = 0) -> list[str]:
    """``n`` ids stratified by ``strata`` (proportional allocation, largest remainder, every
    stratum at least one while ``n`` allows), reproducible with ``seed``."""
    rng = np.random.default_rng(seed)
    by: dict[str, list[int]] = defaultdict(list)
    for i, s in enumerate(strata):
        by[s].append(i)
    total = len(ids)
    if n >= total:
        return list(ids)
    keys = sorted(by)
    quota = {k: n * len(by[k]) / total for k in keys}
    alloc = {k: math.floor(q) for k, q in quota.items()}
    # every stratum gets one while there is room, then largest remainders
    for k in sorted(keys, key=lambda k: -len(by[k])):
        if alloc[k] == 0 and sum(alloc.values()) < n:
            alloc[k] = 1
    rest = n - sum(alloc.values())
    for k in sorted(keys, key=lambda k: -(quota[k] - math.floor(quota[k]))):
        if rest <= 0:
            break
        if alloc[k] < len(by[k]):
            alloc[k] += 1
            rest -= 1
    while sum(alloc.values()) > n:  # minimum-one rule overshot: trim the largest strata
        k = max(keys, key=lambda k: alloc[k])
        alloc[k] -= 1
    out: list[int] = []
    for k in keys:
        m = min(alloc[k], len(by[k]))
        out.extend(rng.choice(by[k], size=m, replace=False).tolist())
    return [ids[i] for i in sorted(out)]


def _rows_from_file(path: Path) -> list[dict[str, Any]]:
    text = path.read_text(encoding="utf-8-sig")
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".ndjson"):
        rows = []
        for n, line in enumerate(text.splitlines(), 1):
            if line.strip():
                try:
                    obj = orjson.loads(line)
                except orjson.JSONDecodeError as e:
                    raise ValueError(f"{path}:{n}: invalid JSON ({e})") from None
                if not isinstance(obj, dict):
                    raise ValueError(f"{path}:{n}: expected an object")
                rows.append(obj)
        return rows
    if suffix == ".json":
        data = orjson.loads(text)
        if not isinstance(data, list):
            raise ValueError(f"{path}: expected a list of objects")
        return [r for r in data if isinstance(r, dict)]
    delim = "\t" if suffix == ".tsv" else ","
    return list(csv.DictReader(io.StringIO(text), delimiter=delim))


def _pick(row: dict[str, Any], keys: Sequence[str]) -> str | None:
    for k in keys:
        if k in row and row[k] not in (None, ""):
            return str(row[k])
    return None


def _num(v: Any) -> float | None:
    if v is None or (isinstance(v, str) and not v.strip()):
        return None
    if isinstance(v, bool):
        return float(v)
    try:
        x = float(v)
    except (TypeError, ValueError):
        s = str(v).strip().lower()
        if s in ("yes", "true", "pass", "good"):
            return 1.0
        if s in ("no", "false", "fail", "bad"):
            return 0.0
        raise ValueError(f"score {v!r} is not a number") from None
    return None if math.isnan(x) else x


def read_ratings(path: str | Path, criteria: Sequence[str] | None = None) -> list[RatingRow]:
    """Read a long or wide ratings file (see module doc). Errors name the file and row."""
    p = Path(path)
    rows = _rows_from_file(p)
    out: list[RatingRow] = []
    for n, row in enumerate(rows, 2):
        uid = _pick(row, ID_KEYS)
        rater = _pick(row, RATER_KEYS)
        if uid is None or rater is None:
            raise ValueError(f"{p}: row {n}: needs an id and a rater column")
        try:
            if "criterion" in row:
                v = _num(row.get("score"))
                if v is not None:
                    out.append(RatingRow(uid, rater, str(row["criterion"]), v))
                continue
            keys = (
                criteria
                if criteria is not None
                else [k for k in row if k not in (*ID_KEYS, *RATER_KEYS, "note", "comment")]
            )
            for c in keys:
                if c in row:
                    v = _num(row[c])
                    if v is not None:
                        out.append(RatingRow(uid, rater, c, v))
        except ValueError as e:
            raise ValueError(f"{p}: row {n}: {e}") from None
    return out


def agreement(rows: Sequence[RatingRow], rubric: Rubric) -> list[CriterionAgreement]:
    """Agreement per rubric criterion that has ratings from at least two raters."""
    level = rubric.calibration.level
    weights: Literal["quadratic"] | None = None if level == "nominal" else "quadratic"
    by: dict[str, list[RatingRow]] = defaultdict(list)
    for r in rows:
        by[r.criterion].append(r)
    out = []
    for c in rubric.criteria:
        rs = by.get(c.name, [])
        raters = {r.rater for r in rs}
        if len(raters) < 2:
            continue
        rat = ratings_from_long([r.id for r in rs], [r.rater for r in rs], [r.score for r in rs])
        present = (rat.codes >= 0).sum(axis=0)
        alpha = krippendorff_alpha(rat, level=level)
        try:
            ps = pair_stats(rat, weights=weights, min_overlap=2)
            ks = np.asarray(ps.kappa, dtype=float)
            ks = ks[~np.isnan(ks)]
            kappa = float(ks.mean()) if ks.size else float("nan")
        except (ValueError, ZeroDivisionError):
            kappa = float("nan")
        flagged = bool(math.isnan(alpha) or alpha < rubric.calibration.alpha_min)
        out.append(
            CriterionAgreement(
                c.name,
                int((present >= 2).sum()),
                len(raters),
                len(rs),
                float(alpha),
                kappa,
                flagged,
            )
        )
    return out


def consensus(rows: Sequence[RatingRow]) -> dict[str, dict[str, float]]:
    """``{criterion: {id: mean score over raters}}``."""
    acc: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
    for r in rows:
        acc[r.criterion][r.id].append(r.score)
    return {c: {i: float(np.mean(v)) for i, v in d.items()} for c, d in acc.items()}
