"""Classifier two-sample test between training and production inputs, and what explains it.

A logistic regression learns to tell production inputs from training inputs using the sentence
embedding, hashed word unigrams and bigrams, and the surface features of
:mod:`ftprep.distribution.text`. Its out-of-fold AUC is the effect size (0.5: indistinguishable);
the p-value is a permutation test on the held-out scores themselves: the classifier is fitted
once per fold, and the labels of each held-out fold are permuted (``permutations`` times) against
that fold's fixed scores. Given the model fitted on the other folds, the held-out labels are
exchangeable under "no difference", so the test is exact without refitting (one fit per fold
instead of one per fold and permutation). Real collections differ by batch even with no
meaningful shift, so the same test is run between two random halves of training (the null AUC)
and the *excess* AUC is reported. Out-of-fold probabilities localise the shift per item.

Explanations are surface features and words whose prevalence differs between the two sides,
with effect sizes (Cohen's h for presence, Cohen's d for lengths) and a prevalence floor, so a
word that appears in three production inputs cannot pose as the explanation of a shift.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import StratifiedGroupKFold, StratifiedKFold

from ftprep.distribution.text import (
    SURFACE_FEATURES,
    distinct,
    doc_freq,
    surface_features,
    token_sets,
)

MIN_PER_SIDE = 10  # fewer inputs on a side than this: no shift test


@dataclass(slots=True)
class ShiftParams:
    max_per_side: int = 1500  # inputs sampled from each side for the classifier
    folds: int = 3
    permutations: int = 999  # label permutations of the held-out scores (no refits)
    c: float = 1.0  # inverse regularisation of the logistic regression
    min_prevalence: float = 0.02  # explanation must be present in this share of one side
    min_effect: float = 0.2  # |Cohen's h| or |d| for a feature to count as an explanation
    top_words: int = 10
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ShiftParams:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(slots=True)
class ShiftResult:
    auc: float
    null_auc: float
    excess_auc: float
    p_value: float
    n_train: int
    n_production: int
    prod_items: np.ndarray  # indices (into production) of the sampled items
    prod_scores: np.ndarray  # out-of-fold decision scores (log odds, balanced classes) of those
    features: list[dict[str, Any]] = field(default_factory=list)
    words: list[dict[str, Any]] = field(default_factory=list)


_HASHER = HashingVectorizer(
    n_features=2**18,
    ngram_range=(1, 2),
    alternate_sign=False,
    binary=True,
    norm="l2",
    token_pattern=r"(?u)\b\w+\b|[\[\]{}<>()/|?_$%`]",
)


def _design(texts: list[str], emb: np.ndarray) -> sp.csr_matrix:
    feats = surface_features(texts)
    dense = np.column_stack(
        [np.log1p(feats["chars"]) / 5.0, np.log1p(feats["words"]) / 3.0]
        + [feats[n] for n, (kind, _) in SURFACE_FEATURES.items() if kind == "binary"]
    )
    return sp.hstack(
        [_HASHER.transform(texts), sp.csr_matrix(emb), sp.csr_matrix(dense)], format="csr"
    )


def _oof_scores(
    x: sp.csr_matrix,
    y: np.ndarray,
    p: ShiftParams,
    seed: int,
    groups: np.ndarray | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Out-of-fold decision scores and the fold of each row. With ``groups`` in which some text
    repeats (a text on both sides) every copy of it is in the same fold: the classifier would
    otherwise recognise copies it was fitted on, which is memory, not shift."""
    out = np.zeros(len(y))
    fold_of = np.zeros(len(y), dtype=np.int64)
    folds = max(2, min(p.folds, int(np.bincount(y.astype(int)).min())))
    n_groups = len(np.unique(groups)) if groups is not None else len(y)
    if groups is not None and folds <= n_groups < len(y):
        splits = StratifiedGroupKFold(folds, shuffle=True, random_state=seed).split(
            np.zeros(len(y)), y, groups
        )
    else:
        splits = StratifiedKFold(folds, shuffle=True, random_state=seed).split(np.zeros(len(y)), y)
    for f, (tr, te) in enumerate(splits):
        m = LogisticRegression(C=p.c, max_iter=300, class_weight="balanced", solver="liblinear")
        m.fit(x[tr], y[tr])
        out[te] = m.decision_function(x[te])
        fold_of[te] = f
    return out, fold_of


def permutation_pvalue(
    scores: np.ndarray, y: np.ndarray, groups: np.ndarray, permutations: int, seed: int
) -> float:
    """One-sided p-value of the AUC of ``scores`` for labels ``y`` (1 = positive) under label
    permutations within each group (fold): ``(b + 1) / (B + 1)``, ``b`` = permuted AUCs at
    least the observed one. The scores stay fixed, so each permutation costs a rank sum."""
    y = y.astype(bool)
    n1, n0 = int(y.sum()), int((~y).sum())
    if permutations <= 0 or n1 == 0 or n0 == 0:
        return 1.0
    ranks = rankdata(scores)
    observed = ranks[y].sum()
    rng = np.random.default_rng(seed)
    null = np.zeros(permutations)
    for g in np.unique(groups):
        idx = np.nonzero(groups == g)[0]
        k = int(y[idx].sum())
        if k == 0 or k == len(idx):
            null += ranks[idx[y[idx]]].sum()
            continue
        # k labels drawn without replacement among the group's rows, for every permutation
        pick = np.argsort(rng.random((permutations, len(idx))), axis=1)[:, :k]
        null += ranks[idx][pick].sum(axis=1)
    b = int(np.sum(null >= observed - 1e-9))
    return (b + 1) / (permutations + 1)


def _sample(n: int, m: int, rng: np.random.Generator) -> np.ndarray:
    return np.sort(rng.choice(n, size=m, replace=False)) if n > m else np.arange(n)


def classifier_test(
    train_texts: list[str],
    train_emb: np.ndarray,
    prod_texts: list[str],
    prod_emb: np.ndarray,
    params: ShiftParams | None = None,
) -> ShiftResult:
    p = params or ShiftParams()
    rng = np.random.default_rng(p.seed)
    if len(train_texts) < MIN_PER_SIDE or len(prod_texts) < MIN_PER_SIDE:
        raise ValueError(
            f"the shift test needs at least {MIN_PER_SIDE} training and {MIN_PER_SIDE} "
            f"production inputs (got {len(train_texts)}, {len(prod_texts)})"
        )
    # each distinct text once per side: a log repeating its head queries hundreds of times
    # would otherwise weigh those few texts as hundreds of inputs (and the shift test measure
    # their frequency, not a change of form); training's repeats likewise
    t_first, p_first = distinct(train_texts)[0], distinct(prod_texts)[0]
    ti = t_first[_sample(len(t_first), p.max_per_side, rng)]
    pi = p_first[_sample(len(p_first), p.max_per_side, rng)]
    both = [train_texts[i] for i in ti] + [prod_texts[i] for i in pi]
    x = _design(both, np.concatenate([train_emb[ti], prod_emb[pi]]))
    y = np.concatenate([np.zeros(len(ti)), np.ones(len(pi))])
    scores, fold_of = _oof_scores(x, y, p, p.seed, distinct(both)[1])
    auc = float(roc_auc_score(y, scores))
    p_value = permutation_pvalue(scores, y, fold_of, p.permutations, p.seed + 1)
    # null: two random halves of training, same classifier
    half = t_first[rng.permutation(len(t_first))]
    m = min(len(half) // 2, p.max_per_side)
    a_idx, b_idx = half[:m], half[m : 2 * m]
    xn = _design(
        [train_texts[i] for i in a_idx] + [train_texts[i] for i in b_idx],
        np.concatenate([train_emb[a_idx], train_emb[b_idx]]),
    )
    yn = np.concatenate([np.zeros(len(a_idx)), np.ones(len(b_idx))])
    null_auc = float(roc_auc_score(yn, _oof_scores(xn, yn, p, p.seed)[0]))
    res = ShiftResult(
        auc=auc,
        null_auc=null_auc,
        excess_auc=auc - max(null_auc, 0.5),
        p_value=p_value,
        n_train=len(ti),
        n_production=len(pi),
        prod_items=pi,
        prod_scores=scores[len(ti) :],
    )
    # the explanations count inputs as they come (a sample of rows, repeats included): "a third
    # of production is in Spanish" is a share of traffic
    t_rows = [train_texts[i] for i in _sample(len(train_texts), p.max_per_side, rng)]
    p_rows = [prod_texts[i] for i in _sample(len(prod_texts), p.max_per_side, rng)]
    res.features = explain_features(t_rows, p_rows, p)
    res.words = explain_words(t_rows, p_rows, p)
    return res


def cohen_h(p1: float, p2: float) -> float:
    return 2 * math.asin(math.sqrt(p1)) - 2 * math.asin(math.sqrt(p2))


def explain_features(
    train_texts: list[str], prod_texts: list[str], p: ShiftParams
) -> list[dict[str, Any]]:
    """Every surface feature with its effect size; ``explains`` marks those passing the
    prevalence floor and the effect threshold. Sorted by |effect|."""
    ft, fp = surface_features(train_texts), surface_features(prod_texts)
    rows: list[dict[str, Any]] = []
    for name, (kind, desc) in SURFACE_FEATURES.items():
        a, b = ft[name], fp[name]
        if kind == "binary":
            pa, pb = float(a.mean()), float(b.mean())
            eff = cohen_h(pb, pa)
            prevalent = max(pa, pb) >= p.min_prevalence
            row = {
                "feature": name,
                "kind": "presence",
                "description": desc,
                "training": round(pa, 4),
                "production": round(pb, 4),
                "effect": round(eff, 4),
                "effect_size": "cohen_h",
            }
        else:
            la, lb = np.log1p(a), np.log1p(b)
            # identical lengths leave a rounding-level variance (1e-31), not a spread to divide by
            sd = math.sqrt((la.var() + lb.var()) / 2)
            diff = float(lb.mean() - la.mean())
            eff = 0.0 if abs(diff) < 1e-9 else diff / (sd if sd > 1e-9 else 1.0)
            prevalent = True
            row = {
                "feature": name,
                "kind": "median",
                "description": desc,
                "training": float(np.median(a)),
                "production": float(np.median(b)),
                "effect": round(eff, 4),
                "effect_size": "cohen_d(log)",
            }
        row["explains"] = bool(prevalent and abs(eff) >= p.min_effect)
        rows.append(row)
    rows.sort(key=lambda r: -abs(float(r["effect"])))
    return rows


def explain_words(
    train_texts: list[str], prod_texts: list[str], p: ShiftParams
) -> list[dict[str, Any]]:
    """Words whose presence differs most (Cohen's h), present in >= ``min_prevalence`` of the
    side where they are more common."""
    st, sp_ = token_sets(train_texts), token_sets(prod_texts)
    dt, dp = doc_freq(st), doc_freq(sp_)
    nt, n_p = len(st), len(sp_)
    rows: list[dict[str, Any]] = []
    for w in set(dt) | set(dp):
        a, b = dt.get(w, 0) / nt, dp.get(w, 0) / n_p
        if max(a, b) < p.min_prevalence:
            continue
        eff = cohen_h(b, a)
        if abs(eff) >= p.min_effect / 2:
            rows.append(
                {
                    "word": w,
                    "training": round(a, 4),
                    "production": round(b, 4),
                    "effect": round(eff, 4),
                }
            )
    rows.sort(key=lambda r: (-abs(float(r["effect"])), str(r["word"])))
    return rows[: p.top_words]
