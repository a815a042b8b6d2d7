"""Per-example spec provenance: which version an example was collected under, and which area of
the spec it belongs to.

Version, in order of precedence:

1. ``field`` — the source names a ``spec_version`` field and the record has a value;
2. ``collected_at`` — the record's timestamp against the effective dates in the history;
3. ``default`` — the source's ``defaults: {spec_version: ...}``;
4. ``missing``.

When the source names a ``spec_version`` field, its default fills records that lack the field
(the reader applies it), so it counts as ``field``/``default`` before ``collected_at``.

Area, in order: ``field`` (the source's ``area`` field, when it names an area of the spec),
``rules`` (keywords/patterns in the spec: the area with the most hits, ties are left to the
next step), ``embedding`` (the nearest area profile by cosine similarity; its confidence is a
softmax over the similarities, and every area within ``margin`` of the best is a *candidate*).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np

from ftprep.examples import Dataset
from ftprep.project import Project
from ftprep.spec.document import Spec
from ftprep.spec.history import History, parse_time, version_key


@dataclass
class Versions:
    values: list[str | None]  # the recorded version (history spelling) or the raw value
    sources: list[str]  # field | collected_at | default | missing
    unknown: list[int] = field(default_factory=list)  # indices whose version is not in the history
    unparseable_dates: int = 0


def resolve_versions(project: Project, dataset: Dataset, history: History | None) -> Versions:
    by_source = {s.name: s for s in project.sources}
    raw = dataset.column("spec_version")
    sources = dataset.column("source")
    collected = dataset.column("collected_at")
    values: list[str | None] = []
    how: list[str] = []
    unknown: list[int] = []
    bad_dates = 0
    when_memo: dict[str, dt.datetime | None] = {}
    canon = {version_key(v): v for v in history.versions} if history else {}
    for i, (v, s, c) in enumerate(zip(raw, sources, collected, strict=True)):
        src = by_source.get(s)
        has_field = src is not None and src.fields.spec_version is not None
        default = src.defaults.get("spec_version") if src is not None else None
        out: str | None = None
        kind = "missing"
        if v is not None and has_field:
            out, kind = v, ("default" if default is not None and v == default else "field")
        if out is None and c is not None and history is not None and history.locked:
            if c not in when_memo:
                when_memo[c] = parse_time(c)
            t = when_memo[c]
            if t is None:
                bad_dates += 1
            else:
                out, kind = history.version_at(t), "collected_at"
        if out is None and v is not None:
            out, kind = v, ("default" if not has_field else "field")
        if out is not None and canon:
            k = version_key(out)
            if k in canon:
                out = canon[k]
            else:
                unknown.append(i)
        values.append(out)
        how.append(kind)
    return Versions(values, how, unknown, bad_dates)


@dataclass
class Areas:
    values: list[str | None]
    sources: list[str]  # field | rules | embedding | none
    confidence: np.ndarray  # 1.0 for field, hit share for rules, softmax probability for embedding
    candidates: list[tuple[str, ...]]  # areas an example may plausibly belong to
    unknown_field_values: dict[str, int] = field(default_factory=dict)
    # how often inference (rules, then embeddings) reproduces the areas given as a field, on
    # up to ``holdout`` field-labelled examples; None when nothing was inferred or nothing given
    holdout_agreement: float | None = None
    holdout_n: int = 0


def rule_assign(spec: Spec, texts: Sequence[str]) -> tuple[list[str | None], np.ndarray]:
    """The area with the most rule hits (``None`` when no area, or several equally, match)."""
    names = [n for n, a in spec.areas.items() if a.keywords or a.patterns]
    out: list[str | None] = []
    conf = np.zeros(len(texts), dtype=np.float32)
    for i, t in enumerate(texts):
        hits = [(spec.areas[n].rule_hits(t), n) for n in names]
        hits = [h for h in hits if h[0] > 0]
        if not hits:
            out.append(None)
            continue
        hits.sort(reverse=True)
        if len(hits) > 1 and hits[0][0] == hits[1][0]:
            out.append(None)
            continue
        out.append(hits[0][1])
        conf[i] = hits[0][0] / sum(h for h, _ in hits)
    return out, conf


def nearest_area(
    example_emb: np.ndarray,
    area_emb: np.ndarray,
    *,
    temperature: float = 0.05,
    margin: float = 0.03,
) -> tuple[np.ndarray, np.ndarray, list[tuple[int, ...]]]:
    """For L2-normalised rows: index of the most similar area, its softmax probability at
    ``temperature``, and the indices of every area whose similarity is within ``margin`` of it."""
    sims = example_emb @ area_emb.T
    best = sims.argmax(axis=1)
    z = (sims - sims.max(axis=1, keepdims=True)) / max(temperature, 1e-6)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    conf = p[np.arange(len(best)), best]
    top = sims.max(axis=1, keepdims=True)
    rows, cols = np.nonzero(sims >= top - margin)
    bounds = np.searchsorted(rows, np.arange(len(best) + 1))
    flat = cols.tolist()
    cands = [tuple(flat[bounds[k] : bounds[k + 1]]) for k in range(len(best))]
    return best, conf.astype(np.float32), cands


def _normalise(m: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(m, axis=1, keepdims=True)
    n[n == 0] = 1.0
    return (m / n).astype(np.float32)


def _with_centroids(base: np.ndarray, ex: np.ndarray, lab: np.ndarray) -> np.ndarray:
    """Each area profile plus the normalised centroid of the examples labelled with it."""
    from scipy import sparse

    ok = np.flatnonzero(lab >= 0)
    onehot = sparse.csr_matrix(
        (np.ones(len(ok), dtype=np.float32), (lab[ok], ok)), shape=(len(base), len(ex))
    )
    sums = np.asarray(onehot @ ex, dtype=np.float32)
    has = np.linalg.norm(sums, axis=1) > 0
    out = base.copy()
    out[has] = _normalise(base[has] + _normalise(sums[has]))
    return out


def assign_areas(
    spec: Spec,
    dataset: Dataset,
    *,
    text_field: str = "prompt",
    embed_examples: Callable[[], np.ndarray] | None = None,
    embed_texts: Callable[[list[str]], np.ndarray] | None = None,
    use_seeds: bool = True,
    temperature: float = 0.05,
    margin: float = 0.03,
    refine: int = 0,
    holdout: int = 5000,
) -> Areas:
    """Assign every example an area. ``embed_examples()`` returns the embeddings of
    ``dataset.texts(text_field)``; ``embed_texts`` embeds area profiles. Without them, examples
    that neither a field nor a rule places stay unassigned. With ``use_seeds``, an area's
    profile is its description plus the centroid of the examples already placed by field or rule.
    ``refine`` rounds then re-centre every profile on the examples currently assigned to it and
    re-assign (k-means started from the descriptions; field- and rule-placed examples stay)."""
    n = len(dataset)
    names = list(spec.areas)
    lookup = {a.casefold(): a for a in names}
    values: list[str | None] = [None] * n
    sources = ["none"] * n
    conf = np.zeros(n, dtype=np.float32)
    cands: list[tuple[str, ...]] = [()] * n
    unknown_field: dict[str, int] = {}
    for i, a in enumerate(dataset.column("area")):
        if a is None:
            continue
        name = lookup.get(str(a).strip().casefold())
        if name is None:
            unknown_field[str(a)] = unknown_field.get(str(a), 0) + 1
            continue
        values[i], sources[i], conf[i], cands[i] = name, "field", 1.0, (name,)
    todo = [i for i in range(n) if values[i] is None]
    texts = dataset.texts(text_field)
    if todo and any(a.keywords or a.patterns for a in spec.areas.values()):
        ra, rc = rule_assign(spec, [texts[i] for i in todo])
        for j, i in enumerate(todo):
            if ra[j] is not None:
                values[i], sources[i], conf[i], cands[i] = ra[j], "rules", rc[j], (ra[j],)  # type: ignore[assignment]
        todo = [i for i in range(n) if values[i] is None]
    ex: np.ndarray | None = None
    base: np.ndarray | None = None
    index = {a: k for k, a in enumerate(names)}
    if todo and names and embed_examples is not None and embed_texts is not None:
        ex = np.asarray(embed_examples(), dtype=np.float32)
        base = _normalise(
            np.asarray(embed_texts([spec.areas[a].profile for a in names]), dtype=np.float32)
        )
        prof = base.copy()
        lab = np.array([index[v] if v is not None else -1 for v in values], dtype=np.int64)
        if use_seeds:
            prof = _with_centroids(base, ex, lab)
        for _ in range(max(0, refine)):
            best, _, _ = nearest_area(ex[todo], prof, temperature=temperature, margin=margin)
            lab[todo] = best
            prof = _with_centroids(base, ex, lab)
        best, pc, cidx = nearest_area(ex[todo], prof, temperature=temperature, margin=margin)
        for j, i in enumerate(todo):
            values[i] = names[int(best[j])]
            sources[i], conf[i] = "embedding", pc[j]
            cands[i] = tuple(names[k] for k in cidx[j])
    out = Areas(values, sources, conf, cands, unknown_field)
    given = [i for i in range(n) if sources[i] == "field"][:holdout]
    if given and any(x in ("rules", "embedding") for x in sources):
        agree = _holdout(
            spec,
            [texts[i] for i in given],
            [values[i] for i in given],
            given,
            ex,
            base,
            values,
            sources,
            index,
            temperature,
        )
        out.holdout_agreement, out.holdout_n = agree, len(given)
    return out


def _holdout(
    spec: Spec,
    texts: list[str],
    truth: list[str | None],
    given: list[int],
    ex: np.ndarray | None,
    base: np.ndarray | None,
    values: list[str | None],
    sources: list[str],
    index: dict[str, int],
    temperature: float,
) -> float:
    """Place field-labelled examples as if they had no field (profiles built without them)."""
    names = list(index)
    pred, _ = (
        rule_assign(spec, texts)
        if any(a.keywords or a.patterns for a in spec.areas.values())
        else ([None] * len(texts), None)
    )
    rest = [j for j, p in enumerate(pred) if p is None]
    if rest and ex is not None and base is not None:
        lab = np.array(
            [
                index[v] if v is not None and s != "field" else -1
                for v, s in zip(values, sources, strict=True)
            ],
            dtype=np.int64,
        )
        prof = _with_centroids(base, ex, lab)
        best, _, _ = nearest_area(ex[[given[j] for j in rest]], prof, temperature=temperature)
        for j, b in zip(rest, best.tolist(), strict=True):
            pred[j] = names[b]
    return sum(1 for p, t in zip(pred, truth, strict=True) if p == t) / len(truth)


def months(values: Sequence[str | None]) -> list[str | None]:
    """``YYYY-MM`` of each timestamp (``None`` when missing or unparseable)."""
    memo: dict[str | None, str | None] = {}
    out: list[str | None] = []
    for v in values:
        if v not in memo:
            t = parse_time(v)
            memo[v] = None if t is None else f"{t.year:04d}-{t.month:02d}"
        out.append(memo[v])
    return out


def derive_spec_versions(project: Project, dataset: Dataset) -> list[str | None]:
    """Every example's spec version (field, collected_at, or default), for writers such as the
    build manifest. Uses the project's spec history when the spec is locked."""
    from ftprep.spec.control import spec_path
    from ftprep.spec.history import history_path

    p = spec_path(project)
    hist = History.load(history_path(p)) if p is not None and p.exists() else None
    return resolve_versions(project, dataset, hist).values
