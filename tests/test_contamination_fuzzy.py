"""The fuzzy word-window test that confirms short near-duplicate leaks."""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from ftprep.contamination.fuzzy import contains_item, osa_distance, words_match


def test_light_edits_match_and_siblings_do_not() -> None:
    assert contains_item(
        "Who signed the Louisiana Purchase?", "Whho signed the Louisiana Purchase"
    )[0]
    assert contains_item("Who did Pocahontas marry?", "WHO DID POCAHONTAS MAGRY")[0]
    assert contains_item("What are the effects of karma?", " What  the are effects of karma ")[0]
    # a template sibling differs in one real word: not a copy
    assert not contains_item(
        "Where does it never ever stop raining?", "Where does it never ever stop snowing?"
    )[0]
    # the item's words scattered over a long unrelated record are not a copy
    assert not contains_item(
        "Can machine learning algorithms be biased?",
        "Explain how machine learning algorithms work. They can be used to classify text, "
        "and they are often biased toward the majority class.",
    )[0]
    # buried inside a longer record, lightly edited
    assert contains_item(
        "How many moons does Mars have?",
        "Write a poem about the sea. The waves roll in. how many mons does mars have? "
        "Then describe the colour of the sky at dusk in two sentences.",
    )[0]


def test_osa_distance() -> None:
    assert osa_distance("speak", "sepak") == 1
    assert osa_distance("secret", "oecret") == 1
    assert osa_distance("raining", "snowing") == 3  # capped at limit + 1
    assert words_match("internatoinal", "international")
    assert not words_match("cat", "dog")


@settings(max_examples=60, deadline=None)
@given(st.integers(0, 10_000))
def test_any_single_light_edit_is_found(seed: int) -> None:
    rng = random.Random(seed)
    vocab = ["market", "river", "planet", "engine", "garden", "silver", "winter", "doctor"]
    item = [rng.choice(vocab) for _ in range(rng.randint(3, 12))]
    edited = list(item)
    i = rng.randrange(len(edited))
    kind = rng.randrange(3)
    w = edited[i]
    if kind == 0:  # typo
        j = rng.randrange(1, len(w) - 1)
        edited[i] = w[:j] + w[j + 1 :]
    elif kind == 1:  # swap two words
        k = rng.randrange(len(edited))
        edited[i], edited[k] = edited[k], edited[i]
    else:  # case
        edited[i] = w.upper()
    filler = [rng.choice(["alpha", "beta", "gamma", "delta"]) for _ in range(30)]
    assert contains_item(" ".join(item), " ".join(filler + edited + filler))[0]


def test_unrelated_real_text_is_not_a_copy() -> None:
    """False alarms seen on real SFT data (Alpaca/LIMA against TruthfulQA/MMLU questions)."""
    # a number must be there: "Area 51" is not "the program"
    assert not contains_item(
        "What is the purpose of Area 51?", "What is the purpose of the program? What are the goals?"
    )[0]
    assert not contains_item(
        "Is 91 a prime number?", "Is the given number a prime number? 19 Yes, 19 is a prime number."
    )[0]
    # each record word serves one item word, short words count, order matters
    assert not contains_item(
        "Is every cat a cat?", "This pet toy is every cat's dream come true! Our toy is filled"
    )[0]
    assert not contains_item(
        "Is light a particle or a wave?",
        "This means that matter can behave like both a wave and a particle, depending on it.",
    )[0]
    # an item of fewer than three content words inside a longer text is no evidence
    long_record = (
        "Provide a scientific cause for the following phenomenon: Why is the sky blue? The sky "
        "is blue because of the way the molecules of the atmosphere scatter sunlight."
    )
    assert not contains_item("Why is the sky blue?", long_record)[0]
    assert contains_item("Why is the sky blue?", "why is teh sky blue")[0]
