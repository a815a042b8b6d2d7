"""The command line as a new user meets it: docs/cli.md and ``--help`` agree, bad usage and bad
input give one clear line and the documented exit code, and nothing is silently dropped."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from ftprep.cli import main
from util import chat, make_project, write_jsonl

DOC = Path(__file__).resolve().parents[1] / "docs" / "cli.md"


def _long_opts(cmd: click.Command) -> set[str]:
    return {
        o
        for p in cmd.params
        if isinstance(p, click.Option)
        for o in (*p.opts, *p.secondary_opts)
        if o.startswith("--") and o != "--help"
    }


def _doc_sections() -> dict[str, str]:
    """``{"audit": body, "spec lock": row, …}`` from docs/cli.md."""
    text = DOC.read_text(encoding="utf-8")
    out: dict[str, str] = {}
    for block in re.split(r"^## ", text, flags=re.M)[1:]:
        head, _, body = block.partition("\n")
        m = re.match(r"`ftprep (\w[\w-]*)", head)
        if not m:
            continue
        if m.group(1) in ("spec", "review"):
            for line in body.splitlines():
                cells = re.split(r"(?<!\\)\|", line)  # table cells; "\|" is a literal bar
                m2 = re.match(r" `ftprep (\w+ [\w-]+)", cells[1]) if len(cells) > 2 else None
                if m2:
                    out[m2.group(1)] = cells[1]
        else:
            out[m.group(1)] = body
    return out


def test_docs_and_help_agree() -> None:
    docs = _doc_sections()
    commands: dict[str, click.Command] = {}
    for name, cmd in main.commands.items():
        if isinstance(cmd, click.Group):
            commands.update({f"{name} {sub}": c for sub, c in cmd.commands.items()})
        else:
            commands[name] = cmd
    assert set(docs) == set(commands), "every command documented, every documented one exists"
    group_wide = {"spec": {"--project", "--json"}, "review": {"--project", "--database-url"}}
    for name, cmd in commands.items():
        have = _long_opts(cmd)
        documented = set(re.findall(r"--[a-z][a-z-]+", docs[name]))
        implied = group_wide.get(name.split()[0], set()) if name != "review demo" else set()
        assert implied <= have, (name, implied - have)
        assert documented <= have, f"{name}: documented but not accepted: {documented - have}"
        assert have <= documented | implied, (
            f"{name}: accepted but undocumented: {have - documented}"
        )


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path / "p", [chat(i) for i in range(12)])


def _run(*args: str) -> tuple[int, str]:
    r = CliRunner().invoke(main, list(args))
    assert "Traceback" not in r.output, r.output
    assert r.exception is None or isinstance(r.exception, SystemExit), repr(r.exception)
    return r.exit_code, r.output


def test_unknown_check_is_bad_usage(project: Path) -> None:
    code, out = _run("audit", "-q", "-p", str(project), "--check", "fromat")
    assert code == 2 and "fromat" in out and "ftprep checks" in out
    assert _run("audit", "-q", "-p", str(project), "--check", "format")[0] == 0


def test_paths_and_databases_that_do_not_work_exit_2(project: Path, tmp_path: Path) -> None:
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    code, out = _run("init", str(a_file))
    assert code == 2 and "a_file" in out
    assert _run("audit", "-q", "-p", str(project), "--check", "format.rejects")[0] == 0
    code, out = _run("build", "-q", "-p", str(project), "--out", str(a_file))
    assert code == 2 and "a_file" in out
    yaml = (project / "ftprep.yaml").read_text()
    (project / "ftprep.yaml").write_text(yaml + "workspace: {database_url: 'nosuch://x'}\n")
    code, out = _run("audit", "-q", "-p", str(project))
    assert code == 2 and "database URL" in out


def test_console_markup_in_paths_and_messages(tmp_path: Path) -> None:
    """A path or message with ``[/x]`` in it is printed as text, not read as console markup."""
    odd = tmp_path / "[/x]" / "p"
    code, out = _run("init", str(odd))
    assert code == 0 and "[/x]" in out
    code, out = _run("audit", "-p", str(tmp_path / "[/x]" / "nothing"))
    assert code == 2 and "[/x]" in out


def test_every_bad_record_is_reported_with_file_line_and_reason(tmp_path: Path) -> None:
    good = chat(0)
    lines = [
        "\ufeff" + json.dumps(good),  # a BOM on the first line
        "{not json",
        json.dumps({"messages": "hello"}),
        json.dumps({"text_only": 1}),
        json.dumps({"messages": [{"role": "user", "content": "q"}]}),
        json.dumps({"messages": [{"role": "user", "content": "  "}, {"role": "assistant"}]}),
        json.dumps(chat(1)),
        "",  # blank lines are not records
        json.dumps(chat(2)),
        *(json.dumps(chat(i)) for i in range(3, 7)),
    ]
    root = tmp_path / "p"
    data = root / "data" / "train.jsonl"
    data.parent.mkdir(parents=True)
    data.write_bytes(("\r\n".join(lines) + "\r\n").encode("utf-8"))  # CRLF line endings
    (root / "ftprep.yaml").write_text(
        "name: t\nsources:\n  - name: main\n    path: data/train.jsonl\n    fields: {id: id}\n"
    )
    code, _ = _run("audit", "-q", "-p", str(root), "--check", "format")
    assert code == 0
    findings = json.loads((root / "out" / "audit" / "findings.json").read_text())
    rejects = [json.loads(x) for x in (root / "out/audit/rejects.jsonl").read_text().splitlines()]
    assert [(r["line"], r["code"]) for r in rejects] == [
        (2, "malformed_json"),
        (3, "bad_type"),
        (4, "unknown_format"),
        (5, "no_assistant_turn"),
        (6, "empty_content"),
    ]
    assert all(r["file"] == str(data) and r["reason"] for r in rejects)
    assert findings["totals"] == {"records": 12, "examples": 7, "rejects": 5}
    code, out = _run("build", "-p", str(root), "--json")
    acc = json.loads(out)["accounting"]
    assert acc["records"] == acc["in_splits"] + acc["excluded"] + acc["rejected"] == 12


def test_a_source_that_parses_to_nothing_fails(tmp_path: Path) -> None:
    root = tmp_path / "p"
    write_jsonl(root / "data" / "train.jsonl", ["{oops", "[1, 2]"])
    (root / "ftprep.yaml").write_text(
        "name: t\nsources:\n  - name: main\n    path: data/train.jsonl\n"
    )
    code, _ = _run("audit", "-q", "-p", str(root), "--check", "format")
    assert code == 1
    code, out = _run("build", "-p", str(root))
    assert code == 0 and "training split is empty" in out
    code, out = _run("build", "-p", str(root), "--json")
    assert any("training split is empty" in w for w in json.loads(out)["warnings"])


def test_ctrl_c_anywhere_exits_130_not_1(project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """click turns Ctrl-C into "Aborted!" and exit 1, which CI reads as a failed gate."""
    import ftprep.api

    def interrupted(*a: object, **k: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(ftprep.api, "audit", interrupted)
    code, out = _run("audit", "-q", "-p", str(project))
    assert code == 130 and "interrupted" in out


def test_report_is_self_contained(project: Path) -> None:
    assert _run("audit", "-q", "-p", str(project))[0] in (0, 1)
    html = (project / "out" / "audit" / "report.html").read_text(encoding="utf-8")
    urls = set(re.findall(r"(?:https?:)?//[\w.-]+\.[a-z]{2,}[^\s\"'<>)]*", html))
    assert urls <= {"http://www.w3.org/2000/svg"}, urls
    for tag in ("<script", "<link", "<iframe", "<img", "@import", "url("):
        assert tag not in html.lower(), tag
    assert "<svg" in html


def test_totals_count_training_records_only(tmp_path: Path) -> None:
    """findings.json ``totals`` is about the training data (docs/schema.md): a production
    sample's rejects are listed, but not added to the training records' arithmetic."""
    root = make_project(tmp_path / "p", [chat(i) for i in range(6)] + ["{bad"])
    write_jsonl(root / "data" / "prod.jsonl", ["{bad", "{bad", *(chat(i) for i in range(9))])
    with open(root / "ftprep.yaml", "a") as fh:
        fh.write("production:\n  path: data/prod.jsonl\n")
    assert _run("audit", "-q", "-p", str(root), "--check", "format.rejects")[0] == 0
    f = json.loads((root / "out" / "audit" / "findings.json").read_text())
    assert f["totals"] == {"records": 7, "examples": 6, "rejects": 1}
    assert sorted(r["source"] for r in f["rejects"]) == ["main", "production", "production"]
    (check,) = f["checks"]
    assert check["values"]["reject_rate"] == pytest.approx(1 / 7)
    # the summary says so: the production sample's rejects are not silent
    _, out = _run("audit", "-p", str(root), "--check", "format.rejects")
    assert "7 records → 6 examples, 1 rejected" in out
    assert "production (production): 11 records → 9 used, 2 rejected" in " ".join(out.split())
