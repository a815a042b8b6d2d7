"""The public Python API: ``ingest``, ``audit`` and ``build``.

``audit`` = ingest every input -> run every registered check (a check whose inputs are missing
is reported as *not run*; an exception becomes ERROR for that check) -> judge gates -> replace the
automatic decisions in the ledger -> write ``findings.json``, ``report.html`` and
``rejects.jsonl``. Exit code: 0 when every gate passes, 1 when a gate failed (or warned, with
``fail_on="warn"``).
"""

from __future__ import annotations

import hashlib
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ftprep import __version__
from ftprep.checks import registry
from ftprep.checks.base import (
    REQUIREMENTS,
    Action,
    CheckResult,
    NotRun,
    Status,
    error_result,
    judge,
)
from ftprep.context import Context, ProgressFactory, no_progress
from ftprep.decisions import Ledger
from ftprep.examples import Dataset
from ftprep.formats.readers import ReadOptions, ReadResult, Reject, read_file
from ftprep.project import Production, Project, Source, load_project
from ftprep.store import (
    Workspace,
    atomic_file_set,
    atomic_write_bytes,
    remove_stale_temps,
)

FINDINGS_SCHEMA_VERSION = "1.0"
# artifacts the build reads from the workspace: near-duplicate clusters kept in one split, and
# the ordered replay pool
PERSISTED_ARTIFACTS = ("link_clusters", "replay_plan")
IMPORTANCE_WEIGHTS = "importance_weights.json"  # from the distribution artifact, for the build


@dataclass
class SourceStats:
    name: str
    path: str
    role: str  # train | production | benchmark
    records: int
    examples: int
    rejects: int
    formats: dict[str, int]
    fingerprint: str


@dataclass
class Ingested:
    train: Dataset
    production: Dataset | None
    benchmarks: dict[str, Dataset]
    rejects: list[Reject]
    sources: list[SourceStats]
    replay: Dataset | None = None  # the replay pool (ftprep.yaml: replay.sources)
    replay_capability: dict[str, str] = field(default_factory=dict)  # id -> declared capability

    def all_ids(self) -> set[str]:
        """Ids of every example read: training, production, benchmarks and replay."""
        sets = [self.train, self.production, self.replay, *self.benchmarks.values()]
        return {i for ds in sets if ds is not None for i in ds.ids}

    @property
    def n_records(self) -> int:
        return sum(s.records for s in self.sources if s.role == "train")


@dataclass
class AuditResult:
    project: Project
    run_id: str
    results: list[CheckResult]
    ingested: Ingested
    status: Status
    exit_code: int
    findings_path: Path | None = None
    report_path: Path | None = None
    findings: dict[str, Any] = field(default_factory=dict)
    # ids of reviewers' decisions that match no example in the data (records removed, or ids
    # that changed: the build cannot apply them)
    orphaned_human: list[str] = field(default_factory=list)


def fingerprint(path: Path) -> str:
    """Cheap identity of an input: size + mtime + hash of the first and last 64 KiB."""
    if path.is_dir():
        parts = [fingerprint(p) for p in sorted(path.rglob("*")) if p.is_file()]
        return hashlib.sha1("".join(parts).encode()).hexdigest()
    st = path.stat()
    h = hashlib.sha1(f"{st.st_size}:{st.st_mtime_ns}".encode())
    with open(path, "rb") as fh:
        h.update(fh.read(65536))
        if st.st_size > 65536:
            fh.seek(max(65536, st.st_size - 65536))
            h.update(fh.read(65536))
    return h.hexdigest()


def _read_source(
    project: Project, src: Source, mode: str, progress: ProgressFactory = no_progress
) -> tuple[ReadResult, Path]:
    path = project.path(src.path)
    assert path is not None
    opts = ReadOptions(
        source=src.name,
        record_format=src.record_format(),
        fields=src.fields.to_fieldmap(),
        mode=mode,
        max_record_bytes=src.max_record_bytes,
        defaults=dict(src.defaults),
    )
    if isinstance(src, Production) and src.sample:
        # streamed: only the sample is held (the records of smallest seeded id hash); a JSONL
        # log shows its bytes read
        opts.sample, opts.sample_seed = src.sample, src.seed
        plain = path.is_file() and path.suffix in (".jsonl", ".ndjson")  # not gzip'd
        with progress(f"sampling {src.name}", path.stat().st_size if plain else None) as advance:
            return read_file(path, opts, container=src.container_kind(), progress=advance), path
    return read_file(path, opts, container=src.container_kind()), path


def ingest(project: Project, progress: ProgressFactory = no_progress) -> Ingested:
    stats: list[SourceStats] = []
    rejects: list[Reject] = []
    parts: list[Dataset] = []
    with progress("reading sources", len(project.sources)) as advance:
        for src in project.sources:
            res, path = _read_source(project, src, "train")
            parts.append(res.dataset)
            rejects.extend(res.rejects)
            stats.append(
                SourceStats(
                    src.name,
                    str(path),
                    "train",
                    res.n_records,
                    len(res.dataset),
                    len(res.rejects),
                    res.formats,
                    fingerprint(path),
                )
            )
            advance(1)
    train = parts[0]
    for p in parts[1:]:
        train = train.concat(p)
    seen: set[str] = set()
    dup = [i for i in train.ids if i in seen or seen.add(i)]  # type: ignore[func-returns-value]
    if dup:
        from ftprep.project import ProjectError

        raise ProjectError(
            f"example id {dup[0]!r} occurs in more than one source; ids must be unique"
        )
    train.name = "train"
    production = None
    if project.production is not None:
        res, path = _read_source(project, project.production, "inputs", progress)
        production = res.dataset
        production.name = "production"
        stats.append(
            SourceStats(
                project.production.name,
                str(path),
                "production",
                res.n_records,
                len(production),
                len(res.rejects),
                res.formats,
                fingerprint(path),
            )
        )
        rejects.extend(res.rejects)
    benchmarks: dict[str, Dataset] = {}
    for b in project.benchmarks:
        res, path = _read_source(project, b, "inputs")
        res.dataset.name = f"benchmark:{b.name}"
        benchmarks[b.name] = res.dataset
        stats.append(
            SourceStats(
                b.name,
                str(path),
                "benchmark",
                res.n_records,
                len(res.dataset),
                len(res.rejects),
                res.formats,
                fingerprint(path),
            )
        )
        rejects.extend(res.rejects)
    replay, replay_capability = _ingest_replay(project, stats, rejects)
    return Ingested(train, production, benchmarks, rejects, stats, replay, replay_capability)


def _ingest_replay(
    project: Project, stats: list[SourceStats], rejects: list[Reject]
) -> tuple[Dataset | None, dict[str, str]]:
    """Read the replay pool (full training examples) and the capability each source declares."""
    if project.replay is None or not project.replay.sources:
        return None, {}
    parts: list[Dataset] = []
    declared: dict[str, str] = {}
    for src in project.replay.sources:
        res, path = _read_source(project, src, "train")
        ds = res.dataset
        if src.capability is not None:
            declared.update((i, src.capability) for i in ds.ids)
        parts.append(ds)
        rejects.extend(res.rejects)
        stats.append(
            SourceStats(
                src.name,
                str(path),
                "replay",
                res.n_records,
                len(ds),
                len(res.rejects),
                res.formats,
                fingerprint(path),
            )
        )
    pool = parts[0]
    for p in parts[1:]:
        pool = pool.concat(p)
    pool.name = "replay"
    return pool, declared


def open_workspace(project: Project) -> tuple[Workspace, Ledger]:
    ws = Workspace(project.workspace_dir, project.workspace.database_url)
    return ws, Ledger(ws.engine)


def _preflight(project: Project, ws: Workspace) -> None:
    """Refuse to run on an edited-but-not-bumped or tampered task spec (exit code 2)."""
    from ftprep.spec import preflight

    preflight(project, ws)


def run_checks(ctx: Context, only: list[str] | None = None) -> list[CheckResult]:
    results: list[CheckResult] = []
    checks = registry.load_all()
    names = [n for n in sorted(checks) if n not in ctx.project.disabled_checks]
    if only:
        names = [n for n in names if any(n == o or n.startswith(o + ".") for o in only)]
    for name in _ordered(names, checks):
        cls = checks[name]
        check = cls({**ctx.params(name)})
        missing = [r for r in cls.requires if not ctx.has(r)]
        if missing:
            results.append(
                CheckResult(
                    check=name,
                    failure_mode=cls.failure_mode,
                    status=Status.NOT_RUN,
                    summary="not run: missing "
                    + "; ".join(REQUIREMENTS.get(m, m) for m in missing),
                    missing=missing,
                )
            )
            continue
        t0 = time.perf_counter()
        try:
            res = check.run(ctx)
            for d in res.decisions:
                d.check = name
            for f in res.findings:
                f.check = name
            conds = check.conditions(ctx)
            judge(res, conds)
        except NotRun as e:
            res = CheckResult(
                check=name,
                failure_mode=cls.failure_mode,
                status=Status.NOT_RUN,
                summary=f"not run: {e}",
            )
        except Exception as e:
            res = error_result(check, e)
        res.seconds = time.perf_counter() - t0
        results.append(res)
    return results


def _ordered(names: list[str], checks: dict[str, Any]) -> list[str]:
    """Alphabetical, except that a check runs after the checks it names in ``after``."""
    done: list[str] = []
    pending = list(names)
    while pending:
        for n in pending:
            if all(d in done or d not in pending for d in checks[n].after):
                done.append(n)
                pending.remove(n)
                break
        else:  # a cycle: keep the remaining order
            done += pending
            break
    return done


def _overall(results: list[CheckResult]) -> Status:
    worst = Status.PASS
    for r in results:
        if r.status != Status.NOT_RUN:
            worst = max(worst, r.status)
    return worst


def exit_code_for(status: Status, fail_on: str = "fail") -> int:
    if status >= Status.FAIL:
        return 1
    if fail_on == "warn" and status == Status.WARN:
        return 1
    return 0


def audit(
    project: Project | str | Path = ".",
    *,
    progress: ProgressFactory = no_progress,
    strict: bool = False,
    fail_on: str = "fail",
    only: list[str] | None = None,
    write: bool = True,
) -> AuditResult:
    if not isinstance(project, Project):
        project = load_project(project)
    ws, ledger = open_workspace(project)
    _preflight(project, ws)
    run_id = time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]
    ledger.start_run(run_id, "audit", project.file_hash)
    ing = ingest(project, progress)
    ws.save_table("train", ing.train.table)
    if ing.production is not None:
        ws.save_table("production", ing.production.table)
    ctx = Context(
        project=project,
        workspace=ws,
        ledger=ledger,
        train=ing.train,
        production=ing.production,
        benchmarks=ing.benchmarks,
        replay=ing.replay,
        replay_capability=ing.replay_capability,
        rejects=ing.rejects,
        progress=progress,
        run_id=run_id,
        strict=strict,
    )
    results = run_checks(ctx, only=only)
    train_ids = set(ing.train.ids)
    for r in results:
        if r.status in (Status.NOT_RUN, Status.ERROR):
            continue
        ledger.replace_auto(r.check, [d for d in r.decisions if d.example_id in train_ids], run_id)
    status = _overall(results)
    code = exit_code_for(status, fail_on)
    human = {e.example_id for e in ledger.entries(actor_kind="human")}
    res = AuditResult(project, run_id, results, ing, status, code)
    res.orphaned_human = sorted(human - ing.all_ids())
    res.findings = findings_document(res)
    if write:
        _write_outputs(res, ctx)
    ledger.finish_run(
        run_id,
        str(status),
        {
            "exit_code": code,
            "fingerprints": {s.name: s.fingerprint for s in ing.sources},
            "project_hash": project.file_hash,
        },
    )
    return res


def findings_document(res: AuditResult) -> dict[str, Any]:
    ing = res.ingested
    train_sources = {s.name for s in ing.sources if s.role == "train"}
    decisions = [d.to_dict() for r in res.results for d in r.decisions]
    counts: dict[str, int] = {}
    for d in decisions:
        counts[d["action"]] = counts.get(d["action"], 0) + 1
    return {
        "schema_version": FINDINGS_SCHEMA_VERSION,
        "ftprep_version": __version__,
        "run_id": res.run_id,
        "project": {"name": res.project.name, "file_hash": res.project.file_hash},
        "status": str(res.status),
        "exit_code": res.exit_code,
        "inputs": [s.__dict__ for s in ing.sources],
        "totals": {
            "records": ing.n_records,
            "examples": len(ing.train),
            "rejects": sum(1 for r in ing.rejects if r.source in train_sources),
        },
        "rejects": [r.to_dict() for r in ing.rejects],
        "checks": [r.to_dict() for r in res.results],
        "decisions": {
            "counts": counts,
            "items": decisions,
            "orphaned_human": res.orphaned_human,
        },
    }


def _write_outputs(res: AuditResult, ctx: Context) -> None:
    from ftprep.report.html import render_html

    out = res.project.out_dir / "audit"
    out.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(out, recursive=True)
    # published as one set, findings.json (what CI reads) last: a crash or Ctrl-C while
    # writing leaves the previous audit's files as they were
    with atomic_file_set(out, "findings.json") as stage:
        stage("rejects.jsonl").write_bytes(
            b"".join(orjson.dumps(r.to_dict()) + b"\n" for r in res.ingested.rejects)
        )
        for key, value in ctx.artifacts.items():
            try:
                data = orjson.dumps(
                    value,
                    option=orjson.OPT_INDENT_2 | orjson.OPT_SERIALIZE_NUMPY,
                    default=_json_default,
                )
            except TypeError:
                continue
            stage(f"artifacts/{key}.json").write_bytes(data)
        stage("report.html").write_text(render_html(res), encoding="utf-8")
        stage("findings.json").write_bytes(
            orjson.dumps(res.findings, option=orjson.OPT_INDENT_2, default=_json_default)
        )
    for key in PERSISTED_ARTIFACTS:  # what build reads back from the last audit
        value = ctx.artifacts.get(key)
        if value is not None:
            atomic_write_bytes(res.project.workspace_dir / f"{key}.json", orjson.dumps(value))
    # the importance weights, for build.resample: production (none from this audit: none kept,
    # so a build never resamples by an older audit's weights)
    weights_path = res.project.workspace_dir / IMPORTANCE_WEIGHTS
    dist = ctx.artifacts.get("distribution") or {}
    if "importance_weights" in dist:
        plan = {
            "weights": dist["importance_weights"],
            "method": (dist.get("coverage") or {}).get("weights"),
        }
        atomic_write_bytes(weights_path, orjson.dumps(plan))
    else:
        weights_path.unlink(missing_ok=True)
    res.findings_path = out / "findings.json"
    res.report_path = out / "report.html"


def _json_default(o: Any) -> Any:
    import numpy as np

    if isinstance(o, np.integer):
        return int(o)
    if isinstance(o, np.floating):
        return float(o)
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, Action | Status):
        return str(o)
    if isinstance(o, Path):
        return str(o)
    if isinstance(o, set):
        return sorted(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")
