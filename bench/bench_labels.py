"""Label-quality benchmarks, each side by side with the baseline a user would otherwise use.

    PYTHONPATH=src python bench/bench_labels.py [agreement|aggregation|escalation|escalation-text|
        escalation-text-minilm|escalation-ids|imdb|banking77|imdb-full|all]

* agreement   — ftprep.agreement vs ``krippendorff`` / statsmodels: max |difference| on real data
                and time on 50k labels.
* aggregation — ChaosNLI (truth = 100-vote majority): majority vote vs plain Dawid–Skene vs
                ftprep's guarded consensus, on the original 5 labels (positional annotator ids)
                and on 5 votes resampled from each item's 100.
* escalation  — ChaosNLI, 5 votes resampled per item: catch rate of wrong majorities vs share
                escalated, for "escalate every ≤ 3/5 majority" and for ftprep's rule.
* escalation-text — the same with a per-item Dirichlet prior from the text (out-of-fold
                Dirichlet-multinomial regression on premise/hypothesis features; static embeddings,
                ``escalation-text-minilm``: MiniLM).
* escalation-ids  — escalation with real annotator ids: banking77 intents as truth, simulated
                annotators of varying reliability: ≤ 3/5 rule vs ftprep without / with the ids.
* imdb        — 725 human-confirmed label errors in IMDB test (25k): AUPRC and precision@100 of
                the ranking, ftprep vs cleanlab on the same out-of-fold probabilities, and the
                TF-IDF word + logistic regression + confident-learning baseline.
* banking77   — 8% of labels flipped to each class's most confusable class: AUPRC, ftprep vs
                cleanlab on the same probabilities, and margin ranking over static embeddings.

cleanlab (AGPL-3.0) is imported here only, never from ``src/`` (``pip install cleanlab``).
Data: ``../shared/data`` (skipped when absent). Prints markdown tables.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from _machine import cpu_model

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ANN = DATA / "annotators"


def _machine() -> str:
    cpu = cpu_model()
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    return (
        f"nproc {os.cpu_count()}, {cpu}, load average {load:.1f} (machine shared), "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def _median_time(fn: object, repeats: int = 5) -> tuple[object, float]:
    """(result, median seconds over ``repeats`` runs)."""
    times, out = [], None
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = fn()  # type: ignore[operator]
        times.append(time.perf_counter() - t0)
    return out, float(np.median(times))


def _table(cols: list[str], rows: list[list[object]]) -> str:
    def f(x: object) -> str:
        return f"{x:.4f}" if isinstance(x, float) else str(x)

    out = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    out += ["| " + " | ".join(f(x) for x in r) + " |" for r in rows]
    return "\n".join(out)


# ============================================================================ agreement
def bench_agreement() -> str:
    import krippendorff
    from statsmodels.stats import inter_rater

    from ftprep.agreement import (
        cohen_kappa_table,
        fleiss_kappa,
        krippendorff_alpha,
        pair_stats,
        ratings_from_long,
        ratings_from_matrix,
    )

    rows: list[list[object]] = []
    # real data: Stanford politeness (ratings, real rater ids)
    units, raters, vals = [], [], []
    with open(ANN / "stanford_politeness" / "wikipedia.annotated.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for i in range(1, 6):
                units.append(row["Id"])
                raters.append(row[f"TurkId{i}"])
                vals.append(int(row[f"Score{i}"]))
    r = ratings_from_long(units, raters, vals)
    m = r.matrix()
    for level in ("nominal", "ordinal", "interval", "ratio"):
        ours, t_o = _median_time(lambda lv=level: krippendorff_alpha(r, level=lv))
        ref, t_r = _median_time(
            lambda lv=level: krippendorff.alpha(reliability_data=m, level_of_measurement=lv)
        )
        rows.append(
            [
                f"politeness α {level} ({r.n_labels} labels, {r.n_raters} raters)",
                ours,
                ref,
                f"{abs(ours - ref):.1e}",
                f"{t_o * 1e3:.0f} ms",
                f"{t_r * 1e3:.0f} ms",
            ]
        )
    ps = pair_stats(r, weights="quadratic", min_overlap=50)
    diffs = [
        abs(k - inter_rater.cohens_kappa(t, wt="quadratic", return_results=False))
        for k, t in zip(ps.kappa[:50], ps.tables[:50], strict=True)
    ]
    rows.append(
        [
            f"politeness Cohen κ quadratic, {min(50, len(ps.kappa))} busiest pairs",
            "",
            "",
            f"{max(diffs):.1e}",
            "",
            "",
        ]
    )
    # ChaosNLI: Fleiss
    old = []
    codes = {"entailment": 0, "neutral": 1, "contradiction": 2}
    for name in ("chaosNLI_snli.jsonl", "chaosNLI_mnli_m.jsonl"):
        with open(ANN / "chaosnli" / name, encoding="utf-8") as f:
            for line in f:
                labs = json.loads(line)["old_labels"]
                if len(labs) == 5:
                    old.append([codes[x] for x in labs])
    mat = np.array(old, dtype=float).T
    rc = ratings_from_matrix(mat)
    table, _ = inter_rater.aggregate_raters(mat.T.astype(int))
    fo, fr = fleiss_kappa(rc.counts()), inter_rater.fleiss_kappa(table)
    rows.append(
        [f"ChaosNLI Fleiss κ ({rc.n_labels} labels)", fo, fr, f"{abs(fo - fr):.1e}", "", ""]
    )
    ao = krippendorff_alpha(rc)
    ar = krippendorff.alpha(reliability_data=mat, level_of_measurement="nominal")
    rows.append(["ChaosNLI α nominal", ao, ar, f"{abs(ao - ar):.1e}", "", ""])
    # speed: 50k labels, 10k units × 5 labels from 200 annotators, 5 categories
    rng = np.random.default_rng(0)
    n_u = 10_000
    truth = rng.integers(0, 5, n_u)
    uu = np.repeat(np.arange(n_u), 5)
    ra = np.concatenate([rng.choice(200, 5, replace=False) for _ in range(n_u)])
    vv = np.where(rng.random(uu.size) < 0.7, truth[uu], rng.integers(0, 5, uu.size))
    t0 = time.perf_counter()
    r5 = ratings_from_long(uu.tolist(), ra.tolist(), vv.tolist())
    t_build = time.perf_counter() - t0
    mat5 = r5.matrix()
    for level in ("nominal", "ordinal", "interval"):
        ours, t_o = _median_time(lambda lv=level: krippendorff_alpha(r5, level=lv))
        ref, t_r = _median_time(
            lambda lv=level: krippendorff.alpha(reliability_data=mat5, level_of_measurement=lv)
        )
        rows.append(
            [
                f"synthetic 50k labels α {level}",
                ours,
                ref,
                f"{abs(ours - ref):.1e}",
                f"{t_o * 1e3:.0f} ms",
                f"{t_r * 1e3:.0f} ms",
            ]
        )
    t0 = time.perf_counter()
    ps5 = pair_stats(r5)
    t_pairs = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_k = [cohen_kappa_table(t) for t in ps5.tables[:200]]
    t_ref = (time.perf_counter() - t0) / 200 * len(ps5.kappa)
    rows.append(
        [
            f"synthetic 50k labels: Cohen κ for all {len(ps5.kappa)} annotator pairs",
            "",
            "",
            f"{max(abs(a - b) for a, b in zip(ps5.kappa[:200], ref_k, strict=True)):.1e}",
            f"{t_pairs * 1e3:.0f} ms",
            f"~{t_ref * 1e3:.0f} ms (per-pair loop, est.)",
        ]
    )
    rows.append(
        ["synthetic 50k labels: import long triples", "", "", "", f"{t_build * 1e3:.0f} ms", ""]
    )
    return "### Agreement statistics vs reference implementations\n\n" + _table(
        [
            "what",
            "ftprep",
            "reference",
            "|diff|",
            "ftprep time (median of 5)",
            "reference time (median of 5)",
        ],
        rows,
    )


# ============================================================================ ChaosNLI
def _chaos_items() -> tuple[np.ndarray, np.ndarray, np.ndarray, list[np.ndarray]]:
    """label_count (5 columns: e, n, c for SNLI/MNLI; 1, 2 for αNLI in columns 3–4), truth,
    subset id, original labels (SNLI/MNLI only)."""
    cnts, truth, subset = [], [], []
    for s, name in enumerate(
        ("chaosNLI_snli.jsonl", "chaosNLI_mnli_m.jsonl", "chaosNLI_alphanli.jsonl")
    ):
        with open(ANN / "chaosnli" / name, encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                c = d["label_count"]
                c = [*c, 0, 0] if len(c) == 3 else [0, 0, 0, *c]
                cnts.append(c)
                truth.append(int(np.argmax(c)))
                subset.append(s)
    return np.array(cnts), np.array(truth), np.array(subset), []


def _resample(cnts: np.ndarray, rng: np.random.Generator, n: int = 5) -> np.ndarray:
    """n votes per item drawn with replacement from its 100 (returns items × n label codes)."""
    p = cnts / cnts.sum(axis=1, keepdims=True)
    cum = np.cumsum(p, axis=1)
    u = rng.random((len(cnts), n))
    return np.asarray((u[:, :, None] > cum[:, None, :]).sum(axis=2))


def bench_aggregation() -> str:
    from ftprep.agreement import ratings_from_matrix
    from ftprep.labels.aggregate import aggregate

    codes = {"entailment": 0.0, "neutral": 1.0, "contradiction": 2.0}
    old, truth = [], []
    for name in ("chaosNLI_snli.jsonl", "chaosNLI_mnli_m.jsonl"):
        with open(ANN / "chaosnli" / name, encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                labs = [codes[x] for x in d["old_labels"]]
                old.append(labs + [np.nan] * (5 - len(labs)))
                truth.append({"e": 0, "n": 1, "c": 2}[d["majority_label"]])
    t = np.array(truth)
    r = ratings_from_matrix(np.array(old).T)
    rows: list[list[object]] = []

    def run(rr: object, tt: np.ndarray) -> list[float]:
        out = []
        for kw in ({"method": "majority"}, {"method": "auto", "guards": False}, {"method": "auto"}):
            c = aggregate(rr, **kw)  # type: ignore[arg-type]
            out.append(float((rr.domain[c.label].astype(int) == tt).mean()))  # type: ignore[attr-defined]
        return out

    rows.append(["ChaosNLI SNLI+MNLI, original 5 labels (positional ids)", *run(r, t)])
    cnts, truth_all, subset, _ = _chaos_items()
    rng = np.random.default_rng(0)
    res = []
    for s in (0, 1, 2):
        idx = np.flatnonzero(subset == s)
        for _rep in range(3):
            votes = _resample(cnts[idx], rng).T.astype(float)
            res.append(run(ratings_from_matrix(votes), truth_all[idx]))
    rows.append(
        [
            "ChaosNLI all 3 subsets, 5 resampled votes (positional ids), mean of 3 draws",
            *np.mean(res, axis=0).tolist(),
        ]
    )
    # real annotator ids with planted unreliable annotators
    rng = np.random.default_rng(1)
    n, k = 3000, 4
    tr = rng.integers(0, k, n)
    acc = rng.uniform(0.35, 0.95, 30)
    m = np.full((30, n), np.nan)
    for u in range(n):
        for a in rng.choice(30, 5, replace=False):
            m[a, u] = tr[u] if rng.random() < acc[a] else rng.integers(0, k)
    rows.append(
        [
            "synthetic: 30 real annotators, accuracy 0.35–0.95, 5 per item",
            *run(ratings_from_matrix(m), tr),
        ]
    )
    return "### Aggregation vs majority vote (accuracy against the stronger truth)\n\n" + _table(
        ["data", "majority vote", "plain Dawid–Skene", "ftprep (guarded DS)"], rows
    )


def _pattern_oracle(keys: list[tuple[int, ...]], wrong: np.ndarray, budget: float) -> float:
    """Catch rate of the best rule that sees only the vote counts (which label got how many votes,
    per subset): patterns ranked by their *true* share of wrong majorities (uses the truth, so it
    is an upper bound, not a method), filled up to ``budget`` (the last pattern fractionally)."""
    stats: dict[tuple[int, ...], list[int]] = {}
    for k, w in zip(keys, wrong, strict=True):
        st = stats.setdefault(k, [0, 0])
        st[0] += 1
        st[1] += int(w)
    order = sorted(stats.values(), key=lambda v: -v[1] / v[0])
    room = budget * len(keys)
    caught = 0.0
    for n, w in order:
        take = min(n, room)
        caught += w * take / n
        room -= take
        if room <= 0:
            break
    return caught / max(int(wrong.sum()), 1)


def bench_escalation(repeats: int = 5) -> str:
    from ftprep.agreement import ratings_from_matrix
    from ftprep.labels.aggregate import aggregate

    cnts, truth, subset, _ = _chaos_items()
    rng = np.random.default_rng(0)
    thresholds = (0.6, 0.7, 0.75, 0.8, 0.85, 0.9)
    acc: dict[str, list[tuple[float, float]]] = {"≤ 3/5 majority": []}
    for th in thresholds:
        acc[f"ftprep, escalate_below {th}"] = []
    acc["ftprep, at the ≤ 30% budget"] = []
    acc["bound: best possible rule on the 5 vote counts alone, 30% budget"] = []
    acc["ftprep, at the ≤ 3/5 rule's budget"] = []
    acc["bound: best possible rule on the 5 vote counts alone, ≤ 3/5 rule's budget"] = []
    for _rep in range(repeats):
        wrong = np.zeros(len(truth), bool)
        keys: list[tuple[int, ...]] = [()] * len(truth)
        conf = np.zeros(len(truth))
        top = np.zeros(len(truth))
        for s in (0, 1, 2):
            idx = np.flatnonzero(subset == s)
            votes = _resample(cnts[idx], rng)
            r = ratings_from_matrix(votes.T.astype(float))
            c = aggregate(r, method="auto")
            lab = r.domain[c.label].astype(int)
            wrong[idx] = lab != truth[idx]
            conf[idx] = (
                c.stability
                if c.stability is not None
                else c.posterior[np.arange(len(idx)), c.label]
            )
            top[idx] = c.counts.max(axis=1)
            for j, u in enumerate(idx):
                keys[u] = (s, *np.bincount(votes[j], minlength=5).tolist())
        n_wrong = max(int(wrong.sum()), 1)

        def point(esc: np.ndarray) -> tuple[float, float]:
            return float(esc.mean()), float((esc & wrong).sum() / n_wrong)  # noqa: B023

        acc["≤ 3/5 majority"].append(point(top <= 3))
        for th in thresholds:
            acc[f"ftprep, escalate_below {th}"].append(point(conf < th))
        order = np.argsort(conf, kind="stable")
        esc = np.zeros(len(conf), bool)
        esc[order[: int(0.30 * len(conf))]] = True
        acc["ftprep, at the ≤ 30% budget"].append(point(esc))
        esc = np.zeros(len(conf), bool)
        esc[order[: int((top <= 3).sum())]] = True
        acc["ftprep, at the ≤ 3/5 rule's budget"].append(point(esc))
        acc["bound: best possible rule on the 5 vote counts alone, ≤ 3/5 rule's budget"].append(
            (float((top <= 3).mean()), _pattern_oracle(keys, wrong, float((top <= 3).mean())))
        )
        acc["bound: best possible rule on the 5 vote counts alone, 30% budget"].append(
            (0.30, _pattern_oracle(keys, wrong, 0.30))
        )
    rows = [
        [k, float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v]))]
        for k, v in acc.items()
    ]
    return (
        f"### Escalation on ChaosNLI (5 votes resampled with replacement from each item's 100, "
        f"{len(truth)} items, SNLI+MNLI+αNLI, mean of {repeats} draws)\n\n"
        + _table(["rule", "share escalated", "wrong majorities caught"], rows)
    )


def _budget_mask(score: np.ndarray, budget: float) -> np.ndarray:
    """Examples escalated by ftprep's rule with ``escalate_budget: budget`` and no threshold
    (the lowest ``score`` first)."""
    from ftprep.labels.escalation import EscalationParams, decide

    params = EscalationParams(escalate_below=float("inf"), escalate_budget=budget)
    esc = np.zeros(len(score), bool)
    esc[[v.unit for v in decide(score, np.full(len(score), 5), params=params)]] = True
    return esc


def _budget_point(score: np.ndarray, wrong: np.ndarray, budget: float) -> tuple[float, float]:
    """(share escalated, share of ``wrong`` caught) with ``escalate_budget: budget``."""
    esc = _budget_mask(score, budget)
    return float(esc.mean()), float((esc & wrong).sum() / max(int(wrong.sum()), 1))


# ----------------------------------------------------------------- escalation: a text prior
def _nli_features(subset: np.ndarray, spec: str) -> dict[int, np.ndarray]:
    """Per ChaosNLI subset: embeddings of premise (αNLI: both observations) and hypothesis (αNLI:
    both), their product and |difference|, and pair cues (word overlap, length, negation),
    standardised; the embeddings reduced to 64 principal components."""
    from ftprep.signals.embeddings import get_embedder

    neg = {"not", "no", "never", "nobody", "nothing", "none", "n't", "cannot", "isn't", "don't"}
    prem, hyps = [], []
    for name in ("chaosNLI_snli.jsonl", "chaosNLI_mnli_m.jsonl", "chaosNLI_alphanli.jsonl"):
        with open(ANN / "chaosnli" / name, encoding="utf-8") as f:
            for line in f:
                e = json.loads(line)["example"]
                if "premise" in e:
                    prem.append(e["premise"])
                    hyps.append([e["hypothesis"]])
                else:
                    prem.append(e["obs1"] + " " + e["obs2"])
                    hyps.append([e["hyp1"], e["hyp2"]])
    emb = get_embedder(spec)

    def words(t: str) -> set[str]:
        return {w.strip(".,!?;:'\"").lower() for w in t.split()}

    out = {}
    for s in np.unique(subset).tolist():
        idx = np.flatnonzero(subset == s)
        p = emb.encode([prem[i] for i in idx])
        parts, cues = [p], []
        for j in range(len(hyps[idx[0]])):
            h = emb.encode([hyps[i][j] for i in idx])
            parts += [h, p * h, np.abs(p - h)]
            for row, i in enumerate(idx):
                wp, wh = words(prem[i]), words(hyps[i][j])
                if j == 0:
                    cues.append([])
                cues[row] += [
                    len(wp & wh) / max(len(wh), 1),
                    len(wh),
                    len(wp),
                    float(bool(wh & neg)),
                    float(bool(wp & neg)),
                ]
        z = np.hstack(parts)
        z = z - z.mean(axis=0)
        u, sv, _ = np.linalg.svd(z, full_matrices=False)
        x = np.hstack([u[:, :64] * sv[:64], np.array(cues)])
        out[int(s)] = (x - x.mean(axis=0)) / (x.std(axis=0) + 1e-9)
    return out


def bench_escalation_text(repeats: int = 3, spec: str = "static") -> str:
    """Does a text prior on the item's vote distribution (out-of-fold Dirichlet-multinomial
    regression from premise/hypothesis features) add to the 5 votes on ChaosNLI?"""
    from ftprep.agreement import ratings_from_matrix
    from ftprep.labels.aggregate import aggregate, item_prior_stability

    cnts, truth, subset, _ = _chaos_items()
    feats = _nli_features(subset, spec)
    rng = np.random.default_rng(0)
    lams = (300.0, 3000.0)
    acc: dict[str, list[tuple[float, float]]] = {"ftprep crowd stability (votes only)": []}
    acc["Dirichlet prior without text (intercept only, out of fold)"] = []
    for lam in lams:
        acc[f"Dirichlet prior from the text ({spec} embeddings + pair cues), L2 {lam:g}"] = []
    acc[f"Dirichlet prior from the text ({spec} embeddings only), L2 300"] = []
    for _rep in range(repeats):
        wrong = np.zeros(len(truth), bool)
        scores = {k: np.zeros(len(truth)) for k in acc}
        for s in (0, 1, 2):
            idx = np.flatnonzero(subset == s)
            votes = _resample(cnts[idx], rng)
            r = ratings_from_matrix(votes.T.astype(float))
            c = aggregate(r, method="auto")
            cols = r.domain.astype(int)
            wrong[idx] = cols[c.label] != truth[idx]
            assert c.stability is not None
            keys = list(acc)
            scores[keys[0]][idx] = c.stability
            x = feats[s]
            scores[keys[1]][idx] = item_prior_stability(x[:, :0], c.counts, c.label)
            for lam, key in zip(lams, keys[2:4], strict=True):
                scores[key][idx] = item_prior_stability(x, c.counts, c.label, l2=lam)
            scores[keys[-1]][idx] = item_prior_stability(x[:, :64], c.counts, c.label, l2=300.0)
        for k, v in scores.items():
            acc[k].append(_budget_point(v, wrong, 0.30))
    rows = [
        [k, float(np.mean([a for a, _ in v])), float(np.mean([b for _, b in v]))]
        for k, v in acc.items()
    ]
    return (
        f"### Escalation on ChaosNLI with a text prior (5 resampled votes, mean of {repeats} "
        f"draws, `escalate_budget: 0.3`)\n\n"
        + _table(
            ["item agreement used for ranking", "share escalated", "wrong majorities caught"], rows
        )
    )


# ------------------------------------------- escalation with real annotator ids (simulated)
def bench_escalation_ids(repeats: int = 3) -> str:
    """banking77 intents as the truth (10,003 items, 77 classes), 40 simulated annotators with
    real ids (accuracy 0.75–0.98, four spammers answering at random), item difficulty
    Beta(1, 3) lowering every annotator's accuracy on hard items, errors going to one of the two
    semantically closest intents (static-embedding centroids) 80% of the time. 5 annotators per
    item. Rules at a 30% budget; the ≤ 3/5 rule at its own share."""
    from ftprep.agreement import ratings_from_matrix
    from ftprep.labels.aggregate import aggregate
    from ftprep.signals.embeddings import get_embedder

    texts, cats = [], []
    with open(DATA / "intents" / "banking77" / "train.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            texts.append(row["text"])
            cats.append(row["category"])
    names = sorted(set(cats))
    y = np.array([names.index(c) for c in cats])
    k = len(names)
    e = get_embedder("static").encode(texts)
    cent = np.stack([e[y == j].mean(axis=0) for j in range(k)])
    cent /= np.linalg.norm(cent, axis=1, keepdims=True)
    sim = cent @ cent.T
    np.fill_diagonal(sim, -np.inf)
    near = np.argsort(-sim, axis=1)[:, :2]
    n, n_ann = len(y), 40
    rows_acc: dict[str, list[tuple[float, float, float]]] = {}
    for rep in range(repeats):
        rng = np.random.default_rng(100 + rep)
        acc = rng.uniform(0.75, 0.98, n_ann)
        acc[:4] = 1.0 / k  # spammers
        diff = rng.beta(1.0, 3.0, n)
        m = np.full((n_ann, n), np.nan)
        for u in range(n):
            who = rng.choice(n_ann, 5, replace=False)
            p_ok = acc[who] * (1.0 - 0.4 * diff[u])
            ok = rng.random(5) < p_ok
            wrong_lab = np.where(
                rng.random(5) < 0.8, near[y[u], rng.integers(0, 2, 5)], rng.integers(0, k, 5)
            )
            m[who, u] = np.where(ok, y[u], wrong_lab)
        r = ratings_from_matrix(m)
        tr = np.searchsorted(r.domain.astype(int), y)  # truth as codes of r.domain
        c = aggregate(r, method="auto")
        # the same votes without identities: one column per position, as a crowd export gives
        pos = np.stack([rng.permutation(col[~np.isnan(col)]) for col in m.T], axis=1)
        r_anon = ratings_from_matrix(pos)
        c_anon = aggregate(r_anon, method="auto")
        assert c.stability is not None and c_anon.stability is not None
        wrong_maj = c.majority != tr
        top = c.counts.max(axis=1)
        cases = {
            "escalate every ≤ 3/5 majority (baseline)": (top <= 3, c.majority),
            "ftprep without ids (pooled model), budget 0.3": (None, c_anon.label, c_anon.stability),
            "ftprep with real ids (guarded Dawid–Skene), budget 0.3": (None, c.label, c.stability),
        }
        for name, case in cases.items():
            esc = case[0] if case[0] is not None else _budget_mask(case[2], 0.30)
            wrong_final = case[1] != tr
            rows_acc.setdefault(name, []).append(
                (
                    float(esc.mean()),
                    float((esc & wrong_maj).sum() / max(int(wrong_maj.sum()), 1)),
                    float((esc & wrong_final).sum() / max(int(wrong_final.sum()), 1)),
                )
            )
        rows_acc.setdefault("accuracy of the final label (majority / no ids / ids)", []).append(
            (
                float((c.majority == tr).mean()),
                float((c_anon.label == tr).mean()),
                float((c.label == tr).mean()),
            )
        )
    rows = [[k2, *np.mean(v, axis=0).tolist()] for k2, v in rows_acc.items()]
    return (
        f"### Escalation with real annotator ids (banking77 truth, simulated annotators, mean of "
        f"{repeats} draws)\n\n"
        + _table(
            ["rule", "share escalated", "wrong majorities caught", "wrong final labels caught"],
            rows,
        )
    )


# ============================================================================ label errors
def _aupr(y: np.ndarray, score: np.ndarray) -> float:
    from sklearn.metrics import average_precision_score

    return float(average_precision_score(y, score))


def _ranking_row(name: str, rk: object, is_err: np.ndarray, seconds: float) -> list[object]:
    """One table row for a label-error ranking: AUPRC, precision@100, flagged count, precision
    and recall of the flagged set, seconds."""
    score, flagged = rk.score, rk.flagged  # type: ignore[attr-defined]
    o = np.argsort(-score, kind="stable")
    return [
        name,
        _aupr(is_err, score),
        float(is_err[o[:100]].mean()),
        int(flagged.sum()),
        float(is_err[flagged].mean()) if flagged.any() else 0.0,
        float(is_err[flagged].sum() / is_err.sum()),
        f"{seconds:.0f}",
    ]


def _ours_vs_cleanlab(
    name: str, labels: np.ndarray, probs: np.ndarray, is_err: np.ndarray, seconds: float
) -> list[list[object]]:
    from ftprep.labels.errors import rank_label_errors

    rows: list[list[object]] = []
    t0 = time.perf_counter()
    rk = rank_label_errors(labels, probs)
    t_ours = time.perf_counter() - t0
    rows.append(_ranking_row(f"ftprep: {name}", rk, is_err, seconds + t_ours))
    try:
        from cleanlab.filter import find_label_issues
        from cleanlab.rank import get_label_quality_scores
    except ImportError:
        rows.append(["cleanlab: not installed (pip install cleanlab)", "", "", "", "", "", ""])
        return rows
    for method in ("self_confidence", "normalized_margin"):
        t0 = time.perf_counter()
        q = get_label_quality_scores(labels, probs, method=method)
        issues = find_label_issues(labels, probs, filter_by="prune_by_noise_rate")
        t_cl = time.perf_counter() - t0
        o = np.argsort(q, kind="stable")
        rows.append(
            [
                f"cleanlab ({method}) on the same probabilities",
                _aupr(is_err, -q),
                float(is_err[o[:100]].mean()),
                int(issues.sum()),
                float(is_err[issues].mean()) if issues.any() else 0.0,
                float(is_err[issues].sum() / is_err.sum()),
                f"{seconds + t_cl:.0f}",
            ]
        )
    return rows


ERR_COLS = [
    "ranking",
    "AUPRC",
    "precision@100",
    "flagged",
    "precision of flagged",
    "recall of flagged",
    "seconds",
]


def bench_imdb(full: bool = False) -> str:
    from ftprep.labels.errors import (
        FeatureSpec,
        oof_probabilities,
        rank_label_errors,
        text_features,
    )
    from ftprep.signals.embeddings import get_embedder

    with gzip.open(
        ANN / "imdb_test_label_errors" / "imdb_test_25k_with_cleanlab_mturk.jsonl.gz",
        "rt",
        encoding="utf-8",
    ) as f:
        recs = [json.loads(line) for line in f]
    texts = [r["text"] for r in recs]
    y = np.array([r["original_label"] for r in recs])
    is_err = np.array([("mturk_votes" in r) and r["mturk_votes"]["given"] < 3 for r in recs])
    rows: list[list[object]] = []
    # baseline: TF-IDF word n-grams + logistic regression (default C) + confident learning
    t0 = time.perf_counter()
    xw = text_features(texts, FeatureSpec(max_char_features=0))
    t_w = time.perf_counter() - t0
    t0 = time.perf_counter()
    pb = oof_probabilities(xw, y, c=1.0)
    rb = rank_label_errors(y, pb)
    t_b = t_w + time.perf_counter() - t0
    rows.append(_ranking_row("baseline: TF-IDF words, LR C=1, confident learning", rb, is_err, t_b))
    # ftprep on the same word features with a weaker regularisation (C=16)
    t0 = time.perf_counter()
    pw = oof_probabilities(xw, y, c=16.0)
    t_pw = t_w + time.perf_counter() - t0
    acc_w = float((pw.argmax(axis=1) == y).mean())
    rows += _ours_vs_cleanlab(
        f"defaults (long texts: words only), LR C=16 (oof acc {acc_w:.3f})", y, pw, is_err, t_pw
    )
    if not full:
        return (
            f"### IMDB test: {int(is_err.sum())} human-confirmed label errors in {len(y)} reviews\n\n"
            + _table(ERR_COLS, rows)
        )
    # ftprep default features: words + chars + static embeddings
    t0 = time.perf_counter()
    emb = get_embedder("static").encode(texts)
    xc = text_features(texts, FeatureSpec(max_word_features=0, short_text_chars=10**9), emb)
    import scipy.sparse as sp

    x = sp.hstack([xw, xc], format="csr")
    t_f = t_w + time.perf_counter() - t0
    t0 = time.perf_counter()
    p = oof_probabilities(x, y, c=8.0)
    t_p = t_f + time.perf_counter() - t0
    acc = float((p.argmax(axis=1) == y).mean())
    rows += _ours_vs_cleanlab(
        f"words+chars+embeddings, LR C=8 (oof acc {acc:.3f})", y, p, is_err, t_p
    )
    return (
        f"### IMDB test: {int(is_err.sum())} human-confirmed label errors in {len(y)} reviews\n\n"
        + _table(ERR_COLS, rows)
    )


def bench_banking77(noise: float = 0.08) -> str:
    from ftprep.labels.errors import (
        DEFAULT_C,
        FeatureSpec,
        oof_probabilities,
        rank_label_errors,
        text_features,
    )
    from ftprep.signals.embeddings import get_embedder

    with open(DATA / "intents" / "banking77" / "train.csv", encoding="utf-8") as f:
        recs = list(csv.DictReader(f))
    texts = [r["text"] for r in recs]
    classes = sorted({r["category"] for r in recs})
    y = np.array([classes.index(r["category"]) for r in recs])
    k = len(classes)
    t0 = time.perf_counter()
    emb = get_embedder("static").encode(texts)
    t_emb = time.perf_counter() - t0
    x_emb = text_features(texts, FeatureSpec(max_word_features=0, max_char_features=0), emb)
    # most confusable class: the most frequent wrong prediction of a clean out-of-fold model
    p_clean = oof_probabilities(x_emb, y, c=8.0)
    cm = np.zeros((k, k))
    np.add.at(cm, (y, p_clean.argmax(axis=1)), 1)
    np.fill_diagonal(cm, -1)
    target = cm.argmax(axis=1)
    rng = np.random.default_rng(0)
    flip = rng.random(len(y)) < noise
    yn = y.copy()
    yn[flip] = target[y[flip]]
    rows: list[list[object]] = []
    t0 = time.perf_counter()
    pb = oof_probabilities(x_emb, yn, c=8.0)
    rb = rank_label_errors(yn, pb)
    t_b = t_emb + time.perf_counter() - t0
    rows.append(_ranking_row("baseline: margin ranking, LR over static embeddings", rb, flip, t_b))
    t0 = time.perf_counter()
    x = text_features(texts, FeatureSpec(), emb)
    p = 0.5 * oof_probabilities(x, yn, c=DEFAULT_C) + 0.5 * oof_probabilities(
        x_emb, yn, c=8.0
    )  # as find_label_errors
    t_p = t_emb + time.perf_counter() - t0
    acc = float((p.argmax(axis=1) == yn).mean())
    rows += _ours_vs_cleanlab(
        f"defaults: words+chars+embeddings LR C={DEFAULT_C:g}, averaged with the embedding-only LR (oof acc {acc:.3f})",
        yn,
        p,
        flip,
        t_p,
    )
    return (
        f"### banking77 train ({len(y)} texts, {k} intents): {int(flip.sum())} labels ({noise:.0%}) "
        f"flipped to the most confusable intent\n\n" + _table(ERR_COLS, rows)
    )


PARTS = {
    "agreement": bench_agreement,
    "aggregation": bench_aggregation,
    "escalation": bench_escalation,
    "escalation-text": bench_escalation_text,
    "escalation-text-minilm": lambda: bench_escalation_text(spec="minilm"),
    "escalation-ids": bench_escalation_ids,
    "banking77": bench_banking77,
    "imdb": bench_imdb,
    "imdb-full": lambda: bench_imdb(full=True),
}


def main(argv: list[str]) -> None:
    if not DATA.exists():
        print(f"shared data not found at {DATA}; nothing to benchmark")
        return
    which = argv[1:] or ["all"]
    slow = ("imdb-full", "escalation-text-minilm")
    parts = [p for p in PARTS if p not in slow] if "all" in which else which
    print(f"Machine: {_machine()}; commit {_commit()}\n")
    for name in parts:
        t0 = time.perf_counter()
        print(PARTS[name]())
        print(f"\n({name}: {time.perf_counter() - t0:.0f} s)\n", flush=True)


def _commit() -> str:
    try:
        return subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            cwd=Path(__file__).parent,
            check=False,
        ).stdout.strip()
    except OSError:
        return "?"


if __name__ == "__main__":
    main(sys.argv)
