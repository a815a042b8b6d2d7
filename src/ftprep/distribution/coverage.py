"""Per-item coverage of production inputs by the training inputs, calibrated without labels.

For each production item four pieces of evidence that it lies where training has no examples:

``nn_distance``
    cosine distance to the nearest training input;
``density_ratio``
    log odds of production vs training among its nearest neighbours in the pooled set (a kNN
    classifier's density-ratio estimate; high where production is dense and training thin, which
    catches a missing region right next to a covered one), at several neighbourhood sizes
    (``density_k``): each size's log odds becomes a p-value under the held-out null and the
    evidence is the mean of their ``-log p`` (a small neighbourhood sees a missing group of
    fine-grained intents among covered ones, a large one a whole missing domain);
``token_ratio``
    the largest log ratio, over the item's words, of the word's document frequency in production
    (the item itself left out) to that in training: vocabulary that production uses and
    training lacks;
``lexical_distance``
    one minus the mean TF-IDF cosine similarity (words by default, or character 3–5-grams within
    words with ``lexical: chars``) of the item
    to its ``lexical_k`` lexically closest training inputs among its ``k_pool`` nearest by
    embedding: semantic neighbours that share none of its specific words (a credit-card
    question whose nearest training inputs are about bank accounts) say the item is not covered
    even when the sentence embedding puts it close;
``novel_tokens`` (optional, not in the default set)
    the number of the item's words never seen in training.

Embeddings are centred on the pooled mean of training and production and re-normalised before
any neighbour search (``center``): averaged word vectors share a large common direction that
compresses cosine distances, and removing it separates near from far.

Calibration: a random held-out slice of training (``holdout``) plays "production that is
covered": its evidence is computed the same way against the rest of training, each production
item's evidence becomes an empirical upper-tail p-value under that null, the p-values are combined
with Fisher's method, and the combined score is smoothed over the item's production neighbours
(uncovered regions are regions, so a neighbourhood's evidence counts). The flag threshold is the
``1 - fpr`` quantile of the held-out slice's scores, raised by ``batch_shift``: how far
production's scores exceed the held-out slice's at a low quantile (``batch_quantile``), where
production is covered inputs. Real production differs from training by batch even where it is
covered, and that lifts all its scores; no labels are used.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer

from ftprep.distribution.knn import assign, knn, spherical_kmeans
from ftprep.distribution.text import doc_freq, token_sets
from ftprep.signals.embeddings import l2_normalise

COMPONENTS = (
    "nn_distance",
    "density_ratio",
    "token_ratio",
    "lexical_distance",
    "novel_tokens",
    "label_confidence",
)
DEFAULT_COMPONENTS = ("nn_distance", "density_ratio", "token_ratio", "lexical_distance")
MIN_TRAIN, MIN_PROD = 20, 5  # fewer inputs than this: no coverage estimate


@dataclass(slots=True)
class CoverageParams:
    k_pool: int = 20  # nearest training inputs the lexical evidence compares with
    # neighbourhood sizes of the density-ratio evidence (the mean of their -log p-values)
    density_k: tuple[int, ...] = (10, 40, 160)
    k_smooth: int = 10  # production neighbours whose evidence is averaged in
    smooth: float = 0.4  # weight of the neighbourhood in the smoothed score
    holdout: float = 0.1  # share of training held out as the covered null
    max_holdout: int = 5000
    fpr: float = 0.05  # share of held-out (covered) items flagged: sets the threshold
    # production differs from training by batch even where it is covered, which lifts all its
    # scores: the threshold is moved up by how far production's scores exceed the held-out
    # slice's at this low quantile, where production is covered inputs (0: off)
    batch_quantile: float = 0.1
    components: tuple[str, ...] = DEFAULT_COMPONENTS
    center: bool = True  # centre embeddings on the pooled mean before neighbour search
    lexical_k: int = 5  # lexically closest semantic neighbours averaged in lexical_distance
    lexical: str = "words"  # "words" (TF-IDF over words) or "chars" (character 3-5-grams)
    use_labels: bool = True  # with training labels, add the label_confidence evidence
    # without them: k-means clusters of the reference training as stand-in labels for that
    # evidence; -1 = auto (one per 40 reference inputs, at most 150), 0 = off
    pseudo_labels: int = -1
    max_cluster_fit: int = 20000  # reference inputs k-means is fitted on (sample; all assigned)
    pseudo_max_fit: int = 5000  # reference inputs the stand-in classifier is fitted on
    pseudo_fit_tol: float = 1e-3  # its stopping tolerance (3x faster than 1e-4 at 100k)
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> CoverageParams:
        kw = {k: d[k] for k in cls.__dataclass_fields__ if k in d}
        if "density_k" in kw:
            v = kw["density_k"]
            kw["density_k"] = (int(v),) if isinstance(v, int) else tuple(int(k) for k in v)
            if not kw["density_k"] or min(kw["density_k"]) < 1:
                raise ValueError("density_k: expected a non-empty list of positive integers")
        if "components" in kw:
            kw["components"] = tuple(kw["components"])
            unknown = set(kw["components"]) - set(COMPONENTS)
            if unknown or not kw["components"]:
                raise ValueError(f"components: expected a non-empty subset of {COMPONENTS}")
        if kw.get("lexical", "words") not in ("words", "chars"):
            raise ValueError("lexical: expected 'words' or 'chars'")
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
    # per production item, -log10 of the p-value of its nearest-training distance under the
    # held-out null, after removing production's batch difference (nn_batch_shift): whether
    # training has inputs like it (the regions' thin-or-missing rule)
    nn_evidence: np.ndarray = field(default_factory=lambda: np.zeros(0))
    nn_batch_shift: float = 0.0  # subtracted from production's nearest distances for it
    holdout_size: int = 0
    batch_shift: float = 0.0  # added to the held-out threshold (CoverageParams.batch_quantile)
    holdout_nn_distance_q: dict[str, float] = field(default_factory=dict)
    # with training labels: their (uncalibrated) LabelModel, fitted on the reference part of
    # training (the label-shift estimate reuses it only with its calibration off)
    label_model: Any = None
    pseudo_labels: int = 0  # clusters used as stand-in labels (0: real labels or none)
    # with training labels: the share of their entropy the classifier explains on the held-out
    # slice (below LabelShiftParams.min_information the labels are replaced by stand-ins)
    label_information: float = math.nan
    combined: list[str] = field(default_factory=list)  # the components the score combines
    # word sets of every training and production input (text.token_sets), for the regions
    train_sets: list[set[str]] = field(default_factory=list)
    prod_sets: list[set[str]] = field(default_factory=list)


def _split_holdout(n: int, p: CoverageParams) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(p.seed)
    perm = rng.permutation(n)
    size = round(p.holdout * n)
    size = max(min(50, n // 2), min(size, p.max_holdout))
    return np.sort(perm[:size]), np.sort(perm[size:])


def _pool_log_ratios(
    d_ref: np.ndarray,
    d_prod: np.ndarray,
    ks: list[int],
    n_ref: int,
    n_prod: int,
    block: int = 16384,
) -> list[np.ndarray]:
    """Log odds of production among the ``k`` nearest of the merged neighbour lists, for each
    ``k`` in ``ks``: one sort of the merged lists serves every size (the ``k`` nearest of the
    merged lists are the ``k`` nearest of their first ``k`` columns; ties put training first).
    Rows in blocks: at 160 neighbours and 100k rows the merged lists and their sort order would
    take about 0.4 GB at once (computed)."""
    k_r, k_p = min(max(ks), d_ref.shape[1]), min(max(ks), d_prod.shape[1])
    is_prod = np.concatenate([np.zeros(k_r, dtype=bool), np.ones(k_p, dtype=bool)])
    sel = [min(k, k_r + k_p) for k in ks]  # a size beyond the lists takes all of them
    n_p = np.empty((len(ks), len(d_ref)))
    for s in range(0, len(d_ref), block):
        dist = np.concatenate([d_ref[s : s + block, :k_r], d_prod[s : s + block, :k_p]], axis=1)
        order = np.argsort(dist, axis=1, kind="stable")[:, : max(sel)]
        seen = np.cumsum(is_prod[order], axis=1)
        for j, m in enumerate(sel):
            n_p[j, s : s + block] = seen[:, m - 1]
    scale = n_ref / max(n_prod, 1)
    return [np.log((n_p[j] + 0.5) / (m - n_p[j] + 0.5) * scale) for j, m in enumerate(sel)]


def _neg_log_p(prod: np.ndarray, held: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``-log`` of the upper-tail p-value of production's and the held-out slice's values under
    the held-out null: how each piece of evidence is put on one scale."""
    return -np.log(upper_pvalue(prod, held)), -np.log(upper_pvalue(held, held))


def _density_evidence(
    d_pr: np.ndarray,
    d_pp: np.ndarray,
    d_hr: np.ndarray,
    d_hp: np.ndarray,
    ks: list[int],
    n_ref: int,
    n_prod: int,
) -> tuple[np.ndarray, np.ndarray]:
    """The density-ratio evidence of production and held-out items: the kNN log odds at each
    neighbourhood size in ``ks``, turned into ``-log`` p-values under the held-out null and
    averaged over the sizes (one size: the log odds themselves)."""
    prod = _pool_log_ratios(d_pr, d_pp, ks, n_ref, n_prod)
    held = _pool_log_ratios(d_hr, d_hp, ks, n_ref, n_prod)
    if len(ks) == 1:
        return prod[0], held[0]
    scaled = [_neg_log_p(a, h) for a, h in zip(prod, held, strict=True)]
    return np.mean([a for a, _ in scaled], axis=0), np.mean([h for _, h in scaled], axis=0)


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


_CHAR_NGRAMS = HashingVectorizer(
    analyzer="char_wb",
    ngram_range=(3, 5),
    n_features=2**20,
    alternate_sign=False,
    norm=None,
    dtype=np.float32,
)


def center_embeddings(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Subtract the pooled mean of ``a`` and ``b`` and re-normalise both."""
    mean = (a.sum(axis=0) + b.sum(axis=0)) / max(len(a) + len(b), 1)
    return l2_normalise(a - mean), l2_normalise(b - mean)


def char_tfidf(fit_texts: list[str], *groups: list[str]) -> list[sp.csr_matrix]:
    """L2-normalised TF-IDF rows (hashed character 3–5-grams inside words, sublinear tf) for
    each text group; IDF from ``fit_texts`` (reference and production)."""
    tf = TfidfTransformer(sublinear_tf=True)
    tf.fit(_CHAR_NGRAMS.transform(fit_texts))
    return [sp.csr_matrix(tf.transform(_CHAR_NGRAMS.transform(g))) for g in groups]


def word_tfidf(fit_sets: list[set[str]], *groups: list[set[str]]) -> list[sp.csr_matrix]:
    """L2-normalised binary TF-IDF rows over words (the token sets the token evidence already
    has, so no second pass over the texts); IDF from ``fit_sets``."""
    df = doc_freq(fit_sets)
    vocab = {w: i for i, w in enumerate(df)}
    n = len(fit_sets)
    idf = np.array([np.log((n + 1) / (df[w] + 1)) + 1.0 for w in vocab], dtype=np.float32)
    out = []
    for sets in groups:
        indptr = np.zeros(len(sets) + 1, dtype=np.int64)
        cols: list[int] = []
        for i, ws in enumerate(sets):
            cols.extend(vocab[w] for w in ws if w in vocab)
            indptr[i + 1] = len(cols)
        idx = np.asarray(cols, dtype=np.int64)
        m = sp.csr_matrix((idf[idx], idx, indptr), shape=(len(sets), len(vocab)), dtype=np.float32)
        norms = np.sqrt(np.asarray(m.multiply(m).sum(axis=1)).ravel())
        out.append(sp.csr_matrix(sp.diags(1.0 / np.maximum(norms, 1e-12)) @ m))
    return out


def candidate_similarity(
    q: sp.csr_matrix, r: sp.csr_matrix, cand: np.ndarray, block: int = 2048
) -> np.ndarray:
    """Cosine similarity of each row of ``q`` to the ``r`` rows listed in its row of ``cand``."""
    n, k = cand.shape
    out = np.zeros((n, k), dtype=np.float32)
    for s in range(0, n, block):
        c = cand[s : s + block]
        rows = np.repeat(np.arange(s, s + len(c)), k)
        prod = q[rows].multiply(r[c.ravel()])
        out[s : s + len(c)] = np.asarray(prod.sum(axis=1)).reshape(len(c), k)
    return out


def lexical_distance(sims: np.ndarray, k: int) -> np.ndarray:
    """One minus the mean of each row's ``k`` largest similarities."""
    k = max(1, min(k, sims.shape[1]))
    top = -np.sort(-sims, axis=1)[:, :k]
    return (1.0 - top.mean(axis=1)).astype(np.float64)


def upper_pvalue(values: np.ndarray, null: np.ndarray) -> np.ndarray:
    """Empirical upper-tail p-value of each value under ``null`` (ties count half)."""
    s = np.sort(null)
    above = len(s) - np.searchsorted(s, values, side="right")
    ties = np.searchsorted(s, values, side="right") - np.searchsorted(s, values, side="left")
    return (above + 0.5 * ties + 1.0) / (len(s) + 1.0)


def _batch_shift(prod: np.ndarray, held: np.ndarray, q: float) -> float:
    """How far production's values exceed the held-out slice's at the low quantile ``q``, where
    production is covered inputs (its batch difference from training; 0 when below or ``q`` 0)."""
    if q <= 0:
        return 0.0
    return max(0.0, float(np.quantile(prod, q) - np.quantile(held, q)))


def pseudo_labels(x: np.ndarray, k: int, max_fit: int, seed: int) -> np.ndarray:
    """Cluster ids (0..k-1) of ``x``: spherical k-means (the regions' and the IVF index's,
    ``knn.spherical_kmeans``) fitted on at most ``max_fit`` rows, then assigned to all. Stand-in
    labels when training has none, so the label-confidence evidence still sees inputs that fall
    between training's topics."""
    xn = l2_normalise(np.array(x, dtype=np.float32))
    k = min(k, len(xn))
    if k < 2:
        return np.zeros(len(xn), dtype=np.int64)
    return assign(xn, spherical_kmeans(xn, k, iters=15, seed=seed, sample=max_fit))


def coverage_scores(
    train_emb: np.ndarray,
    prod_emb: np.ndarray,
    train_texts: list[str],
    prod_texts: list[str],
    params: CoverageParams | None = None,
    labels: list[str] | None = None,
    label_params: Any = None,
) -> CoverageScores:
    """``labels``: the training inputs' labels when training is classification-style; adds the
    ``label_confidence`` evidence (one minus the largest posterior of a classifier of the labels,
    fitted on the non-held-out training: inputs of no training label get flat posteriors)."""
    from ftprep.distribution.labelshift import (
        LabelModel,
        LabelShiftParams,
        encode_labels,
        explained_entropy,
        fit_label_model,
    )

    p = params or CoverageParams()
    n_t, n_p = len(train_emb), len(prod_emb)
    if n_t < MIN_TRAIN or n_p < MIN_PROD:
        raise ValueError(
            f"coverage needs at least {MIN_TRAIN} training and {MIN_PROD} production inputs "
            f"(got {n_t}, {n_p})"
        )
    raw_t, raw_p = train_emb, prod_emb
    if p.center:
        train_emb, prod_emb = center_embeddings(train_emb, prod_emb)
    h_idx, r_idx = _split_holdout(n_t, p)
    x_ref, x_hold = train_emb[r_idx], train_emb[h_idx]
    kp = min(p.k_pool, len(r_idx), n_p - 1)
    ks = min(p.k_smooth, n_p - 1)
    kd = sorted({min(k, len(r_idx), n_p - 1) for k in p.density_k})
    kn = max(kp, kd[-1])  # neighbours searched: the largest any evidence needs

    d_pr, i_pr = knn(prod_emb, x_ref, kn, seed=p.seed)
    d_pp, i_pp = knn(prod_emb, prod_emb, max(kn, ks), exclude_self=True, seed=p.seed)
    d_hr, i_hr = knn(x_hold, x_ref, kn, seed=p.seed)
    d_hp, i_hp = knn(x_hold, prod_emb, max(kn, ks), seed=p.seed)
    comp_p: dict[str, np.ndarray] = {"nn_distance": d_pr[:, 0].copy()}
    comp_h: dict[str, np.ndarray] = {"nn_distance": d_hr[:, 0].copy()}
    comp_p["density_ratio"], comp_h["density_ratio"] = _density_evidence(
        d_pr, d_pp, d_hr, d_hp, kd, len(r_idx), n_p
    )
    # keep only the columns used from here on (copies: a slice would hold the kn-wide arrays)
    i_pr, i_hr = i_pr[:, :kp].copy(), i_hr[:, :kp].copy()  # the lexical evidence's candidates
    i_pp, i_hp = i_pp[:, :ks].copy(), i_hp[:, :ks].copy()  # the smoothing's neighbours
    del d_pr, d_pp, d_hr, d_hp
    train_sets, prod_sets = token_sets(train_texts), token_sets(prod_texts)
    ref_sets = [train_sets[i] for i in r_idx]
    hold_sets = [train_sets[i] for i in h_idx]
    if "token_ratio" in p.components or "novel_tokens" in p.components:
        df_ref, df_prod = doc_freq(ref_sets), doc_freq(prod_sets)
        comp_p["token_ratio"], comp_p["novel_tokens"] = _token_evidence(
            prod_sets, df_ref, df_prod, len(r_idx), n_p, in_prod=True
        )
        comp_h["token_ratio"], comp_h["novel_tokens"] = _token_evidence(
            hold_sets, df_ref, df_prod, len(r_idx), n_p, in_prod=False
        )

    if "lexical_distance" in p.components:
        if p.lexical == "chars":
            ref_texts = [train_texts[i] for i in r_idx]
            v_ref, v_prod, v_hold = char_tfidf(
                ref_texts + list(prod_texts),
                ref_texts,
                list(prod_texts),
                [train_texts[i] for i in h_idx],
            )
        else:
            v_ref, v_prod, v_hold = word_tfidf(ref_sets + prod_sets, ref_sets, prod_sets, hold_sets)
        comp_p["lexical_distance"] = lexical_distance(
            candidate_similarity(v_prod, v_ref, i_pr), p.lexical_k
        )
        comp_h["lexical_distance"] = lexical_distance(
            candidate_similarity(v_hold, v_ref, i_hr), p.lexical_k
        )

    components = list(p.components)
    # label_confidence: a classifier of the training labels, or of k-means stand-ins without them
    # (or when the labels turn out not to be predictable from the inputs)
    ct, cpr = train_emb, prod_emb
    if not p.center and (p.use_labels or p.pseudo_labels != 0):
        ct, cpr = center_embeddings(raw_t, raw_p)
    lp = label_params or LabelShiftParams(seed=p.seed)
    hold_texts = [train_texts[i] for i in h_idx]
    n_pseudo, label_info = 0, math.nan
    lm: LabelModel | None = None
    post_h: np.ndarray | None = None
    if labels is not None and p.use_labels:
        # a classifier of the labels on the training outside the held-out slice, so the slice
        # is out of sample for it (uncalibrated: the evidence is a rank, calibrated per item)
        classes, y = encode_labels(labels)
        lm = fit_label_model(
            train_texts,
            ct,
            y,
            len(classes),
            list(prod_texts),
            replace(lp, calib_folds=0),
            r_idx,
            seed=p.seed,
        )
        if lm is not None and lm.classifier is not None:
            post_h = lm.classifier.proba(hold_texts, ct[h_idx])
            known = np.isin(y[h_idx], lm.classifier.clf.classes_)
            info = explained_entropy(post_h[known], y[h_idx][known])
            lm = replace(lm, information=info)
            if info < lp.min_information:
                lm, post_h = replace(lm, classifier=None), None
        label_info = lm.information if lm is not None else math.nan
    model = lm.classifier if lm is not None else None
    if model is None and (labels is None or p.use_labels) and p.pseudo_labels != 0:
        # no labels, or labels the inputs do not predict: k-means clusters stand in for them
        n_pseudo = p.pseudo_labels if p.pseudo_labels > 0 else min(150, len(r_idx) // 40)
        y_ref = np.zeros(n_t, dtype=np.int64)
        y_ref[r_idx] = pseudo_labels(ct[r_idx], n_pseudo, p.max_cluster_fit, p.seed)
        plp = replace(
            lp, max_fit=min(lp.max_fit, p.pseudo_max_fit), fit_tol=p.pseudo_fit_tol, calib_folds=0
        )
        stand_in = fit_label_model(
            train_texts, ct, y_ref, n_pseudo, list(prod_texts), plp, r_idx, seed=p.seed
        )
        model = stand_in.classifier if stand_in is not None else None
        post_h = None
        n_pseudo = n_pseudo if model is not None else 0
    if model is not None:
        comp_p["label_confidence"] = 1.0 - model.proba(list(prod_texts), cpr).max(axis=1)
        if post_h is None:
            post_h = model.proba(hold_texts, ct[h_idx])
        comp_h["label_confidence"] = 1.0 - post_h.max(axis=1)
        if "label_confidence" not in components:
            components.append("label_confidence")
    components = [c for c in components if c in comp_p]

    g_p = np.zeros(n_p)
    g_h = np.zeros(len(h_idx))
    for name in components:
        lp, lh = _neg_log_p(comp_p[name], comp_h[name])
        g_p += lp
        g_h += lh
    s_p = (1 - p.smooth) * g_p + p.smooth * g_p[i_pp].mean(axis=1)
    s_h = (1 - p.smooth) * g_h + p.smooth * g_p[i_hp].mean(axis=1)
    batch_shift = _batch_shift(s_p, s_h, p.batch_quantile)
    null = s_h + batch_shift  # the held-out scores as covered production would score
    # the nearest-training distance with the same batch correction: production's distances
    # exceed the held-out slice's even where it is covered (CLINC150's test split: median
    # -log10 p 0.44 against the null's 0.30), which would make thin regions look absent
    d_p, d_h = comp_p["nn_distance"], comp_h["nn_distance"]
    nn_shift = _batch_shift(d_p, d_h, p.batch_quantile)
    nn_ev = -np.log10(upper_pvalue(d_p - nn_shift, d_h))
    threshold = float(np.quantile(null, 1 - p.fpr))
    nn_q = {f"q{int(q * 100)}": float(np.quantile(d_h, q)) for q in (0.5, 0.9, 0.95, 0.99)}
    return CoverageScores(
        score=s_p,
        pvalue=upper_pvalue(s_p, null),
        flagged=s_p > threshold,
        threshold=threshold,
        nn_distance=d_p.astype(np.float64),
        nn_index=r_idx[i_pr[:, 0]],
        prod_neighbors=i_pp,
        components=comp_p,
        nn_evidence=nn_ev,
        nn_batch_shift=nn_shift,
        holdout_size=len(h_idx),
        batch_shift=batch_shift,
        holdout_nn_distance_q=nn_q,
        label_model=lm,
        pseudo_labels=n_pseudo,
        label_information=label_info,
        combined=components,
        train_sets=train_sets,
        prod_sets=prod_sets,
    )
