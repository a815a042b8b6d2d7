"""Consensus labels with a confidence: majority vote and a guarded Dawid–Skene model.

**Majority vote** counts the labels per example; ties are broken by the class prior (the more
frequent label overall), never at random.

**Dawid–Skene** (1979) estimates one confusion matrix per annotator and the class prior by EM and
gives each example a posterior over the true label, so reliable annotators weigh more. Three
guards keep it from collapsing when annotator ids do not identify real, consistent people (the
failure that takes worker models from 0.72 to 0.45–0.50 on ChaosNLI when fed positional ids):

1. *Support.* An annotator gets their own confusion matrix only with at least
   ``min_annotator_labels`` labels on examples that others also labelled; the rest share one
   pooled matrix. Every annotator's matrix is shrunk towards the pooled one with
   ``prior_strength`` pseudo-labels per class (hierarchical DS), so thin evidence stays close
   to "a typical annotator".
2. *Exchangeable annotators.* When the fitted per-annotator matrices are no more different
   from each other than sampling noise explains (a permutation-free test: the spread of the
   annotators' chance-corrected accuracies against the consensus is compared with its binomial
   standard error), there is nothing to weigh and the model reduces to the pooled one.
3. *Majority floor.* The model may overturn a strict majority only when the annotators on the
   winning side are estimated reliably better (their support passed guard 1). Otherwise the
   final label is the majority label and the model's posterior is used as the confidence only.

The posterior (class prior × annotators' likelihoods) is the consensus confidence. Because
Dawid–Skene posteriors are overconfident when each annotator has few labels, the reported
posterior is a blend: ``model_weight`` × per-annotator posterior + (1 − ``model_weight``) × the
pooled (exchangeable annotators) posterior. It drives escalation in
:mod:`ftprep.labels.escalation`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ftprep.agreement import Ratings


@dataclass(slots=True)
class Consensus:
    units: list[str]
    domain: np.ndarray
    counts: np.ndarray  # units × K vote counts
    majority: np.ndarray  # int codes, -1 when the unit has no labels
    majority_share: np.ndarray  # share of votes for the majority label
    tied: np.ndarray  # bool: majority tied with another label
    posterior: np.ndarray  # units × K
    label: np.ndarray  # final codes
    method: str  # "majority" | "dawid_skene" | "pooled"
    notes: list[str] = field(default_factory=list)
    rater_confusion: np.ndarray | None = None  # raters × K × K (row: true, col: given)
    rater_supported: np.ndarray | None = None  # bool per rater
    class_prior: np.ndarray | None = None
    stability: np.ndarray | None = None  # P(a large crowd keeps the final label), per unit

    @property
    def confidence(self) -> np.ndarray:
        return self.posterior.max(axis=1)

    @property
    def margin(self) -> np.ndarray:
        s = np.sort(self.posterior, axis=1)
        return s[:, -1] - (s[:, -2] if s.shape[1] > 1 else 0.0)

    @property
    def n_labels(self) -> np.ndarray:
        return self.counts.sum(axis=1)

    def label_names(self, codes: np.ndarray | None = None) -> list[str | None]:
        c = self.label if codes is None else codes
        return [str(self.domain[i]) if i >= 0 else None for i in c]


def majority_vote(
    counts: np.ndarray, prior: np.ndarray | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Majority code per unit (ties → the label with the larger ``prior``, then the lower code),
    the majority's vote share and a tie flag."""
    counts = np.asarray(counts, dtype=float)
    k = counts.shape[1]
    pri = counts.sum(axis=0) if prior is None else np.asarray(prior, dtype=float)
    rank = np.argsort(np.argsort(-pri, kind="stable"), kind="stable")  # 0 = most frequent
    tiebreak = (k - rank) / (k + 1.0)  # in (0, 1): never beats a whole vote
    key = counts + tiebreak[None, :] * 1e-3
    maj = key.argmax(axis=1)
    total = counts.sum(axis=1)
    top = counts.max(axis=1)
    tied = (counts == top[:, None]).sum(axis=1) > 1
    share = np.divide(top, total, out=np.zeros_like(top), where=total > 0)
    maj = np.where(total > 0, maj, -1)
    return maj, share, tied & (total > 0)


def _triples(r: Ratings) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rr, uu = np.nonzero(r.codes >= 0)
    return rr, uu, r.codes[rr, uu].astype(np.int64)


def dawid_skene(
    r: Ratings,
    *,
    prior_strength: float = 10.0,
    min_annotator_labels: int = 30,
    max_iter: int = 100,
    tol: float = 1e-6,
    smoothing: float = 0.5,
    model_weight: float = 0.5,
    concentration: float | None = None,
    guards: bool = True,
) -> Consensus:
    """Hierarchical Dawid–Skene with the guards described in the module docstring.

    ``model_weight``: weight of the per-annotator posterior in the reported confidence (the rest
    is the pooled, exchangeable-annotator posterior). ``concentration``: Dirichlet concentration
    of the per-example vote distributions (item difficulty; ``None``: fitted by marginal
    likelihood, ``inf``: independent votes). ``guards=False`` gives plain Dawid–Skene (every annotator modelled,
    no pooling, no majority floor, no tempering) — for comparison only."""
    counts = r.counts().astype(float)
    k = r.n_values
    n_u = r.n_units
    maj, share, tied = majority_vote(counts)
    rr, uu, ll = _triples(r)
    notes: list[str] = []
    labelled = counts.sum(axis=1) > 0
    if k < 2 or rr.size == 0:
        post = np.zeros((n_u, max(k, 1)))
        post[labelled, maj[labelled]] = 1.0
        return Consensus(
            r.units,
            r.domain,
            counts,
            maj,
            share,
            tied,
            post,
            maj.copy(),
            "majority",
            ["fewer than two label values: majority only"],
        )

    # support: labels on units that at least one other annotator also labelled
    others = counts.sum(axis=1)[uu] - 1
    support = np.bincount(rr, weights=(others > 0).astype(float), minlength=r.n_raters)
    supported = support >= (min_annotator_labels if guards else 0)
    # unsupported annotators share one "pooled" slot
    slot_of = np.where(supported, np.arange(r.n_raters), r.n_raters)
    n_slots = r.n_raters + 1
    ss = slot_of[rr]

    # init: smoothed vote shares
    t = counts + smoothing
    t[~labelled] = 1.0
    t /= t.sum(axis=1, keepdims=True)
    prev_ll = -np.inf
    conf = np.full((n_slots, k, k), 1.0 / k)
    pri = np.full(k, 1.0 / k)
    for _it in range(max_iter):
        # M-step
        pri = t[labelled].sum(axis=0) + 1.0
        pri /= pri.sum()
        num = np.zeros((n_slots, k, k))  # num[s, true, given] += t[u, true]
        flat = ss * k + ll
        for kk in range(k):
            num[:, kk, :] = np.bincount(flat, weights=t[uu, kk], minlength=n_slots * k).reshape(
                n_slots, k
            )
        pooled = num.sum(axis=0) + smoothing
        pooled /= pooled.sum(axis=1, keepdims=True)
        conf = num + (prior_strength if guards else 0.01) * pooled[None]
        conf /= conf.sum(axis=2, keepdims=True)
        # E-step
        logc = np.log(conf)
        logt = np.zeros((n_u, k)) + np.log(pri)[None]
        np.add.at(logt, uu, logc[ss, :, ll])
        mx = logt.max(axis=1, keepdims=True)
        e = np.exp(logt - mx)
        z = e.sum(axis=1, keepdims=True)
        t_new = e / z
        t_new[~labelled] = pri
        loglik = float((np.log(z[labelled]) + mx[labelled]).sum())
        t = t_new
        if abs(loglik - prev_ll) < tol * max(1.0, abs(loglik)):
            break
        prev_ll = loglik

    method = "dawid_skene"
    # guard 2: are the supported annotators distinguishable at all?
    if not guards:
        pass
    elif supported.sum() >= 2:
        acc = _chance_corrected_accuracy(conf[: r.n_raters][supported], pri)
        n_sup = support[supported]
        spread = float(np.std(acc))
        noise = float(np.sqrt(np.mean(1.0 / np.maximum(n_sup, 1))))
        if spread < 2.0 * noise:
            method = "pooled"
            notes.append(
                f"annotators indistinguishable (spread of estimated reliability {spread:.3f} "
                f"≤ 2× sampling noise {noise:.3f}): pooled model"
            )
    elif supported.sum() < 2:
        method = "pooled"
        notes.append(
            f"fewer than two annotators with ≥ {min_annotator_labels} overlapping labels: pooled model"
        )
    t_pooled, pri_pooled, pooled_conf = _pooled(counts, labelled, smoothing, max_iter, tol)
    if method == "pooled":
        t, pri = t_pooled, pri_pooled
        conf = np.broadcast_to(pooled_conf, (n_slots, k, k)).copy()

    post = t
    label = maj.copy()
    if method == "dawid_skene":
        # guard 3: overturn a strict majority only when supported annotators carry the win
        ds = post.argmax(axis=1)
        differs = labelled & (ds != maj) & ~tied
        if differs.any():
            win_support = np.zeros(n_u)
            np.add.at(win_support, uu, (supported[rr] & (ll == ds[uu])).astype(float))
            ok = differs & ((win_support > 0) | (not guards))
            label = np.where(ok, ds, maj)
            notes.append(
                f"model overturned {int(ok.sum())} strict majorities "
                f"({int((differs & ~ok).sum())} kept: winning side had no supported annotator)"
            )
        label = np.where(tied & labelled, ds, label)
    # pooled: annotators are exchangeable, so the vote count is sufficient: keep the majority
    label = np.where(labelled, label, -1)
    # item difficulty: votes on one example are not independent (hard examples draw correlated
    # errors). Each example's vote distribution is modelled as Dirichlet around its true class's
    # confusion row with concentration s (Dirichlet-multinomial), s fitted by marginal likelihood
    m = counts.sum(axis=1)
    conc = (
        _fit_concentration(counts[labelled], pri_pooled, pooled_conf)
        if concentration is None
        else concentration
    )
    if not guards:
        conc, model_weight = np.inf, 1.0
    if np.isfinite(conc):
        post_pooled = _softmax(np.log(pri_pooled)[None] + _dm_loglik(counts, pooled_conf, conc))
        scale = (conc + 1.0) / (conc + np.maximum(m, 1.0))  # 1 / overdispersion factor
        notes.append(
            f"item difficulty: vote distributions vary around each class (Dirichlet concentration "
            f"{conc:.1f}); 5 votes on one example weigh like {5 * (conc + 1) / (conc + 5):.1f} independent ones"
        )
    else:
        post_pooled = _softmax(np.log(pri_pooled)[None] + counts @ np.log(pooled_conf).T)
        scale = np.ones(n_u)
    post_pooled[~labelled] = pri_pooled
    if method == "dawid_skene":
        lds = np.zeros((n_u, k))
        np.add.at(lds, uu, np.log(conf)[ss, :, ll])
        post_ds = _softmax(np.log(pri)[None] + scale[:, None] * lds)
        post_ds[~labelled] = pri
        # DS posteriors are overconfident when each annotator has few labels: the reported
        # confidence blends them with the exchangeable (pooled) posterior
        post = model_weight * post_ds + (1.0 - model_weight) * post_pooled
    else:
        post = post_pooled
    label_safe = np.maximum(label, 0)
    if np.isfinite(conc):
        # average two item-difficulty models: Dirichlet around each true class's confusion row,
        # and one Dirichlet over vote distributions regardless of class
        stab = 0.5 * crowd_stability(counts, post, pooled_conf, conc, label_safe)
        stab += 0.5 * dirichlet_stability(counts, label_safe, labelled)
    else:
        stab = post[np.arange(n_u), label_safe]
    stab = np.where(labelled, stab, 0.0)
    return Consensus(
        r.units,
        r.domain,
        counts,
        maj,
        share,
        tied,
        post,
        label,
        method,
        notes,
        rater_confusion=conf[slot_of],
        rater_supported=supported,
        class_prior=pri,
        stability=stab,
    )


def _softmax(logt: np.ndarray) -> np.ndarray:
    mx = logt.max(axis=1, keepdims=True)
    e = np.exp(logt - mx)
    return np.asarray(e / e.sum(axis=1, keepdims=True))


def crowd_stability(
    counts: np.ndarray,
    post: np.ndarray,
    conf: np.ndarray,
    conc: float,
    label: np.ndarray,
    *,
    samples: int = 256,
    max_classes: int = 8,
    chunk: int = 4096,
    seed: int = 0,
) -> np.ndarray:
    """Probability that the label a very large crowd would give (the argmax of the example's
    vote distribution) is ``label``, under the Dirichlet-multinomial model: the example's
    distribution is ``Dirichlet(conc · conf[c] + counts)`` given true class ``c`` (posterior
    ``post``). Monte Carlo with a fixed seed (deterministic); with many classes only the
    ``max_classes`` most likely per example are simulated."""
    rng = np.random.default_rng(seed)
    n_u, k = counts.shape
    out = np.zeros(n_u)
    kk = min(k, max_classes)
    score = post + counts  # candidate classes: voted or probable
    for start in range(0, n_u, chunk):
        sl = slice(start, min(start + chunk, n_u))
        cand = np.argsort(-score[sl], axis=1, kind="stable")[:, :kk]  # u × kk
        lab = label[sl]
        # make sure the label itself is a candidate (replace the last one when missing)
        has = (cand == lab[:, None]).any(axis=1)
        cand[~has, -1] = lab[~has]
        pos = (cand == lab[:, None]).argmax(axis=1)
        cnt = np.take_along_axis(counts[sl], cand, axis=1)
        pc = np.take_along_axis(post[sl], cand, axis=1)
        pc = pc / np.maximum(pc.sum(axis=1, keepdims=True), 1e-12)
        acc = np.zeros(cnt.shape[0])
        for j in range(kk):
            true_c = cand[:, j]
            a = conc * conf[true_c[:, None], cand] + cnt  # u × kk
            g = rng.gamma(np.repeat(a[:, None, :], samples, axis=1))
            acc += pc[:, j] * (g.argmax(axis=2) == pos[:, None]).mean(axis=1)
        out[sl] = acc
    return out


def dirichlet_stability(
    counts: np.ndarray,
    label: np.ndarray,
    labelled: np.ndarray,
    *,
    samples: int = 256,
    max_classes: int = 8,
    chunk: int = 4096,
    seed: int = 1,
) -> np.ndarray:
    """P(argmax of the example's vote distribution = ``label``) when vote distributions follow
    one Dirichlet(α) over all examples, α fitted by maximum likelihood (Dirichlet-multinomial);
    the posterior is Dirichlet(α + votes). Monte Carlo with a fixed seed."""
    from scipy.optimize import minimize
    from scipy.special import gammaln

    k = counts.shape[1]
    multi = counts[labelled & (counts.sum(axis=1) >= 2)]
    if len(multi) < 30:
        return np.asarray(
            np.take_along_axis(counts, label[:, None], axis=1)[:, 0]
            / np.maximum(counts.sum(axis=1), 1)
        )
    m = multi.sum(axis=1)

    def nll(la: np.ndarray) -> float:
        a = np.exp(la)
        return -float(
            (
                gammaln(a.sum())
                - gammaln(a.sum() + m)
                + (gammaln(a[None] + multi) - gammaln(a)[None]).sum(axis=1)
            ).sum()
        )

    alpha = np.exp(minimize(nll, np.zeros(k), method="L-BFGS-B", bounds=[(-8.0, 8.0)] * k).x)
    return argmax_probability(
        alpha[None] + counts,
        label,
        np.random.default_rng(seed),
        samples=samples,
        max_classes=max_classes,
        chunk=chunk,
    )


def argmax_probability(
    a: np.ndarray,
    label: np.ndarray,
    rng: np.random.Generator,
    *,
    samples: int,
    max_classes: int | None = None,
    chunk: int = 4096,
) -> np.ndarray:
    """Per row: P(argmax of a Dirichlet(``a[row]``) draw = ``label[row]``), by Monte Carlo
    (normalised gamma draws), ``chunk`` rows at a time so memory stays ``chunk × samples × K``.
    With ``max_classes`` only the row's largest ``max_classes`` parameters (and its label) are
    sampled — the rest almost never win."""
    n, k = a.shape
    out = np.zeros(n)
    for start in range(0, n, chunk):
        sl = slice(start, min(start + chunk, n))
        a_c, lab = a[sl], np.asarray(label[sl])
        if max_classes is not None:
            cand = np.argsort(-a_c, axis=1, kind="stable")[:, : min(k, max_classes)]
            has = (cand == lab[:, None]).any(axis=1)
            cand[~has, -1] = lab[~has]
            lab = (cand == lab[:, None]).argmax(axis=1)
            a_c = np.take_along_axis(a_c, cand, axis=1)
        g = rng.gamma(np.repeat(a_c[:, None, :], samples, axis=1))
        out[sl] = (g.argmax(axis=2) == lab[:, None]).mean(axis=1)
    return out


def fit_dirichlet_regression(
    x: np.ndarray, counts: np.ndarray, l2: float = 300.0, max_iter: int = 300
) -> tuple[np.ndarray, np.ndarray]:
    """Dirichlet-multinomial regression: each item's vote distribution ~ Dirichlet(α(x)) with
    ``log α(x) = x W + b`` (one column per label), fitted by maximum marginal likelihood of the
    observed votes ``counts`` with an L2 penalty ``l2`` on W. The mean of α is the item's prior
    label distribution, its sum how closely the item's vote distribution follows that mean (with
    a flat mean: a small sum expects the crowd to agree on *some* label, a large sum expects an
    even split). Returns (W, b)."""
    from scipy.optimize import minimize
    from scipy.special import digamma, gammaln

    x = np.asarray(x, dtype=float)
    counts = np.asarray(counts, dtype=float)
    d, k = x.shape[1], counts.shape[1]
    m = counts.sum(axis=1)

    def f(w: np.ndarray) -> tuple[float, np.ndarray]:
        wm, b = w[: d * k].reshape(d, k), w[d * k :]
        a = np.exp(np.clip(x @ wm + b, -10.0, 10.0))
        tot = a.sum(axis=1)
        ll = gammaln(tot) - gammaln(tot + m) + (gammaln(a + counts) - gammaln(a)).sum(axis=1)
        g = -a * ((digamma(tot) - digamma(tot + m))[:, None] + digamma(a + counts) - digamma(a))
        obj = -float(ll.sum()) + 0.5 * l2 * float((wm**2).sum())
        return obj, np.concatenate([(x.T @ g + l2 * wm).ravel(), g.sum(axis=0)])

    res = minimize(
        f, np.zeros(d * k + k), jac=True, method="L-BFGS-B", options={"maxiter": max_iter}
    )
    return res.x[: d * k].reshape(d, k), res.x[d * k :]


def item_prior_stability(
    x: np.ndarray,
    counts: np.ndarray,
    label: np.ndarray,
    *,
    l2: float = 300.0,
    folds: int = 5,
    samples: int = 1000,
    seed: int = 0,
) -> np.ndarray:
    """Crowd stability with a per-item prior from item features ``x`` (e.g. text embeddings):
    P(argmax of the item's vote distribution = ``label``) under Dirichlet(α(x) + votes), where
    α(x) is a :func:`fit_dirichlet_regression` fitted *out of fold* (``folds`` folds: no item's
    prior saw its own votes). With no feature columns this is the empirical-Bayes Dirichlet over
    all items. Monte Carlo with fixed seeds (deterministic)."""
    counts = np.asarray(counts, dtype=float)
    x = np.asarray(x, dtype=float)
    n = len(counts)
    alpha = np.zeros(counts.shape)
    perm = np.random.default_rng(seed).permutation(n)
    folds = max(2, min(folds, n))
    for f in range(folds):
        te = perm[f::folds]
        tr = np.setdiff1d(perm, te)
        wm, b = fit_dirichlet_regression(x[tr], counts[tr], l2)
        alpha[te] = np.exp(np.clip(x[te] @ wm + b, -10.0, 10.0))
    return argmax_probability(
        alpha + counts, np.asarray(label), np.random.default_rng(seed + 1), samples=samples
    )


def _dm_loglik(counts: np.ndarray, conf: np.ndarray, conc: float) -> np.ndarray:
    """units × K: log Dirichlet-multinomial likelihood of each unit's votes if its true class is k
    (vote distribution ~ Dirichlet(conc · conf[k])); the multinomial coefficient is omitted."""
    from scipy.special import gammaln

    a = conc * conf  # K × K (true, given)
    m = counts.sum(axis=1)
    n = counts[:, None, :]  # U × 1 × K
    ll = (gammaln(a[None] + n) - gammaln(a[None])).sum(axis=2)
    return np.asarray(ll + (gammaln(conc) - gammaln(conc + m))[:, None])


def _fit_concentration(counts: np.ndarray, prior: np.ndarray, conf: np.ndarray) -> float:
    """Maximum-marginal-likelihood Dirichlet concentration over a log grid; ``inf`` (independent
    votes) when the data prefer the largest value or there are too few multi-labelled units."""
    from scipy.special import logsumexp

    multi = counts[counts.sum(axis=1) >= 2]
    if len(multi) < 30:
        return float("inf")
    grid = np.geomspace(0.3, 1000.0, 36)
    lp = np.log(prior)[None]
    scores = [float(logsumexp(lp + _dm_loglik(multi, conf, g), axis=1).sum()) for g in grid]
    best = int(np.argmax(scores))
    return float("inf") if best == len(grid) - 1 else float(grid[best])


def _pooled(
    counts: np.ndarray, labelled: np.ndarray, smoothing: float, max_iter: int, tol: float
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """One confusion matrix shared by all annotators (exchangeable annotators)."""
    k = counts.shape[1]
    t = counts + smoothing
    t[~labelled] = 1.0
    t /= t.sum(axis=1, keepdims=True)
    prev = -np.inf
    pri = np.full(k, 1.0 / k)
    conf = np.full((k, k), 1.0 / k)
    for _ in range(max_iter):
        pri = t[labelled].sum(axis=0) + 1.0
        pri /= pri.sum()
        conf = t[labelled].T @ counts[labelled] + smoothing
        conf /= conf.sum(axis=1, keepdims=True)
        logt = np.log(pri)[None] + counts @ np.log(conf).T
        mx = logt.max(axis=1, keepdims=True)
        e = np.exp(logt - mx)
        z = e.sum(axis=1, keepdims=True)
        t = e / z
        t[~labelled] = pri
        ll = float((np.log(z[labelled]) + mx[labelled]).sum())
        if abs(ll - prev) < tol * max(1.0, abs(ll)):
            break
        prev = ll
    return t, pri, conf


def _chance_corrected_accuracy(conf: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """κ-like reliability of each confusion matrix: (p_o - p_e) / (1 - p_e)."""
    joint = prior[None, :, None] * conf  # raters × true × given
    p_o = np.trace(joint, axis1=1, axis2=2)
    given = joint.sum(axis=1)
    p_e = (given * prior[None]).sum(axis=1)
    return np.asarray((p_o - p_e) / np.maximum(1.0 - p_e, 1e-12))


def aggregate(r: Ratings, *, method: str = "auto", **kw: Any) -> Consensus:
    """``method``: ``majority`` (vote shares as the posterior), ``dawid_skene`` or ``auto``
    (guarded Dawid–Skene, see the module docstring)."""
    if method == "majority":
        counts = r.counts().astype(float)
        maj, share, tied = majority_vote(counts)
        total = counts.sum(axis=1, keepdims=True)
        post = np.divide(
            counts, total, out=np.full_like(counts, 1.0 / max(counts.shape[1], 1)), where=total > 0
        )
        return Consensus(r.units, r.domain, counts, maj, share, tied, post, maj.copy(), "majority")
    if method in ("auto", "dawid_skene"):
        return dawid_skene(r, **kw)
    raise ValueError(f"method must be auto, majority or dawid_skene (got {method!r})")
