"""Running the stages: the user's training command, or the built-in proxy learner, with every
finished run appended to ``<workspace>/curve/results.jsonl`` so an interrupted curve resumes.

A run is keyed by stage size, seed, the command (or proxy learner) and the data fingerprint:
changing any of them re-runs the stage; nothing else does.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import signal
import subprocess
import time
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from ftprep.project import ProjectError

PLACEHOLDERS = ("train", "validation", "out", "n", "stage", "seed")
_PLACEHOLDER_RE = re.compile(r"\{(" + "|".join(PLACEHOLDERS) + r")\}")


class CurveError(ProjectError):
    """The curve cannot be computed (exit code 2): bad input, a failing command, no learner."""


def run_key(n: int, seed: int, command: str, fingerprint: str) -> str:
    return hashlib.sha256(orjson.dumps([n, seed, command, fingerprint])).hexdigest()[:24]


class ResultStore:
    """``results.jsonl``: one JSON object per finished run, appended with a single ``write`` on
    an ``O_APPEND`` descriptor and fsynced, so a crash loses at most the run in progress; a
    truncated last line is ignored on reading."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def load(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        if not self.path.exists():
            return out
        for line in self.path.read_bytes().splitlines():
            try:
                rec = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(rec, dict) and "key" in rec:
                out[rec["key"]] = rec
        return out

    def append(self, record: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = orjson.dumps(record) + b"\n"
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            if os.fstat(fd).st_size > 0:
                with open(self.path, "rb") as fh:
                    fh.seek(-1, os.SEEK_END)
                    if fh.read(1) != b"\n":  # a crash left half a line: end it first
                        data = b"\n" + data
            os.write(fd, data)
            os.fsync(fd)
        finally:
            os.close(fd)


def render_command(template: str, values: dict[str, str]) -> str:
    """Fill ``{train}`` ``{validation}`` ``{out}`` ``{n}`` ``{stage}`` ``{seed}``, each value
    shell-quoted; any other braces are left as they are."""
    return _PLACEHOLDER_RE.sub(lambda m: shlex.quote(values[m.group(1)]), template)


def _get(obj: Any, dotted: str) -> Any:
    cur = obj
    for part in dotted.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return None
        cur = cur[part]
    return cur


def read_metric(stdout: str, out_dir: Path, key: str) -> tuple[float, dict[str, Any]]:
    """The metric ``key`` (dotted path allowed) from the last JSON object printed on stdout,
    else from ``{out}/metrics.json``."""
    candidates: list[dict[str, Any]] = []
    for line in reversed(stdout.splitlines()):
        line = line.strip()
        if line.startswith("{") and line.endswith("}"):
            try:
                obj = orjson.loads(line)
            except orjson.JSONDecodeError:
                continue
            if isinstance(obj, dict):
                candidates.append(obj)
                break
    mfile = out_dir / "metrics.json"
    if mfile.exists():
        try:
            obj = orjson.loads(mfile.read_bytes())
            if isinstance(obj, dict):
                candidates.append(obj)
        except orjson.JSONDecodeError:
            pass
    for obj in candidates:
        v = _get(obj, key)
        if isinstance(v, int | float) and not isinstance(v, bool) and np.isfinite(v):
            return float(v), obj
    raise CurveError(
        f"the command printed no JSON object with a numeric {key!r} on its last JSON line "
        f"of stdout and wrote none to {out_dir / 'metrics.json'} (set curve.metric)"
    )


def run_command(
    command: str, values: dict[str, str], out_dir: Path, metric: str, timeout_s: float | None
) -> tuple[float, dict[str, Any], float]:
    """Run one stage; returns (metric, the JSON object it came from, seconds)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    cmd = render_command(command, values)
    t0 = time.perf_counter()
    proc = subprocess.Popen(
        cmd,
        shell=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        stdout, stderr = proc.communicate(timeout=timeout_s)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise CurveError(
            f"stage {values['stage']}: the command ran longer than curve.timeout_s = "
            f"{timeout_s:g} s and was stopped (finished stages are kept; rerun to resume)"
        ) from None
    except BaseException:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.communicate()
        raise
    seconds = time.perf_counter() - t0
    (out_dir / "stdout.log").write_text(stdout, encoding="utf-8")
    (out_dir / "stderr.log").write_text(stderr, encoding="utf-8")
    if proc.returncode != 0:
        tail = "\n".join(stderr.strip().splitlines()[-15:]) or "(no stderr)"
        raise CurveError(
            f"stage {values['stage']}: the command exited with code {proc.returncode} "
            f"(finished stages are kept; rerun to resume)\n$ {cmd}\n--- stderr (last lines) ---\n"
            f"{tail}"
        )
    value, obj = read_metric(stdout, out_dir, metric)
    return value, obj, seconds


# ---------------------------------------------------------------- built-in proxy learner
PROXY_C = 1.0
PROXY_MAX_ITER = 200


def proxy_name(embedder: str, c: float = PROXY_C) -> str:
    return f"proxy:logistic-regression(C={c:g}):embeddings={embedder}"


def proxy_learner(
    x_train: np.ndarray,
    y_train: list[str],
    x_val: np.ndarray,
    y_val: list[str],
    c: float = PROXY_C,
) -> dict[str, float]:
    """Logistic regression on standardised prompt embeddings; validation accuracy and
    macro-F1 (a validation label never seen in training counts as an error)."""
    import warnings

    from sklearn.exceptions import ConvergenceWarning
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    mu = x_train.mean(axis=0)
    sd = x_train.std(axis=0) + 1e-6
    classes = sorted(set(y_train))
    if len(classes) == 1:
        pred = np.array([classes[0]] * len(y_val), dtype=object)
    else:
        model = LogisticRegression(C=c, max_iter=PROXY_MAX_ITER, tol=1e-3)
        with warnings.catch_warnings():
            # tiny stages: more classes than half the examples, or not fully converged
            warnings.simplefilter("ignore", ConvergenceWarning)
            warnings.filterwarnings("ignore", message="The number of unique classes")
            model.fit((x_train - mu) / sd, y_train)
        pred = model.predict((x_val - mu) / sd)
    yv = np.asarray(y_val, dtype=object)
    return {
        "accuracy": float(np.mean(pred == yv)),
        "macro_f1": float(f1_score(yv, pred, average="macro", zero_division=0)),
    }
