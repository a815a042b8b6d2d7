"""A plain dict of check classes, filled by ``@register`` when the check modules are imported."""

from __future__ import annotations

import importlib
from typing import TypeVar

from ftprep.checks.base import FAILURE_MODES, Check

_REGISTRY: dict[str, type[Check]] = {}

# one module per failure mode; a module that is absent is simply not listed
CHECK_MODULES = (
    "ftprep.checks.format",
    "ftprep.checks.quality",
    "ftprep.checks.distribution",
    "ftprep.checks.volume",
    "ftprep.checks.labels",
    "ftprep.checks.forgetting",
    "ftprep.checks.contamination",
    "ftprep.checks.spec",
    "ftprep.checks.objectives",
)

C = TypeVar("C", bound=type[Check])


def register(cls: C) -> C:
    name = cls.name
    if name in _REGISTRY and _REGISTRY[name] is not cls:
        raise ValueError(f"check {name!r} is registered twice ({_REGISTRY[name]!r} and {cls!r})")
    if cls.failure_mode not in FAILURE_MODES:
        raise ValueError(f"check {name!r}: unknown failure mode {cls.failure_mode!r}")
    if not (cls.description or "").strip():
        raise ValueError(f"check {name!r} has no description")
    _REGISTRY[name] = cls
    return cls


def load_all() -> dict[str, type[Check]]:
    for mod in CHECK_MODULES:
        try:
            importlib.import_module(mod)
        except ModuleNotFoundError as e:
            if e.name != mod:
                raise
    return dict(_REGISTRY)


def get(name: str) -> type[Check]:
    checks = load_all()
    if name not in checks:
        raise KeyError(f"unknown check {name!r}; `ftprep checks` lists them")
    return checks[name]
