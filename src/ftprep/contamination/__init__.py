"""Evaluation-contamination detection: normalisation and shingles (``text``), containment
index (``index``), MinHash LSH (``minhash``), embedding candidates + verifier (``semantic``),
the staged search (``detect``) and planted leaks for measuring recall (``plant``)."""

from ftprep.contamination.detect import (
    ClusterParams,
    Leak,
    LeakParams,
    LeakReport,
    duplicate_clusters,
    find_leaks,
)

__all__ = ["ClusterParams", "Leak", "LeakParams", "LeakReport", "duplicate_clusters", "find_leaks"]
