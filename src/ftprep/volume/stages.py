"""Stages of a learning curve: nested, seeded subsets of the build's training split, drawn whole
split units at a time (a group joined with its near-duplicate clusters, see
:func:`ftprep.splits.units`), so no stage ever holds half a conversation or half a cluster.

The training and validation splits are the ones ``ftprep build`` produces (ledger applied,
reviewers' corrections applied, split policy applied): :func:`build_splits` runs the build into
the workspace in Parquet (every canonical column) and reads it back.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import orjson
import pyarrow.parquet as pq

from ftprep.context import ProgressFactory, no_progress
from ftprep.examples import Dataset
from ftprep.project import Project
from ftprep.splits import units


@dataclass
class Splits:
    train: Dataset
    validation: Dataset
    inputs: dict[str, str]  # source name -> input fingerprint (from the build manifest)
    links: list[list[str]]


@dataclass
class Stage:
    fraction: float
    seed: int
    ids: list[str]

    @property
    def n(self) -> int:
        return len(self.ids)

    @property
    def name(self) -> str:
        return f"n{self.n}-seed{self.seed}"


def build_splits(project: Project, progress: ProgressFactory = no_progress) -> Splits:
    """The build's train and validation splits, produced by :func:`ftprep.build.build` into
    ``<workspace>/curve/build`` (the user's ``out/build`` is left alone)."""
    from ftprep.build import build

    out = project.workspace_dir / "curve" / "build"
    res = build(project, progress=progress, out=out, fmt="parquet")
    train = Dataset(pq.read_table(out / res.manifest["splits"]["train"]["file"]), "train")
    val = Dataset(pq.read_table(out / res.manifest["splits"]["validation"]["file"]), "validation")
    links_path = project.workspace_dir / "link_clusters.json"
    links = orjson.loads(links_path.read_bytes()) if links_path.exists() else []
    inputs = {i["name"]: i["fingerprint"] for i in res.manifest["inputs"]}
    return Splits(train, val, inputs, links)


def _rank(seed: int, key: str) -> bytes:
    return hashlib.blake2b(f"curve:{seed}\x00{key}".encode(), digest_size=8).digest()


def unit_order(
    ds: Dataset, by: str, links: list[list[str]], seed: int, stratify: str | None = None
) -> list[list[str]]:
    """Units (lists of example ids) in a seeded order. With ``stratify`` every stratum's units
    are spread evenly over the order, so each prefix keeps the strata's proportions."""
    unit_of = units(ds, by, links)
    members: dict[str, list[str]] = {}
    for i in ds.ids:
        members.setdefault(unit_of[i], []).append(i)
    keys: dict[str, tuple[float, bytes]] = {u: (0.0, _rank(seed, u)) for u in members}
    if stratify and stratify in ds.table.column_names:
        col = dict(zip(ds.ids, ds.column(stratify), strict=True))
        strata: dict[str, list[str]] = {}
        for u, ms in members.items():
            vals = [str(col[m]) for m in ms]
            strata.setdefault(max(sorted(set(vals)), key=vals.count), []).append(u)
        for us in strata.values():
            us.sort(key=lambda u: keys[u][1])
            for k, u in enumerate(us):
                keys[u] = ((k + 0.5) / len(us), keys[u][1])
    order = sorted(members, key=lambda u: keys[u])
    return [members[u] for u in order]


def nested_stages(
    ds: Dataset,
    by: str,
    links: list[list[str]],
    fractions: list[float],
    seed: int,
    stratify: str | None = None,
) -> list[Stage]:
    """One stage per fraction: the shortest prefix of the seeded unit order that reaches the
    fraction's share of examples (so every stage contains the previous one)."""
    order = unit_order(ds, by, links, seed, stratify)
    total = len(ds)
    stages: list[Stage] = []
    for f in sorted(fractions):
        target = f * total
        ids: list[str] = []
        for ms in order:
            if len(ids) >= target or (ids and len(ids) + len(ms) / 2 > target):
                break
            ids.extend(ms)
        stages.append(Stage(f, seed, ids))
    return stages


def data_fingerprint(ds: Dataset, ids: list[str] | None = None) -> str:
    """Identity of the examples a stage trains on (ids, messages and labels)."""
    keep = set(ids) if ids is not None else None
    h = hashlib.sha256()
    rows = zip(ds.ids, ds.column("messages"), ds.column("label"), strict=True)
    for i, m, lab in sorted(r for r in rows if keep is None or r[0] in keep):
        h.update(orjson.dumps([i, m, lab]))
    return h.hexdigest()


def rows_of(ds: Dataset, ids: list[str]) -> list[dict[str, Any]]:
    pos = {i: k for k, i in enumerate(ds.ids)}
    return ds.table.take([pos[i] for i in ids]).to_pylist()


def stage_dir(project: Project) -> Path:
    return project.workspace_dir / "curve"
