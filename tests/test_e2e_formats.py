"""End to end as a user: every input container and record shape in, every output format out,
read back by ftprep itself (unicode, whitespace, tool calls, long and multi-turn texts)."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import orjson
import pyarrow as pa
import pytest
from click.testing import CliRunner

import ftprep
from ftprep.cli import main
from ftprep.formats.readers import InputError, ReadOptions, read_file
from util import make_project, write_jsonl

TOOL_CALL = {
    "id": "call_1",
    "type": "function",
    "function": {"name": "order_status", "arguments": '{"order": "8812"}'},
}


def _conversations() -> list[dict]:
    """Ten distinct conversations of every awkward kind (ids make them traceable)."""
    recs: list[dict] = []
    for i in range(10):
        u = f"Question {i}: où est ma commande n°{i}? 你好 🙂"
        a = f"Answer {i}: elle arrive demain.\r\nMerci — Ω"
        msgs: list[dict] = [{"role": "user", "content": u}, {"role": "assistant", "content": a}]
        if i % 5 == 1:  # tool call and its result
            msgs = [
                {"role": "system", "content": "You can look orders up."},
                {"role": "user", "content": u},
                {"role": "assistant", "content": "", "tool_calls": [TOOL_CALL]},
                {"role": "tool", "tool_call_id": "call_1", "content": '{"status": "shipped"}'},
                {"role": "assistant", "content": a},
            ]
        elif i % 5 == 2:  # multi-turn with a system prompt
            msgs = [
                {"role": "system", "content": "Be brief."},
                {"role": "user", "content": u},
                {"role": "assistant", "content": "Which order?"},
                {"role": "user", "content": f"n°{i}"},
                {"role": "assistant", "content": a},
            ]
        elif i % 5 == 3:  # a very long answer, surrounding whitespace kept
            msgs[1]["content"] = "  " + "long text " * 20_000 + "\n"
        elif i % 5 == 4:  # a developer message
            msgs.insert(0, {"role": "developer", "content": "Answer in French."})
        recs.append({"id": f"c{i}", "messages": msgs})
    return recs


def _read(path: Path) -> list[list[dict]]:
    res = read_file(path, ReadOptions(source="back"), workers=1)
    assert not res.rejects, [(r.line, r.code, r.reason) for r in res.rejects]
    return [orjson.loads(m) for m in res.dataset.table.column("messages").to_pylist()]


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, list[dict]]]:
    root = tmp_path_factory.mktemp("formats")
    recs = _conversations()
    project = make_project(
        root, recs, extra_yaml="split: {validation: 0.0, test: 0.0}\ncontext_limit: 100000\n"
    )
    assert ftprep.audit(project, only=["format.rejects"]).exit_code == 0
    return project, {r["id"]: r["messages"] for r in recs}


def _build_and_read(
    built: tuple[Path, dict[str, list[dict]]], fmt: str
) -> tuple[ftprep.BuildResult, dict, list[list[dict]], dict[str, list[dict]]]:
    """Build in ``fmt``; (result, train split entry, train split read back, original turns)."""
    project, originals = built
    res = ftprep.build(project, out=project / "out" / fmt, fmt=fmt)
    split = res.manifest["splits"]["train"]
    return res, split, _read(res.out_dir / split["file"]), originals


@pytest.mark.parametrize("fmt", ["openai", "sharegpt", "parquet"])
def test_lossless_formats_read_back_identical(
    built: tuple[Path, dict[str, list[dict]]], fmt: str
) -> None:
    res, split, back, originals = _build_and_read(built, fmt)
    if fmt == "sharegpt":
        assert res.manifest["warnings"] == [
            "format sharegpt cannot hold every conversation (openai and parquet keep them "
            "whole): roles renamed (developer->system): 2 example(s)"
        ]
    else:
        assert res.manifest["warnings"] == []
    want = [originals[i] for i in split["ids"]]
    assert len(back) == len(want) == 10
    for got, exp in zip(back, want, strict=True):
        if fmt == "sharegpt":  # ShareGPT has no developer speaker: written as system
            exp = [dict(m, role="system") if m["role"] == "developer" else m for m in exp]
        assert got == exp


@pytest.mark.parametrize("fmt", ["alpaca", "prompt_completion"])
def test_lossy_formats_say_what_they_dropped(
    built: tuple[Path, dict[str, list[dict]]], fmt: str
) -> None:
    res, split, back, originals = _build_and_read(built, fmt)
    # every example comes back with the same final answer
    for got, i in zip(back, split["ids"], strict=True):
        assert got[-1] == {"role": "assistant", "content": originals[i][-1]["content"]}
    (warning,) = [w for w in res.manifest["warnings"] if w.startswith(f"format {fmt}")]
    assert "tool calls and results dropped: 2 example(s)" in warning
    if fmt == "prompt_completion":
        assert "multi-turn flattened" in warning and "system prompt dropped" in warning


def test_build_switching_format_leaves_no_stale_split_files(
    built: tuple[Path, dict[str, list[dict]]],
) -> None:
    project, _ = built
    out = project / "out" / "switch"
    ftprep.build(project, out=out, fmt="openai")
    (out / "notes.txt").write_text("mine")
    ftprep.build(project, out=out, fmt="parquet")
    names = sorted(p.name for p in out.iterdir())
    assert names == [
        "manifest.json",
        "notes.txt",
        "test.parquet",
        "train.parquet",
        "validation.parquet",
    ]


def test_gzip_jsonl(tmp_path: Path) -> None:
    rec = {"messages": [{"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}]}
    p = tmp_path / "t.jsonl.gz"
    p.write_bytes(gzip.compress((json.dumps(rec) + "\n{broken\n").encode()))
    res = read_file(p, ReadOptions(source="s"), workers=1)
    assert len(res.dataset) == 1
    assert [(r.line, r.code) for r in res.rejects] == [(2, "malformed_json")]


def test_corrupt_gzip_is_a_clear_input_error(tmp_path: Path) -> None:
    p = tmp_path / "t.jsonl.gz"
    p.write_bytes(gzip.compress(b'{"prompt": "p", "completion": "c"}\n' * 100)[:40])
    with pytest.raises(InputError, match=r"t\.jsonl\.gz"):
        read_file(p, ReadOptions(source="s"), workers=1)


def _arrow_stream(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.Table.from_pylist(rows)
    with pa.OSFile(str(path), "wb") as sink, pa.ipc.new_stream(sink, table.schema) as w:
        w.write_table(table)


def test_hf_dataset_dict_directory(tmp_path: Path) -> None:
    """A ``DatasetDict.save_to_disk`` directory holds only ``dataset_dict.json`` at the top."""
    d = tmp_path / "dd"
    rows = [{"prompt": f"p{i}", "completion": f"c{i}"} for i in range(3)]
    for split in ("train", "test"):
        _arrow_stream(d / split / "data-00000-of-00001.arrow", rows)
        (d / split / "state.json").write_text("{}")
    (d / "dataset_dict.json").write_text(json.dumps({"splits": ["train", "test"]}))
    res = read_file(d, ReadOptions(source="s"), workers=1)
    assert len(res.dataset) == 3 and res.formats == {"prompt_completion": 3}


def test_hf_datasets_save_to_disk(tmp_path: Path) -> None:
    datasets = pytest.importorskip("datasets")
    msgs = _conversations()
    datasets.Dataset.from_list([{"messages": r["messages"]} for r in msgs]).save_to_disk(
        str(tmp_path / "ds")
    )
    # Arrow gives every turn every key (None where absent): read back as the original turns
    assert _read(tmp_path / "ds") == [r["messages"] for r in msgs]


def test_content_parts_with_value_key(tmp_path: Path) -> None:
    """LLaMA-Factory's v1 chat files put content parts as ``{"type": "text", "value": …}``."""
    rec = {
        "messages": [
            {"role": "user", "content": [{"type": "text", "value": "hi"}]},
            {"role": "assistant", "content": [{"type": "text", "value": "hello"}]},
        ]
    }
    (got,) = _read(write_jsonl(tmp_path / "v1.jsonl", [rec]))
    assert [m["content"] for m in got] == ["hi", "hello"]


def test_unknown_extension_names_the_container_setting(tmp_path: Path) -> None:
    p = tmp_path / "data.txt"
    p.write_text('{"prompt": "p", "completion": "c"}\n')
    with pytest.raises(InputError, match="set 'container'"):
        read_file(p, ReadOptions(source="s"))
    (tmp_path / "ftprep.yaml").write_text(
        "name: t\nsources:\n  - name: a\n    path: data.txt\n    container: jsonl\n"
    )
    r = CliRunner().invoke(main, ["audit", "-q", "-p", str(tmp_path), "--check", "format"])
    assert r.exit_code == 0, r.output


def test_mostly_rejected_source_fails_the_audit(tmp_path: Path) -> None:
    """A source in a shape ftprep does not recognise must not pass CI with an empty dataset."""
    recs: list = [{"q": f"question {i}", "a": "answer"} for i in range(8)]
    recs.append({"prompt": "p", "completion": "c"})
    project = make_project(tmp_path, recs, fields="{}")
    r = CliRunner().invoke(main, ["audit", "-q", "-p", str(project), "--check", "format"])
    assert r.exit_code == 1
    res = ftprep.build(project)
    assert res.counts["train"] + res.counts["validation"] + res.counts["test"] == 1
    assert res.manifest["accounting"]["rejected"] == 8


def test_pretty_printed_object_holding_the_records(tmp_path: Path) -> None:
    """``{"version": …, "data": [records]}`` over many lines is a JSON document, not JSONL
    (every line used to be rejected as malformed), and each record keeps its own line."""
    p = tmp_path / "wrapped.json"
    recs = [{"prompt": f"p{i}", "completion": "c"} for i in range(3)] + [[1]]
    p.write_text(json.dumps({"version": "1", "tags": "x", "data": recs}, indent=2))
    res = read_file(p, ReadOptions(source="s"), workers=1)
    assert res.dataset.table.column("line").to_pylist() == [5, 9, 13]
    assert [(r.line, r.code) for r in res.rejects] == [(17, "not_an_object")]
    one_line = tmp_path / "records.json"  # objects complete on their lines: JSONL
    one_line.write_text("".join(json.dumps(r) + "\n" for r in recs[:3]))
    assert len(read_file(one_line, ReadOptions(source="s"), workers=1).dataset) == 3


def test_fast_path_keeps_date_like_fields_as_written(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """DuckDB typed ISO timestamps and printed them back as "2024-01-01 10:00:00+00": large
    files (fast path) and small ones (slow path) gave different ``collected_at``."""
    import ftprep.formats.fastpath as fp
    from ftprep.formats.records import FieldMap

    recs = [
        {
            "created_at": f"2024-01-{i + 1:02d}T10:00:00Z",
            "day": f"2024-02-{i + 1:02d}",
            "messages": [
                {"role": "user", "content": f"2024-03-{i + 1:02d}"},
                {"role": "assistant", "content": f"answer {i}"},
            ],
        }
        for i in range(20)
    ]
    p = write_jsonl(tmp_path / "t.jsonl", recs)
    opts = ReadOptions(source="s", fields=FieldMap(collected_at="created_at", meta=("day",)))
    monkeypatch.setattr(fp, "FAST_MIN_BYTES", 0)
    fast = fp.read_fast(p, opts)
    assert fast is not None
    table = fast[0]
    assert table.column("collected_at").to_pylist() == [r["created_at"] for r in recs]
    assert [json.loads(m) for m in table.column("meta").to_pylist()] == [
        {"day": r["day"]} for r in recs
    ]
    assert table.column("prompt").to_pylist() == [r["messages"][0]["content"] for r in recs]


def test_object_with_several_arrays(tmp_path: Path) -> None:
    recs = [{"prompt": f"p{i}", "completion": "c"} for i in range(2)]
    p = tmp_path / "tagged.json"
    p.write_text(json.dumps({"tags": ["a", "b"], "data": recs}, indent=2))
    res = read_file(p, ReadOptions(source="s"), workers=1)
    assert res.dataset.table.column("line").to_pylist() == [7, 11]  # the records, not the tags
    both = tmp_path / "splits.json"
    both.write_text(json.dumps({"train": recs, "test": recs}, indent=2))
    with pytest.raises(InputError, match="several arrays"):  # never read one, drop the other
        read_file(both, ReadOptions(source="s"), workers=1)


def test_turns_stored_as_arrow_json(tmp_path: Path) -> None:
    """``datasets`` stores turns whose keys differ (tool calls on some) as
    ``list<arrow.json>``: every turn came back as a string and every record was rejected."""
    if not hasattr(pa, "json_"):
        pytest.skip("pyarrow without the arrow.json extension type")
    import pyarrow.parquet as pq

    recs = _conversations()
    turns = [[json.dumps(m) for m in r["messages"]] for r in recs]
    storage = pa.array(turns, pa.list_(pa.string()))
    column = pa.ListArray.from_arrays(
        storage.offsets, pa.ExtensionArray.from_storage(pa.json_(), storage.values)
    )
    table = pa.table({"messages": column})
    pq.write_table(table, tmp_path / "t.parquet")
    assert _read(tmp_path / "t.parquet") == [r["messages"] for r in recs]
    bad = pa.table({"messages": pa.ExtensionArray.from_storage(pa.json_(), pa.array(["[", "[]"]))})
    pq.write_table(bad, tmp_path / "bad.parquet")
    res = read_file(tmp_path / "bad.parquet", ReadOptions(source="s"))
    assert [(r.line, r.code) for r in res.rejects] == [(1, "malformed_json"), (2, "empty_messages")]


def test_hf_load_dataset_of_a_build_reads_back(
    built: tuple[Path, dict[str, list[dict]]],
) -> None:
    datasets = pytest.importorskip("datasets")
    project, originals = built
    res = ftprep.build(project, out=project / "out" / "for_hf", fmt="openai")
    ds = datasets.load_dataset(
        "json",
        data_files=str(res.out_dir / "train.jsonl"),
        split="train",
        cache_dir=str(project / "hf_cache"),
    )
    ds.save_to_disk(str(project / "hf_saved"))
    want = [originals[i] for i in res.manifest["splits"]["train"]["ids"]]
    assert _read(project / "hf_saved") == want


@pytest.mark.parametrize(
    ("fmt", "missing"),
    [("openai", "'messages'"), ("alpaca", "'instruction'"), ("text", "fields.input")],
)
def test_forced_format_that_does_not_fit_is_a_reject(
    tmp_path: Path, fmt: str, missing: str
) -> None:
    """``format: text`` on records without an input field crashed the whole ingest
    (StopIteration); a forced format's missing key is named in the reject."""
    p = write_jsonl(tmp_path / "t.jsonl", [{"conversations": [], "body": "x"}])
    res = read_file(p, ReadOptions(source="s", record_format=fmt), workers=1)
    (rej,) = res.rejects
    assert rej.code == "unknown_format" and missing in rej.reason and rej.line == 1


def test_loss_of_single_exchanges_and_unanswered_inputs() -> None:
    from ftprep.formats.writers import loss, to_record

    def check(msgs: list[dict], fmt: str) -> list[str]:
        return loss(msgs, to_record({"id": "x", "messages": json.dumps(msgs)}, fmt), fmt)

    sys_q_a = [
        {"role": "system", "content": "s"},
        {"role": "user", "content": "q"},
        {"role": "assistant", "content": "a"},
    ]
    assert check(sys_q_a, "alpaca") == check(sys_q_a, "sharegpt") == []
    assert check(sys_q_a, "prompt_completion") == ["system prompt dropped"]
    unanswered = [{"role": "user", "content": "a production input"}]  # eval_from: production
    for fmt in ("alpaca", "prompt_completion", "sharegpt"):
        assert check(unanswered, fmt) == []
    func = [{"role": "user", "content": "q"}, {"role": "function", "content": "r"}, *sys_q_a[2:]]
    assert check(func, "sharegpt") == ["roles renamed (function->tool)"]


def test_utf16_file_is_one_clear_error(tmp_path: Path) -> None:
    p = tmp_path / "notepad.jsonl"
    p.write_bytes('{"prompt": "p", "completion": "c"}\n'.encode("utf-16"))
    with pytest.raises(InputError, match="UTF-16"):
        read_file(p, ReadOptions(source="s"), workers=1)
