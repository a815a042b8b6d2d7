"""Learned criteria: a scorer trained on the experts' calibration labels for one criterion.

A few hundred labels are far too few for a wide model, so the scorer combines a *prior* — an
unsupervised score whose directions are stated in advance and only checked against the labels
— with an ensemble of small, heavily-regularised views learned from the labels, weighted by how
well each does on labels it was not fitted on:

* ``prior`` — a named set of features with a stated direction (``PRIORS``; the template's
  ``accuracy`` prior says what raters of correctness reward: concise answers, closed tasks
  rather than open generation, lexical variety, a response on the prompt's topic, shorter than
  this kind of prompt usually gets, unlike the generic response). A feature whose labels
  contradict its direction by more than ``t_flip`` standard errors is flipped, so a prior that
  is wrong for a criterion is corrected by its own labels. Score = mean rank of the features.
* ``dense`` — numeric text features (lengths, structure, punctuation, lexical variety, task
  type, prompt overlap, embedding relations) plus the unit scores of the rubric's deterministic
  criteria, z-scored, with unit weights: each feature whose mean differs between good and bad
  labelled examples by more than ``t_min`` standard errors enters with weight ±1 (Dawes'
  "improper linear model", far more stable than regression coefficients at this sample size);
* ``embed`` — nearest-centroid direction (mean good − mean bad) in the offline sentence
  embedding space of prompt and response;
* ``ngram`` — a multinomial naive-Bayes log-count ratio over word unigrams of the prompt and of
  the response (each example scored by its mean token ratio).

Each view's score is rank-normalised over the dataset; the learned views are averaged and mixed
with the prior as ``w·learned + (1 − w)·prior``. ``w`` is chosen on the labels by
cross-validation: the learned views are refitted ``cv_folds`` times, each scoring the labels it
did not see, and the least grid value of ``w`` (0, 0.1, … 1) whose mix ranks those out-of-fold
labels within one standard error of the best mix is taken (the one-SE rule) — a prior that
describes the criterion keeps the weight at a few hundred labels, strong learned views take
over when they clearly earn it.
A one-feature logistic regression on the labels maps the result to a probability that experts
would rate the example as meeting the criterion. :func:`holdout_agreement` refits on part of the
labels and reports AUROC / Spearman on the rest, so nobody trusts a scorer that disagrees with
the experts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata, spearmanr

__all__ = [
    "PRIORS",
    "Features",
    "LearnedScorer",
    "build_features",
    "embedding_features",
    "holdout_agreement",
    "scorer_from_params",
]

VIEWS = ("prior", "dense", "embed", "ngram")
LEARNED = ("dense", "embed", "ngram")

# Named priors: feature name (``dense_features`` / ``embedding_features``) -> stated direction.
PRIORS: dict[str, dict[str, float]] = {
    "accuracy": {
        "log_resp_words": -1.0,
        "log_prompt_chars": -1.0,
        "prompt_lines": -1.0,
        "task_closed": 1.0,
        "task_open": -1.0,
        "emb:prompt_response_cos": 1.0,
        "emb:expected_log_words": -1.0,
        "emb:response_typicality": -1.0,
    },
    "none": {},
}
PARAMS = (
    "prior",
    "prior_alpha",
    "learned_weight",
    "cv_folds",
    "views",
    "t_min",
    "t_flip",
    "nb_alpha",
)
WEIGHT_GRID = np.linspace(0.0, 1.0, 11)
RIDGE_SAMPLE = 20_000  # rows used to fit the expected-length regression


def embedding_features(
    prompt_emb: np.ndarray, resp_emb: np.ndarray, log_words: np.ndarray, seed: int = 0
) -> tuple[np.ndarray, list[str]]:
    """Label-free features from L2-normalised prompt and response embeddings:

    * ``emb:prompt_response_cos`` — cosine between prompt and response (is it on topic);
    * ``emb:expected_log_words`` — the response length this kind of prompt gets in this
      dataset: a ridge regression of log word count on the prompt embedding, fitted on all
      examples (no labels);
    * ``emb:len_vs_expected`` — the response's log word count minus that expectation;
    * ``emb:response_typicality`` — cosine to the mean response (generic, average answers)."""
    p = np.asarray(prompt_emb, dtype=np.float64)
    r = np.asarray(resp_emb, dtype=np.float64)
    lw = np.asarray(log_words, dtype=np.float64)
    n = len(p)
    cos = np.einsum("ij,ij->i", p, r)
    a = np.hstack([p, np.ones((n, 1))])
    rows = np.arange(n)
    if n > RIDGE_SAMPLE:
        rows = np.sort(np.random.default_rng(seed).choice(n, RIDGE_SAMPLE, replace=False))
    gram = a[rows].T @ a[rows] + np.eye(a.shape[1])
    expected = a @ np.linalg.solve(gram, a[rows].T @ lw[rows])
    mean = r.mean(axis=0) if n else np.zeros(r.shape[1])
    norm = float(np.linalg.norm(mean))
    typical = r @ (mean / norm) if norm > 0 else np.zeros(n)
    cols = [cos, expected, lw - expected, typical]
    names = [
        "emb:prompt_response_cos",
        "emb:expected_log_words",
        "emb:len_vs_expected",
        "emb:response_typicality",
    ]
    return np.column_stack(cols), names


@dataclass
class Features:
    dense: np.ndarray  # n × d (not standardised)
    dense_names: list[str]
    embed: np.ndarray | None = None  # n × e, rows L2-normalised (prompt ‖ response)
    ngram: list[sp.csr_matrix] = field(default_factory=list)  # binary hashed unigram matrices

    def __len__(self) -> int:
        return int(self.dense.shape[0])


def token_matrix(texts: Sequence[str]) -> sp.csr_matrix:
    """Binary document × word matrix (lower-cased letter/digit runs), built with Arrow kernels:
    split, dictionary-encode, then CSR from the list offsets — no per-text Python work."""
    import pyarrow as pa
    import pyarrow.compute as pc

    n = len(texts)
    if n == 0:
        return sp.csr_matrix((0, 1), dtype=np.float32)
    toks = pc.split_pattern_regex(
        pc.utf8_lower(pa.array(list(texts), pa.string())), r"[^\p{L}\p{N}_]+"
    )
    if isinstance(toks, pa.ChunkedArray):
        toks = toks.combine_chunks()
    lengths = pc.list_value_length(toks).to_numpy(zero_copy_only=False)
    flat = pc.list_flatten(toks)
    rows = np.repeat(np.arange(n), np.nan_to_num(lengths.astype(float)).astype(np.int64))
    keep = pc.greater(pc.utf8_length(flat), 0).to_numpy(zero_copy_only=False)
    enc = pc.dictionary_encode(flat.filter(pa.array(keep)))
    codes = np.asarray(enc.indices.to_numpy(zero_copy_only=False), dtype=np.int64)
    rows = rows[keep]
    vocab = max(1, len(enc.dictionary))
    m = sp.csr_matrix((np.ones(len(codes), dtype=np.float32), (rows, codes)), shape=(n, vocab))
    m.sum_duplicates()
    m.data[:] = 1.0
    return m


def build_features(
    dense: np.ndarray,
    dense_names: list[str],
    texts: Sequence[Sequence[str]],
    embed: np.ndarray | None = None,
) -> Features:
    """``texts``: one list of strings per word view (e.g. prompts, responses)."""
    grams = [token_matrix(t) for t in texts]
    return Features(np.asarray(dense, dtype=np.float64), list(dense_names), embed, grams)


def _rank01(x: np.ndarray) -> np.ndarray:
    if len(x) <= 1:
        return np.full(len(x), 0.5)
    return (rankdata(x) - 1) / (len(x) - 1)


@dataclass
class LearnedScorer:
    views: tuple[str, ...] = VIEWS
    prior: str | Mapping[str, float] = "accuracy"  # a name in PRIORS or {feature: ±1}
    learned_weight: float | None = None  # weight of the learned views vs the prior; None: by CV
    cv_folds: int = 5  # folds used to choose learned_weight
    prior_alpha: float = 0.1  # significance at which the prior is credible (see _check_prior)
    t_min: float = 1.0  # dense view: |t| needed for a feature to enter
    t_flip: float = 2.0  # prior view: labels against a stated direction by more than this flip it
    nb_alpha: float = 1.0
    fitted: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        unknown = [v for v in self.views if v not in VIEWS]
        if unknown:
            raise ValueError(f"unknown view(s) {unknown}: use {', '.join(VIEWS)}")
        if isinstance(self.prior, str) and self.prior not in PRIORS:
            raise ValueError(f"unknown prior {self.prior!r}: use {', '.join(PRIORS)} or a mapping")
        if self.learned_weight is not None and not 0 <= self.learned_weight <= 1:
            raise ValueError(
                "learned_weight must be in [0, 1] (or null: chosen by cross-validation)"
            )
        if self.cv_folds < 2:
            raise ValueError("cv_folds must be >= 2")

    @property
    def prior_directions(self) -> dict[str, float]:
        p = PRIORS[self.prior] if isinstance(self.prior, str) else self.prior
        return {str(k): float(np.sign(v)) for k, v in p.items() if v}

    # ------------------------------------------------------------------ views
    def _standardise(self, f: Features) -> np.ndarray:
        mu = f.dense.mean(axis=0)
        sd = f.dense.std(axis=0)
        sd[sd == 0] = 1.0
        self.fitted["scale"] = (mu, sd)
        return np.asarray((f.dense - mu) / sd)

    @staticmethod
    def _t(z: np.ndarray, y: np.ndarray) -> np.ndarray:
        a, b = z[y == 1], z[y == 0]
        se = np.sqrt(a.var(axis=0) / max(len(a), 1) + b.var(axis=0) / max(len(b), 1)) + 1e-9
        return np.asarray((a.mean(axis=0) - b.mean(axis=0)) / se)

    def _fit_dense(self, names: list[str], t: np.ndarray) -> None:
        w = np.where(np.abs(t) > self.t_min, np.sign(t), 0.0)
        self.fitted["dense"] = {
            "w": w,
            "used": [n for n, x in zip(names, w, strict=True) if x != 0],
        }

    def _fit_prior(self, names: list[str], t: np.ndarray) -> None:
        col = {n: j for j, n in enumerate(names)}
        signs: dict[int, float] = {}
        flipped: list[str] = []
        for name, d in self.prior_directions.items():
            j = col.get(name)
            if j is None:
                continue
            if d * t[j] < -self.t_flip:
                d = -d
                flipped.append(name)
            signs[j] = d
        if signs:
            self.fitted["prior"] = {
                "signs": signs,
                "used": [f"{'+' if d > 0 else '-'}{names[j]}" for j, d in signs.items()],
                "flipped": flipped,
            }

    def _fit_embed(self, f: Features, idx: np.ndarray, y: np.ndarray) -> None:
        if f.embed is None or f.embed.shape[1] == 0:
            return
        e = f.embed[idx]
        self.fitted["embed"] = e[y == 1].mean(axis=0) - e[y == 0].mean(axis=0)

    def _fit_ngram(self, f: Features, idx: np.ndarray, y: np.ndarray) -> None:
        ratios = []
        for m in f.ngram:
            mt = m[idx]
            p = np.asarray(mt[y == 1].sum(axis=0)).ravel() + self.nb_alpha
            q = np.asarray(mt[y == 0].sum(axis=0)).ravel() + self.nb_alpha
            ratios.append(np.log(p / p.sum()) - np.log(q / q.sum()))
        self.fitted["ngram"] = ratios

    def _check_prior(self, f: Features, idx: np.ndarray, y: np.ndarray) -> None:
        """Check the prior against the labels: it is *credible* when a one-sided Mann–Whitney
        test ranks good above bad at ``prior_alpha`` (then the learned views must clearly beat
        it to take weight), and dropped when it ranks the labels no better than chance (AUROC
        ≤ 0.5: it does not describe this criterion; the learned views alone score it)."""
        if "prior" not in self.fitted:
            return
        from scipy.stats import mannwhitneyu

        s = self._prior_score(f)
        assert s is not None
        sl = s[idx]
        p = float(mannwhitneyu(sl[y == 1], sl[y == 0], alternative="greater").pvalue)
        self.fitted["prior"]["p_value"] = p
        self.fitted["prior"]["auroc"] = _auroc(y, sl)
        self.fitted["prior"]["credible"] = p < self.prior_alpha
        if self.fitted["prior"]["auroc"] <= 0.5 and any(v in self.views for v in LEARNED):
            self.fitted["prior"]["dropped"] = True

    def _mix_weight(self, f: Features, idx: np.ndarray, y: np.ndarray) -> float:
        """Weight of the learned views against the prior: ``learned_weight`` when set, else
        chosen on the grid 0, 0.1, … 1 by how well the mix of the prior and *out-of-fold*
        learned scores (stratified ``cv_folds``-fold) ranks the labels. Among the mixes within
        one standard error (Hanley–McNeil) of the best, a credible prior gets the least learned
        weight (the learned views must earn theirs), any other prior the most."""
        learned = [v for v in self.views if v in LEARNED]
        prior = self._prior_score(f)
        if prior is None or not learned:
            return 1.0 if prior is None else 0.0
        if self.learned_weight is not None:
            return float(self.learned_weight)
        k = min(self.cv_folds, int(y.sum()), int(len(y) - y.sum()))
        if k < 2:
            return 0.0
        rng = np.random.default_rng(0)
        fold = np.empty(len(y), dtype=int)
        for c in (0, 1):
            rows = rng.permutation(np.flatnonzero(y == c))
            fold[rows] = np.arange(len(rows)) % k
        oof = np.zeros(len(y))
        for j in range(k):
            tr, te = fold != j, fold == j
            sub = LearnedScorer(
                views=tuple(learned), prior="none", t_min=self.t_min, nb_alpha=self.nb_alpha
            )
            sub._fit_views(f, idx[tr], y[tr])
            r = sub._learned_rank(f)
            oof[te] = 0.5 if r is None else r[idx[te]]
        pr = prior[idx]
        aucs = np.asarray([_auroc(y, w * oof + (1 - w) * pr) for w in WEIGHT_GRID])
        self.fitted["mix_cv_auroc"] = {
            f"{w:.1f}": round(float(a), 4) for w, a in zip(WEIGHT_GRID, aucs, strict=True)
        }
        # one-standard-error rule: among the mixes within one SE of the best, a credible prior
        # keeps the most weight, a prior that is not credible the least
        best = float(np.max(aucs))
        ok = np.flatnonzero(aucs >= best - _auroc_se(best, int(y.sum()), int(len(y) - y.sum())))
        pick = ok[0] if self.fitted["prior"].get("credible") else ok[-1]
        return float(WEIGHT_GRID[int(pick)])

    def _prior_score(self, f: Features) -> np.ndarray | None:
        pr = self.fitted.get("prior")
        if pr is None or pr.get("dropped"):
            return None
        return np.mean([_rank01(d * f.dense[:, j]) for j, d in pr["signs"].items()], axis=0)

    def _learned_scores(self, f: Features) -> list[np.ndarray]:
        out = []
        d = self.fitted.get("dense")
        if d is not None and np.any(d["w"]):
            mu, sd = self.fitted["scale"]
            out.append(np.asarray(((f.dense - mu) / sd) @ d["w"]))
        if "embed" in self.fitted and f.embed is not None:
            out.append(np.asarray(f.embed @ self.fitted["embed"], dtype=np.float64))
        for m, r in zip(f.ngram, self.fitted.get("ngram", []), strict=False):
            cnt = np.maximum(np.asarray(m.sum(axis=1)).ravel(), 1.0)
            out.append(np.asarray(m @ r).ravel() / cnt)
        return out

    def _fit_views(self, f: Features, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
        """Fit the learned views; returns the features' t statistics on the labels."""
        t = self._t(self._standardise(f)[idx], y)
        if "dense" in self.views:
            self._fit_dense(f.dense_names, t)
        if "embed" in self.views:
            self._fit_embed(f, idx, y)
        if "ngram" in self.views:
            self._fit_ngram(f, idx, y)
        return t

    def _learned_rank(self, f: Features) -> np.ndarray | None:
        learned = self._learned_scores(f)
        if not learned:
            return None
        return np.asarray(np.mean([_rank01(v) for v in learned], axis=0))

    # ------------------------------------------------------------------ API
    def fit(self, f: Features, idx: np.ndarray, y: np.ndarray) -> LearnedScorer:
        """Fit on the labelled rows ``idx`` (binary ``y``: 1 = meets the criterion)."""
        y = np.asarray(y, dtype=int)
        if len(set(y.tolist())) < 2:
            raise ValueError("the calibration labels of this criterion are all the same class")
        self.fitted = {}
        t = self._fit_views(f, idx, y)
        if "prior" in self.views:
            self._fit_prior(f.dense_names, t)
        self._check_prior(f, idx, y)
        self.fitted["learned_weight"] = self._mix_weight(f, idx, y)
        raw = self.raw_score(f)
        # Platt scaling of the combined rank score on the labels
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1.0).fit(raw[idx].reshape(-1, 1), y)
        self.fitted["platt"] = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        return self

    def raw_score(self, f: Features) -> np.ndarray:
        """Rank score in [0, 1] over the rows of ``f`` (the whole dataset): the learned views'
        mean rank mixed with the prior's (see module doc)."""
        prior = self._prior_score(f)
        lrn = self._learned_rank(f)
        if lrn is None:
            return prior if prior is not None else np.full(len(f), 0.5)
        if prior is None:
            return lrn
        w = float(self.fitted.get("learned_weight", 1.0))
        return np.asarray(w * lrn + (1.0 - w) * prior)

    def predict(self, f: Features) -> np.ndarray:
        """Probability that experts rate each example as meeting the criterion."""
        a, b = self.fitted["platt"]
        z = a * self.raw_score(f) + b
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    def describe(self) -> dict[str, Any]:
        d = self.fitted.get("dense") or {}
        pr = self.fitted.get("prior") or {}
        return {
            "views": list(self.views),
            "prior": self.prior if isinstance(self.prior, str) else "custom",
            "prior_features": pr.get("used", []),
            "prior_flipped": pr.get("flipped", []),
            "prior_used": bool(pr) and not pr.get("dropped", False),
            "prior_auroc": round(float(pr["auroc"]), 4) if "auroc" in pr else None,
            "learned_weight": round(float(self.fitted.get("learned_weight", 1.0)), 4),
            "dense_features_used": d.get("used", []),
            "embeddings": "embed" in self.fitted,
        }


def scorer_from_params(params: Mapping[str, Any]) -> LearnedScorer:
    """A :class:`LearnedScorer` configured by a learned criterion's ``params`` in rubric.yaml
    (``prior``, ``prior_alpha``, ``learned_weight``, ``cv_folds``, ``views``, ``t_min``,
    ``t_flip``, ``nb_alpha``)."""
    unknown = sorted(set(params) - set(PARAMS))
    if unknown:
        raise ValueError(f"unknown learned-criterion param(s) {unknown}: use {', '.join(PARAMS)}")
    kw: dict[str, Any] = {}
    if "prior" in params:
        pr = params["prior"]
        if pr is None:
            pr = "none"
        if not isinstance(pr, str | Mapping):
            raise ValueError("prior: a name (" + ", ".join(PRIORS) + ") or {feature: +1/-1}")
        kw["prior"] = pr if isinstance(pr, str) else {str(k): float(v) for k, v in pr.items()}
    if "views" in params:
        kw["views"] = tuple(str(v) for v in params["views"])
    for k in ("prior_alpha", "t_min", "t_flip", "nb_alpha"):
        if k in params:
            kw[k] = float(params[k])
    if params.get("learned_weight") is not None:
        kw["learned_weight"] = float(params["learned_weight"])
    if "cv_folds" in params:
        kw["cv_folds"] = int(params["cv_folds"])
    return LearnedScorer(**kw)


def _auroc_se(a: float, n1: int, n0: int) -> float:
    """Hanley–McNeil standard error of an AUROC ``a`` with ``n1`` positives, ``n0`` negatives."""
    q1, q2 = a / (2 - a), 2 * a * a / (1 + a)
    v = (a * (1 - a) + (n1 - 1) * (q1 - a * a) + (n0 - 1) * (q2 - a * a)) / max(n1 * n0, 1)
    return float(np.sqrt(max(v, 0.0)))


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    y = np.asarray(y, dtype=int)
    n1 = int(y.sum())
    n0 = len(y) - n1
    if n1 == 0 or n0 == 0:
        return float("nan")
    r = rankdata(s)
    return float((r[y == 1].sum() - n1 * (n1 + 1) / 2) / (n1 * n0))


def holdout_agreement(
    f: Features,
    idx: np.ndarray,
    y: np.ndarray,
    cont: np.ndarray | None = None,
    holdout: float = 0.3,
    seed: int = 0,
    scorer: LearnedScorer | None = None,
    **kw: Any,
) -> dict[str, Any]:
    """Fit (a fresh copy of ``scorer``, else ``LearnedScorer(**kw)``) on ``1 - holdout`` of the labelled rows and measure agreement on the rest: AUROC of
    the binary label and Spearman ρ with the continuous consensus score ``cont``."""
    rng = np.random.default_rng(seed)
    y = np.asarray(y, dtype=int)
    pos, neg = np.flatnonzero(y == 1), np.flatnonzero(y == 0)
    test = np.concatenate(
        [
            rng.choice(pos, max(1, round(len(pos) * holdout)), replace=False),
            rng.choice(neg, max(1, round(len(neg) * holdout)), replace=False),
        ]
    )
    train = np.setdiff1d(np.arange(len(y)), test)
    out: dict[str, Any] = {"n_train": len(train), "n_test": len(test)}
    if len(set(y[train].tolist())) < 2:
        out.update(auroc=float("nan"), spearman=float("nan"))
        return out
    sc = (replace(scorer, fitted={}) if scorer is not None else LearnedScorer(**kw)).fit(
        f, idx[train], y[train]
    )
    p = sc.predict(f)[idx[test]]
    out["auroc"] = _auroc(y[test], p)
    if cont is not None and len(test) >= 3:
        rho = spearmanr(np.asarray(cont)[test], p).statistic
        out["spearman"] = float(rho) if np.isfinite(rho) else float("nan")
    return out
