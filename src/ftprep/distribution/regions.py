"""Production regions: clusters of production inputs with their coverage, labels and needs.

Production inputs are clustered (spherical k-means); each training input is assigned to its
nearest cluster centre, so every region has a production share and a training share. A region
is *uncovered* when at least ``uncovered_share`` of its items are flagged by the per-item
coverage score, *under-covered* when its production/training ratio reaches ``under_ratio``.
A region flagged that much is still only *under-covered* when training has inputs like its
inputs, just too few of them: when the median over its production inputs of the
nearest-training-distance evidence (``-log10`` of its p-value under the held-out null, after
the batch correction, see ``coverage.py``) stays below ``likes_max_evidence``. A thin topic's
inputs have a training input of their own topic about as near as covered inputs do; a missing
topic's nearest training inputs are from other topics, farther away. A flagged region stays
uncovered whatever its likes when training holds almost none of it: under 1/``absent_ratio`` of
the training inputs it would hold at the rate of the regions not mostly flagged, and that share
at least one input (long, wordy inputs, whose averaged embeddings all lie close together, find
near training inputs of other topics).

Flagged items inside regions that are not flagged as a whole, or that are uncovered, are
clustered once more: a group of at least ``min_region_size`` of them becomes a *tail* region of
its own, so a small uncovered pocket is not averaged away inside a large covered cluster, and a
small missing topic inside a mixed uncovered cluster gets a region of its own: a *sub-region*
(``within`` names the cluster, whose count of examples needed already covers it). A tail's
training inputs are those nearer its centre than any other region's, and a pocket with training
likes is an under-covered tail. Only flagged items whose production neighbours are mostly flagged too
(``tail_min_coherence``) take part: scattered false alarms are item flags, not regions.

Each region gets a readable label (the words that most distinguish it from everything else,
with a prevalence floor) and representative inputs (nearest to its centre).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from ftprep.contamination.semantic import STOP_WORDS
from ftprep.distribution.knn import assign, spherical_kmeans
from ftprep.distribution.text import doc_freq

MAX_CLUSTERS = 150  # production clusters, and tail pockets, at most


@dataclass(slots=True)
class RegionParams:
    n_clusters: int | None = None  # default: sqrt(n_production / 3), within [4, 150]
    uncovered_share: float = 0.5
    under_ratio: float = 2.0
    min_region_size: int = 5
    # a flagged input outside the uncovered clusters joins a tail region only when at least this
    # share of its production neighbours is flagged too: uncovered pockets are regions, while
    # scattered false alarms (production's batch differences from training) are not
    tail_min_coherence: float = 0.6
    # a flagged region whose inputs' median nearest-training-distance evidence (-log10 p under
    # the held-out null) stays below this has training likes, too few: under-covered, not
    # uncovered (0.6: the median input's nearest training input is no farther than the held-out
    # slice's 75th percentile; 0: off)
    likes_max_evidence: float = 0.6
    # ... unless training holds almost none of it: a flagged region holding under 1/absent_ratio
    # of the training inputs it would hold at the rate of the regions not mostly flagged is
    # uncovered whatever its likes (a topic kept at 10 % of its share holds ~1/10; under 1/20:
    # a few strays, not a thin topic); only where 1/absent_ratio of that is at least one input;
    # 0: off
    absent_ratio: float = 20.0
    target_coverage: float = 1.0  # collection target: this share of the production proportion
    min_examples: int = 20  # at least this many new examples per uncovered region
    label_terms: int = 4
    label_min_prevalence: float = 0.1
    examples_per_region: int = 5
    seed: int = 0

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> RegionParams:
        return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d})


@dataclass(slots=True)
class Region:
    id: str
    kind: str  # cluster | tail
    status: str  # covered | under-covered | uncovered
    label: str
    prod_items: np.ndarray  # indices into production
    n_train: int
    prod_share: float
    train_share: float
    ratio: float  # production share / training share (inf when no training)
    weighted_ratio: float  # mean importance weight of the region's training items
    uncovered_frac: float
    examples: list[int] = field(default_factory=list)
    needed: int = 0
    train_items: np.ndarray = field(default_factory=lambda: np.zeros(0, dtype=np.int64))
    basis: str = ""  # why the status: flagged share, training likes, ratio
    within: str = ""  # a tail: the uncovered cluster holding most of its inputs ("" if none)

    def reweight(self, weights: np.ndarray) -> None:
        """Recompute ``weighted_ratio`` from new importance weights of the training inputs."""
        self.weighted_ratio = float(weights[self.train_items].mean()) if self.n_train else 0.0

    def to_dict(self, prod_ids: list[str], prod_texts: list[str]) -> dict[str, Any]:
        return {
            "id": self.id,
            "kind": self.kind,
            "status": self.status,
            "label": self.label,
            "n_production": len(self.prod_items),
            "n_training": self.n_train,
            "production_share": round(self.prod_share, 6),
            "training_share": round(self.train_share, 6),
            "ratio": None if math.isinf(self.ratio) else round(self.ratio, 4),
            "weighted_ratio": round(self.weighted_ratio, 4),
            "uncovered_fraction": round(self.uncovered_frac, 4),
            "needed_examples": self.needed,
            "basis": self.basis,
            "within": self.within or None,
            "examples": [{"id": prod_ids[i], "text": prod_texts[i][:300]} for i in self.examples],
            # every member, so a region can be exported for labelling or checked against truth
            "production_ids": [prod_ids[i] for i in self.prod_items],
        }


# words that open or join a sentence of any topic, beyond the function words: after every content
# word in a region's label, as are one-letter tokens (an option letter "B.", the "s" of "'s")
_FILLERS = frozenset(
    [
        "because",
        "according",
        "above",
        "below",
        "following",
        "known",
        "whether",
        "therefore",
        "however",
        "although",
        "since",
        "which",
        "true",
        "false",
        "statement",
        "statements",
    ]
)


def _filler(word: str) -> bool:
    return len(word) < 2 or word in STOP_WORDS or word in _FILLERS


def distinguishing_terms(
    member_sets: list[set[str]], df_all: dict[str, int], n_all: int, top: int, min_prevalence: float
) -> list[str]:
    """Words frequent in the region and rare elsewhere: prevalence x log lift. Common English
    function words ("the", "my", "what", "because") and one-letter tokens come after every content
    word that qualifies: they are often over-represented in a region of questions or requests,
    but say little about its topic ("the, gym, from, app" reads "gym, app, ..."); they still name
    a region that has nothing else."""
    n = len(member_sets)
    if n == 0:
        return []
    df = doc_freq(member_sets)
    floor = max(2, math.ceil(min_prevalence * n)) if n >= 4 else 1
    scored = []
    for w, c in df.items():
        if c < floor:
            continue
        prev = c / n
        rest = (df_all.get(w, 0) - c + 1) / (n_all - n + 2)
        scored.append((prev * math.log(prev / rest), w))
    scored = [t for t in scored if t[0] > 0]
    scored.sort(key=lambda t: (_filler(t[1]), -t[0], t[1]))
    return [w for _, w in scored[:top]]


def examples_needed(prod_share: float, n_have: int, n_training: int, target_coverage: float) -> int:
    """Examples to collect so that a region (or a label) holds ``target_coverage`` times its
    production share of a training set of ``n_training`` inputs, given the ``n_have`` it has."""
    target = target_coverage * prod_share * n_training
    return max(0, math.ceil(target - n_have)) if math.isfinite(target) else 0


def _representatives(emb: np.ndarray, members: np.ndarray, k: int) -> list[int]:
    if len(members) == 0:
        return []
    centre = emb[members].mean(axis=0)
    sims = emb[members] @ centre
    return [int(members[j]) for j in np.argsort(-sims, kind="stable")[:k]]


def build_regions(
    prod_emb: np.ndarray,
    train_emb: np.ndarray,
    flagged: np.ndarray,
    weights: np.ndarray,
    prod_sets: list[set[str]],
    train_sets: list[set[str]],
    params: RegionParams | None = None,
    prod_neighbors: np.ndarray | None = None,
    nn_evidence: np.ndarray | None = None,
    counts: np.ndarray | None = None,
) -> tuple[list[Region], np.ndarray]:
    """Regions (sorted: uncovered first, then by production share) and the cluster of each
    production item. ``prod_neighbors``: each production item's nearest other production items
    (``CoverageScores.prod_neighbors``); with them, only flagged items whose neighbourhood is
    flagged too (``tail_min_coherence``) can form tail regions. ``nn_evidence``: per production
    item, ``-log10`` of its nearest-training-distance p-value (``CoverageScores.nn_evidence``);
    with it, a flagged region or tail pocket whose inputs have training likes is under-covered
    (``likes_max_evidence``), not uncovered. ``counts``: how many production rows each input
    stands for (distinct inputs of a log that repeats some); shares and ratios count them, the
    flagged share of a region counts distinct inputs."""
    p = params or RegionParams()
    n_p, n_t = len(prod_emb), len(train_emb)
    mult = np.ones(n_p) if counts is None else np.asarray(counts, dtype=np.float64)
    total = float(mult.sum())
    n_c = p.n_clusters or int(np.clip(round(math.sqrt(n_p / 3)), 4, MAX_CLUSTERS))
    n_c = max(1, min(n_c, n_p))
    cent = spherical_kmeans(prod_emb, n_c, iters=15, seed=p.seed, sample=50000)
    pc = assign(prod_emb, cent)
    tc = assign(train_emb, cent)
    t_counts = np.bincount(tc, minlength=n_c)
    w_sums = np.bincount(tc, weights=weights, minlength=n_c)
    df_all = doc_freq(prod_sets)
    df_all.update(doc_freq(train_sets))
    n_all = n_p + n_t
    # training inputs per production input over the clusters not mostly flagged: the rate at
    # which training holds what it covers (with topics missing from training, covered regions
    # hold more than their production share, so the raw ratio understates what is absent)
    p_counts = np.bincount(pc, minlength=n_c)
    f_counts = np.bincount(pc, weights=flagged.astype(np.float64), minlength=n_c)
    base = f_counts < p.uncovered_share * np.maximum(p_counts, 1)
    p_base = float(np.bincount(pc, weights=mult, minlength=n_c)[base].sum())
    t_base = int(t_counts[base].sum())
    rate = t_base / p_base if p_base and t_base else n_t / max(total, 1.0)

    def make(rid: str, kind: str, members: np.ndarray, n_train: int, w_sum: float) -> Region:
        rows = float(mult[members].sum())  # production rows the region's inputs stand for
        prod_share = rows / total
        train_share = n_train / n_t
        ratio = prod_share / train_share if n_train else math.inf
        unc = float(flagged[members].mean()) if len(members) else 0.0
        ev = math.nan
        if nn_evidence is not None and len(nn_evidence) == n_p and len(members) > 0:
            ev = float(np.median(nn_evidence[members]))
        # the median input's nearest-training distance, as the share of covered (held-out)
        # inputs whose nearest training input is nearer (1 - its p-value)
        farther = (
            f": the median input's nearest training input is farther than {1 - 10**-ev:.0%} "
            "of covered inputs' are"
            if math.isfinite(ev)
            else ""
        )
        likes = p.likes_max_evidence > 0 and ev < p.likes_max_evidence  # False for NaN
        # training holds almost none of it: under 1/absent_ratio of the training inputs it would
        # hold at the covered regions' rate, in a region large enough that even that share is a
        # training input (a 2-input cluster without one says nothing)
        fair = rows * rate
        absent = p.absent_ratio > 0 and fair / p.absent_ratio >= max(1.0, n_train)
        if unc >= p.uncovered_share:
            status = "under-covered" if likes and not absent else "uncovered"
            basis = f"{unc:.0%} of its inputs flagged; "
            if likes and absent:
                have = f"{n_train} training input{'s' if n_train != 1 else ''}"
                basis += (
                    f"training has almost none of them: {have} where the covered regions' rate "
                    f"would give {fair:.0f} (under 1/{p.absent_ratio:g}), though the nearest are "
                    f"not far{farther}"
                )
            elif likes:
                basis += f"training has inputs like them, too few{farther}"
            else:
                basis += f"their nearest training inputs are far{farther}"
        elif ratio >= p.under_ratio:
            status = "under-covered"
            basis = f"production/training ratio {ratio:.1f}"
        else:
            status, basis = "covered", ""
        terms = distinguishing_terms(
            [prod_sets[i] for i in members], df_all, n_all, p.label_terms, p.label_min_prevalence
        )
        reg = Region(
            id=rid,
            kind=kind,
            status=status,
            label=", ".join(terms) or "(no distinctive words)",
            prod_items=members,
            n_train=int(n_train),
            prod_share=prod_share,
            train_share=train_share,
            ratio=ratio,
            weighted_ratio=float(w_sum / n_train) if n_train else 0.0,
            uncovered_frac=unc,
            examples=_representatives(prod_emb, members, p.examples_per_region),
            basis=basis,
        )
        if status != "covered":
            floor = p.min_examples if status == "uncovered" else 0
            reg.needed = max(examples_needed(prod_share, n_train, n_t, p.target_coverage), floor)
        return reg

    coherent = np.ones(n_p, dtype=bool)
    if prod_neighbors is not None and prod_neighbors.shape[1] and p.tail_min_coherence > 0:
        coherent = flagged[prod_neighbors].mean(axis=1) >= p.tail_min_coherence
    regions: list[Region] = []
    pocket: list[int] = []
    for c in range(n_c):
        members = np.nonzero(pc == c)[0]
        if len(members) == 0:
            continue
        reg = make(f"c{c}", "cluster", members, int(t_counts[c]), float(w_sums[c]))
        reg.train_items = np.nonzero(tc == c)[0]
        # pockets: in clusters not flagged as a whole, and in uncovered ones, which can mix a
        # small missing topic with others (not in a flagged cluster with training likes: its
        # flagged inputs are that under-covered region already)
        if reg.status == "uncovered" or reg.uncovered_frac < p.uncovered_share:
            pocket.extend(int(i) for i in members[flagged[members] & coherent[members]])
        regions.append(reg)
    if len(pocket) >= p.min_region_size:
        pk = np.array(sorted(pocket))
        # at most as many pockets as clusters: with uncovered clusters' inputs in the pool it can
        # hold a large share of production, and k-means cost grows with the centres
        n_sub = min(max(1, len(pk) // max(p.min_region_size * 4, 1)), MAX_CLUSTERS)
        sub_cent = spherical_kmeans(prod_emb[pk], min(n_sub, len(pk)), iters=15, seed=p.seed)
        sub = assign(prod_emb[pk], sub_cent)
        # a tail's training inputs: those nearer its centre than any cluster's or other tail's
        # (a pocket of inputs with training likes has some; the clusters keep their counts)
        ta = assign(train_emb, np.vstack([cent, sub_cent])) - n_c
        status = {r.id: r.status for r in regions}  # the clusters'
        for j in range(len(sub_cent)):
            members = pk[sub == j]
            if len(members) < p.min_region_size:
                continue
            t_items = np.nonzero(ta == j)[0]
            reg = make(f"t{j}", "tail", members, len(t_items), float(weights[t_items].sum()))
            reg.train_items = t_items
            parent = f"c{int(np.bincount(pc[members]).argmax())}"
            if status.get(parent) == "uncovered":
                reg.within = parent  # a sub-region: its examples are counted there
                reg.basis += f"; inside uncovered cluster {reg.within}"
            regions.append(reg)  # uncovered, or under-covered when training has likes
    order = {"uncovered": 0, "under-covered": 1, "covered": 2}
    regions.sort(key=lambda r: (order[r.status], -r.prod_share, r.id))
    return regions, pc
