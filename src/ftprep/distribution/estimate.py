"""The coverage estimate as ``distribution.coverage`` runs it, in one place for the check and the
benchmarks: per-item coverage scores, production regions, and importance weights of the training
inputs (the kNN density ratio; with training labels the calibrated label-shift estimate, which
then replaces it, see ``labelshift.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from ftprep.distribution.coverage import (
    MIN_PROD,
    CoverageParams,
    CoverageScores,
    coverage_scores,
)
from ftprep.distribution.labelshift import LabelShift, LabelShiftParams, label_shift
from ftprep.distribution.regions import Region, RegionParams, build_regions
from ftprep.distribution.text import distinct
from ftprep.distribution.weights import WeightParams, density_ratio_weights, no_shift_ess


@dataclass(slots=True)
class CoverageEstimate:
    cov: CoverageScores
    regions: list[Region]  # weighted ratios from ``weights``
    weights: np.ndarray  # importance weight per training input, mean 1
    label_shift: LabelShift | None  # with training labels
    calibrated: bool  # the weights are the calibrated label-shift estimate alone
    # with kNN weights alone: their effective sample size (share) between two random parts of
    # training, i.e. the estimator's noise with no shift (NaN: not measured)
    ess_no_shift: float = math.nan


@dataclass(slots=True)
class DistinctInputs:
    """The distinct inputs of a list (``text.distinct``: case, white space and long numbers
    ignored): ``first`` row of each, ``inverse`` (the distinct input of every row), ``counts``
    (rows per distinct input)."""

    first: np.ndarray
    inverse: np.ndarray
    counts: np.ndarray

    @property
    def repeated(self) -> bool:
        return len(self.first) < len(self.inverse)

    def expand_items(self, items: np.ndarray) -> np.ndarray:
        """Rows of the distinct inputs ``items``, sorted (in time proportional to them)."""
        order = np.argsort(self.inverse, kind="stable")  # rows grouped by their distinct input
        starts = np.r_[0, np.cumsum(self.counts)]
        rows = [order[starts[j] : starts[j + 1]] for j in items]
        return np.sort(np.concatenate(rows)) if rows else np.zeros(0, dtype=np.int64)

    def expand_scores(self, cov: CoverageScores) -> CoverageScores:
        """Per-input arrays of ``cov`` (computed over the distinct inputs) for every row; the
        production neighbours of a row are the first rows of its neighbours' inputs."""
        inv = self.inverse
        return replace(
            cov,
            score=cov.score[inv],
            pvalue=cov.pvalue[inv],
            flagged=cov.flagged[inv],
            nn_distance=cov.nn_distance[inv],
            nn_index=cov.nn_index[inv],
            prod_neighbors=self.first[cov.prod_neighbors[inv]],
            components={k: v[inv] for k, v in cov.components.items()},
            nn_evidence=cov.nn_evidence[inv] if len(cov.nn_evidence) else cov.nn_evidence,
            prod_sets=[cov.prod_sets[j] for j in inv],
        )


def distinct_inputs(texts: list[str]) -> DistinctInputs:
    first, inverse = distinct(texts)
    if len(first) < MIN_PROD:  # too few distinct inputs to score: every row as it is
        rows = np.arange(len(texts))
        return DistinctInputs(rows, rows, np.ones(len(texts), dtype=np.int64))
    return DistinctInputs(first, inverse, np.bincount(inverse, minlength=len(first)))


def estimate_coverage(
    train_emb: np.ndarray,
    prod_emb: np.ndarray,
    train_texts: list[str],
    prod_texts: list[str],
    labels: list[str] | None = None,
    cp: CoverageParams | None = None,
    rp: RegionParams | None = None,
    wp: WeightParams | None = None,
    lp: LabelShiftParams | None = None,
) -> CoverageEstimate:
    cp, rp, wp = cp or CoverageParams(), rp or RegionParams(), wp or WeightParams()
    lp = lp or LabelShiftParams(seed=cp.seed)
    # coverage and regions over the distinct production inputs: a log repeats its head queries
    # hundreds of times, and as points those copies would make a dense pocket training "lacks"
    # (all production among their neighbours) although training covers the query; region shares
    # still count every copy (production traffic), and so do the importance weights below
    uniq = distinct_inputs(prod_texts)
    u_texts, u_emb, counts = prod_texts, prod_emb, None
    if uniq.repeated:
        u_texts, u_emb = [prod_texts[i] for i in uniq.first], prod_emb[uniq.first]
        counts = uniq.counts
    cov = coverage_scores(train_emb, u_emb, train_texts, u_texts, cp, labels, lp)
    # with training labels and calibration on (the default) the label-shift weights are the
    # importance weights, so the kNN density ratio is computed only if the labels turn out
    # not to be predictable from the inputs
    calibrated = labels is not None and lp.calib_folds >= 2
    knn_w = None if calibrated else density_ratio_weights(train_emb, prod_emb, wp)
    weights = np.ones(len(train_texts)) if knn_w is None else knn_w
    regions, _ = build_regions(
        u_emb,
        train_emb,
        cov.flagged,
        weights,
        cov.prod_sets,
        cov.train_sets,
        rp,
        cov.prod_neighbors,
        cov.nn_evidence,
        counts=counts,
    )
    if uniq.repeated:  # back to every production input
        cov = uniq.expand_scores(cov)
        for r in regions:
            r.prod_items = uniq.expand_items(r.prod_items)
            r.examples = [int(uniq.first[j]) for j in r.examples]
    ls: LabelShift | None = None
    if labels is not None:
        absent = np.zeros(len(prod_texts), dtype=bool)
        for r in regions:  # regions without any training input: no label
            if r.kind == "cluster" and r.status == "uncovered" and r.n_train == 0:
                absent[r.prod_items] = True
        # uncalibrated, the coverage score's classifier of the labels; calibrated, the estimate
        # fits its own on all of training
        model = None if calibrated else cov.label_model
        ls = label_shift(
            train_texts, train_emb, labels, prod_texts, prod_emb, ~absent, lp, model, cov.flagged
        )
        if not ls.usable:
            calibrated = False
            if knn_w is None:
                knn_w = density_ratio_weights(train_emb, prod_emb, wp)
            weights = knn_w
        else:
            # uncalibrated: the mean with the kNN weights (the two err in opposite directions)
            weights = ls.weights if knn_w is None else (knn_w + ls.weights) / 2
        weights = weights / weights.mean()
        for r in regions:
            r.reweight(weights)
    knn_only = ls is None or not ls.usable
    noise = no_shift_ess(train_emb, len(prod_texts), wp) if knn_only else math.nan
    return CoverageEstimate(cov, regions, weights, ls, calibrated, noise)
