"""Failure mode 3 — too little data for the objective: staged training on growing subsets, a
learning-curve fit and the volume estimate (``ftprep curve``; see docs/volume.md)."""

from ftprep.volume.curve import CurveResult, curve
from ftprep.volume.fit import CurveFit, FitError, PowerLaw, fit_curve
from ftprep.volume.runner import CurveError

__all__ = ["CurveError", "CurveFit", "CurveResult", "FitError", "PowerLaw", "curve", "fit_curve"]
