"""Ingest: every format becomes canonical examples; every bad record is a reject with its line."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ftprep.formats.readers import InputError, ReadOptions, read_file
from ftprep.formats.records import FieldMap
from util import chat, shared, write_jsonl


def read(path: Path, mode: str = "train", **kw):
    return read_file(path, ReadOptions(source="s", mode=mode, **kw), workers=1)


def test_openai_chat_with_tools_and_system(tmp_path: Path) -> None:
    rec = {
        "messages": [
            {"role": "system", "content": "sys"},
            {"role": "user", "content": "weather in Paris?"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "18C"},
            {"role": "assistant", "content": "It is 18C."},
        ]
    }
    res = read(write_jsonl(tmp_path / "a.jsonl", [rec]))
    assert not res.rejects
    ex = next(res.dataset.examples())
    assert ex.prompt == "weather in Paris?" and ex.response == "It is 18C."
    assert ex.messages[2]["tool_calls"][0]["function"]["name"] == "get_weather"
    assert res.formats == {"openai": 1}


def test_sharegpt_alpaca_prompt_completion(tmp_path: Path) -> None:
    recs = [
        {"conversations": [{"from": "human", "value": "hi"}, {"from": "gpt", "value": "hello"}]},
        {"instruction": "Translate", "input": "chat", "output": "cat"},
        {"prompt": "2+2=", "completion": "4"},
    ]
    res = read(write_jsonl(tmp_path / "m.jsonl", recs))
    assert not res.rejects
    exs = list(res.dataset.examples())
    assert [e.response for e in exs] == ["hello", "cat", "4"]
    assert exs[1].prompt == "Translate\n\nchat"
    assert res.formats == {"sharegpt": 1, "alpaca": 1, "prompt_completion": 1}


def test_json_array_with_line_numbers(tmp_path: Path) -> None:
    p = tmp_path / "a.json"
    p.write_text(
        '[\n  {"instruction": "a", "output": "b"},\n  {"instruction": "c"},\n  {"instruction": "e", "output": "f"}\n]\n'
    )
    res = read(p)
    assert len(res.dataset) == 2
    assert [(r.line, r.code) for r in res.rejects] == [(3, "no_assistant_turn")]


def test_csv_parquet_and_hf(tmp_path: Path) -> None:
    p = tmp_path / "c.csv"
    with open(p, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "category"])
        w.writerow(["card lost", "lost_card"])
        w.writerow(["", "x"])
    res = read(p, fields=FieldMap(label="category"))
    assert len(res.dataset) == 1 and res.dataset.column("label") == ["lost_card"]
    assert res.dataset.column("response") == ["lost_card"]
    assert [(r.line, r.code) for r in res.rejects] == [(3, "empty_content")]

    t = pa.table({"prompt": ["a", "b"], "completion": ["1", "2"]})
    pq.write_table(t, tmp_path / "x.parquet")
    assert len(read(tmp_path / "x.parquet").dataset) == 2

    hf = tmp_path / "hfds"
    hf.mkdir()
    (hf / "dataset_info.json").write_text("{}")
    with (
        pa.OSFile(str(hf / "data-00000-of-00001.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, t.schema) as w2,
    ):
        w2.write_table(t)
    assert read(hf).dataset.column("response") == ["1", "2"]


def test_mixed_valid_and_malformed_lines(tmp_path: Path) -> None:
    lines = [
        json.dumps(chat(1)),
        "{not json",
        json.dumps({"messages": [{"role": "user", "content": "q"}]}),
        "",
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": "q"},
                    {"role": "assistant", "content": "a"},
                    {"role": "user", "content": "more"},
                ]
            }
        ),
        json.dumps(
            {
                "messages": [
                    {"role": "wizard", "content": "q"},
                    {"role": "assistant", "content": "a"},
                ]
            }
        ),
        json.dumps(
            {"messages": [{"role": "user", "content": "  "}, {"role": "assistant", "content": "a"}]}
        ),
        json.dumps({"foo": 1}),
        json.dumps(chat(2)),
        json.dumps([1, 2]),
    ]
    p = tmp_path / "mixed.jsonl"
    p.write_text("\n".join(lines) + "\n")
    with open(p, "ab") as fh:
        fh.write(b'{"messages": "\xff\xfe"}\n')
        fh.write(json.dumps(chat(3, answer="x" * 5000)).encode() + b"\n")
    res = read(p, max_record_bytes=2000)
    # without a declared id field the records' own ``id`` key is the id
    assert res.dataset.ids == ["ex1", "ex2"]
    got = [(r.line, r.code) for r in res.rejects]
    assert got == [
        (2, "malformed_json"),
        (3, "no_assistant_turn"),
        (5, "assistant_not_last"),
        (6, "unknown_role"),
        (7, "empty_content"),
        (8, "unknown_format"),
        (10, "not_an_object"),
        (11, "bad_encoding"),
        (12, "oversized_record"),
    ]
    assert all(r.file == str(p) for r in res.rejects)
    assert res.n_records == len(res.dataset) + len(res.rejects)


def test_inputs_mode_allows_missing_answer(tmp_path: Path) -> None:
    p = write_jsonl(tmp_path / "prod.jsonl", [{"text": "where is my card"}, {"text": ""}])
    res = read(p, mode="inputs")
    assert len(res.dataset) == 1 and res.rejects[0].code == "no_user_turn"


def test_missing_file_is_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no such file"):
        read(tmp_path / "nope.jsonl")


def test_parallel_chunks_keep_line_numbers(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ftprep.formats.readers as r

    monkeypatch.setattr(r, "PARALLEL_MIN_BYTES", 1000)
    lines = [json.dumps(chat(i)) if i % 97 else "{oops" for i in range(1, 3000)]
    p = tmp_path / "big.jsonl"
    p.write_text("\n".join(lines) + "\n")
    res = read_file(p, ReadOptions(source="s"), workers=2)
    assert [x.line for x in res.rejects] == [i for i in range(1, 3000) if i % 97 == 0]
    assert res.dataset.column("line")[:3] == [1, 2, 3]
    assert len(res.dataset) + len(res.rejects) == 2999


def test_real_shared_files() -> None:
    toy = shared("sft", "openai_chat_format", "toy_chat_fine_tuning.jsonl")
    res = read(toy)
    assert res.n_records == len(res.dataset) + len(res.rejects)
    assert len(res.dataset) > 0
    sg = shared("sft", "sharegpt_fastchat", "dummy_conversation.json")
    res2 = read(sg)
    assert len(res2.dataset) > 0 and res2.n_records == len(res2.dataset) + len(res2.rejects)


_text = st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=0, max_size=40)
_record = st.one_of(
    st.fixed_dictionaries(
        {
            "messages": st.lists(
                st.fixed_dictionaries(
                    {
                        "role": st.sampled_from(["system", "user", "assistant", "robot"]),
                        "content": _text,
                    }
                ),
                max_size=4,
            )
        }
    ),
    st.fixed_dictionaries({"instruction": _text, "output": _text}),
    st.fixed_dictionaries({"prompt": _text, "completion": _text}),
    st.just("{broken"),
    st.integers(),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(records=st.lists(_record, max_size=25))
def test_every_record_is_an_example_or_a_reject(tmp_path: Path, records: list) -> None:
    p = tmp_path / "h.jsonl"
    p.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in records))
    res = read(p)
    assert res.n_records == len(records)
    assert len(res.dataset) + len(res.rejects) == len(records)
    ex_lines = set(res.dataset.column("line"))
    rej_lines = {r.line for r in res.rejects}
    assert ex_lines.isdisjoint(rej_lines) and ex_lines | rej_lines == set(
        range(1, len(records) + 1)
    )


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    turns=st.lists(
        st.tuples(_text.filter(lambda s: s.strip()), _text.filter(lambda s: s.strip())),
        min_size=1,
        max_size=3,
    )
)
def test_write_then_read_round_trips(tmp_path: Path, turns: list) -> None:
    from ftprep.formats.writers import to_record

    msgs = []
    for u, a in turns:
        msgs += [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
    res = read(write_jsonl(tmp_path / "in.jsonl", [{"messages": msgs}]))
    row = res.dataset.table.to_pylist()[0]
    for fmt in ("openai", "sharegpt", "alpaca", "prompt_completion"):
        back = read(write_jsonl(tmp_path / f"{fmt}.jsonl", [to_record(row, fmt)]))
        assert len(back.dataset) == 1, (fmt, back.rejects)
        ex = next(back.dataset.examples())
        assert ex.response == turns[-1][1]
        if fmt in ("openai", "sharegpt", "alpaca"):
            assert [m["content"] for m in ex.messages] == [
                m["content"] for m in msgs
            ] or fmt == "alpaca"


def test_fast_path_equals_slow_path(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import ftprep.formats.fastpath as fp
    import ftprep.formats.readers as r

    monkeypatch.setattr(fp, "FAST_MIN_BYTES", 0)
    recs = [chat(i, conv=f"c{i % 3}", flag=bool(i % 2), score=i / 2) for i in range(30)]
    recs[3]["messages"][1]["role"] = "wizard"
    recs[5]["messages"][2]["content"] = "   "
    recs[7]["messages"] = recs[7]["messages"][:2]
    recs[9]["messages"].append({"role": "user", "content": "and?"})
    recs[11]["messages"][2] = {
        "role": "assistant",
        "content": None,
        "tool_calls": [
            {"id": "t", "type": "function", "function": {"name": "f", "arguments": "{}"}}
        ],
    }
    recs[13]["messages"][1]["name"] = "bob"
    recs[15]["id"] = recs[14]["id"]
    recs[17].pop("id")
    p = write_jsonl(tmp_path / "clean.jsonl", recs)
    fm = FieldMap(id="id", group="conv", label="flag", meta=("score",), outcome=("flag",))
    calls = []
    real = r.read_fast

    def spy(*a, **k):
        out = real(*a, **k)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(r, "read_fast", spy)
    fast = read(p, fields=fm, max_record_bytes=10_000)
    assert calls == [True]
    monkeypatch.setattr(r, "read_fast", lambda *a, **k: None)
    slow = read(p, fields=fm, max_record_bytes=10_000)
    assert [(x.line, x.code) for x in fast.rejects] == [(x.line, x.code) for x in slow.rejects]
    assert {x.code for x in slow.rejects} == {
        "unknown_role",
        "empty_content",
        "no_assistant_turn",
        "assistant_not_last",
        "duplicate_id",
    }
    ft, st_ = fast.dataset.table, slow.dataset.table
    assert ft.num_rows == st_.num_rows == 25
    for col in ft.column_names:
        a, b = ft.column(col).to_pylist(), st_.column(col).to_pylist()
        if col in ("messages", "outcome", "meta"):
            a, b = [json.loads(x) for x in a], [json.loads(x) for x in b]
        assert a == b, col
    assert fast.n_records == slow.n_records == 30
    assert fast.formats == slow.formats


def test_undeclared_id_key_is_the_id_and_repeats_are_numbered(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ``fields.id`` a record's own top-level ``id`` is its id (ShareGPT dumps, HF
    exports), on the fast and the slow path alike; a repeat is numbered, never dropped (it is
    a guess, not a declared key), and a record without one gets a content-hash id. A numbered
    id never collides with a real one ("ex1#2" below is taken)."""
    import ftprep.formats.fastpath as fp
    import ftprep.formats.readers as r

    monkeypatch.setattr(fp, "FAST_MIN_BYTES", 0)
    recs = [chat(i) for i in range(6)]
    recs[2]["id"] = "ex1#2"
    recs[3]["id"] = "ex1"
    recs[4]["id"] = 7  # a number: its text
    recs[5].pop("id")
    p = write_jsonl(tmp_path / "ids.jsonl", recs)
    fast = read(p)
    monkeypatch.setattr(r, "read_fast", lambda *a, **k: None)
    slow = read(p)
    for res in (fast, slow):
        assert res.rejects == []
        ids = res.dataset.ids
        assert ids[:5] == ["ex0", "ex1", "ex1#2", "ex1#3", "7"]
        assert ids[5] == "s:" + res.dataset.column("content_hash")[5][:16]
    # a declared id field still rejects repeats (the ledger's key)
    declared = read(p, fields=FieldMap(id="id"))
    assert [(x.line, x.code) for x in declared.rejects] == [(4, "duplicate_id")]


def test_token_counts_single_turn_shortcut_is_exact(tmp_path: Path) -> None:
    from ftprep.signals.cache import token_counts_for
    from ftprep.signals.tokens import count_messages, get_counter

    recs = [chat(i) for i in range(5)]
    recs[1]["messages"].pop(0)  # no system prompt
    recs[2]["messages"] += [
        {"role": "user", "content": "more?"},
        {"role": "assistant", "content": "yes, more."},
    ]
    res = read(write_jsonl(tmp_path / "t.jsonl", recs))
    counter = get_counter("cl100k")
    got = token_counts_for(counter, res.dataset.table)
    total, asst = count_messages(counter, [e.messages for e in res.dataset.examples()])
    assert got[:, 0].tolist() == total.tolist()
    assert got[:, 1].tolist() == asst.tolist()


def _smallest_ids(ids: list[str], n: int, seed: int) -> set[str]:
    """The sampling rule, written independently: the ids of smallest seeded blake2b hash."""
    import hashlib

    def key(i: str) -> bytes:
        return hashlib.blake2b(f"{seed}:{i}".encode(), digest_size=8).digest()

    return set(sorted(ids, key=key)[:n])


def _containers(tmp_path: Path, rows: list[dict]) -> dict[str, Path]:
    """The same production records as JSONL, gzip'd JSONL, CSV, Parquet and a HF directory."""
    import gzip

    paths = {"jsonl": tmp_path / "p.jsonl", "gz": tmp_path / "p.jsonl.gz"}
    body = "".join(json.dumps(r) + "\n" for r in rows)
    paths["jsonl"].write_text(body)
    with gzip.open(paths["gz"], "wt") as fh:
        fh.write(body)
    paths["csv"] = tmp_path / "p.csv"
    with open(paths["csv"], "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=["qid", "text"])
        w.writeheader()
        w.writerows(rows)
    t = pa.table({"qid": [r["qid"] for r in rows], "text": [r["text"] for r in rows]})
    paths["parquet"] = tmp_path / "p.parquet"
    pq.write_table(t, paths["parquet"], row_group_size=50)
    hf = paths["hf"] = tmp_path / "hfds"
    hf.mkdir()
    (hf / "dataset_info.json").write_text("{}")
    with (
        pa.OSFile(str(hf / "data-00000-of-00001.arrow"), "wb") as sink,
        pa.ipc.new_stream(sink, t.schema) as w2,
    ):
        for batch in t.to_batches(max_chunksize=40):
            w2.write_batch(batch)
    return paths


def test_production_sample_is_streamed_and_reproducible(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sampled read keeps exactly the records of smallest seeded id hash, in file order, block
    by block (small blocks here, and worker processes), and still reports every reject."""
    import ftprep.formats.readers as r

    monkeypatch.setattr(r, "SAMPLE_BLOCK_BYTES", 2000)
    monkeypatch.setattr(r, "SAMPLE_BLOCK_RECORDS", 64)
    rows = [
        {"qid": f"q{i}", "text": f"where is my order number {i}" if i % 53 else ""}
        for i in range(1, 1200)
    ]
    bad = [i + 1 for i, x in enumerate(rows) if not x["text"]]  # empty input: rejected
    fields = FieldMap(id="qid", input="text")
    want = _smallest_ids([x["qid"] for x in rows if x["text"]], 100, 7)
    for kind, p in _containers(tmp_path, rows).items():
        for workers in (1, 2):
            opts = ReadOptions(
                source="prod", mode="inputs", fields=fields, sample=100, sample_seed=7
            )
            res = read_file(p, opts, workers=workers)
            got = res.dataset.ids
            assert set(got) == want, kind
            assert res.dataset.column("line") == sorted(res.dataset.column("line"))
            assert res.n_records == len(rows), kind
            # every record was parsed: the rejects of the records left out are reported too
            first = 2 if kind == "csv" else 1  # the CSV header is line 1
            assert [x.line for x in res.rejects] == [b + first - 1 for b in bad], kind
    path = tmp_path / "p.jsonl"
    opts = ReadOptions(source="prod", mode="inputs", fields=fields, sample=100, sample_seed=8)
    read_bytes: list[int] = []
    assert set(read_file(path, opts, workers=1, progress=read_bytes.append).dataset.ids) != want
    assert len(read_bytes) > 1 and sum(read_bytes) == path.stat().st_size  # progress, per block
    # the file's order does not matter
    shuffled = tmp_path / "shuffled.jsonl"
    shuffled.write_text("".join(json.dumps(x) + "\n" for x in reversed(rows)))
    opts = ReadOptions(source="prod", mode="inputs", fields=fields, sample=100, sample_seed=7)
    assert set(read_file(shuffled, opts, workers=1).dataset.ids) == want
    # a sample larger than the file: everything
    opts = ReadOptions(source="prod", mode="inputs", fields=fields, sample=5000)
    assert len(read_file(path, opts, workers=1).dataset) == len(rows) - len(bad)


@settings(
    max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    texts=st.lists(
        st.sampled_from(["a", "b", "c", "hello there", "refund"]), min_size=1, max_size=60
    ),
    n=st.integers(1, 70),
    seed=st.integers(0, 3),
)
def test_sample_without_ids_equals_the_full_read_cut(
    tmp_path: Path, texts: list[str], n: int, seed: int
) -> None:
    """Records without ids (ids from their content, repeats numbered): the sample holds the
    smallest keys of the full read, repeated records counted as often as they were kept."""
    p = tmp_path / f"p{seed}_{n}_{len(texts)}.jsonl"
    p.write_text("".join(json.dumps({"text": t}) + "\n" for t in texts))
    fields = FieldMap(input="text")
    full = read_file(p, ReadOptions(source="s", mode="inputs", fields=fields), workers=1)
    part = read_file(
        p,
        ReadOptions(source="s", mode="inputs", fields=fields, sample=n, sample_seed=seed),
        workers=1,
    )
    assert len(part.dataset) == min(n, len(texts))
    # the sample's prompts are the n records of smallest base-id key, ties in file order
    import hashlib

    ids = full.dataset.ids
    base = [i.split("#")[0] for i in ids]
    keys = [hashlib.blake2b(f"{seed}:{b}".encode(), digest_size=8).digest() for b in base]
    order = sorted(range(len(ids)), key=lambda k: (keys[k], k))[:n]
    assert sorted(part.dataset.column("prompt")) == sorted(
        full.dataset.column("prompt")[k] for k in order
    )
    assert len(set(part.dataset.ids)) == len(part.dataset)  # repeats numbered, ids unique


def test_sampled_csv_reports_bad_bytes_and_keeps_multiline_fields(tmp_path: Path) -> None:
    """The streamed CSV read decodes line by line: a bad byte is an error naming its line, and
    a BOM and quoted fields across lines read as in the whole-file read."""
    fields = FieldMap(id="qid", input="text")
    bad = tmp_path / "bad.csv"
    bad.write_bytes(b"qid,text\nq1,hello\nq2,caf\xe9\n")
    with pytest.raises(InputError, match=r"bad\.csv:3: not valid UTF-8"):
        read_file(bad, ReadOptions(source="p", mode="inputs", fields=fields, sample=5))
    ml = tmp_path / "ml.csv"
    ml.write_bytes('\ufeffqid,text\nq1,"multi\nline"\nq2,plain\n'.encode())
    whole = read_file(ml, ReadOptions(source="p", mode="inputs", fields=fields))
    part = read_file(ml, ReadOptions(source="p", mode="inputs", fields=fields, sample=5))
    for col in ("id", "prompt", "line"):
        assert part.dataset.column(col) == whole.dataset.column(col)
    assert part.dataset.column("prompt") == ["multi\nline", "plain"]


def test_sampled_read_rejects_a_repeated_id_it_keeps(tmp_path: Path) -> None:
    """Repeats of an explicit id share its hash, so they are kept together and the later one is
    rejected as a duplicate, as in the whole-file read."""
    rows = [{"qid": f"q{i}", "text": f"order {i}"} for i in range(40)]
    fields = FieldMap(id="qid", input="text")
    keep = sorted(_smallest_ids([r["qid"] for r in rows], 10, 0))[0]  # an id the sample keeps
    rows.append({"qid": keep, "text": "the same id again"})
    path = write_jsonl(tmp_path / "p.jsonl", rows)
    res = read_file(path, ReadOptions(source="p", mode="inputs", fields=fields, sample=10))
    assert [(r.line, r.code) for r in res.rejects] == [(41, "duplicate_id")]
    assert len(res.dataset) == 9 and keep in res.dataset.ids
