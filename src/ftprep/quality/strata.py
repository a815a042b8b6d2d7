"""Quality by stratum (source, collection period, annotator) and drift over time.

* :func:`period_keys` buckets ``collected_at`` into windows (``day``, ``week``, ``month``,
  ``quarter``, ``year`` or ``<N>d``); unparseable or missing dates give ``None``.
* :func:`stratum_table` — n, mean / median / 10th percentile of the overall score and the share
  of each tier per stratum.
* :func:`compare_strata` — does any stratum differ? Kruskal–Wallis across strata, then each
  stratum against all the others (Mann–Whitney U, Holm-corrected); a stratum is *significantly
  different* when its corrected p < ``alpha`` and its mean differs by at least ``min_effect``.
* :func:`drift` — trend (Kendall's τ between period order and score, the Mann–Kendall test on
  individual examples) and a single change point (the split of the ordered periods that best
  separates the mean score, tested with Mann–Whitney U and Bonferroni-corrected for the number
  of candidate splits).
"""

from __future__ import annotations

import datetime as dt
import math
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import stats

__all__ = ["DriftResult", "StratumTest", "compare_strata", "drift", "period_keys", "stratum_table"]


def _parse(s: str | None) -> dt.date | None:
    if not s:
        return None
    s = s.strip()
    try:
        return dt.date.fromisoformat(s[:10])
    except ValueError:
        pass
    try:
        return dt.datetime.fromisoformat(s.replace("Z", "+00:00")).date()
    except ValueError:
        pass
    m = re.match(r"^(\d{4})-(\d{2})$", s)
    if m:
        return dt.date(int(m.group(1)), int(m.group(2)), 1)
    m = re.match(r"^(\d{4})$", s)
    return dt.date(int(m.group(1)), 1, 1) if m else None


def period_keys(values: Sequence[str | None], window: str = "quarter") -> list[str | None]:
    """Sortable period label of each ``collected_at`` value (``None`` when missing)."""
    w = window.strip().lower()
    m = re.fullmatch(r"(\d+)d", w)
    if w not in ("day", "week", "month", "quarter", "year") and not m:
        raise ValueError(
            f"period window must be day, week, month, quarter, year or <N>d (got {window!r})"
        )
    out: list[str | None] = []
    cache: dict[str, str | None] = {}
    for v in values:
        if v is None:
            out.append(None)
            continue
        if v in cache:
            out.append(cache[v])
            continue
        d = _parse(v)
        key: str | None
        if d is None:
            key = None
        elif w == "day":
            key = d.isoformat()
        elif w == "week":
            iso = d.isocalendar()
            key = f"{iso.year}-W{iso.week:02d}"
        elif w == "month":
            key = f"{d.year}-{d.month:02d}"
        elif w == "quarter":
            key = f"{d.year}-Q{(d.month - 1) // 3 + 1}"
        elif w == "year":
            key = str(d.year)
        else:
            assert m is not None
            n = int(m.group(1))
            start = dt.date.fromordinal((d.toordinal() // n) * n)
            key = start.isoformat()
        cache[v] = key
        out.append(key)
    return out


def stratum_table(
    keys: Sequence[str | None], scores: np.ndarray, tiers: Sequence[str]
) -> list[dict[str, Any]]:
    """One row per stratum (sorted by key; missing key shown as ``(none)``)."""
    idx: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        idx[k if k is not None else "(none)"].append(i)
    rows = []
    tier_names = ("gold", "keep", "review", "drop")
    t = np.asarray(tiers, dtype=object)
    for k in sorted(idx):
        ii = np.asarray(idx[k])
        s = scores[ii]
        row: dict[str, Any] = {
            "stratum": k,
            "n": len(ii),
            "mean": round(float(s.mean()), 4),
            "median": round(float(np.median(s)), 4),
            "p10": round(float(np.percentile(s, 10)), 4),
        }
        for name in tier_names:
            row[name] = round(float((t[ii] == name).mean()), 4)
        rows.append(row)
    return rows


@dataclass
class StratumTest:
    stratum: str
    n: int
    mean: float
    rest_mean: float
    p_value: float  # Holm-corrected, score distribution vs the rest
    significant: bool
    drop_share: float = float("nan")
    rest_drop_share: float = float("nan")
    drop_p: float = float("nan")  # Holm-corrected Fisher exact test on the drop share

    @property
    def direction(self) -> str:
        if (
            not math.isnan(self.drop_p)
            and self.drop_p < 1
            and self.drop_share != self.rest_drop_share
            and abs(self.drop_share - self.rest_drop_share) > abs(self.mean - self.rest_mean)
        ):
            return "lower" if self.drop_share > self.rest_drop_share else "higher"
        return "lower" if self.mean < self.rest_mean else "higher"


def _holm(p: np.ndarray) -> np.ndarray:
    m = len(p)
    order = np.argsort(p)
    adj = np.empty(m)
    running = 0.0
    for rank, i in enumerate(order):
        running = max(running, min(1.0, (m - rank) * p[i]))
        adj[i] = running
    return adj


def compare_strata(
    keys: Sequence[str | None],
    scores: np.ndarray,
    *,
    min_n: int = 20,
    alpha: float = 0.01,
    min_effect: float = 0.05,
    dropped: np.ndarray | None = None,
) -> tuple[float, list[StratumTest]]:
    """Kruskal–Wallis p over strata with ≥ ``min_n`` examples, and each such stratum vs the rest.
    With ``dropped`` (bool per example) a stratum is also significant when its share of dropped
    examples differs from the rest's (Fisher exact test, Holm-corrected) by ≥ ``min_effect``."""
    idx: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        if k is not None:
            idx[k].append(i)
    big = {k: np.asarray(v) for k, v in idx.items() if len(v) >= min_n}
    if len(big) < 2:
        return float("nan"), []
    groups = [scores[v] for v in big.values()]
    try:
        kw_p = float(stats.kruskal(*groups).pvalue)
    except ValueError:  # all values identical
        kw_p = 1.0
    allidx = np.concatenate(list(big.values()))
    names = sorted(big)
    raw = []
    tests = []
    for k in names:
        mask = np.zeros(len(scores), bool)
        mask[big[k]] = True
        inside = scores[big[k]]
        rest = scores[allidx[~mask[allidx]]]
        try:
            p = float(stats.mannwhitneyu(inside, rest, alternative="two-sided").pvalue)
        except ValueError:
            p = 1.0
        raw.append(1.0 if math.isnan(p) else p)
        tests.append(
            StratumTest(k, len(inside), float(inside.mean()), float(rest.mean()), p, False)
        )
    adj = _holm(np.asarray(raw))
    for t, p in zip(tests, adj, strict=True):
        t.p_value = float(p)
        t.significant = bool(p < alpha and abs(t.mean - t.rest_mean) >= min_effect)
    if dropped is not None:
        d = np.asarray(dropped, dtype=bool)
        tot_bad, tot_n = int(d[allidx].sum()), len(allidx)
        raw_d = []
        for t, k in zip(tests, names, strict=True):
            bad_in = int(d[big[k]].sum())
            n_in = len(big[k])
            t.drop_share = bad_in / n_in
            t.rest_drop_share = (tot_bad - bad_in) / max(1, tot_n - n_in)
            table = [[bad_in, n_in - bad_in], [tot_bad - bad_in, tot_n - n_in - (tot_bad - bad_in)]]
            raw_d.append(float(stats.fisher_exact(table).pvalue) if tot_bad else 1.0)
        for t, p in zip(tests, _holm(np.asarray(raw_d)), strict=True):
            t.drop_p = float(p)
            if p < alpha and abs(t.drop_share - t.rest_drop_share) >= min_effect:
                t.significant = True
    return kw_p, tests


@dataclass
class DriftResult:
    periods: list[str]
    means: list[float]
    counts: list[int]
    tau: float = float("nan")
    trend_p: float = float("nan")
    change_at: str | None = None  # first period after the change point
    change_p: float = float("nan")
    before_mean: float = float("nan")
    after_mean: float = float("nan")
    notes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        def r(x: float) -> float | None:
            return None if math.isnan(x) else round(x, 6)

        return {
            "periods": self.periods,
            "means": [round(m, 4) for m in self.means],
            "counts": self.counts,
            "kendall_tau": r(self.tau),
            "trend_p": r(self.trend_p),
            "change_at": self.change_at,
            "change_p": r(self.change_p),
            "before_mean": r(self.before_mean),
            "after_mean": r(self.after_mean),
        }


def drift(keys: Sequence[str | None], scores: np.ndarray, *, min_n: int = 20) -> DriftResult:
    """Trend and change point of the score over ordered periods (periods with < ``min_n``
    examples are kept in the table but the tests need at least three periods in total)."""
    idx: dict[str, list[int]] = defaultdict(list)
    for i, k in enumerate(keys):
        if k is not None:
            idx[k].append(i)
    periods = sorted(idx)
    res = DriftResult(
        periods, [float(scores[idx[p]].mean()) for p in periods], [len(idx[p]) for p in periods]
    )
    usable = [p for p in periods if len(idx[p]) >= min_n]
    if len(usable) < 3:
        res.notes.append("fewer than three periods with enough examples: no drift test")
        return res
    order = {p: j for j, p in enumerate(usable)}
    sel = np.concatenate([np.asarray(idx[p]) for p in usable])
    x = np.concatenate([np.full(len(idx[p]), order[p]) for p in usable])
    y = scores[sel]
    kt = stats.kendalltau(x, y)
    res.tau, res.trend_p = float(kt.statistic), float(kt.pvalue)
    # single change point: maximise between-segment sum of squares over period boundaries
    sums = np.array([scores[idx[p]].sum() for p in usable])
    cnts = np.array([len(idx[p]) for p in usable], dtype=float)
    tot_s, tot_n = sums.sum(), cnts.sum()
    best, best_j = -1.0, -1
    for j in range(1, len(usable)):
        n1, s1 = cnts[:j].sum(), sums[:j].sum()
        n2, s2 = tot_n - n1, tot_s - s1
        gain = n1 * n2 / tot_n * (s1 / n1 - s2 / n2) ** 2
        if gain > best:
            best, best_j = gain, j
    before = y[x < best_j]
    after = y[x >= best_j]
    try:
        p = float(stats.mannwhitneyu(before, after, alternative="two-sided").pvalue)
    except ValueError:
        p = 1.0
    res.change_at = usable[best_j]
    res.change_p = min(1.0, p * (len(usable) - 1))
    res.before_mean, res.after_mean = float(before.mean()), float(after.mean())
    return res
