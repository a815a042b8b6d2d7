"""Benchmark: leakage detection vs a datasketch MinHash LSH pipeline and a 13-gram pass.

Training set: Alpaca-cleaned records recombined to ``--train`` records (default 200k) with
planted leaks of evaluation items (exact copies with case/whitespace changes, light edits,
light edits buried inside a longer record, GSM8K rephrasings from llm-decontaminator, buried
rephrasings). Evaluation set: GSM8K test + MMLU test + HumanEval (>= 10k items).

Measured side by side in one run:
* ours, whole leakage search (exact + containment + 13-gram + semantic) on the full set;
* ours, lexical stages only (exact + containment + 13-gram);
* ours, numpy MinHash LSH (whole-record Jaccard) on the full set;
* datasketch MinHashLSH (same shingles, threshold 0.5, 128 permutations) and a pure-Python
  13-gram decontamination pass (lm-eval-harness style) on a ``--subset`` of the training set
  (they are too slow for 200k here), with ours on the same subset;
* hard negatives: GSM8K train questions against GSM8K test (same style, different problems).

Usage: ``PYTHONPATH=src python bench/bench_contamination.py [--train 200000] [--write]``
(``--write`` replaces the ``## Contamination`` section of docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import csv
import gzip
import itertools
import json
import os
import platform
import random
import re
import statistics
import subprocess
import time
from pathlib import Path

from _machine import cpu_model
from ftprep.contamination.detect import (
    LeakParams,
    RefSet,
    TrainSide,
    embed_distinct,
    find_leaks,
    find_leaks_many,
)
from ftprep.contamination.minhash import (
    MinHasher,
    band_keys,
    choose_bands,
    estimated_jaccard,
    query_pairs,
)
from ftprep.contamination.plant import bury, light_edit
from ftprep.contamination.text import ngram_hashes, tokenize

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data"


def load_eval() -> tuple[list[str], list[str], list[str]]:
    """(input, input + answer, benchmark name) of every item."""
    inp, full, name = [], [], []
    for line in (DATA / "benchmarks/gsm8k/test.jsonl").open():
        d = json.loads(line)
        inp.append(d["question"])
        full.append(d["question"] + "\n\n" + d["answer"])
        name.append("gsm8k")
    for f in sorted((DATA / "benchmarks/mmlu/test").glob("*.csv")):
        rows = list(csv.reader(f.open(encoding="utf-8")))
        for r in rows[1:]:
            q = r[0] + "\n" + "\n".join(f"{c}. {t}" for c, t in zip("ABCD", r[1:5], strict=False))
            inp.append(q)
            full.append(q + "\nAnswer: " + r[5])
            name.append("mmlu")
    with gzip.open(DATA / "benchmarks/humaneval/HumanEval.jsonl.gz", "rt") as fh:
        for line in fh:
            d = json.loads(line)
            inp.append(d["prompt"])
            full.append(d["prompt"] + d["canonical_solution"])
            name.append("humaneval")
    return inp, full, name


def load_background(n: int, seed: int) -> tuple[list[str], list[str]]:
    recs = json.loads((DATA / "sft/alpaca_cleaned/alpaca_data_cleaned_2023-03-29.json").read_text())
    rng = random.Random(seed)
    prompts, outs = [], []
    m = len(recs)
    for i in range(n):
        a = recs[i % m]
        b = recs[(i * 7919 + i // m) % m] if i >= m else a
        prompts.append(a["instruction"] + ("\n" + a["input"] if a["input"] else ""))
        outs.append(b["output"] if i < m else b["output"] + " " + rng.choice(recs)["output"][:200])
    return prompts, outs


def rephrased_gsm8k() -> list[str]:
    out = []
    for line in (DATA / "benchmarks/llm_decontaminator/rephrase_gsm8k.jsonl").open():
        t = json.loads(line)["text"]
        out.append(t.split("\nAnswer:")[0].removeprefix("Question: "))
    return out


def plant(
    prompts: list[str], outs: list[str], ev: list[str], names: list[str], seed: int, per_kind: int
) -> dict[int, tuple[str, int]]:
    """Overwrite some training records with leaks; returns row -> (kind, eval item)."""
    rng = random.Random(seed)
    n = len(prompts)
    rows = rng.sample(range(n), 5 * per_kind)
    reph = rephrased_gsm8k()
    gsm = [i for i, x in enumerate(names) if x == "gsm8k"]
    pool = rng.sample(range(len(ev)), 3 * per_kind)
    truth: dict[int, tuple[str, int]] = {}
    for k, row in enumerate(rows):
        kind = ("exact", "near", "buried_near", "paraphrase", "buried_paraphrase")[k // per_kind]
        if kind in ("paraphrase", "buried_paraphrase"):
            item = gsm[(k * 37) % len(gsm)]
            text = reph[item]  # GSM8K items come first in the eval set, aligned with reph
        else:
            item = pool[k]
            text = ev[item]
            if kind == "exact":
                text = "  " + text.upper().replace(" ", "   ") + " "
            else:
                text = light_edit(text, seed=k, edit_rate=0.08)
        if kind.startswith("buried"):
            prompts[row] = bury(text, prompts[row], outs[(row + 1) % n][:400])
        else:
            prompts[row] = text
        truth[row] = (kind, item)
    return truth


def score(
    found: dict[int, set[int]], truth: dict[int, tuple[str, int]], n: int
) -> dict[str, float]:
    out: dict[str, float] = {}
    for kind in ("exact", "near", "buried_near", "paraphrase", "buried_paraphrase"):
        rows = [r for r, (k, _) in truth.items() if k == kind]
        out[kind] = sum(truth[r][1] in found.get(r, set()) for r in rows) / max(1, len(rows))
    fa = sum(1 for r in found if r not in truth)
    out["false_alarm_rate"] = fa / max(1, n - len(truth))
    out["false_alarms"] = fa
    return out


def _row(
    found: dict[int, set[int]], truth: dict[int, tuple[str, int]], n: int, seconds: float
) -> dict[str, float]:
    """Recall per planted kind and false alarms (``score``), plus time and throughput."""
    return {**score(found, truth, n), "seconds": seconds, "records_per_s": n / seconds}


def search_all(
    prompts: list[str],
    full: list[str],
    ev: list[str],
    ev_full: list[str],
    names: list[str],
    params: LeakParams,
    embed=None,
):  # type: ignore[no-untyped-def]
    """The whole leakage check as the check runs it: one search of every benchmark at once
    (``find_leaks_many``: one lexical pass over the training side, attributed back to each
    benchmark; paraphrase thresholds per benchmark); item indices mapped back to the
    concatenated eval set. Returns (found: train row -> global items, stage seconds,
    thresholds)."""
    secs: dict[str, float] = {}
    t0 = time.perf_counter()
    side = TrainSide({"prompt": prompts, "full": full})
    side.tokens("full")
    secs["tokenize train"] = time.perf_counter() - t0
    train_emb = None
    if embed is not None and params.semantic:
        t0 = time.perf_counter()
        train_emb = embed_distinct(embed, prompts)  # as the check's cached signal does
        secs["embed train"] = time.perf_counter() - t0
    benches = sorted(set(names))
    idx = {b: [i for i, x in enumerate(names) if x == b] for b in benches}
    multi = find_leaks_many(
        {"prompt": prompts, "full": full},
        [RefSet([ev[i] for i in idx[b]], [ev_full[i] for i in idx[b]]) for b in benches],
        params,
        embed=embed,
        train_emb=train_emb,
        side=side,
    )
    for k, v in multi.seconds.items():
        secs[k] = secs.get(k, 0.0) + v
    found: dict[int, set[int]] = {}
    thresholds = {}
    for b, rep in zip(benches, multi.reports, strict=True):
        thresholds[b] = rep.threshold
        for k, v in rep.seconds.items():
            secs[k] = secs.get(k, 0.0) + v
        for lk in rep.leaks:
            found.setdefault(lk.train, set()).add(idx[b][lk.item])
    return found, secs, thresholds


def leaks_to_found(leaks, categories=None) -> dict[int, set[int]]:  # type: ignore[no-untyped-def]
    found: dict[int, set[int]] = {}
    for lk in leaks:
        if categories is None or lk.category in categories:
            found.setdefault(lk.train, set()).add(lk.item)
    return found


def ours_minhash(
    train_full: list[str], ev: list[str], threshold: float = 0.5, num_perm: int = 64
) -> tuple[dict[int, set[int]], float]:
    t0 = time.perf_counter()
    bands, rows = choose_bands(num_perm, threshold, 0.99)
    mh = MinHasher(num_perm)
    et = tokenize(ev)
    eh, eo = ngram_hashes(et, 2, short=True)
    es = mh.signatures(eh, eo, et.n_texts)
    tt = tokenize(train_full)
    th, to = ngram_hashes(tt, 2, short=True)
    ts = mh.signatures(th, to, tt.n_texts)
    q, i = query_pairs(band_keys(es, bands, rows), band_keys(ts, bands, rows))
    keep = estimated_jaccard(ts[q], es[i]) >= threshold
    found: dict[int, set[int]] = {}
    for a, b in zip(q[keep].tolist(), i[keep].tolist(), strict=True):
        found.setdefault(a, set()).add(b)
    return found, time.perf_counter() - t0


_W = re.compile(r"[^\W_]+")


def _words(t: str) -> list[str]:
    return _W.findall(t.lower())


def datasketch_pipeline(
    train_full: list[str], ev: list[str], threshold: float = 0.5, num_perm: int = 128
) -> tuple[dict[int, set[int]], float]:
    from datasketch import MinHash, MinHashLSH

    t0 = time.perf_counter()
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    for j, t in enumerate(ev):
        w = _words(t)
        m = MinHash(num_perm=num_perm)
        m.update_batch([f"{a} {b}".encode() for a, b in itertools.pairwise(w)] or [t.encode()])
        lsh.insert(str(j), m)
    found: dict[int, set[int]] = {}
    for r, t in enumerate(train_full):
        w = _words(t)
        m = MinHash(num_perm=num_perm)
        m.update_batch([f"{a} {b}".encode() for a, b in itertools.pairwise(w)] or [t.encode()])
        hits = lsh.query(m)
        if hits:
            found[r] = {int(h) for h in hits}
    return found, time.perf_counter() - t0


def ngram13_pass(
    train_full: list[str], ev_full: list[str], n: int = 13
) -> tuple[dict[int, set[int]], float]:
    t0 = time.perf_counter()
    index: dict[tuple[str, ...], set[int]] = {}
    for j, t in enumerate(ev_full):
        w = _words(t)
        for k in range(len(w) - n + 1):
            index.setdefault(tuple(w[k : k + n]), set()).add(j)
    found: dict[int, set[int]] = {}
    for r, t in enumerate(train_full):
        w = _words(t)
        for k in range(len(w) - n + 1):
            hit = index.get(tuple(w[k : k + n]))
            if hit and len(hit) <= 10:
                found.setdefault(r, set()).update(hit)
    return found, time.perf_counter() - t0


def machine() -> str:
    cpu = cpu_model()
    return f"{os.cpu_count()} cores (nproc {subprocess.run(['nproc'], capture_output=True, text=True).stdout.strip()}), {cpu}, Python {platform.python_version()}, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--train", type=int, default=200_000)
    ap.add_argument("--subset", type=int, default=20_000)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--per-kind", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--write", action="store_true")
    ap.add_argument(
        "--eval", type=int, default=0, help="keep GSM8K + HumanEval and MMLU up to N items"
    )
    args = ap.parse_args()
    from ftprep.signals.embeddings import get_embedder

    emb = get_embedder("static")
    ev, ev_full, names = load_eval()
    if args.eval:
        other = sum(1 for b in names if b != "mmlu")
        mmlu = [i for i, b in enumerate(names) if b == "mmlu"]
        keep_mmlu = set(random.Random(args.seed).sample(mmlu, max(0, args.eval - other)))
        keep = [i for i, b in enumerate(names) if b != "mmlu" or i in keep_mmlu]
        ev, ev_full, names = ([x[i] for i in keep] for x in (ev, ev_full, names))
    prompts, outs = load_background(args.train, args.seed)
    truth = plant(prompts, outs, ev, names, args.seed, args.per_kind)
    full = [p + "\n\n" + o for p, o in zip(prompts, outs, strict=True)]
    n = len(full)
    load0 = os.getloadavg()
    print(
        f"train {n:,} records ({len(set(prompts)):,} distinct prompts, {len(set(full)):,} "
        f"distinct records), eval {len(ev):,} items, planted {len(truth)}; "
        f"load average {load0[0]:.1f}"
    )
    res: dict[str, dict[str, float]] = {}

    # the whole check ``--repeats`` times: the median (single runs on this shared machine vary
    # by up to 1.3x at the same load)
    t_runs: list[float] = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        f1, stage_secs, thr = search_all(
            prompts, full, ev, ev_full, names, LeakParams(), embed=emb.encode
        )
        t_runs.append(time.perf_counter() - t0)
    t_full = statistics.median(t_runs)
    res["ours: whole search (exact+containment+13-gram+semantic)"] = _row(f1, truth, n, t_full)
    load1 = os.getloadavg()
    print(
        f"WHOLE LEAKAGE CHECK: {n:,} training records against {len(ev):,} eval items in "
        f"{t_full:.1f} s = {n / t_full:,.0f} records/s, median of {len(t_runs)} runs "
        f"({', '.join(f'{x:.1f}' for x in t_runs)} s; load average {load1[0]:.1f})",
        flush=True,
    )
    print("stage seconds", {k: round(v, 2) for k, v in stage_secs.items()}, "thresholds", thr)
    t0 = time.perf_counter()
    f2, _, _ = search_all(prompts, full, ev, ev_full, names, LeakParams(semantic=False))
    t_lex = time.perf_counter() - t0
    res["ours: lexical stages only"] = _row(f2, truth, n, t_lex)
    f_mh, t_mh = ours_minhash(full, ev)
    res["ours: numpy MinHash LSH (Jaccard>=0.5)"] = _row(f_mh, truth, n, t_mh)
    # subset for the slow baselines: all planted rows + background
    rng = random.Random(args.seed)
    bg = [r for r in rng.sample(range(n), min(n, args.subset + len(truth))) if r not in truth]
    sub = sorted(set(truth) | set(bg[: args.subset - len(truth)]))
    sub_full = [full[r] for r in sub]
    sub_truth = {k: truth[r] for k, r in enumerate(sub) if r in truth}
    ns = len(sub)
    # ours and datasketch alternately, ``--repeats`` times each: the median of each side and
    # the median of the per-round ratios (a noisy machine slows single runs by up to 2x)
    t3s: list[float] = []
    t5s: list[float] = []
    for _ in range(args.repeats):
        t0 = time.perf_counter()
        f3, _, _ = search_all(
            [prompts[r] for r in sub], sub_full, ev, ev_full, names, LeakParams(semantic=False)
        )
        t3s.append(time.perf_counter() - t0)
        f5, t5 = datasketch_pipeline(sub_full, ev)
        t5s.append(t5)
    t3, t5 = statistics.median(t3s), statistics.median(t5s)
    ratio = statistics.median(b / a for a, b in zip(t3s, t5s, strict=True))
    compare = (
        f"Lexical stages (exact + containment + 13-gram) vs the datasketch MinHash pipeline on the "
        f"same {ns:,}-record subset, {args.repeats} alternating runs each: **median "
        f"{ratio:.1f}x faster** (ours {', '.join(f'{x:.1f}' for x in t3s)} s; datasketch "
        f"{', '.join(f'{x:.1f}' for x in t5s)} s)."
    )
    print(compare, flush=True)
    res[f"subset {ns:,}: ours lexical stages"] = _row(f3, sub_truth, ns, t3)
    f4, t4 = ours_minhash(sub_full, ev)
    res[f"subset {ns:,}: ours numpy MinHash LSH"] = _row(f4, sub_truth, ns, t4)
    res[f"subset {ns:,}: datasketch MinHashLSH (t=0.5, 128 perm)"] = _row(f5, sub_truth, ns, t5)
    f6, t6 = ngram13_pass(sub_full, ev_full)
    res[f"subset {ns:,}: 13-gram pass (Python, lm-eval style)"] = _row(f6, sub_truth, ns, t6)
    # hard negatives and the paraphrase acceptance set
    gsm_test = [x for x, b in zip(ev, names, strict=True) if b == "gsm8k"]
    gsm_train = [json.loads(x)["question"] for x in (DATA / "benchmarks/gsm8k/train.jsonl").open()]
    reph = rephrased_gsm8k()
    t0 = time.perf_counter()
    rp = find_leaks(
        {"prompt": reph, "full": reph}, gsm_test, gsm_test, LeakParams(), embed=emb.encode
    )
    hn = find_leaks(
        {"prompt": gsm_train, "full": gsm_train}, gsm_test, gsm_test, LeakParams(), embed=emb.encode
    )
    t7 = time.perf_counter() - t0
    # same-style unrelated items for the near-duplicate rule: MMLU dev questions vs MMLU test
    # (the lexical stages; dev holds a few true copies of test items, listed by kind)
    dev = []
    for f in sorted((DATA / "benchmarks/mmlu/dev").glob("*.csv")):
        for r in list(csv.reader(f.open(encoding="utf-8")))[1:]:
            dev.append(
                r[0] + "\n" + "\n".join(f"{c}. {t}" for c, t in zip("ABCD", r[1:5], strict=False))
            )
    mm = [x for x, b in zip(ev, names, strict=True) if b == "mmlu"]
    dv = find_leaks({"prompt": dev, "full": dev}, mm, mm, LeakParams(semantic=False))
    by_method: dict[str, int] = {}
    for lk in dv.leaks:
        key = "near (character grams)" if "character" in lk.detail else lk.method
        by_method[key] = by_method.get(key, 0) + 1
    para = {
        "mmlu_dev_items": len(dev),
        "mmlu_dev_flagged": len({lk.train for lk in dv.leaks}),
        "mmlu_dev_by_method": by_method,
        "gsm8k_train_lexical_flags": len(
            {lk.train for lk in hn.leaks if lk.category != "paraphrase"}
        ),
        "paraphrase_recall": len({lk.train for lk in rp.leaks if lk.train == lk.item}) / len(reph),
        "hard_negative_flag_rate": len({lk.train for lk in hn.leaks}) / len(gsm_train),
        "hard_negative_paraphrase_flag_rate": len(
            {lk.train for lk in hn.leaks if lk.category == "paraphrase"}
        )
        / len(gsm_train),
        "threshold": rp.threshold,
        "seconds": t7,
    }
    print(json.dumps(res, indent=1))
    print(json.dumps(para, indent=1))
    if args.write:
        write_section(
            res,
            para,
            n,
            len(ev),
            len(truth),
            t_runs,
            stage_secs,
            (load0[0], load1[0]),
            args,
            compare,
        )


def write_section(res, para, n, n_ev, n_planted, t_runs, stage_secs, loads, args, compare) -> None:  # type: ignore[no-untyped-def]
    t_full = statistics.median(t_runs)
    cols = [
        "exact",
        "near",
        "buried_near",
        "paraphrase",
        "buried_paraphrase",
        "false_alarm_rate",
        "records_per_s",
        "seconds",
    ]
    lines = [
        "## Contamination",
        "",
        f"`PYTHONPATH=src flock /tmp/ftprep-bench.lock python bench/bench_contamination.py "
        f"--train {args.train} --eval {args.eval} --write` — {machine()}; load average "
        f"{loads[0]:.1f} before the whole search, {loads[1]:.1f} after it.",
        "",
        f"**Whole leakage check: {n / t_full:,.0f} training records/s** ({n:,} records against "
        f"{n_ev:,} eval items in {t_full:.1f} s, the median of {len(t_runs)} runs: "
        f"{', '.join(f'{x:.1f}' for x in t_runs)} s — the first run in a fresh process is the "
        "slowest, every stage alike: first-touch memory, not one-off loading).",
        f"Training: {n:,} records (Alpaca-cleaned recombined) with {n_planted} planted leaks; "
        f"eval: {n_ev:,} items (GSM8K test + MMLU test + HumanEval). Recall per planted kind, "
        "false-alarm rate = non-planted records flagged. Static embeddings (`static`).",
        "",
        "| pipeline | " + " | ".join(cols) + " |",
        "|---" * (len(cols) + 1) + "|",
    ]
    for name, r in res.items():
        cells = []
        for c in cols:
            v = r.get(c, float("nan"))
            cells.append(
                f"{v:,.0f}"
                if c in ("records_per_s",)
                else f"{v:.1f}"
                if c == "seconds"
                else f"{v:.4f}"
                if c == "false_alarm_rate"
                else f"{v:.3f}"
            )
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        compare,
        "",
        "Stage seconds of the whole search: "
        + ", ".join(f"{k} {v:.1f}" for k, v in stage_secs.items())
        + ".",
        "",
        f"Paraphrase acceptance set (llm-decontaminator rephrased GSM8K test, 1,319 items) vs hard "
        f"negatives (GSM8K train questions, 7,473, against GSM8K test): recall "
        f"{para['paraphrase_recall']:.3f}; hard negatives flagged {para['hard_negative_flag_rate']:.4f} "
        f"(paraphrase stage alone {para['hard_negative_paraphrase_flag_rate']:.4f}); calibrated "
        f"threshold {para['threshold']:.2f}.",
        "",
        f"Same-style items for the near-duplicate rule (lexical stages): MMLU dev questions "
        f"({para['mmlu_dev_items']}) against MMLU test: {para['mmlu_dev_flagged']} flagged "
        f"({para['mmlu_dev_by_method']}); GSM8K train questions against GSM8K test: "
        f"{para['gsm8k_train_lexical_flags']} flagged by the lexical stages.",
        "",
    ]
    path = ROOT / "docs" / "benchmarks.md"
    text = path.read_text() if path.exists() else "# Benchmarks\n\n"
    section = "\n".join(lines)
    m = re.search(r"^## Contamination\n.*?(?=^## |\Z)", text, flags=re.S | re.M)
    if m:  # the hand-written notes at the end of the section are kept
        notes = re.search(r"^Notes \(contamination.*", m.group(0), flags=re.S | re.M)
        if notes:
            section += "\n" + notes.group(0).rstrip("\n") + "\n\n"
    text = (
        text[: m.start()] + section + text[m.end() :] if m else text.rstrip("\n") + "\n\n" + section
    )
    path.write_text(text)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
