"""Audit outputs: ``findings.json`` (api), ``report.html`` (html) and the terminal summary."""
