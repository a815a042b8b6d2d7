"""Fuzzy word alignment: is a short eval item present, lightly edited, as one span of a record?

Character n-gram containment is robust to typos but cannot tell a typo ("Whho signed...") from a
different word ("...stop snowing?" against "...stop raining?"), and over a whole long record it
adds up n-grams scattered over unrelated sentences. This test works on words instead:

* two words *match* when they are equal after normalisation, or both have at least 3
  characters and are one edit apart (substitution, insertion, deletion or adjacent
  transposition — optimal string alignment distance 1), or both have at least 8 characters and
  are two edits apart;
* the item's words must be found inside **one window** of the record about as long as the item
  (``len(item) * (1 + slack) + 2`` words), in any order (word swaps are a light edit);
* the item is present when at most ``floor(len(item) / per_miss)`` of its words of 3 or more
  characters are missing from the best window (words of 1-2 characters cannot be matched
  fuzzily and are not counted against it) — with the default ``per_miss=8``, every real word of
  an item of up to 7 words must be there, so a template sibling that differs in one real word
  is not a match.

Used to verify candidate pairs that the cheaper stages proposed; it never generates candidates:
every pair of a short item (at most ``near_fuzzy_words`` words), and the pairs of longer items
that keep a fair share of their word pairs but miss the containment rule (an item padded with
option letters, digits and symbols has few informative word pairs, and two swaps or typos
break most of them) — for those, in a strict form where the words of 1-2 characters (digits,
option letters) count too and must be found exactly: such an item's real words are few, and
a same-template sibling ("Let x = 1. What is x << 3 in Python 3?" against "What is the output
of "abc"[::-1] in Python 3?") differs mostly in its digits and symbols.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Sequence

from ftprep.examples import normalize_column


def words_batch(texts: Sequence[str]) -> list[list[str]]:
    """Normalised words of many texts at once (the exact-duplicate normalisation, vectorised)."""
    return [str(t).split() for t in normalize_column(list(texts)).to_pylist()]


def words(text: str) -> list[str]:
    return words_batch([text])[0]


def osa_distance(a: str, b: str, limit: int = 2) -> int:
    """Optimal string alignment distance (edits incl. adjacent transpositions), capped at
    ``limit + 1``."""
    if a == b:
        return 0
    la, lb = len(a), len(b)
    if abs(la - lb) > limit:
        return limit + 1
    prev2: list[int] = []
    prev = list(range(lb + 1))
    for i in range(1, la + 1):
        cur = [i] + [0] * lb
        best = cur[0]
        for j in range(1, lb + 1):
            cost = 0 if a[i - 1] == b[j - 1] else 1
            v = min(prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + cost)
            if i > 1 and j > 1 and a[i - 1] == b[j - 2] and a[i - 2] == b[j - 1]:
                v = min(v, prev2[j - 2] + 1)
            cur[j] = v
            best = min(best, v)
        if best > limit:
            return limit + 1
        prev2, prev = prev, cur
    return min(prev[lb], limit + 1)


def words_match(a: str, b: str) -> bool:
    if a == b:
        return True
    n = min(len(a), len(b))
    if n < 3:
        return False
    limit = 2 if n >= 8 else 1
    # one edit changes the set of characters by at most one removed and one added
    if abs(len(a) - len(b)) > limit or len(set(a).symmetric_difference(b)) > 2 * limit:
        return False
    return osa_distance(a, b, limit) <= limit


class RecordWords:
    """A record's words indexed for :func:`best_window`: positions of every word, and (built
    on demand, per word length) the symmetric-delete table that finds the words one edit away.
    Reused for every item paired with the same record."""

    __slots__ = ("_by_len", "_dels", "where")

    def __init__(self, record: list[str]) -> None:
        self.where: dict[str, list[int]] = defaultdict(list)
        for pos, w in enumerate(record):
            self.where[w].append(pos)
        self._by_len: dict[int, list[str]] = defaultdict(list)
        for w in self.where:
            self._by_len[len(w)].append(w)
        self._dels: dict[int, dict[str, set[str]]] = {}

    def dels(self, length: int) -> dict[str, set[str]]:
        """Words of ``length`` (>= 3 characters) and each of their 1-deletions -> the words."""
        d = self._dels.get(length)
        if d is None:
            d = self._dels[length] = defaultdict(set)
            if length >= 3:
                for w in self._by_len.get(length, ()):
                    d[w].add(w)
                    for i in range(len(w)):
                        d[w[:i] + w[i + 1 :]].add(w)
        return d

    def long_words(self, length: int) -> list[str]:
        """Words of 8+ characters within two of ``length``."""
        return [c for n in range(max(8, length - 2), length + 3) for c in self._by_len.get(n, ())]


def best_window(item: list[str], record: list[str] | RecordWords, slack: float = 0.5) -> set[int]:
    """The item word indices found (fuzzily) inside the best window of the record of
    ``len(item) * (1 + slack) + 2`` words."""
    if not item or not record:
        return set()
    rec = record if isinstance(record, RecordWords) else RecordWords(record)
    where = rec.where
    hits: list[tuple[int, int]] = []  # (record position, item word index)
    for k, w in enumerate(item):
        if w in where:
            hits.extend((pos, k) for pos in where[w])
        if len(w) < 3:
            continue
        # a lightly edited copy may also be there: words one edit apart share the word
        # itself or a 1-deletion (symmetric deletes, among words whose length is within one)
        keys = [w] + [w[:i] + w[i + 1 :] for i in range(len(w))]
        cands: set[str] = set()
        for n in (len(w) - 1, len(w), len(w) + 1):
            d = rec.dels(n)
            for key in keys:
                cands |= d.get(key, set())
        if len(w) >= 8:
            cands.update(rec.long_words(len(w)))
        for cand in cands:
            if cand != w and words_match(w, cand):
                hits.extend((pos, k) for pos in where[cand])
    if not hits:
        return set()
    hits.sort()
    width = int(len(item) * (1 + slack)) + 2
    counts: dict[int, int] = defaultdict(int)
    best: set[int] = set()
    lo = 0
    for hi in range(len(hits)):
        counts[hits[hi][1]] += 1
        while hits[hi][0] - hits[lo][0] >= width:
            k = hits[lo][1]
            counts[k] -= 1
            if counts[k] == 0:
                del counts[k]
            lo += 1
        if len(counts) > len(best):
            best = set(counts)
    return best


def contains_item(
    item: str | list[str],
    record: str | list[str] | RecordWords,
    per_miss: int = 8,
    slack: float = 0.5,
    strict: bool = False,
) -> tuple[bool, float]:
    """(present, share of the item's words found in the best window). ``strict``: words of 1-2
    characters (digits, option letters, symbols' remains) count against the match too — they
    must be found exactly."""
    iw = words(item) if isinstance(item, str) else item
    rw = words(record) if isinstance(record, str) else record
    if not iw:
        return False, 0.0
    found = best_window(iw, rw, slack)
    missed = sum(1 for k, w in enumerate(iw) if k not in found and (strict or len(w) >= 3))
    return missed <= len(iw) // per_miss, len(found) / len(iw)


def confirm_pairs(
    records: Sequence[str],
    items: Sequence[str],
    rec: Sequence[int],
    item: Sequence[int],
    max_words: int,
    per_miss: int = 8,
    also: Sequence[bool] | None = None,
) -> tuple[list[bool], list[bool]]:
    """For candidate pairs (``records[rec[k]]``, ``items[item[k]]``): whether the item is short
    (at most ``max_words`` words) and whether :func:`contains_item` finds it in the record —
    tested for the short items, and for the longer items of the pairs marked in ``also``
    (whose word pairs missed the containment rule) in its strict form (every word counts,
    digits and option letters too), False for the others. Texts are normalised once per
    distinct record and item."""
    u_item = sorted(set(item))
    iw = dict(zip(u_item, words_batch([items[i] for i in u_item]), strict=True))
    short = [0 < len(iw[j]) <= max_words for j in item]
    test = short if also is None else [s or bool(a) for s, a in zip(short, also, strict=True)]
    # only the records of a tested pair are normalised
    u_rec = sorted({r for r, t in zip(rec, test, strict=True) if t})
    rw = {
        r: RecordWords(w)
        for r, w in zip(u_rec, words_batch([records[i] for i in u_rec]), strict=True)
    }
    found = [
        t and len(iw[j]) > 0 and contains_item(iw[j], rw[r], per_miss, strict=not s)[0]
        for r, j, t, s in zip(rec, item, test, short, strict=True)
    ]
    return short, found
