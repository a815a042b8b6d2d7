"""Quality rubric (failure mode 1): rubric schema, deterministic/learned/judged criteria,
calibration agreement, stratification and drift. The audit check is
:class:`ftprep.checks.quality.QualityRubric`; ``docs/quality.md`` explains the method."""

from ftprep.quality.rubric import Criterion, Rubric, RubricError, load_rubric, parse_rubric
from ftprep.quality.score import RubricScores, score_dataset

__all__ = [
    "Criterion",
    "Rubric",
    "RubricError",
    "RubricScores",
    "load_rubric",
    "parse_rubric",
    "score_dataset",
]
