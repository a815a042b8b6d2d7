"""Per-annotator reliability: agreement with the leave-one-out consensus and with expert gold.

Raw agreement with the majority rewards an annotator who gives the most frequent label to
everything; every measure here is chance-corrected (Cohen's κ of the annotator's labels against
the reference), so a constant annotator and a random one both score ≈ 0.

*Leave-one-out consensus*: for each label an annotator gave, the reference is the majority of the
*other* annotators' labels on that example (ties broken by the overall label frequency); the
annotator's own vote never counts towards their reference. For ordinal ratings the κ uses
quadratic weights.

*Flagging*: an annotator with at least ``min_items`` scored labels is flagged when their κ is
below ``min_kappa`` or is an outlier below the others (robust z-score below ``-z_threshold``,
using the median and MAD of all annotators' κ).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ftprep.agreement import Ratings, Weights, cohen_kappa_table


@dataclass(slots=True)
class AnnotatorStats:
    annotator: str
    n_labels: int
    n_scored: int  # labels with a leave-one-out reference
    loo_kappa: float
    loo_agreement: float
    gold_n: int
    gold_kappa: float
    gold_agreement: float
    model_reliability: float  # Dawid–Skene chance-corrected accuracy (nan when not modelled)
    top_label_share: float  # share of the annotator's most used label
    flagged: bool = False
    flag_reason: str = ""

    def to_row(self) -> dict[str, Any]:
        def f(x: float) -> float | None:
            return None if np.isnan(x) else round(float(x), 4)

        return {
            "annotator": self.annotator,
            "labels": self.n_labels,
            "scored": self.n_scored,
            "kappa_vs_loo": f(self.loo_kappa),
            "agreement_vs_loo": f(self.loo_agreement),
            "gold_items": self.gold_n,
            "kappa_vs_gold": f(self.gold_kappa),
            "agreement_vs_gold": f(self.gold_agreement),
            "model_reliability": f(self.model_reliability),
            "top_label_share": f(self.top_label_share),
            "flagged": self.flagged,
            "reason": self.flag_reason,
        }


def _tiebreak_argmax(counts: np.ndarray, prior: np.ndarray) -> np.ndarray:
    k = counts.shape[-1]
    rank = np.argsort(np.argsort(-prior, kind="stable"), kind="stable")
    return np.asarray((counts + (k - rank) / (k + 1.0) * 1e-3).argmax(axis=-1))


def _median_code(counts: np.ndarray) -> np.ndarray:
    """Lower median of each row's rating distribution (codes are ranks)."""
    cum = np.cumsum(counts, axis=1)
    half = counts.sum(axis=1, keepdims=True) / 2.0
    return np.asarray((cum >= half).argmax(axis=1))


def per_rater_tables(r: Ratings, reference: np.ndarray) -> np.ndarray:
    """raters × K × K confusion of each rater's labels (rows) against ``reference`` codes per
    unit (columns; -1 = no reference)."""
    k = r.n_values
    rr, uu = np.nonzero(r.codes >= 0)
    ref = reference[uu]
    ok = ref >= 0
    tab = np.zeros((r.n_raters, k, k))
    np.add.at(tab, (rr[ok], r.codes[rr[ok], uu[ok]], ref[ok]), 1.0)
    return tab


def loo_tables(r: Ratings, *, ordinal: bool = False) -> np.ndarray:
    """raters × K × K: each rater's labels against the leave-one-out consensus of the others."""
    k = r.n_values
    counts = r.counts().astype(float)
    prior = counts.sum(axis=0)
    rr, uu = np.nonzero(r.codes >= 0)
    ll = r.codes[rr, uu]
    others = counts[uu].copy()
    others[np.arange(len(ll)), ll] -= 1.0
    has = others.sum(axis=1) > 0
    ref = _median_code(others) if ordinal else _tiebreak_argmax(others, prior)
    tab = np.zeros((r.n_raters, k, k))
    np.add.at(tab, (rr[has], ll[has], ref[has]), 1.0)
    return tab


def _kappa_and_agreement(tab: np.ndarray, weights: Weights) -> tuple[float, float]:
    n = tab.sum()
    if n == 0:
        return float("nan"), float("nan")
    agree = float(np.trace(tab) / n)
    kap = cohen_kappa_table(tab, weights)
    if np.isnan(kap):  # a constant annotator against a constant reference: no information
        kap = 0.0
    return kap, agree


def annotator_stats(
    r: Ratings,
    *,
    gold: np.ndarray | None = None,
    ordinal: bool = False,
    model_reliability: np.ndarray | None = None,
    min_items: int = 20,
    min_kappa: float = 0.2,
    z_threshold: float = 2.5,
) -> list[AnnotatorStats]:
    """Statistics per annotator, flagged ones marked; sorted from least to most reliable.

    ``gold``: expert label code per unit (-1 = none)."""
    weights: Weights = "quadratic" if ordinal else None
    loo = loo_tables(r, ordinal=ordinal)
    gtab = per_rater_tables(r, gold) if gold is not None else None
    out: list[AnnotatorStats] = []
    n_per = (r.codes >= 0).sum(axis=1)
    for i, name in enumerate(r.raters):
        kap, agr = _kappa_and_agreement(loo[i], weights)
        if gtab is not None:
            gk, ga = _kappa_and_agreement(gtab[i], weights)
            gn = int(gtab[i].sum())
        else:
            gk, ga, gn = float("nan"), float("nan"), 0
        own = np.bincount(r.codes[i][r.codes[i] >= 0], minlength=r.n_values)
        top = float(own.max() / own.sum()) if own.sum() else float("nan")
        mr = float(model_reliability[i]) if model_reliability is not None else float("nan")
        out.append(
            AnnotatorStats(name, int(n_per[i]), int(loo[i].sum()), kap, agr, gn, gk, ga, mr, top)
        )
    _flag(out, min_items=min_items, min_kappa=min_kappa, z_threshold=z_threshold)
    out.sort(key=lambda s: (np.inf if np.isnan(_score(s)) else _score(s), s.annotator))
    return out


def _score(s: AnnotatorStats) -> float:
    """The reliability used for ranking: κ against gold when there is enough gold, else LOO κ."""
    if s.gold_n >= 20 and not np.isnan(s.gold_kappa):
        return s.gold_kappa
    return s.loo_kappa


def _flag(
    stats: list[AnnotatorStats], *, min_items: int, min_kappa: float, z_threshold: float
) -> None:
    eligible = [s for s in stats if s.n_scored >= min_items and not np.isnan(_score(s))]
    if not eligible:
        return
    ks = np.array([_score(s) for s in eligible])
    med = float(np.median(ks))
    mad = float(np.median(np.abs(ks - med))) * 1.4826
    scale = max(mad, 0.05)
    for s in eligible:
        k = _score(s)
        z = (k - med) / scale
        basis = (
            "gold" if (s.gold_n >= 20 and not np.isnan(s.gold_kappa)) else "leave-one-out consensus"
        )
        if k < min_kappa:
            s.flagged = True
            s.flag_reason = f"κ vs {basis} = {k:.2f} < {min_kappa:g}"
        elif len(eligible) >= 4 and z < -z_threshold:
            s.flagged = True
            s.flag_reason = (
                f"κ vs {basis} = {k:.2f}, {abs(z):.1f} robust SD below the median {med:.2f}"
            )
        if s.flagged and not np.isnan(s.top_label_share) and s.top_label_share > 0.9:
            s.flag_reason += f"; gives one label {s.top_label_share:.0%} of the time"
