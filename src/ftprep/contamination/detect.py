"""Leakage between a training set and one fixed reference set (a benchmark, validation/test,
a production holdout), and duplicate clusters inside the training set.

Stages, cheapest first; each training record keeps its strongest match per reference item:

=============  ===================================================================  ==========
method         rule                                                                 category
=============  ===================================================================  ==========
``exact``      normalised text equal (any compared field vs the item's input or     exact
               input+answer)
``near``       >= ``near_containment`` of the item's word ``shingle``-grams occur   near
               in the record (containment: robust to the record being longer)
``ngram13``    a word 13-gram (``ngram_sizes``) of the item's input+answer occurs   near
               in the record's full text, spanning the prompt/answer boundary
``paraphrase`` embedding candidate + verifier score >= the calibrated threshold     paraphrase
=============  ===================================================================  ==========
"""

from __future__ import annotations

import functools
import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ftprep.contamination.index import ShingleIndex
from ftprep.contamination.minhash import (
    MinHasher,
    band_keys,
    choose_bands,
    estimated_jaccard,
    self_pairs,
)
from ftprep.contamination.semantic import PairScorer, VerifierWeights, calibrate, passages, topk
from ftprep.contamination.text import Tokens, ngram_hashes, text_keys, tokenize

Embed = Callable[[list[str]], np.ndarray]
CATEGORY = {"exact": "exact", "near": "near", "paraphrase": "paraphrase"}
RANK = {"exact": 0, "near": 1, "paraphrase": 2}


@dataclass(slots=True)
class LeakParams:
    """Parameters of the leakage search (``checks: <check>: {...}`` in ftprep.yaml)."""

    fields: tuple[str, ...] = ("prompt", "full")
    shingle: int = 2
    near_containment: float = 0.5
    near_min_shingles: int = 4
    near_max_df: int = 20
    near_min_chars: int = 3
    near_short: float = 10.0
    near_sample: int = 16
    near_candidate: float = 0.25
    ngram_sizes: tuple[int, ...] = (13,)
    ngram_max_df: int = 10
    ngram_min_coverage: float = 0.1
    semantic: bool = True
    candidate_k: int = 3
    candidate_cos: float = 0.6
    lexical_candidate: float = 0.35
    lexical_max_df: int = 20
    window: int | None = None
    window_margin: float = 0.15
    verify_windows: int = 3
    passage_ratio: float = 1.3
    null_quantile: float = 0.99
    null_k: int = 5
    null_items: int = 2000
    min_null_items: int = 200
    min_score: float = 2.55
    default_score: float = 2.9
    weights: VerifierWeights = field(default_factory=VerifierWeights)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> LeakParams:
        """Parameters from ``ftprep.yaml``; an unknown key is an error (a typo would otherwise
        silently keep the default)."""
        p = cls()
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(d) - known)
        if unknown:
            raise ValueError(
                f"unknown parameter(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        for k, v in d.items():
            if k == "weights":
                p.weights = VerifierWeights(**(v or {}))
            else:
                setattr(p, k, tuple(v) if isinstance(v, list) else v)
        return p


def near_threshold(size: np.ndarray, params: LeakParams) -> np.ndarray:
    """Containment needed by an item with ``size`` informative shingles: ``near_containment``
    for long items, rising towards 1 for short ones (a short item shares half its shingles
    with unrelated text by chance far more often)::

        c + (1 - c) * near_short / (size + near_short)
    """
    c, k = params.near_containment, params.near_short
    return c + (1 - c) * k / (np.asarray(size, dtype=float) + k)


@dataclass(slots=True)
class Leak:
    train: int  # row in the training texts
    item: int  # row in the reference set
    method: str  # exact | near | ngram13 | ngram8 | paraphrase
    score: float  # containment, n-gram count, verifier score; 1.0 for exact
    detail: str = ""

    @property
    def category(self) -> str:
        return "near" if self.method.startswith("ngram") else self.method


@dataclass(slots=True)
class LeakReport:
    leaks: list[Leak]
    threshold: float
    seconds: dict[str, float]
    n_candidates: int = 0


def find_leaks(
    train: dict[str, list[str]],
    ref_input: list[str],
    ref_full: list[str],
    params: LeakParams,
    embed: Embed | None = None,
    train_emb: np.ndarray | None = None,
    ref_emb: np.ndarray | None = None,
    train_tokens: Tokens | None = None,
) -> LeakReport:
    """Leaks of the reference items (``ref_input``: user text; ``ref_full``: input + answer)
    into the training texts ``train`` (field -> texts, same rows). ``train_emb`` are the
    embeddings of ``train['prompt']`` and ``ref_emb`` of ``ref_input`` (computed with
    ``embed`` when absent)."""
    secs: dict[str, float] = {}
    n_train = len(next(iter(train.values()))) if train else 0
    n_ref = len(ref_input)
    best: dict[tuple[int, int], Leak] = {}

    def add(leak: Leak) -> None:
        key = (leak.train, leak.item)
        cur = best.get(key)
        if cur is None or RANK[leak.category] < RANK[cur.category]:
            best[key] = leak

    if n_train == 0 or n_ref == 0:
        return LeakReport([], float("nan"), secs)
    # -- exact (normalised word sequences equal) -----------------------------------------
    t0 = time.perf_counter()
    lex_field = "full" if "full" in params.fields else params.fields[0]
    rt = tokenize(ref_input)
    rft = tokenize(ref_full) if ref_full is not ref_input else rt
    tok: dict[str, Tokens] = {}
    for fld in dict.fromkeys([lex_field, *params.fields]):
        given = train_tokens if fld == lex_field else None
        tok[fld] = given if given is not None else tokenize(train[fld])
    tt = tok[lex_field]
    secs["tokenize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_k = np.concatenate([text_keys(rt), text_keys(rft)])
    ref_i = np.concatenate([np.arange(n_ref), np.arange(n_ref)])
    order = np.argsort(ref_k)
    sk, si = ref_k[order], ref_i[order]
    for fld in params.fields:
        keys = text_keys(tok[fld])
        pos = np.minimum(np.searchsorted(sk, keys), len(sk) - 1)
        for r in np.flatnonzero((keys != 0) & (sk[pos] == keys)).tolist():
            add(Leak(r, int(si[pos[r]]), "exact", 1.0, f"normalised {fld} equals the item"))
    secs["exact"] = time.perf_counter() - t0
    # -- lexical: containment and n-grams on the widest field --------------------------
    t0 = time.perf_counter()
    rh, ro = ngram_hashes(rt, params.shingle, min_chars=params.near_min_chars)
    idx = ShingleIndex(rh, ro, n_ref, max_df=params.near_max_df, sample=params.near_sample)
    th, to = ngram_hashes(tt, params.shingle, min_chars=params.near_min_chars)
    pc = idx.query(th, to, min_shared=min(2, params.near_min_shingles))
    cand = (pc.containment >= params.near_candidate) & (
        idx.full_size[pc.item] >= params.near_min_shingles
    )
    cont = idx.verify(pc.record[cand], pc.item[cand], th, to)
    ok = cont >= near_threshold(idx.full_size[pc.item[cand]], params)
    for r, j, c in zip(
        pc.record[cand][ok].tolist(), pc.item[cand][ok].tolist(), cont[ok].tolist(), strict=True
    ):
        add(Leak(r, j, "near", float(c), f"{c:.0%} of the item's word {params.shingle}-grams"))
    secs["near"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for n in params.ngram_sizes:
        rh, ro = ngram_hashes(rft, n)
        nidx = ShingleIndex(rh, ro, n_ref, max_df=params.ngram_max_df)
        th, to = ngram_hashes(tt, n)
        pcn = nidx.query(th, to)
        okn = pcn.containment >= params.ngram_min_coverage
        for r, j, s, c in zip(
            pcn.record[okn].tolist(),
            pcn.item[okn].tolist(),
            pcn.shared[okn].tolist(),
            pcn.containment[okn].tolist(),
            strict=True,
        ):
            add(
                Leak(
                    r,
                    j,
                    f"ngram{n}",
                    float(s),
                    f"{s} shared word {n}-gram(s) ({c:.0%} of the item's)",
                )
            )
    secs["ngram"] = time.perf_counter() - t0
    # -- semantic ---------------------------------------------------------------------------
    threshold = float("nan")
    n_cand = 0
    if params.semantic and embed is not None:
        t0 = time.perf_counter()
        if ref_emb is None:
            ref_emb = embed(ref_input)
        if train_emb is None:
            train_emb = embed(train["prompt"] if "prompt" in train else train[lex_field])
        secs["embed"] = time.perf_counter() - t0
        para, threshold, n_cand = _paraphrases(
            train,
            lex_field,
            tt,
            rt,
            ref_input,
            ref_emb,
            train_emb,
            embed,
            params,
            skip={(leak.train, leak.item) for leak in best.values()},
            secs=secs,
        )
        for leak in para:
            add(leak)
    return LeakReport(
        sorted(best.values(), key=lambda x: (x.train, x.item)), threshold, secs, n_cand
    )


def _paraphrases(
    train: dict[str, list[str]],
    lex_field: str,
    tt: Tokens,
    rt: Tokens,
    ref_input: list[str],
    ref_emb: np.ndarray,
    train_emb: np.ndarray,
    embed: Embed,
    params: LeakParams,
    skip: set[tuple[int, int]],
    secs: dict[str, float],
) -> tuple[list[Leak], float, int]:
    """Embedding / rare-word candidates, verified on the record's prompt or on the windows of
    its full text that best cover the item's content words."""
    t0 = time.perf_counter()
    n_ref = len(ref_input)
    scorer = PairScorer(ref_input, params.weights)
    if n_ref >= params.min_null_items:
        null = calibrate(scorer, ref_emb, params.null_k, max_items=params.null_items)
        threshold = max(params.min_score, float(np.quantile(null, params.null_quantile)))
    else:
        threshold = params.default_score
    secs["calibrate"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    rec_len = tt.lengths
    item_len = np.maximum(rt.lengths, 1)
    qi, ri, _cos = topk(train_emb, ref_emb, k=params.candidate_k, min_cos=params.candidate_cos)
    pairs = set(zip(qi.tolist(), ri.tolist(), strict=True))
    # an item buried in a longer record: rare-word containment of the item in the full text
    uh, uo = ngram_hashes(rt, 1)
    uidx = ShingleIndex(uh, uo, n_ref, max_df=params.lexical_max_df, sample=params.near_sample)
    th1, to1 = ngram_hashes(tt, 1)
    pcu = uidx.query(th1, to1, min_shared=2)
    ok = (
        (pcu.containment >= params.lexical_candidate)
        & (uidx.size[pcu.item] >= 3)
        & (rec_len[pcu.record] > params.passage_ratio * item_len[pcu.item])
    )
    pairs.update(zip(pcu.record[ok].tolist(), pcu.item[ok].tolist(), strict=True))
    pairs -= skip
    # a short record's pair whose cosine cannot reach the threshold even with perfect lexical
    # features is dropped before any Python work
    wt = params.weights
    if pairs:
        pq = np.array([p[0] for p in pairs], dtype=np.int64)
        pr = np.array([p[1] for p in pairs], dtype=np.int64)
        long = rec_len[pq] > params.passage_ratio * item_len[pr]
        cos_p = np.einsum("ij,ij->i", train_emb[pq], ref_emb[pr])
        ok_p = long | (wt.cos * cos_p + wt.words + wt.specifics + wt.length >= threshold)
        pairs = set(zip(pq[ok_p].tolist(), pr[ok_p].tolist(), strict=True))
    secs["candidates"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    prompts = train["prompt"] if "prompt" in train else train[lex_field]
    jobs: list[tuple[int, int, list[int]]] = []
    slot: dict[str, int] = {}
    for q, r in sorted(pairs):
        sel: list[int] = []
        if rec_len[q] > params.passage_ratio * item_len[r]:
            size = max(8, int(item_len[r]))
            best_p = passages(
                train[lex_field][q],
                size,
                functools.partial(scorer.word_overlap, r),
                k=params.verify_windows,
                rank=functools.partial(scorer.lexical_score, r),
            )
            for w in best_p:
                sel.append(slot.setdefault(w, len(slot)))
        jobs.append((q, r, sel))
    texts = list(slot)
    wemb = embed(texts) if texts else np.zeros((0, ref_emb.shape[1]), np.float32)
    out: list[Leak] = []
    w_thr = threshold + params.window_margin
    for q, r, sel in jobs:
        s_p = scorer.score(r, prompts[q], float(train_emb[q] @ ref_emb[r])) if prompts[q] else -9.0
        s_w = max(
            (scorer.score(r, texts[w], float(wemb[w] @ ref_emb[r])) for w in sel), default=-9.0
        )
        if s_p >= threshold or s_w >= w_thr:
            sc = max(s_p, s_w)
            where = "prompt" if s_p >= threshold else "a passage of the record"
            out.append(
                Leak(
                    q,
                    r,
                    "paraphrase",
                    float(sc),
                    f"verifier score {sc:.2f} on {where} (threshold {threshold:.2f})",
                )
            )
    secs["verify"] = time.perf_counter() - t0
    return out, threshold, len(jobs)


# ------------------------------------------------------------------------ inside the train set
@dataclass(slots=True)
class ClusterParams:
    shingle: int = 2
    num_perm: int = 32
    target_jaccard: float = 0.5
    recall: float = 0.99
    seed: int = 1


def duplicate_clusters(
    tokens: Tokens, params: ClusterParams | None = None, exact: bool = True
) -> tuple[list[list[int]], dict[str, Any]]:
    """Clusters (lists of row numbers, size >= 2) of near-duplicate records: MinHash LSH on word
    ``shingle``-grams, candidates verified by estimated Jaccard >= ``target_jaccard``, plus
    (``exact``) records whose normalised texts are equal; connected components by union-find."""
    p = params or ClusterParams()
    n = tokens.n_texts
    bands, rows = choose_bands(p.num_perm, p.target_jaccard, p.recall)
    h, o = ngram_hashes(tokens, p.shingle, short=True)
    sig = MinHasher(p.num_perm, p.seed).signatures(h, o, n)
    keys = band_keys(sig, bands, rows)
    a, b = self_pairs(keys)
    if len(a):
        est = estimated_jaccard(sig[a], sig[b])
        keep = est >= p.target_jaccard
        a, b = a[keep], b[keep]
    parent = np.arange(n)

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = int(parent[x])
        return x

    def union(x: int, y: int) -> None:
        rx, ry = find(x), find(y)
        if rx != ry:
            parent[max(rx, ry)] = min(rx, ry)

    for x, y in zip(a.tolist(), b.tolist(), strict=True):
        union(x, y)
    n_exact = 0
    if exact:
        keys = text_keys(tokens)
        first: dict[int, int] = {}
        for i, k in enumerate(keys.tolist()):
            if not k:
                continue
            j = first.setdefault(k, i)
            if j != i:
                union(i, j)
                n_exact += 1
    roots = np.array([find(i) for i in range(n)], dtype=np.int64)
    order = np.argsort(roots, kind="stable")
    sr = roots[order]
    cuts = np.flatnonzero(np.r_[True, sr[1:] != sr[:-1], True])
    clusters = [order[s:e].tolist() for s, e in itertools.pairwise(cuts) if e - s > 1]
    info = {
        "bands": bands,
        "rows": rows,
        "num_perm": p.num_perm,
        "shingle": p.shingle,
        "target_jaccard": p.target_jaccard,
        "verified_pairs": len(a),
        "exact_pairs": n_exact,
    }
    return clusters, info
