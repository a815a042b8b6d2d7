"""End to end: audit -> ledger -> build -> manifest, exit codes, escaping, determinism."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

import ftprep
from ftprep.checks.base import Action
from ftprep.cli import main
from util import chat, make_project


def _records() -> list:
    recs: list = [chat(i, extra_conv=None) for i in range(60)]
    for r in recs:
        r.pop("extra_conv")
        r["conv"] = f"c{int(r['id'][2:]) // 3}"
    recs.append(
        chat(100, user="<script>alert('xss')</script> what?", answer="<img src=x onerror=alert(1)>")
    )
    recs.append(dict(chat(101), messages=chat(0)["messages"]))  # exact duplicate of ex0
    recs.append("{broken json")
    recs.append({"id": "ex102", "messages": [{"role": "user", "content": "only a question"}]})
    return recs


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    return make_project(tmp_path, _records(), fields="{id: id, group: conv}")


def test_audit_then_build_accounts_for_every_record(project: Path) -> None:
    res = ftprep.audit(project)
    assert res.exit_code == 0
    f = json.loads((project / "out/audit/findings.json").read_text())
    assert f["schema_version"] == "1.0" and f["totals"] == {
        "records": 64,
        "examples": 62,
        "rejects": 2,
    }
    assert {r["line"] for r in f["rejects"]} == {63, 64}
    checks = {c["check"]: c for c in f["checks"]}
    assert checks["format.exact_duplicates"]["values"]["duplicates"] == 1

    b = ftprep.build(project)
    m = b.manifest
    split_ids = [i for s in m["splits"].values() for i in s["ids"]]
    excluded = [e["id"] for e in m["excluded"]]
    assert len(split_ids) == len(set(split_ids))
    assert set(split_ids).isdisjoint(excluded)
    assert len(split_ids) + len(excluded) + len(m["rejected"]) == 64 == m["accounting"]["records"]
    assert excluded == ["ex101"]
    assert m["excluded"][0]["reasons"][0]["reason"] == "exact_duplicate"
    # groups never straddle splits
    where = {i: s for s, v in m["splits"].items() for i in v["ids"]}
    for g in range(20):
        members = [f"ex{3 * g + k}" for k in range(3) if f"ex{3 * g + k}" in where]
        assert len({where[x] for x in members}) <= 1
    # written files match the manifest
    lines = (b.out_dir / "train.jsonl").read_text().splitlines()
    assert len(lines) == m["splits"]["train"]["count"]
    assert all("messages" in json.loads(x) for x in lines)


def test_build_is_byte_identical_and_atomic(project: Path, tmp_path: Path) -> None:
    ftprep.audit(project)
    a = ftprep.build(project, out=tmp_path / "a")
    b = ftprep.build(project, out=tmp_path / "b")
    for name in ("train.jsonl", "validation.jsonl", "test.jsonl", "manifest.json"):
        assert (a.out_dir / name).read_bytes() == (b.out_dir / name).read_bytes()
    assert not list((tmp_path / "a").glob(".*.tmp"))


def test_reviewer_decisions_change_the_build(project: Path) -> None:
    res = ftprep.audit(project)
    from ftprep.api import open_workspace

    _, ledger = open_workspace(res.project)
    ledger.decide("ex5", "manual", Action.EXCLUDE, "alice", reason="wrong_answer")
    ledger.decide(
        "ex101", "format.exact_duplicates", Action.INCLUDE, "bob", reason="not_a_duplicate"
    )
    m = ftprep.build(project).manifest
    excluded = {e["id"]: e for e in m["excluded"]}
    assert "ex5" in excluded and excluded["ex5"]["reasons"][0]["by"] == "alice"
    assert "ex101" not in excluded
    # a new audit keeps the human decision
    ftprep.audit(project)
    assert ledger.get("ex101", "format.exact_duplicates").actor == "bob"


def test_build_refuses_after_inputs_change(project: Path) -> None:
    ftprep.audit(project)
    with open(project / "data/train.jsonl", "a") as fh:
        fh.write(json.dumps(chat(500)) + "\n")
    with pytest.raises(ftprep.ProjectError, match="run `ftprep audit` again"):
        ftprep.build(project)


def test_report_escapes_dataset_text(project: Path) -> None:
    ftprep.audit(project)
    html = (project / "out/audit/report.html").read_text()
    assert "<script" not in html and "<img" not in html
    assert "<svg" in html  # plots are inline
    assert "http://" not in html.replace("http://www.w3.org/2000/svg", "")


def test_bar_labels_fit_the_plot() -> None:
    """Bar labels slope down to the left; the plot grows so the longest is not cut off."""
    import re

    from ftprep.report import svg

    short = svg.bars(["a", "b"], [1, 2])
    long = svg.bars(["malformed_json", "no_assistant_turn", "x" * 40], [1, 2, 3], xlabel="reason")
    height = [int(re.search(r'viewBox="0 0 \d+ (\d+)"', out).group(1)) for out in (short, long)]
    assert height[0] == svg.H and height[1] >= svg.H - svg.PAD_B + 14 + 3.2 * 20 + 6 + 14
    ticks = re.findall(r'class="tick" transform="[^"]+">([^<]*)</text>', long)
    assert ticks == ["malformed_json", "no_assistant_turn", "x" * 20]  # cut at 20 characters


def test_cli_exit_codes(project: Path, tmp_path: Path) -> None:
    r = CliRunner()
    ok = r.invoke(main, ["audit", "-p", str(project), "-q"])
    assert ok.exit_code == 0, ok.output
    strict = r.invoke(main, ["audit", "-p", str(project), "-q", "--strict"])
    assert strict.exit_code == 1
    warn = r.invoke(main, ["audit", "-p", str(project), "-q", "--fail-on", "warn"])
    assert warn.exit_code == 1
    js = r.invoke(main, ["audit", "-p", str(project), "--json"])
    assert js.exit_code == 0 and json.loads(js.stdout)["status"] in ("PASS", "WARN")
    missing = r.invoke(main, ["audit", "-p", str(tmp_path / "nowhere")])
    assert missing.exit_code == 2 and "no project file" in missing.output
    (project / "data/train.jsonl").unlink()
    gone = r.invoke(main, ["audit", "-p", str(project)])
    assert gone.exit_code == 2 and "no such file" in gone.output and "Traceback" not in gone.output


def test_gate_override_fails_the_audit(tmp_path: Path) -> None:
    recs = [chat(i) for i in range(30)] + [chat(99, answer="word " * 3000)]
    proj = make_project(
        tmp_path,
        recs,
        extra_yaml="context_limit: 512\ngates:\n  format.tokens:\n    over_limit: {fail: 0}\n",
    )
    res = ftprep.audit(proj)
    tok = next(r for r in res.results if r.check == "format.tokens")
    assert str(tok.status) == "FAIL" and res.exit_code == 1
    assert [d.example_id for d in tok.decisions] == ["ex99"]


def test_checks_are_documented() -> None:
    from ftprep.checks import registry
    from ftprep.checks.base import FAILURE_MODES

    checks = registry.load_all()
    assert {"format.tokens", "format.rejects", "format.exact_duplicates"} <= set(checks)
    docs = (Path(__file__).resolve().parents[1] / "docs").rglob("*.md")
    text = "\n".join(p.read_text() for p in docs)
    for name, cls in checks.items():
        assert cls.failure_mode in FAILURE_MODES
        assert len(cls.description) > 40
        assert name in text, f"check {name} is not documented in docs/"
    r = CliRunner().invoke(main, ["checks"])
    assert r.exit_code == 0 and "format.tokens" in r.output


def test_registry_rejects_duplicates() -> None:
    from ftprep.checks.base import Check
    from ftprep.checks.registry import register

    class Dup(Check):
        name = "format.tokens"
        failure_mode = "format"
        description = "duplicate name"

    with pytest.raises(ValueError, match="registered twice"):
        register(Dup)


def test_failing_check_becomes_error_not_crash(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from ftprep.checks import format as fmt

    def boom(self, ctx):
        raise RuntimeError("kaboom")

    monkeypatch.setattr(fmt.Structure, "run", boom)
    res = ftprep.audit(project)
    st = next(r for r in res.results if r.check == "format.structure")
    assert str(st.status) == "ERROR" and "kaboom" in st.summary
    assert res.exit_code == 1


def test_outputs_match_their_json_schemas(project: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    docs = Path(__file__).resolve().parents[1] / "docs" / "schema"
    ftprep.audit(project)
    b = ftprep.build(project)
    findings = json.loads((project / "out/audit/findings.json").read_text())
    jsonschema.validate(findings, json.loads((docs / "findings.schema.json").read_text()))
    jsonschema.validate(b.manifest, json.loads((docs / "manifest.schema.json").read_text()))


def test_audit_outputs_are_published_as_one_set(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A crash while the report is written leaves the previous audit's files untouched (no
    new findings.json next to an old report) and no temporary files."""
    ftprep.audit(project)
    out = project / "out" / "audit"
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert {"findings.json", "report.html", "rejects.jsonl"} <= set(before)

    def boom(res: object) -> str:
        raise RuntimeError("renderer crashed")

    monkeypatch.setattr("ftprep.report.html.render_html", boom)
    with pytest.raises(RuntimeError, match="renderer crashed"):
        ftprep.audit(project)
    after = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}
    assert after == before
    assert not list(out.rglob("*.tmp"))


def test_validation_and_test_from_the_production_holdout(tmp_path: Path) -> None:
    """``split.eval_from: production``: validation and test are the ``production.holdout`` share
    of the production sample (inputs only), and a project that asks for it without a holdout
    share is refused when it is loaded."""
    from ftprep.project import ProjectError
    from util import write_jsonl

    prod = [{"qid": f"q{i}", "text": f"where is parcel {i} now"} for i in range(200)]
    write_jsonl(tmp_path / "data" / "prod.jsonl", prod)
    extra = (
        "production:\n  path: data/prod.jsonl\n  fields: {id: qid, input: text}\n"
        "  sample: 120\n  holdout: 0.25\n"
        "split: {eval_from: production, validation: 0.1, test: 0.1}\n"
    )
    project = make_project(tmp_path, _records(), extra_yaml=extra, fields="{id: id, group: conv}")
    ftprep.audit(project)
    counts = ftprep.build(project).counts
    assert counts["validation"] + counts["test"] == 30  # a quarter of the 120 sampled
    assert abs(counts["validation"] - counts["test"]) <= 1  # validation : test = 0.1 : 0.1
    val = [json.loads(x) for x in (project / "out/build/validation.jsonl").read_text().splitlines()]
    assert all(r["messages"][-1]["role"] == "user" for r in val)  # production inputs only
    assert all("where is parcel" in r["messages"][-1]["content"] for r in val)
    (project / "ftprep.yaml").write_text(
        (project / "ftprep.yaml").read_text().replace("  holdout: 0.25\n", ""), encoding="utf-8"
    )
    with pytest.raises(ProjectError, match=r"production\.holdout: split\.eval_from"):
        ftprep.build(project)


def test_build_resamples_the_training_mix_toward_production(tmp_path: Path) -> None:
    """``build.resample: production``: the training file keeps its size but its mix follows
    production's (a topic at 9 % of training and half of production comes out near half), the
    manifest gives every example's number of copies that is not 1, and it validates."""
    import random

    from util import write_jsonl

    rng = random.Random(0)
    words = {
        "refund": ["refund", "money back", "return"],
        "login": ["password", "log in", "locked"],
    }

    def ask(topic: str, i: int) -> str:
        return f"{rng.choice(['hi', 'hello', 'please'])} {rng.choice(words[topic])} {i}"

    topic = {f"ex{i}": "refund" if i < 300 else "login" for i in range(330)}
    recs = [chat(i, user=ask(topic[f"ex{i}"], i), answer=topic[f"ex{i}"]) for i in range(330)]
    prod = [{"qid": f"q{i}", "text": ask(("refund", "login")[i % 2], 1000 + i)} for i in range(400)]
    write_jsonl(tmp_path / "data" / "prod.jsonl", prod)
    extra = (
        "production:\n  path: data/prod.jsonl\n  fields: {id: qid, input: text}\n"
        "build: {resample: production}\n"
    )
    project = make_project(tmp_path, recs, extra_yaml=extra)
    ftprep.audit(project)
    res = ftprep.build(project)
    train = res.manifest["splits"]["train"]
    share = sum(topic[i] == "login" for i in train["ids"]) / train["count"]
    assert 0.35 < share < 0.65  # 30 of 330 before
    r = res.manifest["resampling"]
    assert r["from"] == "production" and r["examples"] == train["count"]
    assert r["dropped"] > 0 and r["repeated"] > 0 and 0 < r["ess_fraction"] < 1
    copies = {i: train["ids"].count(i) for i in set(train["ids"])}
    assert all(copies.get(i, 0) == c for i, c in r["copies"].items())
    assert all(r["copies"].get(i, 1) == c for i, c in copies.items())
    jsonschema = pytest.importorskip("jsonschema")
    docs = Path(__file__).resolve().parents[1] / "docs" / "schema"
    jsonschema.validate(res.manifest, json.loads((docs / "manifest.schema.json").read_text()))
    # the option overrides the configuration: off from the CLI, on from the API
    cli = CliRunner().invoke(main, ["build", "-p", str(project), "--resample", "none", "--json"])
    assert cli.exit_code == 0 and json.loads(cli.stdout)["resampling"] is None
    cfg = project / "ftprep.yaml"
    cfg.write_text(cfg.read_text().replace("build: {resample: production}\n", ""))
    again = ftprep.build(project, resample="production").manifest
    assert again["resampling"] == r and again["splits"]["train"]["ids"] == train["ids"]
    # without the weights of an audit (the check not run) the build refuses
    (project / ".ftprep" / "importance_weights.json").unlink()
    from ftprep.build import StaleAuditError

    with pytest.raises(StaleAuditError, match="importance weights"):
        ftprep.build(project, resample="production")


def test_reviewer_decisions_on_ids_no_longer_read_are_reported(project: Path) -> None:
    """A reviewer's decision whose example is gone (the record removed, or its id changed) cannot
    be applied: the audit lists it in findings.json and the CLI summary warns."""
    from ftprep.api import open_workspace

    res = ftprep.audit(project)
    assert res.findings["decisions"]["orphaned_human"] == []
    _, ledger = open_workspace(res.project)
    ledger.decide("ex5", "manual", Action.EXCLUDE, "alice", reason="wrong_answer")
    ledger.decide("main:0123456789abcdef", "manual", Action.EXCLUDE, "alice", reason="x")
    again = ftprep.audit(project)
    assert again.findings["decisions"]["orphaned_human"] == ["main:0123456789abcdef"]
    out = CliRunner().invoke(main, ["audit", "-p", str(project)])
    assert "1 reviewer decision(s) match no example in the data" in out.output
    assert "main:0123456789abcdef" in out.output
