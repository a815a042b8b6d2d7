"""Fuzzy word alignment: is a short eval item present, lightly edited, as one span of a record?

Character n-gram containment is robust to typos but cannot tell a typo ("Whho signed...") from a
different word ("...stop snowing?" against "...stop raining?"), and over a whole long record it
adds up n-grams scattered over unrelated sentences. This test works on words instead:

* two words *match* when they are equal after normalisation, or both have at least 3
  characters and are one edit apart (substitution, insertion, deletion or adjacent
  transposition — optimal string alignment distance 1), or both have at least 8 characters and
  are two edits apart; a word with a digit matches only a number, exactly, or one edit apart
  when both have 4+ characters (a changed number is a different item: "Area 51");
* the best **window** of the record about as long as the item (``len(item) * (1 + slack) + 2``
  words) is found, then the item is aligned with it: the longest common subsequence (each
  record word serves one item word), then the remaining item words anywhere in the window
  (*moved*, e.g. a word swap);
* each difference has a cost: a content word (4+ characters or a number) not found 2, a word of
  up to 3 characters not found 1, a typo, a moved word or a record word inserted inside the
  matched span 0.5 — and the item is present when the total is at most
  ``1 + len(item) / per_miss``. A template sibling that differs in one real word costs 2 and is
  not a match; one typo plus one swap is;
* an item with fewer than three content words ("Why is the sky blue?", "neural networks") is
  no evidence of a copy inside a longer text: it counts only when the record is about as short
  as the item (at most ``2 * len(item) + 2`` words) and differs by at most one typo.

Measured on real SFT data (Alpaca, LIMA and Dolly records against 4,840 TruthfulQA / MMLU / BBH
questions of up to 12 words; 30,000 sampled pairs that share two rare words): the earlier
any-order, set-based rule confirmed 1,117 unrelated pairs, this one 12 (generic phrases the
record does contain, such as "which of the following statements is true"). On 1,500 of the
questions, lightly edited (``plant.light_edit``) / harshly edited (typos, arbitrary swaps), the
edited copy alone is found 0.986 / 0.992 of the time (earlier rule 0.977 / 0.984); buried in
Alpaca text 0.939 / 0.937 (earlier 0.983 / 0.993) — the difference is almost all items of
fewer than three content words ("in adolescence", "gluten"), which no longer count inside a
longer text.

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
from functools import lru_cache

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


def is_number(w: str) -> bool:
    return any(c.isdigit() for c in w)


@lru_cache(maxsize=1 << 16)
def words_match(a: str, b: str) -> bool:
    if a == b:
        return True
    if is_number(a) or is_number(b):
        # a changed number makes a different item ("Area 51", a sibling with other values);
        # only a long number may carry a typo
        return (
            is_number(a)
            and is_number(b)
            and min(len(a), len(b)) >= 4
            and osa_distance(a, b, 1) <= 1
        )
    n = min(len(a), len(b))
    if n < 3:
        return False
    limit = 2 if n >= 8 else 1
    # one edit changes the set of characters by at most one removed and one added
    if abs(len(a) - len(b)) > limit or len(set(a).symmetric_difference(b)) > 2 * limit:
        return False
    return osa_distance(a, b, limit) <= limit


# costs of the differences between an item and a stretch of a record (see contains_item)
MISS_CONTENT = 2.0  # a content word (4+ characters or a number) not found: a different item
MISS_SHORT = 1.0  # a word of up to 3 characters not found
EDIT_COST = 0.5  # a typo, a moved word, a word inserted inside the span


class RecordWords:
    """A record's words indexed for :func:`best_window`: positions of every word, and (built
    on demand, per word length) the symmetric-delete table that finds the words one edit away.
    Reused for every item paired with the same record."""

    __slots__ = ("_by_len", "_dels", "where", "words")

    def __init__(self, record: list[str]) -> None:
        self.words = record
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
    return _best_window(item, record, slack)[0]


def _best_window(
    item: list[str], record: list[str] | RecordWords, slack: float
) -> tuple[set[int], int, int]:
    """:func:`best_window` and the record positions ``[lo, hi)`` of its hits."""
    if not item or not record:
        return set(), 0, 0
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
        return set(), 0, 0
    hits.sort()
    width = int(len(item) * (1 + slack)) + 2
    counts: dict[int, int] = defaultdict(int)
    best: set[int] = set()
    span = (0, 0)
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
            span = (hits[lo][0], hits[hi][0] + 1)
    return best, span[0], span[1]


def _align(item: list[str], window: list[str]) -> tuple[int, int, int, list[int], int]:
    """Align an item with a stretch of a record: ``(words matched in order, of them only
    fuzzily, words matched out of order, item indices not found, record words inserted inside
    the matched span)``. The in-order matches are a longest common subsequence (exact matches
    preferred); a remaining item word may match any unused word of the stretch (a moved word,
    whose new place is not counted as an insertion)."""
    n, m = len(item), len(window)
    eq = [[(2 if a == b else 1 if words_match(a, b) else 0) for b in window] for a in item]
    dp = [[(0, 0)] * (m + 1) for _ in range(n + 1)]
    for i in range(1, n + 1):
        row, prev, e_row = dp[i], dp[i - 1], eq[i - 1]
        for j in range(1, m + 1):
            best = prev[j] if prev[j] >= row[j - 1] else row[j - 1]
            e = e_row[j - 1]
            if e:
                p = prev[j - 1]
                cand = (p[0] + 1, p[1] + (e == 2))
                if cand > best:
                    best = cand
            row[j] = best
    used: set[int] = set()
    matched: set[int] = set()
    i, j = n, m
    while i > 0 and j > 0:
        e = eq[i - 1][j - 1]
        p = dp[i - 1][j - 1]
        if e and dp[i][j] == (p[0] + 1, p[1] + (e == 2)):
            matched.add(i - 1)
            used.add(j - 1)
            i, j = i - 1, j - 1
        elif dp[i - 1][j] == dp[i][j]:
            i -= 1
        else:
            j -= 1
    in_order, exact = dp[n][m]
    lo_u, hi_u = (min(used), max(used)) if used else (0, -1)
    moved = 0
    left = []
    for k in range(n):
        if k in matched:
            continue
        for jj in range(m):
            if jj not in used and eq[k][jj]:
                used.add(jj)
                moved += 1
                break
        else:
            left.append(k)
    inserted = sum(1 for jj in range(lo_u, hi_u + 1) if jj not in used)
    return in_order, in_order - exact, moved, left, inserted


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
    if strict:
        found = best_window(iw, rw, slack)
        missed = sum(1 for k in range(len(iw)) if k not in found)
        return missed <= len(iw) // per_miss, len(found) / len(iw)
    rec = rw if isinstance(rw, RecordWords) else RecordWords(rw)
    found, lo, hi = _best_window(iw, rec, slack)
    n = len(iw)
    if not found:
        return False, 0.0
    content = [len(w) >= 4 or is_number(w) for w in iw]
    if sum(content) < 3 and len(rec.words) > 2 * n + 2:
        # an item with fewer than three content words inside a longer text is no evidence
        # of a copy ("why is the sky blue", "neural networks"): only a record that is about
        # the item itself can be one
        return False, len(found) / n
    width = int(n * (1 + slack)) + 2
    regions = {
        (lo, hi),
        (lo, min(len(rec.words), lo + width)),
        (max(0, hi - width), hi),
        (max(0, hi - width), min(len(rec.words), lo + width)),
    }
    best_cost, share = float("inf"), 0.0
    for a, b in regions:
        in_order, fuzzy, moved, left, inserted = _align(iw, rec.words[a:b])
        cost = sum(MISS_CONTENT if content[k] else MISS_SHORT for k in left) + EDIT_COST * (
            moved + fuzzy + inserted
        )
        if cost < best_cost:
            best_cost, share = cost, (in_order + moved) / n
    return best_cost <= (1.0 + n / per_miss if sum(content) >= 3 else EDIT_COST), share


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
