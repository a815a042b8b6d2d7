"""What a check sees: the project, the ingested datasets, cached signals and a progress hook."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Hashable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import orjson
import yaml

from ftprep.decisions import Ledger
from ftprep.examples import Dataset
from ftprep.formats.readers import Reject
from ftprep.project import Project
from ftprep.store import Workspace

T = TypeVar("T")

# progress(description, total) -> context manager yielding advance(n)
ProgressFactory = Callable[
    [str, int | None], contextlib.AbstractContextManager[Callable[[int], None]]
]


def _ignore(_n: int = 1) -> None:
    return None


@contextlib.contextmanager
def no_progress(_desc: str, _total: int | None) -> Iterator[Callable[[int], None]]:
    yield _ignore


@dataclass
class Context:
    project: Project
    workspace: Workspace
    ledger: Ledger
    train: Dataset
    production: Dataset | None = None
    benchmarks: dict[str, Dataset] = field(default_factory=dict)
    replay: Dataset | None = None  # replay pool (ftprep.yaml: replay.sources)
    replay_capability: dict[str, str] = field(default_factory=dict)
    rejects: list[Reject] = field(default_factory=list)
    progress: ProgressFactory = no_progress
    # results other checks published in this run (e.g. duplicate clusters for the splitter)
    artifacts: dict[str, Any] = field(default_factory=dict)
    run_id: str = ""
    strict: bool = False  # --strict: any rejected record fails the audit
    # work several checks of one run share (``memo``)
    _memo: dict[Hashable, Any] = field(default_factory=dict, repr=False)

    # ------------------------------------------------------------------ config
    def params(self, check: str) -> dict[str, Any]:
        return dict(self.project.checks.get(check, {}))

    def gate_overrides(self, check: str) -> dict[str, dict[str, Any]]:
        return {k: v for k, v in self.project.gates.get(check, {}).items()}  # type: ignore[misc]

    def has(self, requirement: str) -> bool:
        p = self.project
        if requirement == "production":
            return self.production is not None and len(self.production) > 0
        if requirement == "benchmarks":
            return bool(self.benchmarks)
        if requirement in ("spec", "rubric", "capabilities", "objectives"):
            path = p.path(getattr(p, requirement))
            return path is not None and path.exists()
        if requirement == "annotations":
            return p.annotations is not None
        if requirement in ("labels", "collected_at"):
            col = self.train.table.column("label" if requirement == "labels" else "collected_at")
            return col.null_count < len(col)
        if requirement == "curve":
            return (p.workspace_dir / "curve" / "curve.json").exists()
        return False

    def load_yaml(self, key: str) -> Any:
        """Load the YAML file the project names under ``key`` (rubric, capabilities…)."""
        path = self.project.path(getattr(self.project, key))
        if path is None:
            raise FileNotFoundError(f"ftprep.yaml has no {key!r}")
        return yaml.safe_load(path.read_text(encoding="utf-8"))

    def resolve(self, p: str | None) -> Path | None:
        return self.project.path(p)

    # ------------------------------------------------------------------ signals
    def embeddings(
        self, dataset: Dataset, field: str = "prompt", model: str | None = None
    ) -> np.ndarray:
        """Embeddings of ``dataset.texts(field)``, cached by text hash and model."""
        return self.text_embeddings(dataset.texts(field), model)

    def memo(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per run for ``key``: work several checks share."""
        if key not in self._memo:
            self._memo[key] = compute()
        return self._memo[key]  # type: ignore[no-any-return]

    def train_texts_without_templates(self, field: str, params: dict[str, Any]) -> list[str]:
        """``train.texts(field)`` without the template lines and labels they repeat
        (``distribution/template.py``; ``params``: a check's, for ``strip_templates`` and
        ``template_min_share``), computed once per run for the checks that compare training
        examples with each other (split clusters, label consistency, spec conflicts)."""
        from dataclasses import astuple

        from ftprep.distribution.template import TemplateParams, without_templates

        tp = TemplateParams.from_dict(params)
        return self.memo(
            ("train_texts_without_templates", field, astuple(tp)),
            lambda: without_templates(self.train.texts(field), tp),
        )

    def text_embeddings(self, texts: list[str], model: str | None = None) -> np.ndarray:
        """Embeddings of ``texts`` (default: the project's model), cached by text hash and
        model, as float32."""
        from ftprep.signals.cache import cached_embeddings

        x = cached_embeddings(
            self.workspace, texts, model or self.project.embeddings, progress=self.progress
        )
        return np.asarray(x, dtype=np.float32)

    def token_counts(self, dataset: Dataset) -> tuple[np.ndarray, np.ndarray]:
        """(total tokens, assistant tokens) per example, cached by content hash."""
        from ftprep.signals.cache import cached_token_counts

        return cached_token_counts(self.workspace, self.project, dataset, progress=self.progress)

    def messages(self, dataset: Dataset) -> list[list[dict[str, Any]]]:
        return [orjson.loads(m) for m in dataset.column("messages")]
