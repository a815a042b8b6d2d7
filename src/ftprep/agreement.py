"""Inter-annotator agreement: Krippendorff's α, Cohen's κ, Fleiss' κ and observed agreement.

Everything here is vectorised over integer-coded data so that tens of thousands of labels take
milliseconds. Input is either a *reliability matrix* (raters × units, ``nan``/``None`` = missing,
the layout of the ``krippendorff`` package) or *long triples* ``(unit, rater, value)``; both are
turned into :class:`Ratings` (integer codes, ``-1`` = missing, plus the ordered value domain).

The formulas match the reference implementations to floating-point precision:

* :func:`krippendorff_alpha` — ``krippendorff.alpha`` (nominal, ordinal, interval, ratio;
  Krippendorff 2011, coincidence-matrix form; units with fewer than two values are not pairable).
* :func:`cohen_kappa` — ``statsmodels.stats.inter_rater.cohens_kappa`` (unweighted, ``linear``
  and ``quadratic`` weights on the category ranks) and ``sklearn.metrics.cohen_kappa_score``.
* :func:`fleiss_kappa` — ``statsmodels.stats.inter_rater.fleiss_kappa`` when every unit has the
  same number of ratings; with unequal numbers each unit's agreement uses its own count.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

Level = Literal["nominal", "ordinal", "interval", "ratio"]
Weights = Literal["linear", "quadratic"] | None
LEVELS: tuple[str, ...] = ("nominal", "ordinal", "interval", "ratio")

__all__ = [
    "LEVELS",
    "PairStats",
    "Ratings",
    "alpha_per_category",
    "cohen_kappa",
    "cohen_kappa_table",
    "confusion_matrix",
    "fleiss_kappa",
    "krippendorff_alpha",
    "krippendorff_alpha_counts",
    "observed_agreement",
    "pair_stats",
    "pairwise_kappa",
    "ratings_from_long",
    "ratings_from_matrix",
]


def _is_missing(v: Any) -> bool:
    if v is None:
        return True
    if isinstance(v, float | np.floating) and np.isnan(v):
        return True
    return isinstance(v, str) and v == ""


@dataclass(slots=True)
class Ratings:
    """Integer-coded reliability data.

    ``codes[r, u]`` is the index into ``domain`` of the value rater ``r`` gave unit ``u``, or
    ``-1`` when missing. ``domain`` is ordered (sorted unless given explicitly), so codes are also
    ranks for ordinal data.
    """

    codes: np.ndarray  # int32, raters × units
    domain: np.ndarray  # values, ordered
    raters: list[str]
    units: list[str]

    @property
    def n_raters(self) -> int:
        return int(self.codes.shape[0])

    @property
    def n_units(self) -> int:
        return int(self.codes.shape[1])

    @property
    def n_values(self) -> int:
        return len(self.domain)

    @property
    def n_labels(self) -> int:
        return int((self.codes >= 0).sum())

    def counts(self) -> np.ndarray:
        """Units × values matrix: how many raters gave each value to each unit."""
        return _counts(self.codes, self.n_values)

    def matrix(self) -> np.ndarray:
        """Float reliability matrix (raters × units, ``nan`` = missing) of the *domain values*
        when they are numeric, else of the codes."""
        vals = (
            self.domain.astype(float)
            if _numeric(self.domain)
            else np.arange(self.n_values, dtype=float)
        )
        out = np.full(self.codes.shape, np.nan)
        m = self.codes >= 0
        out[m] = vals[self.codes[m]]
        return out

    def numeric_domain(self) -> np.ndarray:
        if _numeric(self.domain):
            return self.domain.astype(float)
        return np.arange(self.n_values, dtype=float)

    def subset_raters(self, keep: np.ndarray) -> Ratings:
        idx = np.flatnonzero(keep) if keep.dtype == bool else keep
        return Ratings(self.codes[idx], self.domain, [self.raters[i] for i in idx], self.units)


def _numeric(a: np.ndarray) -> bool:
    return a.dtype.kind in "iufb"


def _counts(codes: np.ndarray, n_values: int) -> np.ndarray:
    n_units = codes.shape[1]
    m = codes >= 0
    unit_idx = np.broadcast_to(np.arange(n_units), codes.shape)[m]
    flat = unit_idx.astype(np.int64) * n_values + codes[m]
    return np.bincount(flat, minlength=n_units * n_values).reshape(n_units, n_values)


def _encode(
    values: np.ndarray, domain: Sequence[Any] | np.ndarray | None
) -> tuple[np.ndarray, np.ndarray]:
    """Codes (-1 for missing) and the ordered domain for a flat object/float array."""
    missing = np.fromiter((_is_missing(v) for v in values), bool, len(values))
    present = values[~missing]
    if domain is None:
        kinds = {type(v) for v in present}
        if (
            present.size
            and all(issubclass(k, int | float | np.integer | np.floating) for k in kinds)
            and not any(issubclass(k, bool | np.bool_) for k in kinds)
        ):
            arr = present.astype(float)
            dom = np.unique(arr)
            if np.all(dom == np.round(dom)):
                dom_out: np.ndarray = (
                    dom.astype(np.int64) if np.abs(dom).max(initial=0) < 2**53 else dom
                )
            else:
                dom_out = dom
            code_present = np.searchsorted(dom, arr)
        else:
            strs = np.array([str(v) for v in present], dtype=object)
            dom_out, code_present = np.unique(strs, return_inverse=True)
            dom_out = dom_out.astype(str)
    else:
        dom_out = np.asarray(list(domain))
        lookup: dict[Any, int] = {}
        for i, v in enumerate(dom_out.tolist()):
            lookup[v] = i
            lookup[str(v)] = i
            if isinstance(v, int | float) and float(v) == int(v):
                lookup[float(v)] = i
                lookup[int(v)] = i
        code_list = []
        for v in present.tolist():
            key = v if v in lookup else str(v)
            if key not in lookup:
                raise ValueError(f"value {v!r} is not in the value domain {dom_out.tolist()!r}")
            code_list.append(lookup[key])
        code_present = np.asarray(code_list, dtype=np.int64)
    codes = np.full(len(values), -1, dtype=np.int32)
    codes[~missing] = code_present
    return codes, dom_out


def ratings_from_matrix(
    matrix: Any,
    *,
    domain: Sequence[Any] | None = None,
    raters: Sequence[str] | None = None,
    units: Sequence[str] | None = None,
) -> Ratings:
    """A reliability matrix (raters × units; ``nan``, ``None`` or ``""`` = missing)."""
    if isinstance(matrix, Ratings):
        return matrix
    arr = np.asarray(matrix, dtype=object) if not isinstance(matrix, np.ndarray) else matrix
    if arr.ndim != 2:
        raise ValueError(f"a reliability matrix is 2-D (raters × units); got shape {arr.shape}")
    if arr.dtype.kind == "f" and domain is None:
        flat = arr.ravel()
        missing = np.isnan(flat)
        dom = np.unique(flat[~missing])
        codes = np.full(flat.shape, -1, dtype=np.int32)
        codes[~missing] = np.searchsorted(dom, flat[~missing])
        dom_out = dom.astype(np.int64) if dom.size and np.all(dom == np.round(dom)) else dom
    else:
        codes, dom_out = _encode(arr.astype(object).ravel(), domain)
    codes2d = np.asarray(codes).reshape(arr.shape)
    r = list(raters) if raters is not None else [str(i) for i in range(arr.shape[0])]
    u = list(units) if units is not None else [str(i) for i in range(arr.shape[1])]
    return Ratings(codes2d, dom_out, r, u)


def ratings_from_long(
    units: Iterable[Any],
    raters: Iterable[Any],
    values: Iterable[Any],
    *,
    domain: Sequence[Any] | None = None,
) -> Ratings:
    """Long triples ``(unit, rater, value)``. A repeated ``(unit, rater)`` keeps the last value;
    missing values (``None``/``nan``/``""``) are ignored."""
    u_arr = np.asarray([str(x) for x in units], dtype=object)
    r_arr = np.asarray([str(x) for x in raters], dtype=object)
    v_arr = np.asarray(list(values), dtype=object)
    if not (len(u_arr) == len(r_arr) == len(v_arr)):
        raise ValueError("units, raters and values must have the same length")
    codes_flat, dom = _encode(v_arr, domain)
    unit_names, ui = np.unique(u_arr.astype(str), return_inverse=True)
    rater_names, ri = np.unique(r_arr.astype(str), return_inverse=True)
    codes = np.full((len(rater_names), len(unit_names)), -1, dtype=np.int32)
    keep = codes_flat >= 0
    codes[ri[keep], ui[keep]] = codes_flat[keep]  # numpy assigns in order: the last one wins
    return Ratings(codes, dom, [str(x) for x in rater_names], [str(x) for x in unit_names])


# --------------------------------------------------------------------------- Krippendorff's α
def _coincidences(counts: np.ndarray) -> np.ndarray:
    counts = counts.astype(np.float64)
    m = counts.sum(axis=1)
    ok = m >= 2
    c = counts[ok]
    w = 1.0 / (m[ok] - 1.0)
    o = (c * w[:, None]).T @ c  # sum_u n_uc n_uk / (m_u - 1)
    o[np.diag_indices_from(o)] -= (c * w[:, None]).sum(axis=0)
    return o


def _distance(level: str, values: np.ndarray, n_v: np.ndarray) -> np.ndarray:
    if level == "nominal":
        return 1.0 - np.eye(len(n_v))
    v = values.astype(np.float64)
    if level == "interval":
        return (v[:, None] - v[None, :]) ** 2
    if level == "ratio":
        s = v[:, None] + v[None, :]
        d = np.divide(v[:, None] - v[None, :], s, out=np.zeros_like(s), where=s != 0)
        return d**2
    if level == "ordinal":
        cum = np.concatenate([[0.0], np.cumsum(n_v)])
        i = np.arange(len(n_v))
        lo = np.minimum(i[:, None], i[None, :])
        hi = np.maximum(i[:, None], i[None, :])
        between = cum[hi + 1] - cum[lo]
        return (between - (n_v[lo] + n_v[hi]) / 2.0) ** 2
    raise ValueError(f"level must be one of {', '.join(LEVELS)} (got {level!r})")


def krippendorff_alpha_counts(
    counts: np.ndarray, *, level: str = "nominal", values: np.ndarray | None = None
) -> float:
    """α from a units × values count matrix (``values`` = numeric domain for interval/ratio;
    ranks are used when omitted). ``nan`` when there is no pairable variation."""
    counts = np.asarray(counts)
    vals = (
        np.arange(counts.shape[1], dtype=float)
        if values is None
        else np.asarray(values, dtype=float)
    )
    o = _coincidences(counts)
    n_v = o.sum(axis=0)
    n = n_v.sum()
    if n <= 1:
        return float("nan")
    e = (np.outer(n_v, n_v) - np.diag(n_v)) / (n - 1.0)
    d = _distance(level, vals, n_v)
    de = float((e * d).sum())
    if de == 0:
        return float("nan")
    return 1.0 - float((o * d).sum()) / de


def krippendorff_alpha(
    data: Any, *, level: str = "nominal", domain: Sequence[Any] | None = None
) -> float:
    """Krippendorff's α of a reliability matrix (raters × units) or :class:`Ratings`.

    ``level``: ``nominal``, ``ordinal``, ``interval`` or ``ratio``. For string labels at a
    non-nominal level give the ordered ``domain``; for numbers the numeric values are used.
    """
    if level not in LEVELS:
        raise ValueError(f"level must be one of {', '.join(LEVELS)} (got {level!r})")
    r = data if isinstance(data, Ratings) else ratings_from_matrix(data, domain=domain)
    if level in ("interval", "ratio") and not _numeric(r.domain) and domain is None:
        raise ValueError(f"{level} α needs numeric values or an ordered domain")
    return krippendorff_alpha_counts(r.counts(), level=level, values=r.numeric_domain())


def alpha_per_category(data: Any) -> dict[str, float]:
    """Nominal α of each category against all others (binarised): how reliably annotators
    recognise that category."""
    r = data if isinstance(data, Ratings) else ratings_from_matrix(data)
    counts = r.counts()
    total = counts.sum(axis=1, keepdims=True)
    out: dict[str, float] = {}
    for k in range(r.n_values):
        ck = counts[:, k : k + 1]
        binary = np.concatenate([total - ck, ck], axis=1)
        out[str(r.domain[k])] = krippendorff_alpha_counts(binary, level="nominal")
    return out


# --------------------------------------------------------------------------- Cohen's κ
def _weight_matrix(k: int, weights: Weights, scores: np.ndarray | None = None) -> np.ndarray:
    s = np.arange(k, dtype=float) if scores is None else np.asarray(scores, dtype=float)
    if weights is None:
        return 1.0 - np.eye(k)
    diff = np.abs(s[:, None] - s[None, :])
    if weights == "linear":
        w = diff
    elif weights == "quadratic":
        w = diff**2
    else:
        raise ValueError(f"weights must be None, 'linear' or 'quadratic' (got {weights!r})")
    mx = w.max()
    return w / mx if mx > 0 else w


def cohen_kappa_table(table: Any, weights: Weights = None) -> float:
    """Cohen's κ of a square contingency table (rater A in rows, B in columns). Weighted κ uses
    the category ranks as scores (as statsmodels ``wt=`` and sklearn ``weights=``)."""
    t = np.asarray(table, dtype=float)
    if t.ndim != 2 or t.shape[0] != t.shape[1]:
        raise ValueError("a contingency table must be square")
    n = t.sum()
    if n == 0:
        return float("nan")
    p = t / n
    exp = np.outer(p.sum(axis=1), p.sum(axis=0))
    w = _weight_matrix(t.shape[0], weights)
    de = float((w * exp).sum())
    if de == 0:
        return float("nan")
    return 1.0 - float((w * p).sum()) / de


def confusion_matrix(a: np.ndarray, b: np.ndarray, k: int) -> np.ndarray:
    """k × k counts of (code in ``a``, code in ``b``) over positions where both are present."""
    a = np.asarray(a)
    b = np.asarray(b)
    m = (a >= 0) & (b >= 0)
    return np.bincount(a[m].astype(np.int64) * k + b[m], minlength=k * k).reshape(k, k)


def cohen_kappa(
    a: Sequence[Any] | np.ndarray,
    b: Sequence[Any] | np.ndarray,
    *,
    weights: Weights = None,
    domain: Sequence[Any] | None = None,
) -> float:
    """Cohen's κ between two raters' labels for the same units (missing in either is skipped).
    The category order (for weights) is ``domain`` if given, else sorted values."""
    if len(a) != len(b):
        raise ValueError("both raters must label the same units (equal lengths)")
    r = ratings_from_matrix(np.array([list(a), list(b)], dtype=object), domain=domain)
    return cohen_kappa_table(confusion_matrix(r.codes[0], r.codes[1], r.n_values), weights)


def _co_labels(r: Ratings) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Every pair of labels on the same unit by raters ``a < b``: (a, b, code_a, code_b)."""
    rr, uu = np.nonzero(r.codes.T >= 0)  # sorted by unit, then rater
    units, raters = rr, uu
    if units.size == 0:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e, e
    starts = np.flatnonzero(np.r_[True, units[1:] != units[:-1]])
    sizes = np.diff(np.r_[starts, units.size])
    slot = np.arange(units.size) - np.repeat(starts, sizes)
    m = int(sizes.max())
    grid = np.full((len(starts), m), -1, dtype=np.int64)
    grid[np.repeat(np.arange(len(starts)), sizes), slot] = raters
    codes_u = r.codes.T[units[starts]]  # units × raters
    out_a, out_b, out_ca, out_cb = [], [], [], []
    for s in range(m):
        for t in range(s + 1, m):
            ok = grid[:, t] >= 0
            a = grid[ok, s]
            b = grid[ok, t]
            rows = np.flatnonzero(ok)
            out_a.append(a)
            out_b.append(b)
            out_ca.append(codes_u[rows, a])
            out_cb.append(codes_u[rows, b])
    if not out_a:
        e = np.zeros(0, dtype=np.int64)
        return e, e, e, e
    return (
        np.concatenate(out_a),
        np.concatenate(out_b),
        np.concatenate(out_ca).astype(np.int64),
        np.concatenate(out_cb).astype(np.int64),
    )


def _kappa_tables(tables: np.ndarray, weights: Weights) -> np.ndarray:
    """Cohen's κ of a stack of K × K tables (vectorised :func:`cohen_kappa_table`)."""
    k = tables.shape[-1]
    w = _weight_matrix(k, weights)
    n = tables.sum(axis=(1, 2))
    p = tables / np.maximum(n, 1)[:, None, None]
    exp = p.sum(axis=2)[:, :, None] * p.sum(axis=1)[:, None, :]
    de = (w[None] * exp).sum(axis=(1, 2))
    num = (w[None] * p).sum(axis=(1, 2))
    with np.errstate(divide="ignore", invalid="ignore"):
        kap = 1.0 - num / de
    return np.asarray(np.where((de > 0) & (n > 0), kap, np.nan))


@dataclass(slots=True)
class PairStats:
    a: np.ndarray  # rater index
    b: np.ndarray  # rater index (a < b)
    overlap: np.ndarray
    kappa: np.ndarray
    agreement: np.ndarray  # raw share of agreeing labels
    tables: np.ndarray  # pairs × K × K (rows: rater a, columns: rater b)


def pair_stats(
    r: Ratings, *, weights: Weights = None, min_overlap: int = 1, max_pairs: int = 5000
) -> PairStats:
    """Cohen's κ, raw agreement and contingency table of every rater pair sharing at least
    ``min_overlap`` units (the ``max_pairs`` pairs with the largest overlap), sorted by overlap.
    Vectorised over label pairs: cost grows with the labels, not with raters²."""
    k = r.n_values
    a, b, ca, cb = _co_labels(r)
    key = a * r.n_raters + b
    uniq, inv, cnt = np.unique(key, return_inverse=True, return_counts=True)
    keep = np.flatnonzero(cnt >= max(min_overlap, 1))
    keep = keep[np.argsort(-cnt[keep], kind="stable")][:max_pairs]
    pos = np.full(len(uniq), -1, dtype=np.int64)
    pos[keep] = np.arange(len(keep))
    sel = pos[inv] >= 0
    flat = (pos[inv][sel] * k + ca[sel]) * k + cb[sel]
    tables = np.bincount(flat, minlength=len(keep) * k * k).reshape(len(keep), k, k).astype(float)
    kap = _kappa_tables(tables, weights) if len(keep) else np.zeros(0)
    n = tables.sum(axis=(1, 2))
    agree = np.trace(tables, axis1=1, axis2=2) / np.maximum(n, 1)
    return PairStats(
        uniq[keep] // r.n_raters, uniq[keep] % r.n_raters, cnt[keep], kap, agree, tables
    )


def pairwise_kappa(
    r: Ratings, *, weights: Weights = None, min_overlap: int = 1
) -> tuple[np.ndarray, np.ndarray]:
    """Cohen's κ for every rater pair as ``(kappa, overlap)`` matrices (raters × raters); pairs
    sharing fewer than ``min_overlap`` units get ``nan``. For many raters use :func:`pair_stats`."""
    n_r = r.n_raters
    ps = pair_stats(r, weights=weights, min_overlap=min_overlap, max_pairs=n_r * n_r)
    kappa = np.full((n_r, n_r), np.nan)
    overlap = np.zeros((n_r, n_r), dtype=np.int64)
    present = (r.codes >= 0).astype(np.int64)
    overlap[:] = present @ present.T
    kappa[ps.a, ps.b] = ps.kappa
    kappa[ps.b, ps.a] = ps.kappa
    np.fill_diagonal(kappa, 1.0)
    return kappa, overlap


# --------------------------------------------------------------------------- Fleiss' κ, raw agreement
def fleiss_kappa(counts: Any, *, method: Literal["fleiss", "randolph"] = "fleiss") -> float:
    """Fleiss' κ from a units × categories count table (units with < 2 ratings are skipped).
    ``randolph``: free-marginal κ (chance = 1 / number of categories)."""
    t = np.asarray(counts, dtype=float)
    m = t.sum(axis=1)
    t = t[m >= 2]
    m = m[m >= 2]
    if t.shape[0] == 0:
        return float("nan")
    p_unit = ((t * t).sum(axis=1) - m) / (m * (m - 1.0))
    p_bar = float(p_unit.mean())
    if method == "fleiss":
        p_cat = t.sum(axis=0) / t.sum()
        p_exp = float((p_cat * p_cat).sum())
    elif method == "randolph":
        p_exp = 1.0 / t.shape[1]
    else:
        raise ValueError("method must be 'fleiss' or 'randolph'")
    if p_exp == 1.0:
        return float("nan")
    return (p_bar - p_exp) / (1.0 - p_exp)


def observed_agreement(counts: Any) -> float:
    """Share of agreeing rater pairs, averaged over units with ≥ 2 ratings (pairwise % agreement)."""
    t = np.asarray(counts, dtype=float)
    m = t.sum(axis=1)
    ok = m >= 2
    if not ok.any():
        return float("nan")
    return float((((t[ok] * t[ok]).sum(axis=1) - m[ok]) / (m[ok] * (m[ok] - 1.0))).mean())
