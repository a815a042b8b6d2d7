"""ftprep.llm against a tiny OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from tests.util import FakeOpenAI, chat_reply

from ftprep.llm import LLMClient, LLMError, RateLimiter, request_key


class FakeServer(FakeOpenAI):
    """Answers /chat/completions with the last user message reversed and /embeddings with
    fixed vectors; ``fail_next`` queues status codes to return first."""

    def __init__(self) -> None:
        self.fail_next: list[tuple[int, dict[str, str]]] = []
        self.auth: list[str | None] = []
        super().__init__(self._respond)

    def _respond(self, path: str, body: dict[str, Any], headers: Any) -> tuple[int, dict, Any]:
        self.auth.append(headers.get("Authorization"))
        if self.fail_next:
            status, extra = self.fail_next.pop(0)
            return status, extra, {"error": "nope"}
        if path.endswith("/chat/completions"):
            return 200, {}, chat_reply(body["messages"][-1]["content"][::-1], 7, 3)
        vectors = [{"index": i, "embedding": [3.0, 4.0 + i]} for i, _ in enumerate(body["input"])]
        return 200, {}, {"data": vectors}


@pytest.fixture()
def server() -> Iterator[FakeServer]:
    s = FakeServer()
    yield s
    s.close()


def client(server: FakeServer, tmp_path: Path, **kw: Any) -> LLMClient:
    kw.setdefault("requests_per_minute", None)
    kw.setdefault("sleep", lambda _s: None)
    return LLMClient(server.url, api_key="sk-test", cache_dir=tmp_path / "cache", **kw)


def test_chat_is_cached_on_disk_and_resumes_across_clients(
    server: FakeServer, tmp_path: Path
) -> None:
    c1 = client(server, tmp_path)
    r = c1.chat([{"role": "user", "content": "hello"}], model="m")
    assert r.text == "olleh" and not r.cached and r.usage["prompt_tokens"] == 7
    assert len(server.calls) == 1 and server.auth[0] == "Bearer sk-test"
    # a new client (a rerun after an interruption) pays nothing for what is cached
    c2 = client(server, tmp_path)
    r2 = c2.chat([{"role": "user", "content": "hello"}], model="m")
    assert r2.cached and r2.text == "olleh"
    assert len(server.calls) == 1 and c2.stats.cache_hits == 1 and c2.stats.requests == 0
    # a different request is not served from the cache; the key never holds the API key
    c2.chat([{"role": "user", "content": "hello"}], model="m", temperature=0.5)
    assert len(server.calls) == 2
    files = list((tmp_path / "cache").rglob("*.json"))
    assert len(files) == 2 and all("sk-test" not in f.read_text() for f in files)


def test_retries_transient_errors_and_honours_retry_after(
    server: FakeServer, tmp_path: Path
) -> None:
    slept: list[float] = []
    c = client(server, tmp_path, sleep=slept.append, backoff=0.01)
    server.fail_next = [(500, {}), (429, {"Retry-After": "2"}), (503, {})]
    r = c.chat([{"role": "user", "content": "abc"}], model="m")
    assert r.text == "cba"
    assert c.stats.retries == 3 and len(server.calls) == 4
    assert max(slept) >= 2.0  # Retry-After respected


def test_non_retryable_error_and_exhausted_retries_raise(
    server: FakeServer, tmp_path: Path
) -> None:
    c = client(server, tmp_path, max_retries=2, backoff=0.0)
    server.fail_next = [(400, {})]
    with pytest.raises(LLMError) as e:
        c.chat([{"role": "user", "content": "x"}], model="m")
    assert e.value.status == 400 and len(server.calls) == 1
    server.fail_next = [(500, {})] * 5
    with pytest.raises(LLMError):
        c.chat([{"role": "user", "content": "y"}], model="m")
    assert len(server.calls) == 1 + 3  # first try + 2 retries
    assert not list((tmp_path / "cache").rglob("*.json"))  # failures are never cached


def test_chat_many_keeps_order_and_reports_failures(server: FakeServer, tmp_path: Path) -> None:
    c = client(server, tmp_path, max_retries=0)
    server.fail_next = [(400, {})]
    errors: list[int] = []
    done: list[int] = []
    convs = [[{"role": "user", "content": f"q{i}"}] for i in range(6)]
    out = c.chat_many(
        convs, "m", concurrency=1, progress=done.append, on_error=lambda i, e: errors.append(i)
    )
    assert errors == [0] and out[0] is None
    assert [r.text for r in out[1:] if r] == [f"q{i}"[::-1] for i in range(1, 6)]
    assert sum(done) == 6
    out2 = c.chat_many(convs, "m", concurrency=3)
    assert all(r is not None for r in out2) and len(server.calls) == 7  # only q0 was sent again


def test_embeddings_are_normalised_and_cached(server: FakeServer, tmp_path: Path) -> None:
    c = client(server, tmp_path)
    v = c.embeddings(["a", "b", "c"], model="e", batch_size=2)
    assert v.shape == (3, 2) and np.allclose(np.linalg.norm(v, axis=1), 1.0)
    assert np.allclose(v[0], [0.6, 0.8])
    c.embeddings(["a", "b", "c"], model="e", batch_size=2)
    assert len(server.calls) == 2


def test_rate_limiter_spaces_requests() -> None:
    now = [0.0]
    slept: list[float] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    rl = RateLimiter(120, clock=lambda: now[0], sleep=sleep)  # one every 0.5 s
    for _ in range(5):
        rl.acquire()
    assert now[0] == pytest.approx(2.0)
    assert RateLimiter(None).interval == 0


def test_request_key_is_canonical() -> None:
    a = request_key("http://x/v1/", "chat/completions", {"b": 1, "a": [1, 2]})
    b = request_key("http://x/v1", "chat/completions", {"a": [1, 2], "b": 1})
    assert a == b and a != request_key("http://x/v1", "embeddings", {"a": [1, 2], "b": 1})
