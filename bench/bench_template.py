"""Benchmark: training inputs wrapped in a prompt template that production inputs lack (issue 7).

    PYTHONPATH=src python bench/bench_template.py [--choices 3] [--datasets clinc,hwu]

SFT records often wrap the input in a template production inputs lack: an instruction (Alpaca
``instruction`` + ``input``), a field label and a cue line (``Query: <q>\nIntent:``), or a
one-line instruction ending in a colon before the query (``Classify …: <q>``), while the
production log holds bare queries. Each case runs the real ``ftprep.audit`` (the distribution
checks) on the same data in seven ways: training as bare queries (``plain``, the reference), and
each template compared as it is (``strip_templates: false``, what ftprep did before) and with the
default (template lines and labels taken out, ``ftprep.distribution.template``). Training = 7 of
10 domains, answers = the intent names (labels are detected), production = the test split of all
domains (+ CLINC150's out-of-scope queries); uncovered = missing domains + out-of-scope. Reports
the uncovered flags' recall and false alarms, the AUROC of ``uncovered_scores``, the shift test's
AUC and its WARN, and seconds.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from sklearn.metrics import roc_auc_score

import ftprep
from bench_distribution import clinc_rows
from bench_distribution_labels import LOADERS, MISSING, write_project

INSTRUCTION = (
    "Classify the customer's request into one of the supported intents and answer with the "
    "intent name only."
)
LEAD = "Classify the intent of the following customer request, answering with its name only:"
NO_STRIP = (
    "  distribution.coverage: {strip_templates: false}\n"
    "  distribution.shift: {strip_templates: false}\n"
)


def alpaca(x: str, lab: str) -> dict:
    """The query under a fixed instruction (``instruction`` + ``input``)."""
    return {"instruction": INSTRUCTION, "input": x, "output": lab}


def labelled(x: str, lab: str) -> dict:
    """A prompt/completion record whose prompt labels the query's line and ends in a cue line."""
    return {"prompt": f"Query: {x}\nIntent:", "completion": f" {lab}"}


def lead(x: str, lab: str) -> dict:
    """A one-line prompt: an instruction ending in a colon, then the query (session 14)."""
    return {"prompt": f"{LEAD} {x}", "completion": f" {lab}"}


def bare(x: str, lab: str) -> dict:
    return {"instruction": x, "output": lab}


# mode: (record maker, extra check settings)
MODES = {
    "plain": (bare, ""),
    "instruction, compared as is": (alpaca, NO_STRIP),
    "instruction, templates stripped": (alpaca, ""),
    "'Query: …' + 'Intent:' line, compared as is": (labelled, NO_STRIP),
    "'Query: …' + 'Intent:' line, templates stripped": (labelled, ""),
    "one-line instruction + ':' + query, compared as is": (lead, NO_STRIP),
    "one-line instruction + ':' + query, templates stripped": (lead, ""),
}


def run(root: Path, train: list, prod: list, make: Any, checks: str) -> dict:
    write_project(root, [make(x, lab) for x, lab, _ in train], prod, checks)
    t0 = time.perf_counter()
    ftprep.audit(root, only=["distribution"])
    secs = time.perf_counter() - t0
    art = json.loads((root / "out/audit/artifacts/distribution.json").read_text())
    checks_out = {
        c["check"]: c for c in json.loads((root / "out/audit/findings.json").read_text())["checks"]
    }
    return {"art": art, "shift": checks_out["distribution.shift"], "secs": secs}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--choices", type=int, default=3)
    ap.add_argument("--datasets", default="clinc,hwu")
    a = ap.parse_args()
    print(
        "| case | mode | flags recall / false alarms | AUROC | shift AUC (WARN) | seconds |\n"
        "|---|---|---|---|---|---|"
    )
    for name in a.datasets.split(","):
        tr, te = clinc_rows() if name == "clinc" else LOADERS[name]()
        for missing in MISSING[name][: a.choices]:
            train = [r for r in tr if r[2] not in missing]
            y = np.array([r[2] in [*missing, "oos"] for r in te])
            ids = [f"p{i}" for i in range(len(te))]
            with tempfile.TemporaryDirectory() as tmp:
                for k, (mode, (make, checks)) in enumerate(MODES.items()):
                    out = run(Path(tmp) / str(k), train, te, make, checks)
                    art = out["art"]
                    fl = set(art["uncovered_production_ids"])
                    f = np.array([i in fl for i in ids])
                    s = np.array([art["uncovered_scores"][i] for i in ids])
                    sh = out["shift"]
                    print(
                        f"| {name} without {', '.join(missing)} | {mode} | "
                        f"{f[y].mean():.3f} / {f[~y].mean():.3f} | {roc_auc_score(y, s):.3f} | "
                        f"{sh['values']['auc']:.3f} ({sh['status']}) | {out['secs']:.0f} |",
                        flush=True,
                    )


if __name__ == "__main__":
    main()
