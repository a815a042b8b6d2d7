"""Learned criteria: a scorer trained on the experts' calibration labels for one criterion.

A few hundred labels are far too few for a wide model, so the scorer is an ensemble of small,
heavily-regularised views of the example, each of which degrades gracefully with few labels:

* ``dense`` — numeric text features (lengths, structure, punctuation, lexical variety, prompt
  overlap) plus the unit scores of the rubric's deterministic criteria, z-scored, with
  unit weights: each feature whose mean differs between good and bad labelled examples by more
  than ``t_min`` standard errors enters with weight ±1 (Dawes' "improper linear model", far more
  stable than regression coefficients at this sample size);
* ``embed`` — nearest-centroid direction (mean good − mean bad) in the offline sentence
  embedding space of prompt and response;
* ``ngram`` — a multinomial naive-Bayes log-count ratio over word unigrams of the prompt and of
  the response (each example scored by its mean token ratio).

Each view's score is rank-normalised over the dataset, the views are averaged, and a one-feature
logistic regression on the labels maps the result to a probability that experts would rate the
example as meeting the criterion. :func:`holdout_agreement` refits on part of the labels and
reports AUROC / Spearman on the rest, so nobody trusts a scorer that disagrees with the experts.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import scipy.sparse as sp
from scipy.stats import rankdata, spearmanr

__all__ = ["Features", "LearnedScorer", "build_features", "holdout_agreement"]

VIEWS = ("dense", "embed", "ngram")


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
    t_min: float = 1.0  # dense view: |t| needed for a feature to enter
    nb_alpha: float = 1.0
    fitted: dict[str, Any] = field(default_factory=dict)

    # ------------------------------------------------------------------ views
    def _fit_dense(self, f: Features, idx: np.ndarray, y: np.ndarray) -> np.ndarray:
        mu = f.dense.mean(axis=0)
        sd = f.dense.std(axis=0)
        sd[sd == 0] = 1.0
        z = (f.dense[idx] - mu) / sd
        a, b = z[y == 1], z[y == 0]
        se = np.sqrt(a.var(axis=0) / max(len(a), 1) + b.var(axis=0) / max(len(b), 1)) + 1e-9
        t = (a.mean(axis=0) - b.mean(axis=0)) / se
        w = np.where(np.abs(t) > self.t_min, np.sign(t), 0.0)
        self.fitted["dense"] = {
            "mu": mu,
            "sd": sd,
            "w": w,
            "used": [n for n, x in zip(f.dense_names, w, strict=True) if x != 0],
        }
        return w / sd  # weights on raw features

    def _score_dense(self, f: Features) -> np.ndarray | None:
        d = self.fitted.get("dense")
        if d is None or not np.any(d["w"]):
            return None
        return np.asarray(((f.dense - d["mu"]) / d["sd"]) @ d["w"])

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

    def _view_scores(self, f: Features) -> list[np.ndarray]:
        out = []
        if "dense" in self.views:
            s = self._score_dense(f)
            if s is not None:
                out.append(s)
        if "embed" in self.views and "embed" in self.fitted and f.embed is not None:
            out.append(np.asarray(f.embed @ self.fitted["embed"], dtype=np.float64))
        if "ngram" in self.views and "ngram" in self.fitted:
            for m, r in zip(f.ngram, self.fitted["ngram"], strict=True):
                cnt = np.maximum(np.asarray(m.sum(axis=1)).ravel(), 1.0)
                out.append(np.asarray(m @ r).ravel() / cnt)
        return out

    # ------------------------------------------------------------------ API
    def fit(self, f: Features, idx: np.ndarray, y: np.ndarray) -> LearnedScorer:
        """Fit on the labelled rows ``idx`` (binary ``y``: 1 = meets the criterion)."""
        y = np.asarray(y, dtype=int)
        if len(set(y.tolist())) < 2:
            raise ValueError("the calibration labels of this criterion are all the same class")
        self.fitted = {}
        if "dense" in self.views:
            self._fit_dense(f, idx, y)
        if "embed" in self.views:
            self._fit_embed(f, idx, y)
        if "ngram" in self.views:
            self._fit_ngram(f, idx, y)
        raw = self.raw_score(f)
        # Platt scaling of the combined rank score on the labels
        from sklearn.linear_model import LogisticRegression

        lr = LogisticRegression(C=1.0).fit(raw[idx].reshape(-1, 1), y)
        self.fitted["platt"] = (float(lr.coef_[0, 0]), float(lr.intercept_[0]))
        return self

    def raw_score(self, f: Features) -> np.ndarray:
        """Mean rank (0..1) of the views over the rows of ``f`` (the whole dataset)."""
        views = self._view_scores(f)
        if not views:
            return np.full(len(f), 0.5)
        return np.mean([_rank01(v) for v in views], axis=0)

    def predict(self, f: Features) -> np.ndarray:
        """Probability that experts rate each example as meeting the criterion."""
        a, b = self.fitted["platt"]
        z = a * self.raw_score(f) + b
        return np.asarray(1.0 / (1.0 + np.exp(-z)))

    def describe(self) -> dict[str, Any]:
        d = self.fitted.get("dense") or {}
        return {
            "views": list(self.views),
            "dense_features_used": d.get("used", []),
            "embeddings": "embed" in self.fitted,
        }


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
    **kw: Any,
) -> dict[str, Any]:
    """Fit on ``1 - holdout`` of the labelled rows and measure agreement on the rest: AUROC of
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
    sc = LearnedScorer(**kw).fit(f, idx[train], y[train])
    p = sc.predict(f)[idx[test]]
    out["auroc"] = _auroc(y[test], p)
    if cont is not None and len(test) >= 3:
        rho = spearmanr(np.asarray(cont)[test], p).statistic
        out["spearman"] = float(rho) if np.isfinite(rho) else float("nan")
    return out
