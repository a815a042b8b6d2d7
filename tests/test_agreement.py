"""Agreement statistics against the reference implementations (krippendorff, statsmodels, sklearn)."""

from __future__ import annotations

import csv
import json
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ftprep.agreement import (
    alpha_per_category,
    cohen_kappa,
    cohen_kappa_table,
    fleiss_kappa,
    krippendorff_alpha,
    observed_agreement,
    pairwise_kappa,
    ratings_from_long,
    ratings_from_matrix,
)

krippendorff = pytest.importorskip("krippendorff")
inter_rater = pytest.importorskip("statsmodels.stats.inter_rater")

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
ANN = DATA / "annotators"
TOL = 1e-6


def _ref_alpha(m: np.ndarray, level: str) -> float:
    return float(krippendorff.alpha(reliability_data=m, level_of_measurement=level))


# ----------------------------------------------------------------------------- textbook data
KRIPP_DOC = np.array(
    [
        [np.nan, np.nan, np.nan, np.nan, np.nan, 3, 4, 1, 2, 1, 1, 3, 3, np.nan, 3],
        [1, np.nan, 2, 1, 3, 3, 4, 3, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan, np.nan],
        [np.nan, np.nan, 2, 1, 3, 4, 4, np.nan, 2, 1, 1, 3, 3, np.nan, 4],
    ]
)


def test_textbook_values() -> None:
    assert krippendorff_alpha(KRIPP_DOC, level="nominal") == pytest.approx(0.691358, abs=1e-6)
    assert krippendorff_alpha(KRIPP_DOC, level="interval") == pytest.approx(0.810845, abs=1e-6)


@pytest.mark.parametrize("level", ["nominal", "ordinal", "interval", "ratio"])
def test_alpha_matches_reference_on_random_sparse(level: str) -> None:
    rng = np.random.default_rng(1)
    truth = rng.integers(1, 6, size=400)
    m = np.where(rng.random((7, 400)) < 0.7, truth, rng.integers(1, 6, size=(7, 400))).astype(float)
    m[rng.random(m.shape) < 0.4] = np.nan
    assert krippendorff_alpha(m, level=level) == pytest.approx(_ref_alpha(m, level), abs=TOL)


def test_string_labels_with_ordered_domain() -> None:
    dom = ["very low", "low", "mid", "high", "very high"]
    rng = np.random.default_rng(2)
    m = rng.choice(np.array(dom, dtype=object), size=(4, 60))
    m[rng.random(m.shape) < 0.2] = None
    ref_m = np.where(m == None, "nan", m).astype(str)  # noqa: E711
    ref = krippendorff.alpha(ref_m, level_of_measurement="ordinal", value_domain=dom)
    assert krippendorff_alpha(m, level="ordinal", domain=dom) == pytest.approx(ref, abs=TOL)
    ref_nom = krippendorff.alpha(ref_m, level_of_measurement="nominal")
    assert krippendorff_alpha(m, level="nominal") == pytest.approx(ref_nom, abs=TOL)


def test_long_triples_equal_matrix() -> None:
    m = KRIPP_DOC
    units, raters, vals = [], [], []
    for r in range(m.shape[0]):
        for u in range(m.shape[1]):
            if not np.isnan(m[r, u]):
                units.append(f"u{u:02d}")
                raters.append(f"r{r}")
                vals.append(float(m[r, u]))
    r = ratings_from_long(units, raters, vals)
    assert r.n_labels == int((~np.isnan(m)).sum())
    for level in ("nominal", "ordinal", "interval", "ratio"):
        assert krippendorff_alpha(r, level=level) == pytest.approx(_ref_alpha(m, level), abs=TOL)


def test_long_duplicate_keeps_last() -> None:
    r = ratings_from_long(["a", "a", "b"], ["x", "x", "x"], ["1", "2", "1"])
    assert r.domain[r.codes[0, 0]] == "2"


# ----------------------------------------------------------------------------- Cohen / Fleiss
@pytest.mark.parametrize("weights", [None, "linear", "quadratic"])
def test_cohen_matches_statsmodels_and_sklearn(weights: str | None) -> None:
    from sklearn.metrics import cohen_kappa_score

    rng = np.random.default_rng(3)
    a = rng.integers(0, 4, 500)
    b = np.where(rng.random(500) < 0.6, a, rng.integers(0, 4, 500))
    table = np.zeros((4, 4))
    np.add.at(table, (a, b), 1)
    ref = (
        inter_rater.cohens_kappa(table, wt=weights, return_results=False)
        if weights
        else inter_rater.cohens_kappa(table, return_results=False)
    )
    mine = cohen_kappa(a.tolist(), b.tolist(), weights=weights)  # type: ignore[arg-type]
    assert mine == pytest.approx(ref, abs=TOL)
    assert mine == pytest.approx(cohen_kappa_score(a, b, weights=weights), abs=TOL)
    assert cohen_kappa_table(table, weights) == pytest.approx(ref, abs=TOL)  # type: ignore[arg-type]


def test_fleiss_matches_statsmodels() -> None:
    rng = np.random.default_rng(4)
    truth = rng.integers(0, 3, 300)
    m = np.where(rng.random((5, 300)) < 0.65, truth, rng.integers(0, 3, (5, 300)))
    table, _ = inter_rater.aggregate_raters(m.T)
    r = ratings_from_matrix(m.astype(float))
    assert fleiss_kappa(r.counts()) == pytest.approx(inter_rater.fleiss_kappa(table), abs=TOL)
    assert fleiss_kappa(r.counts(), method="randolph") == pytest.approx(
        inter_rater.fleiss_kappa(table, method="randolph"), abs=TOL
    )


def test_observed_agreement_simple() -> None:
    counts = np.array([[2, 0], [1, 1], [3, 0]])
    assert observed_agreement(counts) == pytest.approx((1 + 0 + 1) / 3)


def test_pairwise_kappa_symmetric_and_correct() -> None:
    rng = np.random.default_rng(5)
    m = rng.integers(0, 3, (4, 200)).astype(float)
    m[rng.random(m.shape) < 0.3] = np.nan
    r = ratings_from_matrix(m)
    kap, ov = pairwise_kappa(r)
    assert np.allclose(kap, kap.T, equal_nan=True)
    both = ~np.isnan(m[0]) & ~np.isnan(m[2])
    assert ov[0, 2] == both.sum()
    assert kap[0, 2] == pytest.approx(cohen_kappa(m[0][both], m[2][both]), abs=TOL)


def test_per_category_alpha_binary_equals_overall() -> None:
    rng = np.random.default_rng(6)
    m = rng.integers(0, 2, (3, 100)).astype(float)
    per = alpha_per_category(m)
    overall = krippendorff_alpha(m)
    assert set(per) == {"0", "1"}
    assert per["0"] == pytest.approx(overall, abs=TOL)
    assert per["1"] == pytest.approx(overall, abs=TOL)


@settings(max_examples=40, deadline=None)
@given(
    st.integers(0, 10_000),
    st.sampled_from(["nominal", "ordinal", "interval", "ratio"]),
    st.integers(2, 6),
    st.integers(3, 40),
    st.integers(2, 5),
)
def test_alpha_property_matches_reference(
    seed: int, level: str, n_raters: int, n_units: int, k: int
) -> None:
    rng = np.random.default_rng(seed)
    m = rng.integers(1, k + 1, (n_raters, n_units)).astype(float)
    m[rng.random(m.shape) < 0.3] = np.nan
    try:
        ref = _ref_alpha(m, level)
    except (ValueError, ZeroDivisionError, FloatingPointError):
        return
    mine = krippendorff_alpha(m, level=level)
    if np.isnan(ref) or not np.isfinite(ref):
        assert np.isnan(mine) or not np.isfinite(mine)
    else:
        assert mine == pytest.approx(ref, abs=TOL)


# ----------------------------------------------------------------------------- real datasets
needs_data = pytest.mark.skipif(not ANN.exists(), reason="shared data not available")


def _chaos_matrix() -> np.ndarray:
    rows = []
    for name in ("chaosNLI_snli.jsonl", "chaosNLI_mnli_m.jsonl"):
        with open(ANN / "chaosnli" / name, encoding="utf-8") as f:
            for line in f:
                rows.append(json.loads(line)["old_labels"])
    codes = {"entailment": 0.0, "neutral": 1.0, "contradiction": 2.0}
    m = np.full((5, len(rows)), np.nan)  # a few SNLI items have only 4 labels
    for u, labels in enumerate(rows):
        m[: len(labels), u] = [codes[x] for x in labels]
    return m


@needs_data
def test_chaosnli_matches_references() -> None:
    m = _chaos_matrix()
    assert krippendorff_alpha(m) == pytest.approx(_ref_alpha(m, "nominal"), abs=TOL)
    m = m[:, ~np.isnan(m).any(axis=0)]  # statsmodels' Fleiss needs equal counts per unit
    table, _ = inter_rater.aggregate_raters(m.T.astype(int))
    assert fleiss_kappa(ratings_from_matrix(m).counts()) == pytest.approx(
        inter_rater.fleiss_kappa(table), abs=TOL
    )


@needs_data
def test_politeness_real_raters() -> None:
    units, raters, vals = [], [], []
    with open(ANN / "stanford_politeness" / "wikipedia.annotated.csv", encoding="utf-8") as f:
        for row in csv.DictReader(f):
            for i in range(1, 6):
                units.append(row["Id"])
                raters.append(row[f"TurkId{i}"])
                vals.append(int(row[f"Score{i}"]))
    r = ratings_from_long(units, raters, vals)
    m = r.matrix()
    for level in ("nominal", "ordinal", "interval", "ratio"):
        assert krippendorff_alpha(r, level=level) == pytest.approx(_ref_alpha(m, level), abs=TOL), (
            level
        )
    # Cohen κ of the busiest pair against statsmodels (quadratic weights on ratings)
    kap, ov = pairwise_kappa(r, weights="quadratic")
    np.fill_diagonal(ov, 0)
    i, j = np.unravel_index(np.argmax(ov), ov.shape)
    both = (r.codes[i] >= 0) & (r.codes[j] >= 0)
    table = np.zeros((r.n_values, r.n_values))
    np.add.at(table, (r.codes[i][both], r.codes[j][both]), 1)
    ref = inter_rater.cohens_kappa(table, wt="quadratic", return_results=False)
    assert kap[i, j] == pytest.approx(ref, abs=TOL)


@needs_data
def test_lewidi_real_raters() -> None:
    with open(ANN / "lewidi2023" / "MD-Agreement_train.json", encoding="utf-8") as f:
        data = json.load(f)
    units, raters, vals = [], [], []
    for uid, item in list(data.items())[:3000]:
        for a, v in zip(item["annotators"].split(","), item["annotations"].split(","), strict=True):
            units.append(uid)
            raters.append(a.strip())
            vals.append(int(v))
    r = ratings_from_long(units, raters, vals)
    assert krippendorff_alpha(r) == pytest.approx(_ref_alpha(r.matrix(), "nominal"), abs=TOL)


def test_speed_50k_labels() -> None:
    rng = np.random.default_rng(7)
    n_units, n_raters = 10_000, 60
    truth = rng.integers(0, 5, n_units)
    units = np.repeat(np.arange(n_units), 5)
    raters = rng.integers(0, n_raters, units.size)
    vals = np.where(rng.random(units.size) < 0.7, truth[units], rng.integers(0, 5, units.size))
    t0 = time.perf_counter()
    r = ratings_from_long(units.tolist(), raters.tolist(), vals.tolist())
    for level in ("nominal", "ordinal", "interval"):
        krippendorff_alpha(r, level=level)
    fleiss_kappa(r.counts())
    pairwise_kappa(r, weights="quadratic")
    alpha_per_category(r)
    assert time.perf_counter() - t0 < 10.0
