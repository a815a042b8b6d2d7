"""A small client for OpenAI-compatible ``/chat/completions`` and ``/embeddings`` endpoints.

Only the standard library is used (``urllib``). What it adds over a bare HTTP call:

* **disk cache** — every successful response is stored under ``cache_dir`` keyed by the SHA-256
  of (base URL, endpoint, canonical request body), written atomically. A run that is interrupted
  and started again re-uses every answer it already paid for (*resume without paying twice*);
  the API key is never part of the key or the file.
* **rate limit** — at most ``requests_per_minute`` requests leave the process (shared by threads).
* **retries** — 429, 5xx, timeouts and connection errors are retried with exponential backoff and
  jitter (``Retry-After`` is honoured); other 4xx errors raise :class:`LLMError` at once.
* **usage accounting** — :attr:`LLMClient.stats` counts requests, cache hits, tokens and retries.

Usage::

    client = LLMClient(base_url="http://localhost:8000/v1", cache_dir=ws.root / "llm_cache")
    res = client.chat([{"role": "user", "content": "Say hi"}], model="gpt-4o-mini")
    res.text, res.cached, res.usage
    vecs = client.embeddings(["a", "b"], model="text-embedding-3-small")   # float32, L2-normalised

``base_url`` defaults to ``$OPENAI_BASE_URL`` or ``https://api.openai.com/v1``; the key is read
from the environment variable ``api_key_env`` (default ``OPENAI_API_KEY``) and may be absent for
local servers.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from ftprep.store import atomic_write_text

__all__ = ["ChatResult", "LLMClient", "LLMError", "RateLimiter", "estimate_tokens", "request_key"]

DEFAULT_BASE_URL = "https://api.openai.com/v1"
RETRY_STATUS = frozenset({408, 409, 425, 429, 500, 502, 503, 504})


class LLMError(RuntimeError):
    """A request that failed for good (non-retryable status, or retries exhausted)."""

    def __init__(self, message: str, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


@dataclass(slots=True)
class ChatResult:
    text: str
    usage: dict[str, int]
    cached: bool
    raw: dict[str, Any]


@dataclass
class Stats:
    requests: int = 0  # HTTP requests sent (including retries)
    cache_hits: int = 0
    retries: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def add(self, **kw: int) -> None:
        with self._lock:
            for k, v in kw.items():
                setattr(self, k, getattr(self, k) + v)

    def to_dict(self) -> dict[str, int]:
        return {
            k: getattr(self, k)
            for k in ("requests", "cache_hits", "retries", "prompt_tokens", "completion_tokens")
        }


def estimate_tokens(text: str) -> int:
    """Rough token count (characters / 4, at least 1) for cost and time estimates."""
    return max(1, (len(text) + 3) // 4)


def request_key(base_url: str, endpoint: str, body: dict[str, Any]) -> str:
    """Cache key of a request: SHA-256 of base URL, endpoint and the canonical JSON body."""
    canon = json.dumps(body, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    h = hashlib.sha256()
    for part in (base_url.rstrip("/"), endpoint, canon):
        h.update(part.encode("utf-8"))
        h.update(b"\0")
    return h.hexdigest()


class RateLimiter:
    """At most ``per_minute`` acquisitions per minute, spaced evenly; thread-safe. ``None`` or
    ``0`` disables the limit."""

    def __init__(
        self,
        per_minute: float | None,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        self._next = 0.0
        self._lock = threading.Lock()
        self._clock = clock
        self._sleep = sleep

    def acquire(self) -> None:
        if self.interval <= 0:
            return
        with self._lock:
            now = self._clock()
            at = max(now, self._next)
            self._next = at + self.interval
        if at > now:
            self._sleep(at - now)


class ClientSettings(Protocol):
    """The endpoint settings a judge configuration carries."""

    base_url: str | None
    api_key_env: str
    requests_per_minute: float
    max_retries: int
    timeout: float


class LLMClient:
    """OpenAI-compatible client with a disk cache, a rate limit and retries (see module doc)."""

    def __init__(
        self,
        base_url: str | None = None,
        *,
        api_key: str | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        cache_dir: str | Path | None = None,
        requests_per_minute: float | None = 60,
        max_retries: int = 5,
        backoff: float = 1.0,
        max_backoff: float = 60.0,
        timeout: float = 120.0,
        headers: dict[str, str] | None = None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.base_url = (base_url or os.environ.get("OPENAI_BASE_URL") or DEFAULT_BASE_URL).rstrip(
            "/"
        )
        self._api_key = api_key if api_key is not None else os.environ.get(api_key_env)
        self.cache_dir = Path(cache_dir) if cache_dir is not None else None
        self.max_retries = max(0, int(max_retries))
        self.backoff = float(backoff)
        self.max_backoff = float(max_backoff)
        self.timeout = float(timeout)
        self.headers = dict(headers or {})
        self._sleep = sleep
        self.limiter = RateLimiter(requests_per_minute, sleep=sleep)
        self.stats = Stats()

    @classmethod
    def from_settings(cls, s: ClientSettings, cache_dir: str | Path | None) -> LLMClient:
        """A client from a judge's configuration (the LLM judges of the quality rubric and of
        the contamination check share these settings)."""
        return cls(
            s.base_url,
            api_key_env=s.api_key_env,
            cache_dir=cache_dir,
            requests_per_minute=s.requests_per_minute,
            max_retries=s.max_retries,
            timeout=s.timeout,
        )

    # ------------------------------------------------------------------ cache
    def _cache_path(self, key: str) -> Path | None:
        if self.cache_dir is None:
            return None
        return self.cache_dir / key[:2] / f"{key}.json"

    def cached(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any] | None:
        """The cached response of a request, or ``None``."""
        p = self._cache_path(request_key(self.base_url, endpoint, body))
        if p is None or not p.exists():
            return None
        try:
            out: dict[str, Any] = json.loads(p.read_text(encoding="utf-8"))
            return out
        except (OSError, ValueError):
            return None  # a damaged entry is simply asked again

    def is_cached(self, endpoint: str, body: dict[str, Any]) -> bool:
        return self.cached(endpoint, body) is not None

    # ------------------------------------------------------------------ transport
    def _post(self, endpoint: str, body: dict[str, Any]) -> dict[str, Any]:
        url = f"{self.base_url}/{endpoint.lstrip('/')}"
        data = json.dumps(body).encode("utf-8")
        headers = {"Content-Type": "application/json", **self.headers}
        if self._api_key:
            headers["Authorization"] = f"Bearer {self._api_key}"
        attempt = 0
        while True:
            self.limiter.acquire()
            self.stats.add(requests=1)
            retry_after: float | None = None
            try:
                req = urllib.request.Request(url, data=data, headers=headers, method="POST")
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = json.loads(resp.read().decode("utf-8"))
                if not isinstance(payload, dict):
                    raise LLMError(f"{url}: expected a JSON object in the response")
                return payload
            except urllib.error.HTTPError as e:
                status = e.code
                detail = _read_error(e)
                if status not in RETRY_STATUS or attempt >= self.max_retries:
                    raise LLMError(f"{url}: HTTP {status}: {detail}", status=status) from None
                retry_after = _retry_after(e.headers.get("Retry-After") if e.headers else None)
            except (
                urllib.error.URLError,
                TimeoutError,
                ConnectionError,
                json.JSONDecodeError,
            ) as e:
                if attempt >= self.max_retries:
                    raise LLMError(f"{url}: {type(e).__name__}: {e}") from None
            attempt += 1
            self.stats.add(retries=1)
            delay = min(self.max_backoff, self.backoff * 2 ** (attempt - 1))
            delay = delay * (0.5 + random.random() / 2)
            if retry_after is not None:
                delay = max(delay, min(retry_after, self.max_backoff))
            self._sleep(delay)

    def request(self, endpoint: str, body: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """POST ``body`` to ``endpoint`` through the cache: ``(response, was_cached)``."""
        hit = self.cached(endpoint, body)
        if hit is not None:
            self.stats.add(cache_hits=1)
            return hit, True
        payload = self._post(endpoint, body)
        usage = payload.get("usage") or {}
        self.stats.add(
            prompt_tokens=int(usage.get("prompt_tokens") or 0),
            completion_tokens=int(usage.get("completion_tokens") or 0),
        )
        p = self._cache_path(request_key(self.base_url, endpoint, body))
        if p is not None:
            atomic_write_text(p, json.dumps(payload, ensure_ascii=False))
        return payload, False

    # ------------------------------------------------------------------ API
    @staticmethod
    def chat_body(
        messages: Sequence[dict[str, Any]],
        model: str,
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        **extra: Any,
    ) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": model,
            "messages": list(messages),
            "temperature": temperature,
        }
        if max_tokens is not None:
            body["max_tokens"] = int(max_tokens)
        body.update(extra)
        return body

    def chat(
        self,
        messages: Sequence[dict[str, Any]],
        model: str,
        *,
        temperature: float = 0.0,
        max_tokens: int | None = None,
        **extra: Any,
    ) -> ChatResult:
        """One chat completion; ``extra`` keys (e.g. ``seed``, ``response_format``) go into the
        request body and therefore into the cache key."""
        body = self.chat_body(
            messages, model, temperature=temperature, max_tokens=max_tokens, **extra
        )
        payload, was_cached = self.request("chat/completions", body)
        try:
            msg = payload["choices"][0]["message"]
            text = msg.get("content") or ""
        except (KeyError, IndexError, TypeError):
            raise LLMError(f"{self.base_url}/chat/completions: unexpected response shape") from None
        usage = {k: int(v) for k, v in (payload.get("usage") or {}).items() if isinstance(v, int)}
        return ChatResult(text=str(text), usage=usage, cached=was_cached, raw=payload)

    def chat_many(
        self,
        conversations: Sequence[Sequence[dict[str, Any]]],
        model: str,
        *,
        concurrency: int = 4,
        progress: Callable[[int], None] | None = None,
        on_error: Callable[[int, LLMError], None] | None = None,
        **kw: Any,
    ) -> list[ChatResult | None]:
        """:meth:`chat` over many conversations with ``concurrency`` threads (results in input
        order). A request that fails for good gives ``None`` and calls ``on_error(i, err)``;
        the others still finish, so a rerun only pays for what is missing."""
        out: list[ChatResult | None] = [None] * len(conversations)

        def one(i: int) -> None:
            try:
                out[i] = self.chat(conversations[i], model, **kw)
            except LLMError as e:
                if on_error is None:
                    raise
                on_error(i, e)
            finally:
                if progress is not None:
                    progress(1)

        if concurrency <= 1:
            for i in range(len(conversations)):
                one(i)
            return out
        with ThreadPoolExecutor(max_workers=concurrency) as pool:
            for f in [pool.submit(one, i) for i in range(len(conversations))]:
                f.result()
        return out

    def embeddings(self, inputs: Sequence[str], model: str, *, batch_size: int = 256) -> np.ndarray:
        """Embeddings of ``inputs`` (float32, rows L2-normalised), batched and cached per batch."""
        rows: list[np.ndarray] = []
        for start in range(0, len(inputs), max(1, batch_size)):
            batch = [str(t) for t in inputs[start : start + batch_size]]
            payload, _ = self.request("embeddings", {"model": model, "input": batch})
            data = sorted(payload.get("data") or [], key=lambda d: int(d.get("index", 0)))
            if len(data) != len(batch):
                raise LLMError(
                    f"{self.base_url}/embeddings: got {len(data)} vectors for {len(batch)} inputs"
                )
            rows.append(np.asarray([d["embedding"] for d in data], dtype=np.float32))
        if not rows:
            return np.zeros((0, 0), dtype=np.float32)
        x = np.concatenate(rows)
        norms = np.linalg.norm(x, axis=1, keepdims=True)
        return x / np.where(norms > 0, norms, 1.0)


def _read_error(e: urllib.error.HTTPError) -> str:
    try:
        return e.read().decode("utf-8", "replace")[:300]
    except Exception:
        return e.reason if isinstance(e.reason, str) else ""


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        return None
