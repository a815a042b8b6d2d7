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

import itertools
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from ftprep.contamination.fuzzy import confirm_pairs
from ftprep.contamination.index import ShingleIndex, group_salt, pair_containment
from ftprep.contamination.judge import LeakJudge, LeakJudgeConfig
from ftprep.contamination.minhash import (
    MinHasher,
    band_keys,
    choose_bands,
    estimated_jaccard,
    self_pairs,
)
from ftprep.contamination.semantic import FeatureSpace, VerifierWeights, calibrate, candidates
from ftprep.contamination.text import (
    Tokens,
    char_ngram_hashes,
    fmix64,
    isin,
    ngram_hashes,
    text_keys,
    tokenize,
    unique,
)

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
    near_char: int = 5
    near_char_containment: float = 0.6
    near_char_floor: float = 0.3
    near_char_max_df: int = 20
    near_char_min: int = 15
    near_fuzzy_words: int = 12
    near_fuzzy_per_miss: int = 16
    near_fuzzy_shingles: int = 20
    near_fuzzy_word_share: float = 0.7
    ngram_sizes: tuple[int, ...] = (13,)
    ngram_max_df: int = 10
    ngram_min_coverage: float = 0.1
    semantic: bool = True
    candidate_k: int = 3
    candidate_cos: float = 0.6
    lexical_candidate: float = 0.25
    lexical_max_df: int = 20
    ann_nprobe: int = 8
    ann_exact_limit: float = 5e7
    window_margin: float = 0.15
    window_scale: float = 1.0
    window_snaps: tuple[str, ...] = ("out", "in", "none")
    passage_ratio: float = 1.3
    null_quantile: float = 0.99
    null_k: int = 5
    null_items: int = 2000
    min_null_items: int = 200
    min_score: float = 2.63
    default_score: float = 2.9
    weights: VerifierWeights = field(default_factory=VerifierWeights)
    llm_judge: LeakJudgeConfig = field(default_factory=LeakJudgeConfig)

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
            elif k == "llm_judge":
                p.llm_judge = LeakJudgeConfig.from_dict(v)
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
        if self.method.startswith("ngram"):
            return "near"
        return "paraphrase" if self.method == "llm_judge" else self.method


@dataclass(slots=True)
class LeakReport:
    leaks: list[Leak]
    threshold: float
    seconds: dict[str, float]
    n_candidates: int = 0
    judge: dict[str, int] | None = None


class TrainSide:
    """Training-side work shared by every reference set searched against the same training
    texts (field -> texts, same rows): word tokens per field, whole-text keys and shingle
    hashes are computed once, on first use."""

    def __init__(self, train: dict[str, list[str]], tokens: dict[str, Tokens] | None = None):
        self.train = train
        self.n = len(next(iter(train.values()))) if train else 0
        self._tok: dict[str, Tokens] = dict(tokens or {})
        self._keys: dict[str, np.ndarray] = {}
        self._sh: dict[tuple[str, int, int], tuple[np.ndarray, np.ndarray]] = {}
        self._distinct: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = {}

    def tokens(self, field: str) -> Tokens:
        if field not in self._tok:
            self._tok[field] = tokenize(self.train[field])
        return self._tok[field]

    def keys(self, field: str) -> np.ndarray:
        """Whole-text keys of ``field`` (a field not tokenized yet: its distinct texts only)."""
        if field not in self._keys:
            if field in self._tok:
                self._keys[field] = text_keys(self._tok[field])
            else:
                first, rows, bounds = self.distinct(field)
                texts = self.train[field]
                kd = text_keys(tokenize([texts[i] for i in first.tolist()]))
                keys = np.empty(self.n, dtype=kd.dtype)
                keys[rows] = np.repeat(kd, np.diff(bounds))
                self._keys[field] = keys
        return self._keys[field]

    def distinct(self, field: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(first row of every distinct text of ``field``, the rows grouped by distinct text,
        CSR offsets of those groups): a repeated prompt is searched once."""
        if field not in self._distinct:
            enc = pc.dictionary_encode(pa.array(self.train[field], pa.large_string()))
            inv = np.asarray(enc.indices, dtype=np.int64)
            order = np.argsort(inv, kind="stable")
            bounds = np.searchsorted(inv[order], np.arange(len(enc.dictionary) + 1))
            self._distinct[field] = (order[bounds[:-1]], order, bounds.astype(np.int64))
        return self._distinct[field]

    def shingles(self, field: str, n: int, min_chars: int = 0) -> tuple[np.ndarray, np.ndarray]:
        key = (field, n, min_chars)
        if key not in self._sh:
            self._sh[key] = ngram_hashes(self.tokens(field), n, min_chars=min_chars)
        return self._sh[key]


def embed_distinct(embed: Embed, texts: list[str]) -> np.ndarray:
    """``embed(texts)`` with every distinct text embedded once (as the cached embedding signal
    of the check does: a training set often repeats prompts)."""
    if not texts:
        return np.asarray(embed([]), dtype=np.float32)
    enc = pc.dictionary_encode(pa.array(texts, pa.large_string()))
    uniq = enc.dictionary.to_pylist()
    vecs = np.asarray(embed(uniq), dtype=np.float32)
    if len(uniq) == len(texts):
        return vecs
    return vecs[np.asarray(enc.indices, dtype=np.int64)]


@dataclass(slots=True)
class RefSet:
    """One fixed reference set (a benchmark, validation/test, a production holdout): the items'
    input (user text), input + answer, and the embeddings of the inputs when already known."""

    input: list[str]
    full: list[str]
    emb: np.ndarray | None = None


@dataclass(slots=True)
class MultiLeakReport:
    """One :class:`LeakReport` per reference set (item numbers local to the set) and the
    seconds of the stages shared by all sets (one pass over the training side)."""

    reports: list[LeakReport]
    seconds: dict[str, float]


def find_leaks(
    train: dict[str, list[str]],
    ref_input: list[str],
    ref_full: list[str],
    params: LeakParams,
    embed: Embed | None = None,
    train_emb: np.ndarray | None = None,
    ref_emb: np.ndarray | None = None,
    train_tokens: Tokens | None = None,
    side: TrainSide | None = None,
    judge: LeakJudge | None = None,
) -> LeakReport:
    """Leaks of the reference items (``ref_input``: user text; ``ref_full``: input + answer)
    into the training texts ``train`` (field -> texts, same rows): :func:`find_leaks_many`
    with one reference set (its report's seconds include the shared stages)."""
    multi = find_leaks_many(
        train,
        [RefSet(ref_input, ref_full, ref_emb)],
        params,
        embed=embed,
        train_emb=train_emb,
        train_tokens=train_tokens,
        side=side,
        judge=judge,
    )
    rep = multi.reports[0]
    for k, v in multi.seconds.items():
        rep.seconds[k] = rep.seconds.get(k, 0.0) + v
    return rep


def find_leaks_many(
    train: dict[str, list[str]],
    refs: list[RefSet],
    params: LeakParams,
    embed: Embed | None = None,
    train_emb: np.ndarray | None = None,
    train_tokens: Tokens | None = None,
    side: TrainSide | None = None,
    judge: LeakJudge | None = None,
) -> MultiLeakReport:
    """Leaks of the items of every reference set in ``refs`` into the training texts ``train``
    (field -> texts, same rows).

    The lexical stages (exact, containment, n-grams) and the rare-word paraphrase candidates
    make **one pass over the training side for all sets**: the items of every set go into one
    index whose document-frequency filters are counted within each item's own set (so every
    set is searched exactly as if alone), and each hit is attributed back to its set. The
    paraphrase verifier is calibrated and run per set (each set has its own threshold).

    ``train_emb`` are the embeddings of ``train['prompt']`` and ``RefSet.emb`` of the set's
    inputs (computed with ``embed`` when absent). ``side`` shares the training side's tokens
    and shingles with other calls (``train_tokens``: the tokens of the compared full text,
    when already computed). ``judge`` (or ``params.llm_judge.enabled``, one judge per set)
    sends the paraphrase verifier's borderline pairs to an LLM
    (:mod:`ftprep.contamination.judge`)."""
    secs: dict[str, float] = {}
    n_train = len(next(iter(train.values()))) if train else 0
    sizes = np.array([len(r.input) for r in refs], dtype=np.int64)
    first = np.r_[0, np.cumsum(sizes)].astype(np.int64)
    n_ref = int(first[-1])
    group = np.repeat(np.arange(len(refs), dtype=np.int64), sizes)
    best: list[dict[tuple[int, int], Leak]] = [{} for _ in refs]

    def add(r: int, j: int, method: str, score: float, detail: str) -> None:
        g = int(group[j])
        leak = Leak(r, j - int(first[g]), method, score, detail)
        key = (r, leak.item)
        cur = best[g].get(key)
        if cur is None or RANK[leak.category] < RANK[cur.category]:
            best[g][key] = leak

    if n_train == 0 or n_ref == 0:
        return MultiLeakReport([LeakReport([], float("nan"), {}) for _ in refs], secs)
    # -- exact (normalised word sequences equal) -----------------------------------------
    t0 = time.perf_counter()
    lex_field = "full" if "full" in params.fields else params.fields[0]
    if side is None:
        side = TrainSide(train, {lex_field: train_tokens} if train_tokens is not None else None)
    ref_input = [t for r in refs for t in r.input]
    rt = tokenize(ref_input)
    same = all(r.full is r.input for r in refs)
    rft = rt if same else tokenize([t for r in refs for t in r.full])
    side.tokens(lex_field)
    for fld in params.fields:
        side.keys(fld)
    secs["tokenize"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    ref_k = np.concatenate([text_keys(rt), text_keys(rft)])
    ref_i = np.concatenate([np.arange(n_ref), np.arange(n_ref)])
    order = np.argsort(ref_k, kind="stable")
    sk, si = ref_k[order], ref_i[order]
    for fld in params.fields:
        keys = side.keys(fld)
        lo, hi = np.searchsorted(sk, keys, "left"), np.searchsorted(sk, keys, "right")
        for r in np.flatnonzero((keys != 0) & (hi > lo)).tolist():
            for j in si[lo[r] : hi[r]].tolist():
                add(r, j, "exact", 1.0, f"normalised {fld} equals the item")
    secs["exact"] = time.perf_counter() - t0
    # -- lexical: containment and n-grams on the widest field --------------------------
    t0 = time.perf_counter()
    rh, ro = ngram_hashes(rt, params.shingle, min_chars=params.near_min_chars)
    idx = ShingleIndex(
        rh, ro, n_ref, max_df=params.near_max_df, sample=params.near_sample, group=group
    )
    th, to = side.shingles(lex_field, params.shingle, params.near_min_chars)
    pc = idx.query(th, to, min_shared=min(2, params.near_min_shingles))
    cand = (pc.containment >= params.near_candidate) & (
        idx.full_size[pc.item] >= params.near_min_shingles
    )
    c_rec, c_item = pc.record[cand], pc.item[cand]
    cont = idx.verify(c_rec, c_item, th, to)
    ok = cont >= near_threshold(idx.full_size[c_item], params)
    # a short item is confirmed on words (typos, swaps; not a sibling differing in a real word)
    border = np.flatnonzero(~ok & (cont >= params.near_char_floor))
    maybe = np.flatnonzero(ok | (cont >= params.near_char_floor))
    short = np.zeros(len(c_item), dtype=bool)
    fuzzy_ok = np.zeros(len(c_item), dtype=bool)
    # the strict word-window test for items with few informative word pairs, run only where
    # >= near_fuzzy_word_share of the item's distinct words occur unchanged in the record (a
    # light edit leaves most words intact; a cheap vectorised filter before the Python test)
    strict = np.flatnonzero(~ok & (cont >= params.near_char_floor))
    strict = strict[idx.full_size[c_item[strict]] <= params.near_fuzzy_shingles]
    also = np.zeros(len(c_item), dtype=bool)
    if len(strict):
        s_rec, local = unique(c_rec[strict], return_inverse=True)
        s_item = unique(c_item[strict])
        uh, uo = ngram_hashes(rt.take(s_item), 1)
        th1, to1 = ngram_hashes(side.tokens(lex_field).take(s_rec), 1)
        words_in = ShingleIndex(uh, uo, len(s_item), max_df=None).verify(
            local, np.searchsorted(s_item, c_item[strict]), th1, to1
        )
        also[strict[words_in >= params.near_fuzzy_word_share]] = True
    if params.near_fuzzy_words > 0 and len(maybe):
        sh, fz = confirm_pairs(
            side.train[lex_field],
            ref_input,
            c_rec[maybe].tolist(),
            c_item[maybe].tolist(),
            params.near_fuzzy_words,
            params.near_fuzzy_per_miss,
            also=also[maybe].tolist(),
        )
        short[maybe] = sh
        fuzzy_ok[maybe] = fz
    # short items are decided by the word-window test alone; a longer item with few
    # informative word pairs (<= near_fuzzy_shingles: option letters, digits and symbols
    # pad it) that misses the containment rule may pass its strict form
    for k in np.flatnonzero((ok & ~short) | fuzzy_ok).tolist():
        r, j, c = int(c_rec[k]), int(c_item[k]), float(cont[k])
        why = (
            f"{c:.0%} of the item's word {params.shingle}-grams"
            if ok[k] and not short[k]
            else "every word of the item, lightly edited, in one span"
            + ("" if short[k] else f" ({c:.0%} of its word {params.shingle}-grams)")
        )
        add(r, j, "near", c, why)
    # the rest of a longer item's pairs that miss the word rule but keep a fair share of word
    # pairs are verified on character n-grams
    border = border[~short[border] & ~fuzzy_ok[border]]
    if params.near_char > 0 and len(border):
        for r, j, c, cw in _char_near(
            side.train[lex_field], ref_input, group, c_rec[border], c_item[border], params
        ):
            wc = float(cont[border][cw])
            add(
                r,
                j,
                "near",
                c,
                f"{c:.0%} of the item's character {params.near_char}-grams "
                f"({wc:.0%} of its word {params.shingle}-grams)",
            )
    secs["near"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for n in params.ngram_sizes:
        rh, ro = ngram_hashes(rft, n)
        nidx = ShingleIndex(rh, ro, n_ref, max_df=params.ngram_max_df, group=group)
        th, to = side.shingles(lex_field, n)
        pcn = nidx.query(th, to)
        okn = pcn.containment >= params.ngram_min_coverage
        for r, j, s, c in zip(
            pcn.record[okn].tolist(),
            pcn.item[okn].tolist(),
            pcn.shared[okn].tolist(),
            pcn.containment[okn].tolist(),
            strict=True,
        ):
            add(r, j, f"ngram{n}", float(s), f"{s} shared word {n}-gram(s) ({c:.0%} of the item's)")
    secs["ngram"] = time.perf_counter() - t0
    # -- semantic ---------------------------------------------------------------------------
    thresholds = [float("nan")] * len(refs)
    n_cands = [0] * len(refs)
    set_secs: list[dict[str, float]] = [{} for _ in refs]
    judges: list[LeakJudge | None] = [judge] * len(refs)
    if params.semantic and embed is not None:
        if judge is None and params.llm_judge.enabled:
            judges = [LeakJudge(params.llm_judge) for _ in refs]
        # rare-word containment of the item in the full text (every set in one pass): an item
        # buried in a longer record, and a rewording the inverted file missed (a paraphrase
        # keeps names, numbers, rare nouns)
        t0 = time.perf_counter()
        uh, uo = ngram_hashes(rt, 1)
        uidx = ShingleIndex(
            uh, uo, n_ref, max_df=params.lexical_max_df, sample=params.near_sample, group=group
        )
        th1, to1 = side.shingles(lex_field, 1)
        pcu = uidx.query(th1, to1, min_shared=2)
        okl = (pcu.containment >= params.lexical_candidate) & (uidx.size[pcu.item] >= 3)
        l_rec, l_item = pcu.record[okl], pcu.item[okl]
        secs["candidates"] = time.perf_counter() - t0
        if train_emb is None:
            t0 = time.perf_counter()
            train_emb = embed_distinct(
                embed, train["prompt"] if "prompt" in train else train[lex_field]
            )
            secs["embed"] = time.perf_counter() - t0
        item_len = np.maximum(rt.lengths, 1)
        for g, ref in enumerate(refs):
            if len(ref.input) == 0:
                continue
            ss = set_secs[g]
            t0 = time.perf_counter()
            ref_emb = ref.emb if ref.emb is not None else embed_distinct(embed, ref.input)
            ss["embed"] = time.perf_counter() - t0
            a, b = int(first[g]), int(first[g + 1])
            mine = (l_item >= a) & (l_item < b)
            n_g = b - a
            para, thresholds[g], n_cands[g] = _paraphrases(
                side,
                lex_field,
                item_len[a:b],
                ref.input,
                ref_emb,
                train_emb,
                embed,
                params,
                lexical=(l_rec[mine], l_item[mine] - a),
                skip=np.array([lk.train * n_g + lk.item for lk in best[g].values()], np.int64),
                secs=ss,
                judge=judges[g],
            )
            for leak in para:
                add(leak.train, leak.item + a, leak.method, leak.score, leak.detail)
    reports = [
        LeakReport(
            sorted(best[g].values(), key=lambda x: (x.train, x.item)),
            thresholds[g],
            set_secs[g],
            n_cands[g],
            _judge_stats(judges[g]),
        )
        for g in range(len(refs))
    ]
    return MultiLeakReport(reports, secs)


def _judge_stats(judge: LeakJudge | None) -> dict[str, int] | None:
    return judge.stats.to_dict() if judge is not None else None


def _char_near(
    texts: list[str],
    ref_input: list[str],
    group: np.ndarray,
    rec: np.ndarray,
    item: np.ndarray,
    params: LeakParams,
) -> list[tuple[int, int, float, int]]:
    """(record, item, character containment, index into the pairs) of the pairs whose item's
    informative character ``near_char``-grams (in at most ``near_char_max_df`` items of the
    item's reference set ``group[item]``, at least ``near_char_min`` of them) are found in the
    record at rate >= ``near_char_containment``."""
    n = params.near_char
    rh, ro = char_ngram_hashes(ref_input, n)
    # how many items of its set hold each gram: a count of every occurrence in 4M hash
    # buckets of (set, gram) (collisions and repeats inside an item only make the filter
    # stricter); then the distinct informative grams of the items that have a pair
    bucket = ((rh ^ group_salt(group[ro])) >> np.uint64(42)).astype(np.int64)
    df = np.bincount(bucket, minlength=1 << 22)
    need = np.zeros(len(ref_input), dtype=bool)
    need[item] = True
    keep = need[ro] & (df[bucket] <= params.near_char_max_df)
    rh, ro = rh[keep], ro[keep]
    salt = fmix64(ro.astype(np.uint64) + np.uint64(0x2545F4914F6CDD1D))
    _, first = unique(fmix64(rh ^ salt), return_index=True)
    rh, ro = rh[first], ro[first]
    order = np.argsort(ro, kind="stable")
    item_h = rh[order]
    size = np.bincount(ro, minlength=len(ref_input)).astype(np.int64)
    item_start = np.r_[0, np.cumsum(size)].astype(np.int64)
    urec, local = unique(rec, return_inverse=True)
    th, to = char_ngram_hashes([texts[i] for i in urec.tolist()], n)
    cc = pair_containment(item_h, item_start, local, item, th, to)
    good = (cc >= params.near_char_containment) & (size[item] >= params.near_char_min)
    return [
        (int(rec[k]), int(item[k]), float(cc[k]), int(k)) for k in np.flatnonzero(good).tolist()
    ]


def _paraphrases(
    side: TrainSide,
    lex_field: str,
    item_len: np.ndarray,
    ref_input: list[str],
    ref_emb: np.ndarray,
    train_emb: np.ndarray,
    embed: Embed,
    params: LeakParams,
    lexical: tuple[np.ndarray, np.ndarray],
    skip: np.ndarray,
    secs: dict[str, float],
    judge: LeakJudge | None = None,
) -> tuple[list[Leak], float, int]:
    """Embedding candidates and the rare-word candidates ``lexical`` (record, item), verified
    (all pairs at once) on the record's prompt and, for a record longer than the item, on the
    window of its full text that best covers the item's content words (``item_len``: the
    items' lengths in words)."""
    t0 = time.perf_counter()
    n_ref = len(ref_input)
    space = FeatureSpace(ref_input, params.weights)
    if n_ref >= params.min_null_items:
        null = calibrate(space, ref_emb, params.null_k, max_items=params.null_items)
        threshold = max(params.min_score, float(np.quantile(null, params.null_quantile)))
    else:
        threshold = params.default_score
    secs["calibrate"] = secs.get("calibrate", 0.0) + time.perf_counter() - t0
    t0 = time.perf_counter()
    train, tt = side.train, side.tokens(lex_field)
    rec_len = tt.lengths
    # a pair whose cosine cannot reach the threshold even with perfect lexical features is
    # never a candidate (a reference set whose threshold is high searches few neighbours)
    wt = params.weights
    reach = (threshold - wt.words - wt.specifics - wt.length) / max(wt.cos, 1e-9)
    t_ann = time.perf_counter()
    # every distinct prompt is searched once, its neighbours given to all its rows
    first, rows, bounds = side.distinct("prompt" if "prompt" in train else lex_field)
    qd, ri, _cos = candidates(
        train_emb[first] if len(first) < len(train_emb) else train_emb,
        ref_emb,
        k=params.candidate_k,
        min_cos=max(params.candidate_cos, reach),
        nprobe=params.ann_nprobe,
        exact_limit=params.ann_exact_limit,
    )
    cnt = bounds[qd + 1] - bounds[qd]
    within = np.arange(int(cnt.sum()), dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    qi, ri = rows[np.repeat(bounds[qd], cnt) + within], np.repeat(ri, cnt)
    secs["ann"] = secs.get("ann", 0.0) + time.perf_counter() - t_ann
    key = unique(np.r_[qi * n_ref + ri, lexical[0] * n_ref + lexical[1]])
    key = key[~isin(key, skip)]
    q, r = key // n_ref, key % n_ref
    secs["candidates"] = secs.get("candidates", 0.0) + time.perf_counter() - t0 - secs["ann"]
    t0 = time.perf_counter()
    prompts = train["prompt"] if "prompt" in train else train[lex_field]
    out: list[Leak] = []
    if len(q) == 0:
        secs["verify"] = secs.get("verify", 0.0) + time.perf_counter() - t0
        return out, threshold, 0
    # the prompt: only pairs whose cosine leaves the threshold reachable are encoded
    band = params.llm_judge.band_below if judge is not None else 0.0
    lex_max = wt.words + wt.specifics + wt.length
    cos_p = np.einsum("ij,ij->i", train_emb[q], ref_emb[r])
    s_p = np.full(len(q), -9.0)
    live_p = np.flatnonzero(wt.cos * cos_p + lex_max >= threshold - band)
    if len(live_p):
        uq, local = unique(q[live_p], return_inverse=True)
        p_feats = space.encode([prompts[i] for i in uq.tolist()])
        sp_ = space.score_pairs(r[live_p], p_feats, local, cos_p[live_p])
        s_p[live_p] = np.where(p_feats.n_words[local] == 0, -9.0, sp_)
    # windows of long records, pruned by the best score any window could reach
    s_w = np.full(len(q), -9.0)
    w_text: dict[int, str] = {}
    w_thr = threshold + params.window_margin
    long = np.flatnonzero(rec_len[q] > params.passage_ratio * item_len[r])
    if wt.cos + lex_max < w_thr - band:
        long = long[:0]
    if len(long):
        lq, ll = unique(q[long], return_inverse=True)
        f_feats = space.encode([train[lex_field][i] for i in lq.tolist()], sequence=True)
        ub = space.upper_bound(r[long], f_feats, ll)
        long, ll = long[ub >= w_thr], ll[ub >= w_thr]
        if len(long):
            # a window is embedded only when its lexical features leave the threshold
            # reachable with a perfect cosine
            for snap in params.window_snaps:
                wins, w_feats = space.best_windows(r[long], f_feats, ll, params.window_scale, snap)
                feats = space.pair_features(r[long], w_feats, np.arange(len(long)))
                sc = space.combine(np.ones(len(long)), feats)
                live = np.flatnonzero(sc >= w_thr - band)
                if len(live):
                    texts = wins.texts(live.tolist())
                    e = np.asarray(embed(texts), dtype=np.float32)
                    cos_w = np.einsum("ij,ij->i", e, ref_emb[r[long][live]])
                    sw = sc[live] - wt.cos * (1.0 - cos_w)
                    better = sw > s_w[long[live]]
                    for j in np.flatnonzero(better).tolist():
                        w_text[int(long[live[j]])] = texts[j]
                    s_w[long[live[better]]] = sw[better]
    # margin of each pair over its threshold (prompt: threshold; passage: + window_margin)
    m_p, m_w = s_p - threshold, s_w - w_thr
    margin = np.maximum(m_p, m_w)
    accept = margin >= 0
    judged = np.zeros(len(q), dtype=bool)
    if judge is not None:
        cfg = judge.cfg
        asked = np.flatnonzero((margin >= -cfg.band_below) & (margin < cfg.band_above))
        if len(asked) > cfg.max_pairs:
            judge.stats.over_limit += len(asked) - cfg.max_pairs
            asked = asked[np.argsort(np.abs(margin[asked]), kind="stable")[: cfg.max_pairs]]
        asks = [
            (ref_input[int(r[k])], w_text[k] if m_w[k] > m_p[k] else prompts[int(q[k])])
            for k in asked.tolist()
        ]
        for k, v in zip(asked.tolist(), judge.judge(asks), strict=True):
            if v is not None:
                accept[k] = v
                judged[k] = True
    for k in np.flatnonzero(accept).tolist():
        on_prompt = m_p[k] >= m_w[k]
        score = float(s_p[k] if on_prompt else s_w[k])
        thr_k = threshold if on_prompt else w_thr
        where = "prompt" if on_prompt else "a passage of the record"
        if judged[k]:
            method = "llm_judge"
            detail = f"LLM judge: same item (verifier score {score:.2f} on {where}, threshold {thr_k:.2f})"
        else:
            method = "paraphrase"
            detail = f"verifier score {score:.2f} on {where} (threshold {thr_k:.2f})"
        out.append(Leak(int(q[k]), int(r[k]), method, score, detail))
    secs["verify"] = secs.get("verify", 0.0) + time.perf_counter() - t0
    return out, threshold, len(q)


# ------------------------------------------------------------------------ inside the train set
@dataclass(slots=True)
class ClusterParams:
    shingle: int = 2
    num_perm: int = 32
    target_jaccard: float = 0.5
    recall: float = 0.99
    seed: int = 1
    max_df: float = 0.05  # shingles in more records than this share are a template's (0: off)
    min_df: int = 50  # ... and in more than this many records


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
    if p.max_df > 0 and len(h):
        # shingles in more than max_df of the records (at least min_df of them) are a template's
        # (a reply greeting, "take care of that … request"), not evidence of a copy
        order = np.lexsort((h, o))
        hs, os_ = h[order], o[order]
        once = np.r_[True, (hs[1:] != hs[:-1]) | (os_[1:] != os_[:-1])]  # once per record
        uh, df = np.unique(hs[once], return_counts=True)
        common = uh[df > max(p.min_df, p.max_df * n)]
        if len(common):
            keep = ~np.isin(h, common)
            h, o = h[keep], o[keep]
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
