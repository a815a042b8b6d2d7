"""The optional LLM judge for borderline paraphrase pairs, against a tiny local
OpenAI-compatible server (no network): off by default, decides only the band, cached."""

from __future__ import annotations

import re
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.util import FakeOpenAI, chat_reply

from ftprep.contamination.detect import LeakParams, find_leaks
from ftprep.contamination.judge import LeakJudge, LeakJudgeConfig, parse_verdict

ITEMS = [
    "Janet's ducks lay 16 eggs per day. She eats three for breakfast and bakes muffins with four. "
    "She sells the rest at the market for $2 each. How much does she make every day?",
    "James decides to run 3 sprints 3 times a week. He runs 60 meters each sprint. How many "
    "total meters does he run a week?",
    "Carla is downloading a 200 GB file. Normally she can download 2 GB/minute, but 40% of the "
    "way through the download, Windows forces a restart. How long does the download take?",
]
TRAIN = [
    # a paraphrase of item 0
    "Every day Janet's ducks produce 16 eggs. She eats three of them for breakfast and uses "
    "four for baking muffins. The remaining eggs are sold at the market at $2 each. What are "
    "her daily earnings?",
    # same style, a different problem about item 1's topic
    "Maria decides to swim 4 laps 5 times a week. She swims 50 meters each lap. How many total "
    "meters does she swim a week?",
    "Write a short poem about the colour of autumn leaves in the northern forest.",
]


def hash_embed(texts: list[str]) -> np.ndarray:
    """Bag-of-words hashed into 128 dimensions (deterministic, no model)."""
    out = np.zeros((len(texts), 128), dtype=np.float32)
    for i, t in enumerate(texts):
        for w in re.findall(r"\w+", t.lower()):
            out[i, zlib.crc32(w.encode()) % 128] += 1.0
    out /= np.maximum(np.linalg.norm(out, axis=1, keepdims=True), 1e-9)
    return out


def _judge(path: str, body: dict[str, Any], headers: Any) -> tuple[int, dict[str, str], Any]:
    """YES when the training text mentions Janet, NO otherwise."""
    text = body["messages"][-1]["content"].split("<training_text>")[1]
    return 200, {}, chat_reply("YES" if "Janet" in text else "No.")


class JudgeServer(FakeOpenAI):
    def __init__(self) -> None:
        super().__init__(_judge)


@pytest.fixture()
def server() -> Iterator[JudgeServer]:
    s = JudgeServer()
    yield s
    s.close()


def _params(cache: Path, url: str, **judge: Any) -> LeakParams:
    cfg = {
        "enabled": True,
        "base_url": url,
        "cache_dir": str(cache),
        "requests_per_minute": None,
        "concurrency": 1,
        **judge,
    }
    return LeakParams.from_dict(
        {"candidate_cos": 0.0, "default_score": 2.9, "llm_judge": cfg, "lexical_candidate": 0.0}
    )


def test_parse_verdict() -> None:
    assert parse_verdict("YES") is True
    assert parse_verdict(" no, they differ") is False
    assert parse_verdict("**Yes**") is True
    assert parse_verdict("maybe") is None and parse_verdict("") is None


def test_judge_decides_the_band_and_is_cached(server: JudgeServer, tmp_path: Path) -> None:
    # a band wide enough that every candidate pair is borderline: the judge decides them all
    params = _params(tmp_path / "cache", server.url, band_below=9.0, band_above=9.0)
    train = {"prompt": TRAIN, "full": TRAIN}
    rep = find_leaks(train, ITEMS, ITEMS, params, embed=hash_embed)
    assert server.calls, "the judge was asked"
    assert rep.judge is not None and rep.judge["judged"] == len(server.calls)
    leaks = {(lk.train, lk.item): lk for lk in rep.leaks}
    assert (0, 0) in leaks and leaks[(0, 0)].method == "llm_judge"
    assert leaks[(0, 0)].category == "paraphrase"
    # every pair the judge said NO to is cleared, whatever its verifier score
    assert all(lk.train == 0 for lk in rep.leaks)
    assert rep.judge["rejected"] == rep.judge["judged"] - rep.judge["confirmed"] >= 1
    # texts are sent as fenced data with a model and temperature 0
    body = server.calls[0]["body"]
    assert body["temperature"] == 0.0 and "<item>" in body["messages"][-1]["content"]
    # a re-run pays nothing: every answer comes from the cache
    n = len(server.calls)
    rep2 = find_leaks(train, ITEMS, ITEMS, params, embed=hash_embed)
    assert len(server.calls) == n
    assert rep2.judge is not None and rep2.judge["cached"] == rep2.judge["judged"] == n
    assert [(lk.train, lk.item, lk.method) for lk in rep2.leaks] == [
        (lk.train, lk.item, lk.method) for lk in rep.leaks
    ]


def test_judge_only_sees_the_band(server: JudgeServer, tmp_path: Path) -> None:
    params = _params(tmp_path / "cache", server.url, band_below=0.0, band_above=0.0)
    rep = find_leaks({"prompt": TRAIN, "full": TRAIN}, ITEMS, ITEMS, params, embed=hash_embed)
    # an empty band: nothing is sent, the verifier decides alone
    assert server.calls == [] and rep.judge is not None and rep.judge["judged"] == 0
    assert all(lk.method != "llm_judge" for lk in rep.leaks)


def test_judge_off_by_default_and_failures_leave_the_verifier(tmp_path: Path) -> None:
    assert LeakParams().llm_judge.enabled is False
    rep = find_leaks(
        {"prompt": TRAIN, "full": TRAIN},
        ITEMS,
        ITEMS,
        LeakParams(candidate_cos=0.0, default_score=2.9),
        embed=hash_embed,
    )
    assert rep.judge is None
    # an unreachable endpoint: every request fails, the verifier's decisions stand
    cfg = LeakJudgeConfig(
        enabled=True,
        base_url="http://127.0.0.1:9/v1",
        max_retries=0,
        timeout=2,
        requests_per_minute=0,
        band_below=9.0,
        band_above=9.0,
    )
    params = LeakParams(candidate_cos=0.0, default_score=2.9, llm_judge=cfg)
    rep2 = find_leaks(
        {"prompt": TRAIN, "full": TRAIN},
        ITEMS,
        ITEMS,
        params,
        embed=hash_embed,
        judge=LeakJudge(cfg),
    )
    assert rep2.judge is not None and rep2.judge["undecided"] == rep2.judge["judged"] > 0
    assert [(lk.train, lk.item) for lk in rep2.leaks] == [(lk.train, lk.item) for lk in rep.leaks]
    with pytest.raises(ValueError, match="band_belw"):
        LeakParams.from_dict({"llm_judge": {"band_belw": 0.1}})
