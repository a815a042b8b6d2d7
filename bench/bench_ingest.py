"""Ingest + format checks on N synthetic chat records (default 1M, ~200 MB of JSONL).

Side by side in one run: the raw DuckDB ``read_json`` of the same file (the floor a user would
compare against), and ``ftprep audit --check format`` (ingest + every format check, cold cache).
Reports wall time, throughput and peak RSS (each measured in a fresh subprocess).

``--production N`` measures instead a sampled read of N production inputs (JSONL) cut to
``--sample`` records: ftprep's streamed read, the whole file read and then cut by the same rule
(ftprep before session 12), and DuckDB's reservoir sample of the raw file (no validation).

    python bench/bench_ingest.py [--records 1000000] [--repeats 3]
    python bench/bench_ingest.py --production 2000000 [--sample 20000]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from _machine import cpu_model

WORDS = [
    "account",
    "refund",
    "order",
    "password",
    "shipping",
    "invoice",
    "delivery",
    "the",
    "a",
    "to",
    "of",
    "please",
    "help",
    "my",
    "cannot",
    "login",
    "reset",
    "card",
    "payment",
    "failed",
    "update",
    "address",
    "change",
    "plan",
    "cancel",
    "thanks",
    "when",
    "where",
    "why",
    "how",
    "is",
    "are",
    "was",
    "will",
    "can",
    "could",
    "would",
    "should",
]


def make_file(path: Path, n: int, seed: int = 0) -> None:
    rng = random.Random(seed)
    with open(path, "w") as fh:
        for i in range(n):
            q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 12)))
            a = " ".join(rng.choice(WORDS) for _ in range(rng.randint(6, 16)))
            rec = {
                "id": f"r{i}",
                "conversation_id": f"c{i // 4}",
                "messages": [
                    {"role": "system", "content": "Be helpful."},
                    {"role": "user", "content": q.capitalize() + "?"},
                    {"role": "assistant", "content": a.capitalize() + "."},
                ],
            }
            fh.write(json.dumps(rec) + "\n")


def _child(code: str) -> tuple[float, float]:
    """Run code in a fresh interpreter; returns (seconds, peak RSS MB of the process or of any of
    its worker processes, whichever is larger)."""
    wrapper = (
        "import time, resource\nt0 = time.perf_counter()\n"
        + code
        + "\nrss = max(resource.getrusage(w).ru_maxrss for w in "
        "(resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN))"
        + "\nprint(time.perf_counter() - t0, rss / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper], capture_output=True, text=True, check=True
    )
    secs, rss = out.stdout.strip().splitlines()[-1].split()
    return float(secs), float(rss)


def production_sample(n: int, sample: int, repeats: int) -> None:
    rng = random.Random(1)
    with tempfile.TemporaryDirectory() as d:
        path = Path(d) / "production.jsonl"
        with open(path, "w") as fh:
            for i in range(n):
                q = " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))
                fh.write(json.dumps({"qid": f"q{i}", "text": q, "ts": "2026-01-01"}) + "\n")
        mb = path.stat().st_size / 1e6
        common = (
            "from ftprep.formats.readers import ReadOptions, read_file\n"
            "from ftprep.formats.records import FieldMap\n"
            "f = FieldMap(id='qid', input='text')\n"
        )
        streamed = common + (
            f"r = read_file('{path}', ReadOptions(source='p', mode='inputs', fields=f, "
            f"sample={sample}))\nassert len(r.dataset) == {min(sample, n)}"
        )
        whole = common + (
            "from ftprep.examples import id_rank\n"
            f"r = read_file('{path}', ReadOptions(source='p', mode='inputs', fields=f))\n"
            "ids = sorted(r.dataset.ids, key=lambda i: id_rank(0, i))\n"
            f"ds = r.dataset.filter_ids(set(ids[:{sample}]))\nassert len(ds) == {min(sample, n)}"
        )
        duck = (
            "import duckdb\n"
            f"duckdb.sql(\"SELECT * FROM read_json('{path}', format='newline_delimited') "
            f'USING SAMPLE {sample} ROWS (reservoir, 0)").fetchall()'
        )
        rows: dict[str, list[tuple[float, float]]] = {
            "DuckDB reservoir sample of the raw file (no validation)": [],
            "ftprep streamed sample (session 12)": [],
            "ftprep whole read, then cut (before)": [],
        }
        codes = dict(zip(rows, (duck, streamed, whole), strict=True))
        for _ in range(repeats):
            for name, code in codes.items():
                rows[name].append(_child(code))
    print(
        f"\n{n:,} production inputs, {mb:.0f} MB JSONL, sampled to {sample:,}; {os.cpu_count()} "
        f"cores, {cpu_model()}; {time.strftime('%Y-%m-%d')}; median of {repeats}\n"
    )
    print("| read | wall s (median) | peak RSS MB (process or workers) |")
    print("|---|---|---|")
    for name, runs in rows.items():
        s = statistics.median(x for x, _ in runs)
        print(f"| {name} | {s:.2f} | {max(r for _, r in runs):.0f} |")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--production", type=int, default=0, help="sampled production read instead")
    ap.add_argument("--sample", type=int, default=20000)
    args = ap.parse_args()
    if args.production:
        production_sample(args.production, args.sample, args.repeats)
        return
    with tempfile.TemporaryDirectory() as d:
        root = Path(d)
        data = root / "data" / "train.jsonl"
        data.parent.mkdir()
        make_file(data, args.records)
        mb = data.stat().st_size / 1e6
        (root / "ftprep.yaml").write_text(
            "name: bench\nsources:\n  - name: main\n    path: data/train.jsonl\n"
            "    fields: {id: id, group: conversation_id}\n"
        )
        duck = f"import duckdb\nduckdb.sql(\"SELECT count(*) FROM read_json('{data}', format='newline_delimited')\").fetchall()"
        audit = (
            f"import shutil, ftprep\nshutil.rmtree('{root}/.ftprep', ignore_errors=True)\n"
            f"r = ftprep.audit('{root}', only=['format'])\nassert r.findings['totals']['examples'] == {args.records}"
        )
        rows = {"duckdb read_json (raw parse, no checks)": [], "ftprep ingest + format checks": []}
        for _ in range(args.repeats):
            rows["duckdb read_json (raw parse, no checks)"].append(_child(duck))
            rows["ftprep ingest + format checks"].append(_child(audit))
    cpu = cpu_model()
    print(
        f"\n{args.records:,} chat records, {mb:.0f} MB JSONL; {os.cpu_count()} cores, {cpu}; "
        f"{time.strftime('%Y-%m-%d')}; median of {args.repeats}\n"
    )
    print("| pipeline | wall s (median) | MB/s | records/s | peak RSS MB |")
    print("|---|---|---|---|---|")
    base = statistics.median(s for s, _ in rows["duckdb read_json (raw parse, no checks)"])
    for name, runs in rows.items():
        s = statistics.median(x for x, _ in runs)
        rss = max(r for _, r in runs)
        print(f"| {name} | {s:.2f} | {mb / s:.0f} | {args.records / s:,.0f} | {rss:.0f} |")
    ft = statistics.median(s for s, _ in rows["ftprep ingest + format checks"])
    print(f"\nftprep / duckdb raw read: {ft / base:.1f}x")


if __name__ == "__main__":
    main()
