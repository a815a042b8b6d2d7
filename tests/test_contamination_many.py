"""One search of several reference sets at once (``find_leaks_many``) gives each set exactly
what a search of that set alone gives; the pieces that make the single pass cheap keep the
values they replace."""

from __future__ import annotations

import numpy as np

from ftprep.contamination.detect import (
    LeakParams,
    RefSet,
    embed_distinct,
    find_leaks,
    find_leaks_many,
)
from ftprep.contamination.fuzzy import contains_item
from ftprep.contamination.index import ShingleIndex
from ftprep.contamination.plant import bury, light_edit
from ftprep.contamination.semantic import FeatureSpace
from ftprep.contamination.text import _POLY, _window_poly

MATH = [
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with four.",
    "A robe takes 2 bolts of blue fiber and half that much white fiber. How many bolts in total?",
    "Josh buys a house for $80,000 and puts in $50,000 in repairs. How much profit did he make?",
    "James decides to run 3 sprints 3 times a week. He runs 60 meters each sprint.",
]
QUIZ = [
    "Which of the following ions has the smallest radius?\nA. K+\nB. Ca2+\nC. Sc3+\nD. Rb+",
    "Find the number that makes the statement true: 0.32 g = _ cg.\nA. 32\nB. 3.2\nC. 3,200\nD. 320",
    "About what percentage of people who have had bridge jobs say it was better than their "
    "career job?\nA. Less than 25%\nB. Less than 50%\nC. More than 50%\nD. More than 75%",
    "Which of the following is the body cavity that contains the pituitary gland?\nA. Abdominal"
    "\nB. Cranial\nC. Pleural\nD. Spinal",
]
FILLER = [
    "Write a short poem about the colour of autumn leaves in the northern forest.",
    "Explain the difference between a list and a tuple in Python with an example.",
    "Translate the following sentence into French: the library opens at nine.",
    "Give three tips for keeping houseplants healthy during a dry winter season.",
]


def _training() -> list[str]:
    train = list(FILLER)
    train += [light_edit(q, seed=i, edit_rate=0.08) for i, q in enumerate(MATH[:2])]
    train += [bury(light_edit(QUIZ[0], seed=3), FILLER[0], FILLER[1]), QUIZ[1].upper()]
    # the same text in both sets: found in each
    train.append(MATH[3])
    return train


def test_one_pass_equals_a_search_per_set() -> None:
    train = _training()
    fields = {"prompt": train, "full": train}
    quiz = [*QUIZ, MATH[3]]
    params = LeakParams(semantic=False)
    multi = find_leaks_many(fields, [RefSet(MATH, MATH), RefSet(quiz, quiz)], params)
    alone = [find_leaks(fields, MATH, MATH, params), find_leaks(fields, quiz, quiz, params)]
    for got, want in zip(multi.reports, alone, strict=True):
        assert [(lk.train, lk.item, lk.method) for lk in got.leaks] == [
            (lk.train, lk.item, lk.method) for lk in want.leaks
        ]
    found = [{(lk.train, lk.item) for lk in rep.leaks} for rep in multi.reports]
    assert {(4, 0), (5, 1), (8, 3)} <= found[0]
    assert {(6, 0), (7, 1), (8, 4)} <= found[1]
    assert not any(r < 4 for f in found for r, _ in f)  # unrelated records are not flagged


def test_document_frequency_is_counted_within_each_set() -> None:
    # a shingle in 3 items of set 0 and 1 item of set 1: with max_df=2 it is dropped from
    # set 0 only
    h = np.array([7, 7, 7, 7, 9], dtype=np.uint64)
    o = np.array([0, 1, 2, 3, 3])
    group = np.array([0, 0, 0, 1])
    idx = ShingleIndex(h, o, 4, max_df=2, group=group)
    assert idx.full_size.tolist() == [0, 0, 0, 2]
    alone = ShingleIndex(h, o, 4, max_df=2)
    assert alone.full_size.tolist() == [0, 0, 0, 1]


def test_strict_word_window_for_items_padded_with_letters_and_digits() -> None:
    item = "Let x = 1. What is x << 3 in Python 3?\nA. 1\nB. 3\nC. 8\nD. 16"
    # two swaps, one typo: every word, digits included, still in one window
    edited = "let x = 1. what x is << 3 in Pyhton 3? a. 1 b. 3 8 c. d. 16"
    assert contains_item(item, "Some text before. " + edited + " And after.", 16, strict=True)[0]
    # a same-template sibling shares the real words, not the digits and letters
    sibling = 'What is the output of "abc"[::-1] in Python 3?\nA. Error\nB. abc\nC. cba\nD. c'
    assert not contains_item(item, sibling, 16, strict=True)[0]


def test_list_labels_are_no_quantities() -> None:
    space = FeatureSpace(["Claire makes a 3 egg omelet every morning. How many in 4 weeks?"])
    feats = space.encode(["Tips:\n1. Wake up early.\n2. Eat at 3 pm.\n3. Done", "add(2, 3)\n5\n"])
    inv = {v: k for k, v in space._spec_ids.items()}
    ids, off = feats.specs
    assert [inv[x] for x in ids[off[0] : off[1]]] == ["3"]
    assert sorted(inv[x] for x in ids[off[1] : off[2]]) == ["2", "3", "5"]


def test_prefix_sum_ngram_hash_equals_horner() -> None:
    rng = np.random.default_rng(0)
    ids = rng.integers(0, 2**63, 5000, dtype=np.uint64)
    for n in (1, 2, 5, 8, 13):
        m = len(ids) - n + 1
        with np.errstate(over="ignore"):
            h = np.zeros(m, dtype=np.uint64)
            for k in range(n):
                h = h * _POLY + ids[k : k + m]
        assert np.array_equal(_window_poly(ids, n), h)


def test_embed_distinct_embeds_each_text_once() -> None:
    seen: list[str] = []

    def embed(texts: list[str]) -> np.ndarray:
        seen.extend(texts)
        return np.array([[len(t), t.count("a")] for t in texts], dtype=np.float32)

    texts = ["a cat", "a dog", "a cat", "banana", "a dog"]
    out = embed_distinct(embed, texts)
    assert sorted(seen) == ["a cat", "a dog", "banana"]
    assert np.array_equal(out, embed(texts))


def test_item_with_few_word_pairs_found_after_swaps() -> None:
    item = (
        "This is the sharing of meaning created through the transmission of information:\n"
        "A. Communication.\nB. Noise.\nC. Transfer.\nD. Understanding."
    )
    # two swaps (one moves an option letter): most informative word pairs are broken
    record = (
        "this is the of sharing meaning created through the transmission of information: "
        "a. communication. noise. b. c. transfer. d. understanding."
    )
    items = [item, *QUIZ]
    train = {"prompt": [record, *FILLER], "full": [record, *FILLER]}
    # (a stricter word-pair rule than the default, as in a large benchmark whose template
    # pairs are left out by max_df: the word rule alone misses this copy)
    params = LeakParams(semantic=False, near_containment=0.7, near_char=0)
    rep = find_leaks(train, items, items, params)
    assert [(lk.train, lk.item) for lk in rep.leaks] == [(0, 0)]
    assert "one span" in rep.leaks[0].detail
    params.near_fuzzy_shingles = 0
    assert find_leaks(train, items, items, params).leaks == []
