"""The coverage estimate as ``distribution.coverage`` runs it, in one place for the check and the
benchmarks: per-item coverage scores, production regions, and importance weights of the training
inputs (the kNN density ratio; with training labels the calibrated label-shift estimate, which
then replaces it, see ``labelshift.py``)."""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from ftprep.distribution.coverage import CoverageParams, CoverageScores, coverage_scores
from ftprep.distribution.labelshift import LabelShift, LabelShiftParams, label_shift
from ftprep.distribution.regions import Region, RegionParams, build_regions
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
    cov = coverage_scores(train_emb, prod_emb, train_texts, prod_texts, cp, labels, lp)
    # with training labels and calibration on (the default) the label-shift weights are the
    # importance weights, so the kNN density ratio is computed only if the labels turn out
    # not to be predictable from the inputs
    calibrated = labels is not None and lp.calib_folds >= 2
    knn_w = None if calibrated else density_ratio_weights(train_emb, prod_emb, wp)
    weights = np.ones(len(train_texts)) if knn_w is None else knn_w
    regions, _ = build_regions(
        prod_emb,
        train_emb,
        cov.flagged,
        weights,
        cov.prod_sets,
        cov.train_sets,
        rp,
        cov.prod_neighbors,
        cov.nn_evidence,
    )
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
