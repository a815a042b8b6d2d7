"""``ftprep curve``: staged training on growing subsets -> learning curve -> volume estimate.

Flow: the build's train/validation splits (:mod:`ftprep.volume.stages`) -> nested stages per
repeat -> each stage run by ``curve.command`` or the built-in proxy learner
(:mod:`ftprep.volume.runner`; finished runs kept in ``results.jsonl``) -> power-law fit
(:mod:`ftprep.volume.fit`) -> ``curve.json`` + ``curve.html`` in ``out/curve/`` and a copy of
``curve.json`` in the workspace for the ``volume.curve`` audit check.
"""

from __future__ import annotations

import csv
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ftprep import __version__
from ftprep.context import ProgressFactory, no_progress
from ftprep.project import Curve, Project, load_project
from ftprep.store import atomic_write_bytes, atomic_write_text
from ftprep.volume.fit import CurveFit, FitError, backtest, fit_curve
from ftprep.volume.runner import (
    CurveError,
    ResultStore,
    proxy_learner,
    proxy_name,
    run_command,
    run_key,
)
from ftprep.volume.stages import (
    Splits,
    Stage,
    build_splits,
    data_fingerprint,
    nested_stages,
    rows_of,
)

CURVE_SCHEMA_VERSION = "1.0"
PROXY_NOTE = (
    "proxy learner: logistic regression on prompt embeddings, not a fine-tune of your model. "
    "It measures how fast this data's labels become learnable; set curve.command to measure "
    "the real model."
)


@dataclass
class CurveResult:
    """What ``ftprep.curve`` returns: the document written to ``curve.json`` and the fit."""

    doc: dict[str, Any]
    fit: CurveFit
    out_dir: Path
    ran: int = 0  # stages run now (the rest came from results.jsonl)
    reused: int = 0
    points: list[dict[str, Any]] = field(default_factory=list)

    @property
    def verdict(self) -> str:
        return str(self.doc["verdict"]["message"])


def latest_path(project: Project) -> Path:
    """The workspace copy of the last ``curve.json`` (read by the ``volume.curve`` check)."""
    return project.workspace_dir / "curve" / "curve.json"


def read_results_csv(path: Path) -> list[dict[str, Any]]:
    """Points measured elsewhere: a CSV with columns ``n``, ``metric`` and optional ``seed``."""
    try:
        with open(path, newline="", encoding="utf-8") as fh:
            rows = list(csv.DictReader(fh))
    except FileNotFoundError:
        raise CurveError(f"{path}: no such file") from None
    if not rows or not {"n", "metric"} <= set(rows[0]):
        raise CurveError(f"{path}: expected a header with columns n, metric[, seed]")
    out = []
    for k, r in enumerate(rows, start=2):
        try:
            n = float(r["n"])
            m = float(r["metric"])
            seed = int(r["seed"]) if r.get("seed") not in (None, "") else 0
        except ValueError:
            raise CurveError(f"{path}:{k}: n and metric must be numbers, seed an integer") from None
        if n <= 0 or not np.isfinite(m):
            raise CurveError(f"{path}:{k}: n must be positive and metric finite")
        out.append({"n": n, "metric": m, "seed": seed, "stage": f"row{k}"})
    return out


def curve(
    project: Project | str | Path = ".",
    *,
    results: str | Path | None = None,
    progress: ProgressFactory = no_progress,
    out: str | Path | None = None,
    plateau_delta: float | None = None,
) -> CurveResult:
    """Run (or resume) the learning curve and fit it. ``results``: fit a CSV of points measured
    elsewhere instead of running stages."""
    if not isinstance(project, Project):
        project = load_project(project)
    cfg = project.curve
    out_dir = Path(out) if out is not None else project.out_dir / "curve"
    delta = cfg.plateau_delta if plateau_delta is None else plateau_delta
    ran = reused = 0
    inputs: dict[str, str] | None = None
    n_val: int | None = None
    if results is not None:
        points = read_results_csv(Path(results))
        learner = {"kind": "results_file", "path": str(results), "metric": cfg.metric}
        n_train = int(max(p["n"] for p in points))
        higher = cfg.higher_is_better
    else:
        splits = build_splits(project, progress)
        if len(splits.validation) == 0:
            raise CurveError(
                "the build has no validation split to measure each stage on: set "
                "split.validation > 0 (or split.eval_from: production / source)"
            )
        inputs, n_train, n_val = splits.inputs, len(splits.train), len(splits.validation)
        stages = [
            s
            for r in range(cfg.repeats)
            for s in nested_stages(
                splits.train,
                project.split.by,
                splits.links,
                cfg.fractions,
                project.split.seed + r,
                project.split.stratify,
            )
        ]
        if cfg.command:
            points, ran, reused = _run_commands(project, cfg, splits, stages, progress)
            learner = {"kind": "command", "command": cfg.command, "metric": cfg.metric}
            higher = cfg.higher_is_better
        else:
            points, ran, reused = _run_proxy(project, splits, stages, progress)
            learner = {
                "kind": "proxy",
                "name": proxy_name(project.embeddings),
                "metric": "accuracy",
            }
            higher = True
    try:
        doc, fit = summarise(
            points,
            n_train=n_train,
            higher_is_better=higher,
            target=cfg.target,
            delta=delta,
            bootstrap=cfg.bootstrap,
            seed=project.split.seed,
        )
    except FitError as e:
        raise CurveError(str(e)) from None
    doc = {
        "schema_version": CURVE_SCHEMA_VERSION,
        "ftprep_version": __version__,
        "created_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "project": {"name": project.name, "file_hash": project.file_hash},
        "learner": {**learner, "proxy": learner["kind"] == "proxy"},
        "note": PROXY_NOTE if learner["kind"] == "proxy" else "",
        "inputs": inputs,
        "n_validation": n_val,
        **doc,
    }
    write_outputs(doc, out_dir, project)
    return CurveResult(doc, fit, out_dir, ran, reused, points)


def _run_commands(
    project: Project, cfg: Curve, splits: Splits, stages: list[Stage], progress: ProgressFactory
) -> tuple[list[dict[str, Any]], int, int]:
    from ftprep.formats.writers import EXTENSIONS, write_split

    assert cfg.command is not None
    base = project.workspace_dir / "curve"
    store = ResultStore(base / "results.jsonl")
    done = store.load()
    fmt = project.build.format
    ext = EXTENSIONS[fmt]
    val_fp = data_fingerprint(splits.validation)
    val_path = base / "stages" / f"validation{ext}"
    ident = f"{cfg.command}\x00{cfg.metric}\x00{fmt}"
    points: list[dict[str, Any]] = []
    ran = reused = 0
    with progress("curve stages", len(stages)) as advance:
        for st in stages:
            fp = data_fingerprint(splits.train, st.ids) + val_fp
            key = run_key(st.n, st.seed, ident, fp)
            if key in done:
                points.append(done[key])
                reused += 1
                advance(1)
                continue
            if not val_path.exists():
                write_split(splits.validation.table.to_pylist(), val_path, fmt)
            train_path = base / "stages" / st.name / f"train{ext}"
            write_split(rows_of(splits.train, st.ids), train_path, fmt)
            run_out = base / "runs" / f"{st.name}-{key[:8]}"
            values = {
                "train": str(train_path),
                "validation": str(val_path),
                "out": str(run_out),
                "n": str(st.n),
                "stage": st.name,
                "seed": str(st.seed),
            }
            metric, obj, secs = run_command(cfg.command, values, run_out, cfg.metric, cfg.timeout_s)
            rec = _record(key, st, metric, obj, secs, cfg.command)
            store.append(rec)
            points.append(rec)
            ran += 1
            advance(1)
    return points, ran, reused


def _run_proxy(
    project: Project, splits: Splits, stages: list[Stage], progress: ProgressFactory
) -> tuple[list[dict[str, Any]], int, int]:
    labels_train = splits.train.column("label")
    labels_val = splits.validation.column("label")
    if all(v is None for v in labels_train) or all(v is None for v in labels_val):
        raise CurveError(
            "no curve.command is configured and the examples carry no labels, so there is "
            "nothing to train per stage. Set curve.command in ftprep.yaml to your fine-tune + "
            "eval script (placeholders {train} {validation} {out} {n} {stage} {seed}; it prints "
            "a JSON object with the metric), or fit numbers measured elsewhere with "
            "`ftprep curve --results FILE.csv` (columns n, metric[, seed])."
        )
    from ftprep.signals.cache import cached_embeddings

    base = project.workspace_dir / "curve"
    store = ResultStore(base / "results.jsonl")
    done = store.load()
    name = proxy_name(project.embeddings)
    val_fp = data_fingerprint(splits.validation)
    x_train = x_val = None
    pos = {i: k for k, i in enumerate(splits.train.ids)}
    ytr = [str(v) for v in labels_train]
    yv = [str(v) for v in labels_val]
    points: list[dict[str, Any]] = []
    ran = reused = 0
    with progress("curve stages (proxy learner)", len(stages)) as advance:
        for st in stages:
            # the proxy learner is deterministic: the same data gives the same result whatever
            # the repeat's seed (the full-size stage is shared by every repeat)
            key = run_key(st.n, 0, name, data_fingerprint(splits.train, st.ids) + val_fp)
            if key in done:
                points.append({**done[key], "seed": st.seed, "stage": st.name})
                reused += 1
                advance(1)
                continue
            if x_train is None or x_val is None:
                ws = _workspace(project)
                x_train = cached_embeddings(
                    ws, splits.train.texts("prompt"), project.embeddings, progress
                )
                x_val = cached_embeddings(
                    ws, splits.validation.texts("prompt"), project.embeddings, progress
                )
            idx = np.array([pos[i] for i in st.ids], dtype=np.int64)
            t0 = time.perf_counter()
            m = proxy_learner(x_train[idx], [ytr[i] for i in idx], x_val, yv)
            rec = _record(key, st, m["accuracy"], m, time.perf_counter() - t0, name)
            store.append(rec)
            done[key] = rec
            points.append(rec)
            ran += 1
            advance(1)
    return points, ran, reused


def _workspace(project: Project) -> Any:
    from ftprep.store import Workspace

    return Workspace(project.workspace_dir, project.workspace.database_url)


def _record(
    key: str, st: Stage, metric: float, obj: dict[str, Any], secs: float, command: str
) -> dict[str, Any]:
    return {
        "key": key,
        "n": st.n,
        "fraction": st.fraction,
        "seed": st.seed,
        "stage": st.name,
        "metric": metric,
        "metrics": {k: v for k, v in obj.items() if isinstance(v, int | float | str | bool)},
        "seconds": round(secs, 3),
        "command": command,
        "finished_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }


def summarise(
    points: list[dict[str, Any]],
    *,
    n_train: int,
    higher_is_better: bool,
    target: float | None,
    delta: float,
    bootstrap: int = 200,
    seed: int = 0,
    level: float = 0.9,
) -> tuple[dict[str, Any], CurveFit]:
    """Fit the points and say what they mean: asymptote, plateau, volume for the target."""
    n = np.array([p["n"] for p in points], dtype=float)
    m = np.array([p["metric"] for p in points], dtype=float)
    fit = fit_curve(n, m, higher_is_better=higher_is_better, bootstrap=bootstrap, seed=seed)
    law = fit.law
    sign = 1.0 if higher_is_better else -1.0
    plateau = law.plateau_n(delta)
    past = n_train >= plateau
    now = float(fit.predict(n_train))
    gain2 = sign * (float(fit.predict(2 * n_train)) - now)
    asym = float(fit.to_metric(law.c))
    boot = fit.boot
    doc: dict[str, Any] = {
        "n_train": n_train,
        "points": [
            {k: p.get(k) for k in ("n", "fraction", "seed", "stage", "metric", "metrics")}
            for p in sorted(points, key=lambda p: (p["n"], p.get("seed", 0)))
        ],
        "fit": {
            "model": "err(n) = a * n^(-b) + c",
            "err": "1 - metric" if higher_is_better else "metric",
            "higher_is_better": higher_is_better,
            "method": fit.method,
            "params": fit.params(),
            "rmse": fit.rmse,
            "bootstrap": len(boot),
            "level": level,
            "warnings": fit.warnings(),
        },
        "metric_at_n_train": now,
        "gain_if_doubled": gain2,
        "asymptote": {
            "metric": asym,
            "interval": fit.interval([float(fit.to_metric(b.c)) for b in boot], level),
        },
        "plateau": {
            "delta": delta,
            "n": plateau,
            "metric": float(fit.predict(plateau)),
            "interval": fit.interval([b.plateau_n(delta) for b in boot], level),
            "past": past,
        },
        "backtest": backtest(n, m, higher_is_better=higher_is_better),
    }
    tgt: dict[str, Any] | None = None
    if target is not None:
        need = law.n_for_err(fit.to_err(target))
        tgt = {
            "value": target,
            "reachable": need is not None,
            "n_needed": need,
            "extra_needed": None if need is None else max(0.0, need - n_train),
            "interval": fit.interval([b.n_for_err(fit.to_err(target)) for b in boot], level),
            "share_unreachable": (
                float(np.mean([b.n_for_err(fit.to_err(target)) is None for b in boot]))
                if boot
                else None
            ),
        }
    doc["target"] = tgt
    doc["verdict"] = _verdict(doc, higher_is_better)
    top = max(float(n.max()), n_train) * 4
    for extra in (plateau, tgt["n_needed"] if tgt else None):
        if extra is not None and extra > top:
            top = min(extra * 1.25, top * 8)
    grid = np.unique(np.concatenate([np.geomspace(n.min(), top, 24), np.unique(n)]).round())
    lo, hi = fit.band(grid, level)
    doc["curve"] = {
        "n": grid.tolist(),
        "metric": fit.predict(grid).tolist(),
        "low": lo.tolist(),
        "high": hi.tolist(),
    }
    return doc, fit


def _fmt_n(x: float) -> str:
    return f"{x:,.0f}" if x < 1e9 else f"{x:.2g}"


def _verdict(doc: dict[str, Any], higher: bool) -> dict[str, str]:
    n = doc["n_train"]
    pl = doc["plateau"]
    tgt = doc["target"]
    if tgt is not None and not tgt["reachable"]:
        code = "target_unreachable"
        msg = (
            f"the curve levels off around {pl['metric']:.4g} (asymptote "
            f"{doc['asymptote']['metric']:.4g}), short of the target {tgt['value']:.4g}: more "
            "data of this kind won't reach it — improve quality/coverage"
        )
    elif tgt is not None and tgt["extra_needed"] > 0:
        code = "collect_for_target"
        msg = (
            f"reaching the target {tgt['value']:.4g} needs ~{_fmt_n(tgt['n_needed'])} training "
            f"examples: collect ~{_fmt_n(tgt['extra_needed'])} more of this kind"
        )
    elif pl["past"]:
        code = "past_plateau"
        msg = (
            f"past the plateau ({_fmt_n(n)} examples ≥ ~{_fmt_n(pl['n'])}; doubling adds "
            f"{doc['gain_if_doubled']:+.4f}): more data of this kind won't help — improve "
            "quality/coverage"
        )
    else:
        code = "before_plateau"
        msg = (
            f"before the plateau (~{_fmt_n(pl['n'])} examples; doubling would add "
            f"{doc['gain_if_doubled']:+.4f}): collect ~{_fmt_n(pl['n'] - n)} more of this kind"
        )
    if tgt is not None and tgt["reachable"] and tgt["extra_needed"] == 0:
        code = "target_reached" if pl["past"] else "target_reached_before_plateau"
        msg = f"the target {tgt['value']:.4g} is reached at this size; " + msg
    return {"code": code, "message": msg}


def write_outputs(doc: dict[str, Any], out_dir: Path, project: Project) -> None:
    from ftprep.volume.report import render_page

    data = orjson.dumps(doc, option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY)
    atomic_write_bytes(out_dir / "curve.json", data)
    atomic_write_text(out_dir / "curve.html", render_page(doc))
    atomic_write_bytes(latest_path(project), data)
