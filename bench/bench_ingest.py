"""Ingest + format checks on N synthetic chat records (default 1M, ~200 MB of JSONL).

Side by side in one run: the raw DuckDB ``read_json`` of the same file (the floor a user would
compare against), and ``ftprep audit --check format`` (ingest + every format check, cold cache).
Reports wall time, throughput and peak RSS (each measured in a fresh subprocess).

    python bench/bench_ingest.py [--records 1000000] [--repeats 3]
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
    """Run code in a fresh interpreter; returns (seconds, peak RSS MB)."""
    wrapper = (
        "import time, resource\nt0 = time.perf_counter()\n"
        + code
        + "\nprint(time.perf_counter() - t0, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)"
    )
    out = subprocess.run(
        [sys.executable, "-c", wrapper], capture_output=True, text=True, check=True
    )
    secs, rss = out.stdout.strip().splitlines()[-1].split()
    return float(secs), float(rss)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--repeats", type=int, default=3)
    args = ap.parse_args()
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
