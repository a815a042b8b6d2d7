"""Paraphrase leakage: embedding neighbours as candidates, a cheap cross-feature verifier.

1. **Candidates.** Every training text is compared with every reference item by cosine of
   their (L2-normalised) embeddings, in float32 blocks (``block`` rows at a time) keeping the
   top ``k`` items per text above ``min_cos`` (``np.argpartition``; no all-pairs matrix is ever
   held). Long training records are also cut into overlapping word windows so that an item
   buried inside a longer record meets a window of its own size.
2. **Verifier.** Each candidate pair gets a score from features a paraphrase keeps and a
   same-style different item does not::

       score = w_cos * cosine + w_words * weighted_dice(content words, idf)
               + w_specifics * jaccard(numbers and names) + w_length * length_ratio

   (content words: lower-cased, stop words removed, light suffix stemming, weighted by their
   inverse document frequency in the reference set; numbers include number words; names are
   capitalised words that do not start a sentence).
3. **Calibration.** The threshold is set per reference set from its own same-style
   non-duplicates: every item is scored against its nearest *other* items of the same set, and
   the threshold is the ``null_quantile`` of those best scores (never below ``min_score``).
   With fewer than ``min_null_items`` items the fixed ``default_score`` is used.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np

from ftprep.contamination.text import numbers

_WORD = re.compile(r"[^\W_]+", re.UNICODE)
_NAME = re.compile(r"(?<![.!?:]\s)(?<!^)(?<!\n)\b[A-Z][a-z]{2,}")
_STOP_TEXT = """a an the of to in on at for and or but nor is are was were be been being am it its
    this that these those with as by from he she they his her hers their theirs them him i me
    my you your yours we our ours us what which who whom whose how many much does do did done
    if then than so each every per not no yes can could would should will shall may might must
    there here when where why all any some such into out up down over under about after before
    again also just only very more most other same own too has have had having one"""
STOP_WORDS = frozenset(_STOP_TEXT.split())


def _stem(w: str) -> str:
    for s in ("ing", "ed", "es", "s", "ly"):
        if w.endswith(s) and len(w) - len(s) >= 3:
            return w[: -len(s)]
    return w


def content_words(text: str) -> set[str]:
    return {
        _stem(w) for w in _WORD.findall(text.lower()) if w not in STOP_WORDS and not w.isdigit()
    }


def names(text: str) -> set[str]:
    return {m.group().lower() for m in _NAME.finditer(text)} - STOP_WORDS


def specifics(text: str) -> set[str]:
    """Numbers and names: what a rephrasing keeps and a different problem changes."""
    return numbers(text) | {"n:" + n for n in names(text)}


@dataclass(slots=True)
class VerifierWeights:
    cos: float = 1.5
    words: float = 1.0
    specifics: float = 1.5
    length: float = 0.3


class PairScorer:
    """Scores (reference item, candidate text, cosine) triples; see the module docs. Features
    of a text are computed once and cached."""

    def __init__(self, ref_texts: Sequence[str], weights: VerifierWeights | None = None) -> None:
        self.w = weights or VerifierWeights()
        self.ref_texts = list(ref_texts)
        n = len(ref_texts)
        feats = [self._raw(t) for t in ref_texts]
        df: Counter[str] = Counter()
        sdf: Counter[str] = Counter()
        for ws, sp, _ in feats:
            df.update(ws)
            sdf.update(sp)
        self._unseen = math.log(n + 1) + 1
        self.idf = {w: math.log((n + 1) / (c + 1)) + 1 for w, c in df.items()}
        self.sidf = {w: math.log((n + 1) / (c + 1)) + 1 for w, c in sdf.items()}
        self._cache: dict[str, tuple[set[str], set[str], int, float, float]] = {}
        self.ref = [self._features(t) for t in ref_texts]

    @staticmethod
    def _raw(text: str) -> tuple[set[str], set[str], int]:
        return content_words(text), specifics(text), max(1, len(text.split()))

    def _features(self, text: str) -> tuple[set[str], set[str], int, float, float]:
        f = self._cache.get(text)
        if f is None:
            ws, sp, n = self._raw(text)
            f = (ws, sp, n, self._wsum(ws), self._ssum(sp))
            if len(self._cache) < 200_000:
                self._cache[text] = f
        return f

    def _wsum(self, ws: set[str]) -> float:
        return sum(self.idf.get(w, self._unseen) for w in ws)

    def _ssum(self, sp: set[str]) -> float:
        return sum(self.sidf.get(w, self._unseen) for w in sp)

    def word_overlap(self, item: int, text: str) -> float:
        """IDF-weighted share of the item's content words found in ``text``."""
        a = self.ref[item]
        b = self._features(text)
        return self._wsum(a[0] & b[0]) / a[3] if a[3] else 0.0

    def lexical_score(self, item: int, text: str) -> float:
        """The verifier score without the cosine (used to pick passages before embedding)."""
        f = self.features(item, text)
        w = self.w
        return w.words * f[0] + w.specifics * f[1] + w.length * f[2]

    def features(self, item: int, text: str) -> tuple[float, float, float]:
        return self._pair(self.ref[item], self._features(text))

    def _pair(
        self,
        a: tuple[set[str], set[str], int, float, float],
        b: tuple[set[str], set[str], int, float, float],
    ) -> tuple[float, float, float]:
        tot = a[3] + b[3]
        dice = 2 * self._wsum(a[0] & b[0]) / tot if tot else 0.0
        union = a[1] | b[1]
        spec = self._ssum(a[1] & b[1]) / self._ssum(union) if union else 0.5
        return dice, spec, min(a[2], b[2]) / max(a[2], b[2])

    def _combine(self, cos: float, f: tuple[float, float, float]) -> float:
        w = self.w
        return w.cos * cos + w.words * f[0] + w.specifics * f[1] + w.length * f[2]

    def score(self, item: int, text: str, cos: float) -> float:
        return self._combine(cos, self.features(item, text))

    def score_refs(self, item: int, other: int, cos: float) -> float:
        return self._combine(cos, self._pair(self.ref[item], self.ref[other]))


def topk(
    queries: np.ndarray,
    refs: np.ndarray,
    k: int = 5,
    min_cos: float = 0.5,
    block: int = 8192,
    exclude_self: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query row, reference row, cosine) of the top ``k`` references of every query with
    cosine >= ``min_cos``, computed in blocks of ``block`` queries."""
    qs: list[np.ndarray] = []
    rs: list[np.ndarray] = []
    cs: list[np.ndarray] = []
    if len(queries) == 0 or len(refs) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    refs_t = np.ascontiguousarray(refs.T, dtype=np.float32)
    kk = min(k, len(refs) - (1 if exclude_self else 0))
    if kk <= 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    for s in range(0, len(queries), block):
        sim = queries[s : s + block].astype(np.float32, copy=False) @ refs_t
        if exclude_self:
            rows = np.arange(sim.shape[0])
            sim[rows, rows + s] = -2.0
        # threshold first (sparse), then the top k of each row among the survivors
        qi, ri = np.nonzero(sim >= min_cos)
        if len(qi) == 0:
            continue
        cv = sim[qi, ri]
        order = np.lexsort((-cv, qi))
        qi, ri, cv = qi[order], ri[order], cv[order]
        first = np.searchsorted(qi, qi, "left")
        keep = (np.arange(len(qi)) - first) < kk
        qs.append(qi[keep] + s)
        rs.append(ri[keep])
        cs.append(cv[keep])
    if not qs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    return (
        np.concatenate(qs).astype(np.int64),
        np.concatenate(rs).astype(np.int64),
        np.concatenate(cs),
    )


_SENT = re.compile(r"(?<=[.!?:;])\s+|\n+")


def sentences(text: str) -> list[str]:
    return [s for s in _SENT.split(text) if s.strip()]


def passages(
    text: str,
    size: int,
    overlap: Callable[[str], float],
    k: int = 3,
    reach: int = 6,
    rank: Callable[[str], float] | None = None,
) -> list[str]:
    """The ``k`` passages of ``text`` (about ``size`` words) most likely to hold a given item:
    the sentences with the highest ``overlap`` are anchors, every run of whole sentences
    around an anchor of 0.5-1.5 ``size`` words is a candidate, and candidates are ranked by
    ``rank`` (default ``overlap``). ``text`` itself when short."""
    if len(text.split()) <= size:
        return [text]
    sents = sentences(text)
    lens = [len(x.split()) for x in sents]
    scores = [overlap(x) for x in sents]
    anchors = sorted(range(len(sents)), key=lambda i: -scores[i])[:2]
    cands: set[tuple[int, int]] = set()
    for a in anchors:
        for i in range(a, max(-1, a - reach), -1):
            n = sum(lens[i:a])
            for j in range(a, min(len(sents), a + reach)):
                n += lens[j]
                if n > 2 * size:
                    break
                if n >= 0.5 * size:
                    cands.add((i, j + 1))
            if n > 2 * size:
                break
        if lens[a] > 1.5 * size:  # one long sentence: word windows inside it
            words = sents[a].split()
            for st in range(0, len(words), max(1, size // 2)):
                cands.add((-1 - a, st))
    texts = []
    for i, j in cands:
        if i >= 0:
            texts.append(" ".join(sents[i:j]))
        else:
            w = sents[-1 - i].split()
            texts.append(" ".join(w[j : j + size]))
    if not texts:
        texts = [" ".join(text.split()[:size])]
    key = rank or overlap
    texts.sort(key=lambda t: -key(t))
    return texts[:k]


def calibrate(
    scorer: PairScorer,
    ref_emb: np.ndarray,
    k: int,
    exclude: set[tuple[int, int]] | None = None,
    max_items: int = 2000,
    seed: int = 0,
) -> np.ndarray:
    """Best verifier score of reference items (a seeded sample of at most ``max_items``)
    against their ``k`` nearest other items: the same-style non-duplicate null distribution."""
    n = len(ref_emb)
    kk = min(k, n - 1)
    if kk <= 0:
        return np.zeros(0)
    sample = np.arange(n)
    if n > max_items:
        sample = np.sort(np.random.default_rng(seed).choice(n, max_items, replace=False))
    sims = ref_emb[sample] @ ref_emb.T
    sims[np.arange(len(sample)), sample] = -2.0
    part = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
    qi = np.repeat(sample, kk)
    ri = part.ravel()
    cos = np.take_along_axis(sims, part, axis=1).ravel()
    best = np.full(n, -np.inf)
    for q, r, c in zip(qi.tolist(), ri.tolist(), cos.tolist(), strict=True):
        if exclude and ((q, r) in exclude or (r, q) in exclude):
            continue
        s = scorer.score_refs(r, q, c)
        if s > best[q]:
            best[q] = s
    return best[np.isfinite(best)]
