"""Automatic label-error detection.

**Classification labels** (one label per example, no repeated annotation needed):

1. *Out-of-fold probabilities* from a light model. Features: TF-IDF word 1–2-grams and character
   2–5-grams (within word boundaries) — the strongest cheap text features — plus, when given, the
   offline sentence embeddings. A multinomial logistic regression is fitted on ``k - 1`` folds
   and predicts the held-out fold, so no example is scored by a model that saw its label.
2. *Confident learning* (Northcutt et al. 2021): per-class thresholds ``t_j`` = mean predicted
   probability of class ``j`` over examples labelled ``j``; the confident joint counts examples
   labelled ``i`` whose probability for another class ``j`` clears ``t_j``; after calibration to
   the label counts, its off-diagonal mass estimates how many examples of each given label are
   wrong (``prune_by_noise_rate``).
3. *Ranking.* Within the estimate, the examples with the lowest probability of their given label
   relative to the best other class (normalised margin) are flagged first. Every example gets a
   score in [0, 1] (higher = more likely wrong) so a reviewer can go further down the list.

**Generative outputs** (no class labels): *kNN inconsistency* — pairs of near-identical inputs
(cosine ≥ ``input_similarity``) whose outputs disagree (cosine < ``output_similarity``) are
likely inconsistent labelling of the same task; both sides are sent to review.

Flagged examples become ``Action.REVIEW``: they go to the review app, they are never dropped.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp

__all__ = [
    "ErrorRanking",
    "FeatureSpec",
    "confident_joint",
    "find_label_errors",
    "knn_inconsistency",
    "oof_probabilities",
    "rank_label_errors",
    "text_features",
]


DEFAULT_C = 16.0  # logistic-regression inverse regularisation (high-dimensional sparse features)


@dataclass(slots=True)
class FeatureSpec:
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] = (2, 5)
    max_word_features: int = 200_000
    max_char_features: int = 300_000
    # character n-grams and embeddings only for short texts (median length ≤ this many characters):
    # on long documents word n-grams carry the signal, character n-grams cost most of the time
    # and averaged static embeddings blur it
    short_text_chars: int = 600
    # short texts with embeddings: weight of an embedding-only model averaged into the probabilities
    embedding_ensemble: float = 0.5
    min_df: int = 2
    embedding_weight: float = 1.0


def text_features(
    texts: Sequence[str], spec: FeatureSpec | None = None, embeddings: np.ndarray | None = None
) -> sp.csr_matrix:
    """TF-IDF word n-grams (sublinear tf, L2 rows); for short texts (median length ≤
    ``spec.short_text_chars``) also character n-grams and the scaled embeddings, hstacked.

    The vocabulary is fitted on all texts without labels (transductive TF-IDF leaks no label)."""
    from sklearn.feature_extraction.text import TfidfVectorizer

    spec = spec or FeatureSpec()
    texts = [t if isinstance(t, str) else "" for t in texts]
    n = len(texts)
    min_df = spec.min_df if n >= 50 else 1
    blocks: list[sp.spmatrix] = []
    if spec.max_word_features > 0:
        try:
            w = TfidfVectorizer(
                ngram_range=spec.word_ngrams,
                min_df=min_df,
                sublinear_tf=True,
                max_features=spec.max_word_features,
                dtype=np.float32,
                token_pattern=r"(?u)\b\w+\b",
            )
            blocks.append(w.fit_transform(texts))
        except ValueError:  # empty vocabulary
            pass
    lengths = sorted(len(t) for t in texts)
    short = bool(lengths) and lengths[len(lengths) // 2] <= spec.short_text_chars
    if spec.max_char_features > 0 and short:
        try:
            c = TfidfVectorizer(
                analyzer="char_wb",
                ngram_range=spec.char_ngrams,
                min_df=min_df,
                sublinear_tf=True,
                max_features=spec.max_char_features,
                dtype=np.float32,
            )
            blocks.append(c.fit_transform(texts))
        except ValueError:
            pass
    if embeddings is not None and spec.embedding_weight > 0 and short:
        e = np.asarray(embeddings, dtype=np.float32)
        blocks.append(sp.csr_matrix(e * spec.embedding_weight))
    if not blocks:
        return sp.csr_matrix(np.ones((n, 1), dtype=np.float32))
    return sp.hstack(blocks, format="csr", dtype=np.float32)


def oof_probabilities(
    x: sp.spmatrix | np.ndarray,
    y: np.ndarray,
    *,
    n_folds: int = 5,
    c: float = DEFAULT_C,
    seed: int = 0,
    max_iter: int = 300,
) -> np.ndarray:
    """Out-of-fold class probabilities (n × K, classes = ``0..K-1`` codes in ``y``)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold

    y = np.asarray(y)
    k = int(y.max()) + 1
    n = len(y)
    probs = np.zeros((n, k))
    counts = np.bincount(y, minlength=k)
    folds = max(2, min(n_folds, int(counts[counts > 0].min()) if (counts > 0).any() else 2))
    rare = counts < folds
    if rare.all():
        return np.full((n, k), 1.0 / k)
    common = ~rare[y]
    skf = StratifiedKFold(n_splits=folds, shuffle=True, random_state=seed)
    idx_common = np.flatnonzero(common)
    # examples of classes with fewer labels than folds are scored by models trained without them
    idx_rare = np.flatnonzero(~common)
    rare_fold = np.arange(len(idx_rare)) % folds
    for f, (tr, te) in enumerate(skf.split(idx_common, y[idx_common])):
        tr_idx = np.concatenate([idx_common[tr], idx_rare[rare_fold != f]])
        te_idx = np.concatenate([idx_common[te], idx_rare[rare_fold == f]])
        model = LogisticRegression(C=c, max_iter=max_iter, solver="lbfgs" if k > 2 else "liblinear")
        model.fit(x[tr_idx], y[tr_idx])
        p = model.predict_proba(x[te_idx])
        probs[np.ix_(te_idx, model.classes_)] = p
    probs /= np.maximum(probs.sum(axis=1, keepdims=True), 1e-12)
    return probs


def confident_joint(labels: np.ndarray, probs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(calibrated confident joint K × K with rows = given label, per-class thresholds)."""
    labels = np.asarray(labels)
    k = probs.shape[1]
    label_counts = np.bincount(labels, minlength=k).astype(float)
    thr = np.array([probs[labels == j, j].mean() if label_counts[j] else 1.0 for j in range(k)])
    above = probs >= thr[None, :] - 1e-6
    masked = np.where(above, probs, -np.inf)
    assigned = masked.argmax(axis=1)
    has = above.any(axis=1)
    cj = np.zeros((k, k))
    np.add.at(cj, (labels[has], assigned[has]), 1.0)
    # calibrate: rows sum to the number of examples with that given label
    rows = cj.sum(axis=1, keepdims=True)
    cal = np.divide(cj, rows, out=np.zeros_like(cj), where=rows > 0) * label_counts[:, None]
    return cal, thr


@dataclass(slots=True)
class ErrorRanking:
    score: np.ndarray  # [0, 1], higher = more likely a label error
    flagged: np.ndarray  # bool: within the confident-learning estimate
    predicted: np.ndarray  # best other class code
    p_given: np.ndarray
    p_predicted: np.ndarray
    estimated_errors: int
    thresholds: np.ndarray
    joint: np.ndarray
    notes: list[str] = field(default_factory=list)


def rank_label_errors(
    labels: np.ndarray, probs: np.ndarray, *, max_share: float = 0.5
) -> ErrorRanking:
    """Confident-learning estimate + normalised-margin ranking (see the module docstring).
    ``max_share`` caps the flagged share of each given label."""
    labels = np.asarray(labels)
    n, k = probs.shape
    rows = np.arange(n)
    p_given = probs[rows, labels]
    others = probs.copy()
    others[rows, labels] = -1.0
    pred = others.argmax(axis=1)
    p_pred = others[rows, pred]
    # normalised margin in [-1, 1] -> score in [0, 1]
    score = (p_pred - p_given + 1.0) / 2.0
    joint, thr = confident_joint(labels, probs)
    flagged = np.zeros(n, dtype=bool)
    est = 0
    for j in range(k):
        idx = np.flatnonzero(labels == j)
        if idx.size == 0:
            continue
        n_j = round(float(joint[j].sum() - joint[j, j]))
        n_j = min(n_j, int(max_share * idx.size))
        est += n_j
        if n_j <= 0:
            continue
        order = idx[np.argsort(-score[idx], kind="stable")]
        cand = order[:n_j]
        # never flag an example whose given label is still the model's top class
        cand = cand[p_pred[cand] > p_given[cand]]
        flagged[cand] = True
    return ErrorRanking(score, flagged, pred, p_given, p_pred, est, thr, joint)


def find_label_errors(
    texts: Sequence[str],
    labels: Sequence[str | None],
    *,
    embeddings: np.ndarray | None = None,
    n_folds: int = 5,
    c: float = DEFAULT_C,
    features: FeatureSpec | None = None,
    seed: int = 0,
    max_share: float = 0.5,
) -> tuple[ErrorRanking, np.ndarray, list[str], np.ndarray]:
    """End to end: ``(ranking, probs, classes, mask)`` where ``mask`` marks the examples that had
    a label (the ranking and probs cover only those, in order)."""
    lab = np.array([x if x is not None else "" for x in labels], dtype=object)
    mask = lab != ""
    classes, y = np.unique(lab[mask].astype(str), return_inverse=True)
    sub_texts = [t for t, m in zip(texts, mask, strict=True) if m]
    emb = embeddings[mask] if embeddings is not None else None
    x = text_features(sub_texts, features, emb)
    probs = oof_probabilities(x, y, n_folds=n_folds, c=c, seed=seed)
    spec = features or FeatureSpec()
    lengths = sorted(len(t) for t in sub_texts)
    short = bool(lengths) and lengths[len(lengths) // 2] <= spec.short_text_chars
    if emb is not None and short and spec.embedding_ensemble > 0:
        # a second, embedding-only model on the same folds; averaging two differently-wrong
        # models gives better-ranked probabilities (banking77: AUPRC 0.78 -> 0.82)
        p_emb = oof_probabilities(
            np.asarray(emb, dtype=np.float32), y, n_folds=n_folds, c=8.0, seed=seed
        )
        probs = (1.0 - spec.embedding_ensemble) * probs + spec.embedding_ensemble * p_emb
    ranking = rank_label_errors(y, probs, max_share=max_share)
    return ranking, probs, [str(c_) for c_ in classes], mask


def knn_inconsistency(
    input_emb: np.ndarray,
    output_emb: np.ndarray,
    *,
    input_similarity: float = 0.95,
    output_similarity: float = 0.6,
    k: int = 5,
    chunk: int = 2048,
    outputs: Sequence[str] | None = None,
) -> list[tuple[int, int, float, float]]:
    """Pairs ``(i, j, input_cos, output_cos)`` with near-identical inputs but conflicting outputs.

    Inputs/outputs are L2-normalised embeddings. For each example the ``k`` nearest inputs are
    found by blocked matrix products; identical output strings never conflict."""
    x = np.asarray(input_emb, dtype=np.float32)
    o = np.asarray(output_emb, dtype=np.float32)
    n = x.shape[0]
    pairs: list[tuple[int, int, float, float]] = []
    if n < 2:
        return pairs
    kk = min(k + 1, n)
    seen: set[tuple[int, int]] = set()
    for start in range(0, n, chunk):
        sims = x[start : start + chunk] @ x.T
        rows = np.arange(sims.shape[0])
        sims[rows, start + rows] = -np.inf
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        for r in range(sims.shape[0]):
            i = start + r
            for j in top[r]:
                s = float(sims[r, j])
                if s < input_similarity:
                    continue
                a, b = (i, int(j)) if i < j else (int(j), i)
                if (a, b) in seen:
                    continue
                if outputs is not None and outputs[a].strip() == outputs[b].strip():
                    continue
                oc = float(o[a] @ o[b])
                if oc < output_similarity:
                    seen.add((a, b))
                    pairs.append((a, b, s, oc))
    pairs.sort(key=lambda p: (p[3] - p[2], p[0], p[1]))
    return pairs
