"""Paraphrase leakage: embedding neighbours as candidates, a cheap cross-feature verifier, all
vectorised over whole columns and over all candidate pairs at once.

1. **Features** (:class:`FeatureSpace`). Texts are split into words in pyarrow (one regex pass
   over the whole column); only the *distinct* words go through Python, once each: content
   word (lower-cased, stop words removed, light suffix stemming), number (digits with 1,000 =
   1000 and 3.5 kept whole; number words as digits) and name (a capitalised word that does not
   start a sentence). Every text becomes a CSR set of feature ids; weights are inverse document
   frequencies over the reference set.
2. **Verifier** (:meth:`FeatureSpace.score_pairs`). For every candidate pair at once (scipy
   sparse row products, no per-pair Python)::

       score = w_cos * cosine + w_words * weighted_dice(content words, idf)
               + w_specifics * weighted_jaccard(numbers and names) + w_length * length_ratio

3. **Passages** (:meth:`FeatureSpace.best_windows`). An item buried in a longer record is
   compared with the record's window of about the item's length that holds the most
   IDF-weight of the item's content words and specifics (cumulative sums over the record's
   word sequence for all candidate pairs at once).
4. **Calibration** (:func:`calibrate`). The threshold is set per reference set from its own
   same-style non-duplicates: every item is scored against its nearest *other* items of the
   same set, and the threshold is the ``null_quantile`` of those best scores.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import scipy.sparse as sp

from ftprep.contamination.text import NUMBER_WORDS, unique

_STOP_TEXT = """a an the of to in on at for and or but nor is are was were be been being am it its
    this that these those with as by from he she they his her hers their theirs them him i me
    my you your yours we our ours us what which who whom whose how many much does do did done
    if then than so each every per not no yes can could would should will shall may might must
    there here when where why all any some such into out up down over under about after before
    again also just only very more most other same own too has have had having one"""
STOP_WORDS = frozenset(_STOP_TEXT.split())
_SUB = re.compile(r"[^\W_]+", re.UNICODE)
_NUM = re.compile(r"\d+(?:[.,]\d+)*")
_NAME = re.compile(r"[A-Z][a-z]{2,}")
# a line break ends a sentence: the token before it gets this mark (not a word character, not
# whitespace), so "5" at the end of a line is not mistaken for the list label "5."
_EOL = "\ue000"
_ENDS = frozenset(".!?:" + _EOL)


_LABEL = re.compile(r"\(?\d{1,3}[.)]")
_TOKEN_CACHE: dict[str, tuple[tuple[str, ...], tuple[str, ...], str | None, bool, bool]] = {}


def _token_features(t: str) -> tuple[tuple[str, ...], tuple[str, ...], str | None, bool, bool]:
    """(content-word stems, specifics, name of its first word, ends a sentence, looks like a
    list label "1." / "2)") of one whitespace token."""
    if t.isalpha() and t.islower():  # the common case, without the regular expressions
        if t in STOP_WORDS:
            return (), (), None, False, False
        num = NUMBER_WORDS.get(t)
        return (_stem(t),), () if num is None else (num,), None, False, False
    words: list[str] = []
    specs = [m.group().replace(",", "").rstrip(".").lstrip("0") or "0" for m in _NUM.finditer(t)]
    first_name = None
    for j, sw in enumerate(_SUB.findall(t)):
        low = sw.lower()
        if low in STOP_WORDS or low.isdigit():
            continue
        words.append(_stem(low))
        num = NUMBER_WORDS.get(low)
        if num is not None:
            specs.append(num)
        m2 = _NAME.match(sw)
        if m2 is not None and m2.group().lower() not in STOP_WORDS:
            if j == 0:
                first_name = "n:" + m2.group().lower()
            else:
                specs.append("n:" + m2.group().lower())
    return tuple(words), tuple(specs), first_name, t[-1:] in _ENDS, bool(_LABEL.fullmatch(t))


def _stem(w: str) -> str:
    for s in ("ing", "ed", "es", "s", "ly"):
        if w.endswith(s) and len(w) - len(s) >= 3:
            return w[: -len(s)]
    return w


@dataclass(frozen=True, slots=True)
class VerifierWeights:
    cos: float = 1.5
    words: float = 1.0
    specifics: float = 1.5
    length: float = 0.3


@dataclass(slots=True)
class TextFeatures:
    """Feature sets of many texts (CSR: text ``i`` owns ``ids[off[i]:off[i+1]]``), plus the
    whitespace-token sequence of every text when ``sequence=True`` was asked for."""

    words: tuple[np.ndarray, np.ndarray]  # (content-word ids, offsets)
    specs: tuple[np.ndarray, np.ndarray]  # (number/name ids, offsets)
    n_words: np.ndarray  # whitespace word count of every text
    seq_tok: np.ndarray | None = None  # per position: distinct-token index
    seq_off: np.ndarray | None = None  # CSR offsets of the token sequence
    seq_start: np.ndarray | None = None  # per position: the token starts a sentence
    tok_words: tuple[np.ndarray, np.ndarray] | None = None  # distinct token -> content ids
    tok_specs: tuple[np.ndarray, np.ndarray] | None = None  # distinct token -> specific ids
    tok_name: np.ndarray | None = None  # distinct token -> name id of its first word (-1)
    tok_text: list[str] | None = None  # distinct token -> its text
    tok_label: np.ndarray | None = None  # distinct token -> looks like a list label ("1.")

    @property
    def n_texts(self) -> int:
        return len(self.n_words)


def _expand(tok: np.ndarray, csr: tuple[np.ndarray, np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """(index into ``tok``, feature id) for every feature of every token in ``tok``."""
    ids, off = csr
    cnt = off[tok + 1] - off[tok]
    total = int(cnt.sum())
    at = np.repeat(np.arange(len(tok), dtype=np.int64), cnt)
    within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    return at, ids[np.repeat(off[tok], cnt) + within]


def _features_at(
    seq: TextFeatures, pos: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Content-word and specific features of the token at each position ``pos``:
    (index into ``pos``, word id), (index into ``pos``, specific id); a capitalised first word
    counts as a name unless it starts a sentence, and a list label ("1." / "2)") that starts a
    line or sentence is no quantity."""
    assert seq.seq_tok is not None and seq.seq_start is not None and seq.tok_name is not None
    assert seq.tok_words is not None and seq.tok_specs is not None and seq.tok_label is not None
    tok = seq.seq_tok[pos]
    wa, wi = _expand(tok, seq.tok_words)
    sa, si = _expand(tok, seq.tok_specs)
    quantity = ~(seq.tok_label[tok[sa]] & seq.seq_start[pos[sa]])
    sa, si = sa[quantity], si[quantity]
    nm = seq.tok_name[tok]
    named = np.flatnonzero((nm >= 0) & ~seq.seq_start[pos])
    return wa, wi, np.r_[sa, named], np.r_[si, nm[named]]


def _csr_sets(owner: np.ndarray, ids: np.ndarray, n: int) -> tuple[np.ndarray, np.ndarray]:
    keep = ids >= 0
    key = unique(owner[keep].astype(np.int64) << np.int64(31) | ids[keep].astype(np.int64))
    own = key >> np.int64(31)
    return (key & np.int64((1 << 31) - 1)).astype(np.int32), np.r_[
        0, np.cumsum(np.bincount(own, minlength=n))
    ].astype(np.int64)


class FeatureSpace:
    """Vocabulary of feature ids shared by the reference set and every text compared with it;
    IDF weights come from the reference set."""

    def __init__(self, ref_texts: Sequence[str], weights: VerifierWeights | None = None) -> None:
        self.w = weights or VerifierWeights()
        self._word_ids: dict[str, int] = {}
        self._spec_ids: dict[str, int] = {}
        self.ref = self.encode(ref_texts)
        n = self.ref.n_texts
        self._n_ref = n
        self._wdf = np.bincount(self.ref.words[0], minlength=len(self._word_ids))
        self._sdf = np.bincount(self.ref.specs[0], minlength=len(self._spec_ids))
        self.ref_wsum = self._sums(self.ref.words, self.word_idf())
        self.ref_ssum = self._sums(self.ref.specs, self.spec_idf())

    # -------------------------------------------------------------------------- encoding
    def _classify(
        self, toks: list[str]
    ) -> tuple[
        tuple[np.ndarray, np.ndarray],
        tuple[np.ndarray, np.ndarray],
        np.ndarray,
        np.ndarray,
        np.ndarray,
    ]:
        """Per distinct whitespace token: its content-word ids, its specific ids (numbers,
        number words, names after its first word), the name id of its first word, whether
        it ends a sentence and whether it looks like a list label."""
        wid, sid = self._word_ids, self._spec_ids
        w_ids: list[int] = []
        s_ids: list[int] = []
        w_off = [0]
        s_off = [0]
        name = np.full(len(toks), -1, np.int32)
        end = np.zeros(len(toks), dtype=bool)
        label = np.zeros(len(toks), dtype=bool)
        cache = _TOKEN_CACHE
        if len(cache) > 2_000_000:
            cache.clear()
        for i, t in enumerate(toks):
            f = cache.get(t)
            if f is None:
                f = cache[t] = _token_features(t)
            words, specs, first_name, ends, label[i] = f
            for w in words:
                w_ids.append(wid.setdefault(w, len(wid)))
            for x in specs:
                s_ids.append(sid.setdefault(x, len(sid)))
            if first_name is not None:
                name[i] = sid.setdefault(first_name, len(sid))
            end[i] = ends
            w_off.append(len(w_ids))
            s_off.append(len(s_ids))
        return (
            (np.array(w_ids, dtype=np.int32), np.array(w_off, dtype=np.int64)),
            (np.array(s_ids, dtype=np.int32), np.array(s_off, dtype=np.int64)),
            name,
            end,
            label,
        )

    def encode(self, texts: Sequence[str] | pa.Array, sequence: bool = False) -> TextFeatures:
        """Feature sets of ``texts`` (whitespace tokens in pyarrow; each distinct token is
        classified once in Python)."""
        arr = (
            texts if isinstance(texts, pa.Array) else pa.array(list(texts), type=pa.large_string())
        )
        arr = pc.fill_null(arr.cast(pa.large_string()), "")
        n = len(arr)
        # a line break ends a sentence (the next word is no name)
        lists = pc.utf8_split_whitespace(pc.replace_substring(arr, "\n", _EOL + "\n"))
        offsets = np.asarray(lists.offsets, dtype=np.int64)
        offsets = offsets - offsets[0]
        lengths = np.diff(offsets)
        enc = pc.dictionary_encode(lists.flatten())
        toks = enc.dictionary.to_pylist()
        tw, ts, name, end, label = self._classify(toks)
        idx = np.asarray(enc.indices, dtype=np.int64)
        owner = np.repeat(np.arange(n, dtype=np.int64), lengths)
        start = np.zeros(len(idx), dtype=bool)
        if len(idx):
            start[1:] = end[idx[:-1]]
            start[offsets[:-1][lengths > 0]] = True
        seq = TextFeatures(
            (np.zeros(0, np.int32), np.zeros(n + 1, np.int64)),
            (np.zeros(0, np.int32), np.zeros(n + 1, np.int64)),
            lengths,
            idx,
            offsets,
            start,
            tw,
            ts,
            name,
            toks,
            label,
        )
        wa, wi, sa, si = _features_at(seq, np.arange(len(idx), dtype=np.int64))
        seq.words = _csr_sets(owner[wa], wi, n)
        seq.specs = _csr_sets(owner[sa], si, n)
        if not sequence:
            seq.seq_tok = seq.seq_off = seq.seq_start = seq.tok_name = seq.tok_label = None
            seq.tok_words = seq.tok_specs = None
            seq.tok_text = None
        return seq

    # --------------------------------------------------------------------------- weights
    def _idf(self, df: np.ndarray, size: int) -> np.ndarray:
        full = np.zeros(size)
        full[: len(df)] = df
        return np.log((self._n_ref + 1) / (full + 1)) + 1

    def word_idf(self) -> np.ndarray:
        return self._idf(self._wdf, len(self._word_ids))

    def spec_idf(self) -> np.ndarray:
        return self._idf(self._sdf, len(self._spec_ids))

    @staticmethod
    def _sums(sets: tuple[np.ndarray, np.ndarray], w: np.ndarray) -> np.ndarray:
        ids, off = sets
        if len(ids) == 0:
            return np.zeros(len(off) - 1)
        return np.add.reduceat(np.r_[w[ids], 0.0], np.minimum(off[:-1], len(ids)))[
            : len(off) - 1
        ] * (np.diff(off) > 0)

    @staticmethod
    def _matrix(sets: tuple[np.ndarray, np.ndarray], w: np.ndarray) -> sp.csr_matrix:
        ids, off = sets
        return sp.csr_matrix((w[ids], ids, off), shape=(len(off) - 1, len(w)))

    # --------------------------------------------------------------------------- scoring
    def pair_features(
        self, items: np.ndarray, other: TextFeatures, rows: np.ndarray, chunk: int = 400_000
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(weighted dice of content words, weighted Jaccard of specifics, length ratio) of
        reference item ``items[p]`` against text ``rows[p]`` of ``other``, every pair at once."""
        widf, sidf = self.word_idf(), self.spec_idf()
        ones_w, ones_s = np.ones(len(widf)), np.ones(len(sidf))
        rw, rs = self._matrix(self.ref.words, widf), self._matrix(self.ref.specs, sidf)
        ow, os_ = self._matrix(other.words, ones_w), self._matrix(other.specs, ones_s)
        o_wsum, o_ssum = self._sums(other.words, widf), self._sums(other.specs, sidf)
        m = len(items)
        dice, spec = np.zeros(m), np.zeros(m)
        for s in range(0, m, chunk):
            it, ro = items[s : s + chunk], rows[s : s + chunk]
            iw = np.asarray(rw[it].multiply(ow[ro]).sum(axis=1)).ravel()
            isp = np.asarray(rs[it].multiply(os_[ro]).sum(axis=1)).ravel()
            tot = self.ref_wsum[it] + o_wsum[ro]
            dice[s : s + chunk] = np.where(tot > 0, 2 * iw / np.maximum(tot, 1e-12), 0.0)
            union = self.ref_ssum[it] + o_ssum[ro] - isp
            spec[s : s + chunk] = np.where(union > 1e-12, isp / np.maximum(union, 1e-12), 0.5)
        a = self.ref.n_words[items].clip(1)
        b = other.n_words[rows].clip(1)
        return dice, spec, np.minimum(a, b) / np.maximum(a, b)

    def combine(self, cos: np.ndarray, f: tuple[np.ndarray, np.ndarray, np.ndarray]) -> np.ndarray:
        w = self.w
        return w.cos * cos + w.words * f[0] + w.specifics * f[1] + w.length * f[2]

    def score_pairs(
        self, items: np.ndarray, other: TextFeatures, rows: np.ndarray, cos: np.ndarray
    ) -> np.ndarray:
        return self.combine(np.asarray(cos, float), self.pair_features(items, other, rows))

    def upper_bound(self, items: np.ndarray, other: TextFeatures, rows: np.ndarray) -> np.ndarray:
        """The best verifier score any window of text ``rows[p]`` could reach against
        ``items[p]`` (cosine 1, length ratio 1, the window holding every shared feature and
        nothing else)."""
        widf, sidf = self.word_idf(), self.spec_idf()
        rw, rs = self._matrix(self.ref.words, widf), self._matrix(self.ref.specs, sidf)
        ow = self._matrix(other.words, np.ones(len(widf)))
        os_ = self._matrix(other.specs, np.ones(len(sidf)))
        iw = np.asarray(rw[items].multiply(ow[rows]).sum(axis=1)).ravel()
        isp = np.asarray(rs[items].multiply(os_[rows]).sum(axis=1)).ravel()
        a_w, a_s = self.ref_wsum[items], self.ref_ssum[items]
        dice = np.where(a_w + iw > 0, 2 * iw / np.maximum(a_w + iw, 1e-12), 0.0)
        spec = np.where(a_s > 0, isp / np.maximum(a_s, 1e-12), 0.5)
        w = self.w
        return w.cos + w.words * dice + w.specifics * spec + w.length

    # -------------------------------------------------------------------------- passages
    def best_windows(
        self,
        items: np.ndarray,
        seq: TextFeatures,
        rows: np.ndarray,
        scale: float = 1.0,
        snap: str = "none",
    ) -> tuple[Windows, TextFeatures]:
        """For every pair, the window of text ``rows[p]`` (``scale`` × the item's length in
        words, at least 8) holding the most IDF weight of the item's content words and
        specifics: the window (its text on demand, for embedding) and its feature sets.
        ``snap``: "none", "out" or "in" (move the ends to sentence boundaries, see below)."""
        assert seq.seq_tok is not None and seq.seq_off is not None
        assert seq.seq_start is not None and seq.tok_text is not None
        widf, sidf = self.word_idf(), self.spec_idf()
        m = len(items)
        lo, hi = seq.seq_off[rows], seq.seq_off[rows + 1]
        length = hi - lo
        win = np.minimum(np.maximum(8, np.round(scale * self.ref.n_words[items])), length)
        win = np.maximum(win, 1).astype(np.int64)
        total = int(length.sum())
        start = np.r_[0, np.cumsum(length)][:-1]
        pos = np.arange(total, dtype=np.int64) - np.repeat(start, length) + np.repeat(lo, length)
        # hit weight of every position: IDF of the item's content words / specifics it holds
        vw, vs = len(widf), len(sidf)
        ref_wkey = _set_keys(self.ref.words, vw)
        ref_skey = _set_keys(self.ref.specs, vs)
        it = np.repeat(items.astype(np.int64), length)
        wa, wi, sa, si = _features_at(seq, pos)
        hw = np.where(_member(it[wa] * vw + wi, ref_wkey), widf[wi], 0.0)
        hs = np.where(_member(it[sa] * vs + si, ref_skey), sidf[si], 0.0)
        weight = np.bincount(wa, hw, minlength=total) + np.bincount(sa, hs, minlength=total)
        cs = np.r_[0.0, np.cumsum(weight)]
        # window starting at position j of pair p covers [j, j + win[p]) inside the pair
        local = np.arange(total, dtype=np.int64) - np.repeat(start, length)
        wrep = np.repeat(win, length)
        valid = local + wrep <= np.repeat(length, length)
        g = np.arange(total, dtype=np.int64)
        val = np.where(valid, cs[np.minimum(g + wrep, total)] - cs[g], -1.0)
        # among the starts that reach the best weight, the middle one (the window centred on
        # the item's words rather than padded with unrelated text on one side)
        best = np.zeros(m, dtype=np.int64)
        seg = start[length > 0]
        if total:
            top = np.maximum.reduceat(val, seg)
            full_top = np.full(m, -1.0)
            full_top[length > 0] = top
            tie = valid & (val >= np.repeat(full_top, length) - 1e-9)
            first = np.minimum.reduceat(np.where(tie, local, total), seg)
            last = np.maximum.reduceat(np.where(tie, local, -1), seg)
            best[length > 0] = (first + last) // 2
        # whole sentences embed and compare more cleanly: "out" widens the window to the
        # sentence boundaries around it (up to 1.8x its length), "in" narrows it to the
        # sentences inside it (at least half its length)
        wl = win
        if snap != "none" and m:
            bnd = unique(np.r_[np.flatnonzero(seq.seq_start), seq.seq_off])
            s0, e0 = lo + best, lo + best + win
            if snap == "out":
                a, b = _boundary(bnd, s0, lo, hi, before=True), _boundary(bnd, e0, lo, hi, False)
                ok = (b > a) & (b - a <= 1.8 * win)
            else:
                a, b = _boundary(bnd, s0, lo, hi, before=False), _boundary(bnd, e0, lo, hi, True)
                ok = (b > a) & (b - a >= 0.5 * win)
            best = np.where(ok, a - lo, best)
            wl = np.where(ok, b - a, win).astype(np.int64)
        # features of the chosen windows and their texts
        wpos = np.arange(int(wl.sum()), dtype=np.int64) - np.repeat(
            np.r_[0, np.cumsum(wl)][:-1], wl
        )
        wpos += np.repeat(lo + best, wl)
        owner = np.repeat(np.arange(m, dtype=np.int64), wl)
        wa, wi, sa, si = _features_at(seq, wpos)
        feats = TextFeatures(_csr_sets(owner[wa], wi, m), _csr_sets(owner[sa], si, m), wl)
        return Windows(seq.seq_tok[wpos], np.r_[0, np.cumsum(wl)], seq.tok_text), feats


@dataclass(slots=True)
class Windows:
    """Token spans of chosen windows; texts are joined only for the windows asked for."""

    tok: np.ndarray
    cuts: np.ndarray
    vocab: list[str]

    def texts(self, which: Sequence[int]) -> list[str]:
        v, t, c = self.vocab, self.tok, self.cuts
        return [
            " ".join([v[x] for x in t[c[p] : c[p + 1]].tolist()]).replace(_EOL, ".") for p in which
        ]


def _boundary(
    sorted_pos: np.ndarray, x: np.ndarray, lo: np.ndarray, hi: np.ndarray, before: bool
) -> np.ndarray:
    """The element of ``sorted_pos`` at or before (``before``) / at or after each ``x``,
    clipped to ``[lo, hi]``."""
    if before:
        i = np.searchsorted(sorted_pos, x, "right") - 1
        v = sorted_pos[np.clip(i, 0, len(sorted_pos) - 1)]
        return np.where(i >= 0, np.maximum(v, lo), lo)
    i = np.searchsorted(sorted_pos, x, "left")
    v = sorted_pos[np.clip(i, 0, len(sorted_pos) - 1)]
    return np.where(i < len(sorted_pos), np.minimum(v, hi), hi)


def _set_keys(sets: tuple[np.ndarray, np.ndarray], v: int) -> np.ndarray:
    ids, off = sets
    own = np.repeat(np.arange(len(off) - 1, dtype=np.int64), np.diff(off))
    return np.sort(own * v + ids.astype(np.int64))


def _member(keys: np.ndarray, sorted_keys: np.ndarray) -> np.ndarray:
    if len(sorted_keys) == 0:
        return np.zeros(len(keys), bool)
    pos = np.minimum(np.searchsorted(sorted_keys, keys), len(sorted_keys) - 1)
    return sorted_keys[pos] == keys


def candidates(
    queries: np.ndarray,
    refs: np.ndarray,
    k: int,
    min_cos: float,
    nprobe: int = 8,
    exact_limit: float = 5e7,
    seed: int = 0,
    block: int = 8192,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(query row, reference row, cosine) of the top ``k`` references of every query with
    cosine >= ``min_cos``. Small problems are searched exactly (blocked float32 products);
    larger ones through an inverted file: the references are split into ~sqrt(n) spherical
    k-means cells and each query scans its ``nprobe`` nearest cells only (never all pairs; 2
    cells when ``min_cos`` >= 0.9).
    Only pairs above ``min_cos`` are kept from each block (a sparse threshold, no full sort)."""
    from ftprep.distribution.knn import spherical_kmeans

    empty = np.zeros(0, np.int64), np.zeros(0, np.int64), np.zeros(0, np.float32)
    nq, nr = len(queries), len(refs)
    if nq == 0 or nr == 0 or min_cos > 1.0:
        return empty
    q = np.asarray(queries, dtype=np.float32)
    r = np.asarray(refs, dtype=np.float32)
    qs: list[np.ndarray] = []
    rs: list[np.ndarray] = []
    cs: list[np.ndarray] = []

    def keep(sim: np.ndarray, q_rows: np.ndarray, r_rows: np.ndarray) -> None:
        a, b = np.nonzero(sim >= min_cos)
        if len(a):
            qs.append(q_rows[a])
            rs.append(r_rows[b])
            cs.append(sim[a, b])

    if float(nq) * nr <= exact_limit or nr < 64:
        r_t = np.ascontiguousarray(r.T)
        all_r = np.arange(nr, dtype=np.int64)
        for s in range(0, nq, block):
            keep(q[s : s + block] @ r_t, np.arange(s, min(nq, s + block), dtype=np.int64), all_r)
    else:
        n_cells = max(8, int(np.sqrt(nr)))
        # near-identical vectors share their cell: a high threshold needs fewer cells
        probe = min(nprobe if min_cos < 0.9 else 2, n_cells)
        cent = spherical_kmeans(r, n_cells, seed=seed)
        cell = np.argmax(r @ cent.T, axis=1)
        members = np.argsort(cell, kind="stable")
        bounds = np.searchsorted(cell[members], np.arange(n_cells + 1))
        q_cells = np.empty((nq, probe), dtype=np.int32)
        for s in range(0, nq, block):
            cq = q[s : s + block] @ cent.T
            q_cells[s : s + block] = np.argpartition(-cq, probe - 1, axis=1)[:, :probe]
        flat = q_cells.ravel()
        by_cell = np.argsort(flat, kind="stable")
        cb = np.searchsorted(flat[by_cell], np.arange(n_cells + 1))
        for c in range(n_cells):
            mem = members[bounds[c] : bounds[c + 1]]
            qrows = (by_cell[cb[c] : cb[c + 1]] // probe).astype(np.int64)
            if len(mem) == 0 or len(qrows) == 0:
                continue
            r_t = np.ascontiguousarray(r[mem].T)
            for s in range(0, len(qrows), block):
                part = qrows[s : s + block]
                keep(q[part] @ r_t, part, mem)
    if not qs:
        return empty
    qi, ri, cv = np.concatenate(qs), np.concatenate(rs), np.concatenate(cs)
    order = np.lexsort((-cv, qi))
    qi, ri, cv = qi[order], ri[order], cv[order]
    first = np.searchsorted(qi, qi, "left")
    top = (np.arange(len(qi)) - first) < k
    return qi[top], ri[top], cv[top]


def calibrate(
    space: FeatureSpace,
    ref_emb: np.ndarray,
    k: int,
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
    s = space.score_pairs(ri, space.ref, qi, cos)
    best = np.full(n, -np.inf)
    np.maximum.at(best, qi, s)
    return best[np.isfinite(best)]
