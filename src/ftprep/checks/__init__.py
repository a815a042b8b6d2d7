"""Checks, one module per failure mode; see :mod:`ftprep.checks.base` and ``ftprep checks``."""
