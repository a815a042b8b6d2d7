"""Contamination checks: planted exact / near / buried / paraphrased leaks, no false alarms on
unrelated data, decisions and the leakage matrix, end to end through ``audit``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from ftprep.contamination.detect import ClusterParams, LeakParams, duplicate_clusters, find_leaks
from ftprep.contamination.index import ShingleIndex
from ftprep.contamination.minhash import MinHasher, candidate_probability, choose_bands
from ftprep.contamination.plant import bury, light_edit
from ftprep.contamination.text import ngram_hashes, normalize, numbers, tokenize

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"

QUESTIONS = [
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with four. How much does she make selling the rest at $2 each?",
    "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total does it take?",
    "Josh buys a house for $80,000 and puts in $50,000 in repairs. This increased the value of the house by 150%. How much profit did he make?",
    "James decides to run 3 sprints 3 times a week. He runs 60 meters each sprint. How many total meters does he run a week?",
    "Every day, Wendi feeds each of her chickens three cups of mixed chicken feed, containing seeds, mealworms and vegetables to help keep them healthy.",
    "Kylar went to the store to buy glasses for his new apartment. One glass costs $5, but every second glass costs only 60% of the price.",
    "Toulouse has twice as many sheep as Charleston. Charleston has 4 times as many sheep as Seattle. How many sheep do they have together if Seattle has 20?",
    "Carla is downloading a 200 GB file. Normally she can download 2 GB/minute, but 40% of the way through the download, Windows forces a restart.",
]
UNRELATED = [
    "Write a short poem about the colour of autumn leaves in the northern forest.",
    "Explain the difference between a list and a tuple in Python with an example.",
    "Translate the following sentence into French: the library opens at nine.",
    "Summarise the plot of a detective story set on a night train across Europe.",
    "Give three tips for keeping houseplants healthy during a dry winter season.",
    "What is the capital city of Australia and why was it chosen over Sydney?",
]


def test_normalisation_and_shingles() -> None:
    assert normalize("Hello,   WORLD!!  ") == "hello world"
    a = tokenize(["The cat sat on the mat", "the CAT sat; on the mat!"])
    h, o = ngram_hashes(a, 2)
    assert set(h[o == 0].tolist()) == set(h[o == 1].tolist())
    assert numbers("three apples cost $1,200.50 and 7 pears") >= {"3", "1200.50", "7"}
    # n-grams never span two texts
    t = tokenize(["a b", "c d"])
    h2, o2 = ngram_hashes(t, 2)
    assert len(h2) == 2 and o2.tolist() == [0, 1]


def test_containment_index_counts_shared_shingles() -> None:
    ref = tokenize(QUESTIONS)
    rh, ro = ngram_hashes(ref, 2)
    idx = ShingleIndex(rh, ro, len(QUESTIONS), max_df=None)
    q = tokenize([UNRELATED[0] + " " + QUESTIONS[3] + " " + UNRELATED[1]])
    qh, qo = ngram_hashes(q, 2)
    pc = idx.query(qh, qo)
    best = int(pc.item[np.argmax(pc.containment)])
    assert best == 3 and pc.containment.max() == pytest.approx(1.0)


def test_minhash_band_choice_reaches_recall_and_estimates_jaccard() -> None:
    b, r = choose_bands(64, 0.5, 0.99)
    assert b * r <= 64 and candidate_probability(0.5, b, r) >= 0.99
    assert candidate_probability(0.1, b, r) < candidate_probability(0.5, b, r)
    toks = tokenize([QUESTIONS[0], light_edit(QUESTIONS[0], seed=1), UNRELATED[0]])
    h, o = ngram_hashes(toks, 2)
    sig = MinHasher(128).signatures(h, o, 3)
    assert (sig[0] == sig[1]).mean() > (sig[0] == sig[2]).mean()


def test_duplicate_clusters_link_near_duplicates_only() -> None:
    texts = QUESTIONS + [light_edit(q, seed=i) for i, q in enumerate(QUESTIONS[:4])] + UNRELATED
    clusters, info = duplicate_clusters(tokenize(texts))
    as_sets = {frozenset(c) for c in clusters}
    for i in range(4):
        assert frozenset({i, len(QUESTIONS) + i}) in as_sets
    assert all(len(c) == 2 for c in clusters)
    assert info["bands"] * info["rows"] <= info["num_perm"]


def test_duplicate_clusters_ignore_shingles_of_a_template_many_records_share() -> None:
    """Short queries answered by one reply template (class name and a case number) share most of
    their shingles; the template's (in more than 5% of the records) are no evidence of a copy, so
    only the real near-copies are linked (with the filter off they chain into one big cluster)."""
    import random

    rng = random.Random(0)
    vocab = [f"{a}{b}" for a in ("ka", "lo", "mi", "nu", "pe", "ro", "su", "ti") for b in "aeiou"]
    texts = [
        " ".join(rng.choice(vocab) for _ in range(6))
        + f"\n\nSure, I will take care of that {rng.choice(['refund', 'order', 'card'])} "
        f"request for you right away (case {rng.randint(1000, 99999)})."
        for _ in range(300)
    ]
    texts += [light_edit(t, seed=i) for i, t in enumerate(texts[:5])]
    clusters, _ = duplicate_clusters(tokenize(texts))
    planted = {frozenset({i, 300 + i}) for i in range(5)}
    found = {frozenset(c) for c in clusters}
    # only planted copies are linked; an edit of one of six content words can drop a pair below
    # the threshold once the template's shingles no longer count (4 of 5 here)
    assert found <= planted and len(found) >= 4
    loose, _ = duplicate_clusters(tokenize(texts), ClusterParams(max_df=0))
    assert max(len(c) for c in loose) > 20


def test_lexical_leaks_found_and_unrelated_clean() -> None:
    edited = [light_edit(q, seed=i, edit_rate=0.08) for i, q in enumerate(QUESTIONS)]
    buried = [bury(e, UNRELATED[i % 6], UNRELATED[(i + 1) % 6]) for i, e in enumerate(edited)]
    train = [QUESTIONS[0].upper(), *edited[1:4], *buried[4:], *UNRELATED]
    params = LeakParams(semantic=False, near_min_shingles=2)
    rep = find_leaks({"prompt": train, "full": train}, QUESTIONS, QUESTIONS, params)
    found = {lk.train: lk for lk in rep.leaks}
    assert found[0].method == "exact"
    for i in range(1, len(QUESTIONS)):
        assert found[i].item == i and found[i].category == "near"
    assert not any(lk.train >= len(QUESTIONS) for lk in rep.leaks)


def test_ngram_overlap_spans_prompt_answer_boundary() -> None:
    q = "Alice has five red apples and gives two to Bob"
    a = "so Alice keeps exactly three red apples for her lunch tomorrow"
    train_full = ["Unrelated intro text here. " + q.split(" and ")[1] + " " + a]
    params = LeakParams(semantic=False, shingle=4, near_containment=0.99)
    rep = find_leaks({"prompt": ["x"], "full": train_full}, [q], [q + "\n\n" + a], params)
    assert [lk.method for lk in rep.leaks] == ["ngram13"]


def _gsm8k() -> tuple[list[str], list[str], list[str]]:
    d = DATA / "benchmarks"
    test = [json.loads(x)["question"] for x in (d / "gsm8k" / "test.jsonl").open()]
    train = [json.loads(x)["question"] for x in (d / "gsm8k" / "train.jsonl").open()]
    reph = [
        json.loads(x)["text"] for x in (d / "llm_decontaminator" / "rephrase_gsm8k.jsonl").open()
    ]
    reph = [r.split("\nAnswer:")[0].removeprefix("Question: ") for r in reph]
    return test, train, reph


@pytest.mark.skipif(not (DATA / "benchmarks" / "gsm8k").exists(), reason="shared data absent")
def test_near_duplicate_recall_on_gsm8k_and_no_false_alarm() -> None:
    test, _train, _ = _gsm8k()
    edited = [light_edit(q, seed=i, edit_rate=0.08) for i, q in enumerate(test)]
    params = LeakParams(semantic=False)
    rep = find_leaks({"prompt": edited, "full": edited}, test, test, params)
    hit = {lk.train for lk in rep.leaks if lk.train == lk.item}
    assert len(hit) / len(test) >= 0.99
    alp = json.loads(
        (DATA / "sft" / "alpaca_cleaned" / "alpaca_data_cleaned_2023-03-29.json").read_text()
    )[:5000]
    unrelated = [a["instruction"] + "\n" + a["input"] + "\n" + a["output"] for a in alp]
    rep2 = find_leaks({"prompt": unrelated, "full": unrelated}, test, test, params)
    assert len(rep2.leaks) == 0


def _embedder():  # type: ignore[no-untyped-def]
    try:
        from ftprep.signals.embeddings import get_embedder

        return get_embedder("static")
    except Exception:
        return None


@pytest.mark.slow
@pytest.mark.skipif(
    not (DATA / "benchmarks" / "llm_decontaminator").exists(), reason="shared data absent"
)
def test_paraphrase_recall_and_hard_negative_rate() -> None:
    emb = _embedder()
    if emb is None:
        pytest.skip("no static embedding model")
    test, train, reph = _gsm8k()
    params = LeakParams()
    rep = find_leaks({"prompt": reph, "full": reph}, test, test, params, embed=emb.encode)
    recall = len({lk.train for lk in rep.leaks if lk.train == lk.item}) / len(test)
    neg = find_leaks({"prompt": train, "full": train}, test, test, params, embed=emb.encode)
    fa = len({lk.train for lk in neg.leaks}) / len(train)
    # acceptance: recall >= 0.97 while flagging <= 0.5% of same-style non-leaked items
    assert recall >= 0.97, recall
    assert fa <= 0.005, fa


def test_params_from_yaml_reject_unknown_keys() -> None:
    p = LeakParams.from_dict(
        {"ngram_sizes": [13, 8], "weights": {"cos": 1.0}, "near_containment": 0.6}
    )
    assert p.ngram_sizes == (13, 8) and p.weights.cos == 1.0 and p.weights.words == 1.0
    with pytest.raises(ValueError, match="near_contaiment"):
        LeakParams.from_dict({"near_contaiment": 0.6})


def test_sort_based_unique_and_pair_containment_match_reference() -> None:
    from ftprep.contamination.index import pair_containment
    from ftprep.contamination.text import isin, unique

    rng = np.random.default_rng(0)
    x = rng.integers(0, 50, 500)
    u, first, inv, cnt = unique(x, return_index=True, return_inverse=True, return_counts=True)
    ru, rfirst, rinv, rcnt = np.unique(
        x, return_index=True, return_inverse=True, return_counts=True
    )
    assert (u == ru).all() and (first == rfirst).all() and (inv == rinv).all()
    assert (cnt == rcnt).all()
    assert (isin(x, np.array([3, 7, 49])) == np.isin(x, [3, 7, 49])).all()
    # containment of items' shingle sets in records', against plain Python sets
    items = [rng.choice(40, size=k, replace=False).astype(np.uint64) for k in (5, 8, 1, 12)]
    recs = [rng.integers(0, 40, size=k).astype(np.uint64) for k in (30, 3, 0, 17, 25)]
    item_h = np.concatenate([np.sort(i) for i in items])
    item_start = np.r_[0, np.cumsum([len(i) for i in items])]
    h = np.concatenate(recs)
    o = np.repeat(np.arange(len(recs)), [len(r) for r in recs])
    pr = np.array([0, 1, 2, 3, 4, 0, 3])
    pi = np.array([0, 1, 2, 3, 0, 3, 1])
    got = pair_containment(item_h, item_start, pr, pi, h, o)
    want = [
        len(set(items[i].tolist()) & set(recs[r].tolist())) / len(items[i])
        for r, i in zip(pr, pi, strict=True)
    ]
    assert np.allclose(got, want)


@pytest.mark.skipif(not (DATA / "benchmarks" / "mmlu").exists(), reason="shared data absent")
def test_short_items_near_recall_with_character_grams() -> None:
    import csv

    items = []
    for f in sorted((DATA / "benchmarks" / "mmlu" / "test").glob("*.csv"))[:20]:
        for r in list(csv.reader(f.open(encoding="utf-8")))[1:]:
            items.append(
                r[0] + "\n" + "\n".join(f"{c}. {t}" for c, t in zip("ABCD", r[1:5], strict=False))
            )
    edited = [light_edit(q, seed=i, edit_rate=0.08) for i, q in enumerate(items)]

    def recall(params: LeakParams) -> float:
        rep = find_leaks({"prompt": edited, "full": edited}, items, items, params)
        return len({lk.train for lk in rep.leaks if lk.train == lk.item}) / len(items)

    with_chars, words_only = (
        recall(LeakParams(semantic=False)),
        recall(LeakParams(semantic=False, near_char=0)),
    )
    assert with_chars >= 0.99 and with_chars > words_only, (with_chars, words_only)
    # same-style different problems are not flagged by the character rule
    test, train, _ = _gsm8k()
    neg = find_leaks({"prompt": train, "full": train}, test, test, LeakParams(semantic=False))
    assert not [lk for lk in neg.leaks if "character" in lk.detail]
