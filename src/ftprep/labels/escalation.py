"""Escalation instead of averaging: which examples go to a senior expert, which are excluded.

Per example the *item agreement* is:

* labels and text reviews: the *crowd stability* of the consensus label (see
  :func:`ftprep.labels.aggregate.crowd_stability`) — the probability that a very large crowd
  would give the same label, given the vote distribution, each annotator's estimated
  reliability (when annotators are distinguishable), the labels' confusability, the class prior
  and the fitted spread of item difficulty;
* ratings: the share of ratings within ``rating_tolerance`` scale steps of the median rating.

Rules (all thresholds are parameters of ``labels.agreement``):

* an example with expert *gold* is settled by the gold label (never escalated);
* ``n_labels < min_labels``: not judged (agreement needs two opinions);
* agreement ``< escalate_below`` → ``Action.ESCALATE`` (reason ``low_agreement``): out of the
  build until a senior expert arbitrates in the review app;
* ``escalate_budget`` (a share, optional): at most this share of the judged examples (no gold,
  ``>= min_labels`` labels) is treated as low agreement — the ones with the lowest agreement,
  ties broken by position. A budget caps the threshold rule; with ``escalate_below = inf`` the
  budget alone decides (the senior expert's capacity instead of a threshold);
* *final agreement stays below threshold* → ``Action.EXCLUDE``: either the example was escalated
  in an earlier audit, has received more labels since, and is still below ``escalate_below``
  (reason ``unresolved_disagreement``); or it has at least ``exclude_min_labels`` labels and its
  agreement is below ``exclude_below`` (reason ``no_consensus``).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ftprep.checks.base import Action


@dataclass(slots=True)
class EscalationParams:
    escalate_below: float = 0.8
    exclude_below: float = 0.5
    exclude_min_labels: int = 7
    min_labels: int = 2
    escalate_budget: float | None = None


@dataclass(slots=True)
class ItemVerdict:
    unit: int
    action: Action
    reason: str
    agreement: float


def rating_agreement(counts: np.ndarray, tolerance: float) -> tuple[np.ndarray, np.ndarray]:
    """(share of ratings within ``tolerance`` rank steps of the lower median, median code)."""
    counts = np.asarray(counts, dtype=float)
    total = counts.sum(axis=1)
    cum = np.cumsum(counts, axis=1)
    med = (cum >= total[:, None] / 2.0).argmax(axis=1)
    k = counts.shape[1]
    ranks = np.arange(k)
    near = np.abs(ranks[None, :] - med[:, None]) <= tolerance
    share = np.divide((counts * near).sum(axis=1), total, out=np.zeros_like(total), where=total > 0)
    return share, med


def decide(
    agreement: np.ndarray,
    n_labels: np.ndarray,
    *,
    params: EscalationParams,
    has_gold: np.ndarray | None = None,
    previous_labels: np.ndarray | None = None,
) -> list[ItemVerdict]:
    """Verdicts for the examples that are escalated or excluded (others need no decision).

    ``previous_labels``: per unit, the number of labels it had when an earlier audit escalated it
    (0 = never escalated)."""
    out: list[ItemVerdict] = []
    gold = np.zeros(len(agreement), bool) if has_gold is None else has_gold
    prev = np.zeros(len(agreement), int) if previous_labels is None else previous_labels
    judged = ~gold & (np.asarray(n_labels) >= params.min_labels)
    low = judged & (np.asarray(agreement, dtype=float) < params.escalate_below)
    if params.escalate_budget is not None:
        if not 0.0 <= params.escalate_budget <= 1.0:
            raise ValueError(
                f"escalate_budget must be a share in [0, 1] (got {params.escalate_budget})"
            )
        room = int(np.floor(params.escalate_budget * judged.sum() + 1e-9))
        cand = np.flatnonzero(low)
        order = cand[np.argsort(np.asarray(agreement, dtype=float)[cand], kind="stable")]
        low = np.zeros(len(agreement), bool)
        low[order[:room]] = True
    for u in np.flatnonzero(low).tolist():
        a = float(agreement[u])
        if prev[u] > 0 and n_labels[u] > prev[u]:
            out.append(ItemVerdict(u, Action.EXCLUDE, "unresolved_disagreement", a))
        elif n_labels[u] >= params.exclude_min_labels and a < params.exclude_below:
            out.append(ItemVerdict(u, Action.EXCLUDE, "no_consensus", a))
        else:
            out.append(ItemVerdict(u, Action.ESCALATE, "low_agreement", a))
    return out
