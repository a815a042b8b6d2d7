"""Benchmark: production distribution match (issue 7) on the intent datasets in ../shared/data.

    PYTHONPATH=src python bench/bench_distribution.py [--minilm] [--scale 100000] [--quick]

1. Uncovered regions: training from 7 of 10 CLINC150 domains, production = test split of all
   domains + out-of-scope queries (uncovered = missing domains + out-of-scope). ftprep's coverage
   score vs the plain nearest-neighbour-distance threshold, same embeddings, same run. The same on
   hwu64 (scenarios as domains) and banking77 (intents grouped at random into 10 "domains").
2. Under-representation: 3 CLINC domains downsampled to 10% in training; per-domain
   production/training ratio from the importance weights vs truth, against cluster count ratios
   and a logistic-regression density ratio.
3. Surface shift: bracketed alternatives and placeholders planted into CLINC production inputs;
   classifier two-sample test with words + surface features vs embeddings only.
4. Scale: embedding + coverage for N training and N production inputs.
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import os
import platform
import subprocess
import time
from pathlib import Path

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import roc_auc_score
from sklearn.model_selection import cross_val_predict

from ftprep.distribution.coverage import CoverageParams, coverage_scores
from ftprep.distribution.knn import spherical_kmeans
from ftprep.distribution.regions import build_regions
from ftprep.distribution.shift import ShiftParams, classifier_test
from ftprep.distribution.text import token_sets
from ftprep.distribution.weights import density_ratio_weights
from ftprep.signals.embeddings import get_embedder

DATA = Path(__file__).resolve().parents[2] / "shared" / "data" / "intents"


def clinc() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    d = json.loads((DATA / "clinc150/data_full.json").read_text())
    dm = json.loads((DATA / "clinc150/domains.json").read_text())
    i2d = {i: k for k, v in dm.items() for i in v}
    tr = [(t, i2d[lab]) for t, lab in d["train"]]
    te = [(t, i2d[lab]) for t, lab in d["test"]] + [(t, "oos") for t, _ in d["oos_test"]]
    return tr, te


def hwu() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    def rd(s: str) -> list[tuple[str, str]]:
        texts = (DATA / f"hwu64/{s}.seq.in").read_text().splitlines()
        labels = [lab.split("_")[0] for lab in (DATA / f"hwu64/{s}.label").read_text().splitlines()]
        return list(zip(texts, labels, strict=True))

    return rd("train"), rd("test") + rd("valid")


def banking() -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    def rd(s: str) -> list[tuple[str, str]]:
        with open(DATA / f"banking77/{s}.csv", encoding="utf-8") as fh:
            return [(r["text"], r["category"]) for r in csv.DictReader(fh)]

    tr, te = rd("train"), rd("test")
    cats = sorted({c for _, c in tr})
    perm = np.random.default_rng(0).permutation(len(cats))
    group = {cats[j]: f"group{i % 10}" for i, j in enumerate(perm)}
    return [(t, group[c]) for t, c in tr], [(t, group[c]) for t, c in te]


class Embeds:
    def __init__(self, model: str) -> None:
        self.model = get_embedder(model)
        self.cache: dict[str, np.ndarray] = {}

    def __call__(self, texts: list[str]) -> np.ndarray:
        todo = sorted({t for t in texts if t not in self.cache})
        if todo:
            for t, v in zip(todo, self.model.encode(todo), strict=True):
                self.cache[t] = v
        return np.stack([self.cache[t] for t in texts])


def recall_at(scores: np.ndarray, y: np.ndarray, fpr: float) -> float:
    thr = np.quantile(scores[~y], 1 - fpr)
    return float((scores[y] > thr).mean())


def uncovered(name: str, data: tuple, missing: list[str], emb: Embeds) -> dict:
    tr, te = data
    train = [t for t, d in tr if d not in missing]
    prod = [t for t, _ in te]
    dom = np.array([d for _, d in te])
    y = np.isin(dom, [*missing, "oos"])
    xt, xp = emb(train), emb(prod)
    t0 = time.perf_counter()
    cov = coverage_scores(xt, xp, train, prod, CoverageParams())
    secs = time.perf_counter() - t0
    regions, _ = build_regions(
        xp, xt, cov.flagged, np.ones(len(xt)), token_sets(prod), token_sets(train)
    )
    found = set()
    for r in regions:
        if r.status == "uncovered":
            vals, counts = np.unique(dom[r.prod_items], return_counts=True)
            found.add(str(vals[counts.argmax()]))
    return {
        "case": f"{name} without {'+'.join(missing)}",
        "auc": roc_auc_score(y, cov.score),
        "recall@10": recall_at(cov.score, y, 0.10),
        "flag_recall": float(cov.flagged[y].mean()),
        "flag_fpr": float(cov.flagged[~y].mean()),
        "base_auc": roc_auc_score(y, cov.nn_distance),
        "base_recall@8": recall_at(cov.nn_distance, y, 0.08),
        "base_recall@10": recall_at(cov.nn_distance, y, 0.10),
        "missing_found": f"{len(set(missing) & found)}/{len(missing)}",
        "seconds": secs,
    }


def ratios(emb: Embeds, down: list[str], seed: int = 0) -> dict:
    tr, te = clinc()
    rng = np.random.default_rng(seed)
    t = [(x, d) for x, d in tr if d not in down or rng.random() < 0.1]
    p = [(x, d) for x, d in te if d != "oos"]
    xt, xp = emb([x for x, _ in t]), emb([x for x, _ in p])
    dt, dp = np.array([d for _, d in t]), np.array([d for _, d in p])
    doms = sorted(set(dt))
    truth = {d: (dp == d).mean() / (dt == d).mean() for d in doms}
    t0 = time.perf_counter()
    w = density_ratio_weights(xt, xp)
    secs = time.perf_counter() - t0
    ours = {d: float(w[dt == d].mean()) for d in doms}
    # baseline 1: k-means cluster count ratios (production share / training share of the cluster)
    cent = spherical_kmeans(np.concatenate([xt, xp]), 40, iters=15)
    ct, cp = np.argmax(xt @ cent.T, 1), np.argmax(xp @ cent.T, 1)
    share_t = np.bincount(ct, minlength=40) / len(xt)
    share_p = np.bincount(cp, minlength=40) / len(xp)
    wc = share_p[ct] / np.maximum(share_t[ct], 1e-12)
    wc = wc / wc.mean()
    clus = {d: float(wc[dt == d].mean()) for d in doms}
    # baseline 2: logistic regression probabilistic classifier, out of fold
    x = np.concatenate([xt, xp])
    yy = np.concatenate([np.zeros(len(xt)), np.ones(len(xp))])
    prob = cross_val_predict(
        LogisticRegression(C=1.0, max_iter=500), x, yy, cv=5, method="predict_proba"
    )[: len(xt), 1]
    wl = prob / (1 - prob) * len(xt) / len(xp)
    wl = wl / wl.mean()
    lr = {d: float(wl[dt == d].mean()) for d in doms}

    def worst(est: dict) -> float:
        return max(max(est[d] / truth[d], truth[d] / est[d]) for d in doms)

    return {
        "down": down,
        "truth": {d: truth[d] for d in down},
        "ours": {d: ours[d] for d in down},
        "cluster": {d: clus[d] for d in down},
        "lr": {d: lr[d] for d in down},
        "worst_ours": worst(ours),
        "worst_cluster": worst(clus),
        "worst_lr": worst(lr),
        "ess_fraction": float(w.sum() ** 2 / (w * w).sum() / len(w)),
        "seconds": secs,
    }


def plant(texts: list[str], rng: np.random.Generator) -> list[str]:
    alts = ["[asap/today]", "[card/account]", "(yes | no)", "[morning/evening]"]
    slots = ["{customer_name}", "{order_id}", "<DATE>", "[AMOUNT]"]
    out = []
    for t in texts:
        r = rng.random()
        words = t.split()
        pos = int(rng.integers(0, len(words) + 1))
        if r < 0.3:
            words.insert(pos, str(rng.choice(alts)))
        elif r < 0.6:
            words.insert(pos, str(rng.choice(slots)))
        out.append(" ".join(words))
    return out


def surface(emb: Embeds) -> list[dict]:
    tr, te = clinc()
    rng = np.random.default_rng(0)
    train = [t for t, _ in tr]
    prod = [t for t, d in te if d != "oos"]
    planted = plant(prod, rng)
    xt = emb(train)
    rows = []
    for name, p in (
        ("CLINC test (no planted change)", prod),
        ("CLINC test + brackets/placeholders", planted),
    ):
        xp = emb(p)
        t0 = time.perf_counter()
        r = classifier_test(train, xt, p, xp, ShiftParams())
        secs = time.perf_counter() - t0
        # baseline: the same test on embeddings only
        rng2 = np.random.default_rng(0)
        ti = rng2.choice(len(train), 1500, replace=False)
        pi = rng2.choice(len(p), 1500, replace=False)
        x = np.concatenate([xt[ti], xp[pi]])
        yy = np.concatenate([np.zeros(1500), np.ones(1500)])
        s = cross_val_predict(
            LogisticRegression(C=1.0, max_iter=500), x, yy, cv=3, method="decision_function"
        )
        rows.append(
            {
                "case": name,
                "auc": r.auc,
                "null_auc": r.null_auc,
                "p": r.p_value,
                "explains": [f["feature"] for f in r.features if f["explains"]],
                "words": [w["word"] for w in r.words[:5]],
                "emb_only_auc": roc_auc_score(yy, s),
                "seconds": secs,
            }
        )
    return rows


def scale(n: int, model: str) -> dict:
    tr, te = clinc()
    vocab = [t for t, _ in tr + te]
    rng = np.random.default_rng(0)

    def synth(m: int) -> list[str]:  # distinct inputs: two CLINC queries spliced together
        a, b = rng.integers(0, len(vocab), m), rng.integers(0, len(vocab), m)
        return [
            f"{vocab[i]} and also {vocab[j]} #{k}"
            for k, (i, j) in enumerate(zip(a, b, strict=True))
        ]

    train, prod = synth(n), synth(n)
    emb = get_embedder(model)
    t0 = time.perf_counter()
    xt, xp = emb.encode(train), emb.encode(prod)
    t1 = time.perf_counter()
    cov = coverage_scores(xt, xp, train, prod)
    w = density_ratio_weights(xt, xp)
    build_regions(xp, xt, cov.flagged, w, token_sets(prod), token_sets(train))
    t2 = time.perf_counter()
    return {"n": n, "embed_s": t1 - t0, "coverage_s": t2 - t1, "total_s": t2 - t0}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument(
        "--minilm", action="store_true", help="also run the uncovered-region cases over MiniLM"
    )
    ap.add_argument("--scale", type=int, default=0, help="run the scale case with N + N inputs")
    ap.add_argument("--quick", action="store_true", help="CLINC cases only")
    a = ap.parse_args()
    if not DATA.exists():
        raise SystemExit(f"shared data not found at {DATA}")
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    load = os.getloadavg()[0]
    print(
        f"machine: nproc={os.cpu_count()}, CPU={cpu}, load average {load:.1f}, "
        f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}, git {subprocess.run(['git', 'rev-parse', '--short', 'HEAD'], capture_output=True, text=True).stdout.strip()}"
    )
    models = ["static"] + (["minilm"] if a.minilm else [])
    cases = [
        ("CLINC150", clinc, ["credit_cards", "home", "small_talk"]),
        ("CLINC150", clinc, ["banking", "travel", "meta"]),
    ]
    if not a.quick:
        cases += [
            ("hwu64", hwu, ["alarm", "cooking", "transport"]),
            ("banking77", banking, ["group0", "group1", "group2"]),
        ]
    print("\n## uncovered regions (uncovered = missing domains + out-of-scope)")
    print(
        "| embeddings | case | ftprep AUROC | recall@10% FPR | flags: recall / false-alarm | NN-distance AUROC | NN recall@8% / @10% | missing domains found | s |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for model in models:
        emb = Embeds(model)
        for name, loader, missing in cases:
            r = uncovered(name, loader(), missing, emb)
            print(
                f"| {model} | {r['case']} | {r['auc']:.3f} | {r['recall@10']:.3f} | {r['flag_recall']:.3f} / "
                f"{r['flag_fpr']:.3f} | {r['base_auc']:.3f} | {r['base_recall@8']:.3f} / {r['base_recall@10']:.3f} | "
                f"{r['missing_found']} | {r['seconds']:.0f} |",
                flush=True,
            )
    print("\n## production/training ratio of 3 CLINC domains downsampled to 10%")
    print("| embeddings | domain | truth | ftprep weights | cluster ratio | logistic regression |")
    print("|---|---|---|---|---|---|")
    for model in models:
        emb = Embeds(model)
        r = ratios(emb, ["banking", "travel", "meta"])
        for d in r["down"]:
            print(
                f"| {model} | {d} | {r['truth'][d]:.2f} | {r['ours'][d]:.2f} | {r['cluster'][d]:.2f} | {r['lr'][d]:.2f} |"
            )
        print(
            f"| {model} | worst factor over all 10 domains | 1 | {r['worst_ours']:.2f} | {r['worst_cluster']:.2f} | "
            f"{r['worst_lr']:.2f} |  (ESS {r['ess_fraction']:.0%}, {r['seconds']:.0f} s)",
            flush=True,
        )
    print("\n## surface-form shift (static embeddings)")
    print(
        "| production | ftprep AUC (train halves) | p | explaining features | top words | embeddings-only AUC | s |"
    )
    print("|---|---|---|---|---|---|---|")
    for r in surface(Embeds("static")):
        print(
            f"| {r['case']} | {r['auc']:.3f} ({r['null_auc']:.3f}) | {r['p']:.3g} | {', '.join(r['explains']) or '-'} | "
            f"{', '.join(r['words'])} | {r['emb_only_auc']:.3f} | {r['seconds']:.0f} |",
            flush=True,
        )
    if a.scale:
        r = scale(a.scale, "static")
        print(
            f"\n## scale: {r['n']:,} + {r['n']:,} inputs, static embeddings: embed {r['embed_s']:.1f} s, "
            f"coverage + weights + regions {r['coverage_s']:.1f} s, total {r['total_s']:.1f} s "
            f"({math.ceil(r['total_s'] / 60)} min)"
        )


if __name__ == "__main__":
    main()
