"""Per-item coverage of production inputs by the training inputs, calibrated without labels.

For each production item four pieces of evidence that it lies where training has no examples:

``nn_distance``
    cosine distance to the nearest training input;
``density_ratio``
    log odds of production vs training among its ``k_pool`` nearest neighbours in the pooled
    set (a kNN classifier's density-ratio estimate; high where production is dense and training
    thin, which catches a missing region right next to a covered one);
``token_ratio``
    the largest log ratio, over the item's words, of the word's document frequency in production
    (the item itself left out) to that in training: vocabulary that production uses and
    training lacks;
``novel_tokens``
    the number of the item's words never seen in training.

Calibration: a random held-out slice of training (``holdout``) plays "production that is
covered": its evidence is computed the same way against the rest of training, each production
item's evidence becomes an empirical upper-tail p-value under that null, the p-values are combined
with Fisher's method, and the combined score is smoothed over the item's production neighbours
(uncovered regions are regions, so a neighbourhood's evidence counts). The flag threshold is the
``1 - fpr`` quantile of the held-out slice's scores: about ``fpr`` of covered items are flagged
by construction, with no labels.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ftprep.distribution.knn import knn
from ftprep.distribution.text import doc_freq, token_sets

COMPONENTS = ("nn_distance", "density_ratio", "token_ratio", "novel_tokens")


@dataclass(slots=True)
class CoverageParams:
    k_pool: int = 20  # neighbours for the density-ratio evidence
    k_smooth: int = 10  # production neighbours whose evidence is averaged in
    smooth: float = 0.4  # weight of the neighbourhood in the smoothed score
    holdout: float = 0.1  # share of training held out as the covered null
    max_holdout: int = 5000
    fpr: float = 0.05  # share of held-out (covered) items flagged: sets the threshold
    components: tuple[str, ...] = COMPONENTS
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CoverageParams:
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "components" in kw:
            kw["components"] = tuple(kw["components"])
            unknown = set(kw["components"]) - set(COMPONENTS)
            if unknown or not kw["components"]:
                raise ValueError(f"components: expected a non-empty subset of {COMPONENTS}")
        return cls(**kw)


@dataclass(slots=True)
class CoverageScores:
    score: np.ndarray  # smoothed combined evidence per production item (higher = less covered)
    pvalue: np.ndarray  # of ``score`` under the held-out null
    flagged: np.ndarray  # bool: uncovered
    threshold: float
    nn_distance: np.ndarray  # cosine distance to the nearest training item
    nn_index: np.ndarray  # index (into training) of that item
    prod_neighbors: np.ndarray  # (n_prod, k) indices of nearest other production items
    components: dict[str, np.ndarray] = field(default_factory=dict)
    holdout_size: int = 0
    holdout_nn_distance_q: dict[str, float] = field(default_factory=dict)


def _split_holdout(n: int, p: CoverageParams) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(p.seed)
    perm = rng.permutation(n)
    size = round(p.holdout * n)
    size = max(min(50, n // 2), min(size, p.max_holdout))
    return np.sort(perm[:size]), np.sort(perm[size:])


def _pool_log_ratio(
    d_ref: np.ndarray, d_prod: np.ndarray, k: int, n_ref: int, n_prod: int
) -> np.ndarray:
    """Log odds of production among the ``k`` nearest of the merged neighbour lists."""
    dist = np.concatenate([d_ref[:, :k], d_prod[:, :k]], axis=1)
    is_prod = np.concatenate(
        [
            np.zeros((len(d_ref), min(k, d_ref.shape[1]))),
            np.ones((len(d_prod), min(k, d_prod.shape[1]))),
        ],
        axis=1,
    )
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    n_p = np.take_along_axis(is_prod, order, axis=1).sum(axis=1)
    n_t = order.shape[1] - n_p
    return np.log((n_p + 0.5) / (n_t + 0.5) * (n_ref / max(n_prod, 1)))


def _token_evidence(
    query_sets: list[set[str]], df_ref: Any, df_prod: Any, n_ref: int, n_prod: int, in_prod: bool
) -> tuple[np.ndarray, np.ndarray]:
    scale = n_ref / max(n_prod, 1)
    ratio = np.zeros(len(query_sets))
    novel = np.zeros(len(query_sets))
    own = 1 if in_prod else 0
    for i, s in enumerate(query_sets):
        best = 0.0
        nov = 0
        for w in s:
            t = df_ref.get(w, 0)
            if t == 0:
                nov += 1
            v = np.log(((df_prod.get(w, 0) - own) * scale + 1.0) / (t + 1.0))
            best = max(best, v)
        ratio[i] = best
        novel[i] = nov
    return ratio, novel


def upper_pvalue(values: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Empirical upper-tail p-value of each value under ``null`` (ties count half)."""
    s = np.sort(null)
    above = len(s) - np.searchsorted(s, values, side="right")
    ties = np.searchsorted(s, values, side="right") - np.searchsorted(s, values, side="left")
    return (above + 0.5 * ties + 1.0) / (len(s) + 1.0)


def coverage_scores(
    train_emb: np.ndarray,
    prod_emb: np.ndarray,
    train_texts: list[str],
    prod_texts: list[str],
    params: CoverageParams | None = None,
) -> CoverageScores:
    p = params or CoverageParams()
    n_t, n_p = len(train_emb), len(prod_emb)
    if n_t < 20 or n_p < 5:
        raise ValueError(
            f"coverage needs at least 20 training and 5 production inputs (got {n_t}, {n_p})"
        )
    h_idx, r_idx = _split_holdout(n_t, p)
    x_ref, x_hold = train_emb[r_idx], train_emb[h_idx]
    kp = min(p.k_pool, len(r_idx), n_p - 1)
    ks = min(p.k_smooth, n_p - 1)

    d_pr, i_pr = knn(prod_emb, x_ref, kp, seed=p.seed)
    d_pp, i_pp = knn(prod_emb, prod_emb, max(kp, ks), exclude_self=True, seed=p.seed)
    d_hr, _ = knn(x_hold, x_ref, kp, seed=p.seed)
    d_hp, i_hp = knn(x_hold, prod_emb, max(kp, ks), seed=p.seed)

    comp_p: dict[str, np.ndarray] = {"nn_distance": d_pr[:, 0]}
    comp_h: dict[str, np.ndarray] = {"nn_distance": d_hr[:, 0]}
    comp_p["density_ratio"] = _pool_log_ratio(d_pr, d_pp, kp, len(r_idx), n_p)
    comp_h["density_ratio"] = _pool_log_ratio(d_hr, d_hp, kp, len(r_idx), n_p)
    if "token_ratio" in p.components or "novel_tokens" in p.components:
        ref_sets = token_sets([train_texts[i] for i in r_idx])
        prod_sets = token_sets(prod_texts)
        hold_sets = token_sets([train_texts[i] for i in h_idx])
        df_ref, df_prod = doc_freq(ref_sets), doc_freq(prod_sets)
        comp_p["token_ratio"], comp_p["novel_tokens"] = _token_evidence(
            prod_sets, df_ref, df_prod, len(r_idx), n_p, in_prod=True
        )
        comp_h["token_ratio"], comp_h["novel_tokens"] = _token_evidence(
            hold_sets, df_ref, df_prod, len(r_idx), n_p, in_prod=False
        )

    g_p = np.zeros(n_p)
    g_h = np.zeros(len(h_idx))
    for name in p.components:
        g_p -= np.log(upper_pvalue(comp_p[name], comp_h[name]))
        g_h -= np.log(upper_pvalue(comp_h[name], comp_h[name]))
    s_p = (1 - p.smooth) * g_p + p.smooth * g_p[i_pp[:, :ks]].mean(axis=1)
    s_h = (1 - p.smooth) * g_h + p.smooth * g_p[i_hp[:, :ks]].mean(axis=1)
    threshold = float(np.quantile(s_h, 1 - p.fpr))
    nn_q = {f"q{int(q * 100)}": float(np.quantile(d_hr[:, 0], q)) for q in (0.5, 0.9, 0.95, 0.99)}
    return CoverageScores(
        score=s_p,
        pvalue=upper_pvalue(s_p, s_h),
        flagged=s_p > threshold,
        threshold=threshold,
        nn_distance=d_pr[:, 0].astype(np.float64),
        nn_index=r_idx[i_pr[:, 0]],
        prod_neighbors=i_pp[:, :ks],
        components=comp_p,
        holdout_size=len(h_idx),
        holdout_nn_distance_q=nn_q,
    )
