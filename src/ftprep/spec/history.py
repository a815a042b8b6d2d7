"""The spec history: an append-only, hash-chained JSON Lines file next to the spec.

``spec.md`` -> ``spec.history.jsonl`` (keep it in git with the spec). One line per recorded
version: ``lock`` (the first) or ``bump``. Each entry stores the full spec text it recorded, the
content hash, per-area criteria hashes, the affected areas, the effective date, who and why, the
hash of the previous entry (``prev``) and its own hash (``hash``: SHA-256 over the canonical JSON
of every other field). Editing, reordering or deleting an entry breaks the chain.

A chain can be recomputed from scratch by someone determined, so the workspace also keeps an
*anchor* (``.ftprep/spec_anchor.json``: the last entry this workspace verified). A history that
no longer contains the anchored entry unchanged was rewritten or truncated, and is rejected too.
Git is the second anchor: the history file is committed and reviewed like code.
"""

from __future__ import annotations

import bisect
import datetime as dt
import getpass
import os
import re
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import orjson

from ftprep.spec.document import Spec, SpecError, normalise_newlines, parse_spec, sha256
from ftprep.store import atomic_write_bytes

HISTORY_FORMAT = 1
ANCHOR_FILE = "spec_anchor.json"
_FIELDS = (
    "format",
    "seq",
    "kind",
    "version",
    "effective",
    "recorded_at",
    "actor",
    "note",
    "content_hash",
    "general_hash",
    "area_hashes",
    "affected_areas",
    "computed_areas",
    "snapshot",
    "prev",
)


def history_path(spec_path: Path) -> Path:
    """``spec.md`` -> ``spec.history.jsonl`` in the same directory."""
    return spec_path.with_name(spec_path.stem + ".history.jsonl")


def parse_time(value: Any) -> dt.datetime | None:
    """ISO-8601 date or timestamp -> aware UTC datetime (naive values are taken as UTC);
    ``None`` when empty or unparseable."""
    if value is None:
        return None
    if isinstance(value, dt.datetime):
        d = value
    elif isinstance(value, dt.date):
        d = dt.datetime(value.year, value.month, value.day)
    else:
        s = str(value).strip()
        if not s:
            return None
        if s.endswith(("Z", "z")):
            s = s[:-1] + "+00:00"
        try:
            d = dt.datetime.fromisoformat(s)
        except ValueError:
            m = re.match(r"^(\d{4})-(\d{2})(?:-(\d{2}))?", s)
            if not m:
                return None
            try:
                d = dt.datetime(int(m.group(1)), int(m.group(2)), int(m.group(3) or 1))
            except ValueError:
                return None
    if d.tzinfo is None:
        d = d.replace(tzinfo=dt.UTC)
    return d.astimezone(dt.UTC)


def iso(d: dt.datetime) -> str:
    return d.astimezone(dt.UTC).isoformat(timespec="seconds")


def default_actor() -> str:
    try:
        return os.environ.get("FTPREP_USER") or getpass.getuser()
    except Exception:
        return "unknown"


def version_key(v: Any) -> str:
    """How data values are matched to recorded versions: ``V2``, ``v2``, ``2`` and ``2.0`` are
    equal."""
    s = str(v).strip().casefold()
    if len(s) > 1 and s[0] == "v" and s[1].isdigit():
        s = s[1:]
    while s.endswith(".0") and len(s) > 2 and s[-3].isdigit():
        s = s[:-2]
    return s


@dataclass
class Entry:
    seq: int
    kind: str  # lock | bump
    version: str
    effective: str
    recorded_at: str
    actor: str
    note: str
    content_hash: str
    general_hash: str
    area_hashes: dict[str, str]
    affected_areas: list[str]
    computed_areas: list[str]
    snapshot: str
    prev: str
    format: int = HISTORY_FORMAT
    hash: str = ""

    def body(self) -> dict[str, Any]:
        d = asdict(self)
        return {k: d[k] for k in _FIELDS}

    def compute_hash(self) -> str:
        return sha256(orjson.dumps(self.body(), option=orjson.OPT_SORT_KEYS).decode())

    @property
    def effective_at(self) -> dt.datetime:
        t = parse_time(self.effective)
        assert t is not None
        return t

    def spec(self) -> Spec:
        return parse_spec(self.snapshot, f"history version {self.version}")

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k not in ("snapshot", "area_hashes")}


@dataclass
class History:
    path: Path
    entries: list[Entry] = field(default_factory=list)
    _effective: list[dt.datetime] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ reading
    @classmethod
    def load(cls, path: Path) -> History:
        """Read and verify the chain; raises :class:`SpecError` when it was tampered with."""
        h = cls(path)
        if not path.exists():
            return h
        fix = (
            f"restore {path.name} from version control (e.g. `git checkout -- {path.name}`); "
            "the history is append-only and is only written by `ftprep spec lock/bump`"
        )
        prev = ""
        for n, line in enumerate(path.read_bytes().split(b"\n"), start=1):
            if not line.strip():
                continue
            try:
                d = orjson.loads(line)
                e = Entry(**d)
            except (orjson.JSONDecodeError, TypeError) as exc:
                raise SpecError(f"{path}:{n}: spec history is corrupt ({exc}); {fix}") from None
            problems = []
            if e.seq != len(h.entries):
                problems.append(f"entry number {e.seq}, expected {len(h.entries)}")
            if e.prev != prev:
                problems.append("it does not chain to the previous entry")
            if e.compute_hash() != e.hash:
                problems.append("its content does not match its hash")
            if sha256(normalise_newlines(e.snapshot)) != e.content_hash:
                problems.append("its spec text does not match its content hash")
            if problems:
                raise SpecError(
                    f"{path}:{n}: spec history was tampered with: {'; '.join(problems)}; {fix}"
                )
            h.entries.append(e)
            prev = e.hash
        return h

    @property
    def locked(self) -> bool:
        return bool(self.entries)

    @property
    def latest(self) -> Entry | None:
        return self.entries[-1] if self.entries else None

    @property
    def versions(self) -> list[str]:
        return [e.version for e in self.entries]

    def find(self, version: str) -> Entry | None:
        key = version_key(version)
        for e in self.entries:
            if version_key(e.version) == key:
                return e
        return None

    def version_at(self, when: dt.datetime) -> str | None:
        """The version in force at ``when`` (the last whose effective date is <= when); data
        older than the first effective date belongs to the first version."""
        if not self.entries:
            return None
        if self._effective is None or len(self._effective) != len(self.entries):
            self._effective = [e.effective_at for e in self.entries]
        k = bisect.bisect_right(self._effective, when)
        return self.entries[max(k - 1, 0)].version

    def changed_since(self, version: str) -> dict[str, str]:
        """Areas whose criteria changed after ``version`` up to the latest version, each mapped
        to the first version that changed it."""
        e0 = self.find(version)
        if e0 is None:
            return {}
        out: dict[str, str] = {}
        for e in self.entries[e0.seq + 1 :]:
            for a in e.affected_areas:
                out.setdefault(a, e.version)
        return out

    # ------------------------------------------------------------------ writing
    def append(self, entry: Entry) -> Entry:
        entry.seq = len(self.entries)
        entry.prev = self.entries[-1].hash if self.entries else ""
        entry.hash = entry.compute_hash()
        line = orjson.dumps(asdict(entry), option=orjson.OPT_SORT_KEYS) + b"\n"
        old = self.path.read_bytes() if self.path.exists() else b""
        on_disk = [ln for ln in old.split(b"\n") if ln.strip()]
        if len(on_disk) != len(self.entries) or (
            on_disk and orjson.loads(on_disk[-1]).get("hash") != self.entries[-1].hash
        ):
            raise SpecError(f"{self.path} changed while this command ran; run it again")
        if old and not old.endswith(b"\n"):
            old += b"\n"
        atomic_write_bytes(self.path, old + line)
        self.entries.append(entry)
        return entry


def new_entry(
    spec: Spec,
    *,
    kind: str,
    version: str,
    effective: dt.datetime,
    actor: str,
    note: str,
    affected: list[str],
    computed: list[str],
) -> Entry:
    return Entry(
        seq=0,
        kind=kind,
        version=version,
        effective=iso(effective),
        recorded_at=iso(dt.datetime.now(dt.UTC)),
        actor=actor,
        note=note,
        content_hash=spec.content_hash,
        general_hash=spec.general_hash,
        area_hashes=spec.area_hashes(),
        affected_areas=sorted(affected),
        computed_areas=sorted(computed),
        snapshot=normalise_newlines(spec.raw),
        prev="",
    )


# ---------------------------------------------------------------------------------- anchor


def read_anchor(workspace_dir: Path, hist: Path) -> dict[str, Any] | None:
    p = workspace_dir / ANCHOR_FILE
    if not p.exists():
        return None
    try:
        data = orjson.loads(p.read_bytes())
    except orjson.JSONDecodeError:
        return None
    return data.get(str(hist.resolve()))  # type: ignore[no-any-return]


def check_anchor(history: History, workspace_dir: Path) -> None:
    a = read_anchor(workspace_dir, history.path)
    if a is None:
        return
    seq, h = int(a.get("seq", -1)), str(a.get("hash", ""))
    if seq >= len(history.entries) or history.entries[seq].hash != h:
        raise SpecError(
            f"{history.path}: spec history was rewritten or truncated: this workspace verified entry "
            f"{seq} (hash {h[:12]}) and it is no longer there. Restore the file from version control; "
            f"if the rewrite was deliberate, delete {workspace_dir / ANCHOR_FILE} to accept it"
        )


def write_anchor(history: History, workspace_dir: Path) -> None:
    if not history.entries:
        return
    p = workspace_dir / ANCHOR_FILE
    data: dict[str, Any] = {}
    if p.exists():
        try:
            data = orjson.loads(p.read_bytes())
        except orjson.JSONDecodeError:
            data = {}
    last = history.entries[-1]
    key = str(history.path.resolve())
    if data.get(key) == {"seq": last.seq, "hash": last.hash}:
        return
    data[key] = {"seq": last.seq, "hash": last.hash}
    atomic_write_bytes(p, orjson.dumps(data, option=orjson.OPT_INDENT_2 | orjson.OPT_SORT_KEYS))
