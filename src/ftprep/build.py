"""``build``: apply the decisions ledger, split by group (never by row), write the training files
and ``manifest.json``.

Every input record is accounted for exactly once in the manifest: in a split, excluded (with the
check and reason code), or rejected at ingest (with file, line and reason). Outputs are written
to temporary files and renamed; the same inputs and ledger give byte-identical files.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
import pyarrow as pa
from pydantic import ValidationError

from ftprep import __version__
from ftprep.api import _preflight, ingest, open_workspace
from ftprep.checks.base import Action
from ftprep.context import ProgressFactory, no_progress
from ftprep.decisions import LedgerEntry
from ftprep.examples import Dataset, id_rank, response_text
from ftprep.formats.writers import EXTENSIONS, write_split
from ftprep.project import (
    BuildConfig,
    Project,
    ProjectError,
    cross_field_problems,
    load_project,
)
from ftprep.splits import assign_splits
from ftprep.store import atomic_file_set, remove_stale_temps

MANIFEST_SCHEMA_VERSION = "1.0"


class StaleAuditError(ProjectError):
    """The inputs changed since the last audit (exit code 2)."""


@dataclass
class BuildResult:
    out_dir: Path
    manifest: dict[str, Any]
    counts: dict[str, int] = field(default_factory=dict)


def _apply_patch(row: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """A reviewer's correction: ``label``, ``response`` (replaces the final assistant turn) or
    whole ``messages``."""
    row = dict(row)
    msgs = orjson.loads(row["messages"])
    if "messages" in patch:
        msgs = patch["messages"]
    if "response" in patch:
        for m in reversed(msgs):
            if m.get("role") == "assistant":
                m["content"] = patch["response"]
                break
    if "label" in patch:
        old = row.get("label")
        row["label"] = patch["label"]
        # a classification example whose answer was the label gets the new label as answer
        if (
            old is not None
            and response_text(msgs).strip() == str(old).strip()
            and "response" not in patch
        ):
            for m in reversed(msgs):
                if m.get("role") == "assistant":
                    m["content"] = str(patch["label"])
                    break
    row["messages"] = orjson.dumps(msgs).decode()
    return row


def _last_audit_fingerprints(ledger_engine: Any) -> dict[str, str] | None:
    import sqlalchemy as sa

    from ftprep.decisions import runs_t

    with ledger_engine.connect() as conn:
        row = conn.execute(
            sa.select(runs_t.c.summary)
            .where(runs_t.c.kind == "audit", runs_t.c.finished_at.is_not(None))
            .order_by(runs_t.c.finished_at.desc(), runs_t.c.started_at.desc())
            .limit(1)
        ).first()
    if row is None or not row.summary:
        return None
    return dict(orjson.loads(row.summary).get("fingerprints", {}))


def build(
    project: Project | str | Path = ".",
    *,
    progress: ProgressFactory = no_progress,
    out: str | Path | None = None,
    fmt: str | None = None,
    resample: str | None = None,
) -> BuildResult:
    """Build ``project``; ``out``, ``fmt`` and ``resample`` override ``build.out``,
    ``build.format`` and ``build.resample``."""
    if not isinstance(project, Project):
        project = load_project(project)
    if resample is not None and resample != project.build.resample:
        try:  # the setting's own validation, then the rules across settings, as at load
            config = BuildConfig.model_validate(
                {**project.build.model_dump(), "resample": resample}
            )
        except ValidationError as err:
            raise ProjectError(f"resample: {err.errors()[0]['msg']}") from None
        project = project.model_copy(update={"build": config})
        for _, msg in cross_field_problems(project):
            raise ProjectError(msg)
    ws, ledger = open_workspace(project)
    _preflight(project, ws)
    fmt = fmt or project.build.format
    if fmt not in EXTENSIONS:
        raise ProjectError(
            f"unknown output format {fmt!r}; expected one of {', '.join(EXTENSIONS)}"
        )
    out_dir = (
        Path(out)
        if out is not None
        else (project.path(project.build.out) or project.out_dir / "build")
    )
    remove_stale_temps(out_dir)  # what a killed build left behind
    ing = ingest(project, progress)
    last = _last_audit_fingerprints(ws.engine)
    if last is None:
        raise StaleAuditError("no audit has been run for this project: run `ftprep audit` first")
    changed = [s.name for s in ing.sources if last.get(s.name) != s.fingerprint]
    if changed:
        raise StaleAuditError(
            f"inputs changed since the last audit ({', '.join(changed)}): run `ftprep audit` again"
        )

    effective = ledger.effective()
    train = ing.train
    rows = train.table.to_pylist()
    _fill_spec_versions(project, train, rows)
    blocked: dict[str, tuple[Action, list[LedgerEntry]]] = {}
    kept: list[dict[str, Any]] = []
    for row in rows:
        eff = effective.get(row["id"])
        if eff is not None and eff[0].blocks_build:
            blocked[row["id"]] = eff
            continue
        if eff is not None:
            for e in sorted(eff[1], key=lambda e: (e.updated_at, e.check)):
                if e.patch and e.actor_kind == "human" and e.action == Action.INCLUDE:
                    row = _apply_patch(row, e.patch)
        kept.append(row)
    kept_ds = Dataset(pa.Table.from_pylist(kept, schema=train.table.schema))

    links_path = project.workspace_dir / "link_clusters.json"
    links = orjson.loads(links_path.read_bytes()) if links_path.exists() else []
    assignment = assign_splits(kept_ds, project.split, links)
    splits: dict[str, list[dict[str, Any]]] = {"train": [], "validation": [], "test": []}
    for row in kept:
        splits[assignment[row["id"]]].append(row)
    _eval_from_elsewhere(project, ing, splits)
    resampling = _resample(project, splits)
    replay = _mix_replay(project, ing, splits)

    out_dir.mkdir(parents=True, exist_ok=True)
    with atomic_file_set(out_dir, "manifest.json") as stage:
        manifest = _write_build(
            project, ing, splits, blocked, kept_ds, links, replay, resampling, fmt, stage
        )
        stale = _previous_files(out_dir) - {v["file"] for v in manifest["splits"].values()}
    for name in stale:  # a previous build's splits in another format
        (out_dir / name).unlink(missing_ok=True)
    return BuildResult(out_dir, manifest, {k: v["count"] for k, v in manifest["splits"].items()})


def _previous_files(out_dir: Path) -> set[str]:
    """The split files the manifest already in ``out_dir`` names (only split file names are
    taken, nothing else is touched)."""
    ours = {f"{n}{e}" for n in ("train", "validation", "test") for e in EXTENSIONS.values()}
    try:
        old = orjson.loads((out_dir / "manifest.json").read_bytes())
        return {v["file"] for v in old["splits"].values() if v.get("file") in ours}
    except (FileNotFoundError, orjson.JSONDecodeError, KeyError, TypeError, AttributeError):
        return set()


def _write_build(
    project: Project,
    ing: Any,
    splits: dict[str, list[dict[str, Any]]],
    blocked: dict[str, tuple[Action, list[LedgerEntry]]],
    kept_ds: Dataset,
    links: Any,
    replay: dict[str, Any] | None,
    resampling: dict[str, Any] | None,
    fmt: str,
    stage: Any,
) -> dict[str, Any]:
    """Write the splits and the manifest to staged files; returns the manifest."""
    seed = project.split.seed
    manifest_splits: dict[str, Any] = {}
    losses: dict[str, int] = {}
    for name, members in splits.items():
        members.sort(key=lambda r: id_rank(seed, r["id"]))
        file = f"{name}{EXTENSIONS[fmt]}"
        digest = write_split(members, stage(file), fmt, losses, atomic=False)
        manifest_splits[name] = {
            "file": file,
            "count": len(members),
            "sha256": digest,
            "ids": [r["id"] for r in members],
            "spec_versions": [r.get("spec_version") for r in members],
            "sources": _counts(r["source"] for r in members),
        }
    excluded = []
    for eid in sorted(blocked):
        action, entries = blocked[eid]
        blocking = [e for e in entries if e.action.blocks_build]
        excluded.append(
            {
                "id": eid,
                "action": str(action),
                "reasons": [
                    {
                        "check": e.check,
                        "reason": e.reason,
                        "detail": e.detail,
                        "action": str(e.action),
                        "by": e.actor,
                    }
                    for e in blocking
                ],
            }
        )
    rejected = [r.to_dict() for r in ing.rejects if r.source in {s.name for s in project.sources}]
    n_in_splits = sum(v["count"] for k, v in manifest_splits.items())
    n_eval_external = sum(
        1 for k in ("validation", "test") for r in splits[k] if r.get("_external")
    )
    n_replay = len(replay["ids"]) if replay else 0
    warnings = _split_warnings(project, manifest_splits, kept_ds, links)
    if not manifest_splits["train"]["count"]:
        warnings.append(
            "the training split is empty: every record was rejected or excluded "
            "(see the audit's rejects.jsonl and this manifest's excluded list)"
        )
    if losses:
        warnings.append(
            f"format {fmt} cannot hold every conversation (openai and parquet keep them whole): "
            + "; ".join(f"{why}: {n} example(s)" for why, n in sorted(losses.items()))
        )
    manifest = {
        "schema_version": MANIFEST_SCHEMA_VERSION,
        "ftprep_version": __version__,
        "project": {"name": project.name, "file_hash": project.file_hash},
        "spec_version": _current_spec_version(project),
        "format": fmt,
        "split_policy": project.split.model_dump(),
        "inputs": [
            {
                "name": s.name,
                "role": s.role,
                "path": s.path,
                "records": s.records,
                "fingerprint": s.fingerprint,
            }
            for s in ing.sources
        ],
        "accounting": {
            "records": ing.n_records,
            "in_splits": n_in_splits - n_eval_external - n_replay,
            "from_eval_pool": n_eval_external,
            "from_replay": n_replay,
            "excluded": len(excluded),
            "rejected": len(rejected),
        },
        "splits": manifest_splits,
        "excluded": excluded,
        "rejected": rejected,
        "replay": replay,
        "resampling": resampling,
        "warnings": warnings,
    }
    stage("manifest.json").write_bytes(orjson.dumps(manifest, option=orjson.OPT_INDENT_2))
    return manifest


def _eval_from_elsewhere(
    project: Project, ing: Any, splits: dict[str, list[dict[str, Any]]]
) -> None:
    """``split.eval_from: source`` moves the named source to validation/test; ``production``
    takes them from the production sample's holdout (inputs only)."""
    pol = project.split
    if pol.eval_from == "train":
        return
    if pol.eval_from == "source":
        if not pol.eval_source:
            raise ProjectError("split.eval_from: source needs split.eval_source (a source name)")
        pool = [r for r in splits["train"] if r["source"] == pol.eval_source]
        splits["train"] = [r for r in splits["train"] if r["source"] != pol.eval_source]
    else:
        if ing.production is None:
            raise ProjectError(
                "split.eval_from: production needs a production sample in ftprep.yaml"
            )
        pool = [dict(r, _external=True) for r in ing.production.table.to_pylist()]
    from ftprep.splits import eval_from_pool

    assignment = eval_from_pool(
        Dataset(
            pa.Table.from_pylist(
                [{k: v for k, v in r.items() if k != "_external"} for r in pool],
                schema=ing.train.table.schema,
            )
        )
        if pool
        else Dataset(),
        pol,
        # production: its holdout share; an evaluation source: all of it
        share=project.production.holdout
        if pol.eval_from == "production" and project.production is not None
        else 1.0,
    )
    for r in pool:
        dest = assignment.get(r["id"])
        if dest in ("validation", "test"):
            splits[dest].append(r)


def _resample(project: Project, splits: dict[str, list[dict[str, Any]]]) -> dict[str, Any] | None:
    """``build.resample: production``: the training split drawn again, same size, in proportion
    to the importance weights of the last audit (systematic resampling, seeded by the split seed),
    so its mix of inputs follows production's. Returns what the manifest records: the method,
    the effective sample size it costs and every example's number of copies that is not 1."""
    if project.build.resample != "production":
        return None
    import numpy as np

    from ftprep.api import IMPORTANCE_WEIGHTS
    from ftprep.distribution.weights import effective_sample_size, resampling_plan

    path = project.workspace_dir / IMPORTANCE_WEIGHTS
    if not path.exists():
        raise StaleAuditError(
            "build.resample: production needs the importance weights of the last audit's "
            "distribution.coverage check, and it has none (was the check disabled, or not run "
            "for want of inputs?): run `ftprep audit`"
        )
    plan = orjson.loads(path.read_bytes())
    known = plan["weights"]
    train = splits["train"]
    missing = [r["id"] for r in train if r["id"] not in known]
    if missing:
        raise StaleAuditError(
            f"build.resample: {len(missing)} training example(s) have no importance weight from "
            f"the last audit (e.g. {missing[0]!r}): run `ftprep audit` again"
        )
    w = np.array([float(known[r["id"]]) for r in train])
    copies = resampling_plan(w, len(train), seed=project.split.seed)
    splits["train"] = [r for r, c in zip(train, copies, strict=True) for _ in range(int(c))]
    ess = effective_sample_size(w)
    return {
        "from": "production",
        "method": plan.get("method"),
        "examples": len(train),
        "effective_sample_size": round(ess, 1),
        "ess_fraction": round(ess / max(len(train), 1), 4),
        "dropped": int((copies == 0).sum()),
        "repeated": int((copies > 1).sum()),
        # every example whose number of copies is not 1 (0: left out of this training file)
        "copies": {r["id"]: int(c) for r, c in zip(train, copies, strict=True) if c != 1},
    }


def _mix_replay(
    project: Project, ing: Any, splits: dict[str, list[dict[str, Any]]]
) -> dict[str, Any] | None:
    """Add replay examples to the training split (never to validation/test): the first N of
    the order the last audit planned (``forgetting.capabilities``), N such that they make up
    ``replay.share`` of the final training split."""
    if project.replay is None or ing.replay is None:
        return None
    from ftprep.capabilities import replay_count

    plan_path = project.workspace_dir / "replay_plan.json"
    if not plan_path.exists():
        raise StaleAuditError(
            "replay is configured but the last audit planned no replay (is the "
            "forgetting.capabilities check disabled?): run `ftprep audit` first"
        )
    order = orjson.loads(plan_path.read_bytes())["order"]
    rows = {r["id"]: r for r in ing.replay.table.to_pylist()}
    n = replay_count(project.replay.share, len(splits["train"]))
    chosen = [item for item in order if item["id"] in rows][:n]
    for item in chosen:
        splits["train"].append(rows[item["id"]])
    return {
        "share": project.replay.share,
        "requested": n,
        "ids": [item["id"] for item in chosen],
        "by_capability": _counts(item["capability"] or "(general)" for item in chosen),
    }


def _split_warnings(
    project: Project, splits: dict[str, Any], kept: Dataset, links: Any
) -> list[str]:
    """Say when validation/test came out far below their target share — typically because
    groups or near-duplicate clusters merged most examples into a few units that cannot be
    cut without leaking."""
    pol = project.split
    if pol.eval_from != "train":
        return []
    total = sum(v["count"] for v in splits.values())
    out = []
    for name, share in (("validation", pol.validation), ("test", pol.test)):
        target = share * total
        if target >= 5 and splits[name]["count"] < 0.5 * target:
            from ftprep.splits import units

            sizes: dict[str, int] = {}
            for u in units(kept, pol.by, links).values():
                sizes[u] = sizes.get(u, 0) + 1
            out.append(
                f"{name}: {splits[name]['count']} examples for a target of {target:.0f}; the largest "
                f"unit that must stay in one split (a group joined with its near-duplicate clusters) "
                f"holds {max(sizes.values(), default=0)} of {total} examples"
            )
    return out


def _counts(values: Any) -> dict[str, int]:
    out: dict[str, int] = {}
    for v in values:
        out[str(v)] = out.get(str(v), 0) + 1
    return dict(sorted(out.items()))


def _fill_spec_versions(project: Project, train: Dataset, rows: list[dict[str, Any]]) -> None:
    """Give every row its spec version: the field, else derived from ``collected_at`` against
    the spec history, else the source default (see docs/spec.md)."""
    import importlib.util

    if importlib.util.find_spec("ftprep.spec") is None:
        return
    from ftprep import spec

    for row, v in zip(rows, spec.derive_spec_versions(project, train), strict=True):
        row["spec_version"] = v


def _current_spec_version(project: Project) -> str | None:
    from ftprep.spec import current_version

    return current_version(project)
