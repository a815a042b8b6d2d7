from __future__ import annotations

import json
import threading
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def shared(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"shared data not available: {p}")
    return p


def write_jsonl(path: Path, records: list) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", encoding="utf-8") as fh:
        for r in records:
            fh.write((r if isinstance(r, str) else json.dumps(r)) + "\n")
    return path


def chat(i: int, user: str | None = None, answer: str | None = None, **extra: object) -> dict:
    return {
        "id": f"ex{i}",
        "messages": [
            {"role": "system", "content": "You are a support assistant."},
            {"role": "user", "content": user or f"How do I reset the password of account {i}?"},
            {
                "role": "assistant",
                "content": answer or f"Open settings, choose security, then reset (case {i}).",
            },
        ],
        **extra,
    }


def make_project(root: Path, records: list, extra_yaml: str = "", fields: str = "{id: id}") -> Path:
    write_jsonl(root / "data" / "train.jsonl", records)
    (root / "ftprep.yaml").write_text(
        "name: test\nsources:\n  - name: main\n    path: data/train.jsonl\n"
        f"    fields: {fields}\n" + extra_yaml,
        encoding="utf-8",
    )
    return root


class FakeOpenAI:
    """A local OpenAI-compatible endpoint on 127.0.0.1 (no network). ``respond(path, body,
    headers)`` returns ``(status, extra_headers, json_payload_or_None)``; every request is
    recorded in ``calls`` as ``{"path", "body", "auth"}``. Use as a context manager."""

    def __init__(
        self,
        respond: Callable[[str, dict[str, Any], Any], tuple[int, dict[str, str], Any]],
    ) -> None:
        self.calls: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                with server.lock:
                    server.calls.append(
                        {"path": self.path, "body": body, "auth": self.headers.get("Authorization")}
                    )
                    status, headers, payload = respond(self.path, body, self.headers)
                data = b"" if payload is None else json.dumps(payload).encode()
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for k, v in headers.items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(data)

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/v1"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self) -> FakeOpenAI:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def chat_reply(text: str, prompt_tokens: int = 50, completion_tokens: int = 1) -> dict[str, Any]:
    """The body of a chat-completions answer."""
    return {
        "choices": [{"message": {"role": "assistant", "content": text}}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens},
    }
