"""Score a dataset against a rubric: criterion scores, overall score, tier and failing criteria.

:func:`score_dataset` is the whole pipeline without the audit machinery (the check in
:mod:`ftprep.checks.quality` adds report sections and ledger decisions on top), so it can be
used from Python and benchmarked directly::

    from ftprep.quality import load_rubric, score_dataset
    res = score_dataset(load_rubric("rubric.yaml"), dataset, ratings=rows, embed=vectors)
    res.overall, res.tiers, res.failed[i]
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ftprep.examples import Dataset
from ftprep.quality.calibration import CriterionAgreement, RatingRow, agreement, consensus
from ftprep.quality.features import SCORERS, TextFrame, dense_features
from ftprep.quality.learned import (
    Features,
    build_features,
    embedding_features,
    holdout_agreement,
    scorer_from_params,
)
from ftprep.quality.rubric import Criterion, Rubric

__all__ = ["RubricScores", "assign_tiers", "learned_features", "overall_score", "score_dataset"]

MIN_LABELS = 20  # a learned criterion needs at least this many labelled examples (both classes)


@dataclass
class RubricScores:
    ids: list[str]
    criteria: list[Criterion]
    unit: np.ndarray  # n × k criterion scores mapped to [0, 1]; nan = not scored
    overall: np.ndarray  # n, nan-aware weighted mean of unit scores
    tiers: np.ndarray  # object: gold / keep / review / drop
    failed: list[list[str]]  # names of criteria under their minimum, per example
    details: dict[str, dict[int, str]]  # criterion -> {row: evidence}
    agreement: list[CriterionAgreement] = field(default_factory=list)
    learned: dict[str, dict[str, Any]] = field(default_factory=dict)  # criterion -> holdout stats
    judge: dict[str, Any] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    def column(self, name: str) -> np.ndarray:
        return self.unit[:, [c.name for c in self.criteria].index(name)]

    def failing_codes(self, i: int) -> list[str]:
        by = {c.name: c for c in self.criteria}
        return [by[n].reason_code for n in self.failed[i]]


def overall_score(unit: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over the criteria that have a score (weights renormalised per row)."""
    have = ~np.isnan(unit)
    w = np.where(have, weights[None, :], 0.0)
    tot = w.sum(axis=1)
    s = np.where(have, unit, 0.0)
    with np.errstate(invalid="ignore", divide="ignore"):
        out = (s * w).sum(axis=1) / tot
    return np.where(tot > 0, out, np.nan)


def assign_tiers(
    rubric: Rubric, overall: np.ndarray, failed: Sequence[Sequence[str]]
) -> np.ndarray:
    t = np.full(len(overall), "drop", dtype=object)
    o = np.nan_to_num(overall, nan=1.0)  # an example nothing could score is not dropped
    t[o >= rubric.tiers.review] = "review"
    t[o >= rubric.threshold] = "keep"
    t[o >= rubric.tiers.gold] = "gold"
    for i, f in enumerate(failed):
        if f:
            t[i] = (
                "drop"
                if rubric.on_minimum == "exclude"
                else ("review" if t[i] != "drop" else "drop")
            )
    return t


def _frames(
    ds: Dataset, areas: Sequence[str | None], strata: Sequence[str]
) -> dict[str, TextFrame]:
    prompts = ds.texts("prompt")
    return {
        "response": TextFrame(ds.texts("response"), prompts, groups=areas, strata=strata),
        "prompt": TextFrame(prompts, None, groups=areas, strata=strata),
        "full": TextFrame(ds.texts("full"), None, groups=areas, strata=strata),
    }


def learned_features(
    rubric: Rubric,
    frames: dict[str, TextFrame],
    unit: np.ndarray,
    embed: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
    seed: int = 0,
) -> Features:
    """What learned criteria see: text features of response and prompt, the deterministic
    criteria's unit scores (columns of ``unit``), the label-free embedding features when
    ``embed`` is a (prompt, response) pair, and the word and embedding views."""
    det_cols = [j for j, c in enumerate(rubric.criteria) if c.kind == "deterministic"]
    dense, names = dense_features(frames["response"], frames["prompt"])
    if det_cols:
        dense = np.hstack([dense, unit[:, det_cols]])
        names = names + [f"criterion:{rubric.criteria[j].name}" for j in det_cols]
    emb = embed if not isinstance(embed, tuple) else None
    if isinstance(embed, tuple):
        pe, re_ = (np.asarray(x, dtype=np.float32) for x in embed)
        ef, enames = embedding_features(pe, re_, np.log1p(frames["response"].n_words), seed)
        dense = np.hstack([dense, ef])
        names = names + enames
        emb = np.hstack([pe, re_]) / np.float32(np.sqrt(2.0))
    return build_features(dense, names, [frames["prompt"].texts, frames["response"].texts], emb)


def score_dataset(
    rubric: Rubric,
    ds: Dataset,
    *,
    ratings: Sequence[RatingRow] | None = None,
    embed: np.ndarray | tuple[np.ndarray, np.ndarray] | None = None,
    judge_run: Callable[
        [list[Criterion], list[str], list[str]], tuple[dict[str, np.ndarray], dict[str, Any]]
    ]
    | None = None,
    seed: int = 0,
) -> RubricScores:
    """Score every example on every criterion (see module doc). ``embed``: optional embeddings
    for learned criteria — a pair (prompt, response) of L2-normalised n × e matrices (which also
    gives the label-free embedding features: prompt–response cosine, expected length for the
    prompt, typicality), or one n × e matrix used as is; ``judge_run``: callable that scores the
    judged criteria (returns scores on each criterion's scale and a summary dict)."""
    n = len(ds)
    ids = ds.ids
    areas = ds.column("area")
    from ftprep.quality.strata import period_keys

    periods = period_keys(ds.column("collected_at"), rubric.strata.period)
    strata = [f"{s}|{p}" for s, p in zip(ds.column("source"), periods, strict=True)]
    frames = _frames(ds, areas, strata)
    k = len(rubric.criteria)
    unit = np.full((n, k), np.nan)
    details: dict[str, dict[int, str]] = {}
    notes: list[str] = []
    empty_fields = {f for f, fr in frames.items() if n and not any(t.strip() for t in fr.texts)}
    for f in sorted(empty_fields):
        notes.append(f"every example has an empty {f}: criteria on it are not applicable")
    for j, c in enumerate(rubric.criteria):
        if c.kind != "deterministic" or c.field in empty_fields:
            continue
        assert c.scorer is not None
        res = SCORERS[c.scorer](frames[c.field], c.params)
        unit[:, j] = np.clip(res.scores, 0.0, 1.0)
        details[c.name] = res.details

    # calibration: agreement and consensus labels
    agr: list[CriterionAgreement] = []
    cons: dict[str, dict[str, float]] = {}
    if ratings:
        agr = agreement(ratings, rubric)
        cons = consensus(ratings)

    # learned criteria
    learned: dict[str, dict[str, Any]] = {}
    learned_cs = rubric.by_kind("learned")
    if learned_cs:
        feats = learned_features(rubric, frames, unit, embed, seed)
        pos = {x: i for i, x in enumerate(ids)}
        for c in learned_cs:
            j = rubric.criteria.index(c)
            labels = {pos[i]: v for i, v in cons.get(c.name, {}).items() if i in pos}
            if len(labels) < MIN_LABELS:
                notes.append(
                    f"learned criterion {c.name!r}: {len(labels)} calibration labels "
                    f"(need {MIN_LABELS}); not scored"
                )
                continue
            idx = np.fromiter(labels, dtype=np.int64)
            cont = np.asarray([float(c.to_unit(labels[i])) for i in idx.tolist()])
            thr = rubric.calibration.label_threshold
            y = (cont >= (0.5 if thr is None else thr)).astype(int)
            if y.min() == y.max():
                notes.append(
                    f"learned criterion {c.name!r}: every calibration label is the same class; not scored"
                )
                continue
            stats: dict[str, Any] = {"n_labels": len(idx), "n_good": int(y.sum())}
            proto = scorer_from_params(c.params)
            if min(int(y.sum()), int(len(y) - y.sum())) >= 4:
                stats.update(
                    holdout_agreement(
                        feats,
                        idx,
                        y,
                        cont,
                        holdout=rubric.calibration.holdout,
                        seed=seed,
                        scorer=proto,
                    )
                )
            model = proto.fit(feats, idx, y)
            stats.update(model.describe())
            unit[:, j] = model.predict(feats)
            learned[c.name] = stats

    # judged criteria
    judge_info: dict[str, Any] = {}
    judged = rubric.by_kind("judged")
    if judged:
        if judge_run is None:
            notes.append("judged criteria are off (rubric judge.enabled is false): not scored")
        else:
            vals, judge_info = judge_run(judged, frames["prompt"].texts, frames["response"].texts)
            pos = {x: i for i, x in enumerate(ids)}
            for c in judged:
                if c.name not in vals:
                    continue
                col = np.clip(c.to_unit(vals[c.name]), 0.0, 1.0)
                unit[:, rubric.criteria.index(c)] = col
                labels = {pos[i]: v for i, v in cons.get(c.name, {}).items() if i in pos}
                rows = np.asarray([i for i in labels if not np.isnan(col[i])], dtype=np.int64)
                if len(rows):
                    learned[c.name] = judged_agreement(c, col, rows, labels, rubric)

    weights = np.asarray([c.weight for c in rubric.criteria], dtype=float)
    overall = overall_score(unit, weights)
    mins = [c.unit_minimum for c in rubric.criteria]
    failed: list[list[str]] = [[] for _ in range(n)]
    for j, (c, m) in enumerate(zip(rubric.criteria, mins, strict=True)):
        if m is None:
            continue
        col = unit[:, j]
        for i in np.flatnonzero(~np.isnan(col) & (col < m - 1e-12)):
            failed[int(i)].append(c.name)
    tiers = assign_tiers(rubric, overall, failed)
    return RubricScores(
        ids,
        list(rubric.criteria),
        unit,
        overall,
        tiers,
        failed,
        details,
        agr,
        learned,
        judge_info,
        notes,
    )


def judged_agreement(
    c: Criterion, col: np.ndarray, rows: np.ndarray, labels: dict[int, float], rubric: Rubric
) -> dict[str, Any]:
    """How a judged criterion agrees with the experts' consensus on the examples both scored:
    AUROC against the binarised label and Spearman ρ against the consensus score."""
    from scipy.stats import spearmanr

    from ftprep.quality.learned import _auroc

    cont = np.asarray([float(c.to_unit(labels[int(i)])) for i in rows])
    thr = rubric.calibration.label_threshold
    y = (cont >= (0.5 if thr is None else thr)).astype(int)
    out: dict[str, Any] = {
        "kind": "judged",
        "n_labels": len(rows),
        "n_good": int(y.sum()),
        "auroc": _auroc(y, col[rows]),
    }
    if len(rows) >= 3:
        rho = spearmanr(cont, col[rows]).statistic
        out["spearman"] = float(rho) if np.isfinite(rho) else float("nan")
    return out


def describe_failure(
    res: RubricScores, i: int, rubric: Rubric, max_len: int = 400
) -> tuple[str, str]:
    """``(reason, detail)`` for a decision on row ``i``: the reason is the failing criteria's
    codes joined by ``+`` (or ``below_threshold``); the detail states the score and evidence."""
    codes = res.failing_codes(i)
    reason = "+".join(codes) if codes else "below_threshold"
    o = res.overall[i]
    parts = [f"score {o:.2f} (threshold {rubric.threshold:.2f}, tier {res.tiers[i]})"]
    names = res.failed[i]
    if not names:  # name the weakest criteria instead
        row = res.unit[i]
        order = [
            j
            for j in np.argsort(np.nan_to_num(row, nan=2.0))
            if not math.isnan(row[j]) and row[j] < 1
        ]
        names = [res.criteria[j].name for j in order[:3]]
        if names:
            parts.append("weakest: " + ", ".join(f"{n}={res.column(n)[i]:.2f}" for n in names))
    else:
        parts.append("failed: " + ", ".join(f"{n}={res.column(n)[i]:.2f}" for n in names))
    ev = [res.details.get(nm, {}).get(i) for nm in names]
    ev_s = "; ".join(e for e in ev if e)
    if ev_s:
        parts.append(ev_s)
    return reason, " — ".join(parts)[:max_len]
