"""Leakage-proof splits: never by row.

Examples are first joined into *units*: every example of one group (``split.by``: the group
field, the source, or any other column) is one unit, and every link cluster (near-duplicate or
paraphrase clusters found by the contamination check) merges the units it touches
(union-find). Units are then assigned whole to train / validation / test, deterministically from
the seed, so no group and no duplicate cluster can straddle two splits.
"""

from __future__ import annotations

import hashlib
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
        return [f"{col}={v}" if v is not None else f"id={i}" for v, i in zip(vals, ids, strict=True)]
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
        for a, b in zip(members, members[1:], strict=False):
            uf.union(f"ex:{a}", f"ex:{b}")
    return {i: uf.find(f"ex:{i}") for i in ids}


def _rank(seed: int, key: str) -> float:
    h = hashlib.blake2b(f"{seed}\x00{key}".encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2**64


def assign_splits(ds: Dataset, policy: Split, links: Sequence[Sequence[str]] = ()) -> dict[str, str]:
    """example id -> "train" | "validation" | "test".

    With ``eval_from: train`` units are ordered by a seeded hash and cut so that validation and
    test get their target share of *examples*; with ``stratify`` the cut is made per stratum
    (the unit's majority value). With ``eval_from`` production or source, every training
    example goes to train (validation/test come from elsewhere; see ``build``).
    """
    ids = ds.ids
    if policy.eval_from != "train" or (policy.validation == 0 and policy.test == 0):
        return dict.fromkeys(ids, "train")
    unit_of = units(ds, policy.by, links)
    members: dict[str, list[str]] = {}
    for i in ids:
        members.setdefault(unit_of[i], []).append(i)
    strata: dict[str, list[str]] = {}
    if policy.stratify:
        col = dict(zip(ids, ds.column(policy.stratify), strict=True))
        for u, ms in members.items():
            vals = [str(col[m]) for m in ms]
            strata.setdefault(max(sorted(set(vals)), key=vals.count), []).append(u)
    else:
        strata[""] = list(members)
    out: dict[str, str] = {}
    for _s, us in sorted(strata.items()):
        us.sort(key=lambda u: (_rank(policy.seed, u), u))
        total = sum(len(members[u]) for u in us)
        t_val, t_test = policy.validation * total, policy.test * total
        n_val = n_test = 0
        for u in us:
            size = len(members[u])
            if n_test + size / 2 <= t_test:
                dest = "test"
                n_test += size
            elif n_val + size / 2 <= t_val:
                dest = "validation"
                n_val += size
            else:
                dest = "train"
            for m in members[u]:
                out[m] = dest
    return out
