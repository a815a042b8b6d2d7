"""Benchmark of the review app (docs/benchmarks.md, section "Review app").

1. **Lost updates under concurrency.** ``R`` reviewers (threads) each work through the same
   ``N`` flagged items: load the item (and the version shown), think for a random moment, save a
   decision. Side by side: the app's write path (``Ledger.decide`` with ``expected_version``)
   and the naive last-write-wins path a spreadsheet or a simple form would give (the same call
   without the version). A *lost update* is a save reported as successful whose reviewer had
   not seen the value it replaced. Run on SQLite (WAL) and, when ``FTPREP_TEST_PG_URL`` is set,
   on PostgreSQL.
2. **Page latency at scale.** A workspace with ``--examples`` examples, 10% of them flagged, and
   three imported annotations per flagged example; median server time (Flask test client, no
   network) of the pages a reviewer uses, on SQLite and PostgreSQL.

    PYTHONPATH=src python bench/bench_review.py [--examples 100000] [--reviewers 4] [--items 200]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import quote

import sqlalchemy as sa

from ftprep.checks.base import Action, Decision
from ftprep.decisions import ConflictError, Ledger
from ftprep.examples import Example
from ftprep.review import db
from ftprep.review.app import create_app
from ftprep.review.demo import build_demo
from ftprep.store import make_engine

LABELS = ["refund", "shipping", "account", "billing", "other"]


def lost_updates(
    engine: sa.Engine, reviewers: int, items: int, optimistic: bool, seed: int, same_order: bool
) -> dict[str, Any]:
    ledger = Ledger(engine)
    check = f"bench.{uuid.uuid4().hex[:8]}"
    ledger.replace_auto(
        check, [Decision(f"i{k}", Action.REVIEW, "flag") for k in range(items)], run_id="bench"
    )
    # every successful write: (item, writer, version the writer saw, version written)
    writes: list[tuple[str, str, int, int]] = []
    conflicts = [0]
    lock = threading.Lock()

    def work(r: int) -> None:
        rng = random.Random(seed * 100 + r)
        order = [f"i{k}" for k in range(items)]
        if not same_order:
            rng.shuffle(order)
        for ex in order:
            seen = ledger.get(ex, check)
            assert seen is not None
            time.sleep(rng.random() * 0.002)  # reading the item
            try:
                e = db.retry_busy(
                    lambda ex=ex, seen=seen: ledger.decide(
                        ex,
                        check,
                        rng.choice(["include", "exclude"]),
                        f"r{r}",
                        expected_version=seen.version if optimistic else None,
                    )
                )
            except ConflictError:
                with lock:
                    conflicts[0] += 1
                continue
            with lock:
                writes.append((ex, f"r{r}", seen.version, e.version))

    t0 = time.perf_counter()
    threads = [threading.Thread(target=work, args=(r,)) for r in range(reviewers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - t0
    # a write is lost-blind when it replaced a version its writer had not seen
    blind = sum(1 for _, _, saw, wrote in writes if wrote != saw + 1)
    # cross-check with the history: every successful write is recorded exactly once
    hist = 0
    with engine.connect() as conn:
        from ftprep.decisions import history_t

        hist = conn.execute(
            sa.select(sa.func.count()).select_from(history_t).where(history_t.c.check_name == check)
        ).scalar_one()
    return {
        "saves": len(writes),
        "conflicts_shown": conflicts[0],
        "lost_updates": blind,
        "history_rows": int(hist),
        "seconds": elapsed,
        "saves_per_s": len(writes) / elapsed if elapsed else 0.0,
    }


def _csrf(html: str) -> str:
    m = re.search(r'name="csrf_token" value="([^"]+)"', html)
    assert m
    return m.group(1)


def latency(root: Path, database_url: str | None, n: int, repeats: int) -> dict[str, float]:
    rng = random.Random(0)
    exs = [
        Example(
            id=f"e{i:06d}",
            messages=[
                {
                    "role": "user",
                    "content": f"Customer message number {i} about order {rng.randint(1, 9999)}.",
                },
                {"role": "assistant", "content": rng.choice(LABELS)},
            ],
            source="s",
            label=rng.choice(LABELS),
            area=rng.choice(["refunds", "shipping", "account"]),
            spec_version="1",
        )
        for i in range(n)
    ]
    flagged = [e.id for e in exs[::10]]
    decisions: list[tuple[str, Decision]] = []
    for k, i in enumerate(flagged):
        check, action = [
            ("labels.agreement", Action.ESCALATE),
            ("labels.errors", Action.REVIEW),
            ("spec.quarantine", Action.QUARANTINE),
        ][k % 3]
        decisions.append((check, Decision(i, action, "bench", "benchmark flag")))
    votes = [(i, f"a{j}", rng.choice(LABELS), "") for i in flagged for j in range(3)]
    t0 = time.perf_counter()
    project = build_demo(
        root, examples=exs, decisions=decisions, votes=votes, database_url=database_url
    )
    setup = time.perf_counter() - t0
    engine = make_engine(database_url) if database_url else None
    from ftprep.store import Workspace

    ws_engine = engine or Workspace(project.workspace_dir).engine
    db.init_db(ws_engine)
    db.add_user(ws_engine, project.name, "sen", "senior", "benchmark-password")
    app = create_app(project, database_url=database_url)
    c = app.test_client()
    c.post(
        "/login",
        data={
            "username": "sen",
            "password": "benchmark-password",
            "csrf_token": _csrf(c.get("/login").text),
        },
    )
    esc = [i for (ch, d) in decisions if ch == "labels.agreement" for i in [d.example_id]]
    pages = {
        "overview /": lambda k: c.get("/"),
        "annotate list": lambda k: c.get("/annotate"),
        "escalations list": lambda k: c.get("/queue/escalations"),
        "escalation item": lambda k: c.get(
            "/queue/escalations/item",
            query_string={"id": esc[k % len(esc)], "check": "labels.agreement"},
        ),
        "quarantine item": lambda k: c.get(
            "/queue/quarantine/item",
            query_string={"id": flagged[2 + 3 * k], "check": "spec.quarantine"},
        ),
    }
    out: dict[str, float] = {"setup_s": setup}
    for name, fn in pages.items():
        fn(0)  # warm caches (table load)
        times = []
        for k in range(repeats):
            t = time.perf_counter()
            r = fn(k + 1)
            times.append(time.perf_counter() - t)
            assert r.status_code == 200, (name, r.status_code)
        out[name] = statistics.median(times) * 1000
    times = []
    for k in range(repeats):
        ex = esc[repeats + 1 + k]
        page = c.get(
            "/queue/escalations/item", query_string={"id": ex, "check": "labels.agreement"}
        )
        v = re.search(r'name="version" value="(\d+)"', page.text)
        assert v
        t = time.perf_counter()
        r = c.post(
            "/queue/escalations/item",
            data={
                "csrf_token": _csrf(page.text),
                "id": ex,
                "check": "labels.agreement",
                "version": v.group(1),
                "choice": "label",
                "label": "refund",
            },
        )
        times.append(time.perf_counter() - t)
        assert r.status_code == 302
    out["arbitrate POST"] = statistics.median(times) * 1000
    return out


def _pg_schema_url(base: str) -> tuple[str, str]:
    schema = f"bench_review_{uuid.uuid4().hex[:8]}"
    eng = make_engine(base)
    with eng.begin() as conn:
        conn.execute(sa.text(f'CREATE SCHEMA "{schema}"'))
    eng.dispose()
    sep = "&" if "?" in base else "?"
    return f"{base}{sep}options={quote(f'-csearch_path={schema}')}", schema


def _drop_schema(base: str, schema: str) -> None:
    eng = make_engine(base)
    with eng.begin() as conn:
        conn.execute(sa.text(f'DROP SCHEMA "{schema}" CASCADE'))
    eng.dispose()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--examples", type=int, default=100_000)
    ap.add_argument("--reviewers", type=int, default=4)
    ap.add_argument("--items", type=int, default=150)
    ap.add_argument("--repeats", type=int, default=15)
    args = ap.parse_args()
    pg = os.environ.get("FTPREP_TEST_PG_URL")
    backends: list[tuple[str, str | None]] = [("sqlite", None)] + (
        [("postgresql", pg)] if pg else []
    )
    print(f"# machine: nproc={os.cpu_count()}")
    print(f"\n## lost updates: {args.reviewers} reviewers x {args.items} shared items\n")
    print(
        "| backend | order | write path | saves | conflicts shown | lost updates | history rows "
        "| saves/s |"
    )
    print("|---|---|---|---|---|---|---|---|")
    for name, url, same, optimistic in (
        (n, u, same, opt) for n, u in backends for same in (True, False) for opt in (False, True)
    ):
        with tempfile.TemporaryDirectory() as tmp:
            schema = None
            if url:
                eng_url, schema = _pg_schema_url(url)
                engine = make_engine(eng_url)
            else:
                engine = make_engine(f"sqlite:///{Path(tmp) / 'b.db'}")
            res = lost_updates(
                engine, args.reviewers, args.items, optimistic, seed=1, same_order=same
            )
            engine.dispose()
            if url and schema:
                _drop_schema(url, schema)
        path = "expected_version (app)" if optimistic else "last write wins (naive)"
        order = "queue order" if same else "shuffled"
        print(
            f"| {name} | {order} | {path} | {res['saves']} | {res['conflicts_shown']} | "
            f"{res['lost_updates']} | {res['history_rows']} | {res['saves_per_s']:.0f} |"
        )
    print(
        f"\n## page latency, {args.examples:,} examples, 10% flagged, median of {args.repeats} (ms)\n"
    )
    rows: dict[str, dict[str, float]] = {}
    for name, url in backends:
        with tempfile.TemporaryDirectory() as tmp:
            schema = None
            eng_url = None
            if url:
                eng_url, schema = _pg_schema_url(url)
            rows[name] = latency(Path(tmp) / "proj", eng_url, args.examples, args.repeats)
            if url and schema:
                _drop_schema(url, schema)
    names = list(rows)
    print("| page | " + " | ".join(names) + " |")
    print("|---|" + "---|" * len(names))
    for page in rows[names[0]]:
        print(f"| {page} | " + " | ".join(f"{rows[n][page]:.1f}" for n in names) + " |")


if __name__ == "__main__":
    main()
