"""Learned criteria (issue #4): the stated prior, its checks against the labels, task-type and
embedding-relation features, and the rubric params that configure them."""

from __future__ import annotations

import numpy as np
import pytest

from ftprep.quality.features import TextFrame, dense_features, task_features
from ftprep.quality.learned import (
    PRIORS,
    LearnedScorer,
    build_features,
    embedding_features,
    scorer_from_params,
)
from ftprep.quality.rubric import RubricError, parse_rubric


def _features(n: int = 2000, seed: int = 0) -> tuple[np.ndarray, list[str], np.ndarray]:
    """Dense features where ``a`` and ``b`` carry the label and ``c`` is noise."""
    rng = np.random.default_rng(seed)
    y = (rng.random(n) < 0.2).astype(int)
    a = rng.normal(size=n) - 0.8 * y  # good examples have LOW a
    b = rng.normal(size=n) + 0.8 * y
    c = rng.normal(size=n)
    return np.column_stack([a, b, c]), ["a", "b", "c"], y


def _auroc(y: np.ndarray, s: np.ndarray) -> float:
    from sklearn.metrics import roc_auc_score

    return float(roc_auc_score(y, s))


def test_task_features_read_the_instruction_line_only() -> None:
    prompts = [
        "Classify the sentiment of this review.",
        "Write a short story about a dragon.",
        "Summarise the text below.\n\nClassify identify convert translate calculate",
        "",
    ]
    t = task_features(TextFrame(prompts))
    assert t["task_closed"][0] > 0 and t["task_open"][0] == 0
    assert t["task_open"][1] > 0 and t["task_closed"][1] == 0
    # words of the pasted input (after the first line) do not count
    assert t["task_closed"][2] == 0
    assert t["task_closed"][3] == 0 and t["task_open"][3] == 0
    dense, names = dense_features(TextFrame(["ok"] * 4, prompts), TextFrame(prompts))
    assert {"task_closed", "task_open", "hedge_rate"} <= set(names)
    assert np.isfinite(dense).all()


def test_embedding_features_relate_prompt_and_response() -> None:
    rng = np.random.default_rng(1)
    n, d = 3000, 16
    kind = rng.integers(0, 2, n)  # two kinds of prompt: short answers vs long ones
    centres = np.eye(d)[:2]
    p = centres[kind] + 0.1 * rng.normal(size=(n, d))
    p /= np.linalg.norm(p, axis=1, keepdims=True)
    r = p.copy()
    r[:100] = np.roll(r[:100], 5, axis=1)  # 100 off-topic responses
    lw = np.where(kind == 1, 5.0, 2.0) + 0.1 * rng.normal(size=n)
    x, names = embedding_features(p, r, lw)
    col = {k: x[:, j] for j, k in enumerate(names)}
    # off-topic responses have the lowest prompt-response cosine
    assert col["emb:prompt_response_cos"][:100].max() < col["emb:prompt_response_cos"][100:].min()
    # the expected length follows the kind of prompt, not the example's own noise
    assert np.corrcoef(col["emb:expected_log_words"], lw)[0, 1] > 0.95
    assert abs(np.mean(col["emb:len_vs_expected"])) < 0.05


def test_prior_features_are_kept_when_labels_agree_and_flipped_when_they_contradict() -> None:
    x, names, y = _features()
    f = build_features(x, names, [])
    idx = np.arange(300)
    # stated prior: low a is good (right), low b is good (wrong: labels say high b is good)
    sc = LearnedScorer(views=("prior",), prior={"a": -1, "b": -1}).fit(f, idx, y[idx])
    d = sc.describe()
    assert d["prior_flipped"] == ["b"] and d["prior_used"]
    rest = np.arange(300, len(y))
    assert _auroc(y[rest], sc.predict(f)[rest]) > 0.75


def test_a_prior_unrelated_to_the_labels_is_dropped_for_the_learned_views() -> None:
    x, names, y = _features(seed=3)
    f = build_features(x, names, [])
    idx = np.arange(400)
    # state the noise feature c in the direction in which it ranks these labels below chance
    c = x[idx, 2]
    sign = -1.0 if _auroc(y[idx], c) > 0.5 else 1.0
    sc = LearnedScorer(views=("prior", "dense"), prior={"c": sign}).fit(f, idx, y[idx])
    d = sc.describe()
    assert d["prior_auroc"] <= 0.5 and not d["prior_used"]
    assert set(d["dense_features_used"]) >= {"a", "b"}
    rest = np.arange(400, len(y))
    assert _auroc(y[rest], sc.predict(f)[rest]) > 0.75


def test_the_mix_weight_follows_out_of_fold_evidence() -> None:
    x, names, y = _features(n=4000, seed=5)
    f = build_features(x, names, [])
    idx = np.arange(600)
    # a good prior (a, stated right) against learned views that see the same signal: mixed
    good = LearnedScorer(views=("prior", "dense"), prior={"a": -1}).fit(f, idx, y[idx])
    # a prior that is not credible (noise feature c) does not outweigh strong learned views
    weak = LearnedScorer(views=("prior", "dense"), prior={"c": 1}, prior_alpha=1e-9)
    weak.fit(f, idx, y[idx])
    assert weak.describe()["learned_weight"] >= 0.8
    assert 0.0 <= good.describe()["learned_weight"] <= 1.0
    assert len(good.fitted["mix_cv_auroc"]) == 11
    fixed = LearnedScorer(views=("prior", "dense"), prior={"a": -1}, learned_weight=0.3)
    assert fixed.fit(f, idx, y[idx]).describe()["learned_weight"] == 0.3
    rest = np.arange(600, len(y))
    assert _auroc(y[rest], weak.predict(f)[rest]) > 0.75


def test_params_configure_the_scorer_and_bad_params_name_the_key() -> None:
    sc = scorer_from_params({"prior": "none", "views": ["dense", "ngram"], "learned_weight": 0.5})
    assert sc.views == ("dense", "ngram") and sc.prior == "none" and sc.learned_weight == 0.5
    assert scorer_from_params({"prior": {"log_resp_words": 1}}).prior_directions == {
        "log_resp_words": 1.0
    }
    assert set(PRIORS) >= {"accuracy", "none"}
    for bad, needle in [
        ({"nope": 1}, "unknown learned-criterion param"),
        ({"views": ["dense", "magic"]}, "unknown view"),
        ({"prior": "optimism"}, "unknown prior"),
        ({"learned_weight": 2}, "learned_weight"),
        ({"cv_folds": 1}, "cv_folds"),
    ]:
        with pytest.raises(ValueError, match=needle):
            scorer_from_params(bad)
    data = {
        "criteria": [
            {"name": "helpful", "definition": "d", "kind": "learned", "params": {"nope": 1}}
        ]
    }
    with pytest.raises(RubricError, match=r"criteria\[0\].*unknown learned-criterion param"):
        parse_rubric(data)
