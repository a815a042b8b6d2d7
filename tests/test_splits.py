"""Split assignment: never by row, groups and link clusters never straddle two splits,
deterministic, shares respected, eval_from source/production."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from ftprep.examples import Dataset, Example
from ftprep.project import Split
from ftprep.splits import assign_splits, eval_from_pool


def _ds(
    groups: list[int], labels: list[int] | None = None, sources: list[int] | None = None
) -> Dataset:
    exs = [
        Example(
            id=f"e{i}",
            messages=[{"role": "user", "content": f"q{i}"}, {"role": "assistant", "content": "a"}],
            group=f"g{g}",
            label=None if labels is None else f"l{labels[i]}",
            source=f"s{sources[i]}" if sources else "s0",
        )
        for i, g in enumerate(groups)
    ]
    return Dataset.from_examples(exs)


@settings(max_examples=60, deadline=None)
@given(
    groups=st.lists(st.integers(0, 30), min_size=1, max_size=120),
    links=st.lists(st.lists(st.integers(0, 119), min_size=2, max_size=5), max_size=15),
    seed=st.integers(0, 5),
    val=st.floats(0.0, 0.4),
    test=st.floats(0.0, 0.4),
    stratify=st.booleans(),
)
def test_no_group_or_cluster_straddles(groups, links, seed, val, test, stratify) -> None:  # type: ignore[no-untyped-def]
    ds = _ds(groups, labels=[g % 3 for g in groups])
    n = len(groups)
    clusters = [[f"e{i}" for i in c if i < n] for c in links]
    policy = Split(validation=val, test=test, seed=seed, stratify="label" if stratify else None)
    out = assign_splits(ds, policy, clusters)
    assert set(out) == set(ds.ids)
    assert set(out.values()) <= {"train", "validation", "test"}
    by_group: dict[int, set[str]] = {}
    for i, g in enumerate(groups):
        by_group.setdefault(g, set()).add(out[f"e{i}"])
    assert all(len(s) == 1 for s in by_group.values())
    for c in clusters:
        assert len({out[m] for m in c}) <= 1
    assert assign_splits(ds, policy, clusters) == out  # deterministic


def test_shares_close_to_target_with_many_small_groups() -> None:
    ds = _ds(list(range(2000)))
    out = assign_splits(ds, Split(validation=0.1, test=0.2, seed=3))
    vals = list(out.values())
    assert abs(vals.count("validation") / 2000 - 0.1) < 0.02
    assert abs(vals.count("test") / 2000 - 0.2) < 0.02
    other = assign_splits(ds, Split(validation=0.1, test=0.2, seed=4))
    assert other != out  # the seed matters


def test_stratified_split_keeps_label_shares() -> None:
    labels = [i % 4 for i in range(4000)]
    ds = _ds(list(range(4000)), labels=labels)
    out = assign_splits(ds, Split(validation=0.1, test=0.1, stratify="label"))
    for lab in range(4):
        members = [f"e{i}" for i in range(4000) if labels[i] == lab]
        share = sum(out[m] == "test" for m in members) / len(members)
        assert abs(share - 0.1) < 0.02


def test_eval_from_source_and_pool() -> None:
    sources = [0] * 50 + [1] * 50
    ds = _ds(list(range(100)), sources=sources)
    policy = Split(eval_from="source", eval_source="s1", validation=0.5, test=0.5)
    out = assign_splits(ds, policy)
    assert all(out[f"e{i}"] == "train" for i in range(50))
    assert {out[f"e{i}"] for i in range(50, 100)} == {"validation", "test"}
    # a training example linked to an eval-source example goes with it (nothing straddles)
    out2 = assign_splits(ds, policy, [["e3", "e70"]])
    assert out2["e3"] == out2["e70"] != "train"
    pool = _ds(list(range(400)))
    sel = eval_from_pool(pool, Split(validation=0.1, test=0.1), share=0.25)
    assert abs(len(sel) / 400 - 0.25) < 0.03
    assert set(sel.values()) == {"validation", "test"}
    assert eval_from_pool(pool, Split(), share=0.0) == {}
    prod = assign_splits(ds, Split(eval_from="production"))
    assert set(prod.values()) == {"train"}
