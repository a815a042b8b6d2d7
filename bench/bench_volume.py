"""Learning-curve benchmarks (failure mode 3), side by side with the baselines a user would
otherwise reach for.

    PYTHONPATH=src python bench/bench_volume.py [synthetic|real|e2e|all] [--quick]

* synthetic — curves ``err = a n^-b + c`` with known parameters, measured at the default
              fractions (1/8 .. 1 of N) with noise: error of the recovered asymptote, plateau and
              full-data metric. Baseline: the two-parameter power law ``err = a n^-b`` (a
              straight line in log-log space, the usual quick extrapolation).
* real      — banking77, clinc150 and clinc150's 10 domains (a coarse task) with the built-in proxy learner (logistic regression on
              the static prompt embeddings, the code ``ftprep curve`` runs): nested stratified
              stages 1/64 .. 1 of the training set, 3 repeats, validation = the official test
              split. Fit on the stages up to N/4 (and up to N/2), extrapolate to N, compare
              with the measured full-data accuracy. Baselines: two-parameter power law, and
              "no further gain" (the last measured value).
* e2e       — the user's path on banking77: ``ftprep audit --check volume`` + ``ftprep curve``
              (build, stages, proxy learner, fit, outputs), then a rerun that resumes.

Data: ``../shared/data`` (skipped when absent). Prints markdown tables.
"""

from __future__ import annotations

import csv
import json
import os
import sys
import time
from pathlib import Path

import numpy as np

from _machine import cpu_model
from bench_labels import _table  # the same markdown tables

DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
QUICK = "--quick" in sys.argv


def _machine() -> str:
    load = os.getloadavg()
    return (
        f"nproc {os.cpu_count()}, {cpu_model()}, load average {load[0]:.1f} {load[1]:.1f} "
        f"{load[2]:.1f} (machine shared), {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}"
    )


def _iv(iv: list[float | None], spec: str) -> str:
    return " – ".join("∞" if v is None else format(v, spec) for v in iv)


def _two_param(n: np.ndarray, err: np.ndarray) -> tuple[float, float]:
    """Baseline: err = a n^-b, least squares in log-log space."""
    slope, intercept = np.polyfit(np.log(n), np.log(np.maximum(err, 1e-9)), 1)
    return float(np.exp(intercept)), float(-slope)


# ============================================================================ synthetic
def bench_synthetic() -> str:
    from ftprep.volume.fit import PowerLaw, fit_curve

    rng = np.random.default_rng(0)
    cases = 40 if QUICK else 150
    default_fr = np.array([0.125, 0.25, 0.5, 1.0])
    rows = []
    for noise, repeats, fr in (
        (0.002, 3, default_fr),
        (0.005, 3, default_fr),
        (0.005, 1, default_fr),
        (0.005, 1, np.array([0.0625, *default_fr])),
    ):
        ours_c, base_c, ours_full, base_full, ours_pl, base_pl = [], [], [], [], [], []
        t0 = time.perf_counter()
        for _ in range(cases):
            big_n = float(rng.choice([2_000, 10_000, 50_000]))
            b = rng.uniform(0.3, 1.0)
            c = rng.uniform(0.02, 0.3)
            # plateau (delta 0.005) placed between N/4 and 4N: the regime where the answer matters
            plateau = big_n * 2 ** rng.uniform(-2, 2)
            a = 0.005 * plateau**b / (1 - 2**-b)
            law = PowerLaw(a, b, c)
            n = np.repeat(fr * big_n, repeats)
            err = np.clip(law.err(n) + rng.normal(0, noise, len(n)), 0, 1)
            fit = fit_curve(n, 1 - err, bootstrap=0)
            keep = n < big_n  # extrapolate the last stage from the smaller ones
            fit3 = fit_curve(n[keep], 1 - err[keep], bootstrap=0)
            a2, b2 = _two_param(
                np.unique(n[keep]), np.array([err[n == s].mean() for s in np.unique(n[keep])])
            )
            two = PowerLaw(a2, b2, 0.0)
            ours_c.append(abs(fit.law.c - c))
            base_c.append(c)  # the two-parameter law's asymptote is 0
            true_full = float(law.err(big_n))
            ours_full.append(abs(float(fit3.law.err(big_n)) - true_full))
            base_full.append(abs(float(two.err(big_n)) - true_full))
            ours_pl.append(abs(np.log2(fit.law.plateau_n(0.005) / plateau)))
            a2f, b2f = _two_param(
                np.unique(n), np.array([err[n == s].mean() for s in np.unique(n)])
            )
            base_pl.append(abs(np.log2(PowerLaw(a2f, b2f, 0.0).plateau_n(0.005) / plateau)))
        secs = time.perf_counter() - t0
        rows.append(
            [
                f"noise sd {noise}, {repeats} repeat(s), {len(fr)} sizes N/{round(1 / fr[0])}..N",
                float(np.median(ours_c)),
                float(np.median(base_c)),
                float(np.median(ours_full)),
                float(np.median(base_full)),
                f"{float(np.median(ours_pl)):.2f} / {np.mean(np.array(ours_pl) <= 1):.0%}",
                f"{float(np.median(base_pl)):.2f} / {np.mean(np.array(base_pl) <= 1):.0%}",
                f"{secs / cases * 1000:.0f} ms",
            ]
        )
    return (
        f"### synthetic curves ({cases} per row; N in 2k/10k/50k, b in [0.3, 1], c in "
        "[0.02, 0.3], true plateau between N/4 and 4N; default sizes N/8, N/4, N/2, N)\n\n"
        + _table(
            [
                "setting",
                "asymptote |err| ours",
                "asymptote |err| 2-param",
                "extrapolated err(N) |err| ours (fit on sizes < N)",
                "same, 2-param",
                "plateau |log2 ratio| median / within 2x, ours",
                "same, 2-param",
                "fit time",
            ],
            rows,
        )
    )


# ============================================================================ real
def _banking77() -> tuple[list[str], list[str], list[str], list[str]]:
    def read(name: str) -> tuple[list[str], list[str]]:
        with open(DATA / "intents" / "banking77" / name, encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
        return [r["text"] for r in rows], [r["category"] for r in rows]

    xt, yt = read("train.csv")
    xv, yv = read("test.csv")
    return xt, yt, xv, yv


def _clinc150() -> tuple[list[str], list[str], list[str], list[str]]:
    d = json.loads((DATA / "intents" / "clinc150" / "data_full.json").read_text())
    return (
        [t for t, _ in d["train"]],
        [y for _, y in d["train"]],
        [t for t, _ in d["test"]],
        [y for _, y in d["test"]],
    )


def _clinc150_domains() -> tuple[list[str], list[str], list[str], list[str]]:
    """clinc150 with its 10 domains as labels: a coarse task whose curve flattens early."""
    domains = json.loads((DATA / "intents" / "clinc150" / "domains.json").read_text())
    dom = {i: d for d, intents in domains.items() for i in intents}
    xt, yt, xv, yv = _clinc150()
    return xt, [dom[y] for y in yt], xv, [dom[y] for y in yv]


def _real_one(name: str, loader: object) -> str:
    import pyarrow as pa

    from ftprep.examples import Dataset
    from ftprep.signals.embeddings import get_embedder
    from ftprep.volume.curve import summarise
    from ftprep.volume.fit import PowerLaw, fit_curve
    from ftprep.volume.runner import proxy_learner
    from ftprep.volume.stages import nested_stages

    xt, yt, xv, yv = loader()  # type: ignore[operator]
    emb = get_embedder("static")
    et, ev = emb.encode(xt), emb.encode(xv)
    ids = [f"t{i}" for i in range(len(xt))]
    ds = Dataset(pa.table({"id": ids, "group": ids, "label": yt}))
    fractions = [1 / 64, 1 / 32, 1 / 16, 1 / 8, 1 / 4, 1 / 2, 1.0]
    repeats = 2 if QUICK else 3
    pos = {i: k for k, i in enumerate(ids)}
    points = []
    t0 = time.perf_counter()
    for r in range(repeats):
        for st in nested_stages(ds, "group", [], fractions, r, "label"):
            if st.fraction == 1.0 and r > 0:
                # the full set is the same data every repeat: LR is deterministic
                points.append({**next(p for p in points if p["fraction"] == 1.0), "seed": r})
                continue
            idx = np.array([pos[i] for i in st.ids])
            m = proxy_learner(et[idx], [yt[i] for i in idx], ev, yv)
            points.append({"n": st.n, "fraction": st.fraction, "seed": r, "metric": m["accuracy"]})
    secs = time.perf_counter() - t0
    big_n = len(xt)
    measured_full = float(np.mean([p["metric"] for p in points if p["fraction"] == 1.0]))
    rows = []
    for upto in (0.25, 0.5):
        sub = [p for p in points if p["fraction"] <= upto]
        n = np.array([p["n"] for p in sub], dtype=float)
        m = np.array([p["metric"] for p in sub])
        fit = fit_curve(n, m, bootstrap=200)
        pred = float(fit.predict(big_n))
        lo, hi = fit.band(np.array([big_n], dtype=float))
        sizes = np.unique(n)
        a2, b2 = _two_param(sizes, np.array([1 - m[n == s].mean() for s in sizes]))
        two = float(1 - PowerLaw(a2, b2, 0.0).err(big_n))
        last = float(m[n == sizes[-1]].mean())
        rows.append(
            [
                f"stages ≤ N/{round(1 / upto)} ({len(sizes)} sizes, up to {int(sizes[-1])})",
                measured_full,
                f"{pred:.4f} [{lo[0]:.4f}, {hi[0]:.4f}]",
                abs(pred - measured_full),
                abs(two - measured_full),
                abs(last - measured_full),
                f"{fit.law.plateau_n(0.005):,.0f}",
            ]
        )
    half = float(np.mean([p["metric"] for p in points if p["fraction"] == 0.5]))
    # the default 4 stages (1/8 .. 1) as `ftprep curve` runs them, with the verdict
    default = [p for p in points if p["fraction"] >= 0.125]
    doc, fit = summarise(
        default, n_train=big_n, higher_is_better=True, target=None, delta=0.005, seed=0
    )
    curve_rows = [
        [
            f"{f:.4g}",
            int(np.mean([p["n"] for p in points if p["fraction"] == f])),
            float(np.mean([p["metric"] for p in points if p["fraction"] == f])),
            float(np.std([p["metric"] for p in points if p["fraction"] == f])),
        ]
        for f in fractions
    ]
    return (
        f"### {name}: {big_n} train / {len(xv)} validation, {len(set(yt))} intents; proxy "
        f"learner, {repeats} repeats, {secs:.0f} s for {len(points)} stage runs\n\n"
        + _table(["fraction", "n", "accuracy (mean)", "sd over repeats"], curve_rows)
        + "\n\nExtrapolating the full-data accuracy from the smaller stages:\n\n"
        + _table(
            [
                "fitted on",
                "measured at N",
                "ours: predicted [90% band]",
                "ours |error|",
                "2-param power law |error|",
                "last value |error|",
                "plateau (fit, delta 0.005)",
            ],
            rows,
        )
        + f"\n\nMeasured gain from N/2 to N: {measured_full - half:+.4f} (below 0.005 means the "
        "data is measurably past the plateau at N/2)."
        + f"\n\nDefault run (fractions 1/8..1): fit a={doc['fit']['params']['a']:.3g} "
        f"b={doc['fit']['params']['b']:.3g} c={doc['fit']['params']['c']:.3g}; asymptote "
        f"{doc['asymptote']['metric']:.4f} (90%: {_iv(doc['asymptote']['interval'], '.4f')}); "
        f"plateau ~{doc['plateau']['n']:,.0f} (90%: {_iv(doc['plateau']['interval'], ',.0f')}); "
        f"backtest |error| {doc['backtest']['abs_error']:.4f}; verdict: "
        f"{doc['verdict']['message']}\n"
    )


def bench_real() -> str:
    if not DATA.exists():
        return "(shared data absent: skipped)"
    return "\n".join(
        [
            _real_one("banking77", _banking77),
            _real_one("clinc150", _clinc150),
            _real_one("clinc150, 10 domains as labels", _clinc150_domains),
        ]
    )


def bench_e2e() -> str:
    """The whole path a user runs: banking77 train (10,003, labels) as a project,
    ``ftprep audit --check volume`` then ``ftprep curve`` (build, stages, proxy learner, fit,
    outputs), then the same again (everything resumed from results.jsonl)."""
    import shutil
    import tempfile

    import ftprep

    if not DATA.exists():
        return "(shared data absent: skipped)"
    root = Path(tempfile.mkdtemp(prefix="ftprep-curve-"))
    (root / "data").mkdir()
    shutil.copy(DATA / "intents" / "banking77" / "train.csv", root / "data" / "train.csv")
    (root / "ftprep.yaml").write_text(
        "name: banking77-curve\nsources:\n  - name: main\n    path: data/train.csv\n"
        "    fields: {input: text, label: category}\n"
        "split: {validation: 0.2, test: 0.1, stratify: label}\n"
        "curve: {repeats: 2}\n",
        encoding="utf-8",
    )
    ftprep.audit(root, only=["volume"])
    t0 = time.perf_counter()
    first = ftprep.curve(root)
    t1 = time.perf_counter()
    again = ftprep.curve(root)
    t2 = time.perf_counter()
    doc = first.doc
    shutil.rmtree(root)
    return (
        f"### end to end: `ftprep curve` on banking77 train ({doc['n_train']} train / "
        f"{doc['n_validation']} validation after the build's split), proxy learner, 2 repeats\n\n"
        + _table(
            ["run", "stage runs", "reused", "wall s"],
            [
                ["first", first.ran, first.reused, f"{t1 - t0:.1f}"],
                ["again (resume)", again.ran, again.reused, f"{t2 - t1:.1f}"],
            ],
        )
        + f"\n\nVerdict: {doc['verdict']['message']}; backtest |error| "
        f"{doc['backtest']['abs_error']:.4f}\n"
    )


def main() -> None:
    which = next((a for a in sys.argv[1:] if not a.startswith("--")), "all")
    print(f"Machine: {_machine()}\n")
    if which in ("synthetic", "all"):
        print(bench_synthetic() + "\n")
    if which in ("real", "all"):
        print(bench_real())
    if which in ("e2e", "all"):
        print(bench_e2e())


if __name__ == "__main__":
    main()
