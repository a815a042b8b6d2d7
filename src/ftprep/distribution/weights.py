"""Importance weights that move the training mix toward production proportions.

The weight of a training input estimates the density ratio p_production(x) / p_training(x) with a
k-nearest-neighbour classifier over the pooled inputs: among the ``k`` nearest neighbours of the
item (itself excluded), ``n_p`` are production and ``n_t`` training, and

    w = ((n_p + a * r) / (n_t + a)) / r,        r = n_production / n_training

(the pseudo-count ``a`` shrinks toward ratio 1, not toward equal counts). Weights are clipped at
``max_weight`` when set (off by default: clipping lowers the estimated ratio of exactly the
thin regions that matter) and self-normalised to mean 1, as importance weights must be. Averaged over a
region they estimate the region's production/training ratio; where a region is thin in training,
a small ``k`` keeps the estimate local (a large ``k`` smooths it toward 1).

The effective sample size ``(sum w)^2 / sum w^2`` says what the reweighting costs.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ftprep.distribution.knn import knn


@dataclass(slots=True)
class WeightParams:
    k: int = 5
    pseudo_count: float = 0.25
    max_weight: float = 0.0  # 0: no clipping (clipping biases region ratios low)
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> WeightParams:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


def density_ratio_weights(
    train_emb: np.ndarray, prod_emb: np.ndarray, params: WeightParams | None = None
) -> np.ndarray:
    """Per-training-item importance weights (mean 1)."""
    p = params or WeightParams()
    n_t, n_p = len(train_emb), len(prod_emb)
    if n_t < 2 or n_p < 1:
        return np.ones(n_t)
    k = max(1, min(p.k, n_t - 1, n_p))
    d_tt, _ = knn(train_emb, train_emb, k, exclude_self=True, seed=p.seed)
    d_tp, _ = knn(train_emb, prod_emb, k, seed=p.seed)
    dist = np.concatenate([d_tt, d_tp], axis=1)
    is_prod = np.concatenate([np.zeros(d_tt.shape), np.ones(d_tp.shape)], axis=1)
    order = np.argsort(dist, axis=1, kind="stable")[:, :k]
    n_prod = np.take_along_axis(is_prod, order, axis=1).sum(axis=1)
    n_train = k - n_prod
    r = n_p / n_t
    w = (n_prod + p.pseudo_count * r) / (n_train + p.pseudo_count) / r
    w = w / w.mean()
    if p.max_weight:
        for _ in range(5):  # clip, renormalise; a few rounds settle it
            w = np.minimum(w, p.max_weight)
            w = w / w.mean()
    return w


def effective_sample_size(w: np.ndarray) -> float:
    s2 = float(np.sum(w * w))
    return float(np.sum(w)) ** 2 / s2 if s2 > 0 else 0.0


def resampling_plan(weights: np.ndarray, n_target: int | None = None, seed: int = 0) -> np.ndarray:
    """Counts per training item for a resampled set of ``n_target`` items (default: same size)
    drawn in proportion to ``weights`` (systematic resampling: low variance, reproducible)."""
    n = len(weights)
    m = n if n_target is None else int(n_target)
    if n == 0 or m <= 0:
        return np.zeros(n, dtype=np.int64)
    cum = np.cumsum(weights / weights.sum())
    u = (np.random.default_rng(seed).random() + np.arange(m)) / m
    idx = np.minimum(np.searchsorted(cum, u, side="right"), n - 1)
    return np.bincount(idx, minlength=n).astype(np.int64)
