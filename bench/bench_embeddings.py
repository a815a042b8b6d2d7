"""Benchmark the embedders: throughput on real short sentences and STS-B Spearman.

    PYTHONPATH=src HF_HUB_OFFLINE=1 python bench/bench_embeddings.py [--no-write]

Throughput: sentences/s, median of 3 runs, on CLINC150 utterances (train+val+test, ~22.5k;
``--n`` caps it; MiniLM runs on the first ``--minilm-n`` of them, it is ~100x slower).
Quality: Spearman between cosine similarity and the gold score on STS-B test (and dev).
Writes the table under ``## Embeddings`` in docs/benchmarks.md (only that section is replaced).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

os.environ.setdefault("HF_HUB_OFFLINE", "1")
REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "src"))

from _machine import cpu_model  # noqa: E402  (bench/ is on sys.path when run as a script)
from ftprep.signals.embeddings import STATIC_DIR, Embedder, get_embedder  # noqa: E402

DATA = REPO.parent / "shared" / "data"
CLINC = DATA / "intents" / "clinc150" / "data_full.json"
STSB = DATA / "paraphrase_drift" / "stsb"
DOC = REPO / "docs" / "benchmarks.md"
HEADING = "## Embeddings"


def sentences(n: int) -> list[str]:
    d = json.loads(CLINC.read_text(encoding="utf-8"))
    out = [
        t
        for split in ("train", "val", "test", "oos_train", "oos_val", "oos_test")
        for t, _ in d[split]
    ]
    return out[:n]


def stsb(split: str) -> tuple[list[str], list[str], np.ndarray]:
    rows = [
        line.split("\t")
        for line in (STSB / f"sts-{split}.tsv").read_text(encoding="utf-8").splitlines()
    ]
    return [r[5] for r in rows], [r[6] for r in rows], np.array([float(r[4]) for r in rows])


def spearman(encode: Callable[[list[str]], np.ndarray], split: str) -> float:
    from scipy.stats import spearmanr

    a, b, gold = stsb(split)
    ea, eb = encode(a), encode(b)
    return float(spearmanr((ea * eb).sum(axis=1), gold).statistic)


def throughput(encode: Callable[[list[str]], np.ndarray], texts: list[str], runs: int = 3) -> float:
    encode(texts[:256])  # warm-up (thread pools, lazy imports)
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        encode(texts)
        times.append(time.perf_counter() - t0)
    return len(texts) / statistics.median(times)


def machine() -> str:
    cpu = cpu_model()
    load = ", ".join(f"{x:.1f}" for x in os.getloadavg()) if hasattr(os, "getloadavg") else "n/a"
    return (
        f"{os.cpu_count()} cores (`nproc`), {cpu}; Python {platform.python_version()}; "
        f"load average at start {load}; {dt.date.today().isoformat()}"
    )


def dir_mb(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 1e6


def run(args: argparse.Namespace) -> str:
    texts = sentences(args.n)
    rows: list[tuple[str, str, int, float, float, float, str]] = []
    header_machine = machine()

    def add(
        label: str, name: str, enc: Callable[[list[str]], np.ndarray], n: int, size: str
    ) -> None:
        sub = texts[:n]
        tput = throughput(enc, sub)
        dev = spearman(enc, "dev")
        test = spearman(enc, "test")
        rows.append((label, name, len(sub), tput, dev, test, size))
        print(
            f"{label}: {tput:,.0f} sent/s on {len(sub)}, STS-B dev {dev:.3f} test {test:.3f}",
            flush=True,
        )

    static: Embedder = get_embedder("static")
    add(
        "static (bundled, numpy + tokenizers)",
        static.name,
        lambda t: static.encode(t),
        len(texts),
        f"{dir_mb(STATIC_DIR):.1f} MB",
    )
    if args.model2vec:
        try:
            from model2vec import StaticModel
            from tokenizers import Tokenizer
        except ImportError:
            print("model2vec not installed: skipping its runtime row")
        else:
            m2v = StaticModel(
                vectors=np.load(STATIC_DIR / "embeddings.npy"),
                tokenizer=Tokenizer.from_file(str(STATIC_DIR / "tokenizer.json")),
                normalize=True,
            )
            add(
                "same vectors, model2vec runtime (reference)",
                static.name,
                lambda t: np.asarray(m2v.encode(t, max_length=512), dtype=np.float32),
                len(texts),
                "same",
            )
    if not args.no_minilm:
        try:
            minilm = get_embedder("minilm")
        except ValueError as e:
            print(f"minilm unavailable: {e}")
        else:
            from ftprep.signals.embeddings import minilm_model_dir

            add(
                "MiniLM-L6-v2 (torch, CPU, sentence-transformers)",
                minilm.name,
                lambda t: minilm.encode(t),
                args.minilm_n,
                f"{dir_mb(minilm_model_dir()):.1f} MB",
            )

    lines = [
        HEADING,
        "",
        f"`bench/bench_embeddings.py` — machine: {header_machine}.",
        "Throughput: sentences/s, median of 3 runs, CLINC150 utterances (short queries, ~10 tokens);",
        "MiniLM is timed on a prefix of the same list. Quality: Spearman of cosine vs gold on STS-B.",
        "The machine is shared: absolute throughput is noisy, compare rows of one run; torch",
        "(MiniLM) suffers most from contention (~210 sent/s was measured here when idle, DESIGN.md).",
        "",
        "| embedder | name | sentences | sent/s (median of 3) | STS-B dev | STS-B test | size |",
        "|---|---|---:|---:|---:|---:|---|",
    ]
    for label, name, n, tput, dev, test, size in rows:
        lines.append(
            f"| {label} | `{name}` | {n:,} | {tput:,.0f} | {dev:.3f} | {test:.3f} | {size} |"
        )
    lines += [
        "",
        "Static model: distilled from all-MiniLM-L6-v2 by `scripts/distill_static.py` (see",
        "`src/ftprep/data/static_minilm/README.md`); model2vec's default `distill` of the same",
        "teacher scores 0.661 on STS-B test.",
        "",
    ]
    return "\n".join(lines)


def write_section(section: str, doc: Path = DOC) -> None:
    text = doc.read_text(encoding="utf-8") if doc.is_file() else "# Benchmarks\n\n"
    lines = text.splitlines()
    start = next((i for i, ln in enumerate(lines) if ln.strip() == HEADING), None)
    if start is None:
        new = text.rstrip("\n") + "\n\n" + section
    else:
        end = next(
            (j for j in range(start + 1, len(lines)) if lines[j].startswith("## ")), len(lines)
        )
        before = "\n".join(lines[:start]).rstrip("\n")
        after = "\n".join(lines[end:])
        new = (before + "\n\n" if before else "") + section + ("\n" + after if after else "")
    doc.parent.mkdir(parents=True, exist_ok=True)
    tmp = doc.with_suffix(".md.tmp-embeddings")
    tmp.write_text(new.rstrip("\n") + "\n", encoding="utf-8")
    tmp.replace(doc)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--n", type=int, default=20_000, help="sentences for the static throughput")
    ap.add_argument(
        "--minilm-n", type=int, default=2_000, help="sentences for the MiniLM throughput"
    )
    ap.add_argument("--no-minilm", action="store_true")
    ap.add_argument("--no-model2vec", dest="model2vec", action="store_false")
    ap.add_argument("--no-write", action="store_true", help="print the table only")
    args = ap.parse_args()
    if not CLINC.is_file() or not STSB.is_dir():
        print(f"needs {CLINC} and {STSB}")
        return 2
    section = run(args)
    print()
    print(section)
    if not args.no_write:
        write_section(section)
        print(f"wrote {HEADING!r} in {DOC}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
