"""The README's first command runs the bundled example project: it must audit without a check
erroring, find the problems it plants, and build."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

import ftprep

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "support-bot"


@pytest.fixture(scope="module")
def example(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("example") / "support-bot"
    shutil.copytree(EXAMPLE, root, ignore=shutil.ignore_patterns("out", ".ftprep", "__pycache__"))
    anchor = EXAMPLE / ".ftprep" / "spec_anchor.json"
    if anchor.exists():  # the spec history's workspace anchor travels with the project
        (root / ".ftprep").mkdir(exist_ok=True)
        shutil.copyfile(anchor, root / ".ftprep" / "spec_anchor.json")
    return root


def test_example_audit_and_build(example: Path) -> None:
    res = ftprep.audit(example)
    status = {r.check: str(r.status) for r in res.results}
    assert "ERROR" not in status.values(), {r.check: r.error for r in res.results if r.error}
    # every input the example declares is used; only the learning curve needs `ftprep curve`
    assert {c for c, s in status.items() if s == "NOT_RUN"} <= {"volume.curve"}, status
    assert res.exit_code == 1  # the example plants problems on purpose
    planted_fail = {
        "contamination.benchmarks",  # benchmark items leaked into training
        "distribution.coverage",  # warranty claims never covered
        "spec.quarantine",  # data from the superseded refund rule
        "forgetting.capabilities",  # refusals uncovered, no replay data for them
    }
    assert {c for c in planted_fail if status[c] == "FAIL"} == planted_fail, status
    assert (example / "out" / "audit" / "report.html").stat().st_size > 10_000

    b = ftprep.build(example)
    m = b.manifest
    acc = m["accounting"]
    assert acc["in_splits"] + acc["excluded"] + acc["rejected"] == acc["records"]
    assert m["replay"] is not None and m["replay"]["ids"]
    assert b.counts["validation"] > 0 and b.counts["test"] > 0
