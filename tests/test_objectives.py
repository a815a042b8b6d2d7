"""Failure mode 8: outcomes, proxies and whether they track each other."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest
import yaml
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.metrics import roc_auc_score
from tests.util import make_project

import ftprep
from ftprep.objectives import auroc, spearman_ci


def _records(n: int, seed: int = 0) -> list[dict]:
    """Resolved tickets have short answers (length tracks the outcome, negatively), mention
    a next step (tracks positively); ``csat_guess`` is noise; ``source`` b flips a relation."""
    rng = random.Random(seed)
    out = []
    for i in range(n):
        resolved = rng.random() < 0.6
        words = rng.randint(5, 25) if resolved else rng.randint(20, 60)
        step = "I'll send the label today." if (resolved and rng.random() < 0.8) else ""
        out.append(
            {
                "id": f"e{i}",
                "resolved": resolved,
                "csat_guess": rng.random(),
                "messages": [
                    {"role": "user", "content": f"Question {i} about my order"},
                    {"role": "assistant", "content": " ".join(["word"] * words) + " " + step},
                ],
            }
        )
    return out


OBJECTIVES = {
    "outcomes": [{"name": "resolved", "field": "resolved"}],
    "proxies": [
        {"name": "short", "metric": "response_words", "expect": "lower"},
        {"name": "long_is_good", "metric": "response_words", "expect": "higher"},
        {"name": "next_step", "pattern": r"\bI'll\b"},
        {"name": "noise", "field": "csat_guess"},
    ],
    "layers": [{"offline": "resolution on the production test set"}],
}


@pytest.fixture
def project(tmp_path: Path) -> Path:
    root = make_project(
        tmp_path,
        _records(400),
        extra_yaml="objectives: objectives.yaml\n",
        fields="{id: id, outcome: [resolved], meta: [csat_guess]}",
    )
    (root / "objectives.yaml").write_text(yaml.safe_dump(OBJECTIVES), encoding="utf-8")
    return root


def _check(res: ftprep.AuditResult) -> dict:
    return next(c for c in res.findings["checks"] if c["check"] == "objectives.proxies")


def test_verdicts(project: Path) -> None:
    c = _check(ftprep.audit(project, only=["objectives"]))
    verdict = {a["proxy"]: a["verdict"] for a in c["values"]["associations"]}
    assert verdict == {
        "short": "tracks",
        "long_is_good": "opposite",
        "next_step": "tracks",
        "noise": "no_evidence",
    }
    assert c["status"] == "FAIL"  # a proxy moves against the outcome
    assert c["values"]["outcome_coverage"] == {"resolved": 1.0}


def test_exclude_unsuccessful_and_no_outcomes(project: Path) -> None:
    (project / "ftprep.yaml").write_text(
        (project / "ftprep.yaml").read_text()
        + "checks:\n  objectives.proxies: {exclude_unsuccessful: [resolved]}\n"
    )
    res = ftprep.audit(project, only=["objectives"])
    c = _check(res)
    n_failed = sum(1 for r in _records(400) if not r["resolved"])
    assert c["values"]["excluded_unsuccessful"] == n_failed
    b = ftprep.build(project)
    assert len(b.manifest["excluded"]) == n_failed
    assert {r["reasons"][0]["reason"] for r in b.manifest["excluded"]} == {"outcome_failed"}

    (project / "objectives.yaml").write_text(yaml.safe_dump({"proxies": OBJECTIVES["proxies"]}))
    (project / "ftprep.yaml").write_text(
        (project / "ftprep.yaml").read_text().replace("exclude_unsuccessful: [resolved]", "")
    )
    c = _check(ftprep.audit(project, only=["objectives"]))
    assert c["status"] == "FAIL" and any(f["code"] == "no_outcomes" for f in c["findings"])


def test_simpson_flip_is_flagged(tmp_path: Path) -> None:
    """Pooled, longer answers go with success (source b resolves more and writes longer), but
    inside each source longer answers go with failure."""
    rng = random.Random(1)
    recs = []
    for i in range(600):
        src_b = i % 2 == 1
        resolved = rng.random() < (0.85 if src_b else 0.25)
        base = 60 if src_b else 10
        words = base + (rng.randint(0, 10) if resolved else rng.randint(8, 25))
        recs.append(
            {
                "id": f"s{i}",
                "team": "b" if src_b else "a",
                "resolved": resolved,
                "messages": [
                    {"role": "user", "content": f"q{i}"},
                    {"role": "assistant", "content": " ".join(["w"] * words)},
                ],
            }
        )
    a = [r for r in recs if r["team"] == "a"]
    b = [r for r in recs if r["team"] == "b"]
    root = make_project(tmp_path, a, extra_yaml="objectives: objectives.yaml\n")
    from tests.util import write_jsonl

    write_jsonl(root / "data" / "b.jsonl", b)
    (root / "ftprep.yaml").write_text(
        "name: simpson\nsources:\n"
        "  - {name: a, path: data/train.jsonl, fields: {id: id, outcome: [resolved]}}\n"
        "  - {name: b, path: data/b.jsonl, fields: {id: id, outcome: [resolved]}}\n"
        "objectives: objectives.yaml\n"
    )
    (root / "objectives.yaml").write_text(
        yaml.safe_dump(
            {
                "outcomes": [{"name": "resolved", "field": "resolved"}],
                "proxies": [{"name": "long", "metric": "response_words"}],
                "layers": [{"online": "A/B"}],
            }
        )
    )
    c = _check(ftprep.audit(root, only=["objectives"]))
    a0 = c["values"]["associations"][0]
    assert a0["spearman"] > 0 and set(a0["sign_flips"]) == {"a", "b"}
    assert c["values"]["simpson_flips"] == 1


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 50), st.booleans()), min_size=6, max_size=80).filter(
        lambda xs: 0 < sum(b for _, b in xs) < len(xs)
    )
)
def test_auroc_and_spearman_match_references(xs: list[tuple[int, bool]]) -> None:
    from scipy import stats

    x = np.array([float(a) for a, _ in xs])
    y = np.array([float(b) for _, b in xs])
    assert auroc(x, y) == pytest.approx(roc_auc_score(y, x), abs=1e-12)
    rho, low, high = spearman_ci(x, y, 0.95)
    if np.ptp(x) > 0:
        assert rho == pytest.approx(stats.spearmanr(x, y).statistic, abs=1e-12)
        assert low <= rho <= high
