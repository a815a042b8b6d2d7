"""Interrupting a build (Ctrl-C, SIGKILL) never leaves half a dataset, a manifest that does not
describe the files next to it, or a damaged workspace; the next run succeeds."""

from __future__ import annotations

import hashlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import ftprep
from ftprep.store import atomic_file_set, remove_stale_temps
from util import chat, make_project

SRC = Path(__file__).resolve().parents[1] / "src"


@pytest.fixture()
def project(tmp_path: Path) -> Path:
    recs = [dict(chat(i), conv=f"c{i // 2}") for i in range(40)]
    root = make_project(tmp_path / "p", recs, fields="{id: id, group: conv}")
    assert ftprep.audit(root, only=["format.rejects"]).exit_code == 0
    return root


def _consistent(out: Path) -> dict:
    """The manifest's files exist and hash to what it says."""
    man = json.loads((out / "manifest.json").read_bytes())
    for v in man["splits"].values():
        assert hashlib.sha256((out / v["file"]).read_bytes()).hexdigest() == v["sha256"]
    return man


def _build_dying_in_second_split(project: Path, how: str, fmt: str) -> subprocess.CompletedProcess:
    """``ftprep build`` in a child process that is interrupted while it writes the second split
    (``kill``: SIGKILL, no cleanup runs; ``int``: Ctrl-C; ``term``: SIGTERM)."""
    code = textwrap.dedent(
        f"""
        import os, signal, sys
        import ftprep.formats.writers as w
        from ftprep.cli import main
        real, calls = w.write_split, []
        def dying(rows, path, *a, **k):
            calls.append(path)
            if len(calls) == 2:
                with open(path, "wb") as fh:
                    fh.write(b'{{"messages": [half')
                if {how!r} == "kill":
                    os.kill(os.getpid(), signal.SIGKILL)
                if {how!r} == "term":
                    os.kill(os.getpid(), signal.SIGTERM)
                raise KeyboardInterrupt
            return real(rows, path, *a, **k)
        import importlib
        importlib.import_module("ftprep.build").write_split = dying
        sys.argv = ["ftprep", "build", "-q", "-p", {str(project)!r}, "--format", {fmt!r}]
        main()
        """
    )
    env = dict(os.environ, PYTHONPATH=str(SRC))
    return subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120
    )


def test_interrupted_build_keeps_the_previous_build(project: Path) -> None:
    out = project / "out" / "build"
    before = ftprep.build(project)
    snapshot = {p.name: p.read_bytes() for p in out.iterdir()}
    for how, code in (("kill", -signal.SIGKILL), ("int", 130), ("term", 143)):
        r = _build_dying_in_second_split(project, how, "sharegpt")
        assert r.returncode == code, (how, r.stderr)
        if how != "kill":
            assert "half-written" in r.stderr and "Traceback" not in r.stderr
        # the previous build is untouched and still consistent
        now = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")}
        assert now == snapshot, how
        assert _consistent(out)["format"] == "openai"
        # SIGKILL runs no cleanup; Ctrl-C and SIGTERM do, and the next build (the "int" run)
        # first removes what the killed one left
        assert bool(list(out.glob(".*"))) == (how == "kill"), how
        db = sqlite3.connect(project / ".ftprep" / "ftprep.db")
        assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        db.close()
    # the next build succeeds and matches a clean one
    again = ftprep.build(project, fmt="sharegpt")
    assert not list(out.glob(".*"))
    assert _consistent(out)["format"] == "sharegpt"
    assert again.counts == before.counts


def test_file_set_failure_publishes_nothing(tmp_path: Path) -> None:
    (tmp_path / "a.txt").write_text("old a")
    (tmp_path / "m.json").write_text("old m")
    with pytest.raises(RuntimeError), atomic_file_set(tmp_path, "m.json") as stage:
        stage("a.txt").write_text("new a")
        raise RuntimeError("disk full")
    assert (tmp_path / "a.txt").read_text() == "old a"
    assert (tmp_path / "m.json").read_text() == "old m"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["a.txt", "m.json"]
    with atomic_file_set(tmp_path, "m.json") as stage:
        stage("m.json").write_text("new m")
        stage("a.txt").write_text("new a")
    assert [(tmp_path / n).read_text() for n in ("a.txt", "m.json")] == ["new a", "new m"]


def test_only_dead_processes_temporaries_are_removed(tmp_path: Path) -> None:
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f".train.jsonl.{dead.pid}.abc123xy.tmp"
    live = tmp_path / f".train.jsonl.{os.getppid()}.abc123xy.tmp"
    other = tmp_path / ".notes.tmp"
    for p in (stale, live, other):
        p.write_text("x")
    assert remove_stale_temps(tmp_path) == [stale]
    assert live.exists() and other.exists()


def test_ctrl_c_during_duckdb_stops_instead_of_falling_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import duckdb

    import ftprep.formats.fastpath as fp
    from ftprep.formats.readers import ReadOptions

    p = tmp_path / "t.jsonl"
    p.write_text(json.dumps(chat(0)) + "\n")
    monkeypatch.setattr(fp, "FAST_MIN_BYTES", 0)

    class Interrupted:
        def __init__(self, error: Exception) -> None:
            self.error = error

        def execute(self, *a: object) -> None:
            raise self.error

        def close(self) -> None:
            pass

    for error in (RuntimeError("Query interrupted"), duckdb.InterruptException("interrupted")):
        monkeypatch.setattr(duckdb, "connect", lambda e=error: Interrupted(e))
        with pytest.raises(KeyboardInterrupt):
            fp.read_fast(p, ReadOptions(source="s"))
    monkeypatch.setattr(duckdb, "connect", lambda: Interrupted(duckdb.IOException("odd file")))
    assert fp.read_fast(p, ReadOptions(source="s")) is None  # other failures: the slow path
