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
from collections.abc import Sequence
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
    cos: float = 2.0
    words: float = 0.5
    specifics: float = 1.0
    length: float = 0.3


class PairScorer:
    """Scores (reference item, candidate text, cosine) triples; see the module docs."""

    def __init__(self, ref_texts: Sequence[str], weights: VerifierWeights | None = None) -> None:
        self.w = weights or VerifierWeights()
        self.ref_words = [content_words(t) for t in ref_texts]
        self.ref_spec = [specifics(t) for t in ref_texts]
        self.ref_len = np.array([max(1, len(t.split())) for t in ref_texts], dtype=float)
        df: Counter[str] = Counter()
        for ws in self.ref_words:
            df.update(ws)
        n = len(ref_texts)
        self._idf_default = math.log(n + 1) + 1
        self.idf = {w: math.log((n + 1) / (c + 1)) + 1 for w, c in df.items()}

    def _weight(self, ws: set[str]) -> float:
        return sum(self.idf.get(w, self._idf_default) for w in ws)

    def features(self, item: int, text: str) -> tuple[float, float, float]:
        a, b = self.ref_words[item], content_words(text)
        tot = self._weight(a) + self._weight(b)
        dice = 2 * self._weight(a & b) / tot if tot else 0.0
        sa, sb = self.ref_spec[item], specifics(text)
        spec = len(sa & sb) / len(sa | sb) if (sa or sb) else 0.5
        la, lb = self.ref_len[item], max(1, len(text.split()))
        return dice, spec, float(min(la, lb) / max(la, lb))

    def score(self, item: int, text: str, cos: float) -> float:
        dice, spec, lr = self.features(item, text)
        w = self.w
        return w.cos * cos + w.words * dice + w.specifics * spec + w.length * lr


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
        part = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        val = np.take_along_axis(sim, part, axis=1)
        ok = val >= min_cos
        qi = np.nonzero(ok)[0]
        qs.append(qi + s)
        rs.append(part[ok])
        cs.append(val[ok])
    return (
        np.concatenate(qs).astype(np.int64),
        np.concatenate(rs).astype(np.int64),
        np.concatenate(cs),
    )


def windows(text: str, size: int, stride: int, max_windows: int) -> list[str]:
    """Overlapping word windows of ``text`` (the text itself when it is short enough)."""
    words = text.split()
    if len(words) <= size:
        return [text]
    out = [" ".join(words[i : i + size]) for i in range(0, len(words) - size + stride, stride)]
    return out[:max_windows]


def calibrate(
    scorer: PairScorer,
    ref_texts: Sequence[str],
    ref_emb: np.ndarray,
    k: int,
    quantile: float,
    exclude: set[tuple[int, int]] | None = None,
) -> np.ndarray:
    """Best verifier score of every reference item against its nearest other items (the
    same-style non-duplicate null distribution)."""
    qi, ri, cos = topk(ref_emb, ref_emb, k=k, min_cos=-1.0, exclude_self=True)
    best = np.full(len(ref_texts), -np.inf)
    for q, r, c in zip(qi.tolist(), ri.tolist(), cos.tolist(), strict=True):
        if exclude and ((q, r) in exclude or (r, q) in exclude):
            continue
        s = scorer.score(r, ref_texts[q], c)
        if s > best[q]:
            best[q] = s
    return best[np.isfinite(best)]
