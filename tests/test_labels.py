"""Label quality: annotations import, reliability, consensus, escalation, label errors, checks."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import ftprep
from ftprep.agreement import pair_stats, pairwise_kappa, ratings_from_long, ratings_from_matrix
from ftprep.checks.base import Action
from ftprep.labels.aggregate import (
    aggregate,
    fit_dirichlet_regression,
    item_prior_stability,
    majority_vote,
)
from ftprep.labels.annotations import SCHEMA, parse_config, read_annotations
from ftprep.labels.errors import knn_inconsistency, rank_label_errors
from ftprep.labels.escalation import EscalationParams, decide
from ftprep.labels.reliability import annotator_stats
from ftprep.project import ProjectError
from util import write_jsonl

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"


# ----------------------------------------------------------------------------- config + import
def test_config_errors_name_the_key() -> None:
    with pytest.raises(ProjectError, match=r"annotations\.colour"):
        parse_config({"path": "a.csv", "colour": "red"})
    with pytest.raises(ProjectError, match=r"annotations\.kind"):
        parse_config({"path": "a.csv", "kind": "stars"})
    with pytest.raises(ProjectError, match=r"annotations\.value_columns"):
        parse_config({"path": "a.csv", "format": "wide"})
    with pytest.raises(ProjectError, match=r"annotations\.path"):
        parse_config({"format": "long"})
    with pytest.raises(ProjectError, match=r"annotations\.gold"):
        parse_config({"path": "a.csv", "gold": "alice"})
    cfg = parse_config({"path": "a.csv", "kind": "rating"})
    assert cfg.level == "ordinal" and cfg.resolved_value_field == "rating"


def test_import_long_wide_rating_text(tmp_path: Path) -> None:
    long = tmp_path / "long.csv"
    long.write_text(
        "example_id,annotator,label,timestamp,reason\n"
        "e1,ann1,pos,2024-01-01,clear\ne1,ann2,neg,,\ne2,ann1,,,\n",
        encoding="utf-8",
    )
    t = read_annotations(parse_config({"path": str(long)}))
    assert t.schema == SCHEMA
    assert t.num_rows == 2  # the empty label is skipped
    assert t.to_pylist()[0] == {
        "example_id": "e1",
        "annotator": "ann1",
        "label": "pos",
        "rating": None,
        "text": None,
        "timestamp": "2024-01-01",
        "reason": "clear",
    }

    wide = tmp_path / "wide.csv"
    wide.write_text(
        "Id,Score1,Score2,TurkId1,TurkId2\n7,13,9,W1,W2\n8,20,,W3,W1\n", encoding="utf-8"
    )
    t = read_annotations(
        parse_config(
            {
                "path": str(wide),
                "format": "wide",
                "kind": "rating",
                "id_field": "Id",
                "value_columns": "Score*",
                "annotator_columns": "TurkId*",
            }
        )
    )
    rows = t.to_pylist()
    assert [(r["example_id"], r["annotator"], r["rating"]) for r in rows] == [
        ("7", "W1", 13.0),
        ("7", "W2", 9.0),
        ("8", "W3", 20.0),
    ]

    txt = tmp_path / "text.jsonl"
    txt.write_text(
        "\n".join(
            json.dumps(x)
            for x in [
                {"example_id": "a", "annotator": "x", "decision": "accept"},
                {"example_id": "a", "annotator": "y", "decision": "ok", "text": "Better answer."},
                {"example_id": "b", "annotator": "x", "decision": "REJECT", "reason": "wrong"},
            ]
        ),
        encoding="utf-8",
    )
    t = read_annotations(parse_config({"path": str(txt), "kind": "text"}))
    assert [r["label"] for r in t.to_pylist()] == ["accept", "corrected", "reject"]
    assert t.to_pylist()[1]["text"] == "Better answer."

    bad = tmp_path / "bad.csv"
    bad.write_text("example_id,annotator,rating\ne1,a,five\n", encoding="utf-8")
    with pytest.raises(ProjectError, match="row 1"):
        read_annotations(parse_config({"path": str(bad), "kind": "rating"}))
    with pytest.raises(ProjectError, match=r"annotations\.id_field"):
        read_annotations(parse_config({"path": str(long), "id_field": "nope"}))


# ----------------------------------------------------------------------------- planted annotators
def _planted(
    seed: int,
    n: int = 1500,
    k: int = 3,
    n_good: int = 10,
    prior: tuple[float, ...] = (0.6, 0.3, 0.1),
    acc_range: tuple[float, float] = (0.65, 0.95),
) -> tuple[list, list, list, np.ndarray]:
    rng = np.random.default_rng(seed)
    truth = rng.choice(k, n, p=list(prior))
    acc = {f"good{i}": rng.uniform(*acc_range) for i in range(n_good)}
    names = [*acc, "random", "constant"]
    units, raters, vals = [], [], []
    for u in range(n):
        for a in rng.choice(len(names), 5, replace=False):
            name = names[a]
            if name == "random":
                v = int(rng.integers(0, k))
            elif name == "constant":
                v = 0  # always the most frequent label: high raw agreement with the majority
            else:
                v = int(truth[u]) if rng.random() < acc[name] else int(rng.integers(0, k))
            units.append(f"u{u}")
            raters.append(name)
            vals.append(v)
    return units, raters, vals, truth


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_random_and_constant_annotators_rank_least_reliable(seed: int) -> None:
    units, raters, vals, _ = _planted(seed)
    r = ratings_from_long(units, raters, vals)
    stats = annotator_stats(r)
    assert {stats[0].annotator, stats[1].annotator} == {"random", "constant"}
    assert stats[0].flagged and stats[1].flagged
    assert not any(s.flagged for s in stats[2:])


def test_constant_annotator_caught_where_raw_agreement_misses_it() -> None:
    units, raters, vals, _ = _planted(5, prior=(0.85, 0.1, 0.05), acc_range=(0.6, 0.8))
    stats = annotator_stats(ratings_from_long(units, raters, vals))
    assert {stats[0].annotator, stats[1].annotator} == {"random", "constant"}
    raw = sorted(stats, key=lambda s: s.loo_agreement)
    assert "constant" not in {raw[0].annotator, raw[1].annotator}


def test_dawid_skene_helps_with_real_ids_and_never_collapses_with_fake_ids() -> None:
    units, raters, vals, truth = _planted(3, n=2000)
    r = ratings_from_long(units, raters, vals)
    order = np.argsort([int(u[1:]) for u in r.units])
    maj = aggregate(r, method="majority").label[order]
    ds = aggregate(r, method="auto")
    assert ds.method == "dawid_skene"
    assert (ds.label[order] == truth).mean() >= (maj == truth).mean()
    # the same votes with positional (fake) annotator ids: must not fall below majority
    pos_raters = [f"slot{i % 5}" for i in range(len(units))]
    r2 = ratings_from_long(units, pos_raters, vals)
    c2 = aggregate(r2, method="auto")
    m2 = aggregate(r2, method="majority")
    assert (c2.label[order] == truth).mean() >= (m2.label[order] == truth).mean() - 1e-9


@pytest.mark.skipif(
    not (DATA / "annotators" / "chaosnli").exists(), reason="shared data not available"
)
def test_chaosnli_aggregation_not_worse_than_majority() -> None:
    codes = {"entailment": 0.0, "neutral": 1.0, "contradiction": 2.0, "e": 0, "n": 1, "c": 2}
    old, truth = [], []
    for name in ("chaosNLI_snli.jsonl", "chaosNLI_mnli_m.jsonl"):
        with open(DATA / "annotators" / "chaosnli" / name, encoding="utf-8") as f:
            for line in f:
                d = json.loads(line)
                labs = [codes[x] for x in d["old_labels"]]
                old.append(labs + [np.nan] * (5 - len(labs)))
                truth.append(codes[d["majority_label"]])
    m = np.array(old, dtype=float).T  # positional annotator "ids"
    t = np.array(truth)
    r = ratings_from_matrix(m)
    acc_maj = (aggregate(r, method="majority").label == t).mean()
    acc = (aggregate(r, method="auto").label == t).mean()
    assert acc_maj == pytest.approx(0.715, abs=0.005)
    assert acc >= acc_maj - 1e-9


def test_majority_vote_ties_use_prior() -> None:
    counts = np.array([[2, 2, 0], [0, 1, 1], [3, 0, 0], [0, 0, 0]])
    maj, share, tied = majority_vote(counts, prior=np.array([1.0, 5.0, 3.0]))
    assert maj.tolist() == [1, 1, 0, -1]
    assert tied.tolist() == [True, True, False, False]
    assert share[2] == 1.0


@settings(max_examples=30, deadline=None)
@given(st.integers(0, 10_000))
def test_consensus_posterior_is_a_distribution(seed: int) -> None:
    rng = np.random.default_rng(seed)
    m = rng.integers(0, 3, (4, 30)).astype(float)
    m[rng.random(m.shape) < 0.3] = np.nan
    c = aggregate(ratings_from_matrix(m), method="auto", min_annotator_labels=5)
    assert np.allclose(c.posterior.sum(axis=1), 1.0)
    labelled = c.n_labels > 0
    assert (c.label[labelled] >= 0).all() and (c.label[~labelled] == -1).all()
    # the final label always has at least one vote
    assert all(c.counts[u, c.label[u]] > 0 for u in np.flatnonzero(labelled))


def test_pair_stats_matches_bruteforce_with_many_raters() -> None:
    units, raters, vals, _ = _planted(4, n=400)
    r = ratings_from_long(units, raters, vals)
    ps = pair_stats(r)
    kap, ov = pairwise_kappa(r)
    for a, b, k, n in zip(ps.a, ps.b, ps.kappa, ps.overlap, strict=True):
        assert ov[a, b] == n
        assert kap[a, b] == pytest.approx(k, nan_ok=True)


# ----------------------------------------------------------------------------- escalation
def test_escalation_rules() -> None:
    p = EscalationParams(escalate_below=0.8, exclude_below=0.5, exclude_min_labels=7)
    agreement = np.array([0.95, 0.6, 0.6, 0.4, 0.3, 0.6])
    n_labels = np.array([5, 5, 7, 8, 1, 5])
    prev = np.array([0, 0, 5, 0, 0, 0])
    gold = np.array([False, False, False, False, False, True])
    v = {
        x.unit: (x.action, x.reason)
        for x in decide(agreement, n_labels, params=p, has_gold=gold, previous_labels=prev)
    }
    assert v == {
        1: (Action.ESCALATE, "low_agreement"),
        2: (Action.EXCLUDE, "unresolved_disagreement"),
        3: (Action.EXCLUDE, "no_consensus"),
    }


def test_escalation_budget_caps_and_ranks() -> None:
    agreement = np.array([0.9, 0.1, 0.5, 0.3, 0.2, 0.7, 0.05, 0.6, 0.4, 0.95])
    n_labels = np.full(10, 5)
    gold = np.zeros(10, bool)
    gold[6] = True  # settled by gold: never escalated, not counted in the budget
    # budget alone: the lowest 30% of the 9 judged examples (floor(2.7) = 2)
    p = EscalationParams(escalate_below=float("inf"), escalate_budget=0.3)
    got = {x.unit for x in decide(agreement, n_labels, params=p, has_gold=gold)}
    assert got == {1, 4}
    # budget caps the threshold rule; the threshold still applies inside the budget
    p = EscalationParams(escalate_below=0.25, escalate_budget=0.5)
    assert {x.unit for x in decide(agreement, n_labels, params=p, has_gold=gold)} == {1, 4}
    p = EscalationParams(escalate_below=0.8, escalate_budget=0.0)
    assert decide(agreement, n_labels, params=p, has_gold=gold) == []
    with pytest.raises(ValueError, match="escalate_budget"):
        decide(agreement, n_labels, params=EscalationParams(escalate_budget=1.5))


def test_escalation_budget_in_the_check(tmp_path: Path) -> None:
    root, _truth, _ = _topic_project(tmp_path)
    y = root / "ftprep.yaml"
    y.write_text(
        y.read_text(encoding="utf-8").replace(
            "{min_annotator_items: 20, escalate_below: 0.8}",
            "{min_annotator_items: 20, escalate_budget: 0.1}",
        ),
        encoding="utf-8",
    )
    agr = ftprep.audit(root, only=["labels.agreement"]).results[0]
    assert agr.error == "", agr.error
    esc = [d for d in agr.decisions if d.action == Action.ESCALATE]
    assert len(esc) == 6  # 10% of the 60 annotated examples, the contested ones first
    assert {d.example_id for d in esc} <= {f"q{i}" for i in range(10)}
    assert all("among the lowest 10%" in d.detail for d in esc)


def _ambiguous_items(seed: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """1,500 items, 3 labels; a feature says how ambiguous an item is (its true vote
    distribution is near uniform when the feature is high). 5 votes each; truth = the argmax of
    the true distribution."""
    rng = np.random.default_rng(seed)
    n = 1500
    amb = rng.random(n)
    top = rng.integers(0, 3, n)
    p = np.full((n, 3), 0.0) + (amb / 3.0)[:, None]
    p[np.arange(n), top] += 1.0 - amb
    p = p * rng.dirichlet([20.0] * 3, n)
    p /= p.sum(axis=1, keepdims=True)
    counts = np.stack([rng.multinomial(5, q) for q in p]).astype(float)
    x = np.column_stack([amb, rng.normal(size=n)])
    return x, counts, p.argmax(axis=1), amb


def test_dirichlet_regression_learns_item_ambiguity() -> None:
    x, counts, _truth, amb = _ambiguous_items(0)
    w, b = fit_dirichlet_regression((x - x.mean(0)) / x.std(0), counts, l2=1.0)
    conc = np.exp(((x - x.mean(0)) / x.std(0)) @ w + b).sum(axis=1)
    # the label is random, so the prior mean is flat; ambiguous items' distributions sit close to
    # it (large concentration), clear items' far from it (small): concentration rises with the
    # ambiguity feature, and the noise feature gets (almost) no weight
    assert np.corrcoef(conc, amb)[0, 1] > 0.5
    assert abs(w[1]).max() < abs(w[0]).max() / 3


def test_item_prior_ranks_wrong_majorities_better_than_votes_alone() -> None:
    x, counts, truth, _amb = _ambiguous_items(1)
    maj, _, _ = majority_vote(counts)
    wrong = maj != truth
    z = (x - x.mean(0)) / x.std(0)
    with_x = item_prior_stability(z, counts, maj, l2=1.0)
    without = item_prior_stability(z[:, :0], counts, maj)
    assert np.array_equal(with_x, item_prior_stability(z, counts, maj, l2=1.0))  # deterministic
    budget = int(0.3 * len(counts))

    def caught(score: np.ndarray) -> float:
        return float(wrong[np.argsort(score, kind="stable")[:budget]].sum() / wrong.sum())

    assert caught(with_x) > caught(without) + 0.03


def test_item_prior_in_the_check(tmp_path: Path) -> None:
    """Texts that say whether an example is ambiguous: with ``item_prior`` the budget catches
    more wrong majorities than the votes alone."""
    rng = np.random.default_rng(3)
    names = ["billing", "shipping", "returns"]
    vague = ["maybe", "perhaps", "unclear", "somewhat", "possibly", "kind of"]
    clear = ["definitely", "certainly", "clearly", "exactly", "surely", "precisely"]
    n = 600
    recs, rows, wrong = [], [], set()
    for i in range(n):
        amb = i % 2 == 0
        top = int(rng.integers(0, 3))
        # ambiguous: two labels close together; clear: one label well ahead (3–2 splits still
        # happen, but the majority is rarely wrong)
        p = np.array([0.44, 0.38, 0.18]) if amb else np.array([0.76, 0.12, 0.12])
        p = rng.dirichlet(np.roll(p, top) * 40)
        words = rng.choice(vague if amb else clear, 3)
        recs.append({"id": f"x{i}", "prompt": " ".join(words) + f" case {i}", "response": "ok"})
        votes = rng.choice(3, 5, p=p)
        for a, v in enumerate(votes):
            rows.append([f"x{i}", f"a{a}", names[v]])
        if np.bincount(votes, minlength=3).argmax() != p.argmax():
            wrong.add(f"x{i}")
    write_jsonl(tmp_path / "data" / "train.jsonl", recs)
    with open(tmp_path / "annotations.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["example_id", "annotator", "label"])
        w.writerows(rows)
    caught = {}
    for prior in (False, True):
        (tmp_path / "ftprep.yaml").write_text(
            "name: p\nsources:\n  - name: main\n    path: data/train.jsonl\n    fields: {id: id}\n"
            "annotations:\n  path: annotations.csv\n  format: long\n  kind: label\n"
            "checks:\n  labels.agreement: {escalate_budget: 0.3, item_prior_components: 8,\n"
            f"    item_prior_l2: 10, item_prior: {str(prior).lower()}}}\n",
            encoding="utf-8",
        )
        agr = ftprep.audit(tmp_path, only=["labels.agreement"]).results[0]
        assert agr.error == "", agr.error
        esc = {d.example_id for d in agr.decisions if d.action == Action.ESCALATE}
        assert len(esc) == int(0.3 * n)
        caught[prior] = len(esc & wrong) / len(wrong)
    assert caught[True] > caught[False] + 0.03, caught


# ----------------------------------------------------------------------------- label errors
def test_rank_label_errors_flags_planted_flips() -> None:
    rng = np.random.default_rng(0)
    n, k = 2000, 4
    y_true = rng.integers(0, k, n)
    logits = rng.normal(0, 1, (n, k))
    logits[np.arange(n), y_true] += 3.0
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    y = y_true.copy()
    flip = rng.choice(n, 100, replace=False)
    y[flip] = (y[flip] + 1) % k
    rk = rank_label_errors(y, probs)
    is_err = np.zeros(n, bool)
    is_err[flip] = True
    top = np.argsort(-rk.score)[:100]
    assert is_err[top].mean() > 0.8
    assert is_err[rk.flagged].mean() > 0.7
    assert 50 <= rk.estimated_errors <= 250
    assert np.all((rk.score >= 0) & (rk.score <= 1))


def test_knn_inconsistency_finds_conflicts() -> None:
    x = np.eye(4, dtype=np.float32)[[0, 0, 1, 2]]
    o = np.eye(4, dtype=np.float32)[[0, 1, 2, 2]]
    pairs = knn_inconsistency(x, o, outputs=["a", "b", "c", "c"])
    assert [(a, b) for a, b, _, _ in pairs] == [(0, 1)]
    assert knn_inconsistency(x, o, outputs=["a", "a", "c", "c"]) == []


# ----------------------------------------------------------------------------- checks end to end
def _topic_project(tmp_path: Path, n: int = 240) -> tuple[Path, list[str], set[str]]:
    rng = np.random.default_rng(0)
    topics = {
        "billing": ["invoice", "charge", "refund", "payment", "bill", "price"],
        "shipping": ["delivery", "parcel", "courier", "tracking", "shipment", "arrive"],
        "account": ["password", "login", "username", "email", "profile", "locked"],
    }
    names = list(topics)
    recs, truth = [], []
    for i in range(n):
        t = names[i % 3]
        words = rng.choice(topics[t], 4).tolist()
        recs.append(
            {
                "id": f"q{i}",
                "label": t,
                "messages": [
                    {"role": "user", "content": f"Question about {' '.join(words)} number {i}"},
                    {"role": "assistant", "content": f"Answer for {t}."},
                ],
            }
        )
        truth.append(t)
    flipped = {f"q{i}" for i in range(0, n, 20)}
    for r in recs:
        if r["id"] in flipped:
            r["label"] = names[(names.index(r["label"]) + 1) % 3]
    write_jsonl(tmp_path / "data" / "train.jsonl", recs)
    # annotations on the first 60 examples: 4 annotators + random + constant; items 0..9 contested
    with open(tmp_path / "annotations.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["example_id", "annotator", "label", "reason"])
        for i in range(60):
            t = truth[i]
            for a in range(4):
                lab = t
                if i < 10 and a < 2:
                    lab = names[(names.index(t) + 1) % 3]
                w.writerow([f"q{i}", f"ann{a}", lab, "<script>alert(1)</script>" if i == 0 else ""])
            w.writerow([f"q{i}", "random", names[int(rng.integers(0, 3))], ""])
            w.writerow([f"q{i}", "constant", "billing", ""])
    (tmp_path / "ftprep.yaml").write_text(
        "name: t\nsources:\n  - name: main\n    path: data/train.jsonl\n    fields: {id: id, label: label}\n"
        "annotations:\n  path: annotations.csv\n  format: long\n  kind: label\n"
        "checks:\n  labels.agreement: {min_annotator_items: 20, escalate_below: 0.8}\n"
        "  labels.errors: {embeddings: false, max_char_features: 20000}\n",
        encoding="utf-8",
    )
    return tmp_path, truth, flipped


def test_checks_end_to_end(tmp_path: Path) -> None:
    root, _truth, flipped = _topic_project(tmp_path)
    res = ftprep.audit(root, only=["labels"])
    by = {r.check: r for r in res.results}
    agr = by["labels.agreement"]
    assert agr.error == "", agr.error
    assert agr.values["annotators"] == 6
    assert agr.values["flagged_annotators"] >= 2
    assert any(f.code == "annotator_standard_differs" for f in agr.findings)
    esc = {d.example_id for d in agr.decisions if d.action == Action.ESCALATE}
    assert esc and esc <= {f"q{i}" for i in range(10)}
    kinds = {s.kind for s in agr.sections}
    assert {"table", "bars", "matrix", "examples"} <= kinds
    from ftprep.store import Workspace

    ws = Workspace(root / ".ftprep")
    ann = ws.load_table("annotations")
    assert ann is not None and ann.num_rows == 360 and ann.schema == SCHEMA

    err = by["labels.errors"]
    assert err.error == "", err.error
    rev = {d.example_id for d in err.decisions if d.action == Action.REVIEW}
    assert rev and len(rev & flipped) / len(rev) >= 0.7
    assert len(rev & flipped) >= 0.6 * len(flipped)

    # escalated examples are out of the build until a senior expert arbitrates
    from ftprep.api import open_workspace
    from ftprep.project import load_project

    _, ledger = open_workspace(load_project(root))
    eff = ledger.effective()
    one = sorted(esc)[0]
    assert eff[one][0].blocks_build
    ledger.decide(one, "labels.agreement", "include", "senior", patch={"label": "billing"})
    assert not ledger.effective()[one][0].blocks_build or any(
        e.check != "labels.agreement" for e in ledger.effective()[one][1]
    )
    # html report escapes annotator reasons
    html = (root / "out" / "audit" / "report.html").read_text(encoding="utf-8")
    assert "<script>alert(1)</script>" not in html


def test_reannotated_escalation_that_stays_low_is_excluded(tmp_path: Path) -> None:
    root, truth, _ = _topic_project(tmp_path)
    (root / "ftprep.yaml").write_text(
        (root / "ftprep.yaml")
        .read_text()
        .replace("  labels.errors: {embeddings: false, max_char_features: 20000}\n", "")
        + "disabled_checks: [labels.errors]\n"
    )
    res = ftprep.audit(root, only=["labels.agreement"])
    esc = sorted(d.example_id for d in res.results[0].decisions if d.action == Action.ESCALATE)
    assert esc
    # a second round adds two labels of a third class: the example is now split three ways
    names = ["billing", "shipping", "account"]
    i = int(esc[0][1:])
    third = names[(names.index(truth[i]) + 2) % 3]
    with open(root / "annotations.csv", "a", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow([esc[0], "ann4", third, ""])
        w.writerow([esc[0], "ann5", third, ""])
    res2 = ftprep.audit(root, only=["labels.agreement"])
    d2 = {d.example_id: d for d in res2.results[0].decisions}
    assert d2[esc[0]].action == Action.EXCLUDE and d2[esc[0]].reason == "unresolved_disagreement"
    assert all(d2[e].action == Action.ESCALATE for e in esc[1:] if e in d2)


def test_labels_agreement_not_run_without_annotations(tmp_path: Path) -> None:
    root, _, _ = _topic_project(tmp_path)
    y = (root / "ftprep.yaml").read_text()
    y = y.split("annotations:")[0] + "checks:" + y.split("checks:")[1]
    (root / "ftprep.yaml").write_text(y)
    res = ftprep.audit(root, only=["labels.agreement"])
    assert str(res.results[0].status) == "NOT_RUN"


@pytest.mark.parametrize(
    "wrap",
    [
        "",
        "You are a patient and friendly teacher at a public library. Read the request below, "
        "think about what the student already knows, and answer in plain words, with one short "
        "example and without jargon, in at most three paragraphs.\n\n",
    ],
    ids=["bare", "under-an-instruction"],
)
def test_consistency_check_flags_conflicting_outputs(tmp_path: Path, wrap: str) -> None:
    """The same conflict is found with and without an instruction line over every prompt (it
    is compared without it: else every pair of inputs looks near-identical)."""
    topics = [
        "tides",
        "volcanoes",
        "glaciers",
        "photosynthesis",
        "inflation",
        "vaccines",
        "magnets",
        "rainbows",
        "earthquakes",
        "democracy",
        "compilers",
        "bread baking",
        "chess openings",
        "jazz harmony",
        "tax returns",
        "bicycle gears",
        "coral reefs",
        "black holes",
        "knitting",
        "mortgages",
    ]
    recs = [
        {
            "id": f"g{i}",
            "messages": [
                {"role": "user", "content": f"{wrap}Explain {t} to a curious student."},
                {
                    "role": "assistant",
                    "content": f"Here is a careful explanation of {t}, step by step.",
                },
            ],
        }
        for i, t in enumerate(topics)
    ]
    # a near-identical input answered in a contradictory way
    recs.append(
        {
            "id": "dup",
            "messages": [
                {"role": "user", "content": f"{wrap}Explain volcanoes to a curious student!"},
                {"role": "assistant", "content": "No. I refuse; bananas are purple on Tuesdays."},
            ],
        }
    )
    write_jsonl(tmp_path / "data" / "train.jsonl", recs)
    (tmp_path / "ftprep.yaml").write_text(
        "name: g\nsources:\n  - name: main\n    path: data/train.jsonl\n    fields: {id: id}\n",
        encoding="utf-8",
    )
    res = ftprep.audit(tmp_path, only=["labels.consistency"])
    r = res.results[0]
    assert r.error == "", r.error
    ids = {d.example_id for d in r.decisions}
    assert ids == {"g1", "dup"}
    assert all(d.action == Action.REVIEW and d.reason == "inconsistent_output" for d in r.decisions)


def test_rating_annotations_end_to_end(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    recs, rows = [], []
    for i in range(80):
        recs.append(
            {
                "id": f"r{i}",
                "messages": [
                    {"role": "user", "content": f"Rate request {i}"},
                    {"role": "assistant", "content": "ok"},
                ],
            }
        )
        true = int(rng.integers(1, 6))
        scores = [min(5, max(1, true + int(rng.integers(-1, 2)))) for _ in range(4)]
        if i < 6:  # contested: ratings spread over the whole scale
            scores = [1, 5, 1, 5]
        rows.append([f"r{i}", *scores, int(rng.integers(1, 6))])  # last column: a random rater
    write_jsonl(tmp_path / "data" / "train.jsonl", recs)
    with open(tmp_path / "ratings.csv", "w", encoding="utf-8", newline="") as f:
        w = csv.writer(f)
        w.writerow(["id", "s_a", "s_b", "s_c", "s_d", "s_rand"])
        w.writerows(rows)
    (tmp_path / "ftprep.yaml").write_text(
        "name: r\nsources:\n  - name: main\n    path: data/train.jsonl\n    fields: {id: id}\n"
        "annotations: {path: ratings.csv, format: wide, kind: rating, id_field: id, value_columns: 's_*'}\n",
        encoding="utf-8",
    )
    res = ftprep.audit(tmp_path, only=["labels.agreement"])
    r = res.results[0]
    assert r.error == "", r.error
    assert r.values["level"] == "ordinal" and r.values["consensus_method"] == "median"
    esc = {d.example_id for d in r.decisions if d.action == Action.ESCALATE}
    assert {f"r{i}" for i in range(6)} <= esc
    assert len(esc) <= 20
    flagged = next(f for f in r.findings if f.code == "annotator_standard_differs")
    assert "s_rand" in flagged.message


def test_consistency_identical_inputs_mode_for_large_data(tmp_path: Path) -> None:
    recs = [
        {
            "id": f"c{i}",
            "label": "a" if i != 3 else "b",
            "messages": [
                {
                    "role": "user",
                    "content": "Same  question?" if i in (2, 3) else f"Question {i} on x{i}y",
                },
                {"role": "assistant", "content": "ok"},
            ],
        }
        for i in range(10)
    ]
    write_jsonl(tmp_path / "data" / "train.jsonl", recs)
    (tmp_path / "ftprep.yaml").write_text(
        "name: c\nsources:\n  - name: main\n    path: data/train.jsonl\n    fields: {id: id, label: label}\n"
        "checks:\n  labels.consistency: {max_examples: 5}\n",
        encoding="utf-8",
    )
    r = ftprep.audit(tmp_path, only=["labels.consistency"]).results[0]
    assert r.error == "", r.error
    assert r.values["mode"] == "identical inputs only"
    assert {d.example_id for d in r.decisions} == {"c2", "c3"}
    assert {d.reason for d in r.decisions} == {"inconsistent_label"}


@pytest.mark.skipif(
    not (DATA / "annotators" / "chaosnli").exists(), reason="shared data not available"
)
def test_chaosnli_escalation_ranks_wrong_majorities_first() -> None:
    """5 votes resampled from each item's 100: the crowd-stability ranking catches at least as
    many wrong majorities as 'escalate every <= 3/5 majority' at the same budget."""
    cnts, truth, subset = [], [], []
    for s, name in enumerate(
        ("chaosNLI_snli.jsonl", "chaosNLI_mnli_m.jsonl", "chaosNLI_alphanli.jsonl")
    ):
        with open(DATA / "annotators" / "chaosnli" / name, encoding="utf-8") as f:
            for line in f:
                c = json.loads(line)["label_count"]
                c = [*c, 0, 0] if len(c) == 3 else [0, 0, 0, *c]
                cnts.append(c)
                truth.append(int(np.argmax(c)))
                subset.append(s)
    cn, tr, sb = np.array(cnts, float), np.array(truth), np.array(subset)
    rng = np.random.default_rng(7)
    wrong = np.zeros(len(tr), bool)
    stab = np.zeros(len(tr))
    top = np.zeros(len(tr))
    for s in range(3):
        idx = np.flatnonzero(sb == s)
        cum = np.cumsum(cn[idx] / cn[idx].sum(axis=1, keepdims=True), axis=1)
        votes = (rng.random((len(idx), 5))[:, :, None] > cum[:, None, :]).sum(axis=2)
        r = ratings_from_matrix(votes.T.astype(float))
        c = aggregate(r)
        wrong[idx] = r.domain[c.label].astype(int) != tr[idx]
        assert c.stability is not None
        stab[idx] = c.stability
        top[idx] = c.counts.max(axis=1)
    rule = top <= 3
    budget = int(rule.sum())
    ours = np.zeros(len(tr), bool)
    ours[np.argsort(stab, kind="stable")[:budget]] = True
    assert (ours & wrong).sum() >= (rule & wrong).sum() - 0.01 * wrong.sum()
    at30 = np.zeros(len(tr), bool)
    at30[np.argsort(stab, kind="stable")[: int(0.3 * len(tr))]] = True
    assert (at30 & wrong).sum() / wrong.sum() > 0.72
