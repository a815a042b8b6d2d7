from __future__ import annotations

from pathlib import Path

import pytest

from ftprep.project import ProjectError, load_project


def test_errors_name_key_path_and_line(tmp_path: Path) -> None:
    (tmp_path / "ftprep.yaml").write_text(
        "name: x\n"
        "sources:\n"
        "  - name: a\n"
        "    path: a.jsonl\n"
        "    format: chatml\n"
        "split:\n"
        "  validation: 2\n"
        "  colour: blue\n"
    )
    with pytest.raises(ProjectError) as e:
        load_project(tmp_path)
    msg = str(e.value)
    assert "ftprep.yaml:5: sources[0].format: expected one of" in msg and "'chatml'" in msg
    assert "ftprep.yaml:7: split.validation: expected a fraction" in msg
    assert "ftprep.yaml:8: split.colour: unknown key" in msg


def test_missing_required_and_bad_yaml(tmp_path: Path) -> None:
    (tmp_path / "ftprep.yaml").write_text("name: x\n")
    with pytest.raises(ProjectError, match="sources: Field required"):
        load_project(tmp_path)
    (tmp_path / "ftprep.yaml").write_text("name: x\nsources: [\n")
    with pytest.raises(ProjectError, match=r"ftprep.yaml:\d+: invalid YAML"):
        load_project(tmp_path)
    with pytest.raises(ProjectError, match="no project file"):
        load_project(tmp_path / "elsewhere")


def test_a_named_side_file_that_is_missing_is_an_error(tmp_path: Path) -> None:
    """A typo in `rubric:` must not switch the quality check off without a word."""
    (tmp_path / "ftprep.yaml").write_text(
        "name: x\nsources:\n  - {name: a, path: a.jsonl}\nrubric: rubrc.yaml\n"
    )
    with pytest.raises(ProjectError, match=r"ftprep.yaml:4: rubric: .*rubrc.yaml does not exist"):
        load_project(tmp_path)
    (tmp_path / "rubrc.yaml").write_text("criteria: []\n")
    assert load_project(tmp_path).rubric == "rubrc.yaml"


def test_init_template_is_valid(tmp_path: Path) -> None:
    from click.testing import CliRunner

    from ftprep.cli import main

    r = CliRunner().invoke(main, ["init", str(tmp_path / "proj")])
    assert r.exit_code == 0, r.output
    p = load_project(tmp_path / "proj")
    assert p.sources[0].name == "main" and p.split.by == "group"
    for f in ("spec.md", "rubric.yaml", "capabilities.yaml", "objectives.yaml"):
        if (Path(__file__).resolve().parents[1] / "src" / "ftprep" / "templates" / f).exists():
            assert (tmp_path / "proj" / f).exists()


def test_production_sample_reads_that_many_and_reports_the_file(tmp_path: Path) -> None:
    """``production.sample`` keeps that many records through ingest; the source statistics say
    how many the file held; a sample that is not a positive count is an error with its line."""
    import json

    from ftprep.api import ingest

    (tmp_path / "train.jsonl").write_text(
        "".join(json.dumps({"prompt": f"q {i}", "completion": "a"}) + "\n" for i in range(30))
    )
    (tmp_path / "prod.jsonl").write_text(
        "".join(
            json.dumps({"id": f"p{i}", "text": f"where is order {i}"}) + "\n" for i in range(500)
        )
    )
    head = (
        "name: x\nsources:\n  - name: a\n    path: train.jsonl\nproduction:\n  path: prod.jsonl\n"
    )
    (tmp_path / "ftprep.yaml").write_text(
        head + "  fields: {id: id, input: text}\n  sample: 40\n  seed: 3\n"
    )
    ing = ingest(load_project(tmp_path))
    assert ing.production is not None and len(ing.production) == 40
    stat = next(s for s in ing.sources if s.role == "production")
    assert (stat.records, stat.examples) == (500, 40)
    again = ingest(load_project(tmp_path))
    assert again.production is not None and again.production.ids == ing.production.ids
    (tmp_path / "ftprep.yaml").write_text(head + "  sample: 0\n")
    with pytest.raises(ProjectError, match=r"ftprep\.yaml:7: production\.sample"):
        load_project(tmp_path)


def test_eval_from_production_needs_a_production_sample(tmp_path: Path) -> None:
    (tmp_path / "ftprep.yaml").write_text(
        "name: x\nsources:\n  - name: a\n    path: a.jsonl\nsplit:\n  eval_from: production\n"
    )
    with pytest.raises(ProjectError, match=r"ftprep\.yaml:6: split\.eval_from: production needs"):
        load_project(tmp_path)
