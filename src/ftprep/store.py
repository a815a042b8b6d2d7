"""The workspace (``.ftprep/``): Parquet tables, the signal cache and the database.

* ``tables/<name>.parquet`` — the ingested datasets (train, production, benchmark:<name>)
* ``signals/<signal>/<part>.parquet`` — per-example derived values keyed by content hash
* the database (SQLite in WAL mode by default, PostgreSQL by URL) — runs, the decisions ledger
  and whatever the review app keeps; see :mod:`ftprep.decisions`.

Every file is written to a temporary name in the same directory and renamed into place.
"""

from __future__ import annotations

import contextlib
import os
import re
import tempfile
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

# temporary files are named ``.<target>.<pid>.<random>.tmp`` so that the leftovers of a killed
# process (SIGKILL, power loss: no cleanup runs) can be told apart from a live writer's
_TEMP_RE = re.compile(r"^\..+\.(\d+)\.[A-Za-z0-9_]+\.tmp$")


def _temp_for(target: Path) -> Path:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(
        prefix=f".{target.name}.{os.getpid()}.", suffix=".tmp", dir=target.parent
    )
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    return Path(tmp)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def remove_stale_temps(directory: Path, recursive: bool = False) -> list[Path]:
    """Delete the temporary files that a killed process left in ``directory`` (those of live
    processes are kept). Returns what was removed."""
    if not directory.is_dir():
        return []
    removed = []
    for p in directory.rglob(".*.tmp") if recursive else directory.glob(".*.tmp"):
        m = _TEMP_RE.match(p.name)
        if m and int(m.group(1)) != os.getpid() and not _alive(int(m.group(1))):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(p)
    return removed


@contextlib.contextmanager
def atomic_path(target: Path) -> Iterator[Path]:
    """Yield a temporary path next to ``target``; rename it over ``target`` only if the block
    finishes. A crash or Ctrl-C leaves the old file (or nothing), never half a file."""
    tmp_path = _temp_for(target)
    try:
        yield tmp_path
        os.replace(tmp_path, target)
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


@contextlib.contextmanager
def atomic_file_set(directory: Path, marker: str) -> Iterator[Callable[[str], Path]]:
    """Write several files that belong together (a build's splits and its manifest) and
    publish them as one: yields ``stage(name) -> temporary path``. When the block finishes, the
    old ``marker`` file is removed first, every other staged file is renamed into place, and
    the marker is renamed last — so a marker only ever sits next to the files it describes. An
    exception or Ctrl-C publishes nothing; a SIGKILL while writing leaves the old set intact
    (and temporaries that :func:`remove_stale_temps` clears), a SIGKILL during the renames
    leaves no marker."""
    staged: dict[str, Path] = {}

    def stage(name: str) -> Path:
        if name not in staged:
            staged[name] = _temp_for(directory / name)
        return staged[name]

    try:
        yield stage
        if marker in staged:
            with contextlib.suppress(FileNotFoundError):
                (directory / marker).unlink()
        for name, tmp in staged.items():
            if name != marker:
                os.replace(tmp, directory / name)
        if marker in staged:
            os.replace(staged[marker], directory / marker)
    finally:
        for tmp in staged.values():
            if tmp.exists():
                tmp.unlink()


def atomic_write_bytes(target: Path, data: bytes) -> None:
    with atomic_path(target) as tmp:
        tmp.write_bytes(data)


def atomic_write_text(target: Path, text: str) -> None:
    atomic_write_bytes(target, text.encode("utf-8"))


def write_parquet(table: pa.Table, target: Path, compression: str = "lz4") -> None:
    with atomic_path(target) as tmp:
        pq.write_table(table, tmp, compression=compression)


def make_engine(url: str) -> sa.Engine:
    if url.startswith("sqlite"):
        eng = sa.create_engine(url, connect_args={"timeout": 30})

        @sa.event.listens_for(eng, "connect")
        def _pragmas(dbapi_conn: Any, _rec: Any) -> None:
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA foreign_keys=ON")
            cur.close()

        return eng
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url.removeprefix("postgresql://")
    return sa.create_engine(url, pool_pre_ping=True)


class Workspace:
    def __init__(self, root: Path, database_url: str | None = None) -> None:
        self.root = root
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "tables").mkdir(exist_ok=True)
        (self.root / "signals").mkdir(exist_ok=True)
        remove_stale_temps(self.root, recursive=True)  # what a killed run left behind
        url = database_url or os.environ.get("FTPREP_DATABASE_URL")
        self.database_url = url or f"sqlite:///{(self.root / 'ftprep.db').resolve()}"
        self._engine: sa.Engine | None = None

    @property
    def engine(self) -> sa.Engine:
        if self._engine is None:
            self._engine = make_engine(self.database_url)
        return self._engine

    # ----------------------------------------------------------------- tables
    def table_path(self, name: str) -> Path:
        return self.root / "tables" / f"{name.replace(':', '__').replace('/', '_')}.parquet"

    def save_table(self, name: str, table: pa.Table) -> None:
        write_parquet(table, self.table_path(name))

    def load_table(self, name: str) -> pa.Table | None:
        p = self.table_path(name)
        return pq.read_table(p) if p.exists() else None

    # ----------------------------------------------------------------- signals
    def signal_cache(self, signal: str, version: str) -> SignalCache:
        safe = f"{signal}@{version}".replace("/", "_").replace(":", "_")
        return SignalCache(self.root / "signals" / safe)


class SignalCache:
    """Per-example values keyed by content hash, stored as Parquet part files.

    ``get_or_compute(keys, compute)`` returns one value per key, computing only the keys that
    are not cached yet (``compute`` receives the *indices* of the missing keys) and appending
    them as a new part. Values are fixed-width float32 vectors or scalars.
    """

    def __init__(self, directory: Path) -> None:
        self.dir = directory

    def _load(self) -> tuple[dict[str, int], np.ndarray | None]:
        if not self.dir.exists():
            return {}, None
        parts = sorted(self.dir.glob("part-*.parquet"))
        if not parts:
            return {}, None
        t = pa.concat_tables([pq.read_table(p) for p in parts])
        keys = t.column("key").to_pylist()
        col = t.column("value").combine_chunks()
        if pa.types.is_fixed_size_list(col.type):
            width = col.type.list_size
            vals = col.values.to_numpy(zero_copy_only=False).reshape(-1, width)
        else:
            vals = col.to_numpy(zero_copy_only=False)
        index = {k: i for i, k in enumerate(keys)}
        return index, vals

    def get_or_compute(
        self, keys: Sequence[str], compute: Callable[[list[int]], np.ndarray]
    ) -> np.ndarray:
        index, vals = self._load()
        pos = np.fromiter((index.get(k, -1) for k in keys), dtype=np.int64, count=len(keys))
        missing = np.flatnonzero(pos < 0)
        if len(missing) == 0:
            if vals is None:
                return np.zeros((0,), dtype=np.float32)
            return vals[pos]
        # compute each missing key once
        first: dict[str, int] = {}
        for i in missing.tolist():
            first.setdefault(keys[i], i)
        uniq = list(first.values())
        new = np.asarray(compute(uniq))
        self._append([keys[i] for i in uniq], new)
        if vals is None and len(uniq) == len(keys):
            return new
        new_pos = {keys[i]: j for j, i in enumerate(uniq)}
        out = np.empty((len(keys), *new.shape[1:]), dtype=new.dtype)
        have = pos >= 0
        if vals is not None and have.any():
            out[have] = vals[pos[have]]
        idx = np.fromiter(
            (new_pos[keys[i]] for i in missing.tolist()), dtype=np.int64, count=len(missing)
        )
        out[missing] = new[idx]
        return out

    def _append(self, keys: list[str], values: np.ndarray) -> None:
        self.dir.mkdir(parents=True, exist_ok=True)
        if values.ndim == 2:
            flat = pa.array(values.astype(np.float32).reshape(-1))
            col = pa.FixedSizeListArray.from_arrays(flat, values.shape[1])
        else:
            col = pa.array(values)
        t = pa.table({"key": pa.array(keys, pa.string()), "value": col})
        write_parquet(t, self.dir / f"part-{uuid.uuid4().hex}.parquet")
