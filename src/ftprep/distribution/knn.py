"""Exact k-nearest-neighbour search over L2-normalised embeddings (cosine distance).

Small problems are searched exactly (blocked float32 matrix products + ``np.argpartition``).
Large ones (``len(queries) * len(reference) > exact_limit``) use an inverted-file index built
here in numpy: the reference is partitioned by spherical k-means into ~sqrt(n) cells and each
query scans only its ``nprobe`` nearest cells, which cuts the work ~30x at 100k x 100k while
recovering nearly all true neighbours (measured in ``bench/bench_distribution.py``). No extra
dependency.
"""

from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from ftprep.signals.embeddings import l2_normalise


def reduce_dims(
    a: np.ndarray, b: np.ndarray, dims: int | None, seed: int = 0
) -> tuple[np.ndarray, np.ndarray]:
    """Project ``a`` and ``b`` onto the top ``dims`` principal axes of their union (fitted on a
    sample of at most 20k rows) and re-normalise. ``dims`` None or >= the dimension: unchanged."""
    d = a.shape[1]
    if dims is None or dims >= d or len(a) + len(b) < 2:
        return a, b
    rng = np.random.default_rng(seed)
    pool = np.concatenate([a, b])
    sample = pool[rng.choice(len(pool), size=min(20000, len(pool)), replace=False)]
    mean = sample.mean(axis=0)
    _, _, vt = np.linalg.svd(sample - mean, full_matrices=False)
    basis = vt[:dims].T.astype(np.float32)
    return l2_normalise((a - mean) @ basis), l2_normalise((b - mean) @ basis)


EXACT_LIMIT = 4e8  # query x reference pairs searched exactly; above this the IVF index is used


def knn(
    queries: np.ndarray,
    reference: np.ndarray,
    k: int,
    *,
    exclude_self: bool = False,
    exact_limit: float = EXACT_LIMIT,
    nprobe: int = 8,
    seed: int = 0,
) -> tuple[np.ndarray, np.ndarray]:
    """``(distances, indices)`` of the ``k`` nearest rows of ``reference`` for each query,
    sorted ascending; distance = 1 - cosine similarity. With ``exclude_self`` the queries are
    ``reference`` itself and each row's own index is skipped."""
    if float(len(queries)) * len(reference) <= exact_limit or len(reference) < 4096:
        return knn_exact(queries, reference, k, exclude_self=exclude_self)
    return knn_ivf(queries, reference, k, exclude_self=exclude_self, nprobe=nprobe, seed=seed)


def spherical_kmeans(
    x: np.ndarray, n_clusters: int, iters: int = 8, seed: int = 0, sample: int = 20000
) -> np.ndarray:
    """Unit-norm centroids from Lloyd iterations on cosine similarity (fitted on a sample)."""
    rng = np.random.default_rng(seed)
    fit = x[rng.choice(len(x), size=min(sample, len(x)), replace=False)]
    cent = fit[rng.choice(len(fit), size=n_clusters, replace=False)].copy()
    rows = np.arange(len(fit))
    for _ in range(iters):
        assign = np.argmax(fit @ cent.T, axis=1)
        onehot = sp.csr_matrix(
            (np.ones(len(fit), dtype=np.float32), (assign, rows)), shape=(n_clusters, len(fit))
        )
        sums = np.asarray(onehot @ fit, dtype=np.float32)
        empty = np.bincount(assign, minlength=n_clusters) == 0
        sums[empty] = fit[rng.choice(len(fit), size=int(empty.sum()))]
        cent = l2_normalise(sums)
    return cent


def assign(x: np.ndarray, cent: np.ndarray) -> np.ndarray:
    """Index of the most similar centroid for each row (blocked matrix products)."""
    out = np.empty(len(x), dtype=np.int64)
    for s in range(0, len(x), 8192):
        out[s : s + 8192] = np.argmax(x[s : s + 8192] @ cent.T, axis=1)
    return out


def knn_ivf(
    queries: np.ndarray,
    reference: np.ndarray,
    k: int,
    *,
    exclude_self: bool = False,
    nprobe: int = 8,
    seed: int = 0,
    max_candidates: float = 1e7,
) -> tuple[np.ndarray, np.ndarray]:
    """Approximate kNN: scan the ``nprobe`` k-means cells nearest to each query."""
    nq, nr = len(queries), len(reference)
    n_cells = max(8, int(np.sqrt(nr)))
    nprobe = min(nprobe, n_cells)
    cent = spherical_kmeans(reference, n_cells, seed=seed)
    ref_cell = assign(reference, cent)
    q_cells = np.empty((nq, nprobe), dtype=np.int64)
    for s in range(0, nq, 8192):
        cs = queries[s : s + 8192] @ cent.T
        q_cells[s : s + 8192] = np.argpartition(-cs, nprobe - 1, axis=1)[:, :nprobe]
    kk = k + (1 if exclude_self else 0)
    members = np.argsort(ref_cell, kind="stable")
    bounds = np.searchsorted(ref_cell[members], np.arange(n_cells + 1))
    dist = np.empty((nq, k), dtype=np.float32)
    idx = np.empty((nq, k), dtype=np.int64)
    # queries in blocks, so the candidate arrays stay near max_candidates entries however large k
    block = max(1, int(max_candidates // (nprobe * kk)))
    for s in range(0, nq, block):
        e = min(nq, s + block)
        dist[s:e], idx[s:e] = _ivf_block(
            queries, reference, q_cells[s:e], s, members, bounds, k, kk, exclude_self
        )
    return dist, idx


def _ivf_block(
    queries: np.ndarray,
    reference: np.ndarray,
    q_cells: np.ndarray,
    offset: int,
    members: np.ndarray,
    bounds: np.ndarray,
    k: int,
    kk: int,
    exclude_self: bool,
) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` nearest of queries ``offset .. offset + len(q_cells)`` among their probed
    cells' members (``kk`` per cell: ``k``, plus one for the query itself)."""
    nq, nprobe = q_cells.shape
    n_cells = len(bounds) - 1
    cand_sim = np.full((nq, nprobe, kk), -np.inf, dtype=np.float32)
    cand_idx = np.zeros((nq, nprobe, kk), dtype=np.int64)
    # (query, slot) pairs grouped by probed cell with one sort, not a scan per cell
    flat_cells = q_cells.ravel()
    probes = np.argsort(flat_cells, kind="stable")
    p_bounds = np.searchsorted(flat_cells[probes], np.arange(n_cells + 1))
    for c in range(n_cells):
        mem = members[bounds[c] : bounds[c + 1]]
        pr = probes[p_bounds[c] : p_bounds[c + 1]]
        qi, slot = pr // nprobe, pr % nprobe
        if len(mem) == 0 or len(qi) == 0:
            continue
        sim = queries[offset + qi] @ reference[mem].T
        if exclude_self:
            sim[(offset + qi)[:, None] == mem[None, :]] = -np.inf
        m = min(kk, len(mem))
        top = (  # the m largest, without negating a copy of the block
            np.argpartition(sim, len(mem) - m, axis=1)[:, len(mem) - m :]
            if m < len(mem)
            else np.tile(np.arange(m), (len(qi), 1))
        )
        cand_sim[qi, slot, :m] = np.take_along_axis(sim, top, axis=1)
        cand_idx[qi, slot, :m] = mem[top]
    flat_sim = cand_sim.reshape(nq, -1)
    flat_idx = cand_idx.reshape(nq, -1)
    top = (
        np.argpartition(-flat_sim, k - 1, axis=1)[:, :k]
        if flat_sim.shape[1] > k
        else np.tile(np.arange(flat_sim.shape[1]), (nq, 1))
    )
    sims = np.take_along_axis(flat_sim, top, axis=1)
    order = np.argsort(-sims, axis=1)
    sims = np.take_along_axis(sims, order, axis=1)
    idx = np.take_along_axis(flat_idx, np.take_along_axis(top, order, axis=1), axis=1)
    return np.maximum(1.0 - sims, 0.0).astype(np.float32), idx


def knn_exact(
    queries: np.ndarray,
    reference: np.ndarray,
    k: int,
    *,
    exclude_self: bool = False,
    block: int | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """Exact kNN by blocked matrix products (see :func:`knn`)."""
    nq, nr = len(queries), len(reference)
    kk = min(k + (1 if exclude_self else 0), nr)
    dist = np.empty((nq, kk), dtype=np.float32)
    idx = np.empty((nq, kk), dtype=np.int64)
    ref_t = np.ascontiguousarray(reference.T, dtype=np.float32)
    if block is None:
        block = int(max(64, min(4096, 2e7 // max(nr, 1))))
    for s in range(0, nq, block):
        q = np.asarray(queries[s : s + block], dtype=np.float32)
        sim = q @ ref_t
        if exclude_self:
            rows = np.arange(len(q))
            sim[rows, s + rows] = -np.inf
        if kk < nr:
            part = np.argpartition(-sim, kk - 1, axis=1)[:, :kk]
        else:
            part = np.tile(np.arange(nr), (len(q), 1))
        ps = np.take_along_axis(sim, part, axis=1)
        order = np.argsort(-ps, axis=1)
        idx[s : s + len(q)] = np.take_along_axis(part, order, axis=1)
        dist[s : s + len(q)] = 1.0 - np.take_along_axis(ps, order, axis=1)
    if exclude_self:
        kk -= 1
        dist, idx = dist[:, :kk], idx[:, :kk]
    return np.maximum(dist, 0.0), idx
