"""Benchmark: the word-alignment test that confirms short near-duplicate leaks, on real text.

Items: every TruthfulQA question, MMLU question stem and (40 per task) BBH input of at most 12
words. Records: Alpaca-cleaned, LIMA and AlpaGasus-Dolly (instruction + input + output).

* **Recall** on ``--items`` sampled items, each edited two ways — ``plant.light_edit`` (typos,
  adjacent swaps, case/punctuation) and a harsher generator written for this bench (typos of
  four kinds, swaps of any two words, upper-casing) — alone and buried between two pieces of
  Alpaca text.
* **False alarms** on ``--pairs`` sampled unrelated pairs: an item and a real record that share
  at least two of the item's rare words (document frequency <= 3,000) — the pairs a candidate
  search would hand to the confirmation test. A confirmed pair here is a false alarm unless the
  record really contains the question (the confirmed pairs are printed to be read).

Side by side: ftprep's ``contains_item`` and the character 5-gram containment rule (share of
the item's character 5-grams found in the record >= 0.6) that a user would otherwise apply.

Usage: ``PYTHONPATH=src python bench/bench_fuzzy.py [--items 1500] [--pairs 30000]``
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import random
import time
from collections import Counter, defaultdict
from collections.abc import Callable
from pathlib import Path

from _machine import cpu_model
from ftprep.contamination.fuzzy import contains_item, words_batch
from ftprep.contamination.plant import bury, light_edit

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
KEYS = "qwertyuiopasdfghjklzxcvbnm"


def short_items() -> list[str]:
    items = [
        r["Question"]
        for r in csv.DictReader(
            (DATA / "benchmarks/truthfulqa/TruthfulQA.csv").open(encoding="utf-8")
        )
    ]
    for f in sorted((DATA / "benchmarks/mmlu/test").glob("*.csv")):
        items += [r[0] for r in list(csv.reader(f.open(encoding="utf-8")))[1:]]
    for f in sorted((DATA / "benchmarks/bbh").glob("*.json")):
        items += [e["input"] for e in json.loads(f.read_text())["examples"]][:40]
    return [t for t, w in zip(items, words_batch(items), strict=True) if 0 < len(w) <= 12]


def records() -> list[str]:
    alp = json.loads((DATA / "sft/alpaca_cleaned/alpaca_data_cleaned_2023-03-29.json").read_text())
    out = [f"{a['instruction']}\n{a['input']}\n{a['output']}" for a in alp]
    out += [
        f"{a['instruction']}\n{a['output']}"
        for a in json.loads((DATA / "sft/lima/lima.json").read_text())
    ]
    dolly = json.loads((DATA / "sft/alpagasus/dolly_3k.json").read_text())
    return out + [f"{a['instruction']}\n{a['input']}\n{a['output']}" for a in dolly]


def harsh_edit(text: str, rng: random.Random, rate: float = 0.1) -> str:
    def typo(w: str) -> str:
        if len(w) < 3:
            return w
        i, k = rng.randrange(len(w)), rng.randrange(4)
        if k == 0:
            return w[:i] + rng.choice(KEYS) + w[i + 1 :]
        if k == 1:
            return w[:i] + w[i + 1 :]
        if k == 2:
            return w[:i] + w[i] + w[i:]
        j = min(i + 1, len(w) - 1)
        c = list(w)
        c[i], c[j] = c[j], c[i]
        return "".join(c)

    words = text.split()
    for _ in range(max(1, round(rate * len(words)))):
        i, r = rng.randrange(len(words)), rng.random()
        if r < 0.4:
            words[i] = typo(words[i])
        elif r < 0.7 and len(words) > 2:
            j = rng.randrange(len(words))
            words[i], words[j] = words[j], words[i]
        else:
            words[i] = words[i].upper()
    return " ".join(words)


def char_containment(item: str, record: str, n: int = 5, threshold: float = 0.6) -> bool:
    a, b = " ".join(words_batch([item])[0]), " ".join(words_batch([record])[0])
    grams = {a[i : i + n] for i in range(max(1, len(a) - n + 1))}
    have = {b[i : i + n] for i in range(max(1, len(b) - n + 1))}
    return len(grams & have) / len(grams) >= threshold


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--items", type=int, default=1500)
    ap.add_argument("--pairs", type=int, default=30_000)
    ap.add_argument("--seed", type=int, default=0)
    args = ap.parse_args()
    rng = random.Random(args.seed)
    items, recs = short_items(), records()
    cases: list[tuple[str, str, str]] = []
    for k, t in enumerate(rng.sample(items, min(args.items, len(items)))):
        a, b = rng.sample(range(len(recs)), 2)
        light, harsh = light_edit(t, seed=k, edit_rate=0.08), harsh_edit(t, rng)
        cases += [("light", t, light), ("harsh", t, harsh)]
        cases.append(("light, buried", t, bury(light, recs[a][:400], recs[b][:400])))
        cases.append(
            ("harsh, buried", t, bury(harsh_edit(t, rng, 0.05), recs[a][:400], recs[b][:400]))
        )
    rw = words_batch(recs)
    df: Counter[str] = Counter()
    for w in rw:
        df.update(set(w))
    inv: dict[str, list[int]] = defaultdict(list)
    for r, w in enumerate(rw):
        for x in set(w):
            if df[x] <= 3000:
                inv[x].append(r)
    pairs: list[tuple[str, int]] = []
    for t, w in zip(items, words_batch(items), strict=True):
        rare = sorted({x for x in w if len(x) >= 3 and df[x] <= 3000}, key=lambda x: df[x])
        cnt: Counter[int] = Counter()
        for x in rare[:4]:
            cnt.update(inv[x])
        pairs += [(t, r) for r, c in cnt.items() if rare and c >= min(2, len(rare))]
    pairs = random.Random(args.seed + 1).sample(pairs, min(args.pairs, len(pairs)))
    rules: dict[str, Callable[[str, str], bool]] = {
        "ftprep contains_item": lambda i, r: contains_item(i, r, 16)[0],
        "character 5-gram containment >= 0.6": char_containment,
    }
    kinds = ["light", "harsh", "light, buried", "harsh, buried"]
    print(f"{len(items)} short items, {len(recs)} records, {len(pairs)} unrelated candidate pairs")
    print(
        f"machine: {os.cpu_count()} cores, {cpu_model()}, Python {platform.python_version()}, "
        f"load {os.getloadavg()[0]:.1f}"
    )
    print("| rule | " + " | ".join(kinds) + " | unrelated pairs confirmed | seconds |")
    print("|---|" + "---:|" * (len(kinds) + 2))
    for name, rule in rules.items():
        t0 = time.perf_counter()
        hit: Counter[str] = Counter()
        tot: Counter[str] = Counter()
        for kind, item, rec in cases:
            tot[kind] += 1
            hit[kind] += rule(item, rec)
        fa = [(i, r) for i, r in pairs if rule(i, recs[r])]
        cells = " | ".join(f"{hit[k] / tot[k]:.3f}" for k in kinds)
        print(f"| {name} | {cells} | {len(fa)} | {time.perf_counter() - t0:.0f} |")
        for i, r in fa[:15]:
            print(f"    {i[:70]!r} in {recs[r][:90]!r}")


if __name__ == "__main__":
    main()
