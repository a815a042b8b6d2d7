"""Failure mode 3: ``ftprep curve`` (stages, runner, proxy learner, power-law fit, outputs) and
the ``volume.curve`` check."""

from __future__ import annotations

import itertools
import json
import sys
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.util import chat, make_project

import ftprep
from ftprep.checks.base import Status
from ftprep.cli import main
from ftprep.examples import Dataset
from ftprep.volume.fit import FitError, PowerLaw, backtest, fit_curve
from ftprep.volume.runner import (
    CurveError,
    ResultStore,
    read_metric,
    render_command,
)
from ftprep.volume.stages import nested_stages

FR5 = np.array([1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0])


def _law(b: float, c: float, plateau: float, delta: float = 0.005) -> PowerLaw:
    """A curve with a known plateau: a n^-b (1 - 2^-b) = delta at n = plateau."""
    return PowerLaw(delta * plateau**b / (1 - 2**-b), b, c)


# ------------------------------------------------------------------------------ fit
@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    b=st.floats(0.3, 1.2),
    c=st.floats(0.0, 0.4),
    log2_plateau=st.floats(-3, 1),
    big_n=st.sampled_from([1_000, 10_000, 100_000]),
)
def test_fit_recovers_known_curves_exactly_without_noise(
    b: float, c: float, log2_plateau: float, big_n: int
) -> None:
    law = _law(b, c, big_n * 2**log2_plateau)
    n = big_n * FR5
    fit = fit_curve(n, 1 - law.err(n), bootstrap=0)
    assert abs(fit.law.c - c) < 2e-3
    assert fit.law.plateau_n(0.005) == pytest.approx(law.plateau_n(0.005), rel=0.1)
    assert float(fit.predict(big_n)) == pytest.approx(1 - float(law.err(big_n)), abs=1e-4)


@settings(max_examples=40, deadline=None, derandomize=True)
@given(
    b=st.floats(0.3, 1.0),
    c=st.floats(0.02, 0.3),
    log2_plateau=st.floats(-3, 0),
    seed=st.integers(0, 2**31),
)
def test_fit_recovers_asymptote_and_plateau_under_noise(
    b: float, c: float, log2_plateau: float, seed: int
) -> None:
    big_n = 10_000
    plateau = big_n * 2**log2_plateau
    law = _law(b, c, plateau)
    n = np.repeat(big_n * FR5, 3)
    err = law.err(n) + np.random.default_rng(seed).normal(0, 0.001, len(n))
    fit = fit_curve(n, 1 - err, bootstrap=0)
    assert abs(fit.law.c - c) < 0.04
    assert abs(np.log2(fit.law.plateau_n(0.005) / plateau)) < 2.5


def test_fit_lower_is_better_and_target_volume() -> None:
    law = PowerLaw(3.0, 0.5, 0.2)  # e.g. a validation loss
    n = np.array([500, 1000, 2000, 4000, 8000], dtype=float)
    fit = fit_curve(n, law.err(n), higher_is_better=False, bootstrap=0)
    assert fit.law.c == pytest.approx(0.2, abs=1e-3)
    need = fit.law.n_for_err(0.25)
    assert need == pytest.approx((3.0 / 0.05) ** 2, rel=0.02)
    assert fit.law.n_for_err(0.19) is None  # below the asymptote: unreachable


def test_bootstrap_band_covers_the_truth_and_backtest() -> None:
    rng = np.random.default_rng(3)
    law = PowerLaw(2.0, 0.5, 0.1)
    n = np.repeat([625.0, 1250, 2500, 5000, 10000], 3)
    m = 1 - law.err(n) + rng.normal(0, 0.003, len(n))
    fit = fit_curve(n, m, bootstrap=100, seed=1)
    lo, hi = fit.band(np.array([10000.0]))
    assert lo[0] <= 1 - float(law.err(10000.0)) <= hi[0]
    assert lo[0] < hi[0]
    bt = backtest(n, m)
    assert bt is not None and bt["fitted_up_to_n"] == 5000 and bt["abs_error"] < 0.02


def test_fit_needs_three_sizes() -> None:
    with pytest.raises(FitError, match="3 distinct"):
        fit_curve(np.array([10.0, 10, 20]), np.array([0.5, 0.6, 0.7]))


# ------------------------------------------------------------------------------ stages
def _ds(n: int, groups: int | None = None, labels: int = 3) -> Dataset:
    ids = [f"e{i}" for i in range(n)]
    grp = [f"g{i % groups}" if groups else None for i in range(n)]
    return Dataset(
        pa.table({"id": ids, "group": grp, "label": [f"L{i % labels}" for i in range(n)]})
    )


def test_stages_are_nested_whole_units_and_seeded() -> None:
    ds = _ds(400, groups=100)
    links = [["e0", "e1", "e2", "e3", "e5"]]  # a link cluster joins groups g0..g3 and g5
    fr = [0.125, 0.25, 0.5, 1.0]
    stages = nested_stages(ds, "group", links, fr, seed=7)
    assert [s.fraction for s in stages] == fr
    for small, big in itertools.pairwise(stages):
        assert set(small.ids) < set(big.ids)
    assert stages[-1].n == 400
    for s in stages:
        assert abs(s.n - s.fraction * 400) <= 20  # within one unit (the linked unit holds 20)
        groups = {f"g{int(i[1:]) % 100}" for i in s.ids}
        assert len(s.ids) == 4 * len(groups)  # no group is split
        linked = {f"g{k}" for k in (0, 1, 2, 3, 5)}
        assert not (groups & linked) or linked <= groups
    again = nested_stages(ds, "group", links, fr, seed=7)
    assert [s.ids for s in again] == [s.ids for s in stages]
    other = nested_stages(ds, "group", links, fr, seed=8)
    assert other[0].ids != stages[0].ids


def test_stratified_stages_keep_label_proportions() -> None:
    ds = _ds(600, labels=3)
    stages = nested_stages(ds, "group", [], [0.05, 0.5, 1.0], seed=0, stratify="label")
    first = stages[0]
    counts = {f"L{k}": 0 for k in range(3)}
    for i in first.ids:
        counts[f"L{int(i[1:]) % 3}"] += 1
    assert max(counts.values()) - min(counts.values()) <= 1


# ------------------------------------------------------------------------------ runner
def test_result_store_appends_and_survives_a_torn_line(tmp_path: Path) -> None:
    store = ResultStore(tmp_path / "results.jsonl")
    store.append({"key": "a", "metric": 0.5})
    with open(store.path, "ab") as fh:
        fh.write(b'{"key": "b", "met')  # a crash mid-write
    store.append({"key": "c", "metric": 0.7})
    assert set(store.load()) == {"a", "c"}


def test_command_placeholders_are_quoted_and_other_braces_kept() -> None:
    cmd = render_command(
        "train --data {train} --n {n} --cfg '{\"lr\": 1}'",
        {
            "train": "/tmp/a b/x.jsonl",
            "validation": "v",
            "out": "o",
            "n": "10",
            "stage": "s",
            "seed": "0",
        },
    )
    assert "'/tmp/a b/x.jsonl'" in cmd and "--n 10" in cmd and '{"lr": 1}' in cmd


def test_read_metric_from_stdout_or_metrics_file(tmp_path: Path) -> None:
    out = 'log line\n{"eval": {"acc": 0.5}}\nnoise {x}\n{"eval": {"acc": 0.75}, "loss": 1}\n'
    assert read_metric(out, tmp_path, "eval.acc")[0] == 0.75
    (tmp_path / "metrics.json").write_text(json.dumps({"accuracy": 0.6}))
    assert read_metric("no json here", tmp_path, "accuracy")[0] == 0.6
    with pytest.raises(CurveError, match="no JSON object"):
        read_metric("{}", tmp_path / "none", "accuracy")


# ------------------------------------------------------------------------------ end to end
TRAINER = (
    "import json, sys, pathlib\n"
    "train, out, seed = sys.argv[1], pathlib.Path(sys.argv[2]), int(sys.argv[3])\n"
    "n = sum(1 for _ in open(train))\n"
    "out.mkdir(parents=True, exist_ok=True)\n"
    "(out / 'calls').write_text('x')\n"
    "fail = pathlib.Path(sys.argv[4])\n"
    "if fail.exists() and n > int(fail.read_text()):\n"
    "    sys.stderr.write('CUDA out of memory at step 3\\n'); sys.exit(3)\n"
    "print('training...')\n"
    "print(json.dumps({'eval': {'acc': 1 - (0.9 * n ** -0.5 + 0.12) + 0.001 * seed}}))\n"
)


@pytest.fixture()
def cmd_project(tmp_path: Path) -> Path:
    recs = [
        chat(i, user=f"question {i} about topic {i % 7}", group=f"c{i // 2}") for i in range(240)
    ]
    trainer = tmp_path / "trainer.py"
    trainer.write_text(TRAINER)
    extra = (
        "split: {validation: 0.2, test: 0.1}\n"
        "curve:\n"
        f"  command: {sys.executable} {trainer} {{train}} {{out}} {{seed}} {tmp_path / 'fail'}\n"
        "  metric: eval.acc\n"
        "  repeats: 2\n"
        "  bootstrap: 30\n"
        "  target: 0.86\n"
    )
    root = make_project(tmp_path / "p", recs, extra, fields="{id: id, group: group}")
    ftprep.audit(root, only=["volume"])
    return root


def test_curve_with_a_command_resumes_and_reports(cmd_project: Path) -> None:
    root = cmd_project
    res = ftprep.curve(root)
    doc = res.doc
    assert res.ran == 8 and res.reused == 0  # 4 sizes x 2 seeds (the seed reaches the trainer)
    assert len(doc["points"]) == 8
    assert doc["learner"]["kind"] == "command" and not doc["learner"]["proxy"]
    assert doc["schema_version"] == "1.0"
    n_train = doc["n_train"]
    assert {p["n"] for p in doc["points"]} >= {n_train}
    # the trainer's curve: err = 0.9 n^-0.5 + 0.12 -> asymptote 0.88 (seed adds <= 0.001)
    assert doc["asymptote"]["metric"] == pytest.approx(0.88, abs=0.02)
    assert doc["target"]["reachable"]
    need = (0.9 / (1 - 0.86 - 0.12)) ** 2  # ~2025 examples
    assert doc["target"]["n_needed"] == pytest.approx(need, rel=0.35)
    assert doc["verdict"]["code"] == "collect_for_target"
    stage_files = sorted((root / ".ftprep/curve/stages").glob("*/train.jsonl"))
    assert stage_files and json.loads(stage_files[0].read_text().splitlines()[0])["messages"]
    html = (root / "out/curve/curve.html").read_text()
    assert "<svg" in html and "Learning curve" in html
    assert json.loads((root / "out/curve/curve.json").read_text())["n_train"] == n_train
    again = ftprep.curve(root)
    assert again.ran == 0 and again.reused == 8
    jsonschema = pytest.importorskip("jsonschema")
    schema = Path(__file__).resolve().parents[1] / "docs" / "schema" / "curve.schema.json"
    jsonschema.validate(doc, json.loads(schema.read_text()))

    # the audit check reports the curve
    audit = ftprep.audit(root, only=["volume"])
    r = next(r for r in audit.results if r.check == "volume.curve")
    assert r.status == Status.WARN and r.values["target_shortfall"] > 1
    assert r.values["stale"] == 0 and any(s.kind == "lines" for s in r.sections)


def test_failing_command_keeps_finished_stages(cmd_project: Path) -> None:
    (cmd_project.parent / "fail").write_text("30")  # stages above 30 examples crash
    with pytest.raises(CurveError, match="CUDA out of memory") as e:
        ftprep.curve(cmd_project)
    assert "exited with code 3" in str(e.value)
    kept = ResultStore(cmd_project / ".ftprep/curve/results.jsonl").load()
    assert len(kept) == 1  # the first (smallest) stage finished
    r = CliRunner().invoke(main, ["curve", "-p", str(cmd_project), "-q"])
    assert r.exit_code == 2 and "CUDA out of memory" in r.output
    (cmd_project.parent / "fail").unlink()
    res = ftprep.curve(cmd_project)
    assert res.reused == 1 and res.ran == 7


def test_command_timeout(tmp_path: Path) -> None:
    recs = [chat(i) for i in range(60)]
    extra = (
        f"curve:\n  command: {sys.executable} -c 'import time; time.sleep(30)'\n  timeout_s: 0.5\n"
    )
    root = make_project(tmp_path, recs, extra)
    ftprep.audit(root, only=["volume"])
    with pytest.raises(CurveError, match="timeout_s"):
        ftprep.curve(root)


def test_proxy_learner_on_labelled_data_and_unlabelled_needs_a_command(tmp_path: Path) -> None:
    words = ["refund", "password", "delivery", "invoice"]
    rng = np.random.default_rng(0)
    recs = []
    for i in range(400):
        k = i % 4
        noise = " ".join(rng.choice(["please", "help", "now", "my", "the", "order"], 3))
        recs.append(chat(i, user=f"{noise} {words[k]} {noise}", answer=words[k], label=words[k]))
    root = make_project(
        tmp_path / "lab",
        recs,
        "split: {validation: 0.25, test: 0.0, stratify: label}\ncurve: {bootstrap: 20}\n",
        fields="{id: id, label: label}",
    )
    ftprep.audit(root, only=["volume"])
    res = ftprep.curve(root)
    assert res.doc["learner"]["proxy"] and "proxy" in res.doc["note"]
    accs = [p["metric"] for p in res.doc["points"]]
    assert max(accs) > 0.9
    assert set(res.doc["points"][0]["metrics"]) >= {"accuracy", "macro_f1"}

    plain = make_project(tmp_path / "plain", [chat(i) for i in range(50)])
    ftprep.audit(plain, only=["volume"])
    with pytest.raises(CurveError, match=r"curve\.command"):
        ftprep.curve(plain)
    r = CliRunner().invoke(main, ["curve", "-p", str(plain)])
    assert r.exit_code == 2 and "--results" in r.output


def test_results_csv_and_check_not_run_without_a_curve(tmp_path: Path) -> None:
    root = make_project(tmp_path / "p", [chat(i) for i in range(30)])
    res = ftprep.audit(root, only=["volume"])
    r = next(r for r in res.results if r.check == "volume.curve")
    assert r.status == Status.NOT_RUN and "run `ftprep curve`" in r.summary

    law = PowerLaw(1.5, 0.6, 0.05)
    lines = ["n,metric,seed"] + [
        f"{n},{1 - float(law.err(n)):.6f},0" for n in (1000, 2000, 4000, 8000, 16000, 32000)
    ]
    csv_path = tmp_path / "measured.csv"
    csv_path.write_text("\n".join(lines) + "\n")
    r2 = CliRunner().invoke(main, ["curve", "-p", str(root), "--results", str(csv_path), "--json"])
    assert r2.exit_code == 0, r2.output
    doc = json.loads(r2.output)
    assert doc["learner"]["kind"] == "results_file"
    assert doc["asymptote"]["metric"] == pytest.approx(0.95, abs=0.005)
    assert doc["plateau"]["n"] == pytest.approx(law.plateau_n(0.005), rel=0.1)
    assert doc["verdict"]["code"] == "past_plateau"

    bad = tmp_path / "bad.csv"
    bad.write_text("size,acc\n1,0.5\n")
    r3 = CliRunner().invoke(main, ["curve", "-p", str(root), "--results", str(bad)])
    assert r3.exit_code == 2 and "n, metric" in r3.output
    res = ftprep.audit(root, only=["volume"])
    r = next(r for r in res.results if r.check == "volume.curve")
    assert r.status == Status.PASS and r.values["before_plateau"] == 0


def test_curve_html_escapes_untrusted_text(tmp_path: Path) -> None:
    from ftprep.volume.curve import summarise
    from ftprep.volume.report import render_page

    law = PowerLaw(1.0, 0.5, 0.1)
    pts = [
        {"n": n, "metric": 1 - float(law.err(n)), "seed": 0, "stage": "<script>x</script>"}
        for n in (100, 200, 400, 800)
    ]
    doc, _ = summarise(
        pts, n_train=800, higher_is_better=True, target=None, delta=0.005, bootstrap=10
    )
    doc.update(
        project={"name": "<img src=x onerror=alert(1)>"},
        learner={"kind": "command", "metric": "<b>acc</b>"},
        created_at="now",
        ftprep_version="x",
        n_validation=10,
        note="",
    )
    html = render_page(doc)
    assert "<script>x</script>" not in html and "<img src=x" not in html
    assert "&lt;script&gt;" in html
