"""Containment search: which reference items have most of their shingles inside a record.

The reference side (benchmark items, validation/test, production holdout: thousands of short
items) is indexed as a sorted array of shingle hashes with the items that contain each one. A
record's shingles are looked up with one vectorised binary search, and every (record, item) pair
that shares a shingle is counted. ``containment = shared / |item shingles|`` is exactly the share
of the item found in the record, however long the record is, which is what a leaked item buried
inside a longer training example needs (Jaccard would shrink with the record's length).

Shingles that occur in more than ``max_df`` reference items (templates, boilerplate such as
"which of the following") carry no evidence of a specific item and are left out of the index
and of the item's size.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(slots=True)
class PairCounts:
    """Shared-shingle counts of (record, item) pairs."""

    record: np.ndarray  # int64
    item: np.ndarray  # int64
    shared: np.ndarray  # int64
    containment: np.ndarray  # float64: shared / indexed size of the item


class ShingleIndex:
    def __init__(
        self, hashes: np.ndarray, owner: np.ndarray, n_items: int, max_df: int | None = 10
    ) -> None:
        self.n_items = n_items
        if len(hashes):
            key = np.unique(np.stack([hashes, owner.astype(np.uint64)], axis=1), axis=0)
            h, o = key[:, 0], key[:, 1].astype(np.int64)
        else:
            h, o = np.zeros(0, np.uint64), np.zeros(0, np.int64)
        uniq, start, df = np.unique(h, return_index=True, return_counts=True)
        if max_df is not None:
            keep_h = df <= max_df
            keep_rows = np.repeat(keep_h, df)
            h, o = h[keep_rows], o[keep_rows]
            uniq, start, df = np.unique(h, return_index=True, return_counts=True)
        self.keys = uniq
        self.start = start.astype(np.int64)
        self.df = df.astype(np.int64)
        self.owners = o
        self.size = np.bincount(o, minlength=n_items).astype(np.int64)

    def query(
        self,
        hashes: np.ndarray,
        owner: np.ndarray,
        min_shared: int = 1,
        max_pairs: int = 50_000_000,
    ) -> PairCounts:
        """Count shared shingles for every (record, item) pair with at least ``min_shared``."""
        z = np.zeros(0, np.int64)
        empty = PairCounts(z, z, z, np.zeros(0))
        if len(self.keys) == 0 or len(hashes) == 0:
            return empty
        pos = np.searchsorted(self.keys, hashes)
        pos[pos >= len(self.keys)] = 0
        hit = self.keys[pos] == hashes
        if not hit.any():
            return empty
        pos, rec = pos[hit], owner[hit]
        # one hit per (record, shingle): a record repeating a shingle shares it once
        rk = np.unique(rec.astype(np.int64) * np.int64(len(self.keys)) + pos)
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
        up, shared = np.unique(pair, return_counts=True)
        keep = shared >= min_shared
        up, shared = up[keep], shared[keep]
        r, i = up // self.n_items, up % self.n_items
        cont = shared / np.maximum(self.size[i], 1)
        return PairCounts(r, i, shared.astype(np.int64), cont)
