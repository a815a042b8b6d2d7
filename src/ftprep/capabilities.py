"""The capability inventory (failure mode 5: catastrophic forgetting) and the replay plan.

A fine-tune that only ever shows the model its target task erodes what the application still
needs from it (formatting, refusing out-of-scope requests, arithmetic, code...). The inventory
(``capabilities.yaml``) lists every capability the application needs, target or not, each with
*probes*: a handful of prompts that exercise it. ftprep then asks two questions per capability:

* **Is it covered?** The probes are scored exactly like production inputs against the training
  data (:func:`ftprep.distribution.coverage.coverage_scores`: k-NN distance, density ratio and
  token evidence, with a threshold calibrated on held-out training examples, no labels). A
  capability is covered when at least ``min_probe_coverage`` of its probes are.
* **How much of the data exercises it?** Every training example (and production input) is
  attributed to the capability of its nearest probe when it lies within the training set's own
  neighbour radius, or to any capability whose ``patterns`` (regular expressions) match it.

Non-target capabilities that are not covered need replay data: general-purpose examples mixed
into the training split. :func:`replay_plan` orders the replay pool so that ``build`` can take
the first N (N follows from ``replay.share`` and the final training split size): round-robin
over non-target capabilities, uncovered ones first, then general data; replay records whose
normalised prompt equals a training, production or benchmark input are left out (they would
duplicate or leak).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, field_validator

from ftprep.examples import id_rank
from ftprep.project import load_yaml_model


class Capability(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str
    target: bool = False
    description: str = ""
    probes: list[str] = Field(default_factory=list)
    patterns: list[str] = Field(default_factory=list)
    min_share: float | None = None  # overrides the inventory's min_share

    @field_validator("patterns")
    @classmethod
    def _compile(cls, v: list[str]) -> list[str]:
        for p in v:
            try:
                re.compile(p)
            except re.error as e:
                raise ValueError(f"invalid regular expression {p!r}: {e}") from None
        return v


class Inventory(BaseModel):
    model_config = ConfigDict(extra="forbid")

    capabilities: list[Capability]
    min_share: float = 0.01  # a non-target capability below this share of training is thin
    min_probe_coverage: float = 0.5  # share of a capability's probes that must be covered

    @field_validator("capabilities")
    @classmethod
    def _unique(cls, v: list[Capability]) -> list[Capability]:
        names = [c.name for c in v]
        dup = sorted({n for n in names if names.count(n) > 1})
        if dup:
            raise ValueError(f"capability names must be unique (repeated: {', '.join(dup)})")
        if not v:
            raise ValueError("list at least one capability")
        return v

    def get(self, name: str) -> Capability | None:
        return next((c for c in self.capabilities if c.name == name), None)


def load_inventory(path: str | Path) -> Inventory:
    return load_yaml_model(path, Inventory, "capability inventory")


@dataclass
class CapabilityCoverage:
    name: str
    target: bool
    n_probes: int
    probes_covered: float | None  # share of probes covered by training (None: no probes)
    train_examples: int
    train_share: float
    production_share: float | None
    replay_available: int = 0
    covered: bool | None = None  # None: cannot tell (no probes, no pattern hits)
    evidence_ids: list[str] = field(default_factory=list)
    uncovered_probes: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "target": self.target,
            "n_probes": self.n_probes,
            "probes_covered": self.probes_covered,
            "train_examples": self.train_examples,
            "train_share": self.train_share,
            "production_share": self.production_share,
            "replay_available": self.replay_available,
            "covered": self.covered,
        }


def pattern_hits(inv: Inventory, texts: list[str]) -> np.ndarray:
    """Boolean matrix (texts x capabilities): any of the capability's patterns matches."""
    out = np.zeros((len(texts), len(inv.capabilities)), dtype=bool)
    for j, cap in enumerate(inv.capabilities):
        if not cap.patterns:
            continue
        rx = re.compile("|".join(f"(?:{p})" for p in cap.patterns), re.IGNORECASE)
        out[:, j] = [rx.search(t) is not None for t in texts]
    return out


def capability_radii(
    probe_emb: np.ndarray, probe_cap: np.ndarray, n_caps: int, base: float
) -> np.ndarray:
    """Attribution radius per capability: the larger of ``base`` (the training set's own
    neighbour radius) and the median distance from each of the capability's probes to its
    nearest other probe of the same capability — diverse probes describe a wide capability."""
    radii = np.full(n_caps, base, dtype=np.float64)
    for j in range(n_caps):
        e = probe_emb[probe_cap == j]
        if len(e) < 2:
            continue
        d = 1.0 - e @ e.T
        np.fill_diagonal(d, np.inf)
        radii[j] = max(base, float(np.median(d.min(axis=1))))
    return radii


def attribute(
    emb: np.ndarray,
    probe_emb: np.ndarray,
    probe_cap: np.ndarray,
    radii: np.ndarray,
    hits: np.ndarray | None = None,
) -> np.ndarray:
    """Boolean matrix (rows x capabilities): the row is attributed to the capability whose
    probes it is closest to (mean cosine of its two nearest probes of that capability, so one
    stray probe does not pull whole regions) when that distance is within the capability's
    radius; or to any capability whose patterns match."""
    n_caps = len(radii)
    out = np.zeros((len(emb), n_caps), dtype=bool) if hits is None else hits.copy()
    if not len(probe_emb) or not len(emb):
        return out
    caps = [j for j in range(n_caps) if (probe_cap == j).any()]
    for start in range(0, len(emb), 8192):
        sims = emb[start : start + 8192] @ probe_emb.T
        score = np.full((len(sims), n_caps), -np.inf)
        for j in caps:
            s = sims[:, probe_cap == j]
            top = min(2, s.shape[1])
            score[:, j] = np.sort(s, axis=1)[:, -top:].mean(axis=1)
        best = score.argmax(axis=1)
        near = (1.0 - score[np.arange(len(best)), best]) <= radii[best]
        rows = np.nonzero(near)[0]
        out[start + rows, best[rows]] = True
    return out


def train_radius(train_emb: np.ndarray, fpr: float = 0.05, seed: int = 0) -> float:
    """The training set's own neighbour radius: the (1 - fpr) quantile of held-out training
    examples' distance to their nearest other training example."""
    from ftprep.distribution.knn import knn

    n = len(train_emb)
    if n < 4:
        return 0.0
    rng = np.random.default_rng(seed)
    perm = rng.permutation(n)
    n_hold = max(1, min(2000, n // 5))
    d, _ = knn(train_emb[perm[:n_hold]], train_emb[perm[n_hold:]], 1, seed=seed)
    return float(np.quantile(d[:, 0], 1 - fpr))


def _hash_order(ids: list[str], seed: int) -> list[str]:
    return sorted(ids, key=lambda i: id_rank(seed, i))


def replay_plan(
    replay_ids: list[str],
    replay_caps: list[str | None],
    coverage: list[CapabilityCoverage],
    blocked: dict[str, str],
    seed: int = 0,
) -> list[dict[str, Any]]:
    """Replay records in the order ``build`` should take them: round-robin over non-target
    capabilities (uncovered first), each capability's records in seeded-hash order, then the
    records of no capability. ``blocked`` maps ids to the reason they are left out."""
    by_cap: dict[str | None, list[str]] = {}
    for rid, cap in zip(replay_ids, replay_caps, strict=True):
        if rid in blocked:
            continue
        by_cap.setdefault(cap, []).append(rid)
    non_target = [c for c in coverage if not c.target]
    order = [c.name for c in non_target if c.covered is False] + [
        c.name for c in non_target if c.covered is not False
    ]
    queues = [_hash_order(by_cap.get(name, []), seed) for name in order]
    plan: list[dict[str, Any]] = []
    depth = 0
    while any(depth < len(q) for q in queues):
        for name, q in zip(order, queues, strict=True):
            if depth < len(q):
                plan.append({"id": q[depth], "capability": name})
        depth += 1
    targets = {c.name for c in coverage if c.target}
    rest = [rid for cap, ids in by_cap.items() if cap is None or cap in targets for rid in ids]
    plan.extend({"id": rid, "capability": None} for rid in _hash_order(rest, seed))
    return plan


def replay_count(share: float, n_train: int) -> int:
    """Replay examples to add so that they make up ``share`` of the final training split."""
    if share <= 0 or n_train <= 0:
        return 0
    return round(share / (1.0 - share) * n_train)
