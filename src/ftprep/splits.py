"""Leakage-proof splits: never by row.

Examples are first joined into *units*: every example of one group (``split.by``: the group
field, the source, or any other column) is one unit, and every link cluster (near-duplicate or
paraphrase clusters found by the contamination check) merges the units it touches
(union-find). Units are then assigned whole to train / validation / test, deterministically from
the seed, so no group and no duplicate cluster can straddle two splits.
"""

from __future__ import annotations

import hashlib
import itertools
from collections.abc import Sequence

from ftprep.examples import Dataset
from ftprep.project import Split

SPLITS = ("train", "validation", "test")


class UnionFind:
    def __init__(self) -> None:
        self.parent: dict[str, str] = {}

    def find(self, x: str) -> str:
        p = self.parent.setdefault(x, x)
        root = p
        while root != self.parent[root]:
            root = self.parent[root]
        while x != root:
            nxt = self.parent[x]
            self.parent[x] = root
            x = nxt
        return root

    def union(self, a: str, b: str) -> None:
        ra, rb = self.find(a), self.find(b)
        if ra != rb:
            # deterministic: the smaller key becomes the root
            if rb < ra:
                ra, rb = rb, ra
            self.parent[rb] = ra


def _unit_keys(ds: Dataset, by: str) -> list[str]:
    if by in ("group", "source") or by in ds.table.column_names:
        col = "group" if by == "group" else by
        vals = ds.column(col)
        ids = ds.ids
        return [
            f"{col}={v}" if v is not None else f"id={i}" for v, i in zip(vals, ids, strict=True)
        ]
    raise ValueError(f"split.by: unknown field {by!r}")


def units(ds: Dataset, by: str, links: Sequence[Sequence[str]] = ()) -> dict[str, str]:
    """example id -> unit root (the union of its group and every link cluster it is in)."""
    uf = UnionFind()
    ids = ds.ids
    keys = _unit_keys(ds, by)
    for i, k in zip(ids, keys, strict=True):
        uf.union(f"ex:{i}", k)
    known = set(ids)
    for cluster in links:
        members = [m for m in cluster if m in known]
        for a, b in itertools.pairwise(members):
            uf.union(f"ex:{a}", f"ex:{b}")
    return {i: uf.find(f"ex:{i}") for i in ids}


def _rank(seed: int, key: str) -> float:
    h = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def _members(ds: Dataset, by: str, links: Sequence[Sequence[str]]) -> dict[str, list[str]]:
    unit_of = units(ds, by, links)
    members: dict[str, list[str]] = {}
    for i in ds.ids:
        members.setdefault(unit_of[i], []).append(i)
    return members


def _cut(
    members: dict[str, list[str]],
    strata: dict[str, list[str]],
    seed: int,
    shares: Sequence[tuple[str, float]],
    rest: str | None,
) -> dict[str, str]:
    """Give every unit whole to one destination: per stratum, units ordered by a seeded hash
    fill each ``(destination, share of examples)`` in turn; the remainder goes to ``rest``
    (``None``: left unassigned)."""
    out: dict[str, str] = {}
    for _s, us in sorted(strata.items()):
        us = sorted(us, key=lambda u: (_rank(seed, u), u))
        total = sum(len(members[u]) for u in us)
        targets = [(dest, share * total) for dest, share in shares]
        filled = [0] * len(targets)
        for u in us:
            size = len(members[u])
            dest = rest
            for k, (d, t) in enumerate(targets):
                if filled[k] + size / 2 <= t:
                    dest = d
                    filled[k] += size
                    break
            if dest is None:
                continue
            for m in members[u]:
                out[m] = dest
    return out


def _strata(
    ds: Dataset, members: dict[str, list[str]], stratify: str | None
) -> dict[str, list[str]]:
    if not stratify:
        return {"": list(members)}
    if stratify not in ds.table.column_names:
        raise ValueError(f"split.stratify: unknown field {stratify!r}")
    col = dict(zip(ds.ids, ds.column(stratify), strict=True))
    strata: dict[str, list[str]] = {}
    for u, ms in members.items():
        vals = [str(col[m]) for m in ms]
        strata.setdefault(max(sorted(set(vals)), key=vals.count), []).append(u)
    return strata


def assign_splits(
    ds: Dataset, policy: Split, links: Sequence[Sequence[str]] = ()
) -> dict[str, str]:
    """example id -> "train" | "validation" | "test".

    ``eval_from: train``: units (groups merged with link clusters) are ordered by a seeded hash
    and cut so that validation and test get their target share of *examples*; with
    ``stratify`` the cut is made per stratum (the unit's majority value).
    ``eval_from: source``: the examples of ``eval_source`` are divided between validation and
    test (see :func:`eval_from_pool`) and every other example goes to train, except that a unit
    holding an eval-source example goes whole to that example's split (nothing straddles; the
    contamination check also excludes such training examples).
    ``eval_from: production``: every training example goes to train (validation/test come from
    the production holdout, :func:`eval_from_pool`).
    """
    ids = ds.ids
    if policy.eval_from == "production" or (policy.validation == 0 and policy.test == 0):
        return dict.fromkeys(ids, "train")
    members = _members(ds, policy.by, links)
    if policy.eval_from == "source":
        if not policy.eval_source:
            raise ValueError("split.eval_from: source needs split.eval_source")
        src = dict(zip(ids, ds.column("source"), strict=True))
        pool_ids = {i for i in ids if src[i] == policy.eval_source}
        pool = ds.filter_ids(pool_ids)
        ev = eval_from_pool(pool, policy, share=1.0, links=links)
        out = dict.fromkeys(ids, "train")
        for ms in members.values():
            dests = sorted({ev[m] for m in ms if m in ev})
            if dests:
                for m in ms:
                    out[m] = dests[0]
        return out
    strata = _strata(ds, members, policy.stratify)
    return _cut(
        members,
        strata,
        policy.seed,
        [("test", policy.test), ("validation", policy.validation)],
        "train",
    )


def eval_from_pool(
    pool: Dataset, policy: Split, share: float = 1.0, links: Sequence[Sequence[str]] = ()
) -> dict[str, str]:
    """Validation and test taken from a pool that is not training data: the production
    sample (``share`` = ``production.holdout``) or a held-out source (``share`` = 1).

    ``share`` of the pool's examples is selected whole units at a time (groups and link
    clusters never split; seeded, deterministic) and divided between validation and test in
    the ratio ``split.validation : split.test`` (half and half when both are 0). Returns
    ``{id: "validation" | "test"}`` for the selected examples only.
    """
    if share <= 0 or len(pool) == 0:
        return {}
    by = (
        policy.by
        if (policy.by in ("group", "source") or policy.by in pool.table.column_names)
        else "group"
    )
    members = _members(pool, by, links)
    strata = _strata(
        pool, members, policy.stratify if policy.stratify in pool.table.column_names else None
    )
    tot = policy.validation + policy.test
    v_frac = policy.validation / tot if tot > 0 else 0.5
    shares = [("test", share * (1 - v_frac)), ("validation", share * v_frac)]
    return _cut(members, strata, policy.seed + 1, shares, None)
