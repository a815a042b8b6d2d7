"""The review web app (``ftprep review serve``): accounts, queues and decisions.

* :mod:`ftprep.review.db` — accounts, sessions and the app's annotations (SQLAlchemy Core);
* :mod:`ftprep.review.data` — what the pages show: examples, votes, queues, the spec text;
* :mod:`ftprep.review.app` — the Flask application (``create_app``);
* :mod:`ftprep.review.cli` — the ``ftprep review`` commands.

Decisions go to the decisions ledger (:mod:`ftprep.decisions`), which ``build`` applies.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from flask import Flask


def create_app(*args: Any, **kwargs: Any) -> Flask:
    """See :func:`ftprep.review.app.create_app` (imported lazily: Flask loads only when used)."""
    from ftprep.review.app import create_app as _create

    return _create(*args, **kwargs)


__all__ = ["create_app"]
