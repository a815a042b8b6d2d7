"""Benchmark: distribution.coverage when training carries labels (issue 7).

    PYTHONPATH=src python bench/bench_distribution_labels.py [--part ratios|uncovered|all]
        [--choices 6] [--datasets clinc,hwu,banking] [--modes none,auto,closed] [--oos]

Uncovered (``--part uncovered``): training = 7 of 10 domains with their intent labels,
production = the test split of all domains (+ CLINC150's out-of-scope queries); the coverage
score three ways on the same embeddings in the same run: session 3's (no label evidence,
``pseudo_labels: 0``), the default without labels (``label_confidence`` over k-means clusters of
training as stand-in labels) and with the intent labels. Domain choices of bench_distribution.py;
flags at the default ``fpr``.

Ratios (``--part ratios``):

Intent-detection training sets as a user would give them to ftprep: one JSONL record per
utterance, ``prompt`` = the utterance, ``completion`` = the intent name; production = the test
split's utterances (inputs only). 3 domains (CLINC150 domains, hwu64 scenarios, banking77 intents
grouped at random into 10 "domains") are kept at 10% in training. Each case runs the real
``ftprep.audit`` (``distribution.coverage`` only) twice, with ``labels: none`` (kNN density-ratio
weights only) and the default ``labels: auto`` (the completions are detected as a closed label
set; weights = the calibrated label-shift weights), and reads the importance weights from
``artifacts/distribution.json``. Estimated ratio of a domain = mean weight of its training
examples; factor = max(est/truth, truth/est), worst over the 3 downsampled domains.
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sklearn.metrics import roc_auc_score

import ftprep
from bench_distribution import DATA, Embeds, banking_intents, clinc_rows, domain_choices
from ftprep.distribution.coverage import CoverageParams, coverage_scores

MISSING = {
    "clinc": [
        ["credit_cards", "home", "small_talk"],
        ["banking", "travel", "meta"],
        ["home", "kitchen_and_dining", "travel"],
        ["banking", "travel", "work"],
        ["home", "meta", "work"],
    ],
    "hwu": [["alarm", "cooking", "transport"], ["iot", "lists", "recommendation"]],
    "banking": [["group0", "group1", "group2"], ["group3", "group4", "group7"]],
}

FIXED = {
    "clinc": [["banking", "travel", "meta"], ["credit_cards", "home", "work"]],
    "hwu": [["alarm", "music", "qa"], ["news", "qa", "takeaway"]],
    "banking": [["group0", "group4", "group6"], ["group5", "group6", "group7"]],
}


def clinc() -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    """CLINC150 (text, intent, domain), in-scope test queries only."""
    tr, te = clinc_rows()
    return tr, [r for r in te if r[2] != "oos"]


def hwu() -> tuple[list[tuple[str, str, str]], list[tuple[str, str, str]]]:
    def rd(s: str) -> list[tuple[str, str, str]]:
        texts = (DATA / f"hwu64/{s}.seq.in").read_text().splitlines()
        labs = (DATA / f"hwu64/{s}.label").read_text().splitlines()
        return [(t, lab, lab.split("_")[0]) for t, lab in zip(texts, labs, strict=True)]

    return rd("train"), rd("test") + rd("valid")


LOADERS = {"clinc": clinc, "hwu": hwu, "banking": banking_intents}


# audit modes: the check's labels setting, and extra check parameters
MODES = {
    "none": "labels: none",
    "auto": "labels: auto",
    # session 8's estimate: every production input in the EM
    "closed": "labels: auto, label_shift_open_min_confidence: 0",
}


def write_project(root: Path, train: list[dict], prod: list, checks: str = "") -> None:
    """A project of ``train`` records (ids t0, t1, …), production = the texts of ``prod``
    (rows ``(text, …)``; ids p0, p1, …) and ``checks`` (YAML lines under ``checks:``)."""
    shutil.rmtree(root, ignore_errors=True)
    (root / "data").mkdir(parents=True)
    with open(root / "data/train.jsonl", "w", encoding="utf-8") as f:
        for i, rec in enumerate(train):
            f.write(json.dumps({"id": f"t{i}", **rec}) + "\n")
    with open(root / "data/prod.jsonl", "w", encoding="utf-8") as f:
        for i, row in enumerate(prod):
            f.write(json.dumps({"id": f"p{i}", "text": row[0]}) + "\n")
    (root / "ftprep.yaml").write_text(
        "name: bench\nsources:\n  - name: main\n    path: data/train.jsonl\n    fields: {id: id}\n"
        "production:\n  path: data/prod.jsonl\n  fields: {id: id, input: text}\n"
        + (f"checks:\n{checks}" if checks else ""),
        encoding="utf-8",
    )


def run_case(root: Path, train: list, prod: list, labels: str) -> tuple[np.ndarray, float]:
    recs = [{"prompt": x, "completion": lab} for x, lab, _ in train]
    write_project(root, recs, prod, f"  distribution.coverage: {{{MODES[labels]}}}\n")
    t0 = time.perf_counter()
    ftprep.audit(root, only=["distribution.coverage"])
    secs = time.perf_counter() - t0
    art = json.loads((root / "out/audit/artifacts/distribution.json").read_text())
    w = art["importance_weights"]
    return np.array([w[f"t{i}"] for i in range(len(train))]), secs


def uncovered(names: list[str]) -> None:
    emb = Embeds("static")
    print(
        "| case | AUROC: session 3 / pseudo-labels / labels | flags recall / false alarms: "
        "session 3 | pseudo-labels | labels | seconds |"
    )
    print("|---|---|---|---|---|---|")
    for name in names:
        # CLINC150's production includes its out-of-scope queries
        tr, te = clinc_rows() if name == "clinc" else LOADERS[name]()
        for missing in MISSING[name]:
            t = [r for r in tr if r[2] not in missing]
            tt, pt = [r[0] for r in t], [r[0] for r in te]
            y = np.array([r[2] in [*missing, "oos"] for r in te])
            xt, xp = emb(tt), emb(pt)
            runs, secs = [], []
            for params, labels in (
                (CoverageParams(pseudo_labels=0), None),  # session 3: no label evidence
                (CoverageParams(), None),  # default without labels: k-means stand-ins
                (CoverageParams(), [r[1] for r in t]),  # the intent labels
            ):
                t0 = time.perf_counter()
                runs.append(coverage_scores(xt, xp, tt, pt, params, labels=labels))
                secs.append(time.perf_counter() - t0)
            aucs = " / ".join(f"{roc_auc_score(y, c.score):.3f}" for c in runs)
            flags = " | ".join(
                f"{c.flagged[y].mean():.3f} / {c.flagged[~y].mean():.3f}" for c in runs
            )
            print(
                f"| {name} without {', '.join(missing)} | {aucs} | {flags} | "
                f"{' / '.join(f'{v:.0f}' for v in secs)} |",
                flush=True,
            )


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--part", choices=("ratios", "uncovered", "all"), default="all")
    ap.add_argument("--choices", type=int, default=6)
    ap.add_argument("--datasets", default="clinc,hwu,banking")
    ap.add_argument(
        "--oos",
        action="store_true",
        help="CLINC150: production also holds the out-of-scope test queries (truth over in-scope)",
    )
    ap.add_argument("--modes", default="none,auto", help=f"audit modes among {', '.join(MODES)}")
    a = ap.parse_args()
    modes = a.modes.split(",")
    if a.part in ("uncovered", "all"):
        uncovered(a.datasets.split(","))
        print()
    if a.part == "uncovered":
        return
    summary = {}
    print(
        f"| dataset | downsampled | truth | {' | '.join(modes)} | factor {' / '.join(modes)} "
        f"| seconds {' / '.join(modes)} |"
    )
    print("|---" * (5 + len(modes)) + "|")  # dataset, downsampled, truth, modes, factor, seconds
    for name in a.datasets.split(","):
        tr, te = LOADERS[name]()
        if name == "clinc" and a.oos:
            te = te + [r for r in clinc_rows()[1] if r[2] == "oos"]
        doms = sorted({r[2] for r in tr})
        facs: dict[str, list[float]] = {m: [] for m in modes}
        for down in domain_choices(doms, FIXED[name], a.choices, 7):
            rng = np.random.default_rng(0)
            train = [r for r in tr if r[2] not in down or rng.random() < 0.1]
            dt = np.array([r[2] for r in train])
            dp = np.array([r[2] for r in te if r[2] != "oos"])
            truth = {d: (dp == d).mean() / (dt == d).mean() for d in down}
            est, secs = {}, {}
            with tempfile.TemporaryDirectory() as tmp:
                for mode in modes:
                    w, secs[mode] = run_case(Path(tmp) / mode, train, te, mode)
                    est[mode] = {d: float(w[dt == d].mean()) for d in down}
                    facs[mode].append(
                        max(max(est[mode][d] / truth[d], truth[d] / est[mode][d]) for d in down)
                    )

            def fmt(v: dict, down: list[str] = down) -> str:
                return " / ".join(f"{v[d]:.2f}" for d in down)

            print(
                f"| {name}{' + oos' if a.oos and name == 'clinc' else ''} | {', '.join(down)} | "
                f"{fmt(truth)} | {' | '.join(fmt(est[m]) for m in modes)} | "
                f"{' / '.join(f'{facs[m][-1]:.2f}' for m in modes)} | "
                f"{' / '.join(f'{secs[m]:.0f}' for m in modes)} |",
                flush=True,
            )
        summary[name] = {
            m: (float(np.mean(v)), float(np.max(v)), int(np.sum(np.array(v) <= 1.25)), len(v))
            for m, v in facs.items()
        }
    print()
    print("| dataset | mode | factor mean / worst | within 1.25 |")
    print("|---|---|---|---|")
    for name, s in summary.items():
        for m in modes:
            print(f"| {name} | {m} | {s[m][0]:.2f} / {s[m][1]:.2f} | {s[m][2]} of {s[m][3]} |")


if __name__ == "__main__":
    main()
