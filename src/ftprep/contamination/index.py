"""Containment search: which reference items have most of their shingles inside a record.

The reference side (benchmark items, validation/test, production holdout: thousands of short
items) is indexed as a sorted array of shingle hashes with the items that contain each one. A
record's shingles are looked up with one vectorised pass (a cache-resident bitmap of the
indexed hashes rejects almost every shingle before the binary search), and every (record,
item) pair that shares a shingle is counted. ``containment = shared / |item shingles|`` is the
share of the item found in the record, however long the record is, which is what a leaked
item buried inside a longer training example needs (Jaccard would shrink with the record's
length).

``sample=k`` indexes only a bottom-k MinHash sample of each item's shingles (the ``k`` with the
smallest mixed hash): the share of the sample found in a record is an unbiased estimate of the
containment, and far fewer record shingles hit the index. :meth:`ShingleIndex.verify` then
computes the exact containment of the few candidate pairs.

Shingles that occur in more than ``max_df`` reference items (templates, boilerplate such as
"which of the following") carry no evidence of a specific item and are left out of the index
and of the item's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftprep.contamination.text import fmix64, unique

_BITMAP_BITS = 24


@dataclass(slots=True)
class PairCounts:
    """Shared-shingle counts of (record, item) pairs."""

    record: np.ndarray  # int64
    item: np.ndarray  # int64
    shared: np.ndarray  # int64
    containment: np.ndarray  # float64: shared / indexed size of the item


def _empty() -> PairCounts:
    z = np.zeros(0, np.int64)
    return PairCounts(z, z, z, np.zeros(0))


def _dedupe_pairs(h: np.ndarray, o: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Distinct (hash, owner) pairs ordered by hash, then owner."""
    # owners come nondecreasing from ngram_hashes: one stable sort by hash keeps them ordered
    monotone = len(o) < 2 or bool((o[1:] >= o[:-1]).all())
    order = np.argsort(h, kind="stable") if monotone else np.lexsort((o, h))
    h, o = h[order], o[order]
    keep = np.r_[True, (h[1:] != h[:-1]) | (o[1:] != o[:-1])] if len(h) else np.zeros(0, bool)
    return h[keep], o[keep]


def group_salt(group: np.ndarray) -> np.ndarray:
    """A 64-bit salt per reference-set number: XOR-ed into a hash, it keeps equal hashes of
    different sets apart when counting in how many items of *its own* set a hash occurs."""
    return fmix64(np.asarray(group).astype(np.uint64) + np.uint64(0x3C6EF372FE94F82B))


def _frequent_out(
    h: np.ndarray, o: np.ndarray, group: np.ndarray | None, max_df: int
) -> tuple[np.ndarray, np.ndarray]:
    """Drop the (shingle, item) rows whose shingle occurs in more than ``max_df`` items of the
    item's reference set (``group[item]``; one set when ``group`` is None)."""
    key = h if group is None else h ^ group_salt(group[o])
    _, inv, df = unique(key, return_inverse=True, return_counts=True)
    keep = df[inv] <= max_df
    return h[keep], o[keep]


class ShingleIndex:
    """``group`` (reference-set number per item) lets one index serve several reference sets
    searched in one pass over the records: document frequencies (``max_df``) are counted within
    each item's own set, so every set is filtered exactly as if it were indexed alone."""

    def __init__(
        self,
        hashes: np.ndarray,
        owner: np.ndarray,
        n_items: int,
        max_df: int | None = 10,
        sample: int | None = None,
        group: np.ndarray | None = None,
    ) -> None:
        self.n_items = n_items
        h, o = _dedupe_pairs(hashes, owner.astype(np.int64))
        if max_df is not None and len(h):
            h, o = _frequent_out(h, o, group, max_df)
        # the item's full (df-filtered) shingle set, for exact verification
        by_item = np.argsort(o, kind="stable")  # (h, o) ordered by h: now by item, then h
        self.item_h, self.item_o = h[by_item], o[by_item]
        self.full_size = np.bincount(o, minlength=n_items).astype(np.int64)
        self.item_start = np.r_[0, np.cumsum(self.full_size)].astype(np.int64)
        if sample is not None and len(h):
            mixed = fmix64(self.item_h ^ np.uint64(0xA5A5A5A5A5A5A5A5))
            order = np.lexsort((mixed, self.item_o))
            rank = np.arange(len(order)) - self.item_start[self.item_o[order]]
            chosen = order[rank < sample]
            h, o = self.item_h[chosen], self.item_o[chosen]
        order = np.argsort(h, kind="stable")
        h, o = h[order], o[order]
        uniq, start, df = unique(h, return_index=True, return_counts=True)
        self.keys = uniq
        self.start = start.astype(np.int64)
        self.df = df.astype(np.int64)
        self.owners = o
        self.size = np.bincount(o, minlength=n_items).astype(np.int64)
        self.bitmap = np.zeros(1 << _BITMAP_BITS, dtype=bool)
        self.bitmap[(uniq & np.uint64((1 << _BITMAP_BITS) - 1)).astype(np.int64)] = True

    def query(
        self,
        hashes: np.ndarray,
        owner: np.ndarray,
        min_shared: int = 1,
        max_pairs: int = 50_000_000,
    ) -> PairCounts:
        """Count shared (indexed) shingles for every (record, item) pair with at least
        ``min_shared``; ``containment`` is relative to the indexed size of the item."""
        if len(self.keys) == 0 or len(hashes) == 0:
            return _empty()
        maybe = np.flatnonzero(
            self.bitmap[(hashes & np.uint64((1 << _BITMAP_BITS) - 1)).astype(np.int64)]
        )
        if len(maybe) == 0:
            return _empty()
        hq = hashes[maybe]
        pos = np.searchsorted(self.keys, hq)
        pos[pos >= len(self.keys)] = 0
        hit = self.keys[pos] == hq
        if not hit.any():
            return _empty()
        pos, rec = pos[hit], owner[maybe[hit]].astype(np.int64)
        # one hit per (record, shingle): a record repeating a shingle shares it once
        rk = unique(rec * np.int64(len(self.keys)) + pos)
        rec, pos = rk // len(self.keys), rk % len(self.keys)
        counts = self.df[pos]
        total = int(counts.sum())
        if total > max_pairs:
            raise MemoryError(f"containment search would expand to {total:,} pairs; lower max_df")
        rec_rep = np.repeat(rec, counts)
        starts = np.repeat(self.start[pos], counts)
        within = np.arange(total, dtype=np.int64) - np.repeat(np.cumsum(counts) - counts, counts)
        items = self.owners[starts + within]
        pair = rec_rep * np.int64(self.n_items) + items
        up, shared = unique(pair, return_counts=True)
        keep = shared >= min_shared
        up, shared = up[keep], shared[keep]
        r, i = up // self.n_items, up % self.n_items
        cont = shared / np.maximum(self.size[i], 1)
        return PairCounts(r, i, shared.astype(np.int64), cont)

    def verify(
        self, records: np.ndarray, items: np.ndarray, hashes: np.ndarray, owner: np.ndarray
    ) -> np.ndarray:
        """Exact containment of each (record, item) pair over the item's full shingle set;
        ``hashes``/``owner`` are the records' shingles (``owner`` nondecreasing)."""
        return pair_containment(self.item_h, self.item_start, records, items, hashes, owner)


def pair_containment(
    item_h: np.ndarray,
    item_start: np.ndarray,
    records: np.ndarray,
    items: np.ndarray,
    hashes: np.ndarray,
    owner: np.ndarray,
) -> np.ndarray:
    """Share of item ``items[p]``'s shingles (``item_h[item_start[i]:item_start[i+1]]``, each
    once) found among the shingles of record ``records[p]`` (``hashes`` with nondecreasing
    ``owner``), for every pair at once: both sides are keyed by (record, shingle) hashes and
    matched with one sorted search."""
    m = len(records)
    out = np.zeros(m)
    if m == 0:
        return out
    records = records.astype(np.int64)
    urec = unique(records)
    lo = np.searchsorted(owner, urec, "left")
    hi = np.searchsorted(owner, urec, "right")
    cnt = hi - lo
    pos = np.arange(int(cnt.sum()), dtype=np.int64) - np.repeat(np.cumsum(cnt) - cnt, cnt)
    pos += np.repeat(lo, cnt)
    salt = fmix64(urec.astype(np.uint64) + np.uint64(0x9E3779B97F4A7C15))
    rec_keys = unique(fmix64(hashes[pos] ^ np.repeat(salt, cnt)))
    size = (item_start[items + 1] - item_start[items]).astype(np.int64)
    ipos = np.arange(int(size.sum()), dtype=np.int64) - np.repeat(np.cumsum(size) - size, size)
    ipos += np.repeat(item_start[items], size)
    psalt = salt[np.searchsorted(urec, records)]
    keys = fmix64(item_h[ipos] ^ np.repeat(psalt, size))
    if len(rec_keys) and len(keys):
        at = np.minimum(np.searchsorted(rec_keys, keys), len(rec_keys) - 1)
        hit = (rec_keys[at] == keys).astype(np.float64)
        pair = np.repeat(np.arange(m), size)
        shared = np.bincount(pair, weights=hit, minlength=m)
        out = np.where(size > 0, shared / np.maximum(size, 1), 0.0)
    return out
