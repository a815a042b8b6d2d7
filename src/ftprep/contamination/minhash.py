"""MinHash signatures and LSH banding in numpy (no per-document Python loop).

Signatures: every shingle hash is folded to 32 bits and permuted ``num_perm`` times with
``h -> mix(a_p * h + b_p mod 2^32)``; the signature of a text is the per-text minimum, taken for
all texts at once with ``np.minimum.reduceat`` over the CSR layout of the shingles.

LSH: the signature is cut into ``bands`` bands of ``rows`` values; two texts become candidates
when any band is identical. The probability that a pair with Jaccard ``J`` becomes a candidate
is ``1 - (1 - J**rows) ** bands`` (:func:`candidate_probability`); :func:`choose_bands` picks
the (bands, rows) split of ``num_perm`` that reaches a recall target at the target Jaccard
while admitting the fewest low-similarity pairs. Candidates are then verified on their
signatures (estimated Jaccard), so LSH false positives cost a comparison, never a finding.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftprep.contamination.text import unique

_U32 = np.uint32
_EMPTY = np.iinfo(np.uint32).max


def candidate_probability(j: float | np.ndarray, bands: int, rows: int) -> float | np.ndarray:
    return 1.0 - (1.0 - np.asarray(j, dtype=float) ** rows) ** bands


def choose_bands(
    num_perm: int, target_jaccard: float, recall: float = 0.99, low_jaccard: float | None = None
) -> tuple[int, int]:
    """The (bands, rows) with ``bands * rows <= num_perm`` whose S-curve reaches ``recall`` at
    ``target_jaccard`` and gives the lowest candidate probability at ``low_jaccard`` (default:
    half the target). Falls back to the highest recall if none reaches it."""
    low = target_jaccard / 2 if low_jaccard is None else low_jaccard
    best: tuple[float, float, int, int] | None = None
    for rows in range(1, num_perm + 1):
        bands = num_perm // rows
        if bands < 1:
            break
        rec = float(candidate_probability(target_jaccard, bands, rows))
        fp = float(candidate_probability(low, bands, rows))
        key = (0.0 if rec >= recall else recall - rec, fp)
        if best is None or key < (best[0], best[1]):
            best = (key[0], key[1], bands, rows)
    assert best is not None
    return best[2], best[3]


@dataclass(slots=True)
class MinHasher:
    num_perm: int = 64
    seed: int = 1

    def _params(self) -> tuple[np.ndarray, np.ndarray]:
        rng = np.random.default_rng(self.seed)
        a = rng.integers(1, 2**32, size=self.num_perm, dtype=np.uint64).astype(_U32) | _U32(1)
        b = rng.integers(0, 2**32, size=self.num_perm, dtype=np.uint64).astype(_U32)
        return a, b

    def signatures(self, hashes: np.ndarray, owner: np.ndarray, n_texts: int) -> np.ndarray:
        """``[n_texts, num_perm]`` uint32; a text without shingles gets all ``0xFFFFFFFF``."""
        sig = np.full((n_texts, self.num_perm), _EMPTY, dtype=_U32)
        if len(hashes) == 0:
            return sig
        h32 = ((hashes >> np.uint64(32)) ^ hashes).astype(_U32)
        starts = np.flatnonzero(np.r_[True, owner[1:] != owner[:-1]])
        texts = owner[starts]
        a, b = self._params()
        v = np.empty_like(h32)
        with np.errstate(over="ignore"):
            for p in range(self.num_perm):
                np.multiply(h32, a[p], out=v)
                v += b[p]
                v ^= v >> _U32(15)
                sig[texts, p] = np.minimum.reduceat(v, starts)
        return sig


def band_keys(sig: np.ndarray, bands: int, rows: int) -> np.ndarray:
    """``[n, bands]`` uint64 key per band (band index mixed in, so bands never collide)."""
    n = sig.shape[0]
    keys = np.empty((n, bands), dtype=np.uint64)
    mult = np.uint64(0x9E3779B97F4A7C15)
    with np.errstate(over="ignore"):
        for bnd in range(bands):
            k = np.full(n, np.uint64(bnd + 1) * np.uint64(0xD6E8FEB86659FD93), dtype=np.uint64)
            for r in range(rows):
                k = k * mult + sig[:, bnd * rows + r].astype(np.uint64)
            keys[:, bnd] = k
    return keys


def estimated_jaccard(sig_a: np.ndarray, sig_b: np.ndarray) -> np.ndarray:
    """Row-wise share of equal signature values (empty texts never match)."""
    eq = (sig_a == sig_b) & (sig_a != _EMPTY)
    return eq.mean(axis=1)


def query_pairs(
    index_keys: np.ndarray, query_keys: np.ndarray, max_bucket: int = 200
) -> tuple[np.ndarray, np.ndarray]:
    """Candidate (query row, index row) pairs sharing a band key. Buckets larger than
    ``max_bucket`` index rows (a boilerplate text repeated everywhere) are skipped."""
    qs: list[np.ndarray] = []
    ix: list[np.ndarray] = []
    for bnd in range(index_keys.shape[1]):
        col = index_keys[:, bnd]
        order = np.argsort(col, kind="stable")
        sk = col[order]
        q = query_keys[:, bnd]
        lo = np.searchsorted(sk, q, "left")
        hi = np.searchsorted(sk, q, "right")
        cnt = hi - lo
        ok = (cnt > 0) & (cnt <= max_bucket)
        if not ok.any():
            continue
        qrow = np.nonzero(ok)[0]
        c = cnt[ok]
        total = int(c.sum())
        within = np.arange(total) - np.repeat(np.cumsum(c) - c, c)
        qs.append(np.repeat(qrow, c))
        ix.append(order[np.repeat(lo[ok], c) + within])
    if not qs:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    pair = unique(
        np.concatenate(qs).astype(np.int64) * np.int64(index_keys.shape[0] + 1) + np.concatenate(ix)
    )
    return pair // (index_keys.shape[0] + 1), pair % (index_keys.shape[0] + 1)


def self_pairs(keys: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Candidate pairs inside one collection: within each bucket, every member is paired with
    the bucket's first member and with the previous member (enough to connect a cluster
    without enumerating every pair of a large bucket)."""
    a_parts: list[np.ndarray] = []
    b_parts: list[np.ndarray] = []
    for bnd in range(keys.shape[1]):
        col = keys[:, bnd]
        order = np.argsort(col, kind="stable")
        sk = col[order]
        same = sk[1:] == sk[:-1]
        if not same.any():
            continue
        new = np.r_[True, ~same]
        first = order[np.maximum.accumulate(np.where(new, np.arange(len(sk)), 0))]
        idx = np.nonzero(same)[0] + 1
        a_parts += [order[idx - 1], first[idx]]
        b_parts += [order[idx], order[idx]]
    if not a_parts:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a = np.concatenate(a_parts).astype(np.int64)
    b = np.concatenate(b_parts).astype(np.int64)
    lo, hi = np.minimum(a, b), np.maximum(a, b)
    keep = lo != hi
    pair = unique(lo[keep] * np.int64(len(keys) + 1) + hi[keep])
    return pair // (len(keys) + 1), pair % (len(keys) + 1)
