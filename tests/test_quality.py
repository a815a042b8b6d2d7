"""Quality rubric (issue #4): rubric schema, deterministic scorers, agreement, strata, decisions."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.util import FakeOpenAI, chat_reply

from ftprep.checks.base import Action
from ftprep.examples import Dataset, Example
from ftprep.quality.calibration import RatingRow, agreement, draw_sample, read_ratings
from ftprep.quality.features import SCORERS, TextFrame
from ftprep.quality.rubric import RubricError, load_rubric, parse_rubric
from ftprep.quality.score import overall_score, score_dataset
from ftprep.quality.strata import compare_strata, drift, period_keys

WORDS = [
    "account",
    "billing",
    "invoice",
    "refund",
    "password",
    "settings",
    "device",
    "network",
    "router",
    "cable",
    "order",
    "delivery",
    "warranty",
    "screen",
    "battery",
    "charger",
    "update",
    "version",
    "backup",
    "storage",
    "folder",
    "email",
    "message",
    "payment",
    "card",
    "address",
    "profile",
    "team",
    "manager",
    "report",
    "schedule",
    "meeting",
    "project",
    "customer",
    "support",
    "ticket",
    "issue",
    "reply",
    "request",
    "error",
    "service",
    "server",
    "browser",
    "app",
]
VERBS = [
    "open",
    "check",
    "restart",
    "update",
    "select",
    "confirm",
    "send",
    "review",
    "change",
    "remove",
    "install",
    "contact",
]


def sentence(rng: random.Random) -> str:
    n = rng.randint(5, 12)
    ws = [rng.choice(VERBS)] + [rng.choice(WORDS) for _ in range(n)]
    return " ".join(ws).capitalize() + rng.choice([".", ".", ".", "!"])


def clean_answer(rng: random.Random) -> str:
    return " ".join(sentence(rng) for _ in range(rng.randint(1, 4)))


def dataset(texts: list[str], prompts: list[str] | None = None, **cols: list[str]) -> Dataset:
    ex = []
    for i, t in enumerate(texts):
        p = prompts[i] if prompts else f"Question {i} about {WORDS[i % len(WORDS)]}?"
        ex.append(
            Example(
                id=f"e{i}",
                messages=[{"role": "user", "content": p}, {"role": "assistant", "content": t}],
                source=cols.get("source", ["s"] * len(texts))[i],
                collected_at=cols.get("collected_at", [None] * len(texts))[i],
            )
        )
    return Dataset.from_examples(ex)


# ------------------------------------------------------------------------------ rubric file
def test_template_rubric_is_valid_and_documented() -> None:
    r = load_rubric()
    assert r.threshold == 0.6 and {c.kind for c in r.criteria} >= {"deterministic", "learned"}
    doc = (Path(__file__).resolve().parents[1] / "docs" / "quality.md").read_text(encoding="utf-8")
    for name in SCORERS:
        assert f"`{name}`" in doc, f"scorer {name} is not documented"


@pytest.mark.parametrize(
    ("data", "needle"),
    [
        (
            {"criteria": [{"name": "x", "definition": "d", "scorer": "nope"}]},
            "criteria[0]: unknown scorer",
        ),
        (
            {
                "criteria": [
                    {
                        "name": "x",
                        "definition": "d",
                        "scorer": "length",
                        "scale": [1, 5],
                        "minimum": 7,
                    }
                ]
            },
            "outside the scale",
        ),
        (
            {
                "threshold": 0.9,
                "tiers": {"gold": 0.8},
                "criteria": [{"name": "x", "definition": "d", "scorer": "length"}],
            },
            "tiers.review <= threshold <= tiers.gold",
        ),
        ({"criteria": []}, "at least one criterion"),
        (
            {
                "strata": {"period": "fortnight"},
                "criteria": [{"name": "x", "definition": "d", "scorer": "length"}],
            },
            "strata.period",
        ),
        (
            {"criteria": [{"name": "x", "definition": "d", "scorer": "length", "wieght": 2}]},
            "criteria[0].wieght",
        ),
    ],
)
def test_rubric_errors_name_the_key(data: dict, needle: str) -> None:
    with pytest.raises(RubricError) as e:
        parse_rubric(data, "r.yaml")
    assert needle in str(e.value) and str(e.value).startswith("r.yaml: ")


# ------------------------------------------------------------------------------ scorers
def run(
    scorer: str, texts: list[str], prompts: list[str] | None = None, **params: object
) -> np.ndarray:
    return SCORERS[scorer](TextFrame(texts, prompts), dict(params)).scores


def test_truncation_flags_cut_responses_not_finished_ones() -> None:
    finished = [
        "The capital of France is Paris.",
        "Paris",
        "1. Flour\n2. Sugar\n3. Eggs",
        "def f(x):\n    return x + 1",
        "Roses are red\nViolets are blue",
        "Here is the code:\n```python\nprint(1)\n```",
        "It is sunny today! Enjoy the weather.",
    ]
    cut = [
        "The capital of France is Paris. It is known for the Eiffel Tower and",
        "Open the settings page. Then choose the security tab and reset the pass",
        "Steps:\n1. Open the app.\n2. Tap settings.\n3.",
        "Here is the code:\n```python\nprint(1)\n",
        "The main reasons are the following,",
        "First, restart the router. Second, check the cable. Third, call the",
        "The necessary steps are necessary for the nec",
    ]
    s = run("truncation", finished + cut)
    assert s[: len(finished)].tolist() == [1.0] * len(finished)
    assert s[len(finished) :].tolist() == [0.0] * len(cut)


def test_placeholder_boilerplate_refusal_patterns() -> None:
    s = run(
        "placeholders",
        [
            "Dear [Customer Name], thanks.",
            "Hi {{name}}",
            "Lorem ipsum dolor",
            "TODO: fix",
            "Dear Anna, thanks.",
            "Hi <NAME>,",
            "Hi {customer_name}, hello",
            "[PLACEHOLDER] text",
            "x = {'a': 1}",
        ],
    )
    assert s.tolist() == [0, 0, 0, 0, 1, 0, 0, 0, 1]
    s = run(
        "boilerplate",
        ["As an AI language model, I think so.", "Sent from my iPhone", "Fine answer."],
    )
    assert s.tolist() == [0, 0, 1]
    s = run(
        "refusal",
        [
            "I'm sorry, but I cannot help with that.",
            "I cannot assist with this request.",
            "Sure, here is how to do it.",
        ],
    )
    assert s.tolist() == [0, 0, 1]
    s = run("placeholders", ["ACME_NAME here", "fine"], extra_patterns=[r"\bACME_NAME\b"])
    assert s.tolist() == [0, 1]


def test_boilerplate_learns_recurring_template_text_from_the_data() -> None:
    rng = random.Random(1)
    texts = [clean_answer(rng) for _ in range(400)]
    stock = " This message was written by our friendly support bot team today."
    for i in range(0, 400, 10):
        texts[i] += stock
    s = run("boilerplate", texts)
    assert (s[::10] < 0.5).all()
    mask = np.ones(400, bool)
    mask[::10] = False
    assert (s[mask] == 1).mean() > 0.99
    # a sentence in most examples is the house style, not a defect
    s2 = run("boilerplate", [t + stock for t in texts])
    assert (s2 == 1).mean() > 0.99


def test_verbosity_repetition_length_language_readability() -> None:
    rng = random.Random(2)
    texts = [clean_answer(rng) for _ in range(300)]
    filler = (
        "It is important to note that this matters. In conclusion, this is good. Furthermore, more "
        "to say. I hope this helps! Moreover, there is more. Let me know if you have questions."
    )
    texts.append(texts[0] + " " + filler)
    texts.append(" ".join([sentence(rng) for _ in range(60)]))  # far longer than usual
    s = run("verbosity", texts)
    assert s[-2] < 0.3 and s[-1] < 0.3 and (s[:300] == 1).mean() > 0.97
    rep = "Restart the router and check the cable. " * 6
    assert run("repetition", [rep, texts[0]]).tolist() == [0.0, 1.0]
    assert run("length", ["", "one two", "a " * 50], min_words=1, max_words=20).tolist() == [
        0.0,
        1.0,
        0.0,
    ]
    assert run(
        "language", ["Привет, как дела? Всё хорошо, спасибо.", "Hello there, how are you?"]
    ).tolist() == [0, 1]
    long_sent = " ".join(["word"] * 120) + "."
    assert run("readability", [long_sent, texts[0]]).tolist() == [0.0, 1.0]


def test_json_pattern_echo() -> None:
    assert run(
        "json",
        ['{"intent": "a", "reply": "b"}', '{"intent": "a"}', "not json"],
        required_keys=["intent", "reply"],
    ).tolist() == [1, 0, 0]
    assert run("pattern", ["## Summary\nok", "nothing"], require=["(?m)^## Summary"]).tolist() == [
        1,
        0,
    ]
    assert run(
        "echo",
        ["please reset my account password now", "Open settings and reset it."],
        ["please reset my account password now"] * 2,
    ).tolist() == [0, 1]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.text(max_size=300), min_size=1, max_size=8))
def test_every_scorer_returns_unit_scores_for_any_text(texts: list[str]) -> None:
    tf = TextFrame(texts, texts[::-1])
    for name, fn in SCORERS.items():
        s = fn(tf, {}).scores
        assert s.shape == (len(texts),) and np.all((s >= 0) & (s <= 1)), name


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.lists(st.one_of(st.none(), st.floats(0, 1)), min_size=3, max_size=3),
        min_size=1,
        max_size=20,
    )
)
def test_overall_score_is_a_weighted_mean_of_available_criteria(
    rows: list[list[float | None]],
) -> None:
    u = np.asarray([[np.nan if v is None else v for v in r] for r in rows], dtype=float)
    o = overall_score(u, np.asarray([1.0, 2.0, 0.5]))
    for i, r in enumerate(u):
        have = r[~np.isnan(r)]
        if have.size == 0:
            assert np.isnan(o[i])
        else:
            assert have.min() - 1e-12 <= o[i] <= have.max() + 1e-12


# ------------------------------------------------------------------------------ calibration
def test_agreement_matches_krippendorff_and_flags_vague_criterion(tmp_path: Path) -> None:
    krippendorff = pytest.importorskip("krippendorff")
    rng = np.random.default_rng(0)
    truth = rng.integers(1, 6, size=120)
    rows = []
    for r in ("ann", "bob", "cy"):
        clear = np.clip(truth + rng.integers(-1, 2, size=120) * (rng.random(120) < 0.15), 1, 5)
        vague = rng.integers(1, 6, size=120)
        for u in range(120):
            if not (r == "cy" and u % 3 == 0):  # missing ratings are fine
                rows.append(
                    {"id": f"e{u}", "rater": r, "clear": int(clear[u]), "vague": int(vague[u])}
                )
    path = tmp_path / "ratings.csv"
    path.write_text(
        "id,rater,clear,vague\n"
        + "".join(f"{x['id']},{x['rater']},{x['clear']},{x['vague']}\n" for x in rows),
        encoding="utf-8",
    )
    rubric = parse_rubric(
        {
            "criteria": [
                {"name": "clear", "definition": "d", "kind": "learned", "scale": [1, 5]},
                {"name": "vague", "definition": "d", "kind": "learned", "scale": [1, 5]},
            ]
        }
    )
    got = {a.criterion: a for a in agreement(read_ratings(path), rubric)}
    for crit in ("clear", "vague"):
        mat = np.full((3, 120), np.nan)
        for x in rows:
            mat[("ann", "bob", "cy").index(x["rater"]), int(x["id"][1:])] = x[crit]
        ref = krippendorff.alpha(reliability_data=mat, level_of_measurement="ordinal")
        assert got[crit].alpha == pytest.approx(ref, abs=1e-6)
    assert not got["clear"].flagged and got["clear"].alpha > 0.67
    assert got["vague"].flagged and got["vague"].alpha < 0.2
    assert got["clear"].kappa > 0.6


def test_read_ratings_long_jsonl_and_errors(tmp_path: Path) -> None:
    p = tmp_path / "r.jsonl"
    p.write_text(
        '{"id": "a", "rater": "x", "criterion": "helpful", "score": 4}\n'
        '{"id": "a", "rater": "y", "criterion": "helpful", "score": ""}\n',
        encoding="utf-8",
    )
    assert read_ratings(p) == [RatingRow("a", "x", "helpful", 4.0)]
    bad = tmp_path / "bad.csv"
    bad.write_text("id,rater,helpful\na,x,great\n", encoding="utf-8")
    with pytest.raises(ValueError, match="row 2"):
        read_ratings(bad)


def test_calibration_sample_is_stratified() -> None:
    strata = ["a"] * 900 + ["b"] * 90 + ["c"] * 10
    ids = [f"x{i}" for i in range(1000)]
    got = draw_sample(ids, strata, 100, seed=3)
    assert len(got) == 100 and len(set(got)) == 100
    by = {s: sum(1 for g in got if strata[int(g[1:])] == s) for s in "abc"}
    assert by == {"a": 90, "b": 9, "c": 1}
    assert draw_sample(ids, strata, 100, seed=3) == got


# ------------------------------------------------------------------------------ strata
def test_strata_and_drift_find_the_degraded_period() -> None:
    rng = np.random.default_rng(0)
    dates = [f"{2020 + i // 400}-{1 + (i % 400) // 34:02d}-10" for i in range(2000)]
    keys = period_keys(dates, "year")
    scores = rng.normal(0.9, 0.05, 2000)
    scores[np.asarray([k in ("2023", "2024") for k in keys])] -= 0.2
    kw, tests = compare_strata(keys, scores, min_n=20, alpha=0.01, min_effect=0.05)
    low = {t.stratum for t in tests if t.significant and t.direction == "lower"}
    assert kw < 1e-6 and low == {"2023", "2024"}
    d = drift(keys, scores)
    assert d.change_at == "2023" and d.change_p < 1e-6 and d.tau < 0
    flat = drift(keys, rng.normal(0.9, 0.05, 2000))
    assert flat.change_p > 0.01 or abs(flat.after_mean - flat.before_mean) < 0.02
    assert period_keys(["2024-05-17T10:00:00Z", "2024-02-01", None, "junk"], "quarter") == [
        "2024-Q2",
        "2024-Q1",
        None,
        None,
    ]
    assert period_keys(["2024-05-17"], "month") == ["2024-05"]
    with pytest.raises(ValueError):
        period_keys(["2024-01-01"], "fortnight")


# ------------------------------------------------------------------------------ decisions
def test_score_dataset_tiers_and_failing_criteria() -> None:
    rng = random.Random(5)
    texts = [clean_answer(rng) for _ in range(200)]
    texts[0] = "Dear [Customer Name], open the settings page and then choose the"
    texts[1] = texts[1] + " Sent from my iPhone"
    r = load_rubric()
    res = score_dataset(r, dataset(texts))
    assert res.tiers[0] == "drop" and set(res.failing_codes(0)) == {"placeholder", "truncated"}
    assert res.tiers[1] == "drop" and "boilerplate" in res.failing_codes(1)
    assert (res.tiers[2:] != "drop").mean() > 0.97
    assert any("learned criterion 'helpful'" in n for n in res.notes)


def make_project(root: Path, recs: list[dict], extra: str = "", rubric: str | None = None) -> Path:
    (root / "data").mkdir(parents=True, exist_ok=True)
    with open(root / "data" / "train.jsonl", "w", encoding="utf-8") as fh:
        for r in recs:
            fh.write(json.dumps(r) + "\n")
    tpl = Path(__file__).resolve().parents[1] / "src" / "ftprep" / "templates" / "rubric.yaml"
    (root / "rubric.yaml").write_text(rubric or tpl.read_text(encoding="utf-8"), encoding="utf-8")
    (root / "ftprep.yaml").write_text(
        "name: q\nrubric: rubric.yaml\nsources:\n  - name: main\n    path: data/train.jsonl\n"
        "    fields: {id: id, collected_at: date, annotator: author}\n" + extra,
        encoding="utf-8",
    )
    return root


def planted(n: int = 600, seed: int = 0) -> tuple[list[dict], set[str]]:
    rng = random.Random(seed)
    recs, bad = [], set()
    for i in range(n):
        year = 2021 + i % 4
        ans = clean_answer(rng)
        rid = f"r{i}"
        if year == 2024 and (i // 4) % 2 == 0:
            kind = (i // 8) % 4
            if kind == 0:
                ans = ans + " And then you should open the"
            elif kind == 1:
                ans = (
                    ans
                    + "\n\nBest regards,\nThe Team\nThis email and any attachments are confidential."
                )
            elif kind == 2:
                ans = "Hello [insert customer name], " + ans
            else:
                ans = (
                    ans + " It is important to note that this matters. In conclusion, it helps. "
                    "Furthermore, all is well. I hope this helps! Moreover, that is it."
                )
            bad.add(rid)
        recs.append(
            {
                "id": rid,
                "date": f"{year}-0{1 + i % 9}-15",
                "author": f"a{i % 3}",
                "messages": [
                    {"role": "user", "content": f"How do I fix {rng.choice(WORDS)} {i}?"},
                    {"role": "assistant", "content": ans},
                ],
            }
        )
    return recs, bad


def test_audit_excludes_degraded_period_with_reasons_and_shows_the_stratum(tmp_path: Path) -> None:
    from ftprep.api import audit

    recs, bad = planted()
    root = make_project(tmp_path / "p", recs, "checks:\n  quality.rubric: {period: year}\n")
    res = audit(root, only=["quality.rubric"])
    qr = next(r for r in res.results if r.check == "quality.rubric")
    assert not qr.error, qr.error
    excl = {d.example_id: d for d in qr.decisions if d.action == Action.EXCLUDE}
    assert sum(1 for b in bad if b in excl) / len(bad) >= 0.9
    clean = [r["id"] for r in recs if r["id"] not in bad]
    assert sum(1 for c in clean if c not in excl) / len(clean) >= 0.95
    for d in excl.values():  # every exclusion names the failing criteria and the evidence
        assert d.reason and d.detail.startswith("score ")
        assert d.reason == "below_threshold" or all(
            code
            in {
                "truncated",
                "boilerplate",
                "placeholder",
                "verbose",
                "repetitive",
                "refusal",
                "empty_response",
            }
            for code in d.reason.split("+")
        )
    v = qr.values
    assert v["strata"]["period"]["lower"] == ["2024"]
    assert v["mean_score_after"] > v["mean_score_before"] and v["n_kept"] < v["n_examples"]
    assert any(f.code == "low_quality_period" for f in qr.findings)
    titles = [s.title for s in qr.sections]
    assert (
        "Smaller but better" in titles
        and "Quality by period" in titles
        and "Quality by annotator" in titles
    )
    assert "Worst and best examples by period" in titles
    sample = (root / "out" / "audit" / "quality_calibration_sample.csv").read_text(encoding="utf-8")
    assert sample.startswith("id,rater,helpful,")
    # the build's manifest lists every exclusion with the failing criteria and the evidence
    from ftprep.build import build

    manifest = build(root).manifest
    listed = {e["id"]: e for e in manifest["excluded"]}
    assert set(excl) <= set(listed)
    for eid, d in excl.items():
        q = [r for r in listed[eid]["reasons"] if r["check"] == "quality.rubric"]
        assert q and q[0]["reason"] == d.reason
        assert "failed: " in q[0]["detail"] or "weakest: " in q[0]["detail"]


def test_learned_criterion_trains_on_calibration_labels(tmp_path: Path) -> None:
    from ftprep.api import audit

    rng = random.Random(7)
    recs = []
    lines = ["id,rater,helpful"]
    for i in range(400):
        good = i % 2 == 0
        ans = clean_answer(rng) + (
            " Then confirm the refund in the billing settings." if good else ""
        )
        recs.append(
            {
                "id": f"x{i}",
                "date": "2024-01-01",
                "author": "a",
                "messages": [
                    {"role": "user", "content": f"Help with billing {i}"},
                    {"role": "assistant", "content": ans},
                ],
            }
        )
        if i < 160:
            for r in ("ann", "bob"):
                lines.append(f"x{i},{r},{5 if good else 1}")
    root = make_project(tmp_path / "p", recs, "embeddings: none-such-model\n")
    (root / "calib.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    tpl = (
        (root / "rubric.yaml")
        .read_text(encoding="utf-8")
        .replace("ratings: null", "ratings: calib.csv")
    )
    (root / "rubric.yaml").write_text(tpl, encoding="utf-8")
    res = audit(root, only=["quality.rubric"])
    qr = next(r for r in res.results if r.check == "quality.rubric")
    assert not qr.error, qr.error
    lv = qr.values["learned"]["helpful"]
    assert lv["n_labels"] == 160 and lv["auroc"] > 0.9
    assert qr.values["agreement"]["helpful"]["alpha"] == pytest.approx(1.0)
    assert any("embeddings unavailable" in n for n in qr.values.get("notes", []))


def test_alpaca_planted_source_is_excluded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Real Alpaca responses, one source/period degraded (the benchmark's generator)."""
    import importlib.util

    monkeypatch.syspath_prepend(str(Path(__file__).resolve().parents[1] / "bench"))

    data = Path(__file__).resolve().parents[2] / "shared" / "data" / "sft" / "alpaca_cleaned"
    if not data.exists():
        pytest.skip("shared data not available")
    spec = importlib.util.spec_from_file_location(
        "bench_quality", Path(__file__).resolve().parents[1] / "bench" / "bench_quality.py"
    )
    assert spec and spec.loader
    bq = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bq)
    recs, bad = bq.planted_records(
        bq.load_pool(), 1600, seed=1, kinds=("boilerplate", "verbosity", "placeholder")
    )
    ds = Dataset.from_examples(
        [
            Example(
                id=r["id"],
                messages=r["messages"],
                source=r["source"],
                collected_at=r["collected_at"],
            )
            for r in recs
        ]
    )
    res = score_dataset(load_rubric(), ds)
    drop = {i for i, t in zip(res.ids, res.tiers, strict=True) if t == "drop"}
    assert len(bad & drop) / len(bad) >= 0.9
    clean = set(res.ids) - bad
    assert len(clean - drop) / len(clean) >= 0.95


def _score(path: str, body: dict[str, Any], headers: Any) -> tuple[int, dict[str, str], Any]:
    """Scores 5 when the response mentions Paris, else 1."""
    resp = body["messages"][-1]["content"].split("<response>", 1)[1]
    return 200, {}, chat_reply("5" if "Paris" in resp else "Score: 1")


class _JudgeServer(FakeOpenAI):
    def __init__(self) -> None:
        super().__init__(_score)


def test_judged_criterion_is_cached_and_resumes_without_paying_twice(tmp_path: Path) -> None:
    from ftprep.api import audit

    srv = _JudgeServer()
    try:
        recs = [
            {
                "id": f"j{i}",
                "date": "2024-01-01",
                "author": "a",
                "messages": [
                    {"role": "user", "content": "What is the capital of France?"},
                    {
                        "role": "assistant",
                        "content": f"It is {'Paris' if i % 2 else 'Lyon'}, case {i}.",
                    },
                ],
            }
            for i in range(30)
        ]
        rubric = (
            "threshold: 0.6\ncriteria:\n"
            "  - {name: complete, definition: finished, scorer: truncation, minimum: 0.5}\n"
            "  - {name: accurate, code: inaccurate, definition: Every fact is correct., kind: judged,\n"
            "     scale: [1, 5], weight: 3, minimum: 3}\n"
            f"judge: {{enabled: true, base_url: '{srv.url}', requests_per_minute: 0, concurrency: 2,\n"
            "        price_input_per_1k: 0.001, max_cost_usd: 1}\n"
        )
        rubric += "calibration: {ratings: calib.csv}\n"
        root = make_project(tmp_path / "p", recs, rubric=rubric)
        (root / "calib.csv").write_text(
            "id,rater,accurate\n"
            + "".join(f"j{i},{r},{5 if i % 2 else 1}\n" for i in range(10) for r in ("ann", "bob")),
            encoding="utf-8",
        )
        res = audit(root, only=["quality.rubric"])
        qr = next(r for r in res.results if r.check == "quality.rubric")
        assert not qr.error, qr.error
        assert len(srv.calls) == 30
        excl = {d.example_id: d for d in qr.decisions if d.action == Action.EXCLUDE}
        assert set(excl) == {f"j{i}" for i in range(0, 30, 2)}
        assert all(d.reason == "inaccurate" for d in excl.values())
        agree = qr.values["learned"]["accurate"]  # the judge against the experts' labels
        assert agree["kind"] == "judged" and agree["n_labels"] == 10 and agree["auroc"] == 1.0
        est = qr.values["judge"]["estimate"]
        assert est["requests"] == 30 and est["to_send"] == 30 and est["cost_usd"] > 0
        # second run: every answer comes from the workspace cache
        res2 = audit(root, only=["quality.rubric"])
        qr2 = next(r for r in res2.results if r.check == "quality.rubric")
        assert len(srv.calls) == 30 and qr2.values["judge"]["estimate"]["to_send"] == 0
        assert {d.example_id for d in qr2.decisions if d.action == Action.EXCLUDE} == set(excl)
        # over budget: refuses to start, says why, scores nothing with the judge
        (root / "rubric.yaml").write_text(
            rubric.replace("model: gpt-4o-mini", "").replace(
                "max_cost_usd: 1", "max_cost_usd: 0.000001, model: other-model"
            ),
            encoding="utf-8",
        )
        res3 = audit(root, only=["quality.rubric"])
        qr3 = next(r for r in res3.results if r.check == "quality.rubric")
        assert len(srv.calls) == 30 and any(f.code == "judge_over_budget" for f in qr3.findings)
    finally:
        srv.close()


def test_criteria_on_a_field_no_example_has_are_not_applied() -> None:
    res = score_dataset(load_rubric(), dataset(["", "", ""], prompts=["a b c", "d e f", "g h i"]))
    assert (res.tiers != "drop").all()
    assert any("empty response" in n for n in res.notes)


def test_known_pattern_in_most_examples_is_house_style() -> None:
    rng = random.Random(9)
    base = [clean_answer(rng) for _ in range(100)]
    some = [t + " Thank you for contacting us." if i < 10 else t for i, t in enumerate(base)]
    most = [t + " Thank you for contacting us." if i < 80 else t for i, t in enumerate(base)]
    assert (run("boilerplate", some)[:10] < 0.5).all()
    assert (run("boilerplate", most) == 1).all()
    assert (run("boilerplate", most, max_doc_share=1.0)[:80] == 0).all()


def test_truncation_follows_the_datas_punctuation_convention() -> None:
    rng = random.Random(11)
    texts = [sentence(rng) for _ in range(200)]  # one-line answers that all end in punctuation
    texts.append("Open the billing page and check the refund request")
    texts.append("Invoice Settings For Team Accounts")  # a title, not a cut sentence
    s = run("truncation", texts)
    assert s[-2] == 0.0 and s[-1] == 1.0 and (s[:200] == 1).all()
    unpunctuated = [t.rstrip(".!") for t in texts[:200]] + [
        "Open the billing page and check the refund request"
    ]
    assert (run("truncation", unpunctuated) == 1).all()  # this data does not punctuate: no evidence
    assert run("truncation", texts, convention=False)[-2] == 1.0


def test_punctuation_convention_is_robust_to_a_degraded_stratum_and_weak_conventions() -> None:
    rng = random.Random(12)
    clean = [sentence(rng) for _ in range(300)]
    cut = [sentence(rng).rstrip(".!") + " and the" for _ in range(100)]
    bare = [sentence(rng).rstrip(".!") for _ in range(100)]  # unpunctuated but complete-looking
    texts = clean + cut + bare
    strata = ["web|2023"] * 300 + ["vendor|2024"] * 200
    s = SCORERS["truncation"](TextFrame(texts, None, strata=strata), {}).scores
    assert (s[:300] == 1).all() and (
        s[300:] == 0
    ).all()  # the vendor stratum does not hide the convention
    # writers who often skip the final period: a missing one is no evidence
    weak = [t if i % 4 else t.rstrip(".!") for i, t in enumerate(clean)] + [
        "Open the billing page and check it"
    ]
    assert run("truncation", weak)[-1] == 1.0
